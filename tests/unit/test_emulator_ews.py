"""The emulator's EWS operations and SOAP Autodiscover, called without the network.

What Exchange answers in each case is the EWS reference's (GetFolder, GetUserAvailability,
GetUserOofSettings, GetUserSettings (SOAP)); the answers are read back with the probe's
parser only where that parser is not what is being checked.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import defusedxml.ElementTree as DET

from analyzer.lab.emulator import EmulatorRequest, EmulatorResponse, HostEntry
from analyzer.lab.emulator_autodiscover_soap import autodiscover_svc
from analyzer.lab.emulator_exchange import ews
from analyzer.protocols.ewsxml import (
    GETFOLDER_INBOX,
    SOAP,
    get_user_availability,
    get_user_oof_settings,
    parse_answer,
)

ALICE = ("alice@x.test", "alice-password")
BOB = ("bob@x.test", "bob-password")
AUTODISCOVER = "http://schemas.microsoft.com/exchange/2010/Autodiscover"


def post(handler: Any, path: str, body: bytes, behaviour: Mapping[str, Any] | None = None,
         login: tuple[str, str] = ALICE) -> EmulatorResponse:  # fmt: skip
    token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
    request = EmulatorRequest(
        method="POST", path=path, query={}, body=body, host="mail.x.test",
        headers={"authorization": f"Basic {token}", "content-type": "text/xml"},
        entry=HostEntry(scenario="x", role="mail", host="mail.x.test"),
        behaviour=behaviour or {},
        scenario_data={"domain": "x.test", "users": [list(ALICE), list(BOB)],
                       "hosts": {"mail": {"name": "mail.x.test"}}},
    )  # fmt: skip
    return handler(request)


def test_getfolder_of_another_mailbox_is_refused() -> None:
    # Given GetFolder naming bob's Inbox, asked by alice (as exchangelib names the mailbox)
    body = GETFOLDER_INBOX.replace(
        b'<t:DistinguishedFolderId Id="inbox"/>',
        b'<t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>bob@x.test'
        b"</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>",
    )
    answer = parse_answer(post(ews, "/EWS/Exchange.asmx", body).body, "GetFolder")
    assert answer.code == "ErrorAccessDenied"
    missing = body.replace(b"bob@x.test", b"nobody@x.test")
    assert parse_answer(post(ews, "/EWS/Exchange.asmx", missing).body, "GetFolder").code == (
        "ErrorNonExistentMailbox"
    )


def test_getfolder_of_the_root_folder() -> None:
    body = GETFOLDER_INBOX.replace(b'Id="inbox"', b'Id="root"')
    answer = parse_answer(post(ews, "/EWS/Exchange.asmx", body).body, "GetFolder")
    assert answer.ok and answer.folder is not None


def test_availability_of_the_own_mailbox_and_of_a_stranger() -> None:
    day = (datetime(2026, 3, 2), datetime(2026, 3, 3))
    own = post(ews, "/EWS/Exchange.asmx", get_user_availability(ALICE[0], *day))
    answer = parse_answer(own.body, "GetUserAvailability")
    assert answer.ok and answer.free_busy is not None
    assert answer.free_busy.merged == "0" * 24 and answer.free_busy.working_hours
    stranger = post(ews, "/EWS/Exchange.asmx", get_user_availability("nobody@x.test", *day))
    assert parse_answer(stranger.body, "GetUserAvailability").code == (
        "ErrorMailRecipientNotFound"
    )


def test_availability_failures_a_scenario_configures() -> None:
    body = get_user_availability(ALICE[0], datetime(2026, 3, 2), datetime(2026, 3, 3))
    busy = post(ews, "/EWS/Exchange.asmx", body, {"availability": {"fault": "ErrorServerBusy"}})
    # EWS sends faults with HTTP 500
    assert busy.status == 500
    fault = parse_answer(busy.body, "GetUserAvailability").fault
    assert fault is not None and (fault.response_code, fault.back_off_ms) == (
        "ErrorServerBusy", 30000)  # fmt: skip
    failed = post(ews, "/EWS/Exchange.asmx", body,
                  {"availability": {"response_code": "ErrorFreeBusyGenerationFailed"}})
    assert parse_answer(failed.body, "GetUserAvailability").code == (
        "ErrorFreeBusyGenerationFailed"
    )


def test_oof_of_another_user_is_the_documented_fault() -> None:
    own = parse_answer(post(ews, "/EWS/Exchange.asmx", get_user_oof_settings(ALICE[0])).body,
                       "GetUserOofSettings")  # fmt: skip
    assert own.ok and own.oof is not None and own.oof.state == "Disabled"
    other = post(ews, "/EWS/Exchange.asmx", get_user_oof_settings(BOB[0]))
    assert other.status == 500
    fault = parse_answer(other.body, "GetUserOofSettings").fault
    assert fault is not None and "User is not mailbox owner" in fault.text


def test_unknown_operation_and_garbage_are_faults() -> None:
    unknown = GETFOLDER_INBOX.replace(b"m:GetFolder>", b"m:ResolveNames>")
    assert post(ews, "/EWS/Exchange.asmx", unknown).status == 500
    garbage = post(ews, "/EWS/Exchange.asmx", b"<not-soap/>")
    assert garbage.status == 500
    fault = parse_answer(garbage.body, "GetFolder").fault
    assert fault is not None and fault.response_code == "ErrorSchemaValidation"


def _get_user_settings(mailbox: str, *names: str) -> bytes:
    settings = "".join(f"<a:Setting>{n}</a:Setting>" for n in names)
    return (
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:a="{AUTODISCOVER}"><s:Body>'
        f"<a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User><a:Mailbox>{mailbox}"
        f"</a:Mailbox></a:User></a:Users><a:RequestedSettings>{settings}</a:RequestedSettings>"
        "</a:Request></a:GetUserSettingsRequestMessage></s:Body></s:Envelope>"
    ).encode()


def test_soap_autodiscover_gives_settings_and_says_which_it_has_not() -> None:
    # Given GetUserSettings for alice: two known settings, one without value, one unknown
    body = _get_user_settings(ALICE[0], "ExternalEwsUrl", "EwsSupportedSchemas",
                              "AlternateMailboxes", "NoSuchSetting")  # fmt: skip
    response = post(autodiscover_svc, "/autodiscover/autodiscover.svc", body)
    root = DET.fromstring(response.body)
    a = f"{{{AUTODISCOVER}}}"
    user = root.find(f".//{a}UserResponse")
    assert user is not None and user.findtext(f"{a}ErrorCode") == "NoError"
    values = {s.findtext(f"{a}Name"): s.findtext(f"{a}Value")
              for s in user.iter(f"{a}UserSetting")}  # fmt: skip
    assert values["ExternalEwsUrl"] == "https://mail.x.test/EWS/Exchange.asmx"
    assert str(values["EwsSupportedSchemas"]).endswith("Exchange2016")
    errors = {e.findtext(f"{a}SettingName"): e.findtext(f"{a}ErrorCode")
              for e in user.iter(f"{a}UserSettingError")}  # fmt: skip
    assert errors == {"AlternateMailboxes": "SettingIsNotAvailable",
                      "NoSuchSetting": "InvalidSetting"}  # fmt: skip


def test_soap_autodiscover_unknown_user_and_no_login() -> None:
    response = post(autodiscover_svc, "/autodiscover/autodiscover.svc",
                    _get_user_settings("nobody@x.test", "ExternalEwsUrl"))  # fmt: skip
    root = DET.fromstring(response.body)
    assert root.findtext(f".//{{{AUTODISCOVER}}}UserResponse/{{{AUTODISCOVER}}}ErrorCode") == (
        "InvalidUser"
    )
    refused = post(autodiscover_svc, "/autodiscover/autodiscover.svc",
                   _get_user_settings(ALICE[0], "ExternalEwsUrl"),
                   login=(ALICE[0], "wrong"))  # fmt: skip
    assert refused.status == 401
