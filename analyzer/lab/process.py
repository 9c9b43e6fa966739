"""Starting, watching and stopping the lab's server processes.

Every server runs in the foreground under ``ip netns exec <ns>`` (which execs it, so the PID
``Popen`` returns is the server's own), in a session of its own (a Ctrl-C at the terminal that
ran ``rca lab up`` does not reach it), output going to a log file in the lab directory.
Readiness is a TCP connect to each of its ports from inside the namespace (by a small
checker process), retried until a deadline; a server that exits meanwhile fails at once,
quoting its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from analyzer.lab.errors import LabError
from analyzer.lab.state import ProcessRecord

__all__ = [
    "Server",
    "alive",
    "log_tail",
    "process_start_time",
    "spawn",
    "stop",
    "wait_ready",
]

_POLL_INTERVAL_S: Final = 0.02
_TERM_GRACE_S: Final = 5.0


@dataclass(slots=True)
class Server:
    """A started server: its PID and the (address, port) pairs it must accept on."""

    name: str
    pid: int
    log_file: Path
    endpoints: tuple[tuple[str, int], ...]
    returncode: int | None = None
    stop_signal: int = signal.SIGTERM

    def poll(self) -> int | None:
        """The exit status if the process has ended (reaping it), else ``None``."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (by `alive`): it has ended
                self.returncode = -1
            else:
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def record(self) -> ProcessRecord:
        """What the state file keeps about this process."""
        return ProcessRecord(
            name=self.name,
            pid=self.pid,
            start_time=process_start_time(self.pid) or 0,
            log_file=str(self.log_file),
            stop_signal=self.stop_signal,
        )


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    netns: str,
    log_file: Path,
    endpoints: Sequence[tuple[str, int]],
    env: Mapping[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Server:
    """Start ``argv`` inside ``netns`` with stdout and stderr appended to ``log_file``.

    ``stop_signal`` is what ``stop`` will send it first (a server whose SIGTERM waits for
    its clients, or for a worker to finish, says otherwise).

    ``posix_spawn`` rather than ``Popen``: the servers outlive this call by design, and a
    ``Popen`` object dropped while its process runs is reported as a leak (ResourceWarning).
    Signals Python ignores (SIGPIPE) are reset to their defaults, as ``Popen`` would.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    full_argv = ["ip", "netns", "exec", netns, *argv]
    executable = shutil.which("ip", path=full_env.get("PATH", "") + ":/usr/sbin:/sbin")
    if executable is None:
        raise LabError("ip not found; install it with: apt-get install iproute2")
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        pid = os.posix_spawn(
            executable,
            full_argv,
            full_env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except OSError as exc:
        raise LabError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    finally:
        os.close(log_fd)
    return Server(name=name, pid=pid, log_file=log_file, endpoints=tuple(endpoints),
                  stop_signal=stop_signal)


# Runs inside the namespace, in a separate interpreter (-I: stdlib only, starts in ~20 ms):
# connects to every endpoint until all accept or the deadline passes. A separate process, not
# a thread of ours that entered the namespace, so that nothing in this process (a test suite's
# socket guard, say) sees connections to lab addresses made before anyone is in the client
# namespace.
_CHECKER: Final = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
pending = []
for spec in sys.argv[2:]:
    host, _, port = spec.rpartition(":")
    pending.append((host, int(port)))
while pending:
    still = []
    for endpoint in pending:
        try:
            socket.create_connection(endpoint, timeout=0.25).close()
        except OSError:
            still.append(endpoint)
    pending = still
    if pending and time.monotonic() > deadline:
        print("not listening: " + " ".join(f"{h}:{p}" for h, p in pending), flush=True)
        sys.exit(1)
    if pending:
        time.sleep(0.02)
print("all listening", flush=True)
"""


def wait_ready(
    servers: Sequence[Server], *, netns: str, timeout: float, log_file: Path
) -> None:
    """Wait until every server accepts TCP on each of its endpoints, from inside ``netns``.

    ``LabError`` as soon as a server exits (naming its log), or when the deadline passes
    (naming what is not listening). ``log_file`` receives the checker's output.
    """
    owners = {f"{a}:{p}": s for s in servers for (a, p) in s.endpoints}
    checker = spawn(
        "readiness check",
        [sys.executable, "-I", "-c", _CHECKER, str(timeout), *owners],
        netns=netns,
        log_file=log_file,
        endpoints=(),
    )
    deadline = time.monotonic() + timeout + 10  # the checker's own deadline comes first
    try:
        while True:
            for server in servers:
                code = server.poll()
                if code is not None:
                    raise LabError(
                        f"{server.name} exited with status {code} while starting; "
                        f"see {server.log_file}: {log_tail(server.log_file)}"
                    )
            code = checker.poll()
            if code == 0:
                return
            if code is not None or time.monotonic() > deadline:
                raise _not_listening(log_file, owners, timeout)
            time.sleep(_POLL_INTERVAL_S)
    finally:
        if checker.poll() is None:
            _signal(checker.pid, signal.SIGKILL)
            reaped_by = time.monotonic() + _TERM_GRACE_S
            while checker.poll() is None and time.monotonic() < reaped_by:
                time.sleep(_POLL_INTERVAL_S)


def _not_listening(log_file: Path, owners: Mapping[str, Server], timeout: float) -> LabError:
    last = log_tail(log_file, 1)
    endpoints = last.removeprefix("not listening: ").split() if "not listening" in last else []
    named = sorted({f"{owners[e].name} on {e}" for e in endpoints if e in owners})
    shown = ", ".join(named[:4]) + (" ..." if len(named) > 4 else "")
    first = owners[endpoints[0]] if endpoints and endpoints[0] in owners else None
    where = f"; see {first.log_file}: {log_tail(first.log_file)}" if first else f"; {last}"
    return LabError(f"not listening after {timeout:.0f}s: {shown or 'unknown'}{where}")


def log_tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of ``path``, joined with `` | `` (for one-line errors)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) if tail else "(log is empty)"


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), or ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state): field 22 is fields[19].
    return int(fields[19])


def alive(record: ProcessRecord) -> bool:
    """Whether the process ``record`` describes still runs (same PID *and* start time)."""
    _reap(record.pid)
    start = process_start_time(record.pid)
    if start is None or (record.start_time and start != record.start_time):
        return False
    try:
        with open(f"/proc/{record.pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop(records: Sequence[ProcessRecord], *, grace: float = _TERM_GRACE_S) -> list[str]:
    """Send each recorded process its stop signal (SIGTERM unless it was started with
    another), wait up to ``grace`` seconds, SIGKILL what remains.

    Only processes whose PID *and* start time match are signalled, so a PID the kernel has
    handed to someone else since is left alone. Returns the names of those that needed SIGKILL.
    """
    running = [r for r in records if alive(r)]
    for record in running:
        _signal(record.pid, signal.Signals(record.stop_signal))
    deadline = time.monotonic() + grace
    while running and time.monotonic() < deadline:
        running = [r for r in running if alive(r)]
        if running:
            time.sleep(_POLL_INTERVAL_S)
    for record in running:
        _signal(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    remaining = list(running)
    while remaining and time.monotonic() < deadline:
        remaining = [r for r in remaining if alive(r)]
        if remaining:
            time.sleep(_POLL_INTERVAL_S)
    return [r.name for r in running]


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (else it would stay a zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
