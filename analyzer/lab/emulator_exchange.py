"""Exchange client endpoints of the emulator: EWS, ActiveSync, RPC over HTTP, MAPI over HTTP.

Each handler authenticates like IIS in front of Exchange (:mod:`analyzer.lab.emulator_auth`)
and then answers the few requests the login probes make, on the wire as Exchange does:

- ``/EWS/Exchange.asmx``: SOAP ``GetFolder`` of a distinguished folder → ``NoError`` with the
  folder's counts and ``ServerVersionInfo``; ``GetUserAvailability`` of a mailbox → its
  (empty) free/busy view and working hours, ``ErrorMailRecipientNotFound`` for an address
  that is no mailbox here; ``GetUserOofSettings`` of the caller's own mailbox → OOF
  disabled, another user's → the "User is not mailbox owner" fault. Faults come as EWS sends
  them: HTTP 500 with the ResponseCode in the fault's detail.
- ``/Microsoft-Server-ActiveSync``: ``OPTIONS`` (``MS-ASProtocolVersions``/``Commands``),
  ``FolderSync`` and ``Provision`` in WBXML (:mod:`analyzer.protocols.wbxml`).
- ``/rpc/rpcproxy.dll?<server>:<port>``: the RPC over HTTP v2 virtual connection
  (:mod:`analyzer.protocols.rts`): CONN/A1 on ``RPC_OUT_DATA`` and CONN/B1 on ``RPC_IN_DATA`` →
  CONN/A3 and CONN/C2 on the OUT channel; a port that is "unreachable behind the proxy"
  answers ``503 RPC Error: 6BA`` (1722, RPC_S_SERVER_UNAVAILABLE).
- ``/mapi/emsmdb/`` and ``/mapi/nspi/``: ``X-RequestType`` PING, Connect/Disconnect,
  Bind/Unbind with ``X-ResponseCode``.

What a scenario can change, in ``Scenario.emulator`` (every key optional):

``deny``
    addresses whose correct password is refused on every endpoint (401), as a server
    holding another password would.
``ews``
    ``{"blocked_users": [...]}``: 401 on EWS only (Set-CASMailbox -EwsEnabled $false).
``availability`` / ``oof``
    ``{"response_code": "ErrorFreeBusyGenerationFailed", "message": "..."}``: GetUserAvailability
    (GetUserOofSettings) answers that error response; ``{"fault": "ErrorServerBusy"}``: that
    SOAP fault instead (ErrorServerBusy with a BackOffMilliseconds of 30 s).
``activesync``
    ``{"provision": true}``: 449 until the device has provisioned; ``{"status": 503}``: that
    status for every authenticated request; ``{"redirect": URL}``: 451 with X-MS-Location.
``rpc``
    ``{"unreachable_ports": [6004]}``: those ports fail behind the proxy (503, 0x6BA).
``mapi``
    ``{"response_code": {"Connect": 11}}``: that X-ResponseCode for the request type.

``ssl_offloading``
    ``true``: the endpoints answer over plain http too (by default http gets 403.4, "SSL
    required", as from IIS).

``auth`` (the schemes per path, e.g. ``{"/rpc/": ["Basic"]}``) is emulator_auth's.
"""

from __future__ import annotations

import struct
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from xml.sax.saxutils import escape

from analyzer.lab.emulator_auth import (
    AuthResult,
    authenticate,
    is_user,
    offered_methods,
    unauthorized,
)
from analyzer.lab.emulator_http import EmulatorResponse
from analyzer.protocols import rts, wbxml

if TYPE_CHECKING:
    from analyzer.lab.emulator_http import EmulatorRequest, Handler

__all__ = ["ROUTES"]

SERVER_VERSION: Final = ("15", "2", "1544", "4")  # Exchange 2019 CU14
_PASSWORD_METHODS: Final = ("Basic", "NTLM", "Negotiate", "Bearer")
#: How long the OUT channel waits for its IN channel (the client opens both at once).
_CHANNEL_WAIT_S: Final = 10.0
#: How long an IN channel is held open after CONN/B1 (the client closes it sooner).
_IN_HOLD_S: Final = 30.0
TEMPORARY_POLICY_KEY: Final = "3942919513"
FINAL_POLICY_KEY: Final = "1307199584"


