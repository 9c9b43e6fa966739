"""IMAP login: prove a client can log in and open the mailbox, on 993 and on 143+STARTTLS.

For every IMAP endpoint a client could be configured with
(:func:`analyzer.protocols.login.login_endpoints`): connect (implicit TLS, or plaintext then
STARTTLS), read the greeting, CAPABILITY before and after TLS (LOGINDISABLED honoured: no
LOGIN is ever sent before TLS), log in with AUTHENTICATE PLAIN / LOGIN for a password or
OAUTHBEARER / XOAUTH2 for a token, EXAMINE INBOX (read-only: message count, UIDVALIDITY),
count the folders, LOGOUT. Every step is timed and its transcript kept, secrets replaced.
The password is never sent before TLS, nor over TLS whose certificate failed (unless
``--insecure``, reported loudly).
"""

from __future__ import annotations

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
    ImapDialect,
    Opened,
    SessionOver,
    check_logins,
    guard,
    imap_login,
    login_name,
    login_precheck,
    session_findings,
)
from analyzer.protocols.mailclient import (
    SPECIAL_USE,
    CommandRejected,
    ImapSession,
    list_mailboxes,
    mailbox_status,
)

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE"]

RFC9051 = "https://www.rfc-editor.org/rfc/rfc9051"

F = session_findings(
    "imap",
    "IMAP",
    starttls="Dovecot: ssl = yes; Exchange: Set-ImapSettings -LoginType SecureLogin",
    enable_for_user="Enable IMAP for the mailbox (Exchange: Set-CASMailbox <user> -ImapEnabled "
    "$true; Microsoft 365: the same, or the IMAP toggle in the admin center's mailbox apps; "
    "Dovecot: the passdb/userdb field or allow-list that refuses imap for the user).",
    tls_only_fix="Refuse logins before TLS: Dovecot disable_plaintext_auth = yes (it then "
    "announces LOGINDISABLED); Exchange Set-ImapSettings -LoginType SecureLogin.",
    reference=RFC9051,
)
MAILBOX_OK = FindingSpec(
    code="imap.mailbox.ok",
    status=Status.PASS,
    title="INBOX opened (read-only)",
    meaning="EXAMINE INBOX succeeded: the mailbox exists and the server can open it; the "
    "evidence has the message count and UIDVALIDITY.",
    reference=RFC9051,
)
MAILBOX_FAILED = FindingSpec(
    code="imap.mailbox.failed",
    status=Status.FAIL,
    title="The server could not open INBOX",
    meaning="The login worked, but EXAMINE INBOX was refused: the mailbox is missing, "
    "corrupt, on a backend the server cannot reach, or its storage is out of quota or broken.",
    remediation="Check the mailbox on the server (Exchange: Get-MailboxStatistics; Dovecot: "
    "doveadm mailbox status -u <user> all INBOX) and the server log.",
    reference=RFC9051,
)
FOLDERS = FindingSpec(
    code="imap.folders",
    status=Status.PASS,
    title="Folders listed",
    meaning="LIST returned the user's folders; the evidence has how many and the special-use "
    "ones (Sent, Drafts, Trash...).",
)
FOLDERS_FAILED = FindingSpec(
    code="imap.folders.failed",
    status=Status.WARN,
    title="The folder list could not be read",
    meaning="LIST was refused after a successful login; clients show an empty folder tree.",
    remediation="Check the server log for the LIST command at the time of the test.",
)
FINDINGS = (*F.all(), MAILBOX_OK, MAILBOX_FAILED, FOLDERS, FOLDERS_FAILED)

#: Extensions clients rely on, shown in the capabilities finding.
EXTENSIONS = (
    "IDLE", "CONDSTORE", "QRESYNC", "MOVE", "UIDPLUS", "SPECIAL-USE", "NAMESPACE", "ENABLE",
    "ID", "SASL-IR", "LITERAL+", "COMPRESS=DEFLATE", "NOTIFY", "UTF8=ACCEPT", "IMAP4REV2",
)  # fmt: skip


async def run(ctx: ProbeContext, target: Target) -> None:
    """Every IMAP endpoint, concurrently; one result each (:func:`check_logins`)."""
    await check_logins(
        ctx, target, "imap", F, "IMAP", ImapDialect(),
        lambda view, res, opened: _after_tls(ctx, target, view, res, opened),
    )  # fmt: skip


