"""The probe index: planning and the catalogue without importing the probes that do not run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from analyzer.api import check
from analyzer.core.context import Nameserver, RunOptions
from analyzer.core.model import Status
from analyzer.core.pipeline import plan
from analyzer.core.registry import INDEX_FILE, StaleIndex, index_text, load_probes, probe_index
from analyzer.core.targets import parse_target
from tests.servers.dnsserver import DnsServer

#: Modules that only the network probes need (certificates, HTTP, mail clients).
NETWORK_MACHINERY = (
    "probes.tlschain", "probes.activesync", "probes.autodiscover", "probes.ews",
    "probes.outlook_anywhere", "probes.mailauth.spf", "analyzer.protocols.login",
    "analyzer.protocols.httpauth",
    "cryptography.x509", "cryptography.hazmat", "httpx", "httpcore", "anyio", "imapclient",
    # The DMARC probe's Public Suffix List; the credential policy's namespace file (TOML).
    "publicsuffixlist", "tomllib",
)
SHOW_MODULES = (
    "import sys, runpy\n"
    "out = sys.argv.pop(1)\n"
    "try:\n"
    "    runpy.run_module('analyzer', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "open(out, 'w').write('\\n'.join(sorted(m for m, v in sys.modules.items() if v)))\n"
)


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded by one `rca ARGS` process, when it ends."""
    out = tmp_path / "modules.txt"
    env = {k: v for k, v in os.environ.items() if k != "RCA_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-c", SHOW_MODULES, str(out), *args],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return set(out.read_text().split())


def loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.startswith(prefixes))


def test_the_committed_index_matches_what_the_probes_declare() -> None:
    # Given every registered probe, imported
    probes = load_probes()
    # Then probes/index.json holds exactly their declarations and finding specs
    assert INDEX_FILE.read_text(encoding="utf-8") == index_text(probes), (
        "probes/index.json is stale: run `make catalogue`"
    )
    # And the index's entries plan like the probes themselves
    assert [p.id for p in plan(probe_index())] == [p.id for p in plan(probes)]


def test_a_dns_only_check_imports_no_other_probe(tmp_path: Path, example_dns: DnsServer) -> None:
    # When `rca check --tests dns` runs against a loopback resolver
    modules = imported_by(
        tmp_path, "check", "example.test", "--tests", "dns", "--quiet",
        "--resolver", f"{example_dns.address}:{example_dns.port}", "--timeout", "10",
    )
    # Then the DNS probe ran
    assert "probes.dns" in modules
    # And no other probe, nor the machinery of certificates, HTTP and mail logins, was imported
    assert loaded(modules, NETWORK_MACHINERY) == []
    assert loaded(modules, ("probes.",)) == ["probes.dns", "probes.srv"]


def test_mail_authentication_without_an_mta_sts_policy_imports_no_http_client(
    tmp_path: Path, example_dns: DnsServer
) -> None:
    # When `rca check --tests mailauth` runs for a domain that publishes no MTA-STS record
    modules = imported_by(
        tmp_path, "check", "example.test", "--tests", "mailauth", "--quiet",
        "--resolver", f"{example_dns.address}:{example_dns.port}", "--timeout", "10",
    )
    # Then the mail-authentication probe ran
    assert "probes.mailauth.probe" in modules
    # And neither the HTTP client (only a policy fetch needs it) nor a key parser was imported
    assert loaded(modules, (
        "analyzer.protocols.http", "httpx", "httpcore", "anyio", "h11", "cryptography.hazmat",
    )) == []


def test_the_findings_catalogue_imports_no_probe(tmp_path: Path) -> None:
    # When `rca findings` lists every code
    modules = imported_by(tmp_path, "findings", "--format", "json")
    # Then it read the index: no probe module and no network machinery was imported
    assert loaded(modules, ("probes.",)) == []
    assert loaded(modules, NETWORK_MACHINERY) == []
    # And no event loop, sockets or TLS either (a list of text needs none of them)
    assert sorted(modules & {"asyncio", "socket", "ssl", "concurrent.futures"}) == []


async def test_a_stale_index_entry_is_an_error_result_not_a_crash(
    example_dns: DnsServer,
) -> None:
    # Given an index entry that declares other needs than the probe it names
    (entry,) = probe_index(("dns",))
    stale = dataclasses.replace(entry, uses=("nonexistent_fact",))
    # When the run reaches it
    options = RunOptions(nameservers=(Nameserver(example_dns.address, example_dns.port),),
                         timeout=10)
    report = await check(parse_target("example.test"), options, probes=[stale])
    # Then it is one error result that says how to fix the index
    (result,) = report.results
    assert result.status == Status.ERROR
    (finding,) = result.findings()
    assert finding.code == "probe.crashed"
    assert StaleIndex.__name__ in finding.detail
    assert "make catalogue" in finding.detail


def test_the_index_is_json_listing_the_registry_in_order() -> None:
    # Given the committed index
    document = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    # Then it lists the registry's probes in the registry's (report) order
    from probes import REGISTRY

    assert [p["id"] for p in document["probes"]] == list(REGISTRY)
    assert [e.location for e in probe_index()] == list(REGISTRY.values())


def test_the_command_line_skips_what_httpx_would_import_for_nothing() -> None:
    # Given the rca process, after a command ran (rca is asyncio only; httpcore imports trio
    # whenever it is installed, httpx its own command line whenever click is: a fraction of
    # a second for nothing)
    program = (
        "import sys\n"
        "from analyzer.cli import main\n"
        "main(['findings', '--format', 'json'])\n"
        "import httpx\n"
        "httpx.AsyncClient()\n"
        "print(sorted(m for m, v in sys.modules.items()\n"
        "             if v is not None and m.startswith(('trio', 'click', 'pygments'))))\n"
    )
    # When the command line has run and an HTTP client is made
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    # Then neither trio nor httpx's command line (click, pygments) was imported
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
