"""The lab's private PKI: a trusted root, its intermediate, and the per-scenario bad certificates.

Pure: no network. Everything is written as PEM (plus one DER) into one directory, which the lab
hands to nginx, Dovecot and Postfix, and which tests read back::

    <directory>/root-ca.pem                  trusted lab root (what users pass as --ca-file)
    <directory>/root-ca.key
    <directory>/intermediate-ca.pem          signs every trusted lab leaf
    <directory>/intermediate-ca.der          served by the lab at a leaf's AIA caIssuers URL
    <directory>/intermediate-ca.key
    <directory>/untrusted-root-ca.pem        a second root, deliberately NOT in root-ca.pem
    <directory>/untrusted-root-ca.key
    <directory>/untrusted-intermediate-ca.pem
    <directory>/untrusted-intermediate-ca.key
    <directory>/certs/<name>.pem             the chain exactly as the server should send it
    <directory>/certs/<name>.key             the leaf key, PKCS#8, unencrypted, mode 0600

Kinds of certificate (``CertSpec.kind``), and what a client must conclude about each:

=================  =============================================================================
good               valid chain: leaf, intermediate
expired            notAfter in the past
not_yet_valid      notBefore in the future
expiring           valid, but notAfter = now + ``days_left`` days
wrong_name         SANs are ``WRONG_NAMES`` (under ``.invalid``), no address SANs
self_signed        the leaf signs itself; chain holds only the leaf
untrusted_root     issued under a second root that is not in ``ca_file``
leaf_only          chain holds only the leaf (missing intermediate; pair with ``aia_url``)
wrong_order        chain holds the intermediate first, then the leaf (no OpenSSL server can send it)
rsa1024            1024-bit RSA leaf key
sha1               leaf signed with SHA-1 (made with the ``openssl`` command line, see below)
wildcard           SAN ``*.<parent of dns_names[0]>``
no_server_auth     extendedKeyUsage is clientAuth only
extra_certs        chain holds leaf, intermediate, an unrelated certificate, the intermediate again
with_root          chain holds leaf, intermediate, root
misordered         chain holds leaf, root, intermediate: out of order, as a real server can send it
=================  =============================================================================

Speed: the lab issues about a hundred certificates at start-up, so the CAs use EC P-256 keys
(generated in microseconds) and one RSA-2048 leaf key is generated per ``LabPKI`` and shared by
every leaf except ``rsa1024``, which gets its own (also shared) 1024-bit key.

SHA-1: ``cryptography`` refuses to sign with SHA-1, so the ``sha1`` leaf is first built and
self-signed by ``cryptography``, then re-signed by the intermediate with
``openssl x509 -CA ... -sha1 -preserve_dates``. OpenSSL 3.0's ``x509 -CA`` only accepts a
self-signed input (its subject and issuer, and its SKI and AKI, must match), which is why the
intermediate's AKI is left out of that first build; OpenSSL adds it back when it re-signs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = [
    "CERT_KINDS",
    "CertKind",
    "CertSpec",
    "IssuedCert",
    "LabPKI",
    "LabPKIError",
]

CertKind = Literal[
    "good",
    "expired",
    "not_yet_valid",
    "expiring",
    "wrong_name",
    "self_signed",
    "untrusted_root",
    "leaf_only",
    "wrong_order",
    "rsa1024",
    "sha1",
    "wildcard",
    "no_server_auth",
    "extra_certs",
    "with_root",
    "misordered",
]

CERT_KINDS: Final[tuple[CertKind, ...]] = (
    "good",
    "expired",
    "not_yet_valid",
    "expiring",
    "wrong_name",
    "self_signed",
    "untrusted_root",
    "leaf_only",
    "wrong_order",
    "rsa1024",
    "sha1",
    "wildcard",
    "no_server_auth",
    "extra_certs",
    "with_root",
    "misordered",
)
"""Every kind ``LabPKI.issue`` can make, in the order of the module docstring's table."""

