"""The terminal view: live progress while probes run, then a compact tree and the verdict.

Uses rich when standard error is a terminal; plain lines otherwise (or with
``NO_COLOR``), so logs of scheduled runs stay readable. Status is always shown by a
symbol and a word, never by colour alone.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

from analyzer.model import Report, Status, Step

if TYPE_CHECKING:
    from analyzer.pipeline import ProgressEvent

__all__ = ["TerminalView", "verdict_line"]

_STYLE = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.INCONCLUSIVE: "magenta",
    Status.ERROR: "bold magenta",
    Status.SKIP: "dim",
}
_VERDICT = {
    Status.PASS: "PASSED",
    Status.WARN: "PASSED WITH WARNINGS",
    Status.FAIL: "FAILED",
    Status.INCONCLUSIVE: "INCONCLUSIVE",
    Status.ERROR: "COULD NOT JUDGE (errors)",
    Status.SKIP: "NOTHING RUN",
}


def verdict_line(report: Report) -> str:
    """One line for monitoring output: verdict, target, counts, duration."""
    counts = _counts(report)
    parts = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    return (
        f"rca {_VERDICT[report.status]}: {report.target} "
        f"({parts or 'no results'}; {report.elapsed_ms / 1000:.1f} s)"
    )


def _counts(report: Report) -> dict[Status, int]:
    counts = dict.fromkeys(Status, 0)
    for result in report.results:
        counts[result.status] += 1
    return counts


class TerminalView:
    """Progress display while a check runs (a context manager), then :meth:`final`."""

    def __init__(self, *, enabled: bool, target: str, stream: Any = None) -> None:
        self.enabled = enabled
        self.target = target
        self.stream = stream or sys.stderr
        self.rich = enabled and self.stream.isatty() and not os.environ.get("NO_COLOR")
        self._running: dict[str, str] = {}
        self._finished: list[tuple[str, Status, float]] = []
        self._live: Any = None

    def __enter__(self) -> TerminalView:
        if self.rich:
            from rich.console import Console  # noqa: PLC0415
            from rich.live import Live  # noqa: PLC0415

            console = Console(file=self.stream)
            self._live = Live(self._render(), console=console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def progress(self, event: ProgressEvent) -> None:
        """Pipeline callback: a probe was planned, started or finished."""
        if not self.enabled:
            return
        if event.event == "started":
            self._running[event.probe] = event.title
        elif event.event == "finished":
            self._running.pop(event.probe, None)
            status = event.status or Status.SKIP
            self._finished.append((event.title, status, event.elapsed_ms))
            if not self.rich:
                print(
                    f"[{status.symbol} {status.value:<12}] {event.title} "
                    f"({event.elapsed_ms / 1000:.2f} s)",
                    file=self.stream,
                    flush=True,
                )
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.text import Text  # noqa: PLC0415

        text = Text(f"rca: checking {self.target}\n", style="bold")
        for title, status, ms in self._finished:
            text.append(f"  {status.symbol} {status.value:<12}", style=_STYLE[status])
            text.append(f" {title} ({ms / 1000:.2f} s)\n")
        for title in self._running.values():
            text.append("  … running      ", style="cyan")
            text.append(f" {title}\n")
        return text

    def final(self, report: Report, *, out: Any = None) -> None:
        """Print the step tree and the verdict to ``out`` (standard output)."""
        out = out or sys.stdout
        use_rich = out.isatty() and not os.environ.get("NO_COLOR")
        if use_rich:
            from rich.console import Console  # noqa: PLC0415

            console = Console(file=out, highlight=False)
            console.print(self._rich_tree(report))
            console.print(verdict_line(report), style=_STYLE[report.status], markup=False)
            return
        for line in plain_lines(report):
            print(line, file=out)

    def _rich_tree(self, report: Report) -> Any:
        from rich.text import Text  # noqa: PLC0415
        from rich.tree import Tree  # noqa: PLC0415

        root = Tree(Text(f"rca report for {report.target}", style="bold"))
        for result in report.results:
            node = root.add(
                _label(result.status, f"{result.probe}: {result.subject}", result.elapsed_ms)
            )
            for step in result.steps:
                _add_step(node, step)
        return root


def _label(status: Status, title: str, ms: float) -> Any:
    from rich.text import Text  # noqa: PLC0415

    text = Text()
    text.append(f"{status.symbol} {status.value}", style=_STYLE[status])
    text.append(f"  {title}")
    text.append(f"  {ms / 1000:.2f} s", style="dim")
    return text


def _add_step(parent: Any, step: Step) -> None:
    from rich.text import Text  # noqa: PLC0415

    node = parent.add(_label(step.status, step.title, step.elapsed_ms))
    for finding in step.findings:
        if finding.status == Status.PASS:
            continue
        text = Text()
        text.append(f"{finding.status.symbol} {finding.code}", style=_STYLE[finding.status])
        text.append(f": {finding.title}")
        if finding.detail:
            text.append(f" — {finding.detail}", style="dim")
        if finding.remediation:
            text.append(f"\n  → {finding.remediation}", style="italic")
        node.add(text)
    for child in step.children:
        if child.status in (Status.PASS, Status.SKIP) and not _has_notes(child):
            continue
        _add_step(node, child)


def _has_notes(step: Step) -> bool:
    return any(f.status != Status.PASS for s in step.walk() for f in s.findings)


def plain_lines(report: Report) -> list[str]:
    """The final tree as plain text lines (no colour, no box drawing)."""
    lines = [f"rca report for {report.target}"]
    for result in report.results:
        lines.append(
            f"[{result.status.symbol} {result.status.value}] {result.probe}: {result.subject}"
            f" ({result.elapsed_ms / 1000:.2f} s)"
        )
        for step in result.steps:
            _plain_step(lines, step, 1)
    lines.append(verdict_line(report))
    return lines


def _plain_step(lines: list[str], step: Step, depth: int) -> None:
    pad = "  " * depth
    lines.append(f"{pad}[{step.status.symbol} {step.status.value}] {step.title}")
    for finding in step.findings:
        if finding.status == Status.PASS:
            continue
        lines.append(f"{pad}  {finding.status.value}: {finding.code}: {finding.title}")
        if finding.detail:
            lines.append(f"{pad}    {finding.detail}")
        if finding.remediation:
            lines.append(f"{pad}    what to do: {finding.remediation}")
    for child in step.children:
        if child.status in (Status.PASS, Status.SKIP) and not _has_notes(child):
            continue
        _plain_step(lines, child, depth + 1)
