"""Full-check benchmark: the healthy lab scenario with injected latency.

Starts the lab (``--latency`` ms one way, default 25), runs a full ``rca check`` of
``alice@healthy.test`` from the lab's client namespace, and prints:

- wall: the run's elapsed time;
- sum: the sum of every probe's duration (what a sequential tool would cost);
- critical path: the longest chain of dependent probes (a probe's duration plus the
  longest path of the probes it waits for). Probes now start as soon as the facts they wait
  for are published, often before their providers end, so this is an upper bound and
  wall/critical can fall below 1; sequential steps inside a probe inflate it too;
- network floor: the longest chain of dependent round trips the run waits through,
  measured rather than modelled: the same runs again with no added latency (the lab
  restarted at 0 ms), and ``(wall(L) - wall(0)) / 2L`` round trips of ``2L`` each. What is
  left, ``wall(0)``, is the run's own work (CPU, local I/O). ``--no-floor`` skips it.

``--timeline`` also prints, for the median run, every result's start and end and its
top-level steps (when each started, how long it took), ordered by end: the last lines
show the chain the run waited for.

Targets: wall <= 1.3 x critical path; at 25 ms, wall <= 1.2 s. The result is appended to
bench/RESULTS.md with the machine, the date and the conditions given by ``--note``.
Needs root (the lab). Run: ``python bench/full_check.py [--latency MS] [--note TEXT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from benchlib import append_rows, machine, stamp

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Report
from analyzer.core.pipeline import plan, waits_for
from analyzer.core.registry import probe_index
from analyzer.core.targets import parse_target
from analyzer.lab import Lab, enter_netns

LAB_DIR = Path("/run/rca-lab-bench")
LAB_NAME = "rca-lab-bench"


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
            deps = [d for f in waits_for(probes[pid])
                    for d in providers.get(f, []) if d in duration]
            memo[pid] = duration.get(pid, 0.0) + max((cp(d) for d in deps), default=0.0)
        return memo[pid]

    return max((cp(pid) for pid in duration if pid in probes), default=0.0)


def timeline(report: Report) -> list[str]:
    """Every result (start -> end, in ms since the run started) with its top-level steps
    (start, +duration), ordered by the result's end."""
    t0 = report.started
    rows = []
    for r in report.results:
        start = (r.started - t0).total_seconds() * 1000
        lines = [f"{start:7.0f} -> {start + r.elapsed_ms:7.0f}  {r.probe:18} {r.subject[:70]}"]
        lines += [f"    {s.started_ms:7.0f} +{s.elapsed_ms:6.0f}  {s.title[:90]}" for s in r.steps]
        rows.append((start + r.elapsed_ms, lines))
    return [line for _, lines in sorted(rows, key=lambda row: row[0]) for line in lines]


def measure(args: argparse.Namespace, latency: int) -> tuple[list[tuple[float, float, float]],
                                                              str]:
    """``args.runs`` full checks of the healthy scenario at ``latency`` ms one way: per run
    (wall, sum of probes, critical path) in ms; and how the latency was made. With
    ``args.timeline``, prints the timeline of the median run."""
    info = Lab(directory=args.lab_dir, scenarios=["healthy"], latency_ms=latency,
               name=args.lab_name).up()
    rows = []
    try:
        enter_netns(info.client_netns)
        user = info.scenario("healthy").users[0]
        options = RunOptions(
            nameservers=(Nameserver(info.resolver),), ca_file=Path(info.ca_file),
            credentials=Credentials(user[0], password=user[1]), timeout=60,
        )
        reports = []
        for _ in range(args.runs):
            report = asyncio.run(check(parse_target(user[0]), options))
            spans = probe_spans(report)
            total = sum(end - start for start, end in spans.values())
            rows.append((report.elapsed_ms, total, critical_path(report)))
            reports.append(report)
        if args.timeline and latency == args.latency:
            median = sorted(reports, key=lambda r: r.elapsed_ms)[len(reports) // 2]
            print(f"timeline of the median run at {latency} ms "
                  f"(wall {median.elapsed_ms / 1000:.2f} s):")  # fmt: skip
            print("\n".join(timeline(median)))
    finally:
        Lab.down(args.lab_dir, name=args.lab_name)
    return rows, info.latency_method


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=25, help="one-way latency in ms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the runs without latency that measure the network floor")
    parser.add_argument("--note", default="", help="conditions, recorded with the results")
    parser.add_argument("--lab-name", default=LAB_NAME)
    parser.add_argument("--lab-dir", type=Path, default=LAB_DIR)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--timeline", action="store_true",
                        help="print every result and step of the median run, by end time")
    args = parser.parse_args()
    rows, method = measure(args, args.latency)
    wall, total, cp = sorted(rows)[len(rows) // 2]  # the median run by wall time
    ratio = wall / cp if cp else float("inf")
    print(f"latency {args.latency} ms one way ({method}); median of {args.runs}:")
    print(f"  wall {wall / 1000:.2f} s, sum of probes {total / 1000:.2f} s, "
          f"critical path {cp / 1000:.2f} s, wall/critical = {ratio:.2f} (target <= 1.3)")
    floor = "not measured"
    if not args.no_floor and args.latency > 0:
        local = statistics.median(r[0] for r in measure(args, 0)[0])
        round_trip = 2 * args.latency
        trips = max(0.0, wall - local) / round_trip
        floor = f"{trips:.0f} round trips = {trips * round_trip / 1000:.2f} s"
        print(f"  network floor {floor} ({round_trip} ms each); "
              f"the rest, wall at 0 ms: {local / 1000:.2f} s")
        floor += f"; wall at 0 ms {local / 1000:.2f} s"
    if not args.no_record:
        append_rows(
            "## bench/full_check.py (healthy scenario)",
            "| date | machine | latency | wall | sum of probes | critical path | "
            "wall/critical |\n|---|---|---|---|---|---|---|",
            [f"| {stamp()} | {machine(args.note)} | {args.latency} ms ({method}) | "
             f"{wall / 1000:.2f} s | {total / 1000:.2f} s | {cp / 1000:.2f} s | {ratio:.2f}; "
             f"network floor {floor} |"],
        )
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
