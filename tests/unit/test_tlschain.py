"""The certificate chain diagnosis (probes.tlschain): each fault named for what it is.

Every lab certificate kind is diagnosed as its server would send it, and must give exactly
its own non-pass finding codes; then the cases the lab kinds do not cover (realistic wrong
orders, the AIA two-phase flow, IP addresses, hostile certificates) one behaviour each.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.core.model import Finding, Status
from analyzer.lab.pki import CERT_KINDS, CertKind, CertSpec, IssuedCert, LabPKI
from probes import tlschain
from probes.tlschain import (
    FINDINGS,
    MAX_AIA_FETCHES,
    MAX_NAMES,
    MAX_TEXT,
    ChainDiagnosis,
    TrustStore,
    diagnose,
    load_trust_store,
    run_roots,
)

# A fixed clock: nothing below depends on when the tests run.
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOST = "mail.example.test"
AIA_URL = "http://pki.example.test/intermediate.der"
CATALOGUE = {spec.code: spec for spec in FINDINGS}

EMPTY = "tls.chain.empty"
UNPARSEABLE = "tls.cert.unparseable"
EXPIRED = "tls.cert.expired"
NOT_YET_VALID = "tls.cert.not_yet_valid"
EXPIRING = "tls.cert.expiring_soon"
NAME_MISMATCH = "tls.cert.name_mismatch"
SELF_SIGNED = "tls.cert.self_signed"
UNTRUSTED_ROOT = "tls.chain.untrusted_root"
MISSING = "tls.chain.missing_intermediate"
WRONG_ORDER = "tls.chain.wrong_order"
EXTRA = "tls.chain.extra_certs"
DUPLICATE = "tls.chain.duplicate_certs"
ROOT_SENT = "tls.chain.root_sent"
WEAK_KEY = "tls.key.weak"
SHA1 = "tls.cert.sha1_signature"
NO_SERVER_AUTH = "tls.cert.no_server_auth"
REJECTED = "tls.chain.rejected"
VALID = "tls.chain.valid"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return LabPKI.create(tmp_path_factory.mktemp("pki"), now=NOW)


# -- helpers -------------------------------------------------------------------------------------


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _sent(*certs: x509.Certificate) -> list[bytes]:
    return [_der(c) for c in certs]


def _issue(pki: LabPKI, kind: CertKind, *, tag: str, **fields: typing.Any) -> IssuedCert:
    """Issue HOST under a name unique to the calling test (the fixture PKI is shared)."""
    fields.setdefault("dns_names", (HOST,))
    if kind == "expiring":
        fields.setdefault("days_left", 20)
    return pki.issue(CertSpec(name=f"{tag}-{kind}", kind=kind, **fields))


def _diagnose(
    pki: LabPKI,
    chain: Sequence[bytes],
    host: str = HOST,
    *,
    roots: Sequence[x509.Certificate] | None = None,
    fetched: Mapping[str, bytes | None] | None = None,
    now: datetime = NOW,
) -> ChainDiagnosis:
    """Diagnose as a client trusting only the lab root; every code must be catalogued."""
    diagnosis = diagnose(
        chain,
        host,
        roots=[pki.root_cert] if roots is None else roots,
        now=now,
        fetched=fetched,
    )
    assert {f.code for f in diagnosis.findings} <= set(CATALOGUE)
    return diagnosis


def _only(diagnosis: ChainDiagnosis, code: str) -> Finding:
    found = [f for f in diagnosis.findings if f.code == code]
    assert len(found) == 1, [f.code for f in diagnosis.findings]
    return found[0]


def _intermediate_key(pki: LabPKI) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        (pki.directory / "intermediate-ca.key").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


SERVER_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _make_cert(
    *,
    subject: x509.Name,
    key: typing.Any,
    issuer: x509.Certificate | None,
    issuer_key: typing.Any,
    ca: bool = False,
    sans: Sequence[x509.GeneralName] = (x509.DNSName(HOST),),
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    usage: x509.KeyUsage | None = None,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=90),
) -> x509.Certificate:
    """A certificate built for one test; ``issuer=None`` makes it self-signed."""
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage or (CA_USAGE if ca else SERVER_USAGE), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


def _leaf_under_lab(pki: LabPKI, **fields: typing.Any) -> x509.Certificate:
    """A leaf for HOST issued by the lab intermediate, with fields changed by the test."""
    fields.setdefault("subject", _cn(HOST))
    fields.setdefault("key", ec.generate_private_key(ec.SECP256R1()))
    return _make_cert(issuer=pki.intermediate_cert, issuer_key=_intermediate_key(pki), **fields)


def _strings(value: object) -> Iterator[str]:
    """Every string inside evidence-like data."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _assert_bounded(diagnosis: ChainDiagnosis) -> None:
    for finding in diagnosis.findings:
        assert len(finding.title) <= MAX_TEXT + 100
        assert len(finding.detail) <= 8 * MAX_TEXT
        assert all(len(s) <= 2 * MAX_TEXT for s in _strings(finding.evidence))
    for info in (*diagnosis.presented, *diagnosis.path):
        assert all(len(s) <= MAX_TEXT for s in _strings(info.as_evidence()))
        assert len(info.dns_names) + len(info.ip_addresses) <= MAX_NAMES


# -- every lab kind, as its server sends it ---------------------------------------------------


@dataclass(frozen=True)
class KindCase:
    kind: CertKind
    codes: frozenset[str]  # the exact set of non-pass finding codes
    valid: bool


