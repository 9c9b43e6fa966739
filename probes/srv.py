"""RFC 2782 SRV target selection: the order in which a client tries the targets.

A pure function for the probes that follow SRV records (Autodiscover, RFC 6186 mail
services). This is not a probe and registers nothing.

RFC 2782, "Usage rules": try the targets of the *lowest* priority first; among targets of
equal priority, choose in a weighted random order, where a target's chance is its share
of the remaining weight. (exchangelib once sorted the other way and tried the highest
priority first; the unit tests pin this down.) A single record whose target is "." means
the service is decidedly not available at this domain.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby

# The record type is the one other probes read from the facts.
from analyzer.core.facts import SrvRecord

__all__ = ["SrvRecord", "SrvSelection", "order_srv"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SrvSelection:
    """The outcome of RFC 2782 selection."""

    #: The targets in the order a client tries them.
    targets: tuple[SrvRecord, ...]
    #: True when the domain says the service is not offered (only "." targets).
    not_offered: bool
    #: "." records published beside real targets: meaningless, skipped.
    ignored: tuple[SrvRecord, ...] = ()


def order_srv(records: Iterable[SrvRecord], *, rng: random.Random) -> SrvSelection:
    """Order SRV records as RFC 2782 prescribes; ``rng`` makes the weighted draw repeatable.

    Within one priority the RFC's algorithm is followed literally: the records not yet
    chosen are listed with the zero-weight ones first, their running weight sums computed,
    a number drawn uniformly from 0 to the total (inclusive), and the first record whose
    running sum reaches it is taken next. Zero-weight records thus come first only when
    the draw is 0, which is what "a very small chance of being selected" means.
    """
    given = list(records)
    real = [r for r in given if not r.no_service]
    dots = tuple(r for r in given if r.no_service)
    if not real:
        return SrvSelection(targets=(), not_offered=bool(dots))
    ordered: list[SrvRecord] = []
    by_priority = sorted(real, key=lambda r: r.priority)  # lowest priority first
    for _, group in groupby(by_priority, key=lambda r: r.priority):
        ordered.extend(_weighted_order(list(group), rng))
    return SrvSelection(targets=tuple(ordered), not_offered=False, ignored=dots)


def _weighted_order(group: list[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    # RFC 2782: "arrange all SRV RRs (that have not been ordered yet) in any order, except
    # that all those with weight 0 are placed at the beginning of the list."
    remaining = [r for r in group if r.weight == 0] + [r for r in group if r.weight > 0]
    out: list[SrvRecord] = []
    while remaining:
        total = sum(r.weight for r in remaining)
        draw = rng.randint(0, total)
        running = 0
        for index, record in enumerate(remaining):
            running += record.weight
            if running >= draw:
                out.append(remaining.pop(index))
                break
    return out
