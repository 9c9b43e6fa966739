"""Certificate, TLS and reachability scenarios.

Weak crypto (an RSA-1024 key, a SHA-1 signature, TLS 1.0 and 1.1) is served by Dovecot
with OpenSSL's security level lowered to 0 for that scenario's addresses alone
(``ssl_cipher_list = DEFAULT:@SECLEVEL=0`` in its ``local`` block): at Debian's default
level OpenSSL refuses to load such certificates or to speak those versions, which is
also why old servers that still do stand out.
"""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, Scenario

__all__ = ["SCENARIOS"]

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="cert-not-yet-valid",
        description="The mail host's certificate is not valid yet (clock or issuance error)",
        certs={"mail": "not_yet_valid"},
        expect=(Expect(code="tls.cert.not_yet_valid", status="fail",
                       subject="mail.cert-not-yet-valid.test:993"),),
    ),
    Scenario(
        name="cert-expiring",
        description="The mail host's certificate expires in 10 days",
        certs={"mail": "expiring"},
        expect=(Expect(code="tls.cert.expiring_soon", status="warn",
                       subject="mail.cert-expiring.test:993"),),
    ),
    Scenario(
        name="cert-wrong-name",
        description="The mail host presents a certificate for another name",
        certs={"mail": "wrong_name"},
        expect=(Expect(code="tls.cert.name_mismatch", status="fail",
                       subject="mail.cert-wrong-name.test:993"),),
    ),
    Scenario(
        name="cert-self-signed",
        description="Self-signed certificates on the MX (25: a warning) and on submission (fail)",
        certs={"mx": "self_signed", "mail": "self_signed"},
        expect=(
            Expect(code="tls.cert.self_signed", status="warn",
                   subject="mx.cert-self-signed.test:25"),
            Expect(code="tls.cert.self_signed", status="fail",
                   subject="mail.cert-self-signed.test:587"),
            # Inbound delivery: verified like every connection outside the TLS check, so
            # the untrusted certificate ends that session and a plain one checks the RCPT.
            Expect(code="smtp.inbound.starttls_untrusted", status="warn",
                   subject="mx.cert-self-signed.test:25"),
            Expect(code="smtp.inbound.rcpt_accepted", status="pass",
                   subject="mx.cert-self-signed.test:25"),
        ),
    ),
    Scenario(
        name="cert-untrusted-root",
        description="The mail host's chain ends at a root nobody trusts",
        certs={"mail": "untrusted_root"},
        expect=(Expect(code="tls.chain.untrusted_root", status="fail",
                       subject="mail.cert-untrusted-root.test:993"),),
    ),
    Scenario(
        name="cert-missing-intermediate",
        description="The mail host sends only its leaf; the AIA URL serves the intermediate",
        certs={"mail": "leaf_only"},
        expect=(Expect(code="tls.chain.missing_intermediate", status="fail",
                       subject="mail.cert-missing-intermediate.test:993"),),
    ),
    Scenario(
        name="cert-extra",
        description="The mail host sends an unrelated certificate and a duplicate intermediate",
        certs={"mail": "extra_certs"},
        expect=(Expect(code="tls.chain.extra_certs", status="warn",
                       subject="mail.cert-extra.test:993"),),
    ),
    Scenario(
        name="no-starttls-client",
        description="Submission (587) offers no STARTTLS",
        postfix={587: {"smtpd_tls_security_level": "none", "smtpd_tls_auth_only": "no"}},
        expect=(Expect(code="tls.starttls.missing", status="fail",
                       subject="mail.no-starttls-client.test:587"),),
    ),
    Scenario(
        name="cert-misordered",
        description="The mail host sends leaf, root, intermediate: out of order but complete",
        certs={"mail": "misordered"},
        expect=(Expect(code="tls.chain.wrong_order", status="warn",
                       subject="mail.cert-misordered.test:993"),),
    ),
    Scenario(
        name="cert-weak-key",
        description="IMAP on the mail host presents a certificate with a 1024-bit RSA key",
        certs={"mail:993": "rsa1024"},
        dovecot={"ssl_cipher_list": "DEFAULT:@SECLEVEL=0"},
        expect=(Expect(code="tls.key.weak", status="fail",
                       subject="mail.cert-weak-key.test:993"),),
    ),
    Scenario(
        name="cert-sha1",
        description="IMAP on the mail host presents a certificate signed with SHA-1",
        certs={"mail:993": "sha1"},
        dovecot={"ssl_cipher_list": "DEFAULT:@SECLEVEL=0"},
        expect=(Expect(code="tls.cert.sha1_signature", status="fail",
                       subject="mail.cert-sha1.test:993"),),
    ),
    Scenario(
        name="tls-legacy-versions",
        description="IMAP and POP3 on the mail host still accept TLS 1.0 and 1.1",
        dovecot={"ssl_min_protocol": "TLSv1", "ssl_cipher_list": "DEFAULT:@SECLEVEL=0"},
        expect=(
            Expect(code="tls.version.legacy", status="warn",
                   subject="mail.tls-legacy-versions.test:993"),
            Expect(code="tls.version.legacy", status="warn",
                   subject="mail.tls-legacy-versions.test:995"),
        ),
    ),
    Scenario(
        name="slow-greeting",
        description="Submission (587) greets only after 6 s (a client restriction that sleeps)",
        postfix={587: {"smtpd_delay_reject": "no", "smtpd_client_restrictions": "sleep,6,permit"}},
        expect=(Expect(code="ports.banner.slow", status="warn",
                       subject="mail.slow-greeting.test:587"),),
    ),
    Scenario(
        name="mx-greeting-refused",
        description="The MX answers the connection with 554 instead of 220",
        postfix={25: {"smtpd_delay_reject": "no", "smtpd_client_restrictions": "reject"}},
        expect=(Expect(code="ports.banner.refused", status="inconclusive",
                       subject="mx.mx-greeting-refused.test:25"),),
    ),
)
