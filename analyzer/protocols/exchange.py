"""What the Exchange HTTP probes (EWS, ActiveSync, Outlook Anywhere, MAPI over HTTP) share.

- :func:`service_url`: the URL to test and where it came from: the user's option
  (``--ews-url``), Autodiscover (:data:`~analyzer.core.facts.AUTODISCOVER_SETTINGS`), or, only
  when neither gave one, the conventional path on ``mail.<domain>`` / ``autodiscover.<domain>``
  (``/EWS/Exchange.asmx``, ``/Microsoft-Server-ActiveSync``...) — reported as a guess, and
  a guess that finds nothing is "not offered", never a failure. ActiveSync's URL is never
  the outlook schema's ``ASUrl`` (the Availability service): it comes from
  ``--activesync-url``, the mobilesync schema, Autodiscover v2, else the conventional path on
  the EWS host (a guess), each named as the source.
- :class:`HttpSession`: one httpx client per endpoint, TLS verified with the run's trust;
  when the certificate is rejected the unauthenticated steps still run over an unverified
  session, and credentials are withheld unless ``--insecure`` (then a loud warning).
- :func:`anonymous`: the unauthenticated request ExRCA makes first: which methods the 401
  offers, or an anonymous 200.
- :func:`choose_scheme`: the authentication to use with the methods offered and the
  credentials given (Bearer for a token; NTLM, else Basic, for a password). Credentials go
  only to a host the credential policy allows (:mod:`analyzer.core.credpolicy`: every
  :class:`ServiceUrl` carries its verdict) and only after a 401 offering the method: an
  endpoint that answers without a challenge gets no credentials.
- :class:`HttpFindings` / :func:`http_findings`: the codes every one of these probes has,
  one set per probe (``ews.auth.rejected``, ``activesync.auth.rejected``...).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

from analyzer.core.credpolicy import Provenance, Verdict, judge_for, trust_flag
from analyzer.core.errors import (
    ConnectionRefused,
    NetError,
    NetTimeout,
    ProtocolViolation,
    TlsFailure,
    Unreachable,
)
from analyzer.core.facts import AUTODISCOVER_SETTINGS, AutodiscoverSettings
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.protocols.endpoints import resolve_host
from analyzer.protocols.http import BoundedResponse, make_client, preopen
from analyzer.protocols.httpauth import (
    AuthError,
    AuthScheme,
    InsecureUrl,
    MissingSecret,
    NoChallenge,
    NtlmFailed,
    parse_www_authenticate,
    send_authenticated,
    send_recorded,
)
from analyzer.protocols.login import is_certificate_error
from analyzer.protocols.tlsprobe import insecure_context

if TYPE_CHECKING:
    import httpx

    from analyzer.core.context import Credentials
    from analyzer.core.probe import ProbeContext, ResultRecorder, StepRecorder
    from analyzer.core.targets import Target

__all__ = [
    "HttpFindings",
    "Kind",
    "HttpSession",
    "Prepared",
    "SOURCES",
    "ServiceUrl",
    "Source",
    "anonymous",
    "choose_scheme",
    "http_findings",
    "judge_status",
    "prepare",
    "service_url",
    "session_tls",
]

Kind = Literal["ews", "eas", "rpc", "mapi_emsmdb", "mapi_nspi"]

Source = Literal["option", "autodiscover", "mobilesync", "autodiscover_v2", "conventional"]
#: Where a URL came from, as reports say it.
SOURCES: dict[str, str] = {
    "option": "given on the command line",
    "autodiscover": "from Autodiscover",
    "mobilesync": "from Autodiscover's mobilesync (ActiveSync) schema",
    "autodiscover_v2": "from Autodiscover v2 (Protocol=ActiveSync)",
    "conventional": "the conventional URL: Autodiscover gave none",
}
#: AutodiscoverSettings.eas_source → the source the ActiveSync check names.
_EAS_SOURCES: dict[str, Source] = {"mobilesync": "mobilesync", "v2": "autodiscover_v2"}
#: The conventional paths (Exchange's default virtual directories).
CONVENTIONAL_PATHS: dict[str, str] = {
    "ews": "/EWS/Exchange.asmx",
    "eas": "/Microsoft-Server-ActiveSync",
    "rpc": "/rpc/rpcproxy.dll",
    "mapi_emsmdb": "/mapi/emsmdb/",
    "mapi_nspi": "/mapi/nspi/",
}
#: The most a response of these endpoints may be (a GetFolder answer is a few KB).
MAX_RESPONSE = 1024 * 1024


# --- where ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceUrl:
    """The URL to test and where it came from (:data:`SOURCES`)."""

    url: str
    source: Source
    #: For a guess, which host it was made on when not the usual ones ("the EWS host").
    guess_host: str = ""
    #: The credential policy's verdict on the URL's host (None: not judged, withheld).
    verdict: Verdict | None = None

    @property
    def host(self) -> str:
        """The URL's host name."""
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def guessed(self) -> bool:
        """True for the conventional fallback."""
        return self.source == "conventional"


