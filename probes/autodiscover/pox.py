"""Autodiscover POX messages: the request we send and the response we read. Pure functions.

Request ([MS-OXDSCLI] 2.2.3): ``Autodiscover/Request/{EMailAddress, AcceptableResponseSchema}``
in the outlook request schema (asking for ``outlook/responseschema/2006a``) or the mobilesync
one. Response ([MS-OXDSCLI] 2.2.4, [MS-ASCMD] Autodiscover): ``Response/User``,
``Response/Account`` (``Action`` settings / redirectAddr / redirectUrl, ``Protocol`` blocks)
or ``Response/Error/ErrorCode``; mobilesync: ``Response/Action/{Settings/Server, Redirect,
Error}``.

:func:`parse_response` reads a body with defusedxml: a DTD, an entity declaration or an
external reference is refused (:class:`UnsafeXml`: billion laughs, XXE), so is malformed XML
(:class:`MalformedXml`) and well-formed XML that is not an Autodiscover answer
(:class:`NotAutodiscover`, e.g. a reverse proxy's login page). Element names are matched by
local name, so any namespace prefixing works; every text is cut to :data:`MAX_TEXT`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = [
    "MAX_TEXT",
    "MOBILESYNC_REQUEST_NS",
    "MOBILESYNC_RESPONSE_NS",
    "OUTLOOK_REQUEST_NS",
    "OUTLOOK_RESPONSE_NS",
    "MalformedXml",
    "NotAutodiscover",
    "PoxError",
    "PoxResponse",
    "ProtocolBlock",
    "UnsafeXml",
    "build_request",
    "parse_response",
]

OUTLOOK_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
OUTLOOK_RESPONSE_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)
MOBILESYNC_REQUEST_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"
)
MOBILESYNC_RESPONSE_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
)
#: Longest text kept from one element (a hostile server may send megabytes in one).
MAX_TEXT = 2000
#: At most this many Protocol blocks are read (Exchange sends about six).
MAX_PROTOCOLS = 50

Schema = Literal["outlook", "mobilesync"]


class PoxError(ValueError):
    """The body is not a usable Autodiscover response."""


class UnsafeXml(PoxError):
    """A DTD, entity declaration or external reference: refused, never expanded."""


class MalformedXml(PoxError):
    """Not well-formed XML."""


class NotAutodiscover(PoxError):
    """Well-formed, but not an Autodiscover response."""


def build_request(email: str, schema: Schema = "outlook") -> bytes:
    """The POST body asking for ``email``'s settings in ``schema``."""
    request_ns, response_ns = (
        (OUTLOOK_REQUEST_NS, OUTLOOK_RESPONSE_NS)
        if schema == "outlook"
        else (MOBILESYNC_REQUEST_NS, MOBILESYNC_RESPONSE_NS)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Autodiscover xmlns="{request_ns}">\n'
        "  <Request>\n"
        f"    <EMailAddress>{escape(email)}</EMailAddress>\n"
        f"    <AcceptableResponseSchema>{response_ns}</AcceptableResponseSchema>\n"
        "  </Request>\n"
        "</Autodiscover>\n"
    ).encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolBlock:
    """One ``Protocol`` element of an outlook 2006a ``Account``.

    ``type`` is the ``Type`` child or attribute: EXCH (internal RPC), EXPR (Outlook Anywhere),
    EXHTTP, WEB (OWA), mapiHttp, and IMAP/POP3/SMTP for internet mail.
    """

    type: str
    server: str = ""
    server_dn: str = ""
    port: int | None = None
    ssl: str = ""
    encryption: str = ""
    spa: str = ""
    auth_package: str = ""
    cert_principal_name: str = ""
    login_name: str = ""
    ews_url: str = ""
    as_url: str = ""
    oab_url: str = ""
    oof_url: str = ""
    ecp_url: str = ""
    mailstore_internal: str = ""
    mailstore_external: str = ""
    addressbook_internal: str = ""
    addressbook_external: str = ""
    owa_urls: tuple[str, ...] = ()

    def urls(self) -> tuple[str, ...]:
        """Every URL in the block (to check their scheme and host)."""
        found = (
            self.ews_url,
            self.as_url,
            self.oab_url,
            self.oof_url,
            self.ecp_url,
            self.mailstore_internal,
            self.mailstore_external,
            self.addressbook_internal,
            self.addressbook_external,
            *self.owa_urls,
        )
        return tuple(u for u in found if u)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoxResponse:
    """What an Autodiscover answer says.

    ``action``: ``settings``, ``redirectAddr``, ``redirectUrl`` or ``error`` (``Error``
    element; ``error_code`` as sent: 500, 501, 600-603). ``redirect`` holds the address or
    URL of a redirect. For mobilesync, ``mobilesync_url`` is the ActiveSync URL.
    """

    schema: Schema
    action: Literal["settings", "redirectAddr", "redirectUrl", "error"]
    display_name: str = ""
    legacy_dn: str = ""
    smtp_address: str = ""
    redirect: str = ""
    error_code: str = ""
    error_message: str = ""
    protocols: tuple[ProtocolBlock, ...] = ()
    mobilesync_url: str = ""

    def protocol(self, kind: str) -> ProtocolBlock | None:
        """The first block of ``kind`` (case-insensitive), if any."""
        lowered = kind.lower()
        return next((p for p in self.protocols if p.type.lower() == lowered), None)