def _behaviour(request: EmulatorRequest, area: str) -> Mapping[str, Any]:
    value = request.behaviour.get(area, {})
    return value if isinstance(value, Mapping) else {}


def _login(request: EmulatorRequest, allowed: tuple[str, ...] = _PASSWORD_METHODS) -> AuthResult:
    """emulator_auth's verdict, with the scenario's ``deny`` list applied on top.

    Over plain http the answer is IIS's "403.4 SSL required" (Exchange's virtual
    directories require SSL), unless the scenario's ``ssl_offloading`` is true.
    """
    if (request.headers.get("x-forwarded-proto") == "http"
            and not request.behaviour.get("ssl_offloading")):  # fmt: skip
        return AuthResult(user=None, response=EmulatorResponse(
            status=403, reason="Forbidden", headers=(("Content-Type", "text/html"),),
            body=b"<html><body>403.4 - SSL is required to view this resource.</body></html>",
        ))  # fmt: skip
    auth = authenticate(request, allowed=allowed)
    denied = {str(a).lower() for a in request.behaviour.get("deny", [])}
    if auth.ok and auth.user is not None and auth.user.lower() in denied:
        offered = offered_methods(request, allowed)
        return AuthResult(user=None, response=unauthorized(request, offered))
    return auth


# --- EWS ----------------------------------------------------------------------------------------

_SOAP: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_TYPES: Final = "http://schemas.microsoft.com/exchange/services/2006/types"
_MESSAGES: Final = "http://schemas.microsoft.com/exchange/services/2006/messages"
_ERRORS: Final = "http://schemas.microsoft.com/exchange/services/2006/errors"
_FOLDERS: Final = {
    "inbox": "Inbox", "drafts": "Drafts", "sentitems": "Sent Items",
    "deleteditems": "Deleted Items", "calendar": "Calendar", "contacts": "Contacts",
    "msgfolderroot": "Top of Information Store", "root": "",
}  # fmt: skip


def _soap(body: str, status: int = 200) -> EmulatorResponse:
    major, minor, build, revision = SERVER_VERSION
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<s:Envelope xmlns:s="{_SOAP}"><s:Header>'
        f'<h:ServerVersionInfo MajorVersion="{major}" MinorVersion="{minor}" '
        f'MajorBuildNumber="{build}" MinorBuildNumber="{revision}" Version="V2017_07_11" '
        f'xmlns:h="{_TYPES}" xmlns="{_TYPES}"/></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )
    return EmulatorResponse(
        status=status,
        headers=(("Content-Type", "text/xml; charset=utf-8"), ("X-FEServer", "MAIL"),
                 ("request-id", str(uuid.uuid4()))),  # fmt: skip
        body=xml.encode(),
    )


#: Fault texts, as EWS words them.
_FAULT_TEXT: Final = {
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorInvalidRequest": "The request is invalid.",
    "ErrorSchemaValidation": "The request failed schema validation.",
    "ErrorInternalServerError": "An internal server error occurred. The operation failed.",
    "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
}


def _fault(code: str, text: str = "", back_off_ms: int | None = None) -> EmulatorResponse:
    """A SOAP fault as EWS sends it: HTTP 500, the ResponseCode in the fault's detail (and
    for ErrorServerBusy the BackOffMilliseconds a client must wait)."""
    text = text or _FAULT_TEXT.get(code, code)
    extra = ""
    if back_off_ms is not None:
        extra = (f'<t:MessageXml xmlns:t="{_TYPES}"><t:Value Name="BackOffMilliseconds">'
                 f"{back_off_ms}</t:Value></t:MessageXml>")  # fmt: skip
    return _soap(
        f'<s:Fault><faultcode xmlns:a="{_TYPES}">a:{escape(code)}</faultcode>'
        f'<faultstring xml:lang="en-US">{escape(text)}</faultstring><detail>'
        f'<e:ResponseCode xmlns:e="{_ERRORS}">{escape(code)}</e:ResponseCode>'
        f'<e:Message xmlns:e="{_ERRORS}">{escape(text)}</e:Message>{extra}</detail></s:Fault>',
        status=500,
    )


