"""What the client login probes (IMAP, POP3, SMTP) share: where to log in, whether it is
safe to, how a failure reads, and the finding codes every one of them has.

- :func:`login_endpoints`: the servers a mail client would use, from what other probes
  found: autoconfig / Autodiscover / RFC 6186 settings (:data:`~analyzer.core.facts.MAIL_SETTINGS`),
  the SRV records and host-name guesses of :func:`~analyzer.protocols.endpoints.plan_endpoints`,
  and what the user named (``--port``, a ``host:port`` target).
- :class:`LoginPlan` / :func:`check_logins`: a login probe ``awaits`` the mail settings
  (autoconfig publishes them once Autodiscover has answered). Endpoints known without them
  start at once (connect, greeting, TLS, capabilities); each session takes its settled
  endpoint (:meth:`EndpointView.settled`: source, credential policy verdict, the TLS check's
  note) before it logs in, so the report and the policy are those of the settled facts.
- :func:`connect_tls`: connect to the address rca resolved, with
  the run's trust and the host name checked; when the certificate is rejected, a session
  without verification is opened for the steps that send no secret, and the login is
  withheld (:func:`may_send_credentials`) unless ``--insecure``; so is a login to a host
  the credential policy does not allow (:mod:`analyzer.core.credpolicy`: every endpoint carries
  the policy's :class:`~analyzer.core.credpolicy.Verdict`, from where it was learned).
- :class:`SessionFindings`: one set of codes per protocol (``imap.login.failed``,
  ``pop3.login.failed``...) built by :func:`session_findings`, so the three probes judge
  the same situations the same way and ``rca findings`` still lists every code.
- :func:`classify_refusal`: wrong password, locked account, protocol disabled for the
  user, or a temporary failure, from the server's response code and words.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from analyzer.core.credpolicy import Provenance, Verdict, judge_for
from analyzer.core.errors import (
    ConnectionRefused,
    ConnectionReset,
    NetError,
    NetTimeout,
    ProtocolViolation,
    TlsFailure,
    Unreachable,
)
from analyzer.core.facts import (
    MAIL_SETTINGS,
    OPEN_PORTS,
    TLS_VERDICTS,
    MailServerSetting,
    TlsVerdicts,
)
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.protocols.endpoints import SERVICES, Endpoint, plan_endpoints, resolve_host
from analyzer.protocols.mailclient import (
    CommandRejected,
    ImapSession,
    Pop3Session,
    SmtpSession,
    sasl_start,
)
from analyzer.protocols.net import Connection, connect
from analyzer.protocols.tlsprobe import insecure_context

if TYPE_CHECKING:
    from analyzer.core.probe import ProbeContext, ResultRecorder, StepRecorder
    from analyzer.core.targets import Target
    from analyzer.protocols.net import TranscriptSink

__all__ = [
    "BeforeTls",
    "Dialect",
    "ImapDialect",
    "Pop3Dialect",
    "SmtpDialect",
    "EndpointView",
    "LoginEndpoint",
    "LoginPlan",
    "Opened",
    "Refusal",
    "Restart",
    "SessionFindings",
    "SessionOver",
    "TlsChoice",
    "check_logins",
    "classify_refusal",
    "connect_tls",
    "connect_plain",
    "guard",
    "imap_login",
    "login_endpoints",
    "login_name",
    "login_precheck",
    "may_send_credentials",
    "net_error_finding",
    "open_session",
    "open_settled",
    "session_findings",
]

TlsMode = Literal["implicit", "starttls"]
Refusal = Literal["failed", "disabled", "locked", "unavailable", "refused"]

#: Our own services per protocol, implicit TLS first (RFC 8314 3: prefer implicit TLS).
PROTOCOL_SERVICES: dict[str, tuple[str, ...]] = {
    "imap": ("imaps", "imap"),
    "pop3": ("pop3s", "pop3"),
    "smtp": ("submissions", "submission"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginEndpoint:
    """One server a client logs in to: host, port, TLS mode, where we learned of it."""

    host: str
    port: int
    tls: TlsMode
    service: str
    source: str
    expected: bool
    #: Whether the credential policy lets this host receive the credentials, and why.
    verdict: Verdict
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    #: The reachability check tests this endpoint as published (and fails it when closed).
    reachability_checked: bool = False

    @property
    def label(self) -> str:
        """``host:port`` (the result's subject)."""
        return f"{self.host}:{self.port}"

    def addresses(self, families: Sequence[int]) -> tuple[str, ...]:
        """The addresses to try, IPv4 first, for the run's families."""
        return (self.ipv4 if 4 in families else ()) + (self.ipv6 if 6 in families else ())


def _setting_provenance(setting: MailServerSetting) -> Provenance:
    source = setting.source or "client settings"
    if source.startswith(("http://", "https://")):
        named = f"the autoconfig document {source[:200]}"
    elif source == "autodiscover":
        named = "the Autodiscover answer"
    elif source == "srv":
        named = "an RFC 6186 SRV record"
    else:
        named = source
    return Provenance(source=named, vouched=setting.vouched, why=setting.unvouched_reason)


#: Endpoints planned from DNS or the command line: who named them.
_PLANNED_PROVENANCE = {
    "srv": Provenance(source="an RFC 6186 SRV record",
                      why="DNS names no host outside the domain for credentials"),
    "user": Provenance(source="--port on the command line", vouched=True),
    "target": Provenance(source="the target on the command line", vouched=True),
}  # fmt: skip


def _service_for(protocol: str, port: int, socket_type: str) -> tuple[str, TlsMode]:
    implicit, starttls = PROTOCOL_SERVICES[protocol]
    if socket_type.upper() == "SSL":
        return implicit, "implicit"
    if socket_type.upper() in ("STARTTLS", "TLS"):
        return starttls, "starttls"
    # "plain": configured without TLS; it is tested as STARTTLS would be (and reported).
    return (implicit, "implicit") if SERVICES[implicit].port == port else (starttls, "starttls")


async def login_endpoints(
    ctx: ProbeContext, target: Target, protocol: Literal["imap", "pop3", "smtp"]
) -> list[LoginEndpoint]:
    """Every endpoint of ``protocol`` a client could be configured with (module docstring),
    from the mail settings known now (a probe that ``uses`` them: the settled ones).

    Endpoints nobody published (host-name guesses) are kept only when something answers
    there, so a domain without POP3 is not reported as broken.
    """
    plan = LoginPlan(ctx, target, protocol)
    return await plan.endpoints(ctx.fact_or(MAIL_SETTINGS, ()) or ())


class LoginPlan:
    """The endpoints of one protocol for a probe that ``awaits`` the mail settings: those
    that DNS, the reachability check and the command line name (:meth:`early`), and all of
    them once the settings are settled (:meth:`settled`, computed once), whose source and
    credential policy verdict are the ones that count."""

    def __init__(
        self, ctx: ProbeContext, target: Target, protocol: Literal["imap", "pop3", "smtp"]
    ) -> None:
        self.ctx = ctx
        self.target = target
        self.protocol = protocol
        self._planned: list[Endpoint] | None = None
        self._settled: list[LoginEndpoint] | None = None
        self._lock = asyncio.Lock()

    async def early(self) -> list[LoginEndpoint]:
        """The endpoints known without the mail settings. Their verdict refuses until
        settled: a session must take the settled endpoint (:class:`EndpointView`) first."""
        pending = Verdict(allowed=False, host="", source="an endpoint not yet settled",
                          reason="the mail settings were not settled yet")  # fmt: skip
        return [
            dataclasses.replace(ep, verdict=dataclasses.replace(pending, host=ep.host))
            for ep in await self.endpoints(())
        ]

    async def settled(self) -> list[LoginEndpoint]:
        """The endpoints once the mail settings are settled (the probe must ``await`` them)."""
        async with self._lock:
            if self._settled is None:
                settings = await self.ctx.settled(MAIL_SETTINGS, ()) or ()
                self._settled = await self.endpoints(settings)
            return self._settled

    @property
    def known(self) -> list[LoginEndpoint] | None:
        """The settled endpoints, if they are known yet."""
        return self._settled

    async def endpoint(self, label: str) -> LoginEndpoint | None:
        """The settled endpoint ``label`` (``host:port``), or None."""
        return next((ep for ep in await self.settled() if ep.label == label), None)

    async def endpoints(self, settings: Sequence[MailServerSetting]) -> list[LoginEndpoint]:
        """The endpoints of ``settings`` and of the plan, in the report's order."""
        ctx, target, protocol = self.ctx, self.target, self.protocol
        services = PROTOCOL_SERVICES[protocol]
        found: dict[tuple[str, int], LoginEndpoint] = {}
        for setting in settings:
            if setting.protocol.lower() != protocol:
                continue
            host = setting.host.lower().rstrip(".")
            service, mode = _service_for(protocol, setting.port, setting.socket_type)
            addrs = await resolve_host(ctx.run, host)
            key = (host, setting.port)
            if key not in found:
                found[key] = LoginEndpoint(
                    host=host, port=setting.port, tls=mode, service=service,
                    source=setting.source or "client settings", expected=True,
                    verdict=judge_for(ctx, target, host, _setting_provenance(setting)),
                    ipv4=addrs.ipv4, ipv6=addrs.ipv6,
                )  # fmt: skip

        for ep in await self._plan():
            if ep.service.name not in services:
                continue
            known = found.get((ep.host, ep.port))
            if known is not None:
                # Named by client settings; the reachability check reports it only if published.
                found[(ep.host, ep.port)] = dataclasses.replace(
                    known, reachability_checked=known.reachability_checked or ep.expected
                )
                continue
            provenance = _PLANNED_PROVENANCE.get(ep.source) or Provenance(source=f"a {ep.source}")
            found[(ep.host, ep.port)] = LoginEndpoint(
                host=ep.host, port=ep.port,
                tls="implicit" if ep.service.tls == "implicit" else "starttls",
                service=ep.service.name, source=ep.source, expected=ep.expected, ipv4=ep.ipv4,
                ipv6=ep.ipv6, reachability_checked=ep.expected,
                verdict=judge_for(ctx, target, ep.host, provenance),
            )  # fmt: skip

        open_ports: tuple[str, ...] | None = ctx.fact_or(OPEN_PORTS)
        endpoints: list[LoginEndpoint] = []
        for login_ep in found.values():
            if login_ep.expected or open_ports is None or login_ep.label in open_ports:
                endpoints.append(login_ep)  # else a guess that does not answer: not offered
        # Implicit TLS first (RFC 8314 3.3), then by host and port, for a stable report.
        return sorted(endpoints, key=lambda e: (e.tls != "implicit", e.host, e.port))

    async def _plan(self) -> list[Endpoint]:
        """The planned endpoints (DNS, host guesses, the target), found once."""
        if self._planned is None:
            ctx, target = self.ctx, self.target
            planned: list[Endpoint] = list(await plan_endpoints(ctx, target))
            if target.kind == "host" and target.port is None and not target.is_ip:
                # A bare host name: the standard ports of the protocol on it, if they answer.
                addrs = await resolve_host(ctx.run, target.domain)
                for name in PROTOCOL_SERVICES[self.protocol]:
                    info = SERVICES[name]
                    planned.append(
                        Endpoint(host=target.domain, port=info.port, service=info,
                                 ipv4=addrs.ipv4, ipv6=addrs.ipv6, source="target",
                                 expected=False)
                    )  # fmt: skip
            self._planned = planned
        return self._planned


class Restart(Exception):
    """The settled endpoint is not the one an early session connected to (the settings
    name another TLS mode or other addresses for it): that session's result is dropped
    and the endpoint is checked again, as the settings say."""

    __rca_recorded__ = True


class EndpointView:
    """The endpoint a session talks to: known early (from DNS), or settled.

    A session started early calls :meth:`settled` before anything that depends on the
    mail settings (above all the credential policy's verdict, before any credential is
    sent); it then gets the endpoint as the settled settings describe it, and what the
    session recorded that they decide (the connect step's title, which names the source)
    is revised. What only adds to the record (the TLS check's verdict, a note) is awaited
    at :meth:`finish`, before the result ends, so the login does not wait for it.
    """

    def __init__(
        self, ep: LoginEndpoint,
        settle: Callable[[str], Awaitable[LoginEndpoint | None]] | None = None,
    ) -> None:  # fmt: skip
        self.ep = ep
        self._settle = settle
        self._revisions: list[Callable[[LoginEndpoint], Awaitable[None]]] = []
        self._notes: list[Callable[[LoginEndpoint], Awaitable[None]]] = []

    def revise(self, revision: Callable[[LoginEndpoint], Awaitable[None]]) -> None:
        """Run ``revision`` with the settled endpoint, at :meth:`settled`."""
        self._revisions.append(revision)

    def note_later(self, note: Callable[[LoginEndpoint], Awaitable[None]]) -> None:
        """Run ``note`` with the settled endpoint, at :meth:`finish`."""
        self._notes.append(note)

    async def settled(self) -> LoginEndpoint:
        """The settled endpoint (raises :class:`Restart` when it is not the one connected
        to), once what it decides has been recorded."""
        if self._settle is not None:
            final = await self._settle(self.ep.label)
            early = self.ep
            if final is None or dataclasses.replace(
                final, source=early.source, verdict=early.verdict, expected=early.expected
            ) != early:
                raise Restart(f"{early.label}: the settled settings describe it otherwise")
            self.ep, self._settle = final, None
        while self._revisions:
            await self._revisions.pop(0)(self.ep)
        return self.ep

    async def finish(self) -> None:
        """Settle, and add the notes awaited late (the session is over)."""
        ep = await self.settled()
        while self._notes:
            await self._notes.pop(0)(ep)


async def check_logins(
    ctx: ProbeContext, target: Target, protocol: Literal["imap", "pop3", "smtp"],
    f: SessionFindings, name: str, dialect: Dialect[S],
    after: Callable[[EndpointView, ResultRecorder, Opened[S]], Awaitable[None]],
) -> None:  # fmt: skip
    """On every endpoint of ``protocol`` (a :class:`LoginPlan` for ``target``), one result
    each in the report's order: open a session (:func:`open_session`), run ``after`` over
    it, close it. An endpoint the reachability check found closed is ``f.not_tested``
    (``name``: the protocol's, for the step's title); a :class:`SessionOver` ends the
    endpoint's check.

    Endpoints known early start at once; ``after`` calls :meth:`EndpointView.settled`
    before it depends on the mail settings, and the endpoint is checked again from scratch
    (its first result dropped) if the settled settings describe it otherwise. Endpoints
    only the settled settings name start once they are.
    """

    async def check(view: EndpointView, res: ResultRecorder) -> None:
        opened = await open_session(ctx, view, res, f, dialect)
        try:
            await after(view, res, opened)
        finally:
            await opened.session.conn.close()

    plan = LoginPlan(ctx, target, protocol)
    recorders: dict[str, ResultRecorder] = {}

    async def one(view: EndpointView) -> None:
        label = view.ep.label
        with ctx.result(label) as res:
            recorders[label] = res
            try:
                if endpoint_closed(ctx, view.ep):
                    with res.step(f"{name} on {label}") as step:
                        step.add(f.not_tested(detail=f"{label} did not answer the reachability "
                                              "check"))  # fmt: skip
                else:
                    with contextlib.suppress(SessionOver):
                        await check(view, res)
                await view.finish()
                return
            except Restart:
                pass
        ctx.drop_result(res)
        final = await plan.endpoint(view.ep.label)
        if final is not None:
            await one(EndpointView(final))

    early = await plan.early()

    async def late() -> None:
        known = {ep.label for ep in early}
        await asyncio.gather(*(one(EndpointView(ep)) for ep in await plan.settled()
                               if ep.label not in known))  # fmt: skip

    try:
        await asyncio.gather(*(one(EndpointView(ep, plan.endpoint)) for ep in early), late())
    finally:
        order = [ep.label for ep in plan.known or early]
        ctx.order_recorders([recorders[label] for label in order if label in recorders])


def login_name(ctx: ProbeContext, target: Target) -> str | None:
    """The login name: ``--user``, else the target's address."""
    return ctx.options.credentials.username or target.address


# --- findings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFindings:
    """The finding codes every client login probe has, for one protocol."""

    not_tested: FindingSpec
    unreachable: FindingSpec
    greeting_refused: FindingSpec
    protocol_error: FindingSpec
    timeout: FindingSpec
    connection_lost: FindingSpec
    tls_failed: FindingSpec
    tls_untrusted: FindingSpec
    tls_insecure: FindingSpec
    starttls_refused: FindingSpec
    cleartext_only: FindingSpec
    plaintext_allowed: FindingSpec
    tls_required: FindingSpec
    capabilities: FindingSpec
    login_ok: FindingSpec
    login_failed: FindingSpec
    login_disabled: FindingSpec
    login_locked: FindingSpec
    login_unavailable: FindingSpec
    login_refused: FindingSpec
    login_skipped: FindingSpec
    login_withheld: FindingSpec
    no_mechanism: FindingSpec

    def all(self) -> tuple[FindingSpec, ...]:
        """Every spec, for the probe's ``findings``."""
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)


