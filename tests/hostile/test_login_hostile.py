"""The login probes against servers that misbehave on purpose, on loopback.

Each hostile case must end as a finding within the deadline (never a crash, a hang or a
huge allocation), and the password must never reach a report, stdout, stderr or a log
record, even from a server that echoes it back.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from analyzer.api import check
from analyzer.cli import main
from analyzer.core.context import Credentials, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from analyzer.lab.pki import LabPKI
from analyzer.protocols import wbxml
from reports.html import render
from reports.json import dumps
from tests.servers.tcp import (
    Script,
    read_http_request,
    serve,
    server_context,
    silent,
    smtp_server,
    tls_then,
)

HOST = "mail.hostile.test"
USER = "alice@hostile.test"
PASSWORD = "S3cret-Hostile-pässword"  # noqa: S105 - the secret the tests hunt for
#: The forms of the secret a careless transcript could leak.
LEAKS = (
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
)

Handler = Callable[[bytes], bytes | None]


@pytest.fixture(scope="module")
def tls_server_context(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "hostile-login", HOST)


def lines(greeting: bytes, handler: Handler) -> Script:
    """A line server: ``greeting``, then ``handler(line)`` for every line (None: close)."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        conn.sendall(greeting)
        reader = conn.makefile("rb", buffering=0)
        while not stop.is_set():
            try:
                line = reader.readline(65536)
            except (OSError, ValueError):
                return
            if not line:
                return
            answer = handler(line.rstrip(b"\r\n"))
            if answer is None:
                return
            try:
                conn.sendall(answer)
            except OSError:
                return

    return script


