"""Baseline scenarios: the healthy domain and the ones that exercise the lab's machinery."""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, FilterRule, HttpRule, Scenario

__all__ = ["SCENARIOS"]

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="healthy",
        description="Everything right: DNS, SPF/DMARC/DKIM, MTA-STS, TLS-RPT, valid chains",
    ),
    Scenario(
        name="expired-cert",
        description="The mail host (IMAP, POP3, submission) presents an expired certificate",
        certs={"mail": "expired"},
        expect=(
            Expect(code="tls.cert.expired", status="fail",
                   subject="mail.expired-cert.test:993"),
            Expect(code="tls.cert.expired", status="fail",
                   subject="mail.expired-cert.test:587"),
        ),
    ),
    Scenario(
        name="filtered",
        description="IMAPS 993 dropped, POP3S 995 rejected, the MX's IPv6 address dropped",
        filters=(
            FilterRule(role="mail", port=993, action="drop"),
            FilterRule(role="mail", port=995, action="reject"),
            FilterRule(role="mx", port=None, action="drop", family="6"),
        ),
        expect=(
            Expect(code="ports.filtered", status="fail"),
            Expect(code="ports.ipv6_broken", status="fail", subject="mx.filtered.test:25"),
            Expect(code="ports.filtered", status="fail", subject="mail.filtered.test:993"),
            Expect(code="ports.closed", status="fail", subject="mail.filtered.test:995"),
        ),
    ),
    Scenario(
        name="signed",
        description="The healthy zone, DNSSEC-signed (ECDSAP256SHA256); DS in the trust anchor",
        signed=True,
        expect=(Expect(code="dns.dnssec.signed", status="pass", subject="signed.test"),),
    ),
    Scenario(
        name="no-mx",
        description="No MX record: mail goes to the apex's A/AAAA (RFC 5321 5.1 implicit MX)",
        remove=(("@", "MX"),),
        expect=(Expect(code="dns.mx.missing", status="warn"),),
    ),
    Scenario(
        name="plaintext-auth",
        description="IMAP 143 and POP3 110 accept a password before STARTTLS",
        dovecot={"disable_plaintext_auth": "no"},
        expect=(
            Expect(code="imap.login.plaintext_allowed", status="warn",
                   subject="mail.plaintext-auth.test:143"),
            Expect(code="pop3.login.plaintext_allowed", status="warn",
                   subject="mail.plaintext-auth.test:110"),
        ),
    ),
    Scenario(
        name="no-starttls",
        description="The MX does not offer STARTTLS on port 25",
        postfix={25: {"smtpd_tls_security_level": "none"}},
        expect=(
            Expect(code="tls.starttls.missing", status="fail", subject="mx.no-starttls.test:25"),
        ),
    ),
    Scenario(
        name="autodiscover-redirect",
        description="Autodiscover only by the HTTP redirect method; the apex answers 404",
        http=(
            HttpRule(
                path="/autodiscover/autodiscover.xml",
                status=302,
                location="https://{host}/autodiscover/autodiscover.xml",
                roles=("autodiscover",),
                ports=(80,),
            ),
            HttpRule(path="/autodiscover/", status=404, roles=("apex",), ports=(443,)),
        ),
    ),
)
