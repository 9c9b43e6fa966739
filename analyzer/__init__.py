"""rca: a remote connectivity analyzer for mail systems.

The public API is small: parse a target, build options, run a check, get a
:class:`~analyzer.core.model.Report`::

    from analyzer import RunOptions, check, parse_target
    report = asyncio.run(check(parse_target("alice@example.com"), RunOptions()))

Heavy modules are imported lazily so that ``rca --version`` stays fast.

The package's folders are its layers, and imports go down them: :mod:`analyzer.cli` and
:mod:`analyzer.api` on top, then :mod:`analyzer.operations` (batch, history, exporter), the
probes (:mod:`probes`), the protocol clients (:mod:`analyzer.protocols`) and the run's core
(:mod:`analyzer.core`); :mod:`reports` reads only the model; :mod:`analyzer.lab` stands
beside the product (``tests/unit/test_layers.py`` checks all of it).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from cryptography.utils import CryptographyDeprecationWarning

__version__ = "0.1.0"

__all__ = [
    "Credentials",
    "Report",
    "RunOptions",
    "Status",
    "__version__",
    "check",
    "parse_target",
]

if TYPE_CHECKING:
    from analyzer.api import check
    from analyzer.core.context import Credentials, RunOptions
    from analyzer.core.model import Report, Status
    from analyzer.core.targets import parse_target

#: Known deprecation warnings that third-party libraries raise at import time, about their own
#: code, which a user can do nothing about: (message prefix, category, module that warns).
#: Each is ignored for that one module only, so rca's own warnings (and any new ones from a
#: library) still show. dnspython defines its DSA key classes at import (dns.dnssecalgs.dsa);
#: cryptography 51 deprecated DSA, and every `rca check` with DNSSEC printed four warnings.
KNOWN_LIBRARY_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    ("DSA is deprecated", CryptographyDeprecationWarning, r"dns\.dnssecalgs\.dsa\Z"),
)


def quiet_known_library_warnings() -> None:
    """Ignore :data:`KNOWN_LIBRARY_WARNINGS`, each for its own module only.

    Runs when ``analyzer`` is imported, before any of rca's modules imports dnspython.
    """
    for message, category, module in KNOWN_LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


quiet_known_library_warnings()

_LAZY = {
    "check": "analyzer.api",
    "Credentials": "analyzer.core.context",
    "RunOptions": "analyzer.core.context",
    "Report": "analyzer.core.model",
    "Status": "analyzer.core.model",
    "parse_target": "analyzer.core.targets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)
