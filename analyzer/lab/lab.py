"""``Lab``: build, start, inspect and stop the whole lab.

``Lab(...).up()`` in order: check we can (root, binaries); tear down whatever an earlier lab
left (by its state file, then by namespace name); issue certificates; build the zones; write
every server's configuration; create the namespaces and addresses, packet filter and latency;
start NSD, Dovecot, Postfix, nginx and the emulator (and, for a SOGo scenario, its database
and memcached, then sogod once they listen); wait until each accepts connections on every
address it serves; write ``info.json``. Any failure on the way tears down what was made
and raises ``LabError``. ``Lab.down(directory)`` is idempotent.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from analyzer.lab import dovecot, netns, nginx, nsd, postfix, sogo, zones
from analyzer.lab.errors import LabError
from analyzer.lab.pki import CertSpec, IssuedCert, LabPKI, LabPKIError
from analyzer.lab.process import Server, alive, spawn, stop, wait_ready
from analyzer.lab.scenarios import (
    ROLES,
    SCENARIOS,
    WEB_ROLES,
    HttpRule,
    Scenario,
    host_addresses,
    host_name,
    scenario_index,
    select_scenarios,
)
from analyzer.lab.state import (
    INFO_FILE,
    STATE_FILE,
    HostInfo,
    LabInfo,
    LabState,
    LabUser,
    ScenarioInfo,
    write_json,
)

__all__ = ["DEFAULT_DIRECTORY", "Lab", "check_prerequisites", "process_status"]

DEFAULT_DIRECTORY: Final = Path("/run/rca-lab")
RESOLVER4: Final = "198.18.0.53"
RESOLVER6: Final = "2001:db8::53"
PKI_ADDRESSES: Final = ("198.18.0.80", "2001:db8::80")
EMULATOR_LISTEN: Final = ("127.0.0.1", 8080)
AIA_URL: Final = f"http://{zones.PKI_HOST}/intermediate-ca.der"
#: How long the lab waits for its servers to be ready. A quiet 2-core machine needs ~15 s for
#: every scenario; a loaded one (parallel test runs, a busy CI host) was seen to need over 30 s,
#: and a start that gives up early fails the whole test session. It returns as soon as ready.
READY_TIMEOUT_S: Final = 90.0
EXPIRING_DAYS: Final = 10
_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,29}")

# Subdirectories rebuilt at every start; pki/ and dkim/ survive (the CA handed to users stays
# valid, and RSA keys are slow to make).
_REBUILT: Final = (
    "dns", "dovecot", "postfix", "nginx", "www", "emulator", "mail", "latency", "users", "sogo",
)  # fmt: skip

# Binary -> Debian package(s) that provide it.
_REQUIRED: Final[Mapping[str, str]] = {
    "ip": "iproute2",
    "tc": "iproute2",
    "nft": "nftables",
    "nsd": "nsd",
    "dovecot": "dovecot-imapd dovecot-pop3d dovecot-lmtpd",
    "nginx": "nginx-light",
    "openssl": "openssl",
}
_REQUIRED_FILES: Final[Mapping[str, str]] = {
    str(postfix.MASTER): "postfix",
    "/usr/lib/dovecot/imap": "dovecot-imapd",
    "/usr/lib/dovecot/pop3": "dovecot-pop3d",
    "/usr/lib/dovecot/lmtp": "dovecot-lmtpd",
}
APT_PACKAGES: Final = (
    "iproute2 nftables nsd dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix nginx-light openssl"
)


def check_prerequisites(
    *, euid: int | None = None, scenarios: Iterable[Scenario] | None = None
) -> None:
    """``LabError`` (one line, naming the fix) unless we are root and every server is installed.

    ``scenarios`` (default: all) decides whether SOGo is needed. ``euid`` stands in for
    ``os.geteuid()`` (tests run as root, yet must see the message).
    """
    if (os.geteuid() if euid is None else euid) != 0:
        raise LabError(
            "the lab needs root (network namespaces, servers on port 25/53/443): "
            "run it with sudo"
        )
    missing: list[str] = []
    for binary, package in _REQUIRED.items():
        if not netns.has_binary(binary):
            missing.append(package)
    for path, package in _REQUIRED_FILES.items():
        if not Path(path).exists():
            missing.append(package)
    if any(s.sogo for s in (SCENARIOS if scenarios is None else scenarios)):
        missing += sogo.missing_packages()
    if missing:
        packages = " ".join(dict.fromkeys(" ".join(missing).split()))
        raise LabError(
            f"the lab needs packages that are not installed; run: apt-get install {packages}"
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything ``up`` decided before touching the system."""

    scenarios: tuple[Scenario, ...]
    infos: tuple[ScenarioInfo, ...]