KIND_CASES = (
    KindCase("good", frozenset(), True),
    KindCase("expired", frozenset({EXPIRED}), False),
    KindCase("not_yet_valid", frozenset({NOT_YET_VALID}), False),
    KindCase("expiring", frozenset({EXPIRING}), True),
    KindCase("wrong_name", frozenset({NAME_MISMATCH}), False),
    KindCase("self_signed", frozenset({SELF_SIGNED}), False),
    KindCase("untrusted_root", frozenset({UNTRUSTED_ROOT}), False),
    KindCase("leaf_only", frozenset({MISSING}), False),
    # The lab writes intermediate then leaf: the server certificate is not first (fail).
    KindCase("wrong_order", frozenset({WRONG_ORDER}), False),
    # cryptography's verifier does not police the leaf's own key size: valid, yet a fail.
    KindCase("rsa1024", frozenset({WEAK_KEY}), True),
    KindCase("sha1", frozenset({SHA1}), False),
    KindCase("wildcard", frozenset(), True),
    KindCase("no_server_auth", frozenset({NO_SERVER_AUTH}), False),
    KindCase("extra_certs", frozenset({EXTRA, DUPLICATE}), True),
    KindCase("with_root", frozenset(), True),
    # Leaf, root, intermediate (a real server can send it): out of order, still valid.
    KindCase("misordered", frozenset({WRONG_ORDER}), True),
)


def test_kind_cases_cover_every_kind() -> None:
    # Given the table of kind cases
    # When its kinds are compared with the lab's
    # Then none is missing and none is repeated
    assert [case.kind for case in KIND_CASES] == list(CERT_KINDS)


@pytest.mark.parametrize("case", KIND_CASES, ids=lambda case: case.kind)
def test_kind_gives_exactly_its_findings(pki: LabPKI, case: KindCase) -> None:
    # Given a certificate of the kind, in the order its server sends it
    issued = _issue(pki, case.kind, tag="kind")

    # When the chain is diagnosed for HOST by a client trusting the lab root
    diagnosis = _diagnose(pki, _sent(*issued.chain))

    # Then exactly the kind's faults are reported, and the verifier agrees on validity
    assert diagnosis.codes == case.codes
    assert diagnosis.valid is case.valid


@pytest.mark.parametrize("case", KIND_CASES, ids=lambda case: case.kind)
def test_kind_diagnosis_is_bounded_and_pass_only_when_clean(pki: LabPKI, case: KindCase) -> None:
    # Given a certificate of the kind
    issued = _issue(pki, case.kind, tag="bounded")

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(*issued.chain))

    # Then the evidence is bounded, and the overall status is pass only for a clean chain
    _assert_bounded(diagnosis)
    assert (diagnosis.status == Status.PASS) is (not case.codes)


# -- the catalogue ---------------------------------------------------------------------------


def test_catalogue_codes_are_unique_and_documented() -> None:
    # Given the module's finding specifications
    codes = [spec.code for spec in FINDINGS]

    # When they are checked
    # Then each code appears once, with a meaning, an RFC reference, and (unless it is a
    # pass) a remediation
    assert len(codes) == len(set(codes))
    for spec in FINDINGS:
        assert spec.meaning and spec.reference.startswith("https://www.rfc-editor.org/rfc/")
        assert spec.remediation or spec.status == Status.PASS


# -- valid chains ------------------------------------------------------------------------------


def test_valid_chain_gives_one_line_summary_and_path_to_root(pki: LabPKI) -> None:
    # Given a good chain
    issued = _issue(pki, "good", tag="summary")

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(*issued.chain))

    # Then a pass names the path, and the path ends at the trusted root from the store
    valid = _only(diagnosis, VALID)
    assert valid.status == Status.PASS and "\n" not in valid.detail
    assert "rca Lab Root CA" in valid.detail
    assert [c.source for c in diagnosis.path] == ["presented", "presented", "trust_store"]
    assert diagnosis.path[0].fingerprint_sha256 == issued.fingerprint_sha256


def test_leaf_evidence_holds_certificate_fields(pki: LabPKI) -> None:
    # Given a good chain whose leaf names AIA and OCSP URLs
    issued = _issue(
        pki, "good", tag="fields", aia_url=AIA_URL, ocsp_url="http://ocsp.example.test/"
    )

    # When it is diagnosed
    leaf = _diagnose(pki, _sent(*issued.chain)).presented[0]

    # Then the leaf's evidence carries what an admin needs to recognise it
    assert leaf.position == 1 and leaf.source == "presented"
    assert leaf.subject == f"CN={HOST}" and "rca Lab Intermediate CA" in leaf.issuer
    assert leaf.dns_names == (HOST,) and leaf.san_count == 1
    assert leaf.serial_hex == format(issued.leaf.serial_number, "x")
    assert leaf.not_after == issued.leaf.not_valid_after_utc.isoformat()
    assert (leaf.key_type, leaf.key_bits) == ("RSA", 2048)
    assert leaf.signature_algorithm == "ecdsa-with-SHA256"
    assert leaf.ca_issuers == (AIA_URL,) and leaf.ocsp == ("http://ocsp.example.test/",)
    assert not leaf.is_ca and not leaf.self_signed


def test_root_sent_is_a_pass_not_a_warning(pki: LabPKI) -> None:
    # Given a chain that includes the trusted root
    issued = _issue(pki, "with_root", tag="rootsent")

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(*issued.chain))

    # Then the root is noted as harmless but wasteful
    assert _only(diagnosis, ROOT_SENT).status == Status.PASS
    assert diagnosis.valid


# -- validity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_left", "status"),
    [(31, None), (30, Status.WARN), (20, Status.WARN), (7, Status.FAIL), (0, Status.FAIL)],
)
def test_expiry_thresholds(pki: LabPKI, days_left: int, status: Status | None) -> None:
    # Given a certificate that expires in `days_left` days
    issued = _issue(pki, "expiring", tag=f"thresholds{days_left}", days_left=days_left)

    # When it is diagnosed with the default thresholds (warn 30, fail 7)
    diagnosis = _diagnose(pki, _sent(*issued.chain))

    # Then it warns within 30 days, fails within 7, and is quiet before
    found = [f.status for f in diagnosis.findings if f.code == EXPIRING]
    assert found == ([] if status is None else [status])


