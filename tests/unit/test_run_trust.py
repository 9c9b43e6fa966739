"""The run's verifying TLS context: built once, in a worker thread when the plan needs it."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from analyzer.api import check
from analyzer.core import context as context_module
from analyzer.core.context import RunContext, RunOptions
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.shared import SharedResults
from analyzer.core.targets import Target, parse_target

TARGET = parse_target("example.test")


class Builds:
    """Counts the builds of the verifying context and the thread each ran in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[str] = []
        real = context_module._verifying_context

        def counted(files: tuple[Path, ...]) -> ssl.SSLContext:
            self.threads.append(threading.current_thread().name)
            return real(files)

        monkeypatch.setattr(context_module, "_verifying_context", counted)


async def test_a_prepared_context_is_built_once_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run that prepares its verifying context
    builds = Builds(monkeypatch)
    async with RunContext(RunOptions()) as run:
        run.prepare_ssl_context()
        run.prepare_ssl_context()  # a second call starts nothing more
        # When probes ask for it, several times
        first = run.ssl_context()
        second = run.ssl_context()
    # Then it was built once, off the event loop's thread, and every caller got that one
    assert first is second
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    assert len(builds.threads) == 1
    assert builds.threads[0].startswith("rca-io")


async def test_without_preparation_the_context_is_built_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run that never prepared the context
    builds = Builds(monkeypatch)
    async with RunContext(RunOptions()) as run:
        # When a probe asks for it twice
        assert run.ssl_context() is run.ssl_context()
    # Then it was built once, where it was asked for
    assert builds.threads == [threading.current_thread().name]


async def test_a_prepared_context_raises_as_an_unprepared_one_for_a_missing_ca_file(
    tmp_path: Path,
) -> None:
    # Given a --ca-file that does not exist
    options = RunOptions(ca_file=tmp_path / "gone.pem")
    async with RunContext(options) as plain:
        with pytest.raises(OSError) as unprepared:
            plain.ssl_context()
    # When the context was prepared in a worker thread before a probe asked for it
    async with RunContext(options) as run:
        run.prepare_ssl_context()
        # Then the probe gets the same error as without the preparation
        with pytest.raises(OSError) as prepared:
            run.ssl_context()
    assert type(prepared.value) is type(unprepared.value)


async def test_in_a_batch_the_context_is_shared_and_preparing_is_not_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two runs of one batch, each preparing its context
    builds = Builds(monkeypatch)
    batch = SharedResults()
    contexts = []
    for _ in range(2):
        async with RunContext(RunOptions(), shared_results=batch) as run:
            run.prepare_ssl_context()
            contexts.append(run.ssl_context())
    # Then the batch built one context for both
    assert contexts[0] is contexts[1]
    assert len(builds.threads) == 1


def _probe(pid: str, *, verifies_tls: bool) -> Probe:
    async def run(ctx: ProbeContext, target: Target) -> None:
        with ctx.result(target.domain):
            pass

    return Probe(id=pid, title=pid, run=run, verifies_tls=verifies_tls)


@pytest.mark.parametrize(("verifies", "prepared"), [(True, 1), (False, 0)])
async def test_a_run_prepares_the_context_only_when_a_planned_probe_verifies_tls(
    monkeypatch: pytest.MonkeyPatch, verifies: bool, prepared: int
) -> None:
    # Given a run whose only probe does, or does not, make verified TLS connections
    calls: list[Any] = []
    monkeypatch.setattr(RunContext, "prepare_ssl_context", lambda self: calls.append(self))
    # When it runs
    await check(TARGET, RunOptions(), probes=[_probe("p", verifies_tls=verifies)])
    # Then the trust store was loaded ahead only for the probe that needs it
    assert len(calls) == prepared
