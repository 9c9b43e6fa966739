"""The report model: JSON round trip, schema drift, worst-status ordering."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.core.model import (
    SCHEMA_VERSION,
    Finding,
    ProbeResult,
    Report,
    Status,
    Step,
    TranscriptLine,
    report_from_json,
    report_json_schema,
    to_json,
    worst,
)

SCHEMA_FILE = Path(__file__).parents[2] / "reports" / "schema" / "report.schema.json"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def sample_report() -> Report:
    finding = Finding(
        code="tls.cert.expired",
        status=Status.FAIL,
        title="Certificate expired",
        detail="notAfter 2026-01-01",
        remediation="Renew it.",
        evidence={"names": ["a.test", "b.test"], "nested": {"n": 1, "ok": True, "x": None}},
        reference="https://www.rfc-editor.org/rfc/rfc5280",
    )
    child = Step(
        title="STARTTLS",
        status=Status.PASS,
        elapsed_ms=1.5,
        transcript=(TranscriptLine(at_ms=0.3, direction="send", text="EHLO rca.invalid"),),
    )
    step = Step(title="Connect", status=Status.FAIL, elapsed_ms=3.25, findings=(finding,),
                children=(child,))
    result = ProbeResult(probe="tls", subject="mx.a.test:25", status=Status.FAIL, started=NOW,
                         elapsed_ms=4.0, steps=(step,), facts={"mx_hosts": [{"host": "mx"}]})
    return Report(tool_version="0.1.0", target="a.test", options={"timeout": 60}, started=NOW,
                  elapsed_ms=5.0, status=Status.FAIL, results=(result,),
                  environment={"resolvers": ["system"]})


def test_report_round_trips_through_json_text() -> None:
    # Given a report with every kind of node
    report = sample_report()
    # When it is written as JSON text and read back
    again = report_from_json(json.loads(json.dumps(to_json(report))))
    # Then nothing is lost
    assert again == report


def test_committed_schema_matches_the_model() -> None:
    # Given the schema generated from the dataclasses
    generated = report_json_schema()
    # Then it equals the committed file (regenerate with `make schema`)
    assert json.loads(SCHEMA_FILE.read_text()) == generated


def test_report_validates_against_schema_shape() -> None:
    # Given a report's JSON
    data = to_json(sample_report())
    schema = report_json_schema()
    # Then every top-level key is a declared property and required ones are there
    props = schema["$defs"]["Report"]["properties"]  # type: ignore[index]
    assert set(data) <= set(props)  # type: ignore[arg-type]
    assert data["schema_version"] == SCHEMA_VERSION  # type: ignore[index]


def test_unknown_schema_version_is_refused() -> None:
    data = to_json(sample_report())
    data["schema_version"] = 999  # type: ignore[index]
    with pytest.raises(ValueError, match="schema_version"):
        report_from_json(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], Status.PASS),
        ([Status.SKIP, Status.PASS], Status.PASS),
        ([Status.PASS, Status.WARN], Status.WARN),
        ([Status.WARN, Status.INCONCLUSIVE], Status.INCONCLUSIVE),
        ([Status.INCONCLUSIVE, Status.ERROR], Status.ERROR),
        ([Status.ERROR, Status.FAIL, Status.PASS], Status.FAIL),
    ],
)
def test_worst_orders_statuses(statuses: list[Status], expected: Status) -> None:
    assert worst(statuses) == expected


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
))
def test_any_json_evidence_round_trips(evidence: object) -> None:
    finding = Finding(code="x.y", status=Status.WARN, title="t", evidence={"v": evidence})
    step = Step(title="s", status=Status.WARN, elapsed_ms=0.0, findings=(finding,))
    report = Report(tool_version="0", target="t", started=NOW, elapsed_ms=0, status=Status.WARN,
                    results=(ProbeResult(probe="p", subject="s", status=Status.WARN, started=NOW,
                                         elapsed_ms=0, steps=(step,)),))
    assert report_from_json(json.loads(json.dumps(to_json(report)))) == report
