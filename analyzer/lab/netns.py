"""The lab's network: two namespaces joined by one veth pair, and nothing else.

::

    rca-lab (servers)                                  rca-lab-client (clients, tests)
    ┌─────────────────────────────────┐  veth pair  ┌───────────────────────────────────┐
    │ rcalab0: 198.18.0.53/32 (DNS)   ├─────────────┤ rcalab1: 198.19.255.254/15        │
    │          198.18.<i>.<r>/32 ...  │             │          2001:db8:ffff::fffe/32   │
    │          2001:db8::53/128 ...   │             │ /etc/netns/rca-lab-client/        │
    │ route to the client's /32,/128  │             │   resolv.conf -> lab DNS          │
    │ nftables: inet rcalab (filters) │             │                                   │
    └─────────────────────────────────┘             └───────────────────────────────────┘

Neither namespace has a default route, and the veth pair has no end in the host's namespace,
so no lab packet can reach the outside world. Every server address sits on ``rcalab0`` (this
kernel has no ``dummy`` driver); the client has addresses of its own, so servers never see a
client as "local" (Dovecot would then allow plaintext logins).

``enter_netns`` moves the *calling thread* into a namespace (``setns(2)``); threads and
processes it starts afterwards inherit that namespace. ``in_netns`` runs a function in a
short-lived thread inside a namespace, so the lab can probe its servers without moving the
caller.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from analyzer.core.errors import UsageError
from analyzer.lab.errors import LabError
from analyzer.protocols import netns
from analyzer.protocols.netns import NETNS_DIR

__all__ = [
    "CLIENT_IF",
    "CLIENT_IPV4",
    "CLIENT_IPV6",
    "CLIENT_NETNS",
    "NETNS_DIR",
    "SERVER_IF",
    "SERVER_NETNS",
    "FilterSpec",
    "add_addresses",
    "apply_filters",
    "create_pair",
    "delete_namespace",
    "enter_netns",
    "in_netns",
    "namespace_exists",
    "pids_in_netns",
    "run",
    "write_etc_netns",
]

SERVER_NETNS: Final = "rca-lab"
CLIENT_NETNS: Final = "rca-lab-client"
SERVER_IF: Final = "rcalab0"
CLIENT_IF: Final = "rcalab1"
CLIENT_IPV4: Final = "198.19.255.254"
CLIENT_IPV6: Final = "2001:db8:ffff::fffe"
ETC_NETNS_DIR: Final = Path("/etc/netns")
NFT_TABLE: Final = "rcalab"

_COMMAND_TIMEOUT_S: Final = 30.0

T = TypeVar("T")


# -- entering a namespace ---------------------------------------------------------------------


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (as ``--netns`` does:
    :func:`analyzer.protocols.netns.enter_netns`), with :class:`LabError` when it cannot."""
    try:
        netns.enter_netns(name)
    except UsageError as exc:
        raise LabError(str(exc)) from None


def in_netns(name: str, function: Callable[[], T]) -> T:
    """Run ``function`` in a new thread that has entered namespace ``name``; return its result.

    The caller's own thread does not move. Exceptions propagate to the caller.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            enter_netns(name)
            result.append(function())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"in-netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def namespace_inode(name: str) -> tuple[int, int] | None:
    """(device, inode) identifying namespace ``name``, or ``None`` if it does not exist."""
    try:
        st = os.stat(NETNS_DIR / name)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def namespace_exists(name: str) -> bool:
    """Whether ``/run/netns/<name>`` exists."""
    return (NETNS_DIR / name).exists()


def pids_in_netns(name: str) -> list[int]:
    """PIDs of every process whose main thread is in namespace ``name`` (ours excluded)."""
    ident = namespace_inode(name)
    if ident is None:
        return []
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if (st.st_dev, st.st_ino) == ident:
            pids.append(int(entry.name))
    return pids


# -- commands -----------------------------------------------------------------------------------


def run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    """Run a short command; ``LabError`` with its stderr when it fails (and ``check``)."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        package = {"nft": "nftables"}.get(argv[0], "iproute2")
        raise LabError(f"{argv[0]} not found; install it with: apt-get install {package}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)} did not finish in {_COMMAND_TIMEOUT_S:.0f}s") from None
    if check and done.returncode != 0:
        message = (done.stderr or done.stdout).strip().replace("\n", "; ")
        raise LabError(f"{' '.join(argv[:6])} failed: {message}")
    return done.stdout


def create_pair(server: str = SERVER_NETNS, client: str = CLIENT_NETNS) -> None:
    """Create both namespaces with loopback up and the veth pair between them (links up).

    IPv6 duplicate address detection is off in both, so addresses are usable at once.
    """
    for name in (server, client):
        run(["ip", "netns", "add", name])
        in_netns(name, _disable_dad)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
    run(
        ["ip", "-n", server, "link", "add", SERVER_IF, "type", "veth",
         "peer", "name", CLIENT_IF, "netns", client]
    )  # fmt: skip
    run(["ip", "-n", server, "link", "set", SERVER_IF, "up"])
    run(["ip", "-n", client, "link", "set", CLIENT_IF, "up"])


