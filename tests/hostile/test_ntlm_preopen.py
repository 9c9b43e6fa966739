"""NTLM handshakes on connections opened ahead of time, against the lab's Exchange emulator
on loopback (TLS), watched at the server: which connection each request came on, and when
each connection was opened and closed.

Each NTLM handshake runs alone on a connection of its own (analyzer.protocols.httpauth);
that connection is opened while the previous request to the same origin is in flight, so
the handshake does not wait for TCP and TLS. The server holds a request until a connection
that has carried no request yet is open (bounded by ``HOLD``) and records whether one was:
a client that opens the handshake's connection only when it needs it misses the
rendezvous.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, RunOptions
from analyzer.core.facts import AUTODISCOVER_SETTINGS, AutodiscoverSettings, OutlookAnywhere
from analyzer.core.model import Report, Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target, parse_target
from analyzer.lab import emulator
from analyzer.lab.emulator import EmulatorRequest, EmulatorResponse
from analyzer.lab.pki import LabPKI
from probes import outlook_anywhere
from probes.ews import PROBE as EWS
from probes.outlook_anywhere import PROBE as OUTLOOK_ANYWHERE
from reports.html import render
from reports.json import dumps
from tests.servers.exchange import serve_emulator
from tests.servers.tcp import server_context

DOMAIN = "preopen.test"
HOST = f"mail.{DOMAIN}"
USER = f"alice@{DOMAIN}"
PASSWORD = "S3cret-preopen-pw"  # noqa: S105 - a test secret
#: How long a held request waits for a new connection (s); below the run's op_timeout.
HOLD = 3.0


def _kind(request: EmulatorRequest) -> str:
    """``anonymous``, or the NTLM message type the request carries (``ntlm1``, ``ntlm3``)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not scheme:
        return "anonymous"
    raw = base64.b64decode(token.strip() + "==")
    return f"ntlm{struct.unpack('<I', raw[8:12])[0]}" if raw.startswith(b"NTLMSSP\0") else scheme


@dataclass(slots=True)
class Watch:
    """What the server saw: connections opened and closed, requests by connection."""

    close_idle: bool = False  # close the connection opened during the anonymous request
    #: How many connections that carried no request GetFolder's answer waits for (one
    #: per mailbox request that follows it at once).
    getfolder_idle: int = 2
    #: Hold the first RPC_OUT_DATA NTLM negotiate until an idle connection is open.
    hold_rpc_out: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)
    accepted: list[tuple[Any, str]] = field(default_factory=list)  # (socket, peer), in order
    closed: int = 0
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (connection, kind, op)
    met: dict[str, bool] = field(default_factory=dict)

    def opened(self, sock: Any, peer: tuple[str, int]) -> None:
        with self.changed:
            self.accepted.append((sock, f"{peer[0]}:{peer[1]}"))
            self.changed.notify_all()

    def ended(self) -> None:
        with self.changed:
            self.closed += 1
            self.changed.notify_all()

    def _idle(self) -> Any:
        used = {connection.split("#", 1)[0] for connection, _, _ in self.requests}
        return next((sock for sock, peer in self.accepted if peer not in used), None)

    def _idle_count(self) -> int:
        used = {connection.split("#", 1)[0] for connection, _, _ in self.requests}
        return sum(1 for _, peer in self.accepted if peer not in used)

    def hold(self, name: str, count: int = 1) -> Any:
        """Wait until ``count`` connections that carried no request yet are open; one."""
        with self.changed:
            self.met[name] = self.changed.wait_for(lambda: self._idle_count() >= count, HOLD)
            return self._idle()

    def route(self, original: Callable[[EmulatorRequest], EmulatorResponse]
              ) -> Callable[[EmulatorRequest], EmulatorResponse]:  # fmt: skip
        def handler(request: EmulatorRequest) -> EmulatorResponse:
            kind = _kind(request)
            operation = next((op for op in ("GetFolder", "GetUserAvailability",
                                            "GetUserOofSettings")
                              if op.encode() in request.body), "")  # fmt: skip
            with self.changed:
                self.requests.append((request.connection, kind, operation))
                getfolders = sum(1 for _, k, op in self.requests
                                 if k == "ntlm3" and op == "GetFolder")  # fmt: skip
            if kind == "anonymous":
                spare = self.hold("anonymous")
                if spare is not None and self.close_idle:
                    # A server (or a device on the way) ending an idle connection.
                    spare.shutdown(socket.SHUT_RDWR)
            elif kind == "ntlm3" and operation == "GetFolder" and getfolders == 1:
                self.hold("getfolder", self.getfolder_idle)
            elif (self.hold_rpc_out and kind == "ntlm1" and request.method == "RPC_OUT_DATA"
                  and "rpc_out" not in self.met):  # fmt: skip
                self.hold("rpc_out")
            return original(request)

        return handler


