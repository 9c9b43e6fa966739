"""SMTP as clients and senders meet it: submission with login, every MX inbound, and an
opt-in round trip through the user's own mailbox.

- ``smtp`` (submission, RFC 6409/8314): on 587 greeting, EHLO (the whole multi-line
  reply), STARTTLS, EHLO again, then AUTH (PLAIN/LOGIN for a password, XOAUTH2/OAUTHBEARER
  for a token) and QUIT; on 465 the same over implicit TLS. The extensions clients use
  (SIZE, 8BITMIME, SMTPUTF8, PIPELINING...) are listed. The password is never sent before
  TLS nor over TLS whose certificate failed (unless ``--insecure``).
- ``smtp`` (inbound, RFC 5321): each MX on port 25, as a sending server would: banner,
  EHLO, STARTTLS offered and working, ``MAIL FROM:<>`` and ``RCPT TO:<the address>``
  (accepted, rejected with the server's words, or deferred: greylisting is inconclusive),
  RSET, QUIT. No DATA: nothing is delivered. With ``--relay-test``, a recipient in the
  reserved ``.invalid`` domain (RFC 2606) must be refused: one accepted is an open relay.
- ``roundtrip`` (``--send-test-message``): submit a uniquely tagged message to the user's
  own address, poll IMAP until it arrives (the delivery latency), then delete exactly that
  message (by UID, never a plain EXPUNGE that would also purge what the user marked).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from email.utils import format_datetime
from typing import TYPE_CHECKING

from analyzer.core.errors import (
    ConnectionRefused,
    NetError,
    NetTimeout,
    ProtocolViolation,
    TlsFailure,
    Unreachable,
)
from analyzer.core.facts import (
    DOMAIN_ADDRESSES,
    MAIL_SETTINGS,
    MX_HOSTS,
    OPEN_PORTS,
    SRV_RECORDS,
    TLS_VERDICTS,
    MxHost,
)
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder, StepRecorder
from analyzer.protocols.login import (
    EndpointView,
    ImapDialect,
    LoginEndpoint,
    Opened,
    SessionFindings,
    SessionOver,
    SmtpDialect,
    check_logins,
    classify_refusal,
    guard,
    imap_login,
    is_certificate_error,
    login_endpoints,
    login_name,
    login_precheck,
    may_send_credentials,
    open_settled,
    refusal_finding,
    session_findings,
    tls_summary,
)
from analyzer.protocols.mailclient import (
    CommandRejected,
    ImapSession,
    SmtpSession,
    sasl_start,
)
from analyzer.protocols.mailproto import EHLO_NAME
from analyzer.protocols.net import Connection, Reply, connect

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE", "ROUNDTRIP"]

RFC5321 = "https://www.rfc-editor.org/rfc/rfc5321"
RFC4954 = "https://www.rfc-editor.org/rfc/rfc4954"

# --- submission ---------------------------------------------------------------------------------

F = session_findings(
    "smtp.submission",
    "SMTP submission",
    starttls="Postfix: smtpd_tls_security_level = encrypt on the submission service; "
    "Exchange: a certificate bound to the client frontend receive connector",
    enable_for_user="Enable authenticated SMTP for the mailbox (Microsoft 365: Set-CASMailbox "
    "<user> -SmtpClientAuthenticationDisabled $false, and the tenant-wide setting in "
    "Set-TransportConfig; Postfix/Dovecot: the SASL passdb entry of the user).",
    tls_only_fix="Offer AUTH only after STARTTLS: Postfix smtpd_tls_auth_only = yes; Exchange: "
    "require TLS on the client receive connector (-RequireTLS $true).",
    reference="https://www.rfc-editor.org/rfc/rfc6409",
)
NO_AUTH = FindingSpec(
    code="smtp.submission.no_auth",
    status=Status.FAIL,
    title="Submission offers no AUTH",
    meaning="Over TLS the submission server announces no AUTH mechanism, so mail clients "
    "cannot log in to send (RFC 6409 4.3 expects submission to authenticate).",
    remediation="Enable SASL on the submission service (Postfix: -o smtpd_sasl_auth_enable=yes "
    "in master.cf; Exchange: Basic/Integrated authentication on the client frontend connector).",
    reference=RFC4954,
)
SUBMISSION_FINDINGS = (*F.all(), NO_AUTH)

#: Extensions worth showing, in the order clients care about them.
EXTENSIONS = (
    "AUTH", "SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "CHUNKING", "ENHANCEDSTATUSCODES",
    "DSN", "REQUIRETLS", "STARTTLS", "BINARYMIME",
)  # fmt: skip

# --- inbound ------------------------------------------------------------------------------------


def _inbound(code: str, status: Status, title: str, meaning: str, remediation: str = "",
             reference: str = RFC5321) -> FindingSpec:  # fmt: skip
    return FindingSpec(code=f"smtp.inbound.{code}", status=status, title=title, meaning=meaning,
                       remediation=remediation, reference=reference)  # fmt: skip


IN_NOT_TESTED = _inbound(
    "not_tested", Status.SKIP, "Inbound SMTP not tested: port 25 does not answer",
    "The reachability check found port 25 of this MX closed or filtered; it reports why.",
)
IN_UNREACHABLE = _inbound(
    "unreachable", Status.FAIL, "No connection to the MX on port 25",
    "No address of the MX accepted a connection on port 25, so no mail can be delivered there.",
    "Check that the SMTP service runs and that firewalls allow port 25 from the internet.",
)
IN_BANNER = _inbound(
    "banner", Status.PASS, "The MX greets senders",
    "The server answered with a 220 banner, as senders expect.",
)
IN_BANNER_REFUSED = _inbound(
    "banner_refused", Status.INCONCLUSIVE, "The MX refused the session in its banner",
    "The banner was a refusal (421/554): the server is overloaded, rate-limits, or blocks the "
    "address rca runs from (a DNSBL listing, a postscreen decision). Other senders may be "
    "treated differently.",
    "Read the server's words; run from another network if it blocks this one on purpose.",
)
IN_EHLO_REFUSED = _inbound(
    "ehlo_refused", Status.FAIL, "The MX refused EHLO",
    "The server answered EHLO with an error; senders fall back to HELO without extensions "
    "(no STARTTLS, no 8BITMIME), or give up.",
    "Check the server's HELO/EHLO restrictions.",
)
IN_STARTTLS_OK = _inbound(
    "starttls", Status.PASS, "STARTTLS offered and working",
    "The MX announced STARTTLS and the handshake completed, so mail to it can travel encrypted "
    "(the TLS check judges the certificate).",
    reference="https://www.rfc-editor.org/rfc/rfc3207",
)
IN_STARTTLS_MISSING = _inbound(
    "starttls_missing", Status.FAIL, "The MX does not offer STARTTLS",
    "Without STARTTLS every message to this domain crosses the internet readable.",
    "Configure a certificate and enable STARTTLS (Postfix: smtpd_tls_security_level = may).",
    "https://www.rfc-editor.org/rfc/rfc3207",
)
IN_STARTTLS_FAILED = _inbound(
    "starttls_failed", Status.FAIL, "STARTTLS is offered but does not work",
    "The MX announces STARTTLS but the command or the handshake fails. Senders then either "
    "deliver in clear or, when they require TLS (MTA-STS, DANE, many large providers), defer "
    "the mail.",
    "Check the certificate and key the MX is configured with, and its TLS log.",
    "https://www.rfc-editor.org/rfc/rfc3207",
)
IN_STARTTLS_UNTRUSTED = _inbound(
    "starttls_untrusted", Status.WARN, "The MX's certificate is not trusted",
    "STARTTLS works, but the certificate fails verification (the TLS check says why). Most "
    "senders still deliver, encrypted to a server they cannot authenticate; senders that "
    "verify (MTA-STS in enforce mode, DANE, several large providers) defer the mail. rca "
    "ends that session and checks the recipient over a plain one, as senders fall back.",
    "Install a certificate for the MX's name from a public CA, with its intermediates.",
    "https://www.rfc-editor.org/rfc/rfc7435",
)
IN_SENDER_REFUSED = _inbound(
    "sender_refused", Status.FAIL, "The MX refuses the null sender",
    "MAIL FROM:<> was refused. RFC 5321 4.5.5 requires accepting the null reverse-path: it "
    "is how bounces and delivery reports arrive.",
    "Stop rejecting the null sender (check sender restrictions and anti-spam rules).",
)
IN_RCPT_ACCEPTED = _inbound(
    "rcpt_accepted", Status.PASS, "The MX accepts mail for the address",
    "RCPT TO was accepted: mail for this address would be taken (no message was sent).",
)
IN_RCPT_DEFERRED = _inbound(
    "rcpt_deferred", Status.INCONCLUSIVE, "The MX deferred the recipient (greylisting?)",
    "RCPT TO got a temporary (4xx) answer: greylisting, a rate limit or a backend that is "
    "down. Real senders retry later, so delivery is delayed, not necessarily broken.",
    "If this persists beyond a greylisting delay, check the server's recipient checks and "
    "its connection to the mailbox backend.",
)
IN_RCPT_REJECTED = _inbound(
    "rcpt_rejected", Status.FAIL, "The MX rejects the address",
    "RCPT TO was refused permanently (5xx): mail for this address bounces. The server's "
    "words say why (unknown user, policy, relay denied because the domain is not hosted).",
    "Check that the domain and the mailbox are configured on the MX (accepted domains, "
    "recipient maps) and the recipient restrictions.",
)
IN_RELAY_REFUSED = _inbound(
    "relay_refused", Status.PASS, "Not an open relay",
    "A recipient outside the domain (in the reserved .invalid domain) was refused, as it "
    "must be for an unauthenticated sender.",
    reference="https://www.rfc-editor.org/rfc/rfc5321#section-7.1",
)
IN_OPEN_RELAY = _inbound(
    "open_relay", Status.FAIL, "Open relay: the MX accepts mail for any domain",
    "Without authentication the MX accepted a recipient in a domain it cannot host (.invalid). "
    "Spammers find open relays within hours; the server then lands on every blocklist.",
    "Refuse relaying for unauthenticated clients (Postfix: smtpd_relay_restrictions = "
    "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination; Exchange: "
    "remove Ms-Exch-SMTP-Accept-Any-Recipient from anonymous users).",
    "https://www.rfc-editor.org/rfc/rfc5321#section-7.1",
)
IN_RELAY_INCONCLUSIVE = _inbound(
    "relay_inconclusive", Status.INCONCLUSIVE, "The open-relay test could not be judged",
    "The outside recipient got a temporary answer, so whether it would be relayed is unknown.",
    "Run the relay test again later; a lasting 4xx for outside recipients is worth checking "
    "in the MX's log.",
)
IN_PROTOCOL_ERROR = _inbound(
    "protocol_error", Status.FAIL, "The MX broke the SMTP protocol",
    "What the server sent is not SMTP as RFC 5321 defines it, or far more of it than any "
    "sender accepts (an endless reply, garbage after STARTTLS).",
    "Check which software answers on port 25 (a filter or proxy in between?).",
)
IN_TIMEOUT = _inbound(
    "timeout", Status.INCONCLUSIVE, "The MX stopped answering",
    "The server did not finish an answer in time (a tarpit, or an overloaded server); the "
    "step could not be judged.",
    "Retry later; check the server's load and anti-spam delays.",
)
IN_CONNECTION_LOST = _inbound(
    "connection_lost", Status.FAIL, "The MX closed the connection mid-session",
    "The server or something in between closed the connection during the dialogue.",
    "Check the server's log at the time of the test.",
)
INBOUND_FINDINGS = (
    IN_NOT_TESTED, IN_UNREACHABLE, IN_BANNER, IN_BANNER_REFUSED, IN_EHLO_REFUSED,
    IN_STARTTLS_OK, IN_STARTTLS_MISSING, IN_STARTTLS_FAILED, IN_STARTTLS_UNTRUSTED,
    IN_SENDER_REFUSED,
    IN_RCPT_ACCEPTED, IN_RCPT_DEFERRED, IN_RCPT_REJECTED, IN_RELAY_REFUSED, IN_OPEN_RELAY,
    IN_RELAY_INCONCLUSIVE, IN_PROTOCOL_ERROR, IN_TIMEOUT, IN_CONNECTION_LOST,
)  # fmt: skip

#: RFC 2606 reserves .invalid: no such domain can exist, so nothing can ever be delivered.
RELAY_TEST_RECIPIENT = "rca-relay-test@relay-check.invalid"


# --- submission probe ---------------------------------------------------------------------------


async def run(ctx: ProbeContext, target: Target) -> None:
    """Every submission endpoint and every MX, concurrently."""
    mx: tuple[MxHost, ...] = ctx.fact_or(MX_HOSTS, ()) or ()
    await asyncio.gather(
        check_logins(
            ctx, target, "smtp", F, "SMTP submission", SmtpDialect(),
            lambda view, res, opened: _submission_after_tls(ctx, target, view, res, opened),
        ),
        *(_mx(ctx, target, m) for m in mx),
    )  # fmt: skip


async def _submission_after_tls(
    ctx: ProbeContext, target: Target, view: EndpointView, res: ResultRecorder,
    opened: Opened[SmtpSession],
) -> None:  # fmt: skip
    session, choice = opened.session, opened.choice
    with res.step("EHLO over TLS") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, F):
            try:
                reply = await session.ehlo()
            except CommandRejected as exc:
                step.add(F.protocol_error(detail=f"EHLO refused: {exc.text[:300]}"))
                raise SessionOver(str(exc)) from None
        step.add(F.capabilities(detail=_extensions_line(session), evidence=_ehlo_evidence(
            session, reply)))  # fmt: skip
        if not session.auth_mechanisms():
            step.add(NO_AUTH(detail=f"EHLO over TLS on {view.ep.label} lists no AUTH",
                             evidence={"ehlo": list(reply.lines)}))  # fmt: skip
    ep = await view.settled()  # where to send the credentials: the settled verdict
    user = login_name(ctx, target)
    creds = ctx.options.credentials
    with res.step(f"AUTH as {user or '(no user)'}") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        if creds.has_secret and user is not None and not session.auth_mechanisms():
            step.note("no AUTH offered: nothing to log in with")
        elif login_precheck(ctx, step, F, user, choice, ep) and user is not None:
            with guard(step, F):
                await smtp_login(ctx, session, step, F, user, ep)
        await _quit(ctx, session, step)


async def smtp_login(
    ctx: ProbeContext, session: SmtpSession, step: StepRecorder, f: SessionFindings,
    user: str, ep: LoginEndpoint,
) -> bool:  # fmt: skip
    """AUTH with the strongest mechanism in common; records the finding; True if 235."""
    creds = ctx.options.credentials
    token, password = creds.token(), creds.password()
    mechanisms = session.auth_mechanisms()
    t0 = time.monotonic()
    challenges: tuple[str, ...] = ()
    start = sasl_start(
        mechanisms, user=user, token=token, password=password, host=ep.host, port=ep.port
    )
    if start is not None:
        method = f"AUTH {start.mechanism}"
        reply, challenges = await session.auth(start.mechanism, start.initial, abort=start.abort)
    elif password is not None and "LOGIN" in mechanisms:
        method = "AUTH LOGIN"
        reply, challenges = await session.auth_login(user, password)
    else:
        wanted = "XOAUTH2 or OAUTHBEARER" if password is None else "PLAIN or LOGIN"
        step.add(f.no_mechanism(
            detail=f"the server offers AUTH {' '.join(mechanisms)}; rca needs {wanted}",
            evidence={"auth_mechanisms": list(mechanisms)},
        ))  # fmt: skip
        return False
    elapsed = round((time.monotonic() - t0) * 1000, 1)
    evidence: dict[str, Json] = {
        "method": method, "user": user, "elapsed_ms": elapsed, "reply": reply.text[:500],
    }  # fmt: skip
    if challenges:
        evidence["server_challenges"] = list(challenges)
    if reply.code == 235:
        step.add(f.login_ok(detail=f"{method} as {user} in {elapsed} ms", evidence=evidence))
        return True
    last = reply.lines[-1] if reply.lines else ""
    words = last[4:].split(" ", 1)
    enhanced = words[0] if words and words[0][:1].isdigit() and "." in words[0] else ""
    kind = classify_refusal(f"{reply.code} {enhanced}".strip(), last[4:])
    step.add(refusal_finding(
        f, kind, detail=f"{method} as {user}: {reply.text[:400]}",
        evidence={k: str(v) for k, v in evidence.items()},
    ))  # fmt: skip
    return False


def _extensions_line(session: SmtpSession) -> str:
    mechs = session.auth_mechanisms()
    shown = []
    for ext in session.extensions:
        keyword = ext.split(" ", 1)[0].split("=", 1)[0]
        if keyword in EXTENSIONS and keyword != "AUTH":
            shown.append(ext)
    return f"AUTH: {', '.join(mechs) or 'none'}; " + (", ".join(shown) or "no extensions")


def _ehlo_evidence(session: SmtpSession, reply: Reply) -> dict[str, Json]:
    size = next((e.split(" ", 1)[1] for e in session.extensions
                 if e.startswith("SIZE ") and e[5:].strip().isdigit()), None)  # fmt: skip
    return {
        "ehlo": list(reply.lines),
        "auth_mechanisms": list(session.auth_mechanisms()),
        "size_limit": int(size) if size else None,
        "8bitmime": session.has("8BITMIME"),
        "smtputf8": session.has("SMTPUTF8"),
        "pipelining": session.has("PIPELINING"),
        "chunking": session.has("CHUNKING"),
    }


async def _quit(ctx: ProbeContext, session: SmtpSession, step: StepRecorder) -> None:
    session.conn.transcript = step
    session.timeout = min(ctx.op_timeout(), 3.0)
    try:
        await session.quit()
    except NetError:
        pass


# --- inbound ------------------------------------------------------------------------------------


class _Stop(Exception):
    __rca_recorded__ = True


def _in_net_finding(exc: NetError) -> Finding:
    evidence: dict[str, Json] = {"phase": exc.phase}
    if isinstance(exc, ProtocolViolation):
        return IN_PROTOCOL_ERROR(detail=str(exc), evidence=evidence)
    if isinstance(exc, NetTimeout):
        return IN_TIMEOUT(detail=str(exc), evidence=evidence)
    if isinstance(exc, TlsFailure):
        return IN_STARTTLS_FAILED(detail=str(exc), evidence=evidence)
    if isinstance(exc, ConnectionRefused | Unreachable) and exc.phase == "connect":
        return IN_UNREACHABLE(detail=str(exc), evidence=evidence)
    return IN_CONNECTION_LOST(detail=str(exc), evidence=evidence)


async def _mx(ctx: ProbeContext, target: Target, mx: MxHost) -> None:
    label = f"{mx.host}:25"
    with ctx.result(label) as res:
        open_ports: tuple[str, ...] | None = ctx.fact_or(OPEN_PORTS)
        if open_ports is not None and label not in open_ports:
            with res.step(f"Inbound SMTP on {label}") as step:
                step.add(IN_NOT_TESTED(detail=f"{label} did not answer the reachability check"))
            return
        addresses = ((mx.ipv4 if 4 in ctx.options.families else ())
                     + (mx.ipv6 if 6 in ctx.options.families else ()))  # fmt: skip
        recipient = target.address or f"postmaster@{target.domain}"
        try:
            await _mx_session(ctx, res, mx, addresses, recipient)
        except _Stop:
            pass


async def _mx_connect(
    ctx: ProbeContext, step: StepRecorder, host: str, addresses: tuple[str, ...]
) -> Connection:
    last: NetError | None = None
    for address in addresses:
        try:
            return await connect(ctx.run, host, address, 25, transcript=step,
                                 timeout=min(ctx.options.connect_timeout, ctx.op_timeout()))
        except (ConnectionRefused, NetTimeout, Unreachable) as exc:
            last = exc
    step.add(IN_UNREACHABLE(detail=str(last) if last else f"{host} has no address"))
    raise _Stop()


async def _mx_session(
    ctx: ProbeContext, res: ResultRecorder, mx: MxHost, addresses: tuple[str, ...],
    recipient: str,
) -> None:  # fmt: skip
    with res.step(f"Connect to {mx.host}:25 and read the banner") as step:
        conn = await _mx_connect(ctx, step, mx.host, addresses)
    session = SmtpSession(conn, timeout=ctx.op_timeout())
    try:
        tls_ok = await _mx_opening(ctx, res, session, mx)
        if tls_ok is None:
            # STARTTLS broke the connection: senders retry in clear (RFC 3207 is
            # opportunistic), so the recipient is checked over a fresh plain session.
            await session.conn.close()
            with res.step("Connect again without STARTTLS, as senders fall back") as step:
                conn = await _mx_connect(ctx, step, mx.host, addresses)
                session = SmtpSession(conn, timeout=ctx.op_timeout())
                with _in_guard(step):
                    await session.read()
                    await session.ehlo()
        await _mx_envelope(ctx, res, session, recipient)
    finally:
        await session.conn.close()


@contextlib.contextmanager
def _in_guard(step: StepRecorder) -> Iterator[None]:
    """Network failures inside an inbound step become its finding; the session ends."""
    try:
        yield
    except NetError as exc:
        step.add(_in_net_finding(exc))
        raise _Stop() from None
    except CommandRejected as exc:
        step.add(IN_EHLO_REFUSED(detail=f"{exc.command}: {exc.text[:300]}"))
        raise _Stop() from None


async def _mx_opening(
    ctx: ProbeContext, res: ResultRecorder, session: SmtpSession, mx: MxHost
) -> bool | None:
    """Banner, EHLO, STARTTLS. True: over TLS; False: plain (no STARTTLS); None: STARTTLS
    failed and the connection is unusable."""
    with res.step("Banner") as step:
        session.conn.transcript = step
        with _in_guard(step):
            banner = await session.read()
        if banner.code != 220:
            step.add(IN_BANNER_REFUSED(detail=banner.text[:500],
                                       evidence={"banner": list(banner.lines)}))  # fmt: skip
            raise _Stop()
        step.add(IN_BANNER(detail=banner.text[:300], evidence={"banner": list(banner.lines)}))
    with res.step("EHLO") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with _in_guard(step):
            reply = await session.command(f"EHLO {EHLO_NAME}")
        if reply.code != 250:
            step.add(IN_EHLO_REFUSED(detail=reply.text[:500]))
            raise _Stop()
        session.ehlo_reply = reply
        step.note("extensions: " + ", ".join(session.extensions))
    with res.step("STARTTLS") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        if not session.has("STARTTLS"):
            step.add(IN_STARTTLS_MISSING(detail=f"EHLO of {mx.host} lists no STARTTLS",
                                         evidence={"ehlo": list(reply.lines)}))  # fmt: skip
            return False
        try:
            # Verified like every connection outside the TLS check, which diagnoses the
            # chain; a rejected certificate ends this session (below).
            await session.starttls(ctx.run.ssl_context(), server_hostname=mx.host)
        except CommandRejected as exc:
            step.add(IN_STARTTLS_FAILED(title="STARTTLS is announced but refused",
                                        detail=exc.text[:500]))  # fmt: skip
            return False
        except (TlsFailure, ProtocolViolation, NetTimeout) as exc:
            reason = is_certificate_error(exc)
            if reason is not None:
                step.add(IN_STARTTLS_UNTRUSTED(detail=f"certificate verification failed: "
                                               f"{reason}", evidence={"phase": exc.phase}))
                return None
            step.add(IN_STARTTLS_FAILED(detail=str(exc), evidence={"phase": exc.phase}))
            return None
        except NetError as exc:
            step.add(_in_net_finding(exc))
            raise _Stop() from None
        with _in_guard(step):
            await session.ehlo()
        step.add(IN_STARTTLS_OK(detail=tls_summary(session.conn)))
    return True


async def _mx_envelope(
    ctx: ProbeContext, res: ResultRecorder, session: SmtpSession, recipient: str
) -> None:
    with res.step(f"MAIL FROM:<> and RCPT TO:<{recipient}> (no message is sent)") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with _in_guard(step):
            sender = await session.command("MAIL FROM:<>")
            if sender.code != 250:
                spec = IN_RCPT_DEFERRED if _temporary(sender) else IN_SENDER_REFUSED
                title = "The MX deferred the null sender" if _temporary(sender) else None
                step.add(spec(title=title, detail=sender.text[:500]))
                await session.quit()
                return
            rcpt = await session.command(f"RCPT TO:<{recipient}>")
        evidence: dict[str, Json] = {"recipient": recipient, "reply": list(rcpt.lines)}
        if rcpt.code in (250, 251):
            step.add(IN_RCPT_ACCEPTED(detail=rcpt.text[:300], evidence=evidence))
        elif _temporary(rcpt):
            step.add(IN_RCPT_DEFERRED(detail=rcpt.text[:500], evidence=evidence))
        else:
            step.add(IN_RCPT_REJECTED(detail=rcpt.text[:500], evidence=evidence))
    if ctx.options.relay_test:
        with res.step(f"Open-relay test: RCPT TO:<{RELAY_TEST_RECIPIENT}>") as step:
            session.conn.transcript = step
            session.timeout = ctx.op_timeout()
            with _in_guard(step):
                await session.command("RSET")
                sender = await session.command("MAIL FROM:<>")
                relay = await session.command(f"RCPT TO:<{RELAY_TEST_RECIPIENT}>")
            evidence = {"recipient": RELAY_TEST_RECIPIENT, "reply": list(relay.lines)}
            if sender.code != 250 or _temporary(relay):
                step.add(IN_RELAY_INCONCLUSIVE(detail=(relay.text if sender.code == 250
                                                       else sender.text)[:500],
                                               evidence=evidence))  # fmt: skip
            elif relay.code in (250, 251, 252):
                step.add(IN_OPEN_RELAY(detail=relay.text[:500], evidence=evidence))
            else:
                step.add(IN_RELAY_REFUSED(detail=relay.text[:300], evidence=evidence))
    with res.step("RSET and QUIT") as step:
        session.conn.transcript = step
        session.timeout = min(ctx.op_timeout(), 3.0)
        try:
            await session.command("RSET")
        except NetError:
            pass
        await _quit(ctx, session, step)


def _temporary(reply: Reply) -> bool:
    return reply.code is not None and 400 <= reply.code < 500


PROBE = Probe(
    id="smtp",
    title="SMTP submission login and inbound delivery",
    run=run,
    uses=(MX_HOSTS, SRV_RECORDS, DOMAIN_ADDRESSES, OPEN_PORTS, TLS_VERDICTS),
    awaits=(MAIL_SETTINGS,),
    findings=(*SUBMISSION_FINDINGS, *INBOUND_FINDINGS),
    uses_credentials=True,
    verifies_tls=True,
)


# --- round trip ---------------------------------------------------------------------------------

R = session_findings(
    "roundtrip",
    "mail",
    starttls="see the SMTP and IMAP checks",
    enable_for_user="See the SMTP and IMAP checks of this report for the protocol concerned.",
    tls_only_fix="See the SMTP and IMAP checks of this report.",
    reference=RFC5321,
)
RT_NOT_REQUESTED = FindingSpec(
    code="roundtrip.not_requested",
    status=Status.SKIP,
    title="Round-trip test not requested",
    meaning="The round trip sends a real message to the user's own mailbox, so it runs only "
    "with --send-test-message.",
    remediation="Add --send-test-message (with credentials) to measure delivery end to end.",
)
RT_NOT_POSSIBLE = FindingSpec(
    code="roundtrip.not_possible",
    status=Status.SKIP,
    title="Round-trip test not possible",
    meaning="Something the round trip needs is missing: credentials, an e-mail address, a "
    "submission server or an IMAP server (the detail says which).",
)
RT_SUBMITTED = FindingSpec(
    code="roundtrip.submitted",
    status=Status.PASS,
    title="Test message accepted for delivery",
    meaning="The submission server accepted the tagged test message (250 after DATA).",
)
RT_SUBMIT_FAILED = FindingSpec(
    code="roundtrip.submit_failed",
    status=Status.FAIL,
    title="The test message was refused",
    meaning="After a successful login the submission server refused the envelope or the "
    "message: users cannot send (the server's words say why: quota, sender not owned, "
    "size, policy).",
    remediation="Read the server's reply; check sender permissions (Exchange: SendAs) and "
    "outbound policies.",
    reference=RFC5321,
)
RT_DELIVERED = FindingSpec(
    code="roundtrip.delivered",
    status=Status.PASS,
    title="Test message delivered",
    meaning="The message arrived in the user's INBOX; the detail has the delivery latency "
    "(from the end of DATA to the moment IMAP first saw it).",
)
RT_SLOW = FindingSpec(
    code="roundtrip.slow",
    status=Status.WARN,
    title="Test message delivered, slowly",
    meaning="The message arrived, but after more than 30 seconds: a queue, a content "
    "filter or greylisting between submission and the mailbox holds mail back.",
    remediation="Check the mail queue and the filters in the delivery path.",
)
RT_NOT_DELIVERED = FindingSpec(
    code="roundtrip.not_delivered",
    status=Status.FAIL,
    title="Test message not delivered in time",
    meaning="The server accepted the message, but it did not appear in the INBOX before the "
    "deadline: it is queued, filtered (junk folder, quarantine) or lost.",
    remediation="Check the mail queue and logs for the Message-ID in the evidence, and the "
    "junk folder and quarantine.",
)
RT_DELETED = FindingSpec(
    code="roundtrip.deleted",
    status=Status.PASS,
    title="Test message deleted",
    meaning="The test message was removed by its UID (UID EXPUNGE); nothing else was touched.",
)
RT_NOT_DELETED = FindingSpec(
    code="roundtrip.not_deleted",
    status=Status.WARN,
    title="Test message left in the mailbox",
    meaning="The test message could not be removed by its UID alone (the server lacks "
    "UIDPLUS, or refused): it is flagged deleted and left, rather than risk purging other "
    "messages the user marked deleted.",
    remediation="Delete the message tagged in the evidence by hand.",
)
ROUNDTRIP_FINDINGS = (
    *R.all(), RT_NOT_REQUESTED, RT_NOT_POSSIBLE, RT_SUBMITTED, RT_SUBMIT_FAILED, RT_DELIVERED,
    RT_SLOW, RT_NOT_DELIVERED, RT_DELETED, RT_NOT_DELETED,
)  # fmt: skip
#: Delivery slower than this is a warning.
SLOW_DELIVERY_S = 30.0
#: Poll interval while waiting for the message.
POLL_S = 1.0


async def run_roundtrip(ctx: ProbeContext, target: Target) -> None:
    """Submit a tagged message to the user's own address; find it by IMAP; delete it."""
    with ctx.result(target.display) as res:
        if not ctx.options.send_test_message:
            with res.step("Round trip: send a test message to yourself") as step:
                step.add(RT_NOT_REQUESTED())
            return
        user = login_name(ctx, target)
        address = user if user and "@" in user else target.address
        submit = await login_endpoints(ctx, target, "smtp")
        imap = await login_endpoints(ctx, target, "imap")
        missing = [
            what for what, absent in (
                ("credentials (--password-file or --oauth-token-file)",
                 not ctx.options.credentials.has_secret),
                ("a login name or e-mail address", user is None or address is None),
                ("a submission server", not submit),
                ("an IMAP server", not imap),
            ) if absent
        ]  # fmt: skip
        if missing:
            with res.step("Round trip: send a test message to yourself") as step:
                step.add(RT_NOT_POSSIBLE(detail="missing: " + "; ".join(missing)))
            return
        assert user is not None and address is not None  # noqa: S101 - checked above
        token = uuid.uuid4().hex
        try:
            sent_at = await _send_test(ctx, res, submit[0], user, address, token)
            if sent_at is not None:
                await _await_delivery(ctx, res, imap[0], user, token, sent_at)
        except SessionOver:
            pass


