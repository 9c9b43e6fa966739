"""DANE for SMTP (RFC 7672): do the MX hosts' TLSA records match the certificates they present?

For each MX host, ``_25._tcp.<mx>`` TLSA records are looked up and matched against the
chain the TLS probe captured on port 25 (usage DANE-EE against the server certificate,
DANE-TA against the chain; selector full certificate or SubjectPublicKeyInfo; matching
exact, SHA-256 or SHA-512). TLSA records count only in a DNSSEC-secure zone (the DNSSEC
probe's verdict): elsewhere senders ignore them.

The TLS probe publishes its chains before its first handshake and fills them per endpoint
(:class:`~analyzer.core.facts.TlsChains`): each MX is judged as soon as its own chain on
port 25 is known, while the TLS probe still checks versions and other endpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.core.facts import DNSSEC_ZONES, MX_HOSTS, TLS_CHAINS, MxHost, TlsChains
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Json, Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.protocols.resolve import lookup

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE", "Tlsa", "matches"]

RFC7672 = "https://www.rfc-editor.org/rfc/rfc7672"

MATCH = FindingSpec(
    code="dane.match",
    status=Status.PASS,
    title="DANE TLSA records match the MX certificate",
    meaning="The MX publishes TLSA records in a signed zone, and the certificate it presents "
    "on port 25 matches one of them: DANE-aware senders deliver over verified TLS.",
    reference=RFC7672,
)
MISMATCH = FindingSpec(
    code="dane.mismatch",
    status=Status.FAIL,
    title="No DANE TLSA record matches the MX certificate",
    meaning="The MX's TLSA records (in a DNSSEC-signed zone) match none of the certificates it "
    "presents. DANE-aware senders (many large providers) will refuse to deliver to it.",
    remediation="Publish TLSA records for the current certificate (usually '3 1 1' with the "
    "SHA-256 of its public key) before rotating keys, and keep the old record until the new "
    "one has propagated.",
    reference=RFC7672,
)
NONE = FindingSpec(
    code="dane.none",
    status=Status.PASS,
    title="No DANE TLSA records",
    meaning="The MX host publishes no TLSA records for port 25; DANE is not used. This is "
    "common and not an error.",
    remediation="With a DNSSEC-signed zone, publish '3 1 1' TLSA records to let senders "
    "verify your MX's TLS.",
    reference=RFC7672,
)
UNSIGNED = FindingSpec(
    code="dane.unsigned_zone",
    status=Status.WARN,
    title="TLSA records in a zone that is not DNSSEC-secure are ignored",
    meaning="DANE requires DNSSEC (RFC 7672 2.2): senders ignore TLSA records unless the "
    "answer is validated.",
    remediation="Sign the zone (and publish its DS), or remove the TLSA records.",
    reference=RFC7672,
)
UNUSABLE = FindingSpec(
    code="dane.unusable_usage",
    status=Status.WARN,
    title="TLSA records with PKIX usages (0 and 1) are unusable for SMTP",
    meaning="RFC 7672 3.1.3: SMTP senders treat PKIX-TA(0) and PKIX-EE(1) records as "
    "unusable; only DANE-TA(2) and DANE-EE(3) count.",
    remediation="Publish DANE-EE(3) or DANE-TA(2) records instead.",
    reference="https://www.rfc-editor.org/rfc/rfc7672#section-3.1.3",
)
NO_CHAIN = FindingSpec(
    code="dane.no_chain",
    status=Status.SKIP,
    title="DANE not checked: no certificate captured on port 25",
    meaning="The TLS check did not obtain the MX's certificate (unreachable, no STARTTLS), so "
    "the TLSA records could not be compared with it.",
)
INDETERMINATE = FindingSpec(
    code="dane.indeterminate",
    status=Status.INCONCLUSIVE,
    title="DANE could not be judged",
    meaning="The TLSA look-up failed, or the zone's DNSSEC state is unknown.",
    remediation="Run again; if it persists, check the MX host's zone and its DNSSEC chain "
    "(the DNSSEC findings say where it breaks).",
)

FINDINGS = (MATCH, MISMATCH, NONE, UNSIGNED, UNUSABLE, NO_CHAIN, INDETERMINATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tlsa:
    """One TLSA record's fields (RFC 6698 2.1)."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def text(self) -> str:
        """Presentation form."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


def _selected(der: bytes, selector: int) -> bytes | None:
    if selector == 0:
        return der
    if selector == 1:
        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

        try:
            cert = x509.load_der_x509_certificate(der)
            return cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except (ValueError, TypeError):
            return None
    return None


def _digest(data: bytes, mtype: int) -> bytes | None:
    if mtype == 0:
        return data
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return None


def matches(record: Tlsa, chain: Sequence[bytes]) -> bool:
    """Whether ``record`` matches the presented ``chain`` (leaf first), per RFC 7672 3.1."""
    if record.usage in (1, 3):
        candidates: Sequence[bytes] = chain[:1]  # the server certificate
    elif record.usage in (0, 2):
        candidates = chain[1:] or chain[:1]  # a certificate of the chain above the leaf
    else:
        return False
    for der in candidates:
        selected = _selected(der, record.selector)
        if selected is not None and _digest(selected, record.mtype) == record.data:
            return True
    return False


async def run(ctx: ProbeContext, target: Target) -> None:
    """Match each MX host's TLSA records with its presented chain."""
    mx: tuple[MxHost, ...] = ctx.fact_or(MX_HOSTS, ()) or ()
    published: TlsChains | None = ctx.fact_or(TLS_CHAINS)
    # Not `or`: the chains are published empty and fill up while DANE waits.
    chains = TlsChains(()) if published is None else published
    zones: dict[str, str] = ctx.fact_or(DNSSEC_ZONES, {}) or {}
    await asyncio.gather(*(_check(ctx, m.host, chains, zones) for m in mx if not m.implicit))


