"""The lab's DNS data, built with dnspython: one zone per scenario, the lab's own zone, reverse
zones, and DNSSEC signing (ECDSAP256SHA256) for scenarios that ask for it.

Zones:

- ``<scenario>.test``: the baseline records (below) changed by the scenario's ``records`` and
  ``remove``;
- ``lab.test``: the lab's own hosts: ``ns.lab.test`` (the DNS server, every zone's NS) and
  ``pki.lab.test`` (serves the intermediate CA at the certificates' AIA URL);
- ``18.198.in-addr.arpa`` and ``8.b.d.0.1.0.0.2.ip6.arpa``: PTR records for every lab host.

Baseline of a scenario (RFC numbers in ``baseline_records``): SOA, NS, A/AAAA per host, MX,
``_autodiscover._tcp`` SRV, RFC 6186/8314 SRV records, SPF, DMARC, DKIM ``selector1``,
MTA-STS and TLS-RPT.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Final

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.zone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from analyzer.lab.errors import LabError
from analyzer.lab.scenarios import ROLES, Record, Scenario
from analyzer.lab.state import HostInfo

__all__ = [
    "LAB_ZONE",
    "NS_HOST",
    "PKI_HOST",
    "SignedZone",
    "baseline_records",
    "build_zone",
    "dkim_public_key",
    "dnssec_module",
    "infra_zone",
    "mta_sts_policy",
    "reverse_zones",
    "sign_zone",
]

LAB_ZONE: Final = "lab.test"
NS_HOST: Final = f"ns.{LAB_ZONE}"
PKI_HOST: Final = f"pki.{LAB_ZONE}"
TTL: Final = 300
DKIM_SELECTOR: Final = "selector1"
_TXT_CHUNK: Final = 255  # RFC 1035 3.3: a character-string holds at most 255 octets
_SIGNATURE_LIFETIME: Final = timedelta(days=30)
_SIGNATURE_BACKDATE: Final = timedelta(hours=1)


# -- records ------------------------------------------------------------------------------------


def mta_sts_policy(mx_host: str) -> str:
    """The baseline MTA-STS policy (RFC 8461 3.2): enforce, matching the scenario's MX."""
    return f"version: STSv1\nmode: enforce\nmx: {mx_host}\nmax_age: 86400\n"


