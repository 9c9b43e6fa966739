"""The rca web handlers through the ASGI client, with purpose-built probes.

What a user does: pick a test, submit its form, follow the run, download the reports, see
it in the recent runs and compare two runs. Security refusals are in test_web_security.py;
the real browser against the lab in test_web_browser.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from analyzer.api import check
from analyzer.cli import build_parser, options_from_args
from analyzer.core.model import report_from_json
from analyzer.core.targets import parse_target
from analyzer.operations.web.catalogue import CATALOGUE, GROUPS
from tests.web.support import SECRET, client, csrf_of, probes, start_run


class Fields(HTMLParser):
    """Form controls and labels of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.forms: list[dict[str, str | None]] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a)
        elif tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        elif tag == "form":
            self.forms.append(a)
        elif tag == "script":
            self.scripts.append(a)


def parse(page: str) -> Fields:
    fields = Fields()
    fields.feed(page)
    return fields


async def events(http: httpx.AsyncClient, run: str) -> list[dict[str, str]]:
    """Every event of a run (the stream ends with the run)."""
    response = await http.get(f"{run}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(m) for m in re.findall(r"^data: (.*)$", response.text, re.M)]


async def test_start_page_lists_every_test_by_group(tmp_path: Path) -> None:
    # Given the server
    async with client(tmp_path) as http:
        # When the start page is opened
        page = (await http.get("/")).text
    # Then every group is a heading and every test a link to its form, in catalogue order
    for group in GROUPS:
        assert f">{group}</h2>" in page
    links = re.findall(r'href="/test/([a-z0-9_]+)"', page)
    assert links == [t.id for t in CATALOGUE]


@pytest.mark.parametrize("test", [t.id for t in CATALOGUE])
async def test_every_form_field_has_a_label_and_posts(tmp_path: Path, test: str) -> None:
    # Given a test's form
    async with client(tmp_path, resolvers=("192.0.2.53",)) as http:
        page = (await http.get(f"/test/{test}")).text
    fields = parse(page)
    # Then every control has a <label for> and the form is posted, never sent in a URL
    assert fields.controls
    assert all(c.get("id") in fields.labels for c in fields.controls), fields.controls
    run_forms = [f for f in fields.forms if f.get("action") == f"/test/{test}"]
    assert [f.get("method") for f in run_forms] == ["post"]


async def test_a_run_streams_its_steps_then_the_verdict(tmp_path: Path) -> None:
    # Given a submitted IMAP test
    async with client(tmp_path) as http:
        run = await start_run(http, password=SECRET)
        # When its event stream is read to the end
        seen = await events(http, run)
    # Then each planned probe starts and finishes with its section, then the run is done
    kinds = [(e["kind"], e.get("probe")) for e in seen]
    assert kinds[:2] == [("planned", "dns"), ("planned", "imap")]
    assert kinds.index(("finished", "dns")) < kinds.index(("finished", "imap"))
    assert kinds[-1] == ("done", None)
    finished = [e for e in seen if e["kind"] == "finished"]
    assert all('class="card probe' in e["html"] for e in finished)
    assert 'id="verdict"' in seen[-1]["summary"] and 'id="downloads"' in seen[-1]["summary"]


async def test_a_late_stream_replays_only_what_was_not_seen(tmp_path: Path) -> None:
    # Given a finished run whose first three events a page has already shown
    async with client(tmp_path) as http:
        run = await start_run(http)
        everything = await events(http, run)
        # When the stream is opened after them (?after=, as the page does)
        response = await http.get(f"{run}/events", params={"after": "3"})
        reconnect = await http.get(f"{run}/events", headers={"Last-Event-ID": "4"})
    # Then it starts with the fourth (and a reconnect with Last-Event-ID after that one)
    rest = [json.loads(m) for m in re.findall(r"^data: (.*)$", response.text, re.M)]
    assert [(e["kind"], e.get("probe")) for e in rest] == [
        (e["kind"], e.get("probe")) for e in everything[3:]]
    # (a finished run keeps its sections once, in "done": the live ones are dropped)
    assert "html" not in rest[0] and rest[-1] == everything[-1]
    assert re.findall(r"^id: (\d+)$", reconnect.text, re.M)[0] == "5"


async def test_the_finished_run_page_works_without_javascript(tmp_path: Path) -> None:
    # Given a run that waits for a gate
    gate = threading.Event()
    async with client(tmp_path, gate=gate) as http:
        run = await start_run(http, password=SECRET)
        # When its page is loaded while it runs
        running = (await http.get(run)).text
        gate.set()
        await events(http, run)
        finished = (await http.get(run)).text
    # Then the page refreshes itself without JavaScript until the report is ready
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in running
    assert 'data-done="0"' in running
    # And the finished page shows the verdict, what to fix, the checks and the downloads
    assert "http-equiv=\"refresh\"" not in finished
    for marker in ('id="verdict"', 'id="fix"', 'id="downloads"', 'class="card probe'):
        assert marker in finished


async def test_reports_download_as_files_and_match_rca_check(tmp_path: Path) -> None:
    # Given a finished run
    async with client(tmp_path) as http:
        run = await start_run(http, password=SECRET, user="alice")
        await events(http, run)
        page = (await http.get(run)).text
        html = await http.get(f"{run}/report.html")
        raw = await http.get(f"{run}/report.json")
    # Then both come as attachments
    assert html.headers["content-disposition"].startswith('attachment; filename="rca-')
    assert raw.headers["content-disposition"].endswith('.json"')
    assert html.text.startswith("<!DOCTYPE html>") and 'id="verdict"' in html.text
    web = report_from_json(raw.json())
    # And the page shows the rca check command line of the run, without the secret
    command = re.search(r'<pre class="cmd" id="command">([^<]*)</pre>', page)
    assert command is not None
    argv = command.group(1).replace("&#39;", "'").split()
    assert argv[:3] == ["rca", "check", "alice@example.test"] and SECRET not in page
    # And rca check's own option parsing of that command gives the same run
    args = build_parser().parse_args(argv[1:])
    args._default_user = "alice@example.test"
    options = options_from_args(args)
    cli = await check(parse_target("alice@example.test"), options, probes=probes())
    assert web.options == {**cli.options, "credentials": {"username": "alice",
                                                          "secret": "password"}}
    shape = [(r.probe, r.subject, r.status, [f.code for f in r.findings()])
             for r in web.results]
    assert shape == [(r.probe, r.subject, r.status, [f.code for f in r.findings()])
                     for r in cli.results]


async def test_recent_runs_newest_first_open_and_diff(tmp_path: Path) -> None:
    # Given a passing run and then a failing one of the same target and test
    async with client(tmp_path) as http:
        first = await start_run(http)
        await events(http, first)
    async with client(tmp_path, fail=True) as http:
        second = await start_run(http)
        await events(http, second)
        # When the recent-runs page is opened
        page = (await http.get("/history")).text
        keys = re.findall(r'<a href="/history/([^"]+)">open</a>', page)
        opened = await http.get(f"/history/{keys[0]}")
        diff_link = re.search(r'href="(/diff\?old=[^"]+)"', page)
        assert diff_link is not None
        diff = await http.get(diff_link.group(1).replace("&amp;", "&"))
        finished = (await http.get(second)).text
    # Then both runs are listed, newest (the failure) first, with verdict and target
    assert len(keys) == 2 and keys[0] > keys[1]
    rows = re.findall(r'<tr class="s-(\w+)">', page)
    assert rows == ["fail", "pass"]
    assert "alice@example.test" in page and "IMAP" in page
    # And a run opens as its report, under the report's own strict policy
    assert opened.status_code == 200 and 'id="verdict"' in opened.text
    assert "sandbox" in opened.headers["content-security-policy"]
    # And the diff shows what changed, as rca diff does
    assert diff.status_code == 200 and 'id="changes"' in diff.text
    # And the finished run links to that comparison
    assert 'id="changes" href="/diff?old=' in finished


async def test_history_keys_cannot_leave_the_history(tmp_path: Path) -> None:
    # Given a file outside the history folder
    (tmp_path / "secret.json").write_text("{}")
    async with client(tmp_path / "history") as http:
        # When a key tries to walk out of the folder
        responses = [
            await http.get("/history/..%2Fsecret/x"),
            await http.get("/history/../secret.json"),
            await http.get("/diff", params={"old": "../secret", "new": "../secret"}),
        ]
    # Then nothing is found
    assert {r.status_code for r in responses} == {404}


async def test_insecure_needs_the_explicit_confirmation(tmp_path: Path) -> None:
    async with client(tmp_path) as http:
        form = await http.get("/test/imap")
        data = {"csrf": csrf_of(form.text), "target": "alice@example.test",
                "password": SECRET, "insecure": "on"}
        # When "ignore trust" is ticked without "I understand"
        refused = await http.post("/test/imap", data=data)
        # And then with it
        accepted = await http.post("/test/imap", data={**data, "insecure_confirm": "on"})
        page = (await http.get(accepted.headers["location"])).text
    # Then the first is refused, naming the confirmation, and the password is not echoed
    assert refused.status_code == 400
    assert 'href="#f-insecure_confirm"' in refused.text and SECRET not in refused.text
    assert 'name="insecure" type="checkbox" checked' in refused.text
    # And the second runs with --insecure
    assert accepted.status_code == 303 and "--insecure" in page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"target": ""}, "target", "enter an e-mail address"),
        ({"target": "not a target!"}, "target", ""),
        ({"resolver": "203.0.113.9"}, "resolver", "listed DNS servers"),
        ({"ca_file": "/etc/passwd"}, "ca_file", "listed CA files"),
        ({"timeout": "100000"}, "timeout", "from 1 to"),
        ({"timeout": "nan"}, "timeout", "from 1 to"),
        ({"family": "5"}, "family", "IPv4, IPv6"),
        ({"password": "x", "token": "y"}, "token", "not both"),
    ],
)
async def test_bad_fields_are_named_and_nothing_runs(
    tmp_path: Path, fields: dict[str, str], field: str, message: str
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    async with client(tmp_path, ca_files={"Corporate root": ca}) as http:
        form = await http.get("/test/imap")
        data = {"csrf": csrf_of(form.text), "target": "alice@example.test", **fields}
        # When a form with a bad field is sent
        response = await http.post("/test/imap", data=data)
        runs = http._transport.app.state.runs.runs  # type: ignore[attr-defined]
    # Then it comes back with the field marked and explained, and no run started
    assert response.status_code == 400
    assert f'href="#f-{field}"' in response.text and message in response.text
    assert f'id="e-{field}"' in response.text or field == "target"
    assert not runs


async def test_extra_fields_become_their_rca_check_flags(tmp_path: Path) -> None:
    async with client(tmp_path, resolvers=("192.0.2.53",)) as http:
        run = await start_run(
            http, "everything", resolver="192.0.2.53", family="4", timeout="30",
            autodiscover_url="https://ad.example.test/autodiscover/autodiscover.xml",
            all_methods="on", dkim_selector="s1, s2", relay_test="on",
            port="mail.example.test:993 smtp/mx.example.test:2525",
        )
        page = (await http.get(run)).text
    command = re.search(r'id="command">([^<]*)<', page)
    assert command is not None
    assert command.group(1) == (
        "rca check alice@example.test --resolver 192.0.2.53 -4 --timeout 30 "
        "--autodiscover-url https://ad.example.test/autodiscover/autodiscover.xml "
        "--all-methods --relay-test --dkim-selector s1 --dkim-selector s2 "
        "--port mail.example.test:993 --port smtp/mx.example.test:2525"
    )


async def test_a_run_ends_at_its_deadline(tmp_path: Path) -> None:
    # Given a probe that would wait far longer than the run's deadline of 1 s
    gate = threading.Event()
    async with client(tmp_path, gate=gate) as http:
        run = await start_run(http, timeout="1")
        # When the run's events are read
        seen = await events(http, run)
    gate.set()
    # Then the run ended, the hanging check reported as failed at the deadline
    done = seen[-1]
    assert done["kind"] == "done" and done["status"] == "fail"
    assert "probe.deadline_exceeded" in done["checks"] or "run.deadline" in done["checks"]


def test_the_command_line_does_not_import_the_web_stack() -> None:
    # When rca runs a command other than web
    code = ("import sys; from analyzer.cli import main; main(['findings']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'uvicorn', 'analyzer') and m.startswith(('starlette', 'uvicorn', "
            "'analyzer.operations.web'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, cwd=Path(__file__).resolve().parents[2])
    # Then neither Starlette nor uvicorn nor rca web was imported
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_lab_option_offers_the_labs_resolver_and_ca_and_enters_its_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running lab's description (as rca lab up saves it)
    import uvicorn

    import analyzer.protocols.netns
    from analyzer.cli import main
    from analyzer.lab import HostInfo, LabInfo, ScenarioInfo

    ca = tmp_path / "root-ca.pem"
    ca.write_text("")
    anchors = tmp_path / "anchors"
    anchors.write_text("")
    host = HostInfo(name="mail.healthy.test", ipv4="198.18.1.2", ipv6="2001:db8::2")
    LabInfo(
        directory=tmp_path, server_netns="lab-x", client_netns="lab-x-client",
        resolver="198.18.0.53", resolver6="2001:db8::53", client_ipv4="198.18.0.2",
        client_ipv6="2001:db8::c", ca_file=ca, trust_anchor_file=anchors, latency_ms=0,
        latency_method="", started_at=0.0, startup_seconds=0.0,
        scenarios=(ScenarioInfo(name="healthy", domain="healthy.test", description="",
                                hosts={"mail": host}, users=(), signed=True),),
    ).save()
    entered: list[str] = []
    served: list[object] = []
    monkeypatch.setattr(analyzer.protocols.netns, "enter_netns", entered.append)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(self))
    # When rca web --lab starts
    assert main(["web", "--lab", str(tmp_path), "--listen", "127.0.0.1:0",
                 "--history", str(tmp_path / "h")]) == 0
    # Then the checks run in the lab's client namespace, with its DNS server and CA offered
    assert entered == ["lab-x-client"]
    config = served[0].config.app.state.runs.config  # type: ignore[attr-defined]
    assert config.resolvers == ("198.18.0.53",)
    assert config.ca_files == {"rca lab CA": ca} and config.trust_anchor == anchors


async def test_a_live_view_that_cannot_be_drawn_does_not_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a renderer that fails on every live section
    import reports.html

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("drawing bug")

    monkeypatch.setattr(reports.html, "render_result", broken)
    async with client(tmp_path) as http:
        run = await start_run(http)
        seen = await events(http, run)
        report = await http.get(f"{run}/report.json")
    # Then the run still ends with its verdict and its report, and the bug is logged
    assert seen[-1]["kind"] == "done" and seen[-1]["status"] == "pass"
    assert report.status_code == 200 and report.json()["status"] == "pass"
    assert "the live view of dns could not be drawn" in caplog.text
    assert [e["kind"] for e in seen].count("finished") == 2
