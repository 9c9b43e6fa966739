"""RFC 2782 SRV target selection (probes.srv): priority order, weighted draw, "." targets."""

from __future__ import annotations

import random
from collections import Counter

import dns.rdata
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.srv import SrvRecord, order_srv


def srv(priority: int, weight: int, target: str, port: int = 443) -> SrvRecord:
    return SrvRecord(priority=priority, weight=weight, port=port, target=target)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - a repeatable draw, not cryptography


class Draws(random.Random):
    """A generator whose ``randint`` returns the given values in turn (checked in range)."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = list(values)
        self.ranges: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.ranges.append((a, b))
        value = self.values.pop(0)
        assert a <= value <= b
        return value


def targets(records: list[SrvRecord], seed: int = 0) -> list[str]:
    return [r.target for r in order_srv(records, rng=seeded(seed)).targets]


def test_lowest_priority_is_tried_first_whatever_the_weights() -> None:
    # Given a priority-0 target with a tiny weight and a priority-10 one with a huge weight
    # (exchangelib once tried the highest priority first)
    records = [srv(10, 65535, "backup.example.com"), srv(0, 1, "primary.example.com")]
    # When they are ordered, for many different draws
    orders = {tuple(targets(records, seed)) for seed in range(50)}
    # Then the lowest priority value always comes first (RFC 2782)
    assert orders == {("primary.example.com", "backup.example.com")}


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (
            [srv(20, 0, "c.example"), srv(10, 0, "b.example"), srv(0, 0, "a.example")],
            ["a.example", "b.example", "c.example"],
        ),
        ([srv(5, 0, "x.example")], ["x.example"]),
        ([], []),
    ],
)
def test_priorities_in_ascending_order(records: list[SrvRecord], expected: list[str]) -> None:
    # Given targets of distinct priorities
    # When they are ordered
    # Then they come in ascending priority
    assert targets(records) == expected


@pytest.mark.parametrize(
    ("draws", "expected"),
    [
        ([0, 0], ["light.example", "heavy.example"]),
        ([1, 0], ["light.example", "heavy.example"]),
        ([2, 0], ["heavy.example", "light.example"]),
        ([4, 1], ["heavy.example", "light.example"]),
    ],
)
def test_weighted_draw_follows_the_running_sums(draws: list[int], expected: list[str]) -> None:
    # Given weights 1 and 3 in one priority, and scripted draws
    records = [srv(0, 1, "light.example"), srv(0, 3, "heavy.example")]
    rng = Draws(draws)
    # When they are ordered
    ordered = [r.target for r in order_srv(records, rng=rng).targets]
    # Then each draw from 0..sum (inclusive) takes the first record whose running sum
    # reaches it (RFC 2782), and the next draw is over the weight that remains
    assert ordered == expected
    assert rng.ranges == [(0, 4), (0, 4 - (3 if expected[0] == "heavy.example" else 1))]


@pytest.mark.parametrize(
    ("draws", "expected"),
    [
        ([0, 0], ["zero.example", "weighted.example"]),
        ([1, 0], ["weighted.example", "zero.example"]),
        ([10, 0], ["weighted.example", "zero.example"]),
    ],
)
def test_zero_weight_records_are_listed_first(draws: list[int], expected: list[str]) -> None:
    # Given a zero-weight record listed after a weighted one
    records = [srv(0, 10, "weighted.example"), srv(0, 0, "zero.example")]
    # When they are ordered with scripted draws
    ordered = [r.target for r in order_srv(records, rng=Draws(draws)).targets]
    # Then the zero-weight record sits at the start of the list (RFC 2782), so only a
    # draw of 0 selects it first: a very small chance, never none
    assert ordered == expected


def test_weights_share_the_first_place_in_proportion() -> None:
    # Given weights 10 and 30 in one priority
    records = [srv(0, 10, "light.example"), srv(0, 30, "heavy.example")]
    # When the first choice is drawn many times with a seeded generator
    rng = seeded(2782)
    first = Counter(order_srv(records, rng=rng).targets[0].target for _ in range(4000))
    # Then the heavier comes first in about 30 of 41 draws (draws run over 0..40)
    assert 0.68 < first["heavy.example"] / 4000 < 0.78


def test_all_zero_weights_keep_every_target() -> None:
    # Given three zero-weight targets of one priority
    records = [srv(0, 0, f"t{n}.example") for n in range(3)]
    # When they are ordered
    # Then each appears once
    assert sorted(targets(records)) == ["t0.example", "t1.example", "t2.example"]


def test_seeded_generator_makes_the_order_repeatable() -> None:
    # Given weighted targets
    records = [srv(0, w, f"t{w}.example") for w in (1, 5, 10, 20)]
    # When ordered twice with generators of the same seed
    # Then the orders are identical
    assert targets(records, seed=42) == targets(records, seed=42)


@pytest.mark.parametrize(
    ("records", "not_offered", "ignored"),
    [
        ([srv(0, 0, ".")], True, 0),
        ([srv(0, 0, "."), srv(0, 0, "")], True, 0),
        ([srv(0, 0, "."), srv(10, 5, "mail.example")], False, 1),
        ([srv(0, 0, "mail.example")], False, 0),
        ([], False, 0),
    ],
)
def test_dot_target_means_not_offered(
    records: list[SrvRecord], not_offered: bool, ignored: int
) -> None:
    # Given SRV records, some with the target "."
    # When they are ordered
    selection = order_srv(records, rng=seeded(0))
    # Then a lone "." says the service is decidedly not offered; beside real targets it is skipped
    assert selection.not_offered is not_offered
    assert len(selection.ignored) == ignored
    assert all(r.target not in (".", "") for r in selection.targets)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "0 5 443 Autodiscover.Example.COM.",
            SrvRecord(priority=0, weight=5, port=443, target="autodiscover.example.com"),
        ),
        ("0 0 0 .", SrvRecord(priority=0, weight=0, port=0, target=".")),
    ],
)
def test_from_rdata_reads_fields(text: str, expected: SrvRecord) -> None:
    # Given a dnspython SRV rdata
    rdata = dns.rdata.from_text("IN", "SRV", text)
    # When it is converted
    # Then its fields are read (not its text), the target lower-cased without the trailing dot
    assert SrvRecord.from_rdata(rdata) == expected


_RECORDS = st.lists(
    st.builds(
        SrvRecord,
        priority=st.integers(0, 3),
        weight=st.integers(0, 65535),
        port=st.integers(0, 65535),
        target=st.sampled_from([".", "a.example", "b.example", "c.example", "d.example"]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(_RECORDS, st.integers(0, 2**32))
def test_order_is_a_priority_sorted_permutation(records: list[SrvRecord], seed: int) -> None:
    # Given any records and any seed
    # When they are ordered
    selection = order_srv(records, rng=seeded(seed))
    # Then every real target appears exactly once, in non-decreasing priority
    real = [r for r in records if r.target != "."]
    assert Counter(selection.targets) == Counter(real)
    priorities = [r.priority for r in selection.targets]
    assert priorities == sorted(priorities)