def mta_sts_id(policy: str) -> str:
    """An ``id=`` for the policy (RFC 8461 3.1: 1-32 alphanumerics), changing with its text."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def txt_text(value: str) -> str:
    """``value`` as TXT presentation text, split into 255-octet character-strings."""
    chunks = [value[i : i + _TXT_CHUNK] for i in range(0, len(value), _TXT_CHUNK)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def dkim_public_key(key_file: Path) -> str:
    """Base64 SubjectPublicKeyInfo of the RSA-2048 DKIM key in ``key_file``, made if missing.

    The key is kept across lab restarts (generating RSA keys is the slow part of start-up).
    """
    if key_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise LabError(f"{key_file} is not an RSA key; delete it and start the lab again")
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(spki).decode("ascii")


def baseline_records(
    domain: str, hosts: Mapping[str, HostInfo], *, dkim_key_b64: str
) -> list[Record]:
    """What every scenario's zone holds before the scenario changes it (all of it correct)."""
    records: list[Record] = [
        ("@", "SOA", f"{NS_HOST}. hostmaster.{LAB_ZONE}. 1 3600 600 86400 {TTL}"),
        ("@", "NS", f"{NS_HOST}."),
    ]
    for role in ROLES:
        owner = "@" if role == "apex" else role
        records.append((owner, "A", hosts[role].ipv4))
        records.append((owner, "AAAA", hosts[role].ipv6))
    policy = mta_sts_policy(hosts["mx"].name)
    records += [
        ("@", "MX", "10 mx"),
        # MS-OXDISCO 3.1.5.3: the SRV lookup of Autodiscover.
        ("_autodiscover._tcp", "SRV", "0 0 443 autodiscover"),
        # RFC 6186 3 and RFC 8314 5.1: mail services by SRV; IMAP preferred over POP3.
        ("_imap._tcp", "SRV", "0 1 143 mail"),
        ("_imaps._tcp", "SRV", "0 1 993 mail"),
        ("_pop3._tcp", "SRV", "10 1 110 mail"),
        ("_pop3s._tcp", "SRV", "10 1 995 mail"),
        ("_submission._tcp", "SRV", "0 1 587 mail"),
        ("_submissions._tcp", "SRV", "0 1 465 mail"),
        ("@", "TXT", txt_text("v=spf1 mx -all")),  # RFC 7208
        ("_dmarc", "TXT", txt_text(f"v=DMARC1; p=reject; rua=mailto:dmarc-reports@{domain}")),
        (f"{DKIM_SELECTOR}._domainkey", "TXT", txt_text(f"v=DKIM1; k=rsa; p={dkim_key_b64}")),
        ("_mta-sts", "TXT", txt_text(f"v=STSv1; id={mta_sts_id(policy)}")),  # RFC 8461 3.1
        ("_smtp._tls", "TXT", txt_text(f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}")),
    ]
    return records


def build_zone(
    scenario: Scenario, hosts: Mapping[str, HostInfo], *, dkim_key_b64: str, serial: int
) -> dns.zone.Zone:
    """The zone of ``scenario``: the baseline, minus ``remove``, with ``records`` replacing."""
    zone = dns.zone.Zone(dns.name.from_text(scenario.domain))
    placeholders = {"domain": scenario.domain}
    for role, host in hosts.items():
        placeholders[f"{role.replace('-', '_')}_v4"] = host.ipv4
        placeholders[f"{role.replace('-', '_')}_v6"] = host.ipv6
    baseline = baseline_records(scenario.domain, hosts, dkim_key_b64=dkim_key_b64)
    overridden = {_key(zone, name, rtype) for name, rtype, _ in scenario.records}
    removed = {_key(zone, name, rtype) for name, rtype in scenario.remove}
    with zone.writer() as txn:
        for name, rtype, text in baseline:
            key = _key(zone, name, rtype)
            if key in overridden or key in removed:
                continue
            txn.add(key[0], TTL, _rdata(zone, rtype, text, scenario.name))
        for name, rtype, text in scenario.records:
            try:
                formatted = text.format(**placeholders)
            except (KeyError, IndexError, ValueError) as exc:
                raise LabError(f"{scenario.name}: record {name} {rtype} {text!r}: {exc}") from exc
            txn.add(_key(zone, name, rtype)[0], TTL, _rdata(zone, rtype, formatted, scenario.name))
        soa = txn.get(dns.name.empty, dns.rdatatype.SOA)
        if soa is None:
            raise LabError(f"{scenario.name}: the zone has no SOA record")
        txn.replace(dns.name.empty, soa.ttl, soa[0].replace(serial=serial))
    return zone


def infra_zone(
    *, ns: tuple[str, str], pki: tuple[str, str], serial: int
) -> dns.zone.Zone:
    """``lab.test``: the name server and the PKI host."""
    zone = dns.zone.Zone(dns.name.from_text(LAB_ZONE))
    records: list[Record] = [
        ("@", "SOA", f"{NS_HOST}. hostmaster.{LAB_ZONE}. {serial} 3600 600 86400 {TTL}"),
        ("@", "NS", f"{NS_HOST}."),
        ("ns", "A", ns[0]),
        ("ns", "AAAA", ns[1]),
        ("pki", "A", pki[0]),
        ("pki", "AAAA", pki[1]),
    ]
    with zone.writer() as txn:
        for name, rtype, text in records:
            txn.add(_key(zone, name, rtype)[0], TTL, _rdata(zone, rtype, text, LAB_ZONE))
    return zone


def reverse_zones(
    names: Iterable[tuple[str, str]], *, serial: int
) -> list[dns.zone.Zone]:
    """PTR zones for 198.18.0.0/16 and 2001:db8::/32 from (address, host name) pairs."""
    zones = [
        dns.zone.Zone(dns.name.from_text("18.198.in-addr.arpa")),
        dns.zone.Zone(dns.name.from_text("8.b.d.0.1.0.0.2.ip6.arpa")),
    ]
    soa = f"{NS_HOST}. hostmaster.{LAB_ZONE}. {serial} 3600 600 86400 {TTL}"
    txns = [z.writer() for z in zones]
    try:
        for zone, txn in zip(zones, txns, strict=True):
            txn.add(dns.name.empty, TTL, _rdata(zone, "SOA", soa, "reverse"))
            txn.add(dns.name.empty, TTL, _rdata(zone, "NS", f"{NS_HOST}.", "reverse"))
        for address, host in names:
            owner = dns.reversename.from_address(address)
            for zone, txn in zip(zones, txns, strict=True):
                if owner.is_subdomain(origin_of(zone)):
                    txn.add(
                        owner.relativize(origin_of(zone)),
                        TTL,
                        _rdata(zone, "PTR", f"{host}.", "reverse"),
                    )
                    break
        for txn in txns:
            txn.commit()
    except BaseException:
        for txn in txns:
            txn.rollback()
        raise
    return zones


def origin_of(zone: dns.zone.Zone) -> dns.name.Name:
    """The zone's origin (every zone built here has one)."""
    if zone.origin is None:
        raise LabError("a lab zone has no origin")
    return zone.origin


def _key(zone: dns.zone.Zone, name: str, rtype: str) -> tuple[dns.name.Name, int]:
    owner = dns.name.empty if name in ("@", "") else dns.name.from_text(name, origin=None)
    if owner.is_absolute():
        owner = owner.relativize(origin_of(zone))
    return owner, dns.rdatatype.from_text(rtype)


def _rdata(zone: dns.zone.Zone, rtype: str, text: str, where: str) -> dns.rdata.Rdata:
    try:
        return dns.rdata.from_text(
            dns.rdataclass.IN, rtype, text, origin=zone.origin, relativize_to=zone.origin
        )
    except Exception as exc:  # dnspython raises several unrelated types for bad text
        raise LabError(f"{where}: bad {rtype} record {text!r}: {exc}") from exc


# -- DNSSEC -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedZone:
    """What signing published: the KSK's DNSKEY and DS, in presentation format, absolute."""

    origin: str
    dnskey: str
    ds: str


def dnssec_module() -> ModuleType:
    """``dns.dnssec`` with signing and validation available.

    dnspython 2.9 enables DNSSEC only when the *metadata* says cryptography>=50, although the
    ECDSA and Ed25519 code it uses works with older releases. If the check fails but the
    primitives import, force the feature on (``dns._features.force`` exists for that) and
    (re)load ``dns.dnssec`` so its functions are the real ones rather than stubs.
    """
    import dns._features

    if not dns._features.have("dnssec"):
        try:
            from cryptography.hazmat.primitives.asymmetric import ec as _ec  # noqa: F401
        except ImportError as exc:
            raise LabError("DNSSEC needs the cryptography package") from exc
        dns._features.force("dnssec", True)
        module = sys.modules.get("dns.dnssec")
        if module is not None:
            return importlib.reload(module)
    return importlib.import_module("dns.dnssec")


def sign_zone(
    zone: dns.zone.Zone, *, now: datetime, days: tuple[float, float] | None = None
) -> SignedZone:
    """Sign ``zone`` in place with a fresh KSK and ZSK (ECDSAP256SHA256, RFC 6605), NSEC chain.

    Signatures run from an hour before ``now`` to 30 days after. Returns the KSK's DNSKEY and
    its SHA-256 DS, for the trust-anchor file.
    """
    dnssec = dnssec_module()
    ksk = ec.generate_private_key(ec.SECP256R1())
    zsk = ec.generate_private_key(ec.SECP256R1())
    ksk_dnskey = dnssec.make_dnskey(ksk.public_key(), "ECDSAP256SHA256", flags=257)
    zsk_dnskey = dnssec.make_dnskey(zsk.public_key(), "ECDSAP256SHA256", flags=256)
    dnssec.sign_zone(
        zone,
        keys=[(ksk, ksk_dnskey), (zsk, zsk_dnskey)],
        dnskey_ttl=TTL,
        inception=now + timedelta(days=days[0]) if days else now - _SIGNATURE_BACKDATE,
        expiration=now + timedelta(days=days[1]) if days else now + _SIGNATURE_LIFETIME,
    )
    ds = dnssec.make_ds(origin_of(zone), ksk_dnskey, "SHA256")
    return SignedZone(
        origin=origin_of(zone).to_text(),
        dnskey=ksk_dnskey.to_text(),
        ds=ds.to_text(),
    )


def write_trust_anchors(path: Path, signed: Iterable[SignedZone]) -> Path:
    """Write DS and KSK DNSKEY records of ``signed`` zones as a zone-format trust-anchor file
    (the format of unbound's ``trust-anchor-file`` and ``delv -a``)."""
    lines = ["; rca lab trust anchors: DS and KSK DNSKEY of every signed lab zone"]
    for zone in signed:
        lines.append(f"{zone.origin} {TTL} IN DS {zone.ds}")
        lines.append(f"{zone.origin} {TTL} IN DNSKEY {zone.dnskey}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def write_zone(zone: dns.zone.Zone, path: Path) -> None:
    """Write ``zone`` in master-file format with ``$ORIGIN`` (NSD reads it as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as f:
        f.write(f"$ORIGIN {origin_of(zone).to_text()}\n$TTL {TTL}\n")
        zone.to_file(f, relativize=True, want_origin=False)
