"""What stands between a browser and a run: host check, rate limit, session, login, CSRF,
and the response headers.

* **Host check.** On localhost only ``localhost``, ``127.0.0.1``, ``[::1]`` and the
  address listened on are accepted as ``Host``, so a DNS-rebinding page cannot talk to
  the server by a name of its own.
* **Rate limit** per client address (``requests_per_minute``); runs have their own limits
  (:class:`analyzer.operations.web.runs.RunManager`), and so do login attempts.
* **Session.** Every browser gets a random session cookie (``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` over TLS). Off localhost a session must log in: as one
  of the configuration's users (scrypt password hashes, ``rca web --hash-password``), or
  else with the access token printed at start. Sessions live in memory and end with the
  server; a login gets a new session id.
* **CSRF.** Every form carries a token bound to the session (an HMAC of the session id
  under a key made at start), and a POST must come from the server's own origin
  (``Origin``, else ``Referer``; ``Sec-Fetch-Site: cross-site`` is refused).
* **Headers.** A Content-Security-Policy without inline script (``script-src 'self'``),
  no framing, no referrer to other sites, no sniffing, no caching of pages.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from analyzer.operations.web.runs import SlidingWindow

__all__ = [
    "CSP",
    "Guard",
    "GuardMiddleware",
    "hash_password",
    "is_loopback",
    "is_password_hash",
    "verify_password",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "rca_session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make Origin "null"
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: Paths a browser may load before logging in.
_OPEN_PATHS = ("/login", "/static/")
SESSION_SECONDS = 12 * 3600


_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$<salt>$<hash>`` (base64) of ``password``, for ``[web.users]``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "$".join(("scrypt", base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` value (False if malformed)."""
    kind, _, rest = stored.partition("$")
    salt_text, _, digest_text = rest.partition("$")
    try:
        salt, digest = base64.b64decode(salt_text, validate=True), base64.b64decode(
            digest_text, validate=True)
    except ValueError:
        return False
    if kind != "scrypt" or len(salt) < 8 or len(digest) != 32:
        return False
    computed = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return hmac.compare_digest(computed, digest)


def is_password_hash(text: str) -> bool:
    """Whether ``text`` has the shape of a :func:`hash_password` value."""
    parts = text.split("$")
    return len(parts) == 3 and parts[0] == "scrypt" and all(parts[1:])


@functools.cache
def _dummy_hash() -> str:
    return hash_password("", salt=b"rca-web-dummy-salt")


