"""The parsers against Microsoft's published example responses (tests/fixtures/exchange).

Each fixture names the document and section it follows. These answers were not written from
rca's own reading of the protocols, so they catch a misreading that the lab's emulator,
written from the same reading as the probes, would share (DESIGN.md section 8).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - our own fixture files, not server input
from pathlib import Path

import pytest

from analyzer.core.model import Status
from analyzer.protocols import wbxml
from analyzer.protocols.exchange import ServiceUrl, describe_source
from analyzer.protocols.http import BoundedResponse
from analyzer.protocols.httpauth import parse_www_authenticate
from probes.activesync import folders_finding, parse_options
from probes.autodiscover.pox import parse_response
from probes.autodiscover.settings import (
    check_availability,
    check_settings,
    to_settings,
    with_activesync,
)
from probes.autodiscover.v2 import V2Error, parse_v2
from probes.mapi_http import response_code

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "exchange"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def http_response(name: str) -> BoundedResponse:
    """A fixture holding a status line and headers (CRLF), as a response."""
    head = fixture(name).decode("latin-1").split("\r\n\r\n", 1)[0]
    status_line, *lines = head.split("\r\n")
    headers = tuple(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)
    )
    return BoundedResponse(status=int(status_line.split()[1]), headers=headers, body=b"",
                           url="https://mail.contoso.com/", http_version="HTTP/1.1",
                           elapsed_ms=1.0)  # fmt: skip


def test_every_fixture_names_its_source() -> None:
    # Given the fixture files / Then each XML file's comment, or a sidecar, names a document
    for path in FIXTURES.iterdir():
        if path.suffix == ".xml":
            assert "Follows:" in path.read_text()
        elif path.suffix in (".json", ".http"):
            sidecars = [p.read_text() for p in FIXTURES.glob("*.source.txt")]
            assert any(path.name in text for text in sidecars), path.name


# --- Autodiscover POX (outlook 2006a) ------------------------------------------------------------


def test_asurl_is_the_availability_service_not_activesync() -> None:
    # Given Microsoft's example POX response, whose ASUrl is the EWS URL
    answer = parse_response(fixture("pox-settings.xml"))
    # When it becomes the settings fact
    settings = to_settings(answer, email="user@contoso.com", source_url="u", method="root")
    # Then ASUrl is the Availability URL, and no ActiveSync URL is read from it
    assert settings.availability_url == "https://mail.contoso.com/ews/exchange.asmx"
    assert settings.eas_url == ""
    assert settings.eas_source == ""


def test_microsoft_example_pox_response() -> None:
    # Given "POX Autodiscover response for Exchange" / When parsed
    answer = parse_response(fixture("pox-settings.xml"))
    settings = to_settings(answer, email="user@contoso.com", source_url="u", method="root")
    # Then every block and URL is read
    assert [p.type for p in answer.protocols] == ["EXCH", "EXPR", "WEB"]
    assert answer.display_name == "First Last"
    assert settings.mailbox_server == "MBX-SERVER.mail.internal.contoso.com"
    assert settings.ews_url == "https://mail.contoso.com/ews/exchange.asmx"
    assert settings.oof_url == "https://mail.contoso.com/ews/exchange.asmx"
    assert settings.oab_url.startswith("https://mail.contoso.com/OAB/d29844a9-")
    assert [(o.server, o.auth_package) for o in settings.outlook_anywhere] == [
        ("exchange.contoso.com", "Ntlm")
    ]
    web = answer.protocol("WEB")
    assert web is not None
    assert web.owa_urls == ("https://cas-01-server.mail.internal.contoso.com/owa",)
    assert check_settings(answer, settings) == []


def test_availability_url_equal_to_ews_is_a_note() -> None:
    # Given the example, whose ASUrl and EwsUrl are the same service
    answer = parse_response(fixture("pox-settings.xml"))
    settings = to_settings(answer, email="user@contoso.com", source_url="u", method="root")
    # When compared / Then a pass finding naming the URL
    finding = check_availability(settings)
    assert finding is not None
    assert (finding.code, finding.status) == ("autodiscover.settings.availability_url",
                                              Status.PASS)  # fmt: skip


def test_availability_url_in_another_site_is_normal() -> None:
    # Given an ASUrl of another site than EwsUrl
    body = fixture("pox-settings.xml").replace(
        b"<ASUrl>https://mail.contoso.com/", b"<ASUrl>https://eu.mail.contoso.com/"
    )
    settings = to_settings(parse_response(body), email="u@contoso.com", source_url="u",
                           method="root")  # fmt: skip
    # Then the difference is reported as information, never a warning
    finding = check_availability(settings)
    assert finding is not None
    assert finding.code == "autodiscover.settings.availability_url_differs"
    assert finding.status == Status.PASS
    assert finding.evidence == {
        "availability_url": "https://eu.mail.contoso.com/ews/exchange.asmx",
        "ews_url": "https://mail.contoso.com/ews/exchange.asmx",
    }


def test_mapihttp_example_reads_the_nested_availability_url() -> None:
    # Given [MS-OXDSCLI] 4.4: mapiHttp InternalUrls, ASUrl only inside WEB/External/Protocol
    answer = parse_response(fixture("pox-mapihttp.xml"))
    settings = to_settings(answer, email="user@Contoso.com", source_url="u", method="root")
    # Then the MAPI URLs and the Availability URL are found, and the lack of any external
    # access (no EXPR, no ExternalUrl) is the warning it is
    assert settings.mapi_mailstore_url.startswith("https://mail.Contoso.com/mapi/emsmdb/")
    assert settings.mapi_addressbook_url.startswith("https://mail.Contoso.com/mapi/nspi/")
    assert settings.availability_url == "https://mail.Contoso.com/ews/exchange.asmx"
    assert settings.eas_url == ""
    assert [f.code for f in check_settings(answer, settings)] == [
        "autodiscover.settings.no_ews",
        "autodiscover.settings.no_external_access",
    ]


@pytest.mark.parametrize(
    ("name", "action", "redirect"),
    [
        ("pox-redirect-addr.xml", "redirectAddr", "user@subdomain.contoso.com"),
        (
            "pox-redirect-url.xml",
            "redirectUrl",
            "https://autodiscover.subdomain.contoso.com/autodiscover/autodiscover.xml",
        ),
    ],
)
def test_redirect_examples(name: str, action: str, redirect: str) -> None:
    answer = parse_response(fixture(name))
    assert (answer.schema, answer.action, answer.redirect) == ("outlook", action, redirect)


def test_error_example() -> None:
    answer = parse_response(fixture("pox-error.xml"))
    assert (answer.action, answer.error_code, answer.error_message) == (
        "error", "600", "Invalid Request"
    )  # fmt: skip


# --- mobilesync and v2 ----------------------------------------------------------------------------


def test_mobilesync_example_gives_the_activesync_url() -> None:
    # Given [MS-ASCMD] 4.2.4, with white space around the URL and a CertEnroll server
    answer = parse_response(fixture("mobilesync-settings.xml"))
    # Then the MobileSync server's URL, trimmed, is the ActiveSync URL
    assert answer.schema == "mobilesync"
    assert answer.mobilesync_url == (
        "https://loandept.woodgrovebank.com/Microsoft-Server-ActiveSync"
    )
    assert answer.display_name == "Chris Gray"
    # And it becomes the fact's ActiveSync URL with its source and host
    base = to_settings(parse_response(fixture("pox-settings.xml")), email="u@contoso.com",
                       source_url="u", method="root")  # fmt: skip
    settings = with_activesync(base, answer.mobilesync_url, "mobilesync")
    assert (settings.eas_url, settings.eas_source) == (answer.mobilesync_url, "mobilesync")
    assert "loandept.woodgrovebank.com" in settings.hosts


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("mobilesync-error.xml", "2", "The directory service could not be reached"),
        ("mobilesync-error-600.xml", "600", "Invalid Request"),
    ],
)
def test_mobilesync_error_examples(name: str, code: str, message: str) -> None:
    answer = parse_response(fixture(name))
    assert (answer.schema, answer.action, answer.error_code, answer.error_message) == (
        "mobilesync", "error", code, message
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "protocol", "url"),
    [
        ("v2-activesync.json", "ActiveSync",
         "https://outlook.office365.com/Microsoft-Server-ActiveSync"),
        ("v2-ews.json", "Ews", "https://outlook.office365.com/EWS/Exchange.asmx"),
    ],
)  # fmt: skip
def test_v2_examples(name: str, protocol: str, url: str) -> None:
    assert parse_v2(fixture(name), protocol) == url


def test_v2_invalid_protocol_example() -> None:
    with pytest.raises(V2Error, match="InvalidProtocol"):
        parse_v2(fixture("v2-invalid-protocol.json"), "Imap")


# --- ActiveSync ---------------------------------------------------------------------------------


def test_activesync_options_example() -> None:
    # Given [MS-ASHTTP]'s OPTIONS example / When read as the probe reads it
    versions, commands, server = parse_options(http_response("activesync-options.http"))
    # Then the versions, the commands (FolderSync among them) and the server version
    assert versions == ["2.0", "2.1", "2.5", "12.0", "12.1", "14.0"]
    assert len(commands) == 23 and "FolderSync" in commands and "Provision" in commands
    assert server == "14.00.0536.000"


def _wbxml_tree(node: ET.Element) -> wbxml.Element:
    name = node.tag.rsplit("}", 1)[-1]
    children = tuple(_wbxml_tree(c) for c in node)
    text = None if children else (node.text or "").strip()
    return wbxml.Element(tag=f"FolderHierarchy:{name}", text=text, children=children)


def test_foldersync_example() -> None:
    # Given [MS-ASCMD] 4.4.2's FolderSync response, sent as WBXML
    root = ET.fromstring(fixture("activesync-foldersync.xml"))  # noqa: S314 - our fixture
    decoded = wbxml.decode(wbxml.encode(_wbxml_tree(root)))
    # When judged / Then status 1 with the thirteen folders
    finding = folders_finding(decoded)
    assert finding.code == "activesync.foldersync.ok"
    assert finding.evidence["count"] == "13"
    folders = finding.evidence["folders"]
    assert isinstance(folders, list) and len(folders) == 13 and "Inbox" in folders


def test_a_guessed_activesync_url_says_where_it_was_guessed() -> None:
    url = ServiceUrl(url="https://mail.contoso.com/Microsoft-Server-ActiveSync",
                     source="conventional", guess_host="the EWS host")  # fmt: skip
    assert url.guessed
    assert describe_source(url).startswith("a guess: the conventional path on the EWS host")
    mobilesync = ServiceUrl(url=url.url, source="mobilesync")
    assert not mobilesync.guessed and "mobilesync" in describe_source(mobilesync)


# --- MAPI over HTTP and the RPC proxy -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "request_type"),
    [("mapi-connect-response.http", "Connect"), ("mapi-bind-response.http", "Bind")],
)
def test_mapi_session_examples(name: str, request_type: str) -> None:
    # Given [MS-OXCMAPIHTTP] 4.1's response headers / Then success is X-ResponseCode 0
    response = http_response(name)
    assert response_code(response) == 0
    assert response.header("x-requesttype") == request_type
    assert response.header("content-type") == "application/mapi-http"
    assert len(response.header_all("set-cookie")) == 2


def test_rpc_proxy_401_example() -> None:
    # Given the proxy's 401 / Then every method it offers is read, in order
    response = http_response("rpcproxy-401.http")
    assert response.status == 401
    assert list(parse_www_authenticate(response)) == ["Negotiate", "NTLM", "Basic"]