class Lab:
    """The lab: ``Lab(directory, scenarios, latency_ms).up()`` -> ``LabInfo``.

    ``scenarios`` is a list of scenario names (``None``: all of them); ``latency_ms`` delays
    every packet by that much in each direction (so a round trip takes twice as long).
    ``name`` names the server namespace (the client's is ``<name>-client``): the default is
    what users get; tests use their own so they never disturb a lab someone is trying out.
    Addresses are the same in every lab: they live in the lab's own namespaces.
    """

    def __init__(
        self,
        directory: Path = DEFAULT_DIRECTORY,
        scenarios: Iterable[str] | None = None,
        latency_ms: int = 0,
        name: str = netns.SERVER_NETNS,
    ) -> None:
        if not _NAME_RE.fullmatch(name):
            raise LabError(f"lab name {name!r}: use 1-30 lower-case letters, digits and dashes")
        self.server_netns = name
        self.client_netns = f"{name}-client"
        self.directory = Path(directory).absolute()
        self.scenarios = select_scenarios(None if scenarios is None else list(scenarios))
        if not 0 <= latency_ms <= 10_000:
            raise LabError(f"latency must be 0-10000 ms, not {latency_ms}")
        self.latency_ms = latency_ms

    # -- public -------------------------------------------------------------------------------

    def up(self) -> LabInfo:
        """Start the lab (or return the running one, if it is this same lab and healthy)."""
        check_prerequisites(scenarios=self.scenarios)
        started = time.monotonic()
        names = tuple(s.name for s in self.scenarios)
        current = LabState.load(self.directory)
        if (
            current is not None
            and current.complete
            and current.scenarios == names
            and current.latency_ms == self.latency_ms
            and current.namespaces == [self.server_netns, self.client_netns]
            and all(alive(p) for p in current.processes)
            and netns.namespace_exists(self.server_netns)
        ):
            info = Lab.status(self.directory)
            if info is not None:
                return info
        Lab.down(self.directory, name=self.server_netns)
        self._prepare_directory()
        state = LabState(
            directory=self.directory,
            scenarios=names,
            latency_ms=self.latency_ms,
            namespaces=[self.server_netns, self.client_netns],
        )
        state.save()
        try:
            info = self._start(state, started)
        except BaseException:
            Lab.down(self.directory, name=self.server_netns)
            raise
        return info

    @staticmethod
    def status(directory: Path = DEFAULT_DIRECTORY) -> LabInfo | None:
        """The running lab recorded in ``directory``, or ``None`` when none is up."""
        state = LabState.load(Path(directory))
        if (
            state is None
            or not state.complete
            or not state.namespaces
            or not netns.namespace_exists(state.namespaces[0])
        ):
            return None
        try:
            return LabInfo.load(Path(directory))
        except LabError:
            return None

    @staticmethod
    def down(directory: Path = DEFAULT_DIRECTORY, *, name: str | None = None) -> None:
        """Stop everything the lab in ``directory`` started and delete its namespaces.

        Idempotent: safe with no lab, a half-started one, or one whose processes died. Processes
        are stopped by recorded PID (SIGTERM, then SIGKILL); anything still inside the server
        namespace afterwards (a worker whose master was killed) is killed by PID too. Without a
        state file, the namespaces of lab ``name`` (default ``rca-lab``) are deleted by name.
        """
        directory = Path(directory).absolute()
        state = LabState.load(directory)
        server = name or netns.SERVER_NETNS
        if state is not None:
            stop(state.processes)
            if state.namespaces:
                server = state.namespaces[0]
        client = f"{server}-client"
        netns.delete_namespace(server, kill_inside=True)
        # Never kill inside the client namespace: the caller (a test run, a user's shell
        # started with `ip netns exec rca-lab-client`) may live there.
        netns.delete_namespace(client, kill_inside=False)
        for ns in (server, client):
            netns.remove_etc_netns(ns)
        for filename in (STATE_FILE, INFO_FILE):
            (directory / filename).unlink(missing_ok=True)

    # -- steps --------------------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)  # servers running as nobody/postfix must traverse it
        for parent in self.directory.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                raise LabError(
                    f"the lab directory {self.directory} is inside {parent}, which other users "
                    "cannot enter (Dovecot, Postfix and nginx drop root); choose another --dir"
                )
        for name in _REBUILT:
            shutil.rmtree(self.directory / name, ignore_errors=True)

    def _plan(self) -> _Plan:
        infos = []
        for scenario in self.scenarios:
            index = scenario_index(scenario.name)
            hosts = {}
            for role in ROLES:
                v4, v6 = host_addresses(index, role)
                hosts[role] = HostInfo(name=host_name(scenario.domain, role), ipv4=v4, ipv6=v6)
            infos.append(
                ScenarioInfo(
                    name=scenario.name,
                    domain=scenario.domain,
                    description=scenario.description,
                    hosts=hosts,
                    users=tuple(
                        LabUser(f"{local}@{scenario.domain}", password)
                        for local, password in scenario.users
                    ),
                    expect=scenario.expect,
                    signed=scenario.signed,
                )
            )
        return _Plan(scenarios=self.scenarios, infos=tuple(infos))

    def _start(self, state: LabState, started: float) -> LabInfo:
        directory = self.directory
        plan = self._plan()
        now = datetime.now(UTC)

        # SOGo's database takes a second or more to make (initdb): it is made meanwhile.
        with ThreadPoolExecutor(max_workers=1) as pool:
            database = pool.submit(self._make_sogo_database, plan)
            certs, pki = self._issue_certificates(plan, now)
            trust_anchor_file = self._write_zones(plan, now)
            configs = self._write_configs(plan, certs, pki)
            sogo_config = database.result()
        if sogo_config is not None:
            self._write_sogo(plan, sogo_config, pki)

        # The network.
        server_ns, client_ns = self.server_netns, self.client_netns
        netns.delete_namespace(server_ns)  # stale, from a lab run with another directory
        netns.delete_namespace(client_ns, kill_inside=False)
        netns.create_pair(server_ns, client_ns)
        for name in (server_ns, client_ns):
            netns.write_etc_netns(name, (RESOLVER4, RESOLVER6))
            state.etc_netns.append(name)
        state.save()
        addresses = [RESOLVER4, RESOLVER6, *PKI_ADDRESSES]
        for scenario_info in plan.infos:
            for host in scenario_info.hosts.values():
                addresses += [host.ipv4, host.ipv6]
        netns.add_addresses(addresses, server=server_ns, client=client_ns)
        netns.apply_filters(
            self._filters(plan), server=server_ns, silent_names=_silent_names(plan)
        )

        # Imported here, not at the top: `python -m analyzer.lab.latency` (and .emulator) must
        # not find their module already imported by the package (runpy warns, rightly).
        from analyzer.lab import latency

        shapers: list[Server] = []
        shaping = latency.apply(
            self.latency_ms,
            directory=directory / "latency",
            on_process=shapers.append,
            server=server_ns,
            client=client_ns,
        )
        state.processes += [shaper.record() for shaper in shapers]
        state.save()

        # The servers, all at once; then wait for all of them.
        started_servers = self._spawn_servers(plan, configs, sogo_config)
        for server in started_servers:
            state.processes.append(server.record())
            state.save()
        wait_ready(
            started_servers,
            netns=server_ns,
            timeout=READY_TIMEOUT_S,
            log_file=directory / "readiness.log",
        )
        late_servers: list[Server] = []
        if sogo_config is not None:
            # sogod connects to its database at start: it must be up by then (its tables are
            # made with the database, see sogo.SOGO_TABLES).
            sogod = spawn(
                "sogod",
                sogo.sogod_command(),
                netns=server_ns,
                log_file=sogo_config.log_file,
                endpoints=[sogo.SOGOD],
                env=sogo.sogod_environment(sogo_config),
                stop_signal=sogo.SOGOD_STOP_SIGNAL,
            )
            state.processes.append(sogod.record())
            state.save()
            late_servers.append(sogod)
        latency.wait_ready(shapers, timeout=READY_TIMEOUT_S)
        # Postfix starts one smtpd per listener when the readiness check first connects; on a
        # busy machine hundreds of them take seconds to come up, and the first checks would
        # time out. Wait until every SMTP port that speaks first has greeted once.
        # A scenario that delays its greeting on purpose is not waited for.
        late = _late_greeters(plan)
        greeters = [(a, p) for server in started_servers if server.name == "postfix"
                    for a, p in server.endpoints if p != 465 and (a, p) not in late]  # fmt: skip
        _wait_greetings(server_ns, greeters, READY_TIMEOUT_S)
        if late_servers:
            wait_ready(late_servers, netns=server_ns, timeout=READY_TIMEOUT_S,
                       log_file=directory / "readiness.log")  # fmt: skip
        if sogo_config is not None:
            self._open_sogo_folders(plan, directory / "readiness.log")

        info = LabInfo(
            directory=directory,
            server_netns=self.server_netns,
            client_netns=self.client_netns,
            resolver=RESOLVER4,
            resolver6=RESOLVER6,
            client_ipv4=netns.CLIENT_IPV4,
            client_ipv6=netns.CLIENT_IPV6,
            ca_file=pki.ca_file,
            trust_anchor_file=trust_anchor_file,
            latency_ms=self.latency_ms,
            latency_method=shaping,
            scenarios=plan.infos,
            started_at=time.time(),
            startup_seconds=round(time.monotonic() - started, 3),
        )
        _write_password_files(info)
        info.save()
        state.complete = True
        state.save()
        return info

    def _issue_certificates(
        self, plan: _Plan, now: datetime
    ) -> tuple[dict[tuple[str, str, int | None], IssuedCert], LabPKI]:
        """One certificate per scenario host, plus one per (host, port) override."""
        try:
            pki = LabPKI.create(self.directory / "pki", now=now)
            issued: dict[tuple[str, str, int | None], IssuedCert] = {}
            issued[("", "pki", None)] = pki.issue(
                CertSpec(name="lab-pki", dns_names=(zones.PKI_HOST,), aia_url=AIA_URL)
            )
            for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
                for role in ROLES:
                    ports: list[int | None] = [None]
                    for key in scenario.certs:
                        key_role, _, key_port = key.partition(":")
                        if key_role == role and key_port:
                            ports.append(int(key_port))
                    for port in ports:
                        kind = scenario.cert_kind(role, port)
                        suffix = f"-{port}" if port is not None else ""
                        issued[(scenario.name, role, port)] = pki.issue(
                            CertSpec(
                                name=f"{scenario.name}-{role}{suffix}",
                                dns_names=(info.hosts[role].name,),
                                kind=kind,
                                days_left=EXPIRING_DAYS if kind == "expiring" else None,
                                aia_url=AIA_URL,
                            )
                        )
        except (LabPKIError, ValueError, OSError) as exc:
            raise LabError(f"cannot issue the lab certificates: {exc}") from exc
        return issued, pki

    def _write_zones(self, plan: _Plan, now: datetime) -> Path:
        dns_dir = self.directory / "dns"
        serial = int(now.timestamp())
        zone_files: list[tuple[str, str]] = []
        signed: list[zones.SignedZone] = []
        ptr: list[tuple[str, str]] = [
            (RESOLVER4, zones.NS_HOST),
            (RESOLVER6, zones.NS_HOST),
            (PKI_ADDRESSES[0], zones.PKI_HOST),
            (PKI_ADDRESSES[1], zones.PKI_HOST),
        ]
        # One DKIM key for every scenario (an RSA-2048 key takes ~50 ms to make; the
        # scenarios need a valid key each, not a different one).
        dkim = zones.dkim_public_key(self.directory / "dkim" / "lab.key")
        for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
            zone = zones.build_zone(scenario, info.hosts, dkim_key_b64=dkim, serial=serial)
            if scenario.signed:
                signed.append(zones.sign_zone(zone, now=now, days=scenario.signature_days))
            filename = f"{scenario.domain}.zone"
            zones.write_zone(zone, dns_dir / "zones" / filename)
            zone_files.append((scenario.domain, filename))
            for label in scenario.servfail:
                # A zone NSD cannot load: it answers SERVFAIL for everything in it.
                origin = f"{label}.{scenario.domain}"
                (dns_dir / "zones" / f"{origin}.zone").write_text(
                    "; deliberately broken by rca lab: NSD cannot load this zone\n"
                    "this is not a zone file\n",
                    encoding="ascii",
                )
                zone_files.append((origin, f"{origin}.zone"))
            with_ptr = [h for role, h in info.hosts.items() if role not in scenario.no_ptr]
            ptr += [(h.ipv4, h.name) for h in with_ptr]
            ptr += [(h.ipv6, h.name) for h in with_ptr]
        infra = zones.infra_zone(ns=(RESOLVER4, RESOLVER6), pki=PKI_ADDRESSES, serial=serial)
        zones.write_zone(infra, dns_dir / "zones" / f"{zones.LAB_ZONE}.zone")
        zone_files.append((zones.LAB_ZONE, f"{zones.LAB_ZONE}.zone"))
        for zone in zones.reverse_zones(ptr, serial=serial):
            origin = zones.origin_of(zone).to_text(omit_final_dot=True)
            zones.write_zone(zone, dns_dir / "zones" / f"{origin}.zone")
            zone_files.append((origin, f"{origin}.zone"))
        nsd.write_config(dns_dir, addresses=(RESOLVER4, RESOLVER6), zones=zone_files)
        return zones.write_trust_anchors(dns_dir / "trust-anchors.txt", signed)

    def _write_configs(
        self,
        plan: _Plan,
        certs: Mapping[tuple[str, str, int | None], IssuedCert],
        pki: LabPKI,
    ) -> dict[str, Path]:
        d = self.directory

        def cert(scenario: str, role: str, port: int) -> IssuedCert:
            return certs.get((scenario, role, port)) or certs[(scenario, role, None)]

        def pair(c: IssuedCert) -> tuple[Path, Path]:
            return c.cert_file, c.key_file

        pki_cert = certs[("", "pki", None)]
        sites, services, users, domains, sites_web = [], [], [], [], []
        emulator_addresses: dict[str, dict[str, str]] = {}
        emulator_hosts: dict[str, dict[str, str]] = {}
        emulator_scenarios: dict[str, dict[str, Any]] = {}
        for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
            mail, mx = info.hosts["mail"], info.hosts["mx"]
            domains.append(scenario.domain)
            users += [dovecot.MailUser(address=u.address, password=u.password) for u in info.users]
            sites.append(
                dovecot.DovecotSite(
                    scenario=scenario.name,
                    addresses=(mail.ipv4, mail.ipv6),
                    imap_cert=pair(cert(scenario.name, "mail", 993)),
                    pop3_cert=pair(cert(scenario.name, "mail", 995)),
                    settings=scenario.dovecot,
                )
            )
            for host, role, port, mode in (
                (mx, "mx", 25, "mx"),
                (mail, "mail", 587, "submission"),
                (mail, "mail", 465, "submissions"),
            ):
                c = cert(scenario.name, role, port)
                for address in (host.ipv4, host.ipv6):
                    services.append(
                        postfix.SmtpService(
                            address=address,
                            port=port,
                            key_file=c.key_file,
                            chain_file=c.cert_file,
                            hostname=host.name,
                            mode=mode,
                            options=scenario.postfix.get(port, {}),
                        )
                    )
            root = d / "www" / scenario.name
            _write_web_root(root, scenario, info)
            for role in WEB_ROLES:
                host = info.hosts[role]
                c = cert(scenario.name, role, 443)
                sites_web.append(
                    nginx.WebSite(
                        label=f"{scenario.name} {role} {host.name}",
                        addresses=(host.ipv4, host.ipv6),
                        chain_file=c.cert_file,
                        key_file=c.key_file,
                        root=root,
                        rules=tuple(
                            _format_rule(rule, domain=scenario.domain, host=host.name)
                            for rule in scenario.http
                            if not rule.roles or role in rule.roles
                        ),
                        sogo=sogo.SOGOD if scenario.sogo else None,
                    )
                )
                entry = {"scenario": scenario.name, "role": role, "host": host.name}
                emulator_addresses[host.ipv4] = entry
                emulator_addresses[host.ipv6] = entry
                emulator_hosts[host.name] = entry
            emulator_scenarios[scenario.name] = {
                "domain": scenario.domain,
                "users": [[u.address, u.password] for u in info.users],
                "hosts": {
                    r: {"name": h.name, "ipv4": h.ipv4, "ipv6": h.ipv6}
                    for r, h in info.hosts.items()
                },
                "behaviour": dict(scenario.emulator),
            }

        pki_root = d / "www" / "_pki"
        pki_root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pki.intermediate_der_file, pki_root / "intermediate-ca.der")
        shutil.copyfile(pki.ca_file, pki_root / "root-ca.pem")
        sites_web.append(
            nginx.WebSite(
                label=f"lab pki {zones.PKI_HOST}",
                addresses=PKI_ADDRESSES,
                chain_file=pki_cert.cert_file,
                key_file=pki_cert.key_file,
                root=pki_root,
                proxy=False,
            )
        )
        _make_readable(d / "www")

        dovecot_dir = d / "dovecot"
        dovecot_conf = dovecot.write_config(
            dovecot_dir,
            sites=sites,
            users=users,
            mail_root=d / "mail",
            default_cert=pair(pki_cert),
        )
        postfix_etc = postfix.write_config(
            d / "postfix",
            services=services,
            domains=domains,
            mailboxes=[u.address for u in users],
            lmtp_socket=dovecot.lmtp_socket(dovecot_dir),
            auth_socket=dovecot.auth_socket(dovecot_dir),
        )
        from analyzer.lab.emulator import PROXIED_PATHS  # see the latency import in _start

        nginx_dir = d / "nginx"
        nginx_dir.mkdir(parents=True, exist_ok=True)
        nginx_conf = nginx.write_config(
            nginx_dir, sites=sites_web, emulator=EMULATOR_LISTEN, proxied_paths=PROXIED_PATHS
        )
        emulator_conf = d / "emulator" / "config.json"
        write_json(
            emulator_conf,
            {
                "listen": list(EMULATOR_LISTEN),
                "addresses": emulator_addresses,
                "hosts": emulator_hosts,
                "scenarios": emulator_scenarios,
            },
        )
        emulator_conf.chmod(0o600)
        return {
            "dovecot": dovecot_conf,
            "postfix": postfix_etc,
            "nginx": nginx_conf,
            "emulator": emulator_conf,
            "nsd": d / "dns" / "nsd.conf",
        }

    def _make_sogo_database(self, plan: _Plan) -> sogo.SogoConfig | None:
        """SOGo's database, when a scenario uses SOGo (at most one does)."""
        for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
            if scenario.sogo:
                return sogo.make_database(self.directory / "sogo", users=info.users)
        return None

    def _open_sogo_folders(self, plan: _Plan, log_file: Path) -> None:
        """Each SOGo user's personal folders, made one user at a time before any client
        comes (:func:`analyzer.lab.sogo.open_personal_folders`)."""
        for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
            if scenario.sogo:
                try:
                    statuses = netns.in_netns(
                        self.server_netns,
                        functools.partial(sogo.open_personal_folders, info.users),
                    )
                except OSError as exc:
                    raise LabError(f"sogod did not answer its first requests: {exc}") from exc
                with log_file.open("a", encoding="utf-8") as log:
                    log.writelines(f"sogo first request: {line}\n" for line in statuses)
                failed = [line for line in statuses if not line.endswith(": 207")]
                if failed:
                    raise LabError(f"sogod refused the first requests: {'; '.join(failed)}")

    def _write_sogo(self, plan: _Plan, config: sogo.SogoConfig, pki: LabPKI) -> None:
        """sogod's configuration, for the scenario that uses SOGo."""
        for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
            if scenario.sogo:
                sogo.write_config(config, imap_host=info.hosts["mail"].name,
                                  mail_domain=scenario.domain, ca_file=pki.ca_file)

    def _filters(self, plan: _Plan) -> list[netns.FilterSpec]:
        rules = []
        for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
            for rule in scenario.filters:
                host = info.hosts[rule.role]
                families = {"4": (host.ipv4,), "6": (host.ipv6,), "both": (host.ipv4, host.ipv6)}
                for address in families[rule.family]:
                    rules.append(netns.FilterSpec(address, rule.port, rule.action))
        return rules

    def _spawn_servers(
        self, plan: _Plan, configs: Mapping[str, Path], sogo_config: sogo.SogoConfig | None
    ) -> list[Server]:
        """Every server but sogod (which ``_start`` starts once its database is up)."""
        d = self.directory
        ns = self.server_netns
        mail_eps: list[tuple[str, int]] = []
        smtp_eps: list[tuple[str, int]] = []
        web_eps: list[tuple[str, int]] = [(a, p) for a in PKI_ADDRESSES for p in (80, 443)]
        for info in plan.infos:
            for address in (info.hosts["mail"].ipv4, info.hosts["mail"].ipv6):
                mail_eps += [(address, p) for p in (143, 993, 110, 995)]
                smtp_eps += [(address, p) for p in (587, 465)]
            for address in (info.hosts["mx"].ipv4, info.hosts["mx"].ipv6):
                smtp_eps.append((address, 25))
            for role in WEB_ROLES:
                for address in (info.hosts[role].ipv4, info.hosts[role].ipv6):
                    web_eps += [(address, 80), (address, 443)]
        package_root = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p
        )
        servers = [
            spawn(
                "nsd",
                nsd.command(configs["nsd"]),
                netns=ns,
                log_file=d / "dns" / "nsd.out",
                endpoints=[(RESOLVER4, 53), (RESOLVER6, 53)],
            ),
            spawn(
                "dovecot",
                dovecot.command(configs["dovecot"]),
                netns=ns,
                log_file=d / "dovecot" / "dovecot.out",
                endpoints=mail_eps,
            ),
            spawn(
                "postfix",
                postfix.command(configs["postfix"]),
                netns=ns,
                log_file=d / "postfix" / "master.out",
                endpoints=smtp_eps,
                env=postfix.environment(configs["postfix"]),
            ),
            spawn(
                "nginx",
                nginx.command(configs["nginx"], d / "nginx"),
                netns=ns,
                log_file=d / "nginx" / "nginx.out",
                endpoints=web_eps,
            ),
            spawn(
                "emulator",
                [sys.executable, "-m", "analyzer.lab.emulator", "--config",
                 str(configs["emulator"])],
                netns=ns,
                log_file=d / "emulator" / "emulator.log",
                endpoints=[EMULATOR_LISTEN],
                env={"PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"},
            ),
        ]  # fmt: skip
        if sogo_config is not None:
            servers += [
                spawn("sogo database", sogo.database_command(sogo_config), netns=ns,
                      log_file=sogo_config.directory / "postgres.log",
                      endpoints=[sogo.DATABASE], stop_signal=sogo.DATABASE_STOP_SIGNAL),
                spawn("memcached", sogo.memcached_command(), netns=ns,
                      log_file=sogo_config.directory / "memcached.log",
                      endpoints=[sogo.MEMCACHED]),
            ]  # fmt: skip
        return servers


