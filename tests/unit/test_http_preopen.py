"""Connections opened ahead of time (analyzer.protocols.http.preopen), against a small TLS
server on loopback that records, per connection, the requests it carried and whether the
client closed it."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from analyzer.core.context import RunContext, RunOptions
from analyzer.core.errors import NetError
from analyzer.lab.pki import LabPKI
from analyzer.protocols.http import make_client, preopen, request_bounded
from tests.servers.tcp import read_http_request, serve, server_context, tls_then

HOST = "spare.test"
#: Bound of every wait for the server (s): the tests never assert how long anything took.
WAIT = 5.0


@dataclass(slots=True)
class Seen:
    """Per connection, in the order accepted: the request targets it carried, and whether
    the client ended it."""

    requests: list[list[str]] = field(default_factory=list)
    ended: list[bool] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def until(self, test: Callable[[], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(test, WAIT)

    async def served(self, count: int) -> bool:
        """Wait, without blocking the event loop (the client's TLS runs there), until
        ``count`` connections are past their TLS handshake at the server."""
        return await asyncio.to_thread(self.until, lambda: len(self.requests) >= count)


def _script(context: ssl.SSLContext, seen: Seen, *, close_first_idle: bool = False
            ) -> Callable[[socket.socket, threading.Event], None]:  # fmt: skip
    """Answer each request 200 with keep-alive; with ``close_first_idle``, the first
    connection is closed by the server before any request (an idle timeout)."""

    def after(tls: socket.socket, stop: threading.Event) -> None:
        with seen.changed:
            index = len(seen.requests)
            seen.requests.append([])
            seen.ended.append(False)
            seen.changed.notify_all()
        if close_first_idle and index == 0:
            return  # tls_then closes it
        reader = tls.makefile("rb", buffering=0)
        while (request := read_http_request(reader)) is not None:
            with seen.changed:
                seen.requests[index].append(request[1])
                seen.changed.notify_all()
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
                        b"\r\nok")  # fmt: skip
        with seen.changed:
            seen.ended[index] = True
            seen.changed.notify_all()

    return tls_then(context, after)


@pytest.fixture(scope="module")
def server_tls(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "spare", HOST)


def _options(pki: LabPKI) -> RunOptions:
    return RunOptions(connect={HOST: ("127.0.0.1",)}, ca_file=pki.ca_file, timeout=20)


async def _request_after_spare(pki: LabPKI, server_tls: ssl.SSLContext, seen: Seen, *,
                               close_first_idle: bool) -> tuple[int, int]:  # fmt: skip
    """A connection opened ahead for the shared pool and up at the server, then a request:
    its status, and how many connections the server saw."""
    with serve(_script(server_tls, seen, close_first_idle=close_first_idle)) as server:
        url = f"https://{HOST}:{server.port}/next"
        async with RunContext(_options(pki)) as run, make_client(run) as client:
            preopen(client, url, shared=True)
            assert await seen.served(1)
            response = await request_bounded(client, "GET", url, timeout=WAIT)
        return response.status, server.connections


async def test_the_next_request_goes_over_the_connection_opened_ahead(
    pki: LabPKI, server_tls: ssl.SSLContext
) -> None:
    # Given a connection opened ahead for the client's shared pool, up at the server
    seen = Seen()
    # When the client sends a request there
    status, connections = await _request_after_spare(pki, server_tls, seen,
                                                     close_first_idle=False)  # fmt: skip
    # Then it went over that connection: no other was opened
    assert status == 200
    assert seen.requests == [["/next"]]
    assert connections == 1


async def test_a_connection_opened_ahead_that_the_server_closed_is_replaced(
    pki: LabPKI, server_tls: ssl.SSLContext
) -> None:
    # Given a connection opened ahead that the server closed while it was idle
    seen = Seen()
    # When the client sends a request there
    status, connections = await _request_after_spare(pki, server_tls, seen,
                                                     close_first_idle=True)  # fmt: skip
    # Then the request was answered over a new connection, the closed one carried none
    assert status == 200
    assert seen.requests == [[], ["/next"]]
    assert connections == 2


async def test_connections_opened_ahead_and_never_used_are_closed_with_the_client(
    pki: LabPKI, server_tls: ssl.SSLContext
) -> None:
    seen = Seen()
    with serve(_script(server_tls, seen)) as server:
        url = f"https://{HOST}:{server.port}/"
        async with RunContext(_options(pki)) as run:
            async with make_client(run) as client:
                # Given connections opened ahead for both kinds of request, none used
                preopen(client, url)
                preopen(client, url, shared=True)
                assert await seen.served(2)
            # When the client is closed
        # Then the server saw both end, with no request
        assert seen.until(lambda: len(seen.ended) == 2 and all(seen.ended)), seen.ended
        assert seen.requests == [[], []]


async def test_a_connection_still_opening_when_the_client_closes_is_not_left_open(
    pki: LabPKI, server_tls: ssl.SSLContext
) -> None:
    seen = Seen()
    with serve(_script(server_tls, seen)) as server:
        url = f"https://{HOST}:{server.port}/"
        async with RunContext(_options(pki)) as run:
            async with make_client(run) as client:
                # Given a connection opened ahead, the client closed at once
                preopen(client, url)
        # Then whatever reached the server was ended by the client
        assert seen.until(lambda: all(seen.ended)), seen.ended
        assert all(not carried for carried in seen.requests)
        assert server.connections <= 1


async def _certificate_error(pki: LabPKI, wrong: ssl.SSLContext, *, ahead: bool
                             ) -> tuple[str, str, int]:  # fmt: skip
    """The error of a request to a server whose certificate names another host (with the
    connection opened ahead or not), and how many connections the server saw."""
    with serve(tls_then(wrong)) as server:
        url = f"https://{HOST}:{server.port}/"
        async with RunContext(_options(pki)) as run, make_client(run) as client:
            if ahead:
                preopen(client, url, shared=True)
            with pytest.raises(NetError) as failed:
                await request_bounded(client, "GET", url, timeout=WAIT)
        return type(failed.value).__name__, str(failed.value), server.connections


async def test_a_rejected_certificate_is_reported_as_without_a_connection_opened_ahead(
    pki: LabPKI,
) -> None:
    # Given a server whose certificate names another host
    wrong = server_context(pki, "elsewhere", "elsewhere.test")
    # When a request goes there over a connection opened ahead, and without one
    kind, text, connections = await _certificate_error(pki, wrong, ahead=True)
    plain_kind, plain_text, _ = await _certificate_error(pki, wrong, ahead=False)
    # Then the error is the same, and the server saw one attempt (nothing tried twice)
    assert (kind, text) == (plain_kind, plain_text)
    assert "certificate" in text.lower()
    assert connections == 1
