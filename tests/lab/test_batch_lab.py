"""``rca batch`` end to end against the lab: three real domains, history, every output file.

The batch runs in this process (the lab fixture has moved it into the lab's client
namespace) with the real probes, a real report-writing process and a history folder;
then runs again, to see the second run compare itself with the first.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest
from prometheus_client.parser import text_string_to_metric_families

from analyzer.core.batchmodel import BatchResult
from analyzer.lab import LabInfo
from analyzer.operations.batch import load_batch, run_batch
from analyzer.operations.history import load_report

pytestmark = pytest.mark.lab

DOMAINS = {"healthy": 0, "cert-expiring": 1, "expired-cert": 2}


def write_batch(lab: LabInfo, folder: Path) -> Path:
    targets = "".join(
        f'[[targets]]\ntarget = "{lab.scenario(name).domain}"\nname = "{name}"\n\n'
        for name in DOMAINS
    )
    path = folder / "batch.toml"
    path.write_text(
        "[batch]\nconcurrency = 3\nhistory = \"history\"\n\n"
        "[defaults]\n"
        'tests = ["dns", "ports", "tls"]\n'
        f'resolver = ["{lab.resolver}"]\n'
        f'ca_file = "{lab.ca_file}"\n'
        "timeout = 40\n\n" + targets,
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def two_runs(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[
    BatchResult, BatchResult, Path
]:
    folder = tmp_path_factory.mktemp("batch")
    config = load_batch(write_batch(lab, folder))
    out = folder / "out"

    def once() -> BatchResult:
        return asyncio.run(run_batch(config, out=out, history=config.history, writers=1))

    return once(), once(), out


def test_each_lab_domain_gets_its_verdict_and_the_batch_the_worst(
    two_runs: tuple[BatchResult, BatchResult, Path],
) -> None:
    # Given a batch of a healthy domain, one whose certificate expires soon, one expired
    first, _, out = two_runs
    # When it has run against the lab
    codes = {s.name: s.exit_code for s in first.targets}
    # Then each got its own verdict, and the batch exits with the worst (fail)
    assert codes == DOMAINS
    assert first.exit_code == 2
    # And each has a JSON report that reads back, and an HTML one
    for name in DOMAINS:
        assert load_report(out / f"{name}.json").status.value in ("pass", "warn", "fail")
        assert (out / f"{name}.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_the_index_shows_every_domain_with_its_nearest_expiry(
    two_runs: tuple[BatchResult, BatchResult, Path],
) -> None:
    # Given the finished batch
    first, _, out = two_runs
    # When the index is read
    index = (out / "index.html").read_text(encoding="utf-8")
    # Then it links every domain's report and shows a certificate expiry for each
    for summary in first.targets:
        assert f'href="{summary.files["html"]}"' in index
        assert summary.expiry is not None
    expiring = next(s for s in first.targets if s.name == "cert-expiring")
    assert expiring.expiry is not None and 0 <= expiring.expiry.days < 30


def test_combined_files_cover_every_domain(two_runs: tuple[BatchResult, BatchResult, Path]) -> None:
    # Given the finished batch
    _, _, out = two_runs
    # When the combined metrics and JUnit files are parsed
    families = {f.name: f for f in text_string_to_metric_families(
        (out / "metrics.prom").read_text(encoding="utf-8"))}
    suites = SafeET.parse(out / "junit.xml").getroot().findall("testsuite")
    # Then both cover the three domains, with certificate expiry series
    status = {s.labels["target"] for s in families["rca_check_status"].samples}
    assert len(status) == 3
    expiry = families["rca_certificate_expiry_timestamp_seconds"].samples
    assert {s.labels["target"] for s in expiry} == status
    assert {s.get("name", "").split(":")[0] for s in suites} == set(DOMAINS)
    assert json.loads((out / "index.json").read_text(encoding="utf-8"))["exit_code"] == 2


def test_the_second_run_compares_itself_with_the_first(
    two_runs: tuple[BatchResult, BatchResult, Path],
) -> None:
    # Given two runs of the same batch with a history
    first, second, out = two_runs
    # Then the first had nothing to compare with, the second had
    assert all(s.changes is None for s in first.targets)
    changes = {s.name: s.changes for s in second.targets}
    assert all(c is not None for c in changes.values())
    # And the healthy domain did not change, while the expiring certificate counts down
    healthy, expiring = changes["healthy"], changes["cert-expiring"]
    assert healthy is not None and healthy.items == ()
    assert expiring is not None
    assert [c.kind for c in expiring.items if c.kind == "certificate"]
    assert 'id="changes"' in (out / "healthy.html").read_text(encoding="utf-8")
