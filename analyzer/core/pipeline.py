"""The pipeline: plan the probes of a run, run them as an async DAG, build the report.

Each planned probe becomes a task that waits only for the facts it ``needs``/``uses``,
so independent probes overlap and a full check costs about its slowest chain of round
trips. A fact is ready as soon as every planned probe that provides it has published it
(or ended without it), not when those probes end: the reachability and TLS checks start
when the DNS probe has published the MX hosts and SRV records, while it still checks
PTR and CAA records. A fact a probe reads only late (``awaits``) does not hold its start:
autoconfig asks its sources while Autodiscover runs, and waits for Autodiscover's answer
only to merge it. Probes listed by the registry's index are imported when they start,
and the ones still waiting are imported while the first ones wait on the network.

The pipeline owns what every probe shares (blackbox_exporter's handler idea):

- the per-probe deadline and the global deadline: on expiry the open steps end as
  ``fail`` with what was seen, and the run goes on;
- exceptions, caught once: a probe's crash becomes an ``error`` result, never a crashed
  run (see :func:`analyzer.core.probe.exception_finding`);
- skips: a probe whose hard need was not published is reported ``skip`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from analyzer.core import startup
from analyzer.core.credpolicy import hide_userinfo
from analyzer.core.model import Finding, ProbeResult, Report, Status, Step, to_json, worst
from analyzer.core.probe import (
    PROBE_DEADLINE,
    PROBE_NOT_APPLICABLE,
    PROBE_SKIPPED,
    RUN_DEADLINE,
    Probe,
    ProbeContext,
    exception_finding,
    redact_finding,
    redact_json,
)
from analyzer.core.registry import ProbeEntry

if TYPE_CHECKING:
    from analyzer.core.context import RunContext
    from analyzer.core.targets import Target

__all__ = [
    "Progress",
    "ProgressEvent",
    "plan",
    "run_probes",
    "waits_for",
]



@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Sent to a progress callback when a probe is planned, starts or finishes.

    A ``finished`` event carries the probe's results (their step trees, already redacted),
    so a live view can show them before the run ends (``rca web``).
    """

    probe: str
    title: str
    event: Literal["planned", "started", "finished"]
    status: Status | None = None
    elapsed_ms: float = 0.0
    results: tuple[ProbeResult, ...] = ()


Progress = Callable[[ProgressEvent], None]


