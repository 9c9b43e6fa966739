"""The ``rca`` command line.

Imports are lazy: ``rca --version`` must not pay for httpx, cryptography, jinja2 or rich.
Exit codes follow the monitoring-plugins convention (see :func:`analyzer.api.exit_code`);
unusable input exits 3 with a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from analyzer import __version__
from analyzer.core import startup
from analyzer.core.errors import RcaError, UsageError

__all__ = ["build_parser", "main", "run_returning"]

R = TypeVar("R")

EXIT_OK, EXIT_UNKNOWN = 0, 3  # the others come from api.exit_code (1 warn, 2 fail)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 3 (unusable input) instead of 2, which means "failed" here."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"rca: error: {message}\n")
        raise SystemExit(EXIT_UNKNOWN)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flag names are a contract: scripts outside depend on them)."""
    parser = _Parser(
        prog="rca",
        description="Remote connectivity analyzer for mail systems: DNS, Autodiscover, "
        "certificates, ports and client logins, with a report you can attach to a ticket.",
    )
    parser.add_argument("--version", action="version", version=f"rca {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser("check", help="run a check against one target")
    check.add_argument("target", help="user@domain, domain, host[:port] or https://URL")
    _add_run_options(check)
    _add_output_options(check)

    findings = sub.add_parser("findings", help="list every finding code with its meaning")
    findings.add_argument("--format", choices=("text", "markdown", "json"), default="text")

    report = sub.add_parser("report", help="re-render a saved JSON report")
    report.add_argument("json_file", type=Path, help="a report written by --json")
    report.add_argument("--html", type=Path, help="write the HTML report here")
    report.add_argument("--format", choices=("terminal", "json"), default="terminal")

    lab = sub.add_parser("lab", help="start, inspect or stop the bundled lab (root)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=_Parser)
    for name, text in (("up", "start the lab"), ("down", "stop the lab"), ("status", "show it")):
        p = lab_sub.add_parser(name, help=text)
        p.add_argument("--dir", type=Path, default=Path("/run/rca-lab"), help="lab state folder")
        if name == "up":
            p.add_argument("--scenario", action="append", help="scenario name (repeatable)")
            p.add_argument("--latency", type=int, default=0, help="one-way latency in ms (netem)")

    demo = sub.add_parser("demo", help="start the lab and run a full check of its scenarios")
    demo.add_argument("--dir", type=Path, default=Path("/run/rca-lab"), help="lab state folder")
    demo.add_argument("--out", type=Path, default=Path("rca-demo"), help="where reports go")
    demo.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    demo.add_argument("--scenario", action="append", help="scenario name (repeatable)")
    _add_schedule_commands(sub)
    return parser


def _add_schedule_commands(sub: Any) -> None:
    """``batch``, ``diff`` and ``serve``: scheduled checks (:mod:`analyzer.operations`)."""
    batch = sub.add_parser("batch", help="check many targets from a TOML file, one report each")
    batch.add_argument("file", type=Path, help="the batch file (TOML; see docs/scheduling.md)")
    batch.add_argument("--out", type=Path, metavar="DIR",
                       help="where reports, index.html, junit.xml and metrics.prom go "
                       "(default: the file's [batch] out, else ./rca-batch)")
    batch.add_argument("--history", type=Path, metavar="DIR",
                       help="keep each run's JSON here and report what changed since the last")
    batch.add_argument("--keep", type=int, metavar="N", help="runs kept per target (default 30)")
    batch.add_argument("--keep-days", type=float, metavar="DAYS",
                       help="also remove runs older than this")
    batch.add_argument("--concurrency", type=int, metavar="N",
                       help="targets checked at once (default 3)")
    batch.add_argument("--per-host", type=int, metavar="N",
                       help="connection attempts at once to one server, whole batch (default 2)")
    batch.add_argument("--processes", type=int, metavar="N",
                       help="processes checking targets, each with its own event loop "
                       "(default 1; up to one per core)")
    batch.add_argument("--writers", type=int, default=1, metavar="N",
                       help="helper processes writing the reports (default 1; 0: none)")
    batch.add_argument("--no-share", action="store_true",
                       help="check every endpoint and ask every DNS question afresh for "
                       "every target (default: an endpoint many targets share is checked once "
                       "per batch process, and a DNS answer is reused until its TTL runs out)")
    batch.add_argument("--junit", type=Path, metavar="FILE",
                       help="also write the combined JUnit XML here")
    batch.add_argument("--prometheus", type=Path, metavar="FILE",
                       help="also write the combined Prometheus metrics here (textfile collector)")
    batch.add_argument("--netns", metavar="NAME", help="run inside this network namespace")
    batch.add_argument("--quiet", action="store_true", help="print only the summary line")

    diff = sub.add_parser("diff", help="what changed between two saved JSON reports")
    diff.add_argument("old", type=Path, help="the earlier report (--json)")
    diff.add_argument("new", type=Path, help="the later report")
    diff.add_argument("--format", choices=("text", "json"), default="text")

    serve = sub.add_parser("serve", help="Prometheus exporter: GET /probe?target=&module=")
    serve.add_argument("config", type=Path, help="the exporter file (TOML; modules, allowlist)")
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="address to bind (default: the file's, else 127.0.0.1:9117)")
    serve.add_argument("--netns", metavar="NAME", help="run inside this network namespace")

    web = sub.add_parser("web", help="the checks as a web page (a self-hosted ExRCA)")
    web.add_argument("--listen", metavar="HOST:PORT",
                     help="address to bind (default: the config's, else 127.0.0.1:8080); "
                     "anything but localhost needs --cert/--key and an allowlist")
    web.add_argument("--config", type=Path, metavar="FILE",
                     help="the web file (TOML; allowlist, DNS servers, CA files, limits)")
    web.add_argument("--cert", type=Path, metavar="PEM", help="TLS certificate (chain) file")
    web.add_argument("--key", type=Path, metavar="PEM", help="TLS private key file")
    web.add_argument("--history", type=Path, metavar="DIR",
                     help="where runs are kept (default: the config's, else ./rca-web-history)")
    web.add_argument("--netns", metavar="NAME",
                     help="run the checks inside this network namespace (the page stays "
                     "reachable where rca web was started)")
    web.add_argument("--lab", type=Path, nargs="?", const=Path("/run/rca-lab"), metavar="DIR",
                     help="test the running bundled lab: its client namespace, DNS server "
                     "and CA (default DIR /run/rca-lab)")
    web.add_argument("--hash-password", action="store_true",
                     help="print the [web.users] hash of a password (read from the terminal "
                     "or standard input) and exit")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where and how to test")
    g.add_argument("--tests", help="comma-separated checks to run (default: all); see below")
    g.add_argument(
        "--resolver",
        action="append",
        default=[],
        metavar="IP[:PORT]",
        help="DNS server to use instead of the system's (repeatable)",
    )
    g.add_argument(
        "--connect",
        action="append",
        default=[],
        metavar="HOST=IP",
        help="connect to IP whenever HOST is needed, like curl --resolve (repeatable)",
    )
    g.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="[SERVICE/]HOST:PORT",
        help="also test this endpoint, e.g. mx.example.com:25 or smtp/mx.example.com:2525 "
        "(ports and TLS checks; repeatable)",
    )
    g.add_argument(
        "--dnsbl",
        action="append",
        default=[],
        metavar="ZONE[,ZONE]",
        help="look the MX addresses up in these DNS block lists (opt-in; repeatable)",
    )
    g.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="also trust the CA certificates in this PEM file",
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        help="continue past certificate failures (they are still reported)",
    )
    fam = g.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="ipv4_only", action="store_true", help="IPv4 only")
    fam.add_argument("-6", dest="ipv6_only", action="store_true", help="IPv6 only")
    g.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="deadline of the whole run (default 60)",
    )
    g.add_argument(
        "--dkim-selector",
        action="append",
        default=[],
        metavar="NAME",
        help="DKIM selector to check besides the common ones (repeatable)",
    )
    g.add_argument(
        "--trust-anchor",
        type=Path,
        metavar="FILE",
        help="DNSSEC trust anchor (DS or DNSKEY records) for a private tree",
    )
    g.add_argument(
        "--netns",
        metavar="NAME",
        help="run inside this network namespace (e.g. the lab's rca-lab-client)",
    )
    a = p.add_argument_group("Autodiscover and autoconfig")
    a.add_argument(
        "--autodiscover-url",
        metavar="URL",
        help="ask this https Autodiscover URL instead of discovering it (a server behind a "
        "load balancer, an internal name)",
    )
    a.add_argument(
        "--all-methods",
        action="store_true",
        help="try and report every Autodiscover method, not only up to the first that answers",
    )
    a.add_argument(
        "--mobilesync",
        action="store_true",
        help="also ask Autodiscover in the ActiveSync (mobilesync) schema, and prefer its "
        "answer as the ActiveSync URL (it is asked anyway when nothing else gives one)",
    )
    a.add_argument(
        "--trust-redirect",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="send credentials to DOMAIN when Autodiscover redirects there (repeatable)",
    )
    a.add_argument(
        "--ispdb",
        action="store_true",
        help="also ask Thunderbird's ISPDB (live.thunderbird.net, a third party) for the domain",
    )
    c = p.add_argument_group("credentials (never on the command line itself)")
    c.add_argument("--user", help="login name (default: the target address)")
    c.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="read the password from the first line of FILE (or set RCA_PASSWORD)",
    )
    c.add_argument(
        "--oauth-token-file",
        type=Path,
        metavar="FILE",
        help="read an OAuth2 bearer token from FILE",
    )
    m = p.add_argument_group("client login checks")
    m.add_argument(
        "--send-test-message",
        action="store_true",
        help="send a tagged test message to the user's own mailbox, wait for it by IMAP, "
        "then delete it (round-trip delivery time)",
    )
    m.add_argument(
        "--relay-test",
        action="store_true",
        help="on every MX, check that a recipient outside the domain (.invalid) is refused",
    )
    m.add_argument("--ews-url", metavar="URL", help="EWS URL to test (default: Autodiscover's)")
    m.add_argument(
        "--activesync-url",
        metavar="URL",
        help="ActiveSync URL to test (default: Autodiscover's mobilesync or v2 answer, else "
        "/Microsoft-Server-ActiveSync on the EWS host, reported as a guess)",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("output")
    o.add_argument(
        "--format",
        choices=("terminal", "json"),
        default="terminal",
        help="what to print on standard output (default: terminal)",
    )
    o.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report")
    o.add_argument("--report", type=Path, metavar="FILE", help="write the HTML report")
    o.add_argument(
        "--junit", type=Path, metavar="FILE", help="write a JUnit XML report (for CI systems)"
    )
    o.add_argument(
        "--prometheus",
        type=Path,
        metavar="FILE",
        help="write Prometheus metrics (node-exporter textfile collector format)",
    )
    o.add_argument("--quiet", action="store_true", help="print only the verdict line")


def _skip_unused_imports() -> None:
    """Keep httpx and httpcore from importing what the ``rca`` process never uses.

    - httpcore imports trio whenever it is installed (selenium, for one, pulls it in) only to
      support trio's event loop; every rca command runs on asyncio;
    - ``import httpx`` imports its own command line (``httpx._main``: click, pygments, rich's
      progress bars and syntax highlighting) whenever click is installed.

    Together 0.1-0.5 s of imports before the first HTTP request of a run. A ``None`` entry
    makes such an import fail at once, which both libraries expect (the modules are
    optional for them). Only in the command line: a program using rca's API keeps its own.
    """
    for name in ("trio", "httpx._main"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rca`` console script (``argv`` None: this process's own command
    line, ``sys.argv``)."""
    if argv is None:
        # No cyclic collection while `rca check` imports and plans (analyzer.core.startup):
        # the pipeline turns it back on once the planned probes are imported, or the finally
        # below. Only in the rca process itself: a program calling main(argv) (the tests)
        # keeps its collector, and no object of its own is frozen.
        startup.defer()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "check":
        # Batches and servers run many checks: collection as usual before the first starts
        # (settling while runs are under way would freeze their state for the process's life).
        startup.settle()
    # A root in certifi has a negative serial number: cryptography warns on every parse of
    # it. Set once, before any thread starts (warning filters are process-wide).
    from cryptography.utils import CryptographyDeprecationWarning  # noqa: PLC0415

    warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive",
                            category=CryptographyDeprecationWarning)
    _skip_unused_imports()
    try:
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "findings":
            return _cmd_findings(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "lab":
            return _cmd_lab(args, parser)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "batch":
            from analyzer.operations.batch import main_batch  # noqa: PLC0415

            return main_batch(args)
        if args.command == "diff":
            from analyzer.operations.history import main_diff  # noqa: PLC0415

            return main_diff(args)
        if args.command == "serve":
            from analyzer.operations.serve import main_serve  # noqa: PLC0415

            return main_serve(args)
        if args.command == "web":
            from analyzer.operations.web.server import main_web  # noqa: PLC0415

            lab = None
            if args.lab is not None:  # `rca web --lab`: through the lab's door, like `rca lab`
                from analyzer.lab import cli as lab_cli  # noqa: PLC0415

                lab = lab_cli.running_lab(args.lab)
            return main_web(args, build_options=check_options, lab=lab)
        parser.print_help()
        return EXIT_UNKNOWN
    except RcaError as exc:
        print(f"rca: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        print("rca: interrupted", file=sys.stderr)
        return 130
    finally:
        startup.settle()


# --- check ------------------------------------------------------------------------------------


def check_options(argv: list[str], default_user: str | None) -> Any:
    """``rca check``'s options (a :class:`~analyzer.core.context.RunOptions`) from its flags
    (``argv`` starts with "check"): how ``rca web`` builds a run exactly as ``rca check`` does.
    Raises :class:`UsageError`."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # the page checked every flag: a mismatch here is rca's bug
        raise UsageError("these options could not be used") from None
    args._default_user = default_user
    return options_from_args(args)


def options_from_args(args: argparse.Namespace, *, needs_secret: bool = False) -> Any:
    """Build :class:`~analyzer.core.context.RunOptions` from parsed ``check`` arguments."""
    from analyzer.core.context import (  # noqa: PLC0415
        Credentials,
        RunOptions,
        parse_connect_override,
        parse_host_port,
        parse_nameserver,
    )

    if args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    connect: dict[str, list[str]] = {}
    for item in args.connect:
        host, ip = parse_connect_override(item)
        connect.setdefault(host, []).append(ip)
    families: tuple[Any, ...] = (4,) if args.ipv4_only else (6,) if args.ipv6_only else (4, 6)
    for path, flag in ((args.ca_file, "--ca-file"), (args.trust_anchor, "--trust-anchor")):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    tests = tuple(t.strip() for t in (args.tests or "").split(",") if t.strip())
    autodiscover_url = _https_url(getattr(args, "autodiscover_url", None), "--autodiscover-url")
    return RunOptions(
        autodiscover_url=autodiscover_url,
        all_methods=getattr(args, "all_methods", False),
        mobilesync=getattr(args, "mobilesync", False),
        trust_redirect=tuple(
            d.strip().lower().rstrip(".") for d in getattr(args, "trust_redirect", []) if d.strip()
        ),
        ispdb=getattr(args, "ispdb", False),
        nameservers=tuple(parse_nameserver(r) for r in args.resolver),
        connect={k: tuple(v) for k, v in connect.items()},
        ca_file=args.ca_file,
        insecure=args.insecure,
        families=families,
        timeout=args.timeout,
        probe_timeout=min(45.0, args.timeout),
        op_timeout=min(10.0, args.timeout),
        credentials=Credentials(
            args.user or getattr(args, "_default_user", None),
            password=_read_password(args, needs_secret),
            token=_read_secret_file(args.oauth_token_file, "--oauth-token-file"),
        ),
        tests=tests,
        dkim_selectors=tuple(args.dkim_selector),
        trust_anchor_file=args.trust_anchor,
        extra_ports=tuple(parse_host_port(p) for p in args.port),
        dnsbl=tuple(
            z.strip().lower().rstrip(".") for item in args.dnsbl for z in item.split(",")
            if z.strip()
        ),
        send_test_message=getattr(args, "send_test_message", False),
        relay_test=getattr(args, "relay_test", False),
        ews_url=_https_url(getattr(args, "ews_url", None), "--ews-url"),
        activesync_url=_https_url(getattr(args, "activesync_url", None), "--activesync-url"),
    )


def _https_url(url: str | None, flag: str) -> str | None:
    """``url`` if it is an https URL with a host and no ``user:password@`` (credentials
    only ever go over https, and only the user's own, from --password-file)."""
    if url is None:
        return None
    from urllib.parse import urlsplit  # noqa: PLC0415

    from analyzer.core.credpolicy import hide_userinfo  # noqa: PLC0415

    try:
        parts = urlsplit(url.strip())
        has_host = bool(parts.hostname)
    except ValueError:
        raise UsageError(f"{flag} {hide_userinfo(url)!r}: not a URL") from None
    if parts.scheme.lower() != "https" or not has_host:
        raise UsageError(f"{flag} {hide_userinfo(url)!r}: expected an https:// URL")
    if "@" in parts.netloc:
        raise UsageError(
            f"{flag} {hide_userinfo(url)!r}: the URL contains credentials (user:password@); "
            "remove them and use --user with --password-file or RCA_PASSWORD"
        )
    return url.strip()


def _read_secret_file(path: Path | None, flag: str) -> str | None:
    from analyzer.core.context import read_secret_file  # noqa: PLC0415

    return None if path is None else read_secret_file(path, flag)


def _read_password(args: argparse.Namespace, needs_secret: bool) -> str | None:
    from_file = _read_secret_file(args.password_file, "--password-file")
    if from_file is not None:
        return from_file
    env = os.environ.get("RCA_PASSWORD")
    if env:
        return env
    if needs_secret and args.oauth_token_file is None and sys.stdin.isatty():
        import getpass  # noqa: PLC0415

        user = args.user or getattr(args, "_default_user", None) or "the user"
        return getpass.getpass(f"Password for {user}: ") or None
    return None


def run_returning(coro: Coroutine[Any, Any, R]) -> R:
    """``asyncio.run(coro)``, without asyncio formatting what ``coro`` returns.

    When ``asyncio.run`` restores the SIGINT handler, CPython 3.11 formats an error message
    naming the old handler, a ``functools.partial`` holding the main task, whose repr
    includes the task's result: the whole report, twice (~15 ms of CPU for a full check).
    The main task here returns nothing, so that repr is short.
    """
    import asyncio  # noqa: PLC0415

    box: list[R] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]


def _cmd_check(args: argparse.Namespace) -> int:
    from analyzer.api import check, exit_code  # noqa: PLC0415
    from analyzer.core.pipeline import plan  # noqa: PLC0415
    from analyzer.core.registry import probe_index  # noqa: PLC0415
    from analyzer.core.targets import parse_target  # noqa: PLC0415

    if args.netns:
        from analyzer.protocols.netns import enter_netns  # noqa: PLC0415

        enter_netns(args.netns)
    target = parse_target(args.target)
    args._default_user = target.address
    probes = probe_index()  # the planned probes are imported when they start
    tests = tuple(t.strip() for t in (args.tests or "").split(",") if t.strip())
    try:
        # Which probes run decides whether a password is needed: plan before reading it.
        from analyzer.api import selected_tests  # noqa: PLC0415
        from analyzer.core.context import RunOptions  # noqa: PLC0415

        wanted = RunOptions(tests=tests, dnsbl=tuple(z for z in args.dnsbl if z))
        planned = plan(probes, selected_tests(probes, wanted))
    except ValueError as exc:
        raise UsageError(f"--tests: {exc}") from None
    options = options_from_args(args, needs_secret=any(p.uses_credentials for p in planned))

    from reports.terminal import TerminalView  # noqa: PLC0415

    view = TerminalView(
        enabled=args.format == "terminal" and not args.quiet,
        target=target.display,
    )
    with view:
        report = run_returning(check(target, options, probes=planned, progress=view.progress))
    _write_outputs(report, args)
    if args.format == "json":
        from reports.json import dumps  # noqa: PLC0415

        sys.stdout.write(dumps(report))
    elif args.quiet:
        from reports.terminal import verdict_line  # noqa: PLC0415

        print(verdict_line(report))
    else:
        view.final(report)
    return exit_code(report)


def _write_outputs(report: Any, args: argparse.Namespace) -> None:
    if args.json:
        from reports.json import dumps  # noqa: PLC0415

        _write(args.json, dumps(report))
    if args.report:
        from reports.html import render  # noqa: PLC0415

        _write(args.report, render(report))
    if getattr(args, "junit", None):
        from reports import junit  # noqa: PLC0415

        _write(args.junit, junit.dumps(report))
    if getattr(args, "prometheus", None):
        from reports import prometheus  # noqa: PLC0415

        # _write renames a temporary file into place: the collector never reads half a file
        # (it ignores the temporary's ".tmp" suffix).
        _write(args.prometheus, prometheus.dumps(report))


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- other commands ---------------------------------------------------------------------------


def _cmd_findings(args: argparse.Namespace) -> int:
    from analyzer.core.findings import catalogue_markdown  # noqa: PLC0415
    from analyzer.core.registry import all_finding_specs  # noqa: PLC0415

    specs = all_finding_specs()
    if args.format == "markdown":
        sys.stdout.write(catalogue_markdown(specs))
    elif args.format == "json":
        import json  # noqa: PLC0415

        from analyzer.core.model import to_json  # noqa: PLC0415

        sys.stdout.write(json.dumps([to_json(s) for s in specs], indent=2) + "\n")
    else:
        width = max(len(s.code) for s in specs)
        for s in specs:
            print(f"{s.code:<{width}}  {s.status.value:<12}  {s.title}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from analyzer.api import exit_code  # noqa: PLC0415
    from analyzer.core.model import report_from_json  # noqa: PLC0415

    try:
        data = json.loads(args.json_file.read_text(encoding="utf-8"))
        report = report_from_json(data)
    except OSError as exc:
        raise UsageError(f"{args.json_file}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{args.json_file} is not an rca JSON report: {exc}") from None
    if args.html:
        from reports.html import render  # noqa: PLC0415

        _write(args.html, render(report))
    if args.format == "json":
        from reports.json import dumps  # noqa: PLC0415

        sys.stdout.write(dumps(report))
    elif not args.html:
        from reports.terminal import TerminalView  # noqa: PLC0415

        TerminalView(enabled=True, target=report.target).final(report)
    return exit_code(report)


def _cmd_lab(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from analyzer.lab import cli as lab_cli  # noqa: PLC0415

    action = {"up": lab_cli.lab_up, "down": lab_cli.lab_down, "status": lab_cli.lab_status}
    if args.lab_command not in action:
        parser.parse_args(["lab", "--help"])
        return EXIT_UNKNOWN
    result = action[args.lab_command](args)
    return int(result or 0)


def _cmd_demo(args: argparse.Namespace) -> int:
    from analyzer.lab import cli as lab_cli  # noqa: PLC0415

    return int(lab_cli.demo(args) or 0)
