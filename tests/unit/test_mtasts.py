"""MTA-STS (probes.mailauth.mtasts): TXT record, policy file, MX pattern matching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.core.model import Status
from probes.mailauth.mtasts import (
    FINDINGS,
    MAX_POLICY_BYTES,
    MtaStsParseError,
    check_mtasts_record,
    check_policy,
    check_policy_text,
    mtasts_name,
    mx_matches,
    parse_mtasts_record,
    parse_policy,
    policy_url,
)
from tests.unit.mailauth_dns import FakeDns

D = "example.com"
POLICY = (
    "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.backup.example.net\n"
    "max_age: 604800\n"
)


def codes(findings: object) -> list[str]:
    return [f.code for f in findings]  # type: ignore[attr-defined]


# --- TXT record ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "record_id", "extensions"),
    [
        ("v=STSv1; id=20240101T000000;", "20240101T000000", ()),
        ("v=STSv1;id=abc", "abc", ()),
        ("v=STSv1; id=" + "a" * 32, "a" * 32, ()),
        ("v=STSv1; id=1; ext.name=val-ue", "1", (("ext.name", "val-ue"),)),
        ("v=STSv1 ; id=x ;", "x", ()),
    ],
)
def test_record_parses(
    record: str, record_id: str, extensions: tuple[tuple[str, str], ...]
) -> None:
    # Given a valid _mta-sts record
    # When it is parsed
    parsed = parse_mtasts_record(record)
    # Then its id and extension fields are read
    assert (parsed.id, parsed.extensions) == (record_id, extensions)


@pytest.mark.parametrize(
    ("record", "position", "message"),
    [
        ("v=STSv2; id=1", 0, "v=STSv1"),
        ("v=stsv1; id=1", 0, "v=STSv1"),
        ("id=1; v=STSv1", 0, "v=STSv1"),
        ("v=STSv1", None, "required"),
        ("v=STSv1; id=", 9, "1 to 32"),
        ("v=STSv1; id=" + "a" * 33, 9, "1 to 32"),
        ("v=STSv1; id=abc-def", 9, "1 to 32"),
        ("v=STSv1; id=1; id=2", 15, "twice"),
        ("v=STSv1;; id=1", 8, "empty"),
        ("v=STSv1; id=1; bad", 15, "not a valid field"),
        ("v=STSv1; id=1; x=a=b", 15, "not a valid field"),
        ("v=STSv1; id=\u00e91", 12, "non-ASCII"),
    ],
)
def test_record_errors(record: str, position: int | None, message: str) -> None:
    # Given an invalid _mta-sts record
    # When it is parsed
    with pytest.raises(MtaStsParseError) as caught:
        parse_mtasts_record(record)
    # Then the error says where and what
    assert caught.value.position == position
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected", "status"),
    [
        (["v=STSv1; id=1"], ["dns.mtasts.valid"], Status.PASS),
        ("nxdomain", ["dns.mtasts.missing"], Status.WARN),
        (["some other text"], ["dns.mtasts.missing"], Status.WARN),
        (["v=STSv1; id=1", "v=STSv1; id=2"], ["dns.mtasts.multiple"], Status.FAIL),
        (["v=STSv1; id=not-alnum"], ["dns.mtasts.syntax"], Status.FAIL),
        ("servfail", ["dns.mtasts.temperror"], Status.INCONCLUSIVE),
    ],
)
def test_record_check(value: object, expected: list[str], status: Status) -> None:
    # Given the TXT answer at _mta-sts.<domain>
    name = mtasts_name(D)
    found = FakeDns({(name, "TXT"): value}).answer(name, "TXT")  # type: ignore[dict-item]
    # When it is judged
    result = check_mtasts_record(D, found)
    # Then exactly the expected finding is made
    assert codes(result.findings) == expected
    assert result.findings[0].status is status


def test_policy_location() -> None:
    # Given a domain
    # When the policy URL and record name are built
    # Then they follow RFC 8461 3.1 and 3.3
    assert mtasts_name("Example.COM.") == "_mta-sts.example.com"
    assert policy_url("example.com") == "https://mta-sts.example.com/.well-known/mta-sts.txt"


# --- policy file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        POLICY,
        POLICY.replace("\n", "\r\n"),
        POLICY.rstrip("\n"),
        "  version: STSv1\n\nmode:enforce\n mx: mail.example.com\n"
        "mx: *.backup.example.net\nmax_age:   604800  \n",
        POLICY + "future_field: anything goes\n",
        POLICY.encode(),
    ],
)
def test_policy_parses_lf_crlf_spacing_and_unknown_keys(text: str | bytes) -> None:
    # Given a valid policy written with LF or CRLF, extra spaces, or unknown keys
    # When it is parsed
    policy = parse_policy(text)
    # Then the fields are read, mx patterns in order
    assert (policy.version, policy.mode, policy.max_age) == ("STSv1", "enforce", 604800)
    assert policy.mx == ("mail.example.com", "*.backup.example.net")


def test_policy_mode_none_needs_no_mx() -> None:
    # Given a policy withdrawing MTA-STS
    # When it is parsed
    policy = parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n")
    # Then it is valid without mx lines
    assert (policy.mode, policy.mx) == ("none", ())


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", 0, '"version" field is required'),
        ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", 1, "STSv1"),
        (
            "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n",
            2,
            "enforce, testing or none",
        ),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", 4, "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", 4, "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n", 4, "max_age"),
        ("version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n", 3, "twice"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", 0, '"mx" field'),
        ("version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", 3, "mx pattern"),
        ("version: STSv1\nmode: enforce\nmx: mail.*.example\nmax_age: 1\n", 3, "mx pattern"),
        ("version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n", 3, "mx pattern"),
        ("version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n", 2, "key: value"),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n<html>: x\n",
            5,
            "not a valid field",
        ),
        ("version: STSv1\nmode: enforce\x00\nmx: a.example\nmax_age: 1\n", 2, "control character"),
    ],
)
def test_policy_errors_name_the_line(text: str, line: int, message: str) -> None:
    # Given an invalid policy file
    # When it is parsed
    with pytest.raises(MtaStsParseError) as caught:
        parse_policy(text)
    # Then the error names the line and the problem
    assert caught.value.line == line
    assert message in caught.value.message


def test_policy_size_is_bounded() -> None:
    # Given a policy body larger than the bound
    text = POLICY + "x: " + "y" * MAX_POLICY_BYTES + "\n"
    # When it is parsed
    # Then it is refused without being read line by line
    with pytest.raises(MtaStsParseError, match="bytes"):
        parse_policy(text)


def test_policy_must_be_utf8() -> None:
    # Given a body that is not UTF-8
    # When it is parsed
    with pytest.raises(MtaStsParseError) as caught:
        parse_policy(b"version: STSv1\nmode: \xff\n")
    # Then the offset of the bad byte is given
    assert caught.value.position == 21


# --- MX matching (RFC 8461 4.1) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.com.", True),
        ("mail.example.com.", "mail.example.com", True),
        ("mail.example.com", "mail2.example.com", False),
        ("mail.example.com", "example.com", False),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "MX1.EXAMPLE.COM.", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "mx1.example.net", False),
        ("*.example.com", ".example.com", False),
        ("*", "example.com", False),
        ("*.", "example.com", False),
        ("mail.*.com", "mail.example.com", False),
        ("", "", False),
        ("*.bücher.example", "mx.xn--bcher-kva.example", True),
    ],
)
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    # Given a policy mx pattern and an MX host name
    # When they are compared
    # Then a wildcard covers exactly one leftmost label, case and trailing dots ignored
    assert mx_matches(pattern, host) is expected


# --- check_policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "mx_hosts", "expected", "status"),
    [
        (
            "enforce",
            ["mail.example.com", "a.backup.example.net"],
            ["dns.mtasts.policy_valid"],
            Status.PASS,
        ),
        (
            "enforce",
            ["mail.example.com", "other.example.org"],
            ["dns.mtasts.mx_not_covered"],
            Status.FAIL,
        ),
        ("enforce", ["b.a.backup.example.net"], ["dns.mtasts.mx_not_covered"], Status.FAIL),
        (
            "testing",
            ["other.example.org"],
            ["dns.mtasts.mx_not_covered", "dns.mtasts.testing"],
            Status.WARN,
        ),
        ("testing", ["mail.example.com"], ["dns.mtasts.testing"], Status.WARN),
        ("none", ["other.example.org"], ["dns.mtasts.mode_none"], Status.WARN),
        ("enforce", [], ["dns.mtasts.policy_valid"], Status.PASS),
    ],
)
def test_check_policy_against_mx(
    mode: str, mx_hosts: list[str], expected: list[str], status: Status
) -> None:
    # Given a policy in a mode and the domain's MX hosts
    policy = parse_policy(POLICY.replace("enforce", mode))
    # When the policy is checked against them
    findings = check_policy(policy, mx_hosts)
    # Then every MX must match: a failure in enforce mode, a warning in testing mode
    assert codes(findings) == expected
    assert max((f.status for f in findings), key=lambda s: s.severity) is status


def test_uncovered_hosts_are_listed() -> None:
    # Given two MX hosts outside the policy
    policy = parse_policy(POLICY)
    # When the policy is checked
    (finding,) = check_policy(policy, ["x.example.org", "mail.example.com", "y.example.org"])
    # Then the finding lists exactly the uncovered hosts
    assert finding.evidence["uncovered"] == ["x.example.org", "y.example.org"]


@pytest.mark.parametrize(
    ("max_age", "short"), [(0, True), (86399, True), (86400, False), (31557600, False)]
)
def test_short_max_age_is_a_warning(max_age: int, short: bool) -> None:
    # Given a policy with a max_age
    policy = parse_policy(POLICY.replace("604800", str(max_age)))
    # When it is checked
    findings = check_policy(policy, ["mail.example.com"])
    # Then less than a day is a warning
    assert ("dns.mtasts.max_age_short" in codes(findings)) is short


def test_check_policy_text_reports_syntax() -> None:
    # Given an unparseable policy body
    # When it is parsed and checked together
    result = check_policy_text("<html>not a policy</html>", ["mail.example.com"])
    # Then one syntax finding, no exception
    assert result.policy is None
    assert codes(result.findings) == ["dns.mtasts.policy_syntax"]


def test_every_code_is_declared_once() -> None:
    # Given the module's finding specifications
    all_codes = [spec.code for spec in FINDINGS]
    # When they are checked
    # Then the codes are unique and under dns.mtasts.
    assert len(all_codes) == len(set(all_codes))
    assert all(c.startswith("dns.mtasts.") for c in all_codes)


# --- hostile input ---------------------------------------------------------------------------

_POLICY_PARTS = st.sampled_from(
    [
        "version",
        "mode",
        "mx",
        "max_age",
        ":",
        " ",
        "\n",
        "\r\n",
        "STSv1",
        "enforce",
        "testing",
        "none",
        "*.",
        "example.com",
        "1",
        "0",
        "86400",
        "x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.text(max_size=300)
    | st.binary(max_size=300)
    | st.lists(_POLICY_PARTS, max_size=60).map("".join)
)
def test_policy_parser_raises_only_its_own_error(text: str | bytes) -> None:
    # Given arbitrary or policy-like text
    # When it is parsed
    # Then it parses or raises MtaStsParseError, nothing else
    try:
        parse_policy(text)
    except MtaStsParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120) | st.binary(max_size=120))
def test_record_parser_raises_only_its_own_error(text: str | bytes) -> None:
    # Given arbitrary text
    # When it is parsed as an _mta-sts record
    # Then it parses or raises MtaStsParseError, nothing else
    try:
        parse_mtasts_record(text)
    except MtaStsParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_mx_matches_never_raises(pattern: str, host: str) -> None:
    # Given any two strings
    # When they are matched
    # Then a boolean comes back
    assert mx_matches(pattern, host) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300), st.lists(st.text(max_size=30), max_size=4))
def test_check_policy_text_never_raises(text: str | bytes, hosts: list[str]) -> None:
    # Given any body and any MX names
    # When they are checked
    result = check_policy_text(text, hosts)
    # Then findings come back, never an exception
    assert result.findings or result.policy is not None