def test_expired_intermediate_is_named(pki: LabPKI) -> None:
    # Given a valid leaf, judged after the intermediate's own end of life
    issued = _issue(pki, "good", tag="laterexpiry")
    later = pki.intermediate_cert.not_valid_after_utc + timedelta(days=1)

    # When it is diagnosed then
    diagnosis = _diagnose(pki, _sent(*issued.chain), now=later)

    # Then every expired certificate of the path is reported, the intermediate by name
    details = [f.detail for f in diagnosis.findings if f.code == EXPIRED]
    assert any("intermediate certificate 'rca Lab Intermediate CA'" in d for d in details)
    assert diagnosis.codes == {EXPIRED}


@pytest.mark.parametrize(
    ("after_end", "expired"),
    [(timedelta(0), False), (timedelta(milliseconds=5), False), (timedelta(seconds=1), True)],
)
def test_expiry_is_judged_to_the_second(pki: LabPKI, after_end: timedelta, expired: bool) -> None:
    # Given a valid chain, judged at (or just after) the leaf's notAfter, which RFC 5280
    # 4.1.2.5 encodes to the second and includes in the validity period
    issued = _issue(pki, "good", tag=f"notafter{after_end.total_seconds()}")
    when = issued.leaf.not_valid_after_utc + after_end

    # When it is diagnosed then (no expiry-soon thresholds)
    diagnosis = diagnose(
        _sent(*issued.chain), HOST, roots=[pki.root_cert], now=when, warn_days=0, fail_days=0
    )

    # Then the leaf is expired only from the next second on, as the verifier judges it
    # (x509-limbo rfc5280::validity::notafter-exact and notafter-fractional)
    leaf_expired = any(
        f.code == EXPIRED and f.title.startswith("Server certificate") for f in diagnosis.findings
    )
    assert (leaf_expired, diagnosis.valid) == (expired, not expired)


def test_several_faults_are_all_reported(pki: LabPKI) -> None:
    # Given an expired certificate, checked for a name it does not hold
    issued = _issue(pki, "expired", tag="several")

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(*issued.chain), "other.example.test")

    # Then both faults are reported, not just the first
    assert diagnosis.codes == {EXPIRED, NAME_MISMATCH}


# -- names -------------------------------------------------------------------------------------


def test_name_mismatch_lists_the_names_held(pki: LabPKI) -> None:
    # Given a certificate for the wrong names
    issued = _issue(pki, "wrong_name", tag="listing")

    # When it is diagnosed for HOST
    finding = _only(_diagnose(pki, _sent(*issued.chain)), NAME_MISMATCH)

    # Then the finding lists the names the certificate holds
    assert finding.evidence["dns_names"] == ["wrong-name.invalid", "www.wrong-name.invalid"]
    assert "wrong-name.invalid" in finding.detail


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("mail.example.test", True),
        ("IMAP.Example.Test.", True),  # case and a trailing dot do not matter
        ("example.test", False),  # the wildcard needs one label
        ("a.mail.example.test", False),  # and covers only one
    ],
)
def test_wildcard_covers_exactly_one_left_most_label(pki: LabPKI, host: str, matches: bool) -> None:
    # Given a certificate for *.example.test
    issued = _issue(pki, "wildcard", tag=f"wild-{host.lower().rstrip('.')}")

    # When it is diagnosed for the host
    diagnosis = _diagnose(pki, _sent(*issued.chain), host)

    # Then it matches only a host one label below example.test
    assert (NAME_MISMATCH not in diagnosis.codes) is matches
    assert diagnosis.valid is matches


def test_wildcard_over_a_top_level_domain_is_refused(pki: LabPKI) -> None:
    # Given a certificate for *.test, which cryptography's verifier accepts but OpenSSL and
    # browsers refuse
    leaf = _leaf_under_lab(pki, sans=(x509.DNSName("*.test"),))

    # When it is diagnosed for a host under .test
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert), "example.test")

    # Then the name is reported as not covered, even though the verifier passes it
    assert diagnosis.codes == {NAME_MISMATCH}
    assert diagnosis.valid


def test_partial_wildcard_is_refused(pki: LabPKI) -> None:
    # Given a certificate for m*.example.test (RFC 9525 forbids partial wildcards)
    leaf = _leaf_under_lab(pki, sans=(x509.DNSName("m*.example.test"),))

    # When it is diagnosed for mail.example.test
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert))

    # Then the name does not match
    assert diagnosis.codes == {NAME_MISMATCH}


def test_name_only_in_common_name_is_explained(pki: LabPKI) -> None:
    # Given a certificate with HOST in its CN and no subjectAltName at all
    leaf = _leaf_under_lab(pki, sans=())

    # When it is diagnosed for HOST
    finding = _only(_diagnose(pki, _sent(leaf, pki.intermediate_cert)), NAME_MISMATCH)

    # Then the finding says the CN is not used
    assert "only in the subject CN" in finding.detail


def test_unicode_host_is_compared_as_a_label(pki: LabPKI) -> None:
    # Given a certificate for the A-label form of an internationalised name
    issued = _issue(pki, "good", tag="idn", dns_names=("mail.xn--bcher-kva.test",))

    # When it is diagnosed for the U-label form a user types
    diagnosis = _diagnose(pki, _sent(*issued.chain), "mail.bücher.test")

    # Then it matches
    assert diagnosis.valid and not diagnosis.codes