async def _after_tls(
    ctx: ProbeContext, target: Target, view: EndpointView, res: ResultRecorder,
    opened: Opened[ImapSession],
) -> None:  # fmt: skip
    session, choice, before = opened.session, opened.choice, opened.before
    with res.step("CAPABILITY over TLS") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, F):
            try:
                after = await session.capability()
            except CommandRejected as exc:
                step.add(F.protocol_error(detail=f"CAPABILITY refused: {exc.text[:300]}"))
                raise SessionOver(str(exc)) from None
        mechanisms = [c[5:] for c in after if c.startswith("AUTH=")]
        extensions = [e for e in EXTENSIONS if e in after]
        evidence: dict[str, Json] = {
            "before_tls": list(before),
            "after_tls": list(after),
            "auth_mechanisms": mechanisms,
            "extensions": extensions,
            "idle": "IDLE" in after,
            "condstore": "CONDSTORE" in after,
            "qresync": "QRESYNC" in after,
        }
        step.add(F.capabilities(
            detail=f"AUTH: {', '.join(mechanisms) or 'none announced'}; extensions before "
            f"login: {', '.join(extensions) or 'none of note'}",
            evidence=evidence,
        ))  # fmt: skip

    ep = await view.settled()  # where to send the credentials: the settled verdict
    user = login_name(ctx, target)
    with res.step(f"Log in as {user or '(no user)'}") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        if not login_precheck(ctx, step, F, user, choice, ep) or user is None:
            await _logout(ctx, session, step)
            return
        with guard(step, F):
            logged_in = await imap_login(
                ctx, session, step, F, user, ep, extensions=EXTENSIONS
            )
        if not logged_in:
            await _logout(ctx, session, step)
            return
    await _mailbox(ctx, res, session)
    with res.step("LOGOUT") as step:
        await _logout(ctx, session, step)


async def _mailbox(ctx: ProbeContext, res: ResultRecorder, session: ImapSession) -> None:
    with res.step("EXAMINE INBOX (read-only)") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, F):
            response = await session.examine("INBOX")
        if not response.ok:
            step.add(MAILBOX_FAILED(detail=response.line[:500]))
        else:
            status = mailbox_status(response)
            evidence: dict[str, Json] = {k.lower(): v for k, v in status.items()}
            evidence["read_only"] = response.code == "READ-ONLY"
            step.add(MAILBOX_OK(
                detail=f"{status.get('EXISTS', '?')} messages, UIDVALIDITY "
                f"{status.get('UIDVALIDITY', '?')}",
                evidence=evidence,
            ))  # fmt: skip
    with res.step("LIST folders") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, F):
            listing = await session.list_all()
        if not listing.ok:
            step.add(FOLDERS_FAILED(detail=listing.line[:500]))
            return
        mailboxes = list_mailboxes(listing)
        # RFC 6154: the attribute, not the name, tells a client which folder is Sent.
        special: dict[str, Json] = {}
        for box in mailboxes:
            for flag in box.flags:
                use = next((u for u in SPECIAL_USE if u.lower() == flag.lower()), None)
                if use is not None and use not in special:
                    special[use] = box.name
        step.add(FOLDERS(
            detail=f"{len(mailboxes)} folders",
            evidence={"count": len(mailboxes), "special_use": sorted(special),
                      "special_use_folders": special},
        ))  # fmt: skip


async def _logout(ctx: ProbeContext, session: ImapSession, step: StepRecorder) -> None:
    session.conn.transcript = step
    session.timeout = min(ctx.op_timeout(), 3.0)
    try:
        await session.logout()
    except NetError:
        pass  # the server closing at once is fine


PROBE = Probe(
    id="imap",
    title="IMAP login and mailbox",
    run=run,
    uses=(MX_HOSTS, SRV_RECORDS, DOMAIN_ADDRESSES, OPEN_PORTS, TLS_VERDICTS),
    awaits=(MAIL_SETTINGS,),
    findings=FINDINGS,
    uses_credentials=True,
    verifies_tls=True,
)
