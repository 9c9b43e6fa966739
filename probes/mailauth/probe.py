"""The mail-authentication probe: SPF, DMARC, DKIM, MTA-STS and TLS-RPT of the domain.

The judging is in the sibling modules (pure, table-tested); this module asks the DNS
through the run's resolver, fetches the MTA-STS policy over HTTPS with the run's trust
(the certificate must validate, RFC 8461 3.3), and records one step per standard, run
concurrently.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from analyzer.core.errors import NetError
from analyzer.core.facts import MX_HOSTS, MxHost
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder
from analyzer.protocols.resolve import Lookup, lookup
from probes.mailauth import all_findings, dkim, dmarc, mtasts, spf, tlsrpt

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE"]

#: RFC 8461 3.3 sets no hard size; policies are a few hundred bytes. 64 KiB is generous.
MAX_POLICY_BYTES = 64 * 1024

POLICY_UNAVAILABLE = FindingSpec(
    code="dns.mtasts.policy_unavailable",
    status=Status.FAIL,
    title="MTA-STS is announced but its policy cannot be fetched",
    meaning="The _mta-sts TXT record says a policy exists, but https://mta-sts.<domain>/"
    ".well-known/mta-sts.txt did not deliver it (HTTP error, invalid certificate, timeout). "
    "Senders that cached an earlier policy keep enforcing it; new senders treat the domain as "
    "having none.",
    remediation="Serve the policy at that URL with a valid certificate for mta-sts.<domain>, "
    "or remove the _mta-sts TXT record.",
    reference="https://www.rfc-editor.org/rfc/rfc8461#section-3.3",
)


async def run(ctx: ProbeContext, target: Target) -> None:
    """Check each standard concurrently; one result for the domain."""
    domain = target.domain
    mx: tuple[MxHost, ...] = ctx.fact_or(MX_HOSTS, ()) or ()

    async def ask(name: str, rdtype: str) -> Lookup:
        return await lookup(ctx.run, name, rdtype)

    with ctx.result(domain) as res:
        await asyncio.gather(
            _spf(ctx, res, domain, mx, ask),
            _dmarc(ctx, res, domain, mx, ask),
            _dkim(ctx, res, domain, ask),
            _mtasts(ctx, res, domain, mx, ask),
            _tlsrpt(res, domain, ask),
        )


async def _spf(
    ctx: ProbeContext, res: ResultRecorder, domain: str, mx: tuple[MxHost, ...], ask: Any
) -> None:
    with res.step(f"SPF of {domain}") as step:
        evaluation = await spf.evaluate_spf(domain, ask)
        if evaluation.record:
            step.recv(f"{domain} TXT {evaluation.record}")
        step.note(
            f"{evaluation.lookups} DNS-querying terms, {evaluation.void_lookups} void "
            "look-ups (limits 10 and 2)"
        )
        for finding in evaluation.findings:
            step.add(finding)
        if evaluation.parsed is None:
            return
        hosts = [(m.host, a) for m in mx if not m.implicit for a in m.ipv4 + m.ipv6]
        if hosts:
            with step.step("Does each MX address pass SPF (if it also sends mail)?") as sub:
                checks = await asyncio.gather(
                    *(spf.check_host(a, domain, ask) for _, a in hosts[:20])
                )
                for (host, _addr), check in zip(hosts, checks, strict=False):
                    sub.add(spf.address_finding(check, host=host))


async def _dmarc(
    ctx: ProbeContext, res: ResultRecorder, domain: str, mx: tuple[MxHost, ...], ask: Any
) -> None:
    with res.step(f"DMARC of {domain}") as step:
        psl = await ctx.run.shared("public-suffix-list", _psl)
        check = await dmarc.evaluate_dmarc(domain, ask, has_mx=bool(mx), psl=psl)
        if check.text:
            step.recv(f"_dmarc.{check.policy_domain} TXT {check.text}")
        for finding in check.findings:
            step.add(finding)


async def _psl() -> dmarc.SuffixList:
    # Once per run; each top-level domain's rules are parsed when first asked about.
    return dmarc.SuffixList()


async def _dkim(ctx: ProbeContext, res: ResultRecorder, domain: str, ask: Any) -> None:
    selectors = list(dict.fromkeys((*ctx.options.dkim_selectors, *dkim.COMMON_SELECTORS)))
    with res.step(f"DKIM keys of {domain} ({len(selectors)} selectors)") as step:
        answers = await asyncio.gather(*(ask(dkim.dkim_name(s, domain), "TXT") for s in selectors))
        found = dict(zip(selectors, answers, strict=True))
        for selector, answer in found.items():
            if answer.ok:
                step.recv(
                    f"{dkim.dkim_name(selector, domain)} TXT " + " ".join(answer.texts())[:300]
                )
        for finding in dkim.check_dkim_selectors(domain, found):
            step.add(finding)


async def _mtasts(
    ctx: ProbeContext, res: ResultRecorder, domain: str, mx: tuple[MxHost, ...], ask: Any
) -> None:
    with res.step(f"MTA-STS of {domain}") as step:
        record = mtasts.check_mtasts_record(domain, await ask(mtasts.mtasts_name(domain), "TXT"))
        if record.text:
            step.recv(f"{mtasts.mtasts_name(domain)} TXT {record.text}")
        for finding in record.findings:
            step.add(finding)
        if record.record is None:
            return
        # The HTTP machinery (httpx and its stack: ~0.1 s of CPU) only for a published policy.
        from analyzer.protocols.http import make_client, request_bounded  # noqa: PLC0415

        url = mtasts.policy_url(domain)
        with step.step(f"Fetch the policy {url}") as sub:
            sub.send(f"GET {url}")
            try:
                async with make_client(ctx.run) as client:
                    response = await request_bounded(
                        client, "GET", url, max_bytes=MAX_POLICY_BYTES, timeout=ctx.op_timeout()
                    )
            except NetError as exc:
                sub.add(
                    POLICY_UNAVAILABLE(
                        detail=f"{url}: {exc}", evidence={"url": url, "phase": exc.phase}
                    )
                )
                return
            sub.recv(
                f"HTTP {response.status} {response.header('content-type') or ''} "
                f"({len(response.body)} bytes)"
            )
            if response.status != 200:
                sub.add(
                    POLICY_UNAVAILABLE(
                        detail=f"{url} answered HTTP {response.status}",
                        evidence={"url": url, "status": response.status},
                    )
                )
                return
            hosts = [m.host for m in mx if not m.implicit]
            policy = mtasts.check_policy_text(response.body, hosts)
            for line in response.body.decode("utf-8", "replace").splitlines()[:20]:
                sub.recv(line)
            for finding in policy.findings:
                sub.add(finding)


async def _tlsrpt(res: ResultRecorder, domain: str, ask: Any) -> None:
    with res.step(f"TLS-RPT of {domain}") as step:
        check = tlsrpt.check_tlsrpt(domain, await ask(tlsrpt.tlsrpt_name(domain), "TXT"))
        if check.text:
            step.recv(f"{tlsrpt.tlsrpt_name(domain)} TXT {check.text}")
        for finding in check.findings:
            step.add(finding)


PROBE = Probe(
    id="mailauth",
    title="Mail authentication: SPF, DMARC, DKIM, MTA-STS, TLS-RPT",
    run=run,
    uses=(MX_HOSTS,),
    findings=(*all_findings(), POLICY_UNAVAILABLE),
    applies=lambda t: (
        "the target is an IP address: it has no mail policy records" if t.is_ip else None
    ),
    verifies_tls=True,
)
