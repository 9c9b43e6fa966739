"""DNSSEC validation against zones signed here and served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from analyzer.api import check
from analyzer.core.context import Nameserver, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from tests.servers.dnsserver import DnsServer, dns_server

NOW = datetime.now(UTC).replace(microsecond=0)
BASE = """
$TTL 300
@    IN SOA ns1 hostmaster 1 3600 600 86400 300
@    IN NS  ns1
@    IN MX  10 mx
mx   IN A   127.0.2.25
ns1  IN A   127.0.2.53
"""


def signed_zone(origin: str, *, inception: datetime, expiration: datetime,
                tamper: bool = False) -> tuple[str, str]:
    """(zone text, DS anchor line) for ``origin`` signed with a fresh P-256 key."""
    zone = dns.zone.from_text(BASE, origin=origin, relativize=False)
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                    flags=257)
    with zone.writer() as txn:
        dns.dnssec.sign_zone(zone, txn=txn, keys=[(key, dnskey)], inception=inception,
                             expiration=expiration)
    text = zone.to_text(relativize=False)
    if tamper:
        text = text.replace("127.0.2.25", "127.0.2.66")
    ds = dns.dnssec.make_ds(dns.name.from_text(origin), dnskey, "SHA256")
    return text, f"{origin} IN DS {ds.to_text()}\n"


@pytest.fixture(scope="module")
def signed_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DnsServer, Path]]:
    day = timedelta(days=1)
    good, good_ds = signed_zone("good.test.", inception=NOW - day, expiration=NOW + 30 * day)
    old, old_ds = signed_zone("expired.test.", inception=NOW - 30 * day, expiration=NOW - day)
    soon, soon_ds = signed_zone("soon.test.", inception=NOW - day, expiration=NOW + 3 * day)
    bad, bad_ds = signed_zone("tampered.test.", inception=NOW - day, expiration=NOW + 30 * day,
                              tamper=True)
    _, other_ds = signed_zone("mismatch.test.", inception=NOW - day, expiration=NOW + day)
    mism, _ = signed_zone("mismatch.test.", inception=NOW - day, expiration=NOW + 30 * day)
    anchors = tmp_path_factory.mktemp("anchors") / "anchors.txt"
    anchors.write_text(good_ds + old_ds + soon_ds + bad_ds + other_ds)
    zones = {"good.test.": good, "expired.test.": old, "soon.test.": soon,
             "tampered.test.": bad, "mismatch.test.": mism,
             "plain.test.": BASE}
    with dns_server(zones) as server:
        yield server, anchors


async def run_dnssec(server: DnsServer, anchors: Path, domain: str) -> Report:
    options = RunOptions(nameservers=(Nameserver(server.address, server.port),),
                         trust_anchor_file=anchors, tests=("dns", "dnssec"), timeout=20,
                         op_timeout=2)
    return await check(parse_target(domain), options)


def codes(report: Report, probe: str = "dnssec") -> dict[str, Status]:
    return {f.code: f.status for r, f in report.findings() if r.probe == probe}


@pytest.mark.parametrize(
    ("domain", "code", "status"),
    [
        ("good.test", "dns.dnssec.signed", Status.PASS),
        ("expired.test", "dns.dnssec.signature_expired", Status.FAIL),
        ("soon.test", "dns.dnssec.signature_expiring", Status.WARN),
        ("tampered.test", "dns.dnssec.bogus", Status.FAIL),
        ("mismatch.test", "dns.dnssec.bogus", Status.FAIL),
        ("plain.test", "dns.dnssec.unsigned", Status.PASS),
    ],
)
async def test_dnssec_states(
    signed_dns: tuple[DnsServer, Path], domain: str, code: str, status: Status
) -> None:
    server, anchors = signed_dns
    report = await run_dnssec(server, anchors, domain)
    found = codes(report)
    assert found.get(code) == status, found


async def test_secure_zone_publishes_state_for_dane(signed_dns: tuple[DnsServer, Path]) -> None:
    server, anchors = signed_dns
    report = await run_dnssec(server, anchors, "good.test")
    facts = next(r.facts for r in report.results if r.probe == "dnssec" and r.facts)
    assert facts["dnssec_zones"]["good.test"] == "secure"  # type: ignore[index]
    assert facts["dnssec_zones"]["mx.good.test"] == "secure"  # type: ignore[index]


async def test_secure_zone_has_no_failure(signed_dns: tuple[DnsServer, Path]) -> None:
    server, anchors = signed_dns
    report = await run_dnssec(server, anchors, "good.test")
    assert Status.FAIL not in codes(report).values()


def test_unreadable_trust_anchor_is_a_usage_error(tmp_path: Path) -> None:
    from analyzer.core.errors import UsageError
    from probes.dnssec import load_trust_anchors

    bad = tmp_path / "bad"
    bad.write_text("this is not a DS record\n")
    with pytest.raises(UsageError):
        load_trust_anchors(bad)
    _ = dns.rdatatype


def test_an_expired_signature_is_reported_only_on_the_names_whose_chain_holds_it() -> None:
    # Given signatures seen while several names were validated together: an expired one
    # in the MX host's own zone, a valid one at the root
    from probes.dnssec import _expiry_findings, _Walk

    now = datetime(2026, 3, 1, tzinfo=UTC)
    name = dns.name.from_text
    walk = _Walk(ctx=None, anchors={}, now=now)  # type: ignore[arg-type]
    walk.expiries += [
        (name("."), "DNSKEY .", now + timedelta(days=20)),
        (name("mx-zone.test."), "DNSKEY mx-zone.test.", now - timedelta(days=1)),
        (name("example.test."), "MX example.test.", now + timedelta(days=20)),
    ]

    class Step:
        def __init__(self) -> None:
            self.findings: list[object] = []

        def add(self, finding: object) -> None:
            self.findings.append(finding)

    # When the domain's findings are made, then the other zone's expiry is not among them
    domain = Step()
    _expiry_findings(domain, walk, name("example.test."), name("example.test."))  # type: ignore[arg-type]
    expired = "dns.dnssec.signature_expired"
    assert not any(getattr(f, "code", "") == expired for f in domain.findings)
    # And the MX host's name, whose zone it is, gets it
    mx = Step()
    _expiry_findings(mx, walk, name("mx-zone.test."), name("mx.mx-zone.test."))  # type: ignore[arg-type]
    assert any(getattr(f, "code", "") == expired for f in mx.findings)
