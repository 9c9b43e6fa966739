"""Mail client autoconfiguration: Thunderbird's autoconfig and RFC 6186/8314 SRV records.

Sources, in Thunderbird's order of priority (each a result of its own):

1. ``https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=<address>``;
2. ``https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml``;
3. the same two over plain http, asked only when both https sources gave nothing (or with
   ``--all-methods``): settings fetched that way are a warning, anyone on the path can
   change them;
4. the ISPDB (``https://live.thunderbird.net/autoconfig/v1.1/<domain>``), a third party:
   only with ``--ispdb``;
5. by MX: the base domain of the most preferred MX host, when it is another domain;
6. RFC 6186/8314 SRV records (``_imap(s)._tcp``, ``_pop3(s)._tcp``, ``_submission(s)._tcp``),
   from the DNS probe's :data:`~analyzer.core.facts.SRV_RECORDS` (looked up here when it did not
   run), ``.`` meaning "not offered".

The last result (subject: the address, or the domain) merges them into
:data:`~analyzer.core.facts.MAIL_SETTINGS` for the login probes (autoconfig first, then SRV, then
Autodiscover's IMAP/POP3/SMTP blocks) and reports contradictions between the sources: an
endpoint one source announces and another says is not offered, or sources naming disjoint
servers for a protocol; the endpoints in dispute are then connected to, so the finding says
which source is right.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urljoin, urlsplit

from analyzer.core.credpolicy import allowed_by_name
from analyzer.core.errors import (
    ConnectionRefused,
    NetError,
    NetTimeout,
    ProtocolViolation,
    TlsFailure,
)
from analyzer.core.facts import (
    AUTODISCOVER_SETTINGS,
    MAIL_SETTINGS,
    MX_HOSTS,
    SRV_RECORDS,
    AutodiscoverSettings,
    MailServerSetting,
    MxHost,
    SrvRecord,
)
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Json, Status
from analyzer.core.probe import (
    Probe,
    ProbeContext,
    ResultRecorder,
    StepRecorder,
    concurrently,
)
from analyzer.protocols.endpoints import resolve_host
from analyzer.protocols.httpauth import send_recorded
from analyzer.protocols.net import probe_connect
from analyzer.protocols.resolve import lookup
from probes.srv import order_srv

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    import httpx

    from analyzer.core.targets import Target

__all__ = [
    "FINDINGS",
    "PROBE",
    "AutoconfigDocument",
    "AutoconfigError",
    "conflicts",
    "parse_autoconfig",
    "srv_settings",
]

THUNDERBIRD = "https://wiki.mozilla.org/Thunderbird:Autoconfiguration"
RFC6186 = "https://www.rfc-editor.org/rfc/rfc6186"
RFC8314 = "https://www.rfc-editor.org/rfc/rfc8314"
ISPDB = "https://live.thunderbird.net/autoconfig/v1.1/"
#: An autoconfig document is a few KB.
MAX_BYTES = 256 * 1024
_MAX_REDIRECTS = 3
_MAX_SERVERS = 20

# --- findings -----------------------------------------------------------------------------------

NOT_FOUND = FindingSpec(
    code="autoconfig.source.not_found",
    status=Status.PASS,
    title="No autoconfig document at this source",
    meaning="The host does not exist, refuses the connection, or answers 404: this source is "
    "not used. Fine as long as another source (or SRV records) describes the servers.",
    reference=THUNDERBIRD,
)
SOURCE_FAILED = FindingSpec(
    code="autoconfig.source.failed",
    status=Status.FAIL,
    title="The autoconfig source answers, but not with a usable document",
    meaning="The host answered with an error status, a broken TLS handshake, a response too "
    "large or too slow; clients fall back to the next source or to guessing.",
    remediation="Fix the web server at this URL, or remove the name if it should not serve "
    "autoconfig.",
    reference=THUNDERBIRD,
)
FOUND = FindingSpec(
    code="autoconfig.config.found",
    status=Status.PASS,
    title="Autoconfig document found",
    meaning="A well-formed clientConfig document describes the incoming and outgoing servers; "
    "the evidence lists them.",
    reference=THUNDERBIRD,
)
INSECURE_TRANSPORT = FindingSpec(
    code="autoconfig.config.insecure_transport",
    status=Status.WARN,
    title="Autoconfig served only over plain http",
    meaning="The settings were fetched over http, because the https sources gave nothing. "
    "Anyone on the network path can substitute other servers (and collect passwords); "
    "Thunderbird accepts it only after its https attempts fail.",
    remediation="Serve the document over https at autoconfig.<domain> (with a valid "
    "certificate) or at https://<domain>/.well-known/autoconfig/.",
    reference=THUNDERBIRD,
)
MALFORMED = FindingSpec(
    code="autoconfig.config.malformed",
    status=Status.FAIL,
    title="The autoconfig document cannot be used",
    meaning="The response is not well-formed XML, declares a DTD or entities (refused, as "
    "they are how XML bombs work), is not a clientConfig document, or lists no server.",
    remediation="Validate the document against Thunderbird's config-v1.1 format.",
    reference=THUNDERBIRD,
)
PLAINTEXT = FindingSpec(
    code="autoconfig.server.plaintext",
    status=Status.FAIL,
    title="Autoconfig tells clients to send the password unencrypted",
    meaning="A server is configured with socketType plain and a cleartext password: clients "
    "following the document send the password readable on the network.",
    remediation="Publish SSL (implicit TLS) or STARTTLS for every server (RFC 8314).",
    reference=RFC8314,
)
ISPDB_SKIPPED = FindingSpec(
    code="autoconfig.ispdb.skipped",
    status=Status.SKIP,
    title="Thunderbird's ISPDB not asked",
    meaning="The ISPDB is run by a third party (Mozilla); rca asks it only with --ispdb, so the "
    "domain is not disclosed to it by default.",
    reference=THUNDERBIRD,
)
MX_SAME = FindingSpec(
    code="autoconfig.mx.same_domain",
    status=Status.PASS,
    title="The MX host is in the domain itself: no MX-based source",
    meaning="Thunderbird also asks the base domain of the MX host (for hosted mail); here it "
    "is the e-mail domain, already asked.",
    reference=THUNDERBIRD,
)
SRV_FOUND = FindingSpec(
    code="autoconfig.srv.found",
    status=Status.PASS,
    title="RFC 6186/8314 SRV records describe the mail servers",
    meaning="The _imap(s), _pop3(s) and _submission(s) SRV records give clients the servers to "
    "use; the evidence lists them in RFC 2782 order.",
    reference=RFC6186,
)
SRV_NONE = FindingSpec(
    code="autoconfig.srv.none",
    status=Status.PASS,
    title="No RFC 6186 SRV records",
    meaning="The domain publishes no mail service SRV records; clients that use them (and "
    "RFC 6186-aware setups) fall back to autoconfig or guessing.",
    reference=RFC6186,
)
NONE = FindingSpec(
    code="autoconfig.none",
    status=Status.WARN,
    title="Mail clients cannot configure themselves",
    meaning="No autoconfig document, no RFC 6186 SRV records and no IMAP/POP3/SMTP settings in "
    "Autodiscover: Thunderbird, Apple Mail and others must guess host names and ports.",
    remediation="Publish an autoconfig document at https://autoconfig.<domain>/mail/"
    "config-v1.1.xml, and/or SRV records for _imaps._tcp and _submissions._tcp.",
    reference=THUNDERBIRD,
)
SETTINGS = FindingSpec(
    code="autoconfig.settings.found",
    status=Status.PASS,
    title="Mail client settings found",
    meaning="The settings the login checks use, merged from the sources in client priority "
    "(autoconfig, SRV, Autodiscover).",
)
CONFLICT = FindingSpec(
    code="autoconfig.conflict",
    status=Status.WARN,
    title="The configuration sources contradict each other",
    meaning="For this protocol, one source announces a server that another says is not "
    "offered, or they name entirely different servers. Clients end up configured "
    "differently depending on which source they read; the detail says which endpoints "
    "actually answer.",
    remediation="Make the autoconfig document, the SRV records and Autodiscover's settings "
    "name the same servers and ports (and remove records for services that moved).",
    reference=RFC6186,
)

FINDINGS = (
    NOT_FOUND,
    SOURCE_FAILED,
    FOUND,
    INSECURE_TRANSPORT,
    MALFORMED,
    PLAINTEXT,
    ISPDB_SKIPPED,
    MX_SAME,
    SRV_FOUND,
    SRV_NONE,
    NONE,
    SETTINGS,
    CONFLICT,
)

# --- the document (pure) ------------------------------------------------------------------------


class AutoconfigError(ValueError):
    """The body is not a usable clientConfig document."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoconfigDocument:
    """A parsed ``clientConfig`` (config-v1.1)."""

    provider: str
    domains: tuple[str, ...]
    servers: tuple[MailServerSetting, ...]


