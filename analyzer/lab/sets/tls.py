"""Certificate, TLS and reachability scenarios.

Weak-crypto certificates (RSA-1024, SHA-1) and TLS 1.0 servers are exercised by
loopback servers in tests/hostile/test_tls_hostile.py instead: Debian's OpenSSL
refuses to load such certificates at its default security level.
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
)
