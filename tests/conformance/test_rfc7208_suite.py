"""The official RFC 7208 SPF test suite, every case through ``check_host()``.

The suite (``data/rfc7208/rfc7208-tests.yml``, see the README beside it for origin and
licence) is a multi-document YAML file: each scenario has DNS ``zonedata`` and ``tests``.
Each test becomes one pytest case named ``<scenario>/<test>``, so a regression names the
case that broke.

The DNS is answered from the scenario's zonedata, following the suite's conventions (those
of its reference driver, pyspf's ``test/testspf.py``):

- names are case-insensitive; a name absent from the zone is NXDOMAIN, a name present
  without the type asked is NODATA;
- a bare ``TIMEOUT`` entry makes every query of the name time out, except for the types
  listed before it; ``TYPE: TIMEOUT`` makes that type's queries time out;
- records written as type ``SPF`` are also served as TXT, unless the name lists a TXT
  entry of its own (``TXT: NONE`` says "no TXT record at all");
- CNAMEs are followed (as :func:`analyzer.protocols.resolve.lookup` does), a loop being a DNS error.

The suite also gives explanation strings for some tests; it says an implementation that
does not compute explanations may ignore them, and rca does not fetch ``exp=`` (a
diagnostic has no use for it), so only the results are compared. A test whose ``result``
is a list accepts any of its values (the RFC leaves the choice open).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SPF
import pytest
import yaml

from analyzer.protocols.resolve import MAX_CNAME_CHAIN, Lookup
from probes.mailauth.spf import check_host
from tests.unit.mailauth_dns import txt

SUITE = Path(__file__).parent / "data" / "rfc7208" / "rfc7208-tests.yml"
#: The suite's size (RFC 7208 release 2014.04 plus the 2019.08 syntax cases).
SUITE_TESTS = 203
SUITE_SCENARIOS = 16

Entry = tuple[str, Any] | None  # (type, value), or None for a bare TIMEOUT


def _name(name: str) -> str:
    return name.lower().rstrip(".")


def _entries(records: list[Any]) -> list[Entry]:
    """A zonedata list in the order a query sees it, SPF copied to TXT as pyspf's driver does."""
    out: list[Entry] = []
    copied: list[Entry] = []
    has_txt = False
    for record in records:
        if record == "TIMEOUT":
            out.append(None)
            continue
        ((rdtype, value),) = record.items()
        if rdtype == "TXT":
            has_txt = True
        if rdtype in ("TXT", "SPF") and value == "NONE":
            continue  # a marker: the name has no record of this type
        out.append((rdtype, value))
        if rdtype == "SPF":
            copied.append(("TXT", value))
    return out if has_txt else out + copied


def _rdata(rdtype: str, value: Any) -> dns.rdata.Rdata:
    if rdtype in ("TXT", "SPF"):
        strings = [value] if isinstance(value, str) else list(value)
        raw = [s.encode("utf-8") for s in strings]
        if rdtype == "SPF":
            return dns.rdtypes.ANY.SPF.SPF(dns.rdataclass.IN, dns.rdatatype.SPF, raw or [b""])
        if not raw:
            return _stringless_txt()
        return txt(*raw)
    if rdtype == "MX":
        preference, exchange = value
        text = f"{preference} {exchange}"
    else:
        text = str(value)
    if rdtype in ("MX", "PTR", "CNAME") and not text.endswith("."):
        text += "."  # the suite writes absolute names without the final dot
    return dns.rdata.from_text("IN", rdtype, text)


def _stringless_txt() -> dns.rdata.Rdata:
    """A TXT record without any character-string (the suite's ``null-text`` case).

    RFC 1035 does not allow it and dnspython refuses to build one, so this is a one-string
    record with its strings emptied afterwards: what a lenient resolver would hand over.
    (Through :func:`analyzer.protocols.resolve.lookup` dnspython rejects the whole answer instead.)
    """
    record = txt(b"")
    object.__setattr__(record, "strings", ())
    return record


