"""``rca serve CONFIG``: a Prometheus exporter in the manner of blackbox_exporter.

Endpoints (GET only)::

    /probe?target=T&module=M   run module M's checks against T (or serve a fresh cached
                               result) and answer with its metrics: the names of
                               ``--prometheus`` (reports/prometheus.py) plus
                               probe_success (1: passed or warned; 0: failed or unknown)
                               and probe_duration_seconds
    /report?target=T[&module=M] the last HTML report for T (newest module if none named)
    /metrics                   the exporter's own metrics
    /                          a short page naming these

The file (TOML)::

    [exporter]
    listen = "127.0.0.1:9117"   # localhost unless you say otherwise
    allow = ["example.com", "*.example.net", "192.0.2.0/24"]
    cache_seconds = 60          # a result is served again for this long
    timeout_offset = 0.5        # seconds kept back from the scrape timeout
    default_timeout = 30        # when the scraper sends no timeout header
    concurrency = 3             # checks at once
    per_host = 2                # connection attempts at once to one server
    max_reports = 1000          # last results kept (cache and /report)

    [modules.mx]                # the option keys of a batch target (analyzer.operations.batch)
    tests = ["dns", "ports", "tls"]

    [modules.imap_login]
    tests = ["imap"]
    user = "monitor@example.com"
    password_env = "RCA_MONITOR_PASSWORD"
    allow = ["monitor@example.com"]   # replaces the exporter's allowlist for this module

Security, in the order a request meets it:

* **Bound to localhost** by default; anything else is an explicit ``listen``.
* **Only allowlisted targets.** ``allow`` entries are domains (``example.com``: that
  domain and addresses in it), subdomain patterns (``*.example.com``: names under it,
  not the domain itself), IP networks (``192.0.2.0/24``) and exact targets
  (``monitor@example.com``). Anything else is refused with 403 before any look-up, so
  the exporter is no open proxy and cannot be pointed at the network it runs in. Where
  a probe goes next (the MX of an allowed domain) is the domain owner's DNS: allow
  only domains you trust.
* **Only the config's options.** The query names a module and a target, nothing else:
  no resolver, no ``--connect``, no URL. Credentials come only from the module's
  references (``password_env`` / ``password_file``), never from a request, and never
  appear in a response or a log line. A module with credentials should list its own
  exact ``allow``: the password goes where the target's servers are.
* **Bounded work.** ``concurrency`` checks at once; a result is reused for
  ``cache_seconds`` and concurrent scrapes of the same target and module share one
  check, so several Prometheus servers do not multiply the load on the target.

The check's deadline follows the scraper: ``X-Prometheus-Scrape-Timeout-Seconds`` minus
``timeout_offset`` (as blackbox_exporter does), capped by the module's own ``timeout``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import re
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from analyzer.core.errors import UsageError
from analyzer.core.model import EXIT_WORDS
from analyzer.core.targets import is_ip
from analyzer.operations.batch import (
    BatchFileError,
    TargetSpec,
    check_number,
    check_sections,
    check_table,
    check_target,
    merge_prometheus,
    parse_settings,
    read_toml,
    refuse_inline_secrets,
)

if TYPE_CHECKING:
    from analyzer.core.model import Report
    from analyzer.core.probe import Probe
    from analyzer.core.targets import Target

__all__ = [
    "Allowlist",
    "Exporter",
    "ExporterConfig",
    "ExporterServer",
    "Module",
    "listen_setting",
    "load_exporter",
    "main_serve",
    "parse_exporter",
]

DEFAULT_LISTEN = ("127.0.0.1", 9117)
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_MAX_TARGET = 512
_EXPORTER_KEYS = frozenset(
    {
        "listen",
        "allow",
        "cache_seconds",
        "timeout_offset",
        "default_timeout",
        "concurrency",
        "per_host",
        "max_reports",
    }
)
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


# --- the allowlist -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Which targets may be probed (see the module docstring for the entry forms)."""

    domains: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    exact: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Sequence[Any], *, where: str) -> Allowlist:
        """An allowlist from the file's ``allow`` entries (:class:`BatchFileError` if bad)."""
        from analyzer.core.targets import to_ascii_domain  # noqa: PLC0415

        domains: set[str] = set()
        patterns: list[str] = []
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        exact: set[str] = set()
        for entry in entries:
            if not isinstance(entry, str) or not entry.strip():
                raise BatchFileError(f"{where}: allow entries are non-empty strings")
            text = entry.strip()
            try:
                if "/" in text or is_ip(text.strip("[]")):
                    networks.append(ipaddress.ip_network(text, strict=False))
                elif text.startswith("*."):
                    patterns.append(to_ascii_domain(text[2:])[0])
                elif "@" in text or ":" in text:
                    exact.add(_exact_key(text))
                else:
                    domains.add(to_ascii_domain(text)[0])
            except (ValueError, UsageError) as exc:
                raise BatchFileError(f"{where}: allow entry {text!r}: {exc}") from None
        return cls(frozenset(domains), tuple(patterns), tuple(networks), frozenset(exact))

    def __bool__(self) -> bool:
        return bool(self.domains or self.patterns or self.networks or self.exact)

    def allows(self, target: Target) -> bool:
        """Whether ``target`` (parsed) may be probed."""
        if self.exact and _exact_key(target.raw) in self.exact:
            return True
        if target.is_ip:
            ip = ipaddress.ip_address(target.domain)
            return any(ip in net for net in self.networks)
        name = target.domain.lower().rstrip(".")
        if name in self.domains:
            return True
        return any(name.endswith("." + p) and fnmatch.fnmatchcase(name, "*." + p)
                   for p in self.patterns)




