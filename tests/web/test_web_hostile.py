"""rca web against hostile input and hostile pages: forged posts, foreign hosts, missing
logins, HTML in server text, and a password that must not outlive its run or leak.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import re
import threading
from pathlib import Path

import httpx
import pytest

from analyzer.cli import check_options
from analyzer.core.context import Credentials
from analyzer.core.errors import UsageError
from analyzer.operations.serve import Allowlist
from analyzer.operations.web.config import WebConfig
from analyzer.operations.web.security import CSP, Guard, hash_password, verify_password
from analyzer.operations.web.server import hash_password_command, main_web, serve_in_thread
from tests.web.support import BASE, SECRET, client, csrf_of, probes, start_run

TOKEN = "an-access-token-for-tests-only-0123456789"  # noqa: S105 - test data


async def finish(http: httpx.AsyncClient, run: str) -> str:
    """Read a run's whole event stream (it ends with the run)."""
    return (await http.get(f"{run}/events")).text


# --- forged requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": BASE, "Sec-Fetch-Site": "cross-site"},
        {"Referer": "http://evil.example/page"},
        {},
    ],
    ids=["foreign-origin", "null-origin", "cross-site-fetch", "foreign-referer", "no-origin"],
)
async def test_a_cross_site_post_is_refused(tmp_path: Path, headers: dict[str, str]) -> None:
    async with client(tmp_path) as http:
        form = await http.get("/test/imap")
        data = {"csrf": csrf_of(form.text), "target": "alice@example.test"}
        del http.headers["Origin"]
        # When the form is posted from another site (even with a valid token)
        response = await http.post("/test/imap", data=data, headers=headers)
        runs = http._transport.app.state.runs.runs  # type: ignore[attr-defined]
    # Then it is refused and nothing runs
    assert response.status_code == 403
    assert not runs


async def test_a_post_without_this_sessions_token_is_refused(tmp_path: Path) -> None:
    async with client(tmp_path) as http:
        other = httpx.AsyncClient(transport=http._transport, base_url=BASE)
        their_token = csrf_of((await other.get("/test/imap")).text)
        await http.get("/test/imap")
        # When a form carries no token, or the token of another session
        missing = await http.post("/test/imap", data={"target": "alice@example.test"})
        foreign = await http.post("/test/imap", data={"target": "alice@example.test",
                                                       "csrf": their_token})
        runs = http._transport.app.state.runs.runs  # type: ignore[attr-defined]
        await other.aclose()
    # Then both are refused and nothing runs
    assert (missing.status_code, foreign.status_code) == (403, 403)
    assert not runs


async def test_a_foreign_host_name_is_refused_on_localhost(tmp_path: Path) -> None:
    # Given the server on localhost, reached through a rebinding name
    async with client(tmp_path) as http:
        response = await http.get("/", headers={"Host": "attacker.example:8080"})
        fine = await http.get("/", headers={"Host": "localhost:8080"})
    assert response.status_code == 421
    assert fine.status_code == 200


async def test_the_address_listened_on_is_a_local_host_name(tmp_path: Path) -> None:
    guard = Guard(hosts=frozenset({"127.0.0.2"}))
    async with client(tmp_path, guard=guard) as http:
        response = await http.get("/", headers={"Host": "127.0.0.2:8080"})
        odd = await http.get("/", headers={"Host": "[bad"})
    assert (response.status_code, odd.status_code) == (200, 421)


async def test_unreadable_forms_are_refused(tmp_path: Path) -> None:
    async with client(tmp_path) as http:
        token = csrf_of((await http.get("/test/imap")).text)
        huge = await http.post("/test/imap", data={"csrf": token, "target": "x" * 70_000})
        wrong = await http.post("/test/imap", content=json.dumps({"csrf": token}),
                                headers={"Content-Type": "application/json"})
    assert (huge.status_code, wrong.status_code) == (400, 400)


async def test_requests_are_rate_limited_per_client(tmp_path: Path) -> None:
    async with client(tmp_path, requests_per_minute=5) as http:
        codes = [(await http.get("/")).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]