@pytest.fixture(scope="module")
def tls(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "preopen", HOST)


def _serve(tls: ssl.SSLContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch: Watch
           ) -> Iterator[str]:  # fmt: skip
    """The emulator over TLS on port 443 of a loopback address of its own, watched."""
    for prefix in ("/EWS/", "/rpc/"):
        monkeypatch.setitem(emulator.ROUTES, prefix, watch.route(emulator.ROUTES[prefix]))

    def watched(httpd: Any) -> None:
        accept, shutdown = httpd.get_request, httpd.shutdown_request

        def get_request() -> Any:
            sock, peer = accept()
            watch.opened(sock, peer)
            return sock, peer

        def shutdown_request(sock: Any) -> None:
            shutdown(sock)
            watch.ended()

        httpd.get_request = get_request
        httpd.shutdown_request = shutdown_request

    with serve_emulator(host=HOST, domain=DOMAIN, users=[(USER, PASSWORD)], tls=tls,
                        tmp_path=tmp_path, monkeypatch=monkeypatch, adjust=watched
                        ) as (address, _):  # fmt: skip
        yield address


@pytest.fixture
def exchange(tls: ssl.SSLContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             request: pytest.FixtureRequest) -> Iterator[tuple[str, Watch]]:  # fmt: skip
    """The watched emulator; a test's indirect parameter holds :class:`Watch` options."""
    watch = Watch(**getattr(request, "param", {}))
    for address in _serve(tls, tmp_path, monkeypatch, watch):
        yield address, watch


async def _check(pki: LabPKI, address: str, probe: Probe = EWS) -> Report:
    """A run of ``probe`` (EWS by default) on settings naming the emulator's host."""
    async def autodiscover(ctx: ProbeContext, target: Target) -> None:
        ews = f"https://{HOST}/EWS/Exchange.asmx"
        ctx.publish(AUTODISCOVER_SETTINGS, AutodiscoverSettings(
            email=USER, source_url=f"https://autodiscover.{DOMAIN}/autodiscover/autodiscover.xml",
            ews_url=ews, availability_url=ews, oof_url=ews, vouched=True,
            legacy_dn=f"/o={DOMAIN}/ou=Exchange Administrative Group/cn=Recipients/cn=alice",
            outlook_anywhere=(OutlookAnywhere(server=HOST, auth_package="Ntlm"),),
        ))  # fmt: skip

    probes = [Probe(id="autodiscover", title="Autodiscover", run=autodiscover,
                    provides=(AUTODISCOVER_SETTINGS,)), probe]  # fmt: skip
    options = RunOptions(timeout=30, op_timeout=HOLD + 5, ca_file=pki.ca_file,
                         connect={HOST: (address,)},
                         credentials=Credentials(USER, password=PASSWORD))  # fmt: skip
    return await check(parse_target(USER), options, probes=probes)


def _by_connection(watch: Watch) -> dict[str, list[tuple[str, str]]]:
    seen: dict[str, list[tuple[str, str]]] = {}
    for connection, kind, operation in watch.requests:
        seen.setdefault(connection, []).append((kind, operation))
    return seen


def _all_closed(watch: Watch) -> bool:
    with watch.changed:
        return watch.changed.wait_for(lambda: watch.closed == len(watch.accepted), HOLD)


def _ews_status(report: Report) -> tuple[Status, list[str]]:
    (ews,) = [r for r in report.results if r.probe == "ews"]
    return ews.status, [f.code for s in ews.steps for f in s.findings]


async def test_each_handshake_starts_on_a_connection_opened_ahead(
    pki: LabPKI, exchange: tuple[str, Watch]
) -> None:
    # Given the emulator holding the anonymous request until a connection that carried no
    # request yet is open, and GetFolder's authenticated answer until two are
    address, watch = exchange
    # When EWS logs in and asks GetFolder, then free/busy and out-of-office at once
    report = await _check(pki, address)
    # Then the connection of GetFolder's handshake was opened while the anonymous request
    # was in flight, and one for each of the next two handshakes while GetFolder's was
    assert watch.met == {"anonymous": True, "getfolder": True}
    status, codes = _ews_status(report)
    assert status == Status.PASS, codes
    # And each handshake ran alone on its connection, type 1 to the authenticated answer
    handshakes = [kinds for kinds in _by_connection(watch).values() if kinds[0][0] != "anonymous"]
    assert sorted(kinds for kinds in handshakes) == sorted(
        [[("ntlm1", op), ("ntlm3", op)]
         for op in ("GetFolder", "GetUserAvailability", "GetUserOofSettings")]
    )  # fmt: skip
    # And no connection was opened for nothing, and every one was closed
    assert len(watch.accepted) == 1 + len(handshakes)
    assert _all_closed(watch), (watch.closed, len(watch.accepted))
    assert PASSWORD not in dumps(report) and PASSWORD not in render(report)


