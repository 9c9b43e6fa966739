"""The JUnit XML report (``--junit FILE``), so CI systems show a check's problems as tests.

Shape (the de-facto schema Jenkins, GitLab and GitHub test reporters read)::

    <testsuites name="rca alice@example.com" tests= failures= errors= skipped= time=>
      <testsuite name="<probe id>" timestamp= hostname= ...>      one per probe
        <testcase name="<step title>" classname="<subject>" time=>  one per step
          <failure | error | skipped | system-out>                  with findings

* A **testcase** is a step that carries findings (steps without findings are the path
  taken, not judgements); ``name`` is the step title, ``classname`` the result's subject
  (``mx1.example.com:25``, a domain, a URL), so one probe's subjects group apart.
* Its outcome is the worst of the step's own findings: ``fail`` → ``<failure>``;
  ``error`` and ``inconclusive`` → ``<error>`` (JUnit's "could not run the test
  properly": rca, or the target, did not let us judge — never reported as a failure,
  as in the exit code); ``skip`` → ``<skipped>``.
* ``warn`` is **not** a failure: JUnit has no warning outcome, and a failed build for a
  certificate that expires in 20 days would teach people to ignore the report. The
  testcase passes and its findings go to ``<system-out>``, where the CI systems above
  show them next to the test. ``pass`` testcases carry no body.
* Failure and error text lists every non-passing finding of the step: status, code,
  title, detail, remediation, reference.

Server text may hold characters XML 1.0 cannot carry (NUL, ESC…): they are written as
visible ``\\xNN`` escapes (:func:`reports.summary.clean_text`), so the file always parses.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - we only write XML here, never parse it
from collections.abc import Iterable

from analyzer.core.model import Finding, ProbeResult, Report, Status, Step, worst
from reports.summary import clean_text, truncate

__all__ = ["dumps"]

#: Characters of one failure/output text (the JSON report keeps everything).
MAX_TEXT = 16_000


def _text(value: str, limit: int = MAX_TEXT) -> str:
    return truncate(clean_text(value), limit)


def _seconds(ms: float) -> str:
    return f"{max(ms, 0.0) / 1000:.3f}"


def _describe(findings: Iterable[Finding]) -> str:
    parts = []
    for f in findings:
        lines = [f"[{f.status.value}] {f.code}: {f.title}"]
        if f.detail:
            lines.append(f"  seen: {f.detail}")
        if f.remediation:
            lines.append(f"  what to do: {f.remediation}")
        if f.reference:
            lines.append(f"  reference: {f.reference}")
        parts.append("\n".join(lines))
    return "\n".join(parts)


def _steps_with_findings(result: ProbeResult) -> Iterable[Step]:
    for top in result.steps:
        for step in top.walk():
            if step.findings:
                yield step


def _testcase(suite: ET.Element, result: ProbeResult, step: Step) -> Status:
    case = ET.SubElement(
        suite,
        "testcase",
        name=_text(step.title, 500),
        classname=_text(result.subject, 500),
        time=_seconds(step.elapsed_ms),
    )
    status = worst((f.status for f in step.findings), default=Status.PASS)
    notable = [f for f in step.findings if f.status != Status.PASS]
    if not notable:
        return status
    first = max(notable, key=lambda f: f.status.severity)
    if status in (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE):
        tag = "failure" if status == Status.FAIL else "error"
        element = ET.SubElement(
            case, tag, message=_text(first.title, 500), type=_text(first.code, 200)
        )
        element.text = _text(_describe(notable))
    elif status == Status.SKIP:
        ET.SubElement(case, "skipped", message=_text(first.detail or first.title, 500))
    elif status == Status.WARN:
        ET.SubElement(case, "system-out").text = _text(_describe(notable))
    return status


def dumps(report: Report) -> str:
    """The report as JUnit XML text (UTF-8 declaration, ends with a newline)."""
    root = ET.Element("testsuites", name=_text(f"rca {report.target}", 500))
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    by_probe: dict[str, list[ProbeResult]] = {}
    for result in report.results:
        by_probe.setdefault(result.probe, []).append(result)
    for probe, results in by_probe.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_text(probe, 200),
            timestamp=min(r.started for r in results).isoformat(timespec="seconds"),
            time=_seconds(sum(r.elapsed_ms for r in results)),
        )
        counted = dict.fromkeys(totals, 0)
        for result in results:
            for step in _steps_with_findings(result):
                status = _testcase(suite, result, step)
                counted["tests"] += 1
                if status == Status.FAIL:
                    counted["failures"] += 1
                elif status in (Status.ERROR, Status.INCONCLUSIVE):
                    counted["errors"] += 1
                elif status == Status.SKIP:
                    counted["skipped"] += 1
        for key, value in counted.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(report.elapsed_ms))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
