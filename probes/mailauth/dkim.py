"""DKIM (RFC 6376) key records: parsing, key strength, and selector discovery.

DNS offers no way to list a domain's selectors, so a probe asks the selectors the user
names plus :data:`COMMON_SELECTORS`; finding none among them is a warning that lists
what was tried, never a failure (the domain may well sign with another selector).

- :func:`parse_dkim_key` reads a ``<selector>._domainkey.<domain>`` TXT record, or raises
  :class:`DkimParseError` (syntax, with the offset) or its subclass :class:`DkimKeyError`
  (base64 or key material that cannot be read).
- :func:`key_bits` gives the key size (RSA from the DER public key, with ``cryptography``).
- :func:`check_dkim_key`, :func:`check_dkim_selector` and :func:`check_dkim_selectors`
  never raise and return findings.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from probes.mailauth._txt import (
    describe_char,
    first_bad_byte,
    normalise_name,
    printable_or_tab,
    select,
    show,
)

if TYPE_CHECKING:
    from analyzer.protocols.resolve import Lookup

__all__ = [
    "COMMON_SELECTORS",
    "FINDINGS",
    "DkimKey",
    "DkimKeyError",
    "DkimParseError",
    "SelectorCheck",
    "check_dkim_key",
    "check_dkim_selector",
    "check_dkim_selectors",
    "dkim_name",
    "is_dkim_record",
    "key_bits",
    "parse_dkim_key",
]

RFC6376 = "https://www.rfc-editor.org/rfc/rfc6376"


def _ref(section: str) -> str:
    return f"{RFC6376}#section-{section}"


#: Selectors tried when the user names none: Microsoft 365, Google Workspace, and the
#: defaults of common MTAs, signing services and control panels.
COMMON_SELECTORS = ("selector1", "selector2", "google", "default", "k1", "s1", "s2", "dkim", "mail")

#: RSA keys shorter than this are a failure; exactly this long a warning (RFC 8301 3.2
#: requires verifiers to accept 1024-4096 bits and signers to use at least 1024, and
#: 2048 is the common recommendation).
RSA_MIN_BITS = 1024

VALID = FindingSpec(
    code="dns.dkim.valid",
    status=Status.PASS,
    title="DKIM key record found",
    meaning="A DKIM public key record is published at the selector and its key is usable.",
    reference=_ref("3.6.1"),
)
WEAK_KEY = FindingSpec(
    code="dns.dkim.weak_key",
    status=Status.FAIL,
    title="DKIM RSA key shorter than 1024 bits",
    meaning="RFC 8301 3.2: keys under 1024 bits can be factored and are rejected by "
    "verifiers, so signatures made with this key do not count.",
    remediation="Generate a 2048-bit RSA key (or Ed25519 alongside it), publish it under a "
    "new selector, switch signing to it, then revoke the old record (empty p=).",
    reference="https://www.rfc-editor.org/rfc/rfc8301#section-3.2",
)
KEY_1024 = FindingSpec(
    code="dns.dkim.key_1024",
    status=Status.WARN,
    title="DKIM RSA key is only 1024 bits",
    meaning="1024-bit RSA is the minimum verifiers accept (RFC 8301 3.2) and is considered "
    "weak; 2048 bits is the usual recommendation.",
    remediation="Publish a 2048-bit key under a new selector and switch signing to it.",
    reference="https://www.rfc-editor.org/rfc/rfc8301#section-3.2",
)
TESTING = FindingSpec(
    code="dns.dkim.testing",
    status=Status.WARN,
    title="DKIM key is in testing mode (t=y)",
    meaning="RFC 6376 3.6.1: with t=y verifiers must not treat messages differently "
    "whether the signature verifies or not, so the signature gives no protection.",
    remediation='Remove "y" from the t= tag once signing works.',
    reference=_ref("3.6.1"),
)
REVOKED = FindingSpec(
    code="dns.dkim.revoked",
    status=Status.WARN,
    title="DKIM key at this selector is revoked (empty p=)",
    meaning="RFC 6376 3.6.1: an empty p= tag revokes the key; every signature made with "
    "this selector fails. That is right for a retired selector, wrong for one in use.",
    remediation="If mail is still signed with this selector, publish its public key in p=.",
    reference=_ref("3.6.1"),
)
SYNTAX = FindingSpec(
    code="dns.dkim.syntax",
    status=Status.FAIL,
    title="DKIM key record has a syntax error",
    meaning="A key record that does not follow RFC 6376 3.6.1 is ignored by verifiers, so "
    "signatures with this selector fail.",
    remediation="Correct the tag shown in the detail; a record looks like "
    '"v=DKIM1; k=rsa; p=<base64 public key>".',
    reference=_ref("3.6.1"),
)
BAD_KEY = FindingSpec(
    code="dns.dkim.bad_key",
    status=Status.FAIL,
    title="DKIM public key cannot be read",
    meaning="The p= tag is not valid base64, or does not hold a public key of the type k= "
    "names, so verifiers cannot check signatures made with this selector.",
    remediation="Publish the public key again, exactly as the signing software exports it "
    "(base64 of the DER SubjectPublicKeyInfo for RSA; 32 raw bytes for Ed25519); check "
    "that splitting it into 255-byte strings lost no characters.",
    reference=_ref("3.6.1"),
)
UNSUPPORTED_TYPE = FindingSpec(
    code="dns.dkim.unsupported_key_type",
    status=Status.FAIL,
    title="DKIM key type is not rsa or ed25519",
    meaning="Verifiers know k=rsa (RFC 6376) and k=ed25519 (RFC 8463) only; a key of "
    "another type cannot verify anything.",
    remediation="Publish an RSA (2048-bit) or Ed25519 key.",
    reference=_ref("3.6.1"),
)
NO_SHA256 = FindingSpec(
    code="dns.dkim.no_sha256",
    status=Status.WARN,
    title="DKIM key excludes SHA-256 (h= tag)",
    meaning="The h= tag lists the hash algorithms the key may be used with. RFC 8301 3.1 "
    "forbids SHA-1 and RFC 6376 defines only SHA-1 and SHA-256, so a key whose h= leaves "
    "out sha256 verifies nothing.",
    remediation='Remove the h= tag or set "h=sha256", and sign with rsa-sha256.',
    reference="https://www.rfc-editor.org/rfc/rfc8301#section-3.1",
)
NOT_FOR_EMAIL = FindingSpec(
    code="dns.dkim.not_for_email",
    status=Status.FAIL,
    title='DKIM key is not for e-mail (s= lacks "email" and "*")',
    meaning="RFC 6376 3.6.1: the s= tag lists the services the key may be used for; "
    'without "email" or "*" verifiers ignore it for mail.',
    remediation='Remove the s= tag or set "s=email".',
    reference=_ref("3.6.1"),
)
MULTIPLE = FindingSpec(
    code="dns.dkim.multiple",
    status=Status.WARN,
    title="More than one DKIM key record at one selector",
    meaning="RFC 6376 3.6.2.2 leaves verifiers free to pick any of several records, so "
    "verification may fail at random.",
    remediation="Keep one key record per selector; use a new selector for a new key.",
    reference=_ref("3.6.2.2"),
)
NOT_FOUND = FindingSpec(
    code="dns.dkim.not_found",
    status=Status.WARN,
    title="No DKIM key found among the selectors tried",
    meaning="DNS cannot list a domain's DKIM selectors, so only the common names (and any "
    "the user gave) were tried. The domain may sign with another selector; a signed "
    "message's DKIM-Signature header (s= tag) names the one in use.",
    remediation="Run the check again with the selector from a DKIM-Signature header, or "
    "set up DKIM signing and publish its key record.",
    reference=_ref("3.6.2.1"),
)
TEMPERROR = FindingSpec(
    code="dns.dkim.temperror",
    status=Status.INCONCLUSIVE,
    title="A DKIM key record could not be fetched",
    meaning="The DNS look-up of a selector failed (SERVFAIL, REFUSED or a timeout); "
    "verifiers give a temporary error and nothing can be concluded about the key.",
    remediation="Check the authoritative DNS servers of the _domainkey name.",
    reference=_ref("3.6.2.2"),
)

FINDINGS: tuple[FindingSpec, ...] = (
    VALID,
    WEAK_KEY,
    KEY_1024,
    TESTING,
    REVOKED,
    SYNTAX,
    BAD_KEY,
    UNSUPPORTED_TYPE,
    NO_SHA256,
    NOT_FOR_EMAIL,
    MULTIPLE,
    NOT_FOUND,
    TEMPERROR,
)

# --- parsing -------------------------------------------------------------------------------------


class DkimParseError(ValueError):
    """A DKIM key record that does not follow RFC 6376 3.2 / 3.6.1.

    ``position`` is the 0-based offset in the record text (None when the error is not
    about one place), ``tag`` the tag concerned.
    """

    def __init__(self, message: str, *, position: int | None = None, tag: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.tag = tag

    def __str__(self) -> str:
        where = f" at offset {self.position}" if self.position is not None else ""
        what = f" (tag {self.tag!r})" if self.tag else ""
        return f"{self.message}{where}{what}"


class DkimKeyError(DkimParseError):
    """The p= key material cannot be read (bad base64, or not a key of type k=)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimKey:
    """A parsed key record (RFC 6376 3.6.1), defaults filled in."""

    text: str
    #: Every tag as written (name, value), in order; tag names are case-sensitive (3.2).
    tags: tuple[tuple[str, str], ...]
    version: str | None = None
    key_type: str = "rsa"
    #: The decoded p= value; empty when the key is revoked.
    public_key: bytes = b""
    #: Acceptable hash algorithms (h=); empty means all.
    hashes: tuple[str, ...] = ()
    services: tuple[str, ...] = ("*",)
    flags: tuple[str, ...] = ()
    notes: str = ""

    @property
    def revoked(self) -> bool:
        """RFC 6376 3.6.1: an empty p= means the key has been revoked."""
        return not self.public_key

    @property
    def testing(self) -> bool:
        """t=y: the domain is testing DKIM."""
        return "y" in self.flags

    def as_evidence(self) -> dict[str, Json]:
        """The record and its tags (the key shortened) as JSON-able data."""
        tags = {n: (v if n != "p" or len(v) <= 40 else v[:40] + "…") for n, v in self.tags}
        return {"record": self.text, "tags": tags}


