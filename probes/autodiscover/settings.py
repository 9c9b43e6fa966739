"""From a parsed POX answer to the facts other probes use, and the checks on them. Pure."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from analyzer.core.facts import AutodiscoverSettings, MailServerSetting, OutlookAnywhere
from analyzer.core.model import Finding, Json
from probes.autodiscover import findings as F
from probes.autodiscover.pox import PoxResponse, ProtocolBlock

__all__ = [
    "EAS_SOURCES",
    "check_availability",
    "check_settings",
    "same_url",
    "settings_evidence",
    "to_settings",
    "with_activesync",
]

#: Where an ActiveSync URL can come from in Autodiscover, as named in reports.
EAS_SOURCES = {
    "mobilesync": "the mobilesync (ActiveSync) schema",
    "v2": "Autodiscover v2 (Protocol=ActiveSync)",
}

_MAIL_TYPES = {"IMAP": "imap", "POP3": "pop3", "SMTP": "smtp"}


def _first(response: PoxResponse, field: str, order: tuple[str, ...] = ("EXPR", "EXCH")) -> str:
    """A URL field from the first block that has it, external (EXPR) before internal (EXCH)."""
    for kind in order:
        block = response.protocol(kind)
        if block is not None and getattr(block, field):
            return str(getattr(block, field))
    for block in response.protocols:
        if getattr(block, field):
            return str(getattr(block, field))
    return ""


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def same_url(a: str, b: str) -> bool:
    """Equal as clients use them: scheme/host case, a trailing slash and path case ignored."""

    def norm(u: str) -> tuple[str, str, str]:
        parts = urlsplit(u.strip())
        return (parts.scheme.lower(), (parts.netloc or "").lower(), parts.path.rstrip("/").lower())

    return norm(a) == norm(b)


def _socket_type(block: ProtocolBlock) -> str:
    encryption = block.encryption.lower()
    if encryption in ("ssl",) or (not encryption and block.ssl.lower() == "on"):
        return "SSL"
    if encryption in ("tls", "auto"):
        return "STARTTLS"
    return "plain"


def _mail_servers(
    response: PoxResponse, *, vouched: bool, unvouched_reason: str
) -> tuple[MailServerSetting, ...]:
    servers = []
    for block in response.protocols:
        protocol = _MAIL_TYPES.get(block.type.upper())
        if protocol is None or not block.server or block.port is None:
            continue
        servers.append(
            MailServerSetting(
                protocol=protocol,
                host=block.server.lower().rstrip("."),
                port=block.port,
                socket_type=_socket_type(block),
                authentication=("NTLM",) if block.spa.lower() == "on" else ("password-cleartext",),
                username=block.login_name,
                source="autodiscover",
                vouched=vouched,
                unvouched_reason=unvouched_reason,
            )
        )
    return tuple(servers)


def _hosts(settings: AutodiscoverSettings, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every host the settings name, in order of first mention, without repeats."""
    hosts: dict[str, None] = dict.fromkeys(settings.hosts)
    for url in (
        settings.ews_url,
        settings.availability_url,
        settings.eas_url,
        settings.oab_url,
        settings.oof_url,
        settings.mapi_mailstore_url,
        settings.mapi_addressbook_url,
        *extra,
    ):
        if _host(url):
            hosts[_host(url)] = None
    for oa in settings.outlook_anywhere:
        hosts[oa.server] = None
    for server in settings.mail_servers:
        hosts[server.host] = None
    return tuple(hosts)


def to_settings(
    response: PoxResponse,
    *,
    email: str,
    source_url: str,
    method: str,
    vouched: bool = False,
    unvouched_reason: str = "",
) -> AutodiscoverSettings:
    """The :class:`~analyzer.core.facts.AutodiscoverSettings` of an outlook ``settings`` answer.

    ``ASUrl`` is the Availability service, an EWS URL (Microsoft's "ASUrl (POX)": "the URL
    that is used to access the Availability service"): it becomes ``availability_url``. The
    outlook schema has no ActiveSync URL; that comes from the mobilesync schema or
    Autodiscover v2 (:func:`with_activesync`). ``vouched``: whether the answer may name hosts
    that receive credentials (:mod:`analyzer.core.credpolicy`).
    """
    exch = response.protocol("EXCH")
    mapi = response.protocol("mapiHttp")
    anywhere = tuple(
        OutlookAnywhere(
            server=b.server.lower(),
            ssl=b.ssl.lower() != "off",
            auth_package=b.auth_package,
            cert_principal_name=b.cert_principal_name,
            internal=False,
        )
        for b in response.protocols
        if b.type.upper() in ("EXPR", "EXHTTP") and b.server
    )
    settings = AutodiscoverSettings(
        email=email,
        source_url=source_url,
        display_name=response.display_name,
        legacy_dn=response.legacy_dn,
        mailbox_server=exch.server if exch else "",
        mailbox_server_dn=exch.server_dn if exch else "",
        ews_url=_first(response, "ews_url"),
        availability_url=_first(response, "as_url"),
        oab_url=_first(response, "oab_url"),
        oof_url=_first(response, "oof_url"),
        mapi_mailstore_url=(mapi.mailstore_external or mapi.mailstore_internal) if mapi else "",
        mapi_addressbook_url=(
            (mapi.addressbook_external or mapi.addressbook_internal) if mapi else ""
        ),
        outlook_anywhere=anywhere,
        method=method,
        mail_servers=_mail_servers(response, vouched=vouched, unvouched_reason=unvouched_reason),
        vouched=vouched,
        unvouched_reason=unvouched_reason,
    )
    extra = tuple(u for b in response.protocols for u in b.urls())
    return replace(settings, hosts=_hosts(settings, extra))


