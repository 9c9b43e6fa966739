"""A login session starts as soon as its endpoint is known, and settles before the login.

The IMAP probe ``awaits`` the mail settings (autoconfig's merge, which waits for
Autodiscover): an endpoint known without them (here ``--port``) is connected to, greeted
and asked for its capabilities at once; the credential policy's verdict, the source shown
for the endpoint and the TLS check's note come from the settled facts, and no credential
is sent before they are settled. A purpose-built probe publishes the mail settings (and
the TLS verdicts) only once the test server has seen the session's CAPABILITY, so the
order of events in the server's log shows what waited for what; on the code that waited
for the settings before connecting, the settings come first (after a fallback wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, RunOptions
from analyzer.core.facts import MAIL_SETTINGS, TLS_VERDICTS, MailServerSetting, TlsVerdicts
from analyzer.core.model import Report, Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target, parse_target
from analyzer.lab.pki import LabPKI
from probes.imap import PROBE as IMAP
from tests.servers.tcp import Script, TcpServer, serve, server_context, tls_then

HOST = "mail.settle.test"
USER = "alice@settle.test"
PASSWORD = "Settle-Pa55word-2b7e"  # noqa: S105 - a test secret
#: How long the settings wait for the session's CAPABILITY before giving up (only the old
#: behaviour ever waits that long: the order of events decides, not the time).
FALLBACK_S = 4.0


class Events:
    """What happened, in order: the server's log and the fake providers' publications."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.capability = threading.Event()
        self.login = threading.Event()

    def add(self, item: str) -> None:
        with self.lock:
            self.items.append(item)

    def index(self, item: str) -> int:
        with self.lock:
            return self.items.index(item)


def imap_server(events: Events, starttls: ssl.SSLContext | None = None) -> Script:
    """IMAP: greeting, CAPABILITY, AUTHENTICATE PLAIN (accepted), EXAMINE, LIST, LOGOUT, and
    STARTTLS with ``starttls``; every command logged (a credential only as the word
    ``credentials``)."""

    def session(conn: socket.socket, stop: threading.Event) -> None:
        with contextlib.ExitStack() as stack:
            talk(conn, stop, stack)

    def talk(conn: socket.socket, stop: threading.Event, stack: contextlib.ExitStack) -> None:
        upgrade = starttls
        events.add("connected")
        events.connected.set()
        conn.sendall(b"* OK settle test ready\r\n")
        reader = conn.makefile("rb", buffering=0)
        while not stop.is_set():
            line = reader.readline(65536).rstrip(b"\r\n")
            if not line:
                return
            tag, _, rest = line.partition(b" ")
            command = rest.split(b" ", 1)[0].upper().decode(errors="replace")
            events.add("credentials" if command in ("AUTHENTICATE", "LOGIN") else command)
            if command in ("AUTHENTICATE", "LOGIN"):
                events.login.set()
            if command == "CAPABILITY":
                extra = b" STARTTLS LOGINDISABLED" if upgrade is not None else b""
                conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR" + extra + b"\r\n"
                             + tag + b" OK\r\n")  # fmt: skip
                events.capability.set()
            elif command == "STARTTLS" and upgrade is not None:
                conn.sendall(tag + b" OK begin TLS\r\n")
                conn = upgrade.wrap_socket(conn, server_side=True)
                stack.enter_context(conn)
                reader = conn.makefile("rb", buffering=0)
                upgrade = None
            elif command == "AUTHENTICATE":
                conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1] logged in\r\n")
            elif command == "EXAMINE":
                conn.sendall(b"* 0 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n" + tag
                             + b" OK [READ-ONLY] done\r\n")  # fmt: skip
            elif command == "LIST":
                conn.sendall(b'* LIST () "/" INBOX\r\n' + tag + b" OK done\r\n")
            elif command == "LOGOUT":
                conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                conn.sendall(tag + b" BAD unknown\r\n")

    return session


@pytest.fixture(scope="module")
def context(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "settle", HOST)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def server(context: ssl.SSLContext, events: Events) -> Iterator[TcpServer]:
    with serve(tls_then(context, imap_server(events))) as srv:
        yield srv


def providers(
    events: Events, settings: Callable[[int], tuple[MailServerSetting, ...]], port: int,
    verdict: str = "valid", verdict_after: str = "capability",
    settings_after: str = "capability",
) -> tuple[Probe, Probe]:  # fmt: skip
    """A mail-settings provider that answers once the server saw ``settings_after``, and a
    TLS check once it saw ``verdict_after`` (``connected``, ``capability`` or ``login``);
    each after :data:`FALLBACK_S` at the latest, for the code that waited for them."""

    async def publish_settings(ctx: ProbeContext, target: Target) -> None:
        await asyncio.to_thread(getattr(events, settings_after).wait, FALLBACK_S)
        events.add("settings")
        ctx.publish(MAIL_SETTINGS, settings(port))

    async def publish_verdicts(ctx: ProbeContext, target: Target) -> None:
        verdicts = TlsVerdicts([f"{HOST}:{port}"])
        ctx.publish(TLS_VERDICTS, verdicts)
        await asyncio.to_thread(getattr(events, verdict_after).wait, FALLBACK_S)
        events.add("tls verdict")
        verdicts.settle(f"{HOST}:{port}", verdict)
        verdicts.close()

    return (
        Probe(id="fake_settings", title="settings", run=publish_settings,
              provides=(MAIL_SETTINGS,)),
        Probe(id="fake_tls", title="tls", run=publish_verdicts, provides=(TLS_VERDICTS,)),
    )  # fmt: skip


