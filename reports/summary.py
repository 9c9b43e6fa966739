"""What every renderer shares: the verdict, counts, the ranked fixes, clean text, certificates.

Kept here so that the HTML banner, the terminal's last line, the JUnit totals and the
Prometheus ``rca_check_status`` can never disagree about a report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from analyzer.core.model import (
    EXIT_VERDICTS,
    Finding,
    ProbeResult,
    Report,
    Status,
    exit_code,
    status_exit_code,
)

__all__ = [
    "Certificate",
    "Fix",
    "certificates",
    "check_status",
    "clean_text",
    "counts",
    "finalize_template_value",
    "fix_first",
    "format_when",
    "ordered_results",
    "parse_time",
    "status_code",
    "template_environment",
    "truncate",
    "verdict",
]

#: Order of sections and fixes: what needs attention first.
_ATTENTION = {
    Status.FAIL: 0,
    Status.ERROR: 1,
    Status.INCONCLUSIVE: 2,
    Status.WARN: 3,
    Status.PASS: 4,
    Status.SKIP: 5,
}

#: Statuses that ask a reader to act (or to look again).
ACTIONABLE = (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE, Status.WARN)


#: The monitoring-plugins code of one status (0 ok, 1 warn, 2 fail, 3 unknown) and of a
#: whole report, the same as rca's exit code: defined once, with the model.
status_code = status_exit_code
check_status = exit_code


def verdict(report: Report) -> Status:
    """The verdict: ``pass``, ``warn`` (passed with warnings), ``fail`` or ``inconclusive``."""
    return EXIT_VERDICTS[check_status(report)]


def counts(report: Report) -> dict[Status, int]:
    """How many probe results ended with each status (every status is a key)."""
    found = dict.fromkeys(Status, 0)
    for result in report.results:
        found[result.status] += 1
    return found


def ordered_results(report: Report) -> list[ProbeResult]:
    """The results, those needing attention first; run order within one status."""
    return sorted(report.results, key=lambda r: _ATTENTION[r.status])


@dataclass(frozen=True, slots=True, kw_only=True)
class Fix:
    """One line of "what to fix first": a finding and every subject that shows it."""

    finding: Finding
    subjects: tuple[str, ...]
    #: Index of the first occurrence in :meth:`Report.findings` order (an anchor for links).
    first: int


def fix_first(report: Report) -> list[Fix]:
    """Actionable findings, worst first, one entry per problem however many subjects show it.

    Ranked by status (fail, error, inconclusive, warn), then by how many subjects share
    the problem, then by order of appearance.
    """
    groups: dict[tuple[str, str, str, str], list[Any]] = {}
    for index, (result, finding) in enumerate(report.findings()):
        if finding.status not in ACTIONABLE:
            continue
        key = (finding.status.value, finding.code, finding.title, finding.remediation)
        entry = groups.setdefault(key, [finding, [], index])
        if result.subject not in entry[1]:
            entry[1].append(result.subject)
    fixes = [Fix(finding=f, subjects=tuple(s), first=i) for f, s, i in groups.values()]
    fixes.sort(key=lambda fix: (_ATTENTION[fix.finding.status], -len(fix.subjects), fix.first))
    return fixes


# --- text from servers ------------------------------------------------------------------------

# C0/C1 controls (but tab and newline), DEL, lone surrogates, and the bidirectional
# overrides and isolates that can make a ticket read differently from what was received
# (CVE-2021-42574, "Trojan Source").
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]"
)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0D:
        return ""  # CRLF line ends: the LF stays
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean_text(text: str) -> str:
    """``text`` with control and direction-changing characters shown as ``\\xNN``/``\\uNNNN``.

    Tab and newline stay; a carriage return is dropped. The result is valid in XML 1.0,
    encodes as UTF-8, and cannot move a terminal's cursor or reorder displayed text.
    """
    return _UNSAFE.sub(_escape_char, text)


def format_when(moment: datetime) -> str:
    """A moment as reports show it: in UTC, to the second (a naive one as it is)."""
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def finalize_template_value(value: Any) -> Any:
    """Applied by the template environments to every ``{{ … }}`` before escaping: server
    text made visible and safe (:func:`clean_text`); markup already made is left alone."""
    from markupsafe import Markup  # noqa: PLC0415

    if isinstance(value, str) and not isinstance(value, Markup):
        return clean_text(value)
    return value


def template_environment(package: str) -> Any:
    """A Jinja environment over the ``templates`` folder of ``package``, as every rca page
    is drawn: autoescaped, undefined names are errors, every value passes
    :func:`finalize_template_value`. The templates are part of the installed package, so
    they are not checked for changes at each use (``auto_reload``: a stat of every template
    and include per page). Callers keep one per process and add their filters."""
    from jinja2 import Environment, PackageLoader, StrictUndefined  # noqa: PLC0415

    return Environment(
        loader=PackageLoader(package),
        auto_reload=False,
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize_template_value,
    )


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters in the JSON report]"


# --- certificates in evidence -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """A certificate described in a finding's evidence, with a parsed expiry time."""

    subject: str
    serial: str
    not_after: datetime
    fields: Mapping[str, Any]


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from evidence (naive means UTC), or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _certificate_dicts(evidence: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    many = evidence.get("certificates")
    if isinstance(many, list | tuple):
        yield from (c for c in many if isinstance(c, Mapping))
    one = evidence.get("certificate")
    if isinstance(one, Mapping):
        yield one


def certificates(findings: Iterable[Finding]) -> list[Certificate]:
    """Certificates in the findings' evidence that carry ``serial`` and ``not_after``.

    Accepts ``{"certificates": [{...}, ...]}`` (the TLS probe's shape) and
    ``{"certificate": {...}}``, the serial as ``serial`` or ``serial_hex``; entries
    without a serial or a readable ``not_after`` (ISO 8601) are left out. One entry per
    serial, first seen first.
    """
    seen: dict[str, Certificate] = {}
    for finding in findings:
        for cert in _certificate_dicts(finding.evidence):
            serial = cert.get("serial", cert.get("serial_hex"))
            not_after = parse_time(cert.get("not_after"))
            if not isinstance(serial, str | int) or not_after is None:
                continue
            key = str(serial)
            if key not in seen:
                subject = cert.get("subject")
                seen[key] = Certificate(
                    subject=str(subject) if subject is not None else "",
                    serial=key,
                    not_after=not_after,
                    fields=cert,
                )
    return list(seen.values())
