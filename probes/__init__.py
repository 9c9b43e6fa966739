"""The probes of rca, one module each.

:data:`REGISTRY` is the one literal mapping from probe id to where its :class:`Probe`
lives. The analyzer loads probes only through it (lazily, so that ``rca --version``
imports none of them); the order here is the order of the report.
"""

from __future__ import annotations

__all__ = ["REGISTRY"]

REGISTRY: dict[str, str] = {
    "dns": "probes.dns:PROBE",
    "dnssec": "probes.dnssec:PROBE",
    "mailauth": "probes.mailauth.probe:PROBE",
    "autodiscover": "probes.autodiscover:PROBE",
    "autoconfig": "probes.autoconfig:PROBE",
    "ports": "probes.ports:PROBE",
    "tls": "probes.tls:PROBE",
    "dane": "probes.dane:PROBE",
    "dnsbl": "probes.dnsbl:PROBE",
    "imap": "probes.imap:PROBE",
    "pop3": "probes.pop3:PROBE",
    "smtp": "probes.smtp:PROBE",
    "roundtrip": "probes.smtp:ROUNDTRIP",
    "ews": "probes.ews:PROBE",
    "activesync": "probes.activesync:PROBE",
    "outlook_anywhere": "probes.outlook_anywhere:PROBE",
    "mapi_http": "probes.mapi_http:PROBE",
}
