"""MTA-STS (RFC 8461): the ``_mta-sts`` TXT record, the policy file, and MX matching.

Fetching the policy (``https://mta-sts.<domain>/.well-known/mta-sts.txt``, see
:func:`policy_url`, with a valid certificate) is the probe's business; this module only
reads what was fetched.

- :func:`parse_mtasts_record` / :func:`parse_policy` raise :class:`MtaStsParseError`.
- :func:`mx_matches` is RFC 8461 4.1 matching of one MX host against one pattern.
- :func:`check_mtasts_record`, :func:`check_policy` and :func:`check_policy_text` never
  raise and return findings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from probes.mailauth._txt import (
    EXT_NAME,
    EXT_VALUE,
    describe_char,
    first_bad_byte,
    has_version_tag,
    normalise_name,
    printable_or_tab,
    record_fields,
    select,
    selection_problem,
    show,
)

if TYPE_CHECKING:
    from analyzer.protocols.resolve import Lookup

__all__ = [
    "FINDINGS",
    "MAX_POLICY_BYTES",
    "MtaStsParseError",
    "MtaStsPolicy",
    "MtaStsRecord",
    "PolicyCheck",
    "RecordCheck",
    "check_mtasts_record",
    "check_policy",
    "check_policy_text",
    "is_mtasts_record",
    "mtasts_name",
    "mx_matches",
    "parse_mtasts_record",
    "parse_policy",
    "policy_url",
]

RFC8461 = "https://www.rfc-editor.org/rfc/rfc8461"


def _ref(section: str) -> str:
    return f"{RFC8461}#section-{section}"


#: RFC 8461 3.2: max_age is at most 31557600 seconds (about a year).
MAX_AGE_LIMIT = 31557600
#: Below a day a policy protects little against an attacker at refresh time (RFC 8461 3.2
#: expects "weeks or greater").
MAX_AGE_SHORT = 86400
#: Policy bodies larger than this are refused (RFC 8461 3.3 lets senders bound the size;
#: real policies are a few hundred bytes).
MAX_POLICY_BYTES = 64 * 1024

RECORD_VALID = FindingSpec(
    code="dns.mtasts.valid",
    status=Status.PASS,
    title="MTA-STS record found",
    meaning='The domain publishes one "v=STSv1" record with a policy id at _mta-sts.<domain>.',
    reference=_ref("3.1"),
)
MISSING = FindingSpec(
    code="dns.mtasts.missing",
    status=Status.WARN,
    title="No MTA-STS record",
    meaning="Without MTA-STS (or DANE) sending servers fall back to opportunistic TLS, "
    "which an attacker on the path can strip to read or redirect mail.",
    remediation="Publish a policy at https://mta-sts.<domain>/.well-known/mta-sts.txt and "
    'a TXT record at _mta-sts.<domain>: "v=STSv1; id=<date or counter>".',
    reference=_ref("3.1"),
)
MULTIPLE = FindingSpec(
    code="dns.mtasts.multiple",
    status=Status.FAIL,
    title="More than one MTA-STS record",
    meaning='RFC 8461 3.1: if more than one "v=STSv1" record is found, senders must assume '
    "the domain has no MTA-STS policy.",
    remediation="Keep a single TXT record starting with v=STSv1 at _mta-sts.<domain>.",
    reference=_ref("3.1"),
)
SYNTAX = FindingSpec(
    code="dns.mtasts.syntax",
    status=Status.FAIL,
    title="MTA-STS record has a syntax error",
    meaning="RFC 8461 3.1: a syntactically invalid record means senders assume there is "
    "no MTA-STS policy.",
    remediation='Correct the record to "v=STSv1; id=<1 to 32 letters or digits>".',
    reference=_ref("3.1"),
)
TEMPERROR = FindingSpec(
    code="dns.mtasts.temperror",
    status=Status.INCONCLUSIVE,
    title="The MTA-STS record could not be fetched",
    meaning="The DNS look-up of _mta-sts.<domain> failed (SERVFAIL, REFUSED or a timeout); "
    "nothing can be concluded about the record.",
    remediation="Check the authoritative DNS servers of the _mta-sts name.",
    reference=_ref("3.1"),
)
POLICY_VALID = FindingSpec(
    code="dns.mtasts.policy_valid",
    status=Status.PASS,
    title="MTA-STS policy is valid and covers every MX host",
    meaning="The policy parses, is in enforce mode, and every MX host matches one of its "
    "mx patterns.",
    reference=_ref("3.2"),
)
POLICY_SYNTAX = FindingSpec(
    code="dns.mtasts.policy_syntax",
    status=Status.FAIL,
    title="MTA-STS policy file is invalid",
    meaning="A policy that does not follow RFC 8461 3.2 (version, mode, max_age and mx "
    "lines) is ignored by senders, so the domain has no MTA-STS protection.",
    remediation="Correct the line shown in the detail. A policy has one field per line: "
    '"version: STSv1", "mode: enforce", one "mx: <host>" line per MX host (or '
    '"mx: *.<domain>"), and "max_age: 604800".',
    reference=_ref("3.2"),
)
MX_NOT_COVERED = FindingSpec(
    code="dns.mtasts.mx_not_covered",
    status=Status.FAIL,
    title="An MX host does not match the MTA-STS policy",
    meaning="RFC 8461 4.1: senders deliver only to MX hosts that match an mx pattern of the "
    "policy. In enforce mode mail to a host that does not match is not delivered (a "
    "failure); in testing mode it is only reported (a warning).",
    remediation='Add an "mx:" line for the host (or a "*." pattern covering it) to the '
    "policy, change the id in the _mta-sts TXT record, or correct the MX records.",
    reference=_ref("4.1"),
)
TESTING = FindingSpec(
    code="dns.mtasts.testing",
    status=Status.WARN,
    title="MTA-STS policy is in testing mode",
    meaning="In testing mode senders report policy failures (TLS-RPT) but still deliver "
    "over connections the policy would refuse, so nothing is protected yet.",
    remediation='Change the policy to "mode: enforce" once the TLS reports are clean, and '
    "change the id in the _mta-sts TXT record.",
    reference=_ref("5"),
)
MODE_NONE = FindingSpec(
    code="dns.mtasts.mode_none",
    status=Status.WARN,
    title="MTA-STS policy mode is none",
    meaning='"mode: none" withdraws the policy (RFC 8461 5): senders treat the domain as '
    "having no MTA-STS policy.",
    remediation='Publish "mode: testing", then "mode: enforce", when the MX hosts have '
    "valid certificates.",
    reference=_ref("5"),
)
MAX_AGE_SHORT_FINDING = FindingSpec(
    code="dns.mtasts.max_age_short",
    status=Status.WARN,
    title="MTA-STS max_age is shorter than a day",
    meaning="Senders keep the policy for max_age seconds; a short value leaves them "
    "without a policy most of the time, when an attacker can block the refresh. RFC 8461 "
    "3.2 expects weeks or more.",
    remediation="Set max_age to at least 604800 (a week); 31557600 (a year) is the maximum.",
    reference=_ref("3.2"),
)

FINDINGS: tuple[FindingSpec, ...] = (
    RECORD_VALID,
    MISSING,
    MULTIPLE,
    SYNTAX,
    TEMPERROR,
    POLICY_VALID,
    POLICY_SYNTAX,
    MX_NOT_COVERED,
    TESTING,
    MODE_NONE,
    MAX_AGE_SHORT_FINDING,
)

# --- parsing -------------------------------------------------------------------------------------


class MtaStsParseError(ValueError):
    """An MTA-STS TXT record or policy file that does not follow RFC 8461 3.1 / 3.2.

    ``position`` is the 0-based offset in the text (None when the error is not about one
    place); ``line`` the 1-based line of a policy file (0 for the TXT record).
    """

    def __init__(self, message: str, *, position: int | None = None, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.line = line

    def __str__(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        if self.position is not None and not self.line:
            where = f" at offset {self.position}"
        return f"{self.message}{where}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MtaStsRecord:
    """A parsed ``_mta-sts`` TXT record (RFC 8461 3.1)."""

    text: str
    id: str
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MtaStsPolicy:
    """A parsed policy file (RFC 8461 3.2)."""

    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...]
    #: Unknown keys, ignored by senders (RFC 8461 3.2), kept for evidence.
    extensions: tuple[tuple[str, str], ...] = ()

    def as_evidence(self) -> dict[str, Json]:
        """The policy as JSON-able data."""
        return {
            "version": self.version,
            "mode": self.mode,
            "max_age": self.max_age,
            "mx": list(self.mx),
            "extensions": {k: v for k, v in self.extensions},
        }


_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+\.?")
_POLICY_LINE = re.compile(r"[ \t]*([^:]*?)[ \t]*:[ \t]*(.*?)[ \t]*")
_POLICY_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")


def is_mtasts_record(data: bytes | str) -> bool:
    """True for a TXT string beginning with ``v=STSv1`` (case ignored, to report mis-cased ones)."""
    return has_version_tag(data, b"v=STSv1")


def parse_mtasts_record(record: str | bytes) -> MtaStsRecord:
    """Parse ``v=STSv1; id=...;`` (RFC 8461 3.1); raises :class:`MtaStsParseError`."""
    text, fields = record_fields(record, MtaStsParseError)
    if fields[0][0] != "v=STSv1":
        raise MtaStsParseError('the record must begin with "v=STSv1" (case-sensitive)', position=0)
    record_id: str | None = None
    extensions: list[tuple[str, str]] = []
    for field_text, at in fields[1:]:
        name, eq, value = field_text.partition("=")
        if name == "id" and eq:
            if record_id is not None:
                raise MtaStsParseError('"id" appears twice', position=at)
            if _ID.fullmatch(value) is None:
                raise MtaStsParseError(
                    f'id must be 1 to 32 letters or digits, not "{value}"', position=at
                )
            record_id = value
        elif eq and EXT_NAME.fullmatch(name) and EXT_VALUE.fullmatch(value):
            extensions.append((name, value))
        else:
            raise MtaStsParseError(f'"{field_text}" is not a valid field', position=at)
    if record_id is None:
        raise MtaStsParseError('the "id" field is required')
    return MtaStsRecord(text=text, id=record_id, extensions=tuple(extensions))


def parse_policy(policy: str | bytes) -> MtaStsPolicy:
    """Parse a policy file (RFC 8461 3.2); raises :class:`MtaStsParseError`.

    Lines end in LF or CRLF; blank lines are skipped; unknown keys are ignored; version,
    mode and max_age must appear exactly once; at least one mx line is required unless
    the mode is none. Bodies over :data:`MAX_POLICY_BYTES` are refused.
    """
    size = len(policy.encode("utf-8", "replace")) if isinstance(policy, str) else len(policy)
    if size > MAX_POLICY_BYTES:
        raise MtaStsParseError(f"the policy is {size} bytes, more than {MAX_POLICY_BYTES}")
    if isinstance(policy, bytes):
        try:
            text = policy.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MtaStsParseError("the policy is not UTF-8 text", position=exc.start) from None
    else:
        text = policy
    single: dict[str, tuple[str, int]] = {}
    mx: list[str] = []
    extensions: list[tuple[str, str]] = []
    offset = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        at = offset
        offset += len(raw) + 1
        if not line.strip(" \t"):
            continue
        bad = first_bad_byte(line, allowed=printable_or_tab)
        if bad is not None:
            raise MtaStsParseError(
                f"{describe_char(ord(line[bad]))}", position=at + bad, line=number
            )
        match = _POLICY_LINE.fullmatch(line)
        if match is None:
            raise MtaStsParseError('expected "key: value"', position=at, line=number)
        key, value = match.groups()
        if key in ("version", "mode", "max_age"):
            if key in single:
                raise MtaStsParseError(f'"{key}" appears twice', position=at, line=number)
            single[key] = (value, number)
        elif key == "mx":
            if _mx_pattern_ok(value) is False:
                raise MtaStsParseError(f'invalid mx pattern "{value}"', position=at, line=number)
            mx.append(value.lower().rstrip("."))
        elif EXT_NAME.fullmatch(key) and _POLICY_VALUE.fullmatch(value):
            extensions.append((key, value))  # RFC 8461 3.2: unknown fields are ignored
        else:
            raise MtaStsParseError(
                f'"{line.strip()}" is not a valid field', position=at, line=number
            )
    for key in ("version", "mode", "max_age"):
        if key not in single:
            raise MtaStsParseError(f'the "{key}" field is required')
    version, version_line = single["version"]
    if version != "STSv1":
        raise MtaStsParseError(f'version must be "STSv1", not "{version}"', line=version_line)
    mode, mode_line = single["mode"]
    if mode not in ("enforce", "testing", "none"):
        raise MtaStsParseError(
            f'mode must be enforce, testing or none, not "{mode}"', line=mode_line
        )
    age_text, age_line = single["max_age"]
    if not re.fullmatch(r"[0-9]{1,10}", age_text) or int(age_text) > MAX_AGE_LIMIT:
        raise MtaStsParseError(
            f"max_age must be 0 to {MAX_AGE_LIMIT} seconds, not {age_text!r}", line=age_line
        )
    if not mx and mode != "none":
        raise MtaStsParseError('at least one "mx" field is required')
    return MtaStsPolicy(
        version=version,
        mode=mode,
        max_age=int(age_text),
        mx=tuple(mx),
        extensions=tuple(extensions),
    )


def _mx_pattern_ok(pattern: str) -> bool:
    """RFC 8461 3.2: sts-policy-mx-value = ["*."] Domain."""
    return _DOMAIN.fullmatch(pattern.removeprefix("*.")) is not None


def _a_label(name: str) -> str:
    name = normalise_name(name)
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: does MX host ``host`` match policy pattern ``pattern``?

    Exact names match case-insensitively (trailing dots ignored); ``*.example.com``
    matches exactly one extra leftmost label (``mx.example.com``), neither
    ``example.com`` nor ``a.b.example.com``.
    """
    wanted = _a_label(pattern)
    name = _a_label(host)
    if not wanted or not name:
        return False
    if wanted.startswith("*."):
        suffix = wanted[2:]
        first, dot, rest = name.partition(".")
        return bool(suffix) and bool(first) and bool(dot) and rest == suffix and "*" not in suffix
    return "*" not in wanted and wanted == name


