"""DMARC (RFC 7489): record parsing, policy discovery and report-destination checks.

- :func:`parse_dmarc` reads a ``_dmarc`` TXT record into tags, or raises
  :class:`DmarcParseError` with the offset and tag.
- :func:`check_dmarc` judges the answers of the policy discovery (RFC 7489 6.6.3: the
  domain's own ``_dmarc`` name, then its organizational domain's), never raising.
- :func:`organizational_domain` finds the organizational domain with the Public Suffix
  List shipped by the ``publicsuffixlist`` package (offline; nothing is downloaded), read
  by :class:`SuffixList` one top-level domain at a time.
- :func:`check_report_destinations` verifies that external ``rua``/``ruf`` destinations
  accept the reports (RFC 7489 7.1), through the injected DNS function.
- :func:`evaluate_dmarc` chains the above for a probe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status, worst
from probes.mailauth._txt import (
    describe_char,
    first_bad_byte,
    is_hostname,
    normalise_name,
    printable_or_tab,
    safe_lookup,
    select,
    show,
)

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

    from analyzer.protocols.resolve import Lookup
    from probes.mailauth import TxtLookup

__all__ = [
    "FINDINGS",
    "DmarcCheck",
    "DmarcParseError",
    "DmarcRecord",
    "PrivateSuffixes",
    "ReportUri",
    "SuffixList",
    "check_dmarc",
    "check_report_destinations",
    "dmarc_names",
    "evaluate_dmarc",
    "is_dmarc_record",
    "organizational_domain",
    "parse_dmarc",
]

RFC7489 = "https://www.rfc-editor.org/rfc/rfc7489"


def _ref(section: str) -> str:
    return f"{RFC7489}#section-{section}"


VALID = FindingSpec(
    code="dns.dmarc.valid",
    status=Status.PASS,
    title="DMARC record found and valid",
    meaning="The domain publishes one DMARC policy record that parses (RFC 7489 6.3).",
    reference=_ref("6.3"),
)
MISSING = FindingSpec(
    code="dns.dmarc.missing",
    status=Status.FAIL,
    title="No DMARC record",
    meaning="Neither _dmarc.<domain> nor the organizational domain's _dmarc name holds a "
    '"v=DMARC1" record, so receivers apply no DMARC policy to forged mail claiming the '
    "domain. This is a failure for a domain that receives mail (it has MX records), a "
    "warning otherwise.",
    remediation='Publish a TXT record at _dmarc.<domain>, e.g. "v=DMARC1; p=none; '
    'rua=mailto:dmarc-reports@<domain>", then move to p=quarantine or p=reject.',
    reference=_ref("6.6.3"),
)
MULTIPLE = FindingSpec(
    code="dns.dmarc.multiple",
    status=Status.FAIL,
    title="More than one DMARC record",
    meaning="RFC 7489 6.6.3: when the _dmarc name holds more than one DMARC record, "
    "policy discovery ends and no DMARC policy is applied at all.",
    remediation="Keep a single TXT record starting with v=DMARC1 at the _dmarc name.",
    reference=_ref("6.6.3"),
)
SYNTAX = FindingSpec(
    code="dns.dmarc.syntax",
    status=Status.FAIL,
    title="DMARC record has a syntax error",
    meaning="A DMARC record that does not follow RFC 7489 6.4 is discarded by receivers "
    "(or read as p=none when it has a valid rua), so the intended policy is not applied.",
    remediation="Correct the tag shown in the detail; the record must start with "
    '"v=DMARC1;" and contain a valid "p=" tag.',
    reference=_ref("6.4"),
)
POLICY_NONE = FindingSpec(
    code="dns.dmarc.policy_none",
    status=Status.WARN,
    title="DMARC policy is p=none (monitoring only)",
    meaning="p=none asks receivers to take no action on mail that fails DMARC: reports "
    "are sent, but forged mail is delivered as usual.",
    remediation="Once the aggregate reports show that legitimate mail passes, change the "
    'record to "p=quarantine", then "p=reject".',
    reference=_ref("6.3"),
)
PCT_PARTIAL = FindingSpec(
    code="dns.dmarc.pct_partial",
    status=Status.WARN,
    title="DMARC policy applies to only part of the mail (pct < 100)",
    meaning="With pct below 100, receivers apply the policy to that percentage of failing "
    "mail only and treat the rest one step more leniently (RFC 7489 6.6.4).",
    remediation='Remove the "pct" tag (default 100) once the policy is known to be safe.',
    reference=_ref("6.6.4"),
)
SUBDOMAIN_NONE = FindingSpec(
    code="dns.dmarc.subdomain_policy_none",
    status=Status.WARN,
    title="DMARC subdomain policy is sp=none",
    meaning="sp=none leaves every subdomain without a DMARC policy, so forged mail from "
    "invented subdomains is delivered even though the domain itself is protected.",
    remediation='Remove the "sp" tag (subdomains then follow "p") or set sp=quarantine or '
    "sp=reject.",
    reference=_ref("6.3"),
)
INHERITED = FindingSpec(
    code="dns.dmarc.inherited",
    status=Status.PASS,
    title="DMARC policy comes from the organizational domain",
    meaning="The domain has no _dmarc record of its own; receivers use the organizational "
    'domain\'s record, and its "sp" (or else "p") policy (RFC 7489 6.6.3).',
    reference=_ref("6.6.3"),
)
TEMPERROR = FindingSpec(
    code="dns.dmarc.temperror",
    status=Status.INCONCLUSIVE,
    title="The DMARC record could not be fetched",
    meaning="The DNS look-up of the _dmarc name failed (SERVFAIL, REFUSED or a timeout); "
    "receivers defer or skip DMARC, and nothing can be concluded about the record.",
    remediation="Check the authoritative DNS servers of the _dmarc name.",
    reference=_ref("6.6.3"),
)
REPORT_AUTHORISED = FindingSpec(
    code="dns.dmarc.report_authorised",
    status=Status.PASS,
    title="External DMARC report destination accepts the reports",
    meaning="The report destination outside the organizational domain publishes the "
    "<domain>._report._dmarc.<destination> record that RFC 7489 7.1 requires.",
    reference=_ref("7.1"),
)
REPORT_UNAUTHORISED = FindingSpec(
    code="dns.dmarc.report_unauthorised",
    status=Status.WARN,
    title="External DMARC report destination has not authorised the reports",
    meaning="RFC 7489 7.1: receivers send reports to an address outside the "
    "organizational domain only when that domain publishes a TXT record starting with "
    '"v=DMARC1" at <domain>._report._dmarc.<destination>; without it the reports are lost.',
    remediation="Ask the operator of the destination to publish "
    '"<domain>._report._dmarc.<destination> TXT \\"v=DMARC1\\"", or use an address in '
    "your own domain.",
    reference=_ref("7.1"),
)
REPORT_CHECK_FAILED = FindingSpec(
    code="dns.dmarc.report_check_failed",
    status=Status.INCONCLUSIVE,
    title="Could not check an external DMARC report destination",
    meaning="The DNS look-up of the destination's authorisation record failed (SERVFAIL, "
    "REFUSED or a timeout), so it is unknown whether it accepts the reports.",
    remediation="Check the DNS servers of the report destination's domain, then run the "
    "check again.",
    reference=_ref("7.1"),
)

FINDINGS: tuple[FindingSpec, ...] = (
    VALID,
    MISSING,
    MULTIPLE,
    SYNTAX,
    POLICY_NONE,
    PCT_PARTIAL,
    SUBDOMAIN_NONE,
    INHERITED,
    TEMPERROR,
    REPORT_AUTHORISED,
    REPORT_UNAUTHORISED,
    REPORT_CHECK_FAILED,
)

# --- parsing -------------------------------------------------------------------------------------


class DmarcParseError(ValueError):
    """A DMARC record that does not follow RFC 7489 6.4.

    ``position`` is the 0-based offset in the record text (None when the error is not
    about one place), ``tag`` the tag name concerned.
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportUri:
    """One ``rua``/``ruf`` destination (RFC 7489 6.4 dmarc-uri)."""

    uri: str
    address: str
    #: The destination host (lower case), the part after "@".
    domain: str
    #: The optional maximum report size, e.g. "10m" (RFC 7489 6.2), or None.
    size_limit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcRecord:
    """A parsed DMARC record, defaults filled in (RFC 7489 6.3)."""

    text: str
    #: Every tag as written (lower-case name, value), in order, unknown ones included.
    tags: tuple[tuple[str, str], ...]
    p: str
    sp: str | None = None
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    rua: tuple[ReportUri, ...] = ()
    ruf: tuple[ReportUri, ...] = ()
    fo: tuple[str, ...] = ("0",)
    ri: int = 86400
    rf: tuple[str, ...] = ("afrf",)

    def as_evidence(self) -> dict[str, Json]:
        """The record text and its tags as JSON-able data."""
        return {"record": self.text, "tags": {name: value for name, value in self.tags}}


