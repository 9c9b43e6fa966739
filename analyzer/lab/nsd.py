"""NSD, authoritative for every lab zone, on the lab resolver's addresses (port 53, UDP+TCP).

Its own ``nsd.conf``: no chroot, no user switch, no remote control, no database, pid and logs
in the lab directory; run in the foreground with ``nsd -d -c <conf>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["command", "write_config"]


def write_config(
    directory: Path, *, addresses: Sequence[str], zones: Sequence[tuple[str, str]]
) -> Path:
    """Write ``<directory>/nsd.conf`` for ``zones`` ((origin, file name in ``zones/``))."""
    zonesdir = directory / "zones"
    zonesdir.mkdir(parents=True, exist_ok=True)
    (directory / "tmp").mkdir(exist_ok=True)
    lines = [
        "# written by rca lab: NSD for the lab's zones, nothing from /etc",
        "server:",
        *(f"    ip-address: {a}" for a in addresses),
        "    port: 53",
        "    do-ip4: yes",
        "    do-ip6: yes",
        '    username: ""',
        '    chroot: ""',
        f'    zonesdir: "{zonesdir}"',
        f'    pidfile: "{directory / "nsd.pid"}"',
        f'    logfile: "{directory / "nsd.log"}"',
        '    database: ""',
        f'    zonelistfile: "{directory / "zone.list"}"',
        f'    xfrdfile: "{directory / "xfrd.state"}"',
        f'    xfrdir: "{directory / "tmp"}"',
        "    server-count: 1",
        "    verbosity: 1",
        "    hide-version: yes",
        "    hide-identity: yes",
        "    refuse-any: no",
        # the lab serves a handful of clients; keep memory and start-up small
        "    tcp-count: 64",
        "    reuseport: no",
        "remote-control:",
        "    control-enable: no",
    ]
    for origin, filename in zones:
        lines += ["zone:", f'    name: "{origin}"', f'    zonefile: "{filename}"']
    path = directory / "nsd.conf"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def command(config: Path) -> list[str]:
    """The foreground command line."""
    return ["nsd", "-d", "-c", str(config)]
