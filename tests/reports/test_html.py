"""The HTML report's content and layout, read back with html.parser."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzer.core.model import Finding, ProbeResult, Report, Status, Step, TranscriptLine, to_json
from reports.html import MAX_TRANSCRIPT_LINES, WORDS, render
from reports.json import dumps
from tests.reports.htmltools import Node, parse

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def result(probe: str, subject: str, *findings: Finding, offset_s: float = 0,
           elapsed_ms: float = 10, transcript: tuple[TranscriptLine, ...] = ()) -> ProbeResult:
    status = max((f.status for f in findings), key=lambda s: s.severity, default=Status.PASS)
    step = Step(title=f"check {subject}", status=status, elapsed_ms=elapsed_ms,
                findings=findings, transcript=transcript)
    return ProbeResult(probe=probe, subject=subject, status=status,
                       started=T0 + timedelta(seconds=offset_s), elapsed_ms=elapsed_ms,
                       steps=(step,))


def report(*results: ProbeResult, elapsed_ms: float = 100, **kw: object) -> Report:
    status = max((r.status for r in results), key=lambda s: s.severity, default=Status.SKIP)
    return Report(tool_version="9.9.9", target="contoso.test", started=T0,
                  elapsed_ms=elapsed_ms, status=status, results=results, **kw)  # type: ignore[arg-type]


def finding(status: Status, code: str = "x.y", **kw: object) -> Finding:
    return Finding(code=code, status=status, title=f"{status.value} {code}", **kw)  # type: ignore[arg-type]


def sections(root: Node) -> list[Node]:
    return root.find_all("section", "probe")


# --- self-contained ---------------------------------------------------------------------------


def test_nothing_in_the_page_loads_a_resource(sample: Report) -> None:
    # Given the HTML of a report with every kind of content
    page = parse(render(sample))
    # Then no element can load anything: no script, image, frame, link, object or form
    tags = {n.tag for n in page.root.iter()}
    assert not tags & {"script", "img", "iframe", "frame", "link", "object", "embed", "form",
                       "base", "audio", "video", "source", "foreignobject"}
    assert not [a for a in page.attrs if a[1] in ("src", "srcset", "action", "background")]
    # And links are in-page anchors, or http(s) references that send no referrer
    for node in page.root.find_all("a"):
        href = node.attrs["href"]
        assert href.startswith("#") or (
            href.startswith("https://") and "noreferrer" in node.attrs["rel"]
        ), href
    # And the icons refer to symbols in the page itself
    assert all(n.attrs["href"].startswith("#i-") for n in page.root.find_all("use"))


def test_csp_forbids_scripts_and_remote_loads_and_allows_only_our_style(sample: Report) -> None:
    # Given the HTML of a report
    html = render(sample)
    page = parse(html)
    # When the Content-Security-Policy meta and the one style sheet are read
    (meta,) = [m for m in page.root.find_all("meta")
               if m.attrs.get("http-equiv", "").lower() == "content-security-policy"]
    policy = dict(part.strip().split(" ", 1) for part in meta.attrs["content"].split(";"))
    (style,) = page.root.find_all("style")
    digest = base64.b64encode(hashlib.sha256(style.text().encode()).digest()).decode()
    # Then nothing may load or run but that style sheet, named by its hash
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'none'"
    assert policy["style-src"] == f"'sha256-{digest}'"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'none'"
    # And the policy comes before the style sheet, so it governs it
    assert html.index("Content-Security-Policy") < html.index("<style>")


# --- the top of the page ----------------------------------------------------------------------


def test_banner_shows_verdict_target_time_duration_version_and_counts(sample: Report) -> None:
    # Given a report with a failure
    page = parse(render(sample))
    # When the banner is read
    banner = page.root.find("header", "verdict")
    text = " ".join(banner.text().split())
    # Then it says what happened, to what, when, for how long and with which rca
    assert "s-fail" in banner.classes
    assert banner.find(cls="word").text() == "Failed"
    assert "alice@contoso.test" in text
    assert sample.started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") in text
    assert f"rca {sample.tool_version}" in text
    # And the counts by status, each with an icon and a word
    chips = [" ".join(c.text().split()) for c in banner.find_all("span", "chip")]
    assert chips == ["1 failed", "1 could not judge", "1 inconclusive", "2 warned", "1 passed",
                     "1 skipped"]


def test_verdict_words_follow_the_exit_code() -> None:
    # Given reports whose worst outcome is each status
    verdicts = {}
    for status in Status:
        page = parse(render(report(result("p", "s", finding(status)))))
        verdicts[status] = page.root.find("header", "verdict").find(cls="word").text()
    # Then error counts as inconclusive (exit 3) and skip as a pass (exit 0)
    assert verdicts == {
        Status.PASS: "Passed",
        Status.WARN: "Passed with warnings",
        Status.FAIL: "Failed",
        Status.INCONCLUSIVE: "Inconclusive",
        Status.ERROR: "Inconclusive",
        Status.SKIP: "Passed",
    }


def test_options_are_shown_and_anything_like_a_secret_is_withheld() -> None:
    # Given options as a report from elsewhere might hold them, one of them a secret
    options = {"resolvers": ["192.0.2.53"], "password": "hunter2", "token_file": "/x/tok",
               "credentials": {"username": "alice@contoso.test", "secret": "password"},
               "ca_file": None, "insecure": True}
    html = render(report(result("p", "s", finding(Status.PASS)), options=options))
    # Then the options are listed, but no secret-looking value is
    assert "hunter2" not in html and "/x/tok" not in html
    text = " ".join(parse(html).root.find("header", "verdict").text().split())
    assert "192.0.2.53" in text
    assert "alice@contoso.test, with a password (not shown)" in text
    assert "1 more at their defaults" in text


def test_what_to_fix_first_ranks_problems_each_with_its_remediation(sample: Report) -> None:
    # Given a report with a failure, an error, an inconclusive result and two warnings
    page = parse(render(sample))
    # When the "what to fix first" list is read
    items = page.root.find("ol", "fixes").find_all("li")
    # Then the worst comes first, and each line says what to do
    assert [i.find(cls="st").text() for i in items] == [
        "Fail", "Error", "Inconclusive", "Warning", "Warning"]
    assert "Install a renewed certificate" in items[0].find(cls="todo").text()
    # And each links to its finding further down
    ids = {n.attrs.get("id") for n in page.root.iter()}
    assert all(i.find("a").attrs["href"][1:] in ids for i in items)


def test_one_problem_on_many_subjects_is_one_line_naming_them() -> None:
    # Given the same failure on four MX hosts
    same = finding(Status.FAIL, "tls.cert.expired", remediation="Renew it.")
    hosts = [result("tls", f"mx{i}.contoso.test:25", same) for i in range(4)]
    # When the report is rendered
    items = parse(render(report(*hosts))).root.find("ol", "fixes").find_all("li")
    # Then it is one line naming the first subjects and counting the rest
    (item,) = items
    assert "mx0.contoso.test:25, mx1.contoso.test:25, mx2.contoso.test:25 and 1 more" in (
        " ".join(item.text().split()))


def test_nothing_to_fix_says_so() -> None:
    # Given a report where everything passed
    # Then the fix list says there is nothing to fix
    page = parse(render(report(result("dns", "contoso.test", finding(Status.PASS)))))
    assert "Nothing to fix" in page.root.find("section").text()


# --- timeline ---------------------------------------------------------------------------------


def test_timeline_places_each_result_by_its_start_and_duration() -> None:
    # Given three results starting at 0, 1 and 2 s into a 4 s run
    results = (
        result("dns", "a", finding(Status.PASS), offset_s=0, elapsed_ms=1000),
        result("tls", "b", finding(Status.FAIL), offset_s=1, elapsed_ms=500),
        result("imap", "c", finding(Status.WARN), offset_s=2, elapsed_ms=2000),
    )
    page = parse(render(report(*results, elapsed_ms=4000)))
    # When the timeline's bars are read
    rows = [r for r in page.root.find(cls="tl").find_all(cls="tl-row") if "axis" not in r.classes]
    bars = [(float(r.find("rect").attrs["x"]), float(r.find("rect").attrs["width"]))
            for r in rows]
    # Then each bar starts and lasts in proportion to the run
    assert bars == [(0.0, 250.0), (250.0, 125.0), (500.0, 500.0)]
    # And each row names its result, with status as icon and word, and links to its section
    assert [" ".join(r.find(cls="tl-label").text().split()) for r in rows] == [
        "Pass: dns: a", "Fail: tls: b", "Warning: imap: c"]
    ids = {s.attrs["id"] for s in sections(page.root)}
    assert all(r.find("a").attrs["href"][1:] in ids for r in rows)


# --- probe sections ---------------------------------------------------------------------------


def test_sections_put_failures_first(sample: Report) -> None:
    # Given results of every status, in run order
    # Then the sections come worst first: fail, error, inconclusive, warn, pass, skip
    page = parse(render(sample))
    order = [next(c for c in s.classes if c.startswith("s-")) for s in sections(page.root)]
    assert order == ["s-fail", "s-error", "s-inconclusive", "s-warn", "s-warn", "s-pass",
                     "s-skip"]


def test_status_is_always_an_icon_and_a_word(sample: Report) -> None:
    # Given every status mark in the page
    marks = parse(render(sample)).root.find_all("span", "st")
    # Then each has its own icon symbol and the status in words
    assert marks
    for mark in marks:
        (status,) = [Status(c[2:]) for c in mark.classes if c.startswith("s-")]
        assert mark.find("use").attrs["href"] == f"#i-{status.value}"
        assert mark.text() == WORDS[status]


def test_steps_that_need_attention_start_open(sample: Report) -> None:
    # Given every step with something inside (findings, transcript, sub-steps)
    steps = parse(render(sample)).root.find_all("details", "step")
    # Then exactly those that need attention are open
    for step in steps:
        attention = bool(step.classes & {"s-fail", "s-error", "s-inconclusive", "s-warn"})
        assert ("open" in step.attrs) == attention


def test_step_tree_shows_action_result_and_elapsed(sample: Report) -> None:
    # Given the TLS result's top step
    page = parse(render(sample))
    tls = next(s for s in sections(page.root) if "mx1.contoso.test:25" in s.find("h3").text())
    summary = tls.find("details", "step").find("summary")
    # Then its summary line reads: result, action, elapsed
    assert summary.find(cls="st").text() == "Fail"
    assert summary.find(cls="t").text() == "STARTTLS on mx1.contoso.test:25"
    assert summary.find(cls="el").text().endswith("ms")
    # And the child step sits inside its parent
    assert "Check the certificate chain" in tls.find(cls="kids").text()


# --- findings and evidence --------------------------------------------------------------------


def _finding(page: Node, code: str) -> Node:
    return next(f for f in page.find_all("div", "finding") if f.find("code").text() == code)


def test_finding_shows_detail_remediation_and_reference_link(sample: Report) -> None:
    # Given the expired-certificate finding
    node = _finding(parse(render(sample)).root, "tls.cert.expired")
    # Then it shows what was seen, what to do, and links its reference without a referrer
    assert "expired 12 days before the check" in node.find("p").text()
    assert "Install a renewed certificate" in node.find("p", "todo").text()
    link = node.find("p", "ref").find("a")
    assert link.attrs["href"] == "https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.5"
    assert "noreferrer" in link.attrs["rel"]


def test_certificates_are_tables_with_expiry_relative_to_the_check(sample: Report) -> None:
    # Given a finding whose evidence is a certificate chain
    node = _finding(parse(render(sample)).root, "tls.cert.expired")
    # Then each certificate is a table, its expiry put in terms of the check's date
    certs = node.find_all(cls="cert")
    assert len(certs) == 2
    rows = {tr.find("th").text(): " ".join(tr.find("td").text().split())
            for tr in certs[0].find_all("tr")}
    assert rows["subject"] == "CN=mx1.contoso.test"
    assert rows["serial"] == "0a1b2c3d4e5f"
    assert rows["not_after"].endswith("UTC (expired 12 days before the check)")
    assert "Certificate 1 of 2" in certs[0].find("caption").text()


def test_record_lists_are_lists(sample: Report) -> None:
    # Given evidence holding a list of records
    node = _finding(parse(render(sample)).root, "dns.mx.found")
    # Then they are a list, one record per item
    assert [li.text() for li in node.find("ul").find_all("li")] == [
        "10 mx1.contoso.test.", "20 mx2.contoso.test."]


def test_mappings_are_key_value_tables(sample: Report) -> None:
    # Given evidence holding headers (a mapping of simple values)
    node = _finding(parse(render(sample)).root, "imap.greeting.slow")
    # Then they are a key/value table
    tables = node.find_all("table", "kv")
    headers = {tr.find("th").text(): tr.find("td").text() for tr in tables[0].find_all("tr")}
    assert headers == {"server": "Dovecot", "x-powered-by": "nothing"}


def test_lists_of_records_with_fields_are_tables_with_columns(sample: Report) -> None:
    # Given evidence holding a list of records with the same fields
    node = _finding(parse(render(sample)).root, "mailauth.spf.softfail_all")
    # Then they are a table with a column per field
    grid = node.find("table", "grid")
    assert [th.text() for th in grid.find_all("th")] == ["mechanism", "lookups"]
    assert [td.text() for td in grid.find_all("td")] == [
        "mx", "1", "include:spf.protection.test", "3"]


def test_other_evidence_is_pretty_json(sample: Report) -> None:
    # Given evidence of a nested shape no partial knows
    node = _finding(parse(render(sample)).root, "imap.greeting.slow")
    # Then it is shown as pretty JSON that reads back to the same data
    assert json.loads(node.find("pre").text()) == {"a": {"b": [1, {"c": None}]}}


def test_transcript_is_folded_with_time_offsets(sample: Report) -> None:
    # Given a step with a six-line SMTP transcript
    page = parse(render(sample))
    tls = next(s for s in sections(page.root) if "mx1.contoso.test:25" in s.find("h3").text())
    fold = tls.find("details", "tx")
    # Then it is folded, and each line has its offset, who spoke, and the text
    assert "open" not in fold.attrs
    assert fold.find("summary").text() == "Transcript (6 lines)"
    lines = fold.find("pre").text().splitlines()
    assert lines[0].split() == ["+0.0", "S:", "220", "mx1.contoso.test", "ESMTP"]
    assert lines[1].split()[1:] == ["C:", "EHLO", "rca.invalid"]


# --- size -------------------------------------------------------------------------------------


def test_a_report_with_200_steps_stays_under_500_kb(big: Report) -> None:
    # Given a report of 200 steps, each with a finding, evidence and a 24-line transcript
    assert sum(1 for r in big.results for s in r.steps for _ in s.walk()) == 200
    # When it is rendered
    size = len(render(big).encode())
    # Then the file stays small enough to attach to a ticket
    assert size < 500_000


def test_huge_evidence_and_transcripts_are_bounded() -> None:
    # Given a server that sent megabytes: long lines, long lists, deep data, long transcripts
    lines = tuple(TranscriptLine(at_ms=i, direction="recv", text="A" * 2000) for i in range(500))
    huge = finding(Status.FAIL, detail="D" * 100_000, evidence={
        "records": ["R" * 5000] * 1000,
        "blob": {"deep": ["x" * 100] * 10_000},
        "headers": {f"h{i}": "v" * 3000 for i in range(500)},
    })
    results = [result("p", f"s{i}", huge, transcript=lines) for i in range(20)]
    # When it is rendered
    html = render(report(*results))
    # Then the file stays bounded, and says where the rest is
    assert len(html.encode()) < 1_500_000
    assert "more characters in the JSON report" in html
    page = parse(html)
    first = page.root.find("details", "tx")
    assert f"{500 - MAX_TRANSCRIPT_LINES} only in the JSON report" in first.find("summary").text()


# --- edge cases -------------------------------------------------------------------------------


def test_a_report_without_results_renders() -> None:
    # Given a report in which no check ran
    # Then it still renders, and says so
    page = parse(render(report()))
    assert "No check ran." in page.root.find("header").text()
    assert not sections(page.root)


def test_rca_report_rerenders_a_saved_json_report(sample: Report, tmp_path: Path) -> None:
    # Given a saved JSON report
    saved = tmp_path / "r.json"
    saved.write_text(dumps(sample), encoding="utf-8")
    out = tmp_path / "again.html"
    # When `rca report FILE.json --html OUT.html` runs
    proc = subprocess.run([sys.executable, "-m", "analyzer", "report", str(saved), "--html",
                           str(out)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    # Then it exits with the report's exit code and writes the same page
    assert proc.returncode == 2, proc.stderr
    assert out.read_text(encoding="utf-8") == render(sample)


def test_rendering_does_not_depend_on_the_report_object_identity(sample: Report) -> None:
    # Given a report read back from JSON (new objects, equal values)
    # Then it renders the same page as the original
    from analyzer.core.model import report_from_json

    again = report_from_json(json.loads(json.dumps(to_json(sample))))
    assert render(again) == render(dataclasses.replace(sample))


def test_tls_sections_show_the_presented_certificate_under_the_heading(sample: Report) -> None:
    # Given the sample's TLS results (probe-tls.html.j2) and its other probes
    page = parse(render(sample))
    by_subject = {(s.attrs["id"], s.find("h3").text()): s for s in sections(page.root)}
    tls = [s for (_, h), s in by_subject.items() if h.split("·")[0].strip().endswith("tls")]
    others = [s for s in by_subject.values() if s not in tls]
    # Then each TLS section names the leaf certificate and when it expires
    texts = sorted(" ".join(s.find(cls="presented").text().split()) for s in tls)
    assert texts[0].startswith("Certificate presented: CN=mx1.contoso.test, valid until ")
    assert texts[0].endswith("(expired 12 days before the check) · 1 more in the chain")
    assert "(expires 60 days after the check)" in texts[1]
    # And other probes keep the default layout (a skipped one says why, see below)
    assert not [s for s in others if s.find_all(cls="presented") and "s-skip" not in s.classes]


def test_certificates_in_the_tls_probes_own_shape_are_tables_too() -> None:
    # Given evidence as probes/tlschain's CertInfo.as_evidence() writes it
    cert = {"source": "presented", "position": 0, "subject": "CN=mx.contoso.test",
            "issuer": "CN=CA", "dns_names": ["mx.contoso.test", "mail.contoso.test"],
            "serial_hex": "0a0b", "not_before": "2026-01-01T00:00:00+00:00",
            "not_after": "2026-12-01T00:00:00+00:00", "key_type": "RSA", "key_bits": 2048,
            "fingerprint_sha256": "ab" * 32, "is_ca": False}
    f = finding(Status.WARN, "tls.cert.expiring_soon", evidence={"certificates": [cert]})
    page = parse(render(report(result("tls", "mx.contoso.test:25", f))))
    # Then the certificate is a table, serial and expiry included
    rows = {tr.find("th").text(): " ".join(tr.find("td").text().split())
            for tr in page.root.find(cls="cert").find_all("tr")}
    assert rows["serial_hex"] == "0a0b"
    assert rows["dns_names"] == "mx.contoso.test, mail.contoso.test"
    assert rows["not_after"] == "2026-12-01 00:00:00 UTC (expires 2 days after the check)"
    assert list(rows)[:3] == ["subject", "issuer", "serial_hex"]


def test_a_skipped_check_says_why_without_opening_anything(sample: Report) -> None:
    # Given a check that was skipped (a fact it needs was never published)
    page = parse(render(sample))
    # Then its section says why, outside the closed step tree
    (skipped,) = [s for s in sections(page.root) if "s-skip" in s.classes]
    assert " ".join(skipped.find(cls="presented").text().split()) == (
        "Not run: no planned check provides 'ews_url'")


def test_a_saved_report_with_times_without_a_zone_still_renders() -> None:
    # Given a hand-edited report: the run's time has no zone, a result's has one
    naive = report(result("dns", "a", finding(Status.WARN)))
    naive = dataclasses.replace(naive, started=T0.replace(tzinfo=None))
    # When it is rendered
    page = parse(render(naive))
    # Then the time is shown as written, and the result sits at the timeline's start
    assert "2026-11-29 12:00:00" in page.root.find("header", "verdict").text()
    assert page.root.find(cls="tl-bar").find("rect").attrs["x"] == "0.0"


def test_parts_are_drawn_exactly_as_in_the_whole_report(sample: Report) -> None:
    # Given the whole report, and its parts drawn on their own (rca web shows them)
    from reports.html import icon_sheet, render_part, render_result, stylesheet

    whole = render(sample)
    # Then the verdict with "what to fix first", the sections, the style and the icons are
    # the very text of the report
    for part in (render_part(sample, "summary"), render_part(sample, "checks"),
                 stylesheet(), icon_sheet().strip()):
        assert part and part in whole
    # And one result's section is its section of the report, under the anchor given
    first = sample.results[0]
    section = render_result(sample, first, anchor="live-0")
    assert section.startswith('<section class="card probe') and 'id="live-0"' in section
    assert all(step.title in section for step in first.steps)


def test_rendering_again_reads_no_template_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a process that has rendered a report once (the templates are compiled)
    sample = report(result("tls", "mx.contoso.test:25", finding(Status.FAIL, "tls.x")))
    render(sample)
    looked: list[str] = []
    real = os.path.getmtime

    def getmtime(path: Any) -> float:
        looked.append(str(path))
        return real(path)

    monkeypatch.setattr(os.path, "getmtime", getmtime)
    # When it renders another
    render(sample)
    # Then no template file was looked at again (a batch writes thousands of reports)
    assert looked == []
