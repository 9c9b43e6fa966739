"""HTTP for probes: httpx clients that resolve names the way the run does.

httpx resolves host names through the operating system. A diagnostic must use the
run's resolver (``--resolver``) and host overrides (``--connect``), so the clients made
here plug a network backend into httpcore that looks names up through
:func:`analyzer.protocols.endpoints.resolve_host`, connects to the address, and keeps the name
for SNI and the Host header. Certificates are verified with the run's trust (certifi +
system + ``--ca-file``) unless a caller explicitly asks for the inspection context.

Requests share the client's pool of keep-alive connections, except those naming an
:class:`OwnConnection`: they travel over one connection that nothing else uses (NTLM
authenticates a connection, not a request).

Responses are read with :func:`read_bounded`: a size limit and the deadline apply to the
body, so a 50 MB or trickling response ends as an error instead of a hang.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analyzer.core.errors import NetError, NetTimeout, ProtocolViolation, map_exception

if TYPE_CHECKING:
    import httpx

    from analyzer.core.context import RunContext

__all__ = [
    "BoundedResponse",
    "OwnConnection",
    "make_client",
    "read_bounded",
    "request_bounded",
]

#: Default limit of a response body (an Autodiscover answer is a few KB).
DEFAULT_MAX_BYTES = 1024 * 1024


def _backend(run: RunContext) -> Any:
    import httpcore  # noqa: PLC0415

    from analyzer.protocols.endpoints import resolve_host  # noqa: PLC0415

    inner = httpcore.AnyIOBackend()

    class ResolvingBackend(httpcore.AsyncNetworkBackend):
        """Connects to the address the run's resolver gives for ``host``."""

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> Any:
            addrs = await resolve_host(run, host)
            candidates = list(addrs.addresses_for(run.options.families))
            if not candidates:
                raise httpcore.ConnectError(f"{host} has no address (as resolved by rca)")
            last: Exception | None = None
            for address in candidates:
                try:
                    async with run.slot(host):
                        return await inner.connect_tcp(
                            address,
                            port,
                            timeout=timeout,
                            local_address=local_address,
                            socket_options=socket_options,
                        )
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    last = exc
            assert last is not None  # noqa: S101 - the loop ran at least once
            raise last

        async def sleep(self, seconds: float) -> None:
            await inner.sleep(seconds)

    return ResolvingBackend()


class OwnConnection:
    """A TCP connection of its own, for requests that must travel together and alone.

    NTLM and Negotiate over HTTP authenticate a *connection* ([MS-NTHT]; IIS's HTTP.sys
    binds the security context to the keep-alive connection): the negotiate message, the
    challenge, the authenticate message and the authenticated response must all use one
    connection, and a pooled client may hand an idle connection to whichever request asks
    first, or replace one it considers idle too long. Requests sent with :attr:`extensions`
    through a client of :func:`make_client` go over this connection only (opened at the
    first request, with the client's resolver and trust), and nothing else is sent on it;
    leaving the ``async with`` block closes it. ::

        async with OwnConnection() as own:
            request = client.build_request("POST", url, extensions=own.extensions)
            response = await client.send(request)

    Should the server close it, the next request opens a new one; the client never ends it
    for being idle, so a new connection always means the server (or a device on the way)
    closed the old one.
    """

    __slots__ = ("_transport",)

    def __init__(self) -> None:
        self._transport: Any = None  # an httpx transport over a one-connection pool

    @property
    def extensions(self) -> dict[str, Any]:
        """The request extensions that send a request over this connection."""
        return {_OWN_CONNECTION: self}

    @property
    def used(self) -> bool:
        """True once a request went over it (a client not made by :func:`make_client`
        ignores the extension: callers check this)."""
        return self._transport is not None

    def transport(self, factory: Callable[[], Any]) -> Any:
        """The transport of this connection (made with ``factory`` at the first request)."""
        if self._transport is None:
            self._transport = factory()
        return self._transport

    async def aclose(self) -> None:
        """Close the connection (if one was opened)."""
        if self._transport is not None:
            await self._transport.aclose()

    async def __aenter__(self) -> OwnConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


#: The request extension naming an :class:`OwnConnection`.
_OWN_CONNECTION = "rca_own_connection"


def _transport(run: RunContext, context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
    """The transport of :func:`make_client`: a pool resolving through rca, and the
    :class:`OwnConnection` requests routed to their own one-connection pool."""
    import httpcore  # noqa: PLC0415
    import httpx  # noqa: PLC0415

    backend = _backend(run)

    def over(size: int, keepalive_expiry: float | None) -> httpx.AsyncHTTPTransport:
        transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, retries=0)
        # httpx exposes no network-backend hook; the pool it builds is replaced by an
        # equivalent one that resolves through rca (same options as httpx's own).
        transport._pool = httpcore.AsyncConnectionPool(  # noqa: SLF001
            ssl_context=context,
            max_connections=size,
            max_keepalive_connections=size,
            keepalive_expiry=keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )
        return transport

    class Transport(httpx.AsyncBaseTransport):
        """Shared pool by default; an :class:`OwnConnection`'s own pool when one is named."""

        def __init__(self) -> None:
            self.shared = over(run.options.concurrency, 5.0)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            own = request.extensions.get(_OWN_CONNECTION)
            if own is None:
                return await self.shared.handle_async_request(request)
            if not isinstance(own, OwnConnection):
                raise TypeError(f"{_OWN_CONNECTION} must be an OwnConnection, not {own!r}")
            # One connection, never expired by the client: only the server ends it.
            transport = own.transport(lambda: over(1, None))
            response: httpx.Response = await transport.handle_async_request(request)
            return response

        async def aclose(self) -> None:
            await self.shared.aclose()

    return Transport()