def _configured_failure(behaviour: Mapping[str, Any]) -> EmulatorResponse | None:
    """The scenario's ``{"fault": code}`` for an operation, as a SOAP fault."""
    code = behaviour.get("fault")
    if not code:
        return None
    back_off = 30000 if code == "ErrorServerBusy" else None
    return _fault(str(code), str(behaviour.get("message", "")), back_off)


def _body_operation(body: bytes) -> Any | None:
    """The first element of the SOAP body (the operation), or None when unreadable."""
    import defusedxml.ElementTree as DET  # noqa: N814, PLC0415

    if len(body) > 512 * 1024:  # EWS: ErrorRequestStreamTooBig above 400 KB
        return None
    try:
        root = DET.fromstring(body, forbid_dtd=True)
    except Exception:  # noqa: BLE001 - any unreadable body is a schema error, as from EWS
        return None
    soap_body = root.find(f"{{{_SOAP}}}Body")
    if root.tag != f"{{{_SOAP}}}Envelope" or soap_body is None or len(soap_body) == 0:
        return None
    return soap_body[0]


def ews(request: EmulatorRequest) -> EmulatorResponse:
    """EWS: GetFolder, GetUserAvailability and GetUserOofSettings, after authentication."""
    auth = _login(request)
    if auth.response is not None:
        return auth.response
    behaviour = _behaviour(request, "ews")
    blocked = {str(a).lower() for a in behaviour.get("blocked_users", [])}
    if auth.user is not None and auth.user.lower() in blocked:
        # Set-CASMailbox -EwsEnabled $false: the server refuses the (valid) login for EWS.
        return EmulatorResponse(status=401, headers=(("Content-Type", "text/html"),),
                                body=b"401 - Unauthorized: EWS is disabled for this mailbox")
    if request.method != "POST":
        return EmulatorResponse.text(200, "You have created a service.\n")
    operation = _body_operation(request.body)
    if operation is None:
        return _fault("ErrorSchemaValidation")
    name = str(operation.tag)
    user = auth.user or ""
    if name == f"{{{_MESSAGES}}}GetFolder":
        return _get_folder(request, operation, user)
    if name == f"{{{_MESSAGES}}}GetUserAvailabilityRequest":
        return (_configured_failure(_behaviour(request, "availability"))
                or _availability(request, operation))  # fmt: skip
    if name == f"{{{_MESSAGES}}}GetUserOofSettingsRequest":
        return _configured_failure(_behaviour(request, "oof")) or _oof(request, operation, user)
    return _fault("ErrorInvalidRequest")


def _get_folder_error(code: str, text: str) -> EmulatorResponse:
    return _soap(
        f'<m:GetFolderResponse xmlns:m="{_MESSAGES}"><m:ResponseMessages>'
        f'<m:GetFolderResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}'
        f"</m:MessageText><m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0"
        "</m:DescriptiveLinkKey><m:Folders/></m:GetFolderResponseMessage></m:ResponseMessages>"
        "</m:GetFolderResponse>"
    )


