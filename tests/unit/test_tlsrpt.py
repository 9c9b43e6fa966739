"""TLS-RPT (probes.mailauth.tlsrpt): the _smtp._tls record's syntax and report URIs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.core.model import Status
from probes.mailauth.tlsrpt import (
    FINDINGS,
    TlsRptParseError,
    check_tlsrpt,
    parse_tlsrpt,
    tlsrpt_name,
)
from tests.unit.mailauth_dns import FakeDns

D = "example.com"


def codes(findings: object) -> list[str]:
    return [f.code for f in findings]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("record", "rua"),
    [
        ("v=TLSRPTv1; rua=mailto:tls@example.com", ("mailto:tls@example.com",)),
        ("v=TLSRPTv1;rua=mailto:a@example.com;", ("mailto:a@example.com",)),
        (
            "v=TLSRPTv1; rua=mailto:a@example.com, https://reports.example.net/tls",
            ("mailto:a@example.com", "https://reports.example.net/tls"),
        ),
        ("v=TLSRPTv1; rua=ftp://example.com/x", ("ftp://example.com/x",)),
        ("v=TLSRPTv1; ext=1; rua=mailto:a@example.com", ("mailto:a@example.com",)),
    ],
)
def test_parse_reads_rua(record: str, rua: tuple[str, ...]) -> None:
    # Given a syntactically valid record (any URI scheme parses)
    # When it is parsed
    # Then the report URIs are read in order
    assert parse_tlsrpt(record).rua == rua


@pytest.mark.parametrize(
    ("record", "position", "message"),
    [
        ("v=TLSRPTv2; rua=mailto:a@example.com", 0, "v=TLSRPTv1"),
        ("v=tlsrptv1; rua=mailto:a@example.com", 0, "v=TLSRPTv1"),
        ("v=TLSRPTv1", None, "required"),
        ("v=TLSRPTv1; ext=1", None, "required"),
        ("v=TLSRPTv1; rua=", 12, "not a URI"),
        ("v=TLSRPTv1; rua=not a uri", 12, "not a URI"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,", 12, "not a URI"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", 38, "twice"),
        ("v=TLSRPTv1;; rua=mailto:a@example.com", 11, "empty"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; junk", 38, "not a valid field"),
        ("v=TLSRPTv1; rua=mailto:\u00e9@example.com", 23, "non-ASCII"),
    ],
)
def test_parse_errors(record: str, position: int | None, message: str) -> None:
    # Given an invalid record
    # When it is parsed
    with pytest.raises(TlsRptParseError) as caught:
        parse_tlsrpt(record)
    # Then the error says where and what
    assert caught.value.position == position
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected", "status"),
    [
        (["v=TLSRPTv1; rua=mailto:tls@example.com"], ["dns.tlsrpt.valid"], Status.PASS),
        (["v=TLSRPTv1; rua=https://r.example.net/v1"], ["dns.tlsrpt.valid"], Status.PASS),
        (["v=TLSRPTv1; rua=http://r.example.net/v1"], ["dns.tlsrpt.bad_scheme"], Status.FAIL),
        (["v=TLSRPTv1; rua=ftp://r.example.net/"], ["dns.tlsrpt.bad_scheme"], Status.FAIL),
        (["v=TLSRPTv1; rua=mailto:nobody"], ["dns.tlsrpt.bad_scheme"], Status.FAIL),
        (["v=TLSRPTv1; rua=https:/no-host"], ["dns.tlsrpt.bad_scheme"], Status.FAIL),
        (
            ["v=TLSRPTv1; rua=ftp://r.example.net/,mailto:tls@example.com"],
            ["dns.tlsrpt.bad_scheme", "dns.tlsrpt.valid"],
            Status.FAIL,
        ),
        ("nxdomain", ["dns.tlsrpt.missing"], Status.WARN),
        (["v=spf1 -all"], ["dns.tlsrpt.missing"], Status.WARN),
        (
            ["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"],
            ["dns.tlsrpt.multiple"],
            Status.FAIL,
        ),
        (["v=TLSRPTv1"], ["dns.tlsrpt.syntax"], Status.FAIL),
        ("timeout", ["dns.tlsrpt.temperror"], Status.INCONCLUSIVE),
    ],
)
def test_check_findings(value: object, expected: list[str], status: Status) -> None:
    # Given the TXT answer at _smtp._tls.<domain>
    name = tlsrpt_name(D)
    found = FakeDns({(name, "TXT"): value}).answer(name, "TXT")  # type: ignore[dict-item]
    # When it is judged
    result = check_tlsrpt(D, found)
    # Then exactly the expected findings are made: only mailto: and https: are usable
    assert codes(result.findings) == expected
    assert max((f.status for f in result.findings), key=lambda s: s.severity) is status


def test_record_name() -> None:
    # Given a domain
    # When the record's name is built
    # Then it is _smtp._tls.<domain> (RFC 8460 3)
    assert tlsrpt_name("Example.com.") == "_smtp._tls.example.com"


def test_every_code_is_declared_once() -> None:
    # Given the module's finding specifications
    all_codes = [spec.code for spec in FINDINGS]
    # When they are checked
    # Then the codes are unique and under dns.tlsrpt.
    assert len(all_codes) == len(set(all_codes))
    assert all(c.startswith("dns.tlsrpt.") for c in all_codes)


_PARTS = st.sampled_from(
    ["v=TLSRPTv1", ";", " ", "rua=", "mailto:", "https://", "@", "example.com", ",", "=", "x", "/"]
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=150) | st.binary(max_size=150) | st.lists(_PARTS, max_size=40).map("".join))
def test_parser_raises_only_its_own_error(text: str | bytes) -> None:
    # Given arbitrary or TLS-RPT-like text
    # When it is parsed
    # Then it parses or raises TlsRptParseError, nothing else
    try:
        parse_tlsrpt(text)
    except TlsRptParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(_PARTS, max_size=40).map(lambda p: "v=TLSRPTv1; rua=" + "".join(p)))
def test_check_never_raises(record: str) -> None:
    # Given any record starting like a TLS-RPT record
    name = tlsrpt_name(D)
    found = FakeDns({(name, "TXT"): [record]}).answer(name, "TXT")
    # When it is judged
    result = check_tlsrpt(D, found)
    # Then findings come back, never an exception
    assert result.findings
