"""Lab scenarios: data, not code paths.

A scenario is one mail domain, ``<name>.test``, with a host per role (apex, mx, mail,
autodiscover, autoconfig, mta-sts), each on an IPv4 and an IPv6 address of its own. Every
scenario starts from the *baseline* (what ``healthy`` is: MX, A/AAAA, SRV, SPF, DMARC, DKIM,
MTA-STS, TLS-RPT, good certificates, Dovecot + Postfix + nginx on their usual ports) and lists
only what differs: DNS records added, replaced or removed, certificate kinds per host or per
host:port, server options, packet-filter rules, static files, emulator behaviour. It also lists
what the analyzer must find there (``expect``).

Adding a scenario is adding one entry to ``SCENARIOS``. Append new entries at the end: a
scenario's addresses come from its position in that tuple (see ``host_addresses``), so moving
entries renumbers the lab.

DNS records are ``(name, type, text)`` tuples. ``name`` is relative to the scenario's zone
(``"@"`` is the apex, ``"_dmarc"``, ``"mx"``), ``text`` is presentation format, relative names
in it are relative to the zone too. ``text`` may use ``{domain}`` and ``{<role>_v4}`` /
``{<role>_v6}`` (role with ``-`` written ``_``: ``{mta_sts_v4}``) placeholders. A record whose
``(name, type)`` exists in the baseline replaces that whole RRset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from analyzer.lab.errors import LabError
from analyzer.lab.pki import CERT_KINDS, CertKind

__all__ = [
    "MAIL_PORTS",
    "ROLES",
    "SCENARIOS",
    "WEB_ROLES",
    "Expect",
    "FilterRule",
    "HttpRule",
    "Record",
    "Scenario",
    "get_scenario",
    "host_addresses",
    "host_name",
    "scenario_index",
    "select_scenarios",
]

Record = tuple[str, str, str]
"""One DNS record: (owner relative to the zone, type, rdata in presentation format)."""

ROLES: Final[tuple[str, ...]] = ("apex", "mx", "mail", "autodiscover", "autoconfig", "mta-sts")
"""Every scenario has one host per role; its name is ``<label>.<domain>`` (apex: ``<domain>``)."""

WEB_ROLES: Final[tuple[str, ...]] = ("apex", "mail", "autodiscover", "autoconfig", "mta-sts")
"""Hosts nginx serves on 80 and 443 (the MX host has no web server)."""

MAIL_PORTS: Final[Mapping[str, tuple[int, ...]]] = {
    "mx": (25,),
    "mail": (143, 993, 110, 995, 587, 465),
}
"""Mail ports per role: Postfix on mx:25 and mail:587/465, Dovecot on mail:143/993/110/995."""

_MAX_SCENARIOS: Final = 250  # third octet of 198.18.<index + 1>.x; 0 is the lab's own hosts


@dataclass(frozen=True, slots=True, kw_only=True)
class Expect:
    """A finding the analyzer must produce on this scenario (``subject`` narrows where)."""

    code: str
    status: str
    subject: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterRule:
    """Make ``role``'s TCP ``port`` (every TCP port when ``None``) closed or filtered.

    ``reject`` answers a TCP reset (the client sees "connection refused"), ``drop`` answers
    nothing (the client times out). ``family`` picks the host's IPv4 address, IPv6 or both.
    """

    role: str
    port: int | None
    action: Literal["reject", "drop"]
    family: Literal["4", "6", "both"] = "both"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRule:
    """nginx answers ``path`` itself: ``status`` with ``location`` (redirects) or ``body``.

    ``path`` ending in ``/`` is a prefix, else an exact path (case-sensitive, as nginx is).
    ``roles`` empty means every web host of the scenario; ``ports`` picks HTTP and/or HTTPS.
    """

    path: str
    status: int
    location: str | None = None
    body: str | None = None
    roles: tuple[str, ...] = ()
    ports: tuple[int, ...] = (80, 443)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One lab domain, as differences from the baseline (see the module docstring).

    ``certs`` maps a role (``"mail"``) or a role and port (``"mail:587"``) to a certificate kind
    of ``analyzer.lab.pki`` (``"good"`` when absent). Dovecot picks one certificate per address
    and protocol, so ``mail:143`` and ``mail:993`` (likewise 110/995) cannot differ.
    ``dovecot`` holds settings for this scenario's ``local`` blocks; ``postfix`` maps a port
    (25 on the MX, 587 and 465 on the mail host) to ``-o`` overrides for that smtpd service.
    ``http`` rules may use ``{domain}`` and ``{host}`` (the web host serving the rule) in
    ``location`` and ``body``. ``files`` adds or replaces files in the scenario's web root
    (path relative to it). ``emulator`` is handed to the Exchange-endpoint emulator as this
    scenario's behaviour.
    """

    name: str
    description: str
    records: tuple[Record, ...] = ()
    remove: tuple[tuple[str, str], ...] = ()
    certs: Mapping[str, CertKind] = field(default_factory=dict)
    users: tuple[tuple[str, str], ...] = (("alice", "alice-lab-password"),)
    dovecot: Mapping[str, str] = field(default_factory=dict)
    postfix: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    http: tuple[HttpRule, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    filters: tuple[FilterRule, ...] = ()
    emulator: Mapping[str, Any] = field(default_factory=dict)
    signed: bool = False
    expect: tuple[Expect, ...] = ()

    @property
    def domain(self) -> str:
        """The scenario's mail domain."""
        return f"{self.name}.test"

    def cert_kind(self, role: str, port: int | None = None) -> CertKind:
        """The certificate kind ``role`` presents on ``port`` (its role-wide kind by default)."""
        if port is not None and f"{role}:{port}" in self.certs:
            return self.certs[f"{role}:{port}"]
        return self.certs.get(role, "good")


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        name="healthy",
        description="Everything right: DNS, SPF/DMARC/DKIM, MTA-STS, TLS-RPT, valid chains",
    ),
    Scenario(
        name="expired-cert",
        description="The mail host (IMAP, POP3, submission) presents an expired certificate",
        certs={"mail": "expired"},
    ),
    Scenario(
        name="filtered",
        description="IMAPS 993 dropped, POP3S 995 rejected, the MX's IPv6 address dropped",
        filters=(
            FilterRule(role="mail", port=993, action="drop"),
            FilterRule(role="mail", port=995, action="reject"),
            FilterRule(role="mx", port=None, action="drop", family="6"),
        ),
        expect=(
            Expect(code="ports.filtered", status="fail"),
            Expect(code="ports.ipv6_broken", status="fail"),
        ),
    ),
    Scenario(
        name="signed",
        description="The healthy zone, DNSSEC-signed (ECDSAP256SHA256); DS in the trust anchor",
        signed=True,
    ),
    Scenario(
        name="no-mx",
        description="No MX record: mail goes to the apex's A/AAAA (RFC 5321 5.1 implicit MX)",
        remove=(("@", "MX"),),
    ),
    Scenario(
        name="plaintext-auth",
        description="IMAP 143 and POP3 110 accept a password before STARTTLS",
        dovecot={"disable_plaintext_auth": "no"},
    ),
    Scenario(
        name="no-starttls",
        description="The MX does not offer STARTTLS on port 25",
        postfix={25: {"smtpd_tls_security_level": "none"}},
    ),
    Scenario(
        name="autodiscover-redirect",
        description="Autodiscover only by the HTTP redirect method; the apex answers 404",
        http=(
            HttpRule(
                path="/autodiscover/autodiscover.xml",
                status=302,
                location="https://{host}/autodiscover/autodiscover.xml",
                roles=("autodiscover",),
                ports=(80,),
            ),
            HttpRule(path="/autodiscover/", status=404, roles=("apex",), ports=(443,)),
        ),
    ),
)


