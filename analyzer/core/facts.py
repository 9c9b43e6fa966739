"""Typed facts that probes publish for each other.

Probes never import one another: they share what they learned through these values,
keyed by name (the constants below). Every fact type is a frozen dataclass of plain
data, so it can also be shown in a report (``analyzer.core.model.to_json``). The exceptions,
:class:`TlsVerdicts` and :class:`TlsChains`, fill up while their probe runs, so that a
login (or DANE) waits for *its* endpoint rather than for every TLS check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

V = TypeVar("V")

__all__ = [
    "AUTODISCOVER_SETTINGS",
    "DNSSEC_ZONES",
    "DOMAIN_ADDRESSES",
    "MAIL_SETTINGS",
    "OPEN_PORTS",
    "TLS_CHAINS",
    "TLS_VERDICTS",
    "MX_HOSTS",
    "SRV_RECORDS",
    "AutodiscoverSettings",
    "EndpointFacts",
    "HostAddresses",
    "MailServerSetting",
    "MxHost",
    "OutlookAnywhere",
    "SrvRecord",
    "TlsChains",
    "TlsVerdicts",
]

#: ``tuple[MxHost, ...]``, sorted by preference; empty for a null MX.
MX_HOSTS = "mx_hosts"
#: ``HostAddresses`` of the target domain itself.
DOMAIN_ADDRESSES = "domain_addresses"
#: ``tuple[SrvRecord, ...]``: the mail SRV records found (RFC 6186/8314, Autodiscover),
#: in RFC 2782 order per service; a record with target "." means "not offered".
SRV_RECORDS = "srv_records"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostAddresses:
    """A host name with the addresses DNS gave for it."""

    host: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()

    @property
    def addresses(self) -> tuple[str, ...]:
        """IPv4 then IPv6 addresses."""
        return self.ipv4 + self.ipv6

    def addresses_for(self, families: tuple[int, ...] | list[int]) -> tuple[str, ...]:
        """The addresses of the run's IP families (IPv4 first)."""
        return (self.ipv4 if 4 in families else ()) + (self.ipv6 if 6 in families else ())


@dataclass(frozen=True, slots=True, kw_only=True)
class MxHost:
    """One MX record with the addresses of its exchange."""

    preference: int
    host: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    implicit: bool = False  # RFC 5321 5.1: no MX, the domain's own address is used


@dataclass(frozen=True, slots=True, kw_only=True)
class SrvRecord:
    """One SRV record (``service`` like ``_imaps._tcp``), read from the rdata's fields."""

    priority: int
    weight: int
    port: int
    #: The target host name, lower case, without the trailing dot; "." for "no service".
    target: str
    service: str = ""

    @classmethod
    def from_rdata(cls, rdata: object, *, service: str = "") -> SrvRecord:
        """Build from a dnspython SRV rdata (``priority``, ``weight``, ``port``, ``target``)."""
        target = str(getattr(rdata, "target", "")).lower()
        return cls(
            priority=int(getattr(rdata, "priority", 0)),
            weight=int(getattr(rdata, "weight", 0)),
            port=int(getattr(rdata, "port", 0)),
            target=target if target == "." else target.rstrip("."),
            service=service,
        )

    @property
    def no_service(self) -> bool:
        """RFC 2782 / RFC 6186 3.4: the target "." means the service is not offered."""
        return self.target in (".", "")

    @property
    def offered(self) -> bool:
        """The opposite of :attr:`no_service`."""
        return not self.no_service


#: ``AutodiscoverSettings`` from Exchange Autodiscover (POX or v2), when it answered.
AUTODISCOVER_SETTINGS = "autodiscover_settings"
#: ``tuple[MailServerSetting, ...]``: IMAP/POP3/SMTP settings from autoconfig, RFC 6186
#: SRV or Autodiscover, for the login probes (the first of a protocol is preferred).
MAIL_SETTINGS = "mail_settings"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlookAnywhere:
    """An EXPR/EXHTTP protocol block: Outlook Anywhere (RPC over HTTP) settings."""

    server: str
    ssl: bool = True
    auth_package: str = ""  # Basic, Ntlm, Negotiate... as Autodiscover spells it
    cert_principal_name: str = ""
    internal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AutodiscoverSettings:
    """What Autodiscover said about the user's mailbox (outlook 2006a / mobilesync)."""

    email: str
    source_url: str
    display_name: str = ""
    legacy_dn: str = ""
    mailbox_server: str = ""  # EXCH Server (the RPC endpoint name for RPC/HTTP)
    mailbox_server_dn: str = ""
    ews_url: str = ""
    #: ``ASUrl``: the Availability (free/busy) service, an EWS URL ("ASUrl (POX)").
    availability_url: str = ""
    #: The ActiveSync URL, never from the outlook schema (it has none): see ``eas_source``.
    eas_url: str = ""
    #: Which answer gave ``eas_url``: ``mobilesync`` (the mobilesync schema) or ``v2``
    #: (Autodiscover v2, Protocol=ActiveSync); empty when neither did.
    eas_source: str = ""
    oab_url: str = ""
    #: ``OOFUrl``: the out-of-office service (an EWS URL too).
    oof_url: str = ""
    mapi_mailstore_url: str = ""
    mapi_addressbook_url: str = ""
    outlook_anywhere: tuple[OutlookAnywhere, ...] = ()
    hosts: tuple[str, ...] = ()  # every host name the settings mention (for TLS/ports)
    method: str = ""  # the discovery method that answered: root, autodiscover, http, srv, url
    #: IMAP/POP3/SMTP Protocol blocks of the answer (Exchange publishes them when configured).
    mail_servers: tuple[MailServerSetting, ...] = ()
    #: The answer came over verified HTTPS from a host the credential policy allows by name
    #: (:mod:`analyzer.core.credpolicy`, rule 4): it vouches for the hosts it names.
    vouched: bool = False
    #: Why it does not vouch (anonymous answer from outside the domain...), for findings.
    unvouched_reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MailServerSetting:
    """One incoming or outgoing server as a mail client would be configured."""

    protocol: str  # imap, pop3, smtp
    host: str
    port: int
    socket_type: str  # SSL (implicit TLS), STARTTLS, plain
    authentication: tuple[str, ...] = ()  # password-cleartext, OAuth2, NTLM...
    username: str = ""
    source: str = ""  # autoconfig URL, "srv", "autodiscover", "guess"
    #: The source vouches for this host (:mod:`analyzer.core.credpolicy`, rule 4).
    vouched: bool = False
    #: Why it does not (fetched over http, from a host outside the domain...).
    unvouched_reason: str = ""

