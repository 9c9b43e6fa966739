"""The emulator's request and response: what every area of it (Autodiscover, EWS,
ActiveSync, RPC and MAPI over HTTP, authentication) reads and answers.

Kept apart from :mod:`analyzer.lab.emulator`, which routes requests to the areas, so that the
area modules import these types without importing the router that imports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EmulatorRequest", "EmulatorResponse", "Handler", "HostEntry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostEntry:
    """Which scenario and role a web address or host name belongs to."""

    scenario: str
    role: str
    host: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorRequest:
    """One request, with the scenario it is for (``None`` when nothing matched)."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = field(repr=False)
    host: str
    entry: HostEntry | None
    behaviour: Mapping[str, Any]
    scenario_data: Mapping[str, Any]
    #: The client's connection (nginx's ``X-Rca-Client-Conn``, else our own peer): NTLM
    #: authenticates a connection, not a request (``analyzer.lab.emulator_auth``).
    connection: str = ""
    #: Shared by every request the server handles (per-connection NTLM state); None in
    #: requests built by hand.
    state: MutableMapping[str, Any] | None = field(default=None, repr=False, compare=False)
    #: The query string as sent (RPC over HTTP puts ``server:port`` there, not ``k=v``).
    raw_query: str = ""
    #: The unread request body, for a body too long to read at once (RPC_IN_DATA announces
    #: 1 GiB and streams); None when ``body`` holds it all.
    stream: Any = field(default=None, repr=False, compare=False)

    @property
    def scenario(self) -> str | None:
        """The scenario's name, if known."""
        return self.entry.scenario if self.entry else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorResponse:
    """What to answer."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    #: A reason phrase other than the standard one ([MS-RPCH] 2.1.2.1.3: "RPC Error: 6BA").
    reason: str = ""

    @classmethod
    def json(cls, status: int, data: Any) -> EmulatorResponse:
        """A JSON response."""
        return cls(
            status=status,
            headers=(("Content-Type", "application/json"),),
            body=json.dumps(data, sort_keys=True).encode() + b"\n",
        )

    @classmethod
    def text(cls, status: int, text: str) -> EmulatorResponse:
        """A plain-text response."""
        return cls(
            status=status,
            headers=(("Content-Type", "text/plain; charset=utf-8"),),
            body=text.encode(),
        )


Handler = Callable[[EmulatorRequest], EmulatorResponse]
