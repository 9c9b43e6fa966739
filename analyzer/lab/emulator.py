"""The Exchange-endpoint emulator: a small HTTP application behind the lab's nginx.

Run as ``python -m analyzer.lab.emulator --config FILE`` inside the server namespace; it
listens on 127.0.0.1 (nginx terminates TLS and proxies ``PROXIED_PATHS`` to it). The config
file (written by ``Lab.up``) maps every lab web address and host name to its scenario and role,
and holds each scenario's ``emulator`` behaviour.

Dispatch: ``ROUTES`` maps a path prefix (matched case-insensitively, longest first, as IIS
treats paths) to a handler ``(EmulatorRequest) -> EmulatorResponse`` (both types live in
:mod:`analyzer.lab.emulator_http`, which the area modules import). A scenario can pin the
answer for a path with ``emulator={"responses": {"/health": {"status": 503, "body": "..."}}}``
(exact path, case-insensitive), which wins over the handler. To emulate a new endpoint, write a
handler and add its prefix to ``ROUTES`` (and to ``PROXIED_PATHS`` if nginx does not pass it on
yet).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from analyzer.lab.emulator_http import EmulatorRequest, EmulatorResponse, Handler, HostEntry

__all__ = [
    "PROXIED_PATHS",
    "ROUTES",
    "EmulatorConfig",
    "EmulatorRequest",
    "EmulatorResponse",
    "HostEntry",
    "main",
    "make_server",
]

PROXIED_PATHS: Final[tuple[str, ...]] = (
    "/health",
    "/autodiscover/",
    "/EWS/",
    "/Microsoft-Server-ActiveSync",
    "/rpc/",
    "/mapi/",
)
"""Paths nginx passes to the emulator on every web host (case-insensitive prefixes)."""

_MAX_BODY: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """The emulator's view of the lab (read from the JSON file ``Lab.up`` writes)."""

    listen: tuple[str, int]
    addresses: Mapping[str, HostEntry]
    hosts: Mapping[str, HostEntry]
    scenarios: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        """Parse the config file's content."""

        def entries(raw: Mapping[str, Any]) -> dict[str, HostEntry]:
            return {
                key.lower(): HostEntry(scenario=v["scenario"], role=v["role"], host=v["host"])
                for key, v in raw.items()
            }

        return cls(
            listen=(str(data["listen"][0]), int(data["listen"][1])),
            addresses=entries(data["addresses"]),
            hosts=entries(data["hosts"]),
            scenarios=dict(data["scenarios"]),
        )

    @classmethod
    def load(cls, path: Path) -> EmulatorConfig:
        """Read the config file at ``path``."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def health(request: EmulatorRequest) -> EmulatorResponse:
    """``GET /health``: 200 with what the emulator knows about the host asked for."""
    entry = request.entry
    return EmulatorResponse.json(
        200,
        {
            "status": "ok",
            "scenario": entry.scenario if entry else None,
            "role": entry.role if entry else None,
            "host": entry.host if entry else request.host,
        },
    )


def not_emulated(request: EmulatorRequest) -> EmulatorResponse:
    """Paths nginx passes on but no handler emulates yet: 404, as IIS answers."""
    return EmulatorResponse.text(404, f"not emulated: {request.method} {request.path}\n")


def _routes() -> dict[str, Handler]:
    # Each area of Exchange lives in its own module, which exports ROUTES of its own.
    from analyzer.lab import (  # noqa: PLC0415
        emulator_autodiscover,
        emulator_autodiscover_soap,
        emulator_exchange,
    )

    return {"/health": health, **emulator_autodiscover.ROUTES,
            **emulator_autodiscover_soap.ROUTES, **emulator_exchange.ROUTES}  # fmt: skip


if __name__ == "__main__":
    # `python -m analyzer.lab.emulator`: run the module under its own name, so that a module
    # importing it by name (the lab, the tests) and this process share one copy of it.
    import importlib

    raise SystemExit(importlib.import_module("analyzer.lab.emulator").main())

ROUTES: Final[Mapping[str, Handler]] = _routes()
"""Path prefix -> handler. Longest matching prefix wins; matching ignores case."""


def dispatch(config: EmulatorConfig, request: EmulatorRequest) -> EmulatorResponse:
    """Pick the answer: the scenario's pinned response for the path, else the route's handler."""
    pinned = request.behaviour.get("responses", {})
    for path, spec in pinned.items():
        if path.lower() == request.path.lower():
            return EmulatorResponse(
                status=int(spec.get("status", 200)),
                headers=tuple((str(k), str(v)) for k, v in spec.get("headers", {}).items()),
                body=str(spec.get("body", "")).encode(),
            )
    lowered = request.path.lower()
    for prefix in sorted(ROUTES, key=len, reverse=True):
        if lowered.startswith(prefix.lower()):
            return ROUTES[prefix](request)
    return not_emulated(request)


def _lookup(config: EmulatorConfig, headers: Mapping[str, str]) -> tuple[str, HostEntry | None]:
    host = headers.get("x-forwarded-host") or headers.get("host") or ""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]").rstrip(".").lower()
    address = headers.get("x-rca-server-addr", "").lower()
    # The address the client reached decides (per-host behaviour by listening address);
    # the Host header only when the request did not come through nginx.
    entry = config.addresses.get(address) or config.hosts.get(name)
    return name, entry


def make_server(config: EmulatorConfig) -> ThreadingHTTPServer:
    """An HTTP server bound to ``config.listen`` serving the emulator (not yet serving)."""

    state: dict[str, Any] = {}
    serials = itertools.count(1)

    class RequestHandler(BaseHTTPRequestHandler):
        server_version = "rca-lab-emulator"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.serial = next(serials)  # one handler instance per connection

        def _dispatch(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length", "0") or "0")
            streamed = self.command == "RPC_IN_DATA" and length > _MAX_BODY
            if length > _MAX_BODY and not streamed:
                self._send(EmulatorResponse.text(413, "request body too large\n"))
                return
            body = self.rfile.read(length) if 0 < length and not streamed else b""
            url = urlsplit(self.path)
            host, entry = _lookup(config, headers)
            scenario_data: Mapping[str, Any] = (
                config.scenarios.get(entry.scenario, {}) if entry else {}
            )
            request = EmulatorRequest(
                method=self.command,
                path=url.path,
                query=parse_qs(url.query),
                headers=headers,
                body=body,
                host=host,
                entry=entry,
                behaviour=scenario_data.get("behaviour", {}),
                scenario_data=scenario_data,
                connection=headers.get("x-rca-client-conn")
                or f"{self.client_address[0]}:{self.client_address[1]}#{self.serial}",
                state=state,
                raw_query=url.query,
                stream=self.rfile if streamed else None,
            )
            try:
                response = dispatch(config, request)
            except Exception as exc:  # a handler bug must not kill the connection silently
                self.log_error("handler failed: %r", exc)
                response = EmulatorResponse.text(500, "emulator handler failed\n")
            if streamed:
                self.close_connection = True  # the rest of the body is never read
            self._send(response)

        def _send(self, response: EmulatorResponse) -> None:
            self.send_response(response.status, response.reason or None)
            names = {k.lower() for k, _ in response.headers}
            for key, value in response.headers:
                self.send_header(key, value)
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def __getattr__(self, name: str) -> Callable[[], None]:
            # Any method (GET, POST, OPTIONS, RPC_IN_DATA...) goes through the dispatch table.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    class Server(ThreadingHTTPServer):
        # socketserver listens with a backlog of 5: a burst of connections from nginx
        # (twenty checks at once) overflowed it and nginx saw resets. IIS's is far deeper.
        request_queue_size = 1024
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that leaves before its answer is written (a probe that gave up, a
            # connection opened ahead and closed unused) is normal traffic for a server:
            # one log line, as IIS logs it, not a traceback that reads like a crash.
            exc = sys.exc_info()[1]
            if isinstance(exc, (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                sys.stderr.write(f"{client_address[0]} left before the answer: {exc}\n")
                return
            super().handle_error(request, client_address)

    return Server(config.listen, RequestHandler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m analyzer.lab.emulator --config FILE``."""
    parser = argparse.ArgumentParser(prog="python -m analyzer.lab.emulator")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    config = EmulatorConfig.load(args.config)
    # pyspnego's NTLM acceptor reads its users from the file named by NTLM_USER_FILE.
    from analyzer.lab.emulator_auth import write_ntlm_user_file  # noqa: PLC0415

    users = [(str(a), str(p)) for s in config.scenarios.values() for a, p in s.get("users", [])]
    ntlm_file = write_ntlm_user_file(args.config.parent / "ntlm-users", users)
    os.environ["NTLM_USER_FILE"] = str(ntlm_file)
    server = make_server(config)
    sys.stderr.write(f"emulator listening on {config.listen[0]}:{config.listen[1]}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