def with_activesync(
    settings: AutodiscoverSettings, url: str, source: str
) -> AutodiscoverSettings:
    """``settings`` with the ActiveSync URL found by ``source`` (a key of
    :data:`EAS_SOURCES`), its host added to ``hosts``."""
    updated = replace(settings, eas_url=url, eas_source=source)
    return replace(updated, hosts=_hosts(updated))


def settings_evidence(settings: AutodiscoverSettings) -> dict[str, Json]:
    """What the report shows of the settings: URLs and servers (no secrets there)."""
    evidence: dict[str, Json] = {
        "email": settings.email,
        "display_name": settings.display_name,
        "mailbox_server": settings.mailbox_server,
        "ews_url": settings.ews_url,
        "availability_url": settings.availability_url,
        "oof_url": settings.oof_url,
        "activesync_url": settings.eas_url,
        "activesync_url_source": EAS_SOURCES.get(settings.eas_source, ""),
        "oab_url": settings.oab_url,
        "mapi_mailstore_url": settings.mapi_mailstore_url,
        "mapi_addressbook_url": settings.mapi_addressbook_url,
        "outlook_anywhere": [
            {"server": o.server, "ssl": o.ssl, "auth_package": o.auth_package}
            for o in settings.outlook_anywhere
        ],
        "mail_servers": [
            f"{s.protocol} {s.host}:{s.port} {s.socket_type}" for s in settings.mail_servers
        ],
        "hosts": list(settings.hosts),
    }
    return {k: v for k, v in evidence.items() if v not in ("", [], None)}


def check_settings(response: PoxResponse, settings: AutodiscoverSettings) -> list[Finding]:
    """Warnings about the settings themselves (http URLs, no EWS, no external access)."""
    found: list[Finding] = []
    insecure = sorted(
        {u for b in response.protocols for u in b.urls() if u.lower().startswith("http:")}
    )
    if insecure:
        found.append(
            F.SETTINGS_INSECURE_URL(
                detail=", ".join(insecure[:10])[:1000], evidence={"urls": insecure[:20]}
            )
        )
    if not settings.ews_url:
        found.append(F.SETTINGS_NO_EWS(detail="no EwsUrl in any Protocol block"))
    external_mapi = response.protocol("mapiHttp")
    has_mapi = external_mapi is not None and bool(external_mapi.mailstore_external)
    if not settings.outlook_anywhere and not has_mapi:
        found.append(F.SETTINGS_NO_EXTERNAL(detail="no EXPR/EXHTTP block, no mapiHttp ExternalUrl"))
    return found


def check_availability(settings: AutodiscoverSettings) -> Finding | None:
    """``ASUrl`` (Availability) compared with ``EwsUrl``: a note either way, never a warning.

    Exchange names the Availability service of the mailbox's own site, which may be another
    EWS endpoint than the one the client was given (a mailbox in another site or forest), so
    a difference is normal; the report says which URL free/busy requests go to.
    """
    if not settings.availability_url:
        return None
    evidence: dict[str, Json] = {
        "availability_url": settings.availability_url,
        "ews_url": settings.ews_url,
    }
    if settings.ews_url and same_url(settings.availability_url, settings.ews_url):
        return F.AVAILABILITY_SAME(detail=settings.availability_url, evidence=evidence)
    return F.AVAILABILITY_DIFFERS(
        detail=f"ASUrl {settings.availability_url}, EwsUrl {settings.ews_url or '(none)'}",
        evidence=evidence,
    )
