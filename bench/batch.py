"""Batch benchmark: ``rca batch`` over N generated domains (default 1,000) served by the lab.

The lab holds at most 250 scenarios, so the domains are not scenarios: they are extra
zones, ``bench0000.test`` ... (each a registrable domain of its own), with an MX on an
existing lab host (most on ``mx.healthy.test``, some on ``mx.cert-expiring.test`` and
``mx.expired-cert.test``), a ``_submission._tcp`` SRV record on that provider's mail host,
SPF and DMARC. A second NSD, started here inside the lab's server namespace on the lab
resolver's address and port 5353, serves those zones plus copies of the lab's own (so MX
hosts, PTR records and the CA all resolve); nothing in the lab changes. By default all
domains share three providers: the batch's per-host bound is exercised the way 1,000
customers of one provider would exercise it.

``--providers N`` spreads the domains over N mail providers instead, as a real batch of
customers is spread: provider ``k`` is a zone of its own, ``provider<k>.test``, whose
``mx`` and ``mail`` hosts have addresses of the lab's mail servers (weighted as above). So
each provider is a distinct name to resolve, to bound per host and to check once for the
batch (shared results are keyed by host name); the servers answering are the lab's.
Their certificates name the lab hosts, so the TLS check of every provider also reports a
name mismatch: a certificate check that fails does the same work as one that passes.

It runs ``rca batch`` (``--tests dns,ports,tls`` by default) as a separate process, from
the lab's client namespace, and reports its wall time and peak memory (the batch process
plus its report writer, sampled every 0.1 s), then how the targets ended. Targets: 1,000
domains in <= 60 s and <= 300 MB on 2 cores. The result is appended to bench/RESULTS.md.

Needs root (the lab). Run: ``python bench/batch.py [--domains 1000] [--providers 100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import append_rows, machine, stamp

from analyzer.lab import Lab, LabInfo
from analyzer.lab.process import spawn, stop, wait_ready

LAB_NAME = "rca-lab-batchbench"
LAB_DIR = Path("/run/rca-lab-batchbench")
#: Where the generated domains' mail goes: (scenario, share of the domains).
MX_MIX = (("healthy", 8), ("cert-expiring", 1), ("expired-cert", 1))
BENCH_PORT = 5353


def zone_text(domain: str, mx_host: str, serial: int) -> str:
    """One generated domain: SOA, NS, MX to a lab host, SPF and DMARC."""
    return (
        f"$ORIGIN {domain}.\n$TTL 300\n"
        f"@ IN SOA ns.lab.test. hostmaster.lab.test. {serial} 3600 600 86400 300\n"
        "@ IN NS ns.lab.test.\n"
        f"@ IN MX 10 {mx_host}.\n"
        # RFC 6186: submission on the same provider's mail host (a STARTTLS endpoint).
        f"_submission._tcp IN SRV 0 1 587 {mx_host.replace('mx.', 'mail.', 1)}.\n"
        '@ IN TXT "v=spf1 mx -all"\n'
        f'_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"\n'
    )


def provider_zone_text(provider: str, scenario_hosts: dict[str, tuple[str, str]],
                       serial: int) -> str:
    """One mail provider: ``mx`` and ``mail`` hosts on the addresses of a lab scenario's."""
    lines = [
        f"$ORIGIN {provider}.\n$TTL 300\n",
        f"@ IN SOA ns.lab.test. hostmaster.lab.test. {serial} 3600 600 86400 300\n",
        "@ IN NS ns.lab.test.\n",
    ]
    for role, (v4, v6) in scenario_hosts.items():
        lines.append(f"{role} IN A {v4}\n{role} IN AAAA {v6}\n")
    return "".join(lines)


def spread(count: int, providers: int, info: LabInfo) -> tuple[list[tuple[str, str]],
                                                                 dict[str, str]]:
    """The generated domains (name, MX host) and the provider zones (origin: text).

    Without providers, every domain's MX is one of the lab's own hosts (MX_MIX)."""
    mix = [s for s, weight in MX_MIX for _ in range(weight)]
    if not providers:
        hosts = [f"mx.{s}.test" for s in mix]
        return [(f"bench{i:04d}.test", hosts[i % len(hosts)]) for i in range(count)], {}
    serial = int(time.time())
    zones = {}
    for k in range(providers):
        scenario = info.scenario(mix[k % len(mix)])
        addresses = {role: (scenario.host(role).ipv4, scenario.host(role).ipv6)
                     for role in ("mx", "mail")}
        zones[f"provider{k:03d}.test"] = provider_zone_text(
            f"provider{k:03d}.test", addresses, serial)
    domains = [(f"bench{i:04d}.test", f"mx.provider{i % providers:03d}.test")
               for i in range(count)]
    return domains, zones


