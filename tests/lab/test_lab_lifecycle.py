"""Starting, restarting and stopping a lab; latency; the ``rca lab`` commands' output.

These tests run a second, small lab of their own (namespaces ``rca-lab-t2``/``-client``,
directory ``/run/rca-lab-t2``) next to the session's, so stopping it disturbs nobody. Its
clients are reached with ``in_netns`` (the main thread stays in the session lab's client
namespace).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.lab import Lab, LabError, LabInfo, check_prerequisites, in_netns, sogo
from analyzer.lab.cli import lab_down, lab_status, lab_up
from analyzer.lab.netns import namespace_exists, pids_in_netns
from analyzer.lab.process import alive, process_start_time, spawn, wait_ready
from analyzer.lab.scenarios import get_scenario
from analyzer.lab.state import LabState

pytestmark = pytest.mark.lab

NAME = "rca-lab-t2"
DIRECTORY = Path("/run/rca-lab-t2")
LATENCY_MS = 40


def _args(**extra: object) -> argparse.Namespace:
    return argparse.Namespace(dir=DIRECTORY, name=NAME, **extra)


@pytest.fixture(scope="module")
def small_lab(lab: LabInfo) -> Iterator[tuple[LabInfo, str]]:
    """One scenario with latency, started through ``rca lab up``'s function; its output too."""
    out = io.StringIO()
    try:
        lab_up(_args(scenario=["healthy"], latency=LATENCY_MS), out=out)
        yield LabInfo.load(DIRECTORY), out.getvalue()
    finally:
        Lab.down(DIRECTORY, name=NAME)


def test_up_prints_what_a_user_needs(small_lab: tuple[LabInfo, str]) -> None:
    # Given the output of `rca lab up`
    info, text = small_lab
    user, password = info.scenario("healthy").users[0]
    # Then it names the resolver, the CA file, the users and working commands
    assert info.resolver in text
    assert str(info.ca_file) in text
    assert user in text and password in text
    assert f"ip netns exec {info.client_netns} rca check {user} --ca-file {info.ca_file}" in text
    assert info.password_file(user).read_text() == password + "\n"


def test_status_prints_running_processes(small_lab: tuple[LabInfo, str]) -> None:
    # Given the running small lab
    out = io.StringIO()
    # When `rca lab status` runs
    code = lab_status(_args(), out=out)
    # Then it exits 0 and lists every process as running
    assert code == 0
    text = out.getvalue()
    for name in ("nsd", "dovecot", "postfix", "nginx", "emulator"):
        assert f"{name} " in text
    assert "NOT RUNNING" not in text


def test_info_round_trips_through_json(small_lab: tuple[LabInfo, str]) -> None:
    # Given the info of a running lab
    info, _ = small_lab
    # When it is serialised and read back, as another process would
    again = LabInfo.from_json(info.to_json())
    # Then nothing is lost, and status() returns the same
    assert again == info
    assert Lab.status(DIRECTORY) == info


def test_up_again_returns_the_running_lab(small_lab: tuple[LabInfo, str]) -> None:
    # Given the running small lab and its processes
    info, _ = small_lab
    before = LabState.load(DIRECTORY)
    assert before is not None
    # When up() is called again with the same settings
    again = Lab(DIRECTORY, ["healthy"], LATENCY_MS, name=NAME).up()
    # Then nothing was restarted
    after = LabState.load(DIRECTORY)
    assert after is not None
    assert again.started_at == info.started_at
    assert [p.pid for p in after.processes] == [p.pid for p in before.processes]


def test_latency_delays_each_direction(small_lab: tuple[LabInfo, str]) -> None:
    # Given the small lab, started with LATENCY_MS each way
    info, _ = small_lab
    mail = info.scenario("healthy").hosts["mail"]

    def connect_time() -> float:
        started = time.monotonic()
        socket.create_connection((mail.ipv4, 143), timeout=5).close()
        return time.monotonic() - started

    # When the client opens TCP connections (a handshake is one round trip)
    times = in_netns(info.client_netns, lambda: [connect_time() for _ in range(3)])
    print(f"\nconnect times with {LATENCY_MS} ms each way ({info.latency_method}): "
          + ", ".join(f"{t * 1000:.0f} ms" for t in times))  # fmt: skip
    # Then each took at least the round trip: twice the latency
    assert min(times) >= 2 * LATENCY_MS / 1000 * 0.9


def test_ipv6_works_with_latency(small_lab: tuple[LabInfo, str]) -> None:
    # Given the latency set-up (which must leave neighbour discovery alone)
    info, _ = small_lab
    mail = info.scenario("healthy").hosts["mail"]
    # When the client connects over IPv6
    in_netns(
        info.client_netns,
        lambda: socket.create_connection((mail.ipv6, 993), timeout=5).close(),
    )
    # Then it connected (no exception)


