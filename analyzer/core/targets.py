"""Parsing what the user typed as the target of a check.

Accepted: ``user@domain``, ``domain``, ``host``, ``host:port``, ``[v6]:port``, an IP
address, and ``https://url``. International names are converted to their ASCII
(punycode) form; both forms are kept for display. Anything else raises
:class:`~analyzer.core.errors.UsageError` with one line saying what is wrong.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from analyzer.core.errors import UsageError

__all__ = ["Target", "TargetKind", "is_ip", "parse_target", "to_ascii_domain"]

TargetKind = Literal["address", "domain", "host", "url"]

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# RFC 5321 4.5.3.1.1: a local part of at most 64 octets; RFC 5322 dot-atom or quoted.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = re.compile(rf'^(?:{_ATEXT}+(?:\.{_ATEXT}+)*|"[^"\\\r\n]*")$')
_UTF8_LOCAL = re.compile(r"^[^\s@\"()<>\[\]\\,;:]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A parsed target. ``domain`` is ASCII; ``domain_unicode`` is how a person writes it."""

    raw: str
    kind: TargetKind
    domain: str
    domain_unicode: str
    local_part: str | None = None
    host: str | None = None
    port: int | None = None
    url: str | None = None

    @property
    def address(self) -> str | None:
        """The e-mail address (ASCII domain) when the target is one."""
        if self.local_part is None:
            return None
        return f"{self.local_part}@{self.domain}"

    @property
    def is_ip(self) -> bool:
        """True when the target is a bare IP address (it has no DNS records of its own)."""
        return is_ip(self.domain)

    @property
    def display(self) -> str:
        """The target as shown in reports: Unicode with the ASCII form beside it if they differ."""
        base = self.raw.strip()
        if self.domain != self.domain_unicode:
            return f"{base} ({self.domain})"
        return base


def to_ascii_domain(name: str) -> tuple[str, str]:
    """``(ascii, unicode)`` forms of a domain name, or :class:`UsageError` saying why not."""
    name = name.strip().rstrip(".")
    if not name:
        raise UsageError("the domain is empty")
    if len(name) > 253 * 4:
        raise UsageError("the domain is longer than 253 characters")
    if any(ch.isspace() for ch in name):
        raise UsageError(f"the domain {name!r} contains white space")
    try:
        ascii_name = _idna_encode(name)
    except UsageError:
        raise
    except Exception as exc:  # the idna package raises several unrelated classes
        raise UsageError(f"{name!r} is not a valid domain name: {exc}") from None
    if len(ascii_name) > 253:
        raise UsageError(f"the domain is {len(ascii_name)} characters long; the limit is 253")
    labels = ascii_name.split(".")
    for label in labels:
        if not label:
            raise UsageError(f"{name!r} has an empty label (two dots in a row?)")
        if len(label) > 63:
            raise UsageError(
                f"a label of {name!r} is {len(label)} characters long; the limit is 63"
            )
        if not _LABEL.match(label):
            raise UsageError(f"{label!r} in {name!r} is not a valid DNS label")
    try:
        unicode_name = _idna_decode(ascii_name)
    except Exception:  # a valid ASCII label that is not valid punycode: show it as is
        unicode_name = ascii_name
    return ascii_name, unicode_name


def _idna_encode(name: str) -> str:
    lowered = name.lower()
    if lowered.isascii():
        return lowered
    import idna  # noqa: PLC0415 - only needed for international names

    for label in lowered.split("."):
        if len(label) > 63 * 4:
            raise UsageError(f"a label of {name!r} is far longer than 63 characters")
    encoded: bytes = idna.encode(lowered, uts46=True)
    return encoded.decode("ascii")


def _idna_decode(ascii_name: str) -> str:
    if "xn--" not in ascii_name:
        return ascii_name
    import idna  # noqa: PLC0415

    decoded: str = idna.decode(ascii_name)
    return decoded


def _parse_port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"{text!r} in {raw!r} is not a port number (1-65535)")
    return int(text)


def parse_target(raw: str) -> Target:
    """Parse a target as typed on the command line (see the module docstring)."""
    text = raw.strip()
    if not text:
        raise UsageError("the target is empty: give an e-mail address, a domain or a URL")
    if any(ch.isspace() for ch in text):
        raise UsageError(f"the target {raw!r} contains white space")
    if "://" in text:
        return _parse_url(text)
    if "@" in text:
        return _parse_address(text)
    return _parse_host(text)


def _parse_url(text: str) -> Target:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{text!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise UsageError(f"URL scheme {parts.scheme!r} is not supported: use https://")
    if parts.username is not None or parts.password is not None:
        # Never echo the URL back: it holds a secret.
        raise UsageError(
            "the URL contains credentials (user:password@); remove them and use "
            "--user with --password-file or RCA_PASSWORD"
        )
    if not parts.hostname:
        raise UsageError("the URL has no host name")
    host = parts.hostname
    ascii_host, unicode_host = _host_forms(host)
    return Target(
        raw=text,
        kind="url",
        domain=ascii_host,
        domain_unicode=unicode_host,
        host=ascii_host,
        port=port,
        url=text,
    )


def _parse_address(text: str) -> Target:
    local, sep, domain = text.rpartition("@")
    if not local or not domain:
        raise UsageError(f"{text!r} is not an e-mail address (expected user@domain)")
    if len(local.encode()) > 64:
        raise UsageError(f"the local part of {text!r} is longer than 64 octets")
    # RFC 6531: an SMTPUTF8 local part may hold any non-ASCII character.
    if not (_LOCAL.match(local) or (not local.isascii() and _UTF8_LOCAL.match(local))):
        raise UsageError(f"{local!r} is not a valid local part of an e-mail address")
    ascii_domain, unicode_domain = to_ascii_domain(domain)
    return Target(
        raw=text,
        kind="address",
        domain=ascii_domain,
        domain_unicode=unicode_domain,
        local_part=local,
    )


def _host_forms(host: str) -> tuple[str, str]:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return to_ascii_domain(host)
    return str(ip), str(ip)


def _parse_host(text: str) -> Target:
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"{text!r}: expected ':port' after ']'")
            port = _parse_port(rest[1:], text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(port_text, text)
    ascii_host, unicode_host = _host_forms(host)
    literal = is_ip(ascii_host)
    return Target(
        raw=text,
        kind="host" if (port is not None or literal) else "domain",
        domain=ascii_host,
        domain_unicode=unicode_host,
        host=ascii_host if (port is not None or literal) else None,
        port=port,
    )


@functools.lru_cache(maxsize=1024)
def is_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address (no brackets, no port).

    Asked for the same few host names at every connection of a run (a host name costs
    two failed parses and their exceptions), so the answers are kept."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
