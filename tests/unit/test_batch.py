"""Running a batch (analyzer/operations/batch.py) with purpose-built probes: no network, fast.

A target's first label says what the probe does with it: ``pass.test``, ``warn.test``,
``fail.test``, ``crash.test`` (the probe raises). Limits are observed by probes that
count how many of them are inside at the same time.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest
from prometheus_client.parser import text_string_to_metric_families

from analyzer.core import pipeline
from analyzer.core.batchmodel import BatchResult
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status, worst_exit_code
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target
from analyzer.operations.batch import (
    BatchConfig,
    TargetSpec,
    merge_prometheus,
    run_batch,
)
from analyzer.operations.history import load_report

SECRET = "Tr0ub4dor-batch-secret"  # noqa: S105 - test data
SPECS = {
    s: FindingSpec(code=f"test.{s.value}", status=s, title=f"judged {s.value}", meaning="test")
    for s in (Status.PASS, Status.WARN, Status.FAIL)
}


async def judge(ctx: ProbeContext, target: Target) -> None:
    kind = target.domain.split(".")[0]
    with ctx.result(target.domain) as res, res.step("judge the target") as step:
        if kind == "crash":
            raise RuntimeError("a bug in the probe")
        step.add(SPECS[Status(kind)]())


JUDGE = Probe(id="judge", title="Judge", run=judge, findings=tuple(SPECS.values()))


async def judge_or_die(ctx: ProbeContext, target: Target) -> None:
    if target.domain.startswith("die."):
        os._exit(17)  # the checking process is killed: nothing of it survives
    await judge(ctx, target)


MORTAL = Probe(id="judge", title="Judge", run=judge_or_die, findings=tuple(SPECS.values()))


class Gauge:
    """How many are inside at once, and the most ever."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    async def hold(self, seconds: float = 0.05) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(seconds)
        self.now -= 1


def config(targets: Sequence[str | TargetSpec], **settings: Any) -> BatchConfig:
    specs = tuple(
        t if isinstance(t, TargetSpec)
        else TargetSpec(name=f"{t}-{i}", target=t, settings=settings)
        for i, t in enumerate(targets)
    )
    return BatchConfig(source="test", base=Path("."), targets=specs)


def run(cfg: BatchConfig, out: Path, probes: Sequence[Probe] = (JUDGE,), **kw: Any) -> BatchResult:
    kw.setdefault("writers", 0)
    return asyncio.run(run_batch(cfg, out=out, probes=probes, **kw))


# --- limits -------------------------------------------------------------------------------------


def test_at_most_concurrency_targets_run_at_once(tmp_path: Path) -> None:
    # Given 6 targets whose probe counts how many checks run at the same time
    gauge = Gauge()

    async def busy(ctx: ProbeContext, target: Target) -> None:
        await gauge.hold()

    probe = Probe(id="busy", title="Busy", run=busy)
    # When the batch runs with a concurrency of 2
    run(config([f"t{i}.test" for i in range(6)]), tmp_path, [probe], concurrency=2)
    # Then never more than 2 targets were being checked
    assert gauge.most == 2


def test_connections_to_one_server_are_bounded_across_the_whole_batch(tmp_path: Path) -> None:
    # Given 6 domains served by one provider: each check takes connection slots to its MX
    gauge = Gauge()

    async def connect(ctx: ProbeContext, target: Target) -> None:
        async def one() -> None:
            async with ctx.run.slot("MX.provider.test"):
                await gauge.hold(0.03)

        await asyncio.gather(*(one() for _ in range(3)))

    probe = Probe(id="connect", title="Connect", run=connect)
    # When all 6 run at once, with 2 connections per server allowed for the batch
    run(config([f"d{i}.test" for i in range(6)]), tmp_path, [probe], concurrency=6,
        per_host=2)
    # Then at most 2 were connecting to that server at any time (each run alone allows 4)
    assert gauge.most == 2