_SEP = re.compile(r"[ \t]*;[ \t]*")
_TAG = re.compile(r"([A-Za-z][A-Za-z0-9_]*)[ \t]*=[ \t]*")
_VERSION = re.compile(r"v[ \t]*=[ \t]*DMARC1(?=[ \t]*(;|\Z))")
_POLICIES = ("none", "quarantine", "reject")
_SIZE = re.compile(r"[0-9]+[kmgtKMGT]?")
_FO = frozenset({"0", "1", "d", "s"})
_MAX_RI = 2**32 - 1


def is_dmarc_record(data: bytes | str) -> bool:
    """True when a TXT string is a DMARC record candidate (starts with ``v=DMARC1``).

    RFC 7489 6.6.3 discards records that do not start with ``v=DMARC1``; the comparison
    here ignores case so that a mis-cased ``v=dmarc1`` is reported as a syntax error
    rather than silently treated as missing.
    """
    raw = data.encode("latin-1", "replace") if isinstance(data, str) else data
    return re.match(rb"[ \t]*v[ \t]*=[ \t]*dmarc1(?![a-z0-9])", raw, re.IGNORECASE) is not None


def parse_dmarc(record: str | bytes) -> DmarcRecord:
    """Parse a DMARC record (RFC 7489 6.3, 6.4); raises :class:`DmarcParseError`.

    ``v=DMARC1`` must come first (case-sensitive value) and ``p`` is required; ``pct`` is
    0-100, ``adkim``/``aspf`` are ``r`` or ``s``, ``rua``/``ruf`` are comma-separated
    ``mailto:`` URIs with an optional ``!size``; a repeated tag is an error (the tag-list
    rule of RFC 6376 3.2 that RFC 7489 6.4 builds on); unknown tags are ignored (6.3).
    """
    text = _as_text(record)
    tags = _split_tags(text)
    if not tags or tags[0][0] != "v":
        raise DmarcParseError('a DMARC record must begin with "v=DMARC1"', position=0, tag="v")
    if _VERSION.match(text.lstrip(" \t")) is None:
        raise DmarcParseError('the version must be exactly "DMARC1"', position=0, tag="v")
    values: dict[str, tuple[str, int]] = {}
    value_at: dict[str, int] = {}
    for name, value, at, where in tags:
        if name in values:
            raise DmarcParseError(f'the tag "{name}" appears twice', position=at, tag=name)
        values[name] = (value, at)
        value_at[name] = where
    if "p" not in values:
        raise DmarcParseError('the "p" tag is required (RFC 7489 6.3)', tag="p")
    p = _policy(*values["p"], "p")
    sp = _policy(*values["sp"], "sp") if "sp" in values else None
    return DmarcRecord(
        text=text,
        tags=tuple((name, value) for name, value, _, _ in tags),
        p=p,
        sp=sp,
        pct=_pct(*values["pct"]) if "pct" in values else 100,
        adkim=_alignment(*values["adkim"], "adkim") if "adkim" in values else "r",
        aspf=_alignment(*values["aspf"], "aspf") if "aspf" in values else "r",
        rua=_uris(values["rua"][0], value_at["rua"], "rua") if "rua" in values else (),
        ruf=_uris(values["ruf"][0], value_at["ruf"], "ruf") if "ruf" in values else (),
        fo=_fo(*values["fo"]) if "fo" in values else ("0",),
        ri=_ri(*values["ri"]) if "ri" in values else 86400,
        rf=_rf(*values["rf"]) if "rf" in values else ("afrf",),
    )


