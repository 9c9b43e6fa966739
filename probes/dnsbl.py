"""DNS block lists (opt-in, ``--dnsbl zone[,zone]``): is an MX address listed?

Off by default: querying a block list tells its operator which addresses you care about,
and public lists limit or refuse queries through large resolvers. Each MX address is
looked up as ``<reversed address>.<zone>`` (RFC 5782); an answer in 127.0.0.0/8 means
listed, and the usual return codes are explained. TXT gives the list's reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING

from analyzer.core.facts import MX_HOSTS, MxHost
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.protocols.resolve import lookup

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE", "query_name"]

RFC5782 = "https://www.rfc-editor.org/rfc/rfc5782"

#: Meanings of common return codes (Spamhaus ZEN and most lists follow these).
RETURN_CODES = {
    "127.0.0.2": "listed (spam source; SBL-style direct listing)",
    "127.0.0.3": "listed (spam source, CSS: snowshoe spam)",
    "127.0.0.4": "listed (exploited host / botnet, XBL-style)",
    "127.0.0.9": "listed (hijacked network, DROP)",
    "127.0.0.10": "policy listing (ISP says: end-user address, should not send mail directly)",
    "127.0.0.11": "policy listing (end-user address range)",
    "127.255.255.252": "query refused: typing error in the list name",
    "127.255.255.254": "query refused: public or open resolver used (the list blocks it)",
    "127.255.255.255": "query refused: too many queries (rate limited)",
}

NOT_LISTED = FindingSpec(
    code="dnsbl.not_listed",
    status=Status.PASS,
    title="MX address not listed",
    meaning="The block list has no entry for the address.",
    reference=RFC5782,
)
LISTED = FindingSpec(
    code="dnsbl.listed",
    status=Status.FAIL,
    title="MX address is on a block list",
    meaning="Receivers that use this list reject or junk mail sent from this address. It "
    "matters when the MX host also sends mail (bounces, forwarding, outbound relay).",
    remediation="Read the list's reason (TXT, in the detail), fix the cause (compromised "
    "account, open relay, missing PTR), then request delisting on the list's web site.",
    reference=RFC5782,
)
REFUSED = FindingSpec(
    code="dnsbl.refused",
    status=Status.INCONCLUSIVE,
    title="The block list refused to answer",
    meaning="The list answered with a refusal code (127.255.255.x): queries through public "
    "resolvers or above its free limit are blocked, so nothing can be concluded.",
    remediation="Query the list through your own resolver (--resolver), or use its "
    "data-feed service.",
    reference=RFC5782,
)
FAILED = FindingSpec(
    code="dnsbl.lookup_failed",
    status=Status.INCONCLUSIVE,
    title="The block list could not be asked",
    meaning="The look-up timed out or failed, so the listing status is unknown.",
    remediation="Run again later; some lists refuse queries from public resolvers, so use "
    "--resolver with your own resolver.",
)

FINDINGS = (NOT_LISTED, LISTED, REFUSED, FAILED)


def query_name(address: str, zone: str) -> str:
    """``<reversed address>.<zone>`` (RFC 5782 2.1 for IPv4, 2.4 nibbles for IPv6)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ".".join(reversed(str(ip).split("."))) + f".{zone}"
    return ".".join(reversed(ip.exploded.replace(":", ""))) + f".{zone}"


async def run(ctx: ProbeContext, target: Target) -> None:
    """Look up every MX address in every requested list, concurrently."""
    mx: tuple[MxHost, ...] = ctx.fact_or(MX_HOSTS, ()) or ()
    addresses = sorted({(m.host, a) for m in mx for a in m.ipv4 + m.ipv6})
    await asyncio.gather(*(_check(ctx, zone, addresses) for zone in ctx.options.dnsbl))


async def _check(ctx: ProbeContext, zone: str, addresses: list[tuple[str, str]]) -> None:
    with ctx.result(zone) as res:
        answers = await asyncio.gather(
            *(lookup(ctx.run, query_name(a, zone), "A") for _, a in addresses)
        )
        for (host, address), found in zip(addresses, answers, strict=True):
            with res.step(f"{address} ({host}) in {zone}") as step:
                step.send(f"{found.name} A")
                if found.outcome in ("nxdomain", "nodata"):
                    step.add(NOT_LISTED(detail=f"{address} is not listed in {zone}"))
                    continue
                if not found.ok:
                    step.add(FAILED(detail=f"{found.outcome} {found.detail}".strip(),
                                    evidence=found.evidence()))
                    continue
                codes = [r.to_text() for r in found.records]
                for code in codes:
                    step.recv(f"{found.name} A {code}")
                if not all(c.startswith("127.") for c in codes):
                    # RFC 5782 2.1: listings are in 127.0.0.0/8; anything else is a
                    # resolver rewriting NXDOMAIN (an ad page), not the list's answer.
                    step.add(FAILED(detail=f"the answer {', '.join(codes)} is not a list "
                                    "code (outside 127.0.0.0/8): the resolver rewrites "
                                    "answers", evidence=found.evidence()))  # fmt: skip
                    continue
                if any(c.startswith("127.255.255.") for c in codes):
                    step.add(REFUSED(detail=", ".join(f"{c}: {RETURN_CODES.get(c, '?')}"
                                                      for c in codes)))
                    continue
                why = await lookup(ctx.run, found.name, "TXT")
                reason = " ".join(why.texts())[:300] if why.ok else "no TXT reason given"
                meaning = "; ".join(f"{c}: {RETURN_CODES.get(c, 'listed')}" for c in codes)
                step.add(LISTED(detail=f"{address} is listed in {zone} ({meaning}); {reason}",
                                evidence={"codes": codes, "reason": reason, "zone": zone}))


PROBE = Probe(
    id="dnsbl",
    title="DNS block lists (opt-in)",
    run=run,
    needs=(MX_HOSTS,),
    findings=FINDINGS,
    default=False,
    enabled_by="dnsbl",
    applies=lambda t: "the target is an IP address" if t.is_ip else None,
)
