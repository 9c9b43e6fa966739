"""Client-side HTTP authentication for probes: Basic, NTLM (pyspnego) and Bearer.

One entry point, :func:`send_authenticated`, sends a request with the user's credentials
the way Outlook and ActiveSync clients do, and returns the final response read within
limits (:class:`~analyzer.protocols.http.BoundedResponse`); whether that response means "logged
in" is for the caller to judge (a final 401 is returned, not raised).

- ``basic``: ``Authorization: Basic base64(user:password)`` on the request itself
  (RFC 7617).
- ``ntlm`` / ``negotiate``: the NTLM handshake ([MS-NLMP]) over ONE keep-alive connection
  of its own (:class:`~analyzer.protocols.http.OwnConnection`: nothing else is sent on it from the
  first request to the authenticated response, then it is closed): an unauthenticated
  request → 401 listing ``NTLM`` and/or ``Negotiate`` → the same
  request with a type 1 (negotiate) token → 401 carrying the type 2 (challenge) token →
  the request with the type 3 (authenticate) token. ``ntlm`` uses the ``NTLM`` header
  scheme when the server offers it, else ``Negotiate`` (carrying raw NTLM, as Windows
  clients do without Kerberos); ``negotiate`` forces the ``Negotiate`` scheme.
- ``bearer``: ``Authorization: Bearer <token>`` (RFC 6750).

Security rules, enforced here so no probe can forget them: credentials are never sent
over plain ``http`` (:class:`InsecureUrl`), nor to a URL carrying its own ``user:pass@``
part; a method is used only after a ``WWW-Authenticate`` challenge offering it (Basic only
after ``Basic``, Bearer after ``Bearer``, NTLM after ``NTLM``/``Negotiate``: without
``offered``, an unauthenticated request asks first; :class:`NoChallenge`); redirects are
never followed. The transcript shows every request and response
line with secrets replaced: ``Authorization: Basic «redacted»``, NTLM blobs as
``«NTLM type 1, 40 bytes»``.

Exceptions::

    RcaError
     └── AuthError            the credentials could not be presented
          ├── InsecureUrl     not https, or the URL holds credentials of its own
          ├── MissingSecret   no password (basic, ntlm) or no token (bearer)
          ├── NoChallenge     the server did not offer the method (no 401 asking for it)
          └── NtlmFailed      the handshake broke (no challenge, bad token, connection closed)

Network failures are the usual :class:`~analyzer.core.errors.NetError` subclasses.
"""

from __future__ import annotations

import base64
import re
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from analyzer.core.context import REDACTED
from analyzer.core.credpolicy import hide_userinfo
from analyzer.core.errors import RcaError
from analyzer.protocols.http import (
    DEFAULT_MAX_BYTES,
    BoundedResponse,
    OwnConnection,
    preopen,
    read_response,
    send_streaming,
)

if TYPE_CHECKING:
    import httpx

    from analyzer.core.context import Credentials
    from analyzer.protocols.net import TranscriptSink

__all__ = [
    "AuthError",
    "AuthScheme",
    "Challenge",
    "InsecureUrl",
    "MissingSecret",
    "NoChallenge",
    "NtlmFailed",
    "check_url",
    "describe_token",
    "direct_authorization",
    "ntlm_client",
    "parse_challenges",
    "parse_www_authenticate",
    "record_request",
    "record_response",
    "send_authenticated",
    "send_recorded",
    "shown_header",
]

AuthScheme = Literal["basic", "ntlm", "negotiate", "bearer"]

#: Header schemes spelled the way servers usually do (IIS, Exchange).
_CANONICAL = {
    "basic": "Basic",
    "ntlm": "NTLM",
    "negotiate": "Negotiate",
    "bearer": "Bearer",
    "digest": "Digest",
    "kerberos": "Kerberos",
}
# RFC 7230 3.2.6 token characters.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_START = re.compile(rf"^({_TCHARS})(?:\s+(.*))?$", re.DOTALL)
_PARAM = re.compile(rf"^({_TCHARS})\s*=\s*(.*)$", re.DOTALL)


class AuthError(RcaError):
    """The credentials could not be presented (see the module docstring)."""


class InsecureUrl(AuthError):
    """Credentials would cross the network readable, or the URL carries its own."""


class MissingSecret(AuthError):
    """The scheme needs a secret the run does not have."""


