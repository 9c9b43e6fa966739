"""History of runs and the comparison of two reports (analyzer/operations/history.py): pure,
no network."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzer.core.model import Finding, ProbeResult, Report, Status, Step, to_json
from analyzer.operations.history import History, diff, dns_records, format_text, load_report
from reports.html import render
from reports.json import dumps

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def finding(code: str, status: Status = Status.PASS, **evidence: Any) -> Finding:
    return Finding(code=code, status=status, title=code.replace(".", " "), evidence=evidence)


def result(probe: str, subject: str, *findings: Finding,
           facts: Mapping[str, Any] | None = None) -> ProbeResult:
    status = max((f.status for f in findings), key=lambda s: s.severity, default=Status.PASS)
    step = Step(title=f"{probe} {subject}", status=status, elapsed_ms=1.0, findings=findings)
    return ProbeResult(probe=probe, subject=subject, status=status, started=T0, elapsed_ms=1.0,
                       steps=(step,), facts=dict(facts or {}))


def report(*results: ProbeResult, started: datetime = T0) -> Report:
    status = max((r.status for r in results), key=lambda s: s.severity, default=Status.PASS)
    return Report(tool_version="test", target="example.test", started=started, elapsed_ms=5.0,
                  status=status, results=results)


def cert(serial: str, not_after: datetime) -> dict[str, Any]:
    return {"subject": "CN=mx.example.test", "serial_hex": serial,
            "not_after": not_after.isoformat(), "is_ca": False}


def tls(serial: str, not_after: datetime) -> ProbeResult:
    return result("tls", "mx.example.test:25",
                  finding("tls.chain.valid", certificates=[cert(serial, not_after)]))


def ports(state: str, status: Status = Status.PASS) -> ProbeResult:
    code = "ports.open" if state == "open" else f"ports.{state}"
    return result("ports", "mx.example.test:25",
                  finding(code, status, address="192.0.2.25", port=25, state=state))


def mx(*hosts: str) -> ProbeResult:
    return result("dns", "example.test", finding("dns.mx.found"),
                  facts={"mx_hosts": [{"preference": 10, "host": h, "ipv4": ["192.0.2.25"],
                                       "ipv6": []} for h in hosts]})


def spf(record: str | None) -> ProbeResult:
    if record is None:
        return result("mailauth", "example.test", finding("dns.spf.missing", Status.FAIL))
    return result("mailauth", "example.test", finding("dns.spf.valid", record=record))


def kinds(items: Sequence[Any]) -> list[tuple[str, str]]:
    return [(c.kind, c.direction) for c in items]


# --- diff ---------------------------------------------------------------------------------------


def test_identical_reports_have_no_changes() -> None:
    # Given the same report twice
    old = report(mx("mx.example.test"), ports("open"))
    # When they are compared
    changes = diff(old, replace(old, started=T0 + timedelta(hours=1)))
    # Then nothing changed
    assert changes.items == ()


def test_a_new_failure_is_listed_as_new_and_worse() -> None:
    # Given a run where the SPF record is fine, then one where it is gone
    old, new = report(spf("v=spf1 mx -all")), report(spf(None))
    # When they are compared
    changes = diff(old, new)
    # Then the missing record is a new failure, and the verdict got worse
    new_items = [c for c in changes.items if c.kind == "new"]
    assert [(c.code, c.after, c.direction) for c in new_items] == [
        ("dns.spf.missing", "fail", "worse")
    ]
    assert ("verdict", "worse") in kinds(changes.items)


def test_a_problem_that_went_away_is_resolved() -> None:
    # Given a failing port, then an open one
    old = report(ports("filtered", Status.FAIL))
    new = report(ports("open"))
    # When they are compared
    changes = diff(old, new)
    # Then the failure is resolved (for the better)
    resolved = [c for c in changes.items if c.kind == "resolved"]
    assert [(c.code, c.before, c.direction) for c in resolved] == [
        ("ports.filtered", "fail", "better")
    ]


def test_a_finding_whose_status_changed_is_a_status_change() -> None:
    # Given a certificate finding that warned, then failed
    old = report(result("tls", "mx.example.test:25", finding("tls.cert.expiry", Status.WARN)))
    new = report(result("tls", "mx.example.test:25", finding("tls.cert.expiry", Status.FAIL)))
    # When they are compared
    changes = diff(old, new)
    # Then it is one status change warn -> fail, for the worse (and no duplicate per check)
    status = [c for c in changes.items if c.kind == "status"]
    assert [(c.before, c.after, c.direction) for c in status] == [("warn", "fail", "worse")]


def test_a_rotated_certificate_is_reported_with_both_serials() -> None:
    # Given a certificate replaced by a new one between runs
    old = report(tls("aa01", T0 + timedelta(days=20)))
    new = report(tls("bb02", T0 + timedelta(days=400)), started=T0 + timedelta(days=1))
    # When they are compared
    (change,) = [c for c in diff(old, new).items if c.kind == "certificate"]
    # Then the rotation names the old and the new serial
    assert "rotated" in change.title
    assert change.before is not None and "aa01" in change.before
    assert change.after is not None and "bb02" in change.after


def test_a_certificate_near_expiry_gets_a_countdown() -> None:
    # Given the same certificate, 12 days from expiry at the new run
    not_after = T0 + timedelta(days=13)
    old = report(tls("aa01", not_after))
    new = report(tls("aa01", not_after), started=T0 + timedelta(days=1))
    # When they are compared
    (change,) = [c for c in diff(old, new).items if c.kind == "certificate"]
    # Then it counts down: 12 days left now, 13 at the previous run
    assert (change.direction, change.after, change.before) == (
        "worse", "12 days left", "13 days left"
    )


def test_changed_mx_records_are_reported_before_and_after() -> None:
    # Given the MX moved to another host
    old, new = report(mx("mx1.example.test")), report(mx("mx2.example.test"))
    # When they are compared
    (change,) = [c for c in diff(old, new).items if c.kind == "dns"]
    # Then the change shows both record sets
    assert change.title == "MX records changed"
    assert change.before is not None and "mx1.example.test" in change.before
    assert change.after is not None and "mx2.example.test" in change.after


def test_changed_spf_record_is_a_dns_change() -> None:
    # Given the SPF record edited between runs
    old, new = report(spf("v=spf1 mx -all")), report(spf("v=spf1 mx ~all"))
    # When they are compared
    changes = [c for c in diff(old, new).items if c.kind == "dns"]
    # Then it is one SPF change with the two records
    assert [(c.title, c.before, c.after) for c in changes] == [
        ("SPF records changed", "v=spf1 mx -all", "v=spf1 mx ~all")
    ]


def test_dns_records_are_only_compared_when_both_runs_looked() -> None:
    # Given one run with the mail-authentication check and one without it
    old, new = report(spf("v=spf1 -all")), report(mx("mx.example.test"))
    # When the records of each are read and compared
    changes = [c for c in diff(old, new).items if c.kind == "dns"]
    # Then nothing is reported as changed: the second run did not look at SPF
    assert dns_records(new) == {"MX": "10 mx.example.test (192.0.2.25)"}
    assert changes == []


def test_a_port_that_stopped_answering_is_reported() -> None:
    # Given port 25 open, then filtered
    old, new = report(ports("open")), report(ports("filtered", Status.FAIL))
    # When they are compared
    (change,) = [c for c in diff(old, new).items if c.kind == "port"]
    # Then the port change says open -> filtered, for the worse
    assert (change.before, change.after, change.direction) == ("open", "filtered", "worse")


def test_changes_are_listed_worst_first() -> None:
    # Given a run that gained a failure and lost another
    old = report(result("x", "a", finding("x.old", Status.FAIL)))
    new = report(result("x", "a", finding("x.new", Status.FAIL)))
    # When they are compared
    changes = diff(old, new)
    # Then the new problem comes before the resolved one
    order = [c.kind for c in changes.items]
    assert order.index("new") < order.index("resolved")


def test_text_format_marks_direction_and_shows_dns_records() -> None:
    # Given an MX change and a new failure
    old = report(mx("mx1.example.test"))
    new = report(mx("mx2.example.test"), ports("filtered", Status.FAIL))
    # When the changes are formatted as text
    text = format_text(diff(old, new))
    # Then each line is marked (- worse, ~ other) and the records are shown
    assert "  - [new]" in text
    assert "  ~ [dns] MX records changed" in text
    assert "after:  10 mx2.example.test" in text


# --- the HTML section ---------------------------------------------------------------------------


def test_html_report_shows_changes_since_the_previous_run() -> None:
    # Given a comparison with a new failure whose title holds markup from a server
    old = report(ports("open"))
    bad = finding("ports.filtered", Status.FAIL, address="192.0.2.25", port=25, state="filtered")
    new = report(result("ports", "mx.example.test:25",
                        replace(bad, title="<script>alert(1)</script>")))
    # When the new report is rendered with the changes
    html = render(new, changes=diff(old, new))
    # Then the section is there, and the server's text is escaped
    assert 'id="changes"' in html and "Changes since the previous run" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html


def test_html_report_without_history_has_no_changes_section() -> None:
    # Given a report rendered as `rca check` does
    html = render(report(ports("open")))
    # Then there is no changes section
    assert 'id="changes"' not in html


# --- keeping runs -------------------------------------------------------------------------------


def save(history: History, started: datetime) -> Path:
    r = report(ports("open"), started=started)
    return history.save("example", r, dumps(r))


def test_history_keeps_the_newest_runs(tmp_path: Path) -> None:
    # Given a history keeping 3 runs
    history = History(tmp_path, keep=3)
    # When 5 runs are saved an hour apart
    paths = [save(history, T0 + timedelta(hours=h)) for h in range(5)]
    # Then only the last 3 remain, and the latest is the newest
    assert history.runs("example") == paths[2:]
    latest = history.latest("example")
    assert latest is not None and latest.started == T0 + timedelta(hours=4)


def test_history_removes_runs_older_than_keep_days_but_never_the_newest(tmp_path: Path) -> None:
    # Given a history keeping runs for 7 days, with one run 30 days old
    history = History(tmp_path, keep=100, keep_days=7)
    old = save(history, T0)
    # When it is pruned 30 days later, with no newer run
    history.prune("example", now=T0 + timedelta(days=30))
    # Then the only run stays (the next run compares with it)
    assert history.runs("example") == [old]
    # And when a new run arrives, the old one goes
    new = save(history, T0 + timedelta(days=30))
    assert history.runs("example") == [new]


def test_history_passes_over_an_unreadable_run(tmp_path: Path) -> None:
    # Given a good run and a newer file cut short by a crash
    history = History(tmp_path)
    save(history, T0)
    (tmp_path / "example" / "20261102T000000000000Z.json").write_text("{", encoding="utf-8")
    # When the latest run is read
    latest = history.latest("example")
    # Then the good one is returned
    assert latest is not None and latest.started == T0


def test_history_latest_before_ignores_the_run_being_compared(tmp_path: Path) -> None:
    # Given a history holding the run of T0 + 1 h
    history = History(tmp_path)
    save(history, T0)
    save(history, T0 + timedelta(hours=1))
    # When the previous run of the one at T0 + 1 h is asked for
    previous = history.latest("example", before=T0 + timedelta(hours=1))
    # Then it is the one at T0
    assert previous is not None and previous.started == T0


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".."])
def test_history_refuses_names_that_are_not_one_folder(tmp_path: Path, name: str) -> None:
    # Given a name that would leave the history folder
    # When it is used, Then it is refused
    with pytest.raises(ValueError, match="cannot name"):
        History(tmp_path).runs(name)


# --- rca diff ---------------------------------------------------------------------------------


def rca(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True,
                          text=True, timeout=60, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})


def write(path: Path, r: Report) -> Path:
    path.write_text(dumps(r), encoding="utf-8")
    return path


def test_rca_diff_prints_the_changes_and_exits_1(tmp_path: Path) -> None:
    # Given two saved reports: port 25 open, then filtered
    old = write(tmp_path / "old.json", report(ports("open")))
    new = write(tmp_path / "new.json", report(ports("filtered", Status.FAIL)))
    # When `rca diff` compares them
    out = rca("diff", str(old), str(new))
    # Then it lists the change and exits 1 (something changed)
    assert out.returncode == 1, out.stderr
    assert "open → filtered" in out.stdout


def test_rca_diff_of_identical_reports_exits_0(tmp_path: Path) -> None:
    # Given the same report twice
    old = write(tmp_path / "old.json", report(ports("open")))
    # When `rca diff` compares them as JSON
    out = rca("diff", str(old), str(old), "--format", "json")
    # Then nothing changed: exit 0, an empty list
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"] == []


def test_rca_diff_of_a_file_that_is_no_report_exits_3(tmp_path: Path) -> None:
    # Given a JSON file that is not a report
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1}', encoding="utf-8")
    good = write(tmp_path / "good.json", report(ports("open")))
    # When `rca diff` reads it
    out = rca("diff", str(bad), str(good))
    # Then it exits 3 with one line, no traceback
    assert out.returncode == 3
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_saved_report_round_trips_for_comparison(tmp_path: Path) -> None:
    # Given a report saved as JSON
    r = report(mx("mx.example.test"), tls("aa01", T0 + timedelta(days=90)))
    path = write(tmp_path / "r.json", r)
    # When it is loaded back
    again = load_report(path)
    # Then it compares as unchanged with the original
    assert diff(r, again).items == ()
    assert to_json(again) == to_json(r)
