"""``--netns NAME``: run rca from inside a Linux network namespace.

``rca check``, ``rca batch`` and ``rca serve`` accept ``--netns`` so that a check can start
from a namespace of its own (the lab's ``rca-lab-client``, or a VRF-like namespace on a
monitoring host). :func:`enter_netns` moves the *calling thread* into the namespace
(``setns(2)``); threads and processes it starts afterwards start there too. The lab
(:mod:`analyzer.lab.netns`) builds its namespaces with the same call.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Final

from analyzer.core.errors import UsageError

__all__ = ["NETNS_DIR", "enter_netns"]

#: Where ``ip netns add`` binds the namespaces it names.
NETNS_DIR: Final = Path("/run/netns")
_CLONE_NEWNET: Final = 0x40000000  # <linux/sched.h>


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (``/run/netns/<name>``).

    Only this thread moves (``setns(2)`` acts per thread); threads and processes it starts
    afterwards start in ``name`` too. Sockets opened before stay where they were. The mount
    namespace does not change: ``/etc/netns/<name>/resolv.conf`` applies to processes started
    with ``ip netns exec``, not to this one, so give resolvers the namespace's DNS server
    explicitly. :class:`~analyzer.core.errors.UsageError` (one line) if it cannot be entered.
    """
    path = NETNS_DIR / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"network namespace {name!r} does not exist ({path})") from None
    except PermissionError:
        raise UsageError(f"cannot open {path}: entering a namespace needs root") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # Python 3.11 has no os.setns (3.12 does).
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise UsageError(f"setns({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)