_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_WSP = " \t\r\n"
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def is_dkim_record(data: bytes | str) -> bool:
    """True for a TXT string that looks like a key record (``v=DKIM1`` first, or a p= tag).

    Used to tell a key record from unrelated TXT data (e.g. a wildcard TXT) at a selector.
    """
    raw = data.encode("latin-1", "replace") if isinstance(data, str) else data
    if re.match(rb"[ \t]*v[ \t]*=[ \t]*DKIM1", raw):
        return True
    return re.search(rb"(?:^|;)[ \t]*p[ \t]*=", raw) is not None


def parse_dkim_key(record: str | bytes) -> DkimKey:
    """Parse a DKIM key record (RFC 6376 3.2 tag-list, 3.6.1 tags).

    Raises :class:`DkimParseError` for syntax errors (non-ASCII, a malformed tag, a
    repeated tag, v= not first or not DKIM1, no p=) and :class:`DkimKeyError` for p= that
    is not valid base64. Unknown tags are ignored, as RFC 6376 3.2 requires.
    """
    text = _as_text(record)
    tags = _split_tags(text)
    values: dict[str, tuple[str, int]] = {}
    for index, (name, value, at) in enumerate(tags):
        if name in values:
            # RFC 6376 3.2: a repeated tag makes the whole tag-list invalid.
            raise DkimParseError(f'the tag "{name}" appears twice', position=at, tag=name)
        if name == "v" and index != 0:
            raise DkimParseError('"v=" must be the first tag', position=at, tag="v")
        values[name] = (value, at)
    version = values["v"][0] if "v" in values else None
    if version is not None and version != "DKIM1":
        raise DkimParseError(
            f'the version must be "DKIM1", not "{version}"', position=values["v"][1], tag="v"
        )
    if "p" not in values:
        raise DkimParseError('the "p" tag is required (RFC 6376 3.6.1)', tag="p")
    p_value, p_at = values["p"]
    return DkimKey(
        text=text,
        tags=tuple((n, v) for n, v, _ in tags),
        version=version,
        key_type=values["k"][0].lower() if "k" in values else "rsa",
        public_key=_base64(p_value, p_at),
        hashes=_list(values["h"][0]) if "h" in values else (),
        services=_list(values["s"][0]) if "s" in values else ("*",),
        flags=_list(values["t"][0]) if "t" in values else (),
        notes=values["n"][0] if "n" in values else "",
    )