def _exact_key(text: str) -> str:
    local, at, rest = text.strip().rpartition("@")
    return f"{local}{at}{rest.lower()}" if at else text.strip().lower()


# --- the file -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Module:
    """A named set of checks and options a scrape can ask for."""

    name: str
    settings: Mapping[str, Any]
    allow: Allowlist | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExporterConfig:
    """A parsed exporter file; paths in module settings are relative to ``base``."""

    source: str
    base: Path
    modules: Mapping[str, Module]
    allow: Allowlist
    listen: tuple[str, int] = DEFAULT_LISTEN
    cache_seconds: float = 60.0
    timeout_offset: float = 0.5
    default_timeout: float = 30.0
    concurrency: int = 3
    per_host: int = 2
    max_reports: int = 1000


def parse_listen(text: str, *, where: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT`` → ``(host, port)``; :class:`UsageError` if not."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"{where}: expected HOST:PORT, e.g. 127.0.0.1:9117")
    return host, int(port)


def listen_setting(table: Mapping[str, Any], *, section: str, source: str,
                   default: tuple[str, int]) -> tuple[str, int]:
    """The ``listen = "HOST:PORT"`` of a configuration table (``default`` if absent);
    :class:`BatchFileError` if it is not one."""
    if "listen" not in table:
        return default
    where = f"{source}: {section}.listen"
    if not isinstance(table["listen"], str):
        raise BatchFileError(f'{where}: expected "HOST:PORT"')
    try:
        return parse_listen(table["listen"], where=where)
    except UsageError as exc:
        raise BatchFileError(str(exc)) from None


def load_exporter(path: Path) -> ExporterConfig:
    """Read and check an exporter file; :class:`BatchFileError` (one line) if unusable."""
    return parse_exporter(read_toml(path), base=path.parent, source=str(path))


def _number(table: Mapping[str, Any], key: str, default: float, *, source: str,
            minimum: float = 0.0, whole: bool = False) -> Any:
    return check_number(table, key, where="exporter", source=source, minimum=minimum,
                          whole=whole, default=default)


def parse_exporter(data: Mapping[str, Any], *, base: Path, source: str) -> ExporterConfig:
    """An :class:`ExporterConfig` from parsed TOML (see the module docstring)."""
    refuse_inline_secrets(data, "", source)
    check_sections(
        data, ("exporter", "modules"), source=source, expected="[exporter] and [modules.NAME]"
    )
    table = check_table(data, "exporter", source=source, known=_EXPORTER_KEYS)
    allow_entries = table.get("allow", [])
    if not isinstance(allow_entries, list):
        raise BatchFileError(f"{source}: exporter.allow: expected a list of strings")
    allow = Allowlist.parse(allow_entries, where=f"{source}: exporter.allow")
    listen = listen_setting(table, section="exporter", source=source, default=DEFAULT_LISTEN)
    modules_table = data.get("modules")
    if not isinstance(modules_table, Mapping) or not modules_table:
        raise BatchFileError(f"{source}: no modules; add [modules.NAME] tables with tests = [...]")
    modules: dict[str, Module] = {}
    for name, body in modules_table.items():
        where = f"modules.{name}"
        if not _MODULE_NAME.fullmatch(name):
            raise BatchFileError(f"{source}: {where}: use letters, digits, _ . - in module names")
        if not isinstance(body, Mapping):
            raise BatchFileError(f"{source}: {where} must be a table")
        own_allow: Allowlist | None = None
        if "allow" in body:
            if not isinstance(body["allow"], list):
                raise BatchFileError(f"{source}: {where}.allow: expected a list of strings")
            own_allow = Allowlist.parse(body["allow"], where=f"{source}: {where}.allow")
        settings = parse_settings(
            {k: v for k, v in body.items() if k != "allow"}, where=where, source=source
        )
        modules[name] = Module(name=name, settings=settings, allow=own_allow)
    if not allow and not any(m.allow for m in modules.values()):
        raise BatchFileError(
            f"{source}: exporter.allow is empty: list the domains that may be probed "
            '(e.g. allow = ["example.com"]); the exporter probes nothing else'
        )
    return ExporterConfig(
        source=source,
        base=base,
        modules=modules,
        allow=allow,
        listen=listen,
        cache_seconds=_number(table, "cache_seconds", 60.0, source=source),
        timeout_offset=_number(table, "timeout_offset", 0.5, source=source),
        default_timeout=_number(table, "default_timeout", 30.0, source=source, minimum=0.5),
        concurrency=_number(table, "concurrency", 3, source=source, minimum=1, whole=True),
        per_host=_number(table, "per_host", 2, source=source, minimum=1, whole=True),
        max_reports=_number(table, "max_reports", 1000, source=source, minimum=1, whole=True),
    )


# --- the exporter (state lives on its event loop) ---------------------------------------------


class Refused(Exception):
    """A request the exporter will not serve: HTTP ``status`` and a one-line reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(slots=True, kw_only=True)
class Result:
    """A finished check of one (module, target): its report and its exposition text."""

    module: str
    target: str
    report: Report
    text: str
    finished: float  # exporter clock (monotonic)
    duration_s: float


@dataclass(slots=True)
class _Stats:
    probes: dict[tuple[str, str], int] = field(default_factory=dict)
    cache_hits: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    check_seconds: float = 0.0
    running: int = 0


class Exporter:
    """Runs checks for scrapes: allowlist, cache, single flight, bounded concurrency.

    ``probe`` runs on the exporter's event loop; ``probes`` replaces the registry
    (tests), ``env`` the process environment (password variables), ``clock`` the
    monotonic clock (cache ages).
    """

    def __init__(
        self,
        config: ExporterConfig,
        *,
        probes: Sequence[Probe] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.config = config
        self._probes = list(probes) if probes is not None else None
        self._env = env
        self._clock = clock
        self._results: OrderedDict[tuple[str, str], Result] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Task[Result]] = {}
        self._gate: asyncio.Semaphore | None = None
        self._limits: Any = None
        self._lock = threading.Lock()
        self._stats = _Stats()
        self.started = time.time()

    # --- requests -------------------------------------------------------------------------

    def target_for(self, module_name: str | None, target_text: str | None) -> tuple[Module, Target]:
        """The module and the parsed, allowlisted target of a request; :class:`Refused`."""
        from analyzer.core.targets import parse_target  # noqa: PLC0415

        if not target_text or len(target_text) > _MAX_TARGET:
            raise Refused(400, "bad_request", "give target=... (at most 512 characters)")
        if module_name is None:
            if "default" not in self.config.modules:
                raise Refused(400, "bad_request", "give module=... (" + self._module_list() + ")")
            module_name = "default"
        module = self.config.modules.get(module_name)
        if module is None:
            raise Refused(400, "unknown_module", f"unknown module; known: {self._module_list()}")
        try:
            target = parse_target(target_text)
        except UsageError as exc:
            raise Refused(400, "bad_request", f"unusable target: {exc}") from None
        allow = module.allow if module.allow is not None else self.config.allow
        if not allow.allows(target):
            raise Refused(403, "not_allowed", "target not in the exporter's allowlist")
        return module, target

    def _module_list(self) -> str:
        return ", ".join(sorted(self.config.modules))

    def refuse(self, reason: str) -> None:
        """Count a refused request (any thread)."""
        with self._lock:
            self._stats.refused[reason] = self._stats.refused.get(reason, 0) + 1

    def timeout_for(self, header: str | None) -> float:
        """The check's deadline from the scrape timeout header (minus the offset)."""
        timeout = self.config.default_timeout
        if header:
            try:
                scrape = float(header)
            except ValueError:
                scrape = 0.0
            if scrape > 0:
                timeout = scrape - self.config.timeout_offset
        return max(0.5, timeout)

    async def probe(self, module: Module, target: Target, *, timeout: float) -> Result:
        """A fresh cached result, the running check's, or a new check (bounded)."""
        key = (module.name, _exact_key(target.raw))
        fresh = self._fresh(key)
        if fresh is not None:
            with self._lock:
                self._stats.cache_hits[module.name] = self._stats.cache_hits.get(module.name, 0) + 1
            return fresh
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._check(key, module, target, timeout))
            self._inflight[key] = task
            task.add_done_callback(self._forget(key))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout + 2.0)
        except TimeoutError:
            raise Refused(503, "busy", "the check did not finish in the scrape timeout") from None

    def _forget(self, key: tuple[str, str]) -> Any:
        def done(task: asyncio.Task[Result]) -> None:
            self._inflight.pop(key, None)
            if not task.cancelled():
                task.exception()  # retrieved: a waiter that gave up leaves no warning behind

        return done

    def _fresh(self, key: tuple[str, str]) -> Result | None:
        result = self._results.get(key)
        if result is None or self._clock() - result.finished > self.config.cache_seconds:
            return None
        return result

    async def _check(self, key: tuple[str, str], module: Module, target: Target,
                     timeout: float) -> Result:
        from analyzer.core.context import HostLimits  # noqa: PLC0415
        from analyzer.core.registry import probe_index  # noqa: PLC0415
        from reports import prometheus  # noqa: PLC0415
        from reports.summary import check_status  # noqa: PLC0415

        if self._gate is None:
            self._gate = asyncio.Semaphore(self.config.concurrency)
            self._limits = HostLimits(self.config.per_host)
        deadline = self._clock() + timeout
        try:
            async with asyncio.timeout(timeout):
                await self._gate.acquire()
        except TimeoutError:
            raise Refused(503, "busy", "no check slot free within the scrape timeout") from None
        t0 = self._clock()
        with self._lock:
            self._stats.running += 1
        try:
            spec = TargetSpec(name=module.name, target=target.raw.strip(), settings=module.settings)
            report = await check_target(
                spec,
                base=self.config.base,
                probes=self._probes if self._probes is not None else probe_index(),
                limits=self._limits,
                env=self._env,
                timeout=max(0.5, deadline - self._clock()),
            )
        finally:
            self._gate.release()
            with self._lock:
                self._stats.running -= 1
        duration = self._clock() - t0
        code = check_status(report)
        success = 1 if code in (0, 1) else 0
        probe_lines = (
            "# HELP probe_success Whether the check passed (1: passed or warned; 0: failed, "
            "inconclusive or rca could not judge).\n"
            "# TYPE probe_success gauge\n"
            f"probe_success {success}\n"
            "# HELP probe_duration_seconds How long the check took.\n"
            "# TYPE probe_duration_seconds gauge\n"
            f"probe_duration_seconds {duration:.6f}\n"
        )
        text = merge_prometheus([probe_lines, prometheus.dumps(report)])
        result = Result(module=module.name, target=key[1], report=report, text=text,
                        finished=self._clock(), duration_s=duration)
        word = EXIT_WORDS[code]
        with self._lock:
            counter = (module.name, word)
            self._stats.probes[counter] = self._stats.probes.get(counter, 0) + 1
            self._stats.check_seconds += duration
        self._results[key] = result
        self._results.move_to_end(key)
        while len(self._results) > self.config.max_reports:
            self._results.popitem(last=False)
        return result

    def last_result(self, target: Target, module: str | None) -> Result | None:
        """The newest result for ``target`` (of ``module``, if named)."""
        raw = _exact_key(target.raw)
        found = [r for (m, t), r in list(self._results.items())
                 if t == raw and (module is None or m == module)]
        return max(found, key=lambda r: r.finished, default=None)

    def metrics(self) -> str:
        """The exporter's own metrics (``/metrics``)."""
        from analyzer import __version__  # noqa: PLC0415
        from reports.prometheus import escape_label as label  # noqa: PLC0415

        with self._lock:
            stats = _Stats(
                probes=dict(self._stats.probes),
                cache_hits=dict(self._stats.cache_hits),
                refused=dict(self._stats.refused),
                check_seconds=self._stats.check_seconds,
                running=self._stats.running,
            )
        lines = [
            "# HELP rca_exporter_build_info The rca version serving these metrics.",
            "# TYPE rca_exporter_build_info gauge",
            f'rca_exporter_build_info{{version="{label(__version__)}"}} 1',
            "# HELP rca_exporter_start_time_seconds When the exporter started (Unix time).",
            "# TYPE rca_exporter_start_time_seconds gauge",
            f"rca_exporter_start_time_seconds {self.started:.3f}",
            "# HELP rca_exporter_checks_total Checks run, by module and result.",
            "# TYPE rca_exporter_checks_total counter",
        ]
        lines += [
            f'rca_exporter_checks_total{{module="{label(m)}",result="{r}"}} {n}'
            for (m, r), n in sorted(stats.probes.items())
        ]
        lines += [
            "# HELP rca_exporter_cache_hits_total Scrapes answered from the cache, by module.",
            "# TYPE rca_exporter_cache_hits_total counter",
        ]
        lines += [
            f'rca_exporter_cache_hits_total{{module="{label(m)}"}} {n}'
            for m, n in sorted(stats.cache_hits.items())
        ]
        lines += [
            "# HELP rca_exporter_refused_total Requests refused, by reason.",
            "# TYPE rca_exporter_refused_total counter",
        ]
        lines += [
            f'rca_exporter_refused_total{{reason="{label(r)}"}} {n}'
            for r, n in sorted(stats.refused.items())
        ]
        lines += [
            "# HELP rca_exporter_check_seconds_total Time spent in checks.",
            "# TYPE rca_exporter_check_seconds_total counter",
            f"rca_exporter_check_seconds_total {stats.check_seconds:.6f}",
            "# HELP rca_exporter_checks_running Checks running now.",
            "# TYPE rca_exporter_checks_running gauge",
            f"rca_exporter_checks_running {stats.running}",
        ]
        return "\n".join(lines) + "\n"