def autodiscover(ctx: ProbeContext) -> AutodiscoverSettings | None:
    """What Autodiscover published, if it answered."""
    settings: AutodiscoverSettings | None = ctx.fact_or(AUTODISCOVER_SETTINGS)
    return settings


async def conventional_host(ctx: ProbeContext, target: Target) -> str | None:
    """``mail.<domain>`` or ``autodiscover.<domain>`` (the first that resolves), the target
    host itself for a host target; None when none exists."""
    if target.kind in ("host", "url"):
        return target.domain
    for host in (f"mail.{target.domain}", f"autodiscover.{target.domain}"):
        addrs = await resolve_host(ctx.run, host)
        if addrs.addresses_for(ctx.options.families):
            return host
    return None


async def service_url(ctx: ProbeContext, target: Target, kind: Kind) -> ServiceUrl | None:
    """The URL of ``kind`` to test (see the module docstring), or None."""
    option = {"ews": ctx.options.ews_url, "eas": ctx.options.activesync_url}.get(kind)
    flag = {"ews": "--ews-url", "eas": "--activesync-url"}.get(kind, "")
    if option:
        named = Provenance(source=f"{flag} on the command line", vouched=True)
        return ServiceUrl(url=option, source="option",
                          verdict=judge_for(ctx, target, _host(option), named))  # fmt: skip
    settings = autodiscover(ctx)
    if kind == "eas":
        return await _activesync_url(ctx, target, settings)
    if settings is not None:
        found = {
            "ews": settings.ews_url,
            "mapi_emsmdb": settings.mapi_mailstore_url,
            "mapi_nspi": settings.mapi_addressbook_url,
            "rpc": next((f"https://{oa.server}{CONVENTIONAL_PATHS['rpc']}"
                         for oa in settings.outlook_anywhere if oa.server and not oa.internal),
                        ""),  # fmt: skip
        }[kind]
        if found:
            return ServiceUrl(url=found, source="autodiscover",
                              verdict=judge_for(ctx, target, _host(found),
                                                _answer(settings)))  # fmt: skip
    return await _conventional(ctx, target, kind)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _answer(settings: AutodiscoverSettings) -> Provenance:
    """The provenance of a host that an Autodiscover answer named (or that a guess took from
    it): as trusted as the answer itself (:mod:`analyzer.core.credpolicy`)."""
    return Provenance(source=f"the Autodiscover answer of {settings.source_url[:200]}",
                      vouched=settings.vouched, why=settings.unvouched_reason)


async def _activesync_url(
    ctx: ProbeContext, target: Target, settings: AutodiscoverSettings | None
) -> ServiceUrl | None:
    """ActiveSync after ``--activesync-url`` (checked by the caller): the mobilesync or v2
    answer, else the conventional path on the EWS host (a guess), else on the usual hosts."""
    if settings is not None and settings.eas_url:
        source = _EAS_SOURCES.get(settings.eas_source, "autodiscover")
        return ServiceUrl(url=settings.eas_url, source=source,
                          verdict=judge_for(ctx, target, _host(settings.eas_url),
                                            _answer(settings)))  # fmt: skip
    if settings is not None and settings.ews_url:
        parts = urlsplit(settings.ews_url)
        if parts.scheme == "https" and parts.hostname:
            return ServiceUrl(url=f"https://{parts.netloc}{CONVENTIONAL_PATHS['eas']}",
                              source="conventional", guess_host="the EWS host",
                              verdict=judge_for(ctx, target, parts.hostname.lower(),
                                                _answer(settings)))  # fmt: skip
    return await _conventional(ctx, target, "eas")


