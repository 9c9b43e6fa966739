"""Authentication for the emulator's endpoints, as IIS in front of Exchange does it.

::

    from analyzer.lab.emulator_auth import authenticate

    def handler(request: EmulatorRequest) -> EmulatorResponse:
        auth = authenticate(request, allowed=("Basic", "NTLM", "Negotiate"))
        if auth.response is not None:
            return auth.response          # 401 with the WWW-Authenticate list, or a challenge
        ...                               # auth.user is the lab user's address

Schemes, checked against the scenario's users (``Lab.up`` writes them into the emulator's
config):

- ``Basic`` (RFC 7617): ``user:password`` with user the address (``alice@x.test``), or
  ``X\\alice`` where ``X`` is the domain's first label (NetBIOS style).
- ``NTLM`` and ``Negotiate`` carrying raw NTLM ([MS-NLMP]): pyspnego's acceptor, which reads
  the users from the file named by the ``NTLM_USER_FILE`` environment variable
  (:func:`write_ntlm_user_file`; the emulator writes it at start-up). NTLM authenticates a
  *connection*: the acceptor's state is kept per client connection, identified by
  :attr:`EmulatorRequest.connection` (nginx passes ``$remote_addr:$remote_port#$connection``
  in ``X-Rca-Client-Conn``, since it opens a new upstream connection per request). Once a
  connection is authenticated, later requests on it pass without a header, as with IIS.
  SPNEGO-wrapped (Kerberos) tokens are not accepted.
- ``Bearer`` (RFC 6750): the token :func:`lab_token` gives for the user.

What a scenario can change, in ``Scenario.emulator`` (``behaviour``):

- ``"auth"``: the schemes offered, in ``WWW-Authenticate`` order: a list for every path
  (``["NTLM"]``: NTLM only), or a mapping from a path prefix (case-insensitive, longest
  wins; ``"*"`` for the rest) to such a list. Default :data:`DEFAULT_METHODS`. What a
  handler passes as ``allowed`` narrows it further.
- ``"anonymous"``: ``true`` (every path) or a list of path prefixes answered without
  authentication (ExRCA flags anonymous access).
- ``"extra_users"``: more ``[address, password]`` pairs accepted (e.g. the users of a domain
  that redirects here); NTLM finds them in ``NTLM_USER_FILE`` when they are lab users.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import threading
import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from analyzer.lab.emulator_http import EmulatorRequest, EmulatorResponse

__all__ = [
    "ALL_METHODS",
    "DEFAULT_METHODS",
    "AuthResult",
    "authenticate",
    "is_user",
    "lab_token",
    "offered_methods",
    "unauthorized",
    "write_ntlm_user_file",
]

ALL_METHODS: Final[tuple[str, ...]] = ("Basic", "NTLM", "Negotiate", "Bearer")
"""Every scheme the emulator can check."""

DEFAULT_METHODS: Final[tuple[str, ...]] = ("Negotiate", "NTLM", "Basic", "Bearer")
"""What a scenario offers unless it says otherwise (Exchange's usual order)."""

#: An NTLM handshake left half-way is forgotten after this long.
_NTLM_PENDING_S: Final = 120.0
#: At most this many connections' NTLM state is kept (oldest dropped first).
_NTLM_MAX: Final = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult:
    """The outcome: ``response`` is ``None`` when the request may proceed.

    ``user`` is the lab user's address (``None`` when anonymous or refused); ``method`` the
    scheme that succeeded (``"anonymous"`` for anonymous access).
    """

    user: str | None
    response: EmulatorResponse | None
    method: str | None = None

    @property
    def ok(self) -> bool:
        """True when the request may proceed."""
        return self.response is None


def lab_token(address: str, password: str) -> str:
    """The bearer token the lab accepts for ``address`` (derived from its lab password)."""
    digest = hashlib.sha256(f"rca-lab-token\0{address.lower()}\0{password}".encode()).hexdigest()
    return f"rca-lab.{digest[:48]}"


def write_ntlm_user_file(path: Path, users: Iterable[tuple[str, str]]) -> Path:
    """Write pyspnego's ``NTLM_USER_FILE`` (``DOMAIN:user:password`` lines) for ``users``.

    Each user gets two lines: ``:alice@x.test:pw`` (the UPN form) and ``X:alice:pw`` (the
    NetBIOS form). Passwords holding ``:`` cannot be written in this format and are skipped.
    """
    lines: list[str] = []
    for address, password in users:
        if ":" in password or ":" in address or "\n" in password:
            continue
        local, _, domain = address.partition("@")
        lines.append(f":{address}:{password}")
        lines.append(f"{_netbios(domain)}:{local}:{password}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _response(status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> EmulatorResponse:
    # Imported when used: `python -m analyzer.lab.emulator` imports this module while its own
    # is still being initialised (see analyzer.lab.emulator._routes).
    from analyzer.lab.emulator_http import EmulatorResponse  # noqa: PLC0415

    return EmulatorResponse(status=status, headers=headers, body=body)


def _netbios(domain: str) -> str:
    return domain.split(".", 1)[0].upper()


# --- what is offered ----------------------------------------------------------------------------


def offered_methods(
    request: EmulatorRequest, allowed: Sequence[str] = ALL_METHODS
) -> tuple[str, ...]:
    """The schemes this request's path offers, in order (scenario ∩ ``allowed``)."""
    configured = request.behaviour.get("auth")
    methods: Sequence[str] = DEFAULT_METHODS
    if isinstance(configured, list | tuple):
        methods = [str(m) for m in configured]
    elif isinstance(configured, Mapping):
        path = request.path.lower()
        best = ""
        chosen: Any = configured.get("*", DEFAULT_METHODS)
        for prefix, value in configured.items():
            if prefix != "*" and path.startswith(prefix.lower()) and len(prefix) > len(best):
                best, chosen = prefix, value
        methods = [str(m) for m in chosen]
    wanted = {a.lower() for a in allowed}
    return tuple(m for m in methods if m.lower() in wanted)


def _anonymous(request: EmulatorRequest) -> bool:
    setting = request.behaviour.get("anonymous", False)
    if setting is True:
        return True
    if isinstance(setting, list | tuple):
        path = request.path.lower()
        return any(path.startswith(str(p).lower()) for p in setting)
    return False


def unauthorized(
    request: EmulatorRequest, offered: Sequence[str], *, extra: Sequence[tuple[str, str]] = ()
) -> EmulatorResponse:
    """401 listing ``offered``, one ``WWW-Authenticate`` header per scheme, as IIS does."""
    headers: list[tuple[str, str]] = [("Content-Type", "text/html")]
    domain = str(request.scenario_data.get("domain", "")) or request.host
    for method in offered:
        if method == "Basic":
            headers.append(("WWW-Authenticate", f'Basic realm="{request.host or domain}"'))
        elif method == "Bearer":
            headers.append(("WWW-Authenticate", f'Bearer realm="{domain}", error="invalid_token"'))
        else:
            headers.append(("WWW-Authenticate", method))
    headers.extend(extra)
    body = b"<html><body><h1>401 - Unauthorized: Access is denied due to invalid credentials."
    return _response(401, tuple(headers), body + b"</h1></body></html>")


# --- users --------------------------------------------------------------------------------------


def _users(request: EmulatorRequest) -> dict[str, str]:
    """address (lower case) -> password, of the request's scenario."""
    raw = list(request.scenario_data.get("users", []))
    raw += list(request.behaviour.get("extra_users", []))
    return {str(a).lower(): str(p) for a, p in raw}


def is_user(request: EmulatorRequest, address: str) -> bool:
    """Whether ``address`` is a user (a mailbox) of the request's scenario, ``extra_users``
    included."""
    return address.lower() in _users(request)


def _canonical_user(request: EmulatorRequest, name: str) -> str | None:
    """The lab address ``name`` designates (address, ``DOMAIN\\local``), if it is one."""
    users = _users(request)
    name = name.strip().lower()
    if name in users:
        return name
    if "\\" in name:
        netbios, _, local = name.partition("\\")
        domain = str(request.scenario_data.get("domain", "")).lower()
        if netbios.upper() == _netbios(domain) and f"{local}@{domain}" in users:
            return f"{local}@{domain}"
    return None


# --- the schemes --------------------------------------------------------------------------------


def authenticate(request: EmulatorRequest, *, allowed: Sequence[str] = ALL_METHODS) -> AuthResult:
    """Check the request's credentials (see the module docstring); never raises for input."""
    offered = offered_methods(request, allowed)
    header = request.headers.get("authorization", "").strip()
    if not header:
        done = _ntlm_table(request, "done").get(request.connection) if request.connection else None
        if done is not None and {"ntlm", "negotiate"} & {m.lower() for m in offered}:
            return AuthResult(user=done, response=None, method="NTLM")
        if _anonymous(request):
            return AuthResult(user=None, response=None, method="anonymous")
        return AuthResult(user=None, response=unauthorized(request, offered))
    scheme, _, value = header.partition(" ")
    lowered = {m.lower(): m for m in offered}
    method = lowered.get(scheme.lower())
    if method is None:
        return AuthResult(user=None, response=unauthorized(request, offered))
    if method == "Basic":
        return _basic(request, value.strip(), offered)
    if method == "Bearer":
        return _bearer(request, value.strip(), offered)
    return _ntlm(request, method, value.strip(), offered)


def _basic(request: EmulatorRequest, value: str, offered: Sequence[str]) -> AuthResult:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return AuthResult(user=None, response=unauthorized(request, offered))
    name, sep, password = decoded.partition(":")
    user = _canonical_user(request, name) if sep else None
    if user is None or _users(request)[user] != password:
        return AuthResult(user=None, response=unauthorized(request, offered))
    return AuthResult(user=user, response=None, method="Basic")


def _bearer(request: EmulatorRequest, value: str, offered: Sequence[str]) -> AuthResult:
    for address, password in _users(request).items():
        if value and value == lab_token(address, password):
            return AuthResult(user=address, response=None, method="Bearer")
    return AuthResult(user=None, response=unauthorized(request, offered))


def _ntlm_table(request: EmulatorRequest, name: str) -> MutableMapping[str, Any]:
    state = request.state
    if state is None:
        return {}
    table: MutableMapping[str, Any] = state.setdefault(f"ntlm-{name}", {})
    return table


def _lock(request: EmulatorRequest) -> threading.Lock:
    state = request.state
    if state is None:
        return threading.Lock()
    lock: threading.Lock = state.setdefault("ntlm-lock", threading.Lock())
    return lock


def _ntlm(request: EmulatorRequest, method: str, value: str, offered: Sequence[str]) -> AuthResult:
    try:
        token = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return AuthResult(user=None, response=unauthorized(request, offered))
    if not token.startswith(b"NTLMSSP\0") or len(token) < 12:
        # SPNEGO (Kerberos) is not emulated: answer as a server without a keytab would.
        return AuthResult(user=None, response=unauthorized(request, offered))
    kind = struct.unpack("<I", token[8:12])[0]
    key = request.connection
    pending = _ntlm_table(request, "pending")
    done = _ntlm_table(request, "done")
    if kind == 1:
        import spnego  # noqa: PLC0415 - only the emulator process needs it

        try:
            context = spnego.server(protocol="ntlm")
            challenge = context.step(token)
        except Exception:  # noqa: BLE001 - pyspnego's error tree; a refusal either way
            return AuthResult(user=None, response=unauthorized(request, offered))
        with _lock(request):
            _expire(pending)
            pending[key] = (time.monotonic(), context)
            done.pop(key, None)
        header = f"{method} {base64.b64encode(challenge or b'').decode('ascii')}"
        return AuthResult(
            user=None,
            response=_response(
                401, (("Content-Type", "text/html"), ("WWW-Authenticate", header)), b""
            ),
        )
    if kind != 3:
        return AuthResult(user=None, response=unauthorized(request, offered))
    with _lock(request):
        entry = pending.pop(key, None)
    if entry is None:
        # No challenge on this connection: the client switched connections mid-handshake.
        return AuthResult(user=None, response=unauthorized(request, offered))
    context = entry[1]
    try:
        context.step(token)
        principal = str(context.client_principal or "")
    except Exception:  # noqa: BLE001 - wrong password, or a malformed message
        return AuthResult(user=None, response=unauthorized(request, offered))
    user = _canonical_user(request, principal)
    if user is None:
        return AuthResult(user=None, response=unauthorized(request, offered))
    with _lock(request):
        _expire(done)
        done[key] = user
    return AuthResult(user=user, response=None, method=method)


def _expire(table: MutableMapping[str, Any]) -> None:
    """Drop half-finished handshakes that are too old, and the oldest beyond the cap."""
    now = time.monotonic()
    stale = [k for k, v in table.items() if isinstance(v, tuple) and now - v[0] > _NTLM_PENDING_S]
    for key in stale:
        del table[key]
    while len(table) >= _NTLM_MAX:
        del table[next(iter(table))]