def _test_message(address: str, token: str, now: str) -> list[str]:
    return [
        f"From: <{address}>",
        f"To: <{address}>",
        f"Subject: rca round-trip test {token[:12]}",
        f"Date: {now}",
        f"Message-ID: <{token}@rca-check.invalid>",
        f"X-Rca-Test: {token}",
        # RFC 3834 5: no vacation or other automatic replies to this message.
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "This message was sent by rca (remote connectivity analyzer) to measure delivery",
        "from your submission server to your mailbox. rca deletes it once it has seen it;",
        "if you read this, deleting it did not work and you may remove it.",
    ]


async def _send_test(
    ctx: ProbeContext, res: ResultRecorder, ep: LoginEndpoint, user: str, address: str,
    token: str,
) -> float | None:  # fmt: skip
    opened = await open_settled(ctx, ep, res, R, SmtpDialect())
    session = opened.session
    try:
        allowed, gate = may_send_credentials(ctx, R, opened.choice, ep)
        with res.step(f"Submit the test message via {ep.label}") as step:
            session.conn.transcript = step
            session.timeout = ctx.op_timeout()
            if gate is not None:
                step.add(gate)
            if not allowed:
                return None
            with guard(step, R):
                await session.ehlo()
                if not await smtp_login(ctx, session, step, R, user, ep):
                    return None
                mail = await session.command(f"MAIL FROM:<{address}>")
                rcpt = await session.command(f"RCPT TO:<{address}>") if mail.code == 250 else mail
                if mail.code != 250 or rcpt.code not in (250, 251):
                    step.add(RT_SUBMIT_FAILED(detail=(rcpt.text or mail.text)[:500]))
                    return None
                now = format_datetime(ctx.run.now())
                data = await session.data(_test_message(address, token, now))
                sent_at = time.monotonic()
            evidence: dict[str, Json] = {"message_id": f"<{token}@rca-check.invalid>",
                                         "reply": list(data.lines)}  # fmt: skip
            if data.code != 250:
                step.add(RT_SUBMIT_FAILED(detail=data.text[:500], evidence=evidence))
                return None
            step.add(RT_SUBMITTED(detail=data.text[:300], evidence=evidence))
            await _quit(ctx, session, step)
            return sent_at
    finally:
        await session.conn.close()