def test_different_servers_do_not_wait_for_each_other(tmp_path: Path) -> None:
    # Given 4 domains, each with its own MX, and 1 connection per server allowed
    gauge = Gauge()

    async def connect(ctx: ProbeContext, target: Target) -> None:
        async with ctx.run.slot(f"mx.{target.domain}"):
            await gauge.hold(0.1)

    probe = Probe(id="connect", title="Connect", run=connect)
    # When they run at once
    run(config([f"d{i}.test" for i in range(4)]), tmp_path, [probe], concurrency=4,
        per_host=1)
    # Then all 4 connected at the same time
    assert gauge.most == 4


# --- broken targets ------------------------------------------------------------------------------


def test_a_crashing_probe_gives_an_error_report_and_the_batch_goes_on(tmp_path: Path) -> None:
    # Given a target whose probe raises, between two healthy ones
    cfg = config(["pass.test", "crash.test", "pass.test"])
    # When the batch runs
    result = run(cfg, tmp_path)
    # Then every target has a report; the crashed one says rca could not judge it
    codes = [s.exit_code for s in result.targets]
    assert codes == [0, 3, 0]
    crashed = load_report(tmp_path / "crash.test-1.json")
    assert [f.code for _, f in crashed.findings()] == ["probe.crashed"]


def test_a_crash_outside_the_probes_gives_an_error_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pipeline that fails for one target (a bug in rca itself)
    real = pipeline.run_probes

    async def flaky(run: Any, target: Target, probes: Any, **kw: Any) -> Any:
        if target.domain == "boom.test":
            raise KeyError("internal state")
        return await real(run, target, probes, **kw)

    monkeypatch.setattr(pipeline, "run_probes", flaky)
    # When the batch runs it with a healthy target
    result = run(config(["boom.test", "pass.test"]), tmp_path)
    # Then the broken one has an error report saying so, and the other passed
    assert [s.exit_code for s in result.targets] == [3, 0]
    report = load_report(tmp_path / "boom.test-0.json")
    (finding,) = [f for _, f in report.findings()]
    assert finding.code == "batch.check_crashed" and "KeyError" in finding.detail


def test_a_bad_target_name_gives_an_error_report(tmp_path: Path) -> None:
    # Given a target that is no address, domain or host
    cfg = config([TargetSpec(name="bad", target="not a domain!"), "pass.test"])
    # When the batch runs
    result = run(cfg, tmp_path)
    # Then it has an error report saying what is wrong, and the other target was checked
    assert [s.exit_code for s in result.targets] == [3, 0]
    report = load_report(tmp_path / "bad.json")
    (finding,) = [f for _, f in report.findings()]
    assert finding.code == "batch.target_unusable" and "white space" in finding.detail


def test_an_unknown_test_name_gives_an_error_report(tmp_path: Path) -> None:
    # Given a target asking for a check that does not exist
    cfg = config([TargetSpec(name="odd", target="pass.test", settings={"tests": ("nope",)})])
    # When the batch runs
    result = run(cfg, tmp_path)
    # Then its report says the test is unknown
    (summary,) = result.targets
    assert summary.exit_code == 3
    report = load_report(tmp_path / "odd.json")
    assert "unknown test" in next(iter(report.findings()))[1].detail


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (["pass.test"], 0),
        (["pass.test", "warn.test"], 1),
        (["pass.test", "warn.test", "crash.test"], 3),
        (["fail.test", "warn.test", "crash.test", "pass.test"], 2),
    ],
)
def test_exit_code_is_the_worst_target(tmp_path: Path, targets: list[str], expected: int) -> None:
    # Given targets with these outcomes
    # When the batch runs
    result = run(config(targets), tmp_path)
    # Then its exit code is the worst, in monitoring-plugins order (2 > 3 > 1 > 0)
    assert result.exit_code == expected


@pytest.mark.parametrize(
    ("codes", "worst"), [([], 0), ([0, 1], 1), ([1, 3], 3), ([3, 2, 1], 2), ([0, 0], 0)]
)
def test_worst_exit_code_order(codes: list[int], worst: int) -> None:
    # Given exit codes of targets, When the worst is taken, Then fail > unknown > warn > ok
    assert worst_exit_code(codes) == worst


