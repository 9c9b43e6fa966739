"""A small authoritative DNS server for tests of behaviour no real server shows.

Serves zone text through dnspython on 127.0.0.1, port 0 (UDP and TCP on the same
port), in a thread of its own. Per-name behaviours make it hostile on purpose:
``drop`` (never answer: a timeout), ``servfail``, ``refused``, ``garbage`` (bytes
that are no DNS message), ``truncate`` (TC over UDP, full answer over TCP). A *held* name
is answered (over UDP) only once the test releases it, or after ``HOLD_LIMIT`` seconds:
a slow answer whose timing the test decides.

With an ``upstream`` server, questions outside its zones are passed on to it and its answers
relayed unchanged: a test can add zones to a real server's (the lab's) and count every
question asked.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

Behaviour = Literal["drop", "servfail", "refused", "garbage", "truncate"]
#: The longest a held answer waits for its release (s).
HOLD_LIMIT = 5.0


class _Handler:
    def __init__(
        self,
        zones: list[dns.zone.Zone],
        behaviours: Mapping[str, Behaviour],
        upstream: tuple[str, int] | None = None,
    ) -> None:
        self.zones = zones
        self.behaviours = {k.lower().rstrip("."): v for k, v in behaviours.items()}
        self.upstream = upstream
        self.queries: list[tuple[str, str]] = []

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        q = query.question[0]
        qname = q.name.to_text().lower().rstrip(".")
        self.queries.append((qname, dns.rdatatype.to_text(q.rdtype)))
        behaviour = self.behaviours.get(qname)
        if behaviour == "drop":
            return None
        if behaviour == "garbage":
            return wire[:2] + b"\x81\x80\xff\xff garbage that is no DNS message"
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if behaviour in ("servfail", "refused"):
            response.set_rcode(dns.rcode.SERVFAIL if behaviour == "servfail" else dns.rcode.REFUSED)
            return response.to_wire()
        zone = next((z for z in self.zones if q.name.is_subdomain(z.origin)), None)
        if zone is None and self.upstream is not None:
            return _relay(wire, self.upstream, tcp=tcp)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        want_dnssec = bool(query.ednsflags & dns.flags.DO)
        self._fill(response, zone, q.name, q.rdtype, want_dnssec)
        if not response.answer:
            soa = zone.find_rdataset(zone.origin, dns.rdatatype.SOA)
            response.authority.append(dns.rrset.from_rdata_list(zone.origin, soa.ttl, list(soa)))
        if behaviour == "truncate" and not tcp:
            response.answer = []
            response.flags |= dns.flags.TC
        try:
            return response.to_wire(max_size=65535 if tcp else 1232)
        except dns.exception.TooBig:
            # RFC 1035 4.2.1: too big for UDP, so truncate and let the client retry on TCP.
            response.answer = []
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _fill(
        self, response: Any, zone: dns.zone.Zone, qname: dns.name.Name, rdtype: int,
        dnssec: bool = False,
    ) -> None:
        name = qname
        seen: set[dns.name.Name] = set()
        for _ in range(16):
            if name in seen:
                return  # a CNAME loop: answer with the chain so far, as servers do
            seen.add(name)
            node = zone.get_node(name)
            if node is None:
                if not response.answer:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return
            rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rds is not None:
                response.answer.append(dns.rrset.from_rdata_list(name, rds.ttl, list(rds)))
                sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
                if dnssec and sigs is not None:
                    response.answer.append(
                        dns.rrset.from_rdata_list(name, sigs.ttl, list(sigs))
                    )
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                return
            response.answer.append(dns.rrset.from_rdata_list(name, cname.ttl, list(cname)))
            name = cname[0].target  # type: ignore[attr-defined]
            if not name.is_subdomain(zone.origin):
                return


class DnsServer:
    """Running server: ``address`` and ``port``; ``queries`` lists what it was asked."""

    def __init__(self, handler: _Handler, held: Mapping[str, threading.Event]) -> None:
        self.handler = handler
        self.held = {k.lower().rstrip("."): v for k, v in held.items()}
        #: Per held name: whether the release came before the limit for its first query.
        self.released: dict[str, bool] = {}
        self.udp, self.tcp = _bind_pair()
        self.address, self.port = self.udp.getsockname()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]

    @property
    def queries(self) -> list[tuple[str, str]]:
        return self.handler.queries

    def start(self) -> None:
        self.udp.settimeout(0.1)
        self.tcp.settimeout(0.1)
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.udp.close()
        self.tcp.close()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            out = self.handler.answer(wire, tcp=False)
            if out is None:
                continue
            name = self.handler.queries[-1][0]
            if name in self.held:
                threading.Thread(target=self._answer_held, args=(name, out, peer),
                                 daemon=True).start()  # fmt: skip
                continue
            self.udp.sendto(out, peer)

    def _answer_held(self, name: str, out: bytes, peer: Any) -> None:
        released = self.held[name].wait(HOLD_LIMIT)
        self.released.setdefault(name, released)  # the first query's fate (not a retry's)
        if not self._stop.is_set():
            self.udp.sendto(out, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    (length,) = struct.unpack("!H", _recv_exact(conn, 2))
                    out = self.handler.answer(_recv_exact(conn, length), tcp=True)
                    if out is not None:
                        conn.sendall(struct.pack("!H", len(out)) + out)
                except (OSError, struct.error, EOFError):
                    continue


def _bind_pair(attempts: int = 50) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on the same free loopback port.

    The port the kernel picks for UDP may be taken for TCP (by another test's client
    connection, say): then both are closed and another port is tried."""
    for _ in range(attempts):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind(("127.0.0.1", 0))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            tcp.listen(16)
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise OSError("no loopback port free for both UDP and TCP")


def _relay(wire: bytes, upstream: tuple[str, int], *, tcp: bool) -> bytes | None:
    """``upstream``'s answer to ``wire`` (None when it gives none within 5 s)."""
    family = socket.AF_INET6 if ":" in upstream[0] else socket.AF_INET
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(5)
        try:
            if tcp:
                sock.connect(upstream)
                sock.sendall(struct.pack("!H", len(wire)) + wire)
                (length,) = struct.unpack("!H", _recv_exact(sock, 2))
                return _recv_exact(sock, length)
            sock.sendto(wire, upstream)
            return sock.recv(65535)
        except (OSError, struct.error, EOFError):
            return None


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


@contextmanager
def dns_server(
    zones: Mapping[str, str],
    behaviours: Mapping[str, Behaviour] | None = None,
    *,
    upstream: tuple[str, int] | None = None,
    held: Mapping[str, threading.Event] | None = None,
) -> Iterator[DnsServer]:
    """Serve ``{origin: zone text}`` on loopback for the duration of the block (and pass
    other questions on to ``upstream``, when given); the answers about a name of ``held``
    wait until its event is set (at most ``HOLD_LIMIT``)."""
    parsed = [
        dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
        for origin, text in zones.items()
    ]
    server = DnsServer(_Handler(parsed, behaviours or {}, upstream), held or {})
    server.start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["DnsServer", "dns_server", "socketserver"]