def _as_text(record: str | bytes) -> str:
    bad = first_bad_byte(record, allowed=printable_or_tab)
    if bad is not None:
        code = record[bad] if isinstance(record, bytes) else ord(record[bad])
        raise DmarcParseError(
            f"{describe_char(code)}: DMARC records are printable ASCII", position=bad
        )
    return record.decode("ascii") if isinstance(record, bytes) else record


def _split_tags(text: str) -> list[tuple[str, str, int, int]]:
    """``(name, value, tag offset, value offset)`` per tag; empty parts are skipped."""
    out: list[tuple[str, str, int, int]] = []
    start = 0
    for sep in [*_SEP.finditer(text), None]:
        end = sep.start() if sep is not None else len(text)
        part = text[start:end]
        stripped = part.strip(" \t")
        at = start + (len(part) - len(part.lstrip(" \t")))
        if stripped:
            match = _TAG.match(stripped)
            if match is None:
                raise DmarcParseError(f'"{stripped}" is not a tag=value pair', position=at)
            value = stripped[match.end() :]
            name = match.group(1).lower()
            if not value:
                raise DmarcParseError(f'the tag "{name}" has no value', position=at, tag=name)
            out.append((name, value, at, at + match.end()))
        if sep is None:
            break
        start = sep.end()
    return out