# --- outputs -----------------------------------------------------------------------------------


def test_every_target_gets_json_and_html_and_the_batch_an_index(tmp_path: Path) -> None:
    # Given three targets
    cfg = config(["pass.test", "fail.test", "warn.test"])
    # When the batch runs
    result = run(cfg, tmp_path)
    # Then each has its JSON and HTML report, and the index links all of them
    for s in result.targets:
        assert load_report(tmp_path / s.files["json"]).target == s.target
        assert (tmp_path / s.files["html"]).read_text(encoding="utf-8").startswith("<!DOCTYPE")
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    for s in result.targets:
        assert f'href="{s.files["html"]}"' in index
    # And the failing target is listed first
    assert index.index("fail.test") < index.index("warn.test") < index.index("pass.test")


def test_combined_junit_holds_every_targets_suites(tmp_path: Path) -> None:
    # Given a failing and a passing target
    run(config(["fail.test", "pass.test"]), tmp_path)
    # When the combined JUnit file is read
    root = SafeET.parse(tmp_path / "junit.xml").getroot()
    # Then it has one suite per target's probe, named after the target, with the totals
    assert [s.get("name") for s in root.findall("testsuite")] == [
        "fail.test-0: judge", "pass.test-1: judge"
    ]
    assert (root.get("tests"), root.get("failures")) == ("2", "1")


def test_combined_metrics_parse_with_one_family_each(tmp_path: Path) -> None:
    # Given two targets
    run(config(["fail.test", "pass.test"]), tmp_path)
    # When the combined Prometheus file is parsed by the client library's parser
    text = (tmp_path / "metrics.prom").read_text(encoding="utf-8")
    families = list(text_string_to_metric_families(text))
    # Then each family appears once, holding both targets' series
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    status = next(f for f in families if f.name == "rca_check_status")
    assert {s.labels["target"]: s.value for s in status.samples} == {
        "fail.test": 2.0, "pass.test": 0.0
    }
    assert "rca_batch_duration_seconds" in names


def test_merging_exposition_texts_keeps_help_and_type_once() -> None:
    # Given two texts with the same family
    one = "# HELP m A metric.\n# TYPE m gauge\nm{t=\"a\"} 1\n"
    two = "# HELP m A metric.\n# TYPE m gauge\nm{t=\"b\"} 2\n"
    # When they are merged
    merged = merge_prometheus([one, two])
    # Then HELP and TYPE come once, before both samples
    assert merged == '# HELP m A metric.\n# TYPE m gauge\nm{t="a"} 1\nm{t="b"} 2\n'


def test_the_summary_lists_every_target(tmp_path: Path) -> None:
    # Given a batch of two
    run(config(["warn.test", "pass.test"]), tmp_path)
    # When index.json is read
    summary = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    # Then it has both targets with their exit codes, and the batch's
    assert [(t["name"], t["exit_code"]) for t in summary["targets"]] == [
        ("warn.test-0", 1), ("pass.test-1", 0)
    ]
    assert summary["exit_code"] == 1


def test_progress_is_reported_once_per_target(tmp_path: Path) -> None:
    # Given a progress callback
    seen: list[tuple[str, int, int]] = []
    # When a batch of three runs
    run(config(["pass.test"] * 3), tmp_path, progress=lambda s, done, total: seen.append(
        (s.name, done, total)))
    # Then it was told about each target as it finished
    assert sorted(d for _, d, _ in seen) == [1, 2, 3]
    assert {t for _, _, t in seen} == {3}


def test_reports_are_written_by_a_helper_process(tmp_path: Path) -> None:
    # Given the default: one helper process writes the reports
    # When a small batch runs with it
    result = run(config(["pass.test", "fail.test"]), tmp_path, writers=1)
    # Then the reports were written as with none
    assert [s.exit_code for s in result.targets] == [0, 2]
    assert load_report(tmp_path / "fail.test-1.json").status == Status.FAIL