async def _conventional(ctx: ProbeContext, target: Target, kind: Kind) -> ServiceUrl | None:
    """The conventional URL of ``kind`` on the usual hosts of the domain, or None."""
    host = await conventional_host(ctx, target)
    if host is None:
        return None
    guess = Provenance(source="the conventional name", vouched=target.kind in ("host", "url"))
    return ServiceUrl(url=f"https://{host}{CONVENTIONAL_PATHS[kind]}", source="conventional",
                      verdict=judge_for(ctx, target, host, guess))  # fmt: skip


def describe_source(url: ServiceUrl) -> str:
    """Where the URL came from, for step titles and findings."""
    if url.guessed and url.guess_host:
        return f"a guess: the conventional path on {url.guess_host}, Autodiscover gave none"
    return SOURCES[url.source]


# --- findings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpFindings:
    """The codes every Exchange HTTP probe has, for one probe."""

    endpoint: FindingSpec
    not_offered: FindingSpec
    endpoint_missing: FindingSpec
    unreachable: FindingSpec
    protocol_error: FindingSpec
    timeout: FindingSpec
    tls_untrusted: FindingSpec
    tls_insecure: FindingSpec
    methods: FindingSpec
    anonymous: FindingSpec
    no_method: FindingSpec
    no_challenge: FindingSpec
    login_skipped: FindingSpec
    login_withheld: FindingSpec
    auth_rejected: FindingSpec
    auth_broken: FindingSpec
    forbidden: FindingSpec
    throttled: FindingSpec
    redirected: FindingSpec
    server_error: FindingSpec

    def all(self) -> tuple[FindingSpec, ...]:
        """Every spec, for the probe's ``findings``."""
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)


