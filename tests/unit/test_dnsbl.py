"""DNS block-list look-ups (opt-in) against a loopback DNS server acting as the list."""

from __future__ import annotations

import pytest

from analyzer.api import check
from analyzer.core.context import Nameserver, RunOptions
from analyzer.core.model import Status
from analyzer.core.targets import parse_target
from probes.dnsbl import query_name
from tests.servers.dnsserver import dns_server

ZONE = """$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 127.0.9.53
@ IN MX 10 mx
mx IN A 127.0.3.25
mx IN AAAA ::1
"""
LIST = """$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1.listed.test.
25.3.0.127 IN A 127.0.0.2
25.3.0.127 IN TXT "listed for testing: see https://bl.test/lookup"
"""


@pytest.mark.parametrize(
    ("address", "zone", "expected"),
    [
        ("192.0.2.99", "zen.example", "99.2.0.192.zen.example"),
        ("2001:db8::1", "bl.example",
         "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example"),
    ],
)
def test_query_name(address: str, zone: str, expected: str) -> None:
    assert query_name(address, zone) == expected


async def test_listed_and_unlisted_addresses() -> None:
    # Given a domain whose MX IPv4 address is listed in bl.test, and the IPv6 one is not
    with dns_server({"listed.test.": ZONE, "bl.test.": LIST}) as server:
        options = RunOptions(nameservers=(Nameserver(server.address, server.port),),
                             tests=("dns",), dnsbl=("bl.test",), timeout=20, op_timeout=2)
        # When the check runs with --dnsbl (the probe is opt-in, turned on by the option)
        report = await check(parse_target("listed.test"), options)
    found = [(f.code, f.status, f.detail) for r, f in report.findings() if r.probe == "dnsbl"]
    # Then the IPv4 address is listed with the list's reason, the IPv6 one is not
    assert ("dnsbl.listed", Status.FAIL) in {(c, s) for c, s, _ in found}
    assert ("dnsbl.not_listed", Status.PASS) in {(c, s) for c, s, _ in found}
    listed = next(d for c, _, d in found if c == "dnsbl.listed")
    assert "listed for testing" in listed and "127.0.0.2" in listed


async def test_dnsbl_is_off_by_default() -> None:
    with dns_server({"listed.test.": ZONE}) as server:
        options = RunOptions(nameservers=(Nameserver(server.address, server.port),),
                             tests=("dns",), timeout=20, op_timeout=2)
        report = await check(parse_target("listed.test"), options)
    assert not [r for r in report.results if r.probe == "dnsbl"]


async def test_an_answer_outside_127_is_not_a_listing() -> None:
    # Given a "list" whose resolver rewrites NXDOMAIN to an ad server's address
    rewritten = LIST.replace("127.0.0.2", "192.0.2.80")
    with dns_server({"listed.test.": ZONE, "bl.test.": rewritten}) as server:
        options = RunOptions(nameservers=(Nameserver(server.address, server.port),),
                             tests=("dns",), dnsbl=("bl.test",), timeout=20, op_timeout=2)
        report = await check(parse_target("listed.test"), options)
    found = {(f.code, f.status) for r, f in report.findings() if r.probe == "dnsbl"}
    # Then it is inconclusive, never "listed"
    assert ("dnsbl.lookup_failed", Status.INCONCLUSIVE) in found
    assert not any(code == "dnsbl.listed" for code, _ in found)
