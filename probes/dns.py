"""DNS resolution core: MX and A/AAAA of the target domain and of every MX host.

Publishes :data:`~analyzer.core.facts.MX_HOSTS` and :data:`~analyzer.core.facts.DOMAIN_ADDRESSES`
for the probes that connect to servers. Each DNS outcome is kept apart (NXDOMAIN,
NODATA, SERVFAIL, REFUSED, timeout): a timeout is inconclusive, never "missing".
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import TYPE_CHECKING, Any

from analyzer.core.facts import (
    DOMAIN_ADDRESSES,
    MX_HOSTS,
    SRV_RECORDS,
    HostAddresses,
    MxHost,
    SrvRecord,
)
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder, StepRecorder
from analyzer.core.targets import is_ip
from analyzer.protocols.endpoints import resolve_host as shared_addresses
from analyzer.protocols.resolve import Lookup, lookup
from probes.srv import order_srv

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE"]

RFC5321 = "https://www.rfc-editor.org/rfc/rfc5321#section-5.1"
RFC7505 = "https://www.rfc-editor.org/rfc/rfc7505"

MX_FOUND = FindingSpec(
    code="dns.mx.found",
    status=Status.PASS,
    title="MX records found",
    meaning="The domain publishes MX records naming the servers that receive its mail.",
    reference=RFC5321,
)
MX_MISSING = FindingSpec(
    code="dns.mx.missing",
    status=Status.WARN,
    title="No MX record: mail falls back to the domain's own address",
    meaning="Without MX records, senders deliver to the A/AAAA address of the domain itself "
    "(RFC 5321 5.1 implicit MX). This works, but is rarely intended.",
    remediation="Publish an MX record for the domain naming the host that receives its mail, "
    'or a null MX ("0 .") if it receives none.',
    reference=RFC5321,
)
MX_NULL = FindingSpec(
    code="dns.mx.null",
    status=Status.WARN,
    title="Null MX: the domain declares that it accepts no mail",
    meaning='The MX record "0 ." (RFC 7505) tells senders that this domain receives no '
    "mail; every message to it is rejected.",
    remediation="If the domain should receive mail, replace the null MX with real MX records.",
    reference=RFC7505,
)
MX_NULL_MIXED = FindingSpec(
    code="dns.mx.null_mixed",
    status=Status.FAIL,
    title="Null MX published together with other MX records",
    meaning="RFC 7505 3 forbids a null MX beside other MX records; senders behave inconsistently.",
    remediation="Remove either the null MX or the other MX records.",
    reference=RFC7505,
)
MX_IS_CNAME = FindingSpec(
    code="dns.mx.cname",
    status=Status.WARN,
    title="MX target is an alias (CNAME)",
    meaning="RFC 2181 10.3 and RFC 5321 5.1 require an MX target to be a host name with "
    "address records, not an alias; some senders refuse to deliver.",
    remediation="Point the MX record at the canonical host name the CNAME leads to.",
    reference="https://www.rfc-editor.org/rfc/rfc2181#section-10.3",
)
MX_IP_LITERAL = FindingSpec(
    code="dns.mx.ip_literal",
    status=Status.FAIL,
    title="MX target is an IP address, not a host name",
    meaning="An MX record must name a host; an address written as a name is looked up as "
    "a name and fails.",
    remediation="Create an A/AAAA record for a host name and point the MX at that name.",
    reference=RFC5321,
)
MX_NO_ADDRESS = FindingSpec(
    code="dns.mx.no_address",
    status=Status.FAIL,
    title="MX host has no IPv4 or IPv6 address",
    meaning="Senders cannot reach a mail server whose name has no A or AAAA record.",
    remediation="Publish A (and AAAA) records for the MX host, or remove the MX record.",
    reference=RFC5321,
)
ADDRESS_FOUND = FindingSpec(
    code="dns.address.found",
    status=Status.PASS,
    title="Address records found",
    meaning="The name has A and/or AAAA records.",
)
ADDRESS_NO_IPV6 = FindingSpec(
    code="dns.address.no_ipv6",
    status=Status.PASS,
    title="No IPv6 address (AAAA)",
    meaning="The name has IPv4 addresses only. This is common and not an error; IPv6-only "
    "clients cannot reach it.",
    remediation="Publish AAAA records if the server is reachable over IPv6.",
)
NXDOMAIN = FindingSpec(
    code="dns.nxdomain",
    status=Status.FAIL,
    title="The name does not exist in DNS (NXDOMAIN)",
    meaning="The authoritative servers say the name does not exist.",
    remediation="Check the spelling; create the records in the zone that should hold them.",
)
NODATA = FindingSpec(
    code="dns.nodata",
    status=Status.WARN,
    title="The name exists but has no record of this type",
    meaning="The DNS answered without records of the requested type (NODATA).",
    remediation="Publish the record if the service is meant to be offered under this name.",
)
SERVFAIL = FindingSpec(
    code="dns.servfail",
    status=Status.FAIL,
    title="The DNS server failed to answer (SERVFAIL)",
    meaning="SERVFAIL usually means a broken delegation, unreachable authoritative servers "
    "or a DNSSEC validation failure.",
    remediation="Check the domain's delegation and DNSSEC signatures (e.g. expired RRSIGs).",
)
REFUSED = FindingSpec(
    code="dns.refused",
    status=Status.FAIL,
    title="The DNS server refused the query (REFUSED)",
    meaning="The server queried is not willing to answer for this name (not authoritative "
    "and not a resolver for us, or an ACL).",
    remediation="Use a resolver that serves this name (--resolver), or fix the server's ACL.",
)
TIMEOUT = FindingSpec(
    code="dns.timeout",
    status=Status.INCONCLUSIVE,
    title="The DNS query timed out",
    meaning="No answer came before the deadline; nothing can be concluded about the record.",
    remediation="Check the resolver (--resolver) and the domain's authoritative servers.",
)
CNAME_LOOP = FindingSpec(
    code="dns.cname.loop",
    status=Status.FAIL,
    title="CNAME loop",
    meaning="Aliases point at each other in a cycle, so the name never resolves.",
    remediation="Break the cycle: one of the names must hold the records itself.",
)
LOOKUP_ERROR = FindingSpec(
    code="dns.error",
    status=Status.ERROR,
    title="The DNS answer could not be interpreted",
    meaning="The server answered with an error or a malformed message.",
)

PTR_OK = FindingSpec(
    code="dns.ptr.ok",
    status=Status.PASS,
    title="Reverse DNS is forward-confirmed",
    meaning="The address has a PTR record naming a host whose A/AAAA records include the "
    "address (forward-confirmed reverse DNS).",
)
PTR_MISSING = FindingSpec(
    code="dns.ptr.missing",
    status=Status.WARN,
    title="Mail server address has no reverse DNS (PTR)",
    meaning="Many receiving servers reject or down-rank mail from addresses without a PTR "
    "record; if this MX host also sends mail, its messages may bounce.",
    remediation="Ask the owner of the address block (your hosting or internet provider) to "
    "publish a PTR record naming the mail server's host name.",
    reference="https://www.rfc-editor.org/rfc/rfc1912#section-2.1",
)
PTR_MISMATCH = FindingSpec(
    code="dns.ptr.mismatch",
    status=Status.WARN,
    title="Reverse DNS is not forward-confirmed",
    meaning="The PTR record names a host whose A/AAAA records do not include this address; "
    "receivers that check forward-confirmed reverse DNS treat it as missing.",
    remediation="Make the PTR name resolve back to this address (add the A/AAAA record), or "
    "change the PTR to a name that does.",
    reference="https://www.rfc-editor.org/rfc/rfc8601#section-2.7.3",
)
CAA_FOUND = FindingSpec(
    code="dns.caa.found",
    status=Status.PASS,
    title="CAA records restrict which CAs may issue certificates",
    meaning="CAA records (RFC 8659) name the certificate authorities allowed to issue for the "
    "domain; a CA not listed must refuse.",
    reference="https://www.rfc-editor.org/rfc/rfc8659",
)
CAA_NONE = FindingSpec(
    code="dns.caa.none",
    status=Status.PASS,
    title="No CAA records: any CA may issue certificates",
    meaning="Without CAA records every public CA may issue certificates for the domain. This "
    "is common and not an error.",
    remediation="Publish CAA records naming the CA(s) you use, to make mis-issuance harder.",
    reference="https://www.rfc-editor.org/rfc/rfc8659",
)

SRV_FOUND = FindingSpec(
    code="dns.srv.found",
    status=Status.PASS,
    title="Service (SRV) records found",
    meaning="SRV records tell mail clients (RFC 6186/8314) and Outlook (Autodiscover) which "
    "host and port serve the domain; they are listed in the order clients try them (RFC 2782: "
    "lowest priority first, weighted among equals).",
    reference="https://www.rfc-editor.org/rfc/rfc6186",
)
SRV_NOT_OFFERED = FindingSpec(
    code="dns.srv.not_offered",
    status=Status.PASS,
    title='Service explicitly not offered (SRV target ".")',
    meaning='A single SRV record with the target "." says the domain does not offer this '
    "service (RFC 2782, RFC 6186 3.4); clients should not look further.",
    reference="https://www.rfc-editor.org/rfc/rfc6186#section-3.4",
)
SRV_NONE = FindingSpec(
    code="dns.srv.none",
    status=Status.PASS,
    title="No mail service (SRV) records",
    meaning="The domain publishes none of the RFC 6186/8314 records. They are optional; "
    "clients then guess host names or use autoconfig/Autodiscover.",
    remediation="Publish _imaps._tcp, _submissions._tcp (and _submission._tcp, _pop3s._tcp as "
    "offered) SRV records so that any client can configure itself.",
    reference="https://www.rfc-editor.org/rfc/rfc6186",
)
SRV_NO_ADDRESS = FindingSpec(
    code="dns.srv.target_no_address",
    status=Status.FAIL,
    title="SRV target host has no address",
    meaning="The SRV record points clients at a host name without A or AAAA records: clients "
    "that follow it fail.",
    remediation="Publish A/AAAA records for the target, or point the SRV record at a host "
    "that has them.",
    reference="https://www.rfc-editor.org/rfc/rfc2782",
)
SRV_DOT_MIXED = FindingSpec(
    code="dns.srv.dot_mixed",
    status=Status.WARN,
    title='SRV target "." published beside real targets',
    meaning='"." means "not offered" only as the single record; beside other targets it is '
    "meaningless and confuses clients.",
    remediation='Remove the "." record (or the others, if the service is not offered).',
    reference="https://www.rfc-editor.org/rfc/rfc2782",
)

#: SRV names of mail services: Autodiscover (MS-OXDISCO), RFC 6186 and RFC 8314.
SRV_SERVICES = (
    "_autodiscover._tcp",
    "_imaps._tcp",
    "_imap._tcp",
    "_submissions._tcp",
    "_submission._tcp",
    "_pop3s._tcp",
    "_pop3._tcp",
)

FINDINGS = (
    MX_FOUND,
    MX_MISSING,
    MX_NULL,
    MX_NULL_MIXED,
    MX_IS_CNAME,
    MX_IP_LITERAL,
    MX_NO_ADDRESS,
    ADDRESS_FOUND,
    ADDRESS_NO_IPV6,
    NXDOMAIN,
    NODATA,
    SERVFAIL,
    REFUSED,
    TIMEOUT,
    CNAME_LOOP,
    LOOKUP_ERROR,
    PTR_OK,
    PTR_MISSING,
    PTR_MISMATCH,
    CAA_FOUND,
    CAA_NONE,
    SRV_FOUND,
    SRV_NOT_OFFERED,
    SRV_NONE,
    SRV_NO_ADDRESS,
    SRV_DOT_MIXED,
)


def report_failure(
    step: StepRecorder,
    found: Lookup,
    *,
    nodata: FindingSpec = NODATA,
    informational: bool = False,
) -> bool:
    """Add the finding for a look-up that gave no records; False when it did give records.

    ``informational``: the record only informs (PTR, CAA), so a failed look-up makes the
    check inconclusive rather than failed.
    """
    ev = found.evidence()
    if found.ok:
        return False
    if informational and not found.definitive:
        spec = {"servfail": SERVFAIL, "refused": REFUSED, "timeout": TIMEOUT}.get(
            found.outcome, LOOKUP_ERROR
        )
        step.add(spec(detail=found.detail, evidence=ev, status=Status.INCONCLUSIVE))
        return True
    if found.cname_loop:
        step.add(CNAME_LOOP(detail=found.detail, evidence=ev))
    elif found.outcome == "nxdomain":
        step.add(NXDOMAIN(detail=f"{found.name} does not exist", evidence=ev))
    elif found.outcome == "nodata":
        step.add(nodata(detail=f"{found.name} has no {found.rdtype} record", evidence=ev))
    elif found.outcome == "servfail":
        step.add(SERVFAIL(detail=found.detail, evidence=ev))
    elif found.outcome == "refused":
        step.add(REFUSED(detail=found.detail, evidence=ev))
    elif found.outcome == "timeout":
        step.add(TIMEOUT(detail=found.detail, evidence=ev))
    else:
        step.add(LOOKUP_ERROR(detail=found.detail, evidence=ev))
    return True


async def resolve_recorded(
    ctx: ProbeContext, step: StepRecorder, host: str
) -> tuple[HostAddresses, frozenset[str]]:
    """A and AAAA of ``host`` (concurrently), recorded as child steps of ``step``; with the
    record types whose look-up failed (SERVFAIL, timeout...): for those, nothing may be
    concluded about the records, so no caller may say "there is none"."""
    families = ctx.options.families
    wanted = [t for t, f in (("A", 4), ("AAAA", 6)) if f in families]
    answers = await asyncio.gather(*(lookup(ctx.run, host, t) for t in wanted))
    got: dict[str, tuple[str, ...]] = {"A": (), "AAAA": ()}
    failed: set[str] = set()
    for rdtype, found in zip(wanted, answers, strict=True):
        with step.step(f"Look up {rdtype} records of {host}") as sub:
            sub.note(f"{found.nameserver or 'resolver'}: {found.outcome} in {found.elapsed_ms} ms")
            if found.ok:
                got[rdtype] = tuple(r.to_text() for r in found.records)
                for text in got[rdtype]:
                    sub.recv(f"{host} {rdtype} {text}")
            elif found.outcome == "nodata":
                sub.note(f"{host} has no {rdtype} record")
            else:
                report_failure(sub, found)
                if not found.definitive:
                    failed.add(rdtype)
    return HostAddresses(host=host, ipv4=got["A"], ipv6=got["AAAA"]), frozenset(failed)


def _applies(target: Target) -> str | None:
    if target.is_ip:
        return "the target is an IP address: it has no MX or address records of its own"
    return None


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False




async def run(ctx: ProbeContext, target: Target) -> None:
    """Look up MX, then the addresses of the domain and of each MX host, concurrently.

    A ``host[:port]`` or URL target names one server, not a mail domain: only its
    addresses are looked up (its MX or SRV records would be meaningless).
    """
    domain = target.domain
    if target.kind in ("host", "url"):
        with ctx.result(domain) as res, res.step(f"Look up the addresses of {domain}") as step:
            own, failed = await resolve_recorded(ctx, step, domain)
            if own.addresses:
                step.add(ADDRESS_FOUND(evidence={"ipv4": list(own.ipv4), "ipv6": list(own.ipv6)}))
            elif not failed:
                step.add(NXDOMAIN(title="The host name has no address", detail=domain))
            res.publish(DOMAIN_ADDRESSES, own)
        return
    with ctx.result(domain) as res:
        mx_task = asyncio.create_task(lookup(ctx.run, domain, "MX"))
        srv_task = asyncio.create_task(_check_srv(ctx, res, domain))
        with res.step(f"Look up the addresses of {domain}") as step:
            own, _ = await resolve_recorded(ctx, step, domain)
            if own.addresses:
                step.add(ADDRESS_FOUND(evidence={"ipv4": list(own.ipv4), "ipv6": list(own.ipv6)}))
        res.publish(DOMAIN_ADDRESSES, own)
        with res.step(f"Look up the MX records of {domain}") as step:
            found = await mx_task
            step.note(f"{found.nameserver or 'resolver'}: {found.outcome} in {found.elapsed_ms} ms")
            for text in found.texts():
                step.recv(f"{domain} MX {text}")
            mx_hosts = await _judge_mx(ctx, step, domain, found, own)
        if mx_hosts is not None:
            res.publish(MX_HOSTS, mx_hosts)
        res.publish(SRV_RECORDS, await srv_task)
        extra = [_check_caa(ctx, res, domain)]
        for mx in mx_hosts or ():
            if not mx.implicit:
                extra.extend(_check_ptr(ctx, res, mx.host, a) for a in mx.ipv4 + mx.ipv6)
        await asyncio.gather(*extra)


async def _check_srv(ctx: ProbeContext, res: ResultRecorder, domain: str) -> tuple[SrvRecord, ...]:
    """Every mail SRV name, concurrently; records in RFC 2782 order per service."""
    names = [f"{service}.{domain}" for service in SRV_SERVICES]
    answers = await asyncio.gather(*(lookup(ctx.run, n, "SRV") for n in names))
    published: list[SrvRecord] = []
    with res.step(f"Look up mail service (SRV) records of {domain}") as step:
        # A fixed seed per domain: the weighted order is random by design, the report
        # should still read the same on every run.
        rng = random.Random(domain)  # noqa: S311 - not for security
        for service, name, found in zip(SRV_SERVICES, names, answers, strict=True):
            if found.outcome in ("nxdomain", "nodata"):
                continue
            if not found.ok:
                report_failure(step, found, informational=True)
                continue
            records = [SrvRecord.from_rdata(r, service=service) for r in found.records]
            selection = order_srv(records, rng=rng)
            for text in found.texts():
                step.recv(f"{name} SRV {text}")
            if selection.not_offered:
                step.add(SRV_NOT_OFFERED(detail=f"{name}: not offered", evidence=found.evidence()))
                published.extend(records)
                continue
            if selection.ignored:
                step.add(SRV_DOT_MIXED(detail=name, evidence=found.evidence()))
            published.extend(selection.targets)
            order = ", ".join(f"{r.target}:{r.port}" for r in selection.targets)
            step.add(SRV_FOUND(detail=f"{service}: {order}", evidence=found.evidence()))
        if not published:
            step.add(SRV_NONE(detail="none of " + ", ".join(SRV_SERVICES)))
        targets = sorted({r.target for r in published if r.offered})
        resolved = await asyncio.gather(*(shared_addresses(ctx.run, t) for t in targets))
        for host, addrs in zip(targets, resolved, strict=True):
            if not addrs.addresses:
                services = sorted({r.service for r in published if r.target == host})
                step.add(SRV_NO_ADDRESS(detail=f"{host} ({', '.join(services)}) has no address"))
    return tuple(published)


async def _check_caa(ctx: ProbeContext, res: ResultRecorder, domain: str) -> None:
    """CAA (RFC 8659 3): the closest CAA RRset walking up from the domain applies."""
    labels = domain.split(".")
    with res.step(f"Look up CAA records for {domain}") as step:
        for i in range(len(labels) - 1):
            name = ".".join(labels[i:])
            found = await lookup(ctx.run, name, "CAA")
            if found.ok:
                caa: list[Any] = list(found.records)
                issuers = sorted(
                    {
                        r.value.decode("utf-8", "replace")
                        for r in caa
                        if r.tag in (b"issue", b"issuewild")
                    }
                )
                allowed = ", ".join(i for i in issuers if i) or 'no CA at all (issue ";")'
                step.add(
                    CAA_FOUND(detail=f"at {name}: may issue: {allowed}", evidence=found.evidence())
                )
                return
            if not found.definitive:
                report_failure(step, found, informational=True)
                return
        step.add(CAA_NONE(detail=f"no CAA record at {domain} or its parents"))


async def _check_ptr(ctx: ProbeContext, res: ResultRecorder, host: str, address: str) -> None:
    import dns.reversename  # noqa: PLC0415

    with res.step(f"Reverse DNS of {address} ({host})") as step:
        rev = dns.reversename.from_address(address).to_text()
        found = await lookup(ctx.run, rev, "PTR")
        if found.outcome in ("nxdomain", "nodata"):
            step.add(PTR_MISSING(detail=f"{address} has no PTR record", evidence=found.evidence()))
            return
        if not found.ok:
            report_failure(step, found, informational=True)
            return
        names = [r.target.to_text().rstrip(".") for r in found.records]  # type: ignore[attr-defined]
        for name in names:
            fwd = await lookup(ctx.run, name, "AAAA" if ":" in address else "A")
            if fwd.ok and any(_same_ip(r.to_text(), address) for r in fwd.records):
                step.add(
                    PTR_OK(detail=f"{address} → {name} → {address}", evidence=found.evidence())
                )
                return
        step.add(
            PTR_MISMATCH(
                detail=f"{address} → {', '.join(names)}, which does not resolve back to {address}",
                evidence=found.evidence(),
            )
        )


async def _judge_mx(
    ctx: ProbeContext, step: StepRecorder, domain: str, found: Lookup, own: HostAddresses
) -> tuple[MxHost, ...] | None:
    if not found.ok:
        if found.outcome == "nodata":
            step.add(
                MX_MISSING(
                    detail=f"{domain} has no MX record; its own address would be used",
                    evidence=found.evidence(),
                )
            )
            if own.addresses:
                return (
                    MxHost(preference=0, host=domain, ipv4=own.ipv4, ipv6=own.ipv6, implicit=True),
                )
            return ()
        report_failure(step, found)
        return None
    records = sorted(found.records, key=lambda r: (r.preference, r.exchange.to_text()))  # type: ignore[attr-defined]
    exchanges = [(r.preference, r.exchange.to_text().rstrip(".").lower()) for r in records]  # type: ignore[attr-defined]
    if any(host in ("", ".") for _, host in exchanges):
        if len(exchanges) > 1:
            step.add(MX_NULL_MIXED(evidence=found.evidence()))
        else:
            step.add(MX_NULL(evidence=found.evidence()))
            return ()
        exchanges = [(p, h) for p, h in exchanges if h not in ("", ".")]
    step.add(
        MX_FOUND(
            detail=", ".join(f"{p} {h}" for p, h in exchanges),
            evidence=found.evidence(),
        )
    )
    resolved = await asyncio.gather(*(_resolve_mx(ctx, step, host) for _, host in exchanges))
    return tuple(
        MxHost(preference=p, host=h, ipv4=a.ipv4, ipv6=a.ipv6)
        for (p, h), a in zip(exchanges, resolved, strict=True)
    )


async def _resolve_mx(ctx: ProbeContext, parent: StepRecorder, host: str) -> HostAddresses:
    with parent.step(f"Resolve MX host {host}") as step:
        if is_ip(host):
            step.add(MX_IP_LITERAL(detail=f"the MX target is {host}"))
            return HostAddresses(host=host)
        addresses, failed = await resolve_recorded(ctx, step, host)
        cname = await lookup(ctx.run, host, "CNAME")
        if cname.ok:
            step.add(
                MX_IS_CNAME(
                    detail=f"{host} is an alias: {cname.texts()[0]}", evidence=cname.evidence()
                )
            )
        # A failed look-up already has its finding; it says nothing about the records.
        if not addresses.addresses and not failed:
            step.add(MX_NO_ADDRESS(detail=f"{host} has neither A nor AAAA records"))
        elif not addresses.ipv6 and 6 in ctx.options.families and "AAAA" not in failed:
            step.add(ADDRESS_NO_IPV6(detail=f"{host} has IPv4 addresses only"))
        return addresses


PROBE = Probe(
    id="dns",
    title="DNS: MX and address records",
    run=run,
    provides=(MX_HOSTS, DOMAIN_ADDRESSES, SRV_RECORDS),
    findings=FINDINGS,
    applies=_applies,
)
