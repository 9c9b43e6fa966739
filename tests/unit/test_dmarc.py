"""DMARC (probes.mailauth.dmarc): parsing, policy discovery, organizational domain, and
external report destinations. DNS answers come from a dict; nothing leaves the process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from analyzer.core.model import Status
from analyzer.protocols.resolve import Lookup
from probes.mailauth.dmarc import (
    FINDINGS,
    DmarcParseError,
    SuffixList,
    check_dmarc,
    check_report_destinations,
    dmarc_names,
    evaluate_dmarc,
    is_dmarc_record,
    organizational_domain,
    parse_dmarc,
)
from tests.unit.mailauth_dns import FakeDns, txt

D = "example.com"


@pytest.fixture(scope="module")
def psl() -> PublicSuffixList:
    # Parsing the packaged list takes ~0.1 s: share one per module.
    return PublicSuffixList()


def answer(*records: str | bytes, name: str = f"_dmarc.{D}") -> Lookup:
    """A TXT answer holding these records (none: NODATA)."""
    zone = {(name, "TXT"): list(records)} if records else {(name, "A"): ["192.0.2.1"]}
    return FakeDns(zone).answer(name, "TXT")


def outcome(word: str, name: str = f"_dmarc.{D}") -> Lookup:
    return FakeDns({(name, "TXT"): word}).answer(name, "TXT")


def codes(findings: object) -> list[str]:
    return [f.code for f in findings]  # type: ignore[attr-defined]


# --- parsing ---------------------------------------------------------------------------------


def test_parse_reads_every_tag() -> None:
    # Given a record using every standard tag
    record = (
        "v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=r; "
        "rua=mailto:agg@example.com, mailto:dmarc@reports.example.net!10m; "
        "ruf=mailto:forensic@example.com; fo=0:1:d:s; ri=3600; rf=afrf"
    )
    # When it is parsed
    parsed = parse_dmarc(record)
    # Then every value is read, lists split, sizes kept
    assert (parsed.p, parsed.sp, parsed.pct, parsed.adkim, parsed.aspf) == (
        "reject",
        "quarantine",
        50,
        "s",
        "r",
    )
    assert [(u.address, u.domain, u.size_limit) for u in parsed.rua] == [
        ("agg@example.com", "example.com", None),
        ("dmarc@reports.example.net", "reports.example.net", "10m"),
    ]
    assert [u.domain for u in parsed.ruf] == ["example.com"]
    assert (parsed.fo, parsed.ri, parsed.rf) == (("0", "1", "d", "s"), 3600, ("afrf",))


def test_parse_fills_defaults() -> None:
    # Given a minimal record
    # When it is parsed
    parsed = parse_dmarc("v=DMARC1; p=none")
    # Then the RFC 7489 6.3 defaults apply
    assert (parsed.sp, parsed.pct, parsed.adkim, parsed.aspf, parsed.ri) == (
        None,
        100,
        "r",
        "r",
        86400,
    )
    assert (parsed.rua, parsed.ruf, parsed.fo) == ((), (), ("0",))


@pytest.mark.parametrize(
    "record",
    [
        "v=DMARC1;p=reject",
        "v = DMARC1 ; p = reject ;",
        "v=DMARC1; p=REJECT",
        "v=DMARC1;\tp=reject;;",
        "v=DMARC1; p=reject; unknown=whatever",
        "v=DMARC1; rua=mailto:a@example.com; p=reject",
    ],
)
def test_parse_accepts_spacing_case_and_unknown_tags(record: str) -> None:
    # Given a valid record written loosely
    # When it is parsed
    # Then p is read (values case-insensitive, unknown tags ignored, RFC 7489 6.3)
    assert parse_dmarc(record).p == "reject"


@pytest.mark.parametrize(
    ("record", "tag", "position", "message"),
    [
        ("p=none; v=DMARC1", "v", 0, "begin with"),
        ("v=DMARC2; p=none", "v", 0, "DMARC1"),
        ("v=dmarc1; p=none", "v", 0, "DMARC1"),
        ("v=DMARC1", "p", None, "required"),
        ("v=DMARC1; sp=reject", "p", None, "required"),
        ("v=DMARC1; p=block", "p", 10, "none, quarantine or reject"),
        ("v=DMARC1; p=none; sp=maybe", "sp", 18, "none, quarantine or reject"),
        ("v=DMARC1; p=none; pct=101", "pct", 18, "0-100"),
        ("v=DMARC1; p=none; pct=-1", "pct", 18, "0-100"),
        ("v=DMARC1; p=none; pct=5.5", "pct", 18, "0-100"),
        ("v=DMARC1; p=none; adkim=x", "adkim", 18, "r or s"),
        ("v=DMARC1; p=none; aspf=relaxed", "aspf", 18, "r or s"),
        ("v=DMARC1; p=none; rua=https://example.com/r", "rua", 22, "mailto"),
        ("v=DMARC1; p=none; rua=mailto:nobody", "rua", 22, "mailto: address"),
        ("v=DMARC1; p=none; rua=mailto:a@localhost", "rua", 22, "mailto: address"),
        ("v=DMARC1; p=none; rua=mailto:a@example.com!12q", "rua", 22, "size limit"),
        ("v=DMARC1; p=none; rua=mailto:a@example.com,", "rua", 43, "empty URI"),
        ("v=DMARC1; p=none; rua=mailto:a@example.com, bad", "rua", 44, "mailto"),
        ("v=DMARC1; p=none; ruf=", "ruf", 18, "no value"),
        ("v=DMARC1; p=none; fo=2", "fo", 18, "0, 1, d, s"),
        ("v=DMARC1; p=none; ri=soon", "ri", 18, "seconds"),
        ("v=DMARC1; p=none; p=reject", "p", 18, "twice"),
        ("v=DMARC1; p=none; garbage", "", 18, "tag=value"),
        ("v=DMARC1; p=none; 1x=2", "", 18, "tag=value"),
    ],
)
def test_parse_errors_name_tag_and_position(
    record: str, tag: str, position: int | None, message: str
) -> None:
    # Given a record with one error
    # When it is parsed
    with pytest.raises(DmarcParseError) as caught:
        parse_dmarc(record)
    # Then the error names the tag, the offset and the problem
    assert (caught.value.tag, caught.value.position) == (tag, position)
    assert message in caught.value.message


def test_parse_rejects_non_ascii_with_its_offset() -> None:
    # Given raw bytes with a non-ASCII byte
    # When they are parsed
    with pytest.raises(DmarcParseError) as caught:
        parse_dmarc(b"v=DMARC1; p=none; rua=mailto:d@\xe9xample.com")
    # Then the offset of the byte is given
    assert caught.value.position == 31


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=none", True),
        ("v = DMARC1; p=none", True),
        ("v=dmarc1; p=none", True),
        ("v=DMARC1", True),
        ("v=DMARC10; p=none", False),
        ("v=spf1 -all", False),
        ("p=none; v=DMARC1", False),
    ],
)
def test_record_selection(text: str, expected: bool) -> None:
    # Given a TXT string at a _dmarc name
    # When it is tested for the DMARC version (RFC 7489 6.6.3, case ignored to report it)
    # Then only records beginning with v=DMARC1 are candidates
    assert is_dmarc_record(text) is expected


# --- organizational domain -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.c.example.com.", "example.com"),
        ("MAIL.Example.COM", "example.com"),
        ("www.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),
        ("x.y.github.io", "y.github.io"),
        ("host.example.invalidtld", "example.invalidtld"),
    ],
)
def test_organizational_domain(domain: str, org: str, psl: PublicSuffixList) -> None:
    # Given a domain name
    # When its organizational domain is found with the packaged Public Suffix List
    # Then it is the public suffix plus one label (RFC 7489 3.2)
    assert organizational_domain(domain, psl=psl) == org


def test_organizational_domain_works_without_a_given_list() -> None:
    # Given no list object
    # When the organizational domain is asked
    # Then the list shipped with the package is used, offline
    assert organizational_domain("mail.example.org") == "example.org"


def _names_under_every_rule() -> list[str]:
    """Names at, under and beside every rule of the packaged list, in U- and A-labels."""
    from publicsuffixlist import PSLFILE

    names = ["", ".", "com", "a..com", "x.xn--zz", "foo.unknowntld", "a.b.xn--p1ai", "A.B.CO.UK",
             "\n", "a.\nb", "a.b\n", "a.b c", "a. uk"]
    for line in Path(PSLFILE).read_text(encoding="utf-8").splitlines():
        rule = line.split(" ")[0].strip()
        if not rule or rule.startswith("//"):
            continue
        bases = [rule.lstrip("!").replace("*", "x")]
        if not rule.isascii():
            bases.append(bases[0].encode("idna").decode("ascii"))
        for base in bases:
            names += [base, f"a.{base}", f"b.a.{base}", f"{base.upper()}.", f"a.{base}."]
    return names


def test_the_suffix_list_answers_as_the_whole_parsed_list(psl: PublicSuffixList) -> None:
    # Given the list read one top-level domain at a time, and the package's full parse
    suffixes = SuffixList()
    # When both find the private suffix of names under every rule of the list
    names = _names_under_every_rule()
    differ = [n for n in names if suffixes.privatesuffix(n) != psl.privatesuffix(n)]
    # Then they agree on every one (wildcards, exceptions, IDNs in either form, odd names)
    assert len(names) > 50_000
    assert differ == []


def test_the_suffix_list_parses_only_the_rules_of_the_asked_top_level_domain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the list, with the package's parser watched
    import publicsuffixlist

    parsed: list[list[str]] = []
    real = publicsuffixlist.PublicSuffixList

    def watched(rules: list[str]) -> PublicSuffixList:
        parsed.append(rules)
        return real(rules)

    monkeypatch.setattr(publicsuffixlist, "PublicSuffixList", watched)
    suffixes = SuffixList()
    # When names under .uk are asked about, twice
    assert organizational_domain("www.example.co.uk", psl=suffixes) == "example.co.uk"
    assert organizational_domain("mail.example.org.uk", psl=suffixes) == "example.org.uk"
    # Then only the rules of .uk were parsed, once
    assert len(parsed) == 1
    assert parsed[0] and all(r == "uk" or r.endswith(".uk") for r in parsed[0])


@pytest.mark.parametrize(
    ("domain", "names"),
    [
        ("example.com", ("_dmarc.example.com",)),
        ("mail.example.com", ("_dmarc.mail.example.com", "_dmarc.example.com")),
    ],
)
def test_discovery_names(domain: str, names: tuple[str, ...], psl: PublicSuffixList) -> None:
    # Given a domain
    # When the names of policy discovery are listed
    # Then the domain's own comes first, then the organizational domain's if different
    assert dmarc_names(domain, psl=psl) == names


# --- check_dmarc -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "has_mx", "expected", "status"),
    [
        (answer(), True, ["dns.dmarc.missing"], Status.FAIL),
        (answer(), False, ["dns.dmarc.missing"], Status.WARN),
        (outcome("nxdomain"), True, ["dns.dmarc.missing"], Status.FAIL),
        (answer("v=spf1 -all"), True, ["dns.dmarc.missing"], Status.FAIL),
        (outcome("servfail"), True, ["dns.dmarc.temperror"], Status.INCONCLUSIVE),
        (outcome("timeout"), True, ["dns.dmarc.temperror"], Status.INCONCLUSIVE),
        (
            answer("v=DMARC1; p=none", "v=DMARC1; p=reject"),
            True,
            ["dns.dmarc.multiple"],
            Status.FAIL,
        ),
        (answer("v=DMARC1; p=nope"), True, ["dns.dmarc.syntax"], Status.FAIL),
        (answer("v=dmarc1; p=reject"), True, ["dns.dmarc.syntax"], Status.FAIL),
        (
            answer("v=DMARC1; p=none"),
            True,
            ["dns.dmarc.policy_none", "dns.dmarc.valid"],
            Status.WARN,
        ),
        (
            answer("v=DMARC1; p=quarantine; pct=20"),
            True,
            ["dns.dmarc.pct_partial", "dns.dmarc.valid"],
            Status.WARN,
        ),
        (
            answer("v=DMARC1; p=reject; sp=none"),
            True,
            ["dns.dmarc.subdomain_policy_none", "dns.dmarc.valid"],
            Status.WARN,
        ),
        (answer("v=DMARC1; p=reject"), True, ["dns.dmarc.valid"], Status.PASS),
        (answer("v=DMARC1; p=quarantine; pct=100"), False, ["dns.dmarc.valid"], Status.PASS),
    ],
)
def test_check_findings(found: Lookup, has_mx: bool, expected: list[str], status: Status) -> None:
    # Given the TXT answer for _dmarc.<domain>
    # When it is judged
    result = check_dmarc(D, found, has_mx=has_mx)
    # Then exactly the expected findings are made, with the expected worst status
    assert codes(result.findings) == expected
    assert result.status is status


def test_check_keeps_tags_as_evidence() -> None:
    # Given a valid record
    # When it is judged
    result = check_dmarc(D, answer("v=DMARC1; p=reject; rua=mailto:d@example.com"), has_mx=True)
    # Then the evidence holds the record text and its tags
    evidence = result.findings[0].evidence
    assert evidence["record"] == "v=DMARC1; p=reject; rua=mailto:d@example.com"
    assert evidence["tags"] == {"v": "DMARC1", "p": "reject", "rua": "mailto:d@example.com"}


def test_check_syntax_error_carries_position() -> None:
    # Given a record with a bad pct
    # When it is judged
    result = check_dmarc(D, answer("v=DMARC1; p=none; pct=x"), has_mx=True)
    # Then the syntax finding names the tag and offset
    assert (result.findings[0].evidence["tag"], result.findings[0].evidence["position"]) == (
        "pct",
        18,
    )


def test_character_strings_are_joined() -> None:
    # Given a record split across character-strings
    name = f"_dmarc.{D}"
    found = FakeDns({(name, "TXT"): [txt("v=DMARC1; p=re", "ject")]}).answer(name, "TXT")
    # When it is judged
    result = check_dmarc(D, found, has_mx=True)
    # Then it reads as one record
    assert result.record is not None and result.record.p == "reject"


@pytest.mark.parametrize(
    ("org_record", "expected", "effective"),
    [
        ("v=DMARC1; p=reject", ["dns.dmarc.inherited", "dns.dmarc.valid"], "reject"),
        (
            "v=DMARC1; p=reject; sp=none",
            ["dns.dmarc.inherited", "dns.dmarc.policy_none", "dns.dmarc.valid"],
            "none",
        ),
        ("v=DMARC1; p=none; sp=reject", ["dns.dmarc.inherited", "dns.dmarc.valid"], "reject"),
    ],
)
def test_policy_inherited_from_the_organizational_domain(
    org_record: str, expected: list[str], effective: str
) -> None:
    # Given a subdomain without a record, and a record at the organizational domain
    sub = "mail.example.com"
    found = answer(name=f"_dmarc.{sub}")
    org = answer(org_record, name=f"_dmarc.{D}")
    # When discovery falls back to the organizational domain
    result = check_dmarc(sub, found, has_mx=True, org_domain=D, org_answer=org)
    # Then the inherited record applies with its sp (or p) policy (RFC 7489 6.6.3)
    assert codes(result.findings) == expected
    assert (result.policy_domain, result.effective_policy) == (D, effective)


def test_no_fallback_after_a_dns_failure() -> None:
    # Given a subdomain whose _dmarc look-up failed, and a record at the organizational domain
    sub = "mail.example.com"
    # When it is judged
    result = check_dmarc(
        sub,
        outcome("servfail", name=f"_dmarc.{sub}"),
        has_mx=True,
        org_domain=D,
        org_answer=answer("v=DMARC1; p=reject"),
    )
    # Then the failure is reported; the organizational record is not used (transient error)
    assert codes(result.findings) == ["dns.dmarc.temperror"]


def test_missing_names_both_places_asked() -> None:
    # Given a subdomain and an organizational domain without records
    sub = "mail.example.com"
    # When it is judged
    result = check_dmarc(
        sub, answer(name=f"_dmarc.{sub}"), has_mx=True, org_domain=D, org_answer=answer()
    )
    # Then the finding says where it looked
    assert "_dmarc.mail.example.com and _dmarc.example.com" in result.findings[0].detail


# --- report destinations (RFC 7489 7.1) ------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (
            {("example.com._report._dmarc.reports.example.net", "TXT"): ["v=DMARC1"]},
            ["dns.dmarc.report_authorised"],
        ),
        ({}, ["dns.dmarc.report_unauthorised"]),
        (
            {("example.com._report._dmarc.reports.example.net", "TXT"): ["something else"]},
            ["dns.dmarc.report_unauthorised"],
        ),
        (
            {("example.com._report._dmarc.reports.example.net", "TXT"): "timeout"},
            ["dns.dmarc.report_check_failed"],
        ),
    ],
)
async def test_external_destination_authorisation(
    zone: dict[tuple[str, str], object], expected: list[str], psl: PublicSuffixList
) -> None:
    # Given a policy sending aggregate reports to another organization
    record = parse_dmarc("v=DMARC1; p=reject; rua=mailto:d@reports.example.net")
    dns = FakeDns(zone)  # type: ignore[arg-type]
    # When its destinations are checked
    findings = await check_report_destinations(record, D, dns, psl=psl)
    # Then the authorisation record decides
    assert codes(findings) == expected


async def test_internal_destinations_are_not_checked(psl: PublicSuffixList) -> None:
    # Given destinations inside the same organizational domain
    record = parse_dmarc(
        "v=DMARC1; p=reject; rua=mailto:a@example.com,mailto:b@reports.example.com"
    )
    dns = FakeDns({})
    # When its destinations are checked
    findings = await check_report_destinations(record, D, dns, psl=psl)
    # Then nothing is asked and nothing reported
    assert (findings, dns.asked) == ((), [])


async def test_each_destination_is_asked_once(psl: PublicSuffixList) -> None:
    # Given rua and ruf at the same external host
    record = parse_dmarc(
        "v=DMARC1; p=reject; rua=mailto:a@rep.example.net; ruf=mailto:f@rep.example.net"
    )
    dns = FakeDns({("example.com._report._dmarc.rep.example.net", "TXT"): ["v=DMARC1;"]})
    # When its destinations are checked
    findings = await check_report_destinations(record, D, dns, psl=psl)
    # Then one question, one finding naming both URIs
    assert dns.asked == [("example.com._report._dmarc.rep.example.net", "TXT")]
    assert findings[0].evidence["uris"] == [
        "rua=mailto:a@rep.example.net",
        "ruf=mailto:f@rep.example.net",
    ]


async def test_evaluate_runs_discovery_and_destination_checks(psl: PublicSuffixList) -> None:
    # Given a subdomain inheriting a policy that reports to an unauthorised destination
    dns = FakeDns(
        {
            ("_dmarc.example.com", "TXT"): [
                "v=DMARC1; p=quarantine; rua=mailto:d@vendor.example.org"
            ],
        }
    )
    # When the subdomain is evaluated
    result = await evaluate_dmarc("mail.example.com", dns, has_mx=True, psl=psl)
    # Then discovery fell back, and the destination was checked for the policy domain
    assert codes(result.findings) == [
        "dns.dmarc.inherited",
        "dns.dmarc.valid",
        "dns.dmarc.report_unauthorised",
    ]
    assert ("example.com._report._dmarc.vendor.example.org", "TXT") in dns.asked


async def test_evaluate_survives_a_raising_lookup(psl: PublicSuffixList) -> None:
    # Given a DNS function that raises
    async def broken(name: str, rdtype: str) -> Lookup:
        raise OSError("network is down")

    # When a domain is evaluated
    result = await evaluate_dmarc(D, broken, has_mx=True, psl=psl)
    # Then the failure is a temperror finding
    assert codes(result.findings) == ["dns.dmarc.temperror"]


def test_every_code_is_declared_once() -> None:
    # Given the module's finding specifications
    all_codes = [spec.code for spec in FINDINGS]
    # When they are checked
    # Then the codes are unique, under dns.dmarc., and cite RFC 7489
    assert len(all_codes) == len(set(all_codes))
    assert all(c.startswith("dns.dmarc.") for c in all_codes)
    assert all(s.reference.startswith("https://www.rfc-editor.org/rfc/rfc7489") for s in FINDINGS)


# --- hostile input ---------------------------------------------------------------------------

_DMARC_PARTS = st.sampled_from(
    [
        "v=DMARC1",
        "p=",
        "none",
        "reject",
        ";",
        " ",
        "=",
        "rua=",
        "mailto:",
        "@",
        "example.com",
        "!",
        "10m",
        ",",
        "pct=",
        "1",
        "0",
        "sp=",
        "fo=",
        ":",
        "\t",
        "x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.text(max_size=200)
    | st.binary(max_size=200)
    | st.lists(_DMARC_PARTS, max_size=40).map("".join)
)
def test_parse_raises_only_its_own_error(record: str | bytes) -> None:
    # Given arbitrary or DMARC-like text
    # When it is parsed
    # Then it parses, or raises DmarcParseError and nothing else
    try:
        parse_dmarc(record)
    except DmarcParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=3), st.booleans())
def test_check_never_raises(records: list[bytes], has_mx: bool) -> None:
    # Given any TXT records at the _dmarc name
    name = f"_dmarc.{D}"
    found = FakeDns({(name, "TXT"): [txt(r[:255]) for r in records] or "nodata"}).answer(
        name, "TXT"
    )
    # When they are judged
    result = check_dmarc(D, found, has_mx=has_mx)
    # Then there are findings and no exception
    assert result.findings
