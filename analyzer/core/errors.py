"""Exceptions of rca, and the one place where lower-layer errors are translated.

::

    RcaError
     ├── UsageError              the user's input cannot be used (bad target, bad option); exit 3
     ├── LabUnavailable          the bundled lab cannot start here (not root, packages missing)
     ├── InternalError           rca itself failed (a bug, a library misused): never the target's
     └── NetError                the target or the network misbehaved; carries a ``phase``
          ├── NetTimeout         no answer in time (resolve, connect, tls, read, write)
          ├── ConnectionRefused  RST / ICMP port unreachable: nothing listens (port closed)
          ├── ConnectionReset    the peer dropped an established connection
          ├── Unreachable        no route to the host or network
          ├── TlsFailure         the TLS handshake failed (garbage, alert, protocol mismatch)
          └── ProtocolViolation  the peer spoke, but not the protocol (garbage, oversize lines)

Anything else a probe raises is a bug in rca (or an input we cannot interpret): the
pipeline turns it into an ``error`` result. :func:`map_exception` is the only function
that knows about ``OSError``/``ssl``/``httpx``/``dns`` exception classes; code that talks
to the network wraps its calls with ``raise map_exception(exc, phase=...) from exc``.
Only transport and protocol failures become a :class:`NetError` (a finding about the
target); any other exception — a ``TypeError`` in rca's own code running inside a
request, an ``httpx`` usage error — becomes an :class:`InternalError`, which no probe
handles as the target's fault, so the pipeline reports it as rca's crash.
"""

from __future__ import annotations

import errno
from typing import Literal

__all__ = [
    "ConnectionRefused",
    "ConnectionReset",
    "InternalError",
    "LabUnavailable",
    "NetError",
    "NetTimeout",
    "Phase",
    "ProtocolViolation",
    "RcaError",
    "TlsFailure",
    "Unreachable",
    "UsageError",
    "map_exception",
]

Phase = Literal["resolve", "connect", "tls", "read", "write", "request"]


class RcaError(Exception):
    """Base of every exception rca raises on purpose."""


class UsageError(RcaError):
    """The user's input cannot be used; the message says what is wrong, in one line."""


class LabUnavailable(RcaError):
    """The lab cannot start on this machine; the message names the fix."""


class InternalError(RcaError):
    """rca failed, not the target: an exception that is no transport or protocol failure
    (its ``__cause__`` is the original)."""


class NetError(RcaError):
    """The target or the network misbehaved during ``phase``."""

    def __init__(self, message: str, *, phase: Phase) -> None:
        super().__init__(message)
        self.phase: Phase = phase


class NetTimeout(NetError):
    """No answer before the deadline."""


class ConnectionRefused(NetError):
    """The host answered with a reset or port-unreachable: nothing listens there."""


class ConnectionReset(NetError):
    """The peer closed or reset an established connection."""


class Unreachable(NetError):
    """No route to the host or its network."""


class TlsFailure(NetError):
    """The TLS handshake failed."""


class ProtocolViolation(NetError):
    """The peer answered, but not in the protocol expected (or far too much of it)."""


_REFUSED = {errno.ECONNREFUSED}
_RESET = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


def map_exception(exc: BaseException, *, phase: Phase) -> RcaError:
    """Translate a lower-layer exception into rca's tree (see the module docstring).

    Exceptions that are already :class:`RcaError` pass through unchanged; an ``OSError``
    not named below is still a network failure (:class:`NetError`); anything else is not
    the target's doing and becomes an :class:`InternalError` carrying the original type
    name, so the report says rca failed and what happened.
    """
    if isinstance(exc, RcaError):
        return exc
    import ssl  # noqa: PLC0415 - not at import: `rca findings` and `--version` need no TLS

    text = _describe(exc)
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return NetTimeout(f"timed out during {phase}", phase=phase)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TlsFailure(f"TLS handshake failed: {text}", phase="tls")
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) in _REFUSED:
        return ConnectionRefused(f"connection refused ({phase})", phase=phase)
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return ConnectionReset(f"connection reset by peer during {phase}", phase=phase)
    if getattr(exc, "errno", None) in _RESET:
        return ConnectionReset(f"connection reset by peer during {phase}", phase=phase)
    if getattr(exc, "errno", None) in _UNREACHABLE:
        return Unreachable(f"unreachable: {text}", phase=phase)
    if isinstance(exc, EOFError):
        return ConnectionReset(f"connection closed by peer during {phase}", phase=phase)
    mapped = (
        _map_httpx(exc, phase, text)
        or _map_httpcore(exc, phase, text)
        or _map_dns(exc, phase, text)
    )
    if mapped is not None:
        return mapped
    if isinstance(exc, OSError):
        return NetError(f"{text}", phase=phase)
    return InternalError(f"{type(exc).__name__}: {text}")


