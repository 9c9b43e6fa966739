"""Certificate chain diagnosis: is a server's chain trusted, and if not, *why*.

Pure functions, no network. The TLS probe captures the chain exactly as the server sent it
(DER, in order) and calls :func:`diagnose` with the host name it asked for, the trust store
(:func:`load_trust_store` over :func:`trust_store_paths`) and the run's clock. The result is a
:class:`ChainDiagnosis`: the verdict of ``cryptography``'s web-PKI verifier (``valid``), the
path we built, every certificate as evidence (:class:`CertInfo`) and the findings.

The verifier's verdict alone is not a diagnosis: it stops at the first error and says
"candidates exhausted" for an untrusted root, a missing intermediate and a self-signed
certificate alike. So every fault is judged on its own, from the certificates themselves
(issuer names, key identifiers and signatures against the presented chain and the trust
store), and all faults are reported together: an expired certificate for the wrong name
gets both findings. If the verifier rejects a chain for a reason none of our checks
explains, ``tls.chain.rejected`` carries its message, so a rejection is never silent.

The AIA flow (RFC 5280 section 4.2.2.1) is two calls, with the network in between::

    fetched: dict[str, bytes | None] = {}
    diagnosis = diagnose(chain, host, roots=roots, now=now)
    while diagnosis.fetch_url is not None:
        body = await fetch_bounded(diagnosis.fetch_url)  # the probe's own size and time limits
        fetched[diagnosis.fetch_url] = body  # None when the fetch failed
        diagnosis = diagnose(chain, host, roots=roots, now=now, fetched=fetched)

``fetch_url`` is never a URL already in ``fetched``, and is ``None`` once
:data:`MAX_AIA_FETCHES` URLs were tried, so the loop ends. The hook is data rather than a
callback so that this module stays synchronous and pure: the probe owns the deadline
(``ctx.remaining()``), the size limit and the step that records the fetch, and tests need no
mock network.

Evidence is bounded: every string is cut to :data:`MAX_TEXT` characters with control and
format characters escaped, and at most :data:`MAX_NAMES` names are listed per certificate.
Hostile input (garbage DER, a 64 KB subject, 500 SANs, invalid UTF-8) gives findings, never
an exception.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import ssl
import unicodedata
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, overload

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from analyzer.core.context import files_key
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status, worst

if TYPE_CHECKING:
    from analyzer.core.context import RunContext

__all__ = [
    "run_diagnose",
    "run_roots",
    "CHAIN_EMPTY",
    "CHAIN_DUPLICATE_CERTS",
    "CHAIN_EXTRA_CERTS",
    "CHAIN_MISSING_INTERMEDIATE",
    "CHAIN_REJECTED",
    "CHAIN_ROOT_SENT",
    "CHAIN_UNTRUSTED_ROOT",
    "CHAIN_VALID",
    "CHAIN_WRONG_ORDER",
    "CERT_EXPIRED",
    "CERT_EXPIRING_SOON",
    "CERT_NAME_MISMATCH",
    "CERT_NOT_YET_VALID",
    "CERT_NO_SERVER_AUTH",
    "CERT_SELF_SIGNED",
    "CERT_SHA1_SIGNATURE",
    "CERT_UNPARSEABLE",
    "FINDINGS",
    "KEY_WEAK",
    "MAX_AIA_BYTES",
    "MAX_AIA_FETCHES",
    "MAX_NAMES",
    "MAX_PRESENTED",
    "MAX_TEXT",
    "CertInfo",
    "CertSource",
    "ChainDiagnosis",
    "TrustStore",
    "diagnose",
    "load_trust_store",
    "trust_store_paths",
]

# --- limits -------------------------------------------------------------------------------------

#: Longest string kept in evidence, titles and details (longer ones are cut, with "…").
MAX_TEXT: Final = 256
#: At most this many SANs (DNS names plus addresses) are listed per certificate.
MAX_NAMES: Final = 50
#: At most this many URLs of each AIA kind are listed per certificate.
MAX_URLS: Final = 4
#: Certificates examined from the server's list; any beyond are reported, not parsed.
MAX_PRESENTED: Final = 32
#: AIA caIssuers URLs :func:`diagnose` asks for, in total, before it stops asking.
MAX_AIA_FETCHES: Final = 3
#: Largest AIA response :func:`diagnose` reads; a probe should stop reading there too.
MAX_AIA_BYTES: Final = 64 * 1024
#: Certificates read from one AIA response (a PKCS#7 bundle may hold several).
_MAX_AIA_CERTS: Final = 8
#: Longest path we build (the verifier's own default limit is 8 intermediates).
_MAX_DEPTH: Final = 10
#: Candidate issuers we try in one path search: bounds the work a hostile chain can cause.
_SEARCH_BUDGET: Final = 256

RSA_FAIL_BITS: Final = 1024
RSA_MIN_BITS: Final = 2048
EC_FAIL_BITS: Final = 224
EC_MIN_BITS: Final = 256

# --- references ---------------------------------------------------------------------------------

_RFC5280 = "https://www.rfc-editor.org/rfc/rfc5280"
_RFC5280_VALIDITY = f"{_RFC5280}#section-4.1.2.5"
_RFC5280_KEY_USAGE = f"{_RFC5280}#section-4.2.1.12"
_RFC5280_AIA = f"{_RFC5280}#section-4.2.2.1"
_RFC5280_PATH = f"{_RFC5280}#section-6.1"
_RFC5280_ENCODING = f"{_RFC5280}#section-4.1"
_RFC6125_NAMES = "https://www.rfc-editor.org/rfc/rfc6125#section-6.4"
_RFC8446_CERTIFICATE = "https://www.rfc-editor.org/rfc/rfc8446#section-4.4.2"
_RFC9155 = "https://www.rfc-editor.org/rfc/rfc9155"
_RFC9325 = "https://www.rfc-editor.org/rfc/rfc9325"

_CHAIN_FILE_HINT = (
    "(for Postfix: smtpd_tls_chain_files, or smtpd_tls_cert_file holding leaf then "
    "intermediates; for Dovecot: ssl_cert; for nginx: ssl_certificate with the leaf first; "
    "for Exchange/IIS: import the intermediate into the computer's Intermediate "
    "Certification Authorities store)"
)

# --- the finding catalogue ----------------------------------------------------------------------

CHAIN_EMPTY = FindingSpec(
    code="tls.chain.empty",
    status=Status.FAIL,
    title="The server sent no certificate",
    meaning="The TLS handshake finished without a server certificate, so a client cannot "
    "authenticate the server at all (anonymous cipher suites or a broken TLS stack).",
    remediation="Configure a certificate and key for this service (Postfix: smtpd_tls_chain_"
    "files; Dovecot: ssl_cert and ssl_key; nginx: ssl_certificate and ssl_certificate_key) and "
    "disable anonymous (aNULL) cipher suites.",
    reference=_RFC8446_CERTIFICATE,
)
CERT_UNPARSEABLE = FindingSpec(
    code="tls.cert.unparseable",
    status=Status.FAIL,
    title="A certificate sent by the server cannot be parsed",
    meaning="One of the certificates is not valid DER X.509 (truncated, corrupted, or with "
    "fields that break the encoding rules, such as invalid UTF-8). Strict clients abort the "
    "handshake when they meet it.",
    remediation="Re-export the certificate chain from the CA's original files (PEM, leaf "
    "first) and install it again; check the chain file for pasting errors.",
    reference=_RFC5280_ENCODING,
)
CERT_EXPIRED = FindingSpec(
    code="tls.cert.expired",
    status=Status.FAIL,
    title="Certificate expired",
    meaning="The current time is after the certificate's notAfter date; every client rejects "
    "the chain.",
    remediation="Renew the certificate, install the new one (and its intermediates), and "
    "reload the server; automate renewal (ACME) so it does not happen again.",
    reference=_RFC5280_VALIDITY,
)
CERT_NOT_YET_VALID = FindingSpec(
    code="tls.cert.not_yet_valid",
    status=Status.FAIL,
    title="Certificate not yet valid",
    meaning="The current time is before the certificate's notBefore date; clients reject it "
    "until then. Often the server (or this client) has a wrong clock, or a new certificate "
    "was installed too early.",
    remediation="Check the clocks (NTP) of the server and of the CA request; if the "
    "certificate was installed early, put the previous one back until its start date.",
    reference=_RFC5280_VALIDITY,
)
CERT_EXPIRING_SOON = FindingSpec(
    code="tls.cert.expiring_soon",
    status=Status.WARN,
    title="Certificate expires soon",
    meaning="The certificate is valid now but expires within the warning period (warn), or "
    "within the critical period (fail). One code for both, so monitoring matches one code "
    "and reads the urgency from the status.",
    remediation="Renew the certificate now and install it before the expiry date; automate "
    "renewal (ACME) so it does not depend on someone remembering.",
    reference=_RFC5280_VALIDITY,
)
CERT_NAME_MISMATCH = FindingSpec(
    code="tls.cert.name_mismatch",
    status=Status.FAIL,
    title="Certificate does not cover the host name",
    meaning="None of the certificate's subjectAltName entries matches the name the client "
    "connected to. Wildcards cover exactly one label, in the left-most position only, and "
    "the subject CN is not used when SANs are present (modern clients never use it).",
    remediation="Get a certificate whose subjectAltName includes the host name clients use "
    "(or a wildcard *.<parent domain>), or point clients (MX record, Autodiscover, client "
    "settings) at a name the certificate holds.",
    reference=_RFC6125_NAMES,
)
CERT_SELF_SIGNED = FindingSpec(
    code="tls.cert.self_signed",
    status=Status.FAIL,
    title="Self-signed certificate",
    meaning="The server certificate signs itself and is not in the trust store, so no client "
    "trusts it unless each one is told to (and mail servers relaying to you usually are not).",
    remediation="Replace it with a certificate from a public CA (e.g. Let's Encrypt through "
    "ACME); for internal-only services, issue it from your own CA and distribute that CA's "
    "root to the clients.",
    reference=_RFC5280_PATH,
)
CHAIN_UNTRUSTED_ROOT = FindingSpec(
    code="tls.chain.untrusted_root",
    status=Status.FAIL,
    title="Chain leads to a root that is not trusted",
    meaning="The chain ends at a CA that is not in the trust store (a private or retired "
    "root), so clients that do not have that root installed reject it.",
    remediation="Use a certificate from a CA in the public trust stores, or distribute the "
    "private root to every client (and pass it to rca with --ca-file).",
    reference=_RFC5280_PATH,
)
CHAIN_MISSING_INTERMEDIATE = FindingSpec(
    code="tls.chain.missing_intermediate",
    status=Status.FAIL,
    title="Intermediate certificate missing from the chain",
    meaning="The server does not send the intermediate CA certificate that links its "
    "certificate to a trusted root. Browsers may fetch it from the AIA URL and hide the "
    "problem; mail clients and servers (OpenSSL, Outlook on some paths, Java) do not.",
    remediation="Install the intermediate certificate in the server's chain file after the "
    f"server certificate {_CHAIN_FILE_HINT}.",
    reference=_RFC5280_AIA,
)
CHAIN_WRONG_ORDER = FindingSpec(
    code="tls.chain.wrong_order",
    status=Status.WARN,
    title="Certificates sent in the wrong order",
    meaning="Each certificate should be followed by the one that issued it (RFC 8446 4.4.2; "
    "a MUST in TLS 1.2, RFC 5246 7.4.2). Tolerant clients reorder, older ones fail. If the "
    "server certificate itself is not first (fail), every client fails.",
    remediation="Put the server certificate first in the chain file, then its issuer, then "
    "that one's issuer, and so on.",
    reference=_RFC8446_CERTIFICATE,
)
CHAIN_EXTRA_CERTS = FindingSpec(
    code="tls.chain.extra_certs",
    status=Status.WARN,
    title="Chain holds certificates that do not belong to it",
    meaning="The server sends certificates that are not part of the path to a trusted root "
    "(an old intermediate, another site's certificate). They waste handshake bytes and can "
    "make old clients build a wrong path.",
    remediation="Remove the unrelated certificates from the server's chain file, keeping the "
    "server certificate and its intermediates only.",
    reference=_RFC8446_CERTIFICATE,
)
CHAIN_DUPLICATE_CERTS = FindingSpec(
    code="tls.chain.duplicate_certs",
    status=Status.WARN,
    title="Chain holds the same certificate twice",
    meaning="The server sends one certificate more than once, usually because the chain file "
    "and the certificate file both hold the intermediate.",
    remediation="Remove the duplicate from the chain file (or stop configuring the "
    "intermediate in two places, e.g. both ssl_certificate and a separate CA option).",
    reference=_RFC8446_CERTIFICATE,
)
CHAIN_ROOT_SENT = FindingSpec(
    code="tls.chain.root_sent",
    status=Status.PASS,
    title="The server sends the root certificate too",
    meaning="The chain includes the trusted root itself. Harmless, as clients use their own "
    "copy, but it wastes bytes in every handshake.",
    remediation="Optionally remove the root from the chain file; keep the intermediates.",
    reference=_RFC8446_CERTIFICATE,
)
KEY_WEAK = FindingSpec(
    code="tls.key.weak",
    status=Status.FAIL,
    title="Weak public key",
    meaning="A key in the chain is too small: RSA (or DSA) under 2048 bits, or an elliptic "
    "curve under 256 bits. 1024-bit RSA and curves under 224 bits are breakable (fail); the "
    "sizes in between are below current minimums (warn). OpenSSL clients at their default "
    "security level refuse such chains.",
    remediation="Generate a new key (RSA 2048+ or ECDSA P-256) with a new certificate "
    "request, and install the reissued certificate.",
    reference=_RFC9325,
)
CERT_SHA1_SIGNATURE = FindingSpec(
    code="tls.cert.sha1_signature",
    status=Status.FAIL,
    title="Certificate signed with SHA-1 (or weaker)",
    meaning="A certificate in the chain is signed with SHA-1 or MD5, whose collisions are "
    "practical; current clients reject such signatures.",
    remediation="Have the CA reissue the certificate with a SHA-256 signature, and install it "
    "with a SHA-256 intermediate.",
    reference=_RFC9155,
)
CERT_NO_SERVER_AUTH = FindingSpec(
    code="tls.cert.no_server_auth",
    status=Status.FAIL,
    title="Certificate is not allowed for TLS servers",
    meaning="The certificate's extendedKeyUsage does not include serverAuth (or its "
    "keyUsage allows neither signing nor key exchange), so clients refuse it for a server, "
    "e.g. a client or S/MIME certificate installed by mistake. An intermediate whose "
    "extendedKeyUsage lacks serverAuth restricts the whole chain the same way.",
    remediation="Request a certificate with extendedKeyUsage serverAuth (a TLS/SSL server "
    "certificate) and install it in place of this one.",
    reference=_RFC5280_KEY_USAGE,
)
CHAIN_REJECTED = FindingSpec(
    code="tls.chain.rejected",
    status=Status.FAIL,
    title="Chain rejected by certificate validation",
    meaning="A web-PKI verifier (RFC 5280 path validation with CA/Browser Forum rules) "
    "rejects the chain for a reason none of the specific checks names (for example a CA "
    "certificate used as server certificate, a violated path length or name constraint, an "
    "unknown critical extension, or an unsupported key type).",
    remediation="Read the verifier's message in the detail; reissue the certificate or fix "
    "the chain accordingly.",
    reference=_RFC5280_PATH,
)
CHAIN_VALID = FindingSpec(
    code="tls.chain.valid",
    status=Status.PASS,
    title="Certificate chain is valid",
    meaning="The chain validates from the server certificate to a trusted root, for the host "
    "name, at the time of the check.",
    reference=_RFC5280_PATH,
)

#: Every finding code this module can produce.
FINDINGS: Final[tuple[FindingSpec, ...]] = (
    CHAIN_EMPTY,
    CERT_UNPARSEABLE,
    CERT_EXPIRED,
    CERT_NOT_YET_VALID,
    CERT_EXPIRING_SOON,
    CERT_NAME_MISMATCH,
    CERT_SELF_SIGNED,
    CHAIN_UNTRUSTED_ROOT,
    CHAIN_MISSING_INTERMEDIATE,
    CHAIN_WRONG_ORDER,
    CHAIN_EXTRA_CERTS,
    CHAIN_DUPLICATE_CERTS,
    CHAIN_ROOT_SENT,
    KEY_WEAK,
    CERT_SHA1_SIGNATURE,
    CERT_NO_SERVER_AUTH,
    CHAIN_REJECTED,
    CHAIN_VALID,
)

# Findings that account for a verifier rejection: with one of them reported, the verifier's
# "candidates exhausted" adds nothing (but see _unexplained_rejection).
_EXPLAINS_REJECTION: Final = frozenset(
    s.code
    for s in (
        CERT_UNPARSEABLE,
        CERT_EXPIRED,
        CERT_NOT_YET_VALID,
        CERT_NAME_MISMATCH,
        CERT_SELF_SIGNED,
        CHAIN_UNTRUSTED_ROOT,
        CHAIN_MISSING_INTERMEDIATE,
        CHAIN_WRONG_ORDER,
        KEY_WEAK,
        CERT_SHA1_SIGNATURE,
        CERT_NO_SERVER_AUTH,
    )
)

# --- public result types ------------------------------------------------------------------------

CertSource = Literal["presented", "trust_store", "aia"]
"""Where a certificate came from: the server, the trust store, or an AIA caIssuers fetch."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertInfo:
    """One certificate as evidence: what a mail admin needs to recognise and replace it.

    ``position`` is the 1-based place in the chain as the server sent it (0 when the
    certificate was not sent: trust store or AIA). Strings are bounded (:data:`MAX_TEXT`);
    ``dns_names`` and ``ip_addresses`` list at most :data:`MAX_NAMES` entries together, and
    ``san_count`` says how many the certificate holds. Dates are ISO 8601 UTC.
    """

    source: CertSource
    position: int = 0
    fetched_from: str = ""
    subject: str
    issuer: str
    common_name: str = ""
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    san_count: int = 0
    serial_hex: str = ""
    not_before: str = ""
    not_after: str = ""
    key_type: str = ""
    key_bits: int = 0
    signature_algorithm: str = ""
    fingerprint_sha256: str
    ca_issuers: tuple[str, ...] = ()
    ocsp: tuple[str, ...] = ()
    is_ca: bool = False
    self_signed: bool = False

    @property
    def label(self) -> str:
        """A short human name: the CN if there is one, else the subject DN."""
        return self.common_name or self.subject or f"SHA-256 {self.fingerprint_sha256[:16]}…"

    def as_evidence(self) -> dict[str, Json]:
        """The fields as JSON-compatible data for a finding's or a step's evidence."""
        return {
            "source": self.source,
            "position": self.position,
            "fetched_from": self.fetched_from,
            "subject": self.subject,
            "issuer": self.issuer,
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "san_count": self.san_count,
            "serial_hex": self.serial_hex,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "key_type": self.key_type,
            "key_bits": self.key_bits,
            "signature_algorithm": self.signature_algorithm,
            "fingerprint_sha256": self.fingerprint_sha256,
            "ca_issuers": list(self.ca_issuers),
            "ocsp": list(self.ocsp),
            "is_ca": self.is_ca,
            "self_signed": self.self_signed,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainDiagnosis:
    """What :func:`diagnose` concluded about one presented chain.

    ``valid``: the chain *as sent* validates with ``cryptography``'s web-PKI verifier for
    ``host`` at the given time. It is not the whole verdict: a 1024-bit RSA server key, an
    OpenSSL-refused ``*.tld`` wildcard or a keyUsage without signing pass that verifier but
    give ``fail`` findings; read :attr:`status`.
    ``valid_with_fetched``: the same with the AIA-fetched certificates added (``None`` when
    nothing was fetched). ``path``: the certification path, leaf first; it ends at the trust
    anchor when the chain is trusted, else where it broke. ``presented``: every parseable
    certificate the server sent, in its order. ``fetch_url``: an AIA caIssuers URL whose
    content would let the diagnosis go further (see the module docstring), else ``None``.
    """

    host: str
    valid: bool
    valid_with_fetched: bool | None = None
    path: tuple[CertInfo, ...] = ()
    presented: tuple[CertInfo, ...] = ()
    findings: tuple[Finding, ...] = ()
    fetch_url: str | None = None
    verifier_error: str = ""

    @property
    def status(self) -> Status:
        """The worst status among the findings."""
        return worst(f.status for f in self.findings)

    @property
    def codes(self) -> frozenset[str]:
        """The codes of the findings that are not ``pass``."""
        return frozenset(f.code for f in self.findings if f.status != Status.PASS)


# --- trust store --------------------------------------------------------------------------------

_PEM_CERT_RE: Final = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----(.*?)"
    rb"-----END (?:X509 |TRUSTED )?CERTIFICATE-----",
    re.DOTALL,
)