def _ascii_or_fws(code: int) -> bool:
    # RFC 6376 3.2: tag values are printable ASCII; folding white space may appear.
    return printable_or_tab(code) or code in (0x0D, 0x0A)


def _as_text(record: str | bytes) -> str:
    bad = first_bad_byte(record, allowed=_ascii_or_fws)
    if bad is not None:
        code = record[bad] if isinstance(record, bytes) else ord(record[bad])
        raise DkimParseError(f"{describe_char(code)}: DKIM records are ASCII", position=bad)
    return record.decode("ascii") if isinstance(record, bytes) else record


def _split_tags(text: str) -> list[tuple[str, str, int]]:
    """RFC 6376 3.2: tag-spec *( ";" tag-spec ) [ ";" ] → (name, value, offset)."""
    out: list[tuple[str, str, int]] = []
    start = 0
    parts = text.split(";")
    for index, part in enumerate(parts):
        at = start + len(part) - len(part.lstrip(_WSP))
        start += len(part) + 1
        spec = part.strip(_WSP)
        if not spec:
            if index == len(parts) - 1:
                continue  # the optional trailing ";"
            raise DkimParseError("empty tag (two ';' in a row)", position=at)
        name, eq, value = spec.partition("=")
        name = name.rstrip(_WSP)
        if not eq or _TAG_NAME.fullmatch(name) is None:
            raise DkimParseError(f'"{spec}" is not a tag=value pair', position=at)
        value = value.strip(_WSP)
        out.append((name, value, at))
    return out