async def _await_delivery(
    ctx: ProbeContext, res: ResultRecorder, ep: LoginEndpoint, user: str, token: str,
    sent_at: float,
) -> None:  # fmt: skip
    opened = await open_settled(ctx, ep, res, R, ImapDialect())
    session: ImapSession = opened.session
    try:
        allowed, gate = may_send_credentials(ctx, R, opened.choice, ep)
        with res.step(f"Log in to IMAP on {ep.label}") as step:
            session.conn.transcript = step
            session.timeout = ctx.op_timeout()
            if gate is not None:
                step.add(gate)
            if not allowed:
                return
            with guard(step, R):
                await session.capability()
                if not await imap_login(ctx, session, step, R, user, ep):
                    return
                selected = await session.select("INBOX")
            if not selected.ok:
                step.add(R.login_refused(title="INBOX could not be opened",
                                         detail=selected.line[:400]))  # fmt: skip
                return
        uid = await _poll(ctx, res, session, token, sent_at)
        if uid is not None:
            await _delete(ctx, res, session, uid, token)
        with res.step("LOGOUT") as step:
            session.conn.transcript = step
            session.timeout = min(ctx.op_timeout(), 3.0)
            try:
                await session.logout()
            except NetError:
                pass
    finally:
        await session.conn.close()