async def test_runs_are_limited_at_once_and_per_minute(tmp_path: Path) -> None:
    gate = threading.Event()
    async with client(tmp_path, gate=gate, max_runs=1) as http:
        await start_run(http)
        form = await http.get("/test/imap")
        # When a second run is asked for while the first goes on
        busy = await http.post("/test/imap", data={"csrf": csrf_of(form.text),
                                                    "target": "alice@example.test"})
        gate.set()
    assert busy.status_code == 429 and busy.headers["retry-after"]
    async with client(tmp_path / "b", runs_per_minute=1) as http:
        run = await start_run(http)
        await finish(http, run)
        form = await http.get("/test/imap")
        # When a second run is asked for within the minute
        again = await http.post("/test/imap", data={"csrf": csrf_of(form.text),
                                                     "target": "alice@example.test"})
    assert again.status_code == 429 and "a minute" in again.text


# --- the access token off localhost -----------------------------------------------------------


async def test_off_localhost_every_page_needs_the_token(tmp_path: Path) -> None:
    guard = Guard(token=TOKEN, secure=True, local=False)
    async with client(tmp_path, guard=guard, base="https://rca.example.test") as http:
        # When pages are asked for without logging in
        page = await http.get("/")
        stream = await http.get("/runs/x/events")
        post = await http.post("/test/imap", data={"target": "alice@example.test"})
        login = await http.get("/login")
        css = await http.get("/static/web.css")
        # Then they lead to the login (only it and the static files are open)
        assert (page.status_code, page.headers["location"]) == (303, "/login")
        assert (stream.status_code, post.status_code) == (401, 401)
        assert (login.status_code, css.status_code) == (200, 200)
        token = csrf_of(login.text)
        # When a wrong token is given, and then the right one
        wrong = await http.post("/login", data={"csrf": token, "token": "guess"})
        right = await http.post("/login", data={"csrf": token, "token": TOKEN})
        after = await http.get("/")
    assert wrong.status_code == 403 and TOKEN not in wrong.text
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    assert all(flag in cookie for flag in ("HttpOnly", "SameSite=Strict", "Secure"))
    assert after.status_code == 200 and "Log out" in after.text


def web_args(**kw: object) -> argparse.Namespace:
    defaults: dict[str, object] = dict(config=None, listen=None, cert=None, key=None,
                                       history=None, netns=None, lab=None,
                                       hash_password=False)
    return argparse.Namespace(**{**defaults, **kw})


def test_listening_beyond_localhost_needs_tls_and_an_allowlist(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("")
    with pytest.raises(UsageError, match="needs TLS"):
        main_web(web_args(listen="0.0.0.0:0"),  # noqa: S104 - the refused case
                 build_options=check_options)
    with pytest.raises(UsageError, match="allowlist"):
        main_web(web_args(listen="0.0.0.0:0", cert=cert, key=cert),  # noqa: S104
                 build_options=check_options)


def test_off_localhost_a_token_is_printed_once_and_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given rca web asked to listen on every address, with TLS and an allowlist
    import uvicorn

    served: list[object] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(self))
    pem = tmp_path / "tls.pem"
    pem.write_text("")
    (tmp_path / "web.toml").write_text('[web]\nallow = ["example.test"]\n')
    # When it starts (uvicorn's serving replaced by a recorder)
    code = main_web(web_args(listen="0.0.0.0:0", cert=pem, key=pem,  # noqa: S104
                             config=tmp_path / "web.toml", history=tmp_path / "h"),
                    build_options=check_options)
    # Then it printed an access token once, and the app it serves requires it over TLS
    err = capsys.readouterr().err
    tokens = re.findall(r"access token \(shown once, needed to log in\): (\S+)", err)
    assert code == 0 and len(tokens) == 1 and err.count(tokens[0]) == 1
    config = served[0].config  # type: ignore[attr-defined]
    guard = config.app.state.guard
    assert guard.token == tokens[0] and guard.secure and not guard.local
    assert config.ssl_certfile == str(pem)


