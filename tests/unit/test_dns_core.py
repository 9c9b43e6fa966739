"""The DNS resolution core and probe against a loopback authoritative server."""

from __future__ import annotations

import pytest

from analyzer.api import check
from analyzer.core.context import Nameserver, RunContext, RunOptions
from analyzer.core.model import Status
from analyzer.core.targets import parse_target
from analyzer.protocols.resolve import lookup
from reports.html import render
from reports.json import dumps
from tests.servers.dnsserver import DnsServer


def options(server: DnsServer, **kw: object) -> RunOptions:
    return RunOptions(nameservers=(Nameserver(server.address, server.port),), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "rdtype", "outcome"),
    [
        ("example.test", "MX", "answer"),
        ("nothere.example.test", "A", "nxdomain"),
        ("example.test", "TXT", "nodata"),
        ("broken.example.test", "A", "servfail"),
        ("other.invalid", "A", "refused"),
    ],
)
async def test_lookup_keeps_outcomes_apart(
    example_dns: DnsServer, name: str, rdtype: str, outcome: str
) -> None:
    async with RunContext(options(example_dns)) as ctx:
        found = await lookup(ctx, name, rdtype)
    assert found.outcome == outcome


async def test_timeout_is_its_own_outcome(example_dns: DnsServer) -> None:
    # Given a name the server never answers, and a short operation timeout
    async with RunContext(options(example_dns, op_timeout=0.3)) as ctx:
        found = await lookup(ctx, "slow.example.test", "A")
    # Then the look-up says timeout, not "missing"
    assert found.outcome == "timeout"
    assert not found.definitive


async def test_cname_chain_is_followed_and_shown(example_dns: DnsServer) -> None:
    async with RunContext(options(example_dns)) as ctx:
        found = await lookup(ctx, "mx2.example.test", "A")
    assert found.outcome == "answer"
    assert found.texts() == ["127.0.2.25"]
    assert found.cname_chain == ("mx2.example.test → mx1.example.test",)


async def test_cname_loop_is_detected(example_dns: DnsServer) -> None:
    async with RunContext(options(example_dns)) as ctx:
        found = await lookup(ctx, "loop1.example.test", "A")
    assert found.cname_loop
    assert found.outcome == "error"


async def test_truncated_udp_answer_falls_back_to_tcp(example_dns: DnsServer) -> None:
    # Given a server that sets TC over UDP for this name (it has no records: NXDOMAIN via TCP)
    async with RunContext(options(example_dns)) as ctx:
        found = await lookup(ctx, "big.example.test", "A")
    assert found.outcome == "nxdomain"
    assert ("big.example.test", "A") in example_dns.queries


async def test_dns_probe_reports_mx_and_publishes_facts(example_dns: DnsServer) -> None:
    # When the DNS probe checks example.test
    report = await check(parse_target("alice@example.test"),
                         options(example_dns, timeout=10, tests=("dns",)))
    (result,) = report.results
    # Then it found both MX hosts, warned about the CNAME one, and published the fact
    codes = {f.code: f.status for f in result.findings()}
    assert codes["dns.mx.found"] == Status.PASS
    assert codes["dns.mx.cname"] == Status.WARN
    mx = result.facts["mx_hosts"]
    assert [(m["preference"], m["host"]) for m in mx] == [(10, "mx1.example.test"),  # type: ignore[index]
                                                           (20, "mx2.example.test")]
    assert mx[0]["ipv6"] == ["::1"]  # type: ignore[index]
    # And both reports render
    assert "dns.mx.cname" in render(report)
    assert '"dns.mx.cname"' in dumps(report)


@pytest.mark.parametrize(
    ("target", "code", "status"),
    [
        ("nomx.test", "dns.mx.missing", Status.WARN),
        ("nullmx.test", "dns.mx.null", Status.WARN),
        ("nothere.example.test", "dns.nxdomain", Status.FAIL),
        ("broken.example.test", "dns.servfail", Status.FAIL),
    ],
)
async def test_dns_probe_findings(
    example_dns: DnsServer, target: str, code: str, status: Status
) -> None:
    report = await check(parse_target(target),
                         options(example_dns, timeout=10, op_timeout=1, tests=("dns",)))
    found = {(f.code, f.status) for _, f in report.findings()}
    assert (code, status) in found


async def test_dns_probe_timeout_is_inconclusive(example_dns: DnsServer) -> None:
    report = await check(parse_target("slow.example.test"),
                         options(example_dns, timeout=10, op_timeout=0.3, tests=("dns",)))
    found = {f.code: f.status for _, f in report.findings()}
    assert found["dns.timeout"] == Status.INCONCLUSIVE
    assert Status.FAIL not in found.values()
