"""Pure parts of analyzer.protocols.login: reading refusals, the finding sets, the dialects'
judgement of capabilities before TLS."""

from __future__ import annotations

import pytest

from analyzer.core.model import Status
from analyzer.protocols.login import (
    ImapDialect,
    Pop3Dialect,
    SmtpDialect,
    classify_refusal,
    session_findings,
)


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        # IMAP response codes (RFC 5530)
        ("AUTHENTICATIONFAILED", "Authentication failed.", "failed"),
        ("AUTHORIZATIONFAILED", "Not allowed", "disabled"),
        ("UNAVAILABLE", "Backend down", "unavailable"),
        ("EXPIRED", "Password expired", "locked"),
        # POP3 (RFC 3206) and Dovecot's nologin reason
        ("AUTH", "Authentication failed.", "failed"),
        ("AUTH", "POP3\u00a0access\u00a0is\u00a0disabled\u00a0for\u00a0this\u00a0user.",
         "disabled"),
        ("SYS/TEMP", "Try later", "unavailable"),
        ("IN-USE", "Mailbox locked by another session", "unavailable"),
        # SMTP reply code + enhanced status
        ("535 5.7.8", "Error: authentication failed", "failed"),
        ("535 5.7.139", "Authentication unsuccessful, SmtpClientAuthentication is disabled for "
         "the Tenant", "disabled"),
        ("454 4.7.0", "Temporary authentication failure", "unavailable"),
        ("534 5.7.9", "Please log in with your web browser", "refused"),
        # Exchange when the protocol is off for the mailbox
        ("", "User is authenticated but not connected.", "disabled"),
        ("", "LOGIN failed.", "failed"),
        ("", "Account locked out", "locked"),
        ("", "Your account has been disabled", "locked"),
    ],
)
def test_classify_refusal(code: str, text: str, kind: str) -> None:
    assert classify_refusal(code, text) == kind


def test_in_use_is_temporary_unless_the_words_say_locked() -> None:
    # A mailbox in use by another session is a temporary failure
    assert classify_refusal("IN-USE", "Mailbox in use") == "unavailable"


def test_session_findings_are_prefixed_and_distinct() -> None:
    # Given the set for one protocol
    f = session_findings("imap", "IMAP", starttls="s", enable_for_user="e", tls_only_fix="t",
                         reference="r")  # fmt: skip
    codes = [spec.code for spec in f.all()]
    # Then every code carries the prefix, none twice, with the statuses the design gives
    assert all(code.startswith("imap.") for code in codes)
    assert len(codes) == len(set(codes))
    assert f.login_failed.status == Status.FAIL
    assert f.login_unavailable.status == Status.INCONCLUSIVE
    assert f.login_skipped.status == Status.SKIP
    assert f.plaintext_allowed.status == Status.WARN
    assert f.tls_untrusted.status == Status.FAIL


@pytest.mark.parametrize(
    ("caps", "starttls", "offered"),
    [
        (("IMAP4REV1", "STARTTLS", "LOGINDISABLED"), True, None),
        (("IMAP4REV1", "STARTTLS", "AUTH=PLAIN"), True, "LOGIN, AUTH=PLAIN"),
        (("IMAP4REV1",), False, "LOGIN"),
        (("IMAP4REV1", "LOGINDISABLED"), False, None),
    ],
)
def test_imap_before_tls(caps: tuple[str, ...], starttls: bool, offered: str | None) -> None:
    # RFC 9051 6.2.3: without LOGINDISABLED, LOGIN is available
    view = ImapDialect().before_tls(caps)
    assert (view.starttls, view.login_offered) == (starttls, offered)


def test_pop3_before_tls() -> None:
    # Dovecot before STLS with plaintext refused: "SASL" with no mechanism, no USER
    assert Pop3Dialect().before_tls(("CAPA", "STLS", "SASL")).login_offered is None
    view = Pop3Dialect().before_tls(("USER", "STLS", "SASL PLAIN LOGIN"))
    assert view.login_offered == "USER/PASS, AUTH PLAIN LOGIN"


def test_smtp_before_tls() -> None:
    assert SmtpDialect().before_tls(("PIPELINING", "STARTTLS")).login_offered is None
    view = SmtpDialect().before_tls(("AUTH PLAIN LOGIN", "AUTH=LOGIN", "8BITMIME"))
    assert not view.starttls
    assert view.login_offered == "AUTH PLAIN LOGIN, AUTH=LOGIN"
