"""The autoconfig probe against the lab: Thunderbird's sources in order, RFC 6186 SRV records,
the merged settings the login probes use, and contradictions between sources."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Finding, ProbeResult, Report, Status
from analyzer.core.targets import parse_target
from analyzer.lab import LabInfo
from reports.html import render
from reports.json import dumps

pytestmark = pytest.mark.lab


def run(lab: LabInfo, scenario: str, **kw: Any) -> Report:
    """A check with the autoconfig probe (and what it uses); reports render, no password."""
    info = lab.scenario(scenario)
    address, password = info.users[0]
    options = RunOptions(
        nameservers=(Nameserver(lab.resolver),),
        ca_file=Path(lab.ca_file),
        credentials=Credentials(address, password=password),
        timeout=40,
        op_timeout=4,
        connect_timeout=2,
        tests=("autoconfig",),
        **kw,
    )
    report = asyncio.run(check(parse_target(address), options))
    html, text = render(report), dumps(report)
    assert password not in html and password not in text
    json.loads(text)
    return report


def autoconfig(report: Report) -> list[ProbeResult]:
    return [r for r in report.results if r.probe == "autoconfig"]


def subjects(report: Report) -> list[str]:
    return [r.subject for r in autoconfig(report)]


def findings(report: Report, code: str) -> list[tuple[str, Finding]]:
    return [(r.subject, f) for r in autoconfig(report) for f in r.findings() if f.code == code]


def mail_settings(report: Report) -> list[dict[str, Any]]:
    for r in autoconfig(report):
        if "mail_settings" in r.facts:
            value: list[dict[str, Any]] = r.facts["mail_settings"]  # type: ignore[assignment]
            return value
    raise AssertionError("no mail_settings published")


def test_healthy_sources_in_thunderbird_order_and_merged_settings(lab: LabInfo) -> None:
    # Given the healthy domain / When autoconfig runs
    report = run(lab, "healthy")
    # Then the https sources come first, the http ones are not needed, SRV follows
    assert subjects(report) == [
        "https://autoconfig.healthy.test/mail/config-v1.1.xml?emailaddress=alice%40healthy.test",
        "https://healthy.test/.well-known/autoconfig/mail/config-v1.1.xml",
        "MX mx.healthy.test",
        "RFC 6186 SRV records of healthy.test",
        "alice@healthy.test",
    ]
    # And the settings put autoconfig's servers first, then SRV's extra ones
    merged = [
        (s["protocol"], s["port"], s["socket_type"], s["source"]) for s in mail_settings(report)
    ]
    assert merged[:3] == [
        (
            "imap",
            993,
            "SSL",
            "https://autoconfig.healthy.test/mail/config-v1.1.xml?emailaddress=alice%40healthy.test",
        ),
        (
            "pop3",
            995,
            "SSL",
            "https://autoconfig.healthy.test/mail/config-v1.1.xml?emailaddress=alice%40healthy.test",
        ),
        (
            "smtp",
            587,
            "STARTTLS",
            "https://autoconfig.healthy.test/mail/config-v1.1.xml?emailaddress=alice%40healthy.test",
        ),
    ]
    assert ("imap", 143, "STARTTLS", "srv") in merged
    assert all(s["username"] == "alice@healthy.test" for s in mail_settings(report))
    # And nothing contradicts, the ISPDB is not asked
    assert findings(report, "autoconfig.conflict") == []
    assert [f.status for _, f in findings(report, "autoconfig.ispdb.skipped")] == [Status.SKIP]
    assert all(r.status in (Status.PASS, Status.SKIP) for r in autoconfig(report))


def test_all_methods_also_fetches_http_without_warning_while_https_works(lab: LabInfo) -> None:
    # Given --all-methods on the healthy domain
    report = run(lab, "healthy", all_methods=True)
    # Then the http sources are fetched too, but are no warning (https answers)
    assert any(s.startswith("http://autoconfig.healthy.test/") for s in subjects(report))
    assert findings(report, "autoconfig.config.insecure_transport") == []


def test_only_the_well_known_location_works(lab: LabInfo) -> None:
    # Given autoconfig.<domain> answering 404
    report = run(lab, "ac-wellknown-only")
    # Then the first source is "not found" and the second gives the settings
    (first, second) = subjects(report)[:2]
    assert [f.status for _, f in findings(report, "autoconfig.source.not_found")] == [Status.PASS]
    found = findings(report, "autoconfig.config.found")
    assert [s for s, _ in found] == [second]
    assert first.startswith("https://autoconfig.")
    assert mail_settings(report)[0]["source"] == second


def test_http_only_is_a_warning(lab: LabInfo) -> None:
    # Given autoconfig served only over http / When autoconfig runs
    report = run(lab, "ac-http-only")
    # Then the http document is used, with a warning
    ((subject, finding),) = findings(report, "autoconfig.config.insecure_transport")
    assert subject.startswith("http://autoconfig.ac-http-only.test/")
    assert finding.status == Status.WARN
    assert mail_settings(report)[0]["source"].startswith("http://")


def test_srv_says_143_only_while_993_is_open(lab: LabInfo) -> None:
    # Given SRV records with _imaps "." and IMAP on 143, autoconfig announcing 993
    report = run(lab, "srv-imap-143-only")
    # Then the contradiction is reported, with which endpoints answer
    ((subject, conflict),) = findings(report, "autoconfig.conflict")
    assert subject == "alice@srv-imap-143-only.test"
    assert conflict.status == Status.WARN
    assert conflict.evidence["protocol"] == "imap"
    assert conflict.evidence["endpoints"] == {
        "mail.srv-imap-143-only.test:143": "open",
        "mail.srv-imap-143-only.test:993": "open",
    }
    # And the settings still lead with the autoconfig document's 993
    assert mail_settings(report)[0]["port"] == 993
