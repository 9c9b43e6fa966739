"""TXT-record helpers shared by the mail-authentication modules (private).

A TXT record is a sequence of character-strings of at most 255 bytes each; SPF (RFC 7208
3.3), DMARC (RFC 7489 6.1), DKIM (RFC 6376 3.6.2.2), MTA-STS and TLS-RPT all join them
with nothing in between before reading the record. The bytes are kept as bytes until a
parser decides what to do with non-ASCII content (a syntax finding, never a crash).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding
from analyzer.protocols.resolve import Lookup

if TYPE_CHECKING:
    # A type only: the package imports this module (all_findings), not the other way round.
    from probes.mailauth import TxtLookup

#: Outcomes that say something definite about the name (others are transient failures).
DEFINITE = ("answer", "nxdomain", "nodata")

#: A DNS host name in presentation form: LDH labels of 1-63 characters (underscore allowed,
#: as in ``_spf.example.com``), at least two labels, optional trailing dot.
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})+\.?")


_FIELD_SEP = re.compile(r"[ \t]*;[ \t]*")
#: An extension field's name and value, the same grammar in RFC 8461 3.1 (sts-ext-name,
#: sts-ext-value) and RFC 8460 3 (tlsrpt-ext-name, tlsrpt-ext-value): a letter or digit then
#: up to 31 of letters, digits, "_", "-", "."; visible characters except "=" and ";".
EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")


def has_version_tag(data: bytes | str, tag: bytes) -> bool:
    """True for a TXT string beginning with ``tag`` (``b"v=STSv1"``), case ignored so
    that a mis-cased record is reported rather than overlooked."""
    raw = data.encode("latin-1", "replace") if isinstance(data, str) else data
    return re.match(re.escape(tag) + rb"(?![a-z0-9])", raw, re.IGNORECASE) is not None


def record_fields(
    record: str | bytes, error: Callable[..., Exception]
) -> tuple[str, list[tuple[str, int]]]:
    """The text of a ``v=...; name=value; ...`` record and its fields with their offsets.

    The MTA-STS (RFC 8461 3.1) and TLS-RPT (RFC 8460 3) record syntax: printable ASCII
    and tabs only, fields separated by ``*WSP ";" *WSP``, an optional trailing ``";"``,
    no empty field. Raises ``error(message, position=offset)`` otherwise.
    """
    bad = first_bad_byte(record, allowed=printable_or_tab)
    if bad is not None:
        code = record[bad] if isinstance(record, bytes) else ord(record[bad])
        raise error(f"{describe_char(code)} in the record", position=bad)
    text = record.decode("ascii") if isinstance(record, bytes) else record
    fields: list[tuple[str, int]] = []
    start = 0
    for sep in _FIELD_SEP.finditer(text):
        fields.append((text[start : sep.start()], start))
        start = sep.end()
    fields.append((text[start:], start))
    if len(fields) > 1 and not fields[-1][0]:
        fields.pop()  # the optional trailing ";"
    for value, at in fields:
        if not value:
            raise error("empty field", position=at)
    return text, fields


def txt_bytes(rdata: object) -> bytes:
    """The character-strings of one TXT (or SPF type 99) record, joined without separator."""
    strings = getattr(rdata, "strings", None)
    if not isinstance(strings, tuple | list):
        return b""
    return b"".join(s for s in strings if isinstance(s, bytes))


def show(data: bytes) -> str:
    """Record bytes as text for evidence: ASCII as is, anything else as ``\\xNN``."""
    return data.decode("ascii", "backslashreplace")


def first_bad_byte(data: bytes | str, *, allowed: Callable[[int], bool]) -> int | None:
    """Offset of the first byte (or character) that ``allowed`` rejects, or None."""
    codes = data if isinstance(data, bytes) else [ord(char) for char in data]
    for index, code in enumerate(codes):
        if not allowed(code):
            return index
    return None


def printable_ascii(code: int) -> bool:
    """Visible ASCII or space (%x20-7E), the alphabet of every record text here."""
    return 0x20 <= code <= 0x7E


def printable_or_tab(code: int) -> bool:
    """Visible ASCII, space or horizontal tab (WSP includes HTAB in these grammars)."""
    return code == 0x09 or 0x20 <= code <= 0x7E


def describe_char(code: int) -> str:
    """A short human description of a rejected byte or character."""
    if code > 0x7E:
        return (
            f"non-ASCII byte 0x{code:02X}" if code <= 0xFF else f"non-ASCII character U+{code:04X}"
        )
    return f"control character 0x{code:02X}"


def is_hostname(name: str) -> bool:
    """True for a plausible fully qualified host name (two or more LDH labels, <= 253)."""
    return len(name.rstrip(".")) <= 253 and _HOSTNAME.fullmatch(name) is not None


def normalise_name(name: str) -> str:
    """Lower case, without the trailing dot."""
    return name.strip().rstrip(".").lower()


async def safe_lookup(lookup_fn: TxtLookup, name: str, rdtype: str) -> Lookup:
    """Ask the injected DNS function; any exception becomes an ``error`` outcome.

    The evaluators promise never to raise, so a broken lookup function (or a name the
    resolver cannot even encode) is turned into a DNS failure that is reported.
    """
    try:
        return await lookup_fn(name, rdtype)
    except Exception as exc:  # noqa: BLE001 - reported as a DNS failure, see docstring
        return Lookup(
            name=name, rdtype=rdtype, outcome="error", detail=f"{type(exc).__name__}: {exc}"
        )


Selection = Literal["none", "one", "multiple", "temperror"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Selected:
    """The records of a TXT answer that belong to one standard (by their prefix)."""

    state: Selection
    records: tuple[bytes, ...] = ()
    #: Every TXT string of the answer (joined per record), for evidence.
    all_records: tuple[bytes, ...] = ()
    detail: str = ""

    @property
    def record(self) -> bytes:
        """The only record (``state == "one"``), else the first one or empty."""
        return self.records[0] if self.records else b""


def select(found: Lookup, belongs: Callable[[bytes], bool]) -> Selected:
    """Keep the records ``belongs`` accepts: none, one, several, or a DNS failure.

    NXDOMAIN and NODATA mean "no record"; SERVFAIL, REFUSED, a timeout or a malformed
    answer are transient (RFC 7208 4.4 "temperror"; RFC 7489 6.6.3; RFC 8461 3.1).
    """
    if found.outcome not in DEFINITE:
        return Selected(state="temperror", detail=found.detail or f"{found.name}: {found.outcome}")
    every = tuple(txt_bytes(r) for r in found.records)
    mine = tuple(r for r in every if belongs(r))
    if not mine:
        return Selected(state="none", all_records=every)
    if len(mine) > 1:
        return Selected(state="multiple", records=mine, all_records=every)
    return Selected(state="one", records=mine, all_records=every)


def selection_problem(
    name: str,
    answer: Lookup,
    chosen: Selected,
    *,
    tag: str,
    temperror: FindingSpec,
    missing: FindingSpec,
    multiple: FindingSpec,
) -> Finding | None:
    """The finding when a one-record standard (``tag`` like ``v=STSv1``) does not have
    exactly one record at ``name``: a failed look-up, none, or several; else None."""
    if chosen.state == "temperror":
        return temperror(detail=f"{name}: {chosen.detail}", evidence=answer.evidence())
    if chosen.state == "none":
        return missing(detail=f"no {tag} record at {name}", evidence=answer.evidence())
    if chosen.state == "multiple":
        texts = [show(r) for r in chosen.records]
        return multiple(
            detail=f"{name} has {len(texts)} {tag} records",
            evidence={"name": name, "records": texts},
        )
    return None