def _get_folder(request: EmulatorRequest, operation: Any, user: str) -> EmulatorResponse:
    """GetFolder of a distinguished folder of the caller's mailbox (another mailbox named in
    the request: ErrorAccessDenied, or ErrorNonExistentMailbox when there is none)."""
    ids = operation.find(f"{{{_MESSAGES}}}FolderIds")
    wanted = None if ids is None else ids.find(f"{{{_TYPES}}}DistinguishedFolderId")
    if wanted is None:
        return _get_folder_error("ErrorInvalidRequest", "The request is invalid.")
    owner = str(wanted.findtext(f"{{{_TYPES}}}Mailbox/{{{_TYPES}}}EmailAddress") or "").strip()
    if owner and owner.lower() != user.lower():
        if is_user(request, owner):
            return _get_folder_error("ErrorAccessDenied", _FAULT_TEXT["ErrorAccessDenied"])
        return _get_folder_error("ErrorNonExistentMailbox", "No mailbox with such guid.")
    folder = str(wanted.get("Id", "")).lower()
    name = _FOLDERS.get(folder)
    if name is None:
        return _get_folder_error("ErrorFolderNotFound",
                                 "The specified folder could not be found in the store.")
    folder_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{user}/{folder}").hex
    return _soap(
        f'<m:GetFolderResponse xmlns:m="{_MESSAGES}" xmlns:t="{_TYPES}"><m:ResponseMessages>'
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        "</m:ResponseCode><m:Folders><t:Folder>"
        f'<t:FolderId Id="{folder_id}" ChangeKey="AQAAAA=="/>'
        f"<t:DisplayName>{escape(name)}</t:DisplayName><t:TotalCount>0</t:TotalCount>"
        "<t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount>"
        "</t:Folder></m:Folders></m:GetFolderResponseMessage></m:ResponseMessages>"
        "</m:GetFolderResponse>"
    )


def _text_at(operation: Any, path: str) -> str:
    """The text at ``path`` below ``operation``: ``/``-separated local names, in the types
    namespace except ``MailboxDataArray`` (a messages-namespace container)."""
    element = operation
    for name in path.split("/"):
        ns = _MESSAGES if name == "MailboxDataArray" else _TYPES
        element = element.find(f"{{{ns}}}{name}") if element is not None else None
    return "" if element is None else str(element.text or "").strip()


def _minutes(start: str, end: str) -> float:
    """Minutes from ``start`` to ``end`` (xs:dateTime; ValueError when unreadable)."""
    from datetime import datetime  # noqa: PLC0415

    def read(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)

    return (read(end) - read(start)).total_seconds() / 60


_TRANSITION: Final = (
    "<Bias>0</Bias><Time>00:00:00</Time><DayOrder>1</DayOrder><Month>1</Month>"
    "<DayOfWeek>Sunday</DayOfWeek>"
)
#: Monday to Friday, 08:00 to 17:00 UTC.
_WORKING_HOURS: Final = (
    f'<WorkingHours xmlns="{_TYPES}"><TimeZone><Bias>0</Bias><StandardTime>{_TRANSITION}'
    f"</StandardTime><DaylightTime>{_TRANSITION}</DaylightTime></TimeZone><WorkingPeriodArray>"
    "<WorkingPeriod><DayOfWeek>Monday Tuesday Wednesday Thursday Friday</DayOfWeek>"
    "<StartTimeInMinutes>480</StartTimeInMinutes><EndTimeInMinutes>1020</EndTimeInMinutes>"
    "</WorkingPeriod></WorkingPeriodArray></WorkingHours>"
)


def _availability(request: EmulatorRequest, operation: Any) -> EmulatorResponse:
    """GetUserAvailability of one mailbox: an empty calendar (all free) and working hours;
    ErrorMailRecipientNotFound for an address that is no mailbox here; the scenario's
    ``{"response_code": ..., "message": ...}`` as the mailbox's error."""
    address = _text_at(operation, "MailboxDataArray/MailboxData/Email/Address")
    start = _text_at(operation, "FreeBusyViewOptions/TimeWindow/StartTime")
    end = _text_at(operation, "FreeBusyViewOptions/TimeWindow/EndTime")
    interval = _text_at(operation, "FreeBusyViewOptions/MergedFreeBusyIntervalInMinutes")
    view = _text_at(operation, "FreeBusyViewOptions/RequestedView") or "FreeBusy"
    interval = interval or "30"
    if not address or not start or not end or not interval.isdigit() or int(interval) < 5:
        return _fault("ErrorSchemaValidation")
    try:
        minutes = _minutes(start, end)
    except ValueError:
        return _fault("ErrorSchemaValidation")
    if minutes <= 0 or minutes > 42 * 24 * 60:  # the default limit is 42 days
        return _availability_message("Error", "ErrorTimeIntervalTooBig",
                                     "The time window is larger than the allowed limit.")
    configured = _behaviour(request, "availability")
    if configured.get("response_code"):
        code = str(configured["response_code"])
        return _availability_message("Error", code, str(configured.get("message") or code))
    if not is_user(request, address):
        return _availability_message("Error", "ErrorMailRecipientNotFound",
                                     "Mail recipient not found in the directory.")
    merged = ""
    if "Merged" in view:
        merged = f'<MergedFreeBusy xmlns="{_TYPES}">{"0" * int(minutes // int(interval))}'
        merged += "</MergedFreeBusy>"
    return _availability_message("Success", "NoError", "", (
        f'<FreeBusyView><FreeBusyViewType xmlns="{_TYPES}">{escape(view)}</FreeBusyViewType>'
        f'{merged}<CalendarEventArray xmlns="{_TYPES}"/>{_WORKING_HOURS}</FreeBusyView>'
    ))  # fmt: skip