def http_findings(prefix: str, name: str, *, enable_for_user: str, reference: str) -> HttpFindings:
    """The codes ``<prefix>.auth.rejected``... for the HTTP service ``name``."""

    def spec(code: str, status: Status, title: str, meaning: str, remediation: str = "",
             ref: str = "") -> FindingSpec:  # fmt: skip
        return FindingSpec(code=f"{prefix}.{code}", status=status, title=title,
                           meaning=meaning, remediation=remediation, reference=ref)  # fmt: skip

    return HttpFindings(
        endpoint=spec(
            "endpoint", Status.PASS, f"{name} endpoint", f"Where the {name} URL came from: "
            "the command line, Autodiscover (for ActiveSync: its mobilesync schema or v2), or "
            "the conventional path when Autodiscover gave none, a guess (the detail and the "
            "evidence's source say which).",
        ),
        not_offered=spec(
            "not_offered", Status.SKIP, f"No {name} endpoint found",
            f"Autodiscover gave no {name} URL and nothing answers at the conventional one: the "
            f"domain does not seem to offer {name} (not an Exchange domain?).",
            f"If {name} should be offered, publish it in Autodiscover; or give its URL.",
        ),
        endpoint_missing=spec(
            "endpoint_missing", Status.FAIL, f"The {name} URL does not exist (404)",
            f"The server answers, but not at this path: the {name} virtual directory is "
            "missing, or a reverse proxy does not publish it.",
            "Check the virtual directory on the server (Exchange: Get-*VirtualDirectory) and "
            "the reverse proxy's published paths.",
            reference,
        ),
        unreachable=spec(
            "unreachable", Status.FAIL, f"No connection to the {name} server",
            "No address of the host accepted an HTTPS connection.",
            "Check that the web server runs and that firewalls allow port 443.",
        ),
        protocol_error=spec(
            "protocol_error", Status.FAIL, f"The {name} server broke the protocol",
            "The answer is not what the protocol allows, or far more of it than a client "
            "accepts (an endless or oversized response, garbage instead of HTTP).",
            "Check what answers on this URL (a proxy or filter in between?).",
            reference,
        ),
        timeout=spec(
            "timeout", Status.INCONCLUSIVE, f"The {name} server did not answer in time",
            "The request was sent but no complete answer came before the timeout; the step "
            "could not be judged.",
            "Retry; check the server's load and the path to it.",
        ),
        tls_untrusted=spec(
            "tls.untrusted", Status.FAIL, "Certificate not trusted: credentials not sent",
            "The certificate failed verification (the TLS check says why), so rca did not send "
            "the credentials; Outlook and phones warn or refuse here.",
            "Fix the certificate; to test the login anyway, run with --insecure.",
        ),
        tls_insecure=spec(
            "tls.insecure", Status.WARN,
            "Credentials sent over TLS that failed verification (--insecure)",
            "You ran rca with --insecure: the login was tested although the certificate failed.",
            "Fix the certificate; run without --insecure to verify.",
        ),
        methods=spec(
            "auth.methods", Status.PASS, "Authentication methods offered",
            f"The unauthenticated request got 401 listing the methods {name} accepts "
            "(WWW-Authenticate), in the server's order.",
        ),
        anonymous=spec(
            "anonymous", Status.WARN, f"{name} answered without authentication",
            f"The request without credentials was answered 200: {name} (or what answers in "
            "its place) is open to anyone, or a front end answers before authenticating.",
            "Require authentication on the virtual directory (Exchange: -BasicAuthentication / "
            "-WindowsAuthentication; anonymous off).",
        ),
        no_method=spec(
            "auth.no_method", Status.FAIL, "No authentication method in common",
            "The methods the server offers cannot be used with the credentials given (for "
            "example Kerberos-only Negotiate, or Bearer without a token).",
            "Offer NTLM or Basic (over TLS) for password clients, or Bearer (OAuth) with a token.",
        ),
        no_challenge=spec(
            "auth.no_challenge", Status.WARN, "No authentication challenge: credentials not sent",
            f"The request without credentials was not answered 401 with a WWW-Authenticate "
            f"header offering a method rca can use, so nothing says this endpoint wants the "
            f"password: rca sends Basic only after a challenge offering Basic (NTLM, Negotiate "
            f"and Bearer likewise). A real {name} server asks for credentials; what answers "
            "here (a proxy, a captive portal, another application) would receive them.",
            f"Check what answers at this URL; {name} should answer 401 with the methods it "
            "accepts.",
        ),
        login_skipped=spec(
            "login.skipped", Status.SKIP, "Login not tested: no credentials",
            "No password or OAuth2 token was given, so only the unauthenticated steps ran.",
            "Give --password-file (or RCA_PASSWORD) or --oauth-token-file.",
        ),
        login_withheld=spec(
            "login.withheld", Status.WARN,
            "Login withheld: the credential policy does not trust this host",
            f"The {name} URL's host is outside the e-mail domain, and what named it (an "
            "Autodiscover answer given without authentication by a host outside the domain, "
            "or over a certificate that failed) could have been written by anyone who can "
            "answer that look-up. rca ran every step that needs no credentials and did not "
            "send them; the detail names the host, the source and the flag that allows it "
            "(docs/security.md).",
            "If the host is expected (a hosting provider), run again with the --trust-redirect "
            "flag the detail names; otherwise serve Autodiscover from the domain's own hosts "
            "with authentication.",
        ),
        auth_rejected=spec(
            "auth.rejected", Status.FAIL, f"{name} refused the credentials",
            f"The authenticated request was answered 401: a wrong password or user name, or "
            f"{name} is disabled for this mailbox even though the password is right.",
            enable_for_user,
        ),
        auth_broken=spec(
            "auth.broken", Status.FAIL, "The authentication handshake broke",
            "The NTLM handshake did not complete: no challenge, an unreadable challenge, or "
            "the connection closed between its legs (a load balancer without keep-alive or "
            "affinity).",
            "Check keep-alive and connection affinity on the load balancer or proxy in front.",
        ),
        forbidden=spec(
            "forbidden", Status.FAIL, f"{name} refused access (403)",
            f"The credentials were accepted but {name} refused this user or device (protocol "
            "disabled for the mailbox, a device access rule, or an SSL/client-certificate "
            "requirement on the virtual directory).",
            enable_for_user,
        ),
        throttled=spec(
            "throttled", Status.INCONCLUSIVE, f"{name} is busy or throttling",
            "The server answered 503 or 429: it is overloaded, throttling this user, or a "
            "backend is down; the login could not be judged.",
            "Retry later; check throttling policies and the server's health.",
        ),
        redirected=spec(
            "redirected", Status.WARN, "Unexpected redirect",
            "The endpoint answered with a redirect; Outlook and ActiveSync do not follow "
            "redirects on these URLs (rca does not either).",
            "Publish the final URL in Autodiscover instead of redirecting.",
        ),
        server_error=spec(
            "server_error", Status.FAIL, f"{name} failed with a server error",
            "The server answered 5xx: the application behind the URL failed.",
            "Check the server's application log at the time of the test.",
        ),
    )


