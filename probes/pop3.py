"""POP3 login: prove a client can log in and see the mailbox, on 995 and on 110+STLS.

For every POP3 endpoint a client could be configured with
(:func:`analyzer.protocols.login.login_endpoints`): connect (implicit TLS, or plaintext then STLS),
read the greeting, CAPA before and after TLS, log in with AUTH PLAIN / USER+PASS for a
password or AUTH OAUTHBEARER / XOAUTH2 for a token, STAT (message count and size), QUIT.
Nothing is ever deleted: no DELE is sent, so QUIT's update state removes nothing
(RFC 1939 6). The password is never sent before TLS, nor over TLS whose certificate
failed (unless ``--insecure``).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from analyzer.core.errors import NetError
from analyzer.core.facts import (
    DOMAIN_ADDRESSES,
    MAIL_SETTINGS,
    MX_HOSTS,
    OPEN_PORTS,
    SRV_RECORDS,
    TLS_VERDICTS,
)
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Json, Status
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder, StepRecorder
from analyzer.protocols.login import (
    EndpointView,
    LoginEndpoint,
    Opened,
    Pop3Dialect,
    check_logins,
    classify_refusal,
    guard,
    login_name,
    login_precheck,
    refusal_finding,
    session_findings,
)
from analyzer.protocols.mailclient import (
    CommandRejected,
    Pop3Session,
    sasl_start,
)

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE"]

RFC1939 = "https://www.rfc-editor.org/rfc/rfc1939"

F = session_findings(
    "pop3",
    "POP3",
    starttls="Dovecot: ssl = yes; Exchange: Set-PopSettings -LoginType SecureLogin",
    enable_for_user="Enable POP3 for the mailbox (Exchange: Set-CASMailbox <user> -PopEnabled "
    "$true; Microsoft 365: the same, or the POP toggle in the admin center's mailbox apps; "
    "Dovecot: the passdb field or deny list that refuses pop3 for the user).",
    tls_only_fix="Refuse logins before TLS: Dovecot disable_plaintext_auth = yes; Exchange "
    "Set-PopSettings -LoginType SecureLogin.",
    reference=RFC1939,
)
MAILDROP_OK = FindingSpec(
    code="pop3.maildrop.ok",
    status=Status.PASS,
    title="Mailbox listed (STAT)",
    meaning="STAT succeeded after login: the server opened the maildrop; the evidence has the "
    "message count and total size.",
    reference=RFC1939,
)
MAILDROP_FAILED = FindingSpec(
    code="pop3.maildrop.failed",
    status=Status.FAIL,
    title="The server could not open the mailbox",
    meaning="The login worked, but STAT was refused: the maildrop is locked by another "
    "session, missing, or its storage is broken.",
    remediation="Check for another POP3 session holding the mailbox, and the server log.",
    reference=RFC1939,
)
FINDINGS = (*F.all(), MAILDROP_OK, MAILDROP_FAILED)

_CODE = re.compile(r"^-ERR \[([A-Z/-]+)\]\s*(.*)$")


async def run(ctx: ProbeContext, target: Target) -> None:
    """Every POP3 endpoint, concurrently; one result each (:func:`check_logins`)."""
    await check_logins(
        ctx, target, "pop3", F, "POP3", Pop3Dialect(),
        lambda view, res, opened: _after_tls(ctx, target, view, res, opened),
    )  # fmt: skip


async def _after_tls(
    ctx: ProbeContext, target: Target, view: EndpointView, res: ResultRecorder,
    opened: Opened[Pop3Session],
) -> None:  # fmt: skip
    session, choice, before = opened.session, opened.choice, opened.before
    with res.step("CAPA over TLS") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, F):
            after = await session.capa()
        evidence: dict[str, Json] = {"before_tls": list(before), "after_tls": list(after)}
        step.add(F.capabilities(
            detail=f"{' · '.join(after)[:300] if after else 'CAPA not supported'}",
            evidence=evidence,
        ))  # fmt: skip

    ep = await view.settled()  # where to send the credentials: the settled verdict
    user = login_name(ctx, target)
    with res.step(f"Log in as {user or '(no user)'}") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        if not login_precheck(ctx, step, F, user, choice, ep) or user is None:
            await _quit(ctx, session, step)
            return
        with guard(step, F):
            ok = await _login(ctx, session, step, user, ep)
        if not ok:
            await _quit(ctx, session, step)
            return
    with res.step("STAT") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, F):
            stat = await session.stat()
        if isinstance(stat, str):
            step.add(MAILDROP_FAILED(detail=stat[:500]))
        else:
            step.add(MAILDROP_OK(
                detail=f"{stat[0]} messages, {stat[1]:,} bytes",
                evidence={"messages": stat[0], "octets": stat[1]},
            ))  # fmt: skip
    with res.step("QUIT (nothing deleted)") as step:
        await _quit(ctx, session, step)


async def _login(
    ctx: ProbeContext, session: Pop3Session, step: StepRecorder, user: str, ep: LoginEndpoint
) -> bool:
    creds = ctx.options.credentials
    token, password = creds.token(), creds.password()
    mechanisms = session.sasl_mechanisms()
    caps = session.capabilities
    t0 = asyncio.get_running_loop().time()
    challenges: tuple[str, ...] = ()
    start = sasl_start(
        mechanisms, user=user, token=token, password=password, host=ep.host, port=ep.port
    )
    if start is not None:
        method = f"AUTH {start.mechanism}"
        status, challenges = await session.auth(start.mechanism, start.initial, abort=start.abort)
    elif password is not None and ("USER" in caps or not caps):
        # RFC 1939 7: USER/PASS is optional, but a server without CAPA predates RFC 2449
        # and commonly has it.
        method = "USER/PASS"
        status = await session.user_pass(user, password)
    else:
        wanted = "XOAUTH2 or OAUTHBEARER" if password is None else "USER or SASL PLAIN"
        step.add(F.no_mechanism(
            detail=f"the server offers {', '.join(mechanisms) or 'no SASL mechanism'}"
            f"{'' if 'USER' in caps else ' and no USER'}; rca needs {wanted}",
            evidence={"capabilities": list(caps)},
        ))  # fmt: skip
        return False
    elapsed = round((asyncio.get_running_loop().time() - t0) * 1000, 1)
    evidence: dict[str, Json] = {
        "method": method, "user": user, "elapsed_ms": elapsed, "reply": status[:500],
    }  # fmt: skip
    if challenges:
        evidence["server_challenges"] = list(challenges)
    if status.startswith("+OK"):
        step.add(F.login_ok(detail=f"{method} as {user} in {elapsed} ms", evidence=evidence))
        return True
    # RFC 3206: [AUTH] = credentials, [SYS/TEMP] / [IN-USE] / [LOGIN-DELAY] = try later.
    m = _CODE.match(status)
    code, text = (m.group(1), m.group(2)) if m else ("", status[4:].strip())
    kind = classify_refusal(code, text)
    step.add(refusal_finding(
        F, kind, detail=f"{method} as {user}: {status[:400]}",
        evidence={k: str(v) for k, v in evidence.items()},
    ))  # fmt: skip
    return False


async def _quit(ctx: ProbeContext, session: Pop3Session, step: StepRecorder) -> None:
    session.conn.transcript = step
    session.timeout = min(ctx.op_timeout(), 3.0)
    try:
        await session.quit()
    except (NetError, CommandRejected):
        pass


PROBE = Probe(
    id="pop3",
    title="POP3 login and mailbox",
    run=run,
    uses=(MX_HOSTS, SRV_RECORDS, DOMAIN_ADDRESSES, OPEN_PORTS, TLS_VERDICTS),
    awaits=(MAIL_SETTINGS,),
    findings=FINDINGS,
    uses_credentials=True,
    verifies_tls=True,
)