def lab_zones(info: LabInfo) -> list[tuple[str, Path]]:
    """(origin, zone file) of every zone the lab's own NSD serves."""
    conf = (info.directory / "dns" / "nsd.conf").read_text(encoding="ascii")
    zones, name = [], None
    for line in conf.splitlines():
        line = line.strip()
        if line.startswith("name:"):
            name = line.split('"')[1]
        elif line.startswith("zonefile:") and name is not None:
            zones.append((name, info.directory / "dns" / "zones" / line.split('"')[1]))
            name = None
    return zones


def write_dns(work: Path, info: LabInfo, domains: list[tuple[str, str]],
              extra: dict[str, str]) -> Path:
    """The bench NSD's folder: its zones (the domains' and ``extra``) and nsd.conf; returns
    the config file."""
    zones_dir = work / "zones"
    zones_dir.mkdir(parents=True)
    serial = int(time.time())
    entries = lab_zones(info)
    for origin, text in extra.items():
        path = zones_dir / f"{origin}.zone"
        path.write_text(text, encoding="ascii")
        entries.append((origin, path))
    for domain, mx in domains:
        path = zones_dir / f"{domain}.zone"
        path.write_text(zone_text(domain, mx, serial), encoding="ascii")
        entries.append((domain, path))
    lines = [
        "server:",
        f"    ip-address: {info.resolver}@{BENCH_PORT}",
        "    do-ip4: yes", "    do-ip6: no",
        '    username: ""', '    chroot: ""',
        f'    zonesdir: "{zones_dir}"',
        f'    pidfile: "{work / "nsd.pid"}"', f'    logfile: "{work / "nsd.log"}"',
        '    database: ""', f'    zonelistfile: "{work / "zone.list"}"',
        f'    xfrdfile: "{work / "xfrd.state"}"', f'    xfrdir: "{work}"',
        "    server-count: 1", "    verbosity: 1", "    tcp-count: 256", "    reuseport: no",
        "remote-control:", "    control-enable: no",
    ]
    for origin, path in entries:
        lines += ["zone:", f'    name: "{origin}"', f'    zonefile: "{path}"']
    conf = work / "nsd.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="ascii")
    return conf


def write_batch(work: Path, info: LabInfo, domains: list[tuple[str, str]], tests: str) -> Path:
    """The batch file: every generated domain, with the lab's resolver and CA."""
    path = work / "batch.toml"
    targets = ",\n".join(f'  "{d}"' for d, _ in domains)
    path.write_text(
        # Top-level keys first: in TOML, a key after [defaults] would belong to it.
        f"targets = [\n{targets},\n]\n\n"
        "[defaults]\n"
        f"tests = {json.dumps(tests.split(','))}\n"
        f'resolver = ["{info.resolver}:{BENCH_PORT}"]\n'
        f'ca_file = "{info.ca_file}"\n'
        "timeout = 60\n",
        encoding="utf-8",
    )
    return path


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and every descendant."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        todo += [int(c) for c in children]
    return total


