"""What the runs of one batch share: endpoint checks, so a provider sees one handshake, and
DNS answers, so a provider's hosts are asked about once while the answer is fresh.

``rca batch`` gives every run one :class:`SharedResults`; a probe asks for a shared check
with :meth:`analyzer.core.probe.ProbeContext.shared`, and the first run to get there does the
work while the others wait and get a copy (:class:`SharedCheck`). DNS answers are kept in
:class:`SharedAnswers` by :mod:`analyzer.protocols.resolve`, each until its TTL runs out.
Outside a batch the run context has none and every check and question is its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

    from analyzer.core.model import ProbeResult

__all__ = ["SharedAnswers", "SharedCheck", "SharedResults"]

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

    def __init__(
        self, *, checks: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        #: Whether what the runs observe is shared: endpoint checks and DNS answers
        #: (``--no-share`` turns both off; the resources below are shared either way: they
        #: are derived from local files, not observed).
        self.checks = checks
        self.entries: dict[Hashable, asyncio.Future[SharedCheck | None]] = {}
        #: DNS answers shared by the runs (None with ``--no-share``).
        self.answers: SharedAnswers | None = SharedAnswers(clock=clock) if checks else None
        self._resources: dict[Hashable, Any] = {}

    def resource(self, key: Hashable, make: Callable[[], T]) -> T:
        """Something every run of the batch derives from the same local files (the parsed
        trust store, a verifying SSL context), made once. ``key`` must identify the files
        as they are now (:func:`analyzer.core.context.files_key`), so that a file changed during
        the batch is read again."""
        if key not in self._resources:
            self._resources[key] = make()
        return self._resources[key]  # type: ignore[no-any-return]


class SharedAnswers:
    """Values that expire: the DNS answers the runs of one batch share.

    A thousand domains of one provider name the same MX and mail hosts, and each run would
    ask the same questions about them (their addresses, PTR records, the forward check).
    The runs ask here first. :mod:`analyzer.protocols.resolve` decides what may be kept
    (definitive answers only) and for how long (the answer's TTL); this class only keeps
    each value until ``ttl`` seconds after :meth:`put`, on ``clock`` (injectable for tests).

    At most ``max_entries`` are kept: a batch asks many questions that no other run asks
    again (each domain's own records), so the least recently used go first when full.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 8192
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self.max_entries = max_entries
        #: key -> (expiry on ``clock``, value), least recently used first.
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any | None:
        """The value kept for ``key``, or None when there is none or it has expired."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            return None
        self._entries[key] = entry  # now the most recently used
        return entry[1]

    def put(self, key: Hashable, value: Any, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds from now (nothing is kept for ``ttl <= 0``)."""
        if ttl <= 0:
            return
        now = self._clock()
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            # The least recently used goes (an expired one is dropped when next read).
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (now + ttl, value)
