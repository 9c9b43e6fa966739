"""EWS SOAP: the requests rca sends and the answers it reads. Pure: no I/O.

Requests (bytes, ready to POST with ``Content-Type: text/xml``):

- :data:`GETFOLDER_INBOX`: ``GetFolder`` of the Inbox, default shape (the EWS login check);
- :func:`get_user_availability`: ``GetUserAvailability`` of one mailbox for a time window,
  merged free/busy only (no subjects or locations: a diagnostic has no business reading them);
- :func:`get_user_oof_settings`: ``GetUserOofSettings`` of one mailbox.

Answers: :func:`parse_answer` reads any of the three into an :class:`EwsAnswer`: the
server's version (``ServerVersionInfo``), the response class and code of the (first)
response message, or the SOAP fault Exchange sends instead (HTTP 500, with the EWS
``ResponseCode`` in the fault's detail, e.g. ``ErrorServerBusy`` and its
``BackOffMilliseconds``), plus what the operation returned (folder counts, the free/busy
view, the OOF state). Anything that is not a SOAP envelope raises :class:`EwsXmlError`.

The shapes follow Microsoft's EWS reference (GetFolder, GetUserAvailability and
GetUserOofSettings operations, ResponseCode, and "EWS throttling in Exchange" for faults);
``tests/fixtures/ews`` holds the documented examples the unit tests read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = [
    "ERRORS",
    "GETFOLDER_INBOX",
    "MESSAGES",
    "SOAP",
    "TYPES",
    "EwsAnswer",
    "EwsXmlError",
    "FolderInfo",
    "FreeBusyInfo",
    "OofInfo",
    "Operation",
    "SoapFault",
    "get_user_availability",
    "get_user_oof_settings",
    "parse_answer",
]

SOAP: Final = "http://schemas.xmlsoap.org/soap/envelope/"
TYPES: Final = "http://schemas.microsoft.com/exchange/services/2006/types"
MESSAGES: Final = "http://schemas.microsoft.com/exchange/services/2006/messages"
#: The namespace of a fault's detail (ResponseCode, Message, MessageXml).
ERRORS: Final = "http://schemas.microsoft.com/exchange/services/2006/errors"
#: The schema version rca asks for: every Exchange since 2013 SP1 and Exchange Online.
REQUEST_VERSION: Final = "Exchange2013_SP1"

Operation = Literal["GetFolder", "GetUserAvailability", "GetUserOofSettings"]


class EwsXmlError(ValueError):
    """The answer is not an EWS SOAP answer (not XML, not an envelope, no response)."""


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:t="{TYPES}" xmlns:m="{MESSAGES}">\n'
        f'  <soap:Header><t:RequestServerVersion Version="{REQUEST_VERSION}"/></soap:Header>\n'
        f"  <soap:Body>\n{body}  </soap:Body>\n</soap:Envelope>\n"
    ).encode()


GETFOLDER_INBOX: Final = _envelope(
    "    <m:GetFolder>\n"
    "      <m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>\n"
    '      <m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds>\n'
    "    </m:GetFolder>\n"
)

# UTC as an availability time zone: bias 0, and standard and daylight time the same
# (the SerializableTimeZone of the request requires both transitions).
_TRANSITION = (
    "<t:Bias>0</t:Bias><t:Time>00:00:00</t:Time><t:DayOrder>1</t:DayOrder>"
    "<t:Month>1</t:Month><t:DayOfWeek>Sunday</t:DayOfWeek>"
)
_UTC = (
    f"<t:TimeZone><t:Bias>0</t:Bias><t:StandardTime>{_TRANSITION}</t:StandardTime>"
    f"<t:DaylightTime>{_TRANSITION}</t:DaylightTime></t:TimeZone>"
)


def get_user_availability(address: str, start: datetime, end: datetime) -> bytes:
    """``GetUserAvailability`` of ``address`` from ``start`` to ``end`` (naive UTC times),
    asking the merged free/busy view only."""
    stamp = "%Y-%m-%dT%H:%M:%S"
    return _envelope(
        "    <m:GetUserAvailabilityRequest>\n"
        f"      {_UTC}\n"
        "      <m:MailboxDataArray><t:MailboxData>"
        f"<t:Email><t:Address>{escape(address)}</t:Address></t:Email>"
        "<t:AttendeeType>Required</t:AttendeeType><t:ExcludeConflicts>false</t:ExcludeConflicts>"
        "</t:MailboxData></m:MailboxDataArray>\n"
        "      <t:FreeBusyViewOptions>"
        f"<t:TimeWindow><t:StartTime>{start.strftime(stamp)}</t:StartTime>"
        f"<t:EndTime>{end.strftime(stamp)}</t:EndTime></t:TimeWindow>"
        "<t:MergedFreeBusyIntervalInMinutes>60</t:MergedFreeBusyIntervalInMinutes>"
        "<t:RequestedView>FreeBusyMerged</t:RequestedView></t:FreeBusyViewOptions>\n"
        "    </m:GetUserAvailabilityRequest>\n"
    )


def get_user_oof_settings(address: str) -> bytes:
    """``GetUserOofSettings`` of ``address`` (the caller's own mailbox)."""
    return _envelope(
        "    <m:GetUserOofSettingsRequest>\n"
        f"      <t:Mailbox><t:Address>{escape(address)}</t:Address></t:Mailbox>\n"
        "    </m:GetUserOofSettingsRequest>\n"
    )


# --- answers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SoapFault:
    """A SOAP fault: ``faultcode``, ``faultstring`` and the EWS detail when there is one."""

    code: str
    text: str
    response_code: str = ""
    back_off_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderInfo:
    """What ``GetFolder`` returned of the folder (``None``: the count was not in the answer)."""

    display_name: str
    total_count: int | None = None
    unread_count: int | None = None
    child_folder_count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeBusyInfo:
    """The free/busy view of the mailbox: its type, the merged string (one digit per
    interval: 0 free, 1 tentative, 2 busy, 3 OOF, 4 working elsewhere, 5 no data), the number
    of calendar events and whether working hours came with it."""

    view_type: str
    merged: str = ""
    events: int = 0
    working_hours: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OofInfo:
    """The OOF settings: state (Enabled, Disabled, Scheduled), audiences, the window."""

    state: str
    external_audience: str = ""
    allow_external_oof: str = ""
    start: str = ""
    end: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EwsAnswer:
    """One EWS answer: a response message or a fault, and what the operation returned."""

    operation: Operation
    server_version: str = ""
    schema_version: str = ""
    fault: SoapFault | None = None
    response_class: str = ""
    response_code: str = ""
    message_text: str = ""
    folder: FolderInfo | None = None
    free_busy: FreeBusyInfo | None = None
    oof: OofInfo | None = None

    @property
    def ok(self) -> bool:
        """True for ResponseClass Success (no fault)."""
        return self.fault is None and self.response_class == "Success"

    @property
    def code(self) -> str:
        """The EWS ResponseCode of the answer or of its fault (may be empty for a fault)."""
        return self.fault.response_code if self.fault is not None else self.response_code


def _m(name: str) -> str:
    return f"{{{MESSAGES}}}{name}"


def _t(name: str) -> str:
    return f"{{{TYPES}}}{name}"


def _int(element: Element, tag: str) -> int | None:
    text = (element.findtext(tag) or "").strip()
    return int(text) if text.isdigit() else None


def _clean(text: str | None, limit: int = 500) -> str:
    return " ".join((text or "").split())[:limit]


def _fault(fault: Element) -> SoapFault:
    detail = fault.find("detail")
    code = ""
    back_off: int | None = None
    if detail is not None:
        code = _clean(detail.findtext(f"{{{ERRORS}}}ResponseCode"), 100)
        for value in detail.iter(_t("Value")):
            if value.get("Name") == "BackOffMilliseconds" and (value.text or "").isdigit():
                back_off = int(value.text or "0")
    return SoapFault(code=_clean(fault.findtext("faultcode"), 100),
                     text=_clean(fault.findtext("faultstring")), response_code=code,
                     back_off_ms=back_off)  # fmt: skip


def _message(operation: Operation, body: Element) -> Element:
    """The response message of ``operation`` (the first one for availability)."""
    paths = {
        "GetFolder": "m:GetFolderResponse/m:ResponseMessages/m:GetFolderResponseMessage",
        "GetUserAvailability": "m:GetUserAvailabilityResponse/m:FreeBusyResponseArray/"
        "m:FreeBusyResponse/m:ResponseMessage",
        "GetUserOofSettings": "m:GetUserOofSettingsResponse/m:ResponseMessage",
    }
    found = body.find(paths[operation], {"m": MESSAGES})
    if found is None:
        raise EwsXmlError(f"no {operation} response message in the SOAP body")
    return found


def parse_answer(body: bytes, operation: Operation) -> EwsAnswer:
    """Read an answer to ``operation`` (see the module docstring); :class:`EwsXmlError`
    when it is not one."""
    import defusedxml.ElementTree as DET  # noqa: N814, PLC0415 - safe XML parsing

    try:
        root = DET.fromstring(body, forbid_dtd=True)
    except Exception as exc:  # defusedxml's and expat's errors alike
        raise EwsXmlError(f"not XML: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if root.tag != f"{{{SOAP}}}Envelope":
        raise EwsXmlError(f"the root element is {str(root.tag)[:100]}, not a SOAP envelope")
    server_version = schema_version = ""
    version = root.find(f"{{{SOAP}}}Header/{_t('ServerVersionInfo')}")
    if version is not None:
        server_version = ".".join(version.get(a, "?") for a in (
            "MajorVersion", "MinorVersion", "MajorBuildNumber", "MinorBuildNumber"))  # fmt: skip
        schema_version = version.get("Version", "")
    soap_body = root.find(f"{{{SOAP}}}Body")
    if soap_body is None:
        raise EwsXmlError("no SOAP body")
    common = {"operation": operation, "server_version": server_version,
              "schema_version": schema_version}  # fmt: skip
    fault = soap_body.find(f"{{{SOAP}}}Fault")
    if fault is not None:
        return EwsAnswer(**common, fault=_fault(fault))  # type: ignore[arg-type]
    message = _message(operation, soap_body)
    answer = EwsAnswer(
        **common,  # type: ignore[arg-type]
        response_class=message.get("ResponseClass", ""),
        response_code=_clean(message.findtext(_m("ResponseCode")), 100),
        message_text=_clean(message.findtext(_m("MessageText"))),
    )
    if operation == "GetFolder":
        return _with_folder(answer, message)
    if operation == "GetUserAvailability":
        return _with_free_busy(answer, soap_body)
    return _with_oof(answer, soap_body)


def _with_folder(answer: EwsAnswer, message: Element) -> EwsAnswer:
    folder = message.find(f"{_m('Folders')}/*")
    if folder is None:
        return answer
    return replace(answer, folder=FolderInfo(
        display_name=_clean(folder.findtext(_t("DisplayName")), 100),
        total_count=_int(folder, _t("TotalCount")),
        unread_count=_int(folder, _t("UnreadCount")),
        child_folder_count=_int(folder, _t("ChildFolderCount")),
    ))  # fmt: skip


def _with_free_busy(answer: EwsAnswer, body: Element) -> EwsAnswer:
    view = body.find(
        "m:GetUserAvailabilityResponse/m:FreeBusyResponseArray/m:FreeBusyResponse/m:FreeBusyView",
        {"m": MESSAGES},
    )
    if view is None:
        return answer
    events = view.find(_t("CalendarEventArray"))
    return replace(answer, free_busy=FreeBusyInfo(
        view_type=_clean(view.findtext(_t("FreeBusyViewType")), 50),
        merged=_clean(view.findtext(_t("MergedFreeBusy")), 200),
        events=0 if events is None else len(events.findall(_t("CalendarEvent"))),
        working_hours=view.find(_t("WorkingHours")) is not None,
    ))  # fmt: skip


def _with_oof(answer: EwsAnswer, body: Element) -> EwsAnswer:
    response = body.find(_m("GetUserOofSettingsResponse"))
    settings = None if response is None else response.find(_t("OofSettings"))
    if response is None or settings is None:
        return answer
    return replace(answer, oof=OofInfo(
        state=_clean(settings.findtext(_t("OofState")), 50),
        external_audience=_clean(settings.findtext(_t("ExternalAudience")), 50),
        allow_external_oof=_clean(response.findtext(_m("AllowExternalOof")), 50),
        start=_clean(settings.findtext(f"{_t('Duration')}/{_t('StartTime')}"), 50),
        end=_clean(settings.findtext(f"{_t('Duration')}/{_t('EndTime')}"), 50),
    ))  # fmt: skip