def _disable_dad() -> None:
    # /proc/sys/net belongs to the namespace of the thread that opens it.
    for conf in ("all", "default"):
        Path(f"/proc/sys/net/ipv6/conf/{conf}/accept_dad").write_text("0\n", encoding="ascii")


def add_addresses(
    server_addresses: Iterable[str],
    *,
    server: str = SERVER_NETNS,
    client: str = CLIENT_NETNS,
) -> None:
    """Put every server address on ``rcalab0`` (/32, /128) and the client's on ``rcalab1``.

    The client's /15 and /32 prefixes make the server addresses on-link for it; the server gets
    host routes back to the client's two addresses, and no other route.
    """
    lines: list[str] = []
    for address in server_addresses:
        if ":" in address:
            lines.append(f"address add {address}/128 dev {SERVER_IF} nodad")
        else:
            lines.append(f"address add {address}/32 dev {SERVER_IF}")
    lines.append(f"route add {CLIENT_IPV4}/32 dev {SERVER_IF}")
    lines.append(f"route add {CLIENT_IPV6}/128 dev {SERVER_IF}")
    run(["ip", "-n", server, "-batch", "-"], stdin="\n".join(lines) + "\n")
    run(
        ["ip", "-n", client, "-batch", "-"],
        stdin=(
            f"address add {CLIENT_IPV4}/15 dev {CLIENT_IF}\n"
            f"address add {CLIENT_IPV6}/32 dev {CLIENT_IF} nodad\n"
        ),
    )


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """One packet-filter rule, resolved to an address: TCP ``port`` (all when ``None``)."""

    address: str
    port: int | None
    action: str  # "reject" | "drop"


def apply_filters(
    rules: Sequence[FilterSpec],
    *,
    server: str = SERVER_NETNS,
    silent_names: Sequence[bytes] = (),
) -> None:
    """Load the lab's nftables table into the server namespace (replacing an older one).

    Rules match only packets arriving on the veth (``iifname``), so the lab's own readiness
    probes, which connect over loopback inside the namespace, are never filtered.
    ``silent_names``: DNS questions (wire-format names) dropped over UDP: the name's first
    16 bytes (nftables compares at most 128 bits at once) are matched right after the
    8-byte UDP header and the 12-byte DNS header.
    """
    lines = [
        f"table inet {NFT_TABLE} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
    ]
    for rule in rules:
        family = "ip6" if ":" in rule.address else "ip"
        port = f"tcp dport {rule.port}" if rule.port is not None else "meta l4proto tcp"
        verdict = "reject with tcp reset" if rule.action == "reject" else "drop"
        lines.append(
            f'    iifname "{SERVER_IF}" {family} daddr {rule.address} {port} {verdict}'
        )
    for name in silent_names:
        prefix = name[:16]
        lines.append(
            f'    iifname "{SERVER_IF}" udp dport 53 @th,160,{len(prefix) * 8} '
            f"0x{prefix.hex()} drop"
        )
    lines += ["  }", "}"]
    run(["ip", "netns", "exec", server, "nft", "-f", "-"], stdin="\n".join(lines) + "\n")


def write_etc_netns(name: str, resolvers: Sequence[str]) -> Path:
    """Write ``/etc/netns/<name>/resolv.conf`` (``ip netns exec`` bind-mounts it on
    ``/etc/resolv.conf``) pointing at the lab's DNS; return the directory."""
    directory = ETC_NETNS_DIR / name
    directory.mkdir(parents=True, exist_ok=True)
    text = "# written by rca lab; removed by `rca lab down`\n"
    text += "".join(f"nameserver {r}\n" for r in resolvers)
    text += "options timeout:2 attempts:2\n"
    (directory / "resolv.conf").write_text(text, encoding="ascii")
    return directory


def remove_etc_netns(name: str) -> None:
    """Remove ``/etc/netns/<name>`` (only the files we write there; then the directory)."""
    directory = ETC_NETNS_DIR / name
    (directory / "resolv.conf").unlink(missing_ok=True)
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        # Someone else put files there: leave them, and the directory, alone.


def delete_namespace(name: str, *, kill_inside: bool = True) -> list[int]:
    """Delete namespace ``name``; first kill (SIGKILL, by PID) every process still inside it
    when ``kill_inside``. Returns the PIDs killed. Missing namespace: nothing to do."""
    killed: list[int] = []
    if not namespace_exists(name):
        return killed
    if kill_inside:
        for pid in pids_in_netns(name):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        _wait_gone(killed, timeout=5.0)
    run(["ip", "netns", "delete", name], check=False)
    if namespace_exists(name):
        # `ip netns delete` failed (e.g. still mounted elsewhere): try once more, loudly.
        run(["ip", "netns", "delete", name])
    return killed


def _wait_gone(pids: Sequence[int], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if _alive(pid)]
        if pending:
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie we are the parent of is reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def has_binary(name: str) -> bool:
    """Whether ``name`` is on PATH (or in /usr/sbin, which a non-login root may lack)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None