def _availability_message(
    response_class: str, code: str, text: str, view: str = ""
) -> EmulatorResponse:
    message = f"<MessageText>{escape(text)}</MessageText>" if response_class != "Success" else ""
    return _soap(
        f'<GetUserAvailabilityResponse xmlns="{_MESSAGES}"><FreeBusyResponseArray>'
        f'<FreeBusyResponse><ResponseMessage ResponseClass="{response_class}">{message}'
        f"<ResponseCode>{escape(code)}</ResponseCode></ResponseMessage>{view}"
        "</FreeBusyResponse></FreeBusyResponseArray></GetUserAvailabilityResponse>"
    )


def _oof(request: EmulatorRequest, operation: Any, user: str) -> EmulatorResponse:
    """GetUserOofSettings of the caller's own mailbox (OOF disabled); another user's is the
    "User is not mailbox owner" fault of the EWS reference."""
    mailbox = operation.find(f"{{{_TYPES}}}Mailbox")
    address = "" if mailbox is None else str(mailbox.findtext(f"{{{_TYPES}}}Address") or "")
    configured = _behaviour(request, "oof").get("response_code")
    if not address.strip():
        return _fault("ErrorSchemaValidation")
    if address.strip().lower() != user.lower():
        return _soap(
            "<s:Fault><faultcode>s:Client</faultcode><faultstring>Microsoft.Exchange.Data."
            "Storage.AccessDeniedException: User is not mailbox owner.</faultstring>"
            f'<detail><ErrorCode xmlns="{_MESSAGES}">-2146233088</ErrorCode></detail>'
            "</s:Fault>",
            status=500,
        )
    if configured:
        text = str(_behaviour(request, "oof").get("message", "")) or str(configured)
        return _soap(
            f'<GetUserOofSettingsResponse xmlns="{_MESSAGES}"><ResponseMessage '
            f'ResponseClass="Error"><MessageText>{escape(text)}</MessageText><ResponseCode>'
            f"{escape(str(configured))}</ResponseCode></ResponseMessage>"
            "</GetUserOofSettingsResponse>"
        )
    return _soap(
        f'<GetUserOofSettingsResponse xmlns="{_MESSAGES}"><ResponseMessage '
        'ResponseClass="Success"><ResponseCode>NoError</ResponseCode></ResponseMessage>'
        f'<OofSettings xmlns="{_TYPES}"><OofState>Disabled</OofState><ExternalAudience>All'
        "</ExternalAudience><Duration><StartTime>2026-01-01T00:00:00Z</StartTime><EndTime>"
        "2026-01-02T00:00:00Z</EndTime></Duration><InternalReply><Message/></InternalReply>"
        "<ExternalReply><Message/></ExternalReply></OofSettings>"
        "<AllowExternalOof>All</AllowExternalOof></GetUserOofSettingsResponse>"
    )


# --- ActiveSync ---------------------------------------------------------------------------------

