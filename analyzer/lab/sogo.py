"""SOGo: a real ActiveSync server (Debian's ``sogo`` and ``sogo-activesync``), for the
scenarios whose ``sogo`` flag is set.

What SOGo needs runs beside it, all as the ``sogo`` system user, inside the server namespace on
its loopback (which is the namespace's own): PostgreSQL (SOGo's profile, folder-info and session
tables and each user's folder tables, all of which sogod creates itself, and the SQL user
source), memcached, and sogod with one worker. nginx passes ``/Microsoft-Server-ActiveSync`` of
the scenario's web hosts to sogod (``/SOGo/Microsoft-Server-ActiveSync``) with the
``x-webobjects-*`` headers SOGo builds its URLs from (see ``analyzer.lab.nginx``). SOGo logs
users in against the user source (the scenarios' users, plain passwords) and opens their mailbox
on the scenario's Dovecot with the same credentials (IMAP with STARTTLS on the mail host, its
certificate checked against the lab's CA). SOGo offers no Autodiscover (its installation guide:
"Outlook 2013/2016 Autodiscovery is currently not supported").

Its own configuration: sogod reads GNUstep defaults, and the ``sogod`` domain there overrides
``/etc/sogo/sogo.conf``. ``GNUSTEP_CONFIG_FILE`` names our ``GNUstep.conf``, whose user defaults
directory is in the lab directory; ``sogod.plist`` there (an XML property list: Debian's GNUstep
1.28 read neither an old-style ``.GNUstepDefaults`` nor our OpenStep-format file) sets every
server address. sogod refuses to run as root, and PostgreSQL too: ``setpriv`` drops to ``sogo``
and execs, so the PID recorded is the server's. The database is made at each start (``initdb``,
then the user table in single-user mode: no server, no socket), about a second.
"""

from __future__ import annotations

import base64
import os
import plistlib
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from analyzer.lab.errors import LabError
from analyzer.lab.state import LabUser

__all__ = [
    "DATABASE",
    "DATABASE_STOP_SIGNAL",
    "MEMCACHED",
    "REQUIRED_FILES",
    "SOGOD",
    "SOGOD_PREFIX",
    "SOGOD_STOP_SIGNAL",
    "SOGO_USER",
    "SogoConfig",
    "database_command",
    "make_database",
    "memcached_command",
    "missing_packages",
    "open_personal_folders",
    "sogod_command",
    "sogod_environment",
    "write_config",
]

SOGO_USER: Final = "sogo"
"""The system user the ``sogo`` package creates; every SOGo-side process runs as it."""
DATABASE: Final = ("127.0.0.1", 5432)
MEMCACHED: Final = ("127.0.0.1", 11211)
SOGOD: Final = ("127.0.0.1", 20000)
SOGOD_BINARY: Final = Path("/usr/sbin/sogod")
SOGOD_PREFIX: Final = "/SOGo"
"""sogod's application path: nginx puts it before the client's request URI."""
_POSTGRES_ROOT: Final = Path("/usr/lib/postgresql")
_DB_NAME: Final = "sogo"
_USERS_TABLE: Final = "sogo_users"
_INITDB_TIMEOUT_S: Final = 60.0
#: PostgreSQL's "fast" shutdown: SIGTERM ("smart") would wait for sogod to disconnect.
DATABASE_STOP_SIGNAL: Final = signal.SIGINT
#: sogod's watchdog passes SIGTERM to its worker, which finishes only when the watchdog's
#: safety belt kills it, seconds later. Nothing in the lab's SOGo needs a clean stop (its
#: directory is rebuilt at every start); the worker left is killed with the namespace.
SOGOD_STOP_SIGNAL: Final = signal.SIGKILL

