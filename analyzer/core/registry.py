"""The probes of a run, without importing the ones that do not run; the finding catalogue.

:data:`probes.REGISTRY` says where each probe lives. Planning a run needs only what the
probes *declare* (title, needs, uses, provides, default, ...), and the finding catalogue
only their :class:`~analyzer.core.findings.FindingSpec` values, not their network machinery
(cryptography, httpx, the protocol clients). Those declarations are kept in
``probes/index.json``, generated from the probes themselves (``make catalogue``, i.e.
``python -m analyzer.core.registry``); a test fails when the index and the probes differ.

- :func:`probe_index` reads the index: one :class:`ProbeEntry` per registered probe, which
  the pipeline imports (:meth:`ProbeEntry.load`) only when the probe is about to run, so a
  run of ``--tests dns`` never imports ActiveSync, and a full check imports the TLS
  machinery while its first DNS questions are in flight.
- :func:`load_probes` imports probes now (tests, the index generator).
- :func:`all_finding_specs` is the catalogue of every code, from the index.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status
from analyzer.core.probe import CORE_FINDINGS, PIPELINE_FINDINGS, Probe

__all__ = [
    "INDEX_FILE",
    "ProbeEntry",
    "StaleIndex",
    "all_finding_specs",
    "index_document",
    "load_probes",
    "probe_index",
]

#: The generated index of the probes' declarations (regenerate with ``make catalogue``).
INDEX_FILE = Path(__file__).parents[2] / "probes" / "index.json"
_REGENERATE = "regenerate it with `make catalogue` (python -m analyzer.core.registry)"
#: What the index holds of each probe, besides its findings: the fields of
#: :class:`~analyzer.core.probe.Probe` that are data, not code.
_DECLARED = (
    "title", "needs", "uses", "awaits", "provides", "default", "uses_credentials", "enabled_by",
    "verifies_tls",
)


class StaleIndex(RuntimeError):
    """``probes/index.json`` does not match the probes' own declarations."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeEntry:
    """What a probe declares, read from the index; :meth:`load` imports the probe itself."""

    id: str
    title: str
    #: ``module:attribute`` of the :class:`~analyzer.core.probe.Probe` (from the registry).
    location: str
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    awaits: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    findings: tuple[FindingSpec, ...] = ()
    default: bool = True
    uses_credentials: bool = False
    enabled_by: str | None = None
    verifies_tls: bool = False

    def load(self) -> Probe:
        """Import the probe; :class:`StaleIndex` when it declares something else."""
        probe = _import(self.id, self.location)
        differs = [f for f in _DECLARED if getattr(probe, f) != getattr(self, f)]
        if differs:
            raise StaleIndex(
                f"probe {self.id!r} declares other {', '.join(differs)} than {INDEX_FILE.name}: "
                + _REGENERATE
            )
        return probe


def _registry() -> dict[str, str]:
    from probes import REGISTRY  # noqa: PLC0415 - the package only, not its probes

    return REGISTRY


def load_probes(ids: tuple[str, ...] | None = None) -> list[Probe]:
    """Import the registered probes (all, or those named), in registry order."""
    return [
        _import(probe_id, location)
        for probe_id, location in _registry().items()
        if ids is None or probe_id in ids
    ]


def probe_index(ids: tuple[str, ...] | None = None) -> list[ProbeEntry]:
    """The registered probes (all, or those named), in registry order, from the index:
    nothing of the probes themselves is imported."""
    declared = _declared()
    registry = _registry()
    if list(declared) != list(registry):
        raise StaleIndex(f"{INDEX_FILE.name} does not list the registry's probes: " + _REGENERATE)
    return [
        _entry(probe_id, location, declared[probe_id])
        for probe_id, location in registry.items()
        if ids is None or probe_id in ids
    ]


@functools.cache
def _declared() -> dict[str, dict[str, Any]]:
    """The index's entries by probe id, read once per process: it is fixed package data, and
    ``rca serve`` plans a run at every scrape."""
    try:
        document = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StaleIndex(f"cannot read {INDEX_FILE}: {exc}; " + _REGENERATE) from None
    return {p["id"]: p for p in document["probes"]}


def _entry(probe_id: str, location: str, data: dict[str, Any]) -> ProbeEntry:
    return ProbeEntry(
        id=probe_id,
        title=data["title"],
        location=location,
        needs=tuple(data["needs"]),
        uses=tuple(data["uses"]),
        awaits=tuple(data["awaits"]),
        provides=tuple(data["provides"]),
        findings=tuple(
            FindingSpec(
                code=f["code"],
                status=Status(f["status"]),
                title=f["title"],
                meaning=f["meaning"],
                remediation=f["remediation"],
                reference=f["reference"],
            )
            for f in data["findings"]
        ),
        default=data["default"],
        uses_credentials=data["uses_credentials"],
        enabled_by=data["enabled_by"],
        verifies_tls=data["verifies_tls"],
    )


def index_document(probes: list[Probe]) -> dict[str, Any]:
    """The index of ``probes``' declarations, as written to ``probes/index.json``."""
    return {
        "generated_by": "python -m analyzer.core.registry (make catalogue); do not edit by hand",
        "probes": [
            {
                "id": probe.id,
                **{name: _plain(getattr(probe, name)) for name in _DECLARED},
                "findings": [
                    {
                        "code": spec.code,
                        "status": spec.status.value,
                        "title": spec.title,
                        "meaning": spec.meaning,
                        "remediation": spec.remediation,
                        "reference": spec.reference,
                    }
                    for spec in probe.findings
                ],
            }
            for probe in probes
        ],
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def index_text(probes: list[Probe]) -> str:
    """The text of ``probes/index.json`` for ``probes``."""
    return json.dumps(index_document(probes), indent=1, ensure_ascii=False) + "\n"


def all_finding_specs() -> list[FindingSpec]:
    """Every finding code rca can produce: the pipeline's and every probe's (from the index)."""
    from analyzer.core.batchmodel import BATCH_FINDINGS  # noqa: PLC0415

    specs: dict[str, FindingSpec] = {}
    for spec in (*CORE_FINDINGS, *PIPELINE_FINDINGS, *BATCH_FINDINGS):
        specs[spec.code] = spec
    for probe in probe_index():
        for spec in probe.findings:
            if spec.code in specs and specs[spec.code] != spec:
                raise ValueError(f"finding code {spec.code!r} is defined twice differently")
            specs[spec.code] = spec
    return [specs[c] for c in sorted(specs)]


def main(argv: list[str] | None = None) -> int:
    """``python -m analyzer.core.registry [--check]``: write (or check) ``probes/index.json``."""
    args = sys.argv[1:] if argv is None else argv
    text = index_text(load_probes())
    if "--check" in args:
        current = INDEX_FILE.read_text(encoding="utf-8") if INDEX_FILE.exists() else ""
        if current != text:
            print(f"{INDEX_FILE} is stale: " + _REGENERATE, file=sys.stderr)
            return 1
        return 0
    INDEX_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {INDEX_FILE}")
    return 0


def _import(probe_id: str, location: str) -> Probe:
    module_name, _, attr = location.partition(":")
    probe = getattr(importlib.import_module(module_name), attr)
    if not isinstance(probe, Probe) or probe.id != probe_id:
        raise TypeError(f"registry entry {probe_id!r} does not name its Probe ({location})")
    return probe


if __name__ == "__main__":
    raise SystemExit(main())
