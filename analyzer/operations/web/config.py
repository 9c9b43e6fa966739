"""The ``rca web`` configuration file (TOML), and the defaults without one.

::

    [web]
    listen = "127.0.0.1:8080"        # localhost unless you say otherwise
    allow = ["example.com", "*.example.net", "192.0.2.0/24"]   # as rca serve's allow
    history = "rca-web-history"      # runs kept here (rca batch --history's format)
    keep = 30                        # runs kept per target
    resolvers = ["192.0.2.53"]       # DNS servers a user may choose (besides the system's)
    trust_anchor = "anchors.txt"     # DNSSEC trust anchor of a private tree, for every run
    timeout = 60                     # a run's deadline (rca check --timeout), at most:
    max_timeout = 120
    max_runs = 3                     # runs at once, whole server
    max_runs_per_client = 2          # runs at once, one client address
    runs_per_minute = 6              # runs started per client address and minute
    requests_per_minute = 600        # requests per client address and minute

    [web.ca_files]                   # extra CA files a user may choose, by name
    "Corporate root" = "/etc/ssl/corp-root.pem"

    [web.users]                      # who may log in (else: the access token printed
    alice = "scrypt$...$..."         # at start); hashes from rca web --hash-password

Paths are relative to the file's folder. The allowlist is required when the server
listens anywhere but localhost. Secrets are never written here (as in batch files).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.core.errors import UsageError
from analyzer.operations.batch import BatchFileError, read_toml, refuse_inline_secrets
from analyzer.operations.serve import Allowlist, listen_setting

__all__ = ["DEFAULT_LISTEN", "WebConfig", "load_web_config", "parse_web_config"]

DEFAULT_LISTEN = ("127.0.0.1", 8080)
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_INTS = {
    "keep": 30,
    "max_runs": 3,
    "max_runs_per_client": 2,
    "runs_per_minute": 6,
    "requests_per_minute": 600,
}
_KEYS = frozenset(
    {*_INTS, "listen", "allow", "history", "resolvers", "trust_anchor", "timeout",
     "max_timeout", "ca_files", "users"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """A parsed configuration (the defaults: :func:`WebConfig` with no arguments)."""

    listen: tuple[str, int] = DEFAULT_LISTEN
    allow: Allowlist = field(default_factory=Allowlist)
    history: Path = Path("rca-web-history")
    keep: int = 30
    resolvers: tuple[str, ...] = ()
    ca_files: Mapping[str, Path] = field(default_factory=dict)
    trust_anchor: Path | None = None
    timeout: float = 60.0
    max_timeout: float = 120.0
    max_runs: int = 3
    max_runs_per_client: int = 2
    runs_per_minute: int = 6
    requests_per_minute: int = 600
    #: User name → password hash; not in the repr.
    users: Mapping[str, str] = field(default_factory=dict, repr=False)


def load_web_config(path: Path) -> WebConfig:
    """Read and check a configuration file; :class:`BatchFileError` (one line) if unusable."""
    return parse_web_config(read_toml(path), base=path.parent, source=str(path))


def parse_web_config(data: Mapping[str, Any], *, base: Path, source: str) -> WebConfig:
    """A :class:`WebConfig` from parsed TOML (see the module docstring)."""
    from analyzer.core.context import parse_nameserver  # noqa: PLC0415

    refuse_inline_secrets(data, "", source)
    if set(data) - {"web"}:
        raise BatchFileError(f"{source}: expected only a [web] table")
    table = data.get("web", {})
    if not isinstance(table, Mapping):
        raise BatchFileError(f"{source}: [web] must be a table")

    def bad(key: str, what: str) -> BatchFileError:
        return BatchFileError(f"{source}: web.{key}: {what}")

    unknown = set(table) - _KEYS
    if unknown:
        raise bad(sorted(unknown)[0], f"unknown key; known: {', '.join(sorted(_KEYS))}")
    values: dict[str, Any] = {
        "listen": listen_setting(table, section="web", source=source, default=DEFAULT_LISTEN)
    }
    if "allow" in table:
        if not isinstance(table["allow"], list):
            raise bad("allow", "expected a list of strings")
        values["allow"] = Allowlist.parse(table["allow"], where=f"{source}: web.allow")
    for key, default in _INTS.items():
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(key, "expected a whole number ≥ 1")
        values[key] = value
    for key in ("timeout", "max_timeout"):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise bad(key, "expected a positive number of seconds")
            values[key] = float(value)
    if values.get("timeout", 60.0) > values.get("max_timeout", 120.0):
        raise bad("timeout", "is larger than web.max_timeout")
    if "history" in table:
        if not isinstance(table["history"], str) or not table["history"].strip():
            raise bad("history", "expected a folder name")
        values["history"] = base / table["history"]
    if "resolvers" in table:
        resolvers = table["resolvers"]
        if not isinstance(resolvers, list) or not all(isinstance(r, str) for r in resolvers):
            raise bad("resolvers", "expected a list of IP[:PORT] strings")
        try:
            values["resolvers"] = tuple(str(parse_nameserver(r)) for r in resolvers)
        except UsageError as exc:
            raise bad("resolvers", str(exc)) from None
    if "trust_anchor" in table:
        values["trust_anchor"] = _file(base, table["trust_anchor"], bad("trust_anchor", ""))
    if "ca_files" in table:
        files = table["ca_files"]
        if not isinstance(files, Mapping):
            raise bad("ca_files", 'expected a table: "name" = "path"')
        values["ca_files"] = {
            str(name): _file(base, path, bad(f"ca_files.{name}", ""))
            for name, path in files.items()
        }
    if "users" in table:
        values["users"] = _users(table["users"], bad)
    return WebConfig(**values)


def _users(table: Any, bad: Callable[[str, str], BatchFileError]) -> dict[str, str]:
    from analyzer.operations.web.security import is_password_hash  # noqa: PLC0415

    if not isinstance(table, Mapping):
        raise bad("users", 'expected a table: name = "scrypt$..." (rca web --hash-password)')
    users: dict[str, str] = {}
    for name, value in table.items():
        if not _USER.fullmatch(str(name)):
            raise bad(f"users.{name}", "use letters, digits and . _ @ - in user names")
        if not isinstance(value, str) or not is_password_hash(value):
            raise bad(f"users.{name}", "expected a hash from rca web --hash-password "
                      "(never the password itself)")
        users[str(name)] = value
    return users


def _file(base: Path, value: Any, error: BatchFileError) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise BatchFileError(f"{error} expected a file name")
    path = base / value
    if not path.is_file():
        raise BatchFileError(f"{error} {path}: no such file")
    return path
