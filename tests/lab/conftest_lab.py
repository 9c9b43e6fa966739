"""The ``lab`` fixture: the bundled lab, started once per test session.

Load it as a plugin (``pytest_plugins = ["tests.lab.conftest_lab"]`` in ``tests/conftest.py``)
or run ``pytest -p tests.lab.conftest_lab``. The fixture starts every scenario in its own lab
(namespaces ``rca-lab-test`` and ``rca-lab-test-client``, directory ``/run/rca-lab-test``, so a
lab someone started with ``rca lab up`` is left alone), moves the session's main thread into
the client namespace, yields the ``LabInfo``, and tears the lab down at the end.

After it ran, every socket the tests open lives in the client namespace: the lab's addresses
are reachable, nothing else is (loopback still works), and ``tests/conftest.py``'s socket
guard is told so (``LAB_NAMESPACE_ENTERED``). A loopback server started *before* (a
session-scoped fixture in the host namespace) is not reachable from the client namespace.
The system resolver is *not* the lab's (the mount namespace does not change): use
``lab_resolver`` or ``lab_system_resolver``.

Not root, or a server package missing: the lab tests skip, except under ``CI=true``, where a
lab that cannot start is a failure.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import dns.resolver
import pytest

from analyzer.lab import Lab, LabError, LabInfo, check_prerequisites, enter_netns

LAB_NAME = os.environ.get("RCA_LAB_TEST_NAME", "rca-lab-test")
LAB_DIR = Path(os.environ.get("RCA_LAB_TEST_DIR", "/run/rca-lab-test"))
#: Comma-separated scenario names to start instead of all (a quicker lab for a few tests).
LAB_SCENARIOS = [s for s in os.environ.get("RCA_LAB_TEST_SCENARIOS", "").split(",") if s] or None


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the lab must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _announce_client_namespace(entered: bool) -> None:
    """Tell ``tests/conftest.py``'s socket guard that lab addresses are now reachable (only
    from inside the isolated client namespace) or no longer."""
    conftest = sys.modules.get("tests.conftest")
    flag = getattr(conftest, "LAB_NAMESPACE_ENTERED", None)
    if isinstance(flag, dict):
        flag["value"] = entered


_STARTUP = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show how long the lab took to start (measured, never asserted)."""
    line = terminalreporter.config.stash.get(_STARTUP, None)
    if line:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[LabInfo]:
    """Start the lab (all scenarios), enter its client namespace, yield its ``LabInfo``."""
    try:
        check_prerequisites()
    except LabError as exc:
        _unavailable(str(exc))
    started = time.monotonic()
    try:
        info = Lab(directory=LAB_DIR, scenarios=LAB_SCENARIOS, latency_ms=0, name=LAB_NAME).up()
    except LabError as exc:
        _unavailable(f"the lab did not start: {exc}")
    elapsed = time.monotonic() - started
    # Measured, never asserted: the machine's speed is not what these tests are about.
    request.config.stash[_STARTUP] = (
        f"lab start-up: {elapsed:.2f} s for {len(info.scenarios)} scenarios "
        f"(servers ready after {info.startup_seconds:.2f} s)"
    )
    enter_netns(info.client_netns)
    _announce_client_namespace(True)
    try:
        yield info
    finally:
        _announce_client_namespace(False)
        Lab.down(LAB_DIR, name=LAB_NAME)


@pytest.fixture(scope="session")
def lab_resolver(lab: LabInfo) -> dns.resolver.Resolver:
    """A dnspython resolver asking only the lab's DNS server."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab.resolver]
    resolver.timeout = 2.0
    resolver.lifetime = 5.0
    return resolver


@pytest.fixture
def lab_system_resolver(lab_resolver: dns.resolver.Resolver) -> Iterator[dns.resolver.Resolver]:
    """For one test, ``socket.getaddrinfo`` (and so imaplib, smtplib...) resolves through the
    lab's DNS (dnspython's ``override_system_resolver``); restored afterwards."""
    dns.resolver.override_system_resolver(lab_resolver)
    try:
        yield lab_resolver
    finally:
        dns.resolver.restore_system_resolver()