def session_findings(
    prefix: str,
    name: str,
    *,
    starttls: str,
    enable_for_user: str,
    tls_only_fix: str,
    reference: str,
) -> SessionFindings:
    """The codes ``<prefix>.login.failed``... for protocol ``name`` (IMAP, POP3, SMTP
    submission); the remediation texts name the protocol's own settings."""

    def spec(
        code: str, status: Status, title: str, meaning: str, remediation: str = "",
        ref: str = "",
    ) -> FindingSpec:  # fmt: skip
        return FindingSpec(
            code=f"{prefix}.{code}", status=status, title=title, meaning=meaning,
            remediation=remediation, reference=ref,
        )  # fmt: skip

    return SessionFindings(
        not_tested=spec(
            "not_tested", Status.SKIP, f"{name} login not tested: the port does not answer",
            f"The reachability check found this {name} port closed or filtered, so no "
            "session could be opened; that check reports the failure.",
        ),
        unreachable=spec(
            "unreachable", Status.FAIL, f"No connection to the {name} server",
            f"No address of the {name} server accepted a connection (refused, filtered or "
            "unreachable).",
            f"Check that the {name} service runs and that firewalls allow the port.",
        ),
        greeting_refused=spec(
            "greeting.refused", Status.INCONCLUSIVE, f"The {name} server refused the session",
            "The server's greeting was a refusal (overload, rate limit, or a block of the "
            "address rca runs from), so nothing else could be tested.",
            "Read the server's words in the detail; retry later or from another network.",
        ),
        protocol_error=spec(
            "protocol_error", Status.FAIL, f"The {name} server broke the protocol",
            f"What the server sent is not {name} as the standard defines it, or far more of "
            "it than any real client accepts (an endless line or reply, a gigantic literal, "
            "data before the TLS handshake). Clients fail or hang on such servers.",
            "Check which software answers on this port (a proxy or filter in between?) and "
            "its version.",
            reference,
        ),
        timeout=spec(
            "timeout", Status.INCONCLUSIVE, f"The {name} server stopped answering",
            "The server accepted the connection but did not finish an answer in time, so "
            "the step could not be judged (a tarpit, an overloaded server, or a network "
            "path that drops large packets).",
            "Retry; if it persists, check the server's load and logs at the time of the test.",
        ),
        connection_lost=spec(
            "connection_lost", Status.FAIL, "The server closed the connection mid-session",
            "The server (or something in between) closed or reset the connection in the "
            "middle of the dialogue.",
            "Check the server's log at the time of the test and any firewall or proxy that "
            "may cut sessions.",
        ),
        tls_failed=spec(
            "tls.failed", Status.FAIL, "The TLS handshake failed",
            f"The {name} server accepted the connection, but the TLS handshake did not "
            "complete (an alert, garbage instead of TLS, or a closed connection). Clients "
            "cannot connect securely.",
            "Check the server's certificate files and TLS settings, and its log.",
        ),
        tls_untrusted=spec(
            "tls.untrusted", Status.FAIL,
            "Certificate not trusted: the password was not sent",
            "The certificate failed verification (the TLS check says why), so a client "
            "cannot know it talks to the real server: rca does not send the credentials, "
            "and careful clients refuse to connect or show a warning that users learn to "
            "click away.",
            "Fix the certificate (see the TLS findings for this host); to test the login "
            "anyway, run with --insecure.",
        ),
        tls_insecure=spec(
            "tls.insecure", Status.WARN,
            "Credentials sent over TLS that failed verification (--insecure)",
            "You ran rca with --insecure: the login was tested although the certificate "
            "failed verification. The result says whether login works, not whether it is "
            "safe.",
            "Fix the certificate; run without --insecure to verify.",
        ),
        starttls_refused=spec(
            "starttls.refused", Status.FAIL, "STARTTLS is announced but refused",
            "The server lists STARTTLS but refuses the command, so the session cannot be "
            "encrypted and no password can be sent safely.",
            "Check the certificate and key the server is configured with, and its error log.",
            "https://www.rfc-editor.org/rfc/rfc8314",
        ),
        cleartext_only=spec(
            "login.cleartext_only", Status.FAIL, "The server offers login only without TLS",
            f"This {name} port does not offer STARTTLS, yet it accepts a login: clients "
            "configured for it send the password readable to anyone on the path. rca did "
            "not send it.",
            f"Enable STARTTLS here ({starttls}) or close the port and publish the implicit "
            "TLS port instead (RFC 8314).",
            "https://www.rfc-editor.org/rfc/rfc8314#section-3",
        ),
        plaintext_allowed=spec(
            "login.plaintext_allowed", Status.WARN,
            "The server accepts a password before STARTTLS",
            "Before TLS is started the server already offers a way to log in, so a client "
            "that does not insist on STARTTLS (or an attacker who strips it from the "
            "capabilities) sends the password in clear. rca did not try.",
            tls_only_fix,
            "https://www.rfc-editor.org/rfc/rfc8314#section-3.2",
        ),
        tls_required=spec(
            "login.tls_required", Status.PASS, "No login before TLS",
            "Before STARTTLS the server offers no way to send a password (IMAP "
            "LOGINDISABLED, no AUTH), so passwords only ever cross the network encrypted; "
            "rca honoured it and logged in after STARTTLS.",
        ),
        capabilities=spec(
            "capabilities", Status.PASS, f"{name} capabilities",
            "What the server announced, before and after TLS (evidence), and the "
            "extensions clients use.",
        ),
        login_ok=spec(
            "login.ok", Status.PASS, f"{name} login succeeded",
            "The server accepted the credentials over an encrypted session.",
        ),
        login_failed=spec(
            "login.failed", Status.FAIL, "The server rejected the credentials",
            "The login was refused as a wrong user name or password (the server's words are "
            "in the detail). With the right password, the account may also be unknown under "
            "this login name (try the address, or DOMAIN\\user).",
            "Check the password and the login name (--user); if they work elsewhere, check "
            "the server's authentication log.",
        ),
        login_disabled=spec(
            "login.disabled_for_user", Status.FAIL, f"{name} is disabled for this user",
            f"The server accepted the password but refuses {name} for this mailbox (its "
            "words say so). Other protocols may work.",
            enable_for_user,
        ),
        login_locked=spec(
            "login.locked", Status.FAIL, "The account is locked, disabled or expired",
            "The server's reply says the account cannot log in at all right now (locked "
            "after failed attempts, disabled, or its password expired).",
            "Unlock or re-enable the account, or change its expired password, in the "
            "directory (Active Directory: Unlock-ADAccount / Enable-ADAccount).",
        ),
        login_unavailable=spec(
            "login.unavailable", Status.INCONCLUSIVE, "The server could not log in right now",
            "The server answered with a temporary failure (its authentication backend is "
            "unavailable, the mailbox is in use, or a login delay applies): the credentials "
            "could not be judged.",
            "Retry later; if it persists, check the server's authentication backend.",
        ),
        login_refused=spec(
            "login.refused", Status.FAIL, "The server refused the login",
            "The login command was refused for a reason the server states in the detail "
            "(not recognisably a wrong password).",
            "Read the server's words; check its log at the time of the test.",
        ),
        login_skipped=spec(
            "login.skipped", Status.SKIP, "Login not tested: no credentials",
            "No password or OAuth2 token was given, so only the steps before login ran.",
            "Give --password-file (or RCA_PASSWORD) or --oauth-token-file to test the login.",
        ),
        login_withheld=spec(
            "login.withheld", Status.WARN,
            "Login withheld: the credential policy does not trust this host",
            f"This {name} server is outside the e-mail domain, and what named it (an "
            "RFC 6186 SRV record, autoconfig over http or from another domain, an "
            "Autodiscover answer without authentication from another domain) could have been "
            "written by anyone who can answer that look-up. rca ran every step that needs no "
            "credentials and did not send them; the detail names the host, the source and "
            "the flag that allows it (docs/security.md).",
            "If this server is expected (a hosting provider), run again with the "
            "--trust-redirect flag the detail names; otherwise publish the settings from the "
            "domain's own hosts over https.",
        ),
        no_mechanism=spec(
            "login.no_mechanism", Status.FAIL, "No login method in common with the server",
            "The server announces no login method that works with the credentials given "
            "(for example no PLAIN/LOGIN for a password, or no XOAUTH2/OAUTHBEARER for a "
            "token), so clients configured that way cannot log in.",
            "Enable the mechanism your clients use after TLS (password: PLAIN/LOGIN; Microsoft "
            "365 and Gmail: XOAUTH2/OAUTHBEARER with an OAuth token).",
        ),
    )


