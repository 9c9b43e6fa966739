"""EWS: prove Exchange Web Services answers for the mailbox, as Outlook for Mac and EWS
clients use it, then read its free/busy and out-of-office settings, as ExRCA's EWS tests do.

The URL comes from ``--ews-url``, else Autodiscover's ``EwsUrl``, else (reported as a
guess) ``https://mail.<domain>/EWS/Exchange.asmx``. Steps: an unauthenticated SOAP POST
(the authentication methods the 401 offers, or an anonymous answer), then ``GetFolder``
of the Inbox with the user's credentials (NTLM, Basic or Bearer); the response class and
code, the folder's counts and the server's version (``ServerVersionInfo``) are reported.

Then two read-only requests for the user's own mailbox, as Outlook's calendar and its
"Automatic Replies" make them: ``GetUserAvailability`` for the next day (UTC) at the
Availability URL (Autodiscover's ``ASUrl``, else the EWS URL) and ``GetUserOofSettings`` at
the OOF URL (``OOFUrl``, else the EWS URL). An error names the EWS ``ResponseCode`` and
what usually causes it. A URL on another host than the EWS URL is its own result, with its
own unauthenticated step. ``--ews-url`` sends all three requests to the URL given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from analyzer.core.facts import AUTODISCOVER_SETTINGS, TLS_VERDICTS
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.core.probe import Probe, ProbeContext, concurrently
from analyzer.protocols.ewsxml import (
    GETFOLDER_INBOX,
    EwsAnswer,
    EwsXmlError,
    Operation,
    get_user_availability,
    get_user_oof_settings,
    parse_answer,
)
from analyzer.protocols.exchange import (
    Prepared,
    ServiceUrl,
    ask,
    autodiscover,
    http_findings,
    judge_status,
    prepare,
    service_url,
)

if TYPE_CHECKING:
    from analyzer.core.facts import AutodiscoverSettings
    from analyzer.core.probe import ResultRecorder, StepRecorder
    from analyzer.core.targets import Target
    from analyzer.protocols.http import BoundedResponse

__all__ = ["PROBE", "MailboxUrl", "judge_getfolder", "judge_mailbox", "mailbox_urls", "remedy"]

_DOCS = "https://learn.microsoft.com/exchange/client-developer/web-service-reference/"
REFERENCE = f"{_DOCS}getfolder-operation"
AVAILABILITY_REFERENCE = f"{_DOCS}getuseravailability-operation"
OOF_REFERENCE = f"{_DOCS}getuseroofsettings-operation"
RESPONSE_CODES = f"{_DOCS}responsecode"

F = http_findings(
    "ews",
    "EWS",
    enable_for_user="Check the password; if it is right, enable EWS for the mailbox "
    "(Set-CASMailbox <user> -EwsEnabled $true; also check -EwsBlockList / EwsAllowList and "
    "the organization's EwsApplicationAccessPolicy).",
    reference=REFERENCE,
)
GETFOLDER_OK = FindingSpec(
    code="ews.getfolder.ok",
    status=Status.PASS,
    title="EWS answered GetFolder for the Inbox",
    meaning="The authenticated SOAP request succeeded (ResponseClass Success, NoError): EWS "
    "works for this mailbox; the evidence has the folder's counts and the server version.",
    reference=REFERENCE,
)
GETFOLDER_ERROR = FindingSpec(
    code="ews.getfolder.error",
    status=Status.FAIL,
    title="EWS refused GetFolder",
    meaning="The login worked, but EWS answered the request with an error response or a "
    "SOAP fault (its ResponseCode says why: ErrorMailboxMoveInProgress, "
    "ErrorMailboxStoreUnavailable, ErrorAccessDenied...).",
    remediation="Look up the ResponseCode in the EWS reference; check the mailbox's database "
    "and its health on the server.",
    reference=RESPONSE_CODES,
)
AVAILABILITY_OK = FindingSpec(
    code="ews.availability.ok",
    status=Status.PASS,
    title="The Availability service answered for the mailbox",
    meaning="GetUserAvailability for the user's own mailbox and the next day succeeded "
    "(ResponseClass Success): Outlook can show free/busy and schedule meetings. The evidence "
    "has the URL used (ASUrl, else the EWS URL), the view and the number of calendar events "
    "(never their subjects).",
    reference=AVAILABILITY_REFERENCE,
)
AVAILABILITY_ERROR = FindingSpec(
    code="ews.availability.error",
    status=Status.FAIL,
    title="The Availability service returned an error",
    meaning="GetUserAvailability for the user's own mailbox failed with an EWS error response "
    "or a SOAP fault; the detail names the ResponseCode. Usual causes: the Availability "
    "service failing on the mailbox server, a certificate on the internal EWS URL that the "
    "proxying server does not trust (ErrorProxyRequestProcessingFailed), an EWS access "
    "restriction (ErrorAccessDenied), or an address Exchange cannot map to a mailbox.",
    remediation="Look up the ResponseCode in the EWS reference; check the Availability "
    "service and the mailbox's server.",
    reference=RESPONSE_CODES,
)
OOF_OK = FindingSpec(
    code="ews.oof.ok",
    status=Status.PASS,
    title="EWS answered GetUserOofSettings",
    meaning="The user's out-of-office settings were read (ResponseClass Success): Outlook's "
    "Automatic Replies work; the evidence has the OOF state and audiences (not the messages).",
    reference=OOF_REFERENCE,
)
OOF_ERROR = FindingSpec(
    code="ews.oof.error",
    status=Status.FAIL,
    title="EWS refused GetUserOofSettings",
    meaning="Reading the user's own out-of-office settings failed with an EWS error response "
    "or a SOAP fault (the detail names the ResponseCode or the fault): Outlook cannot show or "
    "change Automatic Replies.",
    remediation="Look up the ResponseCode in the EWS reference; check the OOF URL Autodiscover "
    "publishes (OOFUrl) and the EWS access settings of the mailbox.",
    reference=RESPONSE_CODES,
)
BUSY = FindingSpec(
    code="ews.server_busy",
    status=Status.INCONCLUSIVE,
    title="EWS is busy or throttling",
    meaning="EWS answered ErrorServerBusy or ErrorTimeoutExpired (as a SOAP fault, with the "
    "BackOffMilliseconds a client must wait): the request could not be judged.",
    remediation="Retry after the back-off; if it persists, check the throttling policy that "
    "applies to the user (Get-ThrottlingPolicy, its EWS* limits) and the server's load.",
    reference="https://learn.microsoft.com/exchange/client-developer/exchange-web-services/"
    "ews-throttling-in-exchange",
)
NOT_SOAP = FindingSpec(
    code="ews.not_soap",
    status=Status.FAIL,
    title="The EWS URL does not answer SOAP",
    meaning="After login the answer was not a SOAP envelope from EWS (a web page, a proxy's "
    "error page, or garbage): something else answers at this URL.",
    remediation="Check the URL and what the reverse proxy publishes there.",
)
FINDINGS = (*F.all(), GETFOLDER_OK, GETFOLDER_ERROR, AVAILABILITY_OK, AVAILABILITY_ERROR,
            OOF_OK, OOF_ERROR, BUSY, NOT_SOAP)  # fmt: skip

HEADERS = {"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml"}

#: EWS ResponseCodes that mean "not now" rather than "broken" (EWS throttling in Exchange).
_BUSY_CODES = frozenset({"ErrorServerBusy", "ErrorTimeoutExpired"})

_MAILBOX = (
    "Exchange could not map the address to a mailbox: check the address (Get-Recipient "
    "<address>) and that it is a mailbox, not a mail user or contact; after a migration, wait "
    "for directory replication."
)
_ACCESS = (
    "For the user's own mailbox this is an EWS access restriction: check Get-CASMailbox <user> "
    "| fl Ews* (EwsEnabled, EwsAllowList/EwsBlockList, EwsApplicationAccessPolicy) and "
    "Get-OrganizationConfig | fl Ews*; for free/busy also the Calendar folder's permissions "
    "(Get-MailboxFolderPermission <user>:\\Calendar)."
)
_PROXY = (
    "The server could not pass the request to the server holding the mailbox: check that "
    "server's EWS InternalUrl (Get-WebServicesVirtualDirectory | fl Server,InternalUrl) and "
    "that its certificate is valid for that name and trusted by the proxying server (a "
    "self-signed or expired certificate on the internal URL is the usual cause); across "
    "forests, check Get-AvailabilityAddressSpace."
)
_FREEBUSY = (
    "Exchange could not read free/busy from the mailbox: check that the mailbox database is "
    "mounted and healthy (Get-MailboxDatabaseCopyStatus), that the EWS application pool "
    "(MSExchangeServicesAppPool) runs on the mailbox server, and the Application event log "
    "(MSExchange Availability) at the time of the test."
)
_STORE = (
    "The mailbox's database is unavailable or the mailbox is being moved: check "
    "Get-MailboxDatabaseCopyStatus and Get-MoveRequest for the user; retry after the move."
)
#: What to do, per EWS ResponseCode (Microsoft's ResponseCode reference says what each means).
REMEDIES: dict[str, str] = {
    "ErrorMailRecipientNotFound": _MAILBOX,
    "ErrorNonExistentMailbox": _MAILBOX,
    "ErrorInvalidSmtpAddress": _MAILBOX,
    "ErrorAccessDenied": _ACCESS,
    "ErrorNoFreeBusyAccess": _ACCESS,
    "ErrorProxyRequestProcessingFailed": _PROXY,
    "ErrorProxyRequestNotAllowed": _PROXY,
    "ErrorServiceDiscoveryFailed": _PROXY,
    "ErrorAutoDiscoverFailed": _PROXY,
    "ErrorFreeBusyGenerationFailed": _FREEBUSY,
    "ErrorMailboxLogonFailed": _FREEBUSY,
    "ErrorAvailabilityConfigNotFound": (
        "The organization's availability configuration is missing from Active Directory: "
        "check Get-AvailabilityConfig; Exchange setup /PrepareAD recreates it."
    ),
    "ErrorMailboxStoreUnavailable": _STORE,
    "ErrorMailboxMoveInProgress": _STORE,
    "ErrorInternalServerError": (
        "EWS failed inside Exchange: check the EWS application pool (MSExchangeServicesAppPool) "
        "and the Application event log at the time of the test."
    ),
}


def remedy(code: str) -> str | None:
    """What to do about EWS ResponseCode ``code`` (None: the finding's general advice)."""
    return REMEDIES.get(code)


# --- where each request goes --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxUrl:
    """Where a mailbox request goes and why there (``field``: ASUrl, OOFUrl, EwsUrl...)."""

    url: ServiceUrl
    field: str


def mailbox_urls(
    settings: AutodiscoverSettings | None, ews: ServiceUrl
) -> tuple[MailboxUrl, MailboxUrl]:
    """The (Availability, OOF) URLs: Autodiscover's ``ASUrl`` / ``OOFUrl``, else the EWS URL
    (always the EWS URL when it was given with ``--ews-url``)."""
    fallback = "EwsUrl" if ews.source == "autodiscover" else "the EWS URL"

    def pick(published: str, field: str) -> MailboxUrl:
        if ews.source != "option" and published:
            return MailboxUrl(url=ServiceUrl(url=published, source="autodiscover"), field=field)
        return MailboxUrl(url=ews, field=fallback)

    if settings is None:
        return pick("", "ASUrl"), pick("", "OOFUrl")
    return pick(settings.availability_url, "ASUrl"), pick(settings.oof_url, "OOFUrl")


def mailbox_address(ctx: ProbeContext, target: Target) -> str | None:
    """The user's own address: Autodiscover's, the target's, or the login name if one."""
    settings = autodiscover(ctx)
    if settings is not None and settings.email:
        return settings.email
    if target.address:
        return target.address
    user = ctx.options.credentials.username
    return user if user and "@" in user else None


# --- the probe ----------------------------------------------------------------------------------


async def run(ctx: ProbeContext, target: Target) -> None:
    """One result for the EWS URL (and one per other host of the Availability/OOF URLs)."""
    url = await service_url(ctx, target, "ews")
    if url is None:
        with ctx.result(target.domain) as res, res.step("Find the EWS URL") as step:
            step.add(F.not_offered(detail="Autodiscover gave no EWS URL and neither "
                                   f"mail.{target.domain} nor autodiscover.{target.domain} "
                                   "exists"))  # fmt: skip
        return
    availability, oof = mailbox_urls(autodiscover(ctx), url)
    address = mailbox_address(ctx, target)
    elsewhere: dict[str, list[tuple[MailboxUrl, Operation]]] = {}
    with ctx.result(url.url) as res:
        async with prepare(ctx, res, F, url, "EWS", method="POST", headers=HEADERS,
                           content=GETFOLDER_INBOX) as prepared:  # fmt: skip
            if prepared is None or prepared.scheme is None:
                return
            user = ctx.options.credentials.username
            # Requests to this URL follow a good GetFolder, at once: their connections (one
            # per NTLM handshake) open meanwhile.
            follows = (
                sum(1 for where in (availability, oof) if where.url.url == url.url)
                if address is not None
                else 0
            )
            with res.step(f"GetFolder (Inbox) as {user} ({prepared.scheme})") as step:
                answer = await _ask(ctx, step, prepared, url, GETFOLDER_INBOX, "GetFolder",
                                    more=follows)  # fmt: skip
                if answer is None:
                    # No EWS answer at all (login refused, an HTTP error, not SOAP): the
                    # other requests would fare no better.
                    return
                step.add(judge_getfolder(answer))
            if address is None:
                with res.step("Free/busy and out-of-office") as step:
                    step.note(
                        "not asked: no mailbox address (the target is a host and the "
                        "login name is not an address)"
                    )
                return
            asks: tuple[tuple[MailboxUrl, Operation], ...] = (
                (availability, "GetUserAvailability"),
                (oof, "GetUserOofSettings"),
            )
            here: list[tuple[MailboxUrl, Operation]] = []
            for where, operation in asks:
                if where.url.url == url.url:
                    here.append((where, operation))
                else:
                    elsewhere.setdefault(where.url.url, []).append((where, operation))
            # GetFolder proved the login: the mailbox requests depend on nothing else, so
            # they go out together (the report lists them in this order).
            await concurrently(
                *(_mailbox_step(ctx, res, prepared, w, op, address) for w, op in here),
                *(_elsewhere(ctx, asked, address) for asked in elsewhere.values()),
            )


async def _elsewhere(
    ctx: ProbeContext, asked: list[tuple[MailboxUrl, Operation]], address: str
) -> None:
    """Mailbox requests at a URL other than the EWS URL: a result and a login of their own."""
    where, first = asked[0]
    name = "Availability service" if first == "GetUserAvailability" else "OOF service"
    with ctx.result(where.url.url) as res:
        async with prepare(ctx, res, F, where.url, name, method="POST", headers=HEADERS,
                           content=_body(ctx, first, address)) as prepared:  # fmt: skip
            if prepared is None or prepared.scheme is None:
                return
            await concurrently(
                *(_mailbox_step(ctx, res, prepared, each, op, address) for each, op in asked)
            )


def _window(ctx: ProbeContext) -> tuple[datetime, datetime]:
    """The next day in UTC (naive), from the run's clock."""
    now = ctx.run.now()
    start = datetime(now.year, now.month, now.day) + timedelta(days=1)
    return start, start + timedelta(days=1)


def _body(ctx: ProbeContext, operation: Operation, address: str) -> bytes:
    if operation == "GetUserAvailability":
        return get_user_availability(address, *_window(ctx))
    if operation == "GetUserOofSettings":
        return get_user_oof_settings(address)
    return GETFOLDER_INBOX


async def _mailbox_step(
    ctx: ProbeContext, res: ResultRecorder, prepared: Prepared, where: MailboxUrl,
    operation: Operation, address: str,
) -> None:  # fmt: skip
    """One GetUserAvailability or GetUserOofSettings step of ``res``."""
    if operation == "GetUserAvailability":
        start, _ = _window(ctx)
        title = f"GetUserAvailability for {address} on {start:%Y-%m-%d} ({where.field})"
    else:
        title = f"GetUserOofSettings for {address} ({where.field})"
    with res.step(title) as step:
        step.note(f"{where.url.url} ({where.field})")
        answer = await _ask(ctx, step, prepared, where.url, _body(ctx, operation, address),
                            operation)  # fmt: skip
        if answer is not None:
            step.add(judge_mailbox(answer, where, address))


async def _ask(
    ctx: ProbeContext, step: StepRecorder, prepared: Prepared, url: ServiceUrl, body: bytes,
    operation: Operation, *, more: int = 0,
) -> EwsAnswer | None:  # fmt: skip
    """The authenticated request (``more``: how many follow at once) and its answer read; None when
    a finding of ``step`` already says why there is none (login refused, network, HTTP
    status, not SOAP)."""
    response = await ask(ctx, step, prepared, F, "POST", url, headers=HEADERS, content=body,
                         more=more)  # fmt: skip
    if response is None:
        return None
    if response.status == 500:
        # EWS sends SOAP faults (throttling, schema errors...) with HTTP 500.
        try:
            answer = parse_answer(response.body, operation)
        except EwsXmlError:
            answer = None
        if answer is not None and answer.fault is not None:
            return answer
    ended = judge_status(F, response, url)
    if ended is not None:
        step.add(ended)
        return None
    try:
        return parse_answer(response.body, operation)
    except EwsXmlError as exc:
        step.add(NOT_SOAP(detail=f"{operation}: {exc}", evidence=_headers(response)))
        return None


def _headers(response: BoundedResponse) -> dict[str, Json]:
    evidence: dict[str, Json] = {"status": response.status}
    for header in ("x-feserver", "x-beserver", "x-owa-version", "x-diaginfo"):
        value = response.header(header)
        if value:
            evidence[header] = value[:200]
    return evidence


def _answer_evidence(answer: EwsAnswer) -> dict[str, Json]:
    evidence: dict[str, Json] = {}
    if answer.server_version:
        evidence["server_version"] = answer.server_version
        evidence["schema_version"] = answer.schema_version
    if answer.fault is not None:
        evidence["fault_code"] = answer.fault.code
        if answer.fault.back_off_ms is not None:
            evidence["back_off_ms"] = answer.fault.back_off_ms
    else:
        evidence["response_class"] = answer.response_class
    evidence["response_code"] = answer.code
    return evidence


def _failure(answer: EwsAnswer, error: FindingSpec, evidence: dict[str, Json]) -> Finding:
    """The finding for an answer that is not a success: busy, or ``error`` with the
    ResponseCode's own advice."""
    if answer.fault is not None:
        named = answer.fault.response_code or answer.fault.code
        detail = f"SOAP fault {named}: {answer.fault.text}"
    else:
        detail = f"{answer.response_class} {answer.response_code}: {answer.message_text}"
    if answer.code in _BUSY_CODES:
        back_off = answer.fault.back_off_ms if answer.fault is not None else None
        wait = f"; back off {back_off} ms" if back_off is not None else ""
        return BUSY(detail=f"{answer.operation}: {detail}{wait}", evidence=evidence)
    return error(detail=detail, evidence=evidence, remediation=remedy(answer.code))


def judge_getfolder(answer: EwsAnswer) -> Finding:
    """The finding for an answer to GetFolder of the Inbox."""
    evidence = _answer_evidence(answer)
    if not answer.ok:
        return _failure(answer, GETFOLDER_ERROR, evidence)
    folder = answer.folder
    if folder is not None:
        evidence["displayname"] = folder.display_name
        for name, value in (("totalcount", folder.total_count),
                            ("unreadcount", folder.unread_count),
                            ("childfoldercount", folder.child_folder_count)):  # fmt: skip
            if value is not None:
                evidence[name] = value
    name = folder.display_name if folder is not None and folder.display_name else "Inbox"
    total = folder.total_count if folder is not None else None
    return GETFOLDER_OK(
        detail=f"{answer.response_code}: {name} holds {'?' if total is None else total} items; "
        f"Exchange {answer.server_version or 'unknown'}",
        evidence=evidence,
    )


def judge_mailbox(answer: EwsAnswer, where: MailboxUrl, address: str) -> Finding:
    """The finding for an answer to GetUserAvailability or GetUserOofSettings."""
    evidence: dict[str, Json] = {"url": where.url.url, "url_from": where.field,
                                 "mailbox": address, **_answer_evidence(answer)}  # fmt: skip
    availability = answer.operation == "GetUserAvailability"
    if not answer.ok:
        return _failure(answer, AVAILABILITY_ERROR if availability else OOF_ERROR, evidence)
    if availability:
        view = answer.free_busy
        if view is not None:
            evidence.update(view_type=view.view_type, merged_free_busy=view.merged,
                            events=view.events, working_hours=view.working_hours)  # fmt: skip
        shown = f"{view.view_type}, {view.events} event(s)" if view else "no free/busy view"
        return AVAILABILITY_OK(detail=f"{answer.response_code}: {shown}", evidence=evidence)
    oof = answer.oof
    if oof is not None:
        evidence.update(oof_state=oof.state, external_audience=oof.external_audience,
                        allow_external_oof=oof.allow_external_oof)  # fmt: skip
    state = f"OOF {oof.state}, external audience {oof.external_audience or '?'}" if oof else (
        "no OofSettings in the answer")  # fmt: skip
    return OOF_OK(detail=f"{answer.response_code}: {state}", evidence=evidence)


PROBE = Probe(
    id="ews",
    title="EWS login, mailbox, free/busy and out-of-office",
    run=run,
    uses=(AUTODISCOVER_SETTINGS, TLS_VERDICTS),
    findings=FINDINGS,
    uses_credentials=True,
    verifies_tls=True,
)
