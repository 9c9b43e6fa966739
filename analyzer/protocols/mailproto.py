"""The opening of the mail protocols, up to and through STARTTLS.

Shared by the reachability probe (greetings) and the TLS probe (STARTTLS). Each
function reads whole replies through :class:`~analyzer.protocols.net.Connection` and raises
:class:`Refusal` when the server answers, but says no — a result the caller turns into
a finding with the server's own words.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

from analyzer.core.errors import ProtocolViolation
from analyzer.protocols.net import Connection, Reply, TlsInfo

__all__ = [
    "Greeting",
    "Refusal",
    "Service",
    "read_greeting",
    "starttls",
]

Service = Literal["smtp", "imap", "pop3"]

#: Our EHLO name: RFC 5321 4.1.4 wants a domain or an address literal; ".invalid" is
#: reserved (RFC 2606) so it can never be mistaken for a real host.
EHLO_NAME = "rca-check.invalid"


class Refusal(Exception):
    """The server answered, but refused (e.g. ``454 TLS not available``, ``BAD``)."""

    def __init__(self, message: str, *, reply: Reply) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """A server's first words."""

    service: Service
    reply: Reply
    ok: bool
    elapsed_ms: float

    @property
    def text(self) -> str:
        """The greeting's lines joined."""
        return self.reply.text


async def read_greeting(conn: Connection, service: Service, *, timeout: float) -> Greeting:
    """Read the greeting; ``ok`` is False for SMTP 4xx/5xx, IMAP ``BYE``, POP3 ``-ERR``.

    Raises :class:`~analyzer.core.errors.ProtocolViolation` when what arrives is not the
    protocol at all (an HTTP server on port 25, TLS bytes on a plaintext port).
    """
    import time  # noqa: PLC0415

    t0 = time.monotonic()
    if service == "smtp":
        reply = await conn.read_reply("smtp", timeout=timeout)
        ok = reply.code == 220
    elif service == "imap":
        reply = await conn.read_reply("imap", timeout=timeout)
        first = reply.lines[0]
        if not first.startswith("* "):
            raise ProtocolViolation(f"not an IMAP greeting: {first[:200]!r}", phase="read")
        word = first[2:].split(" ", 1)[0].upper()
        if word not in ("OK", "PREAUTH", "BYE"):
            raise ProtocolViolation(f"not an IMAP greeting: {first[:200]!r}", phase="read")
        ok = word in ("OK", "PREAUTH")
    else:
        reply = await conn.read_reply("pop3", timeout=timeout)
        first = reply.lines[0]
        if not first.startswith(("+OK", "-ERR")):
            raise ProtocolViolation(f"not a POP3 greeting: {first[:200]!r}", phase="read")
        ok = first.startswith("+OK")
    return Greeting(
        service=service, reply=reply, ok=ok, elapsed_ms=round((time.monotonic() - t0) * 1000, 1)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTlsResult:
    """What the plaintext part showed, and the handshake."""

    greeting: Greeting
    capabilities: tuple[str, ...]
    tls: TlsInfo
    capabilities_after: tuple[str, ...] = ()


async def capabilities(conn: Connection, service: Service, *, timeout: float) -> tuple[str, ...]:
    """EHLO keywords (SMTP), CAPABILITY atoms (IMAP) or CAPA lines (POP3), upper-cased."""
    if service == "smtp":
        await conn.send(f"EHLO {EHLO_NAME}", timeout=timeout)
        reply = await conn.read_reply("smtp", timeout=timeout)
        if reply.code != 250:
            raise Refusal(f"EHLO refused: {reply.lines[-1][:200]}", reply=reply)
        return tuple(line[4:].strip().upper() for line in reply.lines[1:])
    if service == "imap":
        await conn.send("c1 CAPABILITY", timeout=timeout)
        reply = await conn.read_reply("imap", timeout=timeout, tag="c1")
        if not reply.lines[-1].upper().startswith("C1 OK"):
            raise Refusal(f"CAPABILITY refused: {reply.lines[-1][:200]}", reply=reply)
        atoms: list[str] = []
        for line in reply.lines[:-1]:
            if line.upper().startswith("* CAPABILITY "):
                atoms.extend(line[13:].upper().split())
        return tuple(atoms)
    await conn.send("CAPA", timeout=timeout)
    status = await conn.read_reply("pop3", timeout=timeout)
    if not status.lines[0].startswith("+OK"):
        return ()  # RFC 2449: a server without CAPA answers -ERR; not fatal
    body = await conn.read_multiline(timeout=timeout)
    return tuple(line.strip().upper() for line in body.lines)


def offers_starttls(service: Service, caps: tuple[str, ...]) -> bool:
    """Whether the capabilities announce STARTTLS (SMTP/IMAP) or STLS (POP3)."""
    wanted = "STLS" if service == "pop3" else "STARTTLS"
    return any(c.split(" ", 1)[0] == wanted for c in caps)


async def starttls(
    conn: Connection,
    service: Service,
    context: ssl.SSLContext,
    *,
    server_hostname: str | None,
    timeout: float,
    require_offer: bool = True,
) -> StartTlsResult:
    """Greeting → capabilities → STARTTLS/STLS → handshake → capabilities again.

    Raises :class:`Refusal` when the greeting is negative, STARTTLS is not offered (with
    ``require_offer``) or the command is refused.
    """
    greeting = await read_greeting(conn, service, timeout=timeout)
    if not greeting.ok:
        raise Refusal(
            f"the server refused the session: {greeting.text[:300]}", reply=greeting.reply
        )
    caps = await capabilities(conn, service, timeout=timeout)
    if require_offer and not offers_starttls(service, caps):
        raise Refusal(
            "STARTTLS is not offered", reply=Reply(lines=tuple(caps) or ("(no capabilities)",))
        )
    if service == "smtp":
        await conn.send("STARTTLS", timeout=timeout)
        reply = await conn.read_reply("smtp", timeout=timeout)
        if reply.code != 220:
            raise Refusal(f"STARTTLS refused: {reply.lines[-1][:200]}", reply=reply)
    elif service == "imap":
        await conn.send("c2 STARTTLS", timeout=timeout)
        reply = await conn.read_reply("imap", timeout=timeout, tag="c2")
        if not reply.lines[-1].upper().startswith("C2 OK"):
            raise Refusal(f"STARTTLS refused: {reply.lines[-1][:200]}", reply=reply)
    else:
        await conn.send("STLS", timeout=timeout)
        reply = await conn.read_reply("pop3", timeout=timeout)
        if not reply.lines[0].startswith("+OK"):
            raise Refusal(f"STLS refused: {reply.lines[0][:200]}", reply=reply)
    # RFC 3207 4.2 / RFC 3501 6.2.1: anything the server sent before the handshake
    # must be discarded; data already buffered here would be a command-injection sign.
    if conn.reader._buffer:  # type: ignore[attr-defined]  # noqa: SLF001
        raise ProtocolViolation(
            "the server sent data after its STARTTLS answer and before the handshake "
            "(a STARTTLS command-injection weakness)",
            phase="tls",
        )
    tls = await conn.start_tls(context, server_hostname=server_hostname, timeout=timeout)
    after: tuple[str, ...] = ()
    if service == "smtp":
        try:
            after = await capabilities(conn, service, timeout=timeout)
        except Refusal:
            after = ()
    return StartTlsResult(greeting=greeting, capabilities=caps, tls=tls, capabilities_after=after)