def _policy(value: str, at: int, tag: str) -> str:
    if value.lower() not in _POLICIES:
        raise DmarcParseError(
            f'"{tag}" must be none, quarantine or reject, not "{value}"', position=at, tag=tag
        )
    return value.lower()


def _pct(value: str, at: int) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", value) or int(value) > 100:
        raise DmarcParseError(f'"pct" must be 0-100, not "{value}"', position=at, tag="pct")
    return int(value)


def _alignment(value: str, at: int, tag: str) -> str:
    if value.lower() not in ("r", "s"):
        raise DmarcParseError(f'"{tag}" must be r or s, not "{value}"', position=at, tag=tag)
    return value.lower()


def _fo(value: str, at: int) -> tuple[str, ...]:
    options = tuple(v.strip(" \t").lower() for v in value.split(":"))
    if not options or any(o not in _FO for o in options):
        raise DmarcParseError(
            f'"fo" must be a ":"-separated list of 0, 1, d, s, not "{value}"',
            position=at,
            tag="fo",
        )
    return options


def _ri(value: str, at: int) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > _MAX_RI:
        raise DmarcParseError(
            f'"ri" must be a number of seconds, not "{value}"', position=at, tag="ri"
        )
    return int(value)


def _rf(value: str, at: int) -> tuple[str, ...]:
    formats = tuple(v.strip(" \t").lower() for v in value.split(":"))
    if any(not re.fullmatch(r"[a-z0-9\-]+", f) for f in formats):
        raise DmarcParseError(f'"rf" is not a list of formats: "{value}"', position=at, tag="rf")
    return formats


def _uris(value: str, at: int, tag: str) -> tuple[ReportUri, ...]:
    """RFC 7489 6.4: dmarc-uri *(*WSP "," *WSP dmarc-uri); only mailto: is deliverable."""
    out: list[ReportUri] = []
    offset = 0
    for raw in value.split(","):
        uri = raw.strip(" \t")
        where = at + offset + (len(raw) - len(raw.lstrip(" \t")))
        offset += len(raw) + 1
        if not uri:
            raise DmarcParseError(f'empty URI in "{tag}"', position=where, tag=tag)
        size: str | None = None
        if "!" in uri:
            # RFC 7489 6.2: a literal "!" in the URI must be %-encoded, so the first one
            # starts the size limit.
            uri, _, size = uri.partition("!")
            if _SIZE.fullmatch(size) is None:
                raise DmarcParseError(
                    f'invalid size limit "!{size}" in "{tag}"', position=where, tag=tag
                )
            size = size.lower()
        scheme, colon, address = uri.partition(":")
        if not colon or scheme.lower() != "mailto":
            raise DmarcParseError(
                f'"{tag}" URIs must be mailto: URIs, not "{uri}"', position=where, tag=tag
            )
        local, at_sign, host = address.rpartition("@")
        if not at_sign or not local or " " in uri or not is_hostname(host):
            raise DmarcParseError(
                f'"{uri}" is not a valid mailto: address', position=where, tag=tag
            )
        out.append(
            ReportUri(uri=uri, address=address, domain=normalise_name(host), size_limit=size)
        )
    return tuple(out)


