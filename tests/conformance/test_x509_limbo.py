"""x509-limbo (C2SP), the X.509 path-validation corpus, through ``tlschain.diagnose()``.

The corpus (``data/x509-limbo/limbo.json.gz``, see the README beside it for origin, the
generator commit and licence) gives, per test case, trusted roots, untrusted intermediates,
a peer certificate, the name it is checked for, a validation time and the expected verdict.
Each case rca can express becomes one pytest case named by its limbo id.

rca's verdict is the diagnosis as a user reads it: the chain is accepted when no finding is
``fail`` or ``error``. ``tls.cert.expiring_soon`` is left out (a monitoring threshold, not a
validity verdict) and the thresholds are set to zero. The chain is the peer certificate then
the intermediates, as a server would send them.

Cases rca cannot express are not run, each for a stated reason (:func:`not_applicable`), and
the counts are pinned by :func:`test_corpus_selection`. Where rca's verdict differs from the
corpus, the case is listed in :data:`KNOWN_DISAGREEMENTS` with the reason, as a strict
``xfail``: when rca starts to agree, the test fails until the entry is removed.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from analyzer.core.model import Status
from probes.tlschain import diagnose

CORPUS = Path(__file__).parent / "data" / "x509-limbo" / "limbo.json.gz"
#: The time of a case without ``validation_time`` ("now" in limbo's schema). The corpus's
#: certificates are valid from 1970 for 1000 years unless a case says otherwise, so any
#: instant would do; a fixed one keeps the run reproducible.
DEFAULT_TIME = datetime(2026, 1, 1, tzinfo=UTC)
#: Not a validity verdict: with zero thresholds it still fires at the notAfter second.
NOT_A_VERDICT = frozenset({"tls.cert.expiring_soon"})

_PEM_BODY = re.compile(r"-----BEGIN [A-Z ]+-----(.*?)-----END [A-Z ]+-----", re.DOTALL)


def _load() -> list[dict[str, Any]]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as stream:
        cases: list[dict[str, Any]] = json.load(stream)["testcases"]
    return cases


ALL_CASES = _load()
IDS = {case["id"] for case in ALL_CASES}


def not_applicable(case: dict[str, Any]) -> str | None:
    """Why rca cannot run ``case`` (None when it can)."""
    if case["validation_kind"] != "SERVER":
        return "client-certificate validation: rca checks servers' chains"
    if case["crls"]:
        return "revocation (CRLs): rca does not check revocation"
    if case["max_chain_depth"] is not None:
        return "a caller-set maximum chain depth: rca has no such setting"
    if case["key_usage"]:
        return "a caller-required keyUsage: rca has no such input"
    if case["expected_peer_names"] or case["expected_peer_name"] is None:
        return "not one peer name: rca validates a chain for one host"
    if case["extended_key_usage"] not in ([], ["serverAuth"]):
        return "a required EKU other than serverAuth"
    if any(other.startswith("webpki::") for other in case["conflicts_with"]):
        # rca validates with cryptography's web-PKI verifier (CA/B Forum profile); of two
        # conflicting cases it is bound by the webpki one, which is run.
        return "conflicts with a webpki:: case (rca follows the web PKI profile)"
    return None


RUN = [case for case in ALL_CASES if not_applicable(case) is None]

_CN = (
    "CA/B Forum BR 7.1.4.3 (the subject CN must be a character-for-character copy of a SAN "
    "entry): rca matches names against the SAN only, as clients do, and does not lint the CN"
)
_RFC5280_CA_RULE = (
    "a rule for issuing CAs that cryptography's verifier does not enforce and rca does not "
    "check yet: "
)
_EKU = "CA/B Forum EKU profile, not enforced by cryptography's verifier nor checked by rca: "
_KEY = "CA/B Forum BR 6.1.5 key rules, not enforced by the verifier nor checked by rca: "
_PSL = (
    "a wildcard over a public suffix of more than one label: rca refuses only a wildcard "
    "directly over a top-level domain (*.com), it does not consult the Public Suffix List "
    "for certificate names"
)

#: Where rca's verdict differs from the corpus, and why (limbo id -> reason).
KNOWN_DISAGREEMENTS: dict[str, str] = {
    # Chains the corpus accepts and rca rejects.
    "pathlen::validation-ignores-pathlen-in-leaf": (
        "the leaf is a CA certificate: the web PKI profile rca follows rejects it (verifier: "
        '"basicConstraints.cA must not be asserted in an EE certificate"; rca: keyUsage '
        "without digitalSignature), as webpki::ca-as-leaf expects"
    ),
    "pathlen::self-issued-certs-pathlen": (
        "cryptography's path builder does not find the path through the self-issued "
        'intermediate ("candidates exhausted: signature does not match"), so rca reports '
        "tls.chain.rejected"
    ),
    # Chains the corpus rejects and rca accepts.
    "rfc5280::aki::intermediate-missing-aki": _RFC5280_CA_RULE
    + "RFC 5280 4.2.1.1 (an intermediate without authorityKeyIdentifier)",
    "rfc5280::aki::cross-signed-root-missing-aki": _RFC5280_CA_RULE
    + "RFC 5280 4.2.1.1 (a cross-signed root without authorityKeyIdentifier; pedantic)",
    "rfc5280::pc::ica-noncritical-pc": _RFC5280_CA_RULE
    + "RFC 5280 4.2.1.11 (policyConstraints must be critical)",
    "rfc5280::serial::zero": _RFC5280_CA_RULE + "RFC 5280 4.1.2.2 (serial number zero; pedantic)",
    "rfc5280::ski::root-missing-ski": _RFC5280_CA_RULE
    + "RFC 5280 4.2.1.2 (a root without subjectKeyIdentifier)",
    "rfc5280::ski::intermediate-missing-ski": _RFC5280_CA_RULE
    + "RFC 5280 4.2.1.2 (an intermediate without subjectKeyIdentifier)",
    "webpki::aki::root-with-aki-all-fields": _RFC5280_CA_RULE
    + "CA/B Forum BR 7.1.2.1.3 (a root's authorityKeyIdentifier with issuer and serial)",
    "webpki::aki::root-with-aki-ski-mismatch": _RFC5280_CA_RULE
    + "CA/B Forum BR 7.1.2.1.3 (a root's authorityKeyIdentifier differs from its own SKI)",
    "webpki::cn::ipv4-hex-mismatch": _CN,
    "webpki::cn::ipv4-leading-zeros-mismatch": _CN,
    "webpki::cn::ipv6-uppercase-mismatch": _CN,
    "webpki::cn::ipv6-uncompressed-mismatch": _CN,
    "webpki::cn::ipv6-non-rfc5952-mismatch": _CN,
    "webpki::cn::punycode-not-in-san": _CN,
    "webpki::cn::utf8-vs-punycode-mismatch": _CN,
    "webpki::cn::not-in-san": _CN,
    "webpki::cn::case-mismatch": _CN,
    "webpki::eku::ee-anyeku": _EKU + "anyExtendedKeyUsage in a subscriber certificate",
    "webpki::eku::ee-without-eku": _EKU + "a subscriber certificate without extKeyUsage",
    "webpki::eku::root-has-eku": _EKU + "a root with extKeyUsage",
    "webpki::san::public-suffix-multi-label-wildcard-san": _PSL + " (*.co.uk)",
    "webpki::san::public-suffix-private-namespace-wildcard-san": _PSL
    + " (*.s3.amazonaws.com, a private-section suffix)",
    "webpki::forbidden-dsa-leaf": _KEY + "a DSA subscriber key",
    "webpki::forbidden-rsa-not-divisible-by-8-in-root": _KEY + "an RSA-2052 root key",
    "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf": _KEY + "an RSA key size not a "
    "multiple of 8 in the leaf",
}


def _der(pem: str) -> bytes:
    """The DER of a PEM block, parsed or not (a malformed certificate is part of a test)."""
    match = _PEM_BODY.search(pem)
    body = match.group(1) if match else pem
    return base64.b64decode("".join(body.split()))


def _accepted(case: dict[str, Any]) -> tuple[bool, list[str]]:
    roots = [x509.load_pem_x509_certificate(pem.encode()) for pem in case["trusted_certs"]]
    chain = [_der(pem) for pem in [case["peer_certificate"], *case["untrusted_intermediates"]]]
    when = case["validation_time"]
    now = datetime.fromisoformat(when) if when else DEFAULT_TIME
    diagnosis = diagnose(
        chain, case["expected_peer_name"]["value"], roots=roots, now=now, warn_days=0, fail_days=0
    )
    rejecting = [
        f.code
        for f in diagnosis.findings
        if f.status in (Status.FAIL, Status.ERROR) and f.code not in NOT_A_VERDICT
    ]
    return not rejecting, rejecting


def test_corpus_selection() -> None:
    # Given the corpus as generated (see the README)
    # When each case is sorted into run / not applicable
    reasons = Counter(not_applicable(case) for case in ALL_CASES)
    # Then the selection is the one the README describes, and every listed disagreement
    # names a case that is run
    assert len(ALL_CASES) == 206
    assert reasons == {
        None: 176,
        "client-certificate validation: rca checks servers' chains": 10,
        "revocation (CRLs): rca does not check revocation": 8,
        "a caller-set maximum chain depth: rca has no such setting": 6,
        "conflicts with a webpki:: case (rca follows the web PKI profile)": 3,
        "a caller-required keyUsage: rca has no such input": 2,
        "not one peer name: rca validates a chain for one host": 1,
    }
    assert set(KNOWN_DISAGREEMENTS) <= {case["id"] for case in RUN}
    for case in ALL_CASES:
        if not_applicable(case) == not_applicable({**case, "conflicts_with": []}):
            continue
        twins = [other for other in case["conflicts_with"] if other.startswith("webpki::")]
        assert set(twins) & {c["id"] for c in RUN}, case["id"]


def _param(case: dict[str, Any]) -> Any:
    reason = KNOWN_DISAGREEMENTS.get(case["id"])
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, id=case["id"], marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in RUN])
def test_x509_limbo(case: dict[str, Any]) -> None:
    # Given one limbo case: roots, the chain a server would send, a name and a time
    expected = case["expected_result"] == "SUCCESS"
    # When rca diagnoses the chain
    accepted, rejecting = _accepted(case)
    # Then it accepts exactly the chains the corpus says are valid
    assert accepted == expected, f"expected {case['expected_result']}, rca found {rejecting}"