CA_VALIDITY: Final = timedelta(days=3652)  # ten years, leap days included
CA_BACKDATE: Final = timedelta(days=1)
LEAF_VALIDITY: Final = timedelta(days=365)
# Back-dated so that a client whose clock is a little behind the lab's still accepts the leaf.
LEAF_BACKDATE: Final = timedelta(hours=1)

WRONG_NAMES: Final[tuple[str, ...]] = ("wrong-name.invalid", "www.wrong-name.invalid")
"""SANs of a ``wrong_name`` leaf: ``.invalid`` (RFC 2606 section 2) can never be a lab name."""

_LAB_ORG: Final = "rca lab"
_LEAF_RSA_BITS: Final = 2048
_WEAK_RSA_BITS: Final = 1024
_RSA_EXPONENT: Final = 65537
# X.520 ub-common-name (RFC 5280 appendix A.1): a longer CN cannot be encoded.
_CN_MAX_LENGTH: Final = 64
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_OPENSSL_TIMEOUT_S: Final = 30.0

_ROOT: Final = "root-ca"
_INTERMEDIATE: Final = "intermediate-ca"
_UNTRUSTED_ROOT: Final = "untrusted-root-ca"
_UNTRUSTED_INTERMEDIATE: Final = "untrusted-intermediate-ca"


class LabPKIError(RuntimeError):
    """The PKI could not be built: the ``openssl`` tool failed or produced something unexpected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertSpec:
    """What to issue: one server certificate (and its chain file) of a given kind.

    ``name`` is the file stem, unique within one ``LabPKI``. ``dns_names`` are the SANs (the first
    also becomes the subject CN); ``ip_addresses`` are added as iPAddress SANs. ``days_left`` is
    required for, and only allowed with, kind ``expiring``. ``aia_url`` and ``ocsp_url`` go into
    the leaf's Authority Information Access extension (RFC 5280 section 4.2.2.1).
    """

    name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    kind: CertKind = "good"
    days_left: int | None = None
    aia_url: str | None = None
    ocsp_url: str | None = None

    def __post_init__(self) -> None:
        # Accept lists from callers but keep the frozen object hashable.
        object.__setattr__(self, "dns_names", tuple(self.dns_names))
        object.__setattr__(self, "ip_addresses", tuple(self.ip_addresses))
        if not _NAME_RE.fullmatch(self.name) or ".." in self.name:
            raise ValueError(f"certificate name {self.name!r} is not a safe file stem")
        if self.kind not in CERT_KINDS:
            raise ValueError(
                f"unknown certificate kind {self.kind!r}; expected one of {CERT_KINDS}"
            )
        if not self.dns_names and not self.ip_addresses:
            raise ValueError(f"{self.name}: a certificate needs at least one DNS name or address")
        for dns_name in self.dns_names:
            if not dns_name.isascii() or not dns_name or " " in dns_name:
                # RFC 5280 section 4.2.1.6: dNSName is an IA5String, so IDNs go in as A-labels.
                raise ValueError(f"{self.name}: DNS name {dns_name!r} must be ASCII (use A-labels)")
        for address in self.ip_addresses:
            ipaddress.ip_address(address)  # raises ValueError on garbage
        if self.kind == "expiring":
            if self.days_left is None or self.days_left < 0:
                raise ValueError(f"{self.name}: kind 'expiring' needs days_left >= 0")
        elif self.days_left is not None:
            raise ValueError(f"{self.name}: days_left only applies to kind 'expiring'")
        if self.kind == "wildcard" and (not self.dns_names or self.dns_names[0].count(".") < 2):
            # "*.<parent>" must leave at least two labels under the star: clients refuse
            # wildcards that cover a whole top-level domain (RFC 6125 section 7.2).
            raise ValueError(f"{self.name}: kind 'wildcard' needs dns_names[0] with 3+ labels")


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCert:
    """A certificate written to disk by ``LabPKI.issue``.

    ``cert_file`` holds ``chain`` in that order (leaf first unless the kind says otherwise, as
    ``wrong_order`` does); ``key_file`` holds the leaf's private key (PEM, unencrypted, 0600).
    ``fingerprint_sha256`` is the lower-case hex SHA-256 of the leaf's DER.
    """

    name: str
    kind: CertKind
    cert_file: Path
    key_file: Path
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    fingerprint_sha256: str


@dataclass(frozen=True, slots=True)
class _Authority:
    """A CA certificate with its key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


