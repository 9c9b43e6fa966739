"""The report model: what a run found, independent of how it is shown.

Every type here is a frozen dataclass that round-trips losslessly through JSON
(:func:`to_json` / :func:`report_from_json`). The JSON Schema in
``reports/schema/report.schema.json`` is generated from these classes
(:func:`report_json_schema`); a test fails when the two drift apart.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

__all__ = [
    "EXIT_FAIL",
    "EXIT_OK",
    "EXIT_SEVERITY",
    "EXIT_UNKNOWN",
    "EXIT_VERDICTS",
    "EXIT_WARN",
    "EXIT_WORDS",
    "SCHEMA_VERSION",
    "Direction",
    "Finding",
    "Json",
    "ProbeResult",
    "Report",
    "Status",
    "Step",
    "TranscriptLine",
    "exit_code",
    "report_from_json",
    "report_json_schema",
    "status_exit_code",
    "to_json",
    "worst",
    "worst_exit_code",
]

#: Bumped on any incompatible change of the JSON shape (a removed or renamed field).
SCHEMA_VERSION = 1

if TYPE_CHECKING:
    from collections.abc import Sequence

    #: JSON-compatible data. Read-only container types keep it covariant, so a
    #: ``list[str]`` or ``dict[str, int]`` can be passed as evidence without a cast.
    Json: TypeAlias = "None | bool | int | float | str | Sequence[Json] | Mapping[str, Json]"
else:
    Json = Any


class Status(StrEnum):
    """Outcome of a finding, a step, a probe result or a whole report.

    ``fail`` means the target is broken; ``inconclusive`` means the target would not
    let us judge (rate limit, greylisting, tarpit, a timeout after a partial answer);
    ``error`` means *we* could not judge (our bug, or input we cannot interpret);
    ``skip`` says why a check did not run.
    """

    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIP = "skip"
    ERROR = "error"

    @property
    def severity(self) -> int:
        """Rank used to pick the worst status: fail > error > inconclusive > warn > pass > skip."""
        return _SEVERITY[self]

    @property
    def symbol(self) -> str:
        """A one-character mark so status is never shown by colour alone."""
        return _SYMBOL[self]


_SEVERITY = {
    Status.SKIP: 0,
    Status.PASS: 1,
    Status.WARN: 2,
    Status.INCONCLUSIVE: 3,
    Status.ERROR: 4,
    Status.FAIL: 5,
}
_SYMBOL = {
    Status.SKIP: "-",
    Status.PASS: "✓",
    Status.WARN: "!",
    Status.INCONCLUSIVE: "?",
    Status.ERROR: "E",
    Status.FAIL: "✗",
}


def worst(statuses: Iterable[Status], *, default: Status = Status.PASS) -> Status:
    """The most severe of ``statuses``; ``default`` when there are none."""
    found = list(statuses)
    if not found:
        return default
    return max(found, key=lambda s: s.severity)


# --- exit codes ------------------------------------------------------------------------------

#: rca's exit codes, the monitoring-plugins convention (DESIGN.md §5), by name.
EXIT_OK, EXIT_WARN, EXIT_FAIL, EXIT_UNKNOWN = 0, 1, 2, 3
#: Each code as one word, where output names a code (``rca batch``, ``rca diff``, the
#: exporter's counters); callers may upper-case the ones that must stand out.
EXIT_WORDS: Mapping[int, str] = {
    EXIT_OK: "ok",
    EXIT_WARN: "warn",
    EXIT_FAIL: "fail",
    EXIT_UNKNOWN: "unknown",
}
#: The verdict each code stands for (the status a banner or an index row shows).
EXIT_VERDICTS: Mapping[int, Status] = {
    EXIT_OK: Status.PASS,
    EXIT_WARN: Status.WARN,
    EXIT_FAIL: Status.FAIL,
    EXIT_UNKNOWN: Status.INCONCLUSIVE,
}
#: How bad each code is, in monitoring-plugins order: 0 ok < 1 warn < 3 unknown < 2 fail.
EXIT_SEVERITY: Mapping[int, int] = {EXIT_OK: 0, EXIT_WARN: 1, EXIT_UNKNOWN: 2, EXIT_FAIL: 3}


def status_exit_code(status: Status) -> int:
    """The exit code of one status: 0 ok, 1 warn, 2 fail, 3 unknown.

    ``skip`` counts as 0: a check that did not run found nothing wrong (the reason is
    in the report).
    """
    if status == Status.FAIL:
        return EXIT_FAIL
    if status in (Status.INCONCLUSIVE, Status.ERROR):
        return EXIT_UNKNOWN
    if status == Status.WARN:
        return EXIT_WARN
    return EXIT_OK


def exit_code(report: Report) -> int:
    """The whole report as one code, rca's exit code (DESIGN.md §5).

    2 if anything failed; else 3 if anything was inconclusive or errored; else 1 if
    anything warned; else 0. Findings count too, not only the results' statuses.
    """
    statuses = {report.status, *(r.status for r in report.results)}
    statuses.update(f.status for _, f in report.findings())
    return max((status_exit_code(s) for s in statuses), key=EXIT_SEVERITY.__getitem__)


def worst_exit_code(codes: Iterable[int]) -> int:
    """The worst of several exit codes (:data:`EXIT_SEVERITY`); 0 when there are none."""
    found = [c for c in codes if c in EXIT_SEVERITY]
    return max(found, key=EXIT_SEVERITY.__getitem__, default=EXIT_OK)


Direction = Literal["send", "recv", "info"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptLine:
    """One protocol line as sent or received, secrets already replaced."""

    at_ms: float
    direction: Direction
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One judgement with a stable code, e.g. ``tls.cert.expired``.

    ``title`` is one line; ``detail`` says what was seen; ``remediation`` what to do;
    ``evidence`` holds small structured data (records, certificate fields, headers
    with secrets removed).
    """

    code: str
    status: Status
    title: str
    detail: str = ""
    remediation: str = ""
    evidence: Mapping[str, Json] = field(default_factory=dict)
    reference: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A node of the ExRCA-style step tree: an action and what came of it."""

    title: str
    status: Status
    elapsed_ms: float
    started_ms: float = 0.0
    findings: tuple[Finding, ...] = ()
    children: tuple[Step, ...] = ()
    transcript: tuple[TranscriptLine, ...] = ()

    def walk(self) -> Iterable[Step]:
        """This step and every descendant, depth first, in order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """What one probe found about one subject (a domain, ``host:port``, a URL)."""

    probe: str
    subject: str
    status: Status
    started: datetime
    elapsed_ms: float
    steps: tuple[Step, ...] = ()
    facts: Mapping[str, Json] = field(default_factory=dict)

    def findings(self) -> Iterable[Finding]:
        """Every finding of every step, in order."""
        for step in self.steps:
            for node in step.walk():
                yield from node.findings


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """A whole run: every probe result plus what is needed to read it later."""

    schema_version: int = SCHEMA_VERSION
    tool_version: str
    target: str
    options: Mapping[str, Json] = field(default_factory=dict)
    started: datetime
    elapsed_ms: float
    status: Status
    results: tuple[ProbeResult, ...] = ()
    environment: Mapping[str, Json] = field(default_factory=dict)

    def findings(self) -> Iterable[tuple[ProbeResult, Finding]]:
        """Every finding with the result it belongs to."""
        for result in self.results:
            for finding in result.findings():
                yield result, finding