async def _check(ctx: ProbeContext, host: str, chains: TlsChains, zones: dict[str, str]) -> None:
    name = f"_25._tcp.{host}"
    with ctx.result(f"{host}:25") as res, res.step(f"DANE TLSA records of {name}") as step:
        found = await lookup(ctx.run, name, "TLSA", dnssec=True)
        if found.outcome in ("nxdomain", "nodata"):
            step.add(NONE(detail=f"{name} has no TLSA record"))
            return
        if not found.ok:
            step.add(INDETERMINATE(detail=f"{name}: {found.outcome} {found.detail}".strip(),
                                   evidence=found.evidence()))
            return
        records = [
            Tlsa(usage=r.usage, selector=r.selector, mtype=r.mtype, data=bytes(r.cert))  # type: ignore[attr-defined]
            for r in found.records
        ]
        for rec in records:
            step.recv(f"{name} TLSA {rec.text}")
        evidence: dict[str, Json] = {"tlsa": [r.text for r in records]}
        state = zones.get(host)
        if state != "secure":
            spec = UNSIGNED if state in ("insecure", "bogus") else INDETERMINATE
            step.add(spec(detail=f"the zone of {host} is {state or 'of unknown DNSSEC state'}",
                          evidence=evidence))
            return
        usable = [r for r in records if r.usage in (2, 3)]
        if len(usable) < len(records):
            step.add(UNUSABLE(detail=f"{len(records) - len(usable)} record(s) with usage 0/1",
                              evidence=evidence))
        chain = await chains.chain(f"{host}:25")
        if not chain:
            step.add(NO_CHAIN(detail=f"no certificate was captured on {host}:25"))
            return
        hit = next((r for r in usable if matches(r, chain)), None)
        if hit is not None:
            step.add(MATCH(detail=f"{hit.text[:60]}… matches", evidence=evidence))
        else:
            step.add(MISMATCH(detail=f"none of {len(usable)} usable TLSA record(s) matches the "
                                     f"{len(chain)} certificate(s) presented", evidence=evidence))


PROBE = Probe(
    id="dane",
    title="DANE (TLSA) of the MX hosts",
    run=run,
    needs=(MX_HOSTS, TLS_CHAINS, DNSSEC_ZONES),
    findings=FINDINGS,
    applies=lambda t: "the target is an IP address" if t.is_ip else None,
)
