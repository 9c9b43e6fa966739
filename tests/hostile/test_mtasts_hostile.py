"""The MTA-STS policy fetch against a hostile HTTPS server: 10 MB, trickling, garbage.

RFC 8461 fixes the policy URL at https://mta-sts.<domain>/ on port 443, so the server
binds 127.0.0.7:443 (a loopback address of its own; the suite runs as root) and the
probe is pointed at it with --connect.
"""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime

import pytest

from analyzer.api import check
from analyzer.core.context import Nameserver, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from analyzer.lab.pki import CertSpec, LabPKI
from tests.servers.dnsserver import dns_server
from tests.servers.tcp import Script, huge_line, say, serve, tls_then, trickle

ADDRESS = "127.0.0.7"
ZONE = """$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 127.0.9.53
_mta-sts IN TXT "v=STSv1; id=hostile1"
"""


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, LabPKI]:
    pki = LabPKI.create(tmp_path_factory.mktemp("pki"), now=datetime.now(UTC))
    cert = pki.issue(CertSpec(name="mta-sts", dns_names=("mta-sts.hostile.test",)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    return ctx, pki


async def fetch_policy(script: Script, tls: tuple[ssl.SSLContext, LabPKI]) -> Report:
    ctx, pki = tls
    with dns_server({"hostile.test.": ZONE}) as dns, \
            serve(tls_then(ctx, script), address=ADDRESS, port=443):
        options = RunOptions(
            nameservers=(Nameserver(dns.address, dns.port),), tests=("mailauth",),
            connect={"mta-sts.hostile.test": (ADDRESS,)}, ca_file=pki.ca_file,
            timeout=20, op_timeout=2,
        )
        return await check(parse_target("hostile.test"), options)


def _headers(length: int) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(length).encode() + b"\r\n\r\n")


@pytest.mark.parametrize(
    "script",
    [
        say(_headers(10 * 1024 * 1024), b"version: STSv1\n" * 10),  # announces 10 MB
        say(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"),  # then 10 MB streams
        trickle(_headers(60) + b"version: STSv1\nmode: enforce\n", every=0.5),
        huge_line(2 * 1024 * 1024),  # not even HTTP
    ],
    ids=["announced-10MB", "no-length", "trickle", "garbage"],
)
async def test_hostile_policy_server_is_a_finding_in_time(
    tls_context: tuple[ssl.SSLContext, LabPKI], script: Script
) -> None:
    t0 = time.monotonic()
    report = await fetch_policy(script, tls_context)
    assert time.monotonic() - t0 < 15
    found = {f.code: f.status for _, f in report.findings()}
    assert found.get("dns.mtasts.policy_unavailable") == Status.FAIL, found
    assert "probe.crashed" not in found


async def test_good_policy_over_https_is_read(tls_context: tuple[ssl.SSLContext, LabPKI]) -> None:
    body = b"version: STSv1\r\nmode: testing\r\nmx: mx.hostile.test\r\nmax_age: 86400\r\n"
    report = await fetch_policy(say(_headers(len(body)) + body), tls_context)
    found = {f.code: f.status for _, f in report.findings()}
    assert found.get("dns.mtasts.testing") == Status.WARN, found