# --- parsing ------------------------------------------------------------------------------------


def _local(tag: object) -> str:
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> Iterable[Element]:
    return (c for c in element if _local(c.tag) == name)


def _child(element: Element | None, name: str) -> Element | None:
    if element is None:
        return None
    return next(iter(_children(element, name)), None)


def _text(element: Element | None, name: str | None = None) -> str:
    node = element if name is None else _child(element, name)
    if node is None or node.text is None:
        return ""
    return node.text.strip()[:MAX_TEXT]


def _parse_xml(body: bytes) -> Element:
    import defusedxml.ElementTree as DET  # noqa: N814, PLC0415 - heavy; imported when used
    from defusedxml import DefusedXmlException  # noqa: PLC0415

    try:
        root: Element = DET.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise UnsafeXml(
            f"the response declares a DTD, entities or external references ({type(exc).__name__})"
        ) from None
    except SyntaxError as exc:  # xml.etree.ElementTree.ParseError
        raise MalformedXml(f"not well-formed XML: {str(exc)[:200]}") from None
    except (ValueError, UnicodeError) as exc:
        raise MalformedXml(f"unreadable XML: {str(exc)[:200]}") from None
    return root


def parse_response(body: bytes) -> PoxResponse:
    """Parse an Autodiscover answer (see the module docstring); :class:`PoxError` if unusable."""
    if not body.strip():
        raise MalformedXml("the response body is empty")
    root = _parse_xml(body)
    if _local(root.tag) != "Autodiscover":
        name = _local(root.tag)[:60]
        raise NotAutodiscover(f"the XML root element is <{name}>, not <Autodiscover>")
    response = _child(root, "Response")
    if response is None:
        raise NotAutodiscover("no <Response> element under <Autodiscover>")
    namespace = response.tag[1:].split("}", 1)[0] if response.tag.startswith("{") else ""
    error = _child(response, "Error")
    if "mobilesync" in namespace.lower():
        return _mobilesync(response, error)
    if error is not None:
        return _error("outlook", error)
    account = _child(response, "Account")
    if account is None:
        raise NotAutodiscover("the response has neither <Account> nor <Error>")
    account_error = _child(account, "Error")
    if account_error is not None:
        return _error("outlook", account_error)
    user = _child(response, "User")
    base = PoxResponse(
        schema="outlook",
        action="settings",
        display_name=_text(user, "DisplayName"),
        legacy_dn=_text(user, "LegacyDN"),
        smtp_address=_text(user, "AutoDiscoverSMTPAddress"),
    )
    action = _text(account, "Action")
    if action == "redirectAddr":
        return replace(base, action="redirectAddr", redirect=_text(account, "RedirectAddr"))
    if action == "redirectUrl":
        return replace(base, action="redirectUrl", redirect=_text(account, "RedirectUrl"))
    if action != "settings":
        raise NotAutodiscover(f"unknown Account/Action {action[:60]!r}")
    blocks = [_protocol(p) for p in list(_children(account, "Protocol"))[:MAX_PROTOCOLS]]
    return replace(base, protocols=tuple(blocks))


