"""The lab's DNS, asked from the client namespace with dnspython."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset
import pytest

from analyzer.lab import LabInfo
from analyzer.lab.zones import dnssec_module

pytestmark = pytest.mark.lab


def test_mx_points_at_the_mx_host(lab: LabInfo, lab_resolver: dns.resolver.Resolver) -> None:
    # Given the healthy scenario
    healthy = lab.scenario("healthy")
    # When its MX is asked for
    answer = lab_resolver.resolve(healthy.domain, "MX")
    # Then there is one, preference 10, naming the mx host
    assert [(r.preference, r.exchange.to_text()) for r in answer] == [
        (10, f"{healthy.hosts['mx'].name}.")
    ]


@pytest.mark.parametrize("role", ["apex", "mx", "mail", "autodiscover", "autoconfig", "mta-sts"])
def test_every_host_has_a_and_aaaa(
    lab: LabInfo, lab_resolver: dns.resolver.Resolver, role: str
) -> None:
    # Given a healthy host
    host = lab.scenario("healthy").hosts[role]
    # When A and AAAA are asked for
    a = [r.address for r in lab_resolver.resolve(host.name, "A")]
    aaaa = [r.address for r in lab_resolver.resolve(host.name, "AAAA")]
    # Then they are the addresses the lab allocated
    assert a == [host.ipv4]
    assert aaaa == [host.ipv6]


@pytest.mark.parametrize(
    ("owner", "port", "role"),
    [
        ("_autodiscover._tcp", 443, "autodiscover"),
        ("_imaps._tcp", 993, "mail"),
        ("_imap._tcp", 143, "mail"),
        ("_pop3s._tcp", 995, "mail"),
        ("_submission._tcp", 587, "mail"),
        ("_submissions._tcp", 465, "mail"),
    ],
)
def test_srv_records(
    lab: LabInfo, lab_resolver: dns.resolver.Resolver, owner: str, port: int, role: str
) -> None:
    # Given the healthy scenario
    healthy = lab.scenario("healthy")
    # When an SRV record is asked for
    answer = list(lab_resolver.resolve(f"{owner}.{healthy.domain}", "SRV"))
    # Then it points at the right host and port
    assert [(r.port, r.target.to_text()) for r in answer] == [
        (port, f"{healthy.hosts[role].name}.")
    ]


def _txt(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]


def test_spf_dmarc_mta_sts_tls_rpt(lab: LabInfo, lab_resolver: dns.resolver.Resolver) -> None:
    # Given the healthy domain
    domain = lab.scenario("healthy").domain
    # When its mail-policy TXT records are read
    spf = _txt(lab_resolver, domain)
    dmarc = _txt(lab_resolver, f"_dmarc.{domain}")
    sts = _txt(lab_resolver, f"_mta-sts.{domain}")
    tlsrpt = _txt(lab_resolver, f"_smtp._tls.{domain}")
    # Then each says what the baseline promises
    assert spf == ["v=spf1 mx -all"]
    assert dmarc == [f"v=DMARC1; p=reject; rua=mailto:dmarc-reports@{domain}"]
    assert len(sts) == 1 and sts[0].startswith("v=STSv1; id=")
    assert tlsrpt == [f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}"]


def test_dkim_record_holds_a_2048_bit_rsa_key(
    lab: LabInfo, lab_resolver: dns.resolver.Resolver
) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    # Given the healthy domain's selector1 DKIM record
    domain = lab.scenario("healthy").domain
    (text,) = _txt(lab_resolver, f"selector1._domainkey.{domain}")
    # When its p= tag is decoded
    tags = dict(t.strip().split("=", 1) for t in text.split(";") if t.strip())
    key = load_der_public_key(base64.b64decode(tags["p"]))
    # Then it is a real RSA-2048 public key
    assert tags["v"] == "DKIM1" and tags["k"] == "rsa"
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048


def test_no_mx_scenario_has_no_mx_but_an_apex_address(
    lab: LabInfo, lab_resolver: dns.resolver.Resolver
) -> None:
    # Given the no-mx scenario
    scenario = lab.scenario("no-mx")
    # When MX and A are asked for
    # Then MX is NODATA (the name exists), and the apex has its address
    with pytest.raises(dns.resolver.NoAnswer):
        lab_resolver.resolve(scenario.domain, "MX")
    assert [r.address for r in lab_resolver.resolve(scenario.domain, "A")] == [
        scenario.hosts["apex"].ipv4
    ]


def test_dns_answers_over_ipv6_and_tcp(lab: LabInfo) -> None:
    # Given the resolver's IPv6 address
    query = dns.message.make_query(lab.scenario("healthy").domain, "MX")
    # When asked over TCP on IPv6
    response = dns.query.tcp(query, lab.resolver6, timeout=3)
    # Then it answers authoritatively
    assert response.flags & dns.flags.AA
    assert response.answer


def test_reverse_lookup_names_the_host(lab: LabInfo, lab_resolver: dns.resolver.Resolver) -> None:
    # Given the healthy MX's addresses
    mx = lab.scenario("healthy").hosts["mx"]
    # When their PTR records are asked for
    names = [
        lab_resolver.resolve(dns.reversename.from_address(a), "PTR")[0].target.to_text()
        for a in (mx.ipv4, mx.ipv6)
    ]
    # Then both name the MX host
    assert names == [f"{mx.name}.", f"{mx.name}."]


def _trust_anchors(lab: LabInfo, rdtype: str) -> dict[dns.name.Name, dns.rrset.RRset]:
    """The records of type ``rdtype`` in the trust-anchor file, by zone."""
    anchors: dict[dns.name.Name, dns.rrset.RRset] = {}
    for line in lab.trust_anchor_file.read_text(encoding="ascii").splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, ttl, rdclass, rtype, text = line.split(maxsplit=4)
        if rtype == rdtype:
            anchors[dns.name.from_text(name)] = dns.rrset.from_text(
                name, int(ttl), rdclass, rtype, text
            )
    return anchors


def test_signed_zone_returns_rrsigs(lab: LabInfo) -> None:
    # Given the signed scenario
    domain = lab.scenario("signed").domain
    # When its MX is asked for with the DO bit
    query = dns.message.make_query(domain, "MX", want_dnssec=True)
    response = dns.query.udp(query, lab.resolver, timeout=3)
    # Then the answer carries an RRSIG over the MX RRset
    types = {(rrset.rdtype, getattr(rrset, "covers", None)) for rrset in response.answer}
    assert (dns.rdatatype.RRSIG, dns.rdatatype.MX) in types


def test_signed_zone_validates_against_the_trust_anchor(lab: LabInfo) -> None:
    dnssec = dnssec_module()
    # Given the trust anchor the lab exported
    domain = dns.name.from_text(lab.scenario("signed").domain)
    anchors = _trust_anchors(lab, "DNSKEY")
    assert domain in anchors
    # When the zone's DNSKEY RRset and its MX RRset are fetched with their signatures
    def fetch(rdtype: str) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
        response = dns.query.tcp(
            dns.message.make_query(domain, rdtype, want_dnssec=True), lab.resolver, timeout=3
        )
        wanted = dns.rdatatype.from_text(rdtype)
        rrset = response.find_rrset(response.answer, domain, dns.rdataclass.IN, wanted)
        sigs = response.find_rrset(
            response.answer, domain, dns.rdataclass.IN, dns.rdatatype.RRSIG, wanted
        )
        return rrset, sigs

    dnskeys, dnskey_sigs = fetch("DNSKEY")
    mx, mx_sigs = fetch("MX")
    # Then the DNSKEY RRset is signed by the anchored KSK, and the MX by a key in it
    dnssec.validate(dnskeys, dnskey_sigs, {domain: anchors[domain]})
    dnssec.validate(mx, mx_sigs, {domain: dnskeys})
    # And the anchor's DS matches the served KSK
    (ds,) = _trust_anchors(lab, "DS")[domain]
    ksk = next(k for k in dnskeys if k.flags == 257)
    assert dnssec.make_ds(domain, ksk, "SHA256") == ds


def test_unsigned_zone_has_no_dnskey(lab: LabInfo, lab_resolver: dns.resolver.Resolver) -> None:
    # Given an unsigned scenario
    domain = lab.scenario("healthy").domain
    # When its DNSKEY is asked for
    # Then there is none
    with pytest.raises(dns.resolver.NoAnswer):
        lab_resolver.resolve(domain, "DNSKEY")
