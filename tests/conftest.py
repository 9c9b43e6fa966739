"""Shared fixtures, a guard that keeps every test's traffic on this machine, and a check
that no report any test writes holds a password or a URL's userinfo.

The guard wraps ``socket.connect``/``sendto`` for the whole session: a test may talk to
loopback, and to the lab's addresses (198.18.0.0/15, 2001:db8::/32) only once the lab
fixture has moved the test process into the lab's isolated client namespace. Anything
else fails the test at once instead of sending a packet to the outside world.

The report check (docs/security.md): every renderer in ``reports/`` is wrapped for the
session, and every password or token given to :class:`~analyzer.core.context.Credentials` is
noted; after each test, whatever it rendered is searched for those secrets (and the lab
users' password) and for ``scheme://user:password@``. At the end of the session, the
report files written under the session's temporary directory (by the CLI in a subprocess,
a batch...) are searched the same way. A hit fails the test that wrote it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import reports.html
import reports.index
import reports.json
import reports.junit
import reports.prometheus
import reports.terminal
from analyzer.core.context import Credentials
from tests.servers.dnsserver import DnsServer, dns_server

if TYPE_CHECKING:
    from analyzer.lab.pki import LabPKI

# --- no secret in any report ------------------------------------------------------------------

#: The lab users' password (``analyzer.lab.scenario_model``), plus every secret a test gives.
_SECRETS: set[str] = {"alice-lab-password"}
#: What the renderers returned since the current test started: (renderer, text).
_RENDERED: list[tuple[str, str]] = []
#: ``scheme://user:password@`` where the password is not the hidden form ``***``.
USERINFO = re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@\"'<>]*:(?!\*\*\*@)[^/\s@\"'<>]+@", re.I)
#: Shorter secrets ("pw") would match ordinary words of a report.
_MIN_SECRET = 8


def _note_secrets(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def noting(self: Credentials, username: str | None, **secrets: str | None) -> None:
        _SECRETS.update(v for v in secrets.values() if v and len(v) >= _MIN_SECRET)
        init(self, username, **secrets)

    return noting


def _recording(name: str, render: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(render)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        out = render(*args, **kwargs)
        texts = out if isinstance(out, list) else [out]
        _RENDERED.extend((name, t) for t in texts if isinstance(t, str))
        return out

    return recorded


Credentials.__init__ = _note_secrets(Credentials.__init__)  # type: ignore[method-assign]
for _module, _name in (
    (reports.json, "dumps"), (reports.html, "render"), (reports.junit, "dumps"),
    (reports.prometheus, "dumps"), (reports.index, "render_index"),
    (reports.terminal, "plain_lines"), (reports.terminal, "verdict_line"),
):  # fmt: skip
    setattr(_module, _name, _recording(f"{_module.__name__}.{_name}", getattr(_module, _name)))


def leaks(text: str) -> list[str]:
    """The secrets and userinfo found in ``text`` (their position, never the secret)."""
    found = [f"a password at offset {text.find(s)}" for s in _SECRETS if s in text]
    found += [f"userinfo at offset {m.start()}" for m in USERINFO.finditer(text)]
    return found


@pytest.fixture(autouse=True)
def _reports_hold_no_secret() -> Iterator[None]:
    """Fails the test whose rendered reports hold a secret or a URL's userinfo."""
    start = len(_RENDERED)
    yield
    rendered = _RENDERED[start:]
    del _RENDERED[start:]
    problems = [f"{name}: {hit}" for name, text in rendered for hit in leaks(text)]
    assert not problems, f"a report written by this test leaks: {problems}"


_REPORT_FILES = {".json": '"schema_version"', ".html": "<html", ".xml": "<testsuite",
                 ".prom": "rca_"}  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def _report_files_hold_no_secret(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session: the report files under the session's temporary
    directory (written by the CLI, a batch, in a subprocess...) hold no secret either."""
    yield
    base = tmp_path_factory.getbasetemp()
    problems = []
    for path in sorted(p for p in Path(base).rglob("*") if p.suffix in _REPORT_FILES):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if _REPORT_FILES[path.suffix] in text:
            problems += [f"{path.relative_to(base)}: {hit}" for hit in leaks(text)]
    assert not problems, f"report files leak: {problems}"

#: The lab fixtures (``lab``, ``lab_resolver``...): real servers in network namespaces.
pytest_plugins = ["tests.lab.conftest_lab"]

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_LAB = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
#: Set by the lab fixture once the process is inside the lab's client namespace.
LAB_NAMESPACE_ENTERED = {"value": False}


def _check_destination(address: Any) -> None:
    if not isinstance(address, tuple) or not address:
        return  # AF_UNIX paths and the like
    host = address[0]
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        raise AssertionError(f"test tried to connect to a name, not an address: {host!r}") from None
    if any(ip in net for net in _LOOPBACK):
        return
    if LAB_NAMESPACE_ENTERED["value"] and any(ip in net for net in _LAB):
        return
    raise AssertionError(f"test traffic to {ip} refused: only loopback and the lab are allowed")


def _guard(method: Any) -> Any:
    def guarded(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_destination(address if not args else args[-1])
        return method(self, address, *args)

    return guarded


_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_sendto = socket.socket.sendto
socket.socket.connect = _guard(_original_connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guard(_original_connect_ex)  # type: ignore[method-assign]


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_destination(args[-1])
    return _original_sendto(self, data, *args)


socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign]


EXAMPLE_ZONE = """
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 300
@        IN NS  ns1
@        IN A   127.0.2.10
@        IN MX  10 mx1
@        IN MX  20 mx2
mx1      IN A    127.0.2.25
mx1      IN AAAA ::1
mx2      IN CNAME mx1
ns1      IN A   127.0.2.53
loop1    IN CNAME loop2
loop2    IN CNAME loop1
"""
REVERSE_V4_ZONE = """
$TTL 300
@        IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@        IN NS  ns1.example.test.
25       IN PTR mx1.example.test.
10       IN PTR example.test.
"""
REVERSE_V6_ZONE = """
$TTL 300
@        IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@        IN NS  ns1.example.test.
@        IN PTR mx1.example.test.
"""
NOMX_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN A 127.0.2.11
"""
NULLMX_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN MX 0 .
"""


@pytest.fixture(scope="module")
def example_dns() -> Iterator[DnsServer]:
    """A loopback authoritative server for example.test and friends.

    Module-scoped on purpose: a socket belongs to the network namespace it was made in,
    and the lab fixture moves the test process into the lab's client namespace; a server
    made before that move would be unreachable after it.
    """
    with dns_server(
        {
            "example.test.": EXAMPLE_ZONE,
            "nomx.test.": NOMX_ZONE,
            "nullmx.test.": NULLMX_ZONE,
            "2.0.127.in-addr.arpa.": REVERSE_V4_ZONE,
            "1." + "0." * 31 + "ip6.arpa.": REVERSE_V6_ZONE,
        },
        {"slow.example.test": "drop", "broken.example.test": "servfail",
         "big.example.test": "truncate"},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    """A test CA (one a module) for the TLS servers of tests/servers/tcp.py."""
    from analyzer.lab.pki import LabPKI  # noqa: PLC0415 - only TLS tests need it

    return LabPKI.create(tmp_path_factory.mktemp("pki"), now=datetime.now(UTC))