def test_several_checking_processes_share_out_the_targets(tmp_path: Path) -> None:
    # Given five targets and two checking processes
    cfg = config(["pass.test", "fail.test", "warn.test", "pass.test", "crash.test"])
    # When the batch runs
    result = run(cfg, tmp_path, processes=2)
    # Then every target has its summary in the file's order, and its report on disk
    assert [s.exit_code for s in result.targets] == [0, 2, 1, 0, 3]
    assert all((tmp_path / s.files["json"]).is_file() for s in result.targets)


def test_targets_of_a_process_that_died_still_get_a_report(tmp_path: Path) -> None:
    # Given two checking processes, one of which is killed by its first target
    cfg = config(["pass.test", "die.test", "pass.test", "pass.test"])
    # When the batch runs, one target at a time per process
    result = run(cfg, tmp_path, [MORTAL], processes=2, concurrency=1)
    # Then the other process's targets passed, and the dead one's have error reports
    assert [s.exit_code for s in result.targets] == [0, 3, 0, 3]
    report = load_report(tmp_path / "die.test-1.json")
    assert [f.code for _, f in report.findings()] == ["batch.check_crashed"]


def test_the_password_never_reaches_a_file(tmp_path: Path) -> None:
    # Given a target whose password comes from a variable, and a probe that sends it
    async def login(ctx: ProbeContext, target: Target) -> None:
        with ctx.result(target.domain) as res, res.step("log in") as step:
            step.send(f"LOGIN alice {ctx.options.credentials.password()}")
            step.add(SPECS[Status.FAIL](detail=f"rejected {ctx.options.credentials.password()}"))

    probe = Probe(id="login", title="Login", run=login, findings=tuple(SPECS.values()))
    cfg = config([TargetSpec(name="a", target="alice@a.test",
                             settings={"password_env": "RCA_TEST_PW"})])
    # When the batch runs with history
    run(cfg, tmp_path / "out", [probe], history=tmp_path / "history",
        env={"RCA_TEST_PW": SECRET})
    # Then no file it wrote holds the password
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8"), path


# --- history -----------------------------------------------------------------------------------


def test_second_run_reports_what_changed(tmp_path: Path) -> None:
    # Given a target that passed at the first run and fails at the second
    verdicts = iter([Status.PASS, Status.FAIL])

    async def flip(ctx: ProbeContext, target: Target) -> None:
        with ctx.result(target.domain) as res, res.step("judge") as step:
            step.add(SPECS[next(verdicts)]())

    probe = Probe(id="flip", title="Flip", run=flip, findings=tuple(SPECS.values()))
    cfg = config([TargetSpec(name="site", target="site.test")])
    first = run(cfg, tmp_path / "out", [probe], history=tmp_path / "history")
    # When the batch runs again with the same history
    second = run(cfg, tmp_path / "out", [probe], history=tmp_path / "history")
    # Then the first had nothing to compare with; the second lists the new failure
    assert first.targets[0].changes is None
    changes = second.targets[0].changes
    assert changes is not None and changes.worse >= 1
    assert [c.code for c in changes.items if c.kind == "new"] == ["test.fail"]
    # And the HTML report and the index show it
    assert 'id="changes"' in (tmp_path / "out" / "site.html").read_text(encoding="utf-8")
    assert "worse" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert (tmp_path / "out" / "site.changes.json").is_file()


def test_history_keeps_only_the_configured_number_of_runs(tmp_path: Path) -> None:
    # Given a history that keeps 2 runs per target
    cfg = config([TargetSpec(name="site", target="pass.test")])
    # When the batch runs 4 times
    for _ in range(4):
        run(cfg, tmp_path / "out", history=tmp_path / "history", keep=2)
    # Then 2 runs of the target are kept
    assert len(list((tmp_path / "history" / "site").glob("*.json"))) == 2


# --- endpoints shared by several targets ---------------------------------------------------------