def test_a_server_that_dies_at_start_is_reported(small_lab: tuple[LabInfo, str]) -> None:
    # Given a "server" that exits at once, as one whose port is taken does
    info, _ = small_lab
    log = info.directory / "failing.log"
    server = spawn(
        "failing",
        ["sh", "-c", "echo 'bind: Address already in use' >&2; exit 3"],
        netns=info.server_netns,
        log_file=log,
        endpoints=[("198.18.0.99", 9)],
    )
    # When the lab waits for it
    # Then LabError names it, its status and its log line, in one line
    with pytest.raises(LabError) as excinfo:
        wait_ready(
            [server], netns=info.server_netns, timeout=10, log_file=info.directory / "ready.log"
        )
    message = str(excinfo.value)
    assert "failing exited with status 3" in message
    assert "Address already in use" in message
    assert "\n" not in message


def test_a_crashed_lab_is_replaced_by_up(small_lab: tuple[LabInfo, str]) -> None:
    # Given the small lab with one server killed, as after a crash
    state = LabState.load(DIRECTORY)
    assert state is not None
    victim = next(p for p in state.processes if p.name == "emulator")
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(victim) and time.monotonic() < deadline:
        time.sleep(0.02)
    # When up() is called again
    info = Lab(DIRECTORY, ["healthy"], LATENCY_MS, name=NAME).up()
    # Then a fresh lab runs, with every process alive again
    fresh = LabState.load(DIRECTORY)
    assert fresh is not None and fresh.complete
    assert all(alive(p) for p in fresh.processes)
    assert victim.pid not in [p.pid for p in fresh.processes]
    assert info.scenario("healthy").hosts["mail"].ipv4 == "198.18.1.12"


def test_down_leaves_no_process_and_no_namespace(small_lab: tuple[LabInfo, str]) -> None:
    # Given the small lab, its recorded processes and everything else in its namespace
    info, _ = small_lab
    state = LabState.load(DIRECTORY)
    assert state is not None
    recorded = list(state.processes)
    inside = {pid: process_start_time(pid) for pid in pids_in_netns(info.server_netns)}
    assert recorded and inside
    # When `rca lab down` runs
    out = io.StringIO()
    assert lab_down(_args(), out=out) == 0
    # Then every recorded PID is gone (or belongs to another process now) ...
    for record in recorded:
        assert not alive(record), record
    # ... so is every process that was inside the namespace (workers, children)
    for pid, started in inside.items():
        assert _zombie(pid) or process_start_time(pid) != started, pid
    # ... and the namespaces, /etc/netns entries and state are gone
    assert not namespace_exists(info.server_netns)
    assert not namespace_exists(info.client_netns)
    assert not Path(f"/etc/netns/{info.server_netns}").exists()
    assert not Path(f"/etc/netns/{info.client_netns}").exists()
    assert Lab.status(DIRECTORY) is None
    assert "lab stopped" in out.getvalue()


def test_down_again_is_harmless(small_lab: tuple[LabInfo, str]) -> None:
    # Given a lab already stopped
    # When down runs again, and status is asked
    Lab.down(DIRECTORY, name=NAME)
    out = io.StringIO()
    code = lab_status(_args(), out=out)
    # Then nothing fails, and status says there is no lab (exit 3: unknown)
    assert code == 3
    assert "no lab is running" in out.getvalue()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_prerequisites_name_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a PATH on which openssl (in /usr/bin) cannot be found
    monkeypatch.setenv("PATH", "/nonexistent")
    # When the prerequisites are checked
    # Then LabError says which apt-get command fixes it, in one line
    with pytest.raises(LabError) as excinfo:
        check_prerequisites()
    message = str(excinfo.value)
    assert "apt-get install" in message and "openssl" in message
    assert "\n" not in message


def test_sogo_is_required_only_by_a_scenario_that_uses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a machine without SOGo
    monkeypatch.setattr(sogo, "REQUIRED_FILES", {"/nonexistent/sogod": "sogo"})
    # When the sogo scenario is to run, LabError names the package, in one line
    with pytest.raises(LabError, match=r"^the lab needs packages [^\n]*apt-get install sogo$"):
        check_prerequisites(scenarios=[get_scenario("sogo")])
    # And the whole lab (the default) needs it too, while a lab without it does not
    with pytest.raises(LabError, match="sogo"):
        check_prerequisites()
    check_prerequisites(scenarios=[get_scenario("healthy")])


def test_not_root_is_a_one_line_lab_error() -> None:
    # Given an unprivileged user
    # When the prerequisites are checked
    # Then LabError says root is needed, in one line
    with pytest.raises(LabError, match=r"^the lab needs root [^\n]*sudo$"):
        check_prerequisites(euid=1000)


def test_a_directory_servers_cannot_enter_is_refused(tmp_path: Path) -> None:
    # Given a directory under pytest's private (mode 0700) temporary tree
    directory = tmp_path / "lab"
    # When a lab is started there
    # Then LabError says why and what to do, before anything is created
    with pytest.raises(LabError, match="choose another --dir"):
        Lab(directory, ["healthy"], name="rca-lab-t3").up()
    assert not namespace_exists("rca-lab-t3")
