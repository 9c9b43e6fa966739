"""Published examples from the mail-authentication RFCs, through rca's parsers and checks.

The record texts are quoted from the RFCs' appendices (each case cites its section), joined
from the zone-file strings the RFCs print over several lines. They ground the DMARC and
DKIM readers in text this project did not write (DESIGN.md section 8).
"""

from __future__ import annotations

import pytest

from analyzer.core.model import Status
from probes.mailauth.dkim import check_dkim_key, key_bits, parse_dkim_key
from probes.mailauth.dmarc import check_report_destinations, parse_dmarc
from tests.unit.mailauth_dns import FakeDns

# RFC 7489 Appendix B.2: DMARC records of example.com.
B_2_1 = "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com"
B_2_2 = (
    "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com; ruf=mailto:auth-reports@example.com"
)
B_2_3 = (
    "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com; "
    "ruf=mailto:auth-reports@thirdparty.example.net"
)
B_2_4 = (
    "v=DMARC1; p=quarantine; rua=mailto:dmarc-feedback@example.com,"
    "mailto:tld-test@thirdparty.example.net!10m; pct=25"
)
# RFC 7489 Appendix B.2.3 (and 7.1): thirdparty.example.net accepts example.com's reports.
B_2_3_AUTHORISATION = ("example.com._report._dmarc.thirdparty.example.net", "TXT")
# RFC 8463 Appendix A.2: the Ed25519 key of brisbane._domainkey.football.example.com.
RFC8463_ED25519 = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


@pytest.mark.parametrize(
    ("record", "policy", "pct", "rua", "ruf"),
    [
        (B_2_1, "none", 100, [("dmarc-feedback@example.com", None)], []),
        (
            B_2_2,
            "none",
            100,
            [("dmarc-feedback@example.com", None)],
            [("auth-reports@example.com", None)],
        ),
        (
            B_2_3,
            "none",
            100,
            [("dmarc-feedback@example.com", None)],
            [("auth-reports@thirdparty.example.net", None)],
        ),
        (
            B_2_4,
            "quarantine",
            25,
            [("dmarc-feedback@example.com", None), ("tld-test@thirdparty.example.net", "10m")],
            [],
        ),
    ],
    ids=["B.2.1", "B.2.2", "B.2.3", "B.2.4"],
)
def test_rfc7489_appendix_b2_records(
    record: str,
    policy: str,
    pct: int,
    rua: list[tuple[str, str | None]],
    ruf: list[tuple[str, str | None]],
) -> None:
    # Given a DMARC record printed in RFC 7489 Appendix B.2
    # When it is parsed
    parsed = parse_dmarc(record)
    # Then policy, sampling rate and report destinations (with size limits) are as written
    assert (parsed.p, parsed.pct) == (policy, pct)
    assert [(u.address, u.size_limit) for u in parsed.rua] == rua
    assert [(u.address, u.size_limit) for u in parsed.ruf] == ruf


@pytest.mark.parametrize(
    ("zone", "code", "status"),
    [
        ({B_2_3_AUTHORISATION: ["v=DMARC1"]}, "dns.dmarc.report_authorised", Status.PASS),
        ({}, "dns.dmarc.report_unauthorised", Status.WARN),
    ],
    ids=["authorised", "not-authorised"],
)
async def test_rfc7489_b23_third_party_report_authorisation(
    zone: dict[tuple[str, str], list[str]], code: str, status: Status
) -> None:
    # Given example.com's B.2.3 record, sending failure reports to thirdparty.example.net,
    # with or without the authorisation record B.2.3 shows
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When the external destinations are checked (RFC 7489 7.1)
    findings = await check_report_destinations(parse_dmarc(B_2_3), "example.com", dns)
    # Then the name asked is the RFC's, and the verdict follows its answer
    assert dns.asked == [B_2_3_AUTHORISATION]
    assert [(f.code, f.status) for f in findings] == [(code, status)]


def test_rfc8463_appendix_a2_ed25519_key() -> None:
    # Given the Ed25519 key record printed in RFC 8463 Appendix A.2
    # When it is read and checked
    key = parse_dkim_key(RFC8463_ED25519)
    findings = check_dkim_key("brisbane", "football.example.com", RFC8463_ED25519)
    # Then it is a 32-byte Ed25519 key, and a valid record
    assert (key.key_type, len(key.public_key), key_bits(key)) == ("ed25519", 32, 256)
    assert [f.code for f in findings] == ["dns.dkim.valid"]
