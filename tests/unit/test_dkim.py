"""DKIM key records (probes.mailauth.dkim): parsing, key strength, selector discovery.

Keys are built from fixed numbers (no key generation), so the tests are fast and exact.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.core.model import Status
from analyzer.protocols.resolve import Lookup
from probes.mailauth.dkim import (
    COMMON_SELECTORS,
    FINDINGS,
    DkimKeyError,
    DkimParseError,
    check_dkim_key,
    check_dkim_selector,
    check_dkim_selectors,
    dkim_name,
    is_dkim_record,
    key_bits,
    parse_dkim_key,
)
from tests.unit.mailauth_dns import FakeDns

D = "example.com"


def rsa_b64(bits: int, *, pkcs1: bool = False) -> str:
    """Base64 of an RSA public key of exactly ``bits`` bits (SPKI DER, or PKCS#1 DER)."""
    key = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 0xF1).public_key()
    fmt = (
        serialization.PublicFormat.PKCS1
        if pkcs1
        else serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(key.public_bytes(serialization.Encoding.DER, fmt)).decode()


def ed25519_b64() -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def ec_b64() -> str:
    key = ec.derive_private_key(12345, ec.SECP256R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def codes(findings: object) -> list[str]:
    return [f.code for f in findings]  # type: ignore[attr-defined]


def txt_answer(name: str, *records: str) -> Lookup:
    return FakeDns({(name, "TXT"): list(records)}).answer(name, "TXT")


# --- parsing ---------------------------------------------------------------------------------


def test_common_selectors_are_the_documented_list() -> None:
    # Given the selectors tried by default
    # When they are listed
    # Then they are exactly the documented ones, in order
    assert COMMON_SELECTORS == (
        "selector1",
        "selector2",
        "google",
        "default",
        "k1",
        "s1",
        "s2",
        "dkim",
        "mail",
    )


def test_parse_reads_the_tags() -> None:
    # Given a record with every tag
    key = rsa_b64(2048)
    record = f"v=DKIM1; k=rsa; h=sha256:sha1; s=email; t=y:s; n=notes here; p={key}"
    # When it is parsed
    parsed = parse_dkim_key(record)
    # Then the values are read, lists split, the key decoded
    assert (parsed.version, parsed.key_type, parsed.hashes) == ("DKIM1", "rsa", ("sha256", "sha1"))
    assert (parsed.services, parsed.flags, parsed.notes) == (("email",), ("y", "s"), "notes here")
    assert parsed.public_key == base64.b64decode(key)
    assert parsed.testing and not parsed.revoked


def test_parse_fills_defaults() -> None:
    # Given a record with only p=
    # When it is parsed
    parsed = parse_dkim_key(f"p={rsa_b64(2048)}")
    # Then the RFC 6376 3.6.1 defaults apply
    assert (parsed.version, parsed.key_type, parsed.hashes, parsed.services, parsed.flags) == (
        None,
        "rsa",
        (),
        ("*",),
        (),
    )


@pytest.mark.parametrize(
    "record",
    [
        "v=DKIM1; p=",
        "v=DKIM1; k=rsa; p=;",
        "p= ",
    ],
)
def test_empty_p_is_revoked(record: str) -> None:
    # Given a record whose p= is empty
    # When it is parsed
    # Then the key is revoked (RFC 6376 3.6.1)
    assert parse_dkim_key(record).revoked


def test_base64_may_contain_folding_white_space() -> None:
    # Given a key broken by spaces and tabs, as long TXT records often are
    key = rsa_b64(2048)
    spaced = " ".join(key[i : i + 60] for i in range(0, len(key), 60)).replace(" ", " \t ", 1)
    # When it is parsed
    parsed = parse_dkim_key(f"v=DKIM1; p={spaced}")
    # Then the white space is ignored
    assert parsed.public_key == base64.b64decode(key)


@pytest.mark.parametrize(
    ("record", "position", "tag", "message"),
    [
        ("k=rsa", None, "p", "required"),
        ("k=rsa; p=abc; v=DKIM1", 14, "v", "first"),
        ("v=DKIM2; p=", 0, "v", "DKIM1"),
        ("v=dkim1; p=", 0, "v", "DKIM1"),
        ("v=DKIM1; p=; p=", 13, "p", "twice"),
        ("v=DKIM1;; p=", 8, "", "empty tag"),
        ("v=DKIM1; garbage; p=", 9, "", "tag=value"),
        ("v=DKIM1; 9k=rsa; p=", 9, "", "tag=value"),
    ],
)
def test_parse_syntax_errors(record: str, position: int | None, tag: str, message: str) -> None:
    # Given a record with a tag-list error
    # When it is parsed
    with pytest.raises(DkimParseError) as caught:
        parse_dkim_key(record)
    # Then it is a syntax error (not a key error) naming position and tag
    assert not isinstance(caught.value, DkimKeyError)
    assert (caught.value.position, caught.value.tag) == (position, tag)
    assert message in caught.value.message


@pytest.mark.parametrize("p", ["not base64!", "QUJD=QUJD", "QUJDRA=", "QQ"])
def test_bad_base64_is_a_key_error(p: str) -> None:
    # Given p= that is not valid base64
    # When it is parsed
    # Then a key error (a kind of parse error) points at p=
    with pytest.raises(DkimKeyError) as caught:
        parse_dkim_key(f"v=DKIM1; p={p}")
    assert (caught.value.tag, caught.value.position) == ("p", 9)


def test_non_ascii_is_a_syntax_error_with_offset() -> None:
    # Given raw bytes with a non-ASCII byte
    # When they are parsed
    with pytest.raises(DkimParseError) as caught:
        parse_dkim_key(b"v=DKIM1; n=caf\xc3\xa9; p=")
    # Then the offset of the first bad byte is given
    assert caught.value.position == 14


@pytest.mark.parametrize(
    ("record", "bits"),
    [
        (f"p={rsa_b64(512)}", 512),
        (f"p={rsa_b64(1024)}", 1024),
        (f"k=rsa; p={rsa_b64(2048)}", 2048),
        (f"p={rsa_b64(4096)}", 4096),
        (f"p={rsa_b64(2048, pkcs1=True)}", 2048),
        (f"k=ed25519; p={ed25519_b64()}", 256),
    ],
)
def test_key_bits(record: str, bits: int) -> None:
    # Given a key record
    # When its key size is read from the DER public key (or the raw Ed25519 key)
    # Then it is the modulus size in bits
    assert key_bits(parse_dkim_key(record)) == bits


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("p=" + base64.b64encode(b"\x30\x03\x02\x01\x05").decode(), "DER"),
        ("p=" + base64.b64encode(b"junk" * 10).decode(), "DER"),
        (f"p={ec_b64()}", "non-RSA"),
        ("k=ed25519; p=" + base64.b64encode(b"\x01" * 31).decode(), "32 bytes"),
        ("k=dsa; p=" + base64.b64encode(b"\x01" * 31).decode(), "unsupported"),
        ("p=", "revoked"),
    ],
)
def test_unreadable_keys_raise_key_error(record: str, message: str) -> None:
    # Given a record whose key material is wrong for its type
    # When its size is read
    with pytest.raises(DkimKeyError) as caught:
        key_bits(parse_dkim_key(record))
    # Then a key error says why
    assert message in caught.value.message