# --- organizational domain (RFC 7489 3.2) --------------------------------------------------------


class PrivateSuffixes(Protocol):
    """What the organizational domain needs of a Public Suffix List: a
    :class:`SuffixList`, or the package's own ``PublicSuffixList``."""

    def privatesuffix(self, domain: str) -> str | None:
        """The public suffix of ``domain`` plus one label (None if ``domain`` is a suffix)."""
        ...


class SuffixList:
    """The Public Suffix List that the ``publicsuffixlist`` package ships, parsed one
    top-level domain at a time, when a name under it is first asked about.

    Parsing the whole list (``PublicSuffixList()``) costs about 70 ms of CPU, most of it
    the punycode of its ~460 internationalised rules, for the one or two top-level domains
    a run asks about. Only rules ending in the asked name's last label can match it, so
    the package's parser, given just those rules (in both the U-label and the A-label form
    of that label), answers exactly as it does with the whole list.
    """

    def __init__(self, text: str | None = None) -> None:
        if text is None:
            from publicsuffixlist import PSLFILE  # noqa: PLC0415

            text = Path(PSLFILE).read_text(encoding="utf-8")
        self._text = text.lower()  # the package lower-cases each line
        self._parsed: dict[str, PublicSuffixList] = {}

    def privatesuffix(self, domain: str) -> str | None:
        """``PublicSuffixList().privatesuffix(domain)``: the public suffix plus one label."""
        return self._for(domain.rstrip(".").rsplit(".", 1)[-1].lower()).privatesuffix(domain)

    def _for(self, tld: str) -> PublicSuffixList:
        parsed = self._parsed.get(tld)
        if parsed is None:
            from publicsuffixlist import PublicSuffixList  # noqa: PLC0415

            forms = {tld}
            try:
                forms.add(tld.encode("ascii").decode("idna") if tld.isascii() else
                          tld.encode("idna").decode("ascii"))
            except UnicodeError:
                pass  # not a valid IDN label: no rule is written in its other form
            parsed = self._parsed[tld] = PublicSuffixList(self._rules(forms))
        return parsed

    def _rules(self, labels: set[str]) -> list[str]:
        """The rules whose last label is one of ``labels``, read as the package reads them
        (lines end at a newline; the first word, without trailing white space)."""
        text = self._text
        lines: dict[int, str] = {}  # each line holding a label, once, by where it starts
        for label in filter(None, labels):  # empty: an invalid name, which no rule matches
            at = text.find(label)
            while at >= 0:
                start = text.rfind("\n", 0, at) + 1
                end = text.find("\n", at)
                end = len(text) if end < 0 else end
                lines.setdefault(start, text[start:end])
                at = text.find(label, max(end, at + 1))
        rules = []
        for line in lines.values():
            rule = line.split(" ")[0].rstrip()
            if rule and not rule.startswith("//") and rule.lstrip("!").rsplit(".", 1)[-1] in labels:
                rules.append(rule)
        return rules


def organizational_domain(domain: str, *, psl: PrivateSuffixes | None = None) -> str:
    """RFC 7489 3.2: the public suffix plus one label (the domain itself if it is a suffix).

    ``psl`` lets a caller reuse one list across calls; by default a fresh
    :class:`SuffixList` reads the list that the ``publicsuffixlist`` package ships, without
    network access.
    """
    name = normalise_name(domain)
    private = (psl or SuffixList()).privatesuffix(name)
    return private if private else name