def test_invalid_host_is_a_name_mismatch_not_an_exception(pki: LabPKI) -> None:
    # Given a good chain
    issued = _issue(pki, "good", tag="badhost")

    # When it is diagnosed for something that is no host name
    diagnosis = _diagnose(pki, _sent(*issued.chain), "mail..example test")

    # Then the name is reported as not covered
    assert diagnosis.codes == {NAME_MISMATCH}
    assert not diagnosis.valid


# -- IP addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("192.0.2.25", True),
        ("2001:db8::25", True),
        ("[2001:db8:0:0::25]", True),  # bracketed and written long, as in a URL
        ("192.0.2.26", False),
        ("2001:db8::26", False),
    ],
)
def test_ip_address_matches_only_ip_entries(pki: LabPKI, host: str, matches: bool) -> None:
    # Given a certificate with an IPv4 and an IPv6 address entry
    tag = "ip-" + host.strip("[]").replace(":", "-").replace(".", "-")
    issued = _issue(pki, "good", tag=tag, ip_addresses=("192.0.2.25", "2001:db8::25"))

    # When it is diagnosed for the address
    diagnosis = _diagnose(pki, _sent(*issued.chain), host)

    # Then it matches its own addresses and no other
    assert (NAME_MISMATCH not in diagnosis.codes) is matches
    assert diagnosis.valid is matches


def test_ip_address_written_as_dns_name_does_not_match(pki: LabPKI) -> None:
    # Given a certificate that holds an address as a DNS name entry
    leaf = _leaf_under_lab(pki, sans=(x509.DNSName("192.0.2.25"),))

    # When it is diagnosed for that address
    finding = _only(_diagnose(pki, _sent(leaf, pki.intermediate_cert), "192.0.2.25"), NAME_MISMATCH)

    # Then the mismatch explains that addresses need an iPAddress entry
    assert "not as an IP address entry" in finding.detail


# -- trust: self-signed vs untrusted root vs missing intermediate -----------------------------


def test_self_signed_leaf_in_the_trust_store_is_valid(pki: LabPKI) -> None:
    # Given a self-signed certificate that the client was told to trust (--ca-file)
    issued = _issue(pki, "self_signed", tag="pinned")

    # When it is diagnosed with that certificate as a root
    diagnosis = _diagnose(pki, _sent(*issued.chain), roots=[pki.root_cert, issued.leaf])

    # Then it is valid and not reported as self-signed
    assert diagnosis.valid and not diagnosis.codes


def test_untrusted_root_sent_by_the_server_is_confirmed(pki: LabPKI) -> None:
    # Given an untrusted chain where the server also sends its (untrusted) root
    issued = _issue(pki, "untrusted_root", tag="rootincluded")
    chain = _sent(*issued.chain, pki.untrusted_root_cert)

    # When it is diagnosed
    diagnosis = _diagnose(pki, chain)

    # Then the root is named as untrusted, for certain, and not as a harmless extra
    finding = _only(diagnosis, UNTRUSTED_ROOT)
    assert finding.evidence["confirmed"] is True
    assert "rca Untrusted Root CA" in finding.detail
    assert diagnosis.codes == {UNTRUSTED_ROOT}
    assert ROOT_SENT not in {f.code for f in diagnosis.findings}


def test_untrusted_root_becomes_valid_when_trusted(pki: LabPKI) -> None:
    # Given an untrusted-root chain
    issued = _issue(pki, "untrusted_root", tag="trustit")

    # When the client trusts that root (as with --ca-file)
    diagnosis = _diagnose(pki, _sent(*issued.chain), roots=[pki.untrusted_root_cert])

    # Then it is valid
    assert diagnosis.valid and not diagnosis.codes


def test_wrong_intermediate_is_missing_plus_extra(pki: LabPKI) -> None:
    # Given a lab leaf sent with an intermediate that did not issue it
    issued = _issue(pki, "good", tag="wronginter")
    chain = _sent(issued.leaf, pki.untrusted_intermediate_cert)

    # When it is diagnosed
    diagnosis = _diagnose(pki, chain)

    # Then the real issuer is missing, and the one sent instead is named as extra
    assert diagnosis.codes == {MISSING, EXTRA}
    assert "rca Untrusted Intermediate CA" in _only(diagnosis, MISSING).detail


# -- the AIA two-phase flow ----------------------------------------------------------------------


def test_missing_intermediate_asks_for_the_aia_url(pki: LabPKI) -> None:
    # Given a server that sends only its leaf, which names an AIA caIssuers URL
    issued = _issue(pki, "leaf_only", tag="aia1", aia_url=AIA_URL)

    # When the chain is diagnosed without any fetch
    diagnosis = _diagnose(pki, _sent(*issued.chain))

    # Then the intermediate is missing, and the URL to fetch is returned as data
    finding = _only(diagnosis, MISSING)
    assert diagnosis.fetch_url == AIA_URL
    assert AIA_URL in finding.detail and finding.evidence["confirmed"] is False
    assert "rca Lab Intermediate CA" in finding.remediation
    assert diagnosis.valid_with_fetched is None


def test_fetched_intermediate_confirms_the_fix(pki: LabPKI) -> None:
    # Given the same leaf-only chain and the DER the probe fetched from the AIA URL
    issued = _issue(pki, "leaf_only", tag="aia2", aia_url=AIA_URL)
    fetched: dict[str, bytes | None] = {AIA_URL: pki.intermediate_der_file.read_bytes()}

    # When the chain is diagnosed again with what was fetched
    diagnosis = _diagnose(pki, _sent(*issued.chain), fetched=fetched)

    # Then adding that intermediate is confirmed to fix the chain; the server's chain is
    # still invalid as sent, and there is nothing more to fetch
    finding = _only(diagnosis, MISSING)
    assert "Adding intermediate 'CN=rca Lab Intermediate CA,O=rca lab'" in finding.detail
    assert "fixes the chain" in finding.detail and finding.evidence["confirmed"] is True
    assert diagnosis.codes == {MISSING}
    assert (diagnosis.valid, diagnosis.valid_with_fetched) == (False, True)
    assert diagnosis.fetch_url is None
    assert [c.source for c in diagnosis.path] == ["presented", "aia", "trust_store"]
    assert diagnosis.path[1].fetched_from == AIA_URL