def _silent_names(plan: _Plan) -> list[bytes]:
    """The wire-format names the lab's DNS must not answer (``Scenario.dns_silent``)."""
    import dns.name  # noqa: PLC0415

    return [
        dns.name.from_text(f"{label}.{scenario.domain}").to_wire() or b""
        for scenario in plan.scenarios
        for label in scenario.dns_silent
    ]


def _late_greeters(plan: _Plan) -> set[tuple[str, int]]:
    """SMTP endpoints whose scenario pauses before the greeting (a ``sleep`` client
    restriction, as in ``slow-greeting``)."""
    late: set[tuple[str, int]] = set()
    for scenario, info in zip(plan.scenarios, plan.infos, strict=True):
        for port, overrides in scenario.postfix.items():
            if "sleep" not in overrides.get("smtpd_client_restrictions", ""):
                continue
            host = info.hosts["mx" if port == 25 else "mail"]
            late |= {(host.ipv4, port), (host.ipv6, port)}
    return late


# Run inside the server namespace (a child process, like the readiness check, so the
# caller's own sockets and namespace stay untouched).
_GREETING_CHECKER: Final = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
for spec in sys.argv[2:]:
    host, _, port = spec.rpartition(":")
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print("never greeted: " + spec, flush=True)
            sys.exit(1)
        try:
            with socket.create_connection((host, int(port)), timeout=min(left, 5.0)) as sock:
                if sock.recv(1):
                    break
        except OSError:
            time.sleep(0.05)