class NoChallenge(AuthError):
    """The server did not ask for the method: no 401 whose ``WWW-Authenticate`` offers it."""


class NtlmFailed(AuthError):
    """The NTLM handshake could not be completed."""


# --- WWW-Authenticate ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header (RFC 7235 4.1).

    ``token`` is a token68 value (an NTLM challenge blob); ``params`` the auth-params
    (``realm``, ``authorization_uri``...), names lower-cased, quotes removed.
    """

    scheme: str
    token: str = ""
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        """The value of auth-param ``name`` (case-insensitive), if present."""
        lowered = name.lower()
        return next((v for k, v in self.params if k == lowered), None)


def _header_values(headers: Any, name: str) -> list[str]:
    if isinstance(headers, BoundedResponse):
        return headers.header_all(name)
    if hasattr(headers, "get_list"):  # httpx.Headers
        return list(headers.get_list(name))
    lowered = name.lower()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [str(v) for k, v in items if str(k).lower() == lowered]


def _split_commas(value: str) -> list[str]:
    """Split on commas outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def parse_challenges(
    headers: BoundedResponse | Iterable[tuple[str, str]] | Any,
) -> tuple[Challenge, ...]:
    """Every challenge in the ``WWW-Authenticate`` headers, in order (RFC 7235 4.1).

    Tolerant: a server may list several challenges in one header (``Negotiate, NTLM``) or
    one per header; unparseable pieces are skipped, never raised.
    """
    found: list[Challenge] = []
    scheme: str | None = None
    token = ""
    params: list[tuple[str, str]] = []

    def flush() -> None:
        if scheme is not None:
            found.append(Challenge(scheme=scheme, token=token, params=tuple(params)))

    for value in _header_values(headers, "www-authenticate"):
        for part in _split_commas(value[:8192]):
            if not part:
                continue
            param = _PARAM.match(part)
            start = _SCHEME_START.match(part)
            if param and scheme is not None and (start is None or not start.group(2)):
                params.append((param.group(1).lower(), _unquote(param.group(2))))
                continue
            if start is None:
                continue
            flush()
            scheme = _CANONICAL.get(start.group(1).lower(), start.group(1))
            token, params = "", []
            rest = (start.group(2) or "").strip()
            rest_param = _PARAM.match(rest)
            if rest_param and not re.fullmatch(r"[A-Za-z0-9+/_.~-]+=*", rest):
                params.append((rest_param.group(1).lower(), _unquote(rest_param.group(2))))
            elif rest:
                token = rest
        flush()
        scheme, token, params = None, "", []
    return tuple(found)


def parse_www_authenticate(
    headers: BoundedResponse | Iterable[tuple[str, str]] | Any,
) -> tuple[str, ...]:
    """The authentication schemes offered (``("Negotiate", "NTLM", "Basic")``), deduplicated,
    in the server's order, spelled canonically for the common ones."""
    seen: dict[str, str] = {}
    for challenge in parse_challenges(headers):
        seen.setdefault(challenge.scheme.lower(), challenge.scheme)
    return tuple(seen.values())


# --- transcript ---------------------------------------------------------------------------------


def describe_token(blob: str) -> str:
    """A base64 NTLM/SPNEGO token as shown in transcripts: kind and size, never content."""
    try:
        raw = base64.b64decode(blob.strip(), validate=True)
    except (ValueError, TypeError):
        return f"«token, {len(blob)} characters, not base64»"
    if raw.startswith(b"NTLMSSP\0") and len(raw) >= 12:
        kind = struct.unpack("<I", raw[8:12])[0]
        return f"«NTLM type {kind}, {len(raw)} bytes»"
    if raw[:1] in (b"\x60", b"\xa0", b"\xa1"):
        return f"«SPNEGO token, {len(raw)} bytes»"
    return f"«token, {len(raw)} bytes»"