def net_finding(f: HttpFindings, exc: NetError, url: ServiceUrl) -> Finding:
    """The finding for a network failure on ``url`` (a guess that finds nothing is a skip)."""
    evidence: dict[str, Json] = {"url": url.url, "phase": exc.phase}
    if url.guessed and isinstance(exc, ConnectionRefused | Unreachable | NetTimeout):
        return f.not_offered(detail=f"{url.url}: {exc}", evidence=evidence)
    if isinstance(exc, ProtocolViolation):
        return f.protocol_error(detail=str(exc), evidence=evidence)
    if isinstance(exc, NetTimeout):
        return f.timeout(detail=str(exc), evidence=evidence)
    if isinstance(exc, TlsFailure):
        return f.protocol_error(title="The TLS handshake failed", detail=str(exc),
                                evidence=evidence)  # fmt: skip
    return f.unreachable(detail=str(exc), evidence=evidence)


#: Statuses saying the path does not take the protocol's method: nginx answers 405 and Apache
#: 501 to a POST or RPC_IN_DATA on a path that is no application. On a guessed URL, no such
#: service is there (as with 404); on a published one, something else answers.
_METHOD_REFUSED: Final = (405, 501)


def judge_status(f: HttpFindings, response: BoundedResponse, url: ServiceUrl) -> Finding | None:
    """The finding for an HTTP status that ends the check (None: 2xx, go on)."""
    status = response.status
    evidence: dict[str, Json] = {"url": url.url, "status": status}
    server = response.header("server")
    if server:
        evidence["server"] = server[:200]
    if 200 <= status < 300:
        return None
    if status == 401:
        offered = list(parse_www_authenticate(response))
        evidence["offered"] = offered
        return f.auth_rejected(detail=f"HTTP 401 after authenticating; the server offers "
                               f"{', '.join(offered) or 'nothing'}", evidence=evidence)  # fmt: skip
    if status == 403:
        return f.forbidden(detail=f"HTTP 403 {_snippet(response)}", evidence=evidence)
    if url.guessed and (status == 404 or status in _METHOD_REFUSED):
        return f.not_offered(detail=f"{url.url} answers {status}", evidence=evidence)
    if status == 404:
        return f.endpoint_missing(detail=f"{url.url} answers 404", evidence=evidence)
    if status in (429, 503):
        retry = response.header("retry-after")
        if retry:
            evidence["retry_after"] = retry[:50]
        return f.throttled(detail=f"HTTP {status} {_snippet(response)}", evidence=evidence)
    if status in (301, 302, 303, 307, 308):
        evidence["location"] = (response.header("location") or "")[:300]
        return f.redirected(detail=f"HTTP {status} to {evidence['location']}", evidence=evidence)
    if status >= 500:
        return f.server_error(detail=f"HTTP {status} {_snippet(response)}", evidence=evidence)
    return f.protocol_error(title=f"Unexpected HTTP {status}",
                            detail=f"HTTP {status} {_snippet(response)}", evidence=evidence)


def _snippet(response: BoundedResponse) -> str:
    text = response.body[:300].decode("utf-8", "replace").strip()
    return " ".join(text.split())[:200]


# --- sessions ------------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class HttpSession:
    """An httpx client for one endpoint and whether its certificate verified."""

    client: httpx.AsyncClient
    verified: bool
    reason: str = ""


#: Loggers of the HTTP stack: httpcore logs response headers at DEBUG, and a server may
#: echo credentials there (see :class:`_RedactingFilter`).
_HTTP_LOGGERS = (
    "httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2",
    "httpcore.proxy",
)  # fmt: skip


class _RedactingFilter(logging.Filter):
    """Replaces the run's secrets in log records of the HTTP stack (a logger's filters do
    not apply to its children, hence one per logger name)."""

    def __init__(self, creds: Credentials) -> None:
        super().__init__()
        self.creds = creds

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.creds.redact(text)
        if clean != text:
            record.msg, record.args = clean, ()
        return True


