"""Every lab scenario, checked end to end: the findings it declares must be produced.

Scenarios are data (analyzer/lab/scenarios.py): each lists the finding codes (and
statuses) a full check of its domain must report. This test runs the real pipeline with
every default probe against the real servers and asserts them, then renders the HTML and
JSON reports of each.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from analyzer.api import check, exit_code
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import ProbeResult, Report, Status, report_from_json, to_json
from analyzer.core.registry import all_finding_specs, load_probes
from analyzer.core.targets import parse_target
from analyzer.lab import LabInfo
from analyzer.lab.scenarios import SCENARIOS
from reports.html import render
from reports.json import dumps


def lab_options(lab: LabInfo, scenario: str, **kw: object) -> RunOptions:
    info = lab.scenario(scenario)
    user = info.users[0]
    return RunOptions(
        nameservers=(Nameserver(lab.resolver),),
        ca_file=Path(lab.ca_file),
        trust_anchor_file=Path(lab.trust_anchor_file) if lab.trust_anchor_file else None,
        credentials=Credentials(user[0], password=user[1]),
        timeout=40,
        op_timeout=8,
        connect_timeout=2,
        **kw,  # type: ignore[arg-type]
    )


_REPORTS: dict[str, Report] = {}
#: Scenarios checked with every probe, where nothing may fail or warn beyond what they declare.
FULL = ("healthy", "sogo")


def probes_for(lab: LabInfo, scenario: str) -> tuple[str, ...]:
    """The probes that can produce the scenario's expected codes (the pipeline adds what
    they need); every probe for the ``FULL`` ones and for scenarios that expect nothing."""
    codes = {e.code for e in lab.scenario(scenario).expect}
    if scenario in FULL or not codes:
        return ()
    return tuple(p.id for p in load_probes() if codes & {f.code for f in p.findings})


def full_check(lab: LabInfo, scenario: str) -> Report:
    """A full check of every scenario, run once per session and concurrently (the checks
    are independent, like a batch), so each test reads its scenario's report."""
    if not _REPORTS:

        # A few at a time: on 2 cores, many concurrent checks starve one event loop and
        # turn the lab's quick answers into timeouts (a batch bounds its concurrency too).
        gate = asyncio.Semaphore(3)

        async def one(name: str) -> Report:
            async with gate:
                target = parse_target(lab.scenario(name).users[0][0])
                return await check(target, lab_options(lab, name, tests=probes_for(lab, name)))

        async def all_checks() -> list[Report]:
            return await asyncio.gather(*(one(s.name) for s in SCENARIOS))

        for s, report in zip(SCENARIOS, asyncio.run(all_checks()), strict=True):
            _REPORTS[s.name] = report
    return _REPORTS[scenario]


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_scenario_produces_its_expected_findings(lab: LabInfo, scenario: str) -> None:
    # Given the scenario's declared expectations
    expected = lab.scenario(scenario).expect
    # When a full check of its domain runs against the lab
    report = full_check(lab, scenario)
    found = {(f.code, f.status.value, r.subject) for r, f in report.findings()}
    # Then every expected finding is there (with the subject, when one is named)
    for exp in expected:
        matches = [f for f in found if f[0] == exp.code and f[1] == exp.status
                   and (exp.subject is None or exp.subject == f[2])]
        assert matches, (
            f"{scenario}: expected {exp.code} ({exp.status}) "
            f"{'on ' + exp.subject if exp.subject else ''}; got "
            + ", ".join(sorted(f"{c}={s}" for c, s, _ in found if s != "pass"))
        )


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_scenario_reports_render_and_round_trip(lab: LabInfo, scenario: str) -> None:
    report = full_check(lab, scenario)
    html = render(report)
    assert report.target in html
    data = json.loads(dumps(report))
    assert report_from_json(data) == report
    assert to_json(report) == data
    # No probe may crash on a scenario: "could not judge" is a bug, not a finding.
    crashed = [(r.probe, f.detail) for r, f in report.findings() if f.code == "probe.crashed"]
    assert not crashed
    # Every code a report carries is in the catalogue (rca findings, docs/findings.md)
    catalogued = {spec.code for spec in all_finding_specs()}
    assert not {f.code for _, f in report.findings()} - catalogued


def test_healthy_scenario_passes(lab: LabInfo) -> None:
    report = full_check(lab, "healthy")
    problems = sorted(f"{r.probe}:{r.subject}:{f.code}={f.status.value}: {f.detail[:120]}"
                      for r, f in report.findings()
                      if f.status not in (Status.PASS, Status.SKIP))
    assert not problems, "\n".join(problems)
    assert exit_code(report) == 0


def test_sogo_scenario_fails_only_where_sogo_falls_short(lab: LabInfo) -> None:
    # Given a full check of the domain whose ActiveSync is a real SOGo
    report = full_check(lab, "sogo")
    declared = {(e.code, e.status) for e in lab.scenario("sogo").expect}
    # Then every failure or warning is one the scenario declares (SOGo has no Autodiscover);
    # the Exchange services it lacks are "not offered", never failed
    problems = sorted(f"{r.probe}:{r.subject}:{f.code}={f.status.value}: {f.detail[:120]}"
                      for r, f in report.findings()
                      if f.status not in (Status.PASS, Status.SKIP)
                      and (f.code, f.status.value) not in declared)  # fmt: skip
    assert not problems, "\n".join(problems)


def test_dane_judges_the_mx_chain_before_its_tls_version_checks_end(lab: LabInfo) -> None:
    # Given a check of the domain whose MX has a TLSA record that matches nothing
    report = full_check(lab, "dane-mismatch")
    (dane,) = [r for r in report.results if r.probe == "dane"]
    (tls,) = [r for r in report.results if r.probe == "tls" and r.subject == dane.subject]
    assert dane.status == Status.FAIL
    # Then DANE compared the chain as soon as the MX's handshakes had captured it: it ended
    # while the TLS check of that very endpoint still checked the versions it accepts
    assert _end(dane) < _end(tls)


def _end(result: ProbeResult) -> datetime:
    return result.started + timedelta(milliseconds=result.elapsed_ms)


@pytest.mark.parametrize("scenario", ["dns-servfail", "dns-timeout"])
def test_a_failed_lookup_is_never_reported_as_a_missing_record(
    lab: LabInfo, scenario: str
) -> None:
    # Given an MX host whose A/AAAA look-ups fail (SERVFAIL) or time out
    report = full_check(lab, scenario)
    found = {f.code: f.status for _, f in report.findings()}
    # Then the failure is reported as such, and nothing claims the records are missing
    assert found.get("dns.servfail") == Status.FAIL or found.get("dns.timeout") == (
        Status.INCONCLUSIVE
    )
    assert "dns.mx.no_address" not in found
    assert "dns.address.no_ipv6" not in found
