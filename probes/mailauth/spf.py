"""SPF (RFC 7208): record parsing, the full evaluation tree, and ``check_host()``.

- :func:`parse_spf` turns a record into terms (mechanisms with their qualifier, modifiers)
  or raises :class:`SpfParseError` with the offset and the offending term. Macro syntax
  (RFC 7208 7) is validated too.
- :func:`evaluate_spf` is the diagnostic: it walks *every* DNS-querying term of the record
  and of everything it includes or redirects to (the worst case a receiver meets), counts
  DNS-querying terms (limit 10) and void look-ups (limit 2, RFC 7208 4.6.4), marks where a
  limit was crossed and goes on to show what lies beyond, within our own bounds on depth
  and total work so that a hostile record (include loops, fan-out bombs) ends quickly.
- :func:`check_host` is RFC 7208 4's ``check_host()`` for one address: first match wins,
  limits end the evaluation with ``permerror``.

Both ask the DNS only through the injected :data:`~probes.mailauth.TxtLookup`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypeAlias

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status, to_json, worst
from probes.mailauth._txt import (
    describe_char,
    first_bad_byte,
    normalise_name,
    printable_ascii,
    safe_lookup,
    select,
    show,
)

if TYPE_CHECKING:
    from analyzer.protocols.resolve import Lookup
    from probes.mailauth import TxtLookup

__all__ = [
    "FINDINGS",
    "HostCheck",
    "Mechanism",
    "Modifier",
    "SpfEvaluation",
    "SpfNode",
    "SpfParseError",
    "SpfRecord",
    "SpfResult",
    "Term",
    "address_finding",
    "check_host",
    "evaluate_spf",
    "is_spf_record",
    "parse_spf",
]

RFC7208 = "https://www.rfc-editor.org/rfc/rfc7208"


def _ref(section: str) -> str:
    return f"{RFC7208}#section-{section}"


#: RFC 7208 4.6.4: at most 10 terms that cause DNS queries (include, a, mx, ptr, exists,
#: redirect) per check_host() evaluation, counted over everything it includes.
DNS_TERM_LIMIT = 10
#: RFC 7208 4.6.4: at most 2 "void" look-ups (NXDOMAIN or an empty answer).
VOID_LOOKUP_LIMIT = 2
#: RFC 7208 4.6.4: an "mx" term whose look-up gives more than 10 MX records is a permerror,
#: and a "ptr" term (or %{p}) uses at most 10 of the PTR names.
MX_LIMIT = 10
PTR_LIMIT = 10

# Our own bounds on the diagnostic walk, regardless of the RFC limits, so that the tree
# past the limit can be shown without a hostile record costing unbounded work.
#: Deepest include/redirect nesting followed.
MAX_DEPTH = 12
#: DNS-querying terms walked in total (the tree past the limit is shown up to here).
MAX_DNS_TERMS_WALKED = 4 * DNS_TERM_LIMIT
#: DNS queries sent in total by one evaluation (mx and ptr cost several each).
MAX_QUERIES = 300
#: Nodes in the evaluation tree; the rest of a record is summarised in one node.
MAX_NODES = 200

# --- findings ------------------------------------------------------------------------------------

VALID = FindingSpec(
    code="dns.spf.valid",
    status=Status.PASS,
    title="SPF record found and valid",
    meaning="The domain publishes one SPF record; it parses, and evaluating it stays within "
    "the limits of RFC 7208 4.6.4 (10 DNS-querying terms, 2 void look-ups).",
    reference=_ref("4"),
)
MISSING = FindingSpec(
    code="dns.spf.missing",
    status=Status.WARN,
    title="No SPF record",
    meaning='The domain publishes no TXT record starting with "v=spf1", so check_host() '
    'gives "none": receivers cannot tell forged senders from real ones, and DMARC cannot '
    "pass through SPF.",
    remediation='Publish one TXT record at the domain, e.g. "v=spf1 mx -all" listing the hosts '
    'that send its mail; a domain that sends no mail should publish "v=spf1 -all".',
    reference=_ref("4.5"),
)
MULTIPLE = FindingSpec(
    code="dns.spf.multiple",
    status=Status.FAIL,
    title="More than one SPF record",
    meaning='RFC 7208 4.5: when a domain has more than one "v=spf1" record, check_host() '
    'gives "permerror", so SPF fails for all of its mail.',
    remediation="Merge the records into a single TXT record and delete the others.",
    reference=_ref("4.5"),
)
SYNTAX = FindingSpec(
    code="dns.spf.syntax",
    status=Status.FAIL,
    title="SPF record has a syntax error",
    meaning='A record that does not follow the RFC 7208 12 grammar gives "permerror" for '
    "every message, whatever term comes first.",
    remediation="Correct the term shown in the TXT record (see the position in the detail).",
    reference=_ref("4.6"),
)
TOO_MANY_LOOKUPS = FindingSpec(
    code="dns.spf.too_many_lookups",
    status=Status.FAIL,
    title="SPF evaluation needs more than 10 DNS look-ups",
    meaning="RFC 7208 4.6.4 limits the terms that cause DNS queries (include, a, mx, ptr, "
    "exists, redirect) to 10 per evaluation, includes counted; past it receivers give "
    '"permerror", so senders listed after the limit fail SPF.',
    remediation="Reduce the DNS-querying terms: replace a and mx terms with ip4/ip6 ranges, "
    "drop includes of services no longer used, or flatten rarely changing includes.",
    reference=_ref("4.6.4"),
)
TOO_MANY_VOID = FindingSpec(
    code="dns.spf.too_many_void_lookups",
    status=Status.FAIL,
    title="SPF evaluation has more than 2 void look-ups",
    meaning="Terms whose DNS query gives NXDOMAIN or no records are void look-ups; RFC 7208 "
    '4.6.4 lets receivers give "permerror" past 2 of them.',
    remediation="Remove the terms that point at names without records (listed in the detail).",
    reference=_ref("4.6.4"),
)
INCLUDE_LOOP = FindingSpec(
    code="dns.spf.include_loop",
    status=Status.FAIL,
    title="SPF include or redirect loop",
    meaning="A record includes (or redirects to) a record that is already being evaluated; "
    'the evaluation can only end at the look-up limit, with "permerror".',
    remediation="Remove the include or redirect that points back up the chain.",
    reference=_ref("5.2"),
)
TARGET_MISSING = FindingSpec(
    code="dns.spf.target_missing",
    status=Status.FAIL,
    title="SPF include or redirect names a domain without an SPF record",
    meaning="RFC 7208 5.2 and 6.1: including, or redirecting to, a domain whose check_host() "
    'gives "none" is a "permerror".',
    remediation="Correct the domain name in the include or redirect, or remove the term.",
    reference=_ref("5.2"),
)
INVALID_TARGET = FindingSpec(
    code="dns.spf.invalid_target",
    status=Status.FAIL,
    title="SPF term names an invalid domain",
    meaning="After macro expansion the term's domain is not a valid DNS name (empty or "
    'over-long label), so the term cannot be evaluated and gives "permerror".',
    remediation="Correct the domain-spec of the term shown in the detail.",
    reference=_ref("4.8"),
)
MX_TOO_MANY = FindingSpec(
    code="dns.spf.mx_too_many",
    status=Status.FAIL,
    title='SPF "mx" term names a domain with more than 10 MX records',
    meaning='RFC 7208 4.6.4: an "mx" term whose look-up returns more than 10 MX records '
    'gives "permerror".',
    remediation='List the sending hosts with ip4/ip6 terms instead of the "mx" term.',
    reference=_ref("4.6.4"),
)
TEMPERROR = FindingSpec(
    code="dns.spf.temperror",
    status=Status.INCONCLUSIVE,
    title="A DNS failure stopped the SPF evaluation",
    meaning="A look-up needed by the evaluation failed (SERVFAIL, REFUSED, timeout): "
    'receivers give "temperror" and usually defer the message. Nothing can be concluded '
    "about the terms involved.",
    remediation="Check the authoritative DNS servers of the name shown in the detail.",
    reference=_ref("2.6.6"),
)
PLUS_ALL = FindingSpec(
    code="dns.spf.plus_all",
    status=Status.FAIL,
    title='SPF record ends with "+all": every host on the Internet passes',
    meaning='"+all" (or a bare "all") matches every address with the result "pass", so '
    "anyone may send as the domain and SPF protects nothing; through an include it makes "
    "the include match everyone.",
    remediation='End the record with "-all" (or "~all" while testing) after listing the '
    "real senders.",
    reference=_ref("5.1"),
)
NEUTRAL_ALL = FindingSpec(
    code="dns.spf.neutral_all",
    status=Status.WARN,
    title='SPF record ends with "?all": unlisted hosts are neutral',
    meaning='"?all" asserts nothing about hosts that are not listed, so forged mail is '
    "treated like mail without SPF.",
    remediation='End the record with "-all" (or "~all") once every real sender is listed.',
    reference=_ref("8.2"),
)
NO_ALL = FindingSpec(
    code="dns.spf.no_all",
    status=Status.WARN,
    title='SPF record has neither "all" nor "redirect"',
    meaning='When no term matches, the result defaults to "neutral" (RFC 7208 4.7), which '
    "asserts nothing about forged mail.",
    remediation='Add "-all" (or "~all") at the end of the record.',
    reference=_ref("4.7"),
)
PTR_USED = FindingSpec(
    code="dns.spf.ptr",
    status=Status.WARN,
    title='SPF record uses the "ptr" mechanism',
    meaning='RFC 7208 5.5: "ptr" SHOULD NOT be used; it is slow, unreliable, and loads the '
    "reverse DNS of the sender's network. Some receivers skip it.",
    remediation='Replace "ptr" with ip4/ip6 ranges or "a" terms for the sending hosts.',
    reference=_ref("5.5"),
)
SPF_RR_TYPE = FindingSpec(
    code="dns.spf.rr_type_99",
    status=Status.WARN,
    title="Obsolete SPF resource record (type 99) published",
    meaning="RFC 7208 3.1 and 14.1 retired the SPF RR type; receivers read only TXT. A "
    "type-99 record is ignored and tends to drift out of step with the TXT record.",
    remediation="Delete the SPF-type record and keep the TXT record only.",
    reference=_ref("3.1"),
)
REDIRECT_IGNORED = FindingSpec(
    code="dns.spf.redirect_ignored",
    status=Status.WARN,
    title='SPF "redirect" is ignored because the record has "all"',
    meaning='RFC 7208 6.1: a "redirect" modifier is ignored when the record contains an '
    '"all" mechanism, so the redirect target is never consulted.',
    remediation='Remove either the "all" mechanism or the "redirect" modifier.',
    reference=_ref("6.1"),
)
ADDRESS_RESULT = FindingSpec(
    code="dns.spf.address_result",
    status=Status.PASS,
    title="SPF result for a host address",
    meaning="Informational: what check_host() gives for mail sent from this address with "
    "the domain as sender (a receiving MX host need not pass SPF).",
    reference=_ref("2.6"),
)

FINDINGS: tuple[FindingSpec, ...] = (
    VALID,
    MISSING,
    MULTIPLE,
    SYNTAX,
    TOO_MANY_LOOKUPS,
    TOO_MANY_VOID,
    INCLUDE_LOOP,
    TARGET_MISSING,
    INVALID_TARGET,
    MX_TOO_MANY,
    TEMPERROR,
    PLUS_ALL,
    NEUTRAL_ALL,
    NO_ALL,
    PTR_USED,
    SPF_RR_TYPE,
    REDIRECT_IGNORED,
    ADDRESS_RESULT,
)

# --- parsing -------------------------------------------------------------------------------------


class SpfParseError(ValueError):
    """An SPF record that does not follow RFC 7208 12.

    ``position`` is the 0-based offset in the record text (None when the error is not
    about one place), ``term`` the offending term as written.
    """

    def __init__(self, message: str, *, position: int | None = None, term: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.term = term

    def __str__(self) -> str:
        where = f" at offset {self.position}" if self.position is not None else ""
        what = f" in term {self.term!r}" if self.term else ""
        return f"{self.message}{where}{what}"


class SpfResult(StrEnum):
    """The results of check_host() (RFC 7208 2.6)."""

    PASS = "pass"  # noqa: S105 - an SPF result, not a password
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"


#: RFC 7208 4.6.2: the result a matching mechanism gives, by qualifier.
QUALIFIER_RESULT: Mapping[str, SpfResult] = MappingProxyType(
    {"+": SpfResult.PASS, "-": SpfResult.FAIL, "~": SpfResult.SOFTFAIL, "?": SpfResult.NEUTRAL}
)

#: Mechanisms that cause a DNS query and count against the limit (RFC 7208 4.6.4);
#: the "redirect" modifier counts too.
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Mechanism:
    """A directive: qualifier + mechanism (RFC 7208 4.6.1, 5)."""

    text: str
    position: int
    qualifier: str
    name: str
    domain_spec: str | None = None
    network: str | None = None
    cidr4: int | None = None
    cidr6: int | None = None

    @property
    def queries_dns(self) -> bool:
        """True when evaluating it costs a DNS query (counted against the limit of 10)."""
        return self.name in DNS_MECHANISMS


@dataclass(frozen=True, slots=True, kw_only=True)
class Modifier:
    """A ``name=value`` term (RFC 7208 6): redirect, exp, or an unknown (ignored) one."""

    text: str
    position: int
    name: str
    value: str


Term: TypeAlias = Mechanism | Modifier


@dataclass(frozen=True, slots=True, kw_only=True)
class SpfRecord:
    """A parsed SPF record."""

    text: str
    terms: tuple[Term, ...]

    @property
    def mechanisms(self) -> tuple[Mechanism, ...]:
        """The directives, in order."""
        return tuple(t for t in self.terms if isinstance(t, Mechanism))

    @property
    def redirect(self) -> Modifier | None:
        """The ``redirect=`` modifier, if any."""
        return next(
            (t for t in self.terms if isinstance(t, Modifier) and t.name == "redirect"), None
        )

    @property
    def exp(self) -> Modifier | None:
        """The ``exp=`` modifier, if any."""
        return next((t for t in self.terms if isinstance(t, Modifier) and t.name == "exp"), None)

    @property
    def all(self) -> Mechanism | None:
        """The first ``all`` mechanism, if any (later terms are never evaluated)."""
        return next((m for m in self.mechanisms if m.name == "all"), None)

    def as_evidence(self) -> dict[str, Json]:
        """The terms as JSON-able data."""
        return {"record": self.text, "terms": [to_json(t) for t in self.terms]}


_VERSION = re.compile(r"v=spf1(?= |\Z)", re.IGNORECASE)
_TERM = re.compile(r"[^ ]+")
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=")
_MECHANISM = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9]*)")
# RFC 7208 7.1: macro-expand = "%{" macro-letter transformers *delimiter "}"
_MACRO_BODY = re.compile(r"([slodiphcrtvSLODIPHCRTV])([0-9]*)([rR]?)([.\-+,/_=]*)")
_EXP_ONLY_LETTERS = frozenset("crtCRT")
# RFC 7208 12: toplabel = ( *alphanum ALPHA *alphanum )
#                        / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
_TOPLABEL = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9]")
_IP4_CIDR = re.compile(r"0|[1-9][0-9]?")
_IP6_CIDR = re.compile(r"0|[1-9][0-9]{0,2}")


def is_spf_record(data: bytes | str) -> bool:
    """True when a TXT string is an SPF record: it begins with ``v=spf1`` then SP or end (4.5)."""
    raw = data.encode("latin-1", "replace") if isinstance(data, str) else data
    return raw[:6].lower() == b"v=spf1" and raw[6:7] in (b"", b" ")


def parse_spf(record: str | bytes) -> SpfRecord:
    """Parse an SPF record (RFC 7208 4.5, 4.6, 5, 6, 7, 12).

    Raises :class:`SpfParseError` with the offset and term for any syntax error, including
    a non-ASCII byte or a control character, an unknown mechanism, a bad CIDR length, a
    malformed macro, a domain-spec without a valid top label, and a repeated
    ``redirect``/``exp`` (RFC 7208 6).
    """
    text = _as_text(record)
    if _VERSION.match(text) is None:
        raise SpfParseError('an SPF record must begin with "v=spf1"', position=0)
    terms: list[Term] = []
    seen: dict[str, int] = {}
    for match in _TERM.finditer(text, 6):
        term = _parse_term(match.group(), match.start())
        if isinstance(term, Modifier) and term.name in ("redirect", "exp"):
            if term.name in seen:
                raise SpfParseError(
                    f'the "{term.name}" modifier appears more than once',
                    position=term.position,
                    term=term.text,
                )
            seen[term.name] = term.position
        terms.append(term)
    return SpfRecord(text=text, terms=tuple(terms))


def _as_text(record: str | bytes) -> str:
    bad = first_bad_byte(record, allowed=printable_ascii)
    if bad is not None:
        code = record[bad] if isinstance(record, bytes) else ord(record[bad])
        raise SpfParseError(
            f"{describe_char(code)}: SPF records are printable ASCII (RFC 7208 12)", position=bad
        )
    return record.decode("ascii") if isinstance(record, bytes) else record


def _parse_term(text: str, position: int) -> Term:
    modifier = _MODIFIER.match(text)
    if modifier is not None:
        name = modifier.group(1).lower()
        value = text[modifier.end() :]
        value_at = position + modifier.end()
        if name in ("redirect", "exp"):
            _check_domain_spec(value, value_at, text)
        else:
            # RFC 7208 6: unknown modifiers are ignored, but their value must still be a
            # syntactically valid macro-string.
            _scan_macro_string(value, value_at, text)
        return Modifier(text=text, position=position, name=name, value=value)
    mech = _MECHANISM.match(text)
    if mech is None:
        raise SpfParseError("not a mechanism or modifier", position=position, term=text)
    qualifier = mech.group(1) or "+"
    name = mech.group(2).lower()
    rest = text[mech.end() :]
    rest_at = position + mech.end()
    if name not in _MECHANISMS:
        if name in ("redirect", "exp") and rest.startswith("="):
            raise SpfParseError("a modifier takes no qualifier", position=position, term=text)
        raise SpfParseError(f'unknown mechanism "{mech.group(2)}"', position=position, term=text)
    base = Mechanism(text=text, position=position, qualifier=qualifier, name=name)
    if name == "all":
        if rest:
            raise SpfParseError('"all" takes no argument', position=rest_at, term=text)
        return base
    if name in ("include", "exists"):
        if not rest.startswith(":") or len(rest) == 1:
            raise SpfParseError(f'"{name}" needs ":" and a domain', position=rest_at, term=text)
        _check_domain_spec(rest[1:], rest_at + 1, text)
        return dataclasses.replace(base, domain_spec=rest[1:])
    if name == "ptr":
        if not rest:
            return base
        if not rest.startswith(":") or len(rest) == 1:
            raise SpfParseError(
                '"ptr" takes ":" and a domain, or nothing', position=rest_at, term=text
            )
        _check_domain_spec(rest[1:], rest_at + 1, text)
        return dataclasses.replace(base, domain_spec=rest[1:])
    if name in ("a", "mx"):
        return _parse_a_mx(base, rest, rest_at)
    return _parse_ip(base, rest, rest_at)


#: The longest tail of an "a"/"mx" argument that can be a dual-cidr-length (RFC 7208 5.6),
#: loosely (digits of any length) so that a malformed length is reported as such.
_CIDR_TAIL = re.compile(r"(?:/[0-9]*)?(?://[0-9]*)?\Z")


def _split_cidr(arg: str) -> tuple[str, str]:
    """Split ``domain-spec`` from a trailing ``/N``, ``//N`` or ``/N//M`` (RFC 7208 5.3, 5.4).

    Only the tail is a CIDR length: a domain-spec may hold any visible character but "%"
    (RFC 7208 7.1), "/" included, as in ``a:foo:bar/baz.example.com``.
    """
    for start in range(len(arg) + 1):
        if _CIDR_TAIL.match(arg, start):
            return arg[:start], arg[start:]
    return arg, ""  # not reached: the pattern matches the empty tail


def _parse_a_mx(base: Mechanism, rest: str, rest_at: int) -> Mechanism:
    text = base.text
    if rest.startswith(":"):
        spec, cidr = _split_cidr(rest[1:])
        if not spec:
            raise SpfParseError(f'"{base.name}:" needs a domain', position=rest_at, term=text)
        _check_domain_spec(spec, rest_at + 1, text)
        cidr_at = rest_at + 1 + len(spec)
    elif rest.startswith("/") or not rest:
        spec, cidr, cidr_at = "", rest, rest_at
    else:
        raise SpfParseError(f'unknown mechanism "{text}"', position=base.position, term=text)
    cidr4, cidr6 = _parse_dual_cidr(cidr, cidr_at, text)
    return dataclasses.replace(base, domain_spec=spec or None, cidr4=cidr4, cidr6=cidr6)


def _parse_dual_cidr(cidr: str, at: int, term: str) -> tuple[int | None, int | None]:
    """RFC 7208 5.6: dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ]."""
    if not cidr:
        return None, None
    v4_text: str | None
    v6_text: str | None
    if cidr.startswith("//"):
        v4_text, v6_text = None, cidr[2:]
    elif "//" in cidr[1:]:
        v4_text, v6_text = cidr[1:].split("//", 1)
    else:
        v4_text, v6_text = cidr[1:], None
    cidr4 = cidr6 = None
    if v4_text is not None:
        if _IP4_CIDR.fullmatch(v4_text) is None or int(v4_text) > 32:
            raise SpfParseError("invalid IPv4 CIDR length (0-32)", position=at, term=term)
        cidr4 = int(v4_text)
    if v6_text is not None:
        if _IP6_CIDR.fullmatch(v6_text) is None or int(v6_text) > 128:
            raise SpfParseError("invalid IPv6 CIDR length (0-128)", position=at, term=term)
        cidr6 = int(v6_text)
    return cidr4, cidr6


def _parse_ip(base: Mechanism, rest: str, rest_at: int) -> Mechanism:
    text = base.text
    if not rest.startswith(":") or len(rest) == 1:
        raise SpfParseError(f'"{base.name}" needs ":" and a network', position=rest_at, term=text)
    network, _, cidr = rest[1:].partition("/")
    has_cidr = "/" in rest
    cidr_at = rest_at + 2 + len(network)
    if base.name == "ip4":
        try:
            ipaddress.IPv4Address(network)
        except ValueError:
            raise SpfParseError("invalid IPv4 address", position=rest_at + 1, term=text) from None
        if has_cidr and (_IP4_CIDR.fullmatch(cidr) is None or int(cidr) > 32):
            raise SpfParseError("invalid IPv4 CIDR length (0-32)", position=cidr_at, term=text)
        return dataclasses.replace(base, network=network, cidr4=int(cidr) if has_cidr else None)
    try:
        if "%" in network:  # a scope id is not part of RFC 4291's text form
            raise ValueError(network)
        ipaddress.IPv6Address(network)
    except ValueError:
        raise SpfParseError("invalid IPv6 address", position=rest_at + 1, term=text) from None
    if has_cidr and (_IP6_CIDR.fullmatch(cidr) is None or int(cidr) > 128):
        raise SpfParseError("invalid IPv6 CIDR length (0-128)", position=cidr_at, term=text)
    return dataclasses.replace(base, network=network, cidr6=int(cidr) if has_cidr else None)


def _scan_macro_string(value: str, at: int, term: str, *, exp_text: bool = False) -> bool:
    """Validate a macro-string (RFC 7208 7.1); True when it ends with a macro-expand."""
    index = 0
    ends_with_expand = False
    while index < len(value):
        char = value[index]
        if char != "%":
            ends_with_expand = False
            index += 1
            continue
        follower = value[index + 1 : index + 2]
        if follower in ("%", "_", "-"):
            index += 2
            ends_with_expand = True
            continue
        if follower != "{":
            raise SpfParseError(
                'a "%" must be followed by "{", "%", "_" or "-" (RFC 7208 7.1)',
                position=at + index,
                term=term,
            )
        end = value.find("}", index + 2)
        if end < 0:
            raise SpfParseError('unterminated macro: missing "}"', position=at + index, term=term)
        body = _MACRO_BODY.fullmatch(value, index + 2, end)
        if body is None:
            raise SpfParseError(
                f"invalid macro {value[index : end + 1]!r} (RFC 7208 7.1)",
                position=at + index,
                term=term,
            )
        if body.group(1) in _EXP_ONLY_LETTERS and not exp_text:
            raise SpfParseError(
                f'macro letter "{body.group(1)}" is allowed only in explanation text '
                "(RFC 7208 7.2)",
                position=at + index,
                term=term,
            )
        if body.group(2) and int(body.group(2)[:6]) == 0:
            raise SpfParseError(
                "a macro's digit transformer must not be zero (RFC 7208 7.3)",
                position=at + index,
                term=term,
            )
        index = end + 1
        ends_with_expand = True
    return ends_with_expand


def _check_domain_spec(spec: str, at: int, term: str) -> None:
    """RFC 7208 7.1: domain-spec = macro-string domain-end;
    domain-end = ( "." toplabel [ "." ] ) / macro-expand."""
    if not spec:
        raise SpfParseError("empty domain", position=at, term=term)
    body = spec[:-1] if spec.endswith(".") and len(spec) > 1 else spec
    if _scan_macro_string(body, at, term):
        return
    dot = body.rfind(".")
    top = body[dot + 1 :]
    if dot < 0 or _TOPLABEL.fullmatch(top) is None:
        raise SpfParseError(
            f'"{spec}" is not a domain name ending in a valid top-level label (RFC 7208 7.1)',
            position=at,
            term=term,
        )


# --- macro expansion (RFC 7208 7) ----------------------------------------------------------------

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_EXPAND = re.compile(r"%(?:\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}|%|_|-)")


@dataclass(frozen=True, slots=True, kw_only=True)
class _MacroValues:
    sender: str
    domain: str
    ip: Address | None
    helo: str | None
    #: The validated name of ``ip`` chosen for %{p}; None when there is none (RFC 7208 7.3).
    ptr_name: str | None = None


class _Unresolved(Exception):
    """A macro needs a value we do not have (the connecting address, or HELO)."""


def _expand(spec: str, values: _MacroValues) -> str:
    def one(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "%%":
            return "%"
        if whole == "%_":
            return " "
        if whole == "%-":
            return "%20"
        letter, digits, reverse, delimiters = match.groups()
        raw = _macro_value(letter.lower(), values)
        parts = re.split("[" + re.escape(delimiters or ".") + "]", raw)
        if reverse:
            parts.reverse()
        if digits:
            keep = int(digits[:6])
            parts = parts[-keep:] if keep else parts
        expanded = ".".join(parts)
        # RFC 7208 7.3: an upper-case macro letter asks for URL escaping.
        return urllib.parse.quote(expanded, safe="") if letter.isupper() else expanded

    return _EXPAND.sub(one, spec)


def _macro_value(letter: str, values: _MacroValues) -> str:
    local, _, sender_domain = values.sender.rpartition("@")
    # RFC 7208 4.3: a sender without a local-part is read as "postmaster" at its domain,
    # for %{s} as for %{l}.
    local = local or "postmaster"
    if letter == "s":
        return f"{local}@{sender_domain}"
    if letter == "l":
        return local
    if letter == "o":
        return sender_domain
    if letter == "d":
        return values.domain
    if letter == "h":
        if values.helo is None:
            raise _Unresolved("%{h} needs the HELO name")
        return values.helo
    if values.ip is None:
        raise _Unresolved(f"%{{{letter}}} needs the connecting address")
    if letter == "i":
        if isinstance(values.ip, ipaddress.IPv6Address):
            # RFC 7208 7.3: IPv6 "i" is dot-separated nibbles.
            return ".".join(values.ip.exploded.replace(":", ""))
        return str(values.ip)
    if letter == "v":
        return "ip6" if isinstance(values.ip, ipaddress.IPv6Address) else "in-addr"
    if letter == "p":
        # RFC 7208 7.3: "unknown" only when no name is validated or the DNS failed.
        return values.ptr_name or "unknown"
    return str(values.ip)  # "c" (only in exp text, never reached for terms)


def _uses_p_macro(spec: str) -> bool:
    """True when ``spec`` expands %{p} (which costs reverse and forward look-ups)."""
    return any((m.group(1) or "") in ("p", "P") for m in _EXPAND.finditer(spec))


def _preferred_name(validated: tuple[str, ...], domain: str) -> str | None:
    """RFC 7208 7.3: the validated name for %{p}: ``domain`` itself, else a subdomain of
    it, else any validated name; None when there is none."""
    for wanted in (
        lambda n: n == domain,
        lambda n: n.endswith("." + domain),
        lambda _n: True,
    ):
        found = next((n for n in validated if wanted(n)), None)
        if found is not None:
            return found
    return None


def _target_name(expanded: str) -> str | None:
    """RFC 7208 4.8: trim to 253 characters from the left; None when not a valid name."""
    name = expanded.rstrip(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    labels = name.split(".")
    if not name or len(name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        return None
    return name.lower()


# --- evaluation ----------------------------------------------------------------------------------

NodeState = Literal[
    "ok",
    "void",
    "none",
    "temperror",
    "permerror",
    "loop",
    "unresolved",
    "not_evaluated",
    "after_all",
    "ignored",
]
_ERRORS = (SpfResult.PERMERROR, SpfResult.TEMPERROR)
_OVER_LOOKUPS = f"more than {DNS_TERM_LIMIT} DNS-querying terms (RFC 7208 4.6.4)"
_OVER_VOIDS = f"more than {VOID_LOOKUP_LIMIT} void look-ups (RFC 7208 4.6.4)"
_NOT_EVALUATED = "not evaluated: the diagnostic's work bound was reached"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpfNode:
    """One node of the evaluation tree: a record, or one of its terms.

    ``lookups`` and ``void_lookups`` are the running counts after this term (RFC 7208
    4.6.4; for a record node, after the whole record). ``past_limit`` marks terms evaluated
    beyond the limit of 10 (a receiver never gets there: it stops with permerror), and
    ``limit_crossed`` names the limits this very term exceeded. ``matched`` and a record's
    ``result`` are only known when an address was given (errors are always shown).
    """

    kind: str
    term: str
    domain: str
    state: NodeState = "ok"
    record: str = ""
    note: str = ""
    answers: tuple[str, ...] = ()
    lookups: int = 0
    void_lookups: int = 0
    past_limit: bool = False
    limit_crossed: tuple[str, ...] = ()
    matched: bool | None = None
    result: str | None = None
    children: tuple[SpfNode, ...] = ()

    def walk(self) -> tuple[SpfNode, ...]:
        """This node and every node below it, depth first."""
        out: list[SpfNode] = [self]
        for child in self.children:
            out.extend(child.walk())
        return tuple(out)

    def as_evidence(self) -> Json:
        """The tree as JSON-able data."""
        return to_json(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostCheck:
    """The check_host() result for one address, with the term that decided it."""

    ip: str
    domain: str
    result: SpfResult
    #: The term that decided (for an include, the chain down to the matching term); empty
    #: when the record as a whole decided (no record, a syntax error, a failed look-up).
    decided_by: str = ""
    #: For permerror and temperror: what went wrong, in words.
    reason: str = ""
    detail: str = ""
    lookups: int = 0
    void_lookups: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SpfEvaluation:
    """What :func:`evaluate_spf` learned about a domain's SPF policy."""

    domain: str
    #: The SPF record text (non-ASCII bytes shown as ``\\xNN``), None when there is none.
    record: str | None
    parsed: SpfRecord | None
    tree: SpfNode
    #: DNS-querying terms and void look-ups over the whole tree (the worst case).
    lookups: int
    void_lookups: int
    #: The walk stopped at our own work bounds: ``lookups`` is then a lower bound.
    truncated: bool
    #: check_host() for the address given to :func:`evaluate_spf`, if any.
    host: HostCheck | None
    findings: tuple[Finding, ...]

    @property
    def status(self) -> Status:
        """The worst status of the findings."""
        return worst(f.status for f in self.findings)