def session_tls(ctx: ProbeContext, *, verified: bool) -> ssl.SSLContext:
    """The TLS context of a session: the run's trust, or (``verified`` False, only after a
    certificate was rejected and the user gave ``--insecure``) no verification."""
    return ctx.run.ssl_context() if verified else insecure_context()


@contextlib.asynccontextmanager
async def open_session(
    ctx: ProbeContext, verify: bool = True
) -> AsyncIterator[HttpSession]:
    """An HTTP session with :func:`session_tls`'s context for ``verify``."""
    context = session_tls(ctx, verified=verify)
    creds = ctx.options.credentials
    redacting = _RedactingFilter(creds)
    # Always: besides the secrets, a logged URL's userinfo is hidden.
    loggers = [logging.getLogger(name) for name in _HTTP_LOGGERS]
    for logger in loggers:
        logger.addFilter(redacting)
    try:
        async with make_client(ctx.run, verify=context, timeout=ctx.op_timeout()) as client:
            yield HttpSession(client=client, verified=verify)
    finally:
        for logger in loggers:
            logger.removeFilter(redacting)


async def anonymous(
    ctx: ProbeContext, step: StepRecorder, session: HttpSession, method: str, url: str, *,
    headers: dict[str, str] | None = None, content: bytes | None = None,
) -> BoundedResponse:  # fmt: skip
    """The request without credentials, recorded in ``step``."""
    return await send_recorded(
        session.client, method, url, headers=headers, content=content, max_bytes=MAX_RESPONSE,
        timeout=ctx.op_timeout(), transcript=step,
    )  # fmt: skip


def certificate_rejected(exc: NetError) -> str | None:
    """The verification error's words, when ``exc`` is a rejected certificate.

    httpx wraps the ssl error in its own ConnectError, which is not always kept as the
    cause; its message still carries OpenSSL's words.
    """
    found = is_certificate_error(exc)
    if found is not None:
        return found
    text = str(exc)
    marker = "certificate verify failed:"
    if marker in text:
        return text.split(marker, 1)[1].split("(_ssl.c", 1)[0].strip(" )")
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verify failed"
    return None


def choose_scheme(
    ctx: ProbeContext, offered: Sequence[str], *, prefer: str = ""
) -> AuthScheme | None:
    """The scheme to log in with: Bearer for a token, else NTLM (also inside Negotiate),
    else Basic for a password; ``prefer`` (Autodiscover's AuthPackage) first if usable."""
    creds = ctx.options.credentials
    lowered = {m.lower() for m in offered}
    usable: list[AuthScheme] = []
    if creds.token() is not None and "bearer" in lowered:
        usable.append("bearer")
    if creds.password() is not None:
        if "ntlm" in lowered:
            usable.append("ntlm")
        elif "negotiate" in lowered:
            usable.append("negotiate")
        if "basic" in lowered:
            usable.append("basic")
    wanted = {"ntlm": "ntlm", "negotiate": "negotiate", "basic": "basic"}.get(prefer.lower())
    if wanted is not None:
        for scheme in usable:
            if scheme == wanted or (wanted == "ntlm" and scheme == "negotiate"):
                return scheme
    return usable[0] if usable else None


async def authenticated(
    ctx: ProbeContext, step: StepRecorder, session: HttpSession, method: str, url: str, *,
    scheme: AuthScheme, offered: Sequence[str], headers: dict[str, str] | None = None,
    content: bytes | None = None, max_bytes: int = MAX_RESPONSE, more: int = 0,
) -> BoundedResponse:  # fmt: skip
    """The request with the user's credentials (every NTLM leg recorded in ``step``);
    ``more``: how many authenticated requests to the same origin follow, at once (see
    :func:`~analyzer.protocols.httpauth.send_authenticated`)."""
    return await send_authenticated(
        session.client, method, url, creds=ctx.options.credentials, scheme=scheme,
        headers=headers, content=content, offered=tuple(offered), max_bytes=max_bytes,
        timeout=ctx.op_timeout() * (3 if scheme in ("ntlm", "negotiate") else 1),
        transcript=step, more=more,
    )  # fmt: skip