# --- checks --------------------------------------------------------------------------------------


def mtasts_name(domain: str) -> str:
    """Where the TXT record lives (RFC 8461 3.1)."""
    return f"_mta-sts.{normalise_name(domain)}"


def policy_url(domain: str) -> str:
    """Where the policy file lives (RFC 8461 3.3); fetch it over HTTPS, certificate checked."""
    return f"https://mta-sts.{normalise_name(domain)}/.well-known/mta-sts.txt"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCheck:
    """The judged ``_mta-sts`` TXT answer."""

    record: MtaStsRecord | None
    text: str | None
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyCheck:
    """The judged policy file."""

    policy: MtaStsPolicy | None
    findings: tuple[Finding, ...]


def check_mtasts_record(domain: str, answer: Lookup) -> RecordCheck:
    """Judge the TXT answer for ``_mta-sts.<domain>`` (RFC 8461 3.1); never raises."""
    name = mtasts_name(domain)
    chosen = select(answer, is_mtasts_record)
    problem = selection_problem(
        name, answer, chosen, tag="v=STSv1", temperror=TEMPERROR, missing=MISSING, multiple=MULTIPLE
    )
    if problem is not None:
        return RecordCheck(record=None, text=None, findings=(problem,))
    text = show(chosen.record)
    try:
        record = parse_mtasts_record(chosen.record)
    except MtaStsParseError as exc:
        finding = SYNTAX(
            detail=f"{name}: {exc}",
            evidence={"name": name, "record": text, "position": exc.position},
        )
        return RecordCheck(record=None, text=text, findings=(finding,))
    finding = RECORD_VALID(
        detail=f"{name}: id={record.id}",
        evidence={"name": name, "record": text, "id": record.id},
    )
    return RecordCheck(record=record, text=text, findings=(finding,))