def dmarc_names(domain: str, *, psl: PrivateSuffixes | None = None) -> tuple[str, ...]:
    """The names policy discovery asks, in order (RFC 7489 6.6.3): one, or two."""
    name = normalise_name(domain)
    org = organizational_domain(name, psl=psl)
    own = f"_dmarc.{name}"
    return (own,) if org == name else (own, f"_dmarc.{org}")


# --- checks --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcCheck:
    """The outcome of DMARC policy discovery and checks for one domain."""

    domain: str
    org_domain: str
    #: The domain whose _dmarc record applies (the domain or its organizational domain).
    policy_domain: str | None
    text: str | None
    record: DmarcRecord | None
    findings: tuple[Finding, ...]

    @property
    def status(self) -> Status:
        """The worst status of the findings."""
        return worst(f.status for f in self.findings)

    @property
    def effective_policy(self) -> str | None:
        """The policy receivers apply to the domain: ``sp`` (or ``p``) when inherited."""
        if self.record is None:
            return None
        if self.policy_domain != self.domain:
            return self.record.sp or self.record.p
        return self.record.p


def check_dmarc(
    domain: str,
    answer: Lookup,
    *,
    has_mx: bool,
    org_domain: str | None = None,
    org_answer: Lookup | None = None,
) -> DmarcCheck:
    """Judge the TXT answers of DMARC policy discovery (RFC 7489 6.6.3); never raises.

    ``answer`` is the look-up of ``_dmarc.<domain>``; ``org_answer`` that of
    ``_dmarc.<org_domain>``, consulted only when the first gives no record at all (not on
    a DNS failure, not on multiple records). ``has_mx`` makes a missing record a failure.
    """
    name = normalise_name(domain)
    org = normalise_name(org_domain) if org_domain else name
    chosen = select(answer, is_dmarc_record)
    policy_domain = name
    if chosen.state == "none" and org != name and org_answer is not None:
        chosen = select(org_answer, is_dmarc_record)
        policy_domain = org
    base = {"domain": name, "org_domain": org}
    if chosen.state == "temperror":
        finding = TEMPERROR(
            detail=f"_dmarc.{policy_domain}: {chosen.detail}",
            evidence={
                **base,
                **(org_answer if policy_domain != name and org_answer else answer).evidence(),
            },
        )
        return _result(name, org, None, None, None, (finding,))
    if chosen.state == "none":
        status = Status.FAIL if has_mx else Status.WARN
        asked = f"_dmarc.{name}" + (f" and _dmarc.{org}" if org != name else "")
        why = "it receives mail (MX records)" if has_mx else "it has no MX records"
        finding = MISSING(
            detail=f"no DMARC record at {asked}; {why}",
            status=status,
            evidence={**base, "records": [show(r) for r in chosen.all_records]},
        )
        return _result(name, org, None, None, None, (finding,))
    if chosen.state == "multiple":
        texts = [show(r) for r in chosen.records]
        finding = MULTIPLE(
            detail=f"_dmarc.{policy_domain} has {len(texts)} DMARC records",
            evidence={**base, "policy_domain": policy_domain, "records": texts},
        )
        return _result(name, org, policy_domain, None, None, (finding,))
    text = show(chosen.record)
    try:
        record = parse_dmarc(chosen.record)
    except DmarcParseError as exc:
        finding = SYNTAX(
            detail=f"_dmarc.{policy_domain}: {exc}",
            evidence={
                **base,
                "policy_domain": policy_domain,
                "record": text,
                "position": exc.position,
                "tag": exc.tag,
            },
        )
        return _result(name, org, policy_domain, text, None, (finding,))
    return _result(name, org, policy_domain, text, record, _judge(name, policy_domain, record))


def _result(
    name: str,
    org: str,
    policy_domain: str | None,
    text: str | None,
    record: DmarcRecord | None,
    findings: tuple[Finding, ...],
) -> DmarcCheck:
    return DmarcCheck(
        domain=name,
        org_domain=org,
        policy_domain=policy_domain,
        text=text,
        record=record,
        findings=findings,
    )


