"""Full-check benchmark: the healthy lab scenario with injected latency.

Starts the lab (``--latency`` ms one way, default 25), runs a full ``rca check`` of
``alice@healthy.test`` from the lab's client namespace, and prints:

- wall: the run's elapsed time;
- sum: the sum of every probe's duration (what a sequential tool would cost);
- critical path: the longest chain of dependent probes (a probe's duration plus the
  longest path of the probes it waits for), i.e. the floor a concurrent run can reach.

Target: wall <= 1.3 x critical path. The result is appended to bench/RESULTS.md with the
machine and date. Needs root (the lab). Run: ``python bench/full_check.py [--latency MS]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from analyzer.api import check
from analyzer.context import Credentials, Nameserver, RunOptions
from analyzer.lab import Lab, enter_netns
from analyzer.model import Report
from analyzer.pipeline import plan
from analyzer.registry import probe_index
from analyzer.targets import parse_target

LAB_DIR = Path("/run/rca-lab-bench")
RESULTS = Path(__file__).with_name("RESULTS.md")


def probe_spans(report: Report) -> dict[str, tuple[float, float]]:
    """Per probe: (start, end) in ms since the run started, over all its results."""
    spans: dict[str, tuple[float, float]] = {}
    t0 = report.started
    for r in report.results:
        start = (r.started - t0).total_seconds() * 1000
        end = start + r.elapsed_ms
        lo, hi = spans.get(r.probe, (start, end))
        spans[r.probe] = (min(lo, start), max(hi, end))
    return spans


def critical_path(report: Report) -> float:
    """Longest chain of dependent probe durations, in ms."""
    probes = {p.id: p for p in plan(probe_index())}
    spans = probe_spans(report)
    duration = {pid: end - start for pid, (start, end) in spans.items()}
    providers: dict[str, list[str]] = {}
    for p in probes.values():
        for fact in p.provides:
            providers.setdefault(fact, []).append(p.id)
    memo: dict[str, float] = {}

    def cp(pid: str) -> float:
        if pid not in memo:
            deps = [d for f in (*probes[pid].needs, *probes[pid].uses)
                    for d in providers.get(f, []) if d in duration]
            memo[pid] = duration.get(pid, 0.0) + max((cp(d) for d in deps), default=0.0)
        return memo[pid]

    return max((cp(pid) for pid in duration if pid in probes), default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=25, help="one-way latency in ms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    info = Lab(directory=LAB_DIR, scenarios=["healthy"], latency_ms=args.latency,
               name="rca-lab-bench").up()
    try:
        enter_netns(info.client_netns)
        user = info.scenario("healthy").users[0]
        options = RunOptions(
            nameservers=(Nameserver(info.resolver),), ca_file=Path(info.ca_file),
            credentials=Credentials(user[0], password=user[1]), timeout=60,
        )
        rows = []
        for _ in range(args.runs):
            report = asyncio.run(check(parse_target(user[0]), options))
            spans = probe_spans(report)
            total = sum(end - start for start, end in spans.values())
            rows.append((report.elapsed_ms, total, critical_path(report)))
    finally:
        Lab.down(LAB_DIR, name="rca-lab-bench")
    wall, total, cp = sorted(rows)[len(rows) // 2]  # the median run by wall time
    ratio = wall / cp if cp else float("inf")
    line = (f"| {datetime.now(UTC).date()} | {platform.machine()}, {os.cpu_count()} cores | "
            f"{args.latency} ms ({info.latency_method}) | {wall / 1000:.2f} s | "
            f"{total / 1000:.2f} s | {cp / 1000:.2f} s | {ratio:.2f} |")
    print(f"latency {args.latency} ms one way ({info.latency_method}); median of {args.runs}:")
    print(f"  wall {wall / 1000:.2f} s, sum of probes {total / 1000:.2f} s, "
          f"critical path {cp / 1000:.2f} s, wall/critical = {ratio:.2f} (target <= 1.3)")
    if not args.no_record:
        if not RESULTS.exists():
            RESULTS.write_text(
                "# Benchmark results\n\n## bench/full_check.py (healthy scenario)\n\n"
                "| date | machine | latency | wall | sum of probes | critical path | "
                "wall/critical |\n|---|---|---|---|---|---|---|\n"
            )
        with RESULTS.open("a") as fh:
            fh.write(line + "\n")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
