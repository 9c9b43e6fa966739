"""DNS and mail-authentication probes against a DNS server that serves hostile data.

Malformed TXT (non-UTF-8 bytes, 255-byte character-strings), thousands of TXT records,
SPF include loops and fan-out bombs, CNAME loops: each ends as a finding within the
deadline, never a crash.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from analyzer.api import check
from analyzer.core.context import Nameserver, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from reports.html import render
from reports.json import dumps
from tests.servers.dnsserver import DnsServer, dns_server

SOA = "@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 127.0.9.53\n"


def zone(body: str) -> str:
    return "$TTL 300\n" + SOA + body


ZONES = {
    # Non-UTF-8 bytes in SPF and DMARC (\255 is a raw byte in zone-file text).
    "binary.test.": zone('@ IN TXT "v=spf1 ip4:127.0.0.1 \\255\\254 -all"\n'
                         '_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:\\255@binary.test"\n'),
    # An SPF record split across 255-byte character-strings.
    "split.test.": zone('@ IN TXT "v=spf1 ' + "ip4:127.0.0.1 " * 17 + '" "' + "ip4:127.0.0.2 " * 17
                        + ' -all"\n'),
    # Thousands of TXT records at the apex (the answer needs TCP; it stays under 64 KiB).
    "many.test.": zone("".join(f'@ IN TXT "j{i}"\n' for i in range(2500))
                       + '@ IN TXT "v=spf1 -all"\n'),
    # SPF include loop and a fan-out bomb (each include includes ten more).
    "loop.test.": zone('@ IN TXT "v=spf1 include:a.loop.test -all"\n'
                       'a IN TXT "v=spf1 include:b.loop.test -all"\n'
                       'b IN TXT "v=spf1 include:loop.test -all"\n'),
    "bomb.test.": zone(
        '@ IN TXT "v=spf1 ' + " ".join(f"include:l{i}.bomb.test" for i in range(10)) + ' -all"\n'
        + "".join(f'l{i} IN TXT "v=spf1 '
                  + " ".join(f"include:l{i}x{j}.bomb.test" for j in range(10)) + ' -all"\n'
                  for i in range(10))
    ),
    # CNAME loop at the domain's MX target.
    "cnameloop.test.": zone("@ IN MX 10 mx\nmx IN CNAME mx2\nmx2 IN CNAME mx\n"),
}


@pytest.fixture(scope="module")
def hostile_dns() -> Iterator[DnsServer]:
    with dns_server(ZONES) as server:
        yield server


async def run(server: DnsServer, domain: str, tests: tuple[str, ...]) -> Report:
    options = RunOptions(nameservers=(Nameserver(server.address, server.port),), tests=tests,
                         timeout=20, op_timeout=3)
    return await check(parse_target(domain), options)


def codes(report: Report) -> dict[str, Status]:
    return {f.code: f.status for _, f in report.findings()}


@pytest.mark.parametrize(
    ("domain", "code", "status"),
    [
        ("binary.test", "dns.spf.syntax", Status.FAIL),
        ("split.test", "dns.spf.valid", Status.PASS),
        ("many.test", "dns.spf.valid", Status.PASS),
        ("loop.test", "dns.spf.include_loop", Status.FAIL),
        ("bomb.test", "dns.spf.too_many_lookups", Status.FAIL),
    ],
)
async def test_hostile_mail_records_end_as_findings(
    hostile_dns: DnsServer, domain: str, code: str, status: Status
) -> None:
    # Given a domain whose records are built to hurt
    t0 = time.monotonic()
    # When the mail-authentication checks run
    report = await run(hostile_dns, domain, ("mailauth",))
    # Then the right finding comes, in time, and nothing crashed
    assert time.monotonic() - t0 < 20
    found = codes(report)
    assert found.get(code) == status, found
    assert "probe.crashed" not in found
    assert code in render(report) and code in dumps(report)


async def test_cname_loop_at_the_mx_is_reported(hostile_dns: DnsServer) -> None:
    report = await run(hostile_dns, "cnameloop.test", ("dns",))
    found = codes(report)
    assert found.get("dns.cname.loop") == Status.FAIL, found