class LabPKI:
    """The lab's certificate authority: make it with ``LabPKI.create``, then ``issue`` leaves.

    All validity periods are relative to the ``now`` given to ``create`` (truncated to whole
    seconds, as X.509 times are), so tests can pin the clock.
    """

    def __init__(
        self,
        *,
        directory: Path,
        now: datetime,
        root: _Authority,
        intermediate: _Authority,
        untrusted_root: _Authority,
        untrusted_intermediate: _Authority,
    ) -> None:
        """Use ``LabPKI.create``; this constructor only assembles already-written parts."""
        self._directory = directory
        self._now = now
        self._root = root
        self._intermediate = intermediate
        self._untrusted_root = untrusted_root
        self._untrusted_intermediate = untrusted_intermediate
        # Per-instance caches (never module-level): RSA key generation dominates issuing time.
        self._rsa_keys: dict[int, tuple[rsa.RSAPrivateKey, bytes]] = {}  # bits -> (key, PEM)
        self._unrelated: x509.Certificate | None = None
        self._issued: set[str] = set()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, *, now: datetime | None = None) -> LabPKI:
        """Make (or reuse) the lab's CAs in ``directory`` and return the PKI.

        Makes a trusted root with one intermediate, and an untrusted second root with its own
        intermediate. If ``directory`` already holds a complete set of CAs from an earlier call,
        and they are valid from ``now`` until past a leaf's lifetime, they are reused, so a
        ``ca_file`` already handed to users stays good; otherwise all four are made afresh.
        """
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        now = now.astimezone(UTC).replace(microsecond=0)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "certs").mkdir(exist_ok=True)

        loaded = _load_authorities(directory, now)
        if loaded is None:
            root = _make_root(directory, _ROOT, "rca Lab Root CA", now)
            intermediate = _make_intermediate(
                directory, _INTERMEDIATE, "rca Lab Intermediate CA", root, now
            )
            untrusted_root = _make_root(directory, _UNTRUSTED_ROOT, "rca Untrusted Root CA", now)
            untrusted_intermediate = _make_intermediate(
                directory,
                _UNTRUSTED_INTERMEDIATE,
                "rca Untrusted Intermediate CA",
                untrusted_root,
                now,
            )
        else:
            root, intermediate, untrusted_root, untrusted_intermediate = loaded
        # Written every time so a crash between the files cannot leave a stale DER behind.
        _write_file(
            directory / f"{_INTERMEDIATE}.der",
            intermediate.cert.public_bytes(serialization.Encoding.DER),
            mode=0o644,
        )
        return cls(
            directory=directory,
            now=now,
            root=root,
            intermediate=intermediate,
            untrusted_root=untrusted_root,
            untrusted_intermediate=untrusted_intermediate,
        )

    # -- public properties --------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """Where the PEM files live."""
        return self._directory

    @property
    def now(self) -> datetime:
        """The reference time of every validity period (UTC, whole seconds)."""
        return self._now

    @property
    def ca_file(self) -> Path:
        """PEM of the trusted lab root only: what users pass as ``--ca-file``."""
        return self._directory / f"{_ROOT}.pem"

    @property
    def untrusted_ca_file(self) -> Path:
        """PEM of the second root, which issues ``untrusted_root`` leaves and is not trusted."""
        return self._directory / f"{_UNTRUSTED_ROOT}.pem"

    @property
    def intermediate_file(self) -> Path:
        """PEM of the trusted intermediate."""
        return self._directory / f"{_INTERMEDIATE}.pem"

    @property
    def intermediate_der_file(self) -> Path:
        """DER of the trusted intermediate, for the lab to serve at an AIA caIssuers URL.

        RFC 5280 section 4.2.2.1: an HTTP caIssuers URI points at a single DER certificate
        (``application/pkix-cert``) or a certs-only CMS bundle.
        """
        return self._directory / f"{_INTERMEDIATE}.der"

    @property
    def root_cert(self) -> x509.Certificate:
        """The trusted lab root."""
        return self._root.cert

    @property
    def intermediate_cert(self) -> x509.Certificate:
        """The trusted intermediate, issuer of every trusted leaf."""
        return self._intermediate.cert

    @property
    def untrusted_root_cert(self) -> x509.Certificate:
        """The second, untrusted root."""
        return self._untrusted_root.cert

    @property
    def untrusted_intermediate_cert(self) -> x509.Certificate:
        """The untrusted root's intermediate, issuer of ``untrusted_root`` leaves."""
        return self._untrusted_intermediate.cert

    # -- issuing ------------------------------------------------------------------------------

    def issue(self, spec: CertSpec) -> IssuedCert:
        """Issue a certificate as ``spec`` says and write its chain and key files."""
        if spec.name in self._issued:
            raise ValueError(f"a certificate named {spec.name!r} was already issued")
        key, key_pem = self._rsa_key(_WEAK_RSA_BITS if spec.kind == "rsa1024" else _LEAF_RSA_BITS)
        not_before, not_after = self._validity(spec)
        issuer = (
            self._untrusted_intermediate if spec.kind == "untrusted_root" else self._intermediate
        )
        builder = _leaf_builder(spec, key.public_key(), not_before, not_after)

        if spec.kind == "self_signed":
            leaf = (
                builder.issuer_name(_leaf_subject(spec))
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                    critical=False,
                )
                .sign(key, hashes.SHA256())
            )
        elif spec.kind == "sha1":
            leaf = self._sign_sha1(spec, builder, key)
        else:
            leaf = (
                builder.issuer_name(issuer.cert.subject)
                .add_extension(_aki(issuer.cert), critical=False)
                .sign(issuer.key, hashes.SHA256())
            )

        chain = self._chain(spec.kind, leaf, issuer)
        cert_file = self._directory / "certs" / f"{spec.name}.pem"
        key_file = self._directory / "certs" / f"{spec.name}.key"
        _write_file(key_file, key_pem, mode=0o600)
        _write_file(cert_file, b"".join(_pem(c) for c in chain), mode=0o644)
        self._issued.add(spec.name)
        return IssuedCert(
            name=spec.name,
            kind=spec.kind,
            cert_file=cert_file,
            key_file=key_file,
            leaf=leaf,
            chain=chain,
            fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        )

    def _validity(self, spec: CertSpec) -> tuple[datetime, datetime]:
        now = self._now
        if spec.kind == "expired":
            # Expired yesterday, after a normal one-year life.
            end = now - timedelta(days=1)
            return end - LEAF_VALIDITY, end
        if spec.kind == "not_yet_valid":
            start = now + timedelta(days=1)
            return start, start + LEAF_VALIDITY
        if spec.kind == "expiring":
            if spec.days_left is None:  # CertSpec.__post_init__ rules this out
                raise ValueError(f"{spec.name}: kind 'expiring' needs days_left")
            return now - LEAF_BACKDATE, now + timedelta(days=spec.days_left)
        return now - LEAF_BACKDATE, now + LEAF_VALIDITY

    def _chain(
        self, kind: CertKind, leaf: x509.Certificate, issuer: _Authority
    ) -> tuple[x509.Certificate, ...]:
        """The certificates in the order the server sends them (RFC 8446 section 4.4.2)."""
        if kind in ("self_signed", "leaf_only"):
            return (leaf,)
        if kind == "wrong_order":
            return (issuer.cert, leaf)
        if kind == "extra_certs":
            return (leaf, issuer.cert, self._unrelated_cert(), issuer.cert)
        if kind == "with_root":
            return (leaf, issuer.cert, self._root.cert)
        if kind == "misordered":
            return (leaf, self._root.cert, issuer.cert)
        return (leaf, issuer.cert)

    def _sign_sha1(
        self, spec: CertSpec, builder: x509.CertificateBuilder, key: rsa.RSAPrivateKey
    ) -> x509.Certificate:
        """Have ``openssl`` sign the leaf with ecdsa-with-SHA1 under the intermediate.

        ``cryptography`` refuses SHA-1 signatures, so build the leaf self-signed (subject as
        issuer, no AKI: OpenSSL 3.0 ``x509 -CA`` rejects input that is not self-signed) and let
        ``openssl`` re-sign it. ``-preserve_dates`` keeps our ``now``-relative validity, and
        ``-set_serial`` our serial. Signing needs no security-level change: OpenSSL's security
        level governs what a TLS endpoint accepts, not what ``x509`` may sign.
        """
        draft = builder.issuer_name(_leaf_subject(spec)).sign(key, hashes.SHA256())
        command = [
            "openssl", "x509",
            "-CA", str(self.intermediate_file),
            "-CAkey", str(self._directory / f"{_INTERMEDIATE}.key"),
            "-sha1",
            "-preserve_dates",
            "-set_serial", f"0x{draft.serial_number:x}",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                input=_pem(draft),
                capture_output=True,
                check=True,
                timeout=_OPENSSL_TIMEOUT_S,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", None) or b""
            detail = stderr.decode(errors="replace").strip()
            raise LabPKIError(
                f"openssl could not make the SHA-1 certificate: {exc} {detail}"
            ) from exc
        leaf = x509.load_pem_x509_certificate(done.stdout)
        # Check what we got rather than trust the tool's exit status alone.
        if not isinstance(leaf.signature_hash_algorithm, hashes.SHA1):
            raise LabPKIError("openssl did not sign the certificate with SHA-1")
        if leaf.issuer != self._intermediate.cert.subject or leaf.public_key() != key.public_key():
            raise LabPKIError("openssl changed the certificate's issuer or key unexpectedly")
        return leaf

    # -- per-instance caches ------------------------------------------------------------------

    def _rsa_key(self, bits: int) -> tuple[rsa.RSAPrivateKey, bytes]:
        """One RSA key (and its PEM) per size per PKI: generating them dominates issuing time."""
        if bits not in self._rsa_keys:
            key = rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=bits)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            self._rsa_keys[bits] = (key, pem)
        return self._rsa_keys[bits]

    def _unrelated_cert(self) -> x509.Certificate:
        """A self-signed certificate that has nothing to do with any lab chain."""
        if self._unrelated is None:
            key = ec.generate_private_key(ec.SECP256R1())
            name = _ca_name("rca Unrelated Extra Certificate")
            self._unrelated = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(self._now - LEAF_BACKDATE)
                .not_valid_after(self._now + LEAF_VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .sign(key, hashes.SHA256())
            )
        return self._unrelated


