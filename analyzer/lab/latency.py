"""Added latency on the lab's veth pair: ``X`` ms each way, so a round trip takes ``2X``.

The plain way is ``tc qdisc add dev <veth> root netem delay Xms`` on both ends. Kernels built
without ``sch_netem`` (this project's CI machines among them) refuse that, so there is a
fallback made of parts such kernels do have (ingress qdisc, u32, mirred, TUN):

- in each namespace a TUN device ``rcadly0`` whose reader (``python -m analyzer.lab.latency``,
  one process per namespace) holds every packet for ``X`` ms and writes it back;
- an ingress filter on the veth redirects every arriving IPv4/IPv6 packet into that TUN
  device, so it re-enters the stack ``X`` ms later, as if it had arrived late. ICMPv6 is
  exempt so neighbour discovery keeps working on the veth (ping6 is therefore not delayed);
  ARP is not IP and is never redirected.

``apply`` picks the method and returns its name (``"netem"``, ``"tun"`` or ``"none"``).
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from analyzer.lab import netns
from analyzer.lab.errors import LabError
from analyzer.lab.process import Server, log_tail, spawn

__all__ = ["TUN_DEVICE", "apply", "main", "wait_ready"]

TUN_DEVICE: Final = "rcadly0"
_TUNSETIFF: Final = 0x400454CA
_IFF_TUN: Final = 0x0001
_IFF_NO_PI: Final = 0x1000
_MAX_QUEUE: Final = 20_000  # packets held at once; beyond that, drop (as a full queue does)
_MTU: Final = 65535


def apply(
    latency_ms: int,
    *,
    directory: Path,
    on_process: Callable[[Server], None],
    server: str = netns.SERVER_NETNS,
    client: str = netns.CLIENT_NETNS,
) -> str:
    """Delay both directions of the veth pair by ``latency_ms``; return the method used.

    Processes started for the TUN method are handed to ``on_process`` (to be recorded and
    waited for with ``wait_ready``).
    """
    if latency_ms <= 0:
        return "none"
    ends = ((server, netns.SERVER_IF), (client, netns.CLIENT_IF))
    try:
        for ns, dev in ends:
            netns.run(
                ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
                 "netem", "delay", f"{latency_ms}ms"]
            )  # fmt: skip
        return "netem"
    except LabError as exc:
        if "unknown" not in str(exc).lower() and "not supported" not in str(exc).lower():
            raise
    # No sch_netem in this kernel: the TUN detour.
    directory.mkdir(parents=True, exist_ok=True)
    package_root = str(Path(__file__).resolve().parents[2])
    for ns, dev in ends:
        on_process(
            spawn(
                f"latency-{ns}",
                [sys.executable, "-m", "analyzer.lab.latency", "--device", TUN_DEVICE,
                 "--delay-ms", str(latency_ms), "--veth", dev],
                netns=ns,
                log_file=directory / f"{ns}.log",
                endpoints=(),
                env={"PYTHONPATH": package_root, "PYTHONUNBUFFERED": "1"},
            )
        )  # fmt: skip
    return "tun"


def wait_ready(servers: Sequence[Server], *, timeout: float) -> None:
    """Wait until each delay process reports its redirect in place (a ``ready`` log line)."""
    deadline = time.monotonic() + timeout
    for server in servers:
        while True:
            code = server.poll()
            if code is not None:
                raise LabError(
                    f"{server.name} exited with status {code}; see {server.log_file}: "
                    f"{log_tail(server.log_file)}"
                )
            try:
                if "ready" in server.log_file.read_text(encoding="utf-8", errors="replace"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LabError(f"{server.name} not ready after {timeout:.0f}s")
            time.sleep(0.02)


# -- the delay process --------------------------------------------------------------------------


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    ifreq = struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI)
    fcntl.ioctl(fd, _TUNSETIFF, ifreq)
    return fd


def _sh(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=30)


def _redirect(veth: str, device: str) -> None:
    """Send every IPv4/IPv6 packet arriving on ``veth`` (ICMPv6 aside) to ``device``."""
    for conf in ("all", device):
        # The re-injected packet arrives on the TUN device, not where its route points.
        Path(f"/proc/sys/net/ipv4/conf/{conf}/rp_filter").write_text("0\n", encoding="ascii")
    _sh(["ip", "link", "set", device, "up"])
    _sh(["tc", "qdisc", "add", "dev", veth, "ingress"])
    # A match without an action ends classification and lets the packet pass untouched.
    _sh(["tc", "filter", "add", "dev", veth, "parent", "ffff:", "prio", "1", "protocol",
         "ipv6", "u32", "match", "ip6", "protocol", "58", "0xff", "flowid", "1:1"])
    for prio, proto in (("2", "ipv6"), ("3", "ip")):
        _sh(["tc", "filter", "add", "dev", veth, "parent", "ffff:", "prio", prio, "protocol",
             proto, "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
             "redirect", "dev", device])  # fmt: skip


def _unredirect(veth: str) -> None:
    subprocess.run(
        ["tc", "qdisc", "del", "dev", veth, "ingress"], capture_output=True, timeout=30, check=False
    )


def delay_loop(fd: int, delay_s: float) -> None:
    """Read packets from ``fd``, write each back ``delay_s`` after it arrived, in order."""
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    while True:
        now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else None
        readable, _, _ = select.select([fd], [], [], timeout)
        if readable:
            arrived = time.monotonic()
            # Drain what is there without blocking (the fd is non-blocking).
            while True:
                try:
                    packet = os.read(fd, _MTU)
                except BlockingIOError:
                    break
                if len(queue) < _MAX_QUEUE:
                    queue.append((arrived + delay_s, packet))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, packet = queue.popleft()
            try:
                os.write(fd, packet)
            except OSError:
                pass  # the stack refused it (e.g. namespace going away): a lost packet


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analyzer.lab.latency --device rcadly0 --veth rcalab0 --delay-ms X``."""
    parser = argparse.ArgumentParser(prog="python -m analyzer.lab.latency")
    parser.add_argument("--device", required=True)
    parser.add_argument("--veth", required=True)
    parser.add_argument("--delay-ms", type=int, required=True)
    args = parser.parse_args(argv)
    # `Lab.down` stops us with SIGTERM: leave through `finally`, removing the redirect.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fd = _open_tun(args.device)
    os.set_blocking(fd, False)
    try:
        _redirect(args.veth, args.device)
        print(f"ready: {args.veth} -> {args.device}, {args.delay_ms} ms", flush=True)
        delay_loop(fd, args.delay_ms / 1000)
    except KeyboardInterrupt:
        pass
    finally:
        _unredirect(args.veth)
        os.close(fd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
