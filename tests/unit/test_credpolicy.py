"""The credential policy (analyzer/core/credpolicy.py, docs/security.md) as pure functions, the
userinfo hiding, the exception split between the target's failures and rca's, and the
report check of tests/conftest.py."""

from __future__ import annotations

import errno
import ssl

import httpcore
import httpx
import pytest

from analyzer.core.context import Credentials, RunContext, RunOptions
from analyzer.core.credpolicy import Provenance, hide_userinfo, judge, m365_namespaces
from analyzer.core.errors import InternalError, NetError, NetTimeout, map_exception
from analyzer.protocols.http import make_client
from analyzer.protocols.httpauth import NoChallenge, send_authenticated
from analyzer.protocols.rawhttp import open_channel
from tests.conftest import leaks
from tests.unit.test_httpauth import Transcript

DOMAINS = ("example.test",)
ANSWER = Provenance(source="the Autodiscover answer of https://ad.other.test/x",
                    why="answered without authentication by ad.other.test")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:secret@host/x", "http://user:***@host/x"),
        ("https://u:p@ss@h:8443/a?b=c@d", "https://u:***@h:8443/a?b=c@d"),
        ("ftp://token@host/", "ftp://***@host/"),
        ("https://user:***@h/", "https://user:***@h/"),
        ("<a>https://a:b@c/</a> and imap://x:y@z", "<a>https://a:***@c/</a> and imap://x:***@z"),
        ("mailto:alice@example.test", "mailto:alice@example.test"),
        ("https://h/p?x=a@b", "https://h/p?x=a@b"),
        ("alice@example.test", "alice@example.test"),
    ],
)
def test_userinfo_is_hidden(text: str, shown: str) -> None:
    # Given a text with URLs / When shown / Then every userinfo is hidden, nothing else
    assert hide_userinfo(text) == shown


def test_redaction_hides_userinfo_even_without_a_secret() -> None:
    # Given credentials without a password / When a server's text is redacted
    # Then a URL's password is hidden anyway
    assert Credentials("alice").redact("to https://svc:pw1@h/") == "to https://svc:***@h/"


@pytest.mark.parametrize(
    ("host", "trusted", "provenance", "allowed"),
    [
        ("example.test", (), ANSWER, True),
        ("mail.eu.example.test", (), ANSWER, True),
        ("mail.other.test", ("other.test",), ANSWER, True),
        ("outlook.office365.com", (), ANSWER, True),
        ("mail.other.test", (), Provenance(source="an answer", vouched=True), True),
        ("mail.other.test", (), ANSWER, False),
        ("notexample.test", (), ANSWER, False),
        ("outlook.office365.com.evil.test", (), ANSWER, False),
    ],
)
def test_judge(host: str, trusted: tuple[str, ...], provenance: Provenance, allowed: bool) -> None:
    # Given a host and where it was learned / When judged / Then allowed as the policy says
    assert judge(host, domains=DOMAINS, trusted=trusted, provenance=provenance).allowed is allowed


def test_a_withheld_host_names_source_reason_and_flag() -> None:
    # Given an outside host named by an anonymous answer
    verdict = judge("mail.other.test", domains=DOMAINS, trusted=(), provenance=ANSWER)
    # When explained / Then the host, the source, why, and the exact flag are named
    detail = verdict.detail()
    assert "mail.other.test" in detail
    assert ANSWER.source in detail
    assert "answered without authentication" in detail
    assert detail.endswith("--trust-redirect other.test")
    assert verdict.evidence()["allow_with"] == "--trust-redirect other.test"


def test_microsoft_365_namespaces_are_exact_client_names() -> None:
    names = m365_namespaces()
    assert {"outlook.office365.com", "smtp.office365.com"} <= set(names)
    assert all("*" not in n and "protection.outlook.com" not in n for n in names)


@pytest.mark.parametrize(
    "exc",
    [KeyError("bug"), TypeError("bug"), AttributeError("bug"), ValueError("bug"),
     httpx.InvalidURL("bug")],  # fmt: skip
)
def test_exceptions_that_are_not_the_network_are_rcas(exc: Exception) -> None:
    # Given an exception from rca's own code / When mapped / Then it is not a network error
    mapped = map_exception(exc, phase="request")
    assert isinstance(mapped, InternalError) and not isinstance(mapped, NetError)
    assert type(exc).__name__ in str(mapped)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (OSError(errno.EHOSTUNREACH, "no route"), NetError),
        (TimeoutError(), NetTimeout),
        (httpx.ConnectError("All connection attempts failed"), NetError),
        (httpcore.ReadError("closed"), NetError),
        (httpcore.ReadTimeout("slow"), NetTimeout),
        (httpx.RemoteProtocolError("garbage"), NetError),
    ],
)
def test_transport_failures_stay_the_targets(exc: Exception, kind: type[NetError]) -> None:
    assert isinstance(map_exception(exc, phase="request"), kind)


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
async def test_no_basic_or_bearer_without_their_challenge(scheme: str) -> None:
    # Given a server whose 401 offered only NTLM
    creds = Credentials("alice", password="pw-12345678", token="tok-12345678")
    async with RunContext(RunOptions(credentials=creds)) as run, make_client(run) as client:
        # When Basic/Bearer would be sent / Then it is refused before any connection
        with pytest.raises(NoChallenge, match="did not ask"):
            await send_authenticated(client, "GET", "https://127.0.0.1:9/", creds=creds,
                                     scheme=scheme, offered=("NTLM",), timeout=1)  # type: ignore[arg-type]  # fmt: skip


def test_the_report_check_finds_noted_secrets_and_userinfo() -> None:
    # Given a secret a test gave to Credentials
    Credentials("alice", password="Noted-Secret-5b2c")
    # When a report text holds it, or a URL's password / Then the check finds both
    assert len(leaks("x Noted-Secret-5b2c y https://svc:pw@host/")) == 2
    assert leaks("https://svc:***@host/ and «redacted»") == []


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
async def test_rpc_over_http_sends_no_basic_or_bearer_without_their_challenge(scheme: str) -> None:
    # Given a 401 that offered only NTLM / When an RPC channel would open with Basic/Bearer
    # Then it is refused before anything is connected (the guard needs no run context)
    with pytest.raises(NoChallenge, match="did not ask"):
        await open_channel(
            None, host="mail.example.test", address="127.0.0.1", port=9,  # type: ignore[arg-type]
            target="/rpc/rpcproxy.dll", method="RPC_IN_DATA", scheme=scheme,  # type: ignore[arg-type]
            offered=("NTLM",), content_length=0, first_body=b"", body_shown="",
            context=ssl.create_default_context(), transcript=Transcript(),
        )  # fmt: skip