@dataclass(frozen=True, slots=True)
class _Issue:
    spec: FindingSpec
    domain: str
    detail: str
    term: str = ""
    record: str = ""


@dataclass(slots=True, kw_only=True)
class _Counts:
    """The counting fields of one term's node (a local, mutable scratch value)."""

    lookups: int = 0
    voids: int = 0
    past_limit: bool = False
    crossed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    """A record's evaluation: its node, result, deciding term and effective default."""

    node: SpfNode
    result: SpfResult
    decided_by: str = ""
    #: Qualifier of the effective "all" ("+", "-", "~", "?"); None when the record has
    #: neither "all" nor "redirect" (neutral by default); "" when unknown.
    default: str | None = ""
    #: The TXT look-up of the record's domain was void (NXDOMAIN / NODATA).
    void: bool = False
    #: Why an error result was reached, beyond the deciding term: the record-level cause
    #: (a syntax error, two records, a failed TXT look-up) or the failing term's problem.
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _TermOutcome:
    node: SpfNode
    matched: bool | None = None
    error: SpfResult | None = None
    decided_by: str = ""
    #: include / redirect: the target record's result and effective default.
    sub_result: SpfResult | None = None
    default: str | None = ""
    #: Why the term gave ``error`` (see :attr:`_Outcome.reason`).
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Got:
    """What a DNS-querying mechanism found."""

    error: SpfResult | None = None
    void: bool = False
    note: str = ""
    answers: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    exists: bool = False
    validated: tuple[str, ...] = ()
    ptr_target: str = ""

    def matches(self, ip: Address, term: Mechanism) -> bool:
        if term.name == "exists":
            return self.exists
        if term.name == "ptr":
            # RFC 7208 5.5: a validated name equal to, or a subdomain of, the target.
            target = self.ptr_target
            return any(n == target or n.endswith("." + target) for n in self.validated)
        bits = _cidr(term, ip)
        for text in self.addresses:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if address.version != ip.version:
                continue
            if ip in ipaddress.ip_network(f"{address}/{bits}", strict=False):
                return True
        return False


