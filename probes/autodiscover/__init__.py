"""Exchange Autodiscover: every method a client tries, in order, each with its own steps.

The first result (subject: the address) is the verdict: which method answered, the settings
(published as :data:`~analyzer.core.facts.AUTODISCOVER_SETTINGS` for the EWS, ActiveSync,
Outlook Anywhere and MAPI probes), the Autodiscover v2 (JSON) answers compared with them,
and the ActiveSync URL. Then one result per method tried
(:mod:`probes.autodiscover.discovery`), so a reader sees exactly where discovery breaks, as
in ExRCA's trace. Outlook stops at the first method that returns
settings; ``--all-methods`` tries and reports every one.

The outlook schema has no ActiveSync URL (its ``ASUrl`` is the Availability service, an EWS
URL). The ActiveSync URL comes from the mobilesync schema (asked with ``--mobilesync``, or
when nothing else gives one), else from Autodiscover v2's ``Protocol=ActiveSync``. The
ActiveSync probe puts ``--activesync-url`` before both and, without any, makes a guess of its
own (reported as one).

Modules: :mod:`~probes.autodiscover.pox` (request and response XML, pure),
:mod:`~probes.autodiscover.settings` (answer → facts, pure), :mod:`~probes.autodiscover.v2`
(JSON service), :mod:`~probes.autodiscover.discovery` (the methods and the host block),
:mod:`~probes.autodiscover.findings` (the codes).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from analyzer.core.facts import AUTODISCOVER_SETTINGS, AutodiscoverSettings
from analyzer.core.model import Json
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder
from probes import tlschain
from probes.autodiscover import findings as F
from probes.autodiscover.discovery import Attempt, Discovery, choose_scheme, scheme_name
from probes.autodiscover.pox import NotAutodiscover, PoxError, build_request, parse_response
from probes.autodiscover.settings import (
    check_availability,
    check_settings,
    settings_evidence,
    to_settings,
    with_activesync,
)
from probes.autodiscover.v2 import check_v2, v2_host

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cryptography import x509

    from analyzer.core.targets import Target

__all__ = ["FINDINGS", "PROBE"]

FINDINGS = (*F.FINDINGS, *tlschain.FINDINGS)

_METHOD_NAMES = {
    "root": "the root domain URL",
    "autodiscover": "the autodiscover host",
    "http": "the HTTP redirect method",
    "srv": "the SRV record",
    "url": "the URL given with --autodiscover-url",
}


def _applies(target: Target) -> str | None:
    if target.address is None:
        return "Autodiscover needs an e-mail address (user@domain) to ask for"
    return None


async def run(ctx: ProbeContext, target: Target) -> None:
    """Discover the settings of the target address (see the module docstring)."""
    address = target.address
    assert address is not None  # noqa: S101 - guaranteed by _applies
    roots: Sequence[x509.Certificate] = await tlschain.run_roots(ctx.run)
    trusted = tuple(d.lower().rstrip(".") for d in ctx.options.trust_redirect)
    async with contextlib.AsyncExitStack() as stack:
        discovery = Discovery(ctx=ctx, roots=roots, stack=stack, original=address, trusted=trusted)
        with ctx.result(address) as summary:
            found = await discovery.run()
            settings = _outcome(ctx, summary, discovery, found)
            if found is not None and settings is not None:
                if ctx.options.mobilesync:
                    settings = await _mobilesync(ctx, summary, discovery, found, settings)
                client = await discovery.client(authenticated=False)
                answers = await check_v2(
                    ctx,
                    summary,
                    client,
                    host=v2_host(found.url),
                    address=found.address,
                    settings=settings,
                    asked=discovery.v2_asked(found.url, found.address),
                )
                if not settings.eas_url and answers.get("ActiveSync"):
                    settings = with_activesync(settings, answers["ActiveSync"], "v2")
                options = ctx.options
                if not (settings.eas_url or options.activesync_url or options.mobilesync):
                    # No source of the ActiveSync URL yet: ask as a phone would.
                    settings = await _mobilesync(
                        ctx, summary, discovery, found, settings, reason="v2 gave none"
                    )
                summary.publish(AUTODISCOVER_SETTINGS, settings)


def _outcome(
    ctx: ProbeContext, res: ResultRecorder, discovery: Discovery, found: Attempt | None
) -> AutodiscoverSettings | None:
    """The verdict step: which method answered, or why none did."""
    tried: list[Json] = [
        {"method": a.method, "url": a.url, "address": a.address, "outcome": a.kind}
        for a in discovery.attempts
    ]
    with res.step(f"Find the Autodiscover settings of {discovery.original}") as step:
        if found is None or found.response is None:
            kinds = {a.kind for a in discovery.attempts}
            creds = ctx.options.credentials
            if "settings" not in kinds and not creds.has_secret and "no_credentials" in kinds:
                step.add(
                    F.NO_CREDENTIALS(
                        detail="hosts were tested; the settings need a login",
                        evidence={"tried": tried},
                    )
                )
            elif kinds & {"withheld", "no_credentials"}:
                step.add(
                    F.NOT_JUDGED(
                        detail="credentials were not sent where Autodiscover "
                        "answered (see the methods)",
                        evidence={"tried": tried},
                    )
                )
            else:
                step.add(
                    F.NONE_FOUND(
                        detail=f"{len(discovery.attempts)} method(s) tried",
                        evidence={"tried": tried},
                    )
                )
            return None
        settings = to_settings(
            found.response,
            email=found.address,
            source_url=found.url,
            method=found.method,
            vouched=found.vouched,
            unvouched_reason=found.unvouched_reason,
        )
        via = f" after {found.hops} redirect(s)" if found.hops else ""
        step.add(
            F.FOUND(
                detail=f"by {_METHOD_NAMES.get(found.method, found.method)}: {found.url}{via}"
                f" ({scheme_name(found.auth)} authentication)",
                evidence={**settings_evidence(settings), "method": found.method, "tried": tried},
            )
        )
        if found.method == "http":
            step.add(F.HTTP_REDIRECT_METHOD(detail=f"settings reached through {found.url}"))
        if not found.vouched:
            step.add(
                F.SETTINGS_UNVOUCHED(
                    detail=f"{found.unvouched_reason}: the hosts it names receive credentials "
                    "only if the credential policy allows them by name",
                    evidence={"url": found.url, "hosts": list(settings.hosts)},
                )
            )
        for finding in check_settings(found.response, settings):
            step.add(finding)
        availability = check_availability(settings)
        if availability is not None:
            step.add(availability)
        return settings


async def _mobilesync(
    ctx: ProbeContext,
    res: ResultRecorder,
    discovery: Discovery,
    found: Attempt,
    settings: AutodiscoverSettings,
    *,
    reason: str = "--mobilesync",
) -> AutodiscoverSettings:
    """The same URL asked in the ActiveSync (mobilesync) schema, for ``reason``; its answer
    becomes the ActiveSync URL."""
    creds = ctx.options.credentials
    scheme = None
    if found.auth not in ("", "anonymous"):
        scheme = choose_scheme(
            [found.auth],
            has_password=creds.password() is not None,
            has_token=creds.token() is not None,
        )
    with res.step(f"Ask {found.url} in the mobilesync (ActiveSync) schema ({reason})") as step:
        body = build_request(found.address, "mobilesync")
        # offered=None: NTLM starts with an unauthenticated leg and reads the 401 again.
        response = await discovery._send(
            step,
            "POST",
            found.url,
            found.address,  # noqa: SLF001
            scheme=scheme,
            content=body,
        )
        if response is None:
            return settings
        detail: str
        try:
            if response.status != 200:
                raise NotAutodiscover(f"HTTP {response.status}")
            answer = parse_response(response.body)
            if answer.action == "error":
                raise NotAutodiscover(f"error {answer.error_code}: {answer.error_message}")
            if answer.action != "settings" or not answer.mobilesync_url:
                raise NotAutodiscover(f"answered {answer.action} {answer.redirect}".strip())
        except PoxError as exc:
            detail = str(exc)[:500]
            step.add(F.MOBILESYNC_FAILED(detail=detail))
            return settings
        step.add(F.MOBILESYNC_OK(detail=answer.mobilesync_url))
        return with_activesync(settings, answer.mobilesync_url, "mobilesync")


PROBE = Probe(
    id="autodiscover",
    title="Exchange Autodiscover (POX and v2)",
    run=run,
    provides=(AUTODISCOVER_SETTINGS,),
    findings=FINDINGS,
    applies=_applies,
    uses_credentials=True,
    verifies_tls=True,
)