class Declared(Protocol):
    """What planning reads of a probe: a :class:`Probe`, or its index entry
    (:class:`analyzer.core.registry.ProbeEntry`), which the pipeline imports only to run it."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def needs(self) -> tuple[str, ...]: ...
    @property
    def uses(self) -> tuple[str, ...]: ...
    @property
    def awaits(self) -> tuple[str, ...]: ...
    @property
    def provides(self) -> tuple[str, ...]: ...
    @property
    def default(self) -> bool: ...


D = TypeVar("D", bound=Declared)
#: A planned probe: the probe itself, or its index entry (imported when it is about to run).
Planned = Probe | ProbeEntry


def plan(probes: Sequence[D], selected: Sequence[str] = ()) -> list[D]:
    """The probes to run: the selected ones (or the defaults) plus the providers they need.

    Raises :class:`ValueError` naming an unknown probe id.
    """
    by_id = {p.id: p for p in probes}
    unknown = [s for s in selected if s not in by_id]
    if unknown:
        raise ValueError(
            f"unknown test(s): {', '.join(unknown)}; known: {', '.join(sorted(by_id))}"
        )
    wanted = list(selected) if selected else [p.id for p in probes if p.default]
    providers: dict[str, list[str]] = {}
    for p in probes:
        for fact in p.provides:
            providers.setdefault(fact, []).append(p.id)
    chosen: set[str] = set()
    todo = list(wanted)
    while todo:
        pid = todo.pop()
        if pid in chosen:
            continue
        chosen.add(pid)
        # What a probe uses is added too: `--tests tls` should still test the MX hosts.
        for fact in waits_for(by_id[pid]):
            todo.extend(providers.get(fact, []))
    planned = [p for p in probes if p.id in chosen]  # registry order is report order
    _check_acyclic(planned, providers)
    return planned


def waits_for(probe: Declared) -> tuple[str, ...]:
    """Every fact ``probe`` waits for, at its start (``needs``, ``uses``) or later on
    (``awaits``)."""
    return (*probe.needs, *probe.uses, *probe.awaits)


def _check_acyclic(planned: Sequence[Declared], providers: dict[str, list[str]]) -> None:
    """A probe waiting (needs/uses) on itself through others would wait forever."""
    ids = {p.id for p in planned}
    deps = {
        p.id: {d for f in waits_for(p) for d in providers.get(f, []) if d in ids} - {p.id}
        for p in planned
    }
    state: dict[str, int] = {}

    def visit(pid: str, path: list[str]) -> None:
        if state.get(pid) == 2:
            return
        if state.get(pid) == 1:
            raise ValueError("probes wait on each other: " + " -> ".join([*path, pid]))
        state[pid] = 1
        for dep in sorted(deps[pid]):
            visit(dep, [*path, pid])
        state[pid] = 2

    for pid in sorted(deps):
        visit(pid, [])


class _Scheduler:
    def __init__(
        self,
        run: RunContext,
        target: Target,
        probes: list[Planned],
        progress: Progress | None,
    ) -> None:
        self.run = run
        self.target = target
        self.probes = probes
        self.progress = progress
        self.facts: dict[str, Any] = {}
        self.outcome: dict[str, Status] = {}
        self.results: dict[str, list[ProbeResult]] = {}
        self.providers: dict[str, list[str]] = {}
        for p in probes:
            for fact in p.provides:
                self.providers.setdefault(fact, []).append(p.id)
        #: Per fact: the providers that have neither published it nor ended yet, and the
        #: event set when there are none left (the fact is as known as it will be).
        self.unsettled: dict[str, set[str]] = {f: set(p) for f, p in self.providers.items()}
        self.ready: dict[str, asyncio.Event] = {f: asyncio.Event() for f in self.providers}

    def _emit(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(event)

    async def _wait_for(self, facts: Sequence[str]) -> None:
        for fact in facts:
            if fact in self.ready:
                await self.ready[fact].wait()

    def _publish(self, probe_id: str, name: str, value: Any) -> None:
        """``probe_id`` published a fact: probes waiting for it may start now."""
        self.facts[name] = value
        self._settle(probe_id, name)

    def _settle(self, probe_id: str, fact: str) -> None:
        waiting = self.unsettled.get(fact)
        if waiting is None:
            return
        waiting.discard(probe_id)
        if not waiting:
            self.ready[fact].set()

    def _skip_reason(self, probe: Probe) -> Finding | None:
        if probe.applies is not None:
            reason = probe.applies(self.target)
            if reason:
                return PROBE_NOT_APPLICABLE(detail=reason)
        for fact in probe.needs:
            if fact in self.facts:
                continue
            origin = self.providers.get(fact, [])
            if not origin:
                return PROBE_SKIPPED(detail=f"no planned check provides {fact!r}")
            states = ", ".join(
                f"{o} ended {self.outcome.get(o, Status.SKIP).value}" for o in origin
            )
            return PROBE_SKIPPED(
                detail=f"needs {fact!r}, which was not found ({states})",
                evidence={"needs": fact, "from": origin},
            )
        return None

    async def run_one(self, planned: Planned) -> None:
        try:
            await self._wait_for(planned.needs + planned.uses)
            started = time.monotonic()
            loaded = _load(planned)
            if isinstance(loaded, Finding):
                results = [_single(planned, self.target, self.run, loaded)]
            else:
                results = await self._start(loaded)
            status = worst((r.status for r in results), default=Status.SKIP)
            self.outcome[planned.id] = status
            self.results[planned.id] = results
            self._emit(
                ProgressEvent(
                    planned.id,
                    planned.title,
                    "finished",
                    status,
                    round((time.monotonic() - started) * 1000, 1),
                    tuple(results),
                )
            )
        finally:
            for fact in planned.provides:
                self._settle(planned.id, fact)

    async def _start(self, probe: Probe) -> list[ProbeResult]:
        """Run ``probe`` now that what it waits for is known, or say why it is skipped."""
        skip = self._skip_reason(probe)
        if skip is None and self.run.remaining() <= 0:
            skip = RUN_DEADLINE(detail=f"{self.run.options.timeout:g} s elapsed")
        if skip is not None:
            return [_single(probe, self.target, self.run, skip)]
        ctx = ProbeContext(
            run=self.run,
            probe=probe,
            facts=self.facts,
            published={},
            on_publish=lambda name, value: self._publish(probe.id, name, value),
            wait_for=lambda name: self._wait_for((name,)),
        )
        self._emit(ProgressEvent(probe.id, probe.title, "started"))
        return await self._execute(probe, ctx)

    async def _execute(self, probe: Probe, ctx: ProbeContext) -> list[ProbeResult]:
        budget = min(self.run.options.probe_timeout, self.run.remaining())
        reason: Finding | None = None
        try:
            async with asyncio.timeout(budget):
                await probe.run(ctx, self.target)
        except TimeoutError:
            reason = PROBE_DEADLINE(
                detail=f"the probe's deadline of {budget:.1f} s expired",
                evidence={"deadline_s": round(budget, 3)},
            )
        except Exception as exc:  # the one place where probe exceptions are caught
            if not getattr(exc, "__rca_recorded__", False):
                reason = exception_finding(exc)
        results = [rec.close(reason=reason) for rec in ctx.results]
        if not results:
            finding = reason or _empty_probe_finding(probe)
            results = [_single(probe, self.target, self.run, finding)]
        shown = {k: v for k, v in ctx.published.items() if k not in ctx.hidden}
        return _attach_facts(results, shown, ctx.redact)


async def _preload(planned: Sequence[Planned]) -> None:
    """Import the planned probes while the first ones wait on the network.

    Runs after the probes that need nothing have started (sent their first questions), one
    probe at a time, yielding in between so that answers are read between two imports.
    A probe that fails to import is reported when it starts (:func:`_load`).
    """
    for entry in planned:
        await asyncio.sleep(0)
        if isinstance(entry, ProbeEntry):
            with contextlib.suppress(Exception):
                entry.load()
    # The run's modules are in: the command line's collector can come back (see startup).
    startup.settle()


def _load(planned: Planned) -> Probe | Finding:
    """The probe itself: an index entry is imported only now, when it is about to run (the
    probes that start at once are already waiting on the network while the others load).
    A probe that cannot be imported is an ``error`` result, not a crashed run."""
    if isinstance(planned, Probe):
        return planned
    try:
        return planned.load()
    except Exception as exc:
        return exception_finding(exc)


def _attach_facts(
    results: list[ProbeResult], published: dict[str, Any], redact: Callable[[str], str]
) -> list[ProbeResult]:
    """Show facts published at probe level (not by one result) in the probe's first result."""
    shown = {name for r in results for name in r.facts}
    missing = {k: redact_json(to_json(v), redact) for k, v in published.items() if k not in shown}
    if not missing or not results:
        return results
    first = results[0]
    return [dataclasses.replace(first, facts={**first.facts, **missing}), *results[1:]]