class _Memo:
    """Answers cached for one evaluation (never shared between evaluations)."""

    def __init__(self, lookup_fn: TxtLookup) -> None:
        self._fn = lookup_fn
        self._answers: dict[tuple[str, str], Lookup] = {}
        self.queries = 0

    async def __call__(self, name: str, rdtype: str) -> Lookup:
        key = (name, rdtype)
        if key not in self._answers:
            self.queries += 1
            self._answers[key] = await safe_lookup(self._fn, name, rdtype)
        return self._answers[key]


class _Evaluator:
    """One evaluation: counters, issues and the DNS cache live here, not in the module.

    ``full=True`` walks every term (the diagnostic tree); ``full=False`` is check_host():
    the first match ends a record and a crossed limit ends everything with permerror.
    """

    def __init__(
        self, memo: _Memo, *, full: bool, ip: Address | None, sender: str, helo: str | None
    ) -> None:
        self.memo = memo
        self.full = full
        self.ip = ip
        self.sender = sender
        self.helo = helo
        self.lookups = 0
        self.voids = 0
        self.nodes = 0
        #: Questions this evaluation asked (answers may come from the shared cache).
        self.asked = 0
        self.truncated = False
        self.issues: list[_Issue] = []
        self.over_lookups_at = ""
        self.over_voids_at = ""
        self.void_terms: list[str] = []
        self.parsed: dict[bytes, SpfRecord | SpfParseError] = {}

    # -- bookkeeping --

    async def ask(self, name: str, rdtype: str) -> Lookup:
        """One DNS question, counted against this evaluation's work bound."""
        self.asked += 1
        return await self.memo(name, rdtype)

    def issue(
        self, spec: FindingSpec, domain: str, detail: str, *, term: str = "", record: str = ""
    ) -> None:
        found = _Issue(spec, domain, detail, term, record)
        if found not in self.issues:
            self.issues.append(found)

    def exhausted(self) -> bool:
        """Our own work bound (independent of the RFC limits) is reached."""
        if self.lookups >= MAX_DNS_TERMS_WALKED or self.asked >= MAX_QUERIES:
            return True
        return self.full and self.nodes >= MAX_NODES

    def node(
        self,
        *,
        kind: str,
        term: str,
        domain: str,
        state: NodeState = "ok",
        record: str = "",
        note: str = "",
        answers: tuple[str, ...] = (),
        matched: bool | None = None,
        result: str | None = None,
        children: tuple[SpfNode, ...] = (),
        counts: _Counts | None = None,
    ) -> SpfNode:
        self.nodes += 1
        c = counts or _Counts()
        return SpfNode(
            kind=kind,
            term=term,
            domain=domain,
            state=state,
            record=record,
            note=note,
            answers=answers,
            lookups=c.lookups,
            void_lookups=c.voids,
            past_limit=c.past_limit,
            limit_crossed=c.crossed,
            matched=matched,
            result=result,
            children=children,
        )

    def count_lookup(self, term_text: str, domain: str) -> _Counts:
        """Count a DNS-querying term (RFC 7208 4.6.4), marking where the limit is crossed."""
        self.lookups += 1
        counts = _Counts(
            lookups=self.lookups, voids=self.voids, past_limit=self.lookups > DNS_TERM_LIMIT
        )
        if self.lookups == DNS_TERM_LIMIT + 1:
            self.over_lookups_at = f'"{term_text}" in {domain}'
            counts.crossed = ("lookups",)
        return counts

    def count_void(self, counts: _Counts, term_text: str, domain: str) -> bool:
        """Count a void look-up into ``counts``; True when check_host() must stop there."""
        self.voids += 1
        where = f'"{term_text}" in {domain}'
        self.void_terms.append(where)
        counts.voids = self.voids
        if self.voids == VOID_LOOKUP_LIMIT + 1:
            self.over_voids_at = where
            counts.crossed = (*counts.crossed, "void_lookups")
        return not self.full and self.voids > VOID_LOOKUP_LIMIT

    def parse(self, data: bytes) -> SpfRecord | SpfParseError:
        if data not in self.parsed:
            try:
                self.parsed[data] = parse_spf(data)
            except SpfParseError as exc:
                self.parsed[data] = exc
        return self.parsed[data]

    async def expand(self, spec: str, domain: str) -> str | _Unresolved | None:
        """The term's target name; _Unresolved when it needs what we lack; None if invalid."""
        ptr_name: str | None = None
        if self.ip is not None and _uses_p_macro(spec):
            got = await self.validated_names()
            ptr_name = _preferred_name(got.validated, domain)
        values = _MacroValues(
            sender=self.sender, domain=domain, ip=self.ip, helo=self.helo, ptr_name=ptr_name
        )
        try:
            return _target_name(_expand(spec, values))
        except _Unresolved as exc:
            return exc

    # -- records --

    async def record(self, domain: str, *, depth: int, path: tuple[str, ...]) -> _Outcome:
        """Fetch, select (RFC 7208 4.5), parse and evaluate the SPF record of ``domain``."""
        found = await self.ask(domain, "TXT")
        chosen = select(found, is_spf_record)
        if chosen.state == "temperror":
            self.issue(TEMPERROR, domain, f"TXT look-up of {domain}: {chosen.detail}")
            node = self.node(
                kind="record",
                term=domain,
                domain=domain,
                state="temperror",
                note=chosen.detail,
                result="temperror",
            )
            reason = f"TXT look-up of {domain} failed: {chosen.detail}"
            return _Outcome(node=node, result=SpfResult.TEMPERROR, reason=reason)
        if chosen.state == "none":
            node = self.node(
                kind="record",
                term=domain,
                domain=domain,
                state="none",
                note="no SPF record",
                result="none",
            )
            void = found.outcome in ("nxdomain", "nodata") or not found.records
            reason = f"{domain} has no SPF record"
            return _Outcome(node=node, result=SpfResult.NONE, void=void, reason=reason)
        if chosen.state == "multiple":
            texts = tuple(show(r) for r in chosen.records)
            self.issue(
                MULTIPLE, domain, f"{domain} has {len(texts)} SPF records: " + " | ".join(texts)
            )
            node = self.node(
                kind="record",
                term=domain,
                domain=domain,
                state="permerror",
                note=f"{len(texts)} SPF records (RFC 7208 4.5)",
                answers=texts,
                result="permerror",
            )
            reason = f"{domain} has {len(texts)} SPF records (RFC 7208 4.5)"
            return _Outcome(node=node, result=SpfResult.PERMERROR, reason=reason)
        text = show(chosen.record)
        parsed = self.parse(chosen.record)
        if isinstance(parsed, SpfParseError):
            self.issue(SYNTAX, domain, f"{domain}: {parsed}", term=parsed.term, record=text)
            node = self.node(
                kind="record",
                term=domain,
                domain=domain,
                state="permerror",
                record=text,
                note=str(parsed),
                result="permerror",
            )
            reason = f"syntax error in the SPF record of {domain}: {parsed}"
            return _Outcome(node=node, result=SpfResult.PERMERROR, reason=reason)
        return await self.terms(domain, parsed, depth=depth, path=path)

    async def terms(
        self, domain: str, record: SpfRecord, *, depth: int, path: tuple[str, ...]
    ) -> _Outcome:
        """Evaluate the mechanisms left to right, then the redirect (RFC 7208 4.6.2, 6.1)."""
        children: list[SpfNode] = []
        result: SpfResult | None = None
        decided_by = reason = ""
        all_mech = record.all
        mechanisms = record.mechanisms
        for index, term in enumerate(mechanisms):
            if all_mech is not None and term.position > all_mech.position:
                children.append(
                    self.node(
                        kind=term.name,
                        term=term.text,
                        domain=domain,
                        state="after_all",
                        note='never evaluated: after "all" (RFC 7208 5.1)',
                    )
                )
                continue
            if self.exhausted():
                self.truncated = True
                children.append(
                    self.node(
                        kind="truncated",
                        term=f"{len(mechanisms) - index} more term(s)",
                        domain=domain,
                        state="not_evaluated",
                        note=_NOT_EVALUATED,
                    )
                )
                break
            if term.name == "ptr":
                self.issue(
                    PTR_USED,
                    domain,
                    f'{domain} uses "{term.text}"',
                    term=term.text,
                    record=record.text,
                )
            outcome = await self.mechanism(term, domain, depth=depth, path=path)
            children.append(outcome.node)
            if result is None and outcome.error is not None:
                result, decided_by = outcome.error, outcome.decided_by or term.text
                reason = outcome.reason
            elif result is None and outcome.matched:
                result = QUALIFIER_RESULT[term.qualifier]
                decided_by = outcome.decided_by or term.text
            if result is not None and not self.full:
                break
        default: str | None = all_mech.qualifier if all_mech is not None else None
        redirect = record.redirect
        if redirect is not None and all_mech is not None:
            self.issue(
                REDIRECT_IGNORED,
                domain,
                f'{domain}: "{redirect.text}" is ignored because of "{all_mech.text}"',
                term=redirect.text,
                record=record.text,
            )
            children.append(
                self.node(
                    kind="redirect",
                    term=redirect.text,
                    domain=domain,
                    state="ignored",
                    note='ignored: the record has "all" (RFC 7208 6.1)',
                )
            )
        elif redirect is not None and (result is None or self.full):
            if self.exhausted():
                self.truncated = True
                default = ""
                children.append(
                    self.node(
                        kind="redirect",
                        term=redirect.text,
                        domain=domain,
                        state="not_evaluated",
                        note=_NOT_EVALUATED,
                    )
                )
            else:
                sub = await self.follow(
                    redirect.text, redirect.value, "redirect", domain, depth=depth, path=path
                )
                children.append(sub.node)
                default = sub.default if sub.error is None else ""
                if result is None:
                    result = sub.error or sub.sub_result or SpfResult.NEUTRAL
                    decided_by = sub.decided_by or redirect.text
                    reason = sub.reason
        for extra in record.terms:
            if isinstance(extra, Modifier) and extra.name != "redirect":
                explanation = extra.name == "exp"
                children.append(
                    self.node(
                        kind="exp" if explanation else "modifier",
                        term=extra.text,
                        domain=domain,
                        state="ignored",
                        note="explanation: not fetched"
                        if explanation
                        else "unknown modifier: ignored (RFC 7208 6)",
                    )
                )
        if result is None:
            result = SpfResult.NEUTRAL  # RFC 7208 4.7: nothing matched and no redirect
        shown = result.value if self.ip is not None or result in _ERRORS else None
        node = self.node(
            kind="record",
            term=domain,
            domain=domain,
            record=record.text,
            result=shown,
            children=tuple(children),
            counts=_Counts(lookups=self.lookups, voids=self.voids),
        )
        return _Outcome(
            node=node, result=result, decided_by=decided_by, default=default, reason=reason
        )

    # -- terms --

    async def mechanism(
        self, term: Mechanism, domain: str, *, depth: int, path: tuple[str, ...]
    ) -> _TermOutcome:
        if term.name == "all":
            node = self.node(kind="all", term=term.text, domain=domain, matched=True)
            return _TermOutcome(node=node, matched=True)
        if term.name in ("ip4", "ip6"):
            matched = self.match_network(term)
            node = self.node(kind=term.name, term=term.text, domain=domain, matched=matched)
            return _TermOutcome(node=node, matched=matched)
        if term.name == "include":
            spec = term.domain_spec or ""
            return await self.follow(term.text, spec, "include", domain, depth=depth, path=path)
        return await self.lookup_term(term, domain)

    def match_network(self, term: Mechanism) -> bool | None:
        if self.ip is None:
            return None
        wanted = ipaddress.IPv4Address if term.name == "ip4" else ipaddress.IPv6Address
        if not isinstance(self.ip, wanted):
            return False  # RFC 7208 5.6: ip4 never matches an IPv6 client, nor ip6 an IPv4 one
        network = ipaddress.ip_network(f"{term.network}/{_cidr(term, self.ip)}", strict=False)
        return self.ip in network

    def failed(
        self, kind: str, term_text: str, domain: str, counts: _Counts, note: str
    ) -> _TermOutcome:
        node = self.node(
            kind=kind, term=term_text, domain=domain, state="permerror", note=note, counts=counts
        )
        return _TermOutcome(node=node, error=SpfResult.PERMERROR, decided_by=term_text, reason=note)

    async def follow(
        self,
        term_text: str,
        spec: str,
        kind: str,
        domain: str,
        *,
        depth: int,
        path: tuple[str, ...],
    ) -> _TermOutcome:
        """include (RFC 7208 5.2) and redirect (6.1): evaluate another domain's record."""
        counts = self.count_lookup(term_text, domain)
        if not self.full and counts.past_limit:
            return self.failed(kind, term_text, domain, counts, _OVER_LOOKUPS)
        target = await self.expand(spec, domain)
        if isinstance(target, _Unresolved):
            node = self.node(
                kind=kind,
                term=term_text,
                domain=domain,
                state="unresolved",
                note=str(target),
                counts=counts,
            )
            return _TermOutcome(node=node)
        if target is None:
            self.issue(
                INVALID_TARGET,
                domain,
                f'{domain}: "{term_text}" expands to an invalid name',
                term=term_text,
            )
            return self.failed(kind, term_text, domain, counts, "invalid domain name")
        if target in path:
            chain = " → ".join((*path, target))
            self.issue(INCLUDE_LOOP, domain, f"{kind} loop: {chain}", term=term_text)
            return self.failed(kind, term_text, target, counts, f"loop: {chain}")
        if depth + 1 > MAX_DEPTH:
            self.truncated = True
            note = f"not evaluated: nested deeper than {MAX_DEPTH}"
            node = self.node(
                kind=kind,
                term=term_text,
                domain=target,
                state="not_evaluated",
                note=note,
                counts=counts,
            )
            return _TermOutcome(
                node=node, error=SpfResult.PERMERROR, decided_by=term_text, reason=note
            )
        sub = await self.record(target, depth=depth + 1, path=(*path, target))
        stop = self.count_void(counts, term_text, domain) if sub.void else False
        if sub.result is SpfResult.NONE:
            self.issue(
                TARGET_MISSING,
                domain,
                f'{domain}: "{term_text}" names {target}, which has no SPF record',
                term=term_text,
            )
        if kind == "include" and sub.default == "+":
            self.issue(
                PLUS_ALL,
                target,
                f'{target} (included by {domain}) ends with "+all": the include matches '
                "every address",
                term=term_text,
            )
        failed_child = sub.node.state in ("temperror", "permerror", "none")
        decided = f"{term_text} → {sub.decided_by}" if sub.decided_by else term_text
        matched: bool | None = None
        error: SpfResult | None = None
        reason = sub.reason
        if stop:
            error, decided, reason = SpfResult.PERMERROR, term_text, _OVER_VOIDS
        elif sub.result in _ERRORS:
            error = sub.result
        elif sub.result is SpfResult.NONE:
            error = SpfResult.PERMERROR  # RFC 7208 5.2 and 6.1: "none" becomes permerror
        elif kind == "include" and self.ip is not None:
            # RFC 7208 5.2: pass matches; fail, softfail and neutral do not.
            matched = sub.result is SpfResult.PASS
        node = self.node(
            kind=kind,
            term=term_text,
            domain=target,
            state=sub.node.state if failed_child else "ok",
            matched=matched,
            result=sub.node.result,
            children=(sub.node,),
            counts=counts,
        )
        return _TermOutcome(
            node=node,
            matched=matched,
            error=error,
            decided_by=decided if error is not None or matched or kind == "redirect" else "",
            sub_result=sub.result,
            default=sub.default,
            reason=reason if error is not None else "",
        )

    async def lookup_term(self, term: Mechanism, domain: str) -> _TermOutcome:
        """a, mx, ptr and exists (RFC 7208 5.3-5.7)."""
        counts = self.count_lookup(term.text, domain)
        if not self.full and counts.past_limit:
            return self.failed(term.name, term.text, domain, counts, _OVER_LOOKUPS)
        target = await self.expand(term.domain_spec, domain) if term.domain_spec else domain
        if isinstance(target, _Unresolved) or (term.name == "ptr" and self.ip is None):
            note = (
                str(target) if isinstance(target, _Unresolved) else "needs the connecting address"
            )
            node = self.node(
                kind=term.name,
                term=term.text,
                domain=domain,
                state="unresolved",
                note=note,
                counts=counts,
            )
            return _TermOutcome(node=node)
        if target is None:
            self.issue(
                INVALID_TARGET,
                domain,
                f'{domain}: "{term.text}" expands to an invalid name',
                term=term.text,
            )
            return self.failed(term.name, term.text, domain, counts, "invalid domain name")
        if term.name == "a":
            got = await self.addresses(target)
        elif term.name == "mx":
            got = await self.mx_addresses(target, term, domain)
        elif term.name == "exists":
            got = await self.exists(target)
        else:
            got = await self.ptr(target)
        state: NodeState = "ok"
        stop = False
        if got.error is not None:
            state = "temperror" if got.error is SpfResult.TEMPERROR else "permerror"
        elif got.void:
            state = "void"
            stop = self.count_void(counts, term.text, domain)
        matched = got.matches(self.ip, term) if got.error is None and self.ip is not None else None
        node = self.node(
            kind=term.name,
            term=term.text,
            domain=target,
            state=state,
            note=got.note,
            answers=got.answers,
            matched=matched,
            counts=counts,
        )
        if got.error is not None:
            return _TermOutcome(node=node, error=got.error, decided_by=term.text, reason=got.note)
        if stop:
            return _TermOutcome(
                node=node, error=SpfResult.PERMERROR, decided_by=term.text, reason=_OVER_VOIDS
            )
        return _TermOutcome(node=node, matched=matched)

    async def query(
        self, name: str, rdtype: str, *, quiet: bool = False
    ) -> tuple[Lookup, SpfResult | None]:
        """One look-up; a DNS failure (not NXDOMAIN/NODATA) is a temperror (RFC 7208 5),
        reported as a finding unless ``quiet`` (the caller skips the failure)."""
        found = await self.ask(name, rdtype)
        if not found.definitive:
            if not quiet:
                why = found.detail or found.outcome
                self.issue(TEMPERROR, name, f"{rdtype} look-up of {name}: {why}")
            return found, SpfResult.TEMPERROR
        return found, None

    def families(self) -> tuple[str, ...]:
        """Address types to ask: the client's family, or both for the diagnostic tree."""
        if self.ip is None:
            return ("A", "AAAA")
        return ("AAAA",) if isinstance(self.ip, ipaddress.IPv6Address) else ("A",)

    async def addresses(self, name: str, *, quiet: bool = False) -> _Got:
        found_any: list[str] = []
        for rdtype in self.families():
            found, error = await self.query(name, rdtype, quiet=quiet)
            if error is not None:
                why = found.detail or found.outcome
                return _Got(error=error, note=f"{rdtype} look-up of {name} failed: {why}")
            if found.ok:
                found_any.extend(r.to_text() for r in found.records)
        texts = tuple(found_any)
        return _Got(answers=texts, addresses=texts, void=not texts)

    async def mx_addresses(self, name: str, term: Mechanism, domain: str) -> _Got:
        found, error = await self.query(name, "MX")
        if error is not None:
            return _Got(error=error, note=f"MX look-up failed: {found.detail or found.outcome}")
        hosts = {str(getattr(r, "exchange", "")).rstrip(".").lower() for r in found.records}
        exchanges = sorted(hosts - {""})  # a null MX ("0 .") names no host (RFC 7505)
        if not exchanges:
            return _Got(void=True, note="no MX records")
        # RFC 7208 4.6.4: the limit is on the MX records of the answer, not on the distinct
        # host names they give (11 records naming 2 hosts are still too many).
        count = len(found.records)
        if count > MX_LIMIT:
            self.issue(
                MX_TOO_MANY,
                domain,
                f'"{term.text}": {name} has {count} MX records (limit {MX_LIMIT})',
                term=term.text,
            )
            note = f"more than {MX_LIMIT} MX records (RFC 7208 4.6.4)"
            return _Got(error=SpfResult.PERMERROR, answers=tuple(exchanges), note=note)
        addresses: list[str] = []
        shown: list[str] = []
        for host in exchanges:
            got = await self.addresses(host)
            if got.error is not None:
                return _Got(error=got.error, answers=tuple(shown), note=got.note)
            addresses.extend(got.addresses)
            shown.append(f"{host}: {', '.join(got.addresses) or 'no address'}")
        return _Got(answers=tuple(shown), addresses=tuple(addresses))

    async def exists(self, name: str) -> _Got:
        # RFC 7208 5.7: an A query whatever the connecting address's family.
        found, error = await self.query(name, "A")
        if error is not None:
            return _Got(error=error, note=f"A look-up failed: {found.detail or found.outcome}")
        texts = tuple(r.to_text() for r in found.records) if found.ok else ()
        return _Got(answers=texts, void=not texts, exists=bool(texts))

    async def ptr(self, target: str) -> _Got:
        """RFC 7208 5.5: the validated names, to be matched against ``target``."""
        got = await self.validated_names()
        return dataclasses.replace(got, ptr_target=target)

    async def validated_names(self) -> _Got:
        """The client's validated domain names (RFC 7208 5.5, used by "ptr" and %{p}).

        At most 10 PTR names are checked, each kept when its forward look-up gives the
        client's address. A DNS failure is no error here: a failed PTR look-up means no
        name ("ptr" fails to match, %{p} is "unknown"), a failed forward look-up skips
        that name.
        """
        if self.ip is None:  # callers check; kept for the type checker
            return _Got(note="needs the connecting address")
        found = await self.ask(self.ip.reverse_pointer, "PTR")
        if not found.definitive:
            why = found.detail or found.outcome
            return _Got(note=f"PTR look-up failed ({why}): no validated name (RFC 7208 5.5)")
        names = [str(getattr(r, "target", "")).rstrip(".").lower() for r in found.records]
        names = [n for n in names if n][:PTR_LIMIT]
        if not names:
            return _Got(void=True, note="no PTR records")
        validated: list[str] = []
        for name in names:
            forward = await self.addresses(name, quiet=True)
            if forward.error is None and str(self.ip) in forward.addresses:
                validated.append(name)
        return _Got(answers=tuple(names), validated=tuple(validated))