# --- refusals -----------------------------------------------------------------------------------

_LOCKED = re.compile(
    r"\b(locked out|lockout|account\b.{0,40}\b(locked|disabled|suspended|expired)"
    r"|suspended|password (has )?expired)\b",
    re.IGNORECASE,
)
_TEMPORARY = ("UNAVAILABLE", "SYS/TEMP", "IN-USE", "LOGIN-DELAY", "LIMIT", "INUSE")
_DISABLED = re.compile(
    r"(\b(disabled|not (enabled|allowed|permitted|authori[sz]ed))\b"
    r"|authenticated but not connected"  # Exchange when Set-CASMailbox -*Enabled $false
    r"|SmtpClientAuthentication)",
    re.IGNORECASE,
)


def classify_refusal(code: str, text: str) -> Refusal:
    """What a login refusal means, from its response code and text.

    ``code`` is the IMAP response code (RFC 5530: AUTHENTICATIONFAILED,
    AUTHORIZATIONFAILED, UNAVAILABLE, EXPIRED...), the POP3 one (RFC 3206: AUTH,
    SYS/TEMP, IN-USE...) or the SMTP reply code and enhanced status (``535 5.7.8``).
    """
    code = code.upper()
    if code in _TEMPORARY or code.startswith("4"):
        return "unavailable"  # incl. SMTP 454 4.7.0: temporary authentication failure
    if _LOCKED.search(text) or code in ("EXPIRED", "CONTACTADMIN"):
        return "locked"
    if _DISABLED.search(text) or code == "AUTHORIZATIONFAILED":
        return "disabled"
    if code in ("AUTHENTICATIONFAILED", "AUTH") or code.startswith("535"):
        return "failed"
    if not code and re.search(r"\b(authentication|login|logon) failed\b|invalid|incorrect|bad "
                              r"(user|password|credentials)", text, re.IGNORECASE):
        return "failed"
    return "refused"