def test_fetched_pkcs7_bundle_is_read(pki: LabPKI) -> None:
    # Given an AIA URL that serves a certs-only PKCS#7 bundle (.p7c)
    issued = _issue(pki, "leaf_only", tag="aiap7", aia_url=AIA_URL)
    bundle = pkcs7.serialize_certificates([pki.intermediate_cert], serialization.Encoding.DER)

    # When the chain is diagnosed with it
    diagnosis = _diagnose(pki, _sent(*issued.chain), fetched={AIA_URL: bundle})

    # Then the intermediate inside is used
    assert _only(diagnosis, MISSING).evidence["confirmed"] is True


@pytest.mark.parametrize(
    ("body", "note"), [(None, "could not be fetched"), (b"<html>", "no usable")]
)
def test_failed_fetch_is_reported_and_not_asked_again(
    pki: LabPKI, body: bytes | None, note: str
) -> None:
    # Given a leaf-only chain whose AIA URL failed or served garbage
    issued = _issue(pki, "leaf_only", tag=f"aiafail{body is None}", aia_url=AIA_URL)

    # When the chain is diagnosed with that outcome
    diagnosis = _diagnose(pki, _sent(*issued.chain), fetched={AIA_URL: body})

    # Then the intermediate is still missing, unconfirmed, the outcome is said, and the same
    # URL is not asked for again
    finding = _only(diagnosis, MISSING)
    assert finding.evidence["confirmed"] is False and note in finding.detail
    assert diagnosis.fetch_url is None


def test_fetched_untrusted_intermediate_does_not_fix_the_chain(pki: LabPKI) -> None:
    # Given an untrusted-root leaf sent alone, and its (untrusted) intermediate fetched by AIA
    issued = _issue(pki, "untrusted_root", tag="aiauntrusted", aia_url=AIA_URL)
    fetched: dict[str, bytes | None] = {AIA_URL: _der(pki.untrusted_intermediate_cert)}

    # When the chain is diagnosed with it
    diagnosis = _diagnose(pki, _sent(issued.leaf), fetched=fetched)

    # Then the intermediate is missing and the root is untrusted: two faults, no false "fix"
    assert diagnosis.codes == {MISSING, UNTRUSTED_ROOT}
    assert _only(diagnosis, MISSING).evidence["confirmed"] is False
    assert diagnosis.valid_with_fetched is False


def test_probe_loop_ends_after_the_fetch_limit(pki: LabPKI) -> None:
    # Given a leaf-only chain and a probe whose every fetch fails
    issued = _issue(pki, "leaf_only", tag="aialoop", aia_url=AIA_URL)
    chain = _sent(*issued.chain)
    fetched: dict[str, bytes | None] = {}

    # When the probe loops as the module docstring says
    diagnosis = _diagnose(pki, chain)
    rounds = 0
    while diagnosis.fetch_url is not None:
        rounds += 1
        fetched[diagnosis.fetch_url] = None
        diagnosis = _diagnose(pki, chain, fetched=fetched)

    # Then it stops, within the fetch limit
    assert 1 <= rounds <= MAX_AIA_FETCHES


# -- order, duplicates, extras -------------------------------------------------------------------


def test_root_sent_before_its_intermediate_is_wrong_order(pki: LabPKI) -> None:
    # Given leaf, root, intermediate: a chain a real server can send
    issued = _issue(pki, "good", tag="leafrootinter")
    chain = _sent(issued.leaf, pki.root_cert, pki.intermediate_cert)

    # When it is diagnosed
    diagnosis = _diagnose(pki, chain)

    # Then the order is a warning (tolerant clients reorder), and the chain is valid
    assert diagnosis.codes == {WRONG_ORDER}
    assert _only(diagnosis, WRONG_ORDER).status == Status.WARN
    assert diagnosis.valid


def test_two_intermediates_reversed_is_wrong_order() -> None:
    # Given a four-level hierarchy, sent as leaf, upper intermediate, lower intermediate
    root_key, upper_key, lower_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _make_cert(
        subject=_cn("Test Root"), key=root_key, issuer=None, issuer_key=root_key, ca=True, sans=()
    )
    upper = _make_cert(
        subject=_cn("Test Upper CA"),
        key=upper_key,
        issuer=root,
        issuer_key=root_key,
        ca=True,
        sans=(),
        eku=None,
    )
    lower = _make_cert(
        subject=_cn("Test Lower CA"),
        key=lower_key,
        issuer=upper,
        issuer_key=upper_key,
        ca=True,
        sans=(),
        eku=None,
    )
    leaf = _make_cert(
        subject=_cn(HOST),
        key=ec.generate_private_key(ec.SECP256R1()),
        issuer=lower,
        issuer_key=lower_key,
    )

    # When it is diagnosed by a client trusting the root
    diagnosis = diagnose(_sent(leaf, upper, lower), HOST, roots=[root], now=NOW)

    # Then the order is reported, and nothing else
    assert diagnosis.codes == {WRONG_ORDER}
    assert diagnosis.valid


def test_too_many_certificates_are_reported_not_parsed(pki: LabPKI) -> None:
    # Given a good chain followed by a hundred copies of the intermediate
    issued = _issue(pki, "good", tag="flood")
    chain = _sent(*issued.chain) + [_der(pki.intermediate_cert)] * 100

    # When it is diagnosed
    diagnosis = _diagnose(pki, chain)

    # Then the flood is reported as extra and duplicate certificates, and the chain stays valid
    assert diagnosis.codes == {EXTRA, DUPLICATE}
    assert diagnosis.valid


