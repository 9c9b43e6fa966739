"""The command line as a user runs it: a real process, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.dnsserver import DnsServer

PASSWORD = "Corr3ct-Horse-Battery"  # noqa: S105 - test data


def rca(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "RCA_PASSWORD"}
    full_env.update({"NO_COLOR": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args],
        capture_output=True, text=True, timeout=60, env=full_env, stdin=subprocess.DEVNULL,
    )


def test_version() -> None:
    out = rca("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("rca ")


@pytest.mark.parametrize(
    "target", ["@@", "", "a b", "x" * 300, "https://u:pw@example.test/", "host:99999"]
)
def test_unusable_target_exits_3_with_one_line(target: str) -> None:
    out = rca("check", target)
    assert out.returncode == 3
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "pw@" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["check", "example.test", "--tests", "nosuchtest"],
        ["check", "example.test", "--resolver", "not-an-ip"],
        ["check", "example.test", "--connect", "nohost"],
        ["check", "example.test", "--ca-file", "/nonexistent.pem"],
        ["check", "example.test", "--password-file", "/nonexistent"],
        ["check", "example.test", "--timeout", "-1"],
        ["check", "example.test", "--bogus-flag"],
    ],
)
def test_bad_options_exit_3_without_traceback(args: list[str]) -> None:
    out = rca(*args)
    assert out.returncode == 3
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("flag", ["--ews-url", "--activesync-url", "--autodiscover-url"])
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_url_options_with_credentials_are_refused_without_echoing_them(
    flag: str, scheme: str
) -> None:
    # Given a URL option carrying user:password@ / When rca starts
    out = rca("check", "example.test", flag, f"{scheme}://svc:Opt-Secret-4d1a@mail.example.test/")
    # Then it exits 3, and the password is not repeated (shown as user:***@)
    assert out.returncode == 3
    assert "Opt-Secret-4d1a" not in out.stderr + out.stdout
    assert "svc:***@" in out.stderr


def test_findings_lists_codes() -> None:
    out = rca("findings", "--format", "json")
    assert out.returncode == 0
    codes = {item["code"] for item in json.loads(out.stdout)}
    assert {"dns.mx.missing", "probe.crashed", "probe.deadline_exceeded"} <= codes


def test_findings_markdown_is_committed() -> None:
    # docs/findings.md is generated from the code: `make docs` regenerates it
    out = rca("findings", "--format", "markdown")
    committed = (Path(__file__).parents[2] / "docs" / "findings.md").read_text(encoding="utf-8")
    assert out.stdout == committed


def test_full_check_writes_reports_and_never_leaks_the_password(
    example_dns: DnsServer, tmp_path: Path
) -> None:
    # Given a password file and a resolver on loopback
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    json_out, html_out = tmp_path / "r.json", tmp_path / "r.html"
    # When a whole check runs with JSON and HTML output
    out = rca(
        "check", "alice@example.test", "--tests", "dns",
        "--resolver", f"127.0.0.1:{example_dns.port}",
        "--password-file", str(secret), "--json", str(json_out), "--report", str(html_out),
        "--timeout", "20",
    )
    # Then the exit code says "warnings" (an MX is a CNAME), and both reports exist
    assert out.returncode == 1, out.stderr
    data = json.loads(json_out.read_text())
    assert data["schema_version"] == 1
    assert data["options"]["credentials"] == {"username": "alice@example.test",
                                              "secret": "password"}
    html = html_out.read_text()
    assert "Content-Security-Policy" in html
    # And the password is in no output at all
    for text in (out.stdout, out.stderr, json_out.read_text(), html):
        assert PASSWORD not in text


def test_password_from_environment_is_not_shown(example_dns: DnsServer) -> None:
    out = rca("check", "alice@example.test", "--format", "json", "--tests", "dns",
              "--resolver", f"127.0.0.1:{example_dns.port}",
              env={"RCA_PASSWORD": PASSWORD})
    assert PASSWORD not in out.stdout + out.stderr
    assert json.loads(out.stdout)["options"]["credentials"]["secret"] == "password"


def test_report_command_rerenders_saved_json(example_dns: DnsServer, tmp_path: Path) -> None:
    json_out = tmp_path / "r.json"
    rca("check", "example.test", "--tests", "dns", "--resolver", f"127.0.0.1:{example_dns.port}",
        "--json", str(json_out), "--quiet")
    html = tmp_path / "again.html"
    out = rca("report", str(json_out), "--html", str(html))
    assert out.returncode == 1
    assert "dns.mx.cname" in html.read_text()


def test_report_command_rejects_non_reports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    out = rca("report", str(bad))
    assert out.returncode == 3
    assert "not an rca JSON report" in out.stderr


def test_quiet_prints_one_verdict_line(example_dns: DnsServer) -> None:
    out = rca("check", "example.test", "--quiet", "--tests", "dns", "--resolver",
              f"127.0.0.1:{example_dns.port}")
    assert out.stdout.strip().startswith("rca PASSED WITH WARNINGS: example.test")
    assert len(out.stdout.strip().splitlines()) == 1


def test_running_a_check_never_formats_its_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from analyzer.cli import run_returning
    from analyzer.core.model import Report, Status

    # Given a coroutine that returns a report, whose repr is watched
    report = Report(tool_version="1", target="t", started=datetime(2026, 1, 1, tzinfo=UTC),
                    elapsed_ms=1, status=Status.PASS, results=())
    formatted: list[Report] = []
    monkeypatch.setattr(Report, "__repr__", lambda self: formatted.append(self) or "Report")

    async def produce() -> Report:
        return report

    # When the command line runs it to completion
    # Then it gets the report, and asyncio never formatted it (a whole report's repr is slow)
    assert run_returning(produce()) is report
    assert formatted == []
