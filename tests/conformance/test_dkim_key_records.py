"""DKIM key records from dkimpy's test data, and RFC examples, through rca's DKIM checks.

rca reads key records (it does not verify signatures), so the vectors are key records with
a verdict taken from the implementation that published them: dkimpy's tests sign and
verify with these records, or expect verification to fail because of them. Each case
names the dkimpy test that fixes its expectation. The files are in ``data/dkimpy/`` (see the
README there for origin and licence).

A usable record must parse and give the key type and size dkimpy's test data name; an
unusable one must be reported with the finding for its fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from analyzer.core.model import Status
from probes.mailauth.dkim import check_dkim_key, key_bits, parse_dkim_key

DATA = Path(__file__).parent / "data" / "dkimpy"


@dataclass(frozen=True, slots=True)
class KeyVector:
    """One key record and what dkimpy's tests say about it."""

    file: str
    #: "usable", or the rca finding code its fault must give.
    verdict: str
    key_type: str = ""
    bits: int = 0
    #: The dkimpy test that fixes the expectation.
    source: str = ""


VECTORS = [
    KeyVector("test.txt", "usable", "rsa", 1024, "test_dkim.py test_verifies; test_crypto.py"),
    KeyVector("test2.txt", "usable", "rsa", 1024, "test_dkim.py test_implicit_k (no k= tag)"),
    KeyVector(
        "1024_testkey_wo_markers.pub.txt",
        "usable",
        "rsa",
        1024,
        "test_dkim_rsavariants.py test_verifies_SubjectPublicKeyInfo1024",
    ),
    KeyVector(
        "1024_testkey_wo_markers.pub.rsa.txt",
        "usable",
        "rsa",
        1024,
        "test_dkim_rsavariants.py test_verifies_RSAPublicKey1024 (bare PKCS#1 key)",
    ),
    KeyVector(
        "2048_testkey_wo_markers.pub.txt",
        "usable",
        "rsa",
        2048,
        "test_dkim_rsavariants.py test_verifiesSubjectPublicKeyInfo2048",
    ),
    KeyVector(
        "2048_testkey_wo_markers.pub.rsa.txt",
        "usable",
        "rsa",
        2048,
        "test_dkim_rsavariants.py test_verifiesRSAPublicKey2048 (bare PKCS#1 key)",
    ),
    KeyVector(
        "2048_testkey_PKCS8.key.pub.txt",
        "usable",
        "rsa",
        2048,
        "test_dkim_rsavariants.py test_verifies_RSAPublicKey2048PKCS8",
    ),
    KeyVector(
        "ed25519test.dns",
        "usable",
        "ed25519",
        256,
        "the public half of ed25519test.key, test_dkim_ed25519.py's signing key (no v= tag)",
    ),
    KeyVector(
        "eximtest.dns",
        "usable",
        "ed25519",
        256,
        "test_dkim_ed25519.py (Exim's Ed25519 interoperability record)",
    ),
    KeyVector(
        "test_bad.txt",
        "dns.dkim.bad_key",
        source='test_crypto.py test_parse_public_key ("failed to reject invalid public key")',
    ),
    KeyVector(
        "badversion.txt", "dns.dkim.syntax", source='test_dkim.py test_bad_version ("v=DKIM1:")'
    ),
    KeyVector(
        "badk.txt",
        "dns.dkim.unsupported_key_type",
        source="test_dkim.py test_unknown_k (k=ed25519-sha256)",
    ),
    KeyVector(
        "test_tlsrpt.txt",
        "dns.dkim.not_for_email",
        source="test_dkim_tlsrpt.py test_ignores_tlsrptsvc (s=tlsrpt does not sign mail)",
    ),
]


def test_every_data_file_is_a_vector() -> None:
    # Given the key records copied from dkimpy
    files = {p.name for p in DATA.iterdir() if p.suffix in (".txt", ".dns")}
    # When they are compared with the table
    # Then each one is used, once
    assert files == {v.file for v in VECTORS}


@pytest.mark.parametrize("vector", VECTORS, ids=[v.file for v in VECTORS])
def test_dkimpy_key_record(vector: KeyVector) -> None:
    # Given one of dkimpy's key records (as one TXT text, without the final newline)
    record = (DATA / vector.file).read_bytes().rstrip(b"\r\n")
    # When rca checks it as the record of a selector
    findings = check_dkim_key("test", "example.com", record)
    codes = {f.code for f in findings}
    # Then a usable key is read with its type and size, and a bad one gets its finding
    if vector.verdict == "usable":
        key = parse_dkim_key(record)
        assert (key.key_type, key_bits(key)) == (vector.key_type, vector.bits)
        assert not any(f.status is Status.FAIL for f in findings), codes
    else:
        assert vector.verdict in codes, codes
        assert "dns.dkim.valid" not in codes