# --- JSON ---------------------------------------------------------------------------------------


def to_json(value: Any) -> Json:
    """Turn a model object (or plain data holding them) into JSON-compatible data."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_json(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


T = TypeVar("T")


def _from_json(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin is Literal:
        return data
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _from_json(non_none[0], data)
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_from_json(item_tp, v) for v in data)
    if origin in (Mapping, dict):
        _key_tp, val_tp = typing.get_args(tp)
        return {k: _from_json(val_tp, v) for k, v in data.items()}
    if isinstance(tp, type):
        if issubclass(tp, StrEnum):
            return tp(data)
        if tp is datetime:
            return datetime.fromisoformat(data)
        if dataclasses.is_dataclass(tp):
            return _dataclass_from_json(tp, data)
    return data


def _dataclass_from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    hints = typing.get_type_hints(cls, globalns=globals())
    kwargs = {
        f.name: _from_json(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in data
    }
    return cls(**kwargs)


def report_from_json(data: Mapping[str, Any]) -> Report:
    """Rebuild a :class:`Report` from :func:`to_json` output (e.g. a saved ``--json`` file)."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"report schema_version {version!r} is not supported (this rca reads {SCHEMA_VERSION})"
        )
    return _dataclass_from_json(Report, data)


# --- JSON Schema ----------------------------------------------------------------------------------

_JSON_VALUE_SCHEMA: dict[str, Json] = {"description": "Any JSON value (small structured evidence)."}


def _schema_for(tp: Any, defs: dict[str, Json]) -> dict[str, Json]:
    origin = typing.get_origin(tp)
    if tp is Any:
        return dict(_JSON_VALUE_SCHEMA)
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_for(a, defs) for a in typing.get_args(tp)]}
    if origin is tuple:
        return {"type": "array", "items": _schema_for(typing.get_args(tp)[0], defs)}
    if origin in (Mapping, dict):
        return {
            "type": "object",
            "additionalProperties": _schema_for(typing.get_args(tp)[1], defs),
        }
    if tp is type(None):
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is datetime:
        return {"type": "string", "format": "date-time"}
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return {"type": "string", "enum": [m.value for m in tp]}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: breaks recursion (Step.children)
            hints = typing.get_type_hints(tp, globalns=globals())
            fields_ = dataclasses.fields(tp)
            defs[name] = {
                "type": "object",
                "description": (tp.__doc__ or "").strip().splitlines()[0],
                "properties": {f.name: _schema_for(hints[f.name], defs) for f in fields_},
                "required": [
                    f.name
                    for f in fields_
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                ],
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema mapping for {tp!r}")


def report_json_schema() -> dict[str, Json]:
    """The JSON Schema (draft 2020-12) of a report, generated from the dataclasses."""
    defs: dict[str, Json] = {}
    root = _schema_for(Report, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://rca.invalid/schema/report-v{SCHEMA_VERSION}.json",
        "title": "rca report",
        **root,
        "$defs": dict(sorted(defs.items())),
    }
