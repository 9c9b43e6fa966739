"""Endpoint checks that the runs of one batch share, so a provider sees one handshake.

``rca batch`` gives every run one :class:`SharedResults`; a probe asks for a shared check
with :meth:`analyzer.core.probe.ProbeContext.shared`, and the first run to get there does the
work while the others wait and get a copy (:class:`SharedCheck`). Outside a batch the run
context has none and every check runs for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from analyzer.core.model import ProbeResult

__all__ = ["SharedCheck", "SharedResults"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedCheck:
    """One finished shared check: its results, its value, when it started (run clock)."""

    results: tuple[ProbeResult, ...]
    value: Any
    started_ms: float


class SharedResults:
    """Endpoint checks shared by the runs of one batch (see
    :meth:`analyzer.core.probe.ProbeContext.shared`).

    A thousand domains hosted by one provider name the same few MX and mail hosts.
    Checking ``mx.provider:25`` a thousand times in one batch costs the provider a
    thousand handshakes and tells nothing new, so the batch gives one instance to every
    run: each endpoint is checked once and every target's report gets a copy.
    """

    def __init__(self, *, checks: bool = True) -> None:
        #: Whether endpoint checks are shared (``--no-share`` turns it off; the resources
        #: below are shared either way: they are derived from local files, not observed).
        self.checks = checks
        self.entries: dict[Hashable, asyncio.Future[SharedCheck | None]] = {}
        self._resources: dict[Hashable, Any] = {}

    def resource(self, key: Hashable, make: Callable[[], T]) -> T:
        """Something every run of the batch derives from the same local files (the parsed
        trust store, a verifying SSL context), made once. ``key`` must identify the files
        as they are now (:func:`analyzer.core.context.files_key`), so that a file changed during
        the batch is read again."""
        if key not in self._resources:
            self._resources[key] = make()
        return self._resources[key]  # type: ignore[no-any-return]
