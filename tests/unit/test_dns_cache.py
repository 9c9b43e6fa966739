"""The per-run DNS cache: each question asked once per run, counted at a loopback server."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from analyzer.api import check
from analyzer.core.context import Nameserver, RunContext, RunOptions
from analyzer.core.targets import parse_target
from analyzer.protocols.resolve import lookup
from tests.servers.dnsserver import DnsServer


def options(server: DnsServer, **kw: object) -> RunOptions:
    return RunOptions(nameservers=(Nameserver(server.address, server.port),), **kw)  # type: ignore[arg-type]


def asked(server: DnsServer, since: int) -> Counter[tuple[str, str]]:
    return Counter(server.queries[since:])


async def test_a_run_of_every_dns_probe_asks_no_question_twice(example_dns: DnsServer) -> None:
    # Given the probes that read the DNS (SRV targets, MX addresses, the PTR forward
    # check and the Autodiscover SRV are asked by more than one of them)
    before = len(example_dns.queries)
    tests = ("dns", "dnssec", "mailauth", "autodiscover", "autoconfig")
    # When one run checks a domain
    await check(parse_target("example.test"), options(example_dns, tests=tests, timeout=20))
    # Then the server saw each question once
    counts = asked(example_dns, before)
    assert counts, "the run asked nothing"
    assert {q: n for q, n in counts.items() if n > 1} == {}


async def test_concurrent_identical_questions_share_one_query(example_dns: DnsServer) -> None:
    # Given five probes asking the same question at the same time
    before = len(example_dns.queries)
    async with RunContext(options(example_dns)) as ctx:
        found = await asyncio.gather(*(lookup(ctx, "mx1.example.test", "A") for _ in range(5)))
    # Then one query went out, and each got its answer
    assert asked(example_dns, before) == {("mx1.example.test", "A"): 1}
    assert {tuple(f.texts()) for f in found} == {("127.0.2.25",)}


async def test_names_differing_in_case_are_one_question(example_dns: DnsServer) -> None:
    before = len(example_dns.queries)
    async with RunContext(options(example_dns)) as ctx:
        first = await lookup(ctx, "MX1.Example.Test", "A")
        second = await lookup(ctx, "mx1.example.test.", "A")
    assert len(example_dns.queries) - before == 1
    assert first.texts() == second.texts() == ["127.0.2.25"]


async def test_negative_answers_are_kept_for_the_run(example_dns: DnsServer) -> None:
    # Given a name that does not exist and a name without the type asked for
    before = len(example_dns.queries)
    async with RunContext(options(example_dns)) as ctx:
        # When each is asked twice in one run
        outcomes = [
            (await lookup(ctx, name, rdtype)).outcome
            for name, rdtype in [("nothere.example.test", "A"), ("example.test", "TXT")] * 2
        ]
    # Then each went out once, and both times gave the same outcome
    assert outcomes == ["nxdomain", "nodata", "nxdomain", "nodata"]
    assert asked(example_dns, before) == {
        ("nothere.example.test", "A"): 1,
        ("example.test", "TXT"): 1,
    }


async def test_a_timeout_is_not_waited_for_twice(example_dns: DnsServer) -> None:
    # Given a name the server never answers
    async with RunContext(options(example_dns, op_timeout=0.3)) as ctx:
        first = await lookup(ctx, "slow.example.test", "A")
        sent = len(example_dns.queries)
        # When it is asked again in the same run
        second = await lookup(ctx, "slow.example.test", "A")
    # Then the run's view stays the same and nothing more was sent
    assert first.outcome == second.outcome == "timeout"
    assert len(example_dns.queries) == sent


async def test_another_run_asks_afresh(example_dns: DnsServer) -> None:
    # Given two runs (a diagnostic never reuses a past run's answers)
    before = len(example_dns.queries)
    for _ in range(2):
        async with RunContext(options(example_dns)) as ctx:
            await lookup(ctx, "mx1.example.test", "AAAA")
    # Then each asked for itself
    assert asked(example_dns, before) == {("mx1.example.test", "AAAA"): 2}


async def test_a_dnssec_question_is_not_answered_from_a_plain_one(
    example_dns: DnsServer,
) -> None:
    # Given the same name and type asked without and with DNSSEC records (the DO bit)
    before = len(example_dns.queries)
    async with RunContext(options(example_dns)) as ctx:
        await lookup(ctx, "example.test", "MX")
        await lookup(ctx, "example.test", "MX", dnssec=True)
    # Then both went out: the answers differ (signatures)
    assert asked(example_dns, before) == {("example.test", "MX"): 2}


async def test_the_system_resolver_configuration_is_read_once_per_run(
    example_dns: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a system configuration (stood in for: it names the loopback server)
    import dns.resolver

    reads: list[int] = []

    class SystemResolver:
        def __init__(self) -> None:
            reads.append(1)
            self.nameservers = [example_dns.address]
            self.port = example_dns.port
            self.nameserver_ports: dict[str, int] = {}

    monkeypatch.setattr(dns.resolver, "Resolver", SystemResolver)
    # When a run without --resolver asks three questions
    async with RunContext(RunOptions()) as ctx:
        found = [await lookup(ctx, "mx1.example.test", t) for t in ("A", "AAAA", "MX")]
    # Then the configuration was read once, and the questions went to its server
    assert reads == [1]
    assert [f.outcome for f in found] == ["answer", "answer", "nodata"]


def test_each_resolver_keeps_its_own_port() -> None:
    options = RunOptions(nameservers=(Nameserver("127.0.0.1", 5353), Nameserver("::1")))
    assert RunContext(options).nameservers() == (("127.0.0.1", 5353), ("::1", 53))