def _list(value: str) -> tuple[str, ...]:
    """A colon-separated list (h=, s=, t=), lower case, blanks dropped."""
    return tuple(v for v in (part.strip(_WSP).lower() for part in value.split(":")) if v)


def _base64(value: str, at: int) -> bytes:
    """p= is base64 in which folding white space may appear (RFC 6376 3.6.1)."""
    compact = "".join(value.split())
    if not compact:
        return b""
    if _B64.fullmatch(compact) is None or len(compact) % 4:
        raise DkimKeyError("p= is not valid base64", position=at, tag="p")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise DkimKeyError("p= is not valid base64", position=at, tag="p") from None


def key_bits(key: DkimKey) -> int:
    """The key size in bits; raises :class:`DkimKeyError` for unreadable key material.

    RSA keys are DER SubjectPublicKeyInfo in practice (what OpenSSL exports); a bare
    PKCS#1 RSAPublicKey, which RFC 6376 3.6.1 also describes, is accepted too. Ed25519
    keys (RFC 8463 4.2) are the 32 raw public-key bytes.
    """
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: PLC0415

    if key.revoked:
        raise DkimKeyError("the key is revoked (empty p=)", tag="p")
    if key.key_type == "ed25519":
        if len(key.public_key) != 32:
            raise DkimKeyError(f"an Ed25519 key is 32 bytes, not {len(key.public_key)}", tag="p")
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(key.public_key)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise DkimKeyError(f"not an Ed25519 key: {exc}", tag="p") from None
        return 256
    if key.key_type != "rsa":
        raise DkimKeyError(f'unsupported key type k="{key.key_type}"', tag="k")
    try:
        # Accepts both DER SubjectPublicKeyInfo and a bare PKCS#1 RSAPublicKey.
        loaded = serialization.load_der_public_key(key.public_key)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DkimKeyError("p= does not hold a DER-encoded public key", tag="p") from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise DkimKeyError(
            f"k=rsa, but p= holds a non-RSA key ({type(loaded).__name__})",
            tag="p",
        )
    return loaded.key_size


# --- checks --------------------------------------------------------------------------------------


def dkim_name(selector: str, domain: str) -> str:
    """The DNS name of a selector's key record (RFC 6376 3.6.2.1)."""
    return f"{selector.strip().strip('.')}._domainkey.{normalise_name(domain)}"