async def _poll(
    ctx: ProbeContext, res: ResultRecorder, session: ImapSession, token: str, sent_at: float
) -> int | None:
    """UID SEARCH for the tag until it appears or the time is up; the message's UID."""
    budget = max(1.0, min(60.0, ctx.run.remaining() - 5.0))
    with res.step("Wait for the test message in INBOX") as step:
        session.conn.transcript = step
        searches = 0
        while True:
            session.timeout = ctx.op_timeout()
            with guard(step, R):
                found = await session.command(f'UID SEARCH HEADER X-Rca-Test "{token}"')
            searches += 1
            uids = [int(w) for line in found.untagged if line.upper().startswith("* SEARCH")
                    for w in line.split()[2:] if w.isdigit()]  # fmt: skip
            waited = time.monotonic() - sent_at
            if uids:
                latency = round(waited, 2)
                evidence: dict[str, Json] = {"latency_s": latency, "uid": uids[0],
                                             "searches": searches}  # fmt: skip
                spec = RT_SLOW if latency > SLOW_DELIVERY_S else RT_DELIVERED
                step.add(spec(detail=f"delivered in {latency:g} s", evidence=evidence))
                return uids[0]
            if waited >= budget:
                step.add(RT_NOT_DELIVERED(
                    detail=f"not in INBOX {waited:.0f} s after the server accepted it",
                    evidence={"message_id": f"<{token}@rca-check.invalid>",
                              "searches": searches},
                ))  # fmt: skip
                return None
            await asyncio.sleep(POLL_S)
            with guard(step, R):
                await session.command("NOOP")  # RFC 9051 6.1.2: lets new mail be announced