def endless(conn_bytes: bytes, *, every: float = 0.0) -> Script:
    """Greet, then answer the first command with ``conn_bytes`` repeated until stopped."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hostile ready\r\n")
        try:
            conn.recv(4096)
            while not stop.is_set():
                conn.sendall(conn_bytes)
                if every:
                    stop.wait(every)
        except OSError:
            return

    return script


async def run(service: str, port: int, tests: tuple[str, ...], pki: LabPKI,
              **kw: object) -> Report:  # fmt: skip
    settings: dict[str, object] = {"timeout": 15, "op_timeout": 2, "connect_timeout": 2, **kw}
    options = RunOptions(
        tests=tests, ca_file=pki.ca_file,
        connect={HOST: ("127.0.0.1",)}, extra_ports=((HOST, port, service),),
        credentials=Credentials(USER, password=PASSWORD), **settings,  # type: ignore[arg-type]
    )  # fmt: skip
    report = await check(parse_target("127.0.0.1"), options)
    for text in (render(report), dumps(report)):
        for leak in LEAKS:
            assert leak not in text
    return report


def codes(report: Report) -> dict[str, Status]:
    found: dict[str, Status] = {}
    for _, f in report.findings():
        if f.status.severity >= found.get(f.code, Status.SKIP).severity:
            found[f.code] = f.status
    return found


# --- hostile input: each case a finding, within the deadline ----------------------------------


@pytest.mark.parametrize(
    ("script", "code", "op_timeout"),
    [
        # Every command answered by continuation requests, forever.
        (endless(b"+ go on\r\n"), "imap.protocol_error", 2),
        # A 2 GB literal announced in the CAPABILITY answer, then a trickle.
        (endless(b"* CAPABILITY {2147483648}\r\n" + b"x" * 10, every=0.2), "imap.protocol_error",
         2),
        # One line that never ends.
        (endless(b"* CAPABILITY " + b"A" * 65536), "imap.protocol_error", 2),
        # Untagged lines forever: the line budget (MAX_IMAP_LINES), not the clock, must end it,
        # so the operation timeout is long enough for 50,000 lines on a loaded machine.
        (endless(b"* OK still thinking\r\n" * 100), "imap.protocol_error", 8),
    ],
    ids=["endless-continuation", "literal-2gb", "endless-line", "endless-untagged"],
)
async def test_hostile_imap_ends_as_finding(pki: LabPKI, script: Script, code: str,
                                            op_timeout: float) -> None:
    # Given an IMAP server (port 143 style) that floods its first answer
    with serve(script) as server:
        t0 = time.monotonic()
        report = await run("imap", server.port, ("imap",), pki, op_timeout=op_timeout)
    # Then the probe stops with a protocol finding, in time
    assert time.monotonic() - t0 < 12
    assert codes(report).get(code) == Status.FAIL, codes(report)


async def test_smtp_reply_of_100000_lines(pki: LabPKI) -> None:
    # Given a submission server whose EHLO reply has 100,000 lines
    flood = b"".join(b"250-LINE%d\r\n" % i for i in range(100_000)) + b"250 END\r\n"

    def handler(line: bytes) -> bytes:
        return flood if line.upper().startswith(b"EHLO") else b"502 no\r\n"

    with serve(lines(b"220 hostile ESMTP\r\n", handler)) as server:
        t0 = time.monotonic()
        report = await run("submission", server.port, ("smtp",), pki)
    assert time.monotonic() - t0 < 12
    assert codes(report)["smtp.submission.protocol_error"] == Status.FAIL


async def test_garbage_after_starttls(pki: LabPKI) -> None:
    # Given a submission server that answers STARTTLS with 220, then garbage
    with serve(smtp_server(starttls=True)) as server:
        report = await run("submission", server.port, ("smtp",), pki)
    assert codes(report)["smtp.submission.tls.failed"] == Status.FAIL
    assert "smtp.submission.login.ok" not in codes(report)


async def test_data_injected_before_the_handshake(pki: LabPKI) -> None:
    # Given a server that sends a reply in clear right after its STARTTLS answer
    with serve(smtp_server(extra=b"250 injected\r\n")) as server:
        report = await run("submission", server.port, ("smtp",), pki)
    assert codes(report)["smtp.submission.protocol_error"] == Status.FAIL


async def test_pop3_that_never_ends_capa(pki: LabPKI) -> None:
    def handler(line: bytes) -> bytes:
        return b"+OK\r\n" + b"CAPA-LINE\r\n" * 5000 if line.upper() == b"CAPA" else b"-ERR\r\n"

    with serve(lines(b"+OK hostile\r\n", handler)) as server:
        report = await run("pop3", server.port, ("pop3",), pki)
    assert codes(report)["pop3.protocol_error"] == Status.FAIL


async def test_imap_without_starttls_that_accepts_login(pki: LabPKI) -> None:
    # Given IMAP on 143 with no STARTTLS, LOGIN allowed
    def handler(line: bytes) -> bytes:
        tag = line.split(b" ", 1)[0]
        if b"CAPABILITY" in line.upper():
            return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
        return tag + b" NO never\r\n"

    with serve(lines(b"* OK hostile\r\n", handler)) as server:
        report = await run("imap", server.port, ("imap",), pki)
    # Then "login only without TLS" is a failure, and no password was sent
    assert codes(report)["imap.login.cleartext_only"] == Status.FAIL
    sent = [t.text for r in report.results for s in r.steps for t in s.transcript
            if t.direction == "send"]  # fmt: skip
    assert not any("LOGIN" in t or "AUTHENTICATE" in t for t in sent)


async def test_server_that_never_greets_fails(pki: LabPKI) -> None:
    with serve(silent) as server:
        report = await run("imap", server.port, ("imap",), pki)
    assert codes(report)["imap.timeout"] == Status.FAIL


async def test_server_that_stops_mid_session_is_inconclusive(pki: LabPKI) -> None:
    # Given a server that greets, then never answers a command
    with serve(lines(b"* OK hostile\r\n", lambda line: b"")) as server:
        report = await run("imap", server.port, ("imap",), pki)
    assert codes(report)["imap.timeout"] == Status.INCONCLUSIVE


# --- the password never leaks --------------------------------------------------------------------


def _echo_imap(line: bytes) -> bytes:
    """IMAP over TLS that refuses every login by quoting what it received (base64 too)."""
    tag, _, rest = line.partition(b" ")
    upper = rest.upper()
    if upper.startswith(b"CAPABILITY"):
        return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n" + tag + b" OK done\r\n"
    if upper.startswith((b"AUTHENTICATE", b"LOGIN")):
        blob = rest.split(b" ")[-1]
        decoded = base64.b64decode(blob + b"==", validate=False)
        return (tag + b" NO [AUTHENTICATIONFAILED] you sent " + blob + b" = "
                + decoded.replace(b"\0", b"|") + b"\r\n")
    if upper.startswith(b"LOGOUT"):
        return b"* BYE\r\n" + tag + b" OK bye\r\n"
    return tag + b" BAD what\r\n"


def _echo_pop3(line: bytes) -> bytes:
    upper = line.upper()
    if upper == b"CAPA":
        return b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
    if upper.startswith(b"AUTH"):
        blob = line.split(b" ")[-1]
        return b"-ERR [AUTH] bad " + blob + b" " + base64.b64decode(blob + b"==") + b"\r\n"
    if upper.startswith(b"QUIT"):
        return b"+OK bye\r\n"
    return b"-ERR what\r\n"


def _echo_smtp(line: bytes) -> bytes:
    upper = line.upper()
    if upper.startswith(b"EHLO"):
        return b"250-hostile\r\n250 AUTH PLAIN LOGIN\r\n"
    if upper.startswith(b"AUTH"):
        blob = line.split(b" ")[-1]
        return b"535 5.7.8 bad " + blob + b" " + base64.b64decode(blob + b"==") + b"\r\n"
    if upper.startswith(b"QUIT"):
        return b"221 bye\r\n"
    return b"502 what\r\n"


@pytest.mark.parametrize(
    ("service", "test", "greeting", "handler"),
    [
        ("imaps", "imap", b"* OK hostile\r\n", _echo_imap),
        ("pop3s", "pop3", b"+OK hostile\r\n", _echo_pop3),
        ("submissions", "smtp", b"220 hostile ESMTP\r\n", _echo_smtp),
    ],
)
def test_password_never_leaks_even_when_echoed(
    pki: LabPKI, tls_server_context: ssl.SSLContext, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    service: str, test: str, greeting: bytes, handler: Handler,
) -> None:  # fmt: skip
    # Given a TLS server that quotes the credentials back in its refusal
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    with serve(tls_then(tls_server_context, lines(greeting, handler))) as server:
        # When rca checks it from the command line, with every output written
        code = main([
            "check", "127.0.0.1", "--tests", test, "--port", f"{service}/{HOST}:{server.port}",
            "--connect", f"{HOST}=127.0.0.1", "--ca-file", str(pki.ca_file), "--user", USER,
            "--password-file", str(secret), "--timeout", "15", "--json", str(out / "r.json"),
            "--report", str(out / "r.html"), "--junit", str(out / "r.xml"),
        ])  # fmt: skip
    captured = capsys.readouterr()
    # Then the login failed (the server said so), and no form of the password is anywhere
    assert code == 2
    texts = [captured.out, captured.err, *(r.getMessage() for r in caplog.records)]
    texts += [p.read_text(encoding="utf-8") for p in out.iterdir()]
    assert "login.failed" in (out / "r.json").read_text(encoding="utf-8")
    for text in texts:
        for leak in LEAKS:
            assert leak not in text


# --- HTTP endpoints: NTLM garbage, a WBXML bomb, echoed credentials ---------------------------

HttpHandler = Callable[[str, str, dict[str, str], bytes], tuple[int, list[tuple[str, str]], bytes]]


def http(handler: HttpHandler) -> Script:
    """A keep-alive HTTP/1.1 server (run it inside tls_then) answering with ``handler``."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        reader = conn.makefile("rb")
        while not stop.is_set():
            try:
                request = read_http_request(reader)
                if request is None:
                    return
                method, target, headers, body = request
                status, extra, payload = handler(method, target, headers, body)
                head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in extra) + "\r\n"
                conn.sendall(head.encode("latin-1") + payload)
            except (OSError, ValueError):
                return

    return script