async def test_configured_users_log_in_with_their_password(tmp_path: Path) -> None:
    # Given a server whose configuration lists one user (by password hash)
    password = "a-long-user-password"  # noqa: S105 - test data
    guard = Guard(users={"alice": hash_password(password)}, secure=True, local=False)
    async with client(tmp_path, guard=guard, base="https://rca.example.test") as http:
        page = await http.get("/login")
        token = csrf_of(page.text)
        # When a wrong password, an unknown user, then the right password are tried
        wrong = await http.post("/login", data={"csrf": token, "user": "alice",
                                                "password": "guess"})
        nobody = await http.post("/login", data={"csrf": token, "user": "mallory",
                                                 "password": password})
        right = await http.post("/login", data={"csrf": token, "user": "alice",
                                                "password": password})
        after = await http.get("/")
    # Then the login form asks for a user name and password, and only the right pair works
    assert 'id="f-user"' in page.text and 'id="f-token"' not in page.text
    assert (wrong.status_code, nobody.status_code, right.status_code) == (403, 403, 303)
    assert password not in wrong.text + nobody.text
    assert after.status_code == 200


def test_the_guards_secrets_are_not_in_its_repr() -> None:
    # Given a guard with an access token, a user's hash and a logged-in session
    password = "a-long-user-password"  # noqa: S105 - test data
    stored = hash_password(password)
    guard = Guard(token=TOKEN, users={"alice": stored}, local=False)
    session = guard.login(password, user="alice")
    assert session is not None
    # When it is shown (a log line, a traceback with locals, a debugger)
    shown = repr(guard)
    # Then neither the token, the CSRF key, the hash nor the session id is in it
    assert TOKEN not in shown
    assert stored not in shown and stored.split("$")[2] not in shown
    assert session not in shown
    assert guard.key.hex() not in shown and repr(guard.key) not in shown


def test_users_are_configured_by_hash_never_by_password(tmp_path: Path) -> None:
    from analyzer.operations.batch import BatchFileError
    from analyzer.operations.web.config import parse_web_config

    stored = hash_password("a-long-user-password")
    config = parse_web_config({"web": {"users": {"alice": stored}}}, base=tmp_path, source="t")
    assert config.users == {"alice": stored}
    with pytest.raises(BatchFileError, match="never the password itself"):
        parse_web_config({"web": {"users": {"alice": "plain-text"}}}, base=tmp_path, source="t")
    with pytest.raises(BatchFileError, match="written in the file is not accepted"):
        parse_web_config({"web": {"password": "x"}}, base=tmp_path, source="t")


