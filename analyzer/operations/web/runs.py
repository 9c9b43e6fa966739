"""Runs started from the browser: the check itself, its live events, its limits.

A run is ``analyzer.api.check`` with the options of its form, as an asyncio task on the
server's loop; the pipeline's progress callback turns each probe's start and end into an
event, and a finished probe's results into the HTML of its report section (rendered by
:mod:`reports.html`, so the live view and the report are drawn by the same templates).
Events are kept per run, so a page opened late, or reconnecting, replays them.

The request (and so the password) lives in the task's frame only: the :class:`Run` keeps
the report, the events and what the page shows, never the options. A finished report is
saved in the history (the ``rca batch --history`` format), which holds no secret.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.core.model import Report, Status

if TYPE_CHECKING:
    from collections.abc import Sequence

    from analyzer.core.pipeline import ProgressEvent
    from analyzer.core.probe import Probe
    from analyzer.operations.web.config import WebConfig
    from analyzer.operations.web.forms import RunRequest

__all__ = ["Busy", "ProbeView", "Run", "RunManager", "SlidingWindow", "history_name"]

LOG = logging.getLogger("rca.web")
#: Finished runs kept in memory (their reports stay in the history on disk).
KEEP_IN_MEMORY = 50


class Busy(Exception):
    """A run cannot start now: too many at once, or too many started recently."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SlidingWindow:
    """At most ``limit`` hits per key within ``period`` seconds (memory bounded)."""

    def __init__(self, limit: int, period: float = 60.0, *, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.period = period
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str, now: float | None = None) -> int:
        """Count a hit; 0 if allowed, else the seconds to wait (the hit is not counted)."""
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.period:
            hits.popleft()
        self._hits[key] = hits
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)
        if len(hits) >= self.limit:
            return max(1, int(hits[0] + self.period - now + 0.999))
        hits.append(now)
        return 0


@dataclass(slots=True)
class ProbeView:
    """One planned probe as the live page shows it."""

    title: str
    state: str = "planned"  # planned → started → finished
    status: str = ""
    html: str = ""


@dataclass(slots=True, kw_only=True)
class Run:
    """One run: what the pages show and the events the live view replays."""

    id: str
    test_id: str
    test_title: str
    target: str
    command: str
    client: str
    started: datetime
    probes: dict[str, ProbeView] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    report: Report | None = None
    history: str = ""  # "name/stamp" in the history, once saved
    summary_html: str = ""
    checks_html: str = ""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        """Whether the report is ready."""
        return self.report is not None

    def add(self, event: dict[str, Any]) -> None:
        """Record an event and wake whoever waits for one."""
        self.events.append(event)
        self._wake.set()
        self._wake = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> list[dict[str, Any]]:
        """Events after the first ``seen``; waits up to ``timeout`` s for one ([] if none)."""
        wake = self._wake
        if len(self.events) <= seen and not self.done:
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except TimeoutError:
                return []
        return self.events[seen:]


def history_name(target: str, test_id: str) -> str:
    """The history folder of a target checked with one test (runs of different tests of
    one target are not compared with each other)."""
    from analyzer.operations.batch import safe_name  # noqa: PLC0415

    return safe_name(f"{target}+{test_id}")