def _cidr(term: Mechanism, ip: Address) -> int:
    if isinstance(ip, ipaddress.IPv6Address):
        return term.cidr6 if term.cidr6 is not None else 128
    return term.cidr4 if term.cidr4 is not None else 32


def _address(ip: str) -> Address | None:
    """The client address; an IPv4-mapped IPv6 address counts as IPv4."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --- public entry points -------------------------------------------------------------------------


async def check_host(
    ip: str,
    domain: str,
    lookup_fn: TxtLookup,
    *,
    sender: str | None = None,
    helo: str | None = None,
) -> HostCheck:
    """RFC 7208 4: the SPF result for mail from ``ip`` with ``domain`` as sender domain.

    ``sender`` defaults to ``postmaster@<domain>`` (RFC 7208 4.3). Never raises: an address
    that is not an IP address, or a malformed domain (RFC 7208 4.3), gives ``none``.
    """
    address = _address(ip)
    name = normalise_name(domain)
    if address is None:
        return HostCheck(ip=ip, domain=name, result=SpfResult.NONE, detail="not an IP address")
    if _target_name(name) is None or "." not in name:
        detail = "malformed domain (RFC 7208 4.3)"
        return HostCheck(ip=str(address), domain=name, result=SpfResult.NONE, detail=detail)
    return await _check(_Memo(lookup_fn), address, name, sender=sender, helo=helo)


async def _check(
    memo: _Memo, address: Address, name: str, *, sender: str | None, helo: str | None
) -> HostCheck:
    evaluator = _Evaluator(
        memo, full=False, ip=address, sender=sender or f"postmaster@{name}", helo=helo
    )
    outcome = await evaluator.record(name, depth=0, path=(name,))
    said = ": ".join(part for part in (outcome.decided_by, outcome.reason) if part)
    if outcome.result is SpfResult.NONE:
        detail = "no SPF record"
    elif said:
        detail = f"{outcome.result.value}: {said}"
    else:
        detail = f"{outcome.result.value}: no term matched (RFC 7208 4.7)"
    return HostCheck(
        ip=str(address),
        domain=name,
        result=outcome.result,
        decided_by=outcome.decided_by,
        reason=outcome.reason if outcome.result in _ERRORS else "",
        detail=detail,
        lookups=evaluator.lookups,
        void_lookups=evaluator.voids,
    )


async def evaluate_spf(
    domain: str,
    lookup_fn: TxtLookup,
    *,
    ip: str | None = None,
    sender: str | None = None,
    helo: str | None = None,
) -> SpfEvaluation:
    """The SPF diagnostic for ``domain``: the full evaluation tree and its findings.

    Every term is walked (not only up to the first match), so the counts are those of the
    worst case, an address no term matches. With ``ip``, :attr:`SpfEvaluation.host` also
    holds check_host() for that address, and the tree shows which terms match it.
    Never raises: DNS failures become ``temperror`` findings, anything the lookup function
    raises counts as a DNS failure.
    """
    name = normalise_name(domain)
    memo = _Memo(lookup_fn)
    address = _address(ip) if ip is not None else None
    walker = _Evaluator(
        memo, full=True, ip=address, sender=sender or f"postmaster@{name}", helo=helo
    )
    found = await memo(name, "TXT")
    chosen = select(found, is_spf_record)
    outcome = await walker.record(name, depth=0, path=(name,))
    text = show(chosen.record) if chosen.state == "one" else None
    parsed = walker.parsed.get(chosen.record) if chosen.state == "one" else None
    record = parsed if isinstance(parsed, SpfRecord) else None
    host: HostCheck | None = None
    if ip is not None and address is None:
        host = HostCheck(ip=ip, domain=name, result=SpfResult.NONE, detail="not an IP address")
    elif address is not None:
        host = await _check(memo, address, name, sender=sender, helo=helo)
    type99 = await memo(name, "SPF")
    findings = _findings(name, chosen.state, text, record, outcome, walker, found, type99)
    return SpfEvaluation(
        domain=name,
        record=text,
        parsed=record,
        tree=outcome.node,
        lookups=walker.lookups,
        void_lookups=walker.voids,
        truncated=walker.truncated,
        host=host,
        findings=findings,
    )


def _findings(
    name: str,
    state: str,
    text: str | None,
    record: SpfRecord | None,
    outcome: _Outcome,
    walker: _Evaluator,
    found: Lookup,
    type99: Lookup,
) -> tuple[Finding, ...]:
    tree = outcome.node.as_evidence()
    out: list[Finding] = []
    if state == "none":
        out.append(MISSING(detail=f"{name} has no SPF record", evidence=found.evidence()))
    if walker.lookups > DNS_TERM_LIMIT:
        at_least = "at least " if walker.truncated else ""
        out.append(
            TOO_MANY_LOOKUPS(
                detail=f"{at_least}{walker.lookups} DNS-querying terms; the limit of "
                f"{DNS_TERM_LIMIT} is crossed at {walker.over_lookups_at}"
                + ("; the walk stopped at the diagnostic's work bound" if walker.truncated else ""),
                evidence={
                    "domain": name,
                    "record": text,
                    "lookups": walker.lookups,
                    "limit": DNS_TERM_LIMIT,
                    "crossed_at": walker.over_lookups_at,
                    "truncated": walker.truncated,
                    "tree": tree,
                },
            )
        )
    if walker.voids > VOID_LOOKUP_LIMIT:
        out.append(
            TOO_MANY_VOID(
                detail=f"{walker.voids} void look-ups: " + ", ".join(walker.void_terms),
                evidence={
                    "domain": name,
                    "record": text,
                    "void_lookups": walker.voids,
                    "limit": VOID_LOOKUP_LIMIT,
                    "crossed_at": walker.over_voids_at,
                    "void_terms": list(walker.void_terms),
                    "tree": tree,
                },
            )
        )
    out.extend(_grouped(walker.issues, text, tree))
    if record is not None:
        evidence = {"domain": name, "record": text}
        if outcome.default == "+":
            out.append(
                PLUS_ALL(detail=f'{name}: the effective default is "+all"', evidence=evidence)
            )
        elif outcome.default == "?":
            out.append(
                NEUTRAL_ALL(detail=f'{name}: the effective default is "?all"', evidence=evidence)
            )
        elif outcome.default is None:
            out.append(NO_ALL(detail=f"{name}: {text}", evidence=evidence))
    if type99.ok and type99.records:
        out.append(
            SPF_RR_TYPE(
                detail=f"{name} has {len(type99.records)} record(s) of type SPF (99)",
                evidence=type99.evidence(),
            )
        )
    judged = (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE)
    if record is not None and not any(f.status in judged for f in out):
        out.append(
            VALID(
                detail=f"{walker.lookups} DNS-querying term(s), {walker.voids} void look-up(s)",
                evidence={
                    "domain": name,
                    "record": text,
                    "terms": record.as_evidence()["terms"],
                    "lookups": walker.lookups,
                    "void_lookups": walker.voids,
                    "tree": tree,
                },
            )
        )
    return tuple(out)


#: At most this many cases of one code are spelled out in a finding's detail.
_SHOWN_CASES = 5


def _grouped(issues: list[_Issue], text: str | None, tree: Json) -> list[Finding]:
    """One finding per code, listing every place it was seen (in order of first sight)."""
    by_spec: dict[str, list[_Issue]] = {}
    for issue in issues:
        by_spec.setdefault(issue.spec.code, []).append(issue)
    out: list[Finding] = []
    for cases in by_spec.values():
        spec = cases[0].spec
        shown = "; ".join(c.detail for c in cases[:_SHOWN_CASES])
        more = len(cases) - _SHOWN_CASES
        detail = shown + (f"; and {more} more" if more > 0 else "")
        evidence: dict[str, Json] = {
            "record": text,
            "cases": [
                {"domain": c.domain, "term": c.term, "detail": c.detail, "record": c.record}
                for c in cases
            ],
        }
        if spec is INCLUDE_LOOP:
            evidence["tree"] = tree
        out.append(spec(detail=detail, evidence=evidence))
    return out


def address_finding(check: HostCheck, *, host: str = "") -> Finding:
    """An informational finding for one address's check_host() result (e.g. an MX host)."""
    who = f"{host} ({check.ip})" if host else check.ip
    return ADDRESS_RESULT(
        title=f"SPF result for {who}: {check.result.value}",
        detail=check.detail,
        evidence={
            "ip": check.ip,
            "domain": check.domain,
            "result": check.result.value,
            "decided_by": check.decided_by,
            "reason": check.reason,
            "lookups": check.lookups,
            "void_lookups": check.void_lookups,
        },
    )
