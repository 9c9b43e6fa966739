"""DNSSEC: is the domain's zone (and each MX host's zone) signed, and do the signatures hold?

The chain of trust is validated here with dnspython, from a trust anchor down: the
IANA root anchors by default, or ``--trust-anchor FILE`` (DS or DNSKEY records) for a
private tree such as the lab. At each zone: the DNSKEY RRset must be signed by a key the
parent's DS (or the anchor) vouches for; the records that matter (MX, the MX hosts'
addresses) must be signed by the zone's keys; signatures expiring within 7 days warn.
The resolver's AD bit is reported too, but never trusted in place of validation.
Publishes :data:`DNSSEC_ZONES` for the DANE check.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from analyzer.core.errors import UsageError
from analyzer.core.facts import DNSSEC_ZONES, MX_HOSTS, MxHost
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Json, Status
from analyzer.core.probe import Probe, ProbeContext, StepRecorder
from analyzer.protocols.resolve import Lookup, lookup

if TYPE_CHECKING:
    import dns.name
    import dns.rrset

    from analyzer.core.targets import Target

__all__ = ["DNSSEC_ZONES", "PROBE", "ROOT_ANCHORS", "ZoneState", "load_trust_anchors"]


ZoneState = Literal["secure", "insecure", "bogus", "indeterminate"]

#: IANA root zone KSKs (https://data.iana.org/root-anchors/root-anchors.xml): KSK-2017
#: and KSK-2024.
ROOT_ANCHORS = (
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
    ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
)
MAX_DEPTH = 12
EXPIRY_WARN = timedelta(days=7)
RFC4035 = "https://www.rfc-editor.org/rfc/rfc4035"

SIGNED = FindingSpec(
    code="dns.dnssec.signed",
    status=Status.PASS,
    title="Zone is DNSSEC-signed and validates",
    meaning="The zone's keys are vouched for by its parent (or a trust anchor) and its records "
    "are signed with them: answers cannot be forged on the way. DANE depends on this.",
    reference=RFC4035,
)
UNSIGNED = FindingSpec(
    code="dns.dnssec.unsigned",
    status=Status.PASS,
    title="Zone is not DNSSEC-signed",
    meaning="The zone publishes no DNSSEC keys (or its parent has no DS record for it). This "
    "is common; it means DNS answers for it can be forged, and DANE cannot be used.",
    remediation="Sign the zone at your DNS host and publish its DS record at the registrar, "
    "if you want DANE for inbound mail.",
    reference=RFC4035,
)
BOGUS = FindingSpec(
    code="dns.dnssec.bogus",
    status=Status.FAIL,
    title="DNSSEC validation fails: the zone is bogus",
    meaning="The zone claims to be signed, but a signature or the link to its parent does not "
    "verify. Validating resolvers answer SERVFAIL for it: for their users, the domain and its "
    "mail are gone.",
    remediation="Re-sign the zone and check that the parent's DS record matches a current "
    "DNSKEY (a key rollover that forgot the DS is the usual cause).",
    reference=RFC4035,
)
DS_MISMATCH = FindingSpec(
    code="dns.dnssec.ds_mismatch",
    status=Status.FAIL,
    title="The parent's DS record matches none of the zone's keys",
    meaning="The DS record at the parent (or the trust anchor) names a key the zone no longer "
    "publishes, so the chain of trust is broken.",
    remediation="Publish a DS record for the zone's current key-signing key at the registrar "
    "(and remove the stale one).",
    reference=RFC4035,
)
SIG_EXPIRED = FindingSpec(
    code="dns.dnssec.signature_expired",
    status=Status.FAIL,
    title="A DNSSEC signature has expired",
    meaning="RRSIG records carry an expiry time; after it, validating resolvers reject the "
    "records. Signing stopped (a broken signer or cron job).",
    remediation="Re-sign the zone and check that automatic re-signing runs.",
    reference="https://www.rfc-editor.org/rfc/rfc4034#section-3.1.5",
)
SIG_EXPIRING = FindingSpec(
    code="dns.dnssec.signature_expiring",
    status=Status.WARN,
    title="A DNSSEC signature expires within 7 days",
    meaning="Signatures are normally refreshed well before they expire; one this close to "
    "expiry suggests the signer has stopped.",
    remediation="Check the zone signer; re-sign the zone.",
    reference="https://www.rfc-editor.org/rfc/rfc4034#section-3.1.5",
)
INDETERMINATE = FindingSpec(
    code="dns.dnssec.indeterminate",
    status=Status.INCONCLUSIVE,
    title="DNSSEC state could not be determined",
    meaning="A look-up needed for validation failed (timeout, SERVFAIL, REFUSED), so neither "
    "secure nor insecure could be proven.",
    remediation="Retry; if it persists, check the zone's authoritative servers.",
)
NO_ANCHOR = FindingSpec(
    code="dns.dnssec.no_anchor",
    status=Status.SKIP,
    title="No trust anchor covers this zone",
    meaning="The zone is signed, but the chain up to a trust anchor could not be followed "
    "(a private tree): its signatures were checked against its own keys only.",
    remediation="Give the tree's anchor with --trust-anchor FILE to validate end to end.",
)
RESOLVER_AD = FindingSpec(
    code="dns.dnssec.resolver_ad",
    status=Status.PASS,
    title="What the resolver says about DNSSEC",
    meaning="Whether the configured resolver set the AD (authenticated data) bit: a validating "
    "resolver sets it on answers it verified. Informational; rca validates itself.",
)

FINDINGS = (
    SIGNED,
    UNSIGNED,
    BOGUS,
    DS_MISMATCH,
    SIG_EXPIRED,
    SIG_EXPIRING,
    INDETERMINATE,
    NO_ANCHOR,
    RESOLVER_AD,
)


class _Invalid(Exception):
    """A signature or key link that does not verify."""


@dataclass(slots=True)
class _Walk:
    """State of one validation: anchors, per-zone results, signatures seen."""

    ctx: ProbeContext
    anchors: dict[str, list[Any]]
    now: datetime
    zone_keys: dict[str, asyncio.Future[tuple[ZoneState, Any, str]]] = field(default_factory=dict)
    #: Every RRSIG expiry seen: (the zone whose chain it is part of, what, when).
    expiries: list[tuple[Any, str, datetime]] = field(default_factory=list)


def load_trust_anchors(path: Path | None) -> dict[str, list[Any]]:
    """DS/DNSKEY rdata by owner name (lower-case, absolute) from a file or the root anchors."""
    import dns.exception  # noqa: PLC0415
    import dns.rdataclass  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415
    import dns.zonefile  # noqa: PLC0415

    if path is None:
        text = "\n".join(ROOT_ANCHORS)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--trust-anchor {path}: {exc}") from None
    try:
        # rdclass=None: the class is read from each line ("IN"), as in DS/DNSKEY exports.
        rrsets = dns.zonefile.read_rrsets(
            text,
            origin=".",
            relativize=False,
            rdclass=None,
            default_ttl=0,
            default_rdclass=dns.rdataclass.IN,
        )
    except dns.exception.DNSException as exc:
        raise UsageError(f"--trust-anchor: not DS/DNSKEY records: {exc}") from None
    anchors: dict[str, list[Any]] = {}
    for rrset in rrsets:
        if rrset.rdtype in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            anchors.setdefault(rrset.name.to_text().lower(), []).extend(rrset)
    if not anchors:
        raise UsageError("--trust-anchor: the file holds no DS or DNSKEY record")
    return anchors


async def _signed(
    walk: _Walk, name: Any, rdtype: str
) -> tuple[Lookup, dns.rrset.RRset | None, dns.rrset.RRset | None]:
    """The RRset and its RRSIGs for ``name``/``rdtype`` (DO bit set)."""
    import dns.rdataclass  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415

    found = await lookup(walk.ctx.run, name.to_text(), rdtype, dnssec=True)
    if not found.ok or not found.responses:
        return found, None, None
    response = found.responses[-1]
    covers = dns.rdatatype.from_text(rdtype)
    owner = name
    rrset = sig = None
    for candidate in response.answer:
        if candidate.rdtype == covers:
            rrset, owner = candidate, candidate.name
    for candidate in response.answer:
        if (
            candidate.rdtype == dns.rdatatype.RRSIG
            and candidate.covers == covers
            and candidate.name == owner
        ):
            sig = candidate
    _ = dns.rdataclass
    return found, rrset, sig


def _verify(
    walk: _Walk, rrset: Any, sig: Any, zone: Any, keys: Any, what: str, *, owner: Any = None
) -> None:
    """Validate ``rrset`` with ``zone``'s ``keys``; record its expiries under ``owner``
    (whose chain it belongs to: the signer by default, the child zone for a DS, the
    name for the records asked about)."""
    import dns.dnssec  # noqa: PLC0415
    import dns.exception  # noqa: PLC0415

    if sig is None:
        raise _Invalid(f"{what}: no RRSIG in the answer")
    for rd in sig:
        walk.expiries.append(
            (zone if owner is None else owner, what, datetime.fromtimestamp(rd.expiration, UTC))
        )
    try:
        dns.dnssec.validate(rrset, sig, {zone: keys}, now=walk.now.timestamp())
    except dns.exception.ValidationFailure as exc:
        raise _Invalid(f"{what}: {exc}") from None
    except dns.exception.DNSException as exc:
        raise _Invalid(f"{what}: {exc}") from None


async def _zone_of(walk: _Walk, name: Any) -> Any:
    """The apex of the zone holding ``name`` (from the SOA in the answer or authority)."""
    import dns.rdatatype  # noqa: PLC0415

    found = await lookup(walk.ctx.run, name.to_text(), "SOA")
    if found.ok and found.records:
        for response in found.responses:
            for rrset in response.answer:
                if rrset.rdtype == dns.rdatatype.SOA:
                    return rrset.name
        return name
    for response in found.responses:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset.name
    return None


def _anchored(walk: _Walk, zone: Any, dnskeys: Any) -> list[Any] | None:
    """Keys of ``dnskeys`` that a configured anchor vouches for (None: no anchor here)."""
    import dns.dnssec  # noqa: PLC0415
    import dns.exception  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415

    anchors = walk.anchors.get(zone.to_text().lower())
    if anchors is None:
        return None
    good = []
    for key in dnskeys:
        for anchor in anchors:
            if anchor.rdtype == dns.rdatatype.DNSKEY and anchor == key:
                good.append(key)
            elif anchor.rdtype == dns.rdatatype.DS:
                try:
                    if dns.dnssec.make_ds(zone, key, anchor.digest_type) == anchor:
                        good.append(key)
                except (dns.exception.UnsupportedAlgorithm, ValueError):
                    continue
    return good


async def zone_keys(walk: _Walk, zone: Any, depth: int = 0) -> tuple[ZoneState, Any, str]:
    """(state, validated DNSKEY RRset or None, reason) for ``zone``, memoised per run."""
    key = zone.to_text().lower()
    fut = walk.zone_keys.get(key)
    if fut is None:
        fut = walk.zone_keys[key] = asyncio.ensure_future(_zone_keys(walk, zone, depth))
    return await asyncio.shield(fut)


async def _zone_keys(walk: _Walk, zone: Any, depth: int) -> tuple[ZoneState, Any, str]:
    import dns.dnssec  # noqa: PLC0415

    if depth > MAX_DEPTH:
        return "indeterminate", None, "the chain of trust is deeper than rca follows"
    found, dnskeys, sig = await _signed(walk, zone, "DNSKEY")
    name = zone.to_text()
    if not found.definitive:
        return "indeterminate", None, f"DNSKEY {name}: {found.outcome} {found.detail}".strip()
    anchored = _anchored(walk, zone, dnskeys or [])
    if dnskeys is None:
        if anchored is not None:
            return "bogus", None, f"{name} has a trust anchor but publishes no DNSKEY"
        return await _insecure_or_bogus(walk, zone, depth, f"{name} publishes no DNSKEY")
    if anchored is not None:
        if not anchored:
            return "bogus", None, f"no DNSKEY of {name} matches the trust anchor"
        try:
            _verify(walk, dnskeys, sig, zone, anchored, f"DNSKEY {name}")
        except _Invalid as exc:
            return "bogus", None, str(exc)
        return "secure", dnskeys, f"anchored at {name}"
    if zone.to_text() == ".":
        return "indeterminate", dnskeys, "no trust anchor for the root"
    ds_found, ds, ds_sig = await _signed(walk, zone, "DS")
    if not ds_found.definitive:
        # A private tree (the lab) has no parent to ask: the keys are the zone's own word.
        try:
            _verify(walk, dnskeys, sig, zone, dnskeys, f"DNSKEY {name}")
        except _Invalid as exc:
            return "bogus", None, str(exc)
        return "indeterminate", dnskeys, f"DS {name}: {ds_found.outcome}; no trust anchor"
    if ds is None:
        return "insecure", None, f"the parent zone has no DS record for {name}"
    signer = ds_sig[0].signer if ds_sig is not None else zone.parent()
    state, parent_keys, why = await zone_keys(walk, signer, depth + 1)
    if state != "secure":
        return state, None, f"parent {signer.to_text()}: {why}"
    try:
        _verify(walk, ds, ds_sig, signer, parent_keys, f"DS {name}", owner=zone)
    except _Invalid as exc:
        return "bogus", None, str(exc)
    vouched = [k for k in dnskeys for d in ds if _ds_matches(zone, k, d, dns.dnssec)]
    if not vouched:
        return "bogus", None, f"DS_MISMATCH: the DS of {name} matches no DNSKEY"
    try:
        _verify(walk, dnskeys, sig, zone, vouched, f"DNSKEY {name}")
    except _Invalid as exc:
        return "bogus", None, str(exc)
    return "secure", dnskeys, f"DS at {signer.to_text()}"


def _ds_matches(zone: Any, key: Any, ds: Any, dnssec: Any) -> bool:
    import dns.exception  # noqa: PLC0415

    try:
        return bool(dnssec.make_ds(zone, key, ds.digest_type) == ds)
    except (dns.exception.UnsupportedAlgorithm, ValueError):
        return False


async def _insecure_or_bogus(
    walk: _Walk, zone: Any, depth: int, why: str
) -> tuple[ZoneState, Any, str]:
    ds_found, ds, _sig = await _signed(walk, zone, "DS")
    if ds is not None:
        return "bogus", None, f"DS_MISMATCH: the parent publishes a DS but {why}"
    if not ds_found.definitive:
        return "insecure", None, f"{why} (the parent could not be asked for a DS)"
    return "insecure", None, why


async def run(ctx: ProbeContext, target: Target) -> None:
    """Validate the zone of the domain and of each MX host."""
    import dns.name  # noqa: PLC0415

    anchors = load_trust_anchors(ctx.options.trust_anchor_file)
    walk = _Walk(ctx=ctx, anchors=anchors, now=ctx.run.now())
    mx: tuple[MxHost, ...] = ctx.fact_or(MX_HOSTS, ()) or ()
    names = [target.domain] + [m.host for m in mx if not m.implicit and m.host != target.domain]
    states: dict[str, str] = {}
    results = await asyncio.gather(
        *(
            _check_name(ctx, walk, dns.name.from_text(n), "MX" if i == 0 else "A")
            for i, n in enumerate(names)
        )
    )
    for name, state in zip(names, results, strict=True):
        states[name] = state
    ctx.publish(DNSSEC_ZONES, states)


async def _check_name(ctx: ProbeContext, walk: _Walk, name: Any, rdtype: str) -> str:
    with ctx.result(name.to_text().rstrip(".")) as res:
        with res.step(f"Find the zone of {name.to_text().rstrip('.')}") as step:
            zone = await _zone_of(walk, name)
            if zone is None:
                step.add(INDETERMINATE(detail="no SOA record found for the name or its zone"))
                return "indeterminate"
            step.note(f"zone apex: {zone.to_text()}")
        zname = zone.to_text().rstrip(".") or "."
        with res.step(f"Validate the chain of trust of {zname}") as step:
            state, keys, why = await zone_keys(walk, zone)
            step.note(why)
            _judge(step, state, why, zname)
            if state == "secure" or (state == "indeterminate" and keys is not None):
                with step.step(f"Validate the {rdtype} records of {name.to_text()}") as sub:
                    found, rrset, sig = await _signed(walk, name, rdtype)
                    _ad_finding(sub, found)
                    if rrset is not None:
                        try:
                            _verify(walk, rrset, sig, zone, keys, f"{rdtype} {name.to_text()}",
                                    owner=name)
                            sub.note(f"{rdtype} {name.to_text()}: signature valid")
                        except _Invalid as exc:
                            sub.add(BOGUS(detail=str(exc)))
                            state = "bogus"
            _expiry_findings(step, walk, zone, name)
            if any(f.code == SIG_EXPIRED.code for f in step.findings):
                state = "bogus"
        return state


def _judge(step: StepRecorder, state: str, why: str, zone: str) -> None:
    evidence: dict[str, Json] = {"zone": zone, "state": state, "reason": why}
    if state == "secure":
        step.add(SIGNED(detail=f"{zone}: {why}", evidence=evidence))
    elif state == "insecure":
        step.add(UNSIGNED(detail=why, evidence=evidence))
    elif state == "bogus":
        spec = DS_MISMATCH if why.startswith("DS_MISMATCH") or "DS_MISMATCH" in why else BOGUS
        step.add(spec(detail=why.replace("DS_MISMATCH: ", ""), evidence=evidence))
    elif "no trust anchor" in why:
        step.add(NO_ANCHOR(detail=why, evidence=evidence))
    else:
        step.add(INDETERMINATE(detail=why, evidence=evidence))


def _ad_finding(step: StepRecorder, found: Lookup) -> None:
    if found.definitive:
        step.add(
            RESOLVER_AD(
                detail=(
                    "the resolver set the AD bit (it validated the answer)"
                    if found.authenticated
                    else "the resolver did not set the AD bit (it does not validate, or the "
                    "answer is not signed)"
                ),
                evidence={"nameserver": found.nameserver, "ad": found.authenticated},
            )
        )


def _expiry_findings(step: StepRecorder, walk: _Walk, zone: Any, name: Any) -> None:
    # Only the signatures of this name's own chain (its records, its zone and the zones
    # above): names are checked concurrently and share the walk, and zone keys are cached.
    seen = [
        (w, t) for owner, w, t in walk.expiries if owner == name or zone.is_subdomain(owner)
    ]
    expired = [(w, t) for w, t in seen if t <= walk.now]
    soon = [(w, t) for w, t in seen if walk.now < t <= walk.now + EXPIRY_WARN]
    if expired:
        what, when = min(expired, key=lambda x: x[1])
        step.add(
            SIG_EXPIRED(
                detail=f"{what}: expired {when.isoformat()}",
                evidence={"expired": [f"{w} {t.isoformat()}" for w, t in expired]},
            )
        )
    elif soon:
        what, when = min(soon, key=lambda x: x[1])
        step.add(
            SIG_EXPIRING(
                detail=f"{what}: expires {when.isoformat()}",
                evidence={"expiring": [f"{w} {t.isoformat()}" for w, t in soon]},
            )
        )


PROBE = Probe(
    id="dnssec",
    title="DNSSEC of the domain and its MX hosts",
    run=run,
    uses=(MX_HOSTS,),
    provides=(DNSSEC_ZONES,),
    findings=FINDINGS,
    applies=lambda t: "the target is an IP address: it has no zone" if t.is_ip else None,
)