async def _delete(
    ctx: ProbeContext, res: ResultRecorder, session: ImapSession, uid: int, token: str
) -> None:
    with res.step(f"Delete the test message (UID {uid})") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, R):
            stored = await session.command(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
            # RFC 4315 2.1: UID EXPUNGE removes only the UIDs given; a plain EXPUNGE would
            # also purge every other message the user had flagged \Deleted.
            if stored.ok and "UIDPLUS" in session.capabilities:
                expunged = await session.command(f"UID EXPUNGE {uid}")
                if expunged.ok:
                    step.add(RT_DELETED(detail=f"UID {uid} expunged"))
                    return
                reason = expunged.line
            else:
                reason = stored.line if not stored.ok else "the server lacks UIDPLUS"
        step.add(RT_NOT_DELETED(detail=reason[:300],
                                evidence={"message_id": f"<{token}@rca-check.invalid>"}))


ROUNDTRIP = Probe(
    id="roundtrip",
    title="Round trip: a test message from submission to the mailbox",
    run=run_roundtrip,
    uses=(MX_HOSTS, SRV_RECORDS, DOMAIN_ADDRESSES, MAIL_SETTINGS, OPEN_PORTS, TLS_VERDICTS),
    findings=ROUNDTRIP_FINDINGS,
    uses_credentials=True,
    verifies_tls=True,
)
