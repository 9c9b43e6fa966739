"""Network helpers shared by probes: connect, read whole protocol lines, STARTTLS, TLS capture.

Everything is asyncio with explicit timeouts; every lower-layer error is mapped once
through :func:`analyzer.core.errors.map_exception`. Replies are read as whole protocol lines
(multi-line SMTP replies, IMAP tagged responses, POP3 multi-line answers), bounded in
line length, line count and time, so a hostile server that trickles, floods or never
speaks ends as an error within the deadline instead of a hang.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from analyzer.core.errors import (
    ConnectionRefused,
    ConnectionReset,
    NetError,
    NetTimeout,
    ProtocolViolation,
    Unreachable,
    map_exception,
)

if TYPE_CHECKING:
    from analyzer.core.context import RunContext

__all__ = [
    "MAX_LINE",
    "Connection",
    "Reply",
    "TlsInfo",
    "TranscriptSink",
    "connect",
    "family_of",
    "probe_connect",
]

#: The longest protocol line accepted (RFC 5321 4.5.3.1.5 allows 512 octets for a reply
#: line; IMAP lines with capabilities are longer). Past this the peer is hostile or broken.
MAX_LINE = 64 * 1024
#: The most lines one reply may have (a multi-line EHLO has a dozen).
MAX_REPLY_LINES = 1000

Speaks = Literal["smtp", "imap", "pop3"]


class TranscriptSink(Protocol):
    """Where protocol lines are recorded (a :class:`~analyzer.core.probe.StepRecorder`)."""

    def send(self, text: str) -> None: ...
    def recv(self, text: str) -> None: ...
    def note(self, text: str) -> None: ...


def family_of(address: str) -> Literal[4, 6]:
    """4 or 6 for an IP address string."""
    return 6 if ipaddress.ip_address(address).version == 6 else 4


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    # Control characters other than tab would corrupt terminals and reports.
    return "".join(ch if ch >= " " or ch == "\t" else f"\\x{ord(ch):02x}" for ch in text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A complete reply: its lines (decoded) and, for SMTP, the code."""

    lines: tuple[str, ...]
    code: int | None = None

    @property
    def text(self) -> str:
        """The lines joined by newlines."""
        return "\n".join(self.lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsInfo:
    """What a TLS handshake showed: the chain as presented, version, cipher, ALPN, OCSP."""

    chain_der: tuple[bytes, ...]
    chain_complete: bool
    version: str
    cipher: str
    cipher_bits: int | None
    sni: str | None
    alpn: str | None = None
    handshake_ms: float = 0.0


@dataclass(slots=True, kw_only=True)
class Connection:
    """An open TCP (or TLS) connection with a bounded line reader."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str
    address: str
    port: int
    connect_ms: float
    transcript: TranscriptSink | None = None
    tls: TlsInfo | None = None
    received: int = field(default=0)

    # --- lines --------------------------------------------------------------------------------

    async def readline(self, *, timeout: float) -> str:
        """One line without its ending; :class:`ProtocolViolation` if it is too long."""
        try:
            async with asyncio.timeout(timeout):
                raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                line = _decode(exc.partial)
                self._recv(line)
                raise ProtocolViolation(
                    f"connection closed in the middle of a line: {line[:200]!r}", phase="read"
                ) from None
            raise map_exception(EOFError(), phase="read") from None
        except asyncio.LimitOverrunError:
            raise ProtocolViolation(
                f"the server sent a line longer than {MAX_LINE // 1024} KiB", phase="read"
            ) from None
        except TimeoutError:
            raise NetTimeout("no complete line before the timeout", phase="read") from None
        except (OSError, ssl.SSLError) as exc:
            raise map_exception(exc, phase="read") from exc
        self.received += len(raw)
        line = _decode(raw)
        self._recv(line)
        return line

    async def send(self, line: str, *, timeout: float, shown: str | None = None) -> None:
        """Send one line with CRLF; ``shown`` replaces it in the transcript (secrets)."""
        if self.transcript is not None:
            self.transcript.send(line if shown is None else shown)
        await self.write(line.encode("utf-8") + b"\r\n", timeout=timeout)

    async def write(self, data: bytes, *, timeout: float) -> None:
        """Send ``data`` as it is (not recorded: the caller records what may be shown)."""
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError:
            raise NetTimeout("the server does not accept data", phase="write") from None
        except (OSError, ssl.SSLError) as exc:
            raise map_exception(exc, phase="write") from exc

    def _recv(self, line: str) -> None:
        if self.transcript is not None:
            self.transcript.recv(line)

    async def read_reply(self, speaks: Speaks, *, timeout: float, tag: str | None = None) -> Reply:
        """A whole reply: SMTP multi-line (``250-``…``250 ``), IMAP up to the tagged line
        (or the untagged greeting when ``tag`` is None), POP3 one status line."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetTimeout(
                    f"the reply was not complete before the timeout ({len(lines)} lines read)",
                    phase="read",
                )
            line = await self.readline(timeout=left)
            lines.append(line)
            if len(lines) > MAX_REPLY_LINES:
                raise ProtocolViolation(
                    f"the reply went on for more than {MAX_REPLY_LINES} lines", phase="read"
                )
            if speaks == "smtp":
                code, done = _smtp_line(line)
                if done:
                    return Reply(lines=tuple(lines), code=code)
            elif speaks == "imap":
                if tag is None or line.startswith(f"{tag} "):
                    return Reply(lines=tuple(lines))
            else:
                return Reply(lines=tuple(lines))

    async def read_multiline(self, *, timeout: float) -> Reply:
        """A POP3 multi-line answer after its status line, up to the lone ``.``."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetTimeout("the multi-line answer did not end in time", phase="read")
            line = await self.readline(timeout=left)
            if line == ".":
                return Reply(lines=tuple(lines))
            lines.append(line[1:] if line.startswith("..") else line)
            if len(lines) > MAX_REPLY_LINES:
                raise ProtocolViolation(
                    f"the answer went on for more than {MAX_REPLY_LINES} lines", phase="read"
                )

    # --- TLS ----------------------------------------------------------------------------------

    async def start_tls(
        self, context: ssl.SSLContext, *, server_hostname: str | None, timeout: float
    ) -> TlsInfo:
        """Upgrade this connection (STARTTLS) and capture what the handshake showed."""
        t0 = time.monotonic()
        if self.transcript is not None:
            self.transcript.note(f"TLS handshake (SNI {server_hostname or 'none'})")
        try:
            async with asyncio.timeout(timeout):
                await self.writer.start_tls(context, server_hostname=server_hostname)
        except TimeoutError:
            raise NetTimeout("the TLS handshake did not finish", phase="tls") from None
        except (OSError, ssl.SSLError, ssl.CertificateError, EOFError) as exc:
            raise map_exception(exc, phase="tls") from exc
        self.tls = _tls_info(self.writer, server_hostname, (time.monotonic() - t0) * 1000)
        return self.tls

    async def close(self) -> None:
        """Close without waiting long for the peer (a hostile peer may never answer)."""
        try:
            self.writer.close()
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            pass
        except Exception:  # noqa: S110 - asyncio's SSL shutdown raises assorted errors
            pass

    def abort(self) -> None:
        """Drop the connection at once: no TLS close_notify, no wait for the peer's.

        For a connection carrying a request that can never finish (an RPC over HTTP channel
        announces a 1 GiB body): there is no orderly end to wait for, and a proxy holding
        the request open does not answer close_notify (IIS lets :meth:`close` wait its
        whole second).
        """
        self.writer.transport.abort()


def _smtp_line(line: str) -> tuple[int | None, bool]:
    """(code, last line?) of an SMTP reply line (RFC 5321 4.2)."""
    if len(line) >= 3 and line[:3].isdigit():
        code = int(line[:3])
        if len(line) == 3 or line[3] == " ":
            return code, True
        if line[3] == "-":
            return code, False
    raise ProtocolViolation(f"not an SMTP reply line: {line[:200]!r}", phase="read")


def _tls_info(writer: asyncio.StreamWriter, sni: str | None, handshake_ms: float) -> TlsInfo:
    sslobj = writer.get_extra_info("ssl_object")
    chain, complete = _presented_chain(sslobj)
    cipher = sslobj.cipher() if sslobj is not None else None
    return TlsInfo(
        chain_der=chain,
        chain_complete=complete,
        version=(sslobj.version() if sslobj is not None else None) or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        cipher_bits=cipher[2] if cipher else None,
        sni=sni,
        alpn=sslobj.selected_alpn_protocol() if sslobj is not None else None,
        handshake_ms=round(handshake_ms, 1),
    )


def _presented_chain(sslobj: ssl.SSLObject | None) -> tuple[tuple[bytes, ...], bool]:
    """The certificates exactly as the server sent them, in order.

    Python 3.13 has ``SSLObject.get_unverified_chain()``; 3.11 and 3.12 expose the same
    call on the private ``_sslobj``. Without either only the leaf is available, and the
    caller says so (``chain_complete=False``).
    """
    if sslobj is None:
        return (), False
    getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is None:
        inner = getattr(sslobj, "_sslobj", None)
        getter = getattr(inner, "get_unverified_chain", None)
    if getter is not None:
        try:
            certs = getter() or []
            import _ssl  # noqa: PLC0415

            return tuple(c.public_bytes(_ssl.ENCODING_DER) for c in certs), True
        except Exception:  # noqa: S110 - fall back to the leaf below
            pass
    leaf = sslobj.getpeercert(binary_form=True)
    return ((leaf,) if leaf else ()), False


async def connect(
    ctx: RunContext,
    host: str,
    address: str,
    port: int,
    *,
    timeout: float,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    transcript: TranscriptSink | None = None,
) -> Connection:
    """Open a TCP connection to ``address`` (implicit TLS when ``tls`` is given).

    Holds one of the run's connection slots for ``host`` while connecting. Errors are
    mapped (:class:`ConnectionRefused`, :class:`NetTimeout`, :class:`Unreachable`...).
    """
    t0 = time.monotonic()
    if transcript is not None:
        transcript.note(f"connect to {_hostport(address, port)}")
    async with ctx.slot(host):
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    address, port, limit=MAX_LINE, family=_af(address)
                )
        except TimeoutError:
            raise NetTimeout(
                f"no answer from {_hostport(address, port)} within {timeout:.1f} s",
                phase="connect",
            ) from None
        except OSError as exc:
            raise map_exception(exc, phase="connect") from exc
    conn = Connection(
        reader=reader,
        writer=writer,
        host=host,
        address=address,
        port=port,
        connect_ms=round((time.monotonic() - t0) * 1000, 1),
        transcript=transcript,
    )
    if transcript is not None:
        transcript.note(f"connected in {conn.connect_ms} ms")
    if tls is not None:
        try:
            await conn.start_tls(tls, server_hostname=server_hostname, timeout=timeout)
        except BaseException:
            await conn.close()
            raise
    return conn


def _af(address: str) -> int:
    return socket.AF_INET6 if family_of(address) == 6 else socket.AF_INET


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


PortState = Literal["open", "closed", "filtered", "unreachable", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectOutcome:
    """How a TCP connect ended, for the reachability probe."""

    state: PortState
    elapsed_ms: float
    detail: str = ""


async def probe_connect(
    ctx: RunContext, host: str, address: str, port: int, *, timeout: float
) -> tuple[ConnectOutcome, Connection | None]:
    """Connect and classify: open, closed (reset/refused), filtered (no answer), unreachable."""
    t0 = time.monotonic()
    try:
        conn = await connect(ctx, host, address, port, timeout=timeout)
    except ConnectionRefused as exc:
        return ConnectOutcome(state="closed", elapsed_ms=_ms(t0), detail=str(exc)), None
    except ConnectionReset:
        # Accepted, then reset before we could use it (a proxy without backends, TCP
        # wrappers): to a client this is a refusal.
        detail = "the connection was reset as soon as it opened"
        return ConnectOutcome(state="closed", elapsed_ms=_ms(t0), detail=detail), None
    except NetTimeout as exc:
        return ConnectOutcome(state="filtered", elapsed_ms=_ms(t0), detail=str(exc)), None
    except Unreachable as exc:
        return ConnectOutcome(state="unreachable", elapsed_ms=_ms(t0), detail=str(exc)), None
    except NetError as exc:
        return ConnectOutcome(state="error", elapsed_ms=_ms(t0), detail=str(exc)), None
    return ConnectOutcome(state="open", elapsed_ms=conn.connect_ms), conn


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)

