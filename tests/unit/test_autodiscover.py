"""Autodiscover's pure parts: the POX request and response, settings, v2 answers, URL rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.autodiscover.discovery import choose_scheme, inside, normalize_url
from probes.autodiscover.pox import (
    MalformedXml,
    NotAutodiscover,
    PoxError,
    UnsafeXml,
    build_request,
    parse_response,
)
from probes.autodiscover.settings import check_settings, to_settings
from probes.autodiscover.v2 import V2Error, parse_v2, same_url

NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MOBILE = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"


def outlook(account: str, user: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{NS}">'
        f'<Response xmlns="{OUTLOOK}">{user}<Account><AccountType>email</AccountType>'
        f"{account}</Account></Response></Autodiscover>"
    ).encode()


SETTINGS = outlook(
    "<Action>settings</Action>"
    "<Protocol><Type>EXCH</Type><Server>guid@x.test</Server><ServerDN>/o=x/cn=y</ServerDN>"
    "<ASUrl>https://int.x.test/EWS/Exchange.asmx</ASUrl>"
    "<EwsUrl>https://int.x.test/EWS/Exchange.asmx</EwsUrl></Protocol>"
    "<Protocol><Type>EXPR</Type><Server>mail.x.test</Server><SSL>On</SSL>"
    "<AuthPackage>Ntlm</AuthPackage><EwsUrl>https://mail.x.test/EWS/Exchange.asmx</EwsUrl>"
    "<OABUrl>https://mail.x.test/OAB/1/</OABUrl></Protocol>"
    '<Protocol><Type>WEB</Type><External><OWAUrl AuthenticationMethod="Fba">'
    "https://mail.x.test/owa/</OWAUrl></External></Protocol>"
    '<Protocol Type="mapiHttp" Version="1"><MailStore><InternalUrl>https://int.x.test/mapi/'
    "emsmdb/?MailboxId=g@x.test</InternalUrl><ExternalUrl>https://mail.x.test/mapi/emsmdb/"
    "?MailboxId=g@x.test</ExternalUrl></MailStore><AddressBook><ExternalUrl>https://mail.x.test/"
    "mapi/nspi/?MailboxId=g@x.test</ExternalUrl></AddressBook></Protocol>"
    "<Protocol><Type>IMAP</Type><Server>imap.x.test</Server><Port>993</Port>"
    "<Encryption>SSL</Encryption><LoginName>alice@x.test</LoginName></Protocol>"
    "<Protocol><Type>SMTP</Type><Server>smtp.x.test</Server><Port>587</Port>"
    "<Encryption>TLS</Encryption></Protocol>",
    user="<User><DisplayName>Alice</DisplayName><LegacyDN>/o=x/cn=alice</LegacyDN>"
    "<AutoDiscoverSMTPAddress>alice@x.test</AutoDiscoverSMTPAddress></User>",
)


def test_request_asks_for_the_address_in_the_outlook_schema() -> None:
    # Given an address with characters that need escaping
    body = build_request("a&b<c>@x.test").decode()
    # Then it is escaped and the 2006a response schema is asked for
    assert "<EMailAddress>a&amp;b&lt;c&gt;@x.test</EMailAddress>" in body
    assert f"<AcceptableResponseSchema>{OUTLOOK}</AcceptableResponseSchema>" in body
    assert "mobilesync/requestschema/2006" in build_request("a@x.test", "mobilesync").decode()


def test_settings_are_read_from_every_protocol_block() -> None:
    # Given a full settings answer / When parsed
    answer = parse_response(SETTINGS)
    # Then every block is there, with its fields
    assert answer.action == "settings"
    assert [p.type for p in answer.protocols] == ["EXCH", "EXPR", "WEB", "mapiHttp", "IMAP", "SMTP"]
    assert answer.display_name == "Alice" and answer.smtp_address == "alice@x.test"
    expr = answer.protocol("expr")
    assert expr is not None and expr.auth_package == "Ntlm" and expr.ssl == "On"
    web = answer.protocol("WEB")
    assert web is not None and web.owa_urls == ("https://mail.x.test/owa/",)


def test_settings_become_the_fact_external_first() -> None:
    # Given the parsed answer / When turned into the fact
    facts = to_settings(
        parse_response(SETTINGS), email="alice@x.test", source_url="https://x.test/a", method="root"
    )
    # Then external (EXPR) URLs win over internal (EXCH) ones
    assert facts.ews_url == "https://mail.x.test/EWS/Exchange.asmx"
    assert facts.availability_url == "https://int.x.test/EWS/Exchange.asmx"
    assert facts.eas_url == ""  # ASUrl is the Availability service, not ActiveSync
    assert facts.mailbox_server == "guid@x.test"
    assert facts.mapi_mailstore_url.startswith("https://mail.x.test/mapi/emsmdb/")
    assert facts.mapi_addressbook_url.startswith("https://mail.x.test/mapi/nspi/")
    assert [(o.server, o.auth_package) for o in facts.outlook_anywhere] == [("mail.x.test", "Ntlm")]
    assert [(s.protocol, s.host, s.port, s.socket_type) for s in facts.mail_servers] == [
        ("imap", "imap.x.test", 993, "SSL"),
        ("smtp", "smtp.x.test", 587, "STARTTLS"),
    ]
    assert set(facts.hosts) == {"mail.x.test", "int.x.test", "imap.x.test", "smtp.x.test"}
    assert check_settings(parse_response(SETTINGS), facts) == []


def test_settings_warnings() -> None:
    # Given settings with an http URL, no EWS and no external access
    answer = parse_response(
        outlook(
            "<Action>settings</Action><Protocol><Type>EXCH</Type><Server>s</Server>"
            "<OABUrl>http://mail.x.test/OAB/</OABUrl></Protocol>"
        )
    )
    facts = to_settings(answer, email="a@x.test", source_url="u", method="root")
    # Then each is a warning
    assert [f.code for f in check_settings(answer, facts)] == [
        "autodiscover.settings.insecure_url",
        "autodiscover.settings.no_ews",
        "autodiscover.settings.no_external_access",
    ]


@pytest.mark.parametrize(
    ("account", "action", "redirect"),
    [
        (
            "<Action>redirectAddr</Action><RedirectAddr>bob@y.test</RedirectAddr>",
            "redirectAddr",
            "bob@y.test",
        ),
        (
            "<Action>redirectUrl</Action><RedirectUrl>https://y.test/a.xml</RedirectUrl>",
            "redirectUrl",
            "https://y.test/a.xml",
        ),
    ],
)
def test_redirects(account: str, action: str, redirect: str) -> None:
    # Given a redirect answer / When parsed / Then its kind and target
    answer = parse_response(outlook(account))
    assert (answer.action, answer.redirect) == (action, redirect)


@pytest.mark.parametrize("code", ["500", "501", "600", "601", "602", "603"])
def test_errors(code: str) -> None:
    # Given an Error answer / When parsed / Then its code and message
    body = (
        f'<Autodiscover xmlns="{NS}"><Response><Error Time="t" Id="1"><ErrorCode>{code}'
        "</ErrorCode><Message>why</Message></Error></Response></Autodiscover>"
    ).encode()
    answer = parse_response(body)
    assert (answer.action, answer.error_code, answer.error_message) == ("error", code, "why")


def test_mobilesync_answer() -> None:
    # Given a mobilesync answer / When parsed / Then the ActiveSync URL
    body = (
        f'<Autodiscover xmlns="{NS}"><Response xmlns="{MOBILE}"><Action><Settings><Server>'
        "<Type>MobileSync</Type><Url>https://m.x.test/Microsoft-Server-ActiveSync</Url></Server>"
        "</Settings></Action></Response></Autodiscover>"
    ).encode()
    answer = parse_response(body)
    assert answer.schema == "mobilesync"
    assert answer.mobilesync_url == "https://m.x.test/Microsoft-Server-ActiveSync"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'<!DOCTYPE a [<!ENTITY b "c">]><Autodiscover>&b;</Autodiscover>', UnsafeXml),
        (b'<!DOCTYPE a SYSTEM "http://x/y.dtd"><Autodiscover/>', UnsafeXml),
        (b"<Autodiscover><Response>", MalformedXml),
        (b"", MalformedXml),
        (b"\xff\xfe garbage", MalformedXml),
        (b"<html><body>login</body></html>", NotAutodiscover),
        (b"<Autodiscover/>", NotAutodiscover),
        (outlook("<Action>dance</Action>"), NotAutodiscover),
        (
            f'<Autodiscover xmlns="{NS}"><Response xmlns="{OUTLOOK}"/></Autodiscover>'.encode(),
            NotAutodiscover,
        ),
    ],
)
def test_unusable_bodies(body: bytes, error: type[PoxError]) -> None:
    # Given a body that is not a usable answer / When parsed / Then the typed error says why
    with pytest.raises(error):
        parse_response(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
def test_hostile_bodies_never_raise_anything_else(body: bytes) -> None:
    # Given any bytes / When parsed / Then either an answer or a PoxError
    try:
        parse_response(body)
    except PoxError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_hostile_text_in_elements_is_bounded(text: str) -> None:
    # Given arbitrary text in every element / When parsed / Then nothing longer than the cap
    from xml.sax.saxutils import escape

    clean = "".join(c for c in text if c in "\t\n\r" or ord(c) >= 0x20)
    value = escape(clean * 20)
    answer = parse_response(
        outlook(f"<Action>redirectUrl</Action><RedirectUrl>{value}</RedirectUrl>")
    )
    assert len(answer.redirect) <= 2000


# --- rules of the discovery ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "https://X.test/AutoDiscover/AutoDiscover.xml",
            "https://x.test:443/autodiscover/autodiscover.xml",
        ),
        (
            "https://x.test./autodiscover/autodiscover.xml",
            "https://x.test/autodiscover/autodiscover.xml",
        ),
    ],
)
def test_urls_compared_as_iis_does(a: str, b: str) -> None:
    # Given two spellings of one URL / Then they are the same for loop detection
    assert normalize_url(a) == normalize_url(b)


def test_urls_with_different_queries_or_ports_differ() -> None:
    assert normalize_url("https://x.test/a?hop=1") != normalize_url("https://x.test/a?hop=2")
    assert normalize_url("https://x.test:444/a") != normalize_url("https://x.test/a")


@pytest.mark.parametrize(
    ("host", "domains", "expected"),
    [
        ("autodiscover.x.test", ("x.test",), True),
        ("x.test", ("x.test",), True),
        ("evilx.test", ("x.test",), False),
        ("x.test.evil", ("x.test",), False),
        ("outlook.office365.com", ("x.test", "office365.com"), True),
    ],
)
def test_inside_the_domain(host: str, domains: tuple[str, ...], expected: bool) -> None:
    # Given a host and trusted domains / Then inside means equal or below one of them
    assert inside(host, domains) is expected


@pytest.mark.parametrize(
    ("offered", "password", "token", "expected"),
    [
        (("Negotiate", "NTLM", "Basic"), True, False, "ntlm"),
        (("Basic",), True, False, "basic"),
        (("Negotiate",), True, False, "ntlm"),
        (("Basic", "Bearer"), True, True, "bearer"),
        (("Basic",), False, True, None),
        (("Digest",), True, False, None),
    ],
)
def test_scheme_choice(
    offered: tuple[str, ...], password: bool, token: bool, expected: str | None
) -> None:
    # Given what the server offers and what rca holds / Then the scheme Outlook would use
    assert choose_scheme(offered, has_password=password, has_token=token) == expected


# --- v2 ------------------------------------------------------------------------------------------


def test_v2_answer() -> None:
    body = b'{"Protocol": "Ews", "Url": "https://mail.x.test/EWS/Exchange.asmx"}'
    assert parse_v2(body, "Ews") == "https://mail.x.test/EWS/Exchange.asmx"


@pytest.mark.parametrize(
    "body",
    [
        b'{"ErrorCode": "InvalidProtocol", "ErrorMessage": "no"}',
        b'{"Protocol": "Ews"}',
        b'{"Protocol": "ActiveSync", "Url": "https://x"}',
        b'{"Protocol": "Ews", "Url": "http://x/EWS"}',
        b"[1, 2]",
        b"not json",
    ],
)
def test_v2_unusable(body: bytes) -> None:
    with pytest.raises(V2Error):
        parse_v2(body, "Ews")


def test_v2_urls_compared_leniently() -> None:
    assert same_url(
        "https://Mail.x.test/EWS/Exchange.asmx/", "https://mail.x.test/ews/exchange.asmx"
    )
    assert not same_url("https://a.x.test/EWS/Exchange.asmx", "https://b.x.test/EWS/Exchange.asmx")