#: File -> Debian package that provides it (``memcached`` and PostgreSQL are looked up apart).
REQUIRED_FILES: Final[Mapping[str, str]] = {
    str(SOGOD_BINARY): "sogo",
    "/usr/lib/GNUstep/SOGo/ActiveSync.SOGo": "sogo-activesync",
    "/usr/bin/memcached": "memcached",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SogoConfig:
    """What ``write_config`` made: the directory, the database's data and the PostgreSQL
    binaries that made it."""

    directory: Path
    data_dir: Path
    bin_dir: Path

    @property
    def gnustep_conf(self) -> Path:
        """The ``GNUstep.conf`` sogod is pointed at."""
        return self.directory / "GNUstep.conf"

    @property
    def ca_file(self) -> Path:
        """The CA sogod trusts (OpenSSL's ``SSL_CERT_FILE``): the lab's."""
        return self.directory / "ca.pem"

    @property
    def log_file(self) -> Path:
        """Where sogod writes its log (and the EAS requests and answers)."""
        return self.directory / "sogod.log"


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``postgres``."""
    found: list[tuple[int, Path]] = []
    for candidate in _POSTGRES_ROOT.glob("*/bin"):
        if candidate.parent.name.isdigit() and all(
            (candidate / tool).is_file() for tool in ("initdb", "postgres")
        ):
            found.append((int(candidate.parent.name), candidate))
    return max(found)[1] if found else None


def missing_packages() -> list[str]:
    """The Debian packages SOGo needs that are not installed (empty when it can run)."""
    missing = [package for path, package in REQUIRED_FILES.items() if not Path(path).exists()]
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    try:
        pwd.getpwnam(SOGO_USER)
    except KeyError:
        if "sogo" not in missing:
            missing.append("sogo")
    return missing


def _sql_literal(text: str) -> str:
    if "\n" in text or "\r" in text or "\0" in text:
        raise LabError(f"SOGo user data may not hold a line break or NUL: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def _as_sogo(argv: Sequence[str]) -> list[str]:
    """``argv`` run as the ``sogo`` user (``setpriv`` execs: the PID stays the server's)."""
    return ["setpriv", f"--reuid={SOGO_USER}", f"--regid={SOGO_USER}", "--init-groups", *argv]


def _run(argv: Sequence[str], *, stdin: str = "", what: str) -> None:
    try:
        done = subprocess.run(
            _as_sogo(argv), input=stdin, capture_output=True, text=True,
            timeout=_INITDB_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"SOGo database: {what} failed: {exc}") from exc
    # Single-user mode reports SQL errors on stderr with exit status 0.
    errors = [line for line in done.stderr.splitlines() if "ERROR:" in line or "FATAL:" in line]
    if done.returncode != 0 or errors:
        tail = (errors or done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LabError(f"SOGo database: {what} failed (status {done.returncode}): {tail[:300]}")


def make_database(directory: Path, *, users: Sequence[LabUser]) -> SogoConfig:
    """Make SOGo's database under ``directory`` (emptied by the lab), its user source holding
    ``users``. Runs no server: ``initdb``, then single-user mode."""
    bin_dir = postgres_bin_dir()
    missing = missing_packages()
    if bin_dir is None or missing:  # check_prerequisites said so already; a second guard
        raise LabError("SOGo needs packages that are not installed; run: apt-get install "
                       + " ".join(missing or ["postgresql"]))
    owner = pwd.getpwnam(SOGO_USER)
    defaults_dir = directory / "defaults"
    data_dir = directory / "db"
    socket_dir = directory / "run"
    for path in (directory, defaults_dir, socket_dir):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    directory.chmod(0o755)
    config = SogoConfig(directory=directory, data_dir=data_dir, bin_dir=bin_dir)

    _run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SOGO_USER, "-A", "trust",
          "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
         what="initdb")  # fmt: skip
    single = [str(bin_dir / "postgres"), "--single", "-D", str(data_dir), "-c", "fsync=off"]
    _run([*single, "postgres"], stdin=f"CREATE DATABASE {_DB_NAME};\n", what="CREATE DATABASE")
    # Single-user mode binds no parameters: every value is quoted by _sql_literal.
    rows = "".join(
        f"INSERT INTO {_USERS_TABLE} VALUES ("  # noqa: S608
        + ", ".join(_sql_literal(v) for v in (u.address, u.address, u.password, u.address,
                                              u.address))
        + ");\n"
        for u in users
    )
    # SOGo's SQL user source: c_uid (the login), c_name, c_password, c_cn, mail.
    _run([*single, _DB_NAME],
         stdin=f"CREATE TABLE {_USERS_TABLE} (c_uid varchar(255) PRIMARY KEY, c_name "
         "varchar(255) NOT NULL, c_password varchar(255) NOT NULL, c_cn varchar(255), "
         f"mail varchar(255));\n{rows}",
         what="the user table")  # fmt: skip
    caches = "".join(_cache_table(u.address) for u in users)
    _run([*single, _DB_NAME], stdin=SOGO_TABLES + caches, what="SOGo's own tables")
    return config


def _cache_table(address: str) -> str:
    """The ActiveSync cache table SOGo makes at a user's first ActiveSync request, in SOGo's
    own words (``pg_dump``), under the name SOGo gives it: ``@`` spelt ``_a_`` and ``.``
    ``_d_`` (``alice@sogo.test``: ``sogo_cache_folder_alice_a_sogo_d_test``). Twenty first
    requests at once raced to make it. An address with other characters gets none here
    (SOGo escapes them too): SOGo then makes its table itself, as before."""
    if not re.fullmatch(r"[a-z0-9]+@[a-z0-9.]+", address):
        return ""
    name = "sogo_cache_folder_" + address.replace("@", "_a_").replace(".", "_d_")
    return (f"CREATE TABLE {name} (c_path varchar(255) NOT NULL PRIMARY KEY, c_parent_path "
            "varchar(255), c_type smallint NOT NULL, c_creationdate integer NOT NULL, "
            "c_lastmodified integer NOT NULL, c_version integer DEFAULT 0 NOT NULL, c_deleted "
            "smallint DEFAULT 0 NOT NULL, c_content text);\n")


#: The tables every sogod worker otherwise makes when it starts, as SOGo 5.8 makes them
#: (``pg_dump --schema-only`` of a database sogod set up itself). Eight workers starting at
#: once raced to make them: the losers' CREATE TABLE failed ("duplicate key value violates
#: unique constraint pg_type_typname_nsp_index") and such a worker later answered a
#: FolderSync without the user's address book, or not at all. Made here, no worker makes them.
SOGO_TABLES: Final = "".join(f"{statement}\n" for statement in (  # single-user mode: one a line
    "CREATE TABLE sogo_folder_info (c_folder_id SERIAL, c_path varchar(255) NOT NULL PRIMARY "
    "KEY, c_path1 varchar(255) NOT NULL, c_path2 varchar(255), c_path3 varchar(255), c_path4 "
    "varchar(255), c_foldername varchar(255) NOT NULL, c_location varchar(2048), "
    "c_quick_location varchar(2048), c_acl_location varchar(2048), c_folder_type varchar(255) "
    "NOT NULL);",
    "CREATE TABLE sogo_sessions_folder (c_id varchar(255) NOT NULL PRIMARY KEY, c_value "
    "varchar(4096) NOT NULL, c_creationdate integer NOT NULL, c_lastseen integer NOT NULL);",
    "CREATE TABLE sogo_user_profile (c_uid varchar(255) NOT NULL PRIMARY KEY, c_defaults text, "
    "c_settings text);",
))


def open_personal_folders(users: Sequence[LabUser]) -> list[str]:
    """Ask sogod (on ``SOGOD``, from the server namespace) for each user's calendars and
    address books, one user after another; the statuses, in order.

    SOGo makes a user's personal calendar, address book and cache table on that user's
    first request. Twenty first requests at once (the concurrent ActiveSync test) raced to
    make them, like the workers' tables above; made one user at a time before any client
    comes, they exist once each.
    """
    import http.client  # noqa: PLC0415

    statuses = []
    for user in users:
        token = base64.b64encode(f"{user.address}:{user.password}".encode()).decode("ascii")
        for collection in ("Calendar", "Contacts"):
            conn = http.client.HTTPConnection(*SOGOD, timeout=30)
            try:
                conn.request(
                    "PROPFIND", f"{SOGOD_PREFIX}/dav/{user.address}/{collection}/",
                    headers={"Authorization": f"Basic {token}", "Depth": "1"},
                )  # fmt: skip
                response = conn.getresponse()
                response.read()
                statuses.append(f"{user.address} {collection}: {response.status}")
            finally:
                conn.close()
    return statuses


def write_config(config: SogoConfig, *, imap_host: str, mail_domain: str, ca_file: Path) -> None:
    """Write sogod's configuration (see the module docstring).

    ``imap_host`` is the Dovecot host SOGo opens mailboxes on, its certificate checked against
    ``ca_file`` (the lab's CA); ``mail_domain`` the domain SOGo gives addresses it builds.
    """
    owner = pwd.getpwnam(SOGO_USER)
    defaults_dir = config.directory / "defaults"
    db = f"postgresql://{SOGO_USER}:{SOGO_USER}@{DATABASE[0]}:{DATABASE[1]}/{_DB_NAME}"
    defaults = {
        "SOGoProfileURL": f"{db}/sogo_user_profile",
        "OCSFolderInfoURL": f"{db}/sogo_folder_info",
        "OCSSessionsFolderURL": f"{db}/sogo_sessions_folder",
        "OCSEMailAlarmsFolderURL": f"{db}/sogo_alarms_folder",
        "SOGoUserSources": [{
            "type": "sql", "id": "lab_users", "viewURL": f"{db}/{_USERS_TABLE}",
            "canAuthenticate": "YES", "isAddressBook": "NO", "userPasswordAlgorithm": "plain",
        }],  # fmt: skip
        "SOGoMemcachedHost": MEMCACHED[0],
        # STARTTLS, the certificate checked (SOPE's default): Dovecot refuses a password in the
        # clear, and a SOGo that only works with checks off would prove less.
        "SOGoIMAPServer": f"imap://{imap_host}:143/?tls=YES",
        "SOGoMailDomain": mail_domain,
        "SOGoTimeZone": "UTC",
        "SOGoLanguage": "English",
        "SOGoSieveScriptsEnabled": "NO",
        "SOGoVacationEnabled": "NO",
        "SOGoForwardEnabled": "NO",
        "WOPort": f"{SOGOD[0]}:{SOGOD[1]}",
        # sogod's watchdog drops a request when no worker is free ("No child available to
        # handle incoming request!", a 502 from nginx): one worker failed twenty concurrent
        # ActiveSync clients. SOGo's own installation guide sizes this by concurrent users.
        "WOWorkersCount": "8",
        "WOLogFile": "-",
        "WOPidFile": str(config.directory / "run" / "sogod.pid"),
        # Log every ActiveSync request and answer: the lab is for looking at them.
        "SOGoEASDebugEnabled": "YES",
    }
    plist = defaults_dir / "sogod.plist"
    plist.write_bytes(plistlib.dumps(defaults))
    shutil.copyfile(ca_file, config.ca_file)
    config.gnustep_conf.write_text(
        f"GNUSTEP_USER_DEFAULTS_DIR={defaults_dir}\n"
        # No per-user GNUstep.conf from the sogo user's home either.
        "GNUSTEP_USER_CONFIG_FILE=\n",
        encoding="utf-8",
    )
    for path in (plist, config.gnustep_conf, config.ca_file):
        os.chown(path, owner.pw_uid, owner.pw_gid)
        # GNUstep ignores configuration files others can write.
        path.chmod(0o600)


def database_command(config: SogoConfig) -> list[str]:
    """PostgreSQL in the foreground on ``DATABASE``, its socket in the lab directory."""
    return _as_sogo([
        str(config.bin_dir / "postgres"), "-D", str(config.data_dir),
        "-c", f"listen_addresses={DATABASE[0]}", "-p", str(DATABASE[1]),
        "-k", str(config.directory / "run"),
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        "-c", "shared_buffers=16MB", "-c", "max_connections=20",
        "-c", "logging_collector=off",
    ])  # fmt: skip


def memcached_command() -> list[str]:
    """memcached in the foreground on ``MEMCACHED`` (TCP only, a small cache)."""
    return _as_sogo(["memcached", "-l", MEMCACHED[0], "-p", str(MEMCACHED[1]), "-U", "0",
                     "-m", "16"])  # fmt: skip


def sogod_command() -> list[str]:
    """sogod in the foreground (its watchdog, which forks the worker)."""
    return _as_sogo([str(SOGOD_BINARY), "-WONoDetach", "YES"])


def sogod_environment(config: SogoConfig) -> dict[str, str]:
    """Where sogod finds its own configuration (see the module docstring)."""
    return {
        "GNUSTEP_CONFIG_FILE": str(config.gnustep_conf),
        "HOME": str(config.directory),
        # SOPE checks the IMAP server's certificate against OpenSSL's default store.
        "SSL_CERT_FILE": str(config.ca_file),
    }
