"""HTTP for probes: httpx clients that resolve names the way the run does.

httpx resolves host names through the operating system. A diagnostic must use the
run's resolver (``--resolver``) and host overrides (``--connect``), so the clients made
here plug a network backend into httpcore that looks names up through
:func:`analyzer.protocols.endpoints.resolve_host`, connects to the address, and keeps the name
for SNI and the Host header. Certificates are verified with the run's trust (certifi +
system + ``--ca-file``) unless a caller explicitly asks for the inspection context.

Requests share the client's pool of keep-alive connections, except those naming an
:class:`OwnConnection`: they travel over one connection that nothing else uses (NTLM
authenticates a connection, not a request). :func:`preopen` opens such a connection ahead
of time (TCP and TLS, no request), so the handshake that needs it does not wait for it.

Responses are read with :func:`read_bounded`: a size limit and the deadline apply to the
body, so a 50 MB or trickling response ends as an error instead of a hang.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
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
    "preopen",
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
    closed the old one. Its first connection is one :func:`preopen` opened to the same
    origin if there is one (waiting for it to be up), else a new one; should the server
    have closed that one before the first request reached it, the request is sent again
    on a new connection.
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

    async def renew(self, factory: Callable[[], Any]) -> Any:
        """Close the connection and make a new transport with ``factory`` (a connection the
        server closed before the first request reached it)."""
        await self.aclose()
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


class _Spares:
    """Connections opened ahead of time (TCP and TLS, no request), each for the first
    :class:`OwnConnection` to its origin that asks (:func:`preopen`), oldest first.

    A spare is opened exactly as httpcore opens a connection of the client: the same
    network backend (the run's resolver, overrides and per-host slots), the same SSL
    context, ALPN and server name, so its certificate is verified as a normal connection's
    would be. A spare that failed to open fails the request that takes it, with the very
    error that connection attempt raised (a refused connection, a timeout, a rejected
    certificate), as if the request had made that attempt itself; nothing is tried twice.
    Should the server have closed it meanwhile, the request that took it fails before any
    answer and is sent again on a new connection (:func:`_transport`). The client owns its
    spares: closing it closes the spares nobody took.
    """

    __slots__ = ("_backend", "_closed", "_context", "_owned", "_waiting", "_timeout")

    def __init__(self, backend: Any, context: ssl.SSLContext, timeout: float) -> None:
        self._backend = backend
        self._context = context
        self._timeout = timeout
        # (host, port, for an OwnConnection) -> spares not yet taken, oldest first
        self._waiting: dict[tuple[str, int, bool], list[asyncio.Task[Any]]] = {}
        self._owned: set[asyncio.Task[Any]] = set()  # not yet handed over: closed by aclose
        self._closed = False

    def open(self, host: str, port: int, *, own: bool) -> None:
        """Start opening a spare to ``https://host:port``, for an :class:`OwnConnection`
        (``own``) or for the shared pool."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._open(host, port))
        self._waiting.setdefault((host.lower(), port, own), []).append(task)
        self._owned.add(task)

    async def _open(self, host: str, port: int) -> Any:
        stream = await self._backend.connect_tcp(host, port, timeout=self._timeout)
        try:
            # As httpcore's AsyncHTTPConnection._connect does for an https origin (http1 only).
            self._context.set_alpn_protocols(["http/1.1"])
            return await stream.start_tls(
                ssl_context=self._context, server_hostname=host, timeout=self._timeout
            )
        except BaseException:
            await stream.aclose()
            raise

    async def take(self, host: str, port: int, *, own: bool) -> Any:
        """The oldest spare to ``host:port`` for ``own`` (see :meth:`open`; waiting for it
        if still opening), or None; the error of its connection attempt if that failed."""
        waiting = self._waiting.get((host.lower(), port, own))
        if not waiting:
            return None
        task = waiting.pop(0)
        try:
            # Shielded: should the caller be cancelled, the spare stays owned, for aclose().
            stream = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the client is closing
                return None
            raise  # the spare stays owned: aclose() closes what it opened
        except BaseException:
            self._owned.discard(task)
            raise
        self._owned.discard(task)
        # Whether the server closed it meanwhile cannot be told before using it (TLS 1.3
        # servers send session tickets after the handshake: the socket of a live one is
        # readable too); the transport sends the request again should it fail there.
        return stream

    def backend(self, backend: Any, *, own: bool) -> Any:
        """A network backend taking a spare to the origin, when one is waiting, for every
        connection of the shared pool or for the first of an :class:`OwnConnection`
        (``own``), and opening the others with ``backend``."""
        return _FromSpares(self, backend, self._context, own=own)

    async def aclose(self) -> None:
        """Close every spare nobody took (and stop those still opening)."""
        self._closed = True
        tasks = list(self._owned)
        self._owned.clear()
        self._waiting.clear()
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if not isinstance(outcome, BaseException):
                await outcome.aclose()


class _FromSpares:
    """A network backend that hands httpcore spares as new connections (see
    :meth:`_Spares.backend`)."""

    __slots__ = ("_backend", "_context", "_own", "_spares", "_used")

    def __init__(
        self, spares: _Spares, backend: Any, context: ssl.SSLContext, *, own: bool
    ) -> None:
        self._spares = spares
        self._backend = backend
        self._context = context
        self._own = own
        self._used = False

    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> Any:
        if not (self._own and self._used):
            self._used = True
            stream = await self._spares.take(host, port, own=self._own)
            if stream is not None:
                return _Opened(stream, self._context, host)
        return await self._backend.connect_tcp(host, port, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _StaleSpare(Exception):  # noqa: N818 - an internal signal, never raised to callers
    """The server closed a spare before the first request on it got any answer: the
    transport sends the request again on a new connection."""


class _Opened:
    """A spare handed to httpcore as a new TCP connection: its TLS is already up, with
    the very context and server name httpcore asks for (anything else is a bug). Until its
    first answer arrives, a closed or reset connection is :class:`_StaleSpare`, and so is
    a request over it without TLS (plain http to the port of a spare: never on it)."""

    __slots__ = ("_context", "_fresh", "_host", "_stream", "_tls")

    def __init__(self, stream: Any, context: ssl.SSLContext, host: str) -> None:
        self._stream = stream
        self._context = context
        self._host = host
        self._fresh = True
        self._tls = False  # httpcore asked for TLS with this spare's parameters

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> Any:  # fmt: skip
        named = (server_hostname or "").lower()
        if ssl_context is not self._context or named != self._host.lower():
            await self._stream.aclose()
            raise RuntimeError("a pre-opened connection was asked for another TLS context")
        self._tls = True
        return self

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore  # noqa: PLC0415

        try:
            data: bytes = await self._stream.read(max_bytes, timeout)
        except httpcore.ReadError as exc:
            if self._fresh:
                raise _StaleSpare(str(exc)) from exc
            raise
        if self._fresh and not data:
            raise _StaleSpare("the server closed the connection before any answer")
        self._fresh = False
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore  # noqa: PLC0415

        if not self._tls:
            await self._stream.aclose()
            raise _StaleSpare("a pre-opened TLS connection cannot carry plain http")
        try:
            await self._stream.write(buffer, timeout)
        except httpcore.WriteError as exc:
            if self._fresh:
                raise _StaleSpare(str(exc)) from exc
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def preopen(client: httpx.AsyncClient, url: str, *, shared: bool = False) -> None:
    """Start opening a connection (TCP and TLS, no request) to ``url``'s origin, for the
    next :class:`OwnConnection` request there, so an NTLM handshake starts on a connection
    that is already up; ``shared``: for the next request of the client's shared pool that
    needs a new connection there. Call it only for an origin that will get such a request
    if all goes well (the credential policy's hosts, never another); an unused one is
    closed with the client. A no-op for ``http`` URLs and clients not made by
    :func:`make_client`.
    """
    import httpx  # noqa: PLC0415

    spares = _CLIENT_SPARES.get(client)
    parsed = httpx.URL(url)
    if isinstance(spares, _Spares) and parsed.scheme == "https" and parsed.host:
        spares.open(parsed.host, parsed.port or 443, own=not shared)


#: The spares of each client :func:`make_client` made (weakly held: they go with the client).
_CLIENT_SPARES: weakref.WeakKeyDictionary[Any, _Spares] = weakref.WeakKeyDictionary()


def _transport(
    run: RunContext, context: ssl.SSLContext, connect_timeout: float
) -> tuple[httpx.AsyncBaseTransport, _Spares]:
    """The transport of :func:`make_client`: a pool resolving through rca, and the
    :class:`OwnConnection` requests routed to their own one-connection pool."""
    import httpcore  # noqa: PLC0415
    import httpx  # noqa: PLC0415

    backend = _backend(run)

    def over(
        size: int, keepalive_expiry: float | None, network: Any = backend
    ) -> httpx.AsyncHTTPTransport:
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
            network_backend=network,
        )
        return transport

    class Transport(httpx.AsyncBaseTransport):
        """Shared pool by default; an :class:`OwnConnection`'s own pool when one is named."""

        def __init__(self) -> None:
            self.spares = _Spares(backend, context, connect_timeout)
            self.shared = over(run.options.concurrency, 5.0,
                               self.spares.backend(backend, own=False))  # fmt: skip

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            own = request.extensions.get(_OWN_CONNECTION)
            if own is None:
                try:
                    return await self.shared.handle_async_request(request)
                except _StaleSpare:
                    # The server closed the spare before this request reached it (nothing
                    # came back): the request goes again, as it would have without a spare.
                    return await _again(self.shared, request)
            if not isinstance(own, OwnConnection):
                raise TypeError(f"{_OWN_CONNECTION} must be an OwnConnection, not {own!r}")
            # One connection, never expired by the client: only the server ends it. The
            # first is a spare preopen() opened to the origin, if one is waiting.
            first = not own.used
            transport = own.transport(
                lambda: over(1, None, self.spares.backend(backend, own=True))
            )
            try:
                response: httpx.Response = await transport.handle_async_request(request)
            except _StaleSpare:
                if not first:  # only the first connection of its own is a spare
                    raise
                return await _again(await own.renew(lambda: over(1, None)), request)
            return response

        async def aclose(self) -> None:
            try:
                await self.spares.aclose()
            finally:
                await self.shared.aclose()

    transport = Transport()
    return transport, transport.spares


async def _again(transport: httpx.AsyncBaseTransport, request: httpx.Request) -> httpx.Response:
    """``request`` sent once more after a stale spare (another stale one is a read error)."""
    import httpx  # noqa: PLC0415

    try:
        return await transport.handle_async_request(request)
    except _StaleSpare as exc:
        raise httpx.ReadError(str(exc), request=request) from exc


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
    connect = min(op, run.options.connect_timeout)
    transport, spares = _transport(run, context, connect)
    client = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(op, connect=connect),
        follow_redirects=follow_redirects,
        trust_env=False,
        # Only encodings read_bounded can decompress within its limit.
        headers={
            "User-Agent": "rca (remote connectivity analyzer)",
            "Accept-Encoding": "gzip, deflate",
        },
    )
    _CLIENT_SPARES[client] = spares
    return client


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