async def ask(
    ctx: ProbeContext, step: StepRecorder, prepared: Prepared, f: HttpFindings, method: str,
    url: ServiceUrl, *, target: str | None = None, headers: dict[str, str] | None = None,
    content: bytes | None = None, more: int = 0,
) -> BoundedResponse | None:  # fmt: skip
    """One authenticated request of an Exchange probe on ``prepared``'s session, to ``target``
    (default: ``url``'s own URL; a command's query string, for instance); None when the
    credentials could not be presented or the network failed, which ``step`` then says with
    ``f``'s findings about ``url`` (the HTTP status is the caller's to judge:
    :func:`judge_status`). ``more``: how many requests of the probe to the same origin
    follow at once if this one succeeds (their NTLM connections open meanwhile)."""
    assert prepared.scheme is not None  # noqa: S101 - prepare() chose a scheme
    try:
        return await authenticated(
            ctx, step, prepared.session, method, target or url.url, scheme=prepared.scheme,
            offered=prepared.offered, headers=headers, content=content, more=more,
        )  # fmt: skip
    except AuthError as exc:
        step.add(auth_error_finding(f, exc))
    except NetError as exc:
        step.add(net_finding(f, exc, url))
    return None


def auth_error_finding(f: HttpFindings, exc: AuthError) -> Finding:
    """The finding for credentials that could not be presented."""
    if isinstance(exc, NtlmFailed):
        return f.auth_broken(detail=str(exc))
    if isinstance(exc, InsecureUrl):
        return f.tls_untrusted(title="Not an https URL: credentials not sent", detail=str(exc))
    if isinstance(exc, NoChallenge):
        return f.no_challenge(detail=str(exc))
    if isinstance(exc, MissingSecret):
        return f.login_skipped(detail=str(exc))
    return f.auth_broken(detail=str(exc))


# --- the common opening -------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Prepared:
    """An endpoint ready for the authenticated steps: ``scheme`` None means the login is
    not to be tried (a step already says why)."""

    url: ServiceUrl
    session: HttpSession
    offered: tuple[str, ...] = ()
    scheme: AuthScheme | None = None
    anonymous_response: BoundedResponse | None = None


@contextlib.asynccontextmanager
async def prepare(
    ctx: ProbeContext, res: ResultRecorder, f: HttpFindings, url: ServiceUrl, name: str, *,
    method: str = "POST", headers: dict[str, str] | None = None, content: bytes | None = None,
    prefer: str = "",
    login_over_session: bool = True,
) -> AsyncIterator[Prepared | None]:  # fmt: skip
    """The URL step, the unauthenticated request, the credential gate and the choice of
    scheme, each a step of ``res``. Yields None when nothing more can be done, else the
    endpoint (with ``scheme`` None when the login is not to be tried).
    ``login_over_session``: the login goes through the session's client (:func:`ask`), so
    its first NTLM connection opens beside the unauthenticated request; False for a probe
    that logs in over connections of its own making."""
    with res.step(f"{name} URL ({describe_source(url)})") as step:
        step.add(f.endpoint(detail=f"{url.url} ({describe_source(url)})",
                            evidence={"url": url.url, "source": url.source}))  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(open_session(ctx))
        if login_over_session and _may_log_in(ctx, url):
            # The login follows if the answer asks for it; NTLM's connection of its own
            # opens meanwhile (closed with the session if no handshake takes it).
            preopen(session.client, url.url)
        with res.step(f"Unauthenticated {method} {url.url}") as step:
            response, session = await _anonymous_step(
                ctx, stack, step, f, session, url, method, headers, content
            )
        if response is None:
            yield None
            return
        prepared = Prepared(url=url, session=session, anonymous_response=response,
                            offered=parse_www_authenticate(response))  # fmt: skip
        with res.step("Credentials") as step:
            prepared.scheme = _gate(ctx, step, f, prepared, prefer)
        yield prepared


