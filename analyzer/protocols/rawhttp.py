"""HTTP/1.1 by hand over one :class:`~analyzer.protocols.net.Connection`, for RPC over HTTP.

Outlook Anywhere's channels are HTTP requests that never finish: ``RPC_IN_DATA`` announces
a 1 GiB body and streams RTS PDUs into it, ``RPC_OUT_DATA`` gets a response that streams
PDUs back ([MS-RPCH] 2.1.2.1). httpx reads a response only after the whole request body
has gone and reads bodies to their end, so the RPC ping speaks HTTP itself: a request
head, as much body as needed, a bounded status line and headers, then exact reads.

Authentication happens on the connection, as NTLM requires: :func:`open_channel` sends the
negotiate leg with an empty body, reads the 401 challenge, and sends the real request with
the authenticate token (or Basic/Bearer at once). Every line goes to the transcript with
:func:`analyzer.protocols.httpauth.shown_header`, so no credential or token is ever recorded.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.core.errors import NetTimeout, ProtocolViolation, map_exception
from analyzer.protocols.httpauth import (
    AuthScheme,
    NoChallenge,
    NtlmFailed,
    direct_authorization,
    ntlm_client,
    parse_challenges,
    shown_header,
)
from analyzer.protocols.net import Connection, TranscriptSink, connect

if TYPE_CHECKING:
    from analyzer.core.probe import ProbeContext

__all__ = ["ChannelRefused", "Head", "RawHttp", "open_channel"]

#: Header lines accepted in one response.
MAX_HEADERS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """A response's status line and headers."""

    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive)."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


class ChannelRefused(Exception):
    """The server answered the channel request with a final status (``head``, ``body``)."""

    def __init__(self, head: Head, body: bytes) -> None:
        super().__init__(f"HTTP {head.status} {head.reason}")
        self.head = head
        self.body = body