AS_VERSIONS: Final = "2.0,2.1,2.5,12.0,12.1,14.0,14.1,16.0,16.1"
AS_COMMANDS: Final = (
    "Sync,SendMail,SmartForward,SmartReply,GetAttachment,GetHierarchy,CreateCollection,"
    "DeleteCollection,MoveCollection,FolderSync,FolderCreate,FolderDelete,FolderUpdate,"
    "MoveItems,GetItemEstimate,MeetingResponse,Search,Settings,Ping,ItemOperations,Provision,"
    "ResolveRecipients,ValidateCert,Find"
)
_AS_FOLDERS: Final = (
    ("1", "0", "Inbox", "2"), ("2", "0", "Drafts", "3"), ("3", "0", "Deleted Items", "4"),
    ("4", "0", "Sent Items", "5"), ("5", "0", "Outbox", "6"), ("6", "0", "Calendar", "8"),
    ("7", "0", "Contacts", "9"),
)  # fmt: skip


def _fh(name: str, text: str | None = None, *children: wbxml.Element) -> wbxml.Element:
    return wbxml.Element(tag=f"FolderHierarchy:{name}", text=text, children=children)


def _pv(name: str, text: str | None = None, *children: wbxml.Element) -> wbxml.Element:
    return wbxml.Element(tag=f"Provision:{name}", text=text, children=children)


def _wbxml(root: wbxml.Element, version: str) -> EmulatorResponse:
    return EmulatorResponse(
        status=200,
        headers=(("Content-Type", "application/vnd.ms-sync.wbxml"),
                 ("MS-Server-ActiveSync", "15.1"), ("MS-ASProtocolVersion", version)),
        body=wbxml.encode(root),
    )  # fmt: skip


def activesync(request: EmulatorRequest) -> EmulatorResponse:
    """ActiveSync: OPTIONS, FolderSync and Provision (see the module docstring)."""
    auth = _login(request)
    if auth.response is not None:
        return auth.response
    behaviour = _behaviour(request, "activesync")
    if "status" in behaviour:
        return EmulatorResponse.text(int(behaviour["status"]), "Service Unavailable\n")
    if request.method == "OPTIONS":
        # [MS-ASHTTP] section 4, the OPTIONS example (tests/fixtures/exchange), and SOGo
        # alike: Allow and Public, kept private.
        return EmulatorResponse(
            status=200,
            headers=(("Cache-Control", "private"), ("Allow", "OPTIONS,POST"),
                     ("MS-Server-ActiveSync", "15.1"), ("MS-ASProtocolVersions", AS_VERSIONS),
                     ("MS-ASProtocolCommands", AS_COMMANDS), ("Public", "OPTIONS,POST")),
        )  # fmt: skip
    if behaviour.get("redirect"):
        return EmulatorResponse(status=451, headers=(("X-MS-Location",
                                                      str(behaviour["redirect"])),))
    command = (request.query.get("Cmd") or [""])[0]
    version = request.headers.get("ms-asprotocolversion", "14.0")
    try:
        body = wbxml.decode(request.body) if request.body else None
    except wbxml.WbxmlError:
        return EmulatorResponse.text(400, "bad WBXML\n")
    if command == "Provision":
        return _provision(body, version)
    if command == "FolderSync":
        provisioned = request.headers.get("x-ms-policykey", "0") == FINAL_POLICY_KEY
        if behaviour.get("provision") and not provisioned:
            return EmulatorResponse(status=449, headers=(("Content-Type", "text/plain"),),
                                    body=b"Retry after sending a PROVISION command")
        adds = [
            _fh("Add", None, _fh("ServerId", sid), _fh("ParentId", parent),
                _fh("DisplayName", name), _fh("Type", kind))
            for sid, parent, name, kind in _AS_FOLDERS
        ]  # fmt: skip
        root = _fh("FolderSync", None, _fh("Status", "1"), _fh("SyncKey", "1"),
                   _fh("Changes", None, _fh("Count", str(len(adds))), *adds))  # fmt: skip
        return _wbxml(root, version)
    return EmulatorResponse.text(400, f"command {command!r} is not emulated\n")


