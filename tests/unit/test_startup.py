"""What a short-lived ``rca`` process pays to start: the cyclic collector while it imports."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from analyzer.core import startup
from tests.servers.dnsserver import DnsServer

#: Runs `rca ARGS` as the rca process does (main() reads sys.argv), noting the modules loaded
#: at each cyclic collection, then prints what it saw and the collector's state afterwards.
WATCH_COLLECTIONS = (
    "import gc, json, sys\n"
    "from analyzer.cli import main\n"
    "seen = []\n"
    "gc.callbacks.append(lambda phase, info: phase == 'start' and seen.append(\n"
    "    sorted(m for m in sys.modules if m.startswith('probes.'))))\n"
    "code = main()\n"
    "print(json.dumps({'code': code, 'seen': seen, 'enabled': gc.isenabled(),\n"
    "                  'frozen': gc.get_freeze_count()}))\n"
)


def last_line(*args: str) -> str:
    """The last line a ``python ARGS`` process printed (it must succeed, without traceback)."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout.splitlines()[-1]


def test_a_check_collects_no_cycles_until_its_probes_are_imported(
    example_dns: DnsServer,
) -> None:
    # When `rca check --tests dns` runs in a process of its own
    state = json.loads(last_line(
        "-c", WATCH_COLLECTIONS, "check", "example.test", "--tests", "dns", "--quiet",
        "--resolver", f"{example_dns.address}:{example_dns.port}", "--timeout", "10",
    ))  # fmt: skip
    assert state["code"] in (0, 1, 2)  # a verdict, not unusable input
    # Then no collection ran while rca imported and planned: the first one came after the
    # planned probes (dns, and srv which it uses) were imported
    assert all(modules == ["probes.dns", "probes.srv"] for modules in state["seen"])
    # And afterwards the collector is on, with the import-time objects frozen out of its way
    assert state["enabled"] is True
    assert state["frozen"] > 10_000


def test_settle_without_defer_leaves_an_api_users_collector_alone() -> None:
    # Given a program that uses rca's API with collection off, by its own choice
    gc.disable()
    try:
        # When the pipeline settles after importing its probes
        startup.settle()
        # Then the collector stays off and nothing was frozen
        assert not gc.isenabled()
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_defer_then_settle_freezes_and_turns_the_collector_back_on() -> None:
    # Given the command line's deferral
    startup.defer()
    try:
        assert not gc.isenabled()
        # When the run's modules are imported
        startup.settle()
        # Then the collector is on again, the objects alive then are frozen, and a second
        # settle changes nothing
        assert gc.isenabled()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        startup.settle()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_batch_runs_its_checks_with_the_collector_on() -> None:
    # Given `rca batch`, whose checks are under way together (state frozen while they run
    # would live as long as the process): its entry point watched
    program = (
        "import gc, sys\n"
        "import analyzer.operations.batch as batch\n"
        "seen = []\n"
        "batch.main_batch = lambda args: seen.append(gc.isenabled()) or 0\n"
        "from analyzer.cli import main\n"
        "sys.argv = ['rca', 'batch', 'targets.toml']\n"
        "main()\n"
        "print(seen)\n"
    )
    # When the command line starts it
    seen = last_line("-c", program)
    # Then the batch began with the cyclic collector on, as without rca's start-up deferral
    assert seen == "[True]"


def test_a_program_calling_main_with_arguments_keeps_its_collector() -> None:
    # Given a program (a test suite, say) that runs rca's command line in its own process
    program = (
        "import contextlib, gc, io\n"
        "from analyzer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['findings', '--format', 'json'])\n"
        "print(gc.isenabled(), gc.get_freeze_count())\n"
    )
    # When the command has run
    state = last_line("-c", program)
    # Then the collector is on and none of the program's objects was frozen out of its reach
    # (gc.get_referrers, for one, does not see frozen objects)
    assert state == "True 0"