async def run(pki: LabPKI, port: int, probes: tuple[Probe, Probe]) -> Report:
    options = RunOptions(
        tests=("imap",), ca_file=pki.ca_file, timeout=20, op_timeout=3, connect_timeout=2,
        connect={HOST: ("127.0.0.1",)}, extra_ports=((HOST, port, "imaps"),),
        credentials=Credentials(USER, password=PASSWORD),
    )  # fmt: skip
    return await check(parse_target("127.0.0.1"), options, probes=[*probes, IMAP])


def imap_result(report: Report) -> tuple[str, dict[str, Status]]:
    """The connect step's title, and the findings' codes."""
    (result,) = [r for r in report.results if r.probe == "imap"]
    return result.steps[0].title, {f.code: f.status for _, f in report.findings()}


def https_settings(port: int, socket_type: str = "SSL") -> tuple[MailServerSetting, ...]:
    url = "https://autoconfig.settle.test/mail/config-v1.1.xml"
    return (MailServerSetting(protocol="imap", host=HOST, port=port, socket_type=socket_type,
                              source=url, vouched=True),)  # fmt: skip


def http_settings(port: int) -> tuple[MailServerSetting, ...]:
    url = "http://autoconfig.settle.test/mail/config-v1.1.xml"
    return (MailServerSetting(protocol="imap", host=HOST, port=port, socket_type="SSL",
                              source=url, unvouched_reason="fetched over plain http"),)  # fmt: skip


async def test_session_starts_before_the_settings_and_logs_in_after(
    pki: LabPKI, server: TcpServer, events: Events
) -> None:
    report = await run(pki, server.port, providers(events, https_settings, server.port))
    # Connected, greeted and asked CAPABILITY before the settings were published; the
    # credentials only after.
    assert events.index("connected") < events.index("CAPABILITY") < events.index("settings")
    assert events.index("settings") < events.index("credentials")
    title, codes = imap_result(report)
    # The source is the settled settings' (the connect step was retitled).
    assert title == (f"Connect to {HOST}:{server.port} (IMAP over TLS; from "
                     "https://autoconfig.settle.test/mail/config-v1.1.xml)")  # fmt: skip
    assert codes["imap.login.ok"] is Status.PASS


async def test_the_settled_provenance_decides_where_credentials_go(
    pki: LabPKI, server: TcpServer, events: Events
) -> None:
    """``--port`` vouches for the host; the settled settings name it from plain http, which
    does not: the settled verdict (withheld) counts, although the session started early."""
    report = await run(pki, server.port, providers(events, http_settings, server.port))
    assert events.index("CAPABILITY") < events.index("settings")
    assert "credentials" not in events.items
    title, codes = imap_result(report)
    assert title.endswith("from http://autoconfig.settle.test/mail/config-v1.1.xml)")
    assert codes["imap.login.withheld"] is Status.WARN
    assert "imap.login.ok" not in codes


async def test_the_tls_verdict_is_a_note_the_session_does_not_wait_for(
    pki: LabPKI, server: TcpServer, events: Events
) -> None:
    """The TLS check judges the endpoint invalid (stricter than the handshake): the note is
    in the connect step, right after the TLS line, though it came after the login (which
    the handshake's own verification allowed)."""
    report = await run(
        pki, server.port, providers(events, https_settings, server.port, verdict="invalid",
                                     verdict_after="login")
    )
    assert events.index("credentials") < events.index("tls verdict")
    (result,) = [r for r in report.results if r.probe == "imap"]
    lines = [(line.direction, line.text) for line in result.steps[0].transcript]
    at = next(i for i, (_, text) in enumerate(lines) if text.startswith("TLS: "))
    assert lines[at + 1] == ("info", f"the TLS check judged {HOST}:{server.port} invalid")
    assert lines[at + 2] == ("recv", "* OK settle test ready")
    assert {f.code for _, f in report.findings()} >= {"imap.login.ok"}


async def test_an_endpoint_the_settings_describe_otherwise_is_checked_again(
    pki: LabPKI, context: ssl.SSLContext, events: Events
) -> None:
    """``--port`` says implicit TLS; the settled settings say STARTTLS on that port (and
    the server speaks STARTTLS): the early session's result is dropped, and the endpoint
    is checked as the settings describe it, in one result."""
    with serve(imap_server(events, starttls=context)) as srv:
        report = await run(pki, srv.port, providers(
            events, lambda port: https_settings(port, "STARTTLS"), srv.port,
            settings_after="connected"))  # fmt: skip
    (result,) = [r for r in report.results if r.probe == "imap"]
    assert [s.title for s in result.steps][:3] == [
        f"Connect to {HOST}:{srv.port} (IMAP, then STARTTLS; from "
        "https://autoconfig.settle.test/mail/config-v1.1.xml)",
        "Capabilities before TLS",
        "STARTTLS",
    ]
    codes = {f.code: f.status for _, f in report.findings()}
    assert codes["imap.login.ok"] is Status.PASS
    assert "imap.tls.failed" not in codes
    assert events.index("settings") < events.index("credentials")