# --- check_dkim_key --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected", "status"),
    [
        (f"v=DKIM1; k=rsa; p={rsa_b64(2048)}", ["dns.dkim.valid"], Status.PASS),
        (f"v=DKIM1; p={rsa_b64(1024)}", ["dns.dkim.key_1024", "dns.dkim.valid"], Status.WARN),
        (f"v=DKIM1; p={rsa_b64(1023)}", ["dns.dkim.weak_key"], Status.FAIL),
        (f"v=DKIM1; p={rsa_b64(768)}", ["dns.dkim.weak_key"], Status.FAIL),
        (f"v=DKIM1; t=y; p={rsa_b64(2048)}", ["dns.dkim.testing", "dns.dkim.valid"], Status.WARN),
        (f"v=DKIM1; t=s; p={rsa_b64(2048)}", ["dns.dkim.valid"], Status.PASS),
        (
            f"v=DKIM1; h=sha1; p={rsa_b64(2048)}",
            ["dns.dkim.no_sha256", "dns.dkim.valid"],
            Status.WARN,
        ),
        (f"v=DKIM1; h=sha1:sha256; p={rsa_b64(2048)}", ["dns.dkim.valid"], Status.PASS),
        (
            f"v=DKIM1; h=sha512; p={rsa_b64(2048)}",
            ["dns.dkim.no_sha256", "dns.dkim.valid"],
            Status.WARN,
        ),
        (f"v=DKIM1; s=other; p={rsa_b64(2048)}", ["dns.dkim.not_for_email"], Status.FAIL),
        (f"v=DKIM1; s=email:other; p={rsa_b64(2048)}", ["dns.dkim.valid"], Status.PASS),
        (f"v=DKIM1; k=ed25519; p={ed25519_b64()}", ["dns.dkim.valid"], Status.PASS),
        ("v=DKIM1; p=", ["dns.dkim.revoked"], Status.WARN),
        ("v=DKIM1; p=%%%", ["dns.dkim.bad_key"], Status.FAIL),
        (
            "v=DKIM1; p=" + base64.b64encode(b"junk" * 10).decode(),
            ["dns.dkim.bad_key"],
            Status.FAIL,
        ),
        ("v=DKIM1; k=dsa; p=AAAA", ["dns.dkim.unsupported_key_type"], Status.FAIL),
        ("v=DKIM1; k=rsa", ["dns.dkim.syntax"], Status.FAIL),
        (b"v=DKIM1; p=\xff", ["dns.dkim.syntax"], Status.FAIL),
    ],
)
def test_check_key_findings(record: str | bytes, expected: list[str], status: Status) -> None:
    # Given a key record at a selector
    # When it is judged
    findings = check_dkim_key("s1", D, record)
    # Then exactly the expected findings are made
    assert codes(findings) == expected
    assert max((f.status for f in findings), key=lambda s: s.severity) is status


