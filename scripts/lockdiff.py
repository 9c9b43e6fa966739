"""Compare the running environment with a lock file (requirements format, ``name==version``).

    python scripts/lockdiff.py --check LOCK   exit 1, naming them, if a locked package is missing
                                             or at another version
    python scripts/lockdiff.py --extra LOCK   print the installed packages the lock does not have
                                             (besides pip, setuptools and rca itself)
    python scripts/lockdiff.py --newer LOCK   print the locked packages installed at another
                                             version (after `scripts/test.sh --latest`)

Used by scripts/install.sh (so an install is exactly the lock) and scripts/test.sh --latest.
Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_ALWAYS = {"pip", "setuptools", "rca"}


def canonical(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of ``lock``."""
    found = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line)
        if m:
            found[canonical(m.group(1))] = m.group(2)
    return found


def installed() -> dict[str, str]:
    """``name -> version`` of every distribution in this environment."""
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--extra", action="store_true")
    mode.add_argument("--newer", action="store_true")
    parser.add_argument("lock", type=Path)
    args = parser.parse_args()
    locked, have = pins(args.lock), installed()
    if args.extra:
        print(" ".join(sorted(set(have) - set(locked) - _ALWAYS)))
        return 0
    if args.newer:
        for name in sorted(set(locked) - _ALWAYS):  # the build tools are not rca's dependencies
            if name in have and have[name] != locked[name]:
                print(f"{name} {have[name]} (lock: {locked[name]})")
        return 0
    wrong = [f"{n} {have.get(n, 'missing')} (lock: {v})" for n, v in sorted(locked.items())
             if have.get(n) != v]
    if wrong:
        print("environment differs from " + str(args.lock) + ": " + "; ".join(wrong))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