def run_batch(batch: Path, out: Path, info: LabInfo, args: argparse.Namespace) -> dict[str, float]:
    profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
    cmd = [sys.executable, *profile, "-m", "analyzer", "batch", str(batch), "--out", str(out),
           "--netns", info.client_netns, "--quiet", "--writers", str(args.writers)]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    if args.per_host:
        cmd += ["--per-host", str(args.per_host)]
    if args.processes:
        cmd += ["--processes", str(args.processes)]
    if args.no_share:
        cmd += ["--no-share"]
    read0 = Path("/proc/stat").read_text().split()[1:8]
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    wall = time.monotonic() - t0
    stdout, stderr = proc.communicate()
    read1 = Path("/proc/stat").read_text().split()[1:8]
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    busy = sum(int(b) - int(a) for a, b in zip(read0, read1, strict=True)) - (
        int(read1[3]) - int(read0[3]) + int(read1[4]) - int(read0[4])
    )
    print(stdout.strip().splitlines()[-1] if stdout.strip() else stderr.strip())
    return {"wall": wall, "peak": peak, "exit": proc.returncode, "cpu": cpu,
            "machine_busy": busy / 100 / (os.cpu_count() or 1) / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=0,
                        help="spread the domains over this many mail providers (default: the "
                        "lab's three mail hosts)")
    parser.add_argument("--concurrency", type=int, help="rca batch --concurrency")
    parser.add_argument("--per-host", type=int, help="rca batch --per-host")
    parser.add_argument("--processes", type=int, help="rca batch --processes")
    parser.add_argument("--no-share", action="store_true",
                        help="rca batch --no-share: check shared endpoints for every domain")
    parser.add_argument("--profile", type=Path,
                        help="write a cProfile of the batch process here (use with --writers 0)")
    parser.add_argument("--writers", type=int, default=1, help="rca batch --writers")
    parser.add_argument("--latency", type=int, default=0, help="lab latency, ms one way")
    parser.add_argument("--tests", default="dns,ports,tls")
    parser.add_argument("--keep", action="store_true", help="keep the lab and the output")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--note", default="", help="conditions, recorded with the results")
    parser.add_argument("--lab-name", default=LAB_NAME)
    parser.add_argument("--lab-dir", type=Path, default=LAB_DIR)
    args = parser.parse_args()

    info = Lab(directory=args.lab_dir, scenarios=[s for s, _ in MX_MIX], name=args.lab_name,
               latency_ms=args.latency).up()
    work = Path(tempfile.mkdtemp(prefix="rca-bench-batch-", dir="/run"))
    nsd = None
    try:
        domains, provider_zones = spread(args.domains, args.providers, info)
        conf = write_dns(work / "dns", info, domains, provider_zones)
        nsd = spawn("bench-nsd", ["nsd", "-d", "-c", str(conf)], netns=info.server_netns,
                    log_file=work / "dns" / "nsd.out",
                    endpoints=[(info.resolver, BENCH_PORT)])
        wait_ready([nsd], netns=info.server_netns, timeout=60,
                   log_file=work / "dns" / "ready.log")
        batch = write_batch(work, info, domains, args.tests)
        out = work / "out"
        measured = run_batch(batch, out, info, args)
        summary = json.loads((out / "index.json").read_text(encoding="utf-8"))
    finally:
        if nsd is not None:
            stop([nsd.record()])
        if not args.keep:
            Lab.down(args.lab_dir, name=args.lab_name)
            shutil.rmtree(work, ignore_errors=True)
    codes = [t["exit_code"] for t in summary["targets"]]
    by_code = {c: codes.count(c) for c in (0, 1, 2, 3)}
    wall, peak_mb = measured["wall"], measured["peak"] / 2**20
    rate = len(codes) / wall if wall else 0.0
    concurrency = f"{args.concurrency or 'default'}{', no share' if args.no_share else ''}"
    spread_over = f"{args.providers} providers" if args.providers else "3 mail hosts"
    processes = args.processes or 1
    print(f"{len(codes)} domains over {spread_over} ({args.tests}), {processes} process(es) x "
          f"concurrency "
          f"{concurrency}, latency {args.latency} ms: wall {wall:.1f} s "
          f"({rate:.1f} domains/s), peak RSS {peak_mb:.0f} MB, rca CPU {measured['cpu']:.1f} s "
          f"({measured['cpu'] / max(1, len(codes)) * 1000:.0f} ms/domain), machine busy "
          f"{measured['machine_busy']:.0%}; ok {by_code[0]}, warn {by_code[1]}, "
          f"fail {by_code[2]}, unknown {by_code[3]}; exit {measured['exit']}")
    print("targets: <= 60 s and <= 300 MB for 1,000 domains")
    if args.keep:
        print(f"output kept in {work}; lab {args.lab_name} still up "
              f"(rca lab down --dir {args.lab_dir})")
    if not args.no_record:
        append_rows(
            "## bench/batch.py (generated domains, rca batch)",
            "| date | machine | domains | tests | latency | processes x concurrency | wall | "
            "domains/s | rca CPU/domain | peak RSS | ok/warn/fail/unknown |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|",
            [f"| {stamp()} | {machine(args.note)} | {len(codes)} over {spread_over} | "
             f"{args.tests} | {args.latency} ms | {processes} x {concurrency} | {wall:.1f} s | "
             f"{rate:.1f} | {measured['cpu'] / max(1, len(codes)) * 1000:.0f} ms | "
             f"{peak_mb:.0f} MB | {by_code[0]}/{by_code[1]}/{by_code[2]}/{by_code[3]} |"],
        )
    return 0 if wall <= 60 and peak_mb <= 300 and len(codes) >= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
