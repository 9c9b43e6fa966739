"""The JUnit XML report, read back the way CI systems read it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from analyzer.core.model import Finding, ProbeResult, Report, Status, Step
from reports.junit import dumps

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))  # noqa: S314 - our own output


def one_step_report(*findings: Finding, title: str = "step", subject: str = "mx:25") -> Report:
    step = Step(title=title, status=Status.PASS, elapsed_ms=1500, findings=findings)
    result = ProbeResult(probe="tls", subject=subject, status=Status.PASS, started=T0,
                         elapsed_ms=2000, steps=(step,))
    return Report(tool_version="1", target="t", started=T0, elapsed_ms=3000,
                  status=Status.PASS, results=(result,))


def case_of(report: Report) -> ET.Element:
    (case,) = parse(dumps(report)).iter("testcase")
    return case


def test_a_testsuite_per_probe_and_a_testcase_per_step_with_findings(sample: Report) -> None:
    # Given the sample report (6 probes, some with several subjects and nested steps)
    root = parse(dumps(sample))
    # Then each probe is a testsuite, in run order
    assert [s.get("name") for s in root.iter("testsuite")] == [
        "dns", "tls", "smtp", "imap", "autodiscover", "ews"]
    # And each step that carries findings is a testcase named by it, classed by the subject
    tls = next(s for s in root.iter("testsuite") if s.get("name") == "tls")
    assert [(c.get("name"), c.get("classname")) for c in tls.iter("testcase")] == [
        ("Check the certificate chain", "mx1.contoso.test:25"),
        ("STARTTLS on mx2…:25", "mx2.contoso.test:25"),
    ]


def test_totals_count_failures_errors_and_skips(sample: Report) -> None:
    # Given the sample report as JUnit
    root = parse(dumps(sample))
    # Then the totals and each suite's count match the testcases
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "10", "failures": "1", "errors": "2", "skipped": "1"}
    for suite in root.iter("testsuite"):
        assert int(suite.get("tests", "")) == len(list(suite.iter("testcase")))


@pytest.mark.parametrize(
    ("status", "tag"),
    [(Status.FAIL, "failure"), (Status.ERROR, "error"), (Status.INCONCLUSIVE, "error"),
     (Status.SKIP, "skipped"), (Status.WARN, "system-out")],
)
def test_status_maps_to_the_junit_outcome(status: Status, tag: str) -> None:
    # Given a step with one finding of this status
    finding = Finding(code="c.d", status=status, title="the title", detail="seen this",
                      remediation="do that")
    # When it is written as JUnit
    case = case_of(one_step_report(finding))
    # Then the testcase carries the matching element
    assert [child.tag for child in case] == [tag]


def test_failure_says_what_was_seen_and_what_to_do() -> None:
    finding = Finding(code="tls.cert.expired", status=Status.FAIL, title="Expired",
                      detail="notAfter 2026-01-01", remediation="Renew it.",
                      reference="https://example.test/doc")
    # When a failed step is written
    failure = case_of(one_step_report(finding)).find("failure")
    # Then the failure names the problem and its code, and lists what was seen and to do
    assert failure is not None
    assert failure.get("message") == "Expired"
    assert failure.get("type") == "tls.cert.expired"
    assert failure.text is not None
    assert "notAfter 2026-01-01" in failure.text and "Renew it." in failure.text


def test_warnings_pass_and_list_their_findings_in_system_out() -> None:
    # Given a step with a warning
    finding = Finding(code="w.x", status=Status.WARN, title="Soon", detail="in 20 days")
    # Then its testcase passes, the warning shown in system-out
    case = case_of(one_step_report(finding))
    out = case.find("system-out")
    assert case.find("failure") is None and case.find("error") is None
    assert out is not None and out.text is not None and "[warn] w.x: Soon" in out.text


def test_passing_steps_are_plain_testcases_with_times() -> None:
    # Given a step whose findings all passed
    case = case_of(one_step_report(Finding(code="ok", status=Status.PASS, title="fine")))
    # Then its testcase is empty, with the step's time in seconds
    assert list(case) == []
    assert case.get("time") == "1.500"


def test_steps_without_findings_are_not_testcases() -> None:
    # Given an outer step with no finding around an inner one with a failure
    step = Step(title="outer", status=Status.PASS, elapsed_ms=1, children=(
        Step(title="inner", status=Status.FAIL, elapsed_ms=1, findings=(
            Finding(code="f", status=Status.FAIL, title="broken"),)),))
    result = ProbeResult(probe="p", subject="s", status=Status.FAIL, started=T0,
                         elapsed_ms=1, steps=(step,))
    report = Report(tool_version="1", target="t", started=T0, elapsed_ms=1,
                    status=Status.FAIL, results=(result,))
    # Then only the inner step is a testcase
    assert [c.get("name") for c in parse(dumps(report)).iter("testcase")] == ["inner"]


def test_control_characters_from_servers_still_make_valid_xml() -> None:
    # Given server text with NUL, ESC, a form feed, a lone surrogate and XML specials
    nasty = "a\x00b\x1b[31mc\x0cd\ud800e <tag> & \"q\" ]]>"
    finding = Finding(code="x\x01", status=Status.FAIL, title=nasty, detail=nasty)
    # When it is written as JUnit
    text = dumps(one_step_report(finding, title=nasty, subject=nasty))
    # Then the XML parses and shows the controls as visible escapes
    case = case_of(one_step_report(finding, title=nasty, subject=nasty))
    assert case.get("name") == 'a\\x00b\\x1b[31mc\\x0cd\\ud800e <tag> & "q" ]]>'
    assert text.encode("utf-8")
