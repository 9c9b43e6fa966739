"""Open a TLS session to an endpoint as its clients do, and capture what it presents.

Used by the TLS probe (and by the probes that reach HTTPS and mail endpoints and need
to know whether a certificate may be trusted with credentials). Implicit TLS connects
and handshakes at once; STARTTLS runs the protocol's plaintext opening first
(:func:`analyzer.protocols.mailproto.starttls`). The handshake never verifies here: the chain is
captured exactly as presented and judged by :mod:`probes.tlschain`, which says *why*
a chain fails rather than just that it does.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from analyzer.core.targets import is_ip
from analyzer.protocols.mailproto import Refusal, StartTlsResult, starttls
from analyzer.protocols.net import Connection, TlsInfo, TranscriptSink, connect

if TYPE_CHECKING:
    from analyzer.core.context import RunContext

__all__ = ["TLS_VERSIONS", "TlsSession", "inspection_context", "open_tls", "version_context"]

TlsVersionName = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
TLS_VERSIONS: tuple[TlsVersionName, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_VERSION_ENUM = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSession:
    """What one TLS session showed (the connection is closed by then)."""

    tls: TlsInfo
    connect_ms: float
    starttls: StartTlsResult | None = None


def inspection_context(run: RunContext) -> ssl.SSLContext:
    """A client context that accepts any chain, so the chain can be captured and judged;
    made once per run and shared by its inspections (about 0.4 ms of CPU each otherwise,
    on the event loop's thread, for each of the run's ~20 inspections).

    Only the certificate inspections use it (the TLS probe, the Autodiscover host block):
    what it captures is validated by the chain diagnosis, and every problem is reported.
    Nothing else is sent over a connection opened with it; ``--insecure`` logins use
    :func:`insecure_context`.
    """
    return run.made("tls-context:inspection", _inspection_context)


def _inspection_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Accept what real clients may still meet (weak keys, SHA-1) so it can be *reported*.
    # Old protocol versions too: a server that speaks only TLS 1.0 still has a chain to judge.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return ctx


def insecure_context() -> ssl.SSLContext:
    """``--insecure`` only: the default client context without certificate verification.

    The user asked to log in past a certificate that failed (the report says so loudly);
    the rest of TLS stays as strict as usual (TLS 1.2+, no weak or anonymous ciphers).
    """
    ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def version_context(run: RunContext, version: TlsVersionName) -> ssl.SSLContext | None:
    """A context that offers only ``version``, made once per run and shared by its version
    checks; None when the local OpenSSL cannot offer ``version``."""
    return run.made(f"tls-context:{version}", lambda: _version_context(version))


def _version_context(version: TlsVersionName) -> ssl.SSLContext | None:
    enum = _VERSION_ENUM[version]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        # Offering TLS 1.0/1.1 is the point here (to see whether the server accepts
        # them); Python warns that they are deprecated, which is why we ask.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = enum
            ctx.maximum_version = enum
    except (ValueError, ssl.SSLError):
        return None
    return ctx


def can_offer(run: RunContext, version: TlsVersionName) -> bool:
    """Whether this machine's OpenSSL can offer ``version`` at all."""
    flag = {"TLSv1": "HAS_TLSv1", "TLSv1.1": "HAS_TLSv1_1", "TLSv1.2": "HAS_TLSv1_2",
            "TLSv1.3": "HAS_TLSv1_3"}[version]
    return bool(getattr(ssl, flag, False)) and version_context(run, version) is not None


async def open_tls(
    run: RunContext,
    *,
    host: str,
    address: str,
    port: int,
    mode: Literal["implicit", "starttls"],
    speaks: Literal["smtp", "imap", "pop3", "http"],
    context: ssl.SSLContext,
    timeout: float,
    transcript: TranscriptSink | None = None,
    connected: asyncio.Event | None = None,
) -> TlsSession:
    """Connect, (STARTTLS,) handshake with SNI ``host``, capture, close. ``connected`` is
    set once the connection is up (for STARTTLS, before the greeting).

    Raises :class:`~analyzer.protocols.mailproto.Refusal` (STARTTLS not offered or refused) and
    :class:`~analyzer.core.errors.NetError` subclasses (connect, handshake, protocol).
    """
    sni = None if is_ip(host) else host
    conn: Connection
    if mode == "implicit":
        conn = await connect(run, host, address, port, timeout=timeout, tls=context,
                             server_hostname=sni, transcript=transcript)
        if connected is not None:
            connected.set()
        try:
            assert conn.tls is not None  # noqa: S101 - set by connect(tls=...)
            return TlsSession(tls=conn.tls, connect_ms=conn.connect_ms)
        finally:
            await conn.close()
    if speaks == "http":
        raise ValueError("STARTTLS is not defined for HTTP")
    conn = await connect(run, host, address, port, timeout=timeout, transcript=transcript)
    if connected is not None:
        connected.set()
    try:
        result = await starttls(conn, speaks, context, server_hostname=sni, timeout=timeout)
        return TlsSession(tls=result.tls, connect_ms=conn.connect_ms, starttls=result)
    finally:
        await conn.close()




__all__ += ["Refusal", "can_offer"]