def _error(schema: Schema, error: Element) -> PoxResponse:
    code = _text(error, "ErrorCode") or _text(error, "Status")
    return PoxResponse(
        schema=schema, action="error", error_code=code[:20], error_message=_text(error, "Message")
    )


def _mobilesync(response: Element, error: Element | None) -> PoxResponse:
    if error is not None:
        return _error("mobilesync", error)
    user = _child(response, "User")
    base = PoxResponse(
        schema="mobilesync",
        action="settings",
        display_name=_text(user, "DisplayName"),
        smtp_address=_text(user, "EMailAddress"),
    )
    action = _child(response, "Action")
    if action is None:
        raise NotAutodiscover("the mobilesync response has no <Action>")
    action_error = _child(action, "Error")
    if action_error is not None:
        return _error("mobilesync", action_error)
    redirect = _text(action, "Redirect")
    if redirect:
        return replace(base, action="redirectAddr", redirect=redirect)
    settings = _child(action, "Settings")
    url = ""
    for server in _children(settings, "Server") if settings is not None else ():
        if _text(server, "Type").lower() == "mobilesync":
            url = _text(server, "Url")
            break
    if not url:
        raise NotAutodiscover("the mobilesync response names no MobileSync server URL")
    return replace(base, mobilesync_url=url)


def _nested_as_url(block: Element) -> str:
    """A WEB block's ``External``/``Internal`` hold a ``Protocol`` with only ``Type`` and
    ``ASUrl`` ("External (POX)", [MS-OXDSCLI] 4.4): the Availability URL, external first."""
    for side in ("External", "Internal"):
        nested = _child(_child(block, side), "Protocol")
        if _text(nested, "ASUrl"):
            return _text(nested, "ASUrl")
    return ""


def _protocol(block: Element) -> ProtocolBlock:
    kind = _text(block, "Type") or str(block.get("Type", ""))[:40]
    port_text = _text(block, "Port")
    owa: list[str] = []
    for side in ("Internal", "External"):
        container = _child(block, side)
        if container is not None:
            owa += [_text(n) for n in _children(container, "OWAUrl") if _text(n)]
    mailstore, addressbook = _child(block, "MailStore"), _child(block, "AddressBook")
    return ProtocolBlock(
        type=kind,
        server=_text(block, "Server"),
        server_dn=_text(block, "ServerDN"),
        port=int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None,
        ssl=_text(block, "SSL"),
        encryption=_text(block, "Encryption"),
        spa=_text(block, "SPA"),
        auth_package=_text(block, "AuthPackage"),
        cert_principal_name=_text(block, "CertPrincipalName"),
        login_name=_text(block, "LoginName"),
        ews_url=_text(block, "EwsUrl"),
        as_url=_text(block, "ASUrl") or _nested_as_url(block),
        oab_url=_text(block, "OABUrl"),
        oof_url=_text(block, "OOFUrl"),
        ecp_url=_text(block, "EcpUrl"),
        mailstore_internal=_text(mailstore, "InternalUrl"),
        mailstore_external=_text(mailstore, "ExternalUrl"),
        addressbook_internal=_text(addressbook, "InternalUrl"),
        addressbook_external=_text(addressbook, "ExternalUrl"),
        owa_urls=tuple(dict.fromkeys(owa))[:10],
    )