def _judge(name: str, policy_domain: str, record: DmarcRecord) -> tuple[Finding, ...]:
    evidence: dict[str, Json] = {"domain": name, "policy_domain": policy_domain}
    evidence.update(record.as_evidence())
    out: list[Finding] = []
    inherited = policy_domain != name
    if inherited:
        out.append(
            INHERITED(
                detail=f"{name} has no _dmarc record; _dmarc.{policy_domain} applies",
                evidence=evidence,
            )
        )
    effective = (record.sp or record.p) if inherited else record.p
    if effective == "none":
        which = "sp=none" if inherited and record.sp else "p=none"
        out.append(POLICY_NONE(detail=f"{which} applies to {name}", evidence=evidence))
    if not inherited and record.sp == "none" and record.p != "none":
        out.append(
            SUBDOMAIN_NONE(detail=f"p={record.p} but sp=none for subdomains", evidence=evidence)
        )
    if record.pct < 100 and effective != "none":
        out.append(
            PCT_PARTIAL(
                detail=f"pct={record.pct}: the policy applies to {record.pct}% of failing mail",
                evidence=evidence,
            )
        )
    out.append(
        VALID(
            detail=f"p={record.p}" + (f", sp={record.sp}" if record.sp else ""), evidence=evidence
        )
    )
    return tuple(out)


async def check_report_destinations(
    record: DmarcRecord,
    policy_domain: str,
    lookup_fn: TxtLookup,
    *,
    psl: PrivateSuffixes | None = None,
) -> tuple[Finding, ...]:
    """RFC 7489 7.1: do the external ``rua``/``ruf`` destinations accept the reports?

    A destination whose organizational domain differs from the policy domain's must
    publish a TXT record starting with ``v=DMARC1`` at
    ``<policy_domain>._report._dmarc.<destination>``. Each destination host is asked
    once. Never raises.
    """
    if psl is None:
        psl = SuffixList()
    domain = normalise_name(policy_domain)
    own_org = organizational_domain(domain, psl=psl)
    seen: dict[str, list[str]] = {}
    for tag, uris in (("rua", record.rua), ("ruf", record.ruf)):
        for uri in uris:
            if organizational_domain(uri.domain, psl=psl) != own_org:
                seen.setdefault(uri.domain, []).append(f"{tag}={uri.uri}")
    out: list[Finding] = []
    for host, used in seen.items():
        name = f"{domain}._report._dmarc.{host}"
        found = await safe_lookup(lookup_fn, name, "TXT")
        chosen = select(found, is_dmarc_record)
        evidence: dict[str, Json] = {"destination": host, "uris": used, **found.evidence()}
        if chosen.state == "temperror":
            out.append(REPORT_CHECK_FAILED(detail=f"{name}: {chosen.detail}", evidence=evidence))
        elif chosen.state == "none":
            out.append(
                REPORT_UNAUTHORISED(
                    detail=f"{host} ({', '.join(used)}) publishes no v=DMARC1 record at {name}",
                    evidence=evidence,
                )
            )
        else:
            out.append(
                REPORT_AUTHORISED(detail=f"{host} authorises reports at {name}", evidence=evidence)
            )
    return tuple(out)


async def evaluate_dmarc(
    domain: str,
    lookup_fn: TxtLookup,
    *,
    has_mx: bool,
    psl: PrivateSuffixes | None = None,
) -> DmarcCheck:
    """Policy discovery, checks and report-destination checks for ``domain``; never raises."""
    if psl is None:
        psl = SuffixList()
    name = normalise_name(domain)
    names = dmarc_names(name, psl=psl)
    org = names[-1].removeprefix("_dmarc.")
    first = await safe_lookup(lookup_fn, names[0], "TXT")
    org_answer: Lookup | None = None
    if len(names) > 1 and select(first, is_dmarc_record).state == "none":
        org_answer = await safe_lookup(lookup_fn, names[1], "TXT")
    result = check_dmarc(name, first, has_mx=has_mx, org_domain=org, org_answer=org_answer)
    if result.record is None or result.policy_domain is None:
        return result
    extra = await check_report_destinations(result.record, result.policy_domain, lookup_fn, psl=psl)
    return DmarcCheck(
        domain=result.domain,
        org_domain=result.org_domain,
        policy_domain=result.policy_domain,
        text=result.text,
        record=result.record,
        findings=result.findings + extra,
    )
