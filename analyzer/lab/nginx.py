"""nginx: HTTP (80) and HTTPS (443) for every web host, the TLS front of the emulator.

Its own ``nginx.conf`` (``daemon off``, pid, logs and temp paths under the lab directory). One
``server`` block per host and port (certificates chosen by address, not SNI, as Dovecot does),
serving the scenario's web root (autoconfig XML, the MTA-STS policy...) and passing the
Exchange paths (``emulator.PROXIED_PATHS``) to the emulator on 127.0.0.1, with the address
the client reached in ``X-Rca-Server-Addr`` so the emulator knows the scenario and host.
A SOGo scenario's hosts pass ActiveSync to sogod instead (``WebSite.sogo``, see
``analyzer.lab.sogo``) and no Exchange path to the emulator. Scenario ``HttpRule`` entries
become ``return`` locations (redirects, error statuses); exact and ``^~`` locations win over
the proxy's regex location, so a rule can shadow an Exchange path.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from analyzer.lab.errors import LabError
from analyzer.lab.scenarios import HttpRule
from analyzer.lab.sogo import SOGOD_PREFIX

__all__ = ["WORKER_USER", "WebSite", "command", "write_config"]

WORKER_USER: Final = "nobody"

_TYPES: Final = {
    "text/plain": "txt",
    "text/html": "html htm",
    "application/xml": "xml",
    "application/json": "json",
    "application/pkix-cert": "der cer crt",
    "application/x-pem-file": "pem",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSite:
    """One web host: where it listens, its certificate, its web root, its scenario rules."""

    label: str
    addresses: tuple[str, ...]
    chain_file: Path
    key_file: Path
    root: Path
    rules: tuple[HttpRule, ...] = ()
    proxy: bool = True
    #: sogod's address: ActiveSync goes to SOGo (and no other Exchange path to the emulator).
    sogo: tuple[str, int] | None = None


def _listen(address: str, port: int, tls: bool) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"    listen {host}:{port}{' ssl' if tls else ''};"


def _quote(text: str) -> str:
    # nginx strings: a JSON string literal is a valid double-quoted nginx string for ASCII.
    return json.dumps(text, ensure_ascii=True).replace("$", "\\$")


def _rule_location(rule: HttpRule) -> list[str]:
    if rule.path.endswith("/"):
        head = f"    location ^~ {rule.path} {{"
    else:
        head = f"    location = {rule.path} {{"
    if rule.location is not None:
        action = f"        return {rule.status} {_quote(rule.location)};"
    elif rule.body is not None:
        action = f"        return {rule.status} {_quote(rule.body)};"
    else:
        action = f"        return {rule.status};"
    return [head, action, "    }"]


def write_config(
    directory: Path,
    *,
    sites: Sequence[WebSite],
    emulator: tuple[str, int],
    proxied_paths: Sequence[str],
) -> Path:
    """Write ``<directory>/nginx.conf`` and make its temp directories; return the conf."""
    try:
        worker = pwd.getpwnam(WORKER_USER)
    except KeyError:
        raise LabError(f"system user {WORKER_USER!r} is missing; nginx workers need it") from None
    temp = directory / "tmp"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / sub).mkdir(parents=True, exist_ok=True)
        os.chown(temp / sub, worker.pw_uid, worker.pw_gid)
    upstream = f"http://{emulator[0]}:{emulator[1]}"
    # Exchange paths are case-insensitive (IIS); match them so.
    proxied = "|".join(p.strip("/").lower().replace(".", r"\.") for p in proxied_paths)
    types = "".join(f"        {mime} {exts};\n" for mime, exts in _TYPES.items())
    conf = [
        "# written by rca lab: nothing from /etc/nginx",
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        "worker_rlimit_nofile 20000;",
        f"user {WORKER_USER} {_group_name(worker.pw_gid)};",
        f"pid {directory / 'nginx.pid'};",
        f"error_log {directory / 'error.log'} notice;",
        "events {",
        # Two listeners per web host (80, 443) per scenario, plus proxied connections.
        "    worker_connections 8192;",
        "}",
        "http {",
        f"    access_log {directory / 'access.log'};",
        f"    client_body_temp_path {temp / 'body'};",
        f"    proxy_temp_path {temp / 'proxy'};",
        f"    fastcgi_temp_path {temp / 'fastcgi'};",
        f"    uwsgi_temp_path {temp / 'uwsgi'};",
        f"    scgi_temp_path {temp / 'scgi'};",
        "    types {",
        types.rstrip("\n"),
        "    }",
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "    sendfile on;",
        "    keepalive_timeout 30s;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_session_cache off;",
        # Outlook Anywhere streams request bodies of 1 GiB; the emulator must see them live.
        "    client_max_body_size 0;",
        "    proxy_http_version 1.1;",
        "    proxy_request_buffering off;",
        "    proxy_buffering off;",
        "    proxy_read_timeout 3600s;",
    ]
    for site in sites:
        # One server block per scheme, so a rule can apply to HTTP or HTTPS alone.
        for port, tls in ((80, False), (443, True)):
            conf.append(f"    # {site.label}, port {port}")
            conf.append("    server {")
            conf += [_listen(address, port, tls=tls) for address in site.addresses]
            conf.append("    server_name _;")
            if tls:
                conf.append(f"    ssl_certificate {site.chain_file};")
                conf.append(f"    ssl_certificate_key {site.key_file};")
            conf.append(f"    root {site.root};")
            for rule in site.rules:
                if port in rule.ports:
                    conf += _rule_location(rule)
            if site.sogo is not None:
                conf += _sogo_location(site.sogo)
            elif site.proxy and proxied:
                conf += [
                    f"    location ~* ^/({proxied})(/|$) {{",
                    f"        proxy_pass {upstream};",
                    "        proxy_set_header Host $host;",
                    "        proxy_set_header X-Forwarded-Host $host;",
                    "        proxy_set_header X-Forwarded-Proto $scheme;",
                    "        proxy_set_header X-Forwarded-For $remote_addr;",
                    "        proxy_set_header X-Rca-Server-Addr $server_addr;",
                    "        proxy_set_header X-Rca-Server-Port $server_port;",
                    # NTLM authenticates the client's connection; nginx opens a new one
                    # upstream per request, so the emulator keys NTLM state on this.
                    # $connection is the client connection's serial number, unique while
                    # the one worker runs, and nginx replaces any client-sent header of
                    # this name: an authenticate message on another connection than the
                    # challenge's is refused, as IIS does (tests/lab/test_exchange_auth.py).
                    "        proxy_set_header X-Rca-Client-Conn "
                    "$remote_addr:$remote_port#$connection;",
                    '        proxy_set_header Connection "";',
                    "    }",
                ]
            conf.append("    }")
    conf.append("}")
    path = directory / "nginx.conf"
    path.write_text("\n".join(conf) + "\n", encoding="utf-8")
    return path


def _sogo_location(sogod: tuple[str, int]) -> list[str]:
    """ActiveSync passed to sogod, as SOGo's installation guide has Apache do it: under its
    application path, with the ``x-webobjects-*`` headers it builds its own URLs from."""
    return [
        "    location ~* ^/microsoft-server-activesync(/|$) {",
        f"        proxy_pass http://{sogod[0]}:{sogod[1]}{SOGOD_PREFIX}$request_uri;",
        "        proxy_set_header Host $host;",
        "        proxy_set_header x-webobjects-server-protocol HTTP/1.0;",
        "        proxy_set_header x-webobjects-remote-host $remote_addr;",
        "        proxy_set_header x-webobjects-server-name $host;",
        "        proxy_set_header x-webobjects-server-port $server_port;",
        "        proxy_set_header x-webobjects-server-url $scheme://$host;",
        '        proxy_set_header Connection "";',
        "    }",
    ]


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def command(config: Path, directory: Path) -> list[str]:
    """The foreground command line (``-e`` so nginx never opens the system's error log)."""
    return ["nginx", "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")]
