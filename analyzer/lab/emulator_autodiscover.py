"""Autodiscover endpoints of the emulator: POX (outlook 2006a, mobilesync) and v2 JSON.

The answers have the shapes of Microsoft's published examples (the fixtures in
``tests/fixtures/exchange`` name them): in the outlook schema ``ASUrl`` and ``OOFUrl`` are
the EWS URL ("ASUrl (POX)": the Availability service), and only the mobilesync schema and
v2 name the ActiveSync URL.

``POST /autodiscover/autodiscover.xml`` answers as Exchange does ([MS-OXDSCLI]): 401 until
the client authenticates (:mod:`analyzer.lab.emulator_auth`), then the settings of the
requested address, a redirect, or an ``ErrorCode``. ``GET`` (authenticated) gets error
600, as from Exchange. ``GET /autodiscover/autodiscover.json/v1.0/<address>?Protocol=...``
(or ``?Email=...&Protocol=...``) answers ``{"Protocol": ..., "Url": ...}`` without
authentication, 400 ``InvalidProtocol`` for an unknown protocol.

Behaviour, from ``Scenario.emulator["autodiscover"]`` (a mapping; every key optional):

``answer``
    roles whose host serves Autodiscover (default: every web host); others answer 404.
``by_role``
    role -> a mapping of these same keys, applied on that host only.
``status``
    answer every request with this bare HTTP status (e.g. 500, 503).
``error_code``
    answer with ``Response/Error/ErrorCode`` (500, 501, 600, 601, 602, 603).
``redirect_url``
    answer ``redirectUrl`` to this URL (``{domain}`` and ``{host}`` are filled in).
``redirect_hops``
    answer ``redirectUrl`` to the same URL with ``?hop=n+1`` until ``n`` reaches this number.
``redirect_addr``
    answer ``redirectAddr`` to this address (``{domain}``, ``{local}`` filled in), unless the
    request already asks for it.
``settings``
    overrides of the generated settings: ``ews_url``, ``availability_url`` (``ASUrl``, the
    Availability service: the EWS URL by default, as Exchange publishes it), ``eas_url`` (the
    ActiveSync URL of the mobilesync and v2 answers), ``oab_url``, ``mail_host`` (``""``
    leaves the element out), ``expr: false`` (no Outlook Anywhere block), ``imap_port``.
``v2``
    ``false``: no JSON service (404); or a mapping protocol -> URL (``{domain}`` filled in)
    that overrides its answer.
``mobilesync``
    ``false``: the mobilesync schema is not served (error 601, as without ActiveSync).
``extra_users``
    (top level of ``Scenario.emulator``) more ``[address, password]`` users this scenario
    accepts, e.g. the user of the domain that redirects here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote
from xml.sax.saxutils import escape

from analyzer.lab.emulator_auth import authenticate, is_user

if TYPE_CHECKING:
    from analyzer.lab.emulator_http import EmulatorRequest, EmulatorResponse, Handler

__all__ = ["ROUTES", "autodiscover_json", "autodiscover_xml", "behaviour_for"]

_RESPONSE_NS: Final = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
_OUTLOOK_NS: Final = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)
_MOBILESYNC_NS: Final = (
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
)
_ERROR_MESSAGES: Final = {
    500: "The email address can't be found.",
    501: "The requested configuration is not available for this user.",
    600: "Invalid Request",
    601: "The requested schema is not available.",
    602: "Cannot find a user with the given email address.",
    603: "An internal server error occurred.",
}
_V2_PROTOCOLS: Final = ("AutodiscoverV1", "Ews", "ActiveSync", "Rest")
_MAX_REQUEST: Final = 64 * 1024


def behaviour_for(request: EmulatorRequest) -> dict[str, Any]:
    """The scenario's ``autodiscover`` behaviour with this host's ``by_role`` entries applied."""
    raw = request.behaviour.get("autodiscover", {})
    merged: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
    role = request.entry.role if request.entry else ""
    by_role = merged.pop("by_role", {})
    if isinstance(by_role, Mapping) and isinstance(by_role.get(role), Mapping):
        merged.update(by_role[role])
    return merged


def _response(status: int, content_type: str, body: bytes) -> EmulatorResponse:
    # Imported when used: `python -m analyzer.lab.emulator` imports this module while its own
    # is still being initialised (see analyzer.lab.emulator._routes).
    from analyzer.lab.emulator_http import EmulatorResponse  # noqa: PLC0415

    return EmulatorResponse(status=status, headers=(("Content-Type", content_type),), body=body)


def _text(status: int, text: str) -> EmulatorResponse:
    return _response(status, "text/plain; charset=utf-8", text.encode())


def _json(status: int, data: Any) -> EmulatorResponse:
    return _response(status, "application/json; charset=utf-8", json.dumps(data).encode())


def _serves(request: EmulatorRequest, behaviour: Mapping[str, Any]) -> bool:
    answer = behaviour.get("answer")
    if answer is None or request.entry is None:
        return True
    return request.entry.role in answer


def _xml(body: str, status: int = 200) -> EmulatorResponse:
    return _response(
        status,
        "text/xml; charset=utf-8",
        ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode(),
    )


def _error(code: int, schema: str = "") -> EmulatorResponse:
    """Error ``code`` in the answer's schema: the outlook one keeps Response in the outer
    namespace ("Error (POX)"); the mobilesync one puts Response in its own ([MS-ASCMD] 4.2)."""
    message = _ERROR_MESSAGES.get(code, "Error")
    response = f'<Response xmlns="{schema}">' if schema == _MOBILESYNC_NS else "<Response>"
    return _xml(
        f'<Autodiscover xmlns="{_RESPONSE_NS}">\n  {response}\n'
        f'    <Error Time="00:00:00.0000000" Id="1">\n      <ErrorCode>{code}</ErrorCode>\n'
        f"      <Message>{escape(message)}</Message>\n      <DebugData />\n    </Error>\n"
        "  </Response>\n</Autodiscover>\n"
    )


def _account(action: str, inner: str, *, user: str = "") -> EmulatorResponse:
    return _xml(
        f'<Autodiscover xmlns="{_RESPONSE_NS}">\n  <Response xmlns="{_OUTLOOK_NS}">\n{user}'
        f"    <Account>\n      <AccountType>email</AccountType>\n"
        f"      <Action>{action}</Action>\n{inner}    </Account>\n  </Response>\n</Autodiscover>\n"
    )


def _read_request(body: bytes) -> tuple[str, str] | None:
    """(EMailAddress, AcceptableResponseSchema) of a POX request, or None if unreadable."""
    import defusedxml.ElementTree as DET  # noqa: N814, PLC0415

    if len(body) > _MAX_REQUEST:
        return None
    try:
        root = DET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except Exception:  # noqa: BLE001 - any unreadable body is error 600, as from Exchange
        return None
    email = schema = ""
    for element in root.iter():
        name = str(element.tag).rsplit("}", 1)[-1]
        if name == "EMailAddress":
            email = (element.text or "").strip()
        elif name == "AcceptableResponseSchema":
            schema = (element.text or "").strip()
    if not email:
        return None
    return email, schema


def autodiscover_xml(request: EmulatorRequest) -> EmulatorResponse:
    """``/autodiscover/autodiscover.xml`` (see the module docstring)."""
    behaviour = behaviour_for(request)
    if not _serves(request, behaviour) or request.entry is None:
        return _text(404, "404 - File or directory not found.\n")
    if "status" in behaviour:
        return _text(int(behaviour["status"]), "Autodiscover unavailable\n")
    auth = authenticate(request)
    if auth.response is not None:
        return auth.response
    if request.method != "POST":
        return _error(600)
    parsed = _read_request(request.body)
    if parsed is None:
        return _error(600)
    email, schema = parsed
    mobilesync = schema == _MOBILESYNC_NS
    if schema != _OUTLOOK_NS and not mobilesync:
        return _error(601)
    if mobilesync and behaviour.get("mobilesync") is False:
        # ActiveSync not offered: no provider for the mobilesync schema ([MS-ASCMD] 2.2.3.64).
        return _error(601, schema)
    if "error_code" in behaviour:
        return _error(int(behaviour["error_code"]), schema)
    domain = str(request.scenario_data.get("domain", ""))
    fill = {"domain": domain, "host": request.host, "local": email.partition("@")[0]}
    hops = int(behaviour.get("redirect_hops", 0))
    if hops:
        hop = int((request.query.get("hop") or ["0"])[0] or 0)
        if hop < hops:
            target = f"https://{request.host}{request.path}?hop={hop + 1}"
            return _account("redirectUrl", f"      <RedirectUrl>{escape(target)}</RedirectUrl>\n")
    if behaviour.get("redirect_url"):
        target = str(behaviour["redirect_url"]).format(**fill)
        return _account("redirectUrl", f"      <RedirectUrl>{escape(target)}</RedirectUrl>\n")
    if behaviour.get("redirect_addr"):
        target = str(behaviour["redirect_addr"]).format(**fill)
        if target.lower() != email.lower() or behaviour.get("redirect_same"):
            return _account(
                "redirectAddr", f"      <RedirectAddr>{escape(target)}</RedirectAddr>\n"
            )
    if not is_user(request, email):
        return _error(500, schema)
    settings = behaviour.get("settings", {})
    if mobilesync:
        return _mobilesync(request, email, settings)
    mapi = request.headers.get("x-mapihttpcapability", "").strip() not in ("", "0")
    return _settings(request, email, settings, mapi=mapi)


def _urls(request: EmulatorRequest, email: str, settings: Mapping[str, Any]) -> dict[str, str]:
    hosts = request.scenario_data.get("hosts", {})
    domain = str(request.scenario_data.get("domain", ""))
    mail = str(settings.get("mail_host", hosts.get("mail", {}).get("name", f"mail.{domain}")))
    guid = str(uuid.uuid5(uuid.NAMESPACE_DNS, email.lower()))
    urls = {
        "mail_host": mail,
        "mailbox": f"{guid}@{domain}",
        "ews_url": f"https://{mail}/EWS/Exchange.asmx",
        "eas_url": f"https://{mail}/Microsoft-Server-ActiveSync",
        "oab_url": f"https://{mail}/OAB/{guid}/",
        "ecp_url": f"https://{mail}/ecp/",
        "owa_url": f"https://{mail}/owa/",
        "mapi_emsmdb": f"https://{mail}/mapi/emsmdb/?MailboxId={guid}@{domain}",
        "mapi_nspi": f"https://{mail}/mapi/nspi/?MailboxId={guid}@{domain}",
    }
    for key in urls:
        if key in settings:
            urls[key] = str(settings[key]).format(domain=domain, mail=mail)
    # "ASUrl (POX)": the Availability service, an EWS endpoint (Microsoft's example response
    # has ASUrl = OOFUrl = the EWS URL).
    urls["availability_url"] = str(settings.get("availability_url", urls["ews_url"])).format(
        domain=domain, mail=mail
    )
    return urls


def _element(name: str, value: str, indent: str = "        ") -> str:
    return f"{indent}<{name}>{escape(value)}</{name}>\n" if value else ""


def _settings(
    request: EmulatorRequest, email: str, settings: Mapping[str, Any], *, mapi: bool
) -> EmulatorResponse:
    u = _urls(request, email, settings)
    local = email.partition("@")[0]
    legacy = f"/o=rca-lab/ou=Exchange Administrative Group/cn=Recipients/cn={local}"
    user = (
        "    <User>\n"
        f"      <DisplayName>{escape(local)}</DisplayName>\n"
        f"      <LegacyDN>{escape(legacy)}</LegacyDN>\n"
        f"      <AutoDiscoverSMTPAddress>{escape(email)}</AutoDiscoverSMTPAddress>\n"
        "    </User>\n"
    )
    services = (
        _element("ASUrl", u["availability_url"]) + _element("EwsUrl", u["ews_url"])
        + _element("EmwsUrl", u["ews_url"]) + _element("EcpUrl", u["ecp_url"])
        + _element("OOFUrl", u["ews_url"]) + _element("OABUrl", u["oab_url"])
    )  # fmt: skip
    blocks = (
        "      <Protocol>\n        <Type>EXCH</Type>\n"
        + _element("Server", u["mailbox"])
        + _element("ServerDN", f"{legacy}/cn=Configuration")
        + services
        + "      </Protocol>\n"
    )
    if settings.get("expr", True):
        blocks += (
            "      <Protocol>\n        <Type>EXPR</Type>\n"
            + _element("Server", u["mail_host"])
            + "        <SSL>On</SSL>\n        <AuthPackage>Ntlm</AuthPackage>\n"
            + services
            + "      </Protocol>\n"
        )
    blocks += (
        "      <Protocol>\n        <Type>WEB</Type>\n        <External>\n"
        f'          <OWAUrl AuthenticationMethod="Basic, Fba">{escape(u["owa_url"])}</OWAUrl>\n'
        "        </External>\n      </Protocol>\n"
    )
    if mapi:
        blocks += (
            '      <Protocol Type="mapiHttp" Version="1">\n'
            "        <MailStore>\n"
            + _element("InternalUrl", u["mapi_emsmdb"], "          ")
            + _element("ExternalUrl", u["mapi_emsmdb"], "          ")
            + "        </MailStore>\n        <AddressBook>\n"
            + _element("InternalUrl", u["mapi_nspi"], "          ")
            + _element("ExternalUrl", u["mapi_nspi"], "          ")
            + "        </AddressBook>\n      </Protocol>\n"
        )
    imap_port = int(settings.get("imap_port", 993))
    blocks += (
        "      <Protocol>\n        <Type>IMAP</Type>\n"
        + _element("Server", u["mail_host"])
        + f"        <Port>{imap_port}</Port>\n"
        + f"        <Encryption>{'SSL' if imap_port == 993 else 'TLS'}</Encryption>\n"
        + _element("LoginName", email)
        + "      </Protocol>\n"
        "      <Protocol>\n        <Type>SMTP</Type>\n"
        + _element("Server", u["mail_host"])
        + "        <Port>587</Port>\n        <Encryption>TLS</Encryption>\n"
        + _element("LoginName", email)
        + "      </Protocol>\n"
    )
    return _account("settings", blocks, user=user)


def _mobilesync(
    request: EmulatorRequest, email: str, settings: Mapping[str, Any]
) -> EmulatorResponse:
    u = _urls(request, email, settings)
    local = email.partition("@")[0]
    return _xml(
        f'<Autodiscover xmlns="{_RESPONSE_NS}">\n  <Response xmlns="{_MOBILESYNC_NS}">\n'
        "    <Culture>en:us</Culture>\n"
        f"    <User>\n      <DisplayName>{escape(local)}</DisplayName>\n"
        f"      <EMailAddress>{escape(email)}</EMailAddress>\n    </User>\n"
        "    <Action>\n      <Settings>\n        <Server>\n"
        "          <Type>MobileSync</Type>\n"
        f"          <Url>{escape(u['eas_url'])}</Url>\n"
        f"          <Name>{escape(u['eas_url'])}</Name>\n"
        "        </Server>\n      </Settings>\n    </Action>\n  </Response>\n</Autodiscover>\n"
    )


def autodiscover_json(request: EmulatorRequest) -> EmulatorResponse:
    """``/autodiscover/autodiscover.json`` (Autodiscover v2; see the module docstring)."""
    behaviour = behaviour_for(request)
    v2 = behaviour.get("v2", True)
    if not _serves(request, behaviour) or request.entry is None or v2 is False:
        return _text(404, "404 - File or directory not found.\n")
    rest = request.path[len("/autodiscover/autodiscover.json") :].strip("/")
    email = ""
    if rest.lower().startswith("v1.0/"):
        email = unquote(rest[len("v1.0/") :])
    email = email or (request.query.get("Email") or [""])[0]
    protocol = (request.query.get("Protocol") or request.query.get("protocol") or [""])[0]
    canonical = {p.lower(): p for p in _V2_PROTOCOLS}.get(protocol.lower())
    if canonical is None:
        message = (
            f"The given protocol value '{protocol}' is invalid. Supported values are "
            f"'{', '.join(_V2_PROTOCOLS)}'"
        )
        return _json(400, {"ErrorCode": "InvalidProtocol", "ErrorMessage": message})
    if not email or "@" not in email:
        return _json(
            400, {"ErrorCode": "InvalidUser", "ErrorMessage": "The email address is invalid"}
        )
    u = _urls(request, email, behaviour.get("settings", {}))
    answers = {
        "AutodiscoverV1": f"https://{request.host}/Autodiscover/Autodiscover.xml",
        "Ews": u["ews_url"],
        "ActiveSync": u["eas_url"],
        "Rest": f"https://{u['mail_host']}/api",
    }
    if isinstance(v2, Mapping):
        domain = str(request.scenario_data.get("domain", ""))
        answers.update({str(k): str(v).format(domain=domain) for k, v in v2.items()})
    return _json(200, {"Protocol": canonical, "Url": answers[canonical]})


ROUTES: dict[str, Handler] = {
    "/autodiscover/autodiscover.xml": autodiscover_xml,
    "/autodiscover/autodiscover.json": autodiscover_json,
}
"""Path prefix -> handler, merged into ``analyzer.lab.emulator.ROUTES``."""