def trust_store_paths(ca_file: str | PathLike[str] | None = None) -> tuple[Path, ...]:
    """The PEM files of the default trust: certifi, the system bundle (if any), ``ca_file``.

    DESIGN.md section 4: certifi by default, plus the system store, plus ``--ca-file``.
    """
    import certifi  # noqa: PLC0415 - only needed here

    paths = [Path(certifi.where())]
    system = ssl.get_default_verify_paths().cafile
    if system is not None and Path(system).is_file():
        paths.append(Path(system))
    if ca_file is not None:
        paths.append(Path(ca_file))
    return tuple(paths)


async def run_roots(run: RunContext) -> TrustStore:
    """The run's trust store (certifi + system + ``--ca-file``), loaded and indexed once per
    run (once per batch while its files are unchanged).

    Loaded on the event loop's thread on purpose (about 10 ms): the loader silences
    cryptography's warnings about odd roots with ``warnings.catch_warnings()``, which is
    not thread-safe; in a worker thread it raced with the loop's own use.
    """

    async def load() -> TrustStore:
        paths = trust_store_paths(run.options.ca_file)
        batch = run.shared_results
        if batch is None:
            return TrustStore(load_trust_store(paths))
        # In a batch, parsed once for all its runs (certifi alone costs about 25 ms of CPU);
        # files_key raises OSError for a file that is gone, as load_trust_store does.
        return batch.resource(
            ("trust-store", files_key(paths)), lambda: TrustStore(load_trust_store(paths))
        )

    return await run.shared("trust-store", load)


