"""rca beside its peers, run alternately on the same lab targets: the figures of record.

Three comparisons, each tool a fresh process as a user runs it, from the lab's client
namespace (``ip netns exec``: its resolv.conf names the lab DNS, and it has no route out of
the lab, so nothing reaches the internet):

- **full**: ``rca check alice@healthy.test`` (every default probe, with the user's password)
  beside ``sslyze --certinfo`` of *one* endpoint (``mail.healthy.test:993``); goal <= 0.5;
- **dns+mailauth**: ``rca check healthy.test --tests dns,mailauth`` beside ``checkdmarc
  healthy.test`` asking the lab resolver only (``--nameserver``; ``--skip-tls``: rca's
  DNS checks do not connect to the MX hosts either); goal <= 0.5;
- **tls**: ``rca check mail.healthy.test:993 --tests tls`` beside the same ``sslyze``.

rca and the peer alternate run by run (rca, peer, rca, peer...), so a change in the
machine's load hits both alike; the medians of wall time and of CPU time (the process and
its children) are printed with the ratio rca ÷ peer, and appended to bench/RESULTS.md with
the conditions given by ``--note`` (say when the machine was busy with other work).

sslyze and checkdmarc are *not* project dependencies: they are installed into a bench-only
virtual environment (``--venv``, created on first use with ``pip install sslyze
checkdmarc``). rca runs as users install it (README "Install", as
scripts/check-user-install.sh does): a wheel of this checkout, built afresh at each
bench run, installed with requirements/runtime.lock into a virtual environment of its own
(``--rca-venv``), run as its ``rca`` command. So the figures exclude what a development
checkout adds (the editable install's import finder) and include the bytecode pip compiles
at install time.

``--latency MS`` adds that one-way delay to the lab's links (netem), as ``bench/full_check.py``
does: the goals are set at 0 ms, where both tools are bound by their CPU; at a real
resolver's and server's distance the round trips each tool waits through one after another
decide instead, and the ratio is recorded with the latency in its conditions.

Needs root (the lab). Run:
``python bench/peers.py [--runs 5] [--latency MS] [--note "quiet machine"]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import append_rows, machine, stamp

from analyzer.lab import Lab, LabInfo

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("sslyze", "checkdmarc")
ENDPOINT = "mail.healthy.test:993"
DOMAIN = "healthy.test"
GOALS = {"full": 0.5, "dns+mailauth": 0.5}


@dataclass(frozen=True, slots=True)
class Pair:
    """One comparison: rca's command line beside the peer's."""

    name: str
    rca: list[str]
    peer_name: str
    peer: list[str]


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float
    cpu: float
    exit: int


def ensure_venv(venv: Path) -> Path:
    """The bench-only environment's python, with sslyze and checkdmarc installed."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    have = subprocess.run(
        [str(python), "-c", "import sslyze, checkdmarc"], capture_output=True, check=False
    )
    if have.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEERS], check=True)
    return python


def install_rca(venv: Path) -> Path:
    """The ``rca`` command of ``venv``, freshly installed from a wheel of this checkout with
    the locked runtime dependencies, as a user installs it."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--require-hashes", "--no-deps", "-r",
                    str(ROOT / "requirements" / "runtime.lock")], check=True)
    with tempfile.TemporaryDirectory(prefix="rca-bench-wheel-") as dist:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--disable-pip-version-check", "--no-build-isolation", "-w", dist,
                        str(ROOT)], check=True)
        wheel = next(Path(dist).glob("rca-*.whl"))
        subprocess.run([*pip, "install", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    return venv / "bin" / "rca"


def versions(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c",
         "import importlib.metadata as m; print(' '.join(f'{p} {m.version(p)}' for p in "
         f"{PEERS!r}))"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def timed(argv: list[str], env: dict[str, str]) -> Timing:
    """Wall and CPU time (user + system, the process and its children) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=300, check=False, env=env,
                          stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Timing(wall, cpu, done.returncode)