# -- keys, signatures, usage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status"),
    [
        (functools.partial(rsa.generate_private_key, 65537, 1536), Status.WARN),
        (functools.partial(ec.generate_private_key, ec.SECP224R1()), Status.WARN),
        (functools.partial(ec.generate_private_key, ec.SECP192R1()), Status.FAIL),
        (functools.partial(ec.generate_private_key, ec.SECP384R1()), None),
    ],
    ids=["rsa1536", "p224", "p192", "p384"],
)
def test_key_size_grades(
    pki: LabPKI, key: typing.Callable[[], typing.Any], status: Status | None
) -> None:
    # Given a leaf with a key of the given size
    leaf = _leaf_under_lab(pki, key=key())

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert))

    # Then sizes under the minimum warn, breakable ones fail, and good ones pass
    assert [f.status for f in diagnosis.findings if f.code == WEAK_KEY] == (
        [] if status is None else [status]
    )


def test_intermediate_without_server_auth_restricts_the_chain(pki: LabPKI) -> None:
    # Given an intermediate whose EKU allows only clientAuth, issuing a proper server leaf
    root_key, ca_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = _make_cert(subject=_cn("R"), key=root_key, issuer=None, issuer_key=root_key, ca=True)
    ca = _make_cert(
        subject=_cn("Client CA"),
        key=ca_key,
        issuer=root,
        issuer_key=root_key,
        ca=True,
        sans=(),
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    leaf = _make_cert(
        subject=_cn(HOST), key=ec.generate_private_key(ec.SECP256R1()), issuer=ca, issuer_key=ca_key
    )

    # When it is diagnosed
    diagnosis = diagnose(_sent(leaf, ca), HOST, roots=[root], now=NOW)

    # Then the intermediate is named as not allowed for servers
    assert diagnosis.codes == {NO_SERVER_AUTH}
    assert "Client CA" in _only(diagnosis, NO_SERVER_AUTH).detail


def test_key_usage_without_signing_is_refused_though_verifier_passes(pki: LabPKI) -> None:
    # Given a leaf whose keyUsage allows only dataEncipherment (OpenSSL refuses it for a
    # server; cryptography's verifier does not look)
    usage = x509.KeyUsage(False, False, False, True, False, False, False, False, False)
    leaf = _leaf_under_lab(pki, usage=usage)

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert))

    # Then it is reported as not allowed for servers
    assert diagnosis.codes == {NO_SERVER_AUTH}
    assert diagnosis.valid


# -- rejections no specific check explains ----------------------------------------------------


def test_unexplained_rejection_carries_the_verifier_message(pki: LabPKI) -> None:
    # Given a "server certificate" that is a CA certificate (the verifier refuses it as a leaf)
    leaf = _leaf_under_lab(pki, ca=True)

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert))

    # Then the rejection is reported with the verifier's reason
    finding = _only(diagnosis, REJECTED)
    assert diagnosis.codes == {REJECTED}
    assert finding.evidence["verifier_error"]


def test_fault_hidden_behind_an_explained_one_is_still_reported(pki: LabPKI) -> None:
    # Given an expired leaf that also asserts keyCertSign (which the verifier refuses too)
    usage = x509.KeyUsage(True, False, True, False, False, True, False, False, False)
    leaf = _leaf_under_lab(
        pki, usage=usage, not_before=NOW - timedelta(days=90), not_after=NOW - timedelta(days=1)
    )

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert))

    # Then both the expiry and the other rejection are reported
    assert diagnosis.codes == {EXPIRED, REJECTED}
    assert "keyCertSign" in _only(diagnosis, REJECTED).detail


# -- empty and hostile input ---------------------------------------------------------------------


def test_empty_chain(pki: LabPKI) -> None:
    # Given a server that sent no certificate
    # When the empty chain is diagnosed
    diagnosis = _diagnose(pki, [])

    # Then that is the one finding
    assert diagnosis.codes == {EMPTY} and not diagnosis.valid


def test_garbage_leaf_is_unparseable(pki: LabPKI) -> None:
    # Given a "certificate" that is no DER at all
    # When it is diagnosed
    diagnosis = _diagnose(pki, [b"\x30\x82\x01\x00garbage"])

    # Then it is reported as unparseable, with its position and size
    finding = _only(diagnosis, UNPARSEABLE)
    assert diagnosis.codes == {UNPARSEABLE}
    assert (finding.evidence["position"], finding.evidence["size"]) == (1, 11)


def test_garbage_after_a_good_chain_is_unparseable_and_the_rest_judged(pki: LabPKI) -> None:
    # Given a good chain with a corrupted third certificate
    issued = _issue(pki, "good", tag="garbage3")
    chain = [*_sent(*issued.chain), _der(pki.root_cert)[:-40]]

    # When it is diagnosed
    diagnosis = _diagnose(pki, chain)

    # Then the corrupted one is reported and the rest still diagnosed
    assert diagnosis.codes == {UNPARSEABLE}
    assert _only(diagnosis, UNPARSEABLE).evidence["position"] == 3
    assert diagnosis.valid


def test_five_hundred_sans_are_matched_but_listed_bounded(pki: LabPKI) -> None:
    # Given a certificate with 500 SANs, the host being the last
    names = [f"h{i}.example.test" for i in range(499)] + [HOST]
    leaf = _leaf_under_lab(pki, sans=[x509.DNSName(n) for n in names])

    # When it is diagnosed
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert))

    # Then the host matches, and the evidence lists a bounded number of names with the count
    assert diagnosis.valid and not diagnosis.codes
    assert len(diagnosis.presented[0].dns_names) == MAX_NAMES
    assert diagnosis.presented[0].san_count == 500


