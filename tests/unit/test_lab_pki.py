"""The lab PKI (analyzer.lab.pki): each kind of certificate verifies, or fails for its reason.

A failing verification alone proves little (most faults end in "candidates exhausted"), so each
failing kind also has a *control*: the same verification with that one fault undone, which must
then succeed.
"""

from __future__ import annotations

import ipaddress
import ssl
import stat
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from analyzer.lab.pki import CERT_KINDS, CertKind, CertSpec, IssuedCert, LabPKI

# A fixed clock: nothing below depends on when the tests run.
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOST = "mail.example.test"
AIA_URL = "http://pki.example.test/intermediate.der"
OCSP_URL = "http://ocsp.example.test/"
EXPIRING_DAYS = 7


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return LabPKI.create(tmp_path_factory.mktemp("pki"), now=NOW)


def _issue(pki: LabPKI, kind: CertKind, *, tag: str, **fields: typing.Any) -> IssuedCert:
    """Issue HOST under a name unique to the calling test (the fixture PKI is shared)."""
    fields.setdefault("dns_names", (HOST,))
    if kind == "expiring":
        fields.setdefault("days_left", EXPIRING_DAYS)
    return pki.issue(CertSpec(name=f"{tag}-{kind}", kind=kind, **fields))


def _verify(
    pki: LabPKI,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    *,
    name: str = HOST,
    roots: Sequence[x509.Certificate] | None = None,
    at: datetime = NOW,
) -> None:
    """Verify as a web-PKI TLS client would; raises VerificationError."""
    store = Store(list(roots) if roots is not None else [pki.root_cert])
    verifier = PolicyBuilder().store(store).time(at).build_server_verifier(DNSName(name))
    verifier.verify(leaf, list(intermediates))


def _verify_as_sent(pki: LabPKI, issued: IssuedCert) -> None:
    """Verify the chain the way a client receives it: first certificate is the leaf."""
    _verify(pki, issued.chain[0], issued.chain[1:])


# -- every kind, through the verifier ---------------------------------------------------------


@dataclass(frozen=True)
class VerifyCase:
    kind: CertKind
    error: str | None  # regex the VerificationError must match; None: the chain must verify
    control: Callable[[LabPKI, IssuedCert], None] | None = None  # the fault undone: must pass


VERIFY_CASES = (
    VerifyCase("good", None),
    VerifyCase(
        "expired",
        "not valid at validation time",
        lambda p, c: _verify(p, c.leaf, c.chain[1:], at=c.leaf.not_valid_after_utc),
    ),
    VerifyCase(
        "not_yet_valid",
        "not valid at validation time",
        lambda p, c: _verify(p, c.leaf, c.chain[1:], at=c.leaf.not_valid_before_utc),
    ),
    VerifyCase("expiring", None),
    VerifyCase(
        "wrong_name",
        "no matching subjectAltName",
        lambda p, c: _verify(p, c.leaf, c.chain[1:], name="wrong-name.invalid"),
    ),
    VerifyCase(
        "self_signed",
        "candidates exhausted",
        lambda p, c: _verify(p, c.leaf, [], roots=[c.leaf]),
    ),
    VerifyCase(
        "untrusted_root",
        "candidates exhausted",
        lambda p, c: _verify(p, c.leaf, c.chain[1:], roots=[p.untrusted_root_cert]),
    ),
    VerifyCase(
        "leaf_only",
        "candidates exhausted",
        # What a client that follows the AIA caIssuers URL ends up with.
        lambda p, c: _verify(p, c.leaf, [p.intermediate_cert]),
    ),
    VerifyCase(
        "wrong_order",
        # The client takes the intermediate for the leaf.
        "leaf server certificate has no subjectAltName",
        lambda p, c: _verify(p, c.chain[1], [c.chain[0]]),
    ),
    # The web-PKI verifier does not police RSA sizes: the weakness is checked below by size.
    VerifyCase("rsa1024", None),
    VerifyCase("sha1", "Forbidden signature algorithm"),
    VerifyCase("wildcard", None),
    VerifyCase("no_server_auth", "required EKU not found"),
    VerifyCase("extra_certs", None),
    VerifyCase("with_root", None),
    # A verifier builds the path from the pool, whatever the order the server sent.
    VerifyCase("misordered", None),
)