def test_check_key_evidence_names_size_and_type() -> None:
    # Given a 2048-bit RSA key
    # When it is judged
    (finding,) = check_dkim_key("selector1", D, f"v=DKIM1; k=rsa; p={rsa_b64(2048)}")
    # Then the evidence has the name, the tags and the key size
    assert finding.evidence["name"] == "selector1._domainkey.example.com"
    assert (finding.evidence["key_type"], finding.evidence["bits"]) == ("rsa", 2048)
    tags = finding.evidence["tags"]
    assert isinstance(tags, dict)
    assert (tags["v"], tags["k"], tags["p"].endswith("…")) == ("DKIM1", "rsa", True)


# --- selectors -------------------------------------------------------------------------------


def test_selector_name() -> None:
    # Given a selector and a domain
    # When the key record's name is built
    # Then it is <selector>._domainkey.<domain> (RFC 6376 3.6.2.1)
    assert dkim_name("google", "Example.COM.") == "google._domainkey.example.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DKIM1; p=abc", True),
        ("k=rsa; p=abc", True),
        ("p=", True),
        ("v=spf1 -all", False),
        ("google-site-verification=xyz", False),
    ],
)
def test_key_record_recognition(text: str, expected: bool) -> None:
    # Given a TXT string found at a selector name
    # When it is tested for being a key record
    # Then unrelated TXT data (e.g. a wildcard's) is not taken for a key
    assert is_dkim_record(text) is expected


def test_long_key_split_over_character_strings_is_joined() -> None:
    # Given a 4096-bit key record, longer than one 255-byte character-string
    record = f"v=DKIM1; k=rsa; p={rsa_b64(4096)}"
    assert len(record) > 255
    name = dkim_name("s1", D)
    found = FakeDns({(name, "TXT"): [record]}).answer(name, "TXT")
    assert len(found.records[0].strings) > 1  # type: ignore[attr-defined]
    # When the selector's answer is judged
    check = check_dkim_selector("s1", D, found)
    # Then the strings are joined into the whole key
    assert check.state == "found"
    assert check.findings[0].evidence["bits"] == 4096