def refusal_finding(f: SessionFindings, kind: Refusal, *, detail: str, evidence: dict[str, str]
                    ) -> Finding:
    """The finding for a classified refusal."""
    spec = {
        "failed": f.login_failed,
        "disabled": f.login_disabled,
        "locked": f.login_locked,
        "unavailable": f.login_unavailable,
        "refused": f.login_refused,
    }[kind]
    return spec(detail=detail, evidence=evidence)


# --- connections and trust -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsChoice:
    """The context to handshake with, and whether it verifies the certificate."""

    context: ssl.SSLContext
    verified: bool
    reason: str = ""


def _verdict_note(
    ctx: ProbeContext, step: StepRecorder, at: int
) -> Callable[[LoginEndpoint], Awaitable[None]]:
    """The TLS check's verdict on the endpoint, as a note at ``at`` in ``step``.

    The handshake itself decides whether the password may go over a connection: the
    certificate this very connection presents must verify (the run's verifying context:
    certifi + system + ``--ca-file``, host name checked). The TLS check's verdict
    (:data:`~analyzer.core.facts.TLS_VERDICTS`) covers every address and stricter criteria, and
    also counts handshakes that timed out; it is shown beside the login, not used as a veto,
    so the session does not wait for it: it is awaited (for this endpoint only, while the
    TLS check of the others goes on) when the session is over (:meth:`EndpointView.finish`).
    """

    async def note(ep: LoginEndpoint) -> None:
        verdicts: TlsVerdicts | None = ctx.fact_or(TLS_VERDICTS)
        verdict = "" if verdicts is None else await verdicts.verdict(ep.label)
        if verdict == "invalid":
            step.revise(note=(at, f"the TLS check judged {ep.label} {verdict}"))

    return note