def test_verify_cases_cover_every_kind() -> None:
    # Given the table of verification cases
    # When its kinds are compared with the module's
    # Then none is missing and none is repeated
    assert [case.kind for case in VERIFY_CASES] == list(CERT_KINDS)


@pytest.mark.parametrize("case", VERIFY_CASES, ids=lambda case: case.kind)
def test_kind_verifies_or_fails_for_its_reason(pki: LabPKI, case: VerifyCase) -> None:
    # Given a certificate of the kind, for HOST, with the chain its server would send
    issued = _issue(pki, case.kind, tag="verify", aia_url=AIA_URL)

    # When a web-PKI client that trusts only the lab root verifies it at NOW
    # Then it passes, or fails with the kind's error
    if case.error is None:
        _verify_as_sent(pki, issued)
    else:
        with pytest.raises(VerificationError, match=case.error):
            _verify_as_sent(pki, issued)

    # And with only that fault undone, it passes
    if case.control is not None:
        case.control(pki, issued)


# -- chain files ------------------------------------------------------------------------------


def _expected_chain(pki: LabPKI, issued: IssuedCert) -> tuple[x509.Certificate, ...]:
    leaf, inter = issued.leaf, pki.intermediate_cert
    match issued.kind:
        case "self_signed" | "leaf_only":
            return (leaf,)
        case "wrong_order":
            return (inter, leaf)
        case "untrusted_root":
            return (leaf, pki.untrusted_intermediate_cert)
        case "extra_certs":
            return (leaf, inter, issued.chain[2], inter)
        case "with_root":
            return (leaf, inter, pki.root_cert)
        case "misordered":
            return (leaf, pki.root_cert, inter)
        case _:
            return (leaf, inter)


@pytest.mark.parametrize("kind", CERT_KINDS)
def test_chain_file_holds_the_chain_in_server_order(pki: LabPKI, kind: CertKind) -> None:
    # Given a certificate of the kind
    issued = _issue(pki, kind, tag="chain")

    # When its chain file is parsed as nginx, Dovecot and Postfix read it (concatenated PEM)
    from_file = x509.load_pem_x509_certificates(issued.cert_file.read_bytes())

    # Then it holds exactly `chain`, which is the kind's layout
    assert tuple(from_file) == issued.chain == _expected_chain(pki, issued)


def test_extra_certs_adds_an_unrelated_certificate(pki: LabPKI) -> None:
    # Given an extra_certs chain
    issued = _issue(pki, "extra_certs", tag="unrelated")

    # When its third certificate is examined
    extra = issued.chain[2]

    # Then it belongs to neither lab hierarchy
    lab_cas = {
        pki.root_cert.subject,
        pki.intermediate_cert.subject,
        pki.untrusted_root_cert.subject,
        pki.untrusted_intermediate_cert.subject,
    }
    assert extra.subject not in lab_cas
    assert extra.issuer not in lab_cas


# A server built on OpenSSL loads the chain file as nginx does (SSL_CTX_use_certificate_chain_file
# and the key); `reason` is OpenSSL's refusal, None if it loads.
SERVER_LOAD_CASES: tuple[tuple[CertKind, int, str | None], ...] = (
    *((kind, 2, None) for kind in CERT_KINDS if kind not in ("wrong_order", "rsa1024", "sha1")),
    # The first certificate must match the key: no OpenSSL server can send intermediate first.
    ("wrong_order", 0, "NO_CERTIFICATE_ASSIGNED"),
    ("rsa1024", 2, "EE_KEY_TOO_SMALL"),
    ("rsa1024", 1, None),
    ("sha1", 1, "CA_MD_TOO_WEAK"),
    ("sha1", 0, None),
)


@pytest.mark.parametrize(
    ("kind", "seclevel", "reason"),
    SERVER_LOAD_CASES,
    ids=[f"{kind}-seclevel{level}" for kind, level, _ in SERVER_LOAD_CASES],
)
def test_openssl_server_loads_chain_file(
    pki: LabPKI, kind: CertKind, seclevel: int, reason: str | None
) -> None:
    # Given a certificate of the kind and an OpenSSL server context at a security level
    issued = _issue(pki, kind, tag=f"load{seclevel}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(f"DEFAULT:@SECLEVEL={seclevel}")

    # When the chain file and key are loaded
    # Then they load, or OpenSSL refuses them for the expected reason
    if reason is None:
        context.load_cert_chain(issued.cert_file, issued.key_file)
    else:
        with pytest.raises(ssl.SSLError) as refused:
            context.load_cert_chain(issued.cert_file, issued.key_file)
        assert refused.value.reason == reason


# -- what each kind changes in the leaf ---------------------------------------------------------


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _check_sha1(pki: LabPKI, leaf: x509.Certificate) -> None:
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA1)
    assert leaf.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA1
    issuer_key = pki.intermediate_cert.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    # Raises InvalidSignature unless the intermediate really signed these bytes with SHA-1.
    sha1 = ec.ECDSA(hashes.SHA1())  # noqa: S303 - checking a SHA-1 signature is the point
    issuer_key.verify(leaf.signature, leaf.tbs_certificate_bytes, sha1)