def pairs(info: LabInfo, python: Path, rca_command: Path, password_file: Path) -> list[Pair]:
    ns = ["ip", "netns", "exec", info.client_netns]
    bindir = python.parent
    rca = [*ns, str(rca_command), "check"]
    lab = ["--resolver", info.resolver, "--ca-file", str(info.ca_file), "--quiet"]
    user = info.scenario("healthy").users[0][0]
    sslyze = [*ns, str(bindir / "sslyze"), "--certinfo", ENDPOINT]
    return [
        Pair("full", [*rca, user, *lab, "--password-file", str(password_file)],
             "sslyze --certinfo (one endpoint)", sslyze),
        Pair("dns+mailauth", [*rca, DOMAIN, "--tests", "dns,mailauth", *lab],
             "checkdmarc --skip-tls",
             # The domain first: --nameserver takes every word that follows it.
             [*ns, str(bindir / "checkdmarc"), DOMAIN, "--skip-tls",
              "--nameserver", info.resolver]),
        Pair("tls", [*rca, ENDPOINT, "--tests", "tls", *lab],
             "sslyze --certinfo", sslyze),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each tool (alternating)")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/rca-bench-peers"),  # noqa: S108
                        help="the bench-only virtual environment for the peers")
    parser.add_argument("--rca-venv", type=Path, default=Path("/tmp/rca-bench-rca"),  # noqa: S108
                        help="the bench-only virtual environment rca is installed into")
    parser.add_argument("--lab-name", default="rca-lab-peers")
    parser.add_argument("--lab-dir", type=Path, default=Path("/run/rca-lab-peers"))
    parser.add_argument("--note", default="", help="conditions, recorded with the results")
    parser.add_argument("--latency", type=int, default=0, help="lab latency, ms one way")
    parser.add_argument("--only", action="append", help="run only this comparison (repeatable)")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()

    python = ensure_venv(args.venv)
    peer_versions = versions(python)
    rca_command = install_rca(args.rca_venv)
    # rca as installed: bytecode cached (pip compiles it at install time), nothing from this
    # checkout on the path.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "RCA_PASSWORD", "PYTHONPATH")}
    info = Lab(directory=args.lab_dir, scenarios=["healthy"], name=args.lab_name,
               latency_ms=args.latency).up()
    if args.latency:
        args.note = f"{args.latency} ms one-way latency; {args.note}".rstrip("; ")
    results: list[tuple[Pair, list[Timing], list[Timing]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="rca-bench-peers-") as tmp:
            password_file = Path(tmp) / "password"
            password_file.write_text(info.scenario("healthy").users[0][1] + "\n")
            password_file.chmod(0o600)
            for pair in pairs(info, python, rca_command, password_file):
                if args.only and pair.name not in args.only:
                    continue
                timed(pair.rca, env)  # warm-up: caches rca's bytecode and the file cache
                timed(pair.peer, env)
                ours: list[Timing] = []
                theirs: list[Timing] = []
                for _ in range(args.runs):
                    ours.append(timed(pair.rca, env))
                    theirs.append(timed(pair.peer, env))
                results.append((pair, ours, theirs))
    finally:
        Lab.down(args.lab_dir, name=args.lab_name)

    def med(ts: list[Timing], field: str) -> float:
        return statistics.median(getattr(t, field) for t in ts)

    lines = []
    failed = False
    print(f"median of {args.runs} alternating runs; {peer_versions}; "
          f"{args.note or 'conditions not stated'}")
    for pair, ours, theirs in results:
        ratio = med(ours, "wall") / med(theirs, "wall")
        goal = GOALS.get(pair.name)
        verdict = "" if goal is None else (" ✓" if ratio <= goal else f" (goal ≤ {goal})")
        failed |= goal is not None and ratio > goal
        exits = f"{ours[-1].exit}/{theirs[-1].exit}"
        print(f"{pair.name:<13} rca {med(ours, 'wall'):.2f} s (CPU {med(ours, 'cpu'):.2f} s)  "
              f"{pair.peer_name} {med(theirs, 'wall'):.2f} s (CPU {med(theirs, 'cpu'):.2f} s)  "
              f"ratio {ratio:.2f}{verdict}  exit {exits}")
        lines.append(
            f"| {stamp()} | {machine(args.note)} | {args.runs} | {pair.name} | "
            f"{med(ours, 'wall'):.2f} s | {med(ours, 'cpu'):.2f} s | {pair.peer_name} | "
            f"{med(theirs, 'wall'):.2f} s | {med(theirs, 'cpu'):.2f} s | {ratio:.2f}{verdict} | "
            f"{exits} |"
        )
    if not args.no_record and lines:
        append_rows(
            "## bench/peers.py (rca beside its peers, alternating runs, medians)",
            "| date | machine; conditions | runs | comparison | rca wall | rca CPU | peer | "
            "peer wall | peer CPU | ratio (wall) | exit rca/peer |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|",
            [*lines, f"| | peers: {peer_versions} | | | | | | | | | |"],
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
