"""What a running lab looks like from outside: ``LabInfo`` (public) and ``LabState`` (ours).

Both live as JSON in the lab directory so another process (the tests, ``rca check``,
``rca lab status``/``down``) can pick them up:

- ``info.json``: ``LabInfo``: resolver addresses, CA file, trust anchors, every scenario's hosts
  and users. Written once the lab is up.
- ``state.json``: ``LabState``: which namespaces and files we created and which processes we
  started (PID plus the kernel's start time, so a recycled PID is never killed). Written after
  every step of ``Lab.up``, so that ``Lab.down`` can clean up after a crash halfway through.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from analyzer.lab.errors import LabError
from analyzer.lab.scenarios import Expect

__all__ = [
    "INFO_FILE",
    "STATE_FILE",
    "HostInfo",
    "LabInfo",
    "LabState",
    "LabUser",
    "ProcessRecord",
    "ScenarioInfo",
]

INFO_FILE: Final = "info.json"
STATE_FILE: Final = "state.json"
_SCHEMA: Final = 1


class LabUser(NamedTuple):
    """A lab mailbox: full address and password (a tuple, so ``user, password = u`` works)."""

    address: str
    password: str

    def __repr__(self) -> str:
        # Lab passwords are public, but a repr is where real secrets leak from: keep the habit.
        return f"LabUser(address={self.address!r}, password='***')"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostInfo:
    """One lab host: its name and its addresses."""

    name: str
    ipv4: str
    ipv6: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioInfo:
    """One running scenario: its domain, hosts by role, users, and the findings it expects."""

    name: str
    domain: str
    description: str
    hosts: Mapping[str, HostInfo]
    users: tuple[LabUser, ...]
    expect: tuple[Expect, ...] = ()
    signed: bool = False

    def host(self, role: str) -> HostInfo:
        """The host playing ``role`` (``KeyError`` names the roles there are)."""
        try:
            return self.hosts[role]
        except KeyError:
            roles = ", ".join(sorted(self.hosts))
            raise KeyError(f"{self.name} has no role {role!r}; roles: {roles}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class LabInfo:
    """A running lab, as users and tests need it. JSON round-trip: ``save``/``load``."""

    directory: Path
    server_netns: str
    client_netns: str
    resolver: str
    resolver6: str
    client_ipv4: str
    client_ipv6: str
    ca_file: Path
    trust_anchor_file: Path
    latency_ms: int
    latency_method: str
    scenarios: tuple[ScenarioInfo, ...]
    started_at: float
    startup_seconds: float

    def scenario(self, name: str) -> ScenarioInfo:
        """The running scenario ``name`` (``KeyError`` names the running ones)."""
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        running = ", ".join(s.name for s in self.scenarios)
        raise KeyError(f"scenario {name!r} is not running in this lab; running: {running}")

    def password_file(self, address: str) -> Path:
        """The file holding ``address``'s password (for ``rca check --password-file``)."""
        return self.directory / "users" / f"{address}.password"

    # -- JSON --------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_json`` reads it back)."""
        return {
            "schema": _SCHEMA,
            "directory": str(self.directory),
            "server_netns": self.server_netns,
            "client_netns": self.client_netns,
            "resolver": self.resolver,
            "resolver6": self.resolver6,
            "client_ipv4": self.client_ipv4,
            "client_ipv6": self.client_ipv6,
            "ca_file": str(self.ca_file),
            "trust_anchor_file": str(self.trust_anchor_file),
            "latency_ms": self.latency_ms,
            "latency_method": self.latency_method,
            "started_at": self.started_at,
            "startup_seconds": self.startup_seconds,
            "scenarios": [
                {
                    "name": s.name,
                    "domain": s.domain,
                    "description": s.description,
                    "signed": s.signed,
                    "hosts": {
                        role: {"name": h.name, "ipv4": h.ipv4, "ipv6": h.ipv6}
                        for role, h in s.hosts.items()
                    },
                    "users": [[u.address, u.password] for u in s.users],
                    "expect": [
                        {"code": e.code, "status": e.status, "subject": e.subject}
                        for e in s.expect
                    ],
                }
                for s in self.scenarios
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabInfo:
        """Read what ``to_json`` wrote; ``LabError`` when it is not that."""
        try:
            if data["schema"] != _SCHEMA:
                raise LabError(f"lab info has schema {data['schema']}, expected {_SCHEMA}")
            scenarios = tuple(
                ScenarioInfo(
                    name=s["name"],
                    domain=s["domain"],
                    description=s["description"],
                    signed=bool(s["signed"]),
                    hosts={
                        role: HostInfo(name=h["name"], ipv4=h["ipv4"], ipv6=h["ipv6"])
                        for role, h in s["hosts"].items()
                    },
                    users=tuple(LabUser(str(u[0]), str(u[1])) for u in s["users"]),
                    expect=tuple(
                        Expect(code=e["code"], status=e["status"], subject=e["subject"])
                        for e in s["expect"]
                    ),
                )
                for s in data["scenarios"]
            )
            return cls(
                directory=Path(data["directory"]),
                server_netns=data["server_netns"],
                client_netns=data["client_netns"],
                resolver=data["resolver"],
                resolver6=data["resolver6"],
                client_ipv4=data["client_ipv4"],
                client_ipv6=data["client_ipv6"],
                ca_file=Path(data["ca_file"]),
                trust_anchor_file=Path(data["trust_anchor_file"]),
                latency_ms=int(data["latency_ms"]),
                latency_method=data["latency_method"],
                scenarios=scenarios,
                started_at=float(data["started_at"]),
                startup_seconds=float(data["startup_seconds"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise LabError(f"lab info is malformed ({type(exc).__name__}: {exc})") from exc

    def save(self, directory: Path | None = None) -> Path:
        """Write ``info.json`` into ``directory`` (the lab's own by default); return its path."""
        path = (directory or self.directory) / INFO_FILE
        write_json(path, self.to_json())
        return path

    @classmethod
    def load(cls, directory: Path) -> LabInfo:
        """The ``LabInfo`` saved in ``directory``; ``LabError`` if no lab is recorded there."""
        path = Path(directory) / INFO_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LabError(f"no lab is running in {directory} (no {path})") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise LabError(f"cannot read {path}: {exc}") from exc
        return cls.from_json(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessRecord:
    """A process we started: ``start_time`` (clock ticks since boot) tells a recycled PID apart."""

    name: str
    pid: int
    start_time: int
    log_file: str
    #: What ``Lab.down`` sends first (then SIGKILL after a grace period).
    stop_signal: int = signal.SIGTERM


@dataclass(slots=True, kw_only=True)
class LabState:
    """What ``Lab.up`` created so far; mutable, saved after every step."""

    directory: Path
    scenarios: tuple[str, ...]
    latency_ms: int
    namespaces: list[str] = field(default_factory=list)
    etc_netns: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    complete: bool = False

    @property
    def path(self) -> Path:
        """Where this state is saved."""
        return self.directory / STATE_FILE

    def save(self) -> None:
        """Write ``state.json`` atomically."""
        write_json(
            self.path,
            {
                "schema": _SCHEMA,
                "directory": str(self.directory),
                "scenarios": list(self.scenarios),
                "latency_ms": self.latency_ms,
                "namespaces": self.namespaces,
                "etc_netns": self.etc_netns,
                "processes": [
                    {"name": p.name, "pid": p.pid, "start_time": p.start_time,
                     "log": p.log_file, "stop_signal": p.stop_signal}
                    for p in self.processes
                ],
                "complete": self.complete,
            },
        )

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        """The state saved in ``directory``, or ``None`` when there is none (or it is unreadable:
        a half-written file from a crash must not stop ``down`` from cleaning up by name)."""
        path = Path(directory) / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                directory=Path(directory),
                scenarios=tuple(data["scenarios"]),
                latency_ms=int(data["latency_ms"]),
                namespaces=list(data["namespaces"]),
                etc_netns=list(data["etc_netns"]),
                processes=[
                    ProcessRecord(
                        name=p["name"],
                        pid=int(p["pid"]),
                        start_time=int(p["start_time"]),
                        log_file=p["log"],
                        stop_signal=int(p.get("stop_signal", signal.SIGTERM)),
                    )
                    for p in data["processes"]
                ],
                complete=bool(data["complete"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)
