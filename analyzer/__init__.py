"""rca: a remote connectivity analyzer for mail systems.

The public API is small: parse a target, build options, run a check, get a
:class:`~analyzer.model.Report`::

    from analyzer import RunOptions, check, parse_target
    report = asyncio.run(check(parse_target("alice@example.com"), RunOptions()))

Heavy modules are imported lazily so that ``rca --version`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    from analyzer.context import Credentials, RunOptions
    from analyzer.model import Report, Status
    from analyzer.targets import parse_target

_LAZY = {
    "check": "analyzer.api",
    "Credentials": "analyzer.context",
    "RunOptions": "analyzer.context",
    "Report": "analyzer.model",
    "Status": "analyzer.model",
    "parse_target": "analyzer.targets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)