def _empty_probe_finding(probe: Declared) -> Finding:
    return PROBE_NOT_APPLICABLE(
        title="Nothing to check",
        detail=f"the {probe.id} check found nothing to examine for this target",
    )


def _single(probe: Declared, target: Target, run: RunContext, finding: Finding) -> ProbeResult:
    # An exception's words may quote what a server echoed: redact like every step.
    finding = redact_finding(run.options.credentials, finding)
    return ProbeResult(
        probe=probe.id,
        subject=target.display,
        status=finding.status,
        started=run.now(),
        elapsed_ms=0.0,
        steps=(
            Step(title=probe.title, status=finding.status, elapsed_ms=0.0, findings=(finding,)),
        ),
    )


async def run_probes(
    run: RunContext,
    target: Target,
    probes: Sequence[Planned],
    *,
    tool_version: str,
    progress: Progress | None = None,
) -> Report:
    """Run ``probes`` (already planned) against ``target`` and build the :class:`Report`.

    Index entries are imported when their probe is about to run.

    Never raises for a probe's failure; returns when every probe has finished or the
    global deadline (``run.options.timeout``) has passed, whichever comes first.
    """
    planned = list(probes)
    sched = _Scheduler(run, target, planned, progress)
    for p in planned:
        sched._emit(ProgressEvent(p.id, p.title, "planned"))
    tasks = [asyncio.create_task(sched.run_one(p), name=f"rca-probe-{p.id}") for p in planned]
    preload = asyncio.create_task(_preload(planned), name="rca-preload")
    # Per-probe deadlines are bounded by the global one; the grace period covers the
    # pipeline's own bookkeeping after a probe is cancelled.
    _done, pending = await asyncio.wait(tasks, timeout=run.remaining() + 1.0)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)
    preload.cancel()
    results: list[ProbeResult] = []
    for p in planned:
        if p.id in sched.results:
            results.extend(sched.results[p.id])
        else:
            results.append(
                _single(p, target, run, RUN_DEADLINE(detail="cancelled at the deadline"))
            )
    return Report(
        tool_version=tool_version,
        target=hide_userinfo(target.display),
        options=run.options.describe(),
        started=run.started,
        elapsed_ms=round(run.elapsed_ms(), 1),
        status=worst((r.status for r in results), default=Status.SKIP),
        results=tuple(results),
        environment=run.environment(),
    )
