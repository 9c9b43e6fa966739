"""A batch of domains hosted by one provider asks the DNS about the provider's hosts once.

Three customer domains, each with its MX on the lab's ``mx.<healthy>`` host, are served by a
small loopback server of the test that passes every other question on to the lab's NSD and
counts each question it sees. The batch runs the real dns, ports and tls probes against the
real lab servers, once sharing (the default) and once with ``--no-share``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.core.model import Report
from analyzer.lab import LabInfo
from analyzer.operations.batch import BatchConfig, TargetSpec, run_batch
from analyzer.operations.history import load_report
from tests.servers.dnsserver import DnsServer, dns_server

pytestmark = pytest.mark.lab

CUSTOMERS = ("hosted-one.test", "hosted-two.test", "hosted-three.test")


def customer_zone(mx: str) -> str:
    return f"""
$TTL 300
@  IN SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 300
@  IN NS  ns.lab.test.
@  IN MX  10 {mx}.
@  IN TXT "v=spf1 mx -all"
"""


@pytest.fixture(scope="module")
def counting(lab: LabInfo) -> Iterator[DnsServer]:
    """The customers' zones, and everything else from the lab's NSD, every question counted."""
    mx = lab.scenario("healthy").host("mx").name
    with dns_server(
        {f"{domain}.": customer_zone(mx) for domain in CUSTOMERS},
        upstream=(lab.resolver, 53),
    ) as server:
        yield server


def run(lab: LabInfo, server: DnsServer, out: Path, *, share: bool) -> Counter[tuple[str, str]]:
    """Check the customers one after the other; the questions the batch asked."""
    settings: dict[str, Any] = {
        "tests": ["dns", "ports", "tls"],
        "resolver": [f"{server.address}:{server.port}"],
        "ca_file": str(lab.ca_file),
        "timeout": 40,
    }
    config = BatchConfig(
        source="test",
        base=Path("."),
        targets=tuple(TargetSpec(name=d, target=d, settings=settings) for d in CUSTOMERS),
    )
    before = len(server.queries)
    asyncio.run(run_batch(config, out=out, concurrency=1, writers=0, share=share))
    return Counter(server.queries[before:])


@pytest.fixture(scope="module")
def both(
    lab: LabInfo, counting: DnsServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[bool, tuple[Counter[tuple[str, str]], Path]]:
    runs = {}
    for share in (True, False):
        out = tmp_path_factory.mktemp(f"share-{share}")
        runs[share] = (run(lab, counting, out, share=share), out)
    return runs


def provider_questions(lab: LabInfo, asked: Counter[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """How often each question about the provider's MX host was asked: its addresses, their
    PTR records (the reverse zones hold only lab hosts)."""
    mx = lab.scenario("healthy").host("mx").name
    return {
        q: n for q, n in asked.items()
        if q[0] == mx or q[0].endswith((".in-addr.arpa", ".ip6.arpa"))
    }


def test_the_provider_host_questions_are_asked_once_per_batch(
    lab: LabInfo, both: dict[bool, tuple[Counter[tuple[str, str]], Path]]
) -> None:
    # Given three domains whose MX is the same provider host, checked by one batch
    asked, _ = both[True]
    provider = provider_questions(lab, asked)
    # Then its addresses and PTR records were each asked about once
    mx = lab.scenario("healthy").host("mx").name
    assert (mx, "A") in provider and (mx, "AAAA") in provider
    assert any(rdtype == "PTR" for _, rdtype in provider)
    assert provider == dict.fromkeys(provider, 1)
    # While each domain's own records were asked for each domain
    for domain in CUSTOMERS:
        assert asked[(domain, "MX")] == 1


def test_without_sharing_each_domain_asks_again(
    lab: LabInfo, both: dict[bool, tuple[Counter[tuple[str, str]], Path]]
) -> None:
    asked, _ = both[False]
    provider = provider_questions(lab, asked)
    assert provider
    assert provider == dict.fromkeys(provider, len(CUSTOMERS))


def content(report: Report) -> list[Any]:
    """What a report says, without when or how long: each result's subject and status, each
    step's title and status, and each finding; of the DNS findings (no times in them) their
    detail and evidence too (the Lookup records)."""

    def steps(probe: str, items: Any) -> list[Any]:
        return [
            (s.title, s.status,
             [(f.code, f.status, *((f.detail, f.evidence) if probe == "dns" else ()))
              for f in s.findings],
             steps(probe, s.children))
            for s in items
        ]

    return sorted(
        ((r.probe, r.subject, r.status, steps(r.probe, r.steps)) for r in report.results),
        key=repr,
    )


def test_the_reports_say_the_same_with_and_without_sharing(
    both: dict[bool, tuple[Counter[tuple[str, str]], Path]],
) -> None:
    (_, shared_out), (_, alone_out) = both[True], both[False]
    for domain in CUSTOMERS:
        shared, alone = (load_report(out / f"{domain}.json") for out in (shared_out, alone_out))
        dns_shared = [r for r in shared.results if r.probe == "dns"]
        assert dns_shared and dns_shared[0].findings()
        assert content(shared) == content(alone)