def check_dkim_key(selector: str, domain: str, record: str | bytes) -> tuple[Finding, ...]:
    """Findings for one key record text at ``selector``; never raises."""
    name = dkim_name(selector, domain)
    shown = show(record) if isinstance(record, bytes) else record
    base: dict[str, Json] = {"selector": selector, "name": name, "record": shown}
    try:
        key = parse_dkim_key(record)
    except DkimKeyError as exc:
        return (BAD_KEY(detail=f"{name}: {exc}", evidence=base),)
    except DkimParseError as exc:
        evidence = {**base, "position": exc.position, "tag": exc.tag}
        return (SYNTAX(detail=f"{name}: {exc}", evidence=evidence),)
    evidence = {"selector": selector, "name": name, **key.as_evidence()}
    if key.revoked:
        return (REVOKED(detail=f"{name}: the key is revoked (empty p=)", evidence=evidence),)
    out: list[Finding] = []
    if key.key_type not in ("rsa", "ed25519"):
        return (UNSUPPORTED_TYPE(detail=f'{name}: k="{key.key_type}"', evidence=evidence),)
    try:
        bits = key_bits(key)
    except DkimKeyError as exc:
        return (BAD_KEY(detail=f"{name}: {exc}", evidence=evidence),)
    evidence["key_type"] = key.key_type
    evidence["bits"] = bits
    if key.key_type == "rsa" and bits < RSA_MIN_BITS:
        out.append(WEAK_KEY(detail=f"{name}: {bits}-bit RSA key", evidence=evidence))
    elif key.key_type == "rsa" and bits == RSA_MIN_BITS:
        out.append(KEY_1024(detail=f"{name}: 1024-bit RSA key", evidence=evidence))
    if key.testing:
        out.append(TESTING(detail=f"{name}: t={':'.join(key.flags)}", evidence=evidence))
    if key.hashes and "sha256" not in key.hashes:
        out.append(NO_SHA256(detail=f"{name}: h={':'.join(key.hashes)}", evidence=evidence))
    if not {"*", "email"} & set(key.services):
        out.append(NOT_FOR_EMAIL(detail=f"{name}: s={':'.join(key.services)}", evidence=evidence))
    if not any(f.status is Status.FAIL for f in out):
        out.append(
            VALID(detail=f"{name}: {bits}-bit {key.key_type.upper()} key", evidence=evidence)
        )
    return tuple(out)


SelectorState = Literal["found", "absent", "temperror"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectorCheck:
    """The outcome of asking one selector."""

    selector: str
    name: str
    state: SelectorState
    records: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()


def check_dkim_selector(selector: str, domain: str, answer: Lookup) -> SelectorCheck:
    """Judge the TXT answer for one selector's name; never raises.

    TXT data that is not a key record (say, from a wildcard) counts as absent.
    """
    name = dkim_name(selector, domain)
    chosen = select(answer, is_dkim_record)
    if chosen.state == "temperror":
        finding = TEMPERROR(detail=f"{name}: {chosen.detail}", evidence=answer.evidence())
        return SelectorCheck(selector=selector, name=name, state="temperror", findings=(finding,))
    if chosen.state == "none":
        return SelectorCheck(selector=selector, name=name, state="absent")
    texts = tuple(show(r) for r in chosen.records)
    findings: list[Finding] = []
    if chosen.state == "multiple":
        findings.append(
            MULTIPLE(
                detail=f"{name} has {len(texts)} key records",
                evidence={"selector": selector, "name": name, "records": list(texts)},
            )
        )
    for data in chosen.records:
        findings.extend(check_dkim_key(selector, domain, data))
    return SelectorCheck(
        selector=selector, name=name, state="found", records=texts, findings=tuple(findings)
    )


def check_dkim_selectors(domain: str, answers: Mapping[str, Lookup]) -> tuple[Finding, ...]:
    """Findings for every selector tried (``selector → TXT answer``); never raises.

    When no selector holds a key record, one ``dns.dkim.not_found`` warning lists the
    selectors tried (and those whose look-up failed).
    """
    checks = [check_dkim_selector(sel, domain, answer) for sel, answer in answers.items()]
    out: list[Finding] = [f for check in checks for f in check.findings]
    if not any(c.state == "found" for c in checks):
        tried = [c.selector for c in checks]
        failed = [c.selector for c in checks if c.state == "temperror"]
        detail = f"no key record for {normalise_name(domain)} at: {', '.join(tried) or '(none)'}"
        if failed:
            detail += f" (look-up failed for {', '.join(failed)})"
        out.append(
            NOT_FOUND(
                detail=detail,
                evidence={
                    "domain": normalise_name(domain),
                    "selectors_tried": tried,
                    "names": [c.name for c in checks],
                    "lookup_failed": failed,
                },
            )
        )
    return tuple(out)