class RawHttp:
    """One HTTP/1.1 connection, request by request."""

    def __init__(
        self, conn: Connection, *, host: str, timeout: float, transcript: TranscriptSink | None
    ) -> None:
        self.conn = conn
        self.host = host
        self.timeout = timeout
        # Lines are recorded here, secrets replaced, never raw by the connection's reader
        # (an NTLM challenge would land in the transcript as it came).
        self.transcript = transcript
        conn.transcript = None

    async def send_head(self, method: str, target: str, headers: list[tuple[str, str]]) -> None:
        """The request line and headers (each recorded, secrets replaced)."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if self.transcript is not None:
            self.transcript.send(f"{method} https://{self.host}{target}")
            for k, v in headers:
                self.transcript.send(shown_header(k, v))
        await self.conn.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"),
                              timeout=self.timeout)  # fmt: skip

    async def send_body(self, data: bytes, *, shown: str) -> None:
        """Body bytes (recorded as ``shown``)."""
        if self.transcript is not None:
            self.transcript.send(shown)
        await self.conn.write(data, timeout=self.timeout)

    async def read_head(self) -> Head:
        """The status line and headers (bounded in count, each line in length)."""
        line = await self.conn.readline(timeout=self.timeout)
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolViolation(f"not an HTTP status line: {line[:200]!r}", phase="read")
        headers: list[tuple[str, str]] = []
        while True:
            header = await self.conn.readline(timeout=self.timeout)
            if not header:
                break
            if len(headers) >= MAX_HEADERS:
                raise ProtocolViolation(f"more than {MAX_HEADERS} header lines", phase="read")
            name, _, value = header.partition(":")
            headers.append((name.strip(), value.strip()))
        head = Head(version=parts[0], status=int(parts[1]),
                    reason=parts[2] if len(parts) > 2 else "", headers=tuple(headers))
        if self.transcript is not None:
            self.transcript.recv(f"{head.version} {head.status} {head.reason}")
            for k, v in head.headers:
                self.transcript.recv(shown_header(k, v))
        return head

    async def read_body(self, head: Head, *, max_bytes: int) -> bytes:
        """A whole (small) body: by Content-Length, chunked, or nothing; bounded."""
        if (head.header("transfer-encoding") or "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                line = await self.conn.readline(timeout=self.timeout)
                try:
                    length = int(line.split(";", 1)[0].strip() or "0", 16)
                except ValueError:
                    raise ProtocolViolation(f"bad chunk size {line[:50]!r}", phase="read") from None
                if length == 0:
                    await self.conn.readline(timeout=self.timeout)
                    return b"".join(chunks)
                size += length
                if size > max_bytes:
                    raise ProtocolViolation(f"a body over {max_bytes:,} bytes", phase="read")
                chunks.append(await self.read_exact(length))
                await self.conn.readline(timeout=self.timeout)
        declared = head.header("content-length")
        if declared is None or not declared.strip().isdigit():
            return b""
        length = int(declared)
        if length > max_bytes:
            raise ProtocolViolation(f"a body of {length:,} bytes announced", phase="read")
        return await self.read_exact(length)

    async def read_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                data = await self.conn.reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise map_exception(EOFError(f"{len(exc.partial)} of {size} bytes"),
                                phase="read") from None  # fmt: skip
        except TimeoutError:
            raise NetTimeout(f"{size} bytes did not arrive in time", phase="read") from None
        except (OSError, ssl.SSLError) as exc:
            raise map_exception(exc, phase="read") from exc
        self.conn.received += size
        return data


async def open_channel(
    ctx: ProbeContext, *, host: str, address: str, port: int, target: str, method: str,
    scheme: AuthScheme, offered: tuple[str, ...], content_length: int, first_body: bytes,
    body_shown: str, context: ssl.SSLContext, transcript: TranscriptSink,
    extra_headers: tuple[tuple[str, str], ...] = (), connection: Connection | None = None,
) -> RawHttp:  # fmt: skip
    """Connect (TLS, SNI ``host``), authenticate with ``scheme`` on this connection, and send
    the request head with ``first_body``; the request stays open (``content_length`` may
    announce more), so the caller ends the channel with ``conn.abort()``. ``connection``:
    one the caller opened ahead (TLS with ``context`` to ``host``, nothing sent on it),
    used instead of a new one. Raises
    :class:`ChannelRefused` if an authentication leg gets a final answer,
    :class:`~analyzer.protocols.httpauth.NtlmFailed` when the handshake breaks."""
    if scheme in ("basic", "bearer") and scheme not in {o.lower() for o in offered}:
        # Basic/Bearer go at once, so only to a server whose 401 asked for them.
        raise NoChallenge(
            f"the server did not ask for {scheme} authentication (offered: "
            f"{', '.join(offered) or 'nothing'}): the credentials were not sent"
        )
    conn = connection or await connect(
        ctx.run, host, address, port, timeout=ctx.op_timeout(), tls=context,
        server_hostname=host, transcript=transcript,
    )  # fmt: skip
    http = RawHttp(conn, host=host, timeout=ctx.op_timeout(), transcript=transcript)
    try:
        base = [("Accept", "application/rpc"), ("User-Agent", "MSRPC"),
                ("Cache-Control", "no-cache"), ("Connection", "Keep-Alive"), *extra_headers]
        creds = ctx.options.credentials
        if scheme in ("basic", "bearer"):
            auth = direct_authorization(creds, scheme)
        else:  # ntlm, negotiate
            header_scheme = "NTLM" if scheme == "ntlm" and "ntlm" in {
                o.lower() for o in offered} else "Negotiate"  # fmt: skip
            client = ntlm_client(creds, host)
            try:
                token = client.step()
            except Exception as exc:  # pyspnego's own error tree
                raise NtlmFailed(f"could not build the NTLM negotiate message: {exc}") from None
            await http.send_head(method, target, [
                *base, ("Content-Length", "0"),
                ("Authorization", f"{header_scheme} {base64.b64encode(token).decode()}"),
            ])  # fmt: skip
            head = await http.read_head()
            body = await http.read_body(head, max_bytes=64 * 1024)
            if head.status != 401:
                raise ChannelRefused(head, body)
            challenge = next((c.token for c in parse_challenges(head.headers)
                              if c.scheme.lower() == header_scheme.lower() and c.token), None)
            if challenge is None:
                raise NtlmFailed(f"401 without an {header_scheme} challenge")
            try:
                final = client.step(base64.b64decode(challenge, validate=True))
            except Exception as exc:
                raise NtlmFailed(f"the server's NTLM challenge is not valid: {exc}") from None
            auth = f"{header_scheme} {base64.b64encode(final or b'').decode()}"
        await http.send_head(method, target, [
            *base, ("Content-Length", str(content_length)), ("Authorization", auth),
        ])  # fmt: skip
        await http.send_body(first_body, shown=body_shown)
    except BaseException:
        conn.abort()  # a channel half-opened has nothing to end in order
        raise
    return http
