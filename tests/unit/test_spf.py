"""SPF (probes.mailauth.spf): parsing, the diagnostic evaluation tree, and check_host().

DNS answers come from a dict (tests.unit.mailauth_dns.FakeDns); nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.core.model import Status
from analyzer.protocols.resolve import Lookup
from probes.mailauth.spf import (
    DNS_TERM_LIMIT,
    FINDINGS,
    MAX_QUERIES,
    MX_LIMIT,
    Mechanism,
    Modifier,
    SpfParseError,
    SpfResult,
    address_finding,
    check_host,
    evaluate_spf,
    is_spf_record,
    parse_spf,
)
from tests.unit.mailauth_dns import FakeDns, txt

D = "example.com"


def codes(findings: object) -> list[str]:
    return [f.code for f in findings]  # type: ignore[attr-defined]


def by_code(findings: object, code: str) -> object:
    found = [f for f in findings if f.code == code]  # type: ignore[attr-defined]
    assert len(found) == 1, codes(findings)
    return found[0]


# --- parsing: valid records ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("v=spf1", []),
        ("v=spf1 -all", [("-", "all", None, None, None, None)]),
        ("V=SPF1 ALL", [("+", "all", None, None, None, None)]),
        (
            "v=spf1 ?include:_spf.example.com",
            [("?", "include", "_spf.example.com", None, None, None)],
        ),
        ("v=spf1 a", [("+", "a", None, None, None, None)]),
        ("v=spf1 a/24", [("+", "a", None, None, 24, None)]),
        ("v=spf1 a//64", [("+", "a", None, None, None, 64)]),
        ("v=spf1 ~a:mail.example.com/24//64", [("~", "a", "mail.example.com", None, 24, 64)]),
        ("v=spf1 mx:example.org.", [("+", "mx", "example.org.", None, None, None)]),
        ("v=spf1 ip4:192.0.2.1", [("+", "ip4", None, "192.0.2.1", None, None)]),
        ("v=spf1 ip4:192.0.2.0/24", [("+", "ip4", None, "192.0.2.0", 24, None)]),
        ("v=spf1 ip6:2001:db8::/32", [("+", "ip6", None, "2001:db8::", None, 32)]),
        ("v=spf1 ip6:::ffff:192.0.2.1", [("+", "ip6", None, "::ffff:192.0.2.1", None, None)]),
        ("v=spf1 ptr", [("+", "ptr", None, None, None, None)]),
        ("v=spf1 ptr:example.com", [("+", "ptr", "example.com", None, None, None)]),
        ("v=spf1 exists:%{i}._spf.%{d}", [("+", "exists", "%{i}._spf.%{d}", None, None, None)]),
        ("v=spf1   -all   ", [("-", "all", None, None, None, None)]),
        # RFC 7208 5.3, 5.4, 12: only a trailing "/N", "//N" or "/N//M" is a CIDR length;
        # a "/" elsewhere is part of the domain-spec (which may hold any visible character).
        (
            "v=spf1 a:foo:bar/baz.example.com",
            [("+", "a", "foo:bar/baz.example.com", None, None, None)],
        ),
        (
            "v=spf1 mx:foo:bar/baz.example.com",
            [("+", "mx", "foo:bar/baz.example.com", None, None, None)],
        ),
        ("v=spf1 a:x/y.example.com/24", [("+", "a", "x/y.example.com", None, 24, None)]),
        ("v=spf1 mx:x/y.example.com//64", [("+", "mx", "x/y.example.com", None, None, 64)]),
        ("v=spf1 a:%{l/}.example.com/0//0", [("+", "a", "%{l/}.example.com", None, 0, 0)]),
    ],
)
def test_parse_gives_mechanisms(record: str, expected: list[tuple[object, ...]]) -> None:
    # Given a syntactically valid record
    # When it is parsed
    parsed = parse_spf(record)
    # Then each mechanism carries its qualifier, name, domain-spec, network and CIDR lengths
    got = [
        (m.qualifier, m.name, m.domain_spec, m.network, m.cidr4, m.cidr6) for m in parsed.mechanisms
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("record", "name", "value"),
    [
        ("v=spf1 redirect=_spf.example.com", "redirect", "_spf.example.com"),
        ("v=spf1 exp=explain.%{d} -all", "exp", "explain.%{d}"),
        ("v=spf1 Foo.Bar=anything%%", "foo.bar", "anything%%"),
        ("v=spf1 empty=", "empty", ""),
    ],
)
def test_parse_gives_modifiers(record: str, name: str, value: str) -> None:
    # Given a record with a modifier
    # When it is parsed
    modifiers = [t for t in parse_spf(record).terms if isinstance(t, Modifier)]
    # Then the modifier's name is lower-cased and its value kept as written
    assert [(m.name, m.value) for m in modifiers] == [(name, value)]


def test_parse_records_term_positions() -> None:
    # Given a record with several terms separated by runs of spaces
    record = "v=spf1  mx   -all"
    # When it is parsed
    terms = parse_spf(record).terms
    # Then each term knows its offset in the text
    assert [(t.text, t.position) for t in terms] == [("mx", 8), ("-all", 13)]


@pytest.mark.parametrize(
    "domain_spec",
    [
        "%{ir}.%{v}._spf.%{d2}",
        "%{l-}.%{o}",
        "%{S}.example.com",
        "%{h}.example.com",
        "foo%%bar%_baz%-.example.com",
        "%{d}",
        "%{d}.",
        "%{i10r+-.,/_=}.example.com",
        "xn--bcher-kva.example",
        "under_score.example-1.com",
    ],
)
def test_parse_accepts_valid_macros_and_domains(domain_spec: str) -> None:
    # Given an exists term with a valid macro-string (RFC 7208 7.1)
    record = f"v=spf1 exists:{domain_spec}"
    # When it is parsed
    parsed = parse_spf(record)
    # Then the domain-spec is kept as written
    assert parsed.mechanisms[0].domain_spec == domain_spec


# --- parsing: syntax errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "position", "term", "message"),
    [
        ("v=spf10 -all", 0, "", "v=spf1"),
        ("spf1 -all", 0, "", "v=spf1"),
        ("v=spf1 foo", 7, "foo", "unknown mechanism"),
        ("v=spf1 -all:x", 11, "-all:x", "takes no argument"),
        ("v=spf1 include", 14, "include", "needs"),
        ("v=spf1 include:", 14, "include:", "needs"),
        ("v=spf1 include:localhost", 15, "include:localhost", "top-level label"),
        ("v=spf1 include:192.0.2.1", 15, "include:192.0.2.1", "top-level label"),
        ("v=spf1 a:example.com/", 20, "a:example.com/", "CIDR"),
        ("v=spf1 a/33", 8, "a/33", "IPv4 CIDR"),
        ("v=spf1 a/024", 8, "a/024", "IPv4 CIDR"),
        ("v=spf1 a//129", 8, "a//129", "IPv6 CIDR"),
        ("v=spf1 a/24/64", 8, "a/24/64", "IPv4 CIDR"),
        ("v=spf1 ax", 7, "ax", "unknown mechanism"),
        ("v=spf1 ip4", 10, "ip4", "needs"),
        ("v=spf1 ip4:300.1.1.1", 11, "ip4:300.1.1.1", "IPv4 address"),
        ("v=spf1 ip4:192.0.2.01", 11, "ip4:192.0.2.01", "IPv4 address"),
        ("v=spf1 ip4:192.0.2.0/33", 21, "ip4:192.0.2.0/33", "CIDR"),
        ("v=spf1 ip6:2001:db8::/129", 22, "ip6:2001:db8::/129", "CIDR"),
        ("v=spf1 ip6:fe80::1%eth0", 11, "ip6:fe80::1%eth0", "IPv6 address"),
        ("v=spf1 ip6:192.0.2.1", 11, "ip6:192.0.2.1", "IPv6 address"),
        ("v=spf1 exists:%{x}.example.com", 14, "exists:%{x}.example.com", "invalid macro"),
        ("v=spf1 exists:%{i0}.example.com", 14, "exists:%{i0}.example.com", "zero"),
        ("v=spf1 exists:%{c}.example.com", 14, "exists:%{c}.example.com", "explanation"),
        ("v=spf1 exists:%.example.com", 14, "exists:%.example.com", '"%"'),
        ("v=spf1 exists:%{i.example.com", 14, "exists:%{i.example.com", "unterminated"),
        ("v=spf1 exists:a.%{i}x", 14, "exists:a.%{i}x", "top-level label"),
        ("v=spf1 foo=%z", 11, "foo=%z", '"%"'),
        (
            "v=spf1 redirect=a.example redirect=b.example",
            26,
            "redirect=b.example",
            "more than once",
        ),
        ("v=spf1 exp=a.example exp=b.example", 21, "exp=b.example", "more than once"),
        ("v=spf1 +redirect=a.example", 7, "+redirect=a.example", "no qualifier"),
        ("v=spf1 redirect=", 16, "redirect=", "empty domain"),
        ("v=spf1 -all\t", 11, "", "control character"),
        ("v=spf1 a:caf\u00e9.example", 12, "", "non-ASCII"),
    ],
)
def test_parse_reports_position_and_term(
    record: str, position: int, term: str, message: str
) -> None:
    # Given a record with one syntax error
    # When it is parsed
    with pytest.raises(SpfParseError) as caught:
        parse_spf(record)
    # Then the error names the offset, the offending term and what is wrong
    assert (caught.value.position, caught.value.term) == (position, term)
    assert message in caught.value.message


def test_parse_reports_non_ascii_byte_offset() -> None:
    # Given a record as raw TXT bytes with a UTF-8 sequence inside
    record = b"v=spf1 a:caf\xc3\xa9.example -all"
    # When it is parsed
    with pytest.raises(SpfParseError) as caught:
        parse_spf(record)
    # Then the error points at the first non-ASCII byte
    assert caught.value.position == 12
    assert "0xC3" in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=spf1 -all", True),
        ("v=spf1", True),
        ("V=SPF1 mx", True),
        ("v=spf10 -all", False),
        ("v=spf1-all", False),
        (" v=spf1 -all", False),
        ("google-site-verification=abc", False),
        (b"v=spf1 \xff", True),
    ],
)
def test_record_selection_by_version(text: str | bytes, expected: bool) -> None:
    # Given a TXT string
    # When it is tested for the SPF version section (RFC 7208 4.5)
    # Then only "v=spf1" followed by a space or the end counts
    assert is_spf_record(text) is expected


# --- evaluate_spf: record-level findings -----------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected", "status"),
    [
        ({}, ["dns.spf.missing"], Status.WARN),
        ({(D, "TXT"): ["some other text"]}, ["dns.spf.missing"], Status.WARN),
        ({(D, "TXT"): ["v=spf1 -all", "v=spf1 ~all"]}, ["dns.spf.multiple"], Status.FAIL),
        ({(D, "TXT"): ["v=spf1 foo -all"]}, ["dns.spf.syntax"], Status.FAIL),
        ({(D, "TXT"): "servfail"}, ["dns.spf.temperror"], Status.INCONCLUSIVE),
        ({(D, "TXT"): "timeout"}, ["dns.spf.temperror"], Status.INCONCLUSIVE),
        ({(D, "TXT"): ["v=spf1 +all"]}, ["dns.spf.plus_all"], Status.FAIL),
        ({(D, "TXT"): ["v=spf1 all"]}, ["dns.spf.plus_all"], Status.FAIL),
        ({(D, "TXT"): ["v=spf1 ?all"]}, ["dns.spf.neutral_all", "dns.spf.valid"], Status.WARN),
        ({(D, "TXT"): ["v=spf1 ~all"]}, ["dns.spf.valid"], Status.PASS),
        ({(D, "TXT"): ["v=spf1 -all"]}, ["dns.spf.valid"], Status.PASS),
        ({(D, "TXT"): ["v=spf1 ip4:192.0.2.1"]}, ["dns.spf.no_all", "dns.spf.valid"], Status.WARN),
    ],
)
async def test_record_level_findings(
    zone: dict[tuple[str, str], object], expected: list[str], status: Status
) -> None:
    # Given a domain's TXT answer
    # When its SPF policy is evaluated
    result = await evaluate_spf(D, FakeDns(zone))  # type: ignore[arg-type]
    # Then exactly the expected findings are reported, with the expected worst status
    assert codes(result.findings) == expected
    assert result.status is status


async def test_redirect_supplies_the_default() -> None:
    # Given a record without "all" that redirects to one ending in "-all"
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 redirect=_spf.example.com"],
            ("_spf.example.com", "TXT"): ["v=spf1 -all"],
        }
    )
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then there is no "no all" warning: the redirect target's "-all" applies
    assert codes(result.findings) == ["dns.spf.valid"]


async def test_redirect_to_plus_all_is_a_failure() -> None:
    # Given a record that redirects to a record ending in "+all"
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 redirect=_spf.example.com"],
            ("_spf.example.com", "TXT"): ["v=spf1 +all"],
        }
    )
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the effective "+all" is reported
    assert codes(result.findings) == ["dns.spf.plus_all"]


async def test_include_of_plus_all_is_a_failure() -> None:
    # Given a record that includes a record ending in "+all"
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 include:lax.example.net -all"],
            ("lax.example.net", "TXT"): ["v=spf1 +all"],
        }
    )
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the include is reported as letting every address pass
    finding = by_code(result.findings, "dns.spf.plus_all")
    assert "lax.example.net" in finding.detail  # type: ignore[attr-defined]


async def test_ptr_is_discouraged() -> None:
    # Given a record using "ptr"
    dns = FakeDns({(D, "TXT"): ["v=spf1 ptr -all"]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then a warning says ptr should not be used, and the record is still valid
    assert codes(result.findings) == ["dns.spf.ptr", "dns.spf.valid"]


async def test_obsolete_spf_rr_type_is_reported() -> None:
    # Given a domain that also publishes a type-99 SPF record
    dns = FakeDns({(D, "TXT"): ["v=spf1 -all"], (D, "SPF"): ["v=spf1 -all"]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the obsolete record type is a warning
    assert codes(result.findings) == ["dns.spf.rr_type_99", "dns.spf.valid"]


async def test_redirect_beside_all_is_ignored() -> None:
    # Given a record with both "all" and "redirect"
    dns = FakeDns({(D, "TXT"): ["v=spf1 -all redirect=_spf.example.com"]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the redirect is reported as ignored and never looked up (RFC 7208 6.1)
    assert codes(result.findings) == ["dns.spf.redirect_ignored", "dns.spf.valid"]
    assert ("_spf.example.com", "TXT") not in dns.asked


async def test_character_strings_are_joined_without_spaces() -> None:
    # Given a record split across two character-strings inside one TXT record
    dns = FakeDns({(D, "TXT"): [txt("v=spf1 ip4:192.0.2.1 ", "ip4:192.0.2.2 -all")]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the strings are joined as they are (RFC 7208 3.3) into one valid record
    assert result.record == "v=spf1 ip4:192.0.2.1 ip4:192.0.2.2 -all"
    assert codes(result.findings) == ["dns.spf.valid"]


async def test_record_longer_than_255_bytes_is_read_whole() -> None:
    # Given a 700-byte record, served as three character-strings
    networks = " ".join(f"ip4:198.51.100.{i}" for i in range(1, 41))
    record = f"v=spf1 {networks} -all"
    assert len(record) > 255 * 2
    dns = FakeDns({(D, "TXT"): [record]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then every term is read, the last one included
    assert result.parsed is not None
    assert len(result.parsed.mechanisms) == 41
    assert result.parsed.mechanisms[-1].text == "-all"


async def test_non_ascii_txt_is_a_syntax_finding() -> None:
    # Given a record with raw non-ASCII bytes
    dns = FakeDns({(D, "TXT"): [txt(b"v=spf1 a:\xe9xample.com -all")]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then a syntax finding points at the byte, and the record is shown escaped
    finding = by_code(result.findings, "dns.spf.syntax")
    assert "offset 9" in finding.detail  # type: ignore[attr-defined]
    assert result.record == "v=spf1 a:\\xe9xample.com -all"


# --- evaluate_spf: limits and the tree -------------------------------------------------------


def chain_zone(includes: int) -> dict[tuple[str, str], object]:
    """A record with ``includes`` includes, each of a record with only ip4 terms."""
    zone: dict[tuple[str, str], object] = {
        (D, "TXT"): [
            "v=spf1 " + " ".join(f"include:i{n}.example.com" for n in range(includes)) + " -all"
        ]
    }
    for n in range(includes):
        zone[(f"i{n}.example.com", "TXT")] = [f"v=spf1 ip4:192.0.2.{n} -all"]
    return zone


@pytest.mark.parametrize(
    ("includes", "too_many"),
    [(DNS_TERM_LIMIT - 1, False), (DNS_TERM_LIMIT, False), (DNS_TERM_LIMIT + 1, True), (15, True)],
)
async def test_lookup_limit_is_ten(includes: int, too_many: bool) -> None:
    # Given a record with a number of DNS-querying terms
    dns = FakeDns(chain_zone(includes))  # type: ignore[arg-type]
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then every term is counted, and more than 10 is a failure
    assert result.lookups == includes
    assert ("dns.spf.too_many_lookups" in codes(result.findings)) is too_many


async def test_tree_marks_where_the_lookup_limit_was_crossed() -> None:
    # Given a record with 12 includes
    dns = FakeDns(chain_zone(12))  # type: ignore[arg-type]
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the 11th include carries the mark, the terms after it are shown as past the limit
    terms = [n for n in result.tree.children if n.kind == "include"]
    assert [n.lookups for n in terms] == list(range(1, 13))
    assert terms[10].limit_crossed == ("lookups",)
    assert [n.past_limit for n in terms] == [False] * 10 + [True, True]
    # And the partial results past the limit are still evaluated and shown
    assert terms[11].children[0].record == "v=spf1 ip4:192.0.2.11 -all"
    finding = by_code(result.findings, "dns.spf.too_many_lookups")
    assert '"include:i10.example.com" in example.com' in finding.detail  # type: ignore[attr-defined]


async def test_nested_includes_count_towards_the_limit() -> None:
    # Given 3 includes of records that each have 3 "a" terms (3 + 9 = 12 look-ups)
    zone: dict[tuple[str, str], object] = {
        (D, "TXT"): [
            "v=spf1 include:a.example.com include:b.example.com include:c.example.com -all"
        ]
    }
    for name in ("a", "b", "c"):
        zone[(f"{name}.example.com", "TXT")] = [
            f"v=spf1 a:h1.{name}.example.com a:h2.{name}.example.com a:h3.{name}.example.com -all"
        ]
        for host in ("h1", "h2", "h3"):
            zone[(f"{host}.{name}.example.com", "A")] = ["192.0.2.1"]
    # When it is evaluated
    result = await evaluate_spf(D, FakeDns(zone))  # type: ignore[arg-type]
    # Then the count covers the whole tree
    assert result.lookups == 12
    assert "dns.spf.too_many_lookups" in codes(result.findings)


async def test_terms_after_all_are_not_counted() -> None:
    # Given a record with DNS terms after "-all"
    dns = FakeDns({(D, "TXT"): ["v=spf1 -all a mx include:x.example.com"]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then they are shown as never evaluated, and not counted (RFC 7208 5.1)
    assert result.lookups == 0
    assert [n.state for n in result.tree.children[1:]] == ["after_all"] * 3


@pytest.mark.parametrize(("voids", "too_many"), [(2, False), (3, True)])
async def test_void_lookup_limit_is_two(voids: int, too_many: bool) -> None:
    # Given a record whose "a" terms name hosts without addresses
    terms = " ".join(f"a:gone{n}.example.com" for n in range(voids))
    dns = FakeDns({(D, "TXT"): [f"v=spf1 {terms} -all"]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then each is a void look-up, and more than two is a failure (RFC 7208 4.6.4)
    assert result.void_lookups == voids
    assert ("dns.spf.too_many_void_lookups" in codes(result.findings)) is too_many


async def test_void_limit_crossing_is_marked() -> None:
    # Given three void "a" terms
    dns = FakeDns({(D, "TXT"): ["v=spf1 a:x1.example.com a:x2.example.com a:x3.example.com -all"]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the third carries the mark
    assert [n.limit_crossed for n in result.tree.children[:3]] == [(), (), ("void_lookups",)]
    assert [n.state for n in result.tree.children[:3]] == ["void"] * 3


@pytest.mark.parametrize(
    "zone",
    [
        {(D, "TXT"): ["v=spf1 include:example.com -all"]},
        {(D, "TXT"): ["v=spf1 redirect=example.com"]},
        {
            (D, "TXT"): ["v=spf1 include:b.example.net -all"],
            ("b.example.net", "TXT"): ["v=spf1 include:c.example.org -all"],
            ("c.example.org", "TXT"): ["v=spf1 include:example.com -all"],
        },
    ],
)
async def test_include_loops_are_detected(zone: dict[tuple[str, str], object]) -> None:
    # Given a record that includes (or redirects to) itself, directly or through others
    # When it is evaluated
    result = await evaluate_spf(D, FakeDns(zone))  # type: ignore[arg-type]
    # Then the loop is reported at once, without running to the look-up limit
    assert "dns.spf.include_loop" in codes(result.findings)
    assert result.lookups < DNS_TERM_LIMIT


async def test_same_include_twice_is_not_a_loop() -> None:
    # Given two branches including the same record (a diamond, not a cycle)
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 include:a.example.com include:b.example.com -all"],
            ("a.example.com", "TXT"): ["v=spf1 include:shared.example.com -all"],
            ("b.example.com", "TXT"): ["v=spf1 include:shared.example.com -all"],
            ("shared.example.com", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
        }
    )
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then it is valid, each include counted, the shared record fetched once
    assert codes(result.findings) == ["dns.spf.valid"]
    assert result.lookups == 4
    assert dns.asked.count(("shared.example.com", "TXT")) == 1


@pytest.mark.parametrize(
    ("zone", "code"),
    [
        ({(D, "TXT"): ["v=spf1 include:nothing.example.net -all"]}, "dns.spf.target_missing"),
        ({(D, "TXT"): ["v=spf1 redirect=nothing.example.net"]}, "dns.spf.target_missing"),
        (
            {
                (D, "TXT"): ["v=spf1 include:bad.example.net -all"],
                ("bad.example.net", "TXT"): ["v=spf1 foo"],
            },
            "dns.spf.syntax",
        ),
        (
            {
                (D, "TXT"): ["v=spf1 include:two.example.net -all"],
                ("two.example.net", "TXT"): ["v=spf1 -all", "v=spf1 ~all"],
            },
            "dns.spf.multiple",
        ),
        (
            {
                (D, "TXT"): ["v=spf1 include:slow.example.net -all"],
                ("slow.example.net", "TXT"): "timeout",
            },
            "dns.spf.temperror",
        ),
        (
            {
                (D, "TXT"): ["v=spf1 a:broken.example.net -all"],
                ("broken.example.net", "A"): "servfail",
            },
            "dns.spf.temperror",
        ),
        (
            {
                (D, "TXT"): ["v=spf1 mx -all"],
                (D, "MX"): [f"{n} mx{n}.example.com." for n in range(11)],
            },
            "dns.spf.mx_too_many",
        ),
    ],
)
async def test_problems_inside_the_tree_are_reported(
    zone: dict[tuple[str, str], object], code: str
) -> None:
    # Given a valid top-level record whose include, redirect or term leads to a problem
    # When it is evaluated
    result = await evaluate_spf(D, FakeDns(zone))  # type: ignore[arg-type]
    # Then the problem is reported with its own code, and the record is not called valid
    assert code in codes(result.findings)
    assert "dns.spf.valid" not in codes(result.findings)


async def test_repeated_problems_make_one_finding() -> None:
    # Given a record with three includes of names without SPF records
    terms = " ".join(f"include:none{n}.example.net" for n in range(3))
    dns = FakeDns({(D, "TXT"): [f"v=spf1 {terms} -all"]})
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then one finding lists all three places
    finding = by_code(result.findings, "dns.spf.target_missing")
    assert len(finding.evidence["cases"]) == 3  # type: ignore[attr-defined]


async def test_include_bomb_terminates_quickly_with_the_limit_findings() -> None:
    # Given a record with 1000 includes, each including 10 more (a recursion bomb)
    zone: dict[tuple[str, str], object] = {
        (D, "TXT"): [
            "v=spf1 " + " ".join(f"include:b{n}.example.net" for n in range(1000)) + " -all"
        ]
    }
    for n in range(1000):
        zone[(f"b{n}.example.net", "TXT")] = [
            "v=spf1 " + " ".join(f"include:c{m}.b{n}.example.net" for m in range(10)) + " -all"
        ]
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When it is evaluated
    started = time.monotonic()
    result = await evaluate_spf(D, dns)
    elapsed = time.monotonic() - started
    # Then it ends quickly, within the work bounds, with the limit findings
    assert elapsed < 5
    assert len(dns.asked) <= MAX_QUERIES + 1
    assert result.truncated
    assert {"dns.spf.too_many_lookups", "dns.spf.too_many_void_lookups"} <= set(
        codes(result.findings)
    )
    assert "at least" in by_code(result.findings, "dns.spf.too_many_lookups").detail  # type: ignore[attr-defined]


async def test_query_bound_of_the_walk_does_not_change_the_host_result() -> None:
    # Given a record listing the client first, then 30 "mx" terms of 10 hosts each
    # (about 330 questions for the full walk, past its bound of MAX_QUERIES)
    terms = " ".join(f"mx:m{n}.example.net" for n in range(30))
    zone: dict[tuple[str, str], object] = {(D, "TXT"): [f"v=spf1 ip4:192.0.2.1 {terms} -all"]}
    for n in range(30):
        zone[(f"m{n}.example.net", "MX")] = [f"10 h{h}.m{n}.example.net." for h in range(10)]
        for h in range(10):
            zone[(f"h{h}.m{n}.example.net", "A")] = ["198.51.100.1"]
            zone[(f"h{h}.m{n}.example.net", "AAAA")] = ["2001:db8::1"]
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When the policy is evaluated for the listed client
    result = await evaluate_spf(D, dns, ip="192.0.2.1")
    # Then the walk is cut short, but the client's own result is still exact
    assert result.truncated
    assert len(dns.asked) <= MAX_QUERIES + 2 * MX_LIMIT + 2  # one term may end past the bound
    assert result.host is not None
    assert (result.host.result, result.host.decided_by) == (SpfResult.PASS, "ip4:192.0.2.1")


async def test_deep_include_chain_is_bounded() -> None:
    # Given a chain of 200 nested includes
    zone: dict[tuple[str, str], object] = {(D, "TXT"): ["v=spf1 include:d0.example.net -all"]}
    for n in range(200):
        zone[(f"d{n}.example.net", "TXT")] = [f"v=spf1 include:d{n + 1}.example.net -all"]
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the walk stops at the depth bound, and the limit is reported
    assert len(dns.asked) < 30
    assert "dns.spf.too_many_lookups" in codes(result.findings)


async def test_a_raising_lookup_function_becomes_a_temperror() -> None:
    # Given a DNS function that raises
    async def broken(name: str, rdtype: str) -> Lookup:
        raise RuntimeError("resolver exploded")

    # When a domain is evaluated with it
    result = await evaluate_spf(D, broken)
    # Then the failure is a temperror finding, not an exception
    assert codes(result.findings) == ["dns.spf.temperror"]
    assert "resolver exploded" in result.findings[0].detail


async def test_unresolvable_macros_are_shown_not_queried() -> None:
    # Given a record whose exists term depends on the connecting address
    dns = FakeDns({(D, "TXT"): ["v=spf1 exists:%{i}._spf.example.com -all"]})
    # When it is evaluated without an address
    result = await evaluate_spf(D, dns)
    # Then the term is counted and shown as unresolved, and nothing is asked for it
    term = result.tree.children[0]
    assert (term.state, term.lookups) == ("unresolved", 1)
    assert all("_spf" not in name for name, _ in dns.asked)


async def test_evidence_is_json() -> None:
    # Given a valid record with an include
    dns = FakeDns(chain_zone(2))  # type: ignore[arg-type]
    # When it is evaluated
    result = await evaluate_spf(D, dns)
    # Then the tree in the evidence is plain JSON data
    import json

    tree = by_code(result.findings, "dns.spf.valid").evidence["tree"]  # type: ignore[attr-defined]
    assert json.loads(json.dumps(tree))["children"][0]["kind"] == "include"


# --- check_host ------------------------------------------------------------------------------

BASE_ZONE: dict[tuple[str, str], object] = {
    (D, "TXT"): [
        "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 a:web.example.com/30 mx "
        "include:_spf.partner.example -all"
    ],
    ("web.example.com", "A"): ["198.51.100.9"],
    (D, "MX"): ["10 mx1.example.com."],
    ("mx1.example.com", "A"): ["203.0.113.25"],
    ("mx1.example.com", "AAAA"): ["2001:db8:2::25"],
    ("_spf.partner.example", "TXT"): ["v=spf1 ip4:100.64.0.0/10 ~all"],
}


@pytest.mark.parametrize(
    ("ip", "result", "decided_by"),
    [
        ("192.0.2.77", SpfResult.PASS, "ip4:192.0.2.0/24"),
        ("2001:db8:1:ff::1", SpfResult.PASS, "ip6:2001:db8:1::/48"),
        ("198.51.100.10", SpfResult.PASS, "a:web.example.com/30"),
        ("203.0.113.25", SpfResult.PASS, "mx"),
        ("2001:db8:2::25", SpfResult.PASS, "mx"),
        ("100.100.1.1", SpfResult.PASS, "include:_spf.partner.example → ip4:100.64.0.0/10"),
        ("198.51.100.20", SpfResult.FAIL, "-all"),
        ("::ffff:192.0.2.5", SpfResult.PASS, "ip4:192.0.2.0/24"),
        ("2001:db8:9::1", SpfResult.FAIL, "-all"),
    ],
)
async def test_check_host_first_match_wins(ip: str, result: SpfResult, decided_by: str) -> None:
    # Given a record with networks, a, mx and an include ending in ~all
    dns = FakeDns(BASE_ZONE)  # type: ignore[arg-type]
    # When check_host() runs for an address
    check = await check_host(ip, D, dns)
    # Then the first matching term decides; an include's softfail does not match
    assert (check.result, check.decided_by) == (result, decided_by)


@pytest.mark.parametrize(
    ("zone", "result"),
    [
        ({}, SpfResult.NONE),
        ({(D, "TXT"): "nxdomain"}, SpfResult.NONE),
        ({(D, "TXT"): "servfail"}, SpfResult.TEMPERROR),
        ({(D, "TXT"): ["v=spf1 -all", "v=spf1 +all"]}, SpfResult.PERMERROR),
        ({(D, "TXT"): ["v=spf1 ip4:192.0.2.1 foo"]}, SpfResult.PERMERROR),
        ({(D, "TXT"): ["v=spf1"]}, SpfResult.NEUTRAL),
        ({(D, "TXT"): ["v=spf1 ~all"]}, SpfResult.SOFTFAIL),
        ({(D, "TXT"): ["v=spf1 ?all"]}, SpfResult.NEUTRAL),
        ({(D, "TXT"): ["v=spf1 include:none.example.net -all"]}, SpfResult.PERMERROR),
        (
            {
                (D, "TXT"): ["v=spf1 include:t.example.net -all"],
                ("t.example.net", "TXT"): "timeout",
            },
            SpfResult.TEMPERROR,
        ),
        (
            {
                (D, "TXT"): ["v=spf1 include:f.example.net ~all"],
                ("f.example.net", "TXT"): ["v=spf1 -all"],
            },
            SpfResult.SOFTFAIL,
        ),
        (
            {
                (D, "TXT"): ["v=spf1 redirect=r.example.net"],
                ("r.example.net", "TXT"): ["v=spf1 -all"],
            },
            SpfResult.FAIL,
        ),
        ({(D, "TXT"): ["v=spf1 redirect=none.example.net"]}, SpfResult.PERMERROR),
        ({(D, "TXT"): ["v=spf1 -all redirect=none.example.net"]}, SpfResult.FAIL),
        (
            {(D, "TXT"): ["v=spf1 a:a.example.net -all"], ("a.example.net", "A"): "refused"},
            SpfResult.TEMPERROR,
        ),
        (
            {(D, "TXT"): ["v=spf1 a:x1.example.net a:x2.example.net a:x3.example.net -all"]},
            SpfResult.PERMERROR,
        ),
        (
            {
                (D, "TXT"): ["v=spf1 exists:%{ir}.%{v}.bl.example.net -all"],
                ("1.2.0.192.in-addr.bl.example.net", "A"): ["127.0.0.2"],
            },
            SpfResult.PASS,
        ),
        (
            {
                (D, "TXT"): ["v=spf1 -exists:%{ir}.%{v}.bl.example.net +all"],
                ("1.2.0.192.in-addr.bl.example.net", "A"): ["127.0.0.2"],
            },
            SpfResult.FAIL,
        ),
        (
            {
                (D, "TXT"): ["v=spf1 exists:%{l}.%{o}.allow.example.net -all"],
                ("postmaster.example.com.allow.example.net", "A"): ["127.0.0.1"],
            },
            SpfResult.PASS,
        ),
    ],
)
async def test_check_host_results(zone: dict[tuple[str, str], object], result: SpfResult) -> None:
    # Given a domain's DNS data
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When check_host() runs for 192.0.2.1
    check = await check_host("192.0.2.1", D, dns)
    # Then it gives the RFC 7208 result
    assert check.result is result


async def test_check_host_stops_at_the_eleventh_lookup() -> None:
    # Given a record with 12 includes that all fail to match
    dns = FakeDns(chain_zone(12))  # type: ignore[arg-type]
    # When check_host() runs for an address listed only in the 12th
    check = await check_host("192.0.2.11", D, dns)
    # Then it ends with permerror at the 11th, without asking for the 11th record
    assert check.result is SpfResult.PERMERROR
    assert check.lookups == DNS_TERM_LIMIT + 1
    assert ("i10.example.com", "TXT") not in dns.asked


async def test_check_host_stops_at_first_match_without_further_lookups() -> None:
    # Given a record whose first term matches
    dns = FakeDns(chain_zone(5))  # type: ignore[arg-type]
    # When check_host() runs for an address of the first include
    check = await check_host("192.0.2.0", D, dns)
    # Then it passes without looking at the later includes
    assert check.result is SpfResult.PASS
    assert ("i1.example.com", "TXT") not in dns.asked


@pytest.mark.parametrize(
    ("ptr_names", "forward", "result"),
    [
        (["mail.example.com."], ["192.0.2.1"], SpfResult.PASS),
        (["mail.example.com."], ["192.0.2.99"], SpfResult.FAIL),
        (["mail.other.example."], ["192.0.2.1"], SpfResult.FAIL),
        ([], [], SpfResult.FAIL),
    ],
)
async def test_check_host_ptr_needs_a_validated_name(
    ptr_names: list[str], forward: list[str], result: SpfResult
) -> None:
    # Given "ptr" and the reverse and forward DNS of the client
    zone: dict[tuple[str, str], object] = {(D, "TXT"): ["v=spf1 ptr -all"]}
    if ptr_names:
        zone[("1.2.0.192.in-addr.arpa", "PTR")] = ptr_names
        for name in ptr_names:
            zone[(name.rstrip("."), "A")] = forward
    # When check_host() runs
    check = await check_host("192.0.2.1", D, FakeDns(zone))  # type: ignore[arg-type]
    # Then only a forward-confirmed name in the domain matches (RFC 7208 5.5)
    assert check.result is result


@pytest.mark.parametrize(
    ("ip", "result", "decided_by"),
    [
        ("192.0.2.1", SpfResult.PASS, "a:foo:bar/baz.example.com"),
        ("192.0.2.2", SpfResult.PASS, "mx:x/y.example.com"),
        ("192.0.2.3", SpfResult.FAIL, "-all"),
    ],
)
async def test_check_host_a_and_mx_domain_may_contain_a_slash(
    ip: str, result: SpfResult, decided_by: str
) -> None:
    # Given "a" and "mx" terms whose target names contain "/" (RFC 7208 7.1 allows any
    # visible character but "%" in a domain-spec)
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 a:foo:bar/baz.example.com mx:x/y.example.com -all"],
            ("foo:bar/baz.example.com", "A"): ["192.0.2.1"],
            ("x/y.example.com", "MX"): ["10 mail.example.com."],
            ("mail.example.com", "A"): ["192.0.2.2"],
        }
    )
    # When check_host() runs
    check = await check_host(ip, D, dns)
    # Then the names are looked up whole (not read as a CIDR length), first match winning
    assert (check.result, check.decided_by) == (result, decided_by)


@pytest.mark.parametrize(
    ("ptr_names", "expected"),
    [
        # RFC 7208 7.3: the domain itself first, then a subdomain of it, then any validated
        # name; "unknown" when no name is validated.
        (["other.example.net.", "example.com.", "mx.example.com."], "example.com"),
        (["other.example.net.", "mx.example.com."], "mx.example.com"),
        (["other.example.net."], "other.example.net"),
        (["unvalidated.example.org."], "unknown"),
        ([], "unknown"),
    ],
)
async def test_check_host_p_macro_is_the_validated_name(
    ptr_names: list[str], expected: str
) -> None:
    # Given a record asking about %{p}, and the client's reverse and forward DNS
    zone: dict[tuple[str, str], object] = {
        (D, "TXT"): ["v=spf1 exists:%{p}.allow.example.net -all"],
        (f"{expected}.allow.example.net", "A"): ["127.0.0.2"],
        ("unvalidated.example.org", "A"): ["198.51.100.1"],
    }
    if ptr_names:
        zone[("1.2.0.192.in-addr.arpa", "PTR")] = ptr_names
    for name in ptr_names:
        zone.setdefault((name.rstrip("."), "A"), ["192.0.2.1"])
    # When check_host() runs for 192.0.2.1
    check = await check_host("192.0.2.1", D, FakeDns(zone))  # type: ignore[arg-type]
    # Then %{p} expanded to the preferred validated name (the exists term matched)
    assert check.result is SpfResult.PASS, check.detail


async def test_check_host_p_macro_after_a_dns_error_is_unknown() -> None:
    # Given %{p} and a reverse look-up that fails
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 exists:%{p}.allow.example.net -all"],
            ("1.2.0.192.in-addr.arpa", "PTR"): "servfail",
            ("unknown.allow.example.net", "A"): ["127.0.0.2"],
        }
    )
    # When check_host() runs
    check = await check_host("192.0.2.1", D, dns)
    # Then %{p} is "unknown" (RFC 7208 7.3), not a temperror of the whole check
    assert check.result is SpfResult.PASS, check.detail


async def test_check_host_mx_limit_counts_records_not_hosts() -> None:
    # Given "mx" on a domain with 11 MX records naming only 2 hosts
    exchanges = ["mail.example.com." if n % 2 else "mx.example.com." for n in range(11)]
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 mx"],
            (D, "MX"): [f"{n} {host}" for n, host in enumerate(exchanges)],
            ("mail.example.com", "A"): ["192.0.2.1"],
            ("mx.example.com", "A"): ["192.0.2.2"],
        }
    )
    # When check_host() runs for one of those hosts
    check = await check_host("192.0.2.1", D, dns)
    # Then the "mx" term is a permerror: more than 10 MX records (RFC 7208 4.6.4)
    assert check.result is SpfResult.PERMERROR
    assert "more than 10 MX records" in check.detail


@pytest.mark.parametrize(
    ("sender", "name"),
    [
        ("@example.com", "postmaster@example.com"),
        ("Jo.Smith@example.com", "jo.smith@example.com"),
    ],
)
async def test_check_host_s_macro_supplies_postmaster(sender: str, name: str) -> None:
    # Given a record asking about %{s} and a sender with or without a local-part
    dns = FakeDns(
        {
            (D, "TXT"): ["v=spf1 exists:%{s}.allow.example.net -all"],
            (f"{name}.allow.example.net", "A"): ["127.0.0.2"],
        }
    )
    # When check_host() runs
    check = await check_host("192.0.2.1", D, dns, sender=sender)
    # Then an empty local-part reads "postmaster" in %{s}, as in %{l} (RFC 7208 4.3)
    assert check.result is SpfResult.PASS, check.detail


@pytest.mark.parametrize(
    ("zone", "result", "said"),
    [
        (
            {(D, "TXT"): ["v=spf1 ip4:1.2.3.4 -all moo"]},
            SpfResult.PERMERROR,
            "syntax error in the SPF record of example.com",
        ),
        (
            {(D, "TXT"): ["v=spf1 -all", "v=spf1 ~all"]},
            SpfResult.PERMERROR,
            "example.com has 2 SPF records",
        ),
        ({(D, "TXT"): "timeout"}, SpfResult.TEMPERROR, "TXT look-up of example.com failed"),
        (
            {
                (D, "TXT"): ["v=spf1 include:bad.example.net -all"],
                ("bad.example.net", "TXT"): ["v=spf1 moo"],
            },
            SpfResult.PERMERROR,
            "include:bad.example.net: syntax error in the SPF record of bad.example.net",
        ),
        (
            {(D, "TXT"): ["v=spf1 include:none.example.net -all"]},
            SpfResult.PERMERROR,
            "include:none.example.net: none.example.net has no SPF record",
        ),
    ],
)
async def test_check_host_says_what_decided_a_record_level_error(
    zone: dict[tuple[str, str], object], result: SpfResult, said: str
) -> None:
    # Given a record (or an included one) that is wrong as a whole, or cannot be fetched
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When check_host() runs
    check = await check_host("192.0.2.1", D, dns)
    # Then the detail names the record-level cause, not "no term matched"
    assert check.result is result
    assert said in check.detail
    assert "no term matched" not in check.detail


@pytest.mark.parametrize(
    ("record", "result"), [("v=spf1 ptr -all", SpfResult.FAIL), ("v=spf1 ptr", SpfResult.NEUTRAL)]
)
async def test_check_host_ptr_after_a_failed_reverse_look_up_does_not_match(
    record: str, result: SpfResult
) -> None:
    # Given "ptr" and a reverse look-up of the client that fails
    dns = FakeDns({(D, "TXT"): [record], ("1.2.0.192.in-addr.arpa", "PTR"): "servfail"})
    # When check_host() runs
    check = await check_host("192.0.2.1", D, dns)
    # Then the mechanism fails to match (RFC 7208 5.5), the evaluation goes on
    assert check.result is result


@pytest.mark.parametrize(
    ("ip", "domain"), [("not-an-ip", D), ("192.0.2.1", "localhost"), ("192.0.2.1", "a..b")]
)
async def test_check_host_bad_input_is_none(ip: str, domain: str) -> None:
    # Given an address or a domain that cannot be checked
    dns = FakeDns({})
    # When check_host() runs
    check = await check_host(ip, domain, dns)
    # Then the result is "none" and nothing is asked (RFC 7208 4.3)
    assert check.result is SpfResult.NONE
    assert dns.asked == []


async def test_evaluate_with_an_address_gives_its_result_and_marks_matches() -> None:
    # Given the base zone
    dns = FakeDns(BASE_ZONE)  # type: ignore[arg-type]
    # When the policy is evaluated for an MX address
    result = await evaluate_spf(D, dns, ip="203.0.113.25")
    # Then the check_host() result is attached and the tree marks the matching term
    assert result.host is not None and result.host.result is SpfResult.PASS
    mx_node = next(n for n in result.tree.children if n.kind == "mx")
    assert mx_node.matched is True
    # And an informational finding can be made from it
    finding = address_finding(result.host, host="mx1.example.com")
    assert (finding.code, finding.status) == ("dns.spf.address_result", Status.PASS)
    assert "pass" in finding.title


# --- catalogue -------------------------------------------------------------------------------


def test_every_code_is_declared_once_with_a_reference() -> None:
    # Given the module's finding specifications
    # When their codes are listed
    all_codes = [spec.code for spec in FINDINGS]
    # Then each is unique, under dns.spf., and cites RFC 7208 (or RFC 8301 for keys)
    assert len(all_codes) == len(set(all_codes))
    assert all(code.startswith("dns.spf.") for code in all_codes)
    assert all(
        spec.reference.startswith("https://www.rfc-editor.org/rfc/rfc7208") for spec in FINDINGS
    )


# --- hostile input ---------------------------------------------------------------------------

_SPF_ALPHABET = st.sampled_from(
    list("v=spf1 +-~?:./%{}_,ailnxmcdeoptrsv64")
    + ["include:", "a:", "mx", "ip4:", "ip6:", "%{i}", "redirect=", "exists:", "/", "//"]
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_parse_raises_only_its_own_error_on_any_text(record: str | bytes) -> None:
    # Given arbitrary text or bytes
    # When it is parsed
    # Then it parses, or raises SpfParseError and nothing else
    try:
        parse_spf(record)
    except SpfParseError as exc:
        assert exc.position is None or 0 <= exc.position <= len(record)


@settings(max_examples=400, deadline=None)
@given(st.lists(_SPF_ALPHABET, max_size=60).map(lambda parts: "v=spf1 " + "".join(parts)))
def test_parse_raises_only_its_own_error_on_spf_like_text(record: str) -> None:
    # Given text built from SPF's own vocabulary
    # When it is parsed
    # Then it parses, or raises SpfParseError and nothing else
    try:
        parse_spf(record)
    except SpfParseError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    top=st.lists(_SPF_ALPHABET, max_size=40).map(lambda p: "v=spf1 " + "".join(p)),
    other=st.binary(max_size=200),
    ip=st.sampled_from(["192.0.2.1", "2001:db8::1", None]),
)
def test_evaluation_never_raises_and_ends(top: str, other: bytes, ip: str | None) -> None:
    # Given hostile records at the domain and at a name it might include
    zone: dict[tuple[str, str], object] = {
        (D, "TXT"): [top],
        ("x.example.com", "TXT"): [txt(other[:255])],
        ("a.example.com", "A"): ["192.0.2.1"],
    }
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When the policy is evaluated and check_host() runs
    started = time.monotonic()
    result = asyncio.run(evaluate_spf(D, dns, ip=ip))
    host = asyncio.run(check_host(ip or "192.0.2.1", D, dns))
    # Then both return (never raise) promptly, with findings
    assert time.monotonic() - started < 5
    assert result.findings
    assert host.result in SpfResult


def test_mechanism_type_is_public() -> None:
    # Given a parsed directive
    # When its type is checked
    # Then it is the public Mechanism class (parsed results are frozen dataclasses)
    term = parse_spf("v=spf1 a").terms[0]
    assert isinstance(term, Mechanism)
    with pytest.raises(AttributeError):
        term.name = "mx"  # type: ignore[misc]
