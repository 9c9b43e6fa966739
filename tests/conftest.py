"""Shared fixtures, and a guard that keeps every test's traffic on this machine.

The guard wraps ``socket.connect``/``sendto`` for the whole session: a test may talk to
loopback, and to the lab's addresses (198.18.0.0/15, 2001:db8::/32) only once the lab
fixture has moved the test process into the lab's isolated client namespace. Anything
else fails the test at once instead of sending a packet to the outside world.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers.dnsserver import DnsServer, dns_server

#: The lab fixtures (``lab``, ``lab_resolver``...): real servers in network namespaces.
pytest_plugins = ["tests.lab.conftest_lab"]

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_LAB = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
#: Set by the lab fixture once the process is inside the lab's client namespace.
LAB_NAMESPACE_ENTERED = {"value": False}


def _check_destination(address: Any) -> None:
    if not isinstance(address, tuple) or not address:
        return  # AF_UNIX paths and the like
    host = address[0]
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        raise AssertionError(f"test tried to connect to a name, not an address: {host!r}") from None
    if any(ip in net for net in _LOOPBACK):
        return
    if LAB_NAMESPACE_ENTERED["value"] and any(ip in net for net in _LAB):
        return
    raise AssertionError(f"test traffic to {ip} refused: only loopback and the lab are allowed")


def _guard(method: Any) -> Any:
    def guarded(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_destination(address if not args else args[-1])
        return method(self, address, *args)

    return guarded


_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_sendto = socket.socket.sendto
socket.socket.connect = _guard(_original_connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guard(_original_connect_ex)  # type: ignore[method-assign]


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_destination(args[-1])
    return _original_sendto(self, data, *args)


socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign]


EXAMPLE_ZONE = """
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 300
@        IN NS  ns1
@        IN A   127.0.2.10
@        IN MX  10 mx1
@        IN MX  20 mx2
mx1      IN A    127.0.2.25
mx1      IN AAAA ::1
mx2      IN CNAME mx1
ns1      IN A   127.0.2.53
loop1    IN CNAME loop2
loop2    IN CNAME loop1
"""
REVERSE_V4_ZONE = """
$TTL 300
@        IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@        IN NS  ns1.example.test.
25       IN PTR mx1.example.test.
10       IN PTR example.test.
"""
REVERSE_V6_ZONE = """
$TTL 300
@        IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@        IN NS  ns1.example.test.
@        IN PTR mx1.example.test.
"""
NOMX_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN A 127.0.2.11
"""
NULLMX_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN MX 0 .
"""


@pytest.fixture(scope="module")
def example_dns() -> Iterator[DnsServer]:
    """A loopback authoritative server for example.test and friends.

    Module-scoped on purpose: a socket belongs to the network namespace it was made in,
    and the lab fixture moves the test process into the lab's client namespace; a server
    made before that move would be unreachable after it.
    """
    with dns_server(
        {
            "example.test.": EXAMPLE_ZONE,
            "nomx.test.": NOMX_ZONE,
            "nullmx.test.": NULLMX_ZONE,
            "2.0.127.in-addr.arpa.": REVERSE_V4_ZONE,
            "1." + "0." * 31 + "ip6.arpa.": REVERSE_V6_ZONE,
        },
        {"slow.example.test": "drop", "broken.example.test": "servfail",
         "big.example.test": "truncate"},
    ) as server:
        yield server