class TrustStore(Sequence[x509.Certificate]):
    """Trust-store certificates (a sequence, in file order) with what every diagnosis reads
    from them, made once instead of once per chain: the index by subject, and the store of
    ``cryptography``'s verifier.

    :func:`run_roots` gives one per run; :func:`diagnose` also takes a plain sequence of
    certificates and indexes it for that call. Build it on the event loop's thread: reading
    the subjects may warn (see :func:`diagnose`), and the warning filters are not
    thread-safe.
    """

    __slots__ = ("_certs", "_verifier_store", "by_subject")

    def __init__(self, certs: Iterable[x509.Certificate]) -> None:
        self._certs = tuple(certs)
        index: dict[x509.Name, list[x509.Certificate]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # as in diagnose
            for cert in self._certs:
                try:
                    subject = cert.subject
                    bucket = index.setdefault(subject, [])
                except _PARSE_ERRORS:
                    continue  # a store certificate we cannot read cannot anchor a path we build
                bucket.append(cert)
        #: The certificates by subject name (indexing by ``Name`` is cheap, about 1 µs a
        #: root; serialising or hashing every root would cost more than a diagnosis).
        self.by_subject: Mapping[x509.Name, tuple[x509.Certificate, ...]] = {
            name: tuple(certs) for name, certs in index.items()
        }
        self._verifier_store: Store | None = None

    def verifier_store(self) -> Store:
        """``cryptography``'s verifier store of these certificates, made on first use."""
        if self._verifier_store is None:
            self._verifier_store = Store(list(self._certs))
        return self._verifier_store

    @overload
    def __getitem__(self, index: int) -> x509.Certificate: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[x509.Certificate, ...]: ...
    def __getitem__(
        self, index: int | slice
    ) -> x509.Certificate | tuple[x509.Certificate, ...]:
        return self._certs[index]

    def __len__(self) -> int:
        return len(self._certs)

    def __repr__(self) -> str:
        return f"TrustStore({len(self._certs)} certificates)"


def load_trust_store(paths: Iterable[str | PathLike[str]]) -> tuple[x509.Certificate, ...]:
    """Every certificate in the PEM (or DER) files ``paths``, deduplicated, in file order.

    Tolerates junk: text around and between PEM blocks, blocks that are not valid base64 or
    not valid certificates (skipped), OpenSSL ``TRUSTED CERTIFICATE`` blocks (their trust
    settings are dropped). Raises :class:`OSError` if a file cannot be read, so a ``--ca-file``
    that is gone never silently shrinks the trust.
    """
    found: dict[bytes, x509.Certificate] = {}
    for path in paths:
        data = Path(path).read_bytes()
        blocks = [m.group(1) for m in _PEM_CERT_RE.finditer(data)]
        ders: list[bytes] = []
        if blocks:
            for block in blocks:
                try:
                    ders.append(base64.b64decode(b"".join(block.split()), validate=True))
                except (binascii.Error, ValueError):
                    continue
        else:
            ders.append(data)  # a single DER certificate, as some tools write --ca-file
        with warnings.catch_warnings():
            # Some public roots have a negative serial number, which cryptography loads with
            # a deprecation warning (see diagnose); the root is still what the store holds.
            warnings.simplefilter("ignore", UserWarning)
            for der in ders:
                cert = _load_der(_first_tlv(der))
                if cert is not None:
                    found.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    return tuple(found.values())


# --- the diagnosis ------------------------------------------------------------------------------


def run_diagnose(
    run: RunContext,
    chain: Sequence[bytes],
    host: str,
    *,
    roots: Sequence[x509.Certificate],
    fetched: Mapping[str, bytes | None] | None = None,
) -> ChainDiagnosis:
    """:func:`diagnose` as of the run (its clock, ``--cert-warn-days``/``--cert-fail-days``),
    made once per run for the same chain, host, trust store and fetched issuers.

    A host presents the same chain on each of its addresses and ports, and several probes
    judge it (the TLS check, the Autodiscover host block): a full check would diagnose
    mail.example.com's chain a dozen times, at a few milliseconds of CPU each on the event
    loop's thread. Every such diagnosis of a run is then as of its first one's clock, so
    one certificate is never judged two ways in one report.
    """
    seen = tuple(fetched.items()) if fetched else ()
    # The store itself, not its id: the key keeps it alive, so no other roots made later can
    # take its id (a plain sequence is keyed by its certificates).
    trust = roots if isinstance(roots, TrustStore) else tuple(roots)
    key = ("chain-diagnosis", host, tuple(chain), trust, seen)
    return run.made(key, lambda: diagnose(
        chain, host, roots=roots, now=run.now(), warn_days=run.options.cert_warn_days,
        fail_days=run.options.cert_fail_days, fetched=fetched,
    ))  # fmt: skip


def diagnose(
    chain: Sequence[bytes],
    host: str,
    *,
    roots: Sequence[x509.Certificate],
    now: datetime,
    warn_days: int = 30,
    fail_days: int = 7,
    fetched: Mapping[str, bytes | None] | None = None,
) -> ChainDiagnosis:
    """Diagnose ``chain`` (DER, in the order the server sent it) for a client of ``host``.

    ``host`` is a DNS name (A-labels or U-labels, trailing dot allowed) or an IP address
    (IPv6 optionally in brackets). ``roots`` is the trust store: a :class:`TrustStore`
    (:func:`run_roots`), indexed once for every chain, or certificates
    (:func:`load_trust_store`), indexed for this call.
    ``now`` must be timezone-aware. A certificate in the path expiring within ``warn_days``
    gives ``tls.cert.expiring_soon`` as warn, within ``fail_days`` as fail. ``fetched`` maps
    AIA URLs the probe fetched (after a previous call returned them as ``fetch_url``) to the
    bytes served, or ``None`` if the fetch failed.

    Raises :class:`ValueError` only for a caller error (naive ``now``, thresholds out of order);
    anything wrong with the certificates becomes a finding.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if not 0 <= fail_days <= warn_days:
        raise ValueError("thresholds must satisfy 0 <= fail_days <= warn_days")
    fetched = dict(fetched or {})
    with warnings.catch_warnings():
        # Malformed input makes cryptography warn rather than fail (a negative serial number,
        # as in some old roots; a country name that is not two letters). That describes the
        # input, not our code, and under filterwarnings=error it would become an exception.
        # CryptographyDeprecationWarning is a UserWarning.
        warnings.simplefilter("ignore", UserWarning)
        return _Diagnosis(
            chain=chain,
            host=host,
            trust=roots if isinstance(roots, TrustStore) else TrustStore(roots),
            now=now,
            warn_days=warn_days,
            fail_days=fail_days,
            fetched=fetched,
        ).run()


# --- internals: parsed certificates -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Node:
    """A usable certificate with the fields path building needs, read once."""

    cert: x509.Certificate
    der: bytes
    subject: x509.Name
    issuer: x509.Name
    ski: bytes | None
    aki: bytes | None
    is_ca: bool
    info: CertInfo
    source: CertSource


@dataclass(frozen=True, slots=True, kw_only=True)
class _Unparseable:
    position: int
    reason: str
    size: int
    fingerprint_sha256: str


_SIG_WEAK_HASHES: Final = (hashes.SHA1, hashes.MD5)

# What cryptography raises for a malformed or unsupported certificate, often lazily, when a
# field is first read. The last three are not ValueErrors: a version other than v1/v3, an
# extension present twice (RFC 5280 4.2), a SAN type it does not know.
_PARSE_ERRORS: Final = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def _load_der(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except _PARSE_ERRORS:
        return None


def _first_tlv(der: bytes) -> bytes:
    """The first DER element of ``der`` (drops trailing junk, e.g. OpenSSL trust settings)."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    first = der[1]
    if first < 0x80:
        end = 2 + first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            return der
        end = 2 + count + int.from_bytes(der[2 : 2 + count], "big")
    return der[:end] if end <= len(der) else der


def _sha256_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` made safe for evidence: control/format characters escaped, length bounded."""
    head = text[: limit + 1]
    out: list[str] = []
    for char in head:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    clean = "".join(out)
    if len(text) > limit or len(clean) > limit:
        return clean[: limit - 1] + "…"
    return clean


def _name_text(name: x509.Name) -> str:
    try:
        return _clip(name.rfc4514_string())
    except _PARSE_ERRORS:
        return "<unreadable name>"


def _common_name(name: x509.Name) -> str:
    try:
        values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return _clip(str(values[0].value)) if values else ""
    except (*_PARSE_ERRORS, IndexError):
        return ""


def _key_description(cert: x509.Certificate) -> tuple[str, int]:
    """(type, size in bits) of the subject public key; ("unknown …", 0) if unsupported."""
    try:
        key = cert.public_key()
    except _PARSE_ERRORS:
        try:
            return f"unknown ({cert.public_key_algorithm_oid.dotted_string})", 0
        except _PARSE_ERRORS:
            return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def _signature_name(cert: x509.Certificate) -> str:
    try:
        oid = cert.signature_algorithm_oid
    except _PARSE_ERRORS:
        return "unknown"
    # ObjectIdentifier._name is cryptography's registry of well-known names (typed in its
    # stubs); unknown algorithms read "Unknown OID", so show the dotted form instead.
    name = oid._name
    return oid.dotted_string if name == "Unknown OID" else name


def _signature_hash(cert: x509.Certificate) -> hashes.HashAlgorithm | None:
    try:
        return cert.signature_hash_algorithm
    except _PARSE_ERRORS:
        return None


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str], int]:
    """(DNS names, IP addresses, total SAN count) from subjectAltName (RFC 5280 4.2.1.6)."""
    value = _ext(cert, x509.SubjectAlternativeName)
    if not isinstance(value, x509.SubjectAlternativeName):
        return [], [], 0
    dns = [str(n) for n in value.get_values_for_type(x509.DNSName)]
    ips = [str(a) for a in value.get_values_for_type(x509.IPAddress)]
    return dns, ips, len(value)


def _aia_urls(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(caIssuers URLs, OCSP URLs) from Authority Information Access (RFC 5280 4.2.2.1)."""
    value = _ext(cert, x509.AuthorityInformationAccess)
    if not isinstance(value, x509.AuthorityInformationAccess):
        return (), ()
    issuers: list[str] = []
    ocsp: list[str] = []
    for desc in value:
        if not isinstance(desc.access_location, x509.UniformResourceIdentifier):
            continue
        url = desc.access_location.value
        if desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS:
            issuers.append(url)
        elif desc.access_method == AuthorityInformationAccessOID.OCSP:
            ocsp.append(url)
    return tuple(issuers), tuple(ocsp)


def _signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key made ``child``'s signature (names are checked elsewhere).

    Done by hand because ``verify_directly_issued_by`` refuses SHA-1 signatures, and a SHA-1
    chain must still be built to be diagnosed.
    """
    try:
        key = issuer.public_key()
        algorithm = child.signature_hash_algorithm
        signature, tbs = child.signature, child.tbs_certificate_bytes
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            params = child.signature_algorithm_parameters
            pad = params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            key.verify(signature, tbs, pad, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, tbs, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey) and algorithm is not None:
            key.verify(signature, tbs, algorithm)
        else:
            return False
    except (InvalidSignature, *_PARSE_ERRORS):
        return False
    return True


def _make_node(
    cert: x509.Certificate,
    der: bytes,
    *,
    source: CertSource,
    position: int = 0,
    fetched_from: str = "",
) -> _Node:
    """Read every field once; raises one of ``_PARSE_ERRORS`` if the certificate is malformed."""
    subject, issuer = cert.subject, cert.issuer
    # Touch the lazily parsed parts now, so a malformed one fails here, not in a later check.
    subject.rfc4514_string()
    issuer.rfc4514_string()
    _ = cert.extensions
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    ski_value = _ext(cert, x509.SubjectKeyIdentifier)
    aki_value = _ext(cert, x509.AuthorityKeyIdentifier)
    basic = _ext(cert, x509.BasicConstraints)
    is_ca = isinstance(basic, x509.BasicConstraints) and basic.ca
    dns, ips, san_count = _sans(cert)
    listed_dns = [_clip(n) for n in dns[:MAX_NAMES]]
    listed_ips = [_clip(a) for a in ips[: max(0, MAX_NAMES - len(listed_dns))]]
    ca_issuers, ocsp = _aia_urls(cert)
    key_type, key_bits = _key_description(cert)
    self_signed = subject == issuer and _signed_by(cert, cert)
    info = CertInfo(
        source=source,
        position=position,
        fetched_from=_clip(fetched_from),
        subject=_name_text(subject),
        issuer=_name_text(issuer),
        common_name=_common_name(subject),
        dns_names=tuple(listed_dns),
        ip_addresses=tuple(listed_ips),
        san_count=san_count,
        serial_hex=_clip(format(cert.serial_number, "x")),
        not_before=not_before.isoformat(),
        not_after=not_after.isoformat(),
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=_clip(_signature_name(cert)),
        fingerprint_sha256=_sha256_hex(der),
        ca_issuers=tuple(_clip(u) for u in ca_issuers[:MAX_URLS]),
        ocsp=tuple(_clip(u) for u in ocsp[:MAX_URLS]),
        is_ca=is_ca,
        self_signed=self_signed,
    )
    return _Node(
        cert=cert,
        der=der,
        subject=subject,
        issuer=issuer,
        ski=ski_value.digest if isinstance(ski_value, x509.SubjectKeyIdentifier) else None,
        aki=(
            aki_value.key_identifier if isinstance(aki_value, x509.AuthorityKeyIdentifier) else None
        ),
        is_ca=is_ca,
        info=info,
        source=source,
    )


def _parse_fetched(body: bytes) -> list[x509.Certificate]:
    """Certificates in an AIA response: DER, PEM, or a certs-only PKCS#7 (RFC 5280 4.2.2.1)."""
    if len(body) > MAX_AIA_BYTES:
        return []
    certs: list[x509.Certificate] = []
    single = _load_der(body)
    if single is not None:
        return [single]
    loaders = (
        pkcs7.load_der_pkcs7_certificates,
        pkcs7.load_pem_pkcs7_certificates,
        x509.load_pem_x509_certificates,
    )
    for loader in loaders:
        try:
            certs = list(loader(body))
        except _PARSE_ERRORS:
            continue
        if certs:
            break
    return certs[:_MAX_AIA_CERTS]


# --- internals: names ---------------------------------------------------------------------------

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_HostId = tuple[Literal["dns"], str] | tuple[Literal["ip"], _Address]


_HOST_RE: Final = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


def _host_id(host: str) -> _HostId | None:
    """The reference identifier for ``host`` (RFC 6125 6.2.1), or None if it is not a name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ("ip", ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        pass
    # A trailing dot marks an absolute name; certificates never carry it (RFC 6125 6.4.1).
    text = text.rstrip(".").lower()
    if not text.isascii():
        try:
            # RFC 6125 6.4.2: compare A-labels. Python's codec is IDNA 2003, enough for the
            # U-labels a user types; names from DNS are A-labels already.
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    # RFC 1123 2.1 host names (plus "_", seen in real service names); no wildcards here.
    if len(text) > 253 or not _HOST_RE.fullmatch(text):
        return None
    return ("dns", text)


def _dns_matches(pattern: str, host: str) -> bool:
    """RFC 6125 6.4.1/6.4.3: case-insensitive; ``*`` only as the whole left-most label.

    The wildcard covers exactly one non-empty label (not ``example.com`` for
    ``*.example.com``, not ``a.b.example.com``). Partial wildcards (``f*.example.com``) are
    refused, as RFC 9525 6.3 (which obsoletes RFC 6125) and browsers do, and so is a wildcard
    directly over a top-level domain (``*.com``), as OpenSSL's X509_check_host does.
    """
    pat = pattern.lower().rstrip(".")
    if not pat.isascii() or not pat:
        return False
    if "*" not in pat:
        return pat == host
    if not pat.startswith("*."):
        return False
    rest = pat[2:]
    if "*" in rest or "." not in rest:
        return False
    label, dot, tail = host.partition(".")
    return bool(dot) and bool(label) and tail == rest


def _name_problem(leaf: _Node, host: str) -> str | None:
    """Why the leaf does not cover ``host`` (a sentence), or None if it does."""
    ident = _host_id(host)
    dns, ips, _count = _sans(leaf.cert)
    if ident is None:
        return f"{_clip(host)!r} is not a valid host name or IP address."
    if ident[0] == "ip":
        # RFC 6125 1.7.2 / RFC 5280 4.2.1.6: an address matches only an iPAddress SAN.
        address = ident[1]
        if any(_ip_equal(a, address) for a in ips):
            return None
        if any(d == str(address) for d in dns):
            return (
                f"The address {address} is listed as a DNS name, not as an IP address entry; "
                "clients only match addresses against iPAddress entries."
            )
        return f"The certificate holds no IP address entry for {address}."
    name = ident[1]
    if any(_dns_matches(p, name) for p in dns):
        return None
    if any(p.startswith("*.") and "." not in p[2:].rstrip(".") for p in dns):
        return (
            f"No SAN matches {name}; a wildcard directly over a top-level domain is refused "
            "by OpenSSL and browsers."
        )
    if not dns and _common_name(leaf.subject).lower().rstrip(".") == name:
        return (
            f"{name} appears only in the subject CN, which clients ignore when checking names "
            "(RFC 6125 6.4.4; the CA/Browser Forum requires it in subjectAltName)."
        )
    return f"No subjectAltName entry of the certificate matches {name}."


def _ip_equal(text: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def _verifier_subject(host: str) -> x509.DNSName | x509.IPAddress | None:
    ident = _host_id(host)
    if ident is None:
        return None
    try:
        if ident[0] == "ip":
            return x509.IPAddress(ident[1])
        return x509.DNSName(ident[1])
    except ValueError:
        return None


# --- internals: the diagnosis itself ------------------------------------------------------------


def _days(delta: timedelta) -> int:
    return int(delta.total_seconds() // 86400)


@dataclass(slots=True, kw_only=True)
class _Diagnosis:
    """One call's working state (never shared: made and dropped inside :func:`diagnose`)."""

    chain: Sequence[bytes]
    host: str
    trust: TrustStore
    now: datetime
    warn_days: int
    fail_days: int
    fetched: dict[str, bytes | None]
    findings: list[Finding] = field(default_factory=list)
    signed_cache: dict[tuple[bytes, bytes], bool] = field(default_factory=dict)
    store_nodes: dict[int, _Node | None] = field(default_factory=dict)  # id(cert) -> node

    # -- entry --------------------------------------------------------------------------------

    def run(self) -> ChainDiagnosis:
        if not self.chain:
            return ChainDiagnosis(host=_clip(self.host), valid=False, findings=(CHAIN_EMPTY(),))
        presented, duplicates, unparseable = self._parse_presented()
        self._report_unparseable(unparseable)
        if not presented or presented[0].info.position != 1:
            # Without the first certificate there is no server certificate to judge.
            return ChainDiagnosis(
                host=_clip(self.host),
                valid=False,
                presented=tuple(n.info for n in presented),
                findings=tuple(self.findings),
            )
        fetched_nodes, fetch_notes = self._parse_fetched_all()

        leaf, leaf_moved = self._pick_leaf(presented, fetched_nodes)
        path, anchored = self._build_path(leaf, presented, fetched_nodes)

        subject = _verifier_subject(self.host)
        valid, verified, error = self._verify(subject, presented[0], presented[1:])
        valid_with_fetched: bool | None = None
        if fetched_nodes:
            valid_with_fetched, verified_fetched, _ = self._verify(
                subject, presented[0], [*presented[1:], *fetched_nodes]
            )
            if valid_with_fetched and not valid and verified_fetched:
                path, anchored = verified_fetched, True
        if valid and verified:
            # The verifier's own path is authoritative when it found one.
            path, anchored = verified, True

        self._check_name(leaf)
        self._check_validity(path, anchored)
        self._check_keys(path)
        self._check_signatures(path, anchored)
        self._check_usage(path)
        self._check_trust(path, anchored, presented, fetch_notes, bool(valid_with_fetched))
        self._check_layout(path, presented, duplicates, leaf_moved)
        if len(self.chain) > MAX_PRESENTED:
            self.findings.append(
                CHAIN_EXTRA_CERTS(
                    detail=f"The server sent {len(self.chain)} certificates; only the first "
                    f"{MAX_PRESENTED} were examined. A real chain has two to four.",
                    evidence={"sent": len(self.chain), "examined": MAX_PRESENTED},
                )
            )
        if not valid:
            self._explain_rejection(error, path, anchored, subject, fetched_nodes)
        else:
            self.findings.append(self._valid_finding(path))
        return ChainDiagnosis(
            host=_clip(self.host),
            valid=valid,
            valid_with_fetched=valid_with_fetched,
            path=tuple(n.info for n in path),
            presented=tuple(n.info for n in presented),
            findings=tuple(self.findings),
            fetch_url=None if anchored else self._next_fetch(path),
            verifier_error=_clip(error),
        )

    # -- parsing ------------------------------------------------------------------------------

    def _parse_presented(self) -> tuple[list[_Node], dict[bytes, list[int]], list[_Unparseable]]:
        presented: list[_Node] = []
        positions: dict[bytes, list[int]] = {}
        unparseable: list[_Unparseable] = []
        for index, raw in enumerate(self.chain[:MAX_PRESENTED]):
            position = index + 1
            der = bytes(raw)
            fingerprint = _sha256_hex(der)
            cert = _load_der(der)
            if cert is None:
                unparseable.append(
                    _Unparseable(
                        position=position,
                        reason="not a DER X.509 certificate (truncated or corrupted)",
                        size=len(der),
                        fingerprint_sha256=fingerprint,
                    )
                )
                continue
            if der in positions:
                positions[der].append(position)
                continue
            try:
                node = _make_node(cert, der, source="presented", position=position)
            except _PARSE_ERRORS as exc:
                unparseable.append(
                    _Unparseable(
                        position=position,
                        reason=f"malformed field: {_clip(str(exc), 160)}",
                        size=len(der),
                        fingerprint_sha256=fingerprint,
                    )
                )
                continue
            positions[der] = [position]
            presented.append(node)
        duplicates = {der: places for der, places in positions.items() if len(places) > 1}
        return presented, duplicates, unparseable

    def _report_unparseable(self, unparseable: list[_Unparseable]) -> None:
        for bad in unparseable:
            what = "server certificate" if bad.position == 1 else "certificate"
            self.findings.append(
                CERT_UNPARSEABLE(
                    detail=f"The {what} at position {bad.position} ({bad.size} bytes) cannot "
                    f"be parsed: {bad.reason}.",
                    evidence={
                        "position": bad.position,
                        "size": bad.size,
                        "reason": bad.reason,
                        "fingerprint_sha256": bad.fingerprint_sha256,
                    },
                )
            )

    @property
    def store_index(self) -> Mapping[x509.Name, tuple[x509.Certificate, ...]]:
        return self.trust.by_subject

    def _store_node(self, cert: x509.Certificate) -> _Node | None:
        key = id(cert)
        if key not in self.store_nodes:
            try:
                der = cert.public_bytes(serialization.Encoding.DER)
                node: _Node | None = _make_node(cert, der, source="trust_store")
            except _PARSE_ERRORS:
                node = None
            self.store_nodes[key] = node
        return self.store_nodes[key]

    def _store_candidates(self, name: x509.Name) -> list[_Node]:
        nodes = (self._store_node(cert) for cert in self.store_index.get(name, ()))
        return [n for n in nodes if n is not None]

    def _store_twin(self, node: _Node) -> _Node | None:
        """The trust store's node for the same certificate as ``node``, if it holds one."""
        for cert in self.store_index.get(node.subject, ()):
            if cert == node.cert:  # equality compares the DER encoding
                return self._store_node(cert)
        return None

    def _parse_fetched_all(self) -> tuple[list[_Node], dict[str, str]]:
        nodes: list[_Node] = []
        notes: dict[str, str] = {}
        seen: set[bytes] = set()
        for url, body in list(self.fetched.items())[:MAX_AIA_FETCHES]:
            if body is None:
                notes[url] = "could not be fetched"
                continue
            if len(body) > MAX_AIA_BYTES:
                notes[url] = f"served {len(body)} bytes, more than the {MAX_AIA_BYTES} allowed"
                continue
            certs = _parse_fetched(body)
            usable = 0
            for cert in certs:
                try:
                    der = cert.public_bytes(serialization.Encoding.DER)
                    if der in seen:
                        continue
                    node = _make_node(cert, der, source="aia", fetched_from=url)
                except _PARSE_ERRORS:
                    continue
                seen.add(der)
                nodes.append(node)
                usable += 1
            notes[url] = (
                f"served {usable} certificate(s)" if usable else "served no usable certificate"
            )
        return nodes, notes

    # -- path building ------------------------------------------------------------------------

    def _issued(self, child: _Node, issuer: _Node) -> bool:
        """RFC 5280 6.1.3 (a)(1) and (a)(4): issuer name chaining plus the signature."""
        if child.issuer != issuer.subject:
            return False
        # RFC 5280 4.2.1.1: the AKI key identifier, when both sides have one, must match.
        if child.aki is not None and issuer.ski is not None and child.aki != issuer.ski:
            return False
        key = (child.der, issuer.der)
        if key not in self.signed_cache:
            self.signed_cache[key] = _signed_by(child.cert, issuer.cert)
        return self.signed_cache[key]

    def _is_anchor(self, node: _Node) -> bool:
        return node.source == "trust_store" or self._store_twin(node) is not None

    def _build_path(
        self, leaf: _Node, presented: Sequence[_Node], fetched: Sequence[_Node]
    ) -> tuple[list[_Node], bool]:
        """Depth-first path search, preferring trust-store issuers (RFC 4158 in miniature).

        Returns the first path that ends at a trust anchor, else the longest one found.
        """
        budget = [_SEARCH_BUDGET]
        best: list[_Node] = [leaf]

        def extend(path: list[_Node]) -> list[_Node] | None:
            nonlocal best
            top = path[-1]
            if self._is_anchor(top):
                return path
            if len(path) > len(best):
                best = list(path)
            if len(path) >= _MAX_DEPTH:
                return None
            in_path = {n.der for n in path}
            # Store issuers first: a path to a trust anchor is what the verifier looks for.
            candidates = [
                *self._store_candidates(top.issuer),
                *(n for n in presented if n.subject == top.issuer),
                *(n for n in fetched if n.subject == top.issuer),
            ]
            for candidate in candidates:
                if candidate.der in in_path or budget[0] <= 0:
                    continue
                budget[0] -= 1
                if candidate.der == top.der or not self._issued(top, candidate):
                    continue
                found = extend([*path, self._store_twin(candidate) or candidate])
                if found is not None:
                    return found
            return None

        found = extend([leaf])
        if found is not None:
            return found, True
        return best, False

    def _pick_leaf(
        self, presented: Sequence[_Node], fetched: Sequence[_Node]
    ) -> tuple[_Node, bool]:
        """The server certificate: the first one sent, unless that is a CA certificate and a
        later end-entity certificate chains up to it (the server sent its chain backwards).

        RFC 8446 4.4.2: the sender's certificate MUST come first; clients take the first.
        """
        first = presented[0]
        if not first.is_ca:
            return first, False
        for node in presented[1:]:
            if node.is_ca:
                continue
            path, _anchored = self._build_path(node, presented, fetched)
            if any(n.der == first.der for n in path):
                return node, True
        return first, False

    # -- the verifier -------------------------------------------------------------------------

    def _verify(
        self,
        subject: x509.DNSName | x509.IPAddress | None,
        leaf: _Node,
        intermediates: Sequence[_Node],
        *,
        at: datetime | None = None,
        roots: Sequence[x509.Certificate] | None = None,
    ) -> tuple[bool, list[_Node], str]:
        """Run cryptography's web-PKI verifier; (passed, its path as nodes, its message)."""
        if subject is None:
            return False, [], "the host name is not a valid DNS name or IP address"
        try:
            if roots is not None:
                store = Store(list(roots))
            else:
                store = self.trust.verifier_store()
            verifier = (
                PolicyBuilder()
                .store(store)
                .time(self.now if at is None else at)
                .build_server_verifier(subject)
            )
            chain = verifier.verify(leaf.cert, [n.cert for n in intermediates])
        except VerificationError as exc:
            return False, [], str(exc)
        except _PARSE_ERRORS as exc:
            return False, [], f"{type(exc).__name__}: {exc}"
        known = {n.der: n for n in (leaf, *intermediates)}
        nodes: list[_Node] = []
        for cert in chain:
            der = cert.public_bytes(serialization.Encoding.DER)
            node = known.get(der) or next(
                (self._store_node(c) for c in self.store_index.get(cert.subject, ()) if c == cert),
                None,
            )
            if node is None:
                return True, [], ""
            nodes.append(node)
        return True, nodes, ""

    # -- checks -------------------------------------------------------------------------------

    def _check_name(self, leaf: _Node) -> None:
        problem = _name_problem(leaf, self.host)
        if problem is None:
            return
        names = [*leaf.info.dns_names, *leaf.info.ip_addresses]
        shown = ", ".join(names[:10]) or "no names"
        more = f" and {leaf.info.san_count - 10} more" if leaf.info.san_count > 10 else ""
        self.findings.append(
            CERT_NAME_MISMATCH(
                detail=f"{problem} The certificate is valid for: {_clip(shown)}{more}.",
                evidence={
                    "host": _clip(self.host),
                    "dns_names": list(leaf.info.dns_names),
                    "ip_addresses": list(leaf.info.ip_addresses),
                    "san_count": leaf.info.san_count,
                    "common_name": leaf.info.common_name,
                    "certificate": _brief(leaf),
                },
            )
        )

    def _check_validity(self, path: Sequence[_Node], anchored: bool) -> None:
        """RFC 5280 4.1.2.5 for every certificate of the path (the verifier checks the trust
        anchor's dates too).

        The dates are encoded to the second and notAfter is inclusive, so the clock is read
        to the second too, as the verifier reads it: a certificate is still valid during
        the second of its notAfter.
        """
        now = self.now.replace(microsecond=0)
        for index, node in enumerate(path):
            cert = node.cert
            before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
            role = _role(index, node, anchored and index == len(path) - 1)
            evidence: dict[str, Json] = {
                "certificate": _brief(node),
                "not_before": node.info.not_before,
                "not_after": node.info.not_after,
            }
            if now > after:
                days = _days(now - after)
                self.findings.append(
                    CERT_EXPIRED(
                        title=f"{role.capitalize()} expired",
                        detail=f"The {role} {node.info.label!r} expired on "
                        f"{after.date().isoformat()} ({days} days ago).",
                        evidence={**evidence, "days_ago": days},
                        remediation=_expiry_remediation(role),
                    )
                )
            elif now < before:
                days = _days(before - now)
                self.findings.append(
                    CERT_NOT_YET_VALID(
                        title=f"{role.capitalize()} not yet valid",
                        detail=f"The {role} {node.info.label!r} is valid only from "
                        f"{before.isoformat()} (in {days} days).",
                        evidence={**evidence, "days_until_valid": days},
                    )
                )
            else:
                left = after - now
                if left <= timedelta(days=self.warn_days):
                    critical = left <= timedelta(days=self.fail_days)
                    days = _days(left)
                    self.findings.append(
                        CERT_EXPIRING_SOON(
                            status=Status.FAIL if critical else Status.WARN,
                            title=f"{role.capitalize()} expires in {days} days",
                            detail=f"The {role} {node.info.label!r} expires on "
                            f"{after.isoformat()} ({days} days left; warning at "
                            f"{self.warn_days}, critical at {self.fail_days}).",
                            evidence={**evidence, "days_left": days},
                            remediation=_expiry_remediation(role),
                        )
                    )

    def _check_keys(self, path: Sequence[_Node]) -> None:
        for index, node in enumerate(path):
            kind, bits = node.info.key_type, node.info.key_bits
            if kind in ("RSA", "DSA"):
                if bits >= RSA_MIN_BITS:
                    continue
                status = Status.FAIL if bits <= RSA_FAIL_BITS else Status.WARN
                minimum = RSA_MIN_BITS
            elif kind.startswith("EC "):
                if bits >= EC_MIN_BITS:
                    continue
                status = Status.FAIL if bits < EC_FAIL_BITS else Status.WARN
                minimum = EC_MIN_BITS
            else:
                continue
            role = _role(index, node, False)
            self.findings.append(
                KEY_WEAK(
                    status=status,
                    title=f"Weak {kind} key ({bits} bits) in the {role}",
                    detail=f"The {role} {node.info.label!r} has a {bits}-bit {kind} key; "
                    f"the minimum is {minimum} bits.",
                    evidence={"certificate": _brief(node), "key_type": kind, "key_bits": bits},
                )
            )

    def _check_signatures(self, path: Sequence[_Node], anchored: bool) -> None:
        """SHA-1/MD5 signatures on certificates whose signature a client checks: all but the
        trust anchor and an untrusted self-signed top (RFC 5280 6.1: the anchor's own signature
        is not part of path validation)."""
        for index, node in enumerate(path):
            last = index == len(path) - 1
            if last and (anchored or node.info.self_signed):
                continue
            algorithm = _signature_hash(node.cert)
            if not isinstance(algorithm, _SIG_WEAK_HASHES):
                continue
            role = _role(index, node, False)
            self.findings.append(
                CERT_SHA1_SIGNATURE(
                    title=f"{role.capitalize()} signed with {algorithm.name.upper()}",
                    detail=f"The {role} {node.info.label!r} is signed with "
                    f"{node.info.signature_algorithm}.",
                    evidence={
                        "certificate": _brief(node),
                        "signature_algorithm": node.info.signature_algorithm,
                    },
                )
            )

    def _check_usage(self, path: Sequence[_Node]) -> None:
        """RFC 5280 4.2.1.12 (EKU) and 4.2.1.3 (keyUsage) as TLS clients apply them."""
        for index, node in enumerate(path):
            problems: list[str] = []
            eku = _ext(node.cert, x509.ExtendedKeyUsage)
            if isinstance(eku, x509.ExtendedKeyUsage):
                usages = list(eku)
                if ExtendedKeyUsageOID.SERVER_AUTH not in usages and (
                    index == 0 or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages
                ):
                    # The web PKI wants serverAuth itself in the leaf (anyExtendedKeyUsage is
                    # refused there); CAs may carry anyExtendedKeyUsage instead (EKU chaining).
                    names = ", ".join(_clip(u._name, 40) for u in usages[:8]) or "none"
                    problems.append(f"extendedKeyUsage lists {names}, not serverAuth")
            ku = _ext(node.cert, x509.KeyUsage)
            if index == 0 and isinstance(ku, x509.KeyUsage):
                if not (ku.digital_signature or ku.key_encipherment or ku.key_agreement):
                    problems.append("keyUsage allows neither digitalSignature nor keyEncipherment")
            if not problems:
                continue
            role = _role(index, node, False)
            self.findings.append(
                CERT_NO_SERVER_AUTH(
                    title=f"{role.capitalize()} is not allowed for TLS servers",
                    detail=f"The {role} {node.info.label!r}: {'; '.join(problems)}.",
                    evidence={"certificate": _brief(node), "problems": problems},
                )
            )

    def _check_trust(
        self,
        path: Sequence[_Node],
        anchored: bool,
        presented: Sequence[_Node],
        fetch_notes: Mapping[str, str],
        fixed_by_fetch: bool,
    ) -> None:
        """Tell self-signed, untrusted root and missing intermediate apart (RFC 5280 6.1)."""
        leaf, top = path[0], path[-1]
        missing = [n for n in path if n.source == "aia" and not n.info.self_signed]
        evidence_fetch: dict[str, Json] = dict(fetch_notes)
        if anchored:
            if missing:
                self._report_missing(
                    leaf,
                    missing,
                    path,
                    confirmed=True,
                    fetch=evidence_fetch,
                    others_remain=not fixed_by_fetch,
                )
            return
        if top.info.self_signed and len(path) == 1:
            self.findings.append(
                CERT_SELF_SIGNED(
                    detail=f"The server certificate {leaf.info.label!r} is signed by its own "
                    "key and is not in the trust store.",
                    evidence={"certificate": _brief(leaf)},
                )
            )
            return
        if len(path) == 1:
            # Only the leaf: its issuer was neither sent, nor in the store, nor fetched.
            self._report_missing(
                leaf, [], path, confirmed=False, fetch=evidence_fetch, presented=presented
            )
            return
        self._report_untrusted(top, path)
        if missing:
            self._report_missing(leaf, missing, path, confirmed=False, fetch=evidence_fetch)

    def _report_untrusted(self, top: _Node, path: Sequence[_Node]) -> None:
        same_name = self.store_index.get(top.subject if top.info.self_signed else top.issuer)
        if top.info.self_signed:
            sent = " The server sends it itself, but sending a root never makes it trusted."
            where = "sent by the server" if top.source == "presented" else "fetched by AIA"
            detail = (
                f"The chain ends at the root {top.info.subject!r} ({where}), which is not in "
                f"the trust store.{sent if top.source == 'presented' else ''}"
            )
            confirmed = True
        else:
            detail = (
                f"The chain ends at {top.info.label!r}, issued by {top.info.issuer!r}, which "
                "was neither sent by the server nor found in the trust store: either that is a "
                "private root this client does not trust, or another intermediate is missing."
            )
            if top.info.ca_issuers:
                detail += " Fetching the AIA caIssuers URL would tell which."
            confirmed = False
        if same_name:
            detail += (
                " The trust store holds a certificate of that name, but with a different key "
                "(a re-issued root, or a cross-certificate the server should send)."
            )
        self.findings.append(
            CHAIN_UNTRUSTED_ROOT(
                detail=detail,
                evidence={
                    "root": top.info.subject if top.info.self_signed else top.info.issuer,
                    "confirmed": confirmed,
                    "path": [_brief(n) for n in path],
                },
            )
        )

    def _report_missing(
        self,
        leaf: _Node,
        missing: Sequence[_Node],
        path: Sequence[_Node],
        *,
        confirmed: bool,
        fetch: dict[str, Json],
        presented: Sequence[_Node] = (),
        others_remain: bool = False,
    ) -> None:
        evidence: dict[str, Json] = {"confirmed": confirmed, "fetched": fetch}
        if missing:
            names = ", ".join(repr(n.info.subject) for n in missing)
            urls = ", ".join(n.info.fetched_from for n in missing)
            evidence["missing"] = [n.info.as_evidence() for n in missing]
            if confirmed:
                anchor = path[-1].info.subject
                detail = (
                    f"The server does not send the intermediate {names}. Adding intermediate "
                    f"{names} (fetched from {urls}) fixes the chain: with it, the path reaches "
                    f"the trusted root {anchor!r}."
                )
                if others_remain:
                    detail += " The other faults reported here remain until they are fixed."
            else:
                detail = (
                    f"The server does not send the intermediate {names} (fetched from "
                    f"{urls}), but adding it alone does not make the chain trusted."
                )
            remediation = (
                f"Install the intermediate certificate {names} in the server's chain file "
                f"after the server certificate {_CHAIN_FILE_HINT}."
            )
        else:
            issuer = leaf.info.issuer
            detail = (
                f"The server sends only its own certificate: its issuer {issuer!r} was not "
                "sent and is not a trusted root."
            )
            url = next(iter(leaf.info.ca_issuers), "")
            if url and url in fetch:
                detail += f" Its AIA caIssuers URL {url} {fetch[url]}."
            elif url:
                detail += f" Its AIA caIssuers URL is {url}: fetch it to confirm."
                evidence["fetch_url"] = url
            else:
                detail += (
                    " The certificate names no AIA caIssuers URL; get the intermediate from "
                    "the CA's download page."
                )
            wrong = [n for n in presented[1:] if n.is_ca and n.der != leaf.der]
            if wrong:
                detail += (
                    f" The server sends {wrong[0].info.subject!r} instead, which did not issue "
                    "this certificate (an intermediate left over from an older certificate?)."
                )
            evidence["issuer"] = issuer
            remediation = (
                f"Install the intermediate certificate {issuer!r} in the server's chain file "
                f"after the server certificate {_CHAIN_FILE_HINT}."
            )
        self.findings.append(
            CHAIN_MISSING_INTERMEDIATE(detail=detail, evidence=evidence, remediation=remediation)
        )

    def _check_layout(
        self,
        path: Sequence[_Node],
        presented: Sequence[_Node],
        duplicates: Mapping[bytes, list[int]],
        leaf_moved: bool,
    ) -> None:
        """Order, duplicates, unrelated and root certificates in what the server sent."""
        position = {n.der: n.info.position for n in presented}
        in_path = [position[n.der] for n in path if n.der in position]
        sent_order = ", ".join(
            f"#{position[n.der]} {n.info.label!r}" for n in path if n.der in position
        )
        if leaf_moved:
            self.findings.append(
                CHAIN_WRONG_ORDER(
                    status=Status.FAIL,
                    title="The server certificate is not sent first",
                    detail=f"The server sends {presented[0].info.label!r} first, but its "
                    f"certificate is {path[0].info.label!r} at position "
                    f"{path[0].info.position}; clients take the first one as the server's. "
                    f"Path in sent positions: {sent_order}.",
                    evidence={"path_positions": in_path},
                )
            )
        elif in_path != sorted(in_path):
            self.findings.append(
                CHAIN_WRONG_ORDER(
                    detail="Each certificate should be followed by its issuer; the path, by "
                    f"sent position, is {sent_order}.",
                    evidence={"path_positions": in_path},
                )
            )
        if duplicates:
            listed = "; ".join(
                f"{self._label_of(der, presented)!r} at positions "
                + ", ".join(str(p) for p in places)
                for der, places in duplicates.items()
            )
            self.findings.append(
                CHAIN_DUPLICATE_CERTS(
                    detail=f"Sent more than once: {listed}.",
                    evidence={
                        "duplicates": [
                            {"fingerprint_sha256": _sha256_hex(der), "positions": places}
                            for der, places in duplicates.items()
                        ]
                    },
                )
            )
        path_der = {n.der for n in path}
        path_keys = {(n.subject, _spki(n.cert)) for n in path}
        extras = [
            n
            for n in presented
            if n.der not in path_der
            # A cross-certificate (same subject and key as a path certificate) or an issuer of
            # a path certificate is an alternative path, sent on purpose for older clients.
            and (n.subject, _spki(n.cert)) not in path_keys
            and not any(self._issued(p, n) for p in path)
        ]
        if extras:
            listed = ", ".join(f"#{n.info.position} {n.info.label!r}" for n in extras)
            self.findings.append(
                CHAIN_EXTRA_CERTS(
                    detail=f"Not part of the path to the root: {listed}.",
                    evidence={"extra": [_brief(n) for n in extras]},
                )
            )
        anchor = path[-1]
        if len(path) > 1 and anchor.der in position and self._is_anchor(anchor):
            self.findings.append(
                CHAIN_ROOT_SENT(
                    detail=f"The trusted root {anchor.info.label!r} is sent at position "
                    f"{position[anchor.der]}; clients use their own copy.",
                    evidence={"certificate": _brief(anchor)},
                )
            )

    @staticmethod
    def _label_of(der: bytes, presented: Sequence[_Node]) -> str:
        return next((n.info.label for n in presented if n.der == der), "?")

    def _explain_rejection(
        self,
        error: str,
        path: Sequence[_Node],
        anchored: bool,
        subject: x509.DNSName | x509.IPAddress | None,
        fetched: Sequence[_Node],
    ) -> None:
        """Add ``tls.chain.rejected`` when our findings do not account for the rejection.

        When they seem to, the verifier runs again with those faults undone (a time inside
        every validity period, a name the certificate holds, the path's top as anchor); if it
        still refuses, there is a fault we have no code for, and its message is reported.
        """
        explained = any(
            f.code in _EXPLAINS_REJECTION and f.status == Status.FAIL for f in self.findings
        )
        if not explained:
            self._add_rejected(error, "")
            return
        if not path:
            return
        unfixable = {
            CERT_UNPARSEABLE.code,
            KEY_WEAK.code,
            CERT_SHA1_SIGNATURE.code,
            CERT_NO_SERVER_AUTH.code,
        }
        if any(f.code in unfixable and f.status == Status.FAIL for f in self.findings):
            return  # faults we cannot undo for a second opinion
        start = max(n.cert.not_valid_before_utc for n in path)
        end = min(n.cert.not_valid_after_utc for n in path)
        if start > end:
            return
        at = start + (end - start) / 2 if not start <= self.now <= end else self.now
        leaf = path[0]
        alt_subject = _any_subject(leaf) if CERT_NAME_MISMATCH.code in self.codes else subject
        if alt_subject is None:
            return
        roots = [*self.trust] if anchored else [*self.trust, path[-1].cert]
        intermediates = [n for n in path[1:] if not self._is_anchor(n)]
        passed, _, second = self._verify(
            alt_subject, leaf, [*intermediates, *fetched], at=at, roots=roots
        )
        if not passed:
            self._add_rejected(second, "With the faults above set aside, ")

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def _add_rejected(self, message: str, prefix: str) -> None:
        text = _clip(message or "no reason given", 400)
        self.findings.append(
            CHAIN_REJECTED(
                detail=f"{prefix}the verifier rejects the chain: {text}",
                evidence={"verifier_error": text},
            )
        )

    def _valid_finding(self, path: Sequence[_Node]) -> Finding:
        leaf = path[0]
        after = leaf.cert.not_valid_after_utc
        days = _days(after - self.now)
        arrows = " → ".join(repr(n.info.label) for n in path)
        return CHAIN_VALID(
            detail=f"Valid for {_clip(self.host)}: {arrows}; the server certificate expires "
            f"on {after.date().isoformat()} (in {days} days).",
            evidence={
                "path": [_brief(n) for n in path],
                "not_after": leaf.info.not_after,
                "days_left": days,
            },
        )

    def _next_fetch(self, path: Sequence[_Node]) -> str | None:
        """The AIA caIssuers URL of the path's top, if fetching it could take us further."""
        top = path[-1]
        if top.info.self_signed or len(self.fetched) >= MAX_AIA_FETCHES:
            return None
        for url in top.info.ca_issuers:
            # Only HTTP(S): LDAP URLs (also allowed by RFC 5280 4.2.2.1) are not fetched.
            if url.lower().startswith(("http://", "https://")) and url not in self.fetched:
                return url
        return None


def _spki(cert: x509.Certificate) -> bytes:
    try:
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except _PARSE_ERRORS:
        return b""


def _any_subject(leaf: _Node) -> x509.DNSName | x509.IPAddress | None:
    """A name the leaf holds, as a verifier subject (a wildcard made concrete)."""
    for name in leaf.info.dns_names:
        candidate = "x" + name[1:] if name.startswith("*.") else name
        subject = _verifier_subject(candidate)
        if subject is not None:
            return subject
    for address in leaf.info.ip_addresses:
        subject = _verifier_subject(address)
        if subject is not None:
            return subject
    return None


def _brief(node: _Node) -> dict[str, Json]:
    """The few fields that identify a certificate inside a finding's evidence."""
    return {
        "subject": node.info.subject,
        "issuer": node.info.issuer,
        "source": node.info.source,
        "position": node.info.position,
        "not_after": node.info.not_after,
        "fingerprint_sha256": node.info.fingerprint_sha256,
    }


def _role(index: int, node: _Node, is_anchor: bool) -> str:
    if index == 0:
        return "server certificate"
    if is_anchor or node.info.self_signed:
        return "root certificate"
    return "intermediate certificate"


def _expiry_remediation(role: str) -> str:
    if role == "server certificate":
        return CERT_EXPIRED.remediation
    if role == "intermediate certificate":
        return (
            "Download the current intermediate from the CA and replace the old one in the "
            f"server's chain file {_CHAIN_FILE_HINT}."
        )
    return (
        "The root at the end of this chain is (almost) out of date: install the CA's current "
        "chain, which leads to a newer root, or move to a CA whose root is current."
    )
