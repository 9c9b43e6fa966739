"""DNS answers shared by the runs of one batch (analyzer/core/shared.py SharedAnswers, used by
analyzer/protocols/resolve.py), counted at a loopback server, with an injected clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.core.context import Nameserver, RunContext, RunOptions
from analyzer.core.shared import SharedAnswers, SharedResults
from analyzer.operations.batch import BatchConfig, TargetSpec, run_batch
from analyzer.operations.history import load_report
from analyzer.protocols.resolve import Lookup, lookup
from tests.servers.dnsserver import DnsServer, dns_server

#: Records live 120 s; a negative answer 30 s (the SOA's MINIMUM, below its own TTL: RFC 2308
#: section 5 takes the lower of the two).
SHORT_ZONE = """
$TTL 120
@        IN SOA ns1 hostmaster 1 3600 600 86400 30
@        IN NS  ns1
@        IN MX  10 mx
mx       IN A   127.0.3.25
alias    IN CNAME mx
ns1      IN A   127.0.3.53
"""
ZONES = {"short.test.": SHORT_ZONE}
BEHAVIOURS = {"slow.short.test": "drop", "broken.short.test": "servfail"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with dns_server(ZONES, BEHAVIOURS) as running:
        yield running


@pytest.fixture(scope="module")
def other_server() -> Iterator[DnsServer]:
    with dns_server(ZONES, BEHAVIOURS) as running:
        yield running


def options(*servers: DnsServer, **kw: object) -> RunOptions:
    return RunOptions(
        nameservers=tuple(Nameserver(s.address, s.port) for s in servers),
        **kw,  # type: ignore[arg-type]
    )


async def ask(
    batch: SharedResults, name: str, rdtype: str, *servers: DnsServer, **kw: object
) -> Lookup:
    """One run of the batch asks one question."""
    async with RunContext(options(*servers, **kw), shared_results=batch) as ctx:
        return await lookup(ctx, name, rdtype)


def sent(server: DnsServer, since: int) -> Counter[tuple[str, str]]:
    return Counter(server.queries[since:])


async def test_runs_of_a_batch_share_an_answer_and_record_the_same_lookup(
    server: DnsServer,
) -> None:
    # Given one batch
    batch = SharedResults(clock=Clock())
    before = len(server.queries)
    # When three of its runs ask about the provider's MX host (one through a CNAME)
    first = await ask(batch, "mx.short.test", "A", server)
    second = await ask(batch, "mx.short.test", "A", server)
    third = await ask(batch, "alias.short.test", "A", server)
    # Then each question went out once
    assert sent(server, before) == {("mx.short.test", "A"): 1, ("alias.short.test", "A"): 1}
    # And the run that used the shared answer records what the first run saw
    assert first.evidence() == second.evidence()
    assert second.outcome == "answer" and second.texts() == ["127.0.3.25"]
    assert second.ttl == 120
    assert third.cname_chain == ("alias.short.test → mx.short.test",)


async def test_a_shared_answer_expires_when_its_ttl_runs_out(server: DnsServer) -> None:
    # Given an answer with a TTL of 120 s, received by one run of the batch
    clock = Clock()
    batch = SharedResults(clock=clock)
    before = len(server.queries)
    await ask(batch, "short.test", "MX", server)
    # When a run asks just before it expires, and another when it has
    clock.now += 119.9
    await ask(batch, "short.test", "MX", server)
    assert sent(server, before) == {("short.test", "MX"): 1}
    clock.now += 0.1
    await ask(batch, "short.test", "MX", server)
    # Then the last run asked again
    assert sent(server, before) == {("short.test", "MX"): 2}


@pytest.mark.parametrize(
    ("name", "rdtype", "outcome"),
    [("nothere.short.test", "A", "nxdomain"), ("mx.short.test", "TXT", "nodata")],
)
async def test_a_negative_answer_is_shared_for_the_soa_minimum(
    server: DnsServer, name: str, rdtype: str, outcome: str
) -> None:
    # Given a negative answer whose SOA says 30 s (MINIMUM) and 120 s (its own TTL)
    clock = Clock()
    batch = SharedResults(clock=clock)
    before = len(server.queries)
    found = await ask(batch, name, rdtype, server)
    assert found.outcome == outcome
    # When runs ask again within 30 s, and after
    clock.now += 29.9
    again = await ask(batch, name, rdtype, server)
    assert again.outcome == outcome
    assert sent(server, before) == {(name, rdtype): 1}
    clock.now += 0.1
    await ask(batch, name, rdtype, server)
    # Then the lower of the two bounded the sharing (RFC 2308 section 5)
    assert sent(server, before) == {(name, rdtype): 2}


@pytest.mark.parametrize(
    ("name", "outcome"), [("slow.short.test", "timeout"), ("broken.short.test", "servfail")]
)
async def test_a_failed_question_is_not_shared(
    server: DnsServer, name: str, outcome: str
) -> None:
    # Given a name the server never answers, and one it answers with SERVFAIL
    batch = SharedResults(clock=Clock())
    found = await ask(batch, name, "A", server, op_timeout=0.2)
    assert found.outcome == outcome
    sent_first = len(server.queries)
    # When the next run of the batch asks the same question
    again = await ask(batch, name, "A", server, op_timeout=0.2)
    # Then it asked for itself
    assert again.outcome == outcome
    assert len(server.queries) > sent_first
    assert len(batch.answers or ()) == 0


async def test_runs_with_other_resolvers_do_not_share(
    server: DnsServer, other_server: DnsServer
) -> None:
    # Given a batch whose targets use different resolvers
    batch = SharedResults(clock=Clock())
    before, other_before = len(server.queries), len(other_server.queries)
    # When a run of each asks the same question
    await ask(batch, "mx.short.test", "A", server)
    await ask(batch, "mx.short.test", "A", other_server)
    # And a run asks both, in another order
    await ask(batch, "mx.short.test", "A", other_server, server)
    # Then each resolver list was asked for itself
    assert sent(server, before) == {("mx.short.test", "A"): 1}
    assert sent(other_server, other_before) == {("mx.short.test", "A"): 2}


async def test_a_dnssec_question_is_not_answered_from_a_plain_one_of_another_run(
    server: DnsServer,
) -> None:
    batch = SharedResults(clock=Clock())
    before = len(server.queries)
    async with RunContext(options(server), shared_results=batch) as ctx:
        await lookup(ctx, "short.test", "MX")
    async with RunContext(options(server), shared_results=batch) as ctx:
        await lookup(ctx, "short.test", "MX", dnssec=True)
    assert sent(server, before) == {("short.test", "MX"): 2}


async def test_without_sharing_every_run_asks(server: DnsServer) -> None:
    # Given a batch that shares nothing (--no-share)
    batch = SharedResults(checks=False, clock=Clock())
    before = len(server.queries)
    # When two runs ask the same question
    for _ in range(2):
        await ask(batch, "mx.short.test", "AAAA", server)
    # Then both went out
    assert batch.answers is None
    assert sent(server, before) == {("mx.short.test", "AAAA"): 2}


def batch_of(server: DnsServer, count: int) -> BatchConfig:
    """``count`` targets of one provider (the short.test MX host), checked by the DNS probe."""
    settings = {"tests": ["dns"], "resolver": [f"{server.address}:{server.port}"],
                "timeout": 20}
    return BatchConfig(
        source="test",
        base=Path("."),
        targets=tuple(
            TargetSpec(name=f"t{i}", target="short.test", settings=settings)
            for i in range(count)
        ),
    )


@pytest.mark.parametrize(("share", "mx_asked"), [(True, 1), (False, 3)])
def test_a_batch_asks_about_a_provider_host_once_unless_told_not_to_share(
    server: DnsServer, tmp_path: Path, share: bool, mx_asked: int
) -> None:
    # Given three targets naming one MX host, checked one after the other
    before = len(server.queries)
    # When the batch runs, with or without --no-share
    asyncio.run(run_batch(batch_of(server, 3), out=tmp_path, concurrency=1, writers=0,
                          share=share))
    # Then the MX host's address was asked once, or once per target
    assert sent(server, before)[("mx.short.test", "A")] == mx_asked
    # And every report holds the same findings
    findings = {
        tuple(sorted((f.code, f.status, f.detail) for _, f in load_report(
            tmp_path / f"t{i}.json").findings()))
        for i in range(3)
    }
    assert len(findings) == 1


def test_the_least_recently_used_answer_goes_first_when_full() -> None:
    clock = Clock()
    answers = SharedAnswers(clock=clock, max_entries=2)
    answers.put("a", 1, 60)
    answers.put("b", 2, 60)
    assert answers.get("a") == 1  # "b" is now the least recently used
    answers.put("c", 3, 60)
    assert (answers.get("a"), answers.get("b"), answers.get("c")) == (1, None, 3)


def test_nothing_is_kept_for_a_ttl_of_zero() -> None:
    answers = SharedAnswers(clock=Clock())
    answers.put("a", 1, 0)
    assert answers.get("a") is None
    assert len(answers) == 0