class SuiteDns:
    """An injectable DNS function answering from one scenario's zonedata."""

    def __init__(self, zonedata: dict[str, list[Any]]) -> None:
        self.zone = {_name(name): _entries(records) for name, records in zonedata.items()}

    async def __call__(self, name: str, rdtype: str) -> Lookup:
        return self.resolve(_name(name), rdtype.upper())

    def resolve(self, name: str, rdtype: str) -> Lookup:
        chain: list[str] = []
        current = name
        while True:
            entries = self.zone.get(current)
            if entries is None:
                return Lookup(
                    name=name, rdtype=rdtype, outcome="nxdomain", cname_chain=tuple(chain)
                )
            records: list[dns.rdata.Rdata] = []
            alias: str | None = None
            for entry in entries:
                if entry is None or entry[1] == "TIMEOUT":
                    if entry is None and records:
                        break  # types listed before a bare TIMEOUT still answer
                    if entry is None or entry[0] == rdtype:
                        return Lookup(
                            name=name, rdtype=rdtype, outcome="timeout", detail="suite TIMEOUT"
                        )
                    continue
                entry_type, value = entry
                if entry_type == rdtype:
                    records.append(_rdata(rdtype, value))
                elif entry_type == "CNAME" and rdtype != "CNAME":
                    alias = _name(str(value))
            if records or alias is None:
                outcome = "answer" if records else "nodata"
                return Lookup(
                    name=name,
                    rdtype=rdtype,
                    outcome=outcome,
                    records=tuple(records),
                    cname_chain=tuple(chain),
                )
            chain.append(current)
            if alias in chain or len(chain) > MAX_CNAME_CHAIN:
                return Lookup(
                    name=name,
                    rdtype=rdtype,
                    outcome="error",
                    cname_chain=tuple(chain),
                    cname_loop=True,
                    detail=f"CNAME loop at {alias}",
                )
            current = alias


@dataclass(frozen=True, slots=True)
class SuiteCase:
    """One test of the suite, with the DNS of its scenario."""

    scenario: str
    name: str
    test: dict[str, Any]
    zonedata: dict[str, list[Any]]

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.scenario.lower()).strip("-")
        return f"{slug}/{self.name}"


def _load() -> list[SuiteCase]:
    with SUITE.open("rb") as stream:
        scenarios = list(yaml.safe_load_all(stream))
    return [
        SuiteCase(scenario["description"], name, test, scenario["zonedata"])
        for scenario in scenarios
        for name, test in scenario["tests"].items()
    ]


CASES = _load()


def _identity(test: dict[str, Any]) -> tuple[str, str | None, str]:
    """The domain, sender and HELO of a test (RFC 7208 2.3, 2.4, 4.3).

    check_host() is asked about the MAIL FROM domain; with an empty MAIL FROM ("null
    reverse-path", a bounce) about the HELO name, as postmaster of it.
    """
    helo = test.get("helo")
    mail_from = test["mailfrom"]
    if mail_from:
        return mail_from.rpartition("@")[2], mail_from, helo
    return helo or "", f"postmaster@{helo}", helo


def test_suite_is_complete() -> None:
    # Given the suite file as shipped
    # When it is loaded
    scenarios = {case.scenario for case in CASES}
    # Then every scenario and test is there, each with a distinct id
    assert (len(CASES), len(scenarios)) == (SUITE_TESTS, SUITE_SCENARIOS)
    assert len({case.id for case in CASES}) == SUITE_TESTS


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_rfc7208_suite(case: SuiteCase) -> None:
    # Given one test of the suite and its scenario's DNS
    expected = case.test["result"]
    accepted = [expected] if isinstance(expected, str) else list(expected)
    domain, sender, helo = _identity(case.test)
    # When check_host() evaluates the test's client address
    got = await check_host(
        str(case.test["host"]), domain, SuiteDns(case.zonedata), sender=sender, helo=helo
    )
    # Then its result is the one the suite expects (or one of those it accepts)
    assert got.result.value in accepted, f"{case.test.get('description', '')} {got.detail}"