async def _anonymous_step(
    ctx: ProbeContext, stack: contextlib.AsyncExitStack, step: StepRecorder, f: HttpFindings,
    session: HttpSession, url: ServiceUrl, method: str, headers: dict[str, str] | None,
    content: bytes | None,
) -> tuple[BoundedResponse | None, HttpSession]:  # fmt: skip
    try:
        response = await anonymous(ctx, step, session, method, url.url, headers=headers,
                                   content=content)  # fmt: skip
    except NetError as exc:
        reason = certificate_rejected(exc)
        if reason is None:
            step.add(net_finding(f, exc, url))
            return None, session
        if not ctx.options.insecure:
            # The certificate is the TLS check's to diagnose; nothing is asked over a
            # connection whose certificate failed.
            step.add(f.tls_untrusted(
                detail=f"certificate verification failed: {reason}; nothing more was tested "
                "at this URL", evidence={"url": url.url},
            ))  # fmt: skip
            return None, session
        step.note(f"certificate rejected ({reason}); --insecure: asking again without "
                  "verification")
        session = await stack.enter_async_context(open_session(ctx, verify=False))
        session.reason = f"certificate verification failed: {reason}"
        try:
            response = await anonymous(ctx, step, session, method, url.url, headers=headers,
                                       content=content)  # fmt: skip
        except NetError as again:
            step.add(net_finding(f, again, url))
            return None, session
    offered = parse_www_authenticate(response)
    if response.status == 401:
        step.add(f.methods(detail=", ".join(offered) or "(none listed)",
                           evidence={"offered": list(offered), "url": url.url}))  # fmt: skip
    elif 200 <= response.status < 300:
        step.add(f.anonymous(detail=f"HTTP {response.status} without credentials",
                             evidence={"url": url.url, "status": response.status}))  # fmt: skip
    else:
        ended = judge_status(f, response, url)
        # Some endpoints answer a bare request with 4xx/500 before asking for credentials;
        # only statuses that say "nothing to log in to here" end the check.
        if ended is not None and (
            response.status in (301, 302, 303, 307, 308, 403, 404, 429, 502, 503, 504)
            or (url.guessed and response.status in _METHOD_REFUSED)
        ):
            step.add(ended)
            return None, session
        step.note(f"HTTP {response.status} without credentials")
    return response, session


def _may_log_in(ctx: ProbeContext, url: ServiceUrl) -> bool:
    """True when the user's password may go to ``url`` (what :func:`_gate` knows before the
    server has answered): never open a connection for a login the policy forbids."""
    creds = ctx.options.credentials
    verdict = url.verdict
    return (
        creds.password() is not None and bool(creds.username)
        and verdict is not None and verdict.allowed
    )  # fmt: skip


def _gate(
    ctx: ProbeContext, step: StepRecorder, f: HttpFindings, prepared: Prepared, prefer: str
) -> AuthScheme | None:
    creds = ctx.options.credentials
    if not creds.has_secret or not creds.username:
        detail = "no password or token was given" if creds.username else "no login name"
        step.add(f.login_skipped(detail=detail))
        return None
    verdict = prepared.url.verdict
    if verdict is None or not verdict.allowed:
        if verdict is None:
            verdict = Verdict(allowed=False, host=prepared.url.host, source=prepared.url.source,
                              reason="the URL's origin was not judged",
                              flag=trust_flag(prepared.url.host))
        step.add(f.login_withheld(detail=verdict.detail(), evidence=dict(verdict.evidence())))
        return None
    session = prepared.session
    if not session.verified:
        if not ctx.options.insecure:  # a second guard: only --insecure opens one
            step.add(f.tls_untrusted(detail=session.reason))
            return None
        step.add(f.tls_insecure(detail=session.reason))
    response = prepared.anonymous_response
    if response is not None and response.status == 401:
        scheme = choose_scheme(ctx, prepared.offered, prefer=prefer)
        if scheme is None:
            secret = "a token" if creds.token() and not creds.password() else "a password"
            offered = ", ".join(prepared.offered) or "no method"
            step.add(f.no_method(detail=f"the server offers {offered}; rca has {secret}",
                                 evidence={"offered": list(prepared.offered)}))  # fmt: skip
            return None
    else:
        # Basic only after a challenge offering Basic (and every method likewise): what
        # answers without asking has not asked for the password.
        status = response.status if response is not None else "no answer"
        step.add(f.no_challenge(
            detail=f"HTTP {status} without credentials, no WWW-Authenticate challenge: the "
            "credentials were not sent", evidence={"url": prepared.url.url, "status": status},
        ))  # fmt: skip
        return None
    step.note(f"logging in as {creds.username} with {scheme}")
    return scheme
