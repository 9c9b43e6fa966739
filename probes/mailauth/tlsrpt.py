"""TLS-RPT (RFC 8460): the ``_smtp._tls`` TXT record that asks for TLS failure reports.

- :func:`parse_tlsrpt` reads ``v=TLSRPTv1; rua=<uri>[,<uri>...]`` or raises
  :class:`TlsRptParseError`. Any URI scheme parses; :func:`check_tlsrpt` then flags
  schemes other than ``mailto:`` and ``https:`` (RFC 8460 3), the only ones reporters use.
- :func:`check_tlsrpt` never raises and returns findings.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from probes.mailauth._txt import (
    EXT_NAME,
    EXT_VALUE,
    has_version_tag,
    is_hostname,
    normalise_name,
    record_fields,
    select,
    selection_problem,
    show,
)

if TYPE_CHECKING:
    from analyzer.protocols.resolve import Lookup

__all__ = [
    "FINDINGS",
    "TlsRptCheck",
    "TlsRptParseError",
    "TlsRptRecord",
    "check_tlsrpt",
    "is_tlsrpt_record",
    "parse_tlsrpt",
    "tlsrpt_name",
    "uri_problem",
]

RFC8460 = "https://www.rfc-editor.org/rfc/rfc8460"


def _ref(section: str) -> str:
    return f"{RFC8460}#section-{section}"


VALID = FindingSpec(
    code="dns.tlsrpt.valid",
    status=Status.PASS,
    title="TLS-RPT record found",
    meaning="The domain asks sending servers for reports about TLS failures (RFC 8460).",
    reference=_ref("3"),
)
MISSING = FindingSpec(
    code="dns.tlsrpt.missing",
    status=Status.WARN,
    title="No TLS-RPT record",
    meaning="Without a TLS-RPT record, senders that fail to connect securely (MTA-STS or "
    "DANE failures, expired certificates) have nowhere to report it, so such problems go "
    "unnoticed.",
    remediation="Publish a TXT record at _smtp._tls.<domain>: "
    '"v=TLSRPTv1; rua=mailto:tls-reports@<domain>".',
    reference=_ref("3"),
)
MULTIPLE = FindingSpec(
    code="dns.tlsrpt.multiple",
    status=Status.FAIL,
    title="More than one TLS-RPT record",
    meaning='RFC 8460 3: if more than one "v=TLSRPTv1" record is found, senders must '
    "assume the domain asks for no reports.",
    remediation="Keep a single TXT record starting with v=TLSRPTv1 at _smtp._tls.<domain>.",
    reference=_ref("3"),
)
SYNTAX = FindingSpec(
    code="dns.tlsrpt.syntax",
    status=Status.FAIL,
    title="TLS-RPT record has a syntax error",
    meaning="A record that does not follow RFC 8460 3 is ignored, so no reports are sent.",
    remediation='Correct the record to "v=TLSRPTv1; rua=mailto:<address>" (several URIs are '
    "separated by commas).",
    reference=_ref("3"),
)
BAD_SCHEME = FindingSpec(
    code="dns.tlsrpt.bad_scheme",
    status=Status.FAIL,
    title="TLS-RPT report URI has an unsupported scheme or form",
    meaning='RFC 8460 3: reports are delivered by e-mail ("mailto:") or HTTPS POST '
    '("https:"); reporters skip any other URI, and a malformed one.',
    remediation='Use "mailto:<address>" or an "https://" URL in rua=.',
    reference=_ref("3"),
)
TEMPERROR = FindingSpec(
    code="dns.tlsrpt.temperror",
    status=Status.INCONCLUSIVE,
    title="The TLS-RPT record could not be fetched",
    meaning="The DNS look-up of _smtp._tls.<domain> failed (SERVFAIL, REFUSED or a "
    "timeout); nothing can be concluded about the record.",
    remediation="Check the authoritative DNS servers of the _smtp._tls name.",
    reference=_ref("3"),
)

FINDINGS: tuple[FindingSpec, ...] = (VALID, MISSING, MULTIPLE, SYNTAX, BAD_SCHEME, TEMPERROR)


class TlsRptParseError(ValueError):
    """A TLS-RPT record that does not follow RFC 8460 3.

    ``position`` is the 0-based offset in the record (None when not about one place).
    """

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        where = f" at offset {self.position}" if self.position is not None else ""
        return f"{self.message}{where}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsRptRecord:
    """A parsed TLS-RPT record (RFC 8460 3)."""

    text: str
    rua: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()


_URI_SEP = re.compile(r"[ \t]*,[ \t]*")
# RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":" and no space,
# ";" or "," (they separate fields and URIs here).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[\x21-\x2b\x2d-\x3a\x3c-\x7e]+")


def is_tlsrpt_record(data: bytes | str) -> bool:
    """True for a TXT string beginning with ``v=TLSRPTv1`` (case ignored, to report it)."""
    return has_version_tag(data, b"v=TLSRPTv1")


def parse_tlsrpt(record: str | bytes) -> TlsRptRecord:
    """Parse ``v=TLSRPTv1; rua=...`` (RFC 8460 3); raises :class:`TlsRptParseError`."""
    text, fields = record_fields(record, TlsRptParseError)
    if fields[0][0] != "v=TLSRPTv1":
        raise TlsRptParseError(
            'the record must begin with "v=TLSRPTv1" (case-sensitive)', position=0
        )
    rua: tuple[str, ...] | None = None
    extensions: list[tuple[str, str]] = []
    for value, at in fields[1:]:
        name, eq, body = value.partition("=")
        if name == "rua" and eq:
            if rua is not None:
                raise TlsRptParseError('"rua" appears twice', position=at)
            uris = tuple(_URI_SEP.split(body))
            for uri in uris:
                if _URI.fullmatch(uri) is None:
                    raise TlsRptParseError(f'"{uri}" is not a URI', position=at)
            rua = uris
        elif eq and EXT_NAME.fullmatch(name) and EXT_VALUE.fullmatch(body):
            extensions.append((name, body))
        else:
            raise TlsRptParseError(f'"{value}" is not a valid field', position=at)
    if rua is None:
        raise TlsRptParseError('the "rua" field is required')
    return TlsRptRecord(text=text, rua=rua, extensions=tuple(extensions))


def uri_problem(uri: str) -> str | None:
    """Why a report URI is unusable (RFC 8460 3: mailto: or https: only), or None."""
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "mailto":
        local, at, host = urllib.parse.unquote(rest).partition("?")[0].rpartition("@")
        if not at or not local or not is_hostname(host):
            return f'"{uri}" is not a valid mailto: address'
        return None
    if scheme == "https":
        try:
            parts = urllib.parse.urlsplit(uri)
            host = parts.hostname or ""
        except ValueError:
            return f'"{uri}" is not a valid https: URL'
        if not rest.startswith("//") or not host:
            return f'"{uri}" is not a valid https: URL'
        return None
    return f'"{uri}" uses the {scheme}: scheme; only mailto: and https: are used'


def tlsrpt_name(domain: str) -> str:
    """Where the TXT record lives (RFC 8460 3)."""
    return f"_smtp._tls.{normalise_name(domain)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsRptCheck:
    """The judged ``_smtp._tls`` TXT answer."""

    record: TlsRptRecord | None
    text: str | None
    findings: tuple[Finding, ...]


def check_tlsrpt(domain: str, answer: Lookup) -> TlsRptCheck:
    """Judge the TXT answer for ``_smtp._tls.<domain>``; never raises."""
    name = tlsrpt_name(domain)
    chosen = select(answer, is_tlsrpt_record)
    problem = selection_problem(
        name,
        answer,
        chosen,
        tag="v=TLSRPTv1",
        temperror=TEMPERROR,
        missing=MISSING,
        multiple=MULTIPLE,
    )
    if problem is not None:
        return TlsRptCheck(record=None, text=None, findings=(problem,))
    text = show(chosen.record)
    try:
        record = parse_tlsrpt(chosen.record)
    except TlsRptParseError as exc:
        finding = SYNTAX(
            detail=f"{name}: {exc}",
            evidence={"name": name, "record": text, "position": exc.position},
        )
        return TlsRptCheck(record=None, text=text, findings=(finding,))
    evidence: dict[str, Json] = {"name": name, "record": text, "rua": list(record.rua)}
    problems = [p for p in (uri_problem(u) for u in record.rua) if p is not None]
    findings: list[Finding] = [
        BAD_SCHEME(detail=f"{name}: {problem}", evidence=evidence) for problem in problems
    ]
    if len(problems) < len(record.rua):
        findings.append(VALID(detail=f"{name}: rua={','.join(record.rua)}", evidence=evidence))
    return TlsRptCheck(record=record, text=text, findings=tuple(findings))