def test_huge_subject_is_cut(pki: LabPKI) -> None:
    # Given a certificate whose subject is about 64 KB
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "u" * 1000) for _ in range(64)]
        + [x509.NameAttribute(NameOID.COMMON_NAME, HOST)]
    )
    leaf = _leaf_under_lab(pki, subject=subject)

    # When it is diagnosed for another name, so that the subject appears in a finding
    diagnosis = _diagnose(pki, _sent(leaf, pki.intermediate_cert), "other.example.test")

    # Then every string stays bounded
    assert diagnosis.codes == {NAME_MISMATCH}
    assert len(diagnosis.presented[0].subject) == MAX_TEXT
    _assert_bounded(diagnosis)


def test_markup_and_control_characters_are_kept_inert(pki: LabPKI) -> None:
    # Given a certificate whose organisation holds markup and terminal escape sequences
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "<script>alert(1)</script>\x1b[31m"),
            x509.NameAttribute(NameOID.COMMON_NAME, HOST),
        ]
    )
    leaf = _leaf_under_lab(pki, subject=subject)

    # When it is diagnosed
    info = _diagnose(pki, _sent(leaf, pki.intermediate_cert)).presented[0]

    # Then markup stays text (RFC 4514 escapes "<" and ">"; renderers escape HTML), and
    # control characters are escaped
    assert "O=\\<script\\>alert(1)\\</script\\>" in info.subject
    assert "\x1b" not in info.subject and "\\u001b" in info.subject


def test_invalid_utf8_in_a_name_is_unparseable(pki: LabPKI) -> None:
    # Given a leaf whose CN bytes are not UTF-8 (patched into the DER after signing)
    leaf = _leaf_under_lab(pki, subject=_cn("QQQQ.example.test"))
    broken = _der(leaf).replace(b"QQQQ", b"\xff\xfe<s")

    # When it is diagnosed
    diagnosis = _diagnose(pki, [broken, _der(pki.intermediate_cert)])

    # Then it is reported as unparseable, without an exception
    assert diagnosis.codes == {UNPARSEABLE}
    assert "malformed" in _only(diagnosis, UNPARSEABLE).detail


def test_naive_clock_is_a_caller_error(pki: LabPKI) -> None:
    # Given a good chain
    issued = _issue(pki, "good", tag="naive")

    # When it is diagnosed with a clock that has no time zone
    # Then the caller is told
    with pytest.raises(ValueError, match="timezone-aware"):
        diagnose(_sent(*issued.chain), HOST, roots=[pki.root_cert], now=NOW.replace(tzinfo=None))


@functools.cache
def _sample() -> tuple[tuple[bytes, ...], x509.Certificate]:
    """A small valid chain (leaf, intermediate) and its root, made once for property tests."""
    root_key, ca_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = _make_cert(
        subject=_cn("P Root"), key=root_key, issuer=None, issuer_key=root_key, ca=True
    )
    ca = _make_cert(
        subject=_cn("P CA"), key=ca_key, issuer=root, issuer_key=root_key, ca=True, eku=None
    )
    leaf = _make_cert(
        subject=_cn(HOST),
        key=ec.generate_private_key(ec.SECP256R1()),
        issuer=ca,
        issuer_key=ca_key,
    )
    return (_der(leaf), _der(ca)), root


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.binary(max_size=300), max_size=5))
def test_random_bytes_never_raise(chain: list[bytes]) -> None:
    # Given any list of byte strings as the presented chain
    _, root = _sample()

    # When it is diagnosed
    diagnosis = diagnose(chain, HOST, roots=[root], now=NOW)

    # Then there is a verdict and no exception; garbage is never valid
    assert not diagnosis.valid
    assert diagnosis.findings


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    which=st.integers(min_value=0, max_value=1),
    cut=st.integers(min_value=0, max_value=2000),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=3),
)
def test_truncated_or_corrupted_der_never_raises(
    which: int, cut: int, flips: list[tuple[int, int]]
) -> None:
    # Given the sample chain with one certificate truncated and some bytes flipped
    (leaf, ca), root = _sample()
    target = bytearray((leaf, ca)[which])
    for offset, mask in flips:
        if offset < len(target):
            target[offset] ^= mask
    damaged = bytes(target[: cut or len(target)])
    chain = [damaged, ca] if which == 0 else [leaf, damaged]

    # When it is diagnosed
    diagnosis = diagnose(chain, HOST, roots=[root], now=NOW)

    # Then there is a verdict with bounded evidence and no exception
    assert diagnosis.findings
    _assert_bounded(diagnosis)


# -- the trust store -----------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_trust_store_tolerates_junk(pki: LabPKI, tmp_path: Path) -> None:
    # Given a bundle with comments, a broken block, a duplicate and an OpenSSL TRUSTED block
    trusted = _pem(pki.untrusted_root_cert).replace(b"CERTIFICATE", b"TRUSTED CERTIFICATE")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        b"# my roots\n"
        + _pem(pki.root_cert)
        + b"-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n"
        + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        + _pem(pki.root_cert)
        + trusted
        + b"trailing text"
    )

    # When it is loaded
    roots = load_trust_store([bundle])

    # Then the two distinct good certificates are kept, in file order
    assert roots == (pki.root_cert, pki.untrusted_root_cert)


def test_trust_store_reads_a_der_file(pki: LabPKI) -> None:
    # Given the lab's intermediate written as DER
    # When it is loaded
    roots = load_trust_store([pki.intermediate_der_file])

    # Then it is read
    assert roots == (pki.intermediate_cert,)


