"""``rca web``: start the application on uvicorn.

Localhost by default. Anywhere else needs TLS (``--cert``/``--key``), a target allowlist
in the configuration, and the access token generated at start and printed once.

``--netns NAME`` binds the listening socket first and only then moves the process into
the network namespace, so a browser on this machine reaches the page while every check
runs from inside the namespace (``--lab`` does this for the bundled lab's client side,
and offers the lab's DNS server and CA).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.core.errors import UsageError
from analyzer.operations.serve import parse_listen
from analyzer.operations.web.config import WebConfig, load_web_config
from analyzer.operations.web.security import Guard, is_loopback

if TYPE_CHECKING:
    from analyzer.core.probe import Probe
    from analyzer.lab import LabInfo
    from analyzer.operations.web.forms import OptionsBuilder

__all__ = [
    "bind",
    "hash_password_command",
    "lab_config",
    "main_web",
    "serve_in_thread",
    "uvicorn_config",
]


def bind(listen: tuple[str, int]) -> socket.socket:
    """A listening TCP socket on ``listen`` (port 0: one the kernel picks)."""
    host, port = listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def uvicorn_config(app: Any, *, cert: Path | None = None, key: Path | None = None,
                   log_level: str = "info") -> Any:
    """The uvicorn settings of ``rca web`` (h11, no WebSocket, no proxy headers trusted)."""
    import uvicorn  # noqa: PLC0415

    return uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="on",
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # Open event streams hold a connection each: bound them (503 past this).
        limit_concurrency=256,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
    )


def lab_config(config: WebConfig, info: LabInfo) -> WebConfig:
    """``config`` with the lab's DNS server offered, its CA file and trust anchor."""
    return dataclasses.replace(
        config,
        resolvers=tuple(dict.fromkeys((info.resolver, *config.resolvers))),
        ca_files={"rca lab CA": info.ca_file, **config.ca_files},
        trust_anchor=(
            info.trust_anchor_file if any(s.signed for s in info.scenarios)
            else config.trust_anchor
        ),
    )


@contextmanager
def serve_in_thread(
    config: WebConfig,
    *,
    build_options: OptionsBuilder,
    guard: Guard | None = None,
    probes: Sequence[Probe] | None = None,
    listen: tuple[str, int] = ("127.0.0.1", 0),
) -> Iterator[str]:
    """Run the application on uvicorn in a thread; yield its base URL; stop it after."""
    import uvicorn  # noqa: PLC0415

    from analyzer.operations.web.app import create_app  # noqa: PLC0415

    sock = bind(listen)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(
        uvicorn_config(create_app(config, build_options=build_options, guard=guard, probes=probes),
                       log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="rca-web", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the web server did not start")
            thread.join(0.02)
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def hash_password_command(stdin: Any = None) -> int:
    """``rca web --hash-password``: a ``[web.users]`` hash of a password read from the
    terminal (twice) or from the first line of standard input."""
    import getpass  # noqa: PLC0415

    from analyzer.operations.web.security import hash_password  # noqa: PLC0415

    stdin = stdin or sys.stdin
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            raise UsageError("the two passwords differ")
    else:
        password = stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise UsageError("use a password of at least 8 characters")
    print(hash_password(password))
    return 0


def main_web(args: Any, *, build_options: OptionsBuilder, lab: LabInfo | None = None) -> int:
    """``rca web``: serve until interrupted. The command line hands in ``rca check``'s option
    builder and, for ``--lab``, the running lab (only the command line opens the lab)."""
    import uvicorn  # noqa: PLC0415

    from analyzer.operations.web.app import create_app  # noqa: PLC0415

    if getattr(args, "hash_password", False):
        return hash_password_command()
    config = load_web_config(args.config) if args.config else WebConfig()
    netns = args.netns
    if lab is not None:
        config = lab_config(config, lab)
        netns = netns or lab.client_netns
    if args.history is not None:
        config = dataclasses.replace(config, history=args.history)
    listen = parse_listen(args.listen, where="--listen") if args.listen else config.listen
    local = is_loopback(listen[0])
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together")
    for path, flag in ((args.cert, "--cert"), (args.key, "--key")):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    if not local and args.cert is None:
        raise UsageError(
            f"listening on {listen[0]} (not localhost) needs TLS: give --cert and --key"
        )
    if not local and not config.allow:
        raise UsageError(
            f"listening on {listen[0]} (not localhost) needs a target allowlist: "
            '[web] allow = ["example.com"] in the --config file'
        )
    # Off localhost: the configured users log in, or else whoever has the printed token.
    token = None if local or config.users else secrets.token_urlsafe(32)
    sock = bind(listen)
    if netns:
        from analyzer.protocols.netns import enter_netns  # noqa: PLC0415

        try:
            enter_netns(netns)
        except BaseException:
            sock.close()
            raise
    guard = Guard(token=token, users=config.users, secure=args.cert is not None, local=local,
                  hosts=frozenset({listen[0].strip("[]").lower()}),
                  requests_per_minute=config.requests_per_minute)
    app = create_app(config, build_options=build_options, guard=guard)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if args.cert else "http"
    print(f"rca web: {scheme}://{shown}:{port}/ (history in {config.history})",
          file=sys.stderr, flush=True)
    if token is not None:
        print(f"rca web: access token (shown once, needed to log in): {token}",
              file=sys.stderr, flush=True)
    # uvicorn configures its own loggers only: give rca's (runs started and ended, logins)
    # a handler of its own; libraries' INFO lines (httpx names every URL) stay silent.
    log = logging.getLogger("rca.web")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    server = uvicorn.Server(uvicorn_config(app, cert=args.cert, key=args.key))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