#: ``tuple[str, ...]``: ``host:port`` endpoints found open by the reachability probe.
OPEN_PORTS = "open_ports"
#: :class:`TlsVerdicts`, a mapping ``host:port`` → ``valid`` | ``invalid`` | ``unreachable``
#: | ``failed`` (TLS probe), published before the first handshake and filled as each ends.
#: Login probes never send credentials to an endpoint that is not ``valid`` (unless
#: ``--insecure``).
TLS_VERDICTS = "tls_verdicts"
#: :class:`TlsChains`, a mapping ``host:port`` → the DER chain presented (for DANE),
#: published before the first handshake and filled as each endpoint's handshakes end.
TLS_CHAINS = "tls_chains"
#: ``dict[str, str]``: name → DNSSEC state of its zone (secure/insecure/bogus/indeterminate).
DNSSEC_ZONES = "dnssec_zones"


class EndpointFacts(Mapping[str, V]):
    """Something the TLS check learns per ``host:port``, filled as each endpoint's check
    ends (:class:`TlsVerdicts`, :class:`TlsChains`).

    The TLS probe publishes it before its first handshake (before it has resolved every
    host), naming every endpoint it may check, so probes waiting for it start at once and
    each awaits :meth:`when_known` of its own endpoint only; an endpoint whose host turns
    out not to exist is withdrawn (nothing known). As a mapping it holds what is known so
    far (all of it once the probe has ended, which is when a report shows it), sorted by
    label, whatever order the checks ended in, so a report is the same from run to run.
    """

    def __init__(self, labels: Iterable[str]) -> None:
        self._known: dict[str, V] = {}
        self._pending: dict[str, asyncio.Event] = {label: asyncio.Event() for label in labels}

    def settle(self, label: str, value: V) -> None:
        """Record what is known of ``label`` and wake whoever waits for it."""
        self._known[label] = value
        event = self._pending.pop(label, None)
        if event is not None:
            event.set()

    def withdraw(self, label: str) -> None:
        """``label`` will not be checked after all (its host name does not exist): whoever
        waits for it learns nothing, at once."""
        event = self._pending.pop(label, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        """Nothing more will come (the probe ended, or hit its deadline): wake everyone."""
        for event in self._pending.values():
            event.set()
        self._pending.clear()

    async def when_known(self, label: str) -> V | None:
        """What is known of ``label`` once its check has ended; None when it has nothing."""
        event = self._pending.get(label)
        if event is not None:
            await event.wait()
        return self._known.get(label)

    def __getitem__(self, label: str) -> V:
        return self._known[label]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._known))

    def __len__(self) -> int:
        return len(self._known)


class TlsVerdicts(EndpointFacts[str]):
    """The TLS check's verdict per ``host:port`` (:data:`TLS_VERDICTS`), filled as each
    endpoint's handshakes are judged: a login awaits :meth:`verdict` of its own endpoint."""

    async def verdict(self, label: str) -> str:
        """The verdict on ``label`` once its check has ended; ``""`` when it had none."""
        return await self.when_known(label) or ""


class TlsChains(EndpointFacts[tuple[bytes, ...]]):
    """The DER chain (leaf first) each ``host:port`` presented (:data:`TLS_CHAINS`), filled
    as each endpoint's handshakes end, before its TLS-version checks: DANE awaits
    :meth:`chain` of each MX on port 25 only."""

    async def chain(self, label: str) -> tuple[bytes, ...]:
        """The chain ``label`` presented once its handshakes have ended; ``()`` when none
        was captured (unreachable, no STARTTLS, not checked)."""
        return await self.when_known(label) or ()
