"""analyzer.protocols.ewsxml and the EWS probe's verdicts, on Microsoft's documented EWS answers.

The fixtures (tests/fixtures/ews) are written from the examples of the EWS reference; each
file names the document it follows.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import defusedxml.ElementTree as DET
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.core.facts import AutodiscoverSettings
from analyzer.core.model import Status
from analyzer.protocols.ewsxml import (
    GETFOLDER_INBOX,
    MESSAGES,
    SOAP,
    TYPES,
    EwsAnswer,
    EwsXmlError,
    Operation,
    get_user_availability,
    get_user_oof_settings,
    parse_answer,
)
from analyzer.protocols.exchange import ServiceUrl
from probes.ews import MailboxUrl, judge_getfolder, judge_mailbox, mailbox_urls

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ews"
EWS = ServiceUrl(url="https://mail.x.test/EWS/Exchange.asmx", source="autodiscover")
AT_EWS = MailboxUrl(url=EWS, field="EwsUrl")


def answer(name: str, operation: Operation) -> EwsAnswer:
    return parse_answer((FIXTURES / f"{name}.xml").read_bytes(), operation)


def test_every_fixture_names_the_document_it_follows() -> None:
    for path in FIXTURES.glob("*.xml"):
        assert "learn.microsoft.com" in path.read_text(), path.name


# --- GetFolder --------------------------------------------------------------------------------


def test_getfolder_success_gives_the_folder_and_version() -> None:
    # Given the documented successful GetFolder of the Inbox / When read
    got = answer("getfolder-inbox", "GetFolder")
    # Then the message, the folder's counts and the server version are there
    assert got.ok and got.code == "NoError"
    assert got.server_version == "8.0.628.0"
    assert got.folder is not None
    assert (got.folder.display_name, got.folder.total_count, got.folder.unread_count,
            got.folder.child_folder_count) == ("Inbox", 2, 2, 0)  # fmt: skip


def test_getfolder_error_names_the_response_code() -> None:
    got = answer("getfolder-error", "GetFolder")
    assert not got.ok
    assert (got.response_class, got.code, got.message_text) == (
        "Error", "ErrorInvalidIdMalformed", "Id is malformed.")  # fmt: skip
    finding = judge_getfolder(got)
    assert finding.code == "ews.getfolder.error" and finding.status == Status.FAIL
    assert "ErrorInvalidIdMalformed" in finding.detail


def test_getfolder_verdict_reports_counts() -> None:
    finding = judge_getfolder(answer("getfolder-inbox", "GetFolder"))
    assert finding.code == "ews.getfolder.ok"
    assert finding.evidence["totalcount"] == 2
    assert finding.evidence["server_version"] == "8.0.628.0"


# --- GetUserAvailability ----------------------------------------------------------------------


def test_availability_success_reads_the_first_mailbox_view() -> None:
    # Given the documented answer for two mailboxes / When read
    got = answer("getuseravailability", "GetUserAvailability")
    # Then the first mailbox's view is what is reported
    assert got.ok
    assert got.free_busy is not None
    assert got.free_busy.view_type == "DetailedMerged"
    assert got.free_busy.merged == "000002220220000000000000"
    assert got.free_busy.events == 3 and got.free_busy.working_hours


def test_availability_verdict_keeps_subjects_out_of_the_report() -> None:
    # Given the documented answer, whose events carry subjects and locations
    finding = judge_mailbox(answer("getuseravailability", "GetUserAvailability"), AT_EWS,
                            "user1@example.com")  # fmt: skip
    # Then the finding counts the events but never shows what they are
    assert finding.code == "ews.availability.ok" and finding.status == Status.PASS
    assert finding.evidence["events"] == 3
    assert finding.evidence["url_from"] == "EwsUrl"
    text = repr(finding)
    assert "Contoso" not in text and "doctor" not in text and "Kirkland" not in text


def test_availability_error_names_the_code_and_what_to_do() -> None:
    got = answer("getuseravailability-error", "GetUserAvailability")
    assert (got.ok, got.code, got.free_busy) == (False, "ErrorMailRecipientNotFound", None)
    finding = judge_mailbox(got, AT_EWS, "nobody@x.test")
    assert finding.code == "ews.availability.error" and finding.status == Status.FAIL
    assert finding.detail.startswith("Error ErrorMailRecipientNotFound:")
    assert "Get-Recipient" in finding.remediation


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        ("ErrorProxyRequestProcessingFailed", "InternalUrl"),
        ("ErrorAccessDenied", "EwsApplicationAccessPolicy"),
        ("ErrorFreeBusyGenerationFailed", "MSExchangeServicesAppPool"),
        ("ErrorSomethingNew", "Look up the ResponseCode"),
    ],
)
def test_each_response_code_gets_its_own_advice(code: str, advice: str) -> None:
    got = EwsAnswer(operation="GetUserAvailability", response_class="Error", response_code=code)
    assert advice in judge_mailbox(got, AT_EWS, "a@x.test").remediation


# --- GetUserOofSettings -----------------------------------------------------------------------


def test_oof_success_gives_the_state_not_the_messages() -> None:
    got = answer("getuseroofsettings", "GetUserOofSettings")
    assert got.ok and got.oof is not None
    assert (got.oof.state, got.oof.external_audience, got.oof.allow_external_oof) == (
        "Disabled", "All", "All")  # fmt: skip
    finding = judge_mailbox(got, AT_EWS, "user1@example.com")
    assert finding.code == "ews.oof.ok"
    assert finding.evidence["oof_state"] == "Disabled"
    assert "out of office" not in repr(finding).lower()


def test_oof_fault_is_an_error_with_the_fault_text() -> None:
    # Given the documented fault (another user's OOF settings): no EWS ResponseCode in it
    got = answer("getuseroofsettings-fault", "GetUserOofSettings")
    assert got.fault is not None and got.fault.code == "soap:Client"
    assert got.code == "" and "User is not mailbox owner" in got.fault.text
    finding = judge_mailbox(got, AT_EWS, "user1@example.com")
    assert finding.code == "ews.oof.error" and finding.status == Status.FAIL
    assert finding.detail.startswith("SOAP fault soap:Client:")


def test_server_busy_fault_is_inconclusive_with_its_back_off() -> None:
    got = answer("fault-serverbusy", "GetUserAvailability")
    assert got.fault is not None
    assert (got.code, got.fault.back_off_ms) == ("ErrorServerBusy", 30000)
    finding = judge_mailbox(got, AT_EWS, "a@x.test")
    assert finding.code == "ews.server_busy" and finding.status == Status.INCONCLUSIVE
    assert finding.evidence["back_off_ms"] == 30000 and "back off 30000 ms" in finding.detail


# --- what is not an answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not a SOAP envelope"),
        (b"not xml at all", "not XML"),
        (f'<s:Envelope xmlns:s="{SOAP}"><s:Body/></s:Envelope>'.encode(), "no GetFolder"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "not XML"),
    ],
)
def test_what_is_not_an_ews_answer(body: bytes, reason: str) -> None:
    with pytest.raises(EwsXmlError, match=reason):
        parse_answer(body, "GetFolder")


@given(st.binary(max_size=300))
def test_any_bytes_give_an_answer_or_ews_xml_error(body: bytes) -> None:
    try:
        parse_answer(body, "GetUserAvailability")
    except EwsXmlError:
        pass


# --- requests ---------------------------------------------------------------------------------


def test_availability_request_asks_merged_free_busy_of_one_mailbox() -> None:
    # Given the next day for an address that needs escaping
    body = get_user_availability("a&b@x.test", datetime(2026, 3, 2), datetime(2026, 3, 3))
    # When read as XML
    root = DET.fromstring(body)
    request = root.find(f"{{{SOAP}}}Body/{{{MESSAGES}}}GetUserAvailabilityRequest")
    # Then the mailbox, the window and a view without details are asked, in UTC
    assert request is not None
    t = f"{{{TYPES}}}"
    assert request.findtext(f"{{{MESSAGES}}}MailboxDataArray/{t}MailboxData/{t}Email/"
                            f"{t}Address") == "a&b@x.test"  # fmt: skip
    options = request.find(f"{t}FreeBusyViewOptions")
    assert options is not None
    assert options.findtext(f"{t}TimeWindow/{t}StartTime") == "2026-03-02T00:00:00"
    assert options.findtext(f"{t}TimeWindow/{t}EndTime") == "2026-03-03T00:00:00"
    assert options.findtext(f"{t}RequestedView") == "FreeBusyMerged"
    assert request.findtext(f"{t}TimeZone/{t}Bias") == "0"


def test_oof_and_getfolder_requests_are_soap() -> None:
    oof = DET.fromstring(get_user_oof_settings("me@x.test"))
    assert oof.findtext(f"{{{SOAP}}}Body/{{{MESSAGES}}}GetUserOofSettingsRequest/"
                        f"{{{TYPES}}}Mailbox/{{{TYPES}}}Address") == "me@x.test"  # fmt: skip
    folder = DET.fromstring(GETFOLDER_INBOX)
    wanted = folder.find(f".//{{{TYPES}}}DistinguishedFolderId")
    assert wanted is not None and wanted.get("Id") == "inbox"


# --- where the requests go --------------------------------------------------------------------


def test_asurl_and_oofurl_are_used_when_published() -> None:
    settings = AutodiscoverSettings(
        email="a@x.test", source_url="https://x.test/a", ews_url=EWS.url,
        availability_url="https://cas.x.test/EWS/Exchange.asmx", oof_url=EWS.url,
    )  # fmt: skip
    availability, oof = mailbox_urls(settings, EWS)
    assert (availability.url.url, availability.field) == (
        "https://cas.x.test/EWS/Exchange.asmx", "ASUrl")  # fmt: skip
    assert (oof.url.url, oof.field) == (EWS.url, "OOFUrl")


def test_without_asurl_the_ews_url_serves_both() -> None:
    settings = AutodiscoverSettings(email="a@x.test", source_url="https://x.test/a",
                                    ews_url=EWS.url)  # fmt: skip
    availability, oof = mailbox_urls(settings, EWS)
    assert availability == oof == MailboxUrl(url=EWS, field="EwsUrl")
    guessed = ServiceUrl(url=EWS.url, source="conventional")
    assert mailbox_urls(None, guessed)[0] == MailboxUrl(url=guessed, field="the EWS URL")


def test_ews_url_option_wins_over_autodiscover() -> None:
    settings = AutodiscoverSettings(email="a@x.test", source_url="https://x.test/a",
                                    availability_url="https://cas.x.test/EWS/Exchange.asmx")
    given_url = ServiceUrl(url="https://other.x.test/EWS/Exchange.asmx", source="option")
    assert mailbox_urls(settings, given_url)[0].url == given_url