# -- helpers -------------------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _LAB_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _dns_sans(spec: CertSpec) -> tuple[str, ...]:
    """The dNSName SANs the leaf carries, after the kind has had its say."""
    if spec.kind == "wrong_name":
        return WRONG_NAMES
    if spec.kind == "wildcard":
        parent = spec.dns_names[0].split(".", 1)[1]
        return (f"*.{parent}",)
    return spec.dns_names


def _ip_sans(spec: CertSpec) -> tuple[str, ...]:
    """The iPAddress SANs: none for ``wrong_name``, whose point is that nothing matches."""
    return () if spec.kind == "wrong_name" else spec.ip_addresses


def _leaf_subject(spec: CertSpec) -> x509.Name:
    """CN = the first SAN (what old clients still look at), or empty if it cannot be encoded."""
    common_name = (_dns_sans(spec) + _ip_sans(spec))[0]
    if len(common_name) > _CN_MAX_LENGTH:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI = the issuer's SKI (RFC 5280 section 4.2.1.1), so chain builders can match keys."""
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _leaf_builder(
    spec: CertSpec,
    public_key: rsa.RSAPublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    """Everything of a leaf except issuer name and AKI, which depend on who signs it."""
    subject = _leaf_subject(spec)
    general_names: list[x509.GeneralName] = [x509.DNSName(n) for n in _dns_sans(spec)]
    general_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in _ip_sans(spec)]

    eku = (
        [ExtendedKeyUsageOID.CLIENT_AUTH]
        if spec.kind == "no_server_auth"
        else [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # RFC 5280 section 4.2.1.9: end entities assert cA FALSE; marked critical as CAs must.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # RFC 5280 section 4.2.1.3 (SHOULD be critical); keyEncipherment for TLS 1.2 RSA
        # key transport, digitalSignature for (EC)DHE.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # RFC 5280 section 4.2.1.6: SAN MUST be critical when the subject is empty.
        .add_extension(x509.SubjectAlternativeName(general_names), critical=len(subject) == 0)
    )
    access: list[x509.AccessDescription] = []
    if spec.ocsp_url is not None:
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(spec.ocsp_url)
            )
        )
    if spec.aia_url is not None:
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(spec.aia_url),
            )
        )
    if access:
        # RFC 5280 section 4.2.2.1: MUST be non-critical.
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder


