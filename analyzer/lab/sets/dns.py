"""DNS and mail-authentication scenarios (MX, SPF, DMARC, DKIM, MTA-STS, TLS-RPT)."""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, HttpRule, Scenario

__all__ = ["SCENARIOS"]

#: A 1024-bit RSA public key (SubjectPublicKeyInfo, base64): weak on purpose.
_RSA_1024 = (
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC6Fp0Ym2H2YUJKJBQ2UrehdJo7mRTZ3wzEiHeKUJQMEOxsPEB2d"
    "Dy1akNBuYcSYe8dLc74pI7zLFlcqHkOWu5T3/cyvtcJgDLgHiZQZ+GGPRJaNq9C/YPiqKBuCANDNegcspMz0xLfsj"
    "6uy1k/b2hnX6+ATH5KiZLzN5N/XLmKjQIDAQAB"
)
# Two character-strings (each at most 255 octets): SPF joins them without a space (RFC
# 7208 3.3), so the second starts with one.
_ELEVEN = (
    '"v=spf1 ' + " ".join(f"include:spf{i}.{{domain}}" for i in range(1, 7)) + '" '
    '" ' + " ".join(f"include:spf{i}.{{domain}}" for i in range(7, 12)) + ' -all"'
)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="null-mx",
        description="A null MX (RFC 7505): the domain declares it accepts no mail",
        records=(("@", "MX", "0 ."),),
        expect=(Expect(code="dns.mx.null", status="warn"),),
    ),
    Scenario(
        name="mx-cname",
        description="The MX points at an alias (CNAME), which RFC 2181 10.3 forbids",
        records=(("@", "MX", "10 mxalias"), ("mxalias", "CNAME", "mx")),
        expect=(Expect(code="dns.mx.cname", status="warn"),),
    ),
    Scenario(
        name="spf-lookups",
        description="SPF needs 11 DNS look-ups (the limit is 10): permerror",
        records=(
            ("@", "TXT", _ELEVEN),
            *((f"spf{i}", "TXT", '"v=spf1 -all"') for i in range(1, 12)),
        ),
        expect=(Expect(code="dns.spf.too_many_lookups", status="fail"),),
    ),
    Scenario(
        name="spf-two",
        description="Two SPF records: permerror (RFC 7208 4.5)",
        records=(("@", "TXT", '"v=spf1 mx -all"'), ("@", "TXT", '"v=spf1 a -all"')),
        expect=(Expect(code="dns.spf.multiple", status="fail"),),
    ),
    Scenario(
        name="spf-plus-all",
        description="SPF ends in +all: anyone may send as the domain",
        records=(("@", "TXT", '"v=spf1 mx +all"'),),
        expect=(Expect(code="dns.spf.plus_all", status="fail"),),
    ),
    Scenario(
        name="spf-syntax",
        description="An SPF record with a syntax error",
        records=(("@", "TXT", '"v=spf1 mx ip4:198.18.999.1 -all"'),),
        expect=(Expect(code="dns.spf.syntax", status="fail"),),
    ),
    Scenario(
        name="dmarc-missing",
        description="No DMARC record although the domain receives mail",
        remove=(("_dmarc", "TXT"),),
        expect=(Expect(code="dns.dmarc.missing", status="fail"),),
    ),
    Scenario(
        name="dmarc-none",
        description="DMARC in monitoring mode only (p=none)",
        records=(("_dmarc", "TXT", '"v=DMARC1; p=none; rua=mailto:dmarc@{domain}"'),),
        expect=(Expect(code="dns.dmarc.policy_none", status="warn"),),
    ),
    Scenario(
        name="dmarc-external-rua",
        description="DMARC reports go to another domain that has not authorised them",
        records=(("_dmarc", "TXT", '"v=DMARC1; p=reject; rua=mailto:reports@healthy.test"'),),
        expect=(Expect(code="dns.dmarc.report_unauthorised", status="warn"),),
    ),
    Scenario(
        name="dkim-1024",
        description="The DKIM key selector1 is a 1024-bit RSA key",
        records=(("selector1._domainkey", "TXT", f'"v=DKIM1; k=rsa; p={_RSA_1024}"'),),
        expect=(Expect(code="dns.dkim.key_1024", status="warn"),),
    ),
    Scenario(
        name="mtasts-mismatch",
        description="The MTA-STS policy (enforce) names an MX pattern that the MX does not match",
        records=(("_mta-sts", "TXT", '"v=STSv1; id=mismatch1"'),),
        files={
            ".well-known/mta-sts.txt": "version: STSv1\nmode: enforce\n"
            "mx: mail.elsewhere.test\nmax_age: 86400\n"
        },
        expect=(Expect(code="dns.mtasts.mx_not_covered", status="fail"),),
    ),
    Scenario(
        name="mtasts-no-policy",
        description="The _mta-sts TXT record exists but the policy URL answers 404",
        http=(HttpRule(path="/.well-known/mta-sts.txt", status=404, roles=("mta-sts",),
                       ports=(443,)),),
        expect=(Expect(code="dns.mtasts.policy_unavailable", status="fail"),),
    ),
    Scenario(
        name="tlsrpt-malformed",
        description="The TLS-RPT record sends reports to an ftp: URI",
        records=(("_smtp._tls", "TXT", '"v=TLSRPTv1; rua=ftp://reports.{domain}/"'),),
        expect=(Expect(code="dns.tlsrpt.bad_scheme", status="fail"),),
    ),
    Scenario(
        name="dane-mismatch",
        description="A DNSSEC-signed zone whose MX TLSA record matches no certificate",
        signed=True,
        records=(("_25._tcp.mx", "TLSA", "3 1 1 " + "00" * 32),),
        expect=(Expect(code="dane.mismatch", status="fail", subject="mx.dane-mismatch.test:25"),),
    ),
    Scenario(
        name="dnssec-expired",
        description="A DNSSEC-signed zone whose signatures expired yesterday",
        signed=True,
        signature_days=(-30, -1),
        expect=(Expect(code="dns.dnssec.signature_expired", status="fail",
                       subject="dnssec-expired.test"),),
    ),
    Scenario(
        name="mx-no-ptr",
        description="The MX host's addresses have no reverse DNS (PTR)",
        no_ptr=("mx",),
        expect=(Expect(code="dns.ptr.missing", status="warn"),),
    ),
    Scenario(
        name="dns-servfail",
        description="The MX host's name fails with SERVFAIL (its zone is broken)",
        servfail=("mx",),
        expect=(Expect(code="dns.servfail", status="fail", subject="dns-servfail.test"),),
    ),
    Scenario(
        name="dns-timeout",
        description="Queries for the MX host's name are never answered (a dead server)",
        dns_silent=("mx",),
        expect=(Expect(code="dns.timeout", status="inconclusive", subject="dns-timeout.test"),),
    ),
)