def test_trust_store_refuses_a_missing_file(tmp_path: Path) -> None:
    # Given a path with no file
    # When it is loaded
    # Then the error is raised, so the trust never shrinks silently
    with pytest.raises(OSError):
        load_trust_store([tmp_path / "gone.pem"])


async def test_a_batch_parses_its_trust_store_once_until_the_file_changes(
    pki: LabPKI, tmp_path: Path
) -> None:
    from analyzer.core.context import RunContext, RunOptions
    from analyzer.core.shared import SharedResults

    # Given a --ca-file and the runs of one batch
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(_pem(pki.root_cert))
    batch = SharedResults()

    async def roots() -> tuple[x509.Certificate, ...]:
        async with RunContext(RunOptions(ca_file=bundle), shared_results=batch) as run:
            return await run_roots(run)

    # When two runs load it, then the second gets the first one's parse
    first = await roots()
    assert await roots() is first
    assert pki.root_cert in first
    # When the file is replaced, then the next run reads the new contents
    replacement = tmp_path / "new.pem"
    replacement.write_bytes(_pem(pki.root_cert) + _pem(pki.untrusted_root_cert))
    replacement.replace(bundle)
    assert pki.untrusted_root_cert in await roots()
    # And when it is gone, the error is raised as without a batch
    bundle.unlink()
    with pytest.raises(OSError):
        await roots()


class _Counted:
    """Counts the trust-store indexes and the verifier stores made while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.indexes = 0
        self.stores = 0
        real_init, real_store = tlschain.TrustStore.__init__, tlschain.Store

        def init(store: tlschain.TrustStore, certs: typing.Any) -> None:
            self.indexes += 1
            real_init(store, certs)

        def store(certs: list[x509.Certificate]) -> typing.Any:
            self.stores += 1
            return real_store(certs)

        monkeypatch.setattr(tlschain.TrustStore, "__init__", init)
        monkeypatch.setattr(tlschain, "Store", store)


async def test_a_run_indexes_its_trust_store_once_for_every_chain(
    pki: LabPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.core.context import RunContext, RunOptions

    # Given a run trusting the lab root, and two valid chains
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(_pem(pki.root_cert))
    chains = [_sent(*_issue(pki, "good", tag=f"index{i}").chain) for i in range(2)]
    counted = _Counted(monkeypatch)
    async with RunContext(RunOptions(ca_file=bundle)) as run:
        # When the run's roots are asked for twice and both chains are diagnosed with them
        roots = await run_roots(run)
        assert await run_roots(run) is roots
        diagnoses = [diagnose(chain, HOST, roots=roots, now=NOW) for chain in chains]
    # Then both chains are valid
    assert all(d.valid for d in diagnoses)
    # And the store was indexed once, and one verifier store served both chains
    assert (counted.indexes, counted.stores) == (1, 1)


async def test_a_batch_indexes_its_trust_store_once_for_all_its_runs(
    pki: LabPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.core.context import RunContext, RunOptions
    from analyzer.core.shared import SharedResults

    # Given two runs of one batch, each diagnosing a valid chain with its roots
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(_pem(pki.root_cert))
    chain = _sent(*_issue(pki, "good", tag="batchindex").chain)
    batch = SharedResults()
    counted = _Counted(monkeypatch)
    for _ in range(2):
        async with RunContext(RunOptions(ca_file=bundle), shared_results=batch) as run:
            assert diagnose(chain, HOST, roots=await run_roots(run), now=NOW).valid
    # Then the store was indexed, and its verifier store made, once for the whole batch
    assert (counted.indexes, counted.stores) == (1, 1)


def test_plain_roots_are_indexed_for_each_diagnosis(
    pki: LabPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given roots as a plain list of certificates, as a library caller passes them
    chain = _sent(*_issue(pki, "good", tag="plainroots").chain)
    counted = _Counted(monkeypatch)
    # When two diagnoses use them
    first = _diagnose(pki, chain)
    second = _diagnose(pki, chain)
    # Then each indexed them for itself, with the same verdict as with a TrustStore
    assert (counted.indexes, counted.stores) == (2, 2)
    assert first == second == _diagnose(pki, chain, roots=TrustStore([pki.root_cert]))
    assert first.valid


def test_a_trust_store_is_a_sequence_of_its_certificates(pki: LabPKI) -> None:
    # Given a trust store of two roots, one of them twice
    roots = [pki.root_cert, pki.untrusted_root_cert, pki.root_cert]
    # When it is made
    store = TrustStore(roots)
    # Then it reads as the certificates, in order, and indexes them by subject
    assert list(store) == roots and len(store) == 3 and store[1] == pki.untrusted_root_cert
    assert store.by_subject[pki.root_cert.subject] == (pki.root_cert, pki.root_cert)
    assert "3 certificates" in repr(store)


def test_certifi_store_loads_without_warnings() -> None:
    # Given certifi's bundle, which holds a root with a negative serial number
    import certifi

    # When it is loaded (pytest turns warnings into errors)
    roots = load_trust_store([certifi.where()])

    # Then it yields a full store
    assert len(roots) > 100


async def test_a_run_s_diagnoses_with_other_roots_are_not_shared(tmp_path: Path) -> None:
    from analyzer.core.context import RunContext, RunOptions

    # Given a run, and a chain valid under the lab root (issued as of the run's clock)
    async with RunContext(RunOptions()) as run:
        pki = LabPKI.create(tmp_path, now=run.now())
        chain = _sent(*_issue(pki, "good", tag="other-roots").chain)
        # When it is diagnosed first with roots that trust nothing, then with the lab root
        # (each a list made for the call)
        first = tlschain.run_diagnose(run, chain, HOST, roots=[])
        second = tlschain.run_diagnose(run, chain, HOST, roots=[pki.root_cert])
    # Then each diagnosis is the one of its own roots
    assert not first.valid
    assert second.valid
