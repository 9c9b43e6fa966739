"""What the Autodiscover probe starts ahead of the step that reports it, against a small
HTTPS server on loopback (a lab-PKI certificate for ``ad.ahead.test``; 401 with Basic to a
request without credentials, settings to the logged-in one, Autodiscover v2 JSON).

Each test holds one event until another has happened (a bounded wait, never a measured
time) and then asserts the order the events came in: work that does not depend on an
earlier step runs beside it, and the report still reads in the same order.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from analyzer.api import check
from analyzer.core import context as context_module
from analyzer.core.context import Credentials, RunOptions
from analyzer.core.model import Report, Status, Step
from analyzer.core.targets import parse_target
from analyzer.lab.pki import LabPKI
from probes.autodiscover import discovery
from reports.json import dumps
from tests.servers.autodiscover import settings_xml
from tests.servers.tcp import TcpServer, read_http_request, server_context, tls_then

HOST = "ad.ahead.test"
ADDRESS = "alice@ahead.test"
PASSWORD = "Ahead-Pa55word!"
#: Bound of every wait for an event (s): the tests never assert how long anything took.
WAIT = 3.0
EWS = "https://mail.ahead.test/EWS/Exchange.asmx"
SETTINGS = settings_xml(
    "<Action>settings</Action><Protocol><Type>EXPR</Type><Server>mail.ahead.test</Server>"
    f"<SSL>On</SSL><AuthPackage>Basic</AuthPackage><EwsUrl>{EWS}</EwsUrl></Protocol>"
)


class Server:
    """The HTTPS server, recording in order what it saw: ``tls`` (a handshake done),
    ``anonymous`` and ``login`` (the POSTs), ``answered`` (the settings sent), ``v2``
    (a JSON GET). ``hold_settings``: the settings wait (bounded) until a v2 GET came."""

    def __init__(self, context: ssl.SSLContext, *, hold_settings: bool = False) -> None:
        self.events: list[str] = []
        self.changed = threading.Condition()
        self.accepted = threading.Event()
        self.hold_settings = hold_settings
        script = tls_then(context, self._serve)

        def accept(conn: socket.socket, stop: threading.Event) -> None:
            self.accepted.set()
            script(conn, stop)

        self.tcp = TcpServer(accept)

    def saw(self, event: str) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def until(self, test: Callable[[list[str]], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: test(self.events), WAIT)

    def _serve(self, tls: socket.socket, stop: threading.Event) -> None:
        self.saw("tls")
        with tls.makefile("rb") as rfile:
            while not stop.is_set():
                request = read_http_request(rfile)
                if request is None:
                    return
                method, target, headers, _ = request
                if method == "GET" and "autodiscover.json" in target:
                    protocol = target.rpartition("Protocol=")[2]
                    self.saw("v2")
                    url = EWS if protocol == "Ews" else f"https://mail.ahead.test/{protocol}"
                    self._send(tls, "200 OK", json.dumps({"Protocol": protocol, "Url": url}),
                               "application/json")  # fmt: skip
                elif "authorization" not in headers:
                    self.saw("anonymous")
                    tls.sendall(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"'
                                b"\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
                else:
                    self.saw("login")
                    if self.hold_settings:
                        self.until(lambda events: "v2" in events)
                    self.saw("answered")
                    self._send(tls, "200 OK", SETTINGS.decode(), "text/xml")

    @staticmethod
    def _send(tls: socket.socket, status: str, body: str, content_type: str) -> None:
        payload = body.encode()
        tls.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: "
                    f"{len(payload)}\r\n\r\n".encode() + payload)  # fmt: skip


@pytest.fixture(scope="module")
def tls_context(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "ad-ahead", HOST)


@pytest.fixture
def server(tls_context: ssl.SSLContext, request: pytest.FixtureRequest) -> Iterator[Server]:
    hold = bool(getattr(request, "param", False))
    made = Server(tls_context, hold_settings=hold)
    with made.tcp:
        yield made


def run(pki: LabPKI, server: Server) -> Report:
    options = RunOptions(
        tests=("autodiscover",),
        timeout=30,
        op_timeout=10,
        connect_timeout=5,
        ca_file=pki.ca_file,
        connect={HOST: ("127.0.0.1",)},
        credentials=Credentials(ADDRESS, password=PASSWORD),
        autodiscover_url=f"https://{HOST}:{server.tcp.port}/autodiscover/autodiscover.xml",
    )
    report = asyncio.run(check(parse_target(ADDRESS), options))
    assert PASSWORD not in dumps(report)
    return report


def tree(report: Report) -> list[tuple[str, list[str], list[str]]]:
    """Per step of every result, in order: its title, its findings and its transcript
    (without the times and headers that change from run to run)."""
    rows: list[tuple[str, list[str], list[str]]] = []
    for result in report.results:
        for top in result.steps:
            for step in top.walk():
                lines = [re.sub(r"\d+(\.\d+)? ms", "… ms", line.text)
                         for line in step.transcript]
                rows.append((step.title, [f.code for f in step.findings], lines))
    return rows


def titles(step: Step) -> list[str]:
    return [s.title for s in step.walk()]


@pytest.mark.parametrize("server", [True], indirect=True)
def test_v2_is_asked_while_the_login_is_answered(pki: LabPKI, server: Server) -> None:
    # Given a server that holds the settings until Autodiscover v2 has been asked
    # When Autodiscover runs
    report = run(pki, server)
    # Then v2 was asked before the settings came: it does not wait for the login
    events = server.events
    assert "v2" in events[: events.index("answered")], events
    # And the report reads as before: the verdict, then v2 with its three answers
    summary = report.results[0]
    assert [s.title for s in summary.steps] == [
        f"Find the Autodiscover settings of {ADDRESS}",
        f"Ask Autodiscover v2 (JSON) on {HOST}:{server.tcp.port}",
    ]
    v2 = summary.steps[1]
    assert [c.title.rpartition("Protocol=")[2] for c in v2.children] == [
        "AutodiscoverV1", "Ews", "ActiveSync",
    ]
    for child in v2.children:
        texts = [line.text for line in child.transcript]
        assert texts[0].startswith("GET https://")
        assert any(t.startswith("HTTP/1.1 200") for t in texts), texts
        assert child.status == Status.PASS
    assert [f.code for c in v2.children for f in c.findings] == ["autodiscover.v2.ok"] * 3
    facts = summary.facts["autodiscover_settings"]
    assert isinstance(facts, dict) and facts["eas_source"] == "v2"


def test_certificate_connection_opens_beside_the_tcp_test(
    pki: LabPKI, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a TCP test that ends only once the certificate's TLS connection has started
    # (or after a bounded wait)
    order: list[str] = []
    tls_started = asyncio.Event()
    real_connect, real_tls = discovery.probe_connect, discovery.open_tls

    async def tcp_test(*args: Any, **kw: Any) -> Any:
        outcome = await real_connect(*args, **kw)
        try:
            await asyncio.wait_for(tls_started.wait(), WAIT)
        except TimeoutError:
            pass
        order.append("tcp test ended")
        return outcome

    async def open_tls(*args: Any, **kw: Any) -> Any:
        order.append("tls started")
        tls_started.set()
        return await real_tls(*args, **kw)

    monkeypatch.setattr(discovery, "probe_connect", tcp_test)
    monkeypatch.setattr(discovery, "open_tls", open_tls)
    # When Autodiscover runs
    report = run(pki, server)
    # Then the certificate's connection opened while the TCP test ran
    assert order == ["tls started", "tcp test ended"]
    # And the host block reads as before, the handshake in the certificate's step
    method = report.results[-1]
    assert [s.title for s in method.steps][:4] == [
        f"Resolve {HOST}",
        f"Connect to {HOST}:{server.tcp.port} (127.0.0.1)",
        f"Validate the certificate of {HOST}:{server.tcp.port}",
        f"Send an unauthenticated request to https://{HOST}:{server.tcp.port}"
        "/autodiscover/autodiscover.xml",
    ]
    connect, certificate = method.steps[1], method.steps[2]
    assert [line.text for line in connect.transcript][0].startswith("open in")
    texts = [line.text for line in certificate.transcript]
    assert texts[0] == f"connect to 127.0.0.1:{server.tcp.port}"
    assert any(t.startswith("TLS handshake") for t in texts)
    assert [f.code for f in certificate.findings] == ["tls.chain.valid"]
    assert report.status == Status.PASS


def test_login_connections_open_during_the_host_block(
    pki: LabPKI, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a TCP test that ends only once five TLS connections are up at the server (or
    # after a bounded wait): the certificate's, the unauthenticated request's, the login's
    # own and the two more Autodiscover v2 asks on
    seen: list[int] = []
    real_connect = discovery.probe_connect

    async def tcp_test(*args: Any, **kw: Any) -> Any:
        outcome = await real_connect(*args, **kw)
        await asyncio.to_thread(server.until, lambda events: events.count("tls") >= 5)
        seen.append(server.events.count("tls"))
        return outcome

    monkeypatch.setattr(discovery, "probe_connect", tcp_test)
    # When Autodiscover runs
    report = run(pki, server)
    # Then they were opened before the host block ended, not after its verdict
    assert seen == [5], (seen, server.events)
    # And each was used or closed: the run found the settings with one login
    assert server.events.count("login") == 1 and server.events.count("v2") == 3
    assert report.status == Status.PASS


def test_the_host_block_does_not_wait_for_the_clients_trust(
    pki: LabPKI, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a verifying context whose build ends only once the server has been reached
    # (or after a bounded wait)
    reached: list[bool] = []
    real_build = context_module._verifying_context

    def build(*args: Any, **kw: Any) -> Any:
        reached.append(server.accepted.wait(WAIT))
        return real_build(*args, **kw)

    monkeypatch.setattr(context_module, "_verifying_context", build)
    # When Autodiscover runs
    report = run(pki, server)
    # Then the host block reached the server while the trust was still loading
    assert reached == [True]
    assert report.status == Status.PASS


def test_the_report_is_the_same_whatever_came_first(pki: LabPKI, server: Server) -> None:
    # Given the same server asked twice
    # When Autodiscover runs twice
    first, second = run(pki, server), run(pki, server)
    # Then both reports hold the same steps, findings and transcripts, in the same order
    assert tree(first) == tree(second)
    assert [r.subject for r in first.results] == [
        ADDRESS, "SCP (Active Directory)",
        f"https://{HOST}:{server.tcp.port}/autodiscover/autodiscover.xml",
    ]