def is_loopback(host: str) -> bool:
    """Whether a listening address is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(slots=True, kw_only=True)
class Guard:
    """The server's secrets and the state of logins (one per app)."""

    #: None: no login (localhost, or users instead); else the access token to present.
    token: str | None = field(default=None, repr=False)
    #: User name → password hash (:func:`hash_password`); a login is by user if any.
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    secure: bool = False
    local: bool = True
    #: Host names accepted besides localhost's (on localhost: the address listened on).
    hosts: frozenset[str] = frozenset()
    requests_per_minute: int = 600
    # The secrets are not in the repr (a log line or a traceback must not carry them).
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    sessions: dict[str, float] = field(default_factory=dict, repr=False)  # id → expiry
    requests: SlidingWindow = field(init=False)
    logins: SlidingWindow = field(init=False)

    def __post_init__(self) -> None:
        self.requests = SlidingWindow(self.requests_per_minute)
        self.logins = SlidingWindow(10)

    def csrf_token(self, session: str) -> str:
        """The form token of ``session``."""
        return hmac.new(self.key, b"csrf\0" + session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str, token: str) -> bool:
        """Whether a form's token belongs to ``session``."""
        return hmac.compare_digest(self.csrf_token(session), token)

    @property
    def login_required(self) -> bool:
        """Whether a session must log in (off localhost)."""
        return self.token is not None or bool(self.users)

    def logged_in(self, session: str) -> bool:
        """Whether ``session`` may use the server."""
        if not self.login_required:
            return True
        expiry = self.sessions.get(session)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self.sessions[session]
            return False
        return True

    def login(self, presented: str, *, user: str = "") -> str | None:
        """A new logged-in session id if ``presented`` is ``user``'s password (with users)
        or the access token (without), else None."""
        if self.users:
            stored = self.users.get(user)
            # An unknown user costs a hash too, so timing does not tell names apart.
            ok = verify_password(presented, stored or _dummy_hash()) and stored is not None
        else:
            ok = self.token is not None and hmac.compare_digest(
                presented.encode(), self.token.encode()
            )
        if not ok:
            return None
        now = time.monotonic()
        for sid in [s for s, exp in self.sessions.items() if exp < now]:
            del self.sessions[sid]
        session = secrets.token_urlsafe(32)
        self.sessions[session] = now + SESSION_SECONDS
        return session

    def logout(self, session: str) -> None:
        """End ``session``'s login."""
        self.sessions.pop(session, None)

    def cookie(self, session: str) -> bytes:
        """The Set-Cookie value carrying ``session``."""
        flags = "; Secure" if self.secure else ""
        return f"{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict{flags}".encode()

    def host_ok(self, host: str) -> bool:
        """Whether a request's ``Host`` may be served (localhost names only, on localhost)."""
        if not self.local:
            return True
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:  # not a host[:port] at all
            return False
        return name in _LOCAL_HOSTS or name in self.hosts

    @staticmethod
    def same_origin(headers: dict[str, str], scheme: str, host: str) -> bool:
        """Whether a POST comes from a page of this server."""
        if headers.get("sec-fetch-site", "") == "cross-site":
            return False
        own = f"{scheme}://{host}".lower()
        origin = headers.get("origin")
        if origin is not None:
            return origin.lower() == own
        referer = headers.get("referer", "").lower()
        return referer == own or referer.startswith(own + "/")


class GuardMiddleware:
    """Applies :class:`Guard` to every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = self.guard
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not guard.host_ok(headers.get("host", "")):
            await _plain(send, 421, "This server answers only to localhost.")
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = guard.requests.hit(str(client))
        if wait:
            await _plain(send, 429, "Too many requests; slow down.", retry_after=wait)
            return
        session = _session_cookie(headers.get("cookie", ""))
        new_session = session is None
        if session is None:
            session = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["session"] = session
        path = str(scope.get("path", ""))
        if not guard.logged_in(session) and not path.startswith(_OPEN_PATHS):
            if scope.get("method") in ("GET", "HEAD") and not path.endswith("/events"):
                await _redirect(send, "/login", guard.cookie(session) if new_session else None)
            else:
                await _plain(send, 401, "Log in first.")
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                names = {k.lower() for k, _ in out}
                out += [h for h in _HEADERS if h[0] not in names]
                if b"content-security-policy" not in names:
                    out.append((b"content-security-policy", CSP.encode()))
                if b"cache-control" not in names:
                    out.append((b"cache-control", b"no-store"))
                if new_session and b"set-cookie" not in names:
                    out.append((b"set-cookie", guard.cookie(session)))
                message["headers"] = out
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _session_cookie(header: str) -> str | None:
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(header)
    except Exception:  # a malformed Cookie header is treated as none
        return None
    morsel = cookie.get(COOKIE)
    if morsel is None:
        return None
    value = morsel.value
    if not 20 <= len(value) <= 64 or not all(c.isalnum() or c in "-_" for c in value):
        return None
    return value


async def _plain(send: Send, status: int, text: str, *, retry_after: int = 0) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"content-security-policy", CSP.encode()),
        *_HEADERS,
    ]
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": (text + "\n").encode()})


async def _redirect(send: Send, location: str, cookie: bytes | None) -> None:
    headers = [(b"location", location.encode()), (b"cache-control", b"no-store"), *_HEADERS]
    if cookie is not None:
        headers.append((b"set-cookie", cookie))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
