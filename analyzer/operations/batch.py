"""``rca batch FILE.toml``: many targets on a schedule, bounded, one report each, and a summary.

The file (TOML; every key is optional but ``targets``)::

    [batch]
    concurrency = 3           # targets checked at once (default 3: see below)
    per_host = 2              # connection attempts at once to one server, whole batch
    out = "reports"           # --out
    history = "history"       # --history: keep past runs, report what changed
    keep = 30                 # runs kept per target; keep_days = 90 removes older ones
    share = true              # check a shared endpoint once, reuse DNS answers (see below)

    [defaults]                # options of every target (a target's own keys win)
    tests = ["dns", "mailauth", "ports", "tls"]
    resolver = ["192.0.2.53"]

    [[targets]]
    target = "alice@example.com"      # user@domain, domain, host[:port] or https://URL
    name = "example"                  # file names of its reports (default: from target)
    password_env = "EXAMPLE_PASSWORD" # or password_file = "secrets/example.pw"

Option keys (``[defaults]`` and targets): ``tests``, ``resolver``, ``connect``
(``["HOST=IP"]`` or ``{HOST = "IP"}``), ``ports`` (``["[SERVICE/]HOST:PORT"]``),
``ca_file``, ``trust_anchor``, ``insecure``, ``families`` (``[4]``, ``[6]``, ``[4, 6]``),
``timeout``, ``dkim_selectors``, ``cert_warn_days``, ``cert_fail_days``, ``user``,
``password_env``, ``password_file``, ``oauth_token_env``, ``oauth_token_file``. Relative
paths are relative to the file. A secret written in the file itself (``password = ...``,
``token = ...``) is refused: the file is copied, committed and shown in diffs, and the
error message never repeats the value.

What the batch promises:

* **Every target ends with a report.** A target rca cannot use (a bad name, a password
  variable that is not set) gets an ``error`` report saying why
  (``batch.target_unusable``); a crash outside the probes gets one too
  (``batch.check_crashed``). Nothing a target does stops the others.
* **Bounded load.** At most ``concurrency`` targets run at once per checking process,
  and across all of them at most ``per_host`` connection attempts to one server name at
  a time (:class:`~analyzer.core.context.HostLimits`), so 1,000 domains of one provider do
  not hammer its MX. The default of 3 targets at once comes from measuring this machine
  class (2 cores): a check costs CPU, and past a few checks in one event loop answers
  are read late, which slows every check and falsifies the times it measures
  (``bench/batch.py``; docs/scheduling.md). For more throughput, ``processes`` runs
  several checking processes, each with its own event loop.
* **One check per shared endpoint.** Targets of one provider name the same MX and mail
  hosts. The reachability and TLS check of an endpoint (host, port, service, addresses)
  runs once per checking process, and every target that uses it gets a copy in its
  report, marked ``shared`` with the time it was made
  (:class:`~analyzer.core.shared.SharedResults`): the provider sees one handshake, not one
  per customer. Definitive DNS answers are shared the same way, each until its TTL runs
  out (:mod:`analyzer.protocols.resolve`). ``share = false`` (or ``--no-share``) checks
  every endpoint and asks every DNS question afresh for every target.
* **Bounded memory.** Reports are written as they finish, by ``writers`` helper
  processes (rendering a report takes 10-15 ms of CPU, more for a big one: done in the
  event loop it would delay every running check); only a small summary of each target
  stays in memory.
* **Exit code = the worst target**, in monitoring-plugins order: 2 > 3 > 1 > 0.

Outputs in ``--out``: ``<name>.json`` and ``<name>.html`` per target (with "changes since
the previous run" when ``--history`` is on, and ``<name>.changes.json``), ``index.html``
and ``index.json`` (every target: verdict, failures, nearest certificate expiry,
changes), ``junit.xml`` (every target's testsuites) and ``metrics.prom`` (every target's
series, one HELP/TYPE per metric family).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import __version__
from analyzer.core.batchmodel import (
    CHECK_CRASHED,
    TARGET_UNUSABLE,
    BatchResult,
    Expiry,
    TargetSummary,
)
from analyzer.core.errors import UsageError
from analyzer.core.model import (
    EXIT_FAIL,
    EXIT_SEVERITY,
    EXIT_UNKNOWN,
    EXIT_WORDS,
    ProbeResult,
    Report,
    Status,
    Step,
)

if TYPE_CHECKING:
    from analyzer.core.batchmodel import Changes
    from analyzer.core.context import Credentials, HostLimits, RunOptions
    from analyzer.core.pipeline import Planned
    from analyzer.core.probe import Probe
    from analyzer.core.shared import SharedResults
    from analyzer.core.targets import Target

__all__ = [
    "BatchConfig",
    "BatchFileError",
    "TargetSpec",
    "check_number",
    "check_sections",
    "check_table",
    "check_target",
    "load_batch",
    "merge_junit",
    "merge_prometheus",
    "options_for",
    "parse_batch",
    "parse_settings",
    "read_toml",
    "run_batch",
    "safe_name",
]

#: Targets checked at once by default (measured on 2 cores: docs/scheduling.md).
DEFAULT_CONCURRENCY = 3
#: Connection attempts at once to one server name, across the whole batch.
DEFAULT_PER_HOST = 2
#: Seconds a check may overrun its own deadline before the batch gives up on it.
WATCHDOG_GRACE_S = 15.0


class BatchFileError(UsageError):
    """The batch (or exporter) file cannot be used at all: rca exits 3 with this line."""


# --- the shape of a settings file (the batch file, the exporter's) -----------------------------


def check_sections(
    data: Mapping[str, Any], known: Collection[str], *, source: str, expected: str
) -> None:
    """Refuse a top-level name outside ``known``; ``expected`` names the sections allowed."""
    unknown = set(data) - set(known)
    if unknown:
        raise BatchFileError(
            f"{source}: unknown section(s) {', '.join(sorted(unknown))}; expected {expected}"
        )


def check_table(
    data: Mapping[str, Any], name: str, *, source: str, known: Collection[str] | None = None
) -> Mapping[str, Any]:
    """The ``[name]`` table (empty when absent); with ``known``, no other key is allowed."""
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise BatchFileError(f"{source}: [{name}] must be a table")
    if known is not None and (bad := set(table) - set(known)):
        raise BatchFileError(
            f"{source}: {name}.{sorted(bad)[0]}: unknown key; known: "
            f"{', '.join(sorted(known))}"
        )
    return table


def check_number(
    table: Mapping[str, Any],
    key: str,
    *,
    where: str,
    source: str,
    minimum: float,
    whole: bool = False,
    default: float | None = None,
) -> Any:
    """``table[key]`` as a number ≥ ``minimum`` (``default`` when absent); ``where`` is the
    table's name in messages (``batch``, ``exporter``)."""
    value = table.get(key)
    if value is None:
        return default
    ok = not isinstance(value, bool) and isinstance(value, int if whole else int | float)
    if not ok or value < minimum:
        kind = "a whole number" if whole else "a number"
        raise BatchFileError(f"{source}: {where}.{key}: expected {kind} ≥ {minimum:g}")
    return value if whole else float(value)