def _ca_key_usage() -> x509.KeyUsage:
    # RFC 5280 section 4.2.1.3: keyCertSign for a CA; cRLSign as real CAs have it.
    return x509.KeyUsage(
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


def _ca_builder(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, path_length: int, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CA_BACKDATE)
        .not_valid_after(now - CA_BACKDATE + CA_VALIDITY)
        # RFC 5280 section 4.2.1.9: MUST be critical in CA certificates; pathLenConstraint
        # 1 on the root (one intermediate below it), 0 on the intermediate (leaves only).
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        # RFC 5280 section 4.2.1.2: MUST appear in conforming CA certificates.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _make_root(directory: Path, stem: str, common_name: str, now: datetime) -> _Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _ca_name(common_name)
    # RFC 5280 section 4.2.1.1: AKI MAY be omitted in a self-signed root; it is left out, as
    # in most real roots.
    cert = _ca_builder(name, key, 1, now).issuer_name(name).sign(key, hashes.SHA256())
    authority = _Authority(cert=cert, key=key)
    _write_authority(directory, stem, authority)
    return authority


def _make_intermediate(
    directory: Path, stem: str, common_name: str, root: _Authority, now: datetime
) -> _Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _ca_builder(_ca_name(common_name), key, 0, now)
        .issuer_name(root.cert.subject)
        .add_extension(_aki(root.cert), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    authority = _Authority(cert=cert, key=key)
    _write_authority(directory, stem, authority)
    return authority


def _write_authority(directory: Path, stem: str, authority: _Authority) -> None:
    key_pem = authority.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a certificate on disk without its key would be reloaded as "complete".
    _write_file(directory / f"{stem}.key", key_pem, mode=0o600)
    _write_file(directory / f"{stem}.pem", _pem(authority.cert), mode=0o644)


def _load_authorities(
    directory: Path, now: datetime
) -> tuple[_Authority, _Authority, _Authority, _Authority] | None:
    """The CAs an earlier ``create`` left in ``directory``, if complete, coherent and current."""
    loaded: list[_Authority] = []
    for stem in (_ROOT, _INTERMEDIATE, _UNTRUSTED_ROOT, _UNTRUSTED_INTERMEDIATE):
        try:
            cert = x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
            key = serialization.load_pem_private_key(
                (directory / f"{stem}.key").read_bytes(), password=None
            )
        except (OSError, ValueError, TypeError):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            return None
        # Reuse only CAs that cover every leaf we may issue relative to this `now`.
        if cert.not_valid_before_utc > now:
            return None
        if cert.not_valid_after_utc < now + LEAF_VALIDITY + timedelta(days=1):
            return None
        loaded.append(_Authority(cert=cert, key=key))
    root, intermediate, untrusted_root, untrusted_intermediate = loaded
    try:
        intermediate.cert.verify_directly_issued_by(root.cert)
        untrusted_intermediate.cert.verify_directly_issued_by(untrusted_root.cert)
    except (ValueError, TypeError, InvalidSignature):
        return None
    return root, intermediate, untrusted_root, untrusted_intermediate


def _write_file(path: Path, data: bytes, *, mode: int) -> None:
    """Write atomically (temp file + rename) so a server never reads half a PEM file."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