def shown_header(name: str, value: str) -> str:
    """``Name: value`` with credentials and tokens replaced (for transcripts and evidence)."""
    lowered = name.lower()
    if lowered in ("authorization", "proxy-authorization"):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() in ("ntlm", "negotiate") and rest:
            return f"{name}: {scheme} {describe_token(rest)}"
        return f"{name}: {scheme} {REDACTED}" if rest else f"{name}: {REDACTED}"
    if lowered in ("cookie", "set-cookie"):
        cookie_name = value.split("=", 1)[0].strip()[:60]
        return f"{name}: {cookie_name}={REDACTED}"
    if lowered in ("www-authenticate", "proxy-authenticate"):
        shown = []
        for part in _split_commas(value):
            scheme, _, rest = part.partition(" ")
            if scheme.lower() in ("ntlm", "negotiate") and rest.strip():
                shown.append(f"{scheme} {describe_token(rest)}")
            else:
                shown.append(part)
        return f"{name}: {', '.join(shown)}"
    return f"{name}: {value}"


def _safe_url(url: str) -> str:
    return hide_userinfo(url)


def record_request(
    transcript: TranscriptSink | None,
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    body_size: int = 0,
) -> None:
    """Record a request line and its headers, secrets replaced."""
    if transcript is None:
        return
    transcript.send(f"{method} {_safe_url(url)}")
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        transcript.send(shown_header(name, value))
    if body_size:
        transcript.send(f"[{body_size} bytes of body]")


def record_response(transcript: TranscriptSink | None, response: BoundedResponse) -> None:
    """Record the status line and headers of a response, tokens and cookies replaced."""
    if transcript is None:
        return
    transcript.recv(f"{response.http_version} {response.status} ({response.elapsed_ms:g} ms)")
    for name, value in response.headers:
        transcript.recv(shown_header(name, value))
    transcript.recv(f"[{len(response.body)} bytes of body]")


# --- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Leg:
    response: BoundedResponse
    stream: object  # the connection it came over (httpcore's network stream), None if unknown


