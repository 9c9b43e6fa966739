"""Namespaces: where the test process lives once the ``lab`` fixture ran, and what it reaches."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from analyzer.lab import LabError, LabInfo, enter_netns, in_netns

pytestmark = pytest.mark.lab


def _ns_of_this_thread() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def _ns(name: str) -> tuple[int, int]:
    st = os.stat(f"/run/netns/{name}")
    return st.st_dev, st.st_ino


def test_main_thread_is_in_the_client_namespace(lab: LabInfo) -> None:
    # Given the lab fixture entered the client namespace at session start
    # When this (main) thread's namespace is looked at
    # Then it is the client's
    assert threading.current_thread() is threading.main_thread()
    assert _ns_of_this_thread() == _ns(lab.client_netns)


def test_threads_started_afterwards_inherit_it(lab: LabInfo) -> None:
    # Given a thread started now
    seen: list[tuple[int, int]] = []
    thread = threading.Thread(target=lambda: seen.append(_ns_of_this_thread()))
    # When it looks at its namespace
    thread.start()
    thread.join()
    # Then it is the client's too
    assert seen == [_ns(lab.client_netns)]


def test_subprocesses_inherit_it(lab: LabInfo) -> None:
    # Given a child process started from this thread
    out = subprocess.run(
        ["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # Then its namespace is the client's
    assert out == f"net:[{_ns(lab.client_netns)[1]}]"


def test_client_has_its_own_addresses(lab: LabInfo) -> None:
    # Given the client namespace
    # When binding to the client's addresses and to a server address
    for address, family in ((lab.client_ipv4, socket.AF_INET), (lab.client_ipv6, socket.AF_INET6)):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    # Then the client's are local and the server's are not (Dovecot must not see "local")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(OSError) as exc:
        sock.bind((lab.resolver, 0))
    assert exc.value.errno == errno.EADDRNOTAVAIL


@pytest.mark.parametrize("name_attr", ["client_netns", "server_netns"])
def test_no_namespace_has_a_route_out(lab: LabInfo, name_attr: str) -> None:
    # Given either lab namespace
    name = getattr(lab, name_attr)
    # When the kernel is asked how it would reach a documentation address (no packet is sent)
    done = subprocess.run(
        ["ip", "-n", name, "route", "get", "192.0.2.1"], capture_output=True, text=True
    )
    routes = subprocess.run(
        ["ip", "-n", name, "route", "show", "default"], capture_output=True, text=True
    )
    # Then there is no route, and no default route
    assert done.returncode != 0 and "unreachable" in done.stderr.lower()
    assert routes.stdout.strip() == ""


def test_in_netns_runs_elsewhere_without_moving_the_caller(lab: LabInfo) -> None:
    # Given the main thread in the client namespace
    # When a function runs in the server namespace through in_netns
    inside = in_netns(lab.server_netns, _ns_of_this_thread)
    # Then it ran there, and the caller stayed put
    assert inside == _ns(lab.server_netns)
    assert _ns_of_this_thread() == _ns(lab.client_netns)


def test_enter_missing_namespace_is_a_lab_error() -> None:
    # Given a namespace that does not exist
    # When a thread tries to enter it
    # Then LabError says so (and the thread is not moved)
    before = _ns_of_this_thread()
    with pytest.raises(LabError, match="does not exist"):
        in_netns("rca-lab-no-such-namespace", lambda: None)
    assert _ns_of_this_thread() == before
    with pytest.raises(LabError):
        enter_netns("rca-lab-no-such-namespace")


def test_client_resolv_conf_points_at_the_lab(lab: LabInfo) -> None:
    # Given the file `ip netns exec <client>` mounts on /etc/resolv.conf
    text = Path(f"/etc/netns/{lab.client_netns}/resolv.conf").read_text()
    # Then it names the lab's DNS server and nothing else
    servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver")]
    assert servers == [lab.resolver, lab.resolver6]


def test_system_resolver_in_the_client_namespace_uses_the_lab(lab: LabInfo) -> None:
    # Given a program started with `ip netns exec <client>` (as users run `rca check`)
    host = lab.scenario("healthy").hosts["mail"]
    # When it resolves a lab name through the C library
    out = subprocess.run(
        ["ip", "netns", "exec", lab.client_netns, "getent", "ahostsv4", host.name],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # Then the lab DNS answered
    assert out.returncode == 0, out.stderr
    assert host.ipv4 in out.stdout
