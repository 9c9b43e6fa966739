"""The IMAP, POP3 and SMTP login probes against the lab's Dovecot and Postfix.

Each test runs the real pipeline (with the DNS, reachability and TLS checks the login
probes build on) against one scenario, checks the findings, and renders the HTML and JSON
reports of the run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Finding, Report, Status, report_from_json
from analyzer.core.targets import parse_target
from analyzer.lab import LabInfo
from reports.html import render
from reports.json import dumps

pytestmark = pytest.mark.lab

BASE_TESTS = ("dns", "ports", "tls")


def run(
    lab: LabInfo, scenario: str, tests: tuple[str, ...], *, password: bool = True,
    **kw: object,
) -> Report:  # fmt: skip
    info = lab.scenario(scenario)
    user, secret = info.users[0]
    options = RunOptions(
        nameservers=(Nameserver(lab.resolver),),
        ca_file=Path(lab.ca_file),
        credentials=Credentials(user, password=secret if password else None),
        tests=BASE_TESTS + tests,
        timeout=40,
        op_timeout=4,
        connect_timeout=2,
        **kw,  # type: ignore[arg-type]
    )
    report = asyncio.run(check(parse_target(user), options))
    # Every probe test renders both reports, and the JSON round-trips.
    assert report.target in render(report)
    assert report_from_json(json.loads(dumps(report))) == report
    return report


def found(report: Report, probe: str, subject: str) -> dict[str, Finding]:
    return {
        f.code: f for r, f in report.findings() if r.probe == probe and r.subject == subject
    }


def statuses(report: Report, probe: str) -> set[Status]:
    return {r.status for r in report.results if r.probe == probe}


def test_healthy_logins_pass_on_every_port(lab: LabInfo) -> None:
    # Given the healthy domain and its user's password
    # When IMAP, POP3 and SMTP are checked
    report = run(lab, "healthy", ("imap", "pop3", "smtp"))
    # Then every login works, on implicit TLS and on STARTTLS ports alike
    for probe, port, code in (
        ("imap", 993, "imap.login.ok"), ("imap", 143, "imap.login.ok"),
        ("pop3", 995, "pop3.login.ok"), ("pop3", 110, "pop3.login.ok"),
        ("smtp", 587, "smtp.submission.login.ok"), ("smtp", 465, "smtp.submission.login.ok"),
    ):  # fmt: skip
        assert found(report, probe, f"mail.healthy.test:{port}")[code].status == Status.PASS
    inbound = found(report, "smtp", "mx.healthy.test:25")
    assert inbound["smtp.inbound.rcpt_accepted"].status == Status.PASS
    assert inbound["smtp.inbound.starttls"].status == Status.PASS
    assert statuses(report, "imap") | statuses(report, "pop3") | statuses(report, "smtp") == {
        Status.PASS
    }


def test_imap_reports_mailbox_and_extensions(lab: LabInfo) -> None:
    # Given the healthy IMAP server
    # When the IMAP probe logs in over 993
    report = run(lab, "healthy", ("imap",))
    codes = found(report, "imap", "mail.healthy.test:993")
    # Then INBOX opens read-only with a UIDVALIDITY, folders are counted, and the
    # extensions announced after login are listed
    assert codes["imap.mailbox.ok"].evidence["read_only"] is True
    assert isinstance(codes["imap.mailbox.ok"].evidence["uidvalidity"], int)
    assert codes["imap.folders"].evidence["count"] >= 1  # type: ignore[operator]
    assert codes["imap.login.ok"].evidence["idle"] is True
    assert codes["imap.login.ok"].evidence["condstore"] is True


def test_without_credentials_login_steps_are_skipped(lab: LabInfo) -> None:
    # Given no password at all
    # When the login probes run
    report = run(lab, "healthy", ("imap", "pop3", "smtp"), password=False)
    # Then the unauthenticated steps still ran, and every login is a skip with the reason
    imap = found(report, "imap", "mail.healthy.test:143")
    assert imap["imap.login.tls_required"].status == Status.PASS
    assert imap["imap.login.skipped"].status == Status.SKIP
    assert found(report, "pop3", "mail.healthy.test:995")["pop3.login.skipped"].status == (
        Status.SKIP
    )
    assert "smtp.submission.login.skipped" in found(report, "smtp", "mail.healthy.test:587")


def test_wrong_password_is_a_failed_login_everywhere(lab: LabInfo) -> None:
    # Given servers that hold another password for the user
    report = run(lab, "login-wrong-password", ("imap", "pop3", "smtp"))
    # Then each protocol reports the rejected credentials with the server's words
    host = "mail.login-wrong-password.test"
    imap = found(report, "imap", f"{host}:993")["imap.login.failed"]
    assert "AUTHENTICATIONFAILED" in imap.detail
    assert found(report, "pop3", f"{host}:995")["pop3.login.failed"].status == Status.FAIL
    smtp = found(report, "smtp", f"{host}:587")["smtp.submission.login.failed"]
    assert "535" in smtp.detail


def test_pop_disabled_for_user_is_told_apart_from_a_wrong_password(lab: LabInfo) -> None:
    # Given a user whose password is right but POP3 is refused for
    report = run(lab, "login-pop-disabled", ("imap", "pop3"))
    host = "mail.login-pop-disabled.test"
    # Then POP3 says "disabled for this user" and IMAP still works
    pop = found(report, "pop3", f"{host}:995")
    assert pop["pop3.login.disabled_for_user"].status == Status.FAIL
    assert "pop3.login.failed" not in pop
    assert found(report, "imap", f"{host}:993")["imap.login.ok"].status == Status.PASS


def test_plaintext_login_before_starttls_is_flagged_and_not_used(lab: LabInfo) -> None:
    # Given IMAP and POP3 that accept a password before STARTTLS
    report = run(lab, "plaintext-auth", ("imap", "pop3"))
    host = "mail.plaintext-auth.test"
    imap = found(report, "imap", f"{host}:143")
    # Then the weakness is a warning, and the login still happened only after STARTTLS
    assert imap["imap.login.plaintext_allowed"].status == Status.WARN
    assert imap["imap.login.ok"].status == Status.PASS
    assert found(report, "pop3", f"{host}:110")["pop3.login.plaintext_allowed"].status == (
        Status.WARN
    )
    steps = [s.title for r in report.results if r.subject == f"{host}:143" for s in r.steps]
    assert steps.index("STARTTLS") < next(i for i, t in enumerate(steps) if t.startswith("Log in"))


def test_logindisabled_is_honoured(lab: LabInfo) -> None:
    # Given IMAP only on 143, with LOGINDISABLED until STARTTLS
    report = run(lab, "login-imap-starttls-only", ("imap",))
    host = "mail.login-imap-starttls-only.test"
    # Then no 993 endpoint is invented, and 143 logs in after STARTTLS
    assert {r.subject for r in report.results if r.probe == "imap"} == {f"{host}:143"}
    codes = found(report, "imap", f"{host}:143")
    assert codes["imap.login.tls_required"].status == Status.PASS
    assert codes["imap.login.ok"].status == Status.PASS
    sent = [t.text for r in report.results if r.probe == "imap" for s in r.steps
            for t in s.transcript if t.direction == "send"]  # fmt: skip
    first_auth = next(i for i, t in enumerate(sent) if "AUTHENTICATE" in t or "LOGIN" in t)
    assert any("STARTTLS" in t for t in sent[:first_auth])


def test_submission_without_auth(lab: LabInfo) -> None:
    # Given submission servers that announce no AUTH
    report = run(lab, "login-submission-no-auth", ("smtp",))
    # Then both submission ports fail with the reason
    for port in (587, 465):
        codes = found(report, "smtp", f"mail.login-submission-no-auth.test:{port}")
        assert codes["smtp.submission.no_auth"].status == Status.FAIL


@pytest.mark.parametrize(
    ("scenario", "code", "status"),
    [
        ("login-mx-greylisting", "smtp.inbound.rcpt_deferred", Status.INCONCLUSIVE),
        ("login-mx-rejects", "smtp.inbound.rcpt_rejected", Status.FAIL),
    ],
)
def test_inbound_recipient_answers(lab: LabInfo, scenario: str, code: str, status: Status) -> None:
    # Given an MX that defers or rejects the user's address
    report = run(lab, scenario, ("smtp",))
    # Then the RCPT reply decides the finding (greylisting is never a failure)
    finding = found(report, "smtp", f"mx.{scenario}.test:25")[code]
    assert finding.status == status
    assert finding.evidence["reply"]


def test_open_relay_found_only_when_asked(lab: LabInfo) -> None:
    # Given an MX that relays for the whole internet
    # When checked without and with --relay-test
    quiet = run(lab, "login-open-relay", ("smtp",))
    tested = run(lab, "login-open-relay", ("smtp",), relay_test=True)
    subject = "mx.login-open-relay.test:25"
    # Then only the opt-in test tries an outside recipient, and it finds the open relay
    assert "smtp.inbound.open_relay" not in found(quiet, "smtp", subject)
    relay = found(tested, "smtp", subject)["smtp.inbound.open_relay"]
    assert relay.status == Status.FAIL
    assert relay.evidence["recipient"].endswith(".invalid")  # type: ignore[union-attr]


def test_healthy_mx_is_not_an_open_relay(lab: LabInfo) -> None:
    report = run(lab, "healthy", ("smtp",), relay_test=True)
    codes = found(report, "smtp", "mx.healthy.test:25")
    assert codes["smtp.inbound.relay_refused"].status == Status.PASS


def test_round_trip_delivers_and_deletes(lab: LabInfo) -> None:
    # Given a mailbox and --send-test-message
    report = run(lab, "login-roundtrip", ("roundtrip",), send_test_message=True)
    codes = {f.code: f for r, f in report.findings() if r.probe == "roundtrip"}
    # Then the message is accepted, found by IMAP with its latency, and deleted by UID
    assert codes["roundtrip.submitted"].status == Status.PASS
    assert codes["roundtrip.delivered"].status == Status.PASS
    assert 0 < codes["roundtrip.delivered"].evidence["latency_s"] < 30  # type: ignore[operator]
    assert codes["roundtrip.deleted"].status == Status.PASS
    # And the mailbox is empty again
    again = run(lab, "login-roundtrip", ("imap",))
    mailbox = found(again, "imap", "mail.login-roundtrip.test:993")["imap.mailbox.ok"]
    assert mailbox.evidence["exists"] == 0


def test_round_trip_is_opt_in(lab: LabInfo) -> None:
    report = run(lab, "login-roundtrip", ("roundtrip",))
    codes = {f.code: f for r, f in report.findings() if r.probe == "roundtrip"}
    assert codes["roundtrip.not_requested"].status == Status.SKIP


def test_expired_certificate_withholds_the_password(lab: LabInfo) -> None:
    # Given a mail host whose certificate has expired
    report = run(lab, "expired-cert", ("imap", "smtp"))
    host = "mail.expired-cert.test"
    # Then the session ends at the certificate: nothing goes over it, the password least
    imap = found(report, "imap", f"{host}:993")
    assert imap["imap.tls.untrusted"].status == Status.FAIL
    assert "imap.login.ok" not in imap and "imap.capabilities" not in imap
    assert found(report, "imap", f"{host}:143")["imap.tls.untrusted"].status == Status.FAIL
    assert found(report, "smtp", f"{host}:587")["smtp.submission.tls.untrusted"].status == (
        Status.FAIL
    )


def test_insecure_logs_in_anyway_and_says_so(lab: LabInfo) -> None:
    # Given the expired certificate and --insecure
    report = run(lab, "expired-cert", ("imap",), insecure=True)
    imap = found(report, "imap", "mail.expired-cert.test:993")
    # Then the login is tested, with a loud warning beside it
    assert imap["imap.tls.insecure"].status == Status.WARN
    assert imap["imap.login.ok"].status == Status.PASS


def test_password_never_in_reports(lab: LabInfo) -> None:
    # Given a full login run (success, wrong password and round trip)
    reports = [
        run(lab, "healthy", ("imap", "pop3", "smtp")),
        run(lab, "login-wrong-password", ("imap", "pop3", "smtp")),
        run(lab, "login-roundtrip", ("roundtrip",), send_test_message=True),
    ]
    for report, scenario in zip(reports, ("healthy", "login-wrong-password", "login-roundtrip"),
                                strict=True):  # fmt: skip
        password = lab.scenario(scenario).users[0][1]
        # Then neither the JSON nor the HTML holds the password in any form
        for text in (dumps(report), render(report)):
            assert password not in text
            assert "AUTH PLAIN «redacted»" in dumps(report) or scenario == "login-roundtrip"
