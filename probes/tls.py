"""Certificates and TLS of every endpoint, on every address: ExRCA's host block.

For each endpoint that speaks TLS (implicit, or STARTTLS after the protocol's opening)
and each of its addresses: handshake with SNI, capture the chain exactly as presented,
the protocol version and cipher, and judge the chain with :mod:`probes.tlschain` — the
*reason* when it fails, with a confirmed fix for a missing intermediate (fetched from
the AIA URL within size and time limits). Then, on one address per endpoint, which
protocol versions the server accepts: one handshake offering only that version each, but
for the version the address's own handshake negotiated (offering all of them), which it
has accepted already. The SSL contexts and each host's chain diagnosis are made once per
run and shared by every connection.

MX port 25 is judged as senders judge it: TLS there is opportunistic (RFC 3207), so a
certificate a sender cannot verify is a warning, not a failure — unless the domain
asks senders to verify (MTA-STS in enforce mode), which another check reports.

Publishes :data:`TLS_VERDICTS` (``host:port`` → ``valid``/``invalid``/``unreachable``) so
that login probes never send credentials over a connection whose certificate failed,
and :data:`TLS_CHAINS` (the DER chains, not shown in reports) for the DANE check; both
before the first handshake, each endpoint's entry filled as soon as its handshakes end
(before its version checks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.core.errors import (
    ConnectionReset,
    NetError,
    NetTimeout,
    ProtocolViolation,
    TlsFailure,
)
from analyzer.core.facts import (
    DOMAIN_ADDRESSES,
    MX_HOSTS,
    SRV_RECORDS,
    TLS_CHAINS,
    TLS_VERDICTS,
    TlsChains,
    TlsVerdicts,
)
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder, StepRecorder
from analyzer.protocols.endpoints import Endpoint, check_endpoints, wanted_endpoints
from analyzer.protocols.net import family_of
from analyzer.protocols.tlsprobe import (
    TLS_VERSIONS,
    Refusal,
    TlsSession,
    TlsVersionName,
    can_offer,
    inspection_context,
    open_tls,
    version_context,
)
from probes import tlschain

if TYPE_CHECKING:
    from cryptography import x509

    from analyzer.core.targets import Target

__all__ = ["PROBE", "TLS_CHAINS", "TLS_VERDICTS"]


RFC8996 = "https://www.rfc-editor.org/rfc/rfc8996"

HANDSHAKE_OK = FindingSpec(
    code="tls.handshake.ok",
    status=Status.PASS,
    title="TLS handshake completed",
    meaning="A TLS session was established; the evidence shows the version and cipher.",
)
HANDSHAKE_FAILED = FindingSpec(
    code="tls.handshake.failed",
    status=Status.FAIL,
    title="The TLS handshake failed",
    meaning="The server accepted the connection but the TLS handshake did not complete: it "
    "sent an alert, garbage, or closed the connection. Clients cannot connect securely.",
    remediation="Check the server's TLS configuration (certificate and key files, protocol "
    "and cipher settings) and its log at the time of the test.",
)
STARTTLS_MISSING = FindingSpec(
    code="tls.starttls.missing",
    status=Status.FAIL,
    title="STARTTLS is not offered",
    meaning="The server does not announce STARTTLS (STLS for POP3), so clients and senders "
    "can only talk in clear text: passwords and mail cross the network readable.",
    remediation="Configure a certificate and enable STARTTLS (Postfix: smtpd_tls_security_level"
    " = may; Dovecot: ssl = yes).",
    reference="https://www.rfc-editor.org/rfc/rfc3207",
)
STARTTLS_REFUSED = FindingSpec(
    code="tls.starttls.refused",
    status=Status.FAIL,
    title="STARTTLS is announced but refused",
    meaning="The server lists STARTTLS but answers the command with an error (often a missing "
    "or unreadable certificate on the server).",
    remediation="Check the certificate and key files the server is configured with and its "
    "error log.",
    reference="https://www.rfc-editor.org/rfc/rfc3207",
)
SESSION_REFUSED = FindingSpec(
    code="tls.session.refused",
    status=Status.INCONCLUSIVE,
    title="The server refused the session before TLS",
    meaning="The server's greeting was a refusal (overload, rate limit or a block of rca's "
    "address), so TLS could not be tested.",
    remediation="See the reachability check's greeting finding; retry later or from elsewhere.",
)
PROTOCOL_ERROR = FindingSpec(
    code="tls.protocol_error",
    status=Status.FAIL,
    title="The server broke the protocol around TLS",
    meaning="The plaintext part before the handshake was not the expected protocol, or the "
    "server sent data it must not send before the handshake (a STARTTLS injection weakness).",
    remediation="Check which service listens here and the server software's version.",
)
UNREACHABLE = FindingSpec(
    code="tls.unreachable",
    status=Status.SKIP,
    title="TLS not tested: no connection",
    meaning="The endpoint could not be reached, so its TLS could not be tested; the "
    "reachability check says why.",
)
VERSIONS_OK = FindingSpec(
    code="tls.version.ok",
    status=Status.PASS,
    title="Only current TLS versions accepted",
    meaning="The server accepts TLS 1.2 and/or 1.3 and refuses TLS 1.0 and 1.1.",
    reference=RFC8996,
)
VERSIONS_LEGACY = FindingSpec(
    code="tls.version.legacy",
    status=Status.WARN,
    title="Deprecated TLS versions accepted (1.0/1.1)",
    meaning="RFC 8996 deprecates TLS 1.0 and 1.1; current clients refuse them, and offering "
    "them keeps downgrade attacks possible.",
    remediation="Disable TLS 1.0 and 1.1 (Postfix: smtpd_tls_protocols = >=TLSv1.2; Dovecot: "
    "ssl_min_protocol = TLSv1.2; nginx: ssl_protocols TLSv1.2 TLSv1.3).",
    reference=RFC8996,
)
VERSIONS_NONE_MODERN = FindingSpec(
    code="tls.version.no_modern",
    status=Status.FAIL,
    title="Neither TLS 1.2 nor TLS 1.3 is accepted",
    meaning="Current clients (Outlook, iOS, Android, Thunderbird) require TLS 1.2 or later; "
    "they cannot connect.",
    remediation="Enable TLS 1.2 and 1.3 on the server (update the TLS library if it lacks them).",
    reference=RFC8996,
)
VERSION_UNTESTABLE = FindingSpec(
    code="tls.version.untestable",
    status=Status.SKIP,
    title="Some TLS versions could not be tested from here",
    meaning="The OpenSSL that rca runs on cannot offer these versions at all, so whether the "
    "server accepts them is unknown.",
)

FINDINGS = (
    HANDSHAKE_OK,
    HANDSHAKE_FAILED,
    STARTTLS_MISSING,
    STARTTLS_REFUSED,
    SESSION_REFUSED,
    PROTOCOL_ERROR,
    UNREACHABLE,
    VERSIONS_OK,
    VERSIONS_LEGACY,
    VERSIONS_NONE_MODERN,
    VERSION_UNTESTABLE,
    *tlschain.FINDINGS,
)

#: Certificate faults a sender on MX port 25 cannot act on (RFC 7435 opportunistic TLS).
_OPPORTUNISTIC = {
    tlschain.CERT_NAME_MISMATCH.code,
    tlschain.CERT_SELF_SIGNED.code,
    tlschain.CHAIN_UNTRUSTED_ROOT.code,
    tlschain.CHAIN_MISSING_INTERMEDIATE.code,
    tlschain.CERT_EXPIRED.code,
    tlschain.CERT_NOT_YET_VALID.code,
    tlschain.CHAIN_REJECTED.code,
}
MAX_AIA_BYTES = tlschain.MAX_AIA_BYTES


@dataclass(frozen=True, slots=True)
class _Captured:
    address: str
    session: TlsSession | None
    verdict: str  # valid | invalid | unreachable | failed


async def run(ctx: ProbeContext, target: Target) -> None:
    """Handshake with every TLS endpoint on every address, concurrently, each as soon as
    its host is resolved."""

    wanted = wanted_endpoints(ctx, target, keep=lambda service: service.tls != "none")
    # Published before the first handshake: a login waits for its own endpoint's verdict,
    # DANE for its MX's chain, not for every endpoint's check to end (nor for every host
    # to be resolved, nor for the version checks).
    verdicts = TlsVerdicts(w.label for w in wanted)
    chains = TlsChains(w.label for w in wanted)
    ctx.publish(TLS_VERDICTS, verdicts)
    ctx.publish(TLS_CHAINS, chains, shown=False)

    def settle(label: str, verdict: str, chain: tuple[bytes, ...]) -> None:
        verdicts.settle(label, verdict)
        chains.settle(label, chain)

    async def judged(ep: Endpoint) -> str:
        verdict, chain = await _endpoint(ctx, ep, roots, lambda v, c: settle(ep.label, v, c))
        settle(ep.label, verdict, chain)  # a check shared with another run of a batch
        return verdict

    def dropped(label: str) -> None:
        verdicts.withdraw(label)
        chains.withdraw(label)

    try:
        roots = await tlschain.run_roots(ctx.run)
        checked = await check_endpoints(ctx, wanted, judged, dropped=dropped)
    finally:
        verdicts.close()
        chains.close()
    ctx.order_results([ep.label for ep, _ in checked])


async def _endpoint(
    ctx: ProbeContext, ep: Endpoint, roots: Sequence[x509.Certificate],
    settle: Callable[[str, tuple[bytes, ...]], None],
) -> tuple[str, tuple[bytes, ...]]:
    """One endpoint, checked once per batch (every option the result depends on is in
    the key; see :meth:`~analyzer.core.probe.ProbeContext.shared`). ``settle`` is told the
    verdict and the chain as soon as the handshakes have ended, before the version checks."""
    o = ctx.options
    key = (
        ep, o.families, o.op_timeout, o.ca_file, o.cert_warn_days, o.cert_fail_days,
        o.nameservers, ctx.run.now().date(),
    )
    return await ctx.shared(key, lambda: _endpoint_now(ctx, ep, roots, settle))


async def _endpoint_now(
    ctx: ProbeContext, ep: Endpoint, roots: Sequence[x509.Certificate],
    settle: Callable[[str, tuple[bytes, ...]], None],
) -> tuple[str, tuple[bytes, ...]]:
    with ctx.result(ep.label) as res:
        addresses = ep.addresses(ctx.options.families)
        if not addresses:
            with res.step(f"TLS on {ep.label}") as step:
                step.add(UNREACHABLE(detail=f"{ep.host} has no address"))
            return "unreachable", ()
        # The version checks of the first address start once its inspection is connected
        # (so a server sees the inspection first): they record nothing until their step,
        # after the inspections, and all but TLSv1.3, the version the inspection most
        # often negotiates (not offered again), are needed whatever it negotiates.
        # Should another address be the one reached, they are dropped.
        connected = asyncio.Event()
        early: dict[str, asyncio.Future[bool | None]] = {}

        async def start_early() -> None:
            await connected.wait()
            for version in TLS_VERSIONS:
                if version != "TLSv1.3" and can_offer(ctx.run, version):
                    early[version] = asyncio.ensure_future(
                        _accepts(ctx, ep, addresses[0], version)
                    )

        starter = asyncio.ensure_future(start_early())
        try:
            try:
                captured = await asyncio.gather(*(
                    _address(ctx, res, ep, a, roots, connected if i == 0 else None)
                    for i, a in enumerate(addresses)
                ))  # fmt: skip
            finally:
                starter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starter
            reached = [c for c in captured if c.session is not None]
            verdicts = {c.verdict for c in captured}
            verdict = (
                "invalid"
                if "invalid" in verdicts or "failed" in verdicts
                else "valid"
                if "valid" in verdicts
                else "unreachable"
            )
            chain = reached[0].session.tls.chain_der if reached and reached[0].session else ()
            # The versions accepted change neither the verdict nor the chain: a login or DANE
            # waiting for them may go on while they are checked.
            settle(verdict, chain)
            ahead = bool(reached) and reached[0].address == addresses[0]
            if not ahead:
                await _drop(early)
            if reached and reached[0].session is not None:
                await _versions(ctx, res, ep, reached[0].address, reached[0].session.tls.version,
                                early=early if ahead else {})  # fmt: skip
            return verdict, chain
        finally:
            # Every check started ahead ends with the endpoint's: on error, at the deadline,
            # and those not used (the version the inspection negotiated).
            await _drop(early)


async def _drop(started: Mapping[str, asyncio.Future[bool | None]]) -> None:
    """Cancel version checks started ahead that will not be used, and wait for them."""
    for task in started.values():
        task.cancel()
    await asyncio.gather(*started.values(), return_exceptions=True)


async def _address(
    ctx: ProbeContext,
    res: ResultRecorder,
    ep: Endpoint,
    address: str,
    roots: Sequence[x509.Certificate],
    connected: asyncio.Event | None = None,
) -> _Captured:
    fam = family_of(address)
    shown = f"[{address}]" if fam == 6 else address
    mode = "STARTTLS" if ep.service.tls == "starttls" else "TLS"
    with res.step(f"{mode} on {shown}:{ep.port} (IPv{fam}, {ep.service.title})") as step:
        try:
            session = await open_tls(
                ctx.run,
                host=ep.host,
                address=address,
                port=ep.port,
                mode="starttls" if ep.service.tls == "starttls" else "implicit",
                speaks=ep.service.speaks,
                context=inspection_context(ctx.run),
                timeout=ctx.op_timeout(),
                transcript=step,
                connected=connected,
            )
        except Refusal as exc:
            _refusal(step, ep, exc)
            return _Captured(address, None, "failed")
        except TlsFailure as exc:
            step.add(HANDSHAKE_FAILED(detail=str(exc)))
            return _Captured(address, None, "failed")
        except ProtocolViolation as exc:
            step.add(PROTOCOL_ERROR(detail=str(exc)))
            return _Captured(address, None, "failed")
        except NetError as exc:
            if isinstance(exc, ConnectionReset) and exc.phase == "connect":
                # Accepted, then reset at once. Whether the reset beats the connect's
                # completion is a race on the wire; either way a client cannot get TLS
                # here, so it is a handshake failure, not an unreachable port.
                detail = f"the server accepted the TCP connection, then reset it ({exc})"
                step.add(HANDSHAKE_FAILED(detail=detail, status=Status.FAIL))
                return _Captured(address, None, "failed")
            if exc.phase == "connect":
                step.add(UNREACHABLE(detail=str(exc), status=Status.SKIP))
                return _Captured(address, None, "unreachable")
            spec = HANDSHAKE_FAILED if exc.phase == "tls" else PROTOCOL_ERROR
            step.add(spec(detail=str(exc), status=Status.FAIL))
            return _Captured(address, None, "failed")
        tls = session.tls
        step.add(
            HANDSHAKE_OK(
                detail=f"{tls.version}, {tls.cipher}"
                + (f" ({tls.cipher_bits} bits)" if tls.cipher_bits else ""),
                evidence={
                    "version": tls.version,
                    "cipher": tls.cipher,
                    "sni": tls.sni,
                    "handshake_ms": tls.handshake_ms,
                    "certificates_sent": len(tls.chain_der),
                    "chain_complete": tls.chain_complete,
                },
            )
        )
        if session.starttls is not None:
            step.note("capabilities before TLS: " + " ".join(session.starttls.capabilities))
        valid = await _judge_chain(ctx, step, ep, tls.chain_der, roots)
        return _Captured(address, session, "valid" if valid else "invalid")


def _refusal(step: StepRecorder, ep: Endpoint, exc: Refusal) -> None:
    text = str(exc)
    evidence: dict[str, Json] = {"reply": list(exc.reply.lines[:20])}
    if text.startswith("STARTTLS is not offered"):
        step.add(
            STARTTLS_MISSING(
                detail=f"{ep.service.title} on {ep.label} announces: "
                + (" ".join(exc.reply.lines)[:300] or "nothing"),
                evidence=evidence,
            )
        )
    elif "refused the session" in text:
        step.add(SESSION_REFUSED(detail=text[:500], evidence=evidence))
    else:
        step.add(STARTTLS_REFUSED(detail=text[:500], evidence=evidence))


async def _judge_chain(
    ctx: ProbeContext,
    parent: StepRecorder,
    ep: Endpoint,
    chain: tuple[bytes, ...],
    roots: Sequence[x509.Certificate],
) -> bool:
    with parent.step(f"Validate the certificate chain for {ep.host}") as step:
        fetched: dict[str, bytes | None] = {}
        diagnosis = tlschain.run_diagnose(ctx.run, chain, ep.host, roots=roots)
        while diagnosis.fetch_url is not None:
            url = diagnosis.fetch_url
            fetched[url] = await _fetch_issuer(ctx, step, url)
            diagnosis = tlschain.run_diagnose(ctx.run, chain, ep.host, roots=roots,
                                              fetched=fetched)  # fmt: skip
        certs: list[Json] = [c.as_evidence() for c in diagnosis.presented]
        for finding in diagnosis.findings:
            step.add(_for_endpoint(finding, ep, certs))
        if not diagnosis.findings:
            step.add(tlschain.CHAIN_VALID(evidence={"certificates": certs}))
        return diagnosis.valid and diagnosis.status not in (Status.FAIL, Status.ERROR)


def _for_endpoint(finding: Finding, ep: Endpoint, certs: list[Json]) -> Finding:
    """Attach the presented chain as evidence; soften trust faults on MX port 25."""
    evidence: dict[str, Json] = dict(finding.evidence)
    evidence.setdefault("certificates", certs)
    status = finding.status
    remediation = finding.remediation
    if ep.service.name == "smtp" and finding.code in _OPPORTUNISTIC and status == Status.FAIL:
        status = Status.WARN
        remediation = (
            remediation + " On MX port 25 TLS is opportunistic: most senders still "
            "deliver, but encrypted to an unverified server; senders that enforce "
            "MTA-STS or DANE will not deliver at all."
        ).strip()
    return Finding(
        code=finding.code,
        status=status,
        title=finding.title,
        detail=finding.detail,
        remediation=remediation,
        evidence=evidence,
        reference=finding.reference,
    )


async def _fetch_issuer(ctx: ProbeContext, step: StepRecorder, url: str) -> bytes | None:
    """GET the AIA caIssuers URL within size and time limits; None on any failure."""
    from analyzer.protocols.http import make_client, request_bounded  # noqa: PLC0415

    with step.step(f"Fetch the issuer certificate from {url}") as sub:
        if not url.lower().startswith(("http://", "https://")):
            sub.note(f"not fetched: only http and https URLs are followed ({url[:100]})")
            return None
        try:
            async with make_client(ctx.run) as client:
                response = await request_bounded(
                    client, "GET", url, max_bytes=MAX_AIA_BYTES, timeout=ctx.op_timeout()
                )
        except NetError as exc:
            sub.note(f"fetch failed: {exc}")
            return None
        sub.recv(
            f"HTTP {response.status} {response.header('content-type') or ''} "
            f"{len(response.body)} bytes"
        )
        return response.body if response.status == 200 else None


async def _versions(
    ctx: ProbeContext, res: ResultRecorder, ep: Endpoint, address: str, negotiated: str,
    *, early: Mapping[str, asyncio.Future[bool | None]],
) -> None:
    """Which versions ``address`` accepts, one handshake offering only that version each,
    but for the version its inspection handshake (offering every version) ``negotiated``:
    that one it has just accepted. ``early``: checks of ``address`` started ahead (the
    caller ends those not used)."""
    shown = f"[{address}]" if ":" in address else address
    with res.step(f"TLS versions accepted on {shown}:{ep.port}") as step:
        testable = [v for v in TLS_VERSIONS if can_offer(ctx.run, v)]
        untestable: list[str] = [v for v in TLS_VERSIONS if v not in testable]
        offered = [v for v in testable if v != negotiated]
        accepted = await asyncio.gather(
            *(early.get(v) or _accepts(ctx, ep, address, v) for v in offered)
        )
        answers: dict[str, bool | None] = dict(zip(offered, accepted, strict=True))
        found: dict[str, bool | None] = {v: answers.get(v, True) for v in testable}
        words = {True: "accepted", False: "refused", None: "no answer in time"}
        step.note(", ".join(f"{v}: {words[a]}" for v, a in found.items()))
        legacy = [v for v in ("TLSv1", "TLSv1.1") if found.get(v) is True]
        modern = [v for v in ("TLSv1.2", "TLSv1.3") if found.get(v) is True]
        silent = [v for v, a in found.items() if a is None]
        result: dict[str, Json] = dict(found)
        evidence: dict[str, Json] = {"accepted": result, "untestable": untestable + silent}
        if untestable or silent:
            detail = ", ".join(untestable + [f"{v} (no answer in time)" for v in silent])
            step.add(VERSION_UNTESTABLE(detail=detail, evidence=evidence))
        if modern and legacy:
            step.add(
                VERSIONS_LEGACY(detail=f"accepted: {', '.join(legacy + modern)}", evidence=evidence)
            )
        elif modern:
            step.add(VERSIONS_OK(detail=f"accepted: {', '.join(modern)}", evidence=evidence))
        elif not {"TLSv1.2", "TLSv1.3"} & set(silent):
            # Only refusals say "no modern version"; a version that did not answer in
            # time was not judged (VERSION_UNTESTABLE says so).
            step.add(VERSIONS_NONE_MODERN(evidence=evidence))


async def _accepts(
    ctx: ProbeContext, ep: Endpoint, address: str, version: TlsVersionName
) -> bool | None:
    context = version_context(ctx.run, version)
    if context is None:
        return None
    try:
        await open_tls(
            ctx.run,
            host=ep.host,
            address=address,
            port=ep.port,
            mode="starttls" if ep.service.tls == "starttls" else "implicit",
            speaks=ep.service.speaks,
            context=context,
            timeout=ctx.op_timeout(),
        )
    except NetTimeout:
        return None  # no answer in time: neither accepted nor refused
    except (NetError, Refusal):
        return False
    return True


PROBE = Probe(
    id="tls",
    title="Certificates and TLS of every endpoint",
    run=run,
    uses=(MX_HOSTS, SRV_RECORDS, DOMAIN_ADDRESSES),
    provides=(TLS_VERDICTS, TLS_CHAINS),
    findings=FINDINGS,
)
