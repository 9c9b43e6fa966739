"""The emulator's EWS operations and SOAP Autodiscover, called without the network.

What Exchange answers in each case is the EWS reference's (GetFolder, GetUserAvailability,
GetUserOofSettings, GetUserSettings (SOAP)); the answers are read back with the probe's
parser only where that parser is not what is being checked.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as DET
import pytest

from analyzer.lab.emulator import EmulatorRequest, EmulatorResponse, HostEntry
from analyzer.lab.emulator_autodiscover import autodiscover_xml
from analyzer.lab.emulator_autodiscover_soap import autodiscover_svc
from analyzer.lab.emulator_exchange import activesync, ews, mapi
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
         login: tuple[str, str] = ALICE, method: str = "POST",
         headers: Mapping[str, str] | None = None) -> EmulatorResponse:  # fmt: skip
    token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
    request = EmulatorRequest(
        method=method, path=path, query={}, body=body, host="mail.x.test",
        headers={"authorization": f"Basic {token}", "content-type": "text/xml",
                 **(headers or {})},
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


# --- against Microsoft's published examples (tests/fixtures), not our own parser -----------------
#
# The tests above read the emulator's answers with the probes' parser, written from the same
# reading of the documents as the emulator. These compare the answers with the example
# responses of the documents themselves (each fixture names its source).

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DAY = (datetime(2026, 3, 2), datetime(2026, 3, 3))


def _element_paths(element: Any, prefix: str = "") -> set[str]:
    """Every element below ``element`` as a path of namespaced tags."""
    paths: set[str] = set()
    for child in element:
        path = f"{prefix}/{child.tag}"
        paths |= {path} | _element_paths(child, path)
    return paths


def _soap_body_paths(xml: bytes) -> set[str]:
    body = DET.fromstring(xml).find(f"{{{SOAP}}}Body")
    assert body is not None
    return _element_paths(body)


@pytest.mark.parametrize(
    ("fixture", "body", "behaviour", "status"),
    [
        ("getfolder-inbox.xml", GETFOLDER_INBOX, None, 200),
        ("getfolder-error.xml", GETFOLDER_INBOX.replace(b'Id="inbox"', b'Id="junkemail"'),
         None, 200),
        ("getuseravailability.xml", get_user_availability(ALICE[0], *DAY), None, 200),
        ("getuseravailability-error.xml", get_user_availability("nobody@x.test", *DAY),
         None, 200),
        ("getuseroofsettings.xml", get_user_oof_settings(ALICE[0]), None, 200),
        ("getuseroofsettings-fault.xml", get_user_oof_settings(BOB[0]), None, 500),
        ("fault-serverbusy.xml", get_user_availability(ALICE[0], *DAY),
         {"availability": {"fault": "ErrorServerBusy"}}, 500),
    ],
    ids=lambda value: value if isinstance(value, str) and value.endswith(".xml") else "",
)  # fmt: skip
def test_ews_answers_use_only_the_elements_of_the_published_example(
    fixture: str, body: bytes, behaviour: Mapping[str, Any] | None, status: int
) -> None:
    # Given an EWS request whose answer the EWS reference shows (tests/fixtures/ews)
    response = post(ews, "/EWS/Exchange.asmx", body, behaviour)
    # Then the emulator answers with the example's status, and every element it sends, with
    # its namespace and its place, is one the example has
    assert response.status == status
    expected = _soap_body_paths((FIXTURES / "ews" / fixture).read_bytes())
    assert _soap_body_paths(response.body) - expected == set()


def _http_headers(fixture: str) -> dict[str, str]:
    head = (FIXTURES / "exchange" / fixture).read_bytes().decode("latin-1").split("\r\n\r\n")[0]
    return {k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])}  # fmt: skip


def test_activesync_options_has_the_headers_of_the_published_example() -> None:
    # Given [MS-ASHTTP]'s OPTIONS example / When the emulator answers OPTIONS
    response = post(activesync, "/Microsoft-Server-ActiveSync", b"", method="OPTIONS")
    sent = {k.lower(): v for k, v in response.headers}
    example = _http_headers("activesync-options.http")
    # Then it sends every ActiveSync header of the example (not IIS's own), methods and
    # caching written as there
    for name in ("cache-control", "allow", "public", "ms-server-activesync",
                 "ms-asprotocolversions", "ms-asprotocolcommands"):  # fmt: skip
        assert name in sent and name in example, name
    for name in ("cache-control", "allow", "public"):
        assert sent[name] == example[name], name


def test_mapi_connect_has_the_headers_of_the_published_example() -> None:
    # Given [MS-OXCMAPIHTTP] 4.1's Connect response / When the emulator answers a Connect
    response = post(mapi, "/mapi/emsmdb/", b"/o=rca-lab/cn=alice\0",
                    headers={"x-requesttype": "Connect"})  # fmt: skip
    sent: dict[str, list[str]] = {}
    for k, v in response.headers:
        sent.setdefault(k.lower(), []).append(v)
    example = _http_headers("mapi-connect-response.http")
    # Then every header it sends is one of the example's, the timings with the example's values
    assert set(sent) - set(example) == set()
    assert len(sent["set-cookie"]) == 2
    for name in ("content-type", "x-requesttype", "x-responsecode", "x-pendingperiod",
                 "x-expirationinfo"):  # fmt: skip
        assert sent[name] == [example[name]], name


def _pox(schema: str) -> bytes:
    request = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
    return (
        f'<Autodiscover xmlns="{request}"><Request><EMailAddress>{ALICE[0]}</EMailAddress>'
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"
    ).encode()


def test_pox_service_urls_sit_where_the_published_example_has_them() -> None:
    # Given "POX Autodiscover response for Exchange"'s example
    example = DET.fromstring((FIXTURES / "exchange" / "pox-settings.xml").read_bytes())
    outlook = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    # When the emulator answers the outlook schema
    response = post(autodiscover_xml, "/autodiscover/autodiscover.xml", _pox(outlook))
    answer = DET.fromstring(response.body)
    # Then ASUrl, EwsUrl, EmwsUrl and OOFUrl are where the example has them, and all four are
    # the EWS URL, as there (ASUrl is the Availability service, not ActiveSync)
    urls = ("ASUrl", "EwsUrl", "EmwsUrl", "OOFUrl")
    placed = {p for p in _element_paths(answer) if p.rsplit("}", 1)[-1] in urls}
    assert {p.rsplit("}", 1)[-1] for p in placed} == set(urls)
    assert placed <= _element_paths(example)
    exch = f"{{{outlook}}}Response/{{{outlook}}}Account/{{{outlook}}}Protocol"
    for tree in (example, answer):
        protocol = tree.find(exch)
        assert protocol is not None
        values = {protocol.findtext(f"{{{outlook}}}{name}") for name in urls}
        assert len(values) == 1, values


def test_mobilesync_answer_uses_only_the_elements_of_the_published_example() -> None:
    mobilesync = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
    response = post(autodiscover_xml, "/autodiscover/autodiscover.xml", _pox(mobilesync))
    example = (FIXTURES / "exchange" / "mobilesync-settings.xml").read_bytes()
    assert response.status == 200
    assert _element_paths(DET.fromstring(response.body)) <= _element_paths(DET.fromstring(example))


def test_mobilesync_error_has_the_shape_of_the_published_example() -> None:
    # Given a scenario without ActiveSync, asked in the mobilesync schema
    mobilesync = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
    response = post(autodiscover_xml, "/autodiscover/autodiscover.xml", _pox(mobilesync),
                    behaviour={"autodiscover": {"mobilesync": False}})
    # Then its elements sit where [MS-ASCMD] 4.2's error example has them (Response in the
    # mobilesync namespace), and the outlook schema's error keeps the POX error's shape
    example = (FIXTURES / "exchange" / "mobilesync-error-600.xml").read_bytes()
    assert _element_paths(DET.fromstring(response.body)) == _element_paths(DET.fromstring(example))
    outlook = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    pox = post(autodiscover_xml, "/autodiscover/autodiscover.xml", _pox(outlook),
               behaviour={"autodiscover": {"error_code": 600}})
    pox_example = (FIXTURES / "exchange" / "pox-error.xml").read_bytes()
    assert _element_paths(DET.fromstring(pox.body)) == _element_paths(DET.fromstring(pox_example))


@pytest.mark.parametrize(
    ("behaviour", "address"),
    [({"autodiscover": {"error_code": 603}}, ALICE[0]), ({}, "nobody@x.test")],
    ids=["configured-error", "unknown-address"],
)
def test_every_mobilesync_error_has_the_shape_of_the_published_example(
    behaviour: dict[str, Any], address: str
) -> None:
    # Given a mobilesync request that ends in an error (one the scenario configures, or an
    # address that is no mailbox: ErrorCode 500)
    mobilesync = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
    body = _pox(mobilesync).replace(ALICE[0].encode(), address.encode())
    response = post(autodiscover_xml, "/autodiscover/autodiscover.xml", body, behaviour=behaviour)
    # Then its elements sit where [MS-ASCMD] 4.2's error example has them, as for a missing
    # ActiveSync provider
    example = (FIXTURES / "exchange" / "mobilesync-error-600.xml").read_bytes()
    assert _element_paths(DET.fromstring(response.body)) == _element_paths(DET.fromstring(example))
