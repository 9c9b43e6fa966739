"""Shared fixtures: the loopback DNS zone used by tests that need no lab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.dnsserver import DnsServer, dns_server

EXAMPLE_ZONE = """
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 300
@        IN NS  ns1
@        IN A   192.0.2.10
@        IN MX  10 mx1
@        IN MX  20 mx2
mx1      IN A    192.0.2.25
mx1      IN AAAA 2001:db8::25
mx2      IN CNAME mx1
ns1      IN A   192.0.2.53
loop1    IN CNAME loop2
loop2    IN CNAME loop1
"""
NOMX_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN A 192.0.2.11
"""
NULLMX_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN MX 0 .
"""


@pytest.fixture(scope="session")
def example_dns() -> Iterator[DnsServer]:
    """A loopback authoritative server for example.test and friends."""
    with dns_server(
        {"example.test.": EXAMPLE_ZONE, "nomx.test.": NOMX_ZONE, "nullmx.test.": NULLMX_ZONE},
        {"slow.example.test": "drop", "broken.example.test": "servfail",
         "big.example.test": "truncate"},
    ) as server:
        yield server