async def run_http(port: int, tests: tuple[str, ...], pki: LabPKI, **kw: object) -> Report:
    options = RunOptions(
        tests=tests, timeout=15, op_timeout=2, connect_timeout=2, ca_file=pki.ca_file,
        connect={HOST: ("127.0.0.1",)}, credentials=Credentials(USER, password=PASSWORD),
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    report = await check(parse_target("127.0.0.1"), options)
    for text in (render(report), dumps(report)):
        for leak in LEAKS:
            assert leak not in text
    return report


@pytest.mark.parametrize(
    "challenge",
    ["NTLM !!!not-base64!!!", "NTLM " + base64.b64encode(b"NTLMSSP\0\x02\0\0\0garbage").decode()],
    ids=["not-base64", "garbage-blob"],
)
async def test_ntlm_challenge_garbage(
    pki: LabPKI, tls_server_context: ssl.SSLContext, challenge: str
) -> None:
    # Given an EWS server that offers NTLM, then answers the negotiate message with garbage
    def handler(method: str, target: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        if "authorization" not in headers:
            return 401, [("WWW-Authenticate", "NTLM")], b""
        return 401, [("WWW-Authenticate", challenge)], b""

    with serve(tls_then(tls_server_context, http(handler))) as server:
        url = f"https://{HOST}:{server.port}/EWS/Exchange.asmx"
        t0 = time.monotonic()
        report = await run_http(server.port, ("ews",), pki, ews_url=url)
    # Then the broken handshake is a finding, in time
    assert time.monotonic() - t0 < 12
    assert codes(report)["ews.auth.broken"] == Status.FAIL


async def test_wbxml_bomb(pki: LabPKI, tls_server_context: ssl.SSLContext) -> None:
    # Given an ActiveSync server whose FolderSync answer nests a million levels deep
    bomb = b"\x03\x01\x6a\x00\x00\x07" + b"\x56" * 1_000_000

    def handler(method: str, target: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        if "authorization" not in headers:
            return 401, [("WWW-Authenticate", 'Basic realm="x"')], b""
        if method == "OPTIONS":
            return 200, [("MS-ASProtocolVersions", "14.0"),
                         ("MS-ASProtocolCommands", "FolderSync,Provision")], b""
        return 200, [("Content-Type", "application/vnd.ms-sync.wbxml")], bomb

    with serve(tls_then(tls_server_context, http(handler))) as server:
        url = f"https://{HOST}:{server.port}/Microsoft-Server-ActiveSync"
        t0 = time.monotonic()
        report = await run_http(server.port, ("activesync",), pki, activesync_url=url)
    # Then the bomb is refused by the decoder's limits, as a finding, quickly
    assert time.monotonic() - t0 < 12
    assert codes(report)["activesync.wbxml_invalid"] == Status.FAIL


def test_password_never_leaks_from_http_probes(
    pki: LabPKI, tls_server_context: ssl.SSLContext, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Given an EWS server offering Basic that answers the login with the credentials it got
    def handler(method: str, target: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        auth = headers.get("authorization")
        if auth is None:
            return 401, [("WWW-Authenticate", 'Basic realm="x"')], b""
        decoded = base64.b64decode(auth.split(" ", 1)[1])
        echo = f"you sent {auth} = ".encode() + decoded
        return 403, [("X-Echo", auth)], echo

    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    with serve(tls_then(tls_server_context, http(handler))) as server:
        code = main([
            "check", "127.0.0.1", "--tests", "ews", "--ews-url",
            f"https://{HOST}:{server.port}/EWS/Exchange.asmx", "--connect", f"{HOST}=127.0.0.1",
            "--ca-file", str(pki.ca_file), "--user", USER, "--password-file", str(secret),
            "--timeout", "15", "--json", str(out / "r.json"), "--report", str(out / "r.html"),
            "--junit", str(out / "r.xml"), "--format", "json",
        ])  # fmt: skip
    captured = capsys.readouterr()
    # Then the refusal is reported, and no form of the password is anywhere
    assert code == 2
    assert "ews.forbidden" in (out / "r.json").read_text(encoding="utf-8")
    texts = [captured.out, captured.err, *(r.getMessage() for r in caplog.records)]
    texts += [p.read_text(encoding="utf-8") for p in out.iterdir()]
    for text in texts:
        for leak in LEAKS:
            assert leak not in text


_EWS_FIXTURES = Path(__file__).parent.parent / "fixtures" / "ews"


async def test_ews_free_busy_and_oof_answers_that_are_not_ews(
    pki: LabPKI, tls_server_context: ssl.SSLContext
) -> None:
    # Given an EWS server (Basic) answering GetFolder with Microsoft's documented answer, but
    # GetUserAvailability with an HTML error page (HTTP 500, no SOAP fault) and
    # GetUserOofSettings with an entity-expansion bomb
    bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode()
                       for i in range(8))
            + b"]><l>&i;</l>")  # fmt: skip

    def handler(method: str, target: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        if "authorization" not in headers:
            return 401, [("WWW-Authenticate", 'Basic realm="x"')], b""
        xml = [("Content-Type", "text/xml; charset=utf-8")]
        if b"GetUserAvailabilityRequest" in body:
            return 500, [("Content-Type", "text/html")], b"<html><h1>Runtime Error</h1></html>"
        if b"GetUserOofSettingsRequest" in body:
            return 200, xml, bomb
        return 200, xml, (_EWS_FIXTURES / "getfolder-inbox.xml").read_bytes()

    with serve(tls_then(tls_server_context, http(handler))) as server:
        url = f"https://{HOST}:{server.port}/EWS/Exchange.asmx"
        t0 = time.monotonic()
        report = await run_http(server.port, ("ews",), pki, ews_url=url)
    # Then GetFolder passes, the error page is a server error and the bomb is not SOAP, quickly
    assert time.monotonic() - t0 < 12
    found = codes(report)
    assert found["ews.getfolder.ok"] == Status.PASS
    assert found["ews.server_error"] == Status.FAIL
    assert found["ews.not_soap"] == Status.FAIL
    assert "ews.availability.ok" not in found and "ews.oof.ok" not in found


def _activesync(folder_sync: Callable[[str], tuple[int, list[tuple[str, str]], bytes]]
                ) -> HttpHandler:  # fmt: skip
    """An ActiveSync server (Basic) whose FolderSync answers come from ``folder_sync(path)``."""

    def handler(method: str, target: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        if "authorization" not in headers:
            return 401, [("WWW-Authenticate", 'Basic realm="x"')], b""
        if method == "OPTIONS":
            return 200, [("MS-ASProtocolVersions", "12.1,14.0"),
                         ("MS-ASProtocolCommands", "FolderSync,Provision")], b""
        return folder_sync(target)

    return handler



def _fh(name: str, text: str | None = None, *children: wbxml.Element) -> wbxml.Element:
    return wbxml.Element(tag=f"FolderHierarchy:{name}", text=text, children=children)


# FolderSync status 1 with an Inbox (folder type 2), the least a mailbox has.
_FOLDERSYNC_OK = wbxml.encode(_fh("FolderSync", None, _fh("Status", "1"), _fh("SyncKey", "1"),
                                  _fh("Changes", None, _fh("Count", "1"), _fh(
                                      "Add", None, _fh("ServerId", "1"), _fh("ParentId", "0"),
                                      _fh("DisplayName", "Inbox"), _fh("Type", "2")))))


async def test_activesync_503_is_inconclusive(pki: LabPKI,
                                              tls_server_context: ssl.SSLContext) -> None:
    handler = _activesync(lambda path: (503, [("Retry-After", "60")], b"busy"))
    with serve(tls_then(tls_server_context, http(handler))) as server:
        url = f"https://{HOST}:{server.port}/Microsoft-Server-ActiveSync"
        report = await run_http(server.port, ("activesync",), pki, activesync_url=url)
    assert codes(report)["activesync.throttled"] == Status.INCONCLUSIVE


async def test_activesync_451_is_followed_once(pki: LabPKI,
                                               tls_server_context: ssl.SSLContext) -> None:
    # Given a server that redirects FolderSync to another path of itself with 451
    port: list[int] = []

    def folder_sync(path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.startswith("/moved/"):
            return 200, [("Content-Type", "application/vnd.ms-sync.wbxml")], _FOLDERSYNC_OK
        return 451, [("X-MS-Location",
                      f"https://{HOST}:{port[0]}/moved/Microsoft-Server-ActiveSync")], b""

    with serve(tls_then(tls_server_context, http(_activesync(folder_sync)))) as server:
        port.append(server.port)
        url = f"https://{HOST}:{server.port}/Microsoft-Server-ActiveSync"
        report = await run_http(server.port, ("activesync",), pki, activesync_url=url)
    found = codes(report)
    # Then the redirect is reported and the sync at the new place succeeds
    assert found["activesync.redirect"] == Status.WARN
    assert found["activesync.foldersync.ok"] == Status.PASS