"""


def _wait_greetings(server_ns: str, endpoints: Iterable[tuple[str, int]], timeout: float) -> None:
    """Wait until each endpoint sends its first bytes; LabError past ``timeout``."""
    specs = [f"{a}:{p}" for a, p in endpoints]
    if not specs:
        return
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", server_ns, sys.executable, "-I", "-c", _GREETING_CHECKER,
             str(timeout), *specs],
            capture_output=True, text=True, timeout=timeout + 10, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise LabError(f"the SMTP servers did not greet within {timeout:.0f}s") from None
    if done.returncode != 0:
        raise LabError(f"postfix: {(done.stdout or done.stderr).strip()[:300]}")


def process_status(directory: Path = DEFAULT_DIRECTORY) -> dict[str, bool]:
    """Each recorded process of the lab in ``directory`` -> whether it still runs."""
    state = LabState.load(Path(directory))
    if state is None:
        return {}
    return {p.name: alive(p) for p in state.processes}


def _format_rule(rule: HttpRule, *, domain: str, host: str) -> HttpRule:
    """``rule`` with ``{domain}`` and ``{host}`` filled in."""

    def fill(text: str | None) -> str | None:
        if text is None:
            return None
        try:
            return text.format(domain=domain, host=host)
        except (KeyError, IndexError, ValueError) as exc:
            raise LabError(f"http rule {rule.path}: bad placeholder in {text!r}: {exc}") from exc

    return dataclasses.replace(rule, location=fill(rule.location), body=fill(rule.body))


def _write_password_files(info: LabInfo) -> None:
    """One file per lab user holding its password and a newline (``--password-file``)."""
    for scenario in info.scenarios:
        for user in scenario.users:
            path = info.password_file(user.address)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_text(user.password + "\n", encoding="utf-8")
            path.chmod(0o600)


def _write_web_root(root: Path, scenario: Scenario, info: ScenarioInfo) -> None:
    """The scenario's static files: autoconfig XML, MTA-STS policy, then its own ``files``."""
    mail = info.hosts["mail"].name
    autoconfig = _autoconfig_xml(scenario.domain, mail)
    files: dict[str, str] = {
        "index.html": f"<!doctype html><title>{scenario.domain}</title><p>rca lab: "
        f"{scenario.description}</p>\n",
        # Thunderbird's autoconfig: autoconfig.<domain>/mail/... and <domain>/.well-known/...
        "mail/config-v1.1.xml": autoconfig,
        ".well-known/autoconfig/mail/config-v1.1.xml": autoconfig,
        ".well-known/mta-sts.txt": zones.mta_sts_policy(info.hosts["mx"].name),  # RFC 8461 3.3
    }
    files.update(scenario.files)
    for relative, content in files.items():
        path = (root / relative).resolve()
        if not path.is_relative_to(root.resolve()):
            raise LabError(f"{scenario.name}: file {relative!r} is outside the web root")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def _autoconfig_xml(domain: str, mail_host: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <displayName>rca lab {domain}</displayName>
    <incomingServer type="imap">
      <hostname>{mail_host}</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>{mail_host}</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{mail_host}</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""


def _make_readable(root: Path) -> None:
    """nginx workers run as nobody: directories 0755, files 0644."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
