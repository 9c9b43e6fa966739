"""The Prometheus text report, read back with prometheus-client's own parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from analyzer.api import exit_code
from analyzer.core.model import Finding, ProbeResult, Report, Status, Step
from reports.prometheus import dumps
from tests.reports.sample import NOW

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def metrics(report: Report) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(dumps(report))}


def samples(report: Report, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for s in metrics(report)[name].samples]


def report_of(*findings: Finding, subject: str = "mx1:25", target: str = "t") -> Report:
    step = Step(title="s", status=Status.PASS, elapsed_ms=1, findings=findings)
    status = max((f.status for f in findings), key=lambda s: s.severity, default=Status.PASS)
    result = ProbeResult(probe="tls", subject=subject, status=status, started=T0,
                         elapsed_ms=1250, steps=(step,))
    return Report(tool_version="1", target=target, started=T0, elapsed_ms=2500,
                  status=status, results=(result,))


def test_every_family_has_help_and_type_gauge(sample: Report) -> None:
    # Given the sample report as Prometheus text
    text = dumps(sample)
    families = metrics(sample)
    # Then the parser finds the seven families, each a gauge with HELP and TYPE
    assert set(families) == {
        "rca_check_status", "rca_check_duration_seconds", "rca_check_timestamp_seconds",
        "rca_probe_status", "rca_probe_duration_seconds", "rca_finding",
        "rca_certificate_expiry_timestamp_seconds"}
    for name, family in families.items():
        assert family.type == "gauge"
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text


@pytest.mark.parametrize("status", list(Status))
def test_check_status_is_the_exit_code(status: Status) -> None:
    # Given a report whose worst finding has this status
    report = report_of(Finding(code="c", status=status, title="t"))
    [(labels, value)] = samples(report, "rca_check_status")
    # Then rca_check_status is the exit code rca returns for it
    assert value == exit_code(report)
    assert labels == {"target": "t"}


def test_probe_status_and_duration_per_probe_and_subject(sample: Report) -> None:
    # Given results of every status
    status = {(lb["probe"], lb["subject"]): v for lb, v in samples(sample, "rca_probe_status")}
    # Then each probe and subject has its status code and its duration in seconds
    assert status[("tls", "mx1.contoso.test:25")] == 2
    assert status[("tls", "mx2.contoso.test:25")] == 0
    assert status[("smtp", "mx2.contoso.test:25")] == 3
    assert status[("imap", "imap.contoso.test:993")] == 1
    durations = samples(report_of(Finding(code="c", status=Status.PASS, title="t")),
                        "rca_probe_duration_seconds")
    assert durations == [({"target": "t", "probe": "tls", "subject": "mx1:25"}, 1.25)]


def test_findings_are_counted_by_code_status_and_subject() -> None:
    # Given the same finding twice on one subject
    twice = Finding(code="dns.mx.cname", status=Status.WARN, title="t")
    # Then it is one series with the count 2 (never a duplicate series)
    found = samples(report_of(twice, twice), "rca_finding")
    assert found == [({"target": "t", "code": "dns.mx.cname", "status": "warn",
                       "subject": "mx1:25"}, 2)]


def test_certificate_expiry_comes_from_evidence(sample: Report) -> None:
    # Given the sample's TLS evidence: a leaf that expired 12 days ago and its CA
    expiry = {lb["serial"]: (lb, v) for lb, v in
              samples(sample, "rca_certificate_expiry_timestamp_seconds")}
    # Then each certificate's notAfter is a series keyed by subject and serial
    labels, value = expiry["0a1b2c3d4e5f"]
    assert labels["subject"] == "mx1.contoso.test:25"
    assert labels["certificate"] == "CN=mx1.contoso.test"
    assert value == pytest.approx((NOW - timedelta(days=12)).timestamp(), abs=0.001)
    assert set(expiry) == {"0a1b2c3d4e5f", "77", "0bcdef"}


def test_certificates_without_a_usable_not_after_are_left_out() -> None:
    # Given certificates with a bad date, no serial, and an entry that is no mapping
    # Then only the usable one becomes a series
    evidence = {"certificates": [
        {"subject": "CN=a", "serial": "01", "not_after": "2027-01-01T00:00:00+00:00"},
        {"subject": "CN=b", "serial": "02", "not_after": "soon"},
        {"subject": "CN=c", "not_after": "2027-01-01T00:00:00+00:00"},
        "not a certificate",
    ]}
    report = report_of(Finding(code="c", status=Status.PASS, title="t", evidence=evidence))
    found = samples(report, "rca_certificate_expiry_timestamp_seconds")
    assert [(lb["serial"], v) for lb, v in found] == [
        ("01", datetime(2027, 1, 1, tzinfo=UTC).timestamp())]


def test_label_values_are_escaped_per_the_exposition_format() -> None:
    # Given a subject with a quote, a backslash, a newline and an escape character
    subject = 'mx"1\\x\nnext\x1b[0m'
    report = report_of(Finding(code="c", status=Status.FAIL, title="t"), subject=subject)
    # When parsed back
    [(labels, _)] = samples(report, "rca_probe_status")
    # Then the value is intact (the escape character shown as text) and nothing was injected
    assert labels["subject"] == 'mx"1\\x\nnext\\x1b[0m'
    assert set(metrics(report)) >= {"rca_probe_status"}
    assert len(dumps(report).splitlines()) == len(dumps(report_of(
        Finding(code="c", status=Status.FAIL, title="t"))).splitlines())


def test_cli_writes_the_file_atomically_in_place(tmp_path: Any, sample: Report) -> None:
    # Given an existing metrics file that the collector may be reading
    from analyzer.cli import _write_outputs

    target = tmp_path / "textfile" / "rca.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    inode = target.stat().st_ino

    class Args:
        json = report = junit = None
        prometheus = target

    # When rca writes new metrics
    _write_outputs(sample, Args())  # type: ignore[arg-type]
    # Then the file was replaced whole by rename (a new inode), and no temporary is left
    assert target.stat().st_ino != inode
    assert target.read_text() == dumps(sample)
    assert sorted(p.name for p in target.parent.iterdir()) == ["rca.prom"]


def test_certificate_serial_may_be_named_serial_hex() -> None:
    # Given evidence as the TLS probe's CertInfo.as_evidence() writes it (serial_hex)
    # Then the serial label is taken from there
    evidence = {"certificates": [{"subject": "CN=a", "serial_hex": "0a0b",
                                  "not_after": "2027-01-01T00:00:00+00:00"}]}
    report = report_of(Finding(code="c", status=Status.PASS, title="t", evidence=evidence))
    [(labels, value)] = samples(report, "rca_certificate_expiry_timestamp_seconds")
    assert (labels["serial"], labels["subject"]) == ("0a0b", "mx1:25")
    assert value == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
