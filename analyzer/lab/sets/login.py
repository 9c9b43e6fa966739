"""Client login scenarios (IMAP, POP3, SMTP, EWS, ActiveSync, RPC/HTTP, MAPI/HTTP).

Each is the healthy baseline with one thing a user or a sender would trip over. Dovecot's
refusals use its ``rca_deny`` / ``rca_nologin_<service>`` pseudo-settings (see
``analyzer.lab.dovecot``); the Exchange endpoints' behaviour is the ``emulator`` mapping
(see ``analyzer.lab.emulator_exchange``).
"""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, FilterRule, HttpRule, Scenario

__all__ = ["SCENARIOS"]


def _user(scenario: str, local: str = "alice") -> str:
    return f"{local}@{scenario}.test"


_AUTOCONFIG_PATHS = ("mail/config-v1.1.xml", ".well-known/autoconfig/mail/config-v1.1.xml")
# Thunderbird autoconfig naming IMAP on 143 with STARTTLS (and the usual submission).
_AUTOCONFIG_IMAP_143 = """<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="login-imap-starttls-only.test">
    <domain>login-imap-starttls-only.test</domain>
    <incomingServer type="imap">
      <hostname>mail.login-imap-starttls-only.test</hostname>
      <port>143</port>
      <socketType>STARTTLS</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>mail.login-imap-starttls-only.test</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="login-wrong-password",
        description="The servers hold another password for the user than the one rca is given",
        dovecot={"rca_deny": _user("login-wrong-password")},
        emulator={"deny": [_user("login-wrong-password")]},
        expect=(
            Expect(code="imap.login.failed", status="fail",
                   subject="mail.login-wrong-password.test:993"),
            Expect(code="imap.login.failed", status="fail",
                   subject="mail.login-wrong-password.test:143"),
            Expect(code="pop3.login.failed", status="fail",
                   subject="mail.login-wrong-password.test:995"),
            Expect(code="smtp.submission.login.failed", status="fail",
                   subject="mail.login-wrong-password.test:587"),
            Expect(code="ews.auth.rejected", status="fail",
                   subject="https://mail.login-wrong-password.test/EWS/Exchange.asmx"),
            Expect(code="activesync.auth.rejected", status="fail",
                   subject="https://mail.login-wrong-password.test/Microsoft-Server-ActiveSync"),
        ),
    ),
    Scenario(
        name="login-pop-disabled",
        description="POP3 is disabled for the user (the password is right; IMAP works)",
        dovecot={"rca_nologin_pop3": _user("login-pop-disabled")},
        expect=(
            Expect(code="pop3.login.disabled_for_user", status="fail",
                   subject="mail.login-pop-disabled.test:995"),
            Expect(code="pop3.login.disabled_for_user", status="fail",
                   subject="mail.login-pop-disabled.test:110"),
            Expect(code="imap.login.ok", status="pass",
                   subject="mail.login-pop-disabled.test:993"),
        ),
    ),
    Scenario(
        name="login-imap-starttls-only",
        description="IMAP only on 143: LOGINDISABLED until STARTTLS, no IMAPS published",
        remove=(("_imaps._tcp", "SRV"),),
        filters=(FilterRule(role="mail", port=993, action="reject"),),
        files={path: _AUTOCONFIG_IMAP_143 for path in _AUTOCONFIG_PATHS},
        emulator={"autodiscover": {"settings": {"imap_port": 143}}},
        expect=(
            Expect(code="imap.login.tls_required", status="pass",
                   subject="mail.login-imap-starttls-only.test:143"),
            Expect(code="imap.login.ok", status="pass",
                   subject="mail.login-imap-starttls-only.test:143"),
        ),
    ),
    Scenario(
        name="login-submission-no-auth",
        description="Submission (587 and 465) offers no AUTH: clients cannot log in to send",
        postfix={587: {"smtpd_sasl_auth_enable": "no"}, 465: {"smtpd_sasl_auth_enable": "no"}},
        expect=(
            Expect(code="smtp.submission.no_auth", status="fail",
                   subject="mail.login-submission-no-auth.test:587"),
            Expect(code="smtp.submission.no_auth", status="fail",
                   subject="mail.login-submission-no-auth.test:465"),
        ),
    ),
    Scenario(
        name="login-mx-greylisting",
        description="The MX answers every recipient with 450 (greylisting): inconclusive",
        postfix={25: {"smtpd_recipient_restrictions": "defer"}},
        expect=(
            Expect(code="smtp.inbound.rcpt_deferred", status="inconclusive",
                   subject="mx.login-mx-greylisting.test:25"),
        ),
    ),
    Scenario(
        name="login-mx-rejects",
        description="The MX rejects the user's address (554)",
        postfix={25: {"smtpd_recipient_restrictions": "reject"}},
        expect=(
            Expect(code="smtp.inbound.rcpt_rejected", status="fail",
                   subject="mx.login-mx-rejects.test:25"),
        ),
    ),
    Scenario(
        name="login-open-relay",
        description="The MX relays for anyone (found by the opt-in --relay-test)",
        # The classic mistake: "my networks" is the whole internet. (Postfix refuses to start
        # an smtpd whose restrictions could never refuse relaying, so "permit" alone won't do.)
        # The lab's error transport would still refuse outside recipients at RCPT time, so
        # that check is off too (nothing can leave the lab: no DATA is ever sent, and the
        # error transport would bounce it anyway).
        postfix={25: {"mynetworks": "0.0.0.0/0,[::]/0",
                      "smtpd_relay_restrictions": "permit_mynetworks,reject_unauth_destination",
                      "smtpd_recipient_restrictions": "permit_mynetworks",
                      "smtpd_reject_unlisted_recipient": "no"}},
        # The relay test is opt-in; a default check sees an MX that accepts the user.
        expect=(
            Expect(code="smtp.inbound.rcpt_accepted", status="pass",
                   subject="mx.login-open-relay.test:25"),
        ),
    ),
    Scenario(
        name="login-roundtrip",
        description="A mailbox for the round trip (--send-test-message): submission to IMAP",
        expect=(
            Expect(code="smtp.submission.login.ok", status="pass",
                   subject="mail.login-roundtrip.test:587"),
            Expect(code="imap.login.ok", status="pass", subject="mail.login-roundtrip.test:993"),
        ),
    ),
    Scenario(
        name="login-ews-blocked",
        description="EWS refuses the user (Set-CASMailbox -EwsEnabled $false): 401 on EWS only",
        emulator={"ews": {"blocked_users": [_user("login-ews-blocked")]}},
        expect=(
            Expect(code="ews.auth.rejected", status="fail",
                   subject="https://mail.login-ews-blocked.test/EWS/Exchange.asmx"),
        ),
    ),
    Scenario(
        name="login-activesync-provision",
        description="ActiveSync answers FolderSync with 449 until the device provisions",
        emulator={"activesync": {"provision": True}},
        expect=(
            Expect(code="activesync.provision.required", status="pass"),
            Expect(code="activesync.provision.ok", status="pass"),
            Expect(code="activesync.foldersync.ok", status="pass"),
        ),
    ),
    Scenario(
        name="login-rpc-basic-only",
        description="The RPC proxy offers Basic only while Autodiscover tells Outlook NTLM",
        emulator={"auth": {"/rpc/": ["Basic"], "*": ["Negotiate", "NTLM", "Basic"]}},
        expect=(
            Expect(code="outlookanywhere.auth.required_missing", status="fail",
                   subject="https://mail.login-rpc-basic-only.test/rpc/rpcproxy.dll"),
        ),
    ),
    Scenario(
        name="login-rpc-6004-down",
        description="Behind the RPC proxy, the address book port 6004 is unreachable (1722)",
        emulator={"rpc": {"unreachable_ports": [6004]}},
        expect=(
            Expect(code="outlookanywhere.rpc.unreachable", status="fail",
                   subject="https://mail.login-rpc-6004-down.test/rpc/rpcproxy.dll"),
            Expect(code="outlookanywhere.rpc.ok", status="pass",
                   subject="https://mail.login-rpc-6004-down.test/rpc/rpcproxy.dll"),
        ),
    ),
    Scenario(
        name="login-mapi-no-privilege",
        description="MAPI over HTTP refuses Connect with X-ResponseCode 11 (No Privilege)",
        emulator={"mapi": {"response_code": {"Connect": 11}}},
        expect=(
            Expect(code="mapihttp.response_code", status="fail"),
            Expect(code="mapihttp.session.ok", status="pass"),  # the address book still binds
        ),
    ),
    Scenario(
        name="login-no-autodiscover",
        description="No host answers Autodiscover: the Exchange checks use the conventional "
        "URLs on mail.<domain>, and say so",
        emulator={"autodiscover": {"answer": []}},
        expect=(
            Expect(code="ews.endpoint", status="pass",
                   subject="https://mail.login-no-autodiscover.test/EWS/Exchange.asmx"),
            Expect(code="ews.getfolder.ok", status="pass",
                   subject="https://mail.login-no-autodiscover.test/EWS/Exchange.asmx"),
        ),
    ),
    Scenario(
        name="login-availability-proxy-failed",
        description="Free/busy fails: the Availability service cannot proxy to the mailbox's "
        "server, whose internal EWS URL has a certificate it does not trust "
        "(ErrorProxyRequestProcessingFailed); the mailbox and OOF work",
        emulator={"availability": {
            "response_code": "ErrorProxyRequestProcessingFailed",
            "message": "Proxy web request failed., inner exception: The underlying connection "
            "was closed: Could not establish trust relationship for the SSL/TLS secure channel.",
        }},  # fmt: skip
        expect=(
            Expect(code="ews.availability.error", status="fail",
                   subject="https://mail.login-availability-proxy-failed.test/EWS/Exchange.asmx"),
            Expect(code="ews.oof.ok", status="pass"),
            Expect(code="ews.getfolder.ok", status="pass"),
        ),
    ),
    Scenario(
        name="login-oof-denied",
        description="EWS throttles free/busy (ErrorServerBusy fault) and an EWS access policy "
        "refuses the OOF settings (ErrorAccessDenied)",
        emulator={"availability": {"fault": "ErrorServerBusy"},
                  "oof": {"response_code": "ErrorAccessDenied",
                          "message": "Access is denied. Check credentials and try again."}},
        expect=(
            Expect(code="ews.oof.error", status="fail",
                   subject="https://mail.login-oof-denied.test/EWS/Exchange.asmx"),
            Expect(code="ews.server_busy", status="inconclusive"),
        ),
    ),
)

_ = HttpRule