# --- HTTP ---------------------------------------------------------------------------------------

_INDEX = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'">
<title>rca exporter</title></head><body><h1>rca exporter</h1>
<p>GET <code>/probe?target=TARGET&amp;module=MODULE</code>: Prometheus metrics of a check.</p>
<p>GET <code>/report?target=TARGET</code>: the last HTML report of a target.</p>
<p>GET <code>/metrics</code>: the exporter's own metrics.</p></body></html>
"""


class ExporterServer:
    """The exporter on HTTP: a threaded ``http.server`` in front of one event loop.

    ``start()`` returns once it listens (``address`` says where; port 0 picks one);
    ``stop()`` closes the socket, finishes the loop and joins both threads.
    """

    def __init__(self, exporter: Exporter, *, listen: tuple[str, int] | None = None,
                 log: bool = True) -> None:
        self.exporter = exporter
        self.listen = listen or exporter.config.listen
        self.log = log
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="rca-exporter-loop", daemon=True
        )
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (host, port)."""
        if self._httpd is None:
            raise RuntimeError("the exporter is not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and serve in background threads."""
        handler = _handler(self)
        host, port = self.listen
        server_class = _V6Server if ":" in host else ThreadingHTTPServer
        try:
            self._httpd = server_class((host, port), handler)
        except OSError as exc:
            self._loop.close()
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._httpd.daemon_threads = True
        self._loop_thread.start()
        self._http_thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="rca-exporter-http", daemon=True,
        )
        self._http_thread.start()

    def stop(self) -> None:
        """Stop serving; running checks are cancelled."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._http_thread is not None:
            self._http_thread.join()
        if self._loop_thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop)
            future.result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
        if not self._loop.is_closed():
            self._loop.close()

    def run(self, coro: Any, timeout: float) -> Any:
        """Run ``coro`` on the exporter's loop from a request thread (cancelled if it
        does not finish within ``timeout``: TimeoutError)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def __enter__(self) -> ExporterServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