def _rsa_bits(leaf: x509.Certificate) -> int:
    key = leaf.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key.key_size


LEAF_CASES: tuple[tuple[str, CertKind, Callable[[LabPKI, x509.Certificate], None]], ...] = (
    (
        "validity-good",
        "good",
        lambda p, leaf: _check_validity(leaf, NOW - timedelta(hours=1), NOW + timedelta(365)),
    ),
    (
        "validity-expired",
        "expired",
        lambda p, leaf: _check_validity(leaf, NOW - timedelta(366), NOW - timedelta(1)),
    ),
    (
        "validity-not_yet_valid",
        "not_yet_valid",
        lambda p, leaf: _check_validity(leaf, NOW + timedelta(1), NOW + timedelta(366)),
    ),
    (
        "validity-expiring",
        "expiring",
        lambda p, leaf: _check_validity(
            leaf, NOW - timedelta(hours=1), NOW + timedelta(EXPIRING_DAYS)
        ),
    ),
    ("rsa2048-good", "good", lambda p, leaf: _check_equal(_rsa_bits(leaf), 2048)),
    ("rsa1024", "rsa1024", lambda p, leaf: _check_equal(_rsa_bits(leaf), 1024)),
    ("sha1", "sha1", _check_sha1),
    (
        "sha256-good",
        "good",
        lambda p, leaf: _check_equal(type(leaf.signature_hash_algorithm), hashes.SHA256),
    ),
    (
        "wildcard",
        "wildcard",
        lambda p, leaf: _check_equal(
            _sans(leaf).get_values_for_type(x509.DNSName), ["*.example.test"]
        ),
    ),
    (
        "wrong_name",
        "wrong_name",
        lambda p, leaf: _check_equal(
            all(n.endswith(".invalid") for n in _sans(leaf).get_values_for_type(x509.DNSName))
            and not _sans(leaf).get_values_for_type(x509.IPAddress),
            True,
        ),
    ),
    (
        "no_server_auth",
        "no_server_auth",
        lambda p, leaf: _check_equal(
            list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
        ),
    ),
    ("self_signed", "self_signed", lambda p, leaf: leaf.verify_directly_issued_by(leaf)),
    (
        "untrusted_root",
        "untrusted_root",
        lambda p, leaf: leaf.verify_directly_issued_by(p.untrusted_intermediate_cert),
    ),
)


def _check_validity(leaf: x509.Certificate, not_before: datetime, not_after: datetime) -> None:
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (not_before, not_after)


def _check_equal(actual: object, expected: object) -> None:
    assert actual == expected


@pytest.mark.parametrize(("case_id", "kind", "check"), LEAF_CASES, ids=[c[0] for c in LEAF_CASES])
def test_kind_shapes_the_leaf(
    pki: LabPKI, case_id: str, kind: CertKind, check: Callable[[LabPKI, x509.Certificate], None]
) -> None:
    # Given a certificate of the kind (with an IP SAN, which wrong_name must drop too)
    issued = _issue(pki, kind, tag=f"leaf-{case_id}", ip_addresses=("192.0.2.25",))

    # When its leaf is examined
    # Then it has the property that makes it that kind
    check(pki, issued.leaf)


# -- extensions, files, fingerprints ------------------------------------------------------------