@pytest.mark.parametrize(
    ("zone_value", "state", "expected"),
    [
        ("nxdomain", "absent", []),
        ("nodata", "absent", []),
        (["v=spf1 -all"], "absent", []),
        ("timeout", "temperror", ["dns.dkim.temperror"]),
        ([f"v=DKIM1; p={rsa_b64(2048)}"], "found", ["dns.dkim.valid"]),
        (
            [f"v=DKIM1; p={rsa_b64(2048)}", f"v=DKIM1; p={rsa_b64(1024)}"],
            "found",
            ["dns.dkim.multiple", "dns.dkim.valid", "dns.dkim.key_1024", "dns.dkim.valid"],
        ),
    ],
)
def test_selector_states(zone_value: object, state: str, expected: list[str]) -> None:
    # Given the TXT answer at one selector's name
    name = dkim_name("k1", D)
    found = FakeDns({(name, "TXT"): zone_value}).answer(name, "TXT")  # type: ignore[dict-item]
    # When it is judged
    check = check_dkim_selector("k1", D, found)
    # Then the selector is found, absent, or could not be asked
    assert (check.state, codes(check.findings)) == (state, expected)


def test_none_found_is_a_warning_listing_the_selectors_tried() -> None:
    # Given no key at any of the common selectors
    dns = FakeDns({})
    answers = {s: dns.answer(dkim_name(s, D), "TXT") for s in COMMON_SELECTORS}
    # When the selectors are judged together
    findings = check_dkim_selectors(D, answers)
    # Then one warning (never a failure) lists every selector tried
    assert codes(findings) == ["dns.dkim.not_found"]
    assert findings[0].status is Status.WARN
    assert findings[0].evidence["selectors_tried"] == list(COMMON_SELECTORS)
    assert "selector1, selector2, google" in findings[0].detail


def test_one_found_selector_is_enough() -> None:
    # Given a key at "google" only
    name = dkim_name("google", D)
    dns = FakeDns({(name, "TXT"): [f"v=DKIM1; p={rsa_b64(2048)}"]})
    answers = {s: dns.answer(dkim_name(s, D), "TXT") for s in COMMON_SELECTORS}
    # When the selectors are judged together
    findings = check_dkim_selectors(D, answers)
    # Then the key is reported and the absent selectors are not
    assert codes(findings) == ["dns.dkim.valid"]


def test_failed_lookups_are_named_when_none_is_found() -> None:
    # Given one selector timing out and the others absent
    dns = FakeDns({(dkim_name("s1", D), "TXT"): "timeout"})
    answers = {s: dns.answer(dkim_name(s, D), "TXT") for s in ("s1", "s2")}
    # When the selectors are judged together
    findings = check_dkim_selectors(D, answers)
    # Then the failure is reported, and the warning says which look-up failed
    assert codes(findings) == ["dns.dkim.temperror", "dns.dkim.not_found"]
    assert findings[1].evidence["lookup_failed"] == ["s1"]


def test_every_code_is_declared_once() -> None:
    # Given the module's finding specifications
    all_codes = [spec.code for spec in FINDINGS]
    # When they are checked
    # Then the codes are unique and under dns.dkim.
    assert len(all_codes) == len(set(all_codes))
    assert all(c.startswith("dns.dkim.") for c in all_codes)


# --- hostile input ---------------------------------------------------------------------------

_DKIM_PARTS = st.sampled_from(
    [
        "v=DKIM1",
        "k=",
        "rsa",
        "ed25519",
        "p=",
        "MIIB",
        "AAAA",
        "==",
        ";",
        " ",
        "\t",
        "t=",
        "y",
        ":",
        "h=",
        "sha1",
        "=",
        "s=",
        "*",
        "x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.text(max_size=200)
    | st.binary(max_size=200)
    | st.lists(_DKIM_PARTS, max_size=40).map("".join)
)
def test_parse_raises_only_its_own_error(record: str | bytes) -> None:
    # Given arbitrary or DKIM-like text
    # When it is parsed and its key read
    # Then only DkimParseError (or its DkimKeyError) is raised
    try:
        key_bits(parse_dkim_key(record))
    except DkimParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=100)
    | st.binary(max_size=300).map(lambda b: "v=DKIM1; p=" + base64.b64encode(b).decode())
    | st.binary(max_size=100).map(lambda b: "k=ed25519; p=" + base64.b64encode(b).decode())
)
def test_check_never_raises(record: str) -> None:
    # Given any record text, including random key material
    # When it is judged
    findings = check_dkim_key("s1", D, record)
    # Then findings come back and nothing is raised
    assert findings