class Provider:
    """A probe whose targets all use one endpoint, checked through ``ctx.shared``."""

    def __init__(self, fail_first: bool = False) -> None:
        self.checks = 0
        self.fail_first = fail_first

    async def run(self, ctx: ProbeContext, target: Target) -> None:
        async def check(port: int) -> str:
            self.checks += 1
            number = self.checks
            with ctx.result(f"mx.provider.test:{port}") as res, res.step("connect") as step:
                await asyncio.sleep(0.05)
                if self.fail_first and number == 1:
                    raise RuntimeError("the first check broke")
                step.add(SPECS[Status.PASS](detail=f"check {number}"))
            return f"value {number}"

        values = await asyncio.gather(
            *(ctx.shared(("mx.provider.test", p), lambda p=p: check(p)) for p in (25, 587))
        )
        with ctx.result(target.domain) as res, res.step("values") as step:
            step.note(", ".join(values))

    def probe(self) -> Probe:
        return Probe(id="provider", title="Provider", run=self.run, findings=(SPECS[Status.PASS],))


def test_an_endpoint_many_targets_use_is_checked_once(tmp_path: Path) -> None:
    # Given 5 domains of one provider, whose probe checks its MX on ports 25 and 587
    provider = Provider()
    # When they are checked at once
    run(config([f"d{i}.test" for i in range(5)]), tmp_path, [provider.probe()], concurrency=5)
    # Then each endpoint was checked once, not once per domain
    assert provider.checks == 2
    reports = [load_report(tmp_path / f"d{i}.test-{i}.json") for i in range(5)]
    for report in reports:
        results = {r.subject: r for r in report.results}
        # And every report holds both endpoints' results, each with its own steps only
        for port in (25, 587):
            result = results[f"mx.provider.test:{port}"]
            assert [s.title for s in result.steps] == ["connect"]
            assert result.status == Status.PASS
        # And the values the checks returned reached every target's probe
        notes = [line.text for line in results[report.target].steps[0].transcript]
        assert sorted(notes[0].split(", ")) == ["value 1", "value 2"]
    # And the copies say they are copies, with when the check was made
    shared = [
        r.facts["shared"] for rep in reports for r in rep.results if "shared" in r.facts
    ]
    assert len(shared) == 8
    assert all("checked once in this batch" in str(text) for text in shared)


def test_sharing_can_be_turned_off(tmp_path: Path) -> None:
    # Given the same 5 domains, with sharing off
    provider = Provider()
    run(config([f"d{i}.test" for i in range(5)]), tmp_path, [provider.probe()], concurrency=5,
        share=False)
    # Then every domain checked both endpoints itself
    assert provider.checks == 10


def test_when_the_first_check_breaks_the_others_check_for_themselves(tmp_path: Path) -> None:
    # Given a provider whose very first check raises
    provider = Provider(fail_first=True)
    # When 4 domains are checked at once
    result = run(config([f"d{i}.test" for i in range(4)]), tmp_path, [provider.probe()],
                 concurrency=4)
    # Then the domain whose check broke says so, and no other domain got a copy of it
    codes = sorted(s.exit_code for s in result.targets)
    assert codes == [0, 0, 0, 3]
    # And the broken check was made again (once) for the others
    assert provider.checks == 3
    for i in range(4):
        report = load_report(tmp_path / f"d{i}.test-{i}.json")
        crashed = [f for _, f in report.findings() if f.code == "probe.crashed"]
        assert len(crashed) == (1 if report.status == Status.ERROR else 0)


def test_outside_a_batch_nothing_is_shared() -> None:
    # Given the provider probe run by two plain checks
    from analyzer.api import check
    from analyzer.core.context import RunOptions
    from analyzer.core.targets import parse_target

    provider = Provider()

    async def twice() -> None:
        for name in ("a.test", "b.test"):
            await check(parse_target(name), RunOptions(), probes=[provider.probe()])

    asyncio.run(twice())
    # Then each check made its own
    assert provider.checks == 4