async def _cancel_all() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _handler(server: ExporterServer) -> type[BaseHTTPRequestHandler]:
    exporter = server.exporter

    class Handler(BaseHTTPRequestHandler):
        server_version = "rca-exporter"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            if server.log:
                # The request line without its query: a target may carry what it should not.
                line = (format % args).replace(self.path, urlsplit(self.path).path)
                sys.stderr.write(f"rca serve: {self.address_string()} {line}\n")

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            if content_type.startswith("text/html"):
                # The reports carry their own CSP meta (inline style by hash, nothing else).
                self.send_header(
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                    "form-action 'none'; frame-ancestors 'none'",
                )
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _refused(self, exc: Refused) -> None:
            exporter.refuse(exc.reason)
            self._send(exc.status, f"{exc}\n", "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)

            def one(name: str) -> str | None:
                values = query.get(name)
                return values[0] if values else None

            try:
                if parts.path == "/probe":
                    self._probe(one("target"), one("module"))
                elif parts.path == "/report":
                    self._report(one("target"), one("module"))
                elif parts.path == "/metrics":
                    self._send(200, exporter.metrics(), EXPOSITION)
                elif parts.path == "/":
                    self._send(200, _INDEX, "text/html; charset=utf-8")
                else:
                    self._send(404, "not found\n", "text/plain; charset=utf-8")
            except Refused as exc:
                self._refused(exc)

        def _probe(self, target_text: str | None, module_name: str | None) -> None:
            module, target = exporter.target_for(module_name, target_text)
            timeout = exporter.timeout_for(self.headers.get("X-Prometheus-Scrape-Timeout-Seconds"))
            try:
                result = server.run(exporter.probe(module, target, timeout=timeout), timeout + 5)
            except TimeoutError:
                raise Refused(503, "busy", "the check did not finish in time") from None
            self._send(200, result.text, EXPOSITION)

        def _report(self, target_text: str | None, module_name: str | None) -> None:
            from reports.html import render  # noqa: PLC0415

            if module_name is not None and module_name not in exporter.config.modules:
                raise Refused(400, "unknown_module", "unknown module")
            if not target_text or len(target_text) > _MAX_TARGET:
                raise Refused(400, "bad_request", "give target=...")
            from analyzer.core.targets import parse_target  # noqa: PLC0415

            try:
                target = parse_target(target_text)
            except UsageError as exc:
                raise Refused(400, "bad_request", f"unusable target: {exc}") from None
            allowed = exporter.config.allow.allows(target) or any(
                m.allow is not None and m.allow.allows(target)
                for m in exporter.config.modules.values()
            )
            if not allowed:
                raise Refused(403, "not_allowed", "target not in the exporter's allowlist")
            result = server.run(_last(exporter, target, module_name), 5.0)
            if result is None:
                self._send(404, "no report for this target yet: scrape /probe first\n",
                           "text/plain; charset=utf-8")
                return
            self._send(200, render(result.report), "text/html; charset=utf-8")

    return Handler


async def _last(exporter: Exporter, target: Target, module: str | None) -> Result | None:
    return exporter.last_result(target, module)


# --- the command line (``rca serve``; parsed in analyzer.cli) ---------------------------------


def main_serve(args: Any) -> int:
    """``rca serve CONFIG``: serve until interrupted (SIGINT or SIGTERM)."""
    import signal  # noqa: PLC0415

    config = load_exporter(args.config)
    listen = parse_listen(args.listen, where="--listen") if args.listen else config.listen
    if args.netns:
        from analyzer.protocols.netns import enter_netns  # noqa: PLC0415

        enter_netns(args.netns)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ExporterServer(Exporter(config), listen=listen)
    server.start()
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    print(
        f"rca serve: listening on http://{shown}:{port}/ "
        f"(modules: {', '.join(sorted(config.modules))})",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0