def test_good_leaf_carries_rfc5280_extensions(pki: LabPKI) -> None:
    # Given a good certificate with two names, an address, and AIA and OCSP URLs
    issued = _issue(
        pki,
        "good",
        tag="extensions",
        dns_names=(HOST, "imap.example.test"),
        ip_addresses=("192.0.2.25", "2001:db8::25"),
        aia_url=AIA_URL,
        ocsp_url=OCSP_URL,
    )
    leaf, ext = issued.leaf, issued.leaf.extensions

    # When its extensions are read
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    usage = ext.get_extension_for_class(x509.KeyUsage)
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuer_ski = pki.intermediate_cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    aia = ext.get_extension_for_class(x509.AuthorityInformationAccess)

    # Then they are those of a server certificate, linked to the intermediate by key id
    assert basic.critical and not basic.value.ca
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    assert aki.key_identifier == issuer_ski.digest
    assert _sans(leaf).get_values_for_type(x509.DNSName) == [HOST, "imap.example.test"]
    assert _sans(leaf).get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.25"),
        ipaddress.ip_address("2001:db8::25"),
    ]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == HOST
    assert not aia.critical
    assert {(d.access_method, d.access_location.value) for d in aia.value} == {
        (AuthorityInformationAccessOID.CA_ISSUERS, AIA_URL),
        (AuthorityInformationAccessOID.OCSP, OCSP_URL),
    }


CA_CASES = (
    ("root", 1, "root"),
    ("intermediate", 0, "root"),
    ("untrusted_root", 1, "untrusted_root"),
    ("untrusted_intermediate", 0, "untrusted_root"),
)


@pytest.mark.parametrize(("which", "path_length", "issuer"), CA_CASES, ids=[c[0] for c in CA_CASES])
def test_ca_certificate_has_ca_extensions_and_validity(
    pki: LabPKI, which: str, path_length: int, issuer: str
) -> None:
    # Given one of the four lab CAs and the CA that signed it
    cert: x509.Certificate = getattr(pki, f"{which}_cert")
    issuer_cert: x509.Certificate = getattr(pki, f"{issuer}_cert")

    # When its extensions and dates are read
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)

    # Then it is a CA with the path length for its place, signed by its issuer, ten years long
    assert basic.critical and basic.value.ca and basic.value.path_length == path_length
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    cert.verify_directly_issued_by(issuer_cert)
    assert cert.not_valid_before_utc == NOW - timedelta(days=1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=3650)


def test_ca_files_hold_the_right_certificates(pki: LabPKI) -> None:
    # Given the PKI's CA files
    # When they are read
    trusted = x509.load_pem_x509_certificates(pki.ca_file.read_bytes())
    untrusted = x509.load_pem_x509_certificates(pki.untrusted_ca_file.read_bytes())
    aia_der = x509.load_der_x509_certificate(pki.intermediate_der_file.read_bytes())

    # Then ca_file has the trusted root only, and the AIA file is the intermediate in DER
    assert trusted == [pki.root_cert]
    assert untrusted == [pki.untrusted_root_cert]
    assert aia_der == pki.intermediate_cert


@pytest.mark.parametrize("kind", ["good", "rsa1024", "sha1", "self_signed"])
def test_key_file_is_private_and_matches_the_leaf(pki: LabPKI, kind: CertKind) -> None:
    # Given an issued certificate
    issued = _issue(pki, kind, tag="key")

    # When its key file is inspected and loaded without a password
    mode = stat.S_IMODE(issued.key_file.stat().st_mode)
    key = serialization.load_pem_private_key(issued.key_file.read_bytes(), password=None)

    # Then only the owner may read it, and it is the leaf's key
    assert mode == 0o600
    assert key.public_key() == issued.leaf.public_key()


def test_fingerprint_is_sha256_of_the_leaf(pki: LabPKI) -> None:
    # Given an issued certificate
    issued = _issue(pki, "good", tag="fingerprint")

    # When its fingerprint is computed independently
    expected = hashes.Hash(hashes.SHA256())
    expected.update(issued.leaf.public_bytes(serialization.Encoding.DER))

    # Then it matches, as lower-case hex
    assert issued.fingerprint_sha256 == expected.finalize().hex()


def test_address_only_certificate_verifies_for_the_address(pki: LabPKI) -> None:
    # Given a certificate with no DNS name, only an address
    issued = _issue(pki, "good", tag="address", dns_names=(), ip_addresses=("192.0.2.80",))
    verifier = (
        PolicyBuilder()
        .store(Store([pki.root_cert]))
        .time(NOW)
        .build_server_verifier(IPAddress(ipaddress.ip_address("192.0.2.80")))
    )

    # When a client connecting to that address verifies it
    chain = verifier.verify(issued.leaf, list(issued.chain[1:]))

    # Then it verifies up to the lab root
    assert chain[-1] == pki.root_cert


