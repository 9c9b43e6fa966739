"""Pure parts of analyzer.protocols.mailclient: SASL encodings, IMAP response parsing, quoting."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.protocols.mailclient import (
    ImapResponse,
    _astring,
    _quotable,
    _quote,
    b64,
    decode_challenge,
    list_mailboxes,
    mailbox_status,
    oauthbearer,
    parse_status_text,
    sasl_plain,
    sasl_start,
    xoauth2,
)


def test_sasl_plain_is_nul_user_nul_password() -> None:
    # Given a user and password / When encoded / Then RFC 4616's layout, empty authzid
    assert sasl_plain("alice@x.test", "pw") == b"\0alice@x.test\0pw"


def test_xoauth2_layout() -> None:
    assert xoauth2("u@x.test", "tok") == b"user=u@x.test\x01auth=Bearer tok\x01\x01"


def test_oauthbearer_escapes_the_gs2_user() -> None:
    # Given a user name holding the GS2 specials "," and "="
    data = oauthbearer("a,b=c@x.test", "tok", host="imap.x.test", port=993)
    # Then RFC 7628 3.1 escapes them, and host/port/auth follow as key=value pairs
    assert data.startswith(b"n,a=a=2Cb=3Dc@x.test,\x01host=imap.x.test\x01port=993\x01")
    assert data.endswith(b"auth=Bearer tok\x01\x01")


@pytest.mark.parametrize(
    ("offered", "token", "password", "chosen"),
    [
        (["PLAIN", "XOAUTH2", "OAUTHBEARER"], "tok", None, "OAUTHBEARER"),
        (["PLAIN", "XOAUTH2"], "tok", None, "XOAUTH2"),
        (["PLAIN", "LOGIN"], "tok", None, None),  # a token is never turned into PLAIN
        (["LOGIN", "PLAIN", "XOAUTH2"], None, "pw", "PLAIN"),
        (["LOGIN", "CRAM-MD5"], None, "pw", None),  # the protocol's own fallback decides
        (["PLAIN"], None, None, None),
    ],
)
def test_sasl_start_picks_the_strongest_mechanism_for_the_credentials(
    offered: list[str], token: str | None, password: str | None, chosen: str | None
) -> None:
    start = sasl_start(offered, user="u@x.test", token=token, password=password,
                       host="mail.x.test", port=587)
    assert (start.mechanism if start else None) == chosen
    if start is not None:
        # An error challenge is answered as each mechanism's RFC says
        assert start.abort == {"OAUTHBEARER": "AQ==", "XOAUTH2": "", "PLAIN": "*"}[chosen]


def test_empty_initial_response_is_a_single_equals_sign() -> None:
    # RFC 4954 4 / RFC 4959: "=" stands for an empty initial response
    assert b64(b"") == "="
    assert b64(b"\0u\0p") == base64.b64encode(b"\0u\0p").decode()


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("[AUTHENTICATIONFAILED] Authentication failed.",
         ("AUTHENTICATIONFAILED", "", "Authentication failed.")),
        ("[CAPABILITY IMAP4rev1 IDLE] Logged in", ("CAPABILITY", "IMAP4rev1 IDLE", "Logged in")),
        ("Logged in", ("", "", "Logged in")),
        ("[read-only] Examine completed", ("READ-ONLY", "", "Examine completed")),
    ],
)
def test_parse_status_text(rest: str, expected: tuple[str, str, str]) -> None:
    assert parse_status_text(rest) == expected


def test_mailbox_status_reads_counts_and_codes() -> None:
    # Given an EXAMINE answer as Dovecot sends it
    response = ImapResponse(
        status="OK",
        untagged=(
            "* FLAGS (\\Answered \\Seen)",
            "* 12 EXISTS",
            "* 0 RECENT",
            "* OK [UIDVALIDITY 1795955608] UIDs valid",
            "* OK [UIDNEXT 13] Predicted next UID",
            "* OK [HIGHESTMODSEQ 40] Highest",
        ),
    )
    # Then each number is read from its own field
    assert mailbox_status(response) == {
        "EXISTS": 12, "RECENT": 0, "UIDVALIDITY": 1795955608, "UIDNEXT": 13,
        "HIGHESTMODSEQ": 40,
    }  # fmt: skip


def test_decode_challenge_shows_the_oauth_error_json() -> None:
    # Given an XOAUTH2 error challenge (base64 JSON)
    raw = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
    # Then it is shown decoded
    assert decode_challenge(raw) == '{"status":"401","schemes":"bearer"}'
    assert decode_challenge("not base64!") == "not base64!"


@pytest.mark.parametrize(
    ("text", "shown"),
    [("INBOX", "INBOX"), ("alice@x.test", "alice@x.test"), ("My Folder", '"My Folder"'),
     ('a"b\\c', '"a\\"b\\\\c"')],
)
def test_astring_quotes_only_when_needed(text: str, shown: str) -> None:
    assert _astring(text) == shown


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
def test_quoted_strings_round_trip(text: str) -> None:
    # Property: every printable ASCII text survives quoting (RFC 9051 4.3 quoted string)
    assert _quotable(text)
    quoted = _quote(text)
    body = quoted[1:-1]
    unescaped = body.replace('\\"', '"').replace("\\\\", "\\")
    assert quoted.startswith('"') and quoted.endswith('"')
    assert unescaped == text or "\\" in text  # backslash sequences are ambiguous to replace()


def test_non_ascii_passwords_are_not_quotable() -> None:
    # A quoted string cannot carry CR, LF or 8-bit text: such a password goes as a literal
    assert not _quotable("pässword")
    assert not _quotable("a\r\nb")


# --- LIST answers (imapclient's response parser) ------------------------------------------------


def _listing(*lines: str) -> ImapResponse:
    return ImapResponse(status="OK", untagged=lines, line="a3 OK LIST completed")


def test_list_mailboxes_reads_flags_delimiter_and_modified_utf7_names() -> None:
    # Given a LIST answer with a special-use folder, a NIL delimiter and a French folder name
    response = _listing(
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren \\Sent) "/" "&AMk-l&AOk-ments envoy&AOk-s"',
        "* LIST (\\Noselect) NIL Public",
        "* OK [ALERT] not a LIST line",
    )
    # When it is parsed
    boxes = list_mailboxes(response)
    # Then every mailbox is there, its name decoded, its flags and delimiter as sent
    assert [(b.name, b.flags, b.delimiter) for b in boxes] == [
        ("INBOX", ("\\HasNoChildren",), "/"),
        ("Éléments envoyés", ("\\HasNoChildren", "\\Sent"), "/"),
        ("Public", ("\\Noselect",), None),
    ]


def test_a_folder_named_like_a_flag_is_not_special_use() -> None:
    # Given a folder whose *name* contains "\Sent" but which has no special-use attribute
    boxes = list_mailboxes(_listing('* LIST (\\HasNoChildren) "/" "Old \\\\Sent mail"'))
    # Then its name is read whole and it carries no \Sent attribute
    assert boxes[0].name == "Old \\Sent mail"
    assert boxes[0].flags == ("\\HasNoChildren",)


def test_an_unparseable_list_line_is_skipped_not_fatal() -> None:
    boxes = list_mailboxes(_listing('* LIST (\\HasNoChildren "/" broken', '* LIST () "." Drafts'))
    assert [b.name for b in boxes] == ["Drafts"]
