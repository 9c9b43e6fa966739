"""The pipeline with purpose-built probes: concurrency, deadlines, crashes, skips."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from analyzer.api import check, exit_code
from analyzer.core.context import Credentials, RunOptions
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Report, Status
from analyzer.core.pipeline import plan
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target, parse_target

TARGET = parse_target("alice@example.test")
OK = FindingSpec(code="test.ok", status=Status.PASS, title="ok", meaning="ok")


def probe(pid: str, run: Any, **kw: Any) -> Probe:
    return Probe(id=pid, title=f"probe {pid}", run=run, findings=(OK,), **kw)


def results_of(report: Report, pid: str) -> list[Any]:
    return [r for r in report.results if r.probe == pid]


def codes(report: Report, pid: str) -> set[str]:
    return {f.code for r in results_of(report, pid) for f in r.findings()}


async def test_independent_probes_overlap() -> None:
    # Given two probes that can only finish if they run at the same time
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def run_a(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("a") as res, res.step("wait for b") as step:
            a_started.set()
            await b_started.wait()
            step.add(OK())

    async def run_b(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("b") as res, res.step("wait for a") as step:
            b_started.set()
            await a_started.wait()
            step.add(OK())

    # When the pipeline runs them with a short deadline
    report = await check(TARGET, RunOptions(timeout=5, probe_timeout=2),
                         probes=[probe("a", run_a), probe("b", run_b)])
    # Then both pass: neither waited for the other to end
    assert [r.status for r in report.results] == [Status.PASS, Status.PASS]


async def test_hanging_probe_ends_at_its_deadline_with_partial_steps() -> None:
    # Given a probe that finishes one step and then hangs forever in a second
    async def hang(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("slow.example.test:25") as res:
            with res.step("connect") as step:
                step.add(OK())
            with res.step("read greeting") as step:
                step.recv("220-partial")
                await asyncio.Future()

    async def quick(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("q") as res, res.step("fine") as step:
            step.add(OK())

    # When it runs with a 0.3 s probe deadline inside a 5 s run
    t0 = time.monotonic()
    report = await check(TARGET, RunOptions(timeout=5, probe_timeout=0.3),
                         probes=[probe("hang", hang), probe("quick", quick)])
    # Then the run completes well inside the global deadline
    assert time.monotonic() - t0 < 5
    # And the hanging probe fails at its deadline, keeping what it saw so far
    (result,) = results_of(report, "hang")
    assert result.status == Status.FAIL
    first, second = result.steps
    assert first.status == Status.PASS
    assert second.status == Status.FAIL
    assert second.findings[0].code == "probe.deadline_exceeded"
    assert second.transcript[0].text == "220-partial"
    # And the other probe is unaffected
    assert results_of(report, "quick")[0].status == Status.PASS


async def test_global_deadline_bounds_the_run() -> None:
    # Given a probe deadline longer than the whole run
    async def hang(ctx: ProbeContext, target: Target) -> None:
        await asyncio.Future()

    # When the run's deadline is 0.3 s
    t0 = time.monotonic()
    report = await check(TARGET, RunOptions(timeout=0.3, probe_timeout=30),
                         probes=[probe("hang", hang)])
    # Then it returns near that deadline with a deadline finding
    assert time.monotonic() - t0 < 2
    assert codes(report, "hang") == {"probe.deadline_exceeded"}


async def test_raising_probe_is_an_error_result_and_the_rest_runs() -> None:
    # Given a probe with a bug, and a healthy one
    async def boom(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("x") as res, res.step("parse") as step:
            step.note("about to fail")
            raise ZeroDivisionError("division by zero")

    async def fine(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("y") as res, res.step("ok") as step:
            step.add(OK())

    # When both run
    report = await check(TARGET, RunOptions(timeout=5),
                         probes=[probe("boom", boom), probe("fine", fine)])
    # Then the bug becomes one `error` finding in the step where it happened
    (result,) = results_of(report, "boom")
    assert result.status == Status.ERROR
    assert [f.code for f in result.findings()] == ["probe.crashed"]
    assert "ZeroDivisionError" in next(iter(result.findings())).detail
    # And the healthy probe passed; the exit code says "could not judge"
    assert results_of(report, "fine")[0].status == Status.PASS
    assert exit_code(report) == 3


async def test_raise_outside_any_result_still_reports() -> None:
    async def boom(ctx: ProbeContext, target: Target) -> None:
        raise RuntimeError("before any step")

    report = await check(TARGET, RunOptions(timeout=5), probes=[probe("boom", boom)])
    assert codes(report, "boom") == {"probe.crashed"}


async def test_probe_needing_a_missing_fact_is_skipped_with_the_reason() -> None:
    # Given a provider that publishes nothing and a consumer that needs its fact
    async def provider(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("p") as res, res.step("found nothing") as step:
            step.add(OK(status=Status.FAIL, title="nothing found"))

    async def consumer(ctx: ProbeContext, target: Target) -> None:  # pragma: no cover
        raise AssertionError("must not run")

    probes = [probe("p", provider, provides=("x",)), probe("c", consumer, needs=("x",))]
    # When the run happens
    report = await check(TARGET, RunOptions(timeout=5), probes=probes)
    # Then the consumer is skipped and says why
    (result,) = results_of(report, "c")
    assert result.status == Status.SKIP
    (finding,) = result.findings()
    assert finding.code == "probe.skipped"
    assert "'x'" in finding.detail and "p ended fail" in finding.detail


async def test_facts_flow_to_dependent_probes() -> None:
    seen: list[int] = []

    async def provider(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("p") as res:
            res.publish("x", 42)

    async def consumer(ctx: ProbeContext, target: Target) -> None:
        seen.append(ctx.fact("x"))
        with ctx.result("c") as res, res.step("used x") as step:
            step.add(OK())

    probes = [probe("c", consumer, needs=("x",)), probe("p", provider, provides=("x",))]
    report = await check(TARGET, RunOptions(timeout=5), probes=probes)
    assert seen == [42]
    assert results_of(report, "p")[0].facts == {"x": 42}


async def test_a_fact_releases_its_consumers_as_soon_as_it_is_published() -> None:
    # Given a provider that publishes its fact, then goes on until the consumer has started
    consumer_started = asyncio.Event()

    async def provider(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("p") as res:
            res.publish("x", 42)
            with res.step("more checks after publishing") as step:
                await consumer_started.wait()
                step.add(OK())

    async def consumer(ctx: ProbeContext, target: Target) -> None:
        consumer_started.set()
        with ctx.result("c") as res, res.step(f"used x={ctx.fact('x')}") as step:
            step.add(OK())

    probes = [probe("p", provider, provides=("x",)), probe("c", consumer, needs=("x",))]
    # When the run happens under a short probe deadline
    report = await check(TARGET, RunOptions(timeout=5, probe_timeout=2), probes=probes)
    # Then the consumer ran while the provider was still at work, and both passed
    assert [r.status for r in report.results] == [Status.PASS, Status.PASS]
    assert results_of(report, "c")[0].steps[0].title == "used x=42"


async def test_a_fact_of_two_providers_waits_for_both() -> None:
    # Given two providers of one fact, the second slower to publish
    second_may_publish = asyncio.Event()
    order: list[str] = []

    async def fast(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("fast") as res:
            res.publish("x", "fast")
            order.append("fast published")
            second_may_publish.set()

    async def slow(ctx: ProbeContext, target: Target) -> None:
        await second_may_publish.wait()
        await asyncio.sleep(0.05)
        with ctx.result("slow") as res:
            order.append("slow published")
            res.publish("x", "slow")

    async def consumer(ctx: ProbeContext, target: Target) -> None:
        order.append(f"consumer saw {ctx.fact('x')}")
        with ctx.result("c") as res, res.step("used x") as step:
            step.add(OK())

    probes = [probe("fast", fast, provides=("x",)), probe("slow", slow, provides=("x",)),
              probe("c", consumer, uses=("x",))]
    # When the run happens
    await check(TARGET, RunOptions(timeout=5), probes=probes)
    # Then the consumer started only when both had published
    assert order == ["fast published", "slow published", "consumer saw slow"]


async def test_a_probe_starts_before_the_fact_it_awaits_and_reads_it_once_settled() -> None:
    # Given a provider that publishes only once the consumer has started, and a consumer
    # that awaits the fact (reads it late) rather than using it from the start
    consumer_started = asyncio.Event()
    order: list[str] = []

    async def provider(ctx: ProbeContext, target: Target) -> None:
        await consumer_started.wait()
        with ctx.result("p") as res, res.step("found x") as step:
            order.append("published")
            res.publish("x", 42)
            step.add(OK())

    async def consumer(ctx: ProbeContext, target: Target) -> None:
        consumer_started.set()
        order.append("consumer started")
        x = await ctx.settled("x")
        order.append(f"consumer read {x}")
        with ctx.result("c") as res, res.step("used x") as step:
            step.add(OK())

    probes = [probe("p", provider, provides=("x",)), probe("c", consumer, awaits=("x",))]
    # When the run happens under a short probe deadline
    report = await check(TARGET, RunOptions(timeout=5, probe_timeout=2), probes=probes)
    # Then the consumer started first, and read the fact once it was published
    assert order == ["consumer started", "published", "consumer read 42"]
    assert [r.status for r in report.results] == [Status.PASS, Status.PASS]


async def test_an_awaited_fact_nobody_publishes_settles_to_the_default() -> None:
    # Given a provider that ends without publishing, and a probe awaiting its fact
    async def provider(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("p") as res, res.step("nothing found") as step:
            step.add(OK())

    seen: list[object] = []

    async def consumer(ctx: ProbeContext, target: Target) -> None:
        seen.append(await ctx.settled("x", "none"))
        with ctx.result("c") as res, res.step("went on without x") as step:
            step.add(OK())

    probes = [probe("p", provider, provides=("x",)), probe("c", consumer, awaits=("x",))]
    # When the run happens
    await check(TARGET, RunOptions(timeout=5), probes=probes)
    # Then the consumer got the default once the provider had ended
    assert seen == ["none"]


async def test_a_fact_not_declared_as_awaited_cannot_be_awaited() -> None:
    async def consumer(ctx: ProbeContext, target: Target) -> None:
        await ctx.settled("x")

    report = await check(TARGET, RunOptions(timeout=5), probes=[probe("c", consumer)])
    assert codes(report, "c") == {"probe.crashed"}


def test_plan_adds_the_providers_of_awaited_facts_and_refuses_cycles_through_them() -> None:
    async def noop(ctx: ProbeContext, target: Target) -> None:
        return None

    probes = [
        probe("autodiscover", noop, provides=("settings",)),
        probe("autoconfig", noop, awaits=("settings",), default=False),
    ]
    assert [p.id for p in plan(probes, ["autoconfig"])] == ["autodiscover", "autoconfig"]
    looped = [probe("a", noop, provides=("x",), awaits=("y",)),
              probe("b", noop, provides=("y",), uses=("x",))]  # fmt: skip
    with pytest.raises(ValueError, match="wait on each other"):
        plan(looped)


def test_plan_adds_the_providers_of_needed_facts() -> None:
    async def noop(ctx: ProbeContext, target: Target) -> None:
        return None

    probes = [
        probe("dns", noop, provides=("mx",)),
        probe("tls", noop, needs=("mx",)),
        probe("extra", noop, default=False),
    ]
    assert [p.id for p in plan(probes, ["tls"])] == ["dns", "tls"]
    assert [p.id for p in plan(probes)] == ["dns", "tls"]
    assert [p.id for p in plan(probes, ["extra"])] == ["extra"]


async def test_cancelled_run_leaves_no_task_or_thread_behind() -> None:
    # Given a probe that blocks a worker thread (bounded, like a socket timeout) and hangs
    release = threading.Event()

    def blocking() -> None:
        release.wait(timeout=2)

    async def uses_thread(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("t") as res, res.step("blocking call"):
            await ctx.run.to_thread(blocking)

    async def hang(ctx: ProbeContext, target: Target) -> None:
        await asyncio.Future()

    before = set(asyncio.all_tasks())
    # When the probes' deadlines expire
    loop = asyncio.get_running_loop()
    loop.call_later(0.4, release.set)
    report = await check(TARGET, RunOptions(timeout=3, probe_timeout=0.2),
                         probes=[probe("t", uses_thread), probe("h", hang)])
    # Then both ended at their deadlines
    assert codes(report, "t") == {"probe.deadline_exceeded"}
    # And no task of the run is left, and the worker threads were joined
    assert set(asyncio.all_tasks()) <= before | {asyncio.current_task()}
    assert not [t for t in threading.enumerate() if t.name.startswith("rca-io")]


async def test_secrets_never_reach_the_report() -> None:
    # Given a probe that (wrongly) writes the password in a transcript and a finding
    password = "s3cret-Pa55word!"  # noqa: S105 - test data
    creds = Credentials("alice@example.test", password=password)

    async def leaky(ctx: ProbeContext, target: Target) -> None:
        import base64

        with ctx.result("x") as res, res.step(f"login with {password}") as step:
            step.send(f"a1 LOGIN alice {password}")
            token = base64.b64encode(f"\0alice@example.test\0{password}".encode()).decode()
            step.send(f"AUTH PLAIN {token}")
            step.add(OK(detail=f"used {password}", evidence={"p": [password]}))

    report = await check(TARGET, RunOptions(timeout=5, credentials=creds),
                         probes=[probe("leaky", leaky)])
    from reports.html import render
    from reports.json import dumps

    # Then neither the JSON nor the HTML holds it in any form
    for text in (dumps(report), render(report), repr(creds), str(report)):
        assert password not in text
        assert "czNjcmV0" not in text  # base64 of the start of the password



async def test_secrets_in_an_exception_never_reach_the_report() -> None:
    # Given probes that raise with the password in the message (a server echoed it), one
    # inside a result but outside any step, one before opening any result
    password = "s3cret-Pa55word!"  # noqa: S105 - test data
    creds = Credentials("alice@example.test", password=password)

    async def in_result(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("x"):
            raise RuntimeError(f"server said: bad password {password}")

    async def at_once(ctx: ProbeContext, target: Target) -> None:
        raise RuntimeError(f"server said: bad password {password}")

    report = await check(TARGET, RunOptions(timeout=5, credentials=creds),
                         probes=[probe("a", in_result), probe("b", at_once)])
    from reports.json import dumps

    # Then both crashes are reported, without the password
    assert codes(report, "a") == {"probe.crashed"} and codes(report, "b") == {"probe.crashed"}
    assert password not in dumps(report)


async def test_a_step_is_revised_after_it_ended_and_results_are_reordered() -> None:
    # Given a probe that records two results, revises the title of a step that has ended
    # and adds a note at a mark of its transcript, drops one result and reorders the rest
    password = "s3cret-Pa55word!"  # noqa: S105 - test data
    creds = Credentials("alice@example.test", password=password)

    async def revising(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("first") as first, ctx.result("dropped") as dropped:
            with first.step("provisional") as step:
                step.send("hello")
                mark = step.mark()
                step.recv("welcome")
            with first.step("next") as later:
                later.add(OK())
            step.revise(title="final title", note=(mark, f"settled later {password}"))
            with dropped.step("gone"):
                pass
        with ctx.result("second") as second, second.step("second step") as other:
            other.add(OK())
        ctx.drop_result(dropped)
        ctx.order_recorders([second, first])

    report = await check(TARGET, RunOptions(timeout=5, credentials=creds),
                         probes=[probe("revising", revising)])
    # Then the report has the revised step (in its place, redacted) and the kept results
    # in the order asked
    assert [r.subject for r in report.results] == ["second", "first"]
    first = report.results[1]
    assert [s.title for s in first.steps] == ["final title", "next"]
    lines = [(line.direction, line.text) for line in first.steps[0].transcript]
    assert lines[0] == ("send", "hello")
    assert lines[1][0] == "info" and lines[1][1].startswith("settled later ")
    assert password not in lines[1][1]
    assert lines[2] == ("recv", "welcome")


async def test_a_step_cannot_be_revised_once_its_result_ended() -> None:
    refused: list[str] = []

    async def late(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("x") as res, res.step("s") as step:
            pass
        with pytest.raises(RuntimeError) as raised:
            step.revise(title="too late")
        refused.append(str(raised.value))

    report = await check(TARGET, RunOptions(timeout=5), probes=[probe("late", late)])
    assert refused == ["step 's' revised after its result ended"]
    assert [s.title for r in results_of(report, "late") for s in r.steps] == ["s"]


async def test_a_refused_revision_does_not_name_a_secret_of_the_step_title() -> None:
    # Given a step whose title (wrongly) holds the password, revised after its result ended
    password = "s3cret-Pa55word!"  # noqa: S105 - test data
    creds = Credentials("alice@example.test", password=password)
    refused: list[str] = []

    async def late(ctx: ProbeContext, target: Target) -> None:
        with ctx.result("x") as res, res.step(f"login with {password}") as step:
            pass
        with pytest.raises(RuntimeError) as raised:
            step.revise(title="too late")
        refused.append(str(raised.value))

    await check(TARGET, RunOptions(timeout=5, credentials=creds), probes=[probe("late", late)])
    # Then the refusal names the step without the password
    assert refused == ["step 'login with «redacted»' revised after its result ended"]