def check_url(url: str) -> None:
    """:class:`InsecureUrl` unless ``url`` may receive credentials (https, no userinfo)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise InsecureUrl(
            f"credentials are never sent over {parts.scheme or 'a URL without scheme'}: "
            f"{_safe_url(url)[:200]} (only https)"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InsecureUrl(
            f"the URL carries credentials of its own ({_safe_url(url)[:200]}); rca never sends them"
        )


async def _send_leg(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes | None,
    max_bytes: int,
    deadline: float,
    transcript: TranscriptSink | None,
    own: OwnConnection | None = None,
) -> _Leg:
    record_request(transcript, method, url, headers, body_size=len(content or b""))
    t0 = time.monotonic()
    request = client.build_request(method, url, headers=dict(headers), content=content,
                                   extensions=own.extensions if own else None)  # fmt: skip
    response = await send_streaming(client, request, deadline=deadline)
    if own is not None and not own.used:
        await response.aclose()
        raise TypeError(
            "the client ignores OwnConnection: make it with analyzer.protocols.http.make_client"
        )
    stream = response.extensions.get("network_stream")
    bounded = await read_response(response, max_bytes=max_bytes, deadline=deadline, started=t0)
    record_response(transcript, bounded)
    return _Leg(bounded, stream)


async def send_authenticated(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    creds: Credentials,
    scheme: AuthScheme,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    handshake_content: bytes | None = None,
    offered: tuple[str, ...] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float,
    transcript: TranscriptSink | None = None,
    more: int = 0,
) -> BoundedResponse:
    """Send ``method url`` authenticated with ``scheme``; the final response, read in limits.

    ``timeout`` bounds the whole exchange (every leg of an NTLM handshake together).
    ``offered``: the schemes a previous unauthenticated 401 listed
    (:func:`parse_www_authenticate`); it saves the first round trip, which otherwise asks
    without credentials which methods the server wants: Basic or Bearer not among them is
    :class:`NoChallenge`, nothing sent; for NTLM a first answer other than 401 is returned
    for the caller to judge, and a 401 without NTLM/Negotiate is :class:`NtlmFailed`.
    ``handshake_content``: the body of the NTLM legs before the last (default: ``content``;
    RPC over HTTP sends ``b""`` there). ``more``: how many NTLM handshakes to the same origin
    follow this one, at once; their connections
    (:func:`~analyzer.protocols.http.preopen`) open while this one runs. Raises
    :class:`AuthError` subclasses (see the module docstring) and
    :class:`~analyzer.core.errors.NetError` subclasses.
    """
    check_url(url)
    deadline = time.monotonic() + timeout
    base = dict(headers or {})
    if scheme in ("basic", "bearer"):
        authorization = direct_authorization(creds, scheme)
        await _require_challenge(
            client, method, url, scheme, offered=offered, headers=base,
            content=handshake_content if handshake_content is not None else content,
            max_bytes=max_bytes, deadline=deadline, transcript=transcript,
        )  # fmt: skip
        leg = await _send_leg(
            client, method, url, headers={**base, "Authorization": authorization},
            content=content, max_bytes=max_bytes, deadline=deadline, transcript=transcript,
        )  # fmt: skip
        return leg.response
    if scheme in ("ntlm", "negotiate"):
        # NTLM authenticates the connection: the whole handshake owns one, and only it.
        async with OwnConnection() as own:
            for _ in range(more):
                # Only to the origin that gets this handshake: no request goes on it before
                # the next handshake there, and an unused one is closed with the client.
                preopen(client, url)
            return await _ntlm(
                client, own, method, url, creds=creds, force_negotiate=scheme == "negotiate",
                headers=base, content=content,
                handshake_content=content if handshake_content is None else handshake_content,
                offered=offered, max_bytes=max_bytes, deadline=deadline, transcript=transcript,
            )  # fmt: skip
    raise ValueError(f"unknown authentication scheme {scheme!r}")


async def _require_challenge(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    scheme: AuthScheme,
    *,
    offered: tuple[str, ...] | None,
    headers: dict[str, str],
    content: bytes | None,
    max_bytes: int,
    deadline: float,
    transcript: TranscriptSink | None,
) -> None:
    """:class:`NoChallenge` unless the server offers ``scheme`` (asked without credentials
    first when the caller did not see a 401 already)."""
    status = "401"
    if offered is None:
        first = await _send_leg(
            client, method, url, headers=headers, content=content, max_bytes=max_bytes,
            deadline=deadline, transcript=transcript,
        )  # fmt: skip
        status = str(first.response.status)
        offered = parse_www_authenticate(first.response) if status == "401" else ()
    if scheme not in {s.lower() for s in offered}:
        raise NoChallenge(
            f"the server did not ask for {_CANONICAL[scheme]} authentication (HTTP {status}, "
            f"offered: {', '.join(offered) or 'nothing'}): the credentials were not sent"
        )


async def send_recorded(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float,
    transcript: TranscriptSink | None = None,
) -> BoundedResponse:
    """One request without credentials, recorded like :func:`send_authenticated`'s legs.

    ``timeout`` bounds the whole exchange, headers included (a server trickling its status
    line ends as :class:`~analyzer.core.errors.NetTimeout`); redirects are never followed.
    """
    leg = await _send_leg(
        client, method, url, headers=dict(headers or {}), content=content,
        max_bytes=max_bytes, deadline=time.monotonic() + timeout, transcript=transcript,
    )  # fmt: skip
    return leg.response


def direct_authorization(creds: Credentials, scheme: Literal["basic", "bearer"]) -> str:
    """The ``Authorization`` value for Basic or Bearer, the schemes sent with the request
    itself; :class:`MissingSecret` without user and password (Basic) or token (Bearer)."""
    if scheme == "basic":
        password = creds.password()
        if password is None or not creds.username:
            raise MissingSecret("Basic authentication needs a user name and a password")
        # RFC 7617 2.1: UTF-8 is what servers that accept non-ASCII passwords expect.
        pair = base64.b64encode(f"{creds.username}:{password}".encode()).decode("ascii")
        return f"Basic {pair}"
    token = creds.token()
    if token is None:
        raise MissingSecret("Bearer authentication needs an OAuth2 token (--oauth-token-file)")
    return f"Bearer {token}"


def ntlm_client(creds: Credentials, host: str) -> Any:
    """pyspnego's NTLM initiator for ``creds`` (raw NTLM, as Windows clients send without
    Kerberos, also inside ``Negotiate``); :class:`MissingSecret` without user or password."""
    import spnego  # noqa: PLC0415 - heavy; only when NTLM is used

    username = creds.username
    if creds.password() is None or not username:
        raise MissingSecret("NTLM authentication needs a user name and a password")
    # A context made from the password derives its LM and NT hashes (the LM one with
    # pure-Python DES, ~2 ms, although NTLMv2 never uses it); a full check logs in ~20
    # times. So one context per host and run is made from the password, and each login
    # gets a fresh one from it (new_context: pyspnego's way to reuse the derived credential).
    template = creds.derived(("ntlm", host), lambda password: spnego.client(
        username, password, hostname=host, service="HTTP", protocol="ntlm"))
    return template.new_context()


def _challenge_token(response: BoundedResponse, header_scheme: str) -> bytes | None:
    for challenge in parse_challenges(response):
        if challenge.scheme.lower() == header_scheme.lower() and challenge.token:
            try:
                return base64.b64decode(challenge.token, validate=True)
            except ValueError:
                return None
    return None


def _server_closes(response: BoundedResponse) -> bool:
    """True when the server ends the connection after ``response`` (RFC 9112 9.3)."""
    connection = {t.strip().lower() for t in (response.header("connection") or "").split(",")}
    if "close" in connection:
        return True
    return response.http_version == "HTTP/1.0" and "keep-alive" not in connection


async def _ntlm(
    client: httpx.AsyncClient,
    own: OwnConnection,
    method: str,
    url: str,
    *,
    creds: Credentials,
    force_negotiate: bool,
    headers: dict[str, str],
    content: bytes | None,
    handshake_content: bytes | None,
    offered: tuple[str, ...] | None,
    max_bytes: int,
    deadline: float,
    transcript: TranscriptSink | None,
) -> BoundedResponse:
    context = ntlm_client(creds, urlsplit(url).hostname or "")
    if offered is None:
        first = await _send_leg(
            client, method, url, headers=headers, content=handshake_content,
            max_bytes=max_bytes, deadline=deadline, transcript=transcript, own=own,
        )  # fmt: skip
        if first.response.status != 401:
            return first.response  # anonymous access, or an error: the caller judges it
        offered = parse_www_authenticate(first.response)
    lowered = {s.lower() for s in offered}
    if force_negotiate or "ntlm" not in lowered:
        header_scheme = "Negotiate"
    else:
        header_scheme = "NTLM"
    if header_scheme.lower() not in lowered:
        raise NtlmFailed(
            f"the server does not offer NTLM or Negotiate (it offers: "
            f"{', '.join(offered) or 'nothing'})"
        )
    try:
        negotiate = context.step()
    except Exception as exc:  # pyspnego's own error tree
        raise NtlmFailed(f"could not build the NTLM negotiate message: {exc}") from None
    leg1 = await _send_leg(
        client, method, url,
        headers={**headers, "Authorization": f"{header_scheme} "
                 + base64.b64encode(negotiate).decode("ascii")},
        content=handshake_content, max_bytes=max_bytes, deadline=deadline, transcript=transcript,
        own=own,
    )  # fmt: skip
    if leg1.response.status != 401:
        return leg1.response
    challenge = _challenge_token(leg1.response, header_scheme)
    if challenge is None:
        raise NtlmFailed(
            f"the server answered the NTLM negotiate message with 401 but no {header_scheme} "
            "challenge (NTLM disabled, or a proxy in between strips it)"
        )
    if _server_closes(leg1.response):
        raise NtlmFailed(
            "the server closed the connection after its NTLM challenge: NTLM authenticates a "
            "connection, so it needs HTTP keep-alive (a load balancer or proxy without "
            "connection affinity does this)"
        )
    try:
        authenticate = context.step(challenge)
    except Exception as exc:
        raise NtlmFailed(f"the server's NTLM challenge is not valid: {exc}") from None
    if authenticate is None:
        raise NtlmFailed("the NTLM challenge did not lead to an authenticate message")
    leg2 = await _send_leg(
        client, method, url,
        headers={**headers, "Authorization": f"{header_scheme} "
                 + base64.b64encode(authenticate).decode("ascii")},
        content=content, max_bytes=max_bytes, deadline=deadline, transcript=transcript, own=own,
    )  # fmt: skip
    if leg1.stream is not None and leg2.stream is not None and leg1.stream is not leg2.stream:
        # The connection is the handshake's alone and never expires on our side: only the
        # server (or a device on the way) can have closed it.
        detail = (
            "the server closed the connection that carried the NTLM challenge, so the "
            "authenticate message went over a new one"
        )
        if transcript is not None:
            transcript.note(detail)
        if leg2.response.status == 401:
            # The password was never judged: a new connection has no challenge to answer.
            raise NtlmFailed(
                f"{detail} and was refused: NTLM authenticates a connection, so it needs HTTP "
                "keep-alive from the server (a load balancer or proxy without connection "
                "affinity does this)"
            )
    return leg2.response