def scenario_index(name: str) -> int:
    """Position of scenario ``name`` in ``SCENARIOS`` (what its addresses derive from)."""
    for index, scenario in enumerate(SCENARIOS):
        if scenario.name == name:
            return index
    known = ", ".join(s.name for s in SCENARIOS)
    raise LabError(f"unknown lab scenario {name!r}; known: {known}")


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; ``LabError`` naming the known ones if there is none."""
    return SCENARIOS[scenario_index(name)]


def select_scenarios(names: Iterable[str] | None) -> tuple[Scenario, ...]:
    """The scenarios named (all when ``None``), in ``SCENARIOS`` order, without duplicates."""
    if names is None:
        return SCENARIOS
    wanted = {get_scenario(name).name for name in names}
    if not wanted:
        raise LabError("no lab scenario selected")
    return tuple(s for s in SCENARIOS if s.name in wanted)


def host_name(domain: str, role: str) -> str:
    """The host name of ``role`` in ``domain`` (the apex is the domain itself)."""
    return domain if role == "apex" else f"{role}.{domain}"


def host_addresses(index: int, role: str) -> tuple[str, str]:
    """The (IPv4, IPv6) addresses of ``role`` in the scenario at ``index``.

    198.18.0.0/15 is the RFC 2544 benchmarking range and 2001:db8::/32 the RFC 3849
    documentation range, so no lab address can be a real host. 198.18.0.x and 2001:db8::x are
    the lab's own hosts (DNS, PKI); scenario ``i`` gets 198.18.<i+1>.<10+r> and
    2001:db8:<i+1>::<10+r> for the role at position ``r`` of ``ROLES``.
    """
    if not 0 <= index < _MAX_SCENARIOS:
        raise LabError(f"scenario index {index} out of range (at most {_MAX_SCENARIOS})")
    octet = 10 + ROLES.index(role)
    return f"198.18.{index + 1}.{octet}", f"2001:db8:{index + 1:x}::{octet:x}"


def _check(scenarios: tuple[Scenario, ...]) -> None:
    """Fail at import on a malformed registry, not halfway through ``Lab.up``."""
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise LabError(f"duplicate scenario names in {names}")
    if len(scenarios) > _MAX_SCENARIOS:
        raise LabError(f"at most {_MAX_SCENARIOS} scenarios")
    for scenario in scenarios:
        for key, kind in scenario.certs.items():
            role, _, port = key.partition(":")
            if role not in ROLES or (port and not port.isdigit()):
                raise LabError(f"{scenario.name}: certs key {key!r} is not 'role' or 'role:port'")
            if kind not in CERT_KINDS:
                raise LabError(f"{scenario.name}: unknown certificate kind {kind!r}")
        for rule in scenario.filters:
            if rule.role not in ROLES:
                raise LabError(f"{scenario.name}: filter on unknown role {rule.role!r}")
        for http in scenario.http:
            if not http.path.startswith("/") or any(r not in WEB_ROLES for r in http.roles):
                raise LabError(f"{scenario.name}: bad http rule {http!r}")
            if not set(http.ports) <= {80, 443}:
                raise LabError(f"{scenario.name}: http rule ports must be 80 and/or 443")
        for smtpd_port in scenario.postfix:
            if smtpd_port not in (25, 587, 465):
                raise LabError(f"{scenario.name}: postfix options for port {smtpd_port}: no smtpd")


_check(SCENARIOS)