def _provision(body: wbxml.Element | None, version: str) -> EmulatorResponse:
    """[MS-ASPROV] 3.2.5.1.1: first the policy and a temporary key; the acknowledgement
    (the temporary key with Status 1) gets the final key."""
    if body is None or body.tag != "Provision:Provision":
        return EmulatorResponse.text(400, "not a Provision request\n")
    key = body.findtext("Policies/Policy/PolicyKey")
    policy_type = body.findtext("Policies/Policy/PolicyType", "MS-EAS-Provisioning-WBXML")
    if key == TEMPORARY_POLICY_KEY:
        policy = _pv("Policy", None, _pv("PolicyType", policy_type), _pv("Status", "1"),
                     _pv("PolicyKey", FINAL_POLICY_KEY))  # fmt: skip
    else:
        doc = _pv("EASProvisionDoc", None, _pv("DevicePasswordEnabled", "0"))
        policy = _pv("Policy", None, _pv("PolicyType", policy_type), _pv("Status", "1"),
                     _pv("PolicyKey", TEMPORARY_POLICY_KEY), _pv("Data", None, doc))
    root = _pv("Provision", None, _pv("Status", "1"), _pv("Policies", None, policy))
    return _wbxml(root, version)


# --- RPC over HTTP ------------------------------------------------------------------------------


def _channels(request: EmulatorRequest) -> tuple[dict[bytes, threading.Event], threading.Lock]:
    state = request.state if request.state is not None else {}
    lock: threading.Lock = state.setdefault("rpc-lock", threading.Lock())
    table: dict[bytes, threading.Event] = state.setdefault("rpc-channels", {})
    return table, lock


def _event(request: EmulatorRequest, cookie: bytes) -> threading.Event:
    table, lock = _channels(request)
    with lock:
        if len(table) > 1000:
            table.clear()
        return table.setdefault(cookie, threading.Event())


def rpc_proxy(request: EmulatorRequest) -> EmulatorResponse:
    """RPC over HTTP v2: the virtual connection of [MS-RPCH] 3.2.3 (see the docstring)."""
    auth = _login(request, ("Basic", "NTLM", "Negotiate"))
    if auth.response is not None:
        return auth.response
    if request.method not in ("RPC_IN_DATA", "RPC_OUT_DATA"):
        return EmulatorResponse(status=200, headers=(("Content-Type", "text/html"),))
    _server, _, port_text = request.raw_query.rpartition(":")
    port = int(port_text) if port_text.isdigit() else 0
    unreachable = {int(p) for p in _behaviour(request, "rpc").get("unreachable_ports", [])}
    if port not in (6001, 6002, 6004) or port in unreachable:
        # [MS-RPCH] 3.2.3.5.11: the proxy could not reach the server: 503 "RPC Error: <hex>".
        return EmulatorResponse(status=503, reason="RPC Error: 6ba",
                                headers=(("Content-Type", "text/html"),),
                                body=b"RPC_S_SERVER_UNAVAILABLE")  # fmt: skip
    if request.method == "RPC_OUT_DATA":
        return _out_channel(request)
    return _in_channel(request)


def _out_channel(request: EmulatorRequest) -> EmulatorResponse:
    try:
        pdu = rts.parse_pdu(request.body)
        cookie = _cookie(pdu)
    except rts.RtsError:
        return EmulatorResponse.text(400, "not CONN/A1\n")
    body = rts.conn_a3()
    if _event(request, cookie).wait(_CHANNEL_WAIT_S):
        body += rts.conn_c2()
    return EmulatorResponse(status=200, reason="Success",
                            headers=(("Content-Type", "application/rpc"),), body=body)


def _in_channel(request: EmulatorRequest) -> EmulatorResponse:
    stream = request.stream
    data = request.body if stream is None else _read(stream, 104)
    try:
        cookie = _cookie(rts.parse_pdu(data))
    except rts.RtsError:
        return EmulatorResponse.text(400, "not CONN/B1\n")
    _event(request, cookie).set()
    if stream is not None:
        # Hold the IN channel as a proxy does, until the client goes away.
        deadline = time.monotonic() + _IN_HOLD_S
        while time.monotonic() < deadline and stream.read1(65536):
            pass
    return EmulatorResponse(status=200)