def _describe(exc: BaseException) -> str:
    import ssl  # noqa: PLC0415

    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _map_httpx(exc: BaseException, phase: Phase, text: str) -> RcaError | None:
    module = type(exc).__module__
    if not module.startswith("httpx"):
        return None
    import httpx  # noqa: PLC0415 - imported only when an httpx error is seen

    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, httpx.ConnectTimeout):
        return NetTimeout("timed out connecting", phase="connect")
    if isinstance(exc, httpx.ReadTimeout):
        return NetTimeout("timed out waiting for the response", phase="read")
    if isinstance(exc, httpx.WriteTimeout):
        return NetTimeout("timed out sending the request", phase="write")
    if isinstance(exc, httpx.TimeoutException):
        return NetTimeout("timed out", phase=phase)
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError) and cause:
        connect = isinstance(exc, httpx.ConnectError)
        mapped = map_exception(cause, phase="connect" if connect else phase)
        if not isinstance(mapped, InternalError):
            return mapped
        # An httpx transport error is the network's even when its cause is unknown here.
    if isinstance(exc, httpx.ConnectError):
        if "SSL" in text or "TLS" in text or "certificate" in text.lower():
            return TlsFailure(f"TLS handshake failed: {text}", phase="tls")
        if "refused" in text.lower():
            return ConnectionRefused("connection refused", phase="connect")
        return NetError(f"could not connect: {text}", phase="connect")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.LocalProtocolError):
        return ProtocolViolation(f"HTTP protocol error: {text}", phase="request")
    if isinstance(exc, httpx.TooManyRedirects):
        return ProtocolViolation(f"too many redirects: {text}", phase="request")
    if isinstance(exc, httpx.DecodingError):
        return ProtocolViolation(f"the response cannot be decoded: {text}", phase="read")
    if isinstance(exc, httpx.TransportError):
        return NetError(f"HTTP error: {text}", phase="request")
    # HTTPStatusError (raise_for_status), InvalidURL, StreamError...: rca's own use of httpx.
    return InternalError(f"{type(exc).__name__}: {text}")


def _map_httpcore(exc: BaseException, phase: Phase, text: str) -> RcaError | None:
    """httpcore's exceptions (the cause of httpx's) are all transport failures."""
    if not type(exc).__module__.startswith("httpcore"):
        return None
    import httpcore  # noqa: PLC0415

    if isinstance(exc, httpcore.TimeoutException):
        return NetTimeout("timed out", phase=phase)
    if isinstance(exc, httpcore.ProtocolError):
        return ProtocolViolation(f"HTTP protocol error: {text}", phase="request")
    if isinstance(exc, httpcore.ConnectError):
        return NetError(f"could not connect: {text}", phase="connect")
    return NetError(f"HTTP error: {text}", phase=phase)


def _map_dns(exc: BaseException, phase: Phase, text: str) -> RcaError | None:
    module = type(exc).__module__
    if not module.startswith("dns"):
        return None
    import dns.exception  # noqa: PLC0415

    if isinstance(exc, dns.exception.Timeout):
        return NetTimeout("DNS query timed out", phase="resolve")
    return NetError(f"DNS error: {text}", phase="resolve")