def is_certificate_error(exc: BaseException) -> str | None:
    """The verification error's words when ``exc`` is a certificate rejection, else None."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return str(cause.verify_message or cause.reason or "certificate verify failed")
        if isinstance(cause, ssl.CertificateError):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return None


async def connect_plain(
    ctx: ProbeContext, ep: LoginEndpoint, *, transcript: TranscriptSink,
    tls: ssl.SSLContext | None = None,
) -> Connection:  # fmt: skip
    """Connect to the first address that answers (implicit TLS when ``tls`` is given)."""
    last: NetError | None = None
    for address in ep.addresses(ctx.options.families) or ():
        try:
            return await connect(
                ctx.run, ep.host, address, ep.port,
                timeout=min(ctx.options.connect_timeout, ctx.op_timeout()) if tls is None
                else ctx.op_timeout(),
                tls=tls, server_hostname=ep.host, transcript=transcript,
            )  # fmt: skip
        except (ConnectionRefused, NetTimeout, Unreachable) as exc:
            if tls is not None and isinstance(exc, NetTimeout) and exc.phase == "tls":
                raise
            last = exc
    if last is None:
        raise Unreachable(f"{ep.host} has no address for the IP families tested", phase="connect")
    raise last


async def connect_tls(
    ctx: ProbeContext, ep: LoginEndpoint, choice: TlsChoice, *, transcript: TranscriptSink
) -> tuple[Connection, TlsChoice]:
    """Implicit TLS with ``choice``. A rejected certificate ends the attempt (the caller
    records it), unless the user gave ``--insecure``: then connect again without
    verification and say why in the returned choice."""
    try:
        return await connect_plain(ctx, ep, transcript=transcript, tls=choice.context), choice
    except TlsFailure as exc:
        reason = is_certificate_error(exc)
        if reason is None or not choice.verified or not ctx.options.insecure:
            raise
    transcript.note(f"certificate rejected ({reason}); --insecure: connecting again without "
                    "verification")
    unverified = TlsChoice(context=insecure_context(), verified=False,
                           reason=f"certificate verification failed: {reason}")
    return await connect_plain(ctx, ep, transcript=transcript, tls=unverified.context), unverified


def may_send_credentials(
    ctx: ProbeContext, f: SessionFindings, choice: TlsChoice, ep: LoginEndpoint
) -> tuple[bool, Finding | None]:
    """Whether the login may go to this host (the credential policy) over this TLS session,
    and the finding saying why not (or the loud warning when ``--insecure`` lets it go
    anyway)."""
    if not ep.verdict.allowed:
        return False, f.login_withheld(
            detail=ep.verdict.detail(), evidence=dict(ep.verdict.evidence())
        )
    if choice.verified:
        return True, None
    if ctx.options.insecure:
        return True, f.tls_insecure(detail=choice.reason)
    return False, f.tls_untrusted(detail=choice.reason)


def login_precheck(
    ctx: ProbeContext, step: StepRecorder, f: SessionFindings, user: str | None,
    choice: TlsChoice, ep: LoginEndpoint,
) -> bool:  # fmt: skip
    """Whether to attempt the login; records why not (no secret or user, a host the
    credential policy does not allow, untrusted TLS), or the loud ``--insecure`` warning
    when it goes ahead anyway."""
    if not ctx.options.credentials.has_secret or user is None:
        step.add(f.login_skipped(
            detail="no password or token was given" if user else "no login name: give --user"
        ))  # fmt: skip
        return False
    allowed, gate = may_send_credentials(ctx, f, choice, ep)
    if gate is not None:
        step.add(gate)
    return allowed


def net_error_finding(f: SessionFindings, exc: NetError) -> Finding:
    """The finding for a network failure in the middle of a session."""
    evidence = {"phase": exc.phase}
    reason = is_certificate_error(exc)
    if reason is not None:
        # The certificate is the TLS check's to diagnose; here it ends the session: nothing
        # is tested over a connection whose certificate failed (--insecure continues).
        return f.tls_untrusted(
            detail=f"certificate verification failed: {reason}; nothing more was tested "
            "over this connection",
            evidence=evidence,
        )
    if isinstance(exc, ProtocolViolation):
        return f.protocol_error(detail=str(exc), evidence=evidence)
    if isinstance(exc, NetTimeout):
        return f.timeout(detail=str(exc), evidence=evidence)
    if isinstance(exc, TlsFailure):
        return f.tls_failed(detail=str(exc), evidence=evidence)
    if isinstance(exc, ConnectionRefused | Unreachable) and exc.phase == "connect":
        return f.unreachable(detail=str(exc), evidence=evidence)
    if isinstance(exc, ConnectionReset):
        return f.connection_lost(detail=str(exc), evidence=evidence)
    return f.connection_lost(detail=str(exc), evidence=evidence)


class SessionOver(Exception):
    """A step recorded why the session cannot go on; the probe moves to the next endpoint.

    Marked as recorded, so the step and the pipeline do not report it a second time.
    """

    __rca_recorded__ = True


@contextlib.contextmanager
def guard(step: StepRecorder, f: SessionFindings) -> Iterator[None]:
    """Turn a network failure inside ``step`` into its finding, then end the session."""
    try:
        yield
    except NetError as exc:
        step.add(net_error_finding(f, exc))
        raise SessionOver(str(exc)) from None


def tls_summary(conn: Connection) -> str:
    """``TLSv1.3, TLS_AES_256_GCM_SHA384`` for the transcript."""
    tls = conn.tls
    if tls is None:
        return "no TLS"
    bits = f" ({tls.cipher_bits} bits)" if tls.cipher_bits else ""
    return f"{tls.version}, {tls.cipher}{bits}"


def endpoint_closed(ctx: ProbeContext, ep: LoginEndpoint) -> bool:
    """Whether the reachability check tested ``ep``, found nothing answering and said so
    (endpoints only client settings name are connected to, and judged, here)."""
    open_ports: tuple[str, ...] | None = ctx.fact_or(OPEN_PORTS)
    return ep.reachability_checked and open_ports is not None and ep.label not in open_ports


# --- opening a session ---------------------------------------------------------------------------


class MailSession(Protocol):
    """What :func:`open_session` needs of a protocol session (see analyzer.protocols.mailclient)."""

    conn: Connection
    timeout: float


S = TypeVar("S", bound=MailSession)


@dataclass(frozen=True, slots=True, kw_only=True)
class BeforeTls:
    """What the capabilities before STARTTLS say: STARTTLS offered, and which way to log
    in is already offered in clear (None: none)."""

    starttls: bool
    login_offered: str | None


class Dialect(Protocol[S]):
    """The few protocol-specific moves of opening a session."""

    name: str
    starttls_command: str

    def new(self, conn: Connection, timeout: float) -> S:
        """A session over ``conn``."""
        ...

    async def greet(self, session: S) -> tuple[bool, str]:
        """Read the greeting: (accepting?, its text)."""
        ...

    async def capabilities(self, session: S) -> tuple[str, ...]:
        """CAPABILITY / CAPA / EHLO (raises CommandRejected on refusal)."""
        ...

    def before_tls(self, capabilities: tuple[str, ...]) -> BeforeTls:
        """Judge the capabilities announced before TLS."""
        ...

    async def starttls(self, session: S, context: ssl.SSLContext, host: str) -> None:
        """STARTTLS / STLS and the handshake (raises CommandRejected on refusal)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened(Generic[S]):
    """A session over TLS, the trust it was opened with, and the capabilities before TLS."""

    session: S
    choice: TlsChoice
    before: tuple[str, ...] = ()