@pytest.mark.parametrize("exchange", [{"close_idle": True}], indirect=True)
async def test_a_connection_the_server_closed_meanwhile_is_replaced(
    pki: LabPKI, exchange: tuple[str, Watch]
) -> None:
    # Given a server that closes the connection opened during the anonymous request while
    # it is still idle (as a server or load balancer with a short idle timeout does)
    address, watch = exchange
    # When EWS logs in
    report = await _check(pki, address)
    # Then that connection was closed unused and the handshake went over a new one: the
    # login succeeded, nothing reported as an authentication failure
    assert watch.met["anonymous"] is True
    status, codes = _ews_status(report)
    assert status == Status.PASS, codes
    connections = _by_connection(watch)
    getfolder = [c for c, kinds in connections.items() if ("ntlm1", "GetFolder") in kinds]
    assert len(getfolder) == 1 and connections[getfolder[0]] == [
        ("ntlm1", "GetFolder"), ("ntlm3", "GetFolder")
    ]
    # And the closed one carried nothing; every connection was closed in the end
    assert len(watch.accepted) == len(connections) + 1
    assert _all_closed(watch), (watch.closed, len(watch.accepted))


async def test_no_connection_is_opened_ahead_for_logins_over_connections_of_their_own(
    pki: LabPKI, exchange: tuple[str, Watch]
) -> None:
    # Given the emulator holding the anonymous request until an idle connection is open
    address, watch = exchange
    # When Outlook Anywhere runs (its RPC channels log in over raw connections they open)
    report = await _check(pki, address, OUTLOOK_ANYWHERE)
    # Then none was opened ahead: every connection the server saw carried a request
    assert watch.met == {"anonymous": False}
    (oa,) = [r for r in report.results if r.probe == "outlook_anywhere"]
    pings = [f.code for s in oa.steps for f in s.findings if s.title.startswith("RPC ping")]
    assert pings == ["outlookanywhere.rpc.ok"] * 3
    carried = {connection.split("#", 1)[0] for connection, _, _ in watch.requests}
    assert {peer for _, peer in watch.accepted} == carried


@pytest.mark.parametrize("exchange", [{"hold_rpc_out": True}], indirect=True)
async def test_the_in_channel_connection_opens_while_the_out_channel_logs_in(
    pki: LabPKI, exchange: tuple[str, Watch], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one RPC ping (one virtual connection), and the emulator holding the OUT
    # channel's NTLM negotiate until a connection that carried no request yet is open
    monkeypatch.setattr(outlook_anywhere, "PORTS", outlook_anywhere.PORTS[:1])
    address, watch = exchange
    # When Outlook Anywhere runs
    report = await _check(pki, address, OUTLOOK_ANYWHERE)
    # Then the IN channel's connection was opened while the OUT channel logged in
    assert watch.met["rpc_out"] is True
    (result,) = [r for r in report.results if r.probe == "outlook_anywhere"]
    assert result.status == Status.PASS, [f.code for f in result.findings()]
    # And the ping's transcript reads as before: each channel's connection, then its login
    (ping,) = [s for s in result.steps if s.title.startswith("RPC ping")]
    texts = [line.text for line in ping.transcript]
    notes = [t for t in texts if t.endswith(" channel") or t.startswith(("connect to",
                                                                          "connected in"))]
    assert [n.split(" ")[0] for n in notes] == [
        "RPC_OUT_DATA", "connect", "connected", "RPC_IN_DATA", "connect", "connected",
    ]
    in_start = texts.index("RPC_IN_DATA channel")
    assert any(t.startswith("RPC_IN_DATA ") and "NTLM" not in t for t in texts[in_start + 1:])
    # And each channel's handshake ran on its own connection, none left open
    assert all(kinds[0][0] != "anonymous" or len(kinds) == 1
               for kinds in _by_connection(watch).values())
    assert _all_closed(watch), (watch.closed, len(watch.accepted))
