"""Typed facts that probes publish for each other.

Probes never import one another: they share what they learned through these values,
keyed by name (the constants below). Every fact type is a frozen dataclass of plain
data, so it can also be shown in a report (``analyzer.model.to_json``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DOMAIN_ADDRESSES",
    "MX_HOSTS",
    "SRV_RECORDS",
    "HostAddresses",
    "MxHost",
    "SrvRecord",
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
    """One SRV record of a mail service (``service`` like ``_imaps._tcp``)."""

    service: str
    priority: int
    weight: int
    port: int
    target: str

    @property
    def offered(self) -> bool:
        """RFC 2782 / RFC 6186 3.4: the target "." means the service is not offered."""
        return self.target not in ("", ".")
