"""``rca lab up|down|status`` and ``rca demo``: what the main CLI calls, and what they print.

Each function takes the argparse ``Namespace`` of ``analyzer.cli`` (``.dir``; ``up`` and
``demo`` also ``.scenario`` and ``.latency``) and returns an exit code. Problems the user can
fix (not root, a package missing, a server that would not start) raise ``LabError`` with a
one-line message; the main CLI prints it and exits 3.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Final, TextIO

from analyzer.lab.errors import LabError
from analyzer.lab.lab import DEFAULT_DIRECTORY, Lab, process_status
from analyzer.lab.netns import SERVER_NETNS
from analyzer.lab.state import LabInfo

__all__ = ["demo", "describe", "lab_down", "lab_status", "lab_up", "running_lab"]


def _directory(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "dir", None) or DEFAULT_DIRECTORY)


def _name(args: argparse.Namespace) -> str | None:
    return getattr(args, "name", None)


def running_lab(directory: Path) -> LabInfo:
    """The lab running from ``directory`` (``rca web --lab``); :class:`LabError` if none."""
    return LabInfo.load(directory)


def lab_up(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Start the lab (``--scenario`` repeatable, ``--latency`` ms) and print how to use it."""
    out = out or sys.stdout
    lab = Lab(
        directory=_directory(args),
        scenarios=getattr(args, "scenario", None) or None,
        latency_ms=int(getattr(args, "latency", 0) or 0),
        name=_name(args) or SERVER_NETNS,
    )
    info = lab.up()
    out.write(describe(info))
    return 0


