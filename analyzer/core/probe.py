"""What a probe is, and the recorders it writes its results with.

A probe is a :class:`Probe` value: an ``id``, the facts it ``needs`` (hard: without them
it is skipped), ``uses`` (soft: it waits for them if a planned probe provides them,
and runs either way), ``awaits`` (soft, read late: it starts without them and waits for
them itself, :meth:`ProbeContext.settled`) and ``provides``, the finding codes it may
produce, and one coroutine ``run(ctx, target)``.

The coroutine records as it goes rather than returning results::

    async def run(ctx: ProbeContext, target: Target) -> None:
        with ctx.result(f"{host}:25") as res:
            with res.step(f"Connect to {host}:25") as step:
                step.send("EHLO rca.invalid")
                step.add(SMTP_NO_STARTTLS(detail="..."))

so that when the probe's deadline expires, or it raises, the pipeline still holds the
steps it had recorded and closes the open ones with the reason, as ExRCA shows the
path up to the point where a test broke.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from analyzer.core.findings import FindingSpec
from analyzer.core.model import (
    Direction,
    Finding,
    Json,
    ProbeResult,
    Status,
    Step,
    TranscriptLine,
    to_json,
    worst,
)
from analyzer.core.shared import SharedCheck

if TYPE_CHECKING:
    from analyzer.core.context import Credentials, RunContext
    from analyzer.core.targets import Target

__all__ = [
    "MissingFact",
    "concurrently",
    "HeldTranscript",
    "Probe",
    "ProbeContext",
    "ResultRecorder",
    "StepRecorder",
]

T = TypeVar("T")

#: Transcript lines longer than this are cut (a hostile server may send megabytes).
MAX_TRANSCRIPT_LINE = 2000
#: At most this many transcript lines per step; the rest is summarised in one line.
MAX_TRANSCRIPT_LINES = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """A registered probe (see the module docstring)."""

    id: str
    title: str
    run: Callable[[ProbeContext, Target], Awaitable[None]]
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    #: Facts read only late in the run (soft, like ``uses``): the probe starts without them
    #: and waits for each with :meth:`ProbeContext.settled` where it needs it, so what it
    #: can do before overlaps with the probes that provide them.
    awaits: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    findings: tuple[FindingSpec, ...] = ()
    #: Why the probe does not apply to a target (e.g. a bare IP has no MX), or None.
    applies: Callable[[Target], str | None] | None = None
    #: Part of a plain ``rca check`` (False: only when named in ``--tests``).
    default: bool = True
    #: Logs in with the user's credentials (the CLI prompts for a password if needed).
    uses_credentials: bool = False
    #: For an opt-in probe (``default=False``): the :class:`~analyzer.core.context.RunOptions`
    #: field that turns it on when not empty (``dnsbl``: ``--dnsbl`` runs the block-list
    #: probe without naming it in ``--tests``). A name, not a function, so that the run can
    #: be planned from the probe index without importing the probe.
    enabled_by: str | None = None
    #: Makes verified TLS connections with the run's trust (HTTPS, STARTTLS, logins): the run
    #: starts building its verifying context (:meth:`RunContext.prepare_ssl_context`) in a
    #: worker thread as soon as such a probe is planned.
    verifies_tls: bool = False


async def concurrently(*work: Awaitable[T]) -> list[T]:
    """Run ``work`` at once and return their values in order, once *all* have ended.

    For steps of a probe that do not depend on one another. Unlike a bare
    ``asyncio.gather``, an exception (a bug: each step records its own network failures)
    is raised only after the others have ended, so no step is left running behind the
    probe's back, and the steps keep the order they were started in (the order given).
    """
    import asyncio  # noqa: PLC0415 - running probes only: `rca findings` reads this module

    outcomes = await asyncio.gather(*work, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]


class _Transcribing:
    """The transcript lines of a :class:`~analyzer.protocols.net.TranscriptSink`, each
    handed to ``_line`` (kept by :class:`HeldTranscript`, stored by :class:`StepRecorder`,
    which removes secrets first)."""

    __slots__ = ()

    def send(self, text: str) -> None:
        """A line we sent."""
        self._line("send", text)

    def recv(self, text: str) -> None:
        """A line the server sent."""
        self._line("recv", text)

    def note(self, text: str) -> None:
        """An explanatory line in the transcript (what we did between protocol lines)."""
        self._line("info", text)

    def _line(self, direction: Direction, text: str) -> None:
        raise NotImplementedError


class HeldTranscript(_Transcribing):
    """A transcript sink keeping its lines for a step made later.

    Work that starts before the step that reports it (asked ahead, so its round trips
    overlap earlier ones) records here; :meth:`StepRecorder.replay` then adds the lines to
    the step, each with its offset from the start of that work, so the steps keep the order
    a reader follows while the network does not wait for it.
    """

    __slots__ = ("lines", "started")

    def __init__(self) -> None:
        #: When the work began (``time.monotonic()``).
        self.started = time.monotonic()
        self.lines: list[tuple[float, Direction, str]] = []

    def _line(self, direction: Direction, text: str) -> None:
        self.lines.append((round((time.monotonic() - self.started) * 1000, 1), direction, text))


class MissingFact(LookupError):
    """A probe asked for a fact that no probe published."""


class StepRecorder(_Transcribing):
    """Builds one :class:`~analyzer.core.model.Step`; use as a context manager. Its
    transcript lines (:meth:`send`, :meth:`recv`, :meth:`note`) are stored without secrets."""

    def __init__(self, owner: ResultRecorder, title: str, parent: StepRecorder | None) -> None:
        self._owner = owner
        self.title = title
        self.parent = parent
        self.findings: list[Finding] = []
        self.children: list[Step] = []
        self.child_starts: list[float] = []  # exact start of each child, in order
        self.transcript: list[TranscriptLine] = []
        self.status: Status | None = None
        self._t0 = time.monotonic()
        self.started_ms = owner.ctx.run.elapsed_ms()
        self._dropped = 0
        self.frozen: Step | None = None

    # --- recording ----------------------------------------------------------------------------

    def add(self, finding: Finding) -> Finding:
        """Attach a finding; the step's status becomes the worst of its findings."""
        self.findings.append(finding)
        return finding

    def step(self, title: str) -> StepRecorder:
        """A child step (use with ``with``)."""
        return StepRecorder(self._owner, title, self)

    def replay(self, held: HeldTranscript, *, on_step_clock: bool = False) -> None:
        """Add the lines ``held`` kept (see :class:`HeldTranscript`), redacted and bounded as
        any other line, each at its offset from the start of the work that recorded it, or
        (``on_step_clock``, for work started inside this step) from this step's start."""
        shift = round((held.started - self._t0) * 1000, 1) if on_step_clock else 0.0
        for at_ms, direction, text in held.lines:
            self._line(direction, text, at_ms=max(0.0, round(at_ms + shift, 1)))

    def _line(self, direction: Direction, text: str, *, at_ms: float | None = None) -> None:
        if len(self.transcript) >= MAX_TRANSCRIPT_LINES:
            self._dropped += 1
            return
        self.transcript.append(self._made(direction, text, at_ms))

    def _made(self, direction: Direction, text: str, at_ms: float | None = None) -> TranscriptLine:
        # Redact before cutting: a secret straddling the cut would keep its first part.
        text = self._owner.ctx.redact(text)
        if len(text) > MAX_TRANSCRIPT_LINE:
            text = text[:MAX_TRANSCRIPT_LINE] + f"… [{len(text) - MAX_TRANSCRIPT_LINE} more chars]"
        if at_ms is None:
            at_ms = round((time.monotonic() - self._t0) * 1000, 1)
        return TranscriptLine(at_ms=at_ms, direction=direction, text=text)

    def mark(self) -> int:
        """The place of the next transcript line, for :meth:`revise` to add a note there."""
        return len(self.transcript)

    def revise(self, *, title: str | None = None, note: tuple[int, str] | None = None) -> None:
        """Give the step its final title, or add a note at a :meth:`mark` of its transcript,
        also once it has ended (while its result is open): for what a fact settled later
        decides, while the probe goes on without waiting for it (a login probe connects
        before the mail settings say where the endpoint was learned)."""
        frozen = self.frozen
        if frozen is not None and (
            self._owner.frozen is not None or (self.parent and self.parent.frozen is not None)
        ):
            title = self._owner.ctx.redact(self.title)
            raise RuntimeError(f"step {title!r} revised after its result ended")
        if title is not None:
            self.title = title
        added: tuple[int, TranscriptLine] | None = None
        if note is not None and len(self.transcript) < MAX_TRANSCRIPT_LINES:
            added = (note[0], self._made("info", note[1]))
            self.transcript.insert(*added)
        if frozen is None:
            return
        transcript = list(frozen.transcript)
        if added is not None:
            transcript.insert(*added)
        self.frozen = dataclasses.replace(
            frozen, title=self._owner.ctx.redact(self.title), transcript=tuple(transcript)
        )
        siblings = self.parent.children if self.parent is not None else self._owner.steps
        siblings[next(i for i, s in enumerate(siblings) if s is frozen)] = self.frozen

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self, *, extra: Finding | None = None) -> Step:
        """Freeze the step (idempotent) and attach it to its parent."""
        if self.frozen is not None:
            return self.frozen
        if extra is not None:
            self.findings.append(extra)
        transcript = list(self.transcript)
        if self._dropped:
            transcript.append(
                TranscriptLine(
                    at_ms=round((time.monotonic() - self._t0) * 1000, 1),
                    direction="info",
                    text=f"[{self._dropped} more lines not recorded]",
                )
            )
        findings = tuple(self._owner.ctx.redact_finding(f) for f in self.findings)
        # Concurrent children finish in any order; show them in the order they started.
        children = tuple(sorted(self.children, key=lambda c: c.started_ms))
        status = self.status or worst(
            [f.status for f in findings] + [c.status for c in children], default=Status.PASS
        )
        self.frozen = Step(
            title=self._owner.ctx.redact(self.title),
            status=status,
            elapsed_ms=round((time.monotonic() - self._t0) * 1000, 1),
            started_ms=round(self.started_ms, 1),
            findings=findings,
            children=children,
            transcript=tuple(transcript),
        )
        if self.parent is not None:
            _insert(self.parent.children, self.parent.child_starts, self.frozen, self._t0)
        else:
            _insert(self._owner.steps, self._owner.step_starts, self.frozen, self._t0)
        self._owner.open_steps.remove(self)
        return self.frozen

    def __enter__(self) -> StepRecorder:
        self._owner.open_steps.append(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None or self.frozen is not None:
            self.close()
            return
        if isinstance(exc, Exception) and not getattr(exc, "__rca_recorded__", False):
            # The innermost step that saw the exception records it; outer steps and the
            # pipeline see the mark and do not record it again.
            self.close(extra=exception_finding(exc))
            with contextlib.suppress(AttributeError):
                exc.__rca_recorded__ = True  # type: ignore[attr-defined]
            return
        # Cancelled (deadline) or already recorded: the pipeline closes the open steps
        # innermost first, so the tree shows exactly where the probe stopped.
        if isinstance(exc, Exception):
            self.close()


def _insert(steps: list[Step], starts: list[float], step: Step, started: float) -> None:
    """Add a finished step where it started (``time.monotonic()``): steps run concurrently
    finish in any order, and their rounded ``started_ms`` may tie."""
    at = bisect.bisect_right(starts, started)
    starts.insert(at, started)
    steps.insert(at, step)


class ResultRecorder:
    """Builds one :class:`~analyzer.core.model.ProbeResult` for one subject."""

    def __init__(self, ctx: ProbeContext, subject: str) -> None:
        self.ctx = ctx
        self.subject = subject
        self.steps: list[Step] = []
        self.step_starts: list[float] = []  # exact start of each step, in order
        self.open_steps: list[StepRecorder] = []
        self.facts: dict[str, Json] = {}
        self._t0 = time.monotonic()
        self.started = ctx.run.now()
        self.frozen: ProbeResult | None = None

    def step(self, title: str) -> StepRecorder:
        """A top-level step of this result (use with ``with``)."""
        return StepRecorder(self, title, None)

    def publish(self, name: str, value: Any) -> None:
        """Publish a fact for other probes, and show it in this result."""
        self.ctx.publish(name, value)
        # A fact may quote a server (an Autodiscover URL with user:password@ in it).
        self.facts[name] = redact_json(to_json(value), self.ctx.redact)

    def close(self, *, reason: Finding | None = None) -> ProbeResult:
        """Freeze the result; open steps are closed innermost first with ``reason``."""
        if self.frozen is not None:
            return self.frozen
        while self.open_steps:
            self.open_steps[-1].close(extra=reason)
            reason = None  # the reason belongs to the innermost step only
        if reason is not None:
            reason = self.ctx.redact_finding(reason)
            last = Step(
                title=reason.title,
                status=reason.status,
                elapsed_ms=0.0,
                started_ms=round(self.ctx.run.elapsed_ms(), 1),
                findings=(reason,),
            )
            _insert(self.steps, self.step_starts, last, time.monotonic())
        self.frozen = ProbeResult(
            probe=self.ctx.probe.id,
            subject=self.ctx.redact(self.subject),
            status=worst((s.status for s in self.steps), default=Status.SKIP),
            started=self.started,
            elapsed_ms=round((time.monotonic() - self._t0) * 1000, 1),
            steps=tuple(sorted(self.steps, key=lambda st: st.started_ms)),
            facts=dict(self.facts),
        )
        return self.frozen

    def __enter__(self) -> ResultRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None or isinstance(exc, Exception):
            self.close(reason=None if exc is None else _unrecorded(exc))
            if exc is not None:
                with contextlib.suppress(AttributeError):
                    exc.__rca_recorded__ = True  # type: ignore[attr-defined]


@dataclass(slots=True, kw_only=True)
class ProbeContext:
    """What one probe run sees: the run context, the facts, and its result recorders."""

    run: RunContext
    probe: Probe
    facts: Mapping[str, Any]
    published: dict[str, Any]
    results: list[ResultRecorder] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)
    #: Called with each fact as it is published (the pipeline releases waiting probes).
    on_publish: Callable[[str, Any], None] | None = None
    #: Waits until a fact is as known as it will be (the pipeline's; None: nothing to wait).
    wait_for: Callable[[str], Awaitable[None]] | None = None

    @property
    def options(self) -> Any:
        """The run's :class:`~analyzer.core.context.RunOptions`."""
        return self.run.options

    def fact(self, name: str) -> Any:
        """A fact published by another probe; :class:`MissingFact` if there is none."""
        if name in self.published:
            return self.published[name]
        if name not in self.facts:
            raise MissingFact(name)
        return self.facts[name]

    def fact_or(self, name: str, default: Any = None) -> Any:
        """A fact, or ``default`` when no probe published it."""
        try:
            return self.fact(name)
        except MissingFact:
            return default

    async def settled(self, name: str, default: Any = None) -> Any:
        """A fact the probe ``awaits``, once every planned probe that provides it has
        published it or ended; ``default`` when none published it."""
        if name not in self.probe.awaits:
            raise ValueError(f"probe {self.probe.id!r} does not declare that it awaits {name!r}")
        if self.wait_for is not None:
            await self.wait_for(name)
        return self.fact_or(name, default)

    def publish(self, name: str, value: Any, *, shown: bool = True) -> None:
        """Make a fact available to probes that need it (the probe must declare it).

        A fact is final once published (publish each once): probes waiting for it may
        start at once, before this probe ends. ``shown=False`` keeps it out of the report
        (bulky data such as DER chains).
        """
        if name not in self.probe.provides:
            raise ValueError(f"probe {self.probe.id!r} does not declare the fact {name!r}")
        self.published[name] = value
        if not shown:
            self.hidden.add(name)
        if self.on_publish is not None:
            self.on_publish(name, value)

    def order_results(self, subjects: Sequence[str]) -> None:
        """List the results in the order of ``subjects`` (checks run concurrently start in
        any order; the report keeps a stable one). Other subjects keep their place after."""
        rank = {subject: i for i, subject in enumerate(subjects)}
        self.results.sort(key=lambda rec: rank.get(rec.subject, len(rank)))

    def order_recorders(self, first: Sequence[ResultRecorder]) -> None:
        """List the results ``first`` first, in that order; the others keep theirs after."""
        rank = {id(rec): i for i, rec in enumerate(first)}
        self.results.sort(key=lambda rec: rank.get(id(rec), len(rank)))

    def drop_result(self, rec: ResultRecorder) -> None:
        """Leave ``rec`` out of the report (its check is being done again from scratch)."""
        self.results.remove(rec)

    def result(self, subject: str) -> ResultRecorder:
        """Start the result for one subject (use with ``with``)."""
        rec = ResultRecorder(self, subject)
        self.results.append(rec)
        captured = _CAPTURE.get()
        if captured is not None:
            captured.append(rec)
        return rec

    async def shared(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` once per batch for ``key``, and reuse what it recorded.

        ``work`` checks one endpoint, recording its results on this context, and returns
        a value for the probe. Outside a batch it simply runs. In a batch (the run has
        :class:`~analyzer.core.shared.SharedResults`) the first run to get here runs it;
        the others of the batch wait for it, then get a copy of its results (marked as
        shared) and its value. ``key`` must hold everything the results depend on besides
        the probe.
        When the checking run does not finish ``work`` (deadline, error), a waiting run
        checks for itself.
        """
        memo = self.run.shared_results
        if memo is None or not memo.checks:
            return await work()
        import asyncio  # noqa: PLC0415 - running probes only: `rca findings` reads this module

        key = (self.probe.id, key)
        while (pending := memo.entries.get(key)) is not None:
            entry = await asyncio.shield(pending)
            if entry is not None:
                self._adopt(entry)
                return entry.value  # type: ignore[no-any-return]
        future: asyncio.Future[SharedCheck | None] = asyncio.get_running_loop().create_future()
        memo.entries[key] = future
        captured: list[ResultRecorder] = []
        token = _CAPTURE.set(captured)
        started_ms = self.run.elapsed_ms()
        entry = None
        try:
            value = await work()
            frozen = [rec.frozen for rec in captured]
            if all(f is not None for f in frozen):
                results = tuple(f for f in frozen if f is not None)
                entry = SharedCheck(results=results, value=value, started_ms=started_ms)
            return value
        finally:
            _CAPTURE.reset(token)
            if entry is None:
                del memo.entries[key]
            future.set_result(entry)

    def _adopt(self, entry: SharedCheck) -> None:
        """Add copies of another run's results, moved onto this run's clock."""
        shift = self.run.elapsed_ms() - entry.started_ms
        for result in entry.results:
            note = (
                f"checked once in this batch, at {result.started:%Y-%m-%d %H:%M:%S} UTC, "
                "for every target that uses this endpoint: this is a copy of that check"
            )
            rec = ResultRecorder(self, result.subject)
            rec.frozen = dataclasses.replace(
                result,
                steps=tuple(_shifted(step, shift) for step in result.steps),
                facts={**result.facts, "shared": note},
            )
            self.results.append(rec)

    def redact(self, text: str) -> str:
        """``text`` with every secret of the run removed."""
        return self.run.options.credentials.redact(text)

    def redact_finding(self, finding: Finding) -> Finding:
        """A copy of ``finding`` with secrets removed from every string in it."""
        return redact_finding(self.run.options.credentials, finding)

    def op_timeout(self) -> float:
        """Timeout for one network operation: the option, bounded by the time left."""
        return max(0.05, min(self.run.options.op_timeout, self.run.remaining()))


#: Where :meth:`ProbeContext.result` also lists the recorders it makes, while a shared
#: check runs (per task: concurrent checks of one probe do not mix).
_CAPTURE: ContextVar[list[ResultRecorder] | None] = ContextVar("rca_capture", default=None)


def _shifted(step: Step, shift_ms: float) -> Step:
    return dataclasses.replace(
        step,
        started_ms=round(max(0.0, step.started_ms + shift_ms), 1),
        children=tuple(_shifted(child, shift_ms) for child in step.children),
    )


PROBE_DEADLINE = FindingSpec(
    code="probe.deadline_exceeded",
    status=Status.FAIL,
    title="The check did not finish before its deadline",
    meaning="The target answered too slowly (or not at all) for the step that was running "
    "when the probe's deadline expired; what was seen up to then is shown.",
    remediation="Check the server's load and the network path; if the target is known to be "
    "slow, run again with a larger --timeout.",
)
PROBE_CRASHED = FindingSpec(
    code="probe.crashed",
    status=Status.ERROR,
    title="rca could not judge this check",
    meaning="The probe stopped on an unexpected condition: a bug in rca or an answer it "
    "cannot interpret. This says nothing about the target.",
    remediation="Report it with the JSON report attached (it contains no secrets).",
)
PROBE_NETWORK = FindingSpec(
    code="probe.network_error",
    status=Status.FAIL,
    title="The target could not be reached or dropped the connection",
    meaning="A network operation failed (timeout, refused, reset, unreachable, TLS failure) "
    "where the probe did not expect it.",
    remediation="Check that the service runs and that firewalls allow the port from where "
    "rca runs.",
)
CORE_FINDINGS = (PROBE_DEADLINE, PROBE_CRASHED, PROBE_NETWORK)

# The pipeline's own findings (analyzer.core.pipeline): here, so that the registry lists them
# without importing the pipeline (which imports the registry).
PROBE_SKIPPED = FindingSpec(
    code="probe.skipped",
    status=Status.SKIP,
    title="Check not run: what it needs is missing",
    meaning="A check that this one depends on did not produce the information it needs "
    "(for example, no mail server was found, so none could be tested).",
    remediation="Fix the failure reported by the check named in the detail first.",
)
PROBE_NOT_APPLICABLE = FindingSpec(
    code="probe.not_applicable",
    status=Status.SKIP,
    title="Check does not apply to this target",
    meaning="The target's kind makes this check meaningless (for example, MX records of a "
    "bare IP address).",
)
RUN_DEADLINE = FindingSpec(
    code="run.deadline_exceeded",
    status=Status.FAIL,
    title="The run's overall deadline passed before this check could run",
    meaning="Earlier checks used up the whole --timeout; this one was never started.",
    remediation="Run again with a larger --timeout, or fewer --tests.",
)
PIPELINE_FINDINGS = (PROBE_SKIPPED, PROBE_NOT_APPLICABLE, RUN_DEADLINE)


def exception_finding(exc: BaseException) -> Finding:
    """The finding that explains an exception a probe did not handle itself."""
    from analyzer.core.errors import InternalError, NetError  # noqa: PLC0415

    if isinstance(exc, NetError):
        return PROBE_NETWORK(detail=str(exc), evidence={"phase": exc.phase})
    if isinstance(exc, TimeoutError):
        return PROBE_DEADLINE(detail="a timeout expired")
    if isinstance(exc, InternalError):
        # Raised where rca talked to the network, but not by the network: the original
        # exception is the cause, and its words are already in the message.
        original = exc.__cause__ or exc
        return PROBE_CRASHED(
            detail=f"rca failed: {exc}"[:2000],
            evidence={"exception": type(original).__qualname__},
        )
    return PROBE_CRASHED(
        detail=f"rca failed: {type(exc).__name__}: {exc}"[:2000],
        evidence={"exception": type(exc).__qualname__},
    )


def _unrecorded(exc: BaseException) -> Finding | None:
    if getattr(exc, "__rca_recorded__", False):
        return None
    return exception_finding(exc)


def redact_finding(creds: Credentials, finding: Finding) -> Finding:
    """A copy of ``finding`` with ``creds``' secrets and every URL's userinfo removed from
    every string in it (:meth:`~analyzer.core.context.Credentials.redact`)."""
    return Finding(
        code=finding.code,
        status=finding.status,
        title=creds.redact(finding.title),
        detail=creds.redact(finding.detail),
        remediation=finding.remediation,
        evidence=redact_json(finding.evidence, creds.redact),
        reference=finding.reference,
    )


def redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` (JSON data) with ``redact`` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_json(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v, redact) for v in value]
    return value
