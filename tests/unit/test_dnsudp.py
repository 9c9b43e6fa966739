"""The run's DNS sockets (analyzer/protocols/dnsudp.py): few sockets, answers matched to their
questions, forged and stray packets dropped. Against a purpose-built loopback server, since
no real server sends forged answers."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from analyzer.core.context import Nameserver, RunContext, RunOptions
from analyzer.protocols.dnsudp import POOL_SIZE, UdpPool, query_wire
from analyzer.protocols.resolve import lookup


class Spoofer:
    """Answers every A question with 192.0.2.1, after three packets that must be dropped:
    the answer sent from another port of the same address (off-path forgery), an answer
    with the wrong id, and an answer to another question. Records the source ports."""

    def __init__(self, *, forge: bool) -> None:
        self.forge = forge
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sources: list[int] = []
        self.ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _answer(self, query: dns.message.Message, name: str, address: str) -> bytes:
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", address))
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(wire)
            self.sources.append(peer[1])
            self.ids.append(query.id)
            name = query.question[0].name.to_text()
            if self.forge:
                self.other.sendto(self._answer(query, name, "203.0.113.66"), peer)
                wrong_id = dns.message.from_wire(self._answer(query, name, "203.0.113.67"))
                wrong_id.id = (query.id + 1) % 65536
                self.sock.sendto(wrong_id.to_wire(), peer)
                other = dns.message.make_query("other.test", "A", id=query.id)
                self.sock.sendto(self._answer(other, "other.test.", "203.0.113.68"), peer)
            self.sock.sendto(self._answer(query, name, "192.0.2.1"), peer)

    def __enter__(self) -> Spoofer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
        self.other.close()


@pytest.fixture
def spoofer() -> Iterator[Spoofer]:
    with Spoofer(forge=True) as server:
        yield server


@pytest.fixture
def plain() -> Iterator[Spoofer]:
    with Spoofer(forge=False) as server:
        yield server


def options(server: Spoofer) -> RunOptions:
    return RunOptions(nameservers=(Nameserver("127.0.0.1", server.port),), op_timeout=2)


async def test_forged_stray_and_mismatched_answers_are_dropped(spoofer: Spoofer) -> None:
    # Given a server that sends, before each true answer, a forged one from another port,
    # one with another id and one to another question
    async with RunContext(options(spoofer)) as ctx:
        # When a run asks
        found = await lookup(ctx, "host.test", "A")
    # Then it got the true answer, from the server's own port
    assert found.outcome == "answer"
    assert found.texts() == ["192.0.2.1"]


async def test_a_run_asks_from_a_few_sockets(plain: Spoofer) -> None:
    # Given a run asking twenty questions, ten of them at once
    async with RunContext(options(plain)) as ctx:
        await asyncio.gather(*(lookup(ctx, f"a{i}.test", "A") for i in range(10)))
        for i in range(10):
            await lookup(ctx, f"b{i}.test", "A")
    # Then they went out from at most POOL_SIZE source ports, with twenty ids
    assert len(plain.sources) == 20
    assert 1 <= len(set(plain.sources)) <= POOL_SIZE
    assert len(set(plain.ids)) >= 18  # random 16-bit ids: a repeat or two is possible


async def test_a_query_nobody_answers_times_out_and_the_pool_closes(plain: Spoofer) -> None:
    import dns.exception

    # Given a port where nothing answers
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    pool = UdpPool()
    try:
        request = dns.message.make_query("host.test", dns.rdatatype.A)
        # When a query is sent there
        with pytest.raises(dns.exception.Timeout):
            await pool.query(request, "127.0.0.1", silent.getsockname()[1], timeout=0.2)
        # Then it timed out; and the pool still answers other queries
        response, truncated = await pool.query(request, "127.0.0.1", plain.port, timeout=2)
        assert not truncated and response.answer
    finally:
        pool.close()
        silent.close()
    # And once closed, it refuses to send
    with pytest.raises(RuntimeError):
        await pool.query(request, "127.0.0.1", plain.port, timeout=2)


@pytest.mark.parametrize(
    ("name", "rdtype", "dnssec"),
    [
        ("_submission._tcp.bench0001.test", "SRV", False),
        ("example.test", "MX", True),
        ("25.2.0.127.in-addr.arpa", "PTR", False),
        (".", "NS", True),
        ("a." * 60 + "test", "A", False),
    ],
)
def test_a_query_is_rendered_as_dnspython_renders_it(name: str, rdtype: str, dnssec: bool) -> None:
    import dns.flags

    request = dns.message.make_query(name, rdtype, want_dnssec=dnssec, use_edns=0, payload=1232)
    request.flags |= dns.flags.AD
    assert query_wire(request) == request.to_wire()


def test_anything_but_a_plain_query_is_left_to_dnspython() -> None:
    request = dns.message.make_query("example.test", "A", use_edns=False)
    request.additional.append(dns.rrset.from_text("example.test.", 60, "IN", "A", "192.0.2.1"))
    assert query_wire(request) == request.to_wire()


async def test_a_send_that_fails_fails_the_try_at_once() -> None:
    # Given a destination the kernel refuses to send to (port 0: EINVAL)
    request = dns.message.make_query("host.test", dns.rdatatype.A)
    pool = UdpPool()
    try:
        # When a query is sent there, with a long timeout
        # Then the error comes back at once, rather than a timeout after 30 s
        with pytest.raises(OSError) as caught:
            await asyncio.wait_for(pool.query(request, "127.0.0.1", 0, timeout=30), 5)
        assert caught.value.errno == errno.EINVAL
    finally:
        pool.close()
