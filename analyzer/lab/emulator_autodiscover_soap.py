"""SOAP Autodiscover of the emulator: ``GetUserSettings`` at ``/autodiscover/autodiscover.svc``.

Exchange 2010 and later answer Autodiscover in SOAP too ([MS-OXWSADISC]); EWS clients such
as exchangelib use it instead of the POX ``autodiscover.xml``. ``POST`` a SOAP 1.1 envelope
holding ``GetUserSettingsRequestMessage`` (after authentication, as IIS asks for it) and get
``GetUserSettingsResponseMessage``: per user, the settings asked for that this lab knows
(``UserSettings``, all ``StringSetting``), ``SettingIsNotAvailable`` for the others it knows
the names of, ``InvalidSetting`` for names it does not know, and ``InvalidUser`` for an
address that is no mailbox here. The shapes follow "GetUserSettings operation (SOAP)" and
"UserSettingError (SOAP)" in Microsoft's EWS reference.

The scenario's ``autodiscover`` behaviour applies as to the POX service (``answer``,
``by_role``, ``status``, and the URL ``settings``), see :mod:`analyzer.lab.emulator_autodiscover`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from xml.sax.saxutils import escape

from analyzer.lab.emulator_auth import authenticate, is_user
from analyzer.lab.emulator_autodiscover import _serves, _urls, behaviour_for

if TYPE_CHECKING:
    from analyzer.lab.emulator_http import EmulatorRequest, EmulatorResponse, Handler

__all__ = ["ROUTES", "autodiscover_svc"]

_SOAP: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_ADDRESSING: Final = "http://www.w3.org/2005/08/addressing"
_AUTODISCOVER: Final = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
_ACTION: Final = f"{_AUTODISCOVER}/Autodiscover/GetUserSettingsResponse"
#: What Exchange 2019 lists in EwsSupportedSchemas.
_SCHEMAS: Final = (
    "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, Exchange2010_SP2, "
    "Exchange2013, Exchange2013_SP1, Exchange2015, Exchange2016"
)
#: Setting names [MS-OXWSADISC] defines that this lab has no value for.
_NOT_AVAILABLE: Final = frozenset({
    "UserDeploymentId", "InternalRpcClientServer", "InternalEcpVoicemailUrl",
    "InternalEcpEmailSubscriptionsUrl", "InternalEcpTextMessagingUrl",
    "InternalEcpDeliveryReportUrl", "InternalEcpRetentionPolicyTagsUrl",
    "InternalEcpPublishingUrl", "InternalUMUrl", "InternalWebClientUrls", "PublicFolderServer",
    "ActiveDirectoryServer", "EcpVoicemailUrlFragment", "EcpEmailSubscriptionsUrlFragment",
    "EcpTextMessagingUrlFragment", "EcpDeliveryReportUrlFragment",
    "EcpRetentionPolicyTagsUrlFragment", "EcpPublishingUrlFragment", "ExternalEcpVoicemailUrl",
    "ExternalEcpEmailSubscriptionsUrl", "ExternalEcpTextMessagingUrl",
    "ExternalEcpDeliveryReportUrl", "ExternalEcpRetentionPolicyTagsUrl",
    "ExternalEcpPublishingUrl", "ExternalUMUrl", "ExternalWebClientUrls",
    "CrossOrganizationSharingEnabled", "AlternateMailboxes", "InternalPop3Connections",
    "ExternalPop3Connections", "InternalImap4Connections", "ExternalImap4Connections",
    "InternalSmtpConnections", "ExternalSmtpConnections", "InternalServerExclusiveConnect",
    "ExternalServerExclusiveConnect", "ExchangeRpcUrl", "ShowGalAsDefaultView",
    "InteropExternalEwsUrl", "ExternalEwsVersion", "InteropExternalEwsVersion",
    "MobileMailboxPolicyInterop", "GroupingInformation", "UserMSOnline",
})  # fmt: skip


def _response(status: int, body: str) -> EmulatorResponse:
    # Imported when used (see analyzer.lab.emulator_autodiscover._response).
    from analyzer.lab.emulator_http import EmulatorResponse  # noqa: PLC0415

    xml = (
        f'<s:Envelope xmlns:s="{_SOAP}" xmlns:a="{_ADDRESSING}"><s:Header>'
        f'<a:Action s:mustUnderstand="1">{_ACTION}</a:Action></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )
    return EmulatorResponse(status=status, headers=(("Content-Type", "text/xml; charset=utf-8"),),
                            body=xml.encode())  # fmt: skip


def _fault(text: str) -> EmulatorResponse:
    return _response(500, f'<s:Fault><faultcode>s:Client</faultcode><faultstring xml:lang="en-US">'
                          f"{escape(text)}</faultstring></s:Fault>")  # fmt: skip


def _read(body: bytes) -> tuple[list[str], list[str]] | None:
    """(mailboxes, setting names) of a GetUserSettings request, or None when unreadable."""
    import defusedxml.ElementTree as DET  # noqa: N814, PLC0415

    if len(body) > 64 * 1024:
        return None
    try:
        root = DET.fromstring(body, forbid_dtd=True)
    except Exception:  # noqa: BLE001 - an unreadable request is a client fault
        return None
    a = f"{{{_AUTODISCOVER}}}"
    request = root.find(f"{{{_SOAP}}}Body/{a}GetUserSettingsRequestMessage/{a}Request")
    if root.tag != f"{{{_SOAP}}}Envelope" or request is None:
        return None
    users = [str(m.text or "").strip() for m in request.iter(f"{a}Mailbox")]
    names = [str(s.text or "").strip() for s in request.iter(f"{a}Setting")]
    return users, names


def _values(request: EmulatorRequest, email: str, behaviour: dict[str, Any]) -> dict[str, str]:
    u = _urls(request, email, behaviour.get("settings", {}))
    local = email.partition("@")[0]
    legacy = f"/o=rca-lab/ou=Exchange Administrative Group/cn=Recipients/cn={local}"
    return {
        "UserDisplayName": local,
        "UserDN": legacy,
        "AutoDiscoverSMTPAddress": email,
        "InternalMailboxServer": u["mailbox"],
        "InternalMailboxServerDN": f"{legacy}/cn=Configuration",
        "MailboxDN": f"{legacy}/cn=Configuration",
        "ExternalMailboxServer": u["mail_host"],
        "ExternalMailboxServerRequiresSSL": "True",
        "ExternalMailboxServerAuthenticationMethods": "Ntlm",
        "CasVersion": "15.02.1544.004",
        "EwsSupportedSchemas": _SCHEMAS,
        "InternalEwsUrl": u["ews_url"],
        "ExternalEwsUrl": u["ews_url"],
        "InternalEcpUrl": u["ecp_url"],
        "ExternalEcpUrl": u["ecp_url"],
        "InternalOABUrl": u["oab_url"],
        "ExternalOABUrl": u["oab_url"],
        "MapiHttpEnabled": "True",
    }


def _user_response(request: EmulatorRequest, email: str, names: list[str],
                   behaviour: dict[str, Any]) -> str:  # fmt: skip
    if not is_user(request, email):
        return ("<UserResponse><ErrorCode>InvalidUser</ErrorCode><ErrorMessage>Invalid user: "
                f"'{escape(email)}'</ErrorMessage><RedirectTarget i:nil=\"true\"/>"
                "<UserSettingErrors/><UserSettings/></UserResponse>")  # fmt: skip
    values = _values(request, email, behaviour)
    settings = errors = ""
    for name in dict.fromkeys(names):
        if name in values and values[name]:
            settings += (f'<UserSetting i:type="StringSetting"><Name>{escape(name)}</Name>'
                         f"<Value>{escape(values[name])}</Value></UserSetting>")  # fmt: skip
            continue
        code = "SettingIsNotAvailable" if name in _NOT_AVAILABLE else "InvalidSetting"
        errors += (f"<UserSettingError><ErrorCode>{code}</ErrorCode><ErrorMessage>User setting "
                   f"'{escape(name)}' is not available. </ErrorMessage><SettingName>"
                   f"{escape(name)}</SettingName></UserSettingError>")  # fmt: skip
    return ("<UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage>"
            f'<RedirectTarget i:nil="true"/><UserSettingErrors>{errors}</UserSettingErrors>'
            f"<UserSettings>{settings}</UserSettings></UserResponse>")  # fmt: skip


def autodiscover_svc(request: EmulatorRequest) -> EmulatorResponse:
    """``/autodiscover/autodiscover.svc`` (see the module docstring)."""
    behaviour = behaviour_for(request)
    if not _serves(request, behaviour) or request.entry is None:
        return _response(404, "")
    if "status" in behaviour:
        return _response(int(behaviour["status"]), "")
    auth = authenticate(request)
    if auth.response is not None:
        return auth.response
    if request.method != "POST":
        return _fault("The request must be a SOAP POST.")
    parsed = _read(request.body)
    if parsed is None:
        return _fault("The request is not a GetUserSettings request.")
    users, names = parsed
    if not users:
        return _response(200, f'<GetUserSettingsResponseMessage xmlns="{_AUTODISCOVER}">'
                              '<Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
                              "<ErrorCode>InvalidRequest</ErrorCode><ErrorMessage>No users "
                              "were given.</ErrorMessage><UserResponses/></Response>"
                              "</GetUserSettingsResponseMessage>")  # fmt: skip
    responses = "".join(_user_response(request, u, names, behaviour) for u in users)
    return _response(
        200,
        f'<GetUserSettingsResponseMessage xmlns="{_AUTODISCOVER}">'
        '<Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<ErrorCode>NoError</ErrorCode><ErrorMessage/>"
        f"<UserResponses>{responses}</UserResponses></Response></GetUserSettingsResponseMessage>",
    )


ROUTES: dict[str, Handler] = {"/autodiscover/autodiscover.svc": autodiscover_svc}
"""Path prefix -> handler, merged into ``analyzer.lab.emulator.ROUTES``."""