def check_policy(policy: MtaStsPolicy, mx_hosts: Iterable[str]) -> tuple[Finding, ...]:
    """Judge a parsed policy against the domain's MX hosts (RFC 8461 4.1, 5); never raises.

    Every MX host must match an mx pattern: a failure in enforce mode, a warning in
    testing mode, not checked in mode none (the policy is withdrawn).
    """
    hosts = [normalise_name(h) for h in mx_hosts]
    evidence: dict[str, Json] = {**policy.as_evidence(), "mx_hosts": hosts}
    out: list[Finding] = []
    if policy.mode == "none":
        out.append(MODE_NONE(detail="mode: none", evidence=evidence))
    else:
        uncovered = [h for h in hosts if not any(mx_matches(p, h) for p in policy.mx)]
        if uncovered:
            testing = policy.mode == "testing"
            out.append(
                MX_NOT_COVERED(
                    detail=f"not matched by any mx pattern ({', '.join(policy.mx)}): "
                    + ", ".join(uncovered),
                    status=Status.WARN if testing else Status.FAIL,
                    title="MX hosts do not match the MTA-STS policy"
                    + (" (testing mode)" if testing else ""),
                    evidence={**evidence, "uncovered": uncovered},
                )
            )
        if policy.mode == "testing":
            out.append(TESTING(detail="mode: testing", evidence=evidence))
    if policy.max_age < MAX_AGE_SHORT:
        out.append(
            MAX_AGE_SHORT_FINDING(detail=f"max_age: {policy.max_age} seconds", evidence=evidence)
        )
    if policy.mode == "enforce" and not any(f.status is Status.FAIL for f in out):
        covered = f"{len(hosts)} MX host(s) covered" if hosts else "no MX host to check"
        out.append(POLICY_VALID(detail=f"mode: enforce; {covered}", evidence=evidence))
    return tuple(out)


def check_policy_text(policy: str | bytes, mx_hosts: Iterable[str]) -> PolicyCheck:
    """Parse and judge a fetched policy body; never raises."""
    try:
        parsed = parse_policy(policy)
    except MtaStsParseError as exc:
        shown = policy if isinstance(policy, str) else show(policy)
        finding = POLICY_SYNTAX(
            detail=str(exc),
            evidence={"policy": shown[:2000], "line": exc.line, "position": exc.position},
        )
        return PolicyCheck(policy=None, findings=(finding,))
    return PolicyCheck(policy=parsed, findings=check_policy(parsed, mx_hosts))