def test_hash_password_reads_stdin_and_prints_a_verifiable_hash(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert hash_password_command(io.StringIO("a-long-user-password\n")) == 0
    printed = capsys.readouterr().out.strip()
    assert verify_password("a-long-user-password", printed)
    assert "a-long-user-password" not in printed
    with pytest.raises(UsageError, match="at least 8"):
        hash_password_command(io.StringIO("short\n"))


async def test_off_localhost_targets_must_be_allowed(tmp_path: Path) -> None:
    allow = Allowlist.parse(["example.test"], where="test")
    async with client(tmp_path, allow=allow) as http:
        token = csrf_of((await http.get("/test/everything")).text)
        base = {"csrf": token, "target": "alice@example.test"}
        other = await http.post("/test/everything", data={**base, "target": "bob@elsewhere.test"})
        url = await http.post("/test/everything", data={
            **base, "autodiscover_url": "https://intranet.corp.test/autodiscover.xml"})
        port = await http.post("/test/everything", data={**base, "port": "10.0.0.1:22"})
    assert other.status_code == url.status_code == port.status_code == 400
    assert "not allowed" in other.text and "not allowed" in url.text and "not allowed" in port.text


# --- server text in the live view ---------------------------------------------------------------


async def test_html_in_a_banner_or_subject_is_shown_as_text(tmp_path: Path) -> None:
    async with client(tmp_path, fail=True) as http:
        run = await start_run(http)
        stream = await finish(http, run)
        page = (await http.get(run)).text
    events = [json.loads(m) for m in re.findall(r"^data: (.*)$", stream, re.M)]
    live = next(e["html"] for e in events if e.get("probe") == "imap" and "html" in e)
    for html in (live, events[-1]["checks"], events[-1]["summary"], page):
        # Then no tag of the server's text reaches the page as markup
        assert "<script>" not in html and "<img" not in html and 'id="injected"' not in html
    assert "&lt;img src=x onerror=" in live and "&lt;b id=&#34;injected&#34;&gt;" in live
    assert "&lt;script&gt;no&lt;/script&gt;" in events[-1]["checks"]


async def test_html_in_the_target_is_shown_as_text(tmp_path: Path) -> None:
    accepted = '"<script>alert(1)</script>"@example.test'
    refused = "<img src=x onerror=alert(1)>@example.test"
    async with client(tmp_path) as http:
        # When a target with markup is refused, and one with markup is run
        form = await http.get("/test/imap")
        bad = await http.post("/test/imap", data={"csrf": csrf_of(form.text),
                                                  "target": refused})
        run = await start_run(http, target=accepted)
        stream = await finish(http, run)
        pages = [bad.text, stream, (await http.get(run)).text,
                 (await http.get("/history")).text]
    # Then every page shows it as text, never as markup
    assert bad.status_code == 400 and "&lt;img src=x onerror=alert(1)&gt;" in bad.text
    for page in pages:
        assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2]


async def test_pages_run_no_inline_script(tmp_path: Path) -> None:
    async with client(tmp_path) as http:
        run = await start_run(http)
        await finish(http, run)
        pages = [await http.get(p) for p in ("/", "/test/imap", run, "/history", "/nowhere")]
    for response in pages:
        policy = response.headers["content-security-policy"]
        assert policy == CSP and "unsafe-inline" not in policy
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", response.text, re.S)
        assert scripts == [""] and '<script src="/static/web.js" defer>' in response.text
        assert response.headers["x-frame-options"] == "DENY"


# --- the password -----------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_the_password_is_in_no_log_history_response_or_memory(tmp_path: Path) -> None:
    # Given a real server (uvicorn), every log line collected
    collect = Collect()
    loggers = [logging.getLogger(n) for n in ("", "rca.web", "uvicorn", "uvicorn.access",
                                                "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(collect)
    old_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    bodies: list[str] = []
    try:
        with serve_in_thread(WebConfig(history=tmp_path), build_options=check_options,
                             probes=probes()) as base, \
                httpx.Client(base_url=base, headers={"Origin": base}) as http:
            form = http.get("/test/imap")
            posted = http.post("/test/imap", data={
                "csrf": csrf_of(form.text), "target": "alice@example.test",
                "password": SECRET})
            run = posted.headers["location"]
            # When the run is followed, downloaded and listed
            for path in (f"{run}/events", run, f"{run}/report.html", f"{run}/report.json",
                         "/history"):
                bodies.append(http.get(path).text)
            history = re.findall(r'href="(/history/[^"]+)"', bodies[-1])
            bodies += [http.get(p).text for p in history]
            bodies.append(posted.text + json.dumps(dict(posted.headers)))
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
        logging.getLogger().setLevel(old_level)
    # Then the run logged in (the transcript shows the login, redacted)
    assert "a1 LOGIN alice \\u00abredacted\\u00bb" in bodies[0]
    # And the password is in no response, no log line and no history file
    assert collect.lines and any("run " in line for line in collect.lines)
    for text in (*bodies, *collect.lines):
        assert SECRET not in text
    files = list(tmp_path.rglob("*"))
    assert any(f.suffix == ".json" for f in files)
    for file in files:
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes()
    # And no credentials holding it are left in memory once the run is over
    gc.collect()
    assert not [o for o in gc.get_objects()
                if isinstance(o, Credentials) and o.password() == SECRET]
