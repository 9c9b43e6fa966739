"""TLS check of one lab endpoint: rca beside sslyze --certinfo and testssl.sh.

Each tool runs as a user runs it (a fresh process, from the lab's client namespace) against
``mail.healthy.test:993``; the median wall time of a few runs is printed with the ratio to
rca's. sslyze and testssl.sh are NOT project dependencies: install them for the benchmark
only (``python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install sslyze``;
``apt-get install testssl.sh``); a missing tool is reported and skipped. Needs root.

Run: ``python bench/tls_compare.py [--runs 3]``. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from analyzer.lab import Lab

LAB_DIR = Path("/run/rca-lab-tlsbench")
NAME = "rca-lab-tlsbench"
ENDPOINT = "mail.healthy.test:993"
RESULTS = Path(__file__).with_name("RESULTS.md")


def timed(argv: list[str], runs: int) -> tuple[float, int]:
    times = []
    code = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, timeout=300, check=False)
        times.append(time.perf_counter() - t0)
        code = done.returncode
    return statistics.median(times), code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sslyze", default="/tmp/bench-venv/bin/sslyze")  # noqa: S108
    args = parser.parse_args()
    info = Lab(directory=LAB_DIR, scenarios=["healthy"], name=NAME).up()
    ns = ["ip", "netns", "exec", info.client_netns]
    tools: dict[str, list[str]] = {
        "rca (tls probe)": [*ns, sys.executable, "-m", "analyzer", "check", ENDPOINT,
                            "--tests", "tls", "--resolver", info.resolver,
                            "--ca-file", str(info.ca_file), "--quiet"],
    }
    if Path(args.sslyze).exists():
        tools["sslyze --certinfo"] = [*ns, args.sslyze, "--certinfo", ENDPOINT]
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if testssl:
        tools["testssl.sh -S"] = [*ns, testssl, "--quiet", "--color", "0", "-S",
                                  "--add-ca", str(info.ca_file), ENDPOINT]
    try:
        results = {name: timed(argv, args.runs) for name, argv in tools.items()}
    finally:
        Lab.down(LAB_DIR, name=NAME)
    base = results["rca (tls probe)"][0]
    lines = []
    for name, (wall, code) in results.items():
        lines.append(f"| {datetime.now(UTC).date()} | {platform.machine()}, {os.cpu_count()} "
                     f"cores | {name} | {wall:.2f} s | {wall / base:.2f} | exit {code} |")
        print(f"{name:<20} {wall:6.2f} s  ({wall / base:.2f} x rca)  exit {code}")
    for missing in ("sslyze --certinfo", "testssl.sh -S"):
        if missing not in results:
            print(f"{missing}: not installed (see the module docstring)")
    with RESULTS.open("a") as fh:
        fh.write(f"\n## bench/tls_compare.py ({ENDPOINT}, median of {args.runs})\n\n"
                 "| date | machine | tool | wall | ratio to rca | exit |\n"
                 "|---|---|---|---|---|---|\n")
        fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
