"""DANE TLSA matching (RFC 7672 3.1) against certificates from the lab PKI."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization

from analyzer.lab.pki import CertSpec, LabPKI
from probes.dane import Tlsa, matches


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, ...]:
    pki = LabPKI.create(tmp_path_factory.mktemp("pki"), now=datetime.now(UTC))
    issued = pki.issue(CertSpec(name="mx", dns_names=("mx.dane.test",)))
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in issued.chain)


def spki(der: bytes) -> bytes:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("usage", "selector", "mtype", "which", "expected"),
    [
        (3, 1, 1, "leaf-spki-sha256", True),
        (3, 0, 1, "leaf-cert-sha256", True),
        (3, 1, 2, "leaf-spki-sha512", True),
        (3, 0, 0, "leaf-cert-exact", True),
        (2, 1, 1, "ca-spki-sha256", True),
        (3, 1, 1, "ca-spki-sha256", False),  # DANE-EE must match the server certificate
        (2, 1, 1, "leaf-spki-sha256", False),  # DANE-TA must match a certificate above it
        (3, 1, 1, "zeros", False),
        (3, 2, 1, "leaf-spki-sha256", False),  # unknown selector
        (4, 1, 1, "leaf-spki-sha256", False),  # unknown usage
    ],
)
def test_tlsa_matching(
    chain: tuple[bytes, ...], usage: int, selector: int, mtype: int, which: str, expected: bool
) -> None:
    leaf, ca = chain[0], chain[1]
    data = {
        "leaf-spki-sha256": hashlib.sha256(spki(leaf)).digest(),
        "leaf-cert-sha256": hashlib.sha256(leaf).digest(),
        "leaf-spki-sha512": hashlib.sha512(spki(leaf)).digest(),
        "leaf-cert-exact": leaf,
        "ca-spki-sha256": hashlib.sha256(spki(ca)).digest(),
        "zeros": bytes(32),
    }[which]
    assert matches(Tlsa(usage=usage, selector=selector, mtype=mtype, data=data), chain) is expected


def test_garbage_certificate_never_matches() -> None:
    record = Tlsa(usage=3, selector=1, mtype=1, data=bytes(32))
    assert matches(record, (b"not a certificate",)) is False
