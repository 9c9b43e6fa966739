"""A DNS answered from a dict, for the mail-authentication unit tests.

``FakeDns({("example.com", "TXT"): ["v=spf1 -all"]})`` is an injectable
:data:`probes.mailauth.TxtLookup`. Values are record texts (a TXT text is split into
255-byte character-strings, as a zone file would), ready-made rdata objects, or one of the
outcome words ``nxdomain``, ``nodata``, ``servfail``, ``refused``, ``timeout``, ``error``.
A name absent from the dict is NXDOMAIN; a name present with other types only is NODATA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SPF
import dns.rdtypes.ANY.TXT

from analyzer.protocols.resolve import Lookup, Outcome

Answer = str | Sequence[str | bytes | dns.rdata.Rdata]
OUTCOMES: tuple[Outcome, ...] = ("nxdomain", "nodata", "servfail", "refused", "timeout", "error")


def txt(*strings: bytes | str) -> dns.rdata.Rdata:
    """One TXT record made of exactly these character-strings (each at most 255 bytes)."""
    raw = [s.encode("latin-1") if isinstance(s, str) else s for s in strings]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, raw)


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


def _rdata(rdtype: str, value: str | bytes | dns.rdata.Rdata) -> dns.rdata.Rdata:
    if isinstance(value, dns.rdata.Rdata):
        return value
    if rdtype in ("TXT", "SPF"):
        raw = value.encode("latin-1") if isinstance(value, str) else value
        if rdtype == "SPF":
            return dns.rdtypes.ANY.SPF.SPF(dns.rdataclass.IN, dns.rdatatype.SPF, _chunks(raw))
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, _chunks(raw))
    text = value.decode() if isinstance(value, bytes) else value
    return dns.rdata.from_text("IN", rdtype, text)


class FakeDns:
    """An async DNS function over a dict, recording every question asked."""

    def __init__(self, zone: Mapping[tuple[str, str], Answer]) -> None:
        self.zone = {(n.lower().rstrip("."), t.upper()): v for (n, t), v in zone.items()}
        self.names = {n for n, _ in self.zone}
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, name: str, rdtype: str) -> Lookup:
        self.asked.append((name.lower().rstrip("."), rdtype.upper()))
        return self.answer(name, rdtype)

    def answer(self, name: str, rdtype: str) -> Lookup:
        """The answer, without recording the question (for building test inputs)."""
        key = (name.lower().rstrip("."), rdtype.upper())
        value = self.zone.get(key)
        if value is None:
            outcome: Outcome = "nodata" if key[0] in self.names else "nxdomain"
            return Lookup(name=key[0], rdtype=key[1], outcome=outcome)
        if isinstance(value, str) and value in OUTCOMES:
            word: Outcome = value
            return Lookup(name=key[0], rdtype=key[1], outcome=word, detail=f"fake {value}")
        items = [value] if isinstance(value, str) else list(value)
        records = tuple(_rdata(key[1], v) for v in items)
        if not records:
            return Lookup(name=key[0], rdtype=key[1], outcome="nodata")
        return Lookup(name=key[0], rdtype=key[1], outcome="answer", records=records)