# --- settings: the option keys shared by batch targets and exporter modules -------------------

_STR_LISTS = ("tests", "resolver", "ports", "dkim_selectors")
_STRINGS = (
    "ca_file",
    "trust_anchor",
    "user",
    "password_env",
    "password_file",
    "oauth_token_env",
    "oauth_token_file",
)
_PATHS = ("ca_file", "trust_anchor", "password_file", "oauth_token_file")
_INTS = ("cert_warn_days", "cert_fail_days")
OPTION_KEYS = frozenset(
    {*_STR_LISTS, *_STRINGS, *_INTS, "insecure", "timeout", "families", "connect"}
)
#: Keys that look like a secret written in the file itself (refused wherever they appear).
_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|passphrase|pass|pw|pwd|secret|token|bearer|api_?key|credentials?)$",
    re.IGNORECASE,
)
_SECRET_REFERENCES = frozenset(
    {"password_env", "password_file", "oauth_token_env", "oauth_token_file"}
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")


def refuse_inline_secrets(data: Any, where: str, source: str) -> None:
    """:class:`BatchFileError` if any table of ``data`` holds a secret-looking key.

    The message names the key and where it is, never its value.
    """
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = f"{where}.{key}" if where else str(key)
            if key not in _SECRET_REFERENCES and _SECRET_KEY.search(str(key)):
                raise BatchFileError(
                    f"{source}: {here}: a password or token written in the file is not "
                    'accepted; use password_env = "VARIABLE" or password_file = "PATH" '
                    '(oauth_token_env / oauth_token_file for a token)'
                )
            refuse_inline_secrets(value, here, source)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            refuse_inline_secrets(item, f"{where}[{index}]", source)


def parse_settings(table: Mapping[str, Any], *, where: str, source: str) -> dict[str, Any]:
    """The option keys of one table, checked for type; :class:`BatchFileError` if not.

    Values are checked as far as they can be without the network or the secrets: IP
    addresses, ``HOST=IP`` pairs, ports. Files and variables are read when the target
    runs (a missing one makes that target's report an error, not the whole batch).
    """
    from analyzer.core.context import (  # noqa: PLC0415
        parse_connect_override,
        parse_host_port,
        parse_nameserver,
    )

    def bad(key: str, what: str) -> BatchFileError:
        return BatchFileError(f"{source}: {where}.{key}: {what}")

    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in _STR_LISTS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad(key, "expected a list of strings")
            out[key] = tuple(v.strip() for v in value if v.strip())
        elif key in _STRINGS:
            if not isinstance(value, str) or not value.strip():
                raise bad(key, "expected a non-empty string")
            out[key] = value.strip()
        elif key in _INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(key, "expected a whole number of days")
            out[key] = value
        elif key == "insecure":
            if not isinstance(value, bool):
                raise bad(key, "expected true or false")
            out[key] = value
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise bad(key, "expected a positive number of seconds")
            out[key] = float(value)
        elif key == "families":
            if (
                not isinstance(value, list)
                or not value
                or any(isinstance(v, bool) or v not in (4, 6) for v in value)
            ):
                raise bad(key, "expected [4], [6] or [4, 6]")
            out[key] = tuple(sorted(set(value)))
        elif key == "connect":
            pairs: list[str] = []
            if isinstance(value, Mapping):
                for host, ips in value.items():
                    for ip in [ips] if isinstance(ips, str) else ips:
                        if not isinstance(ip, str):
                            raise bad(key, "expected HOST = \"IP\" or HOST = [\"IP\", ...]")
                        pairs.append(f"{host}={ip}")
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                pairs = list(value)
            else:
                raise bad(key, 'expected ["HOST=IP", ...] or a table HOST = "IP"')
            out[key] = tuple(pairs)
        else:
            raise bad(key, f"unknown option; known: {', '.join(sorted(OPTION_KEYS))}")
    try:
        for item in out.get("resolver", ()):
            parse_nameserver(item)
        for item in out.get("connect", ()):
            parse_connect_override(item)
        for item in out.get("ports", ()):
            parse_host_port(item)
    except UsageError as exc:
        raise BatchFileError(f"{source}: {where}: {exc}") from None
    for key in ("password_env", "oauth_token_env"):
        if key in out and not _ENV_NAME.fullmatch(out[key]):
            raise bad(key, "expected the name of an environment variable")
    for kind in ("password", "oauth_token"):
        if f"{kind}_env" in out and f"{kind}_file" in out:
            raise bad(f"{kind}_env", f"give {kind}_env or {kind}_file, not both")
    return out


def _secret(
    settings: Mapping[str, Any], kind: str, base: Path, env: Mapping[str, str]
) -> str | None:
    var, file = settings.get(f"{kind}_env"), settings.get(f"{kind}_file")
    if var is not None:
        value = env.get(var)
        if not value:
            raise UsageError(f"{kind}_env: the environment variable {var} is not set or empty")
        return value
    if file is not None:
        from analyzer.core.context import read_secret_file  # noqa: PLC0415

        return read_secret_file(base / file, f"{kind}_file")
    return None


def credentials_for(
    settings: Mapping[str, Any], target: Target, *, base: Path, env: Mapping[str, str]
) -> Credentials:
    """The credentials a target's settings refer to (read now, never stored elsewhere)."""
    from analyzer.core.context import Credentials  # noqa: PLC0415

    return Credentials(
        settings.get("user") or target.address,
        password=_secret(settings, "password", base, env),
        token=_secret(settings, "oauth_token", base, env),
    )


def options_for(
    settings: Mapping[str, Any],
    target: Target,
    *,
    base: Path,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> RunOptions:
    """:class:`~analyzer.core.context.RunOptions` from checked settings (:func:`parse_settings`).

    Raises :class:`UsageError` for what can only be seen now: a missing file, an unset
    password variable. ``timeout`` caps the settings' own (the exporter's scrape timeout).
    """
    from analyzer.core.context import (  # noqa: PLC0415
        RunOptions,
        parse_connect_override,
        parse_host_port,
        parse_nameserver,
    )

    env = os.environ if env is None else env
    connect: dict[str, list[str]] = {}
    for item in settings.get("connect", ()):
        host, ip = parse_connect_override(item)
        connect.setdefault(host, []).append(ip)
    paths: dict[str, Path | None] = {}
    for key in ("ca_file", "trust_anchor"):
        value = settings.get(key)
        paths[key] = base / value if value else None
        if paths[key] is not None and not paths[key].is_file():  # type: ignore[union-attr]
            raise UsageError(f"{key} {paths[key]}: no such file")
    total = float(settings.get("timeout", 60.0))
    if timeout is not None:
        total = max(0.5, min(total, timeout))
    extra: dict[str, Any] = {k: settings[k] for k in _INTS if k in settings}
    return RunOptions(
        nameservers=tuple(parse_nameserver(r) for r in settings.get("resolver", ())),
        connect={k: tuple(v) for k, v in connect.items()},
        ca_file=paths["ca_file"],
        insecure=bool(settings.get("insecure", False)),
        families=settings.get("families", (4, 6)),
        timeout=total,
        probe_timeout=min(45.0, total),
        op_timeout=min(10.0, total),
        credentials=credentials_for(settings, target, base=base, env=env),
        tests=tuple(settings.get("tests", ())),
        dkim_selectors=tuple(settings.get("dkim_selectors", ())),
        trust_anchor_file=paths["trust_anchor"],
        extra_ports=tuple(parse_host_port(p) for p in settings.get("ports", ())),
        **extra,
    )


# --- the batch file -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetSpec:
    """One target of a batch: what to check, under which name, with which settings."""

    name: str
    target: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchConfig:
    """A parsed batch file. Paths in settings are relative to ``base``."""

    source: str
    base: Path
    targets: tuple[TargetSpec, ...]
    concurrency: int | None = None
    per_host: int | None = None
    out: Path | None = None
    history: Path | None = None
    keep: int | None = None
    keep_days: float | None = None
    share: bool | None = None


_TOP_KEYS = frozenset({"batch", "defaults", "targets"})
_BATCH_KEYS = frozenset(
    {"concurrency", "per_host", "out", "history", "keep", "keep_days", "share"}
)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; :class:`BatchFileError` (one line) if it cannot be read
    (shared by the batch, exporter and web files)."""
    import tomllib  # noqa: PLC0415

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise BatchFileError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BatchFileError(f"{path}: not valid TOML: {exc}") from None


def load_batch(path: Path) -> BatchConfig:
    """Read and check a batch file; :class:`BatchFileError` (one line) if it is unusable."""
    return parse_batch(read_toml(path), base=path.parent, source=str(path))


def safe_name(raw: str) -> str:
    """A file and history-folder name for a target without an explicit ``name``."""
    # The same alphabet as explicit names (and history folders): starts with a letter or digit.
    text = re.sub(r"[^A-Za-z0-9._@+-]+", "_", raw.strip()).strip("._@+-") or "target"
    return text[:120]


def _has_userinfo(raw: str) -> bool:
    """Whether ``raw`` is a URL carrying ``user[:password]@``."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    if "://" not in raw:
        return False
    try:
        return "@" in urlsplit(raw.strip()).netloc
    except ValueError:
        return False


def parse_batch(data: Mapping[str, Any], *, base: Path, source: str) -> BatchConfig:
    """A :class:`BatchConfig` from parsed TOML (see the module docstring for the keys)."""
    refuse_inline_secrets(data, "", source)
    check_sections(
        data, _TOP_KEYS, source=source, expected="[batch], [defaults] and [[targets]]"
    )
    batch = check_table(data, "batch", source=source, known=_BATCH_KEYS)
    for key in ("concurrency", "per_host", "keep"):
        check_number(batch, key, where="batch", source=source, minimum=1, whole=True)
    keep_days = batch.get("keep_days")
    if keep_days is not None and (
        isinstance(keep_days, bool) or not isinstance(keep_days, int | float) or keep_days <= 0
    ):
        raise BatchFileError(f"{source}: batch.keep_days: expected a positive number of days")
    if "share" in batch and not isinstance(batch["share"], bool):
        raise BatchFileError(f"{source}: batch.share: expected true or false")
    for key in ("out", "history"):
        if key in batch and (not isinstance(batch[key], str) or not batch[key]):
            raise BatchFileError(f"{source}: batch.{key}: expected a folder name")
    defaults = parse_settings(check_table(data, "defaults", source=source), where="defaults",
                              source=source)

    items = data.get("targets")
    if not isinstance(items, list) or not items:
        raise BatchFileError(
            f"{source}: no targets; add [[targets]] tables with target = \"...\" "
            '(or targets = ["example.com", ...])'
        )
    specs: list[TargetSpec] = []
    taken: set[str] = set()
    explicit: set[str] = set()
    for index, item in enumerate(items):
        where = f"targets[{index}]"
        if isinstance(item, str):
            item = {"target": item}
        if not isinstance(item, Mapping):
            raise BatchFileError(f"{source}: {where}: expected a string or a table")
        raw = item.get("target")
        if not isinstance(raw, str):
            raise BatchFileError(f'{source}: {where}: missing target = "..."')
        if _has_userinfo(raw):
            # Never repeated: the target would name files, fill reports and the index.
            raise BatchFileError(
                f"{source}: {where}: the URL contains credentials (user:password@); remove "
                "them and use password_env or password_file"
            )
        name = item.get("name")
        if name is not None:
            if not isinstance(name, str) or not _FILE_NAME.fullmatch(name):
                raise BatchFileError(
                    f"{source}: {where}.name: use letters, digits and . _ @ + - "
                    "(it names the report files)"
                )
            if name.lower() in explicit:
                raise BatchFileError(f"{source}: {where}.name: {name!r} is used twice")
            explicit.add(name.lower())
        own = parse_settings(
            {k: v for k, v in item.items() if k not in ("target", "name")},
            where=where,
            source=source,
        )
        merged = {**defaults, **own}
        if "password_env" in own:
            merged.pop("password_file", None)
        if "password_file" in own:
            merged.pop("password_env", None)
        specs.append(
            TargetSpec(name=name or "", target=raw, settings=merged, where=f"{where} ({raw})")
        )
    # Derived names second, so that an explicit name is never renamed.
    named: list[TargetSpec] = []
    for spec in specs:
        name = spec.name
        if not name:
            stem = safe_name(spec.target)
            name, n = stem, 1
            while name.lower() in taken or name.lower() in explicit:
                n += 1
                name = f"{stem}-{n}"
        taken.add(name.lower())
        named.append(replace(spec, name=name))
    return BatchConfig(
        source=source,
        base=base,
        targets=tuple(named),
        concurrency=batch.get("concurrency"),
        per_host=batch.get("per_host"),
        out=base / batch["out"] if "out" in batch else None,
        history=base / batch["history"] if "history" in batch else None,
        keep=batch.get("keep"),
        keep_days=float(keep_days) if keep_days is not None else None,
        share=batch.get("share"),
    )


# --- one target ---------------------------------------------------------------------------------


def error_report(
    raw: str,
    finding: Any,
    *,
    started: datetime,
    elapsed_ms: float = 0.0,
    options: Mapping[str, Any] | None = None,
) -> Report:
    """A report for a target that could not be checked: one ``error`` result saying why."""
    from analyzer.core.credpolicy import hide_userinfo  # noqa: PLC0415

    raw = hide_userinfo(raw)  # the batch file refuses such targets; never shown if one slips
    step = Step(
        title=f"Prepare the check of {raw}",
        status=finding.status,
        elapsed_ms=round(elapsed_ms, 1),
        findings=(finding,),
    )
    result = ProbeResult(
        probe="batch",
        subject=raw,
        status=finding.status,
        started=started,
        elapsed_ms=round(elapsed_ms, 1),
        steps=(step,),
    )
    return Report(
        tool_version=__version__,
        target=raw,
        options=dict(options or {}),
        started=started,
        elapsed_ms=round(elapsed_ms, 1),
        status=finding.status,
        results=(result,),
    )


async def check_target(
    spec: TargetSpec,
    *,
    base: Path,
    probes: Sequence[Planned],
    limits: HostLimits | None = None,
    shared: SharedResults | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Report:
    """Check one target; never raises for anything the target or its settings do.

    An unusable target or setting gives an error report (``batch.target_unusable``); an
    exception outside the probes, or a check overrunning its deadline by
    :data:`WATCHDOG_GRACE_S`, one with ``batch.check_crashed``.
    """
    from analyzer.core.context import RunContext  # noqa: PLC0415
    from analyzer.core.pipeline import plan, run_probes  # noqa: PLC0415
    from analyzer.core.targets import parse_target  # noqa: PLC0415

    started = datetime.now(UTC)
    t0 = time.monotonic()

    def ms() -> float:
        return (time.monotonic() - t0) * 1000

    try:
        target = parse_target(spec.target)
        options = options_for(spec.settings, target, base=base, env=env, timeout=timeout)
        planned = plan(probes, options.tests)
    except (UsageError, ValueError) as exc:
        return error_report(
            spec.target, TARGET_UNUSABLE(detail=str(exc)), started=started, elapsed_ms=ms()
        )
    try:
        async with asyncio.timeout(options.timeout + WATCHDOG_GRACE_S):
            async with RunContext(options, shared_limits=limits, shared_results=shared) as run:
                return await run_probes(run, target, planned, tool_version=__version__)
    except TimeoutError:
        detail = (
            f"the check did not end within {options.timeout:g} s plus "
            f"{WATCHDOG_GRACE_S:g} s of grace"
        )
    except Exception as exc:  # the batch's one catch-all: a crash never stops the batch
        detail = options.credentials.redact(f"{type(exc).__name__}: {exc}")[:2000]
    return error_report(
        spec.target,
        CHECK_CRASHED(detail=detail),
        started=started,
        elapsed_ms=ms(),
        options=options.describe(),
    )


# --- after a target: files, history, summary (in a helper process) ---------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteJob:
    """Everything a helper process needs to write one target's files (picklable)."""

    name: str
    report: Report
    out: Path
    history: Path | None = None
    keep: int = 30
    keep_days: float | None = None


def nearest_expiry(report: Report) -> Expiry | None:
    """The leaf certificate that expires first, relative to when the check ran."""
    from analyzer.operations.history import leaf_certificates  # noqa: PLC0415

    leaves = leaf_certificates(report)
    if not leaves:
        return None
    subject, cert = min(leaves.items(), key=lambda kv: kv[1].not_after)
    started = report.started if report.started.tzinfo else report.started.replace(tzinfo=UTC)
    days = int((cert.not_after - started).total_seconds() // 86400)
    return Expiry(subject=subject, not_after=cert.not_after, days=days)


def write_target(job: WriteJob) -> TargetSummary:
    """Write one target's JSON and HTML (with its changes), keep it in the history, and
    return its summary. Runs in a helper process; never raises for a history problem."""
    import json  # noqa: PLC0415

    from analyzer.core.model import to_json  # noqa: PLC0415
    from analyzer.operations.history import History, diff  # noqa: PLC0415
    from reports import junit, prometheus  # noqa: PLC0415
    from reports.html import render  # noqa: PLC0415
    from reports.json import dumps  # noqa: PLC0415
    from reports.summary import check_status  # noqa: PLC0415

    report = job.report
    text = dumps(report)
    changes: Changes | None = None
    problem = ""
    files = {"json": f"{job.name}.json", "html": f"{job.name}.html"}
    if job.history is not None:
        try:
            history = History(job.history, keep=job.keep, keep_days=job.keep_days)
            previous = history.latest(job.name, before=report.started)
            if previous is not None:
                changes = diff(previous, report)
            history.save(job.name, report, text)
        except (OSError, ValueError) as exc:
            problem = f"history: {exc}"
    if changes is not None:
        files["changes"] = f"{job.name}.changes.json"
        write_text(
            job.out / files["changes"],
            json.dumps(to_json(changes), indent=2, ensure_ascii=False) + "\n",
        )
    write_text(job.out / files["json"], text)
    write_text(job.out / files["html"], render(report, changes=changes))
    findings = [f for _, f in report.findings()]
    return TargetSummary(
        name=job.name,
        target=report.target,
        exit_code=check_status(report),
        started=report.started,
        elapsed_ms=report.elapsed_ms,
        failures=sum(1 for f in findings if f.status == Status.FAIL),
        warnings=sum(1 for f in findings if f.status == Status.WARN),
        unknown=sum(1 for f in findings if f.status in (Status.ERROR, Status.INCONCLUSIVE)),
        expiry=nearest_expiry(report),
        changes=changes,
        files=files,
        junit=junit.dumps(report),
        prometheus=prometheus.dumps(report),
        error=problem,
    )


def write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file renamed into place (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --- combined files ----------------------------------------------------------------------------


def merge_prometheus(texts: Iterable[str]) -> str:
    """Several exposition texts as one: each metric family's HELP/TYPE once, then every
    sample of that family (the format forbids a family appearing twice)."""
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = line.split(" ", 3)[2]
                head = heads.setdefault(family, [])
                samples.setdefault(family, [])
                if not any(h.startswith(line[:7]) for h in head):
                    head.append(line)
            elif line and not line.startswith("#"):
                name = re.split(r"[{\s]", line, maxsplit=1)[0]
                samples.setdefault(name if name in heads else family or name, []).append(line)
    lines: list[str] = []
    for family, head in heads.items():
        lines += head
        lines += samples.get(family, [])
    for family, rest in samples.items():
        if family not in heads:
            lines += rest
    return "\n".join(lines) + "\n" if lines else ""


def merge_junit(texts: Iterable[tuple[str, str]]) -> str:
    """One JUnit document from ``(target name, junit text)`` pairs: every target's
    testsuites under one ``<testsuites>``, each suite named ``<target>: <probe>``."""
    import xml.etree.ElementTree as ET  # noqa: PLC0415, S405 - only to build the output

    import defusedxml.ElementTree as SafeET  # noqa: PLC0415

    root = ET.Element("testsuites", name="rca batch")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    seconds = 0.0
    for name, text in texts:
        document = SafeET.fromstring(text.encode("utf-8"))
        for suite in document.findall("testsuite"):
            suite.set("name", f"{name}: {suite.get('name', '')}")
            for key in totals:
                totals[key] += int(suite.get(key, "0"))
            root.append(suite)
        seconds += float(document.get("time", "0") or 0)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _batch_metrics(result: BatchResult) -> str:
    lines = [
        "# HELP rca_batch_duration_seconds How long the whole batch took.",
        "# TYPE rca_batch_duration_seconds gauge",
        f"rca_batch_duration_seconds {result.elapsed_s:.3f}",
        "# HELP rca_batch_timestamp_seconds When the batch started (Unix time).",
        "# TYPE rca_batch_timestamp_seconds gauge",
        f"rca_batch_timestamp_seconds {result.started.timestamp():.3f}",
        "# HELP rca_batch_targets Targets of the batch by result: 0 ok, 1 warn, 2 fail, "
        "3 unknown.",
        "# TYPE rca_batch_targets gauge",
    ]
    for code in (0, 1, 2, 3):
        count = sum(1 for s in result.targets if s.exit_code == code)
        lines.append(f'rca_batch_targets{{status="{code}"}} {count}')
    return "\n".join(lines) + "\n"


# --- the whole batch ---------------------------------------------------------------------------


Progress = Callable[[TargetSummary, int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """How to check and write a share of the targets (picklable: sent to a process)."""

    targets: tuple[tuple[int, TargetSpec], ...]
    base: Path
    out: Path
    history: Path | None
    keep: int
    keep_days: float | None
    concurrency: int
    per_host: int
    writers: int
    share: bool = True
    probes: tuple[Probe, ...] | None = None
    env: Mapping[str, str] | None = None


async def run_batch(
    config: BatchConfig,
    *,
    out: Path,
    history: Path | None = None,
    keep: int = 30,
    keep_days: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    per_host: int = DEFAULT_PER_HOST,
    probes: Sequence[Probe] | None = None,
    progress: Progress | None = None,
    writers: int = 1,
    processes: int = 1,
    share: bool = True,
    env: Mapping[str, str] | None = None,
) -> BatchResult:
    """Check every target of ``config`` and write the reports, the index and the
    combined files to ``out``.

    ``writers``: helper processes that write the reports (0: a thread of this process).
    ``processes``: processes that check targets, each with its own event loop (one event
    loop is one core at most, and a check costs CPU); the targets are dealt out among
    them, ``concurrency`` is per process, and ``per_host`` is divided between them so
    that the batch as a whole keeps the bound (at least 1 each).
    ``share``: check each endpoint that several targets use once per process (see the
    module docstring).
    """
    if concurrency < 1 or per_host < 1 or processes < 1:
        raise UsageError("--concurrency, --per-host and --processes must be at least 1")
    started = datetime.now(UTC)
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    indexed = tuple(enumerate(config.targets))
    processes = min(processes, len(indexed)) or 1
    plan = _Plan(
        targets=indexed,
        base=config.base,
        out=out,
        history=history,
        keep=keep,
        keep_days=keep_days,
        concurrency=concurrency,
        per_host=per_host,
        writers=writers,
        share=share,
        probes=tuple(probes) if probes is not None else None,
        env=env,
    )
    summaries: dict[int, TargetSummary] = {}
    total = len(indexed)

    def done(index: int, summary: TargetSummary) -> None:
        summaries[index] = summary
        if progress is not None:
            progress(summary, len(summaries), total)

    if processes == 1:
        await _check_share(plan, done)
    else:
        await _check_in_processes(plan, processes, done)
    ordered = tuple(summaries[i] for i in range(total))
    result = BatchResult(
        started=started, elapsed_s=round(time.monotonic() - t0, 3), targets=ordered, out=out
    )
    return _write_combined(result)


async def _check_share(plan: _Plan, done: Callable[[int, TargetSummary], None]) -> None:
    """Check ``plan.targets`` in this process's event loop and write their reports."""
    from analyzer.core.context import HostLimits  # noqa: PLC0415
    from analyzer.core.registry import probe_index  # noqa: PLC0415
    from analyzer.core.shared import SharedResults  # noqa: PLC0415

    available: list[Planned] = (
        list(plan.probes) if plan.probes is not None else list(probe_index())
    )
    limits = HostLimits(plan.per_host)
    shared = SharedResults(checks=plan.share)
    gate = asyncio.Semaphore(plan.concurrency)
    # Finished reports waiting for a writer hold a check slot: checks wait rather than
    # pile reports up in memory when writing is the slower side.
    pending = asyncio.Semaphore(max(1, plan.writers) * 2)

    with _executor(plan.writers) as executor:
        loop = asyncio.get_running_loop()

        async def one(index: int, spec: TargetSpec) -> None:
            async with gate:
                report = await check_target(
                    spec,
                    base=plan.base,
                    probes=available,
                    limits=limits,
                    shared=shared,
                    env=plan.env,
                )
                await pending.acquire()
            try:
                job = WriteJob(
                    name=spec.name,
                    report=report,
                    out=plan.out,
                    history=plan.history,
                    keep=plan.keep,
                    keep_days=plan.keep_days,
                )
                summary = await _write(loop, executor, job)
            finally:
                pending.release()
            done(index, summary)

        await asyncio.gather(*(one(i, s) for i, s in plan.targets))


def _share_main(plan: _Plan, queue: Any) -> None:
    """A checking process: its share of the targets, each summary sent back as it ends."""
    import warnings  # noqa: PLC0415

    # As in analyzer.cli.main: a root in certifi has a negative serial number.
    warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
    try:
        asyncio.run(_check_share(plan, lambda i, s: queue.put(("done", i, s))))
    finally:
        queue.put(("end", None, None))


async def _check_in_processes(
    plan: _Plan, processes: int, done: Callable[[int, TargetSummary], None]
) -> None:
    """Deal the targets out to ``processes`` checking processes and collect summaries.

    A process that dies (killed, out of memory) leaves its unfinished targets with an
    error report written here: every target still ends with a report.
    """
    import multiprocessing  # noqa: PLC0415
    import queue as queues  # noqa: PLC0415

    context = multiprocessing.get_context("spawn")
    channel: Any = context.Queue()
    share = max(1, plan.per_host // processes)
    workers = []
    for k in range(processes):
        part = replace(plan, targets=plan.targets[k::processes], per_host=share,
                       writers=0)
        worker = context.Process(target=_share_main, args=(part, channel), daemon=True,
                                 name=f"rca-batch-{k}")
        worker.start()
        workers.append(worker)
    ended = 0
    seen: set[int] = set()
    loop = asyncio.get_running_loop()
    try:
        while ended < processes:
            try:
                kind, index, summary = await loop.run_in_executor(None, channel.get, True, 0.5)
            except queues.Empty:
                if all(not w.is_alive() for w in workers) and channel.empty():
                    break
                continue
            if kind == "end":
                ended += 1
            else:
                seen.add(index)
                done(index, summary)
    finally:
        for worker in workers:
            worker.join(timeout=10)
        channel.close()
        channel.join_thread()
    for index, spec in plan.targets:
        if index not in seen:
            report = error_report(
                spec.target,
                CHECK_CRASHED(detail="the process checking this target ended before it did"),
                started=datetime.now(UTC),
            )
            job = WriteJob(name=spec.name, report=report, out=plan.out, history=None)
            done(index, await _write(loop, None, job))


@contextlib.contextmanager
def _executor(writers: int) -> Any:
    if writers <= 0:
        yield None
        return
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    # "spawn": the batch process holds threads (resolver, workers); forking it is unsafe.
    pool = ProcessPoolExecutor(max_workers=writers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def _write(
    loop: asyncio.AbstractEventLoop, executor: Executor | None, job: WriteJob
) -> TargetSummary:
    try:
        if executor is None:
            return await asyncio.to_thread(write_target, job)
        return await loop.run_in_executor(executor, write_target, job)
    except Exception as exc:  # a report that cannot be written still counts
        from reports.summary import check_status  # noqa: PLC0415

        return TargetSummary(
            name=job.name,
            target=job.report.target,
            exit_code=check_status(job.report),
            started=job.report.started,
            elapsed_ms=job.report.elapsed_ms,
            failures=0,
            warnings=0,
            unknown=0,
            error=f"could not write the reports: {type(exc).__name__}: {exc}",
        )


def _write_combined(result: BatchResult) -> BatchResult:
    import json  # noqa: PLC0415

    from analyzer.core.model import to_json  # noqa: PLC0415
    from reports.index import render_index  # noqa: PLC0415

    out = result.out
    files = {
        "index": "index.html",
        "summary": "index.json",
        "junit": "junit.xml",
        "prometheus": "metrics.prom",
    }
    write_text(
        out / files["prometheus"],
        merge_prometheus([*(s.prometheus for s in result.targets), _batch_metrics(result)]),
    )
    junit_texts = ((s.name, s.junit) for s in result.targets if s.junit)
    write_text(out / files["junit"], merge_junit(junit_texts))
    write_text(out / files["index"], render_index(result))
    summary = {
        "started": result.started.isoformat(),
        "elapsed_s": result.elapsed_s,
        "exit_code": result.exit_code,
        "targets": [
            {
                **{k: v for k, v in to_json(s).items() if k not in ("junit", "prometheus")},  # type: ignore[union-attr]
                "changes": (
                    None
                    if s.changes is None
                    else {
                        "total": len(s.changes.items),
                        "worse": s.changes.worse,
                        "better": s.changes.better,
                        "since": s.changes.old_started.isoformat(),
                    }
                ),
            }
            for s in result.targets
        ],
    }
    write_text(out / files["summary"], json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return replace(result, files=files)


def _shouted(code: int) -> str:
    # A terminal line per target: failures and unknowns in capitals, so they stand out.
    word = EXIT_WORDS[code]
    return word.upper() if code in (EXIT_FAIL, EXIT_UNKNOWN) else word


def summary_lines(result: BatchResult) -> list[str]:
    """What ``rca batch`` prints: one line per target (worst first), then the total."""
    from reports.summary import clean_text  # noqa: PLC0415

    lines = []
    for s in sorted(result.targets, key=lambda s: (-EXIT_SEVERITY[s.exit_code], s.name)):
        extra = []
        if s.failures or s.warnings or s.unknown:
            extra.append(f"{s.failures} fail, {s.warnings} warn, {s.unknown} unknown")
        if s.changes is not None and s.changes.items:
            extra.append(f"{s.changes.worse} worse, {s.changes.better} better since last run")
        if s.error:
            extra.append(s.error)
        html = result.out / s.files["html"] if "html" in s.files else None
        lines.append(
            f"{_shouted(s.exit_code):<8} {clean_text(s.target)}"
            + (f" ({'; '.join(extra)})" if extra else "")
            + (f"  {html}" if html else "")
        )
    counts = {code: sum(1 for s in result.targets if s.exit_code == code) for code in EXIT_WORDS}
    lines.append(
        f"rca batch: {len(result.targets)} target(s) in {result.elapsed_s:.1f} s: "
        f"{counts[2]} failed, {counts[3]} unknown, {counts[1]} warned, {counts[0]} ok; "
        f"index {result.out / result.files.get('index', 'index.html')}; "
        f"exit {result.exit_code}"
    )
    return lines


# --- the command line (``rca batch``; parsed in analyzer.cli) ---------------------------------


def _positive(value: int | float | None, flag: str) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{flag} must be a positive number")


def main_batch(args: Any) -> int:
    """``rca batch FILE``: run the batch, print one line per target, exit with the worst."""
    import sys  # noqa: PLC0415

    for value, flag in (
        (args.keep, "--keep"),
        (args.keep_days, "--keep-days"),
        (args.concurrency, "--concurrency"),
        (args.per_host, "--per-host"),
    ):
        _positive(value, flag)
    if args.writers < 0:
        raise UsageError("--writers must be 0 or more")
    _positive(args.processes, "--processes")
    config = load_batch(args.file)
    if args.netns:
        from analyzer.protocols.netns import enter_netns  # noqa: PLC0415

        enter_netns(args.netns)
    out = args.out or config.out or Path("rca-batch")
    bar = _ProgressBar(len(config.targets)) if not args.quiet else None
    with bar if bar is not None else contextlib.nullcontext():
        result = asyncio.run(
            run_batch(
                config,
                out=out,
                history=args.history or config.history,
                keep=args.keep or config.keep or 30,
                keep_days=args.keep_days or config.keep_days,
                concurrency=args.concurrency or config.concurrency or DEFAULT_CONCURRENCY,
                per_host=args.per_host or config.per_host or DEFAULT_PER_HOST,
                progress=bar.update if bar is not None else None,
                writers=args.writers,
                processes=args.processes or 1,
                share=not args.no_share and config.share is not False,
            )
        )
    for path, name in ((args.junit, "junit"), (args.prometheus, "prometheus")):
        if path is not None:
            try:
                write_text(path, (out / result.files[name]).read_text(encoding="utf-8"))
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    lines = summary_lines(result)
    for line in lines[-1:] if args.quiet else lines:
        print(line, file=sys.stdout)
    return result.exit_code


class _ProgressBar:
    """A rich progress bar over the targets, on standard error, only on a terminal."""

    def __init__(self, total: int) -> None:
        import sys  # noqa: PLC0415

        from reports.terminal import use_color  # noqa: PLC0415

        self.total = total
        self._progress: Any = None
        self._task: Any = None
        if use_color(sys.stderr):
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("rca batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}", markup=False),
                console=Console(file=sys.stderr, highlight=False, markup=False),
                transient=True,
            )

    def __enter__(self) -> _ProgressBar:
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task("targets", total=self.total, last="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, summary: TargetSummary, done: int, total: int) -> None:
        """Progress callback of :func:`run_batch`."""
        if self._progress is None:
            return
        from reports.summary import clean_text  # noqa: PLC0415

        word = _shouted(summary.exit_code)
        last = clean_text(f"{word} {summary.target}")[:80]
        self._progress.update(self._task, completed=done, last=last)
