"""The Outlook Anywhere RPC ping against a loopback RPC proxy that holds its channels as IIS
does: the requests never finish, and a TLS close_notify from the client is never answered.

The proxy (with an Autodiscover answer naming it) sends CONN/A3 and CONN/C2 only once the
IN channels of all three ports are open, so only a client that pings the ports at once gets
every answer; and it records how each channel ended: dropped by the client (TCP closed, no
close_notify to wait for) or ended in order (a close_notify it would have to answer).
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from analyzer.lab.pki import LabPKI
from analyzer.protocols import rts
from reports.html import render
from reports.json import dumps
from tests.servers.dnsserver import dns_server
from tests.servers.tcp import serve, server_context

HOST = "mail.rpc-hostile.test"
USER = "alice@rpc-hostile.test"
PASSWORD = "S3cret-rpc-pw"  # noqa: S105 - a test secret
MAILBOX = "7f3a1c2e-0000-4000-8000-000000000001@rpc-hostile.test"
PORTS = (6001, 6002, 6004)


@dataclass(slots=True)
class Proxy:
    """What the proxy saw; ``port`` is filled once it listens."""

    port: int = 0
    in_channels: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    all_in: threading.Event = field(default_factory=threading.Event)
    ends: list[str] = field(default_factory=list)
    ended: threading.Condition = field(default_factory=threading.Condition)
    lock: threading.Lock = field(default_factory=threading.Lock)
    opened: int = 0

    def channel_opened(self) -> None:
        with self.lock:
            self.opened += 1
            if self.opened == len(PORTS):
                self.all_in.set()

    def record_end(self, how: str) -> None:
        with self.ended:
            self.ends.append(how)
            self.ended.notify_all()


def _autodiscover_xml(port: int) -> bytes:
    server = f"{HOST}:{port}"
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <User><DisplayName>alice</DisplayName><AutoDiscoverSMTPAddress>{USER}</AutoDiscoverSMTPAddress>
    </User>
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol><Type>EXCH</Type><Server>{MAILBOX}</Server></Protocol>
      <Protocol><Type>EXPR</Type><Server>{server}</Server><SSL>On</SSL>
        <AuthPackage>Basic</AuthPackage></Protocol>
    </Account>
  </Response>
</Autodiscover>
""".encode()


def _head(reader: object) -> tuple[str, str, dict[str, str]] | None:
    line = reader.readline(65536)  # type: ignore[attr-defined]
    if not line:
        return None
    method, target = line.decode("latin-1").split(" ")[:2]
    headers: dict[str, str] = {}
    while True:
        raw = reader.readline(65536)  # type: ignore[attr-defined]
        if raw in (b"\r\n", b"\n", b""):
            return method, target, headers
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


def _answer(tls: ssl.SSLSocket, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    tls.sendall(head.encode("latin-1") + body)


def _hold(proxy: Proxy, reader: object) -> None:
    """Keep the channel until the client ends it; record how it did."""
    try:
        data = reader.read(1)  # type: ignore[attr-defined]
    except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
        proxy.record_end("dropped")
        return
    except TimeoutError:
        proxy.record_end("left open")
        return
    # A clean end of the TLS stream is a close_notify, which IIS would leave unanswered.
    proxy.record_end("close_notify" if data == b"" else "more data")


def _script(proxy: Proxy, context: ssl.SSLContext) -> object:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(8)
        try:
            tls = context.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
        except (OSError, ValueError):
            return  # the probe's plain-http request, or a handshake it gave up
        with tls:
            reader = tls.makefile("rb")
            while (head := _head(reader)) is not None:
                method, target, headers = head
                length = int(headers.get("content-length", "0") or "0")
                if "authorization" not in headers:
                    reader.read(min(length, 65536))
                    _answer(tls, 401, [("WWW-Authenticate", 'Basic realm="x"')], b"")
                elif target.lower().startswith("/autodiscover/autodiscover.xml"):
                    reader.read(length)
                    _answer(tls, 200, [("Content-Type", "text/xml")],
                            _autodiscover_xml(proxy.port))  # fmt: skip
                elif method == "RPC_IN_DATA":
                    reader.read(104)  # CONN/B1; the rest of the 1 GiB never comes
                    proxy.channel_opened()
                    _hold(proxy, reader)
                    return
                elif method == "RPC_OUT_DATA":
                    reader.read(length)  # CONN/A1
                    if not proxy.all_in.wait(3):
                        _answer(tls, 503, [], b"not every port was pinged at once")
                        return
                    tls.sendall(b"HTTP/1.1 200 Success\r\nContent-Type: application/rpc\r\n"
                                b"Content-Length: 1073741824\r\n\r\n"
                                + rts.conn_a3() + rts.conn_c2())  # fmt: skip
                    _hold(proxy, reader)
                    return
                else:
                    reader.read(min(length, 65536))
                    _answer(tls, 404, [], b"")

    return script


@pytest.fixture(scope="module")
def proxy_context(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "rpc-hostile", HOST)


async def _ping_all(pki: LabPKI, proxy: Proxy) -> Report:
    # The domain's own zone, empty: names are looked up here, never on the host's resolver.
    zone = "$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\n"
    with dns_server({"rpc-hostile.test.": zone}) as dns:
        options = RunOptions(
            tests=("autodiscover", "outlook_anywhere"), timeout=30, op_timeout=8,
            connect_timeout=2, ca_file=pki.ca_file, connect={HOST: ("127.0.0.1",)},
            nameservers=(Nameserver("127.0.0.1", dns.port),),
            autodiscover_url=f"https://{HOST}:{proxy.port}/autodiscover/autodiscover.xml",
            credentials=Credentials(USER, password=PASSWORD),
        )  # fmt: skip
        report = await check(parse_target(USER), options)
    assert PASSWORD not in dumps(report) and PASSWORD not in render(report)
    return report


async def test_ports_are_pinged_at_once_and_channels_dropped_after_conn_c2(
    pki: LabPKI, proxy_context: ssl.SSLContext
) -> None:
    # Given a proxy answering CONN/C2 only once all three IN channels are open, and never
    # answering a close_notify
    proxy = Proxy()
    with serve(_script(proxy, proxy_context)) as server:  # type: ignore[arg-type]
        proxy.port = server.port
        # When Outlook Anywhere is checked
        report = await _ping_all(pki, proxy)
        # (the client's side of each channel is over once the check returned; the proxy's
        # threads may still be reading the end)
        with proxy.ended:
            proxy.ended.wait_for(lambda: len(proxy.ends) == 2 * len(PORTS), timeout=10)
    # Then every port answered: the three virtual connections were set up at once
    pings = [f for r, f in report.findings() if r.probe == "outlook_anywhere"
             and f.code == "outlookanywhere.rpc.ok"]  # fmt: skip
    assert sorted(f.evidence["port"] for f in pings) == list(PORTS)
    statuses = {r.status for r in report.results if r.probe == "outlook_anywhere"}
    assert statuses == {Status.PASS}
    # And every channel was dropped, none ended with a close_notify left to wait for
    assert proxy.ends == ["dropped"] * (2 * len(PORTS))
    # And the steps show the ports in order, although they ran at once
    steps = [s.title for r in report.results if r.probe == "outlook_anywhere"
             for s in r.steps if s.title.startswith("RPC ping")]  # fmt: skip
    assert [t.split(":")[-1].split()[0] for t in steps] == [str(p) for p in PORTS]