class RunManager:
    """Starts runs within the configured limits and keeps the recent ones."""

    def __init__(self, config: WebConfig, *, probes: Sequence[Probe] | None = None) -> None:
        self.config = config
        self.probes = probes
        self.runs: OrderedDict[str, Run] = OrderedDict()
        self.tasks: set[asyncio.Task[None]] = set()
        self._starts = SlidingWindow(config.runs_per_minute)

    def running(self, client: str | None = None) -> int:
        """Runs not finished yet (of ``client``, or all)."""
        return sum(
            1 for r in self.runs.values() if not r.done and (client is None or r.client == client)
        )

    def get(self, run_id: str) -> Run | None:
        """A run still in memory."""
        return self.runs.get(run_id)

    def start(self, request: RunRequest, *, client: str) -> Run:
        """Start ``request`` as a task; :class:`Busy` if a limit says not now."""
        if self.running() >= self.config.max_runs:
            raise Busy(f"{self.config.max_runs} checks are running; try again shortly", 10)
        if self.running(client) >= self.config.max_runs_per_client:
            raise Busy("your earlier checks are still running; wait for them to finish", 10)
        wait = self._starts.hit(client)
        if wait:
            raise Busy(
                f"at most {self.config.runs_per_minute} checks a minute; try again in {wait} s",
                wait,
            )
        run = Run(
            id=secrets.token_urlsafe(16),
            test_id=request.test.id,
            test_title=request.test.title,
            target=request.target.display,
            command=request.command,
            client=client,
            started=datetime.now(UTC),
        )
        self.runs[run.id] = run
        self._forget_old()
        task = asyncio.create_task(self._execute(run, request), name=f"rca-web-run-{run.id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        LOG.info("run %s started: test %s, target %s, client %s",
                 run.id, run.test_id, run.target, client)
        return run

    def _forget_old(self) -> None:
        finished = [k for k, r in self.runs.items() if r.done]
        for key in finished[: max(0, len(self.runs) - KEEP_IN_MEMORY)]:
            del self.runs[key]

    async def _execute(self, run: Run, request: RunRequest) -> None:
        report = await self._check(run, request)
        del request  # the password goes with it: nothing below needs the options
        await self._finish(run, report)

    async def _check(self, run: Run, request: RunRequest) -> Report:
        from analyzer.api import check  # noqa: PLC0415
        from analyzer.core.batchmodel import CHECK_CRASHED  # noqa: PLC0415
        from analyzer.operations.batch import WATCHDOG_GRACE_S, error_report  # noqa: PLC0415

        options = request.options
        try:
            async with asyncio.timeout(options.timeout + WATCHDOG_GRACE_S):
                return await check(
                    request.target, options, probes=self.probes,
                    progress=lambda event: self._progress(run, event),
                )
        except TimeoutError:
            detail = (
                f"the check did not end within {options.timeout:g} s plus "
                f"{WATCHDOG_GRACE_S:g} s of grace"
            )
        except Exception as exc:  # the run's one catch-all: the server goes on
            detail = options.credentials.redact(f"{type(exc).__name__}: {exc}")[:2000]
        return error_report(
            request.target.display, CHECK_CRASHED(detail=detail), started=run.started,
            elapsed_ms=(datetime.now(UTC) - run.started).total_seconds() * 1000,
            options=options.describe(),
        )

    def _progress(self, run: Run, event: ProgressEvent) -> None:
        from reports.html import render_result  # noqa: PLC0415

        view = run.probes.setdefault(event.probe, ProbeView(title=event.title))
        if event.event == "planned":
            run.add({"kind": "planned", "probe": event.probe, "title": event.title})
            return
        if event.event == "started":
            view.state = "started"
            run.add({"kind": "started", "probe": event.probe})
            return
        status = event.status or Status.SKIP
        provisional = Report(
            tool_version="", target=run.target, started=run.started, elapsed_ms=0.0,
            status=status, results=event.results,
        )
        view.state, view.status = "finished", status.value
        try:
            view.html = "".join(
                render_result(provisional, result, anchor=f"live-{event.probe}-{index}")
                for index, result in enumerate(event.results)
            )
        except Exception:  # the live view is a courtesy: a drawing bug must not stop the run
            LOG.exception("run %s: the live view of %s could not be drawn", run.id, event.probe)
            view.html = ""
        run.add({"kind": "finished", "probe": event.probe, "status": status.value,
                 "html": view.html})

    async def _finish(self, run: Run, report: Report) -> None:
        from analyzer.operations.web.history_view import RunHistory  # noqa: PLC0415
        from analyzer.operations.web.pages import done_parts  # noqa: PLC0415

        run.history = await asyncio.to_thread(self._save, run, report)
        previous = RunHistory(self.config.history).previous(run.history) if run.history else ""
        run.summary_html, run.checks_html = done_parts(run, report, previous=previous)
        run.report = report
        # The final sections replace the live ones: keep them once, not per event too.
        for event in run.events:
            event.pop("html", None)
        for view in run.probes.values():
            view.html = ""
        run.add({"kind": "done", "status": report.status.value,
                 "summary": run.summary_html, "checks": run.checks_html})
        LOG.info("run %s finished: %s in %.1f s", run.id, report.status.value,
                 report.elapsed_ms / 1000)

    def _save(self, run: Run, report: Report) -> str:
        """Keep the report in the history; "name/stamp", or "" if it could not be saved."""
        from analyzer.operations.history import History  # noqa: PLC0415
        from reports.json import dumps  # noqa: PLC0415

        name = history_name(run.target, run.test_id)
        try:
            path = History(self.config.history, keep=self.config.keep).save(
                name, report, dumps(report)
            )
        except (OSError, ValueError) as exc:
            LOG.warning("run %s: not kept in the history: %s", run.id, exc)
            return ""
        return f"{name}/{Path(path).stem}"

    async def aclose(self) -> None:
        """Cancel the runs still going (the server stops)."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
