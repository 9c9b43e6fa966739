"""Firewall reachability: every expected port on every address, IPv4 and IPv6 apart.

For each endpoint (see :mod:`analyzer.protocols.endpoints`) and each of its addresses: a TCP
connect classified as open, closed (reset/refused), filtered (no answer before the
connect timeout) or unreachable, with the connect time; then, where the protocol speaks
first (SMTP, IMAP, POP3 without TLS), the greeting read as whole lines. Findings name
the likely cause instead of "blocked, not listening, or not producing the expected
response".
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from analyzer.core.errors import NetError, NetTimeout, ProtocolViolation
from analyzer.core.facts import DOMAIN_ADDRESSES, MX_HOSTS, OPEN_PORTS, SRV_RECORDS
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Json, Status
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder, StepRecorder
from analyzer.protocols.endpoints import Endpoint, check_endpoints, wanted_endpoints
from analyzer.protocols.mailproto import read_greeting
from analyzer.protocols.net import Connection, ConnectOutcome, family_of, probe_connect

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE"]


OPEN = FindingSpec(
    code="ports.open",
    status=Status.PASS,
    title="Port open",
    meaning="A TCP connection to the address and port succeeded.",
)
NOT_OFFERED = FindingSpec(
    code="ports.not_offered",
    status=Status.PASS,
    title="Port not offered",
    meaning="Nothing published this endpoint (it was tried because clients guess it); it is "
    "closed or filtered, which is fine if the service is not meant to be offered here.",
)
CLOSED = FindingSpec(
    code="ports.closed",
    status=Status.FAIL,
    title="Port closed: the host answered, but nothing listens there",
    meaning="The connection was refused (TCP reset or ICMP port unreachable). The host is "
    "reachable, but the service is not running on this address, or a firewall rejects it.",
    remediation="Start the service on this address and port, or fix the firewall rule that "
    "rejects it; if the service moved, update the DNS records that announce it.",
)
FILTERED = FindingSpec(
    code="ports.filtered",
    status=Status.FAIL,
    title="Port filtered: no answer at all",
    meaning="The connection attempt got no answer before the connect timeout: a firewall "
    "silently drops the packets on the way (here, at the host, or at the provider). Clients "
    "hang until their own timeout.",
    remediation="Allow this port through the firewalls between the internet and the server "
    "(host firewall, network ACLs, cloud security groups).",
)
UNREACHABLE = FindingSpec(
    code="ports.unreachable",
    status=Status.FAIL,
    title="Address unreachable: no route to it",
    meaning="The network reported that the address cannot be reached (no route, or the "
    "address family is not available from where rca runs).",
    remediation="Check the address in DNS and the routing to it; if rca's own network lacks "
    "IPv6, run with -4.",
)
CONNECT_ERROR = FindingSpec(
    code="ports.error",
    status=Status.ERROR,
    title="The connection attempt failed in an unexpected way",
    meaning="The connect failed with an error that is neither refused, timeout nor "
    "unreachable; the detail has the operating system's words.",
)
IPV6_BROKEN = FindingSpec(
    code="ports.ipv6_broken",
    status=Status.FAIL,
    title="IPv6 does not work while IPv4 does",
    meaning="The service answers on its IPv4 address but not on its IPv6 address. Clients "
    "and mail servers prefer IPv6 when a AAAA record exists: they stall (filtered) or fail "
    "over slowly before trying IPv4.",
    remediation="Make the service listen on the IPv6 address and allow it through the "
    "firewall, or remove the AAAA record until IPv6 works.",
)
IPV4_BROKEN = FindingSpec(
    code="ports.ipv4_broken",
    status=Status.FAIL,
    title="IPv4 does not work while IPv6 does",
    meaning="The service answers on its IPv6 address but not on its IPv4 address; IPv4-only "
    "clients and senders cannot reach it.",
    remediation="Make the service listen on the IPv4 address and allow it through the "
    "firewall, or correct the A record.",
)
NO_ADDRESS = FindingSpec(
    code="ports.no_address",
    status=Status.FAIL,
    title="Endpoint host has no address",
    meaning="The host named for this service (by an MX or SRV record, or by you) has no A or "
    "AAAA record, so nothing can connect to it.",
    remediation="Publish A/AAAA records for the host, or point the record at a host that has them.",
)
BANNER_OK = FindingSpec(
    code="ports.banner.ok",
    status=Status.PASS,
    title="Greeting received",
    meaning="The server greeted as its protocol requires.",
)
BANNER_REFUSED = FindingSpec(
    code="ports.banner.refused",
    status=Status.INCONCLUSIVE,
    title="The server refused the session in its greeting",
    meaning="The server answered, but with a refusal (SMTP 421/554, IMAP BYE, POP3 -ERR): it "
    "is overloaded, rate-limits or blocks where rca runs from (e.g. a DNSBL listing of this "
    "address). This says little about how it treats other clients.",
    remediation="Read the server's words in the detail; if it blocks this network on "
    "purpose, run rca from another place.",
)
BANNER_MISSING = FindingSpec(
    code="ports.banner.missing",
    status=Status.FAIL,
    title="The server accepted the connection but never greeted",
    meaning="The TCP connection opened, but no greeting came before the timeout. A proxy or "
    "load balancer may accept connections with nothing behind it, or the service hangs.",
    remediation="Check the service behind the port (and any load balancer or proxy in front "
    "of it).",
)
BANNER_SLOW = FindingSpec(
    code="ports.banner.slow",
    status=Status.WARN,
    title="Slow greeting",
    meaning="The greeting came, but late. Anti-spam delays (postscreen, greet pause) are "
    "normal on MX port 25 for a few seconds; on client ports slow greetings make clients "
    "time out.",
    remediation="Check server load and reverse-DNS lookups on the server side; reduce greet "
    "delays on ports that clients use.",
)
BANNER_WRONG = FindingSpec(
    code="ports.banner.wrong",
    status=Status.FAIL,
    title="Something else answers on this port",
    meaning="The first bytes were not the expected protocol's greeting (for example an HTTP "
    "server, TLS on a plaintext port, or a garbled line).",
    remediation="Check which service listens on this port (port forwarding, load balancer "
    "pools, or a TLS-only port configured where STARTTLS is expected).",
)

FINDINGS = (
    OPEN,
    NOT_OFFERED,
    CLOSED,
    FILTERED,
    UNREACHABLE,
    CONNECT_ERROR,
    IPV6_BROKEN,
    IPV4_BROKEN,
    NO_ADDRESS,
    BANNER_OK,
    BANNER_REFUSED,
    BANNER_MISSING,
    BANNER_SLOW,
    BANNER_WRONG,
)

_STATE_FINDING = {
    "closed": CLOSED,
    "filtered": FILTERED,
    "unreachable": UNREACHABLE,
    "error": CONNECT_ERROR,
}


async def run(ctx: ProbeContext, target: Target) -> None:
    """Check every endpoint concurrently, each as soon as its host is resolved; one result
    per endpoint, in the stable order of the plan."""
    wanted = wanted_endpoints(ctx, target)
    checked = await check_endpoints(ctx, wanted, lambda ep: _check_endpoint(ctx, ep))
    ctx.order_results([ep.label for ep, _ in checked])
    open_ports = sorted({ep.label for ep, ok in checked if ok})
    ctx.publish(OPEN_PORTS, tuple(open_ports))


async def _check_endpoint(ctx: ProbeContext, ep: Endpoint) -> bool:
    """One endpoint, checked once per batch (every option the result depends on is in
    the key; see :meth:`~analyzer.core.probe.ProbeContext.shared`)."""
    o = ctx.options
    key = (ep, o.families, o.connect_timeout, o.op_timeout, o.slow_greeting_s)
    return await ctx.shared(key, lambda: _check_endpoint_now(ctx, ep))


async def _check_endpoint_now(ctx: ProbeContext, ep: Endpoint) -> bool:
    with ctx.result(ep.label) as res:
        addresses = ep.addresses(ctx.options.families)
        if not addresses:
            with res.step(f"Find the addresses of {ep.host}") as step:
                if ep.expected:
                    step.add(
                        NO_ADDRESS(
                            detail=f"{ep.host} ({ep.source}) has no address for "
                            f"IPv{'/'.join(map(str, ctx.options.families))}"
                        )
                    )
                else:
                    step.add(NOT_OFFERED(detail=f"{ep.host} has no address"))
            return False
        states = await asyncio.gather(*(_check_address(ctx, res, ep, a) for a in addresses))
        _compare_families(res, ep, dict(zip(addresses, states, strict=True)))
        return any(s.state == "open" for s in states)


async def _check_address(
    ctx: ProbeContext, res: ResultRecorder, ep: Endpoint, address: str
) -> ConnectOutcome:
    fam = family_of(address)
    shown = f"[{address}]" if fam == 6 else address
    with res.step(f"Connect to {shown}:{ep.port} (IPv{fam}, {ep.service.title})") as step:
        outcome, conn = await probe_connect(
            ctx.run,
            ep.host,
            address,
            ep.port,
            timeout=min(ctx.options.connect_timeout, ctx.op_timeout()),
        )
        evidence: dict[str, Json] = {
            "address": address,
            "port": ep.port,
            "state": outcome.state,
            "elapsed_ms": outcome.elapsed_ms,
            "source": ep.source,
        }
        step.note(f"{outcome.state} after {outcome.elapsed_ms} ms {outcome.detail}".rstrip())
        if conn is None:
            if ep.expected:
                step.add(_STATE_FINDING[outcome.state](detail=outcome.detail, evidence=evidence))
            else:
                step.add(
                    NOT_OFFERED(detail=f"{outcome.state}: {outcome.detail}", evidence=evidence)
                )
            return outcome
        conn.transcript = step
        try:
            step.add(OPEN(detail=f"connected in {outcome.elapsed_ms} ms", evidence=evidence))
            if ep.service.tls != "implicit" and ep.service.speaks in ("smtp", "imap", "pop3"):
                await _greeting(ctx, step, ep, conn)
        finally:
            await conn.close()
        return outcome


async def _greeting(
    ctx: ProbeContext, parent: StepRecorder, ep: Endpoint, conn: Connection
) -> None:
    speaks = ep.service.speaks
    if speaks == "http":
        return
    with parent.step("Read the greeting") as step:
        conn.transcript = step
        try:
            greeting = await read_greeting(conn, speaks, timeout=ctx.op_timeout())
        except NetTimeout as exc:
            step.add(BANNER_MISSING(detail=str(exc)))
            return
        except ProtocolViolation as exc:
            step.add(BANNER_WRONG(detail=str(exc)))
            return
        except NetError as exc:
            step.add(
                BANNER_MISSING(title="The connection closed before a greeting", detail=str(exc))
            )
            return
        evidence: dict[str, Json] = {
            "greeting": greeting.text[:1000],
            "elapsed_ms": greeting.elapsed_ms,
        }
        if not greeting.ok:
            step.add(BANNER_REFUSED(detail=greeting.text[:500], evidence=evidence))
            return
        # Anti-spam greet delays are normal on MX:25 (postscreen's default is 6 s).
        slow_after = ctx.options.slow_greeting_s * (3 if ep.port == 25 else 1)
        if greeting.elapsed_ms > slow_after * 1000:
            step.add(
                BANNER_SLOW(
                    detail=f"greeting after {greeting.elapsed_ms / 1000:.1f} s "
                    f"(threshold {slow_after:g} s)",
                    evidence=evidence,
                )
            )
        step.add(BANNER_OK(detail=greeting.reply.lines[0][:300], evidence=evidence))


def _compare_families(res: ResultRecorder, ep: Endpoint, states: dict[str, ConnectOutcome]) -> None:
    ok = {4: False, 6: False}
    bad = {4: False, 6: False}
    for address, outcome in states.items():
        fam = family_of(address)
        if outcome.state == "open":
            ok[fam] = True
        else:
            bad[fam] = True
    if not ep.expected:
        return
    for broken, working, spec in ((6, 4, IPV6_BROKEN), (4, 6, IPV4_BROKEN)):
        if bad[broken] and ok[working] and not ok[broken]:
            worst_state = next(o.state for a, o in states.items() if family_of(a) == broken)
            with res.step(f"Compare IPv4 and IPv6 on {ep.label}") as step:
                effect = (
                    "clients preferring IPv6 will stall until their timeout"
                    if worst_state == "filtered" and broken == 6
                    else "clients must fall back to the other family"
                )
                step.add(
                    spec(
                        detail=f"IPv{broken} {worst_state} while IPv{working} is open: {effect}",
                        evidence={a: o.state for a, o in states.items()},
                    )
                )


PROBE = Probe(
    id="ports",
    title="Firewall reachability of every endpoint",
    run=run,
    uses=(MX_HOSTS, SRV_RECORDS, DOMAIN_ADDRESSES),
    provides=(OPEN_PORTS,),
    findings=FINDINGS,
)
