"""Lab scenarios: the data types (the scenarios themselves are in ``analyzer.lab.sets``).

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from analyzer.lab.pki import CertKind

__all__ = [
    "MAIL_PORTS",
    "ROLES",
    "WEB_ROLES",
    "Expect",
    "FilterRule",
    "HttpRule",
    "Record",
    "Scenario",
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
    #: ActiveSync is served by a real SOGo (``analyzer.lab.sogo``), not by the emulator; the
    #: scenario's web hosts then pass no other Exchange path on.
    sogo: bool = False
    signed: bool = False
    #: With ``signed``: RRSIG validity, as days relative to the lab's start
    #: (inception, expiration); the default is valid from an hour ago for 30 days.
    signature_days: tuple[float, float] | None = None
    #: Roles whose addresses get no PTR record (reverse DNS missing).
    no_ptr: tuple[str, ...] = ()
    #: Names under the domain (``"mx"``) served as zones of their own whose file does not
    #: load: the lab's DNS answers SERVFAIL for them, as for a broken delegation.
    servfail: tuple[str, ...] = ()
    #: Names under the domain (``"mx"``) whose queries (over UDP) the lab's DNS never
    #: answers: they time out, as behind a dead authoritative server.
    dns_silent: tuple[str, ...] = ()
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