def make_client(
    run: RunContext,
    *,
    verify: bool | ssl.SSLContext = True,
    timeout: float | None = None,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` using the run's resolver, overrides and trust; requests
    naming an :class:`OwnConnection` get a connection of their own.

    ``verify=False`` is refused: pass :func:`analyzer.protocols.tlsprobe.inspection_context` when a
    probe must see a broken chain, so the choice is explicit and greppable.
    """
    import httpx  # noqa: PLC0415

    if verify is False:
        raise ValueError("pass an explicit SSLContext to inspect unverified chains")
    context = run.ssl_context() if verify is True else verify
    op = run.options.op_timeout if timeout is None else timeout
    return httpx.AsyncClient(
        transport=_transport(run, context),
        timeout=httpx.Timeout(op, connect=min(op, run.options.connect_timeout)),
        follow_redirects=follow_redirects,
        trust_env=False,
        # Only encodings read_bounded can decompress within its limit.
        headers={
            "User-Agent": "rca (remote connectivity analyzer)",
            "Accept-Encoding": "gzip, deflate",
        },
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BoundedResponse:
    """A response whose body was read within limits."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    url: str
    http_version: str
    elapsed_ms: float
    truncated: bool = False

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive)."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def header_all(self, name: str) -> list[str]:
        """Every header of that name."""
        lowered = name.lower()
        return [v for k, v in self.headers if k.lower() == lowered]


async def read_bounded(response: httpx.Response, *, max_bytes: int, deadline: float) -> bytes:
    """The body, or :class:`ProtocolViolation` past ``max_bytes``, :class:`NetTimeout` past
    ``deadline`` (a ``time.monotonic()`` value) — whichever comes first."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ProtocolViolation(
            f"the response announces {int(declared):,} bytes; the limit is {max_bytes:,}",
            phase="read",
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > max_bytes:
                    raise ProtocolViolation(
                        f"the response is larger than {max_bytes:,} bytes", phase="read"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise NetTimeout(
            f"the response body was not complete in time ({size:,} bytes read)", phase="read"
        ) from None
    body = b"".join(chunks)
    encoding = response.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        body = _decompress(body, encoding, max_bytes)
    return body


def _decompress(body: bytes, encoding: str, max_bytes: int) -> bytes:
    import zlib  # noqa: PLC0415

    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ProtocolViolation(f"the {encoding} body is corrupt: {exc}", phase="read") from None
    if len(out) > max_bytes or d.unconsumed_tail:
        raise ProtocolViolation(
            f"the decompressed response is larger than {max_bytes:,} bytes (a compression bomb?)",
            phase="read",
        )
    return out


async def request_bounded(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> BoundedResponse:
    """Send one request and read the response within ``max_bytes`` and ``timeout``.

    Lower-layer errors are mapped (:class:`NetError` subclasses); the request is never
    retried and redirects are never followed here (callers record each hop).
    """
    started = time.monotonic()
    deadline = started + timeout
    request = client.build_request(method, url, headers=headers, content=content)
    response = await send_streaming(client, request, deadline=deadline)
    return await read_response(response, max_bytes=max_bytes, deadline=deadline,
                               started=started)  # fmt: skip


async def send_streaming(
    client: httpx.AsyncClient, request: httpx.Request, *, deadline: float
) -> httpx.Response:
    """Send ``request`` (no redirect followed) and return once the response head is in, body
    unread; by ``deadline`` (``time.monotonic()``), else :class:`NetTimeout`.

    httpx's timeouts are per read: a server trickling its headers a byte at a time never trips
    them, so the whole exchange is bounded here. Only transport and protocol failures become
    :class:`NetError`; anything else (a bug in rca's resolving backend, a usage error) is
    rca's and reaches the pipeline as such (:func:`map_exception`).
    """
    left = max(0.0, deadline - time.monotonic())
    try:
        async with asyncio.timeout(left):
            return await client.send(request, stream=True, follow_redirects=False)
    except TimeoutError:
        raise NetTimeout(f"no complete response header within {left:.1f} s",
                         phase="read") from None  # fmt: skip
    except Exception as exc:
        raise map_exception(exc, phase="request") from exc


async def read_response(
    response: httpx.Response, *, max_bytes: int, deadline: float, started: float
) -> BoundedResponse:
    """The body of ``response`` read within ``max_bytes`` and ``deadline``, the response
    closed, as a :class:`BoundedResponse` (``elapsed_ms`` counted from ``started``)."""
    try:
        body = await read_bounded(response, max_bytes=max_bytes, deadline=deadline)
    except NetError:
        raise
    except Exception as exc:
        raise map_exception(exc, phase="read") from exc
    finally:
        await response.aclose()
    return BoundedResponse(
        status=response.status_code,
        headers=tuple((k, v) for k, v in response.headers.multi_items()),
        body=body,
        url=str(response.url),
        http_version=response.http_version,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
    )