class _CertificateRejected(Exception):
    __rca_recorded__ = True

    def __init__(self, reason: str, before: tuple[str, ...]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.before = before


async def open_session(
    ctx: ProbeContext, view: EndpointView, res: ResultRecorder, f: SessionFindings,
    dialect: Dialect[S],
) -> Opened[S]:  # fmt: skip
    """Connect, greet, and (for STARTTLS endpoints) judge the capabilities before TLS and
    upgrade; every move is a step of ``res``. Raises :class:`SessionOver` once a step has
    recorded why the session cannot go on (the connection is closed by then).

    None of this waits for the settled mail settings or the TLS check: the connect step
    gets the source the settled settings name, and the TLS check's verdict (a note), when
    :meth:`EndpointView.settled` is called.

    A certificate the run's trust rejects ends the session (``tls.untrusted``). Only with
    ``--insecure`` is it opened again without verification; the returned ``choice`` then
    says why, and the login carries a loud warning (:func:`may_send_credentials`).
    """
    ep = view.ep
    choice = TlsChoice(context=ctx.run.ssl_context(), verified=True)
    mode = f"{dialect.name} over TLS" if ep.tls == "implicit" else f"{dialect.name}, then STARTTLS"
    with res.step(f"Connect to {ep.label} ({mode}; from {ep.source})") as step:

        async def source(final: LoginEndpoint) -> None:
            step.revise(title=f"Connect to {final.label} ({mode}; from {final.source})")

        view.revise(source)
        try:
            if ep.tls == "implicit":
                conn, choice = await connect_tls(ctx, ep, choice, transcript=step)
                step.note(f"TLS: {tls_summary(conn)}")
            else:
                conn = await connect_plain(ctx, ep, transcript=step)
        except NetError as exc:
            if exc.phase == "connect" and not (await view.settled()).expected:
                step.add(f.not_tested(title="Not offered here", detail=str(exc)))
            else:
                step.add(net_error_finding(f, exc))
            raise SessionOver(str(exc)) from None
        if choice.reason:
            step.note(choice.reason)
        else:
            view.note_later(_verdict_note(ctx, step, step.mark()))
        session = dialect.new(conn, ctx.op_timeout())
        await _greet(ctx, step, f, dialect, session)
    if ep.tls == "implicit":
        return Opened(session=session, choice=choice)
    try:
        before = await _upgrade(ctx, ep, res, f, dialect, session, choice)
    except _CertificateRejected as rejected:
        await conn.close()
        retry = TlsChoice(context=insecure_context(), verified=False, reason=rejected.reason)
        with res.step("Connect again without certificate verification (--insecure)") as s:
            try:
                conn = await connect_plain(ctx, ep, transcript=s)
            except NetError as exc:
                s.add(net_error_finding(f, exc))
                raise SessionOver(str(exc)) from None
            session = dialect.new(conn, ctx.op_timeout())
            await _greet(ctx, s, f, dialect, session)
            try:
                with guard(s, f):
                    await dialect.capabilities(session)
                    await dialect.starttls(session, retry.context, ep.host)
            except SessionOver:
                await conn.close()
                raise
            except CommandRejected as refused:
                s.add(f.starttls_refused(detail=refused.text[:500]))
                await conn.close()
                raise SessionOver(str(refused)) from None
            s.note(f"TLS: {tls_summary(conn)}")
        return Opened(session=session, choice=retry, before=rejected.before)
    except SessionOver:
        await conn.close()
        raise
    return Opened(session=session, choice=choice, before=before)


async def open_settled(
    ctx: ProbeContext, ep: LoginEndpoint, res: ResultRecorder, f: SessionFindings,
    dialect: Dialect[S],
) -> Opened[S]:  # fmt: skip
    """:func:`open_session` for an endpoint taken from settled facts (a probe that ``uses``
    the mail settings), with the TLS check's verdict noted before it returns or raises."""
    view = EndpointView(ep)
    try:
        opened = await open_session(ctx, view, res, f, dialect)
    except SessionOver:
        await view.finish()
        raise
    await view.finish()
    return opened


async def _greet(
    ctx: ProbeContext, step: StepRecorder, f: SessionFindings, dialect: Dialect[S], session: S
) -> None:
    session.conn.transcript = step
    try:
        ok, text = await dialect.greet(session)
    except NetTimeout as exc:
        # Accepted, but never a word: a proxy with nothing behind it, or a hung service.
        step.add(f.timeout(status=Status.FAIL, title="The server never greeted",
                           detail=str(exc), evidence={"phase": exc.phase}))
        await session.conn.close()
        raise SessionOver(str(exc)) from None
    except NetError as exc:
        step.add(net_error_finding(f, exc))
        await session.conn.close()
        raise SessionOver(str(exc)) from None
    if not ok:
        step.add(f.greeting_refused(detail=text[:500], evidence={"greeting": text[:500]}))
        await session.conn.close()
        raise SessionOver(text)


async def _upgrade(
    ctx: ProbeContext, ep: LoginEndpoint, res: ResultRecorder, f: SessionFindings,
    dialect: Dialect[S], session: S, choice: TlsChoice,
) -> tuple[str, ...]:  # fmt: skip
    """The capabilities before TLS, judged; then STARTTLS. Returns those capabilities."""
    with res.step("Capabilities before TLS") as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        with guard(step, f):
            try:
                before = await dialect.capabilities(session)
            except CommandRejected as exc:
                step.add(f.protocol_error(detail=f"{exc.command} refused: {exc.text[:300]}"))
                raise SessionOver(str(exc)) from None
        view = dialect.before_tls(before)
        evidence: dict[str, Json] = {"capabilities": list(before)}
        if not view.starttls:
            if view.login_offered:
                step.add(f.cleartext_only(
                    detail=f"{ep.label} announces no STARTTLS but offers {view.login_offered}",
                    evidence=evidence,
                ))  # fmt: skip
            else:
                step.add(f.cleartext_only(
                    status=Status.WARN, title="No STARTTLS, and no login possible on this port",
                    detail=f"{ep.label} announces neither STARTTLS nor a way to log in: clients "
                    "configured for it cannot log in.",
                    evidence=evidence,
                ))  # fmt: skip
            raise SessionOver("no STARTTLS")
        if view.login_offered:
            step.add(f.plaintext_allowed(
                detail=f"before STARTTLS, {ep.label} already offers {view.login_offered}",
                evidence=evidence,
            ))  # fmt: skip
        else:
            step.add(f.tls_required(
                detail="no way to log in is offered before STARTTLS", evidence=evidence
            ))  # fmt: skip
    with res.step(dialect.starttls_command) as step:
        session.conn.transcript = step
        session.timeout = ctx.op_timeout()
        try:
            await dialect.starttls(session, choice.context, ep.host)
        except CommandRejected as exc:
            step.add(f.starttls_refused(detail=exc.text[:500]))
            raise SessionOver(str(exc)) from None
        except NetError as exc:
            reason = is_certificate_error(exc)
            if reason is not None and choice.verified and ctx.options.insecure:
                step.note(f"certificate rejected: {reason}")
                raise _CertificateRejected(
                    f"certificate verification failed: {reason}", before
                ) from None
            step.add(net_error_finding(f, exc))
            raise SessionOver(str(exc)) from None
        step.note(f"TLS: {tls_summary(session.conn)}")
    return before


# --- the three dialects ---------------------------------------------------------------------------


class ImapDialect:
    """IMAP (RFC 9051): CAPABILITY, LOGINDISABLED, STARTTLS."""

    name = "IMAP"
    starttls_command = "STARTTLS"

    def new(self, conn: Connection, timeout: float) -> ImapSession:
        """An IMAP session."""
        return ImapSession(conn, timeout=timeout)

    async def greet(self, session: ImapSession) -> tuple[bool, str]:
        """``* OK``/``* PREAUTH`` accept; ``* BYE`` refuses."""
        status, line = await session.greeting()
        return status != "BYE", line

    async def capabilities(self, session: ImapSession) -> tuple[str, ...]:
        """CAPABILITY."""
        return await session.capability()

    def before_tls(self, capabilities: tuple[str, ...]) -> BeforeTls:
        """RFC 9051 6.2.3: LOGIN works unless LOGINDISABLED is announced."""
        offered = [] if "LOGINDISABLED" in capabilities else ["LOGIN"]
        offered += [c for c in capabilities if c.startswith("AUTH=")]
        return BeforeTls(
            starttls="STARTTLS" in capabilities, login_offered=", ".join(offered) or None
        )

    async def starttls(self, session: ImapSession, context: ssl.SSLContext, host: str) -> None:
        """STARTTLS and the handshake."""
        await session.starttls(context, server_hostname=host)


class Pop3Dialect:
    """POP3 (RFC 1939, RFC 2449, RFC 2595): CAPA, USER/SASL, STLS."""

    name = "POP3"
    starttls_command = "STLS"

    def new(self, conn: Connection, timeout: float) -> Pop3Session:
        """A POP3 session."""
        return Pop3Session(conn, timeout=timeout)

    async def greet(self, session: Pop3Session) -> tuple[bool, str]:
        """``+OK`` accepts, ``-ERR`` refuses."""
        return await session.greeting()

    async def capabilities(self, session: Pop3Session) -> tuple[str, ...]:
        """CAPA."""
        return await session.capa()

    def before_tls(self, capabilities: tuple[str, ...]) -> BeforeTls:
        """USER or any SASL mechanism before STLS is a way to send a password in clear."""
        offered = ["USER/PASS"] if "USER" in capabilities else []
        for cap in capabilities:
            if cap.startswith("SASL") and cap.split()[1:]:
                offered.append("AUTH " + " ".join(cap.split()[1:]))
        return BeforeTls(starttls="STLS" in capabilities, login_offered=", ".join(offered) or None)

    async def starttls(self, session: Pop3Session, context: ssl.SSLContext, host: str) -> None:
        """STLS and the handshake."""
        await session.stls(context, server_hostname=host)


class SmtpDialect:
    """SMTP (RFC 5321, RFC 3207, RFC 4954): EHLO, AUTH, STARTTLS."""

    name = "SMTP"
    starttls_command = "STARTTLS"

    def new(self, conn: Connection, timeout: float) -> SmtpSession:
        """An SMTP session."""
        return SmtpSession(conn, timeout=timeout)

    async def greet(self, session: SmtpSession) -> tuple[bool, str]:
        """220 accepts; 421/554 refuse."""
        reply = await session.read()
        return reply.code == 220, reply.text

    async def capabilities(self, session: SmtpSession) -> tuple[str, ...]:
        """EHLO: its keywords."""
        await session.ehlo()
        return session.extensions

    def before_tls(self, capabilities: tuple[str, ...]) -> BeforeTls:
        """AUTH before STARTTLS lets a client send its password in clear."""
        mechs = [c for c in capabilities if c.split(" ", 1)[0].split("=", 1)[0] == "AUTH"]
        return BeforeTls(
            starttls=any(c.split(" ", 1)[0] == "STARTTLS" for c in capabilities),
            login_offered=", ".join(mechs) or None,
        )

    async def starttls(self, session: SmtpSession, context: ssl.SSLContext, host: str) -> None:
        """STARTTLS and the handshake (EHLO must follow)."""
        await session.starttls(context, server_hostname=host)


# --- logging in ----------------------------------------------------------------------------------


async def imap_login(
    ctx: ProbeContext, session: ImapSession, step: StepRecorder, f: SessionFindings, user: str,
    ep: LoginEndpoint, *, extensions: Sequence[str] = (),
) -> bool:  # fmt: skip
    """Log in with the strongest method the server and the credentials have in common
    (OAUTHBEARER, XOAUTH2, AUTHENTICATE PLAIN, LOGIN); record the finding; True on OK.

    ``extensions``: capabilities worth listing from what the server announces after login.
    """
    ctx_creds = ctx.options.credentials
    token, password = ctx_creds.token(), ctx_creds.password()
    caps = session.capabilities
    mechanisms = [c[5:] for c in caps if c.startswith("AUTH=")]
    t0 = time.monotonic()
    challenges: tuple[str, ...] = ()
    start = sasl_start(
        mechanisms, user=user, token=token, password=password, host=ep.host, port=ep.port
    )
    if start is not None:
        method = f"AUTHENTICATE {start.mechanism}"
        response, challenges = await session.authenticate(
            start.mechanism, start.initial, abort=start.abort
        )
    elif password is not None and "LOGINDISABLED" not in caps:
        method = "LOGIN"
        response = await session.login(user, password)
    else:
        wanted = "XOAUTH2 or OAUTHBEARER" if password is None else "PLAIN or LOGIN"
        step.add(f.no_mechanism(
            detail=f"the server offers {', '.join(mechanisms) or 'no mechanism'}"
            f"{' and LOGINDISABLED' if 'LOGINDISABLED' in caps else ''}; rca needs {wanted}",
            evidence={"auth_mechanisms": mechanisms},
        ))  # fmt: skip
        return False
    elapsed = round((time.monotonic() - t0) * 1000, 1)
    evidence: dict[str, Json] = {
        "method": method, "user": user, "elapsed_ms": elapsed,
        "reply": response.line[:500], "code": response.code,
    }  # fmt: skip
    if challenges:
        evidence["server_challenges"] = list(challenges)
    if response.ok:
        # Servers announce more after login (RFC 9051 7.2.2): IDLE, CONDSTORE, QRESYNC...
        after = session.capabilities
        found = [e for e in extensions if e in after]
        evidence["capabilities_after_login"] = list(after)
        evidence["extensions"] = found
        for name in ("IDLE", "CONDSTORE", "QRESYNC"):
            evidence[name.lower()] = name in after
        step.add(f.login_ok(
            detail=f"{method} as {user} in {elapsed} ms; extensions after login: "
            f"{', '.join(found) or 'none of note'}",
            evidence=evidence,
        ))  # fmt: skip
        return True
    kind = classify_refusal(response.code, response.text)
    step.add(refusal_finding(
        f, kind, detail=f"{method} as {user}: {response.line[:400]}",
        evidence={k: str(v) for k, v in evidence.items()},
    ))  # fmt: skip
    return False
