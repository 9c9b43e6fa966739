"""Loading probes from the registry in :mod:`probes`, and the finding catalogue."""

from __future__ import annotations

import importlib

from analyzer.findings import FindingSpec
from analyzer.probe import CORE_FINDINGS, Probe

__all__ = ["all_finding_specs", "load_probes"]


def load_probes(ids: tuple[str, ...] | None = None) -> list[Probe]:
    """The registered probes (all, or those named), in registry order."""
    from probes import REGISTRY  # noqa: PLC0415

    found: list[Probe] = []
    for probe_id, location in REGISTRY.items():
        if ids is not None and probe_id not in ids:
            continue
        module_name, _, attr = location.partition(":")
        probe = getattr(importlib.import_module(module_name), attr)
        if not isinstance(probe, Probe) or probe.id != probe_id:
            raise TypeError(f"registry entry {probe_id!r} does not name its Probe ({location})")
        found.append(probe)
    return found


def all_finding_specs() -> list[FindingSpec]:
    """Every finding code rca can produce: the pipeline's and every probe's."""
    from analyzer.batch import BATCH_FINDINGS  # noqa: PLC0415
    from analyzer.pipeline import PIPELINE_FINDINGS  # noqa: PLC0415

    specs: dict[str, FindingSpec] = {}
    for spec in (*CORE_FINDINGS, *PIPELINE_FINDINGS, *BATCH_FINDINGS):
        specs[spec.code] = spec
    for probe in load_probes():
        for spec in probe.findings:
            if spec.code in specs and specs[spec.code] != spec:
                raise ValueError(f"finding code {spec.code!r} is defined twice differently")
            specs[spec.code] = spec
    return [specs[c] for c in sorted(specs)]