_SOCKET = {"ssl": "SSL", "tls": "SSL", "starttls": "STARTTLS", "plain": "plain"}
_TYPES = {"imap": "imap", "pop3": "pop3", "smtp": "smtp"}


def _local(tag: object) -> str:
    return (tag if isinstance(tag, str) else "").rsplit("}", 1)[-1]


def _text(element: Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()[:500]
    return ""


def _username(template: str, address: str) -> str:
    local, _, domain = address.partition("@")
    return (
        template.replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", domain)
    )


def parse_autoconfig(body: bytes, *, address: str, source: str) -> AutoconfigDocument:
    """Parse a config-v1.1 document; :class:`AutoconfigError` says why it is unusable.

    Read with defusedxml (DTDs, entities and external references refused); the user-name
    templates (``%EMAILADDRESS%``...) are filled in with ``address``.
    """
    import defusedxml.ElementTree as DET  # noqa: N814, PLC0415
    from defusedxml import DefusedXmlException  # noqa: PLC0415

    if not body.strip():
        raise AutoconfigError("the response body is empty")
    try:
        root = DET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise AutoconfigError(
            f"declares a DTD or entities ({type(exc).__name__}): refused"
        ) from None
    except (SyntaxError, ValueError, UnicodeError) as exc:
        raise AutoconfigError(f"not well-formed XML: {str(exc)[:200]}") from None
    if _local(root.tag) != "clientConfig":
        raise AutoconfigError(f"the root element is <{_local(root.tag)[:60]}>, not <clientConfig>")
    provider = next((c for c in root if _local(c.tag) == "emailProvider"), None)
    if provider is None:
        raise AutoconfigError("no <emailProvider> element")
    domains = tuple(
        (c.text or "").strip().lower()[:253] for c in provider if _local(c.tag) == "domain"
    )
    servers: list[MailServerSetting] = []
    for element in provider:
        kind = _local(element.tag)
        if kind not in ("incomingServer", "outgoingServer"):
            continue
        protocol = _TYPES.get(str(element.get("type", "")).lower())
        host = _text(element, "hostname").lower().rstrip(".")
        port_text = _text(element, "port")
        if protocol is None or not host or not port_text.isdigit():
            continue
        port = int(port_text)
        if not 0 < port < 65536:
            continue
        auths = tuple(
            (c.text or "").strip()[:60]
            for c in element
            if _local(c.tag) == "authentication" and (c.text or "").strip()
        )
        servers.append(
            MailServerSetting(
                protocol=protocol,
                host=host,
                port=port,
                socket_type=_SOCKET.get(_text(element, "socketType").lower(), "plain"),
                authentication=auths,
                username=_username(_text(element, "username"), address),
                source=source,
            )
        )
        if len(servers) >= _MAX_SERVERS:
            break
    if not servers:
        raise AutoconfigError("the document lists no usable incoming or outgoing server")
    return AutoconfigDocument(
        provider=str(provider.get("id", ""))[:253], domains=domains, servers=tuple(servers)
    )


# RFC 6186 3 / RFC 8314 5.1: service → (protocol, socket type).
_SRV_SERVICES: dict[str, tuple[str, str]] = {
    "_imaps._tcp": ("imap", "SSL"),
    "_imap._tcp": ("imap", "STARTTLS"),
    "_pop3s._tcp": ("pop3", "SSL"),
    "_pop3._tcp": ("pop3", "STARTTLS"),
    "_submissions._tcp": ("smtp", "SSL"),
    "_submission._tcp": ("smtp", "STARTTLS"),
}


def srv_settings(
    records: Iterable[SrvRecord], *, address: str
) -> tuple[tuple[MailServerSetting, ...], frozenset[tuple[str, str]]]:
    """RFC 6186 records → settings (in the records' order) and the (protocol, socket type)
    pairs declared "not offered" (target ".")."""
    settings: list[MailServerSetting] = []
    refused: set[tuple[str, str]] = set()
    for record in records:
        kind = _SRV_SERVICES.get(record.service)
        if kind is None:
            continue
        if not record.offered:
            refused.add(kind)
            continue
        settings.append(
            MailServerSetting(
                protocol=kind[0],
                host=record.target.lower().rstrip("."),
                port=record.port,
                socket_type=kind[1],
                authentication=("password-cleartext",),
                username=address,
                source="srv",
                unvouched_reason="an RFC 6186 SRV record: DNS names no host outside the "
                "domain for credentials",
            )
        )
    return tuple(settings), frozenset(refused)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """A contradiction between sources for one protocol."""

    protocol: str
    reasons: tuple[str, ...]
    endpoints: tuple[tuple[str, int], ...]


def conflicts(
    sources: Sequence[tuple[str, Sequence[MailServerSetting]]],
    refused: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[Conflict, ...]:
    """Contradictions per protocol between named sources (see the module docstring).

    ``refused`` holds the (protocol, socket type) pairs the SRV records declare not offered.
    """
    found: list[Conflict] = []
    for protocol in ("imap", "pop3", "smtp"):
        per_source = {
            name: {(s.host, s.port, s.socket_type) for s in servers if s.protocol == protocol}
            for name, servers in sources
        }
        per_source = {k: v for k, v in per_source.items() if v}
        reasons: list[str] = []
        endpoints: set[tuple[str, int]] = set()
        for name, entries in per_source.items():
            for host, port, socket_type in sorted(entries):
                if (protocol, socket_type) in refused and name != "SRV":
                    reasons.append(
                        f"{name} announces {host}:{port} ({socket_type}), which the SRV records "
                        "declare not offered"
                    )
                    endpoints.add((host, port))
        names = list(per_source)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                ends_a = {(h, p) for h, p, _ in per_source[a]}
                ends_b = {(h, p) for h, p, _ in per_source[b]}
                if ends_a.isdisjoint(ends_b):
                    reasons.append(
                        f"{a} names {_list(ends_a)}, {b} names {_list(ends_b)}: no server in common"
                    )
                    endpoints |= ends_a | ends_b
        if reasons:
            found.append(
                Conflict(
                    protocol=protocol, reasons=tuple(reasons), endpoints=tuple(sorted(endpoints))
                )
            )
    return tuple(found)


def _list(endpoints: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{h}:{p}" for h, p in sorted(endpoints))


def _merge(*groups: Iterable[MailServerSetting]) -> tuple[MailServerSetting, ...]:
    """The servers in source order, one per protocol/host/port; a server any source vouches
    for is vouched for (:mod:`analyzer.core.credpolicy`)."""
    seen: dict[tuple[str, str, int], MailServerSetting] = {}
    for group in groups:
        for server in group:
            key = (server.protocol, server.host, server.port)
            kept = seen.setdefault(key, server)
            if server.vouched and not kept.vouched:
                seen[key] = dataclasses.replace(kept, vouched=True, unvouched_reason="")
    return tuple(seen.values())


# --- the probe ----------------------------------------------------------------------------------

Outcome = Literal["found", "not_found", "failed"]


def _applies(target: Target) -> str | None:
    if target.kind not in ("address", "domain") or target.is_ip:
        return "autoconfig describes a mail domain; give an address or a domain"
    return None


async def run(ctx: ProbeContext, target: Target) -> None:
    """Every source in Thunderbird's order, SRV, then the merged settings and contradictions."""
    domain = target.domain
    address = target.address or f"%EMAILADDRESS%@{domain}"
    shown_address = target.address or domain
    from analyzer.protocols.http import make_client  # noqa: PLC0415

    async with make_client(ctx.run) as client:
        fetch = _Fetcher(ctx=ctx, client=client, address=address, domain=domain)
        param = quote(target.address, safe="") if target.address else ""
        query = f"?emailaddress={param}" if param else ""
        https = [
            f"https://autoconfig.{domain}/mail/config-v1.1.xml{query}",
            f"https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml",
        ]
        # Both https sources are always asked: at once (each result keeps its place).
        documents = [d for d in await concurrently(*map(fetch.source, https)) if d is not None]
        if not documents or ctx.options.all_methods:
            # One after the other: only the first http document used is judged insecure.
            for url in https:
                document = await fetch.source(
                    "http://" + url.removeprefix("https://"), insecure=not documents
                )
                if document is not None:
                    documents.append(document)
        if ctx.options.ispdb:
            document = await fetch.source(ISPDB + quote(domain, safe=""))
            if document is not None:
                documents.append(document)
        mx_document = await _by_mx(ctx, fetch, domain, query)
        if mx_document is not None:
            documents.append(mx_document)
        srv, refused = await _srv(ctx, domain, address)
    with ctx.result(shown_address) as res:
        await _summary(ctx, res, documents, srv, refused)


@dataclass(slots=True, kw_only=True)
class _Fetcher:
    ctx: ProbeContext
    client: httpx.AsyncClient
    address: str
    domain: str

    def vouch(self, document: AutoconfigDocument, final: str) -> AutoconfigDocument:
        """Mark the servers of ``document`` as vouched for when it came over verified https
        (the client verifies) from a host the credential policy allows by name."""
        parts = urlsplit(final)
        host = (parts.hostname or "").lower()
        trusted = tuple(d.lower().rstrip(".") for d in self.ctx.options.trust_redirect)
        if parts.scheme.lower() != "https":
            why = f"fetched over plain {parts.scheme or 'http'} ({final[:200]})"
        elif allowed_by_name(host, domains=(self.domain,), trusted=trusted) is None:
            why = f"served by {host}, outside {self.domain}"
        else:
            why = ""
        servers = tuple(
            dataclasses.replace(s, vouched=not why, unvouched_reason=why)
            for s in document.servers
        )
        return dataclasses.replace(document, servers=servers)

    async def source(self, url: str, *, insecure: bool = False) -> AutoconfigDocument | None:
        """One source as a result of its own: the document, or None with the reason."""
        with self.ctx.result(url) as res, res.step(f"Fetch {url}") as step:
            host = urlsplit(url).hostname or ""
            addrs = await resolve_host(self.ctx.run, host)
            if not addrs.addresses_for(self.ctx.options.families):
                step.add(NOT_FOUND(detail=f"{host} has no address"))
                return None
            body, final = await self._get(step, url)
            if body is None:
                return None
            try:
                document = self.vouch(
                    parse_autoconfig(body, address=self.address, source=final), final
                )
            except AutoconfigError as exc:
                step.add(MALFORMED(detail=str(exc), evidence={"url": final}))
                return None
            evidence: dict[str, Json] = {
                "provider": document.provider,
                "domains": list(document.domains),
                "servers": [_describe(s) for s in document.servers],
            }
            step.add(
                FOUND(detail=f"{len(document.servers)} server(s) from {final}", evidence=evidence)
            )
            if final.startswith("http://"):
                if insecure:
                    step.add(INSECURE_TRANSPORT(detail=f"fetched over http: {final}"))
                else:
                    step.note("also served over http; unused while the https sources answer")
            for server in document.servers:
                if server.socket_type == "plain" and (
                    not server.authentication
                    or any(a.lower() == "password-cleartext" for a in server.authentication)
                ):
                    step.add(PLAINTEXT(detail=_describe(server)))
            return document

    async def _get(self, step: StepRecorder, url: str) -> tuple[bytes | None, str]:
        """GET with https-only redirects (at most 3); the body of a 200, or None with a finding."""
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                response = await send_recorded(
                    self.client,
                    "GET",
                    url,
                    max_bytes=MAX_BYTES,
                    timeout=self.ctx.op_timeout(),
                    transcript=step,
                )
            except ConnectionRefused as exc:
                step.add(NOT_FOUND(detail=str(exc)))
                return None, url
            except (NetTimeout, ProtocolViolation, TlsFailure, NetError) as exc:
                step.add(SOURCE_FAILED(detail=f"{type(exc).__name__}: {exc}"[:500]))
                return None, url
            location = response.header("location") or ""
            if response.status in (301, 302, 303, 307, 308) and location:
                target = urljoin(url, location)
                if url.startswith("https://") and not target.startswith("https://"):
                    step.add(
                        SOURCE_FAILED(detail=f"redirect from https to {target[:200]}: not followed")
                    )
                    return None, url
                step.note(f"redirect to {target[:200]}")
                url = target
                continue
            if response.status in (404, 410):
                step.add(NOT_FOUND(detail=f"HTTP {response.status}"))
                return None, url
            if response.status != 200:
                step.add(SOURCE_FAILED(detail=f"HTTP {response.status}"))
                return None, url
            return response.body, url
        step.add(SOURCE_FAILED(detail=f"more than {_MAX_REDIRECTS} redirects"))
        return None, url


def _describe(server: MailServerSetting) -> str:
    auth = ",".join(server.authentication) or "no authentication listed"
    return f"{server.protocol} {server.host}:{server.port} {server.socket_type} ({auth})"


async def _by_mx(
    ctx: ProbeContext, fetch: _Fetcher, domain: str, query: str
) -> AutoconfigDocument | None:
    """Thunderbird's MX method: autoconfig at the base domain of the preferred MX host."""
    mx: tuple[MxHost, ...] | None = ctx.fact_or(MX_HOSTS)
    hosts: list[str]
    if mx is None:
        found = await lookup(ctx.run, domain, "MX")
        ordered = sorted(found.records, key=lambda r: int(getattr(r, "preference", 0)))
        hosts = [str(getattr(r, "exchange", "")).lower().rstrip(".") for r in ordered]
    else:
        hosts = [m.host for m in mx if not m.implicit]
    hosts = [h for h in hosts if h and h != "."]
    if not hosts:
        return None
    # Without the Public Suffix List, the last two labels stand for the base domain.
    base = ".".join(hosts[0].split(".")[-2:])
    if base == domain or domain.endswith("." + base) or base.endswith("." + domain):
        with ctx.result(f"MX {hosts[0]}") as res, res.step("Autoconfig by MX") as step:
            step.add(MX_SAME(detail=f"{hosts[0]} is in {domain}"))
        return None
    return await fetch.source(f"https://autoconfig.{base}/mail/config-v1.1.xml{query}")


async def _srv(
    ctx: ProbeContext, domain: str, address: str
) -> tuple[tuple[MailServerSetting, ...], frozenset[tuple[str, str]]]:
    """RFC 6186/8314 records: the DNS probe's, or looked up here."""
    records: tuple[SrvRecord, ...] | None = ctx.fact_or(SRV_RECORDS)
    with ctx.result(f"RFC 6186 SRV records of {domain}") as res:
        with res.step(f"Mail service SRV records of {domain}") as step:
            if records is None:
                records = await _lookup_srv(ctx, step, domain)
            else:
                step.note("as found by the DNS check")
            mail = [r for r in records if r.service in _SRV_SERVICES]
            for r in mail:
                step.recv(f"{r.service}.{domain} SRV {r.priority} {r.weight} {r.port} {r.target}")
            settings, refused = srv_settings(mail, address=address)
            if not mail:
                step.add(SRV_NONE(detail=", ".join(_SRV_SERVICES)))
            else:
                step.add(
                    SRV_FOUND(
                        detail="; ".join(_describe(s) for s in settings)
                        or "every service: not offered",
                        evidence={
                            "servers": [_describe(s) for s in settings],
                            "not_offered": sorted(f"{p} {t}" for p, t in refused),
                        },
                    )
                )
    return settings, refused


async def _lookup_srv(ctx: ProbeContext, step: StepRecorder, domain: str) -> tuple[SrvRecord, ...]:
    names = list(_SRV_SERVICES)
    answers = await asyncio.gather(*(lookup(ctx.run, f"{n}.{domain}", "SRV") for n in names))
    rng = random.Random(domain)  # noqa: S311 - a repeatable order, not security
    found: list[SrvRecord] = []
    for service, answer in zip(names, answers, strict=True):
        if not answer.ok:
            if not answer.definitive:
                step.note(f"{service}.{domain}: {answer.outcome}")
            continue
        records = [SrvRecord.from_rdata(r, service=service) for r in answer.records]
        selection = order_srv(records, rng=rng)
        found.extend(selection.targets if selection.targets else records)
    return tuple(found)


async def _summary(
    ctx: ProbeContext,
    res: ResultRecorder,
    documents: Sequence[AutoconfigDocument],
    srv: tuple[MailServerSetting, ...],
    refused: frozenset[tuple[str, str]],
) -> None:
    # Awaited only now: the sources above were asked while Autodiscover ran.
    autodiscover: AutodiscoverSettings | None = await ctx.settled(AUTODISCOVER_SETTINGS)
    from_autodiscover = autodiscover.mail_servers if autodiscover else ()
    autoconfig = documents[0].servers if documents else ()
    with res.step("Merge the mail client settings") as step:
        if not ctx.options.ispdb:
            step.add(ISPDB_SKIPPED(detail="run with --ispdb to ask it"))
        merged = _merge(autoconfig, srv, from_autodiscover)
        if not merged:
            step.add(NONE(detail="no autoconfig, no SRV records, no Autodiscover mail servers"))
            return
        step.add(
            SETTINGS(
                detail="; ".join(_describe(s) for s in merged[:8]),
                evidence={"servers": [f"{_describe(s)} from {s.source}" for s in merged]},
            )
        )
        res.publish(MAIL_SETTINGS, merged)
    sources = [
        (name, servers)
        for name, servers in (
            ("autoconfig", autoconfig),
            ("SRV", srv),
            ("Autodiscover", from_autodiscover),
        )
        if servers
    ]
    found = conflicts(sources, refused)
    if not found:
        return
    with res.step("Compare the sources") as step:
        for conflict in found:
            checked = conflict.endpoints[:6]
            states = await asyncio.gather(*(_state(ctx, h, p) for h, p in checked))
            reach = ", ".join(f"{h}:{p} {s}" for (h, p), s in zip(checked, states, strict=True))
            step.add(
                CONFLICT(
                    detail=f"{conflict.protocol}: " + "; ".join(conflict.reasons) + f" ({reach})",
                    evidence={
                        "protocol": conflict.protocol,
                        "reasons": list(conflict.reasons),
                        "endpoints": {
                            f"{h}:{p}": s for (h, p), s in zip(checked, states, strict=True)
                        },
                    },
                )
            )


async def _state(ctx: ProbeContext, host: str, port: int) -> str:
    """open / closed / filtered... of ``host:port`` on its first address."""
    addrs = await resolve_host(ctx.run, host)
    addresses = addrs.addresses_for(ctx.options.families)
    if not addresses:
        return "no address"
    outcome, conn = await probe_connect(
        ctx.run, host, addresses[0], port, timeout=ctx.options.connect_timeout
    )
    if conn is not None:
        await conn.close()
    return outcome.state


PROBE = Probe(
    id="autoconfig",
    title="Mail client autoconfiguration (autoconfig, RFC 6186 SRV)",
    run=run,
    uses=(SRV_RECORDS, MX_HOSTS),
    awaits=(AUTODISCOVER_SETTINGS,),
    provides=(MAIL_SETTINGS,),
    findings=FINDINGS,
    applies=_applies,
    verifies_tls=True,
)