def _read(stream: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read1(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _cookie(pdu: rts.Pdu) -> bytes:
    """The virtual connection cookie (the first Cookie command of CONN/A1 and CONN/B1)."""
    for kind, value in pdu.commands:
        if kind == rts.COOKIE and isinstance(value, bytes):
            return value
    raise rts.RtsError("no virtual connection cookie")


# --- MAPI over HTTP -----------------------------------------------------------------------------


def _mapi_response(request_type: str, code: int, body: bytes = b"",
                   cookies: tuple[str, ...] = ()) -> EmulatorResponse:  # fmt: skip
    headers: list[tuple[str, str]] = [
        ("Content-Type", "application/mapi-http"), ("X-RequestType", request_type),
        ("X-ResponseCode", str(code)), ("X-ServerApplication", "Exchange/15.02.1544.004"),
        ("X-PendingPeriod", "15000"), ("X-ExpirationInfo", "1800000"),
    ]  # fmt: skip
    headers += [("Set-Cookie", c) for c in cookies]
    if code != 0 or request_type == "PING":
        return EmulatorResponse(status=200, headers=tuple(headers), body=body)
    started = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
    # [MS-OXCMAPIHTTP] 4.1: the DONE meta-tag repeats X-ResponseCode before the timings.
    meta = (b"PROCESSING\r\nDONE\r\nX-ResponseCode: 0\r\nX-ElapsedTime: 2\r\nX-StartTime: "
            + started + b"\r\n\r\n")  # fmt: skip
    return EmulatorResponse(status=200, headers=tuple(headers), body=meta + body)


def mapi(request: EmulatorRequest) -> EmulatorResponse:
    """MAPI over HTTP: PING, Connect/Disconnect (emsmdb), Bind/Unbind (nspi)."""
    auth = _login(request)
    if auth.response is not None:
        return auth.response
    request_type = request.headers.get("x-requesttype", "")
    endpoint = "emsmdb" if "/emsmdb" in request.path.lower() else "nspi"
    codes = _behaviour(request, "mapi").get("response_code", {})
    configured = codes.get(request_type) if isinstance(codes, Mapping) else None
    if request.method != "POST":
        return _mapi_response(request_type or "PING", 2)  # Invalid Verb
    if request_type.upper() == "PING":
        return _mapi_response("PING", 0)
    if configured is not None:
        return _mapi_response(request_type, int(configured), b"")
    ok = struct.pack("<II", 0, 0)
    if endpoint == "emsmdb" and request_type == "Connect":
        dn = request.body.split(b"\0", 1)[0].decode("ascii", "replace")
        if not dn.startswith("/o="):
            return _mapi_response(request_type, 12)  # Invalid Request Body
        display = (auth.user or "user").encode("utf-16-le") + b"\0\0"
        body = (ok + struct.pack("<III", 60_000, 5, 1000) + b"/o=rca-lab\0" + display
                + struct.pack("<I", 0))
        context = uuid.uuid4().hex
        return _mapi_response("Connect", 0, body,
                              (f"MapiContext={context}; path=/mapi/emsmdb/; secure",
                               "MapiSequence=1; path=/mapi/emsmdb/; secure"))  # fmt: skip
    if endpoint == "emsmdb" and request_type == "Disconnect":
        return _mapi_response("Disconnect", 0, ok + struct.pack("<I", 0))
    if endpoint == "nspi" and request_type == "Bind":
        body = ok + uuid.uuid4().bytes + struct.pack("<I", 0)
        context = uuid.uuid4().hex
        return _mapi_response("Bind", 0, body,
                              (f"MapiContext={context}; path=/mapi/nspi/; secure",
                               "MapiSequence=1; path=/mapi/nspi/; secure"))  # fmt: skip
    if endpoint == "nspi" and request_type == "Unbind":
        return _mapi_response("Unbind", 0, struct.pack("<II", 0, 1) + struct.pack("<I", 0))
    return _mapi_response(request_type, 5)  # Invalid Request Type


ROUTES: dict[str, Handler] = {
    "/EWS/": ews,
    "/Microsoft-Server-ActiveSync": activesync,
    "/rpc/": rpc_proxy,
    "/mapi/": mapi,
}
"""Path prefix -> handler, merged into ``analyzer.lab.emulator.ROUTES``."""
