"""Dovecot: IMAP (143, 993) and POP3 (110, 995) on every scenario's mail host, LMTP and SASL
sockets for Postfix.

Its own ``dovecot.conf`` (``!include`` nothing from /etc): base and state directories and the
log under the lab directory; users in a passwd-file (address, plain password, one uid for all,
maildir under the lab directory). Dovecot picks a certificate per local address (and
protocol), so each scenario's mail host has a ``local <ip> { ... }`` block carrying its
certificates and the scenario's own settings. Run with ``dovecot -F -c <conf>``.

Two pseudo-settings in a site's ``settings`` (a scenario's ``dovecot`` mapping) are not Dovecot
settings but refusals, as real servers make them, written as passdbs in front of the users':

- ``rca_deny``: comma-separated addresses whose every login fails as a wrong password would
  (a ``deny = yes`` passdb, Dovecot's "Authentication failed.").
- ``rca_nologin_<service>`` (``imap``, ``pop3``, ``smtp`` for Postfix's SASL): addresses whose
  correct password is refused for that service alone, with the reason "<SERVICE> access is
  disabled for this user." (Exchange's Set-CASMailbox -PopEnabled $false, as Dovecot does it).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from analyzer.lab.errors import LabError

__all__ = ["MAIL_USER", "DovecotSite", "MailUser", "command", "write_config"]

MAIL_USER: Final = "nobody"
"""The system user owning every lab mailbox: unprivileged, present on every Debian system."""
INTERNAL_USER: Final = "dovecot"
LOGIN_USER: Final = "dovenull"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailUser:
    """A mailbox: full address and password."""

    address: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DovecotSite:
    """One scenario's mail host: its addresses, certificates (chain file, key file) per
    protocol, and Dovecot settings that apply to connections to those addresses."""

    scenario: str
    addresses: tuple[str, ...]
    imap_cert: tuple[Path, Path]
    pop3_cert: tuple[Path, Path]
    settings: Mapping[str, str] = field(default_factory=dict)


def _quote_list(addresses: Sequence[str]) -> str:
    return " ".join(addresses) if addresses else ""


def write_config(
    directory: Path,
    *,
    sites: Sequence[DovecotSite],
    users: Sequence[MailUser],
    mail_root: Path,
    default_cert: tuple[Path, Path],
) -> Path:
    """Write ``<directory>/dovecot.conf`` and ``users``; create the mail root. Return the conf.

    Sockets for Postfix: ``<directory>/lmtp`` (delivery) and ``<directory>/auth-postfix``
    (SASL), see ``lmtp_socket``/``auth_socket``.
    """
    try:
        owner = pwd.getpwnam(MAIL_USER)
    except KeyError:
        raise LabError(f"system user {MAIL_USER!r} is missing; lab mailboxes need it") from None
    uid, gid = owner.pw_uid, owner.pw_gid
    for sub in ("run", "state"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    mail_root.mkdir(parents=True, exist_ok=True)
    _chown_tree(mail_root, uid, gid)

    users_file = directory / "users"
    lines = []
    for user in users:
        local, _, domain = user.address.partition("@")
        if not local or not domain or ":" in user.address or ":" in user.password:
            raise LabError(f"bad lab user {user.address!r}")
        home = mail_root / domain / local
        # passwd-file: user:password:uid:gid:gecos:home:shell:extra
        lines.append(f"{user.address}:{{PLAIN}}{user.password}:{uid}:{gid}::{home}::")
    users_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    refusals = _write_refusals(directory, sites, users)
    # Read by Dovecot's auth process, which runs as its internal user.
    try:
        internal_gid = pwd.getpwnam(INTERNAL_USER).pw_gid
    except KeyError:
        raise LabError(f"system user {INTERNAL_USER!r} is missing; reinstall dovecot") from None
    for path in (users_file, *refusals):
        os.chown(path, 0, internal_gid)
        path.chmod(0o640)

    all_addresses = [a for site in sites for a in site.addresses]
    listen = _quote_list(all_addresses)
    conf = [
        "# written by rca lab: nothing is included from /etc/dovecot",
        f"base_dir = {directory / 'run'}",
        f"state_dir = {directory / 'state'}",
        "instance_name = rca-lab",
        f"log_path = {directory / 'dovecot.log'}",
        f"info_log_path = {directory / 'dovecot.log'}",
        "protocols = imap pop3 lmtp",
        "ssl = yes",
        f"ssl_cert = <{default_cert[0]}",
        f"ssl_key = <{default_cert[1]}",
        "ssl_min_protocol = TLSv1.2",
        "disable_plaintext_auth = yes",
        "auth_mechanisms = plain login",
        "auth_username_format = %Lu",
        f"default_internal_user = {INTERNAL_USER}",
        f"default_login_user = {LOGIN_USER}",
        f"first_valid_uid = {uid}",
        f"last_valid_uid = {uid}",
        "mail_location = maildir:~/Maildir",
        # The lab has no syslog and needs no stats; keep the process count small.
        "verbose_proctitle = yes",
        # Refusals first (see the module docstring): a deny list, then per-service nologin.
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {directory / 'deny'}",
        "  deny = yes",
        "}",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {directory / 'nologin'}.%s",
        # Dovecot splits these fields on spaces and has no quoting: the reason's words are
        # joined by no-break spaces, which clients show as spaces.
        "  override_fields = nologin=y reason="
        + "\u00a0".join("%Us access is disabled for this user.".split()),
        "}",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {users_file}",
        "}",
        "userdb {",
        "  driver = passwd-file",
        f"  args = username_format=%u {users_file}",
        "}",
        # Dovecot's "high-performance" login mode, as large installations run it: a few
        # login processes that serve many connections each, instead of a new process per
        # connection. The protocol is the same; a full check makes ~30 connections here,
        # and forking a login process and setting up its TLS for each cost the (shared)
        # machine about half of Dovecot's CPU, which the benchmarks counted against rca.
        "service imap-login {",
        "  service_count = 0",
        "  process_min_avail = 1",
        "  inet_listener imap {",
        f"    address = {listen}",
        "    port = 143",
        "  }",
        "  inet_listener imaps {",
        f"    address = {listen}",
        "    port = 993",
        "    ssl = yes",
        "  }",
        "}",
        "service pop3-login {",
        "  service_count = 0",
        "  process_min_avail = 1",
        "  inet_listener pop3 {",
        f"    address = {listen}",
        "    port = 110",
        "  }",
        "  inet_listener pop3s {",
        f"    address = {listen}",
        "    port = 995",
        "    ssl = yes",
        "  }",
        "}",
        "service lmtp {",
        f"  unix_listener {lmtp_socket(directory)} {{",
        "    mode = 0666",
        "  }",
        "}",
        # Every lab client shares one source address: Dovecot's per-IP auth penalty would
        # slow down every scenario after one scenario's wrong password (up to 15 s a login).
        "service anvil {",
        "  unix_listener anvil-auth-penalty {",
        "    mode = 0",
        "  }",
        "}",
        "service auth {",
        f"  unix_listener {auth_socket(directory)} {{",
        "    mode = 0666",
        "  }",
        "}",
        "protocol lmtp {",
        "  postmaster_address = postmaster@lab.test",
        "}",
    ]
    for site in sites:
        settings = {k: v for k, v in site.settings.items() if not k.startswith(_PSEUDO)}
        for address in site.addresses:
            conf += [
                f"local {address} {{",
                *(f"  {key} = {value}" for key, value in settings.items()),
                "  protocol imap {",
                f"    ssl_cert = <{site.imap_cert[0]}",
                f"    ssl_key = <{site.imap_cert[1]}",
                "  }",
                "  protocol pop3 {",
                f"    ssl_cert = <{site.pop3_cert[0]}",
                f"    ssl_key = <{site.pop3_cert[1]}",
                "  }",
                "}",
            ]
    path = directory / "dovecot.conf"
    path.write_text("\n".join(conf) + "\n", encoding="utf-8")
    return path


_PSEUDO: Final = "rca_"
#: Services that authenticate through Dovecot here (Postfix's SASL asks as "smtp").
_SERVICES: Final = ("imap", "pop3", "smtp")


def _write_refusals(
    directory: Path, sites: Sequence[DovecotSite], users: Sequence[MailUser]
) -> list[Path]:
    """Write ``deny`` and ``nologin.<service>`` (every service, empty when unused: Dovecot
    counts a missing passwd-file as an internal failure)."""
    passwords = {u.address.lower(): u.password for u in users}
    deny: list[str] = []
    nologin: dict[str, list[str]] = {service: [] for service in _SERVICES}
    for site in sites:
        for key, value in site.settings.items():
            if not key.startswith(_PSEUDO):
                continue
            addresses = [a.strip().lower() for a in value.split(",") if a.strip()]
            unknown = [a for a in addresses if a not in passwords]
            service = key.removeprefix("rca_nologin_")
            if unknown or (key != "rca_deny" and service not in nologin):
                raise LabError(f"{site.scenario}: bad dovecot pseudo-setting {key}={value!r}")
            if key == "rca_deny":
                deny += addresses
            else:
                nologin[service] += [f"{a}:{{PLAIN}}{passwords[a]}" for a in addresses]
    paths = [directory / "deny"]
    paths[0].write_text("".join(f"{a}\n" for a in deny), encoding="utf-8")
    for service, entries in nologin.items():
        path = directory / f"nologin.{service}"
        path.write_text("".join(f"{e}\n" for e in entries), encoding="utf-8")
        paths.append(path)
    return paths


def lmtp_socket(directory: Path) -> Path:
    """Where Dovecot's LMTP listens for Postfix."""
    return directory / "lmtp"


def auth_socket(directory: Path) -> Path:
    """Where Dovecot's SASL service listens for Postfix."""
    return directory / "auth-postfix"


def command(config: Path) -> list[str]:
    """The foreground command line."""
    return ["dovecot", "-F", "-c", str(config)]


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for path in root.rglob("*"):
        os.lchown(path, uid, gid)