def test_name_too_long_for_cn_leaves_subject_empty_and_san_critical(pki: LabPKI) -> None:
    # Given a DNS name longer than the 64 characters a CN may hold (RFC 5280 A.1)
    long_name = f"{'a' * 60}.{'b' * 10}.example.test"

    # When a certificate is issued for it
    issued = _issue(pki, "good", tag="longname", dns_names=(long_name,))

    # Then the subject is empty, SAN is critical (RFC 5280 4.2.1.6), and it still verifies
    assert len(issued.leaf.subject) == 0
    assert issued.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    _verify(pki, issued.leaf, issued.chain[1:], name=long_name)


# -- creation and argument checks ---------------------------------------------------------------


def test_create_again_reuses_the_cas(tmp_path: Path) -> None:
    # Given a directory a PKI was created in
    first = LabPKI.create(tmp_path, now=NOW)

    # When it is created again in the same directory a day later
    second = LabPKI.create(tmp_path, now=NOW + timedelta(days=1))

    # Then the CAs are the same, so a ca_file already handed out stays good
    assert second.root_cert == first.root_cert
    assert second.intermediate_cert == first.intermediate_cert
    assert second.untrusted_root_cert == first.untrusted_root_cert


def test_create_replaces_cas_that_no_longer_cover_now(tmp_path: Path) -> None:
    # Given a directory a PKI was created in
    first = LabPKI.create(tmp_path, now=NOW)

    # When it is created again twenty years later
    later = NOW + timedelta(days=20 * 365)
    second = LabPKI.create(tmp_path, now=later)
    issued = second.issue(CertSpec(name="later", dns_names=(HOST,)))

    # Then it has new CAs, and its leaves verify at the new time
    assert second.root_cert != first.root_cert
    _verify(second, issued.leaf, issued.chain[1:], at=later)


def test_issue_refuses_a_name_already_issued(pki: LabPKI) -> None:
    # Given a certificate issued under a name
    pki.issue(CertSpec(name="duplicate", dns_names=(HOST,)))

    # When another is issued under the same name
    # Then it is refused rather than overwriting the first one's files
    with pytest.raises(ValueError, match="already issued"):
        pki.issue(CertSpec(name="duplicate", dns_names=(HOST,), kind="expired"))


def test_create_refuses_a_naive_now(tmp_path: Path) -> None:
    # Given a timestamp without a time zone
    naive = datetime(2026, 3, 1, 12, 0, 0)  # no tzinfo: the point of the test

    # When a PKI is created with it
    # Then it is refused rather than guessed
    with pytest.raises(ValueError, match="timezone-aware"):
        LabPKI.create(tmp_path, now=naive)


BAD_SPECS: tuple[tuple[str, dict[str, typing.Any], str], ...] = (
    ("path in name", {"name": "../escape"}, "safe file stem"),
    ("slash in name", {"name": "a/b"}, "safe file stem"),
    ("unknown kind", {"kind": "excellent"}, "unknown certificate kind"),
    ("no names", {"dns_names": ()}, "at least one"),
    ("expiring without days", {"kind": "expiring"}, "days_left"),
    ("negative days", {"kind": "expiring", "days_left": -1}, "days_left"),
    ("days on good", {"days_left": 3}, "only applies"),
    ("wildcard over a TLD", {"kind": "wildcard", "dns_names": ("example.test",)}, "3\\+ labels"),
    ("unicode name", {"dns_names": ("bücher.example.test",)}, "A-labels"),
    ("bad address", {"ip_addresses": ("192.0.2.300",)}, "does not appear to be"),
)


@pytest.mark.parametrize(
    ("fields", "error"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_certspec_rejects_bad_fields(fields: dict[str, typing.Any], error: str) -> None:
    # Given spec fields with one mistake
    arguments: dict[str, typing.Any] = {"name": "spec", "dns_names": (HOST,), **fields}

    # When a CertSpec is made from them
    # Then it is refused with a message naming the mistake
    with pytest.raises(ValueError, match=error):
        CertSpec(**arguments)


def test_cert_kinds_matches_the_literal_type() -> None:
    # Given the CertKind literal and the CERT_KINDS tuple
    # When they are compared
    # Then they list the same kinds in the same order
    assert typing.get_args(CertKind) == CERT_KINDS