def lab_down(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Stop the lab recorded in ``--dir`` (nothing to do is not an error)."""
    out = out or sys.stdout
    directory = _directory(args)
    was_up = Lab.status(directory) is not None
    Lab.down(directory, name=_name(args))
    out.write("lab stopped\n" if was_up else f"no lab was running in {directory}; cleaned up\n")
    return 0


def lab_status(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Print the running lab (exit 0), or say there is none (exit 3, "unknown" for monitors)."""
    out = out or sys.stdout
    directory = _directory(args)
    info = Lab.status(directory)
    if info is None:
        out.write(f"no lab is running in {directory} (start one with: sudo rca lab up)\n")
        return 3
    processes = process_status(directory)
    out.write(describe(info))
    out.write("\nprocesses:\n")
    for name, running in processes.items():
        out.write(f"  {name:<28} {'running' if running else 'NOT RUNNING'}\n")
    return 0 if all(processes.values()) else 2


def _signed(info: LabInfo) -> bool:
    return any(s.signed for s in info.scenarios)


def describe(info: LabInfo) -> str:
    """What a user needs to use the lab, with commands that work as printed."""
    client = info.client_netns
    lines = [
        f"lab up in {info.startup_seconds:.1f}s ({len(info.scenarios)} scenarios), "
        f"state in {info.directory}",
        f"  DNS server:    {info.resolver} and {info.resolver6} (authoritative for *.test)",
        f"  trusted CA:    {info.ca_file}",
        f"  trust anchors: {info.trust_anchor_file} "
        + ("(DNSSEC: signed scenarios)" if _signed(info) else "(empty: no signed scenario)"),
        f"  clients run in network namespace {client} "
        f"(addresses {info.client_ipv4}, {info.client_ipv6});",
        f"  its /etc/resolv.conf points at the lab DNS (ip netns exec {client} ...)",
    ]
    if info.latency_ms:
        lines.append(
            f"  latency:       {info.latency_ms} ms each way ({info.latency_method})"
        )
    lines.append("")
    lines.append("scenarios:")
    width = max(len(s.name) for s in info.scenarios)
    for scenario in info.scenarios:
        lines.append(f"  {scenario.name:<{width}}  {scenario.description}")
        mail = scenario.hosts["mail"]
        lines.append(f"  {'':<{width}}  mail host {mail.name} ({mail.ipv4}, {mail.ipv6})")
        for user in scenario.users:
            lines.append(f"  {'':<{width}}  user {user.address}  password {user.password}")
    first = info.scenarios[0]
    lines += ["", "try:"]
    if first.users:
        address = first.users[0].address
        lines.append(
            f"  sudo ip netns exec {client} rca check {address} --ca-file {info.ca_file} "
            f"--password-file {info.password_file(address)}"
        )
    else:
        lines.append(
            f"  sudo ip netns exec {client} rca check {first.domain} --ca-file {info.ca_file}"
        )
    lines += [
        f"  sudo ip netns exec {client} openssl s_client -connect {first.hosts['mail'].name}:993 "
        f"-CAfile {info.ca_file} -verify_return_error -brief </dev/null",
        f"  sudo ip netns exec {client} curl --cacert {info.ca_file} "
        f"https://{first.hosts['autodiscover'].name}/health",
        f"  sudo rca lab down --dir {info.directory}",
        "",
    ]
    return "\n".join(lines)


#: What ``rca demo`` checks by default: the healthy domain and a few typical breakages.
DEMO_SCENARIOS: Final = (
    "healthy",
    "expired-cert",
    "cert-missing-intermediate",
    "filtered",
    "no-starttls",
    "dmarc-none",
    "spf-lookups",
    "autodiscover-redirect",
)


def demo(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Start the lab, run ``rca check`` on each scenario's first user from the client side,
    write the reports to ``--out``, stop the lab unless ``--keep``.

    Prints one verdict line per scenario and where its reports are. Exit 0 when every
    check ran (broken scenarios are *meant* to fail); 3 when a check could not run.
    """
    out = out or sys.stdout
    directory = _directory(args)
    chosen = getattr(args, "scenario", None) or list(DEMO_SCENARIOS)
    info = Lab(
        directory=directory,
        scenarios=chosen,
        latency_ms=int(getattr(args, "latency", 0) or 0),
    ).up()
    out.write(describe(info))
    reports = Path(getattr(args, "out", None) or "rca-demo").absolute()
    reports.mkdir(parents=True, exist_ok=True)
    broken = 0
    verdicts = {0: "pass", 1: "warn", 2: "FAIL", 3: "inconclusive/error"}
    try:
        out.write(f"\nchecking {len(info.scenarios)} scenarios (reports in {reports}):\n")
        for scenario in info.scenarios:
            target = scenario.users[0].address if scenario.users else scenario.domain
            argv = [
                sys.executable, "-m", "analyzer", "check", target, "--quiet",
                "--netns", info.client_netns,
                "--resolver", info.resolver,
                "--ca-file", str(info.ca_file),
                *(["--trust-anchor", str(info.trust_anchor_file)] if _signed(info) else []),
                "--json", str(reports / f"{scenario.name}.json"),
                "--report", str(reports / f"{scenario.name}.html"),
            ]  # fmt: skip
            env = dict(os.environ)
            if scenario.users:
                env["RCA_PASSWORD"] = scenario.users[0].password
            try:
                done = subprocess.run(
                    argv, env=env, timeout=300, check=False, capture_output=True, text=True
                )
            except subprocess.TimeoutExpired:
                raise LabError(f"rca check {target} did not finish in 300s") from None
            line = (done.stdout.strip().splitlines() or [done.stderr.strip()])[-1]
            out.write(f"  {scenario.name:<28} exit {done.returncode} "
                      f"({verdicts.get(done.returncode, '?')}): {line}\n")
            out.write(f"  {'':<28} {reports / (scenario.name + '.html')}\n")
            out.flush()
            if not (reports / f"{scenario.name}.json").exists():
                broken += 1
        out.write(f"\nopen the HTML reports in a browser: {reports}/<scenario>.html\n")
    finally:
        if not getattr(args, "keep", False):
            Lab.down(directory)
            out.write("lab stopped (use --keep to leave it running)\n")
    return 3 if broken else 0
