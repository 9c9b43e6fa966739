"""Postfix: SMTP on every scenario's MX (25, STARTTLS offered) and submission on its mail host
(587 STARTTLS then SASL, 465 implicit TLS), delivering lab domains to Dovecot over LMTP.

Its own configuration directory (``main.cf``, ``master.cf``), queue and data directories
under the lab directory; the master runs in the foreground (``master -d -c <dir>``, so the PID
we record is the master's own; ``postfix start-fg`` would leave a shell script in between).
Mail for any other domain bounces at once (``default_transport = error``): nothing ever leaves.

Queue ownership is what Postfix's ``post-install`` would set: the queue directories belong to
``postfix`` (mode 0700), ``maildrop`` to postfix:postdrop 1730, ``public`` to postfix:postdrop
0710, ``pid`` to root. Every daemon runs unchrooted, so absolute socket paths work.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from analyzer.lab.errors import LabError

__all__ = ["SmtpService", "command", "write_config"]

MASTER: Final = Path("/usr/lib/postfix/sbin/master")

# Postfix's own service table (master.cf), unchrooted (column 5 "n"). Columns: service, type,
# private, unpriv, chroot, wakeup, maxproc, command.
_BASE_SERVICES: Final = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_QUEUE_DIRS: Final = (
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
    "private", "saved", "trace",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpService:
    """One smtpd listener: address, port, TLS chain (key file, chain file), host name, mode.

    ``mode``: ``"mx"`` (port 25: STARTTLS offered, no AUTH), ``"submission"`` (587: STARTTLS
    required, then AUTH) or ``"submissions"`` (465: implicit TLS, AUTH).
    """

    address: str
    port: int
    key_file: Path
    chain_file: Path
    hostname: str
    mode: str
    options: Mapping[str, str] = field(default_factory=dict)


def write_config(
    directory: Path,
    *,
    services: Sequence[SmtpService],
    domains: Sequence[str],
    mailboxes: Sequence[str],
    lmtp_socket: Path,
    auth_socket: Path,
) -> Path:
    """Write main.cf and master.cf into ``<directory>/etc``, make the queue; return the etc dir."""
    etc = directory / "etc"
    queue = directory / "queue"
    data = directory / "data"
    etc.mkdir(parents=True, exist_ok=True)
    _make_queue(queue, data)

    vmailbox = etc / "vmailbox"
    vmailbox.write_text("".join(f"{m} OK\n" for m in mailboxes), encoding="utf-8")

    main = {
        "compatibility_level": "3.6",
        "queue_directory": str(queue),
        "data_directory": str(data),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": "mx.lab.test",
        "mydomain": "lab.test",
        "myorigin": "$myhostname",
        "mydestination": "",
        "mynetworks": "127.0.0.0/8 [::1]/128",
        "inet_interfaces": "all",
        "inet_protocols": "all",
        "maillog_file": str(directory / "postfix.log"),
        "maillog_file_prefixes": str(directory),
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "relay_domains": "",
        "relayhost": "",
        "biff": "no",
        "append_dot_mydomain": "no",
        "smtpd_peername_lookup": "no",
        # Every smtpd asks tlsmgr for entropy as it starts; tlsmgr's socket backlog is this
        # limit. With hundreds of lab listeners, the readiness check starts hundreds of smtpd
        # at once: at the default (100) the rest find the backlog full, log "no entropy for
        # TLS key generation" and serve without TLS (465 then drops every connection).
        "default_process_limit": "1000",
        "smtpd_banner": "$myhostname ESMTP",
        "virtual_mailbox_domains": " ".join(domains),
        "virtual_mailbox_maps": f"texthash:{vmailbox}",
        "virtual_transport": f"lmtp:unix:{lmtp_socket}",
        # Nothing leaves the lab: every other destination bounces at once.
        "default_transport": "error:the rca lab delivers only to lab domains",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": str(auth_socket),
        "smtpd_sasl_auth_enable": "no",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_auth_only": "yes",
        "smtpd_tls_loglevel": "1",
        # As Dovecot (ssl_min_protocol) and nginx (ssl_protocols): no TLS 1.0/1.1 (RFC 8996).
        "smtpd_tls_protocols": ">=TLSv1.2",
        "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
        "smtpd_recipient_restrictions": "reject_unlisted_recipient",
        "smtp_tls_security_level": "none",
        "lmtp_tls_security_level": "none",
        "tls_random_source": "dev:/dev/urandom",
        "message_size_limit": "10240000",
        "delay_warning_time": "0",
        "queue_run_delay": "30s",
        "minimal_backoff_time": "30s",
    }
    (etc / "main.cf").write_text(
        "# written by rca lab\n" + "".join(f"{k} = {v}\n" for k, v in main.items()),
        encoding="utf-8",
    )
    lines = ["# written by rca lab", _BASE_SERVICES.rstrip("\n")]
    for service in services:
        lines.append(_smtpd_line(service))
    (etc / "master.cf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return etc


def _smtpd_line(service: SmtpService) -> str:
    address = f"[{service.address}]" if ":" in service.address else service.address
    options: dict[str, str] = {
        "syslog_name": f"postfix/{service.mode}",
        "myhostname": service.hostname,
        "smtpd_tls_chain_files": f"{service.key_file},{service.chain_file}",
    }
    if service.mode == "mx":
        options["smtpd_sasl_auth_enable"] = "no"
    elif service.mode in ("submission", "submissions"):
        if service.mode == "submission":
            options["smtpd_tls_security_level"] = "encrypt"
        else:
            options["smtpd_tls_wrappermode"] = "yes"
        options["smtpd_sasl_auth_enable"] = "yes"
        options["smtpd_client_restrictions"] = "permit_sasl_authenticated,reject"
        options["smtpd_relay_restrictions"] = "permit_sasl_authenticated,reject"
        options["smtpd_recipient_restrictions"] = "permit_sasl_authenticated,reject"
    else:
        raise LabError(f"unknown smtpd mode {service.mode!r}")
    options.update(service.options)
    for key, value in options.items():
        if any(c.isspace() for c in key + value):
            raise LabError(f"postfix option {key}={value!r}: no whitespace allowed")
    opts = " ".join(f"-o {k}={v}" for k, v in options.items())
    return f"{address}:{service.port} inet n - n - - smtpd {opts}"


def _make_queue(queue: Path, data: Path) -> None:
    try:
        postfix_uid = pwd.getpwnam("postfix").pw_uid
        postdrop_gid = grp.getgrnam("postdrop").gr_gid
    except KeyError:
        raise LabError(
            "the postfix user or postdrop group is missing; apt-get install postfix"
        ) from None
    queue.mkdir(parents=True, exist_ok=True)
    os.chown(queue, 0, 0)
    queue.chmod(0o755)
    for name in _QUEUE_DIRS:
        _mkdir(queue / name, postfix_uid, 0, 0o700)
    _mkdir(queue / "maildrop", postfix_uid, postdrop_gid, 0o1730)
    _mkdir(queue / "public", postfix_uid, postdrop_gid, 0o710)
    _mkdir(queue / "pid", 0, 0, 0o755)
    _mkdir(data, postfix_uid, 0, 0o700)


def _mkdir(path: Path, uid: int, gid: int, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)


def command(etc: Path) -> list[str]:
    """The foreground command line (the master itself, not the ``postfix`` wrapper)."""
    return [str(MASTER), "-d", "-c", str(etc)]


def environment(etc: Path) -> dict[str, str]:
    """Environment for the master: its children find main.cf through ``MAIL_CONFIG``."""
    return {"MAIL_CONFIG": str(etc)}
