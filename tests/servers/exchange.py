"""The lab's Exchange emulator served in-process on loopback, for hostile tests that watch
or hold its requests (they replace entries of ``analyzer.lab.emulator.ROUTES`` first).

Each host name gets a loopback address of its own, picked at random in 127.0.0.0/8, so the
emulator can bind the ports its URLs name (443 over TLS, 80 over plain http).
"""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from analyzer.lab import emulator
from analyzer.lab.emulator import EmulatorConfig, HostEntry
from analyzer.lab.emulator_auth import write_ntlm_user_file


def loopback_address() -> str:
    """A random address of 127.0.0.0/8 (other than 127.0.0.1 and the network's ends)."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"  # noqa: S311


@contextmanager
def serve_emulator(
    *, host: str, domain: str, users: Sequence[tuple[str, str]], tls: ssl.SSLContext,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listeners: Sequence[int] = (443,),
    adjust: Callable[[Any], None] | None = None,
) -> Iterator[tuple[str, list[Any]]]:  # fmt: skip
    """The emulator serving ``host`` for ``users`` (NTLM too) on each port of ``listeners``
    of one loopback address: 443 over TLS (``tls``), any other over plain http. ``adjust``
    sees each server before it serves. Yields the address and the servers, in order."""
    users_file = tmp_path / "ntlm-users"
    write_ntlm_user_file(users_file, users)
    monkeypatch.setenv("NTLM_USER_FILE", str(users_file))
    address = loopback_address()
    scenario = {"domain": domain, "users": [list(u) for u in users], "behaviour": {}}
    servers: list[tuple[Any, threading.Thread]] = []
    try:
        for port in listeners:
            name = "tls" if port == 443 else "plain"
            config = EmulatorConfig(
                listen=(address, port), addresses={},
                hosts={host: HostEntry(scenario=name, role="mail", host=host)},
                scenarios={name: scenario},
            )  # fmt: skip
            httpd = emulator.make_server(config)
            if port == 443:
                httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
            if adjust is not None:
                adjust(httpd)
            thread = threading.Thread(target=httpd.serve_forever, daemon=True)
            thread.start()
            servers.append((httpd, thread))
        yield address, [httpd for httpd, _ in servers]
    finally:
        for httpd, thread in servers:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
