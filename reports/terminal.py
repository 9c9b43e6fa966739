"""The terminal view: live progress while probes run, then a compact tree and the verdict.

Colour and live redrawing (rich) only when the stream is a terminal and neither
``NO_COLOR`` (https://no-color.org) nor ``TERM=dumb`` is set; otherwise plain lines, so
logs of scheduled runs stay readable. Status is always a symbol and a word, never colour
alone. Server text is made safe first (:func:`reports.summary.clean_text`): a hostile
banner cannot move the cursor, retitle the window or reorder the line, and rich never
reads it as markup.

``--quiet`` prints only :func:`verdict_line` (the CLI does that, not this view).
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from analyzer.core.model import Report, Status, Step
from reports.summary import check_status, clean_text, counts, verdict

if TYPE_CHECKING:
    from analyzer.core.pipeline import ProgressEvent

__all__ = ["TerminalView", "plain_lines", "use_color", "verdict_line"]

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
}
#: How much of a server's text one line of the tree shows (the reports keep it all).
MAX_LINE = 300


def _t(text: str, limit: int = MAX_LINE) -> str:
    text = clean_text(text).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def use_color(stream: Any, color: bool | None = None) -> bool:
    """Whether to draw with colour on ``stream``: ``color`` if given, else auto-detect."""
    if color is not None:
        return color
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def verdict_line(report: Report) -> str:
    """One line for monitoring output: verdict, target, counts, duration."""
    found = counts(report)
    parts = ", ".join(f"{n} {s.value}" for s, n in found.items() if n)
    word = _VERDICT[verdict(report)]
    if check_status(report) == 3 and found[Status.ERROR]:
        word += " (rca could not judge every check)"
    return (
        f"rca {word}: {_t(report.target)} "
        f"({parts or 'no results'}; {report.elapsed_ms / 1000:.1f} s)"
    )


def _console(out: IO[str], color: bool) -> Any:
    from rich.console import Console  # noqa: PLC0415

    return Console(
        file=out,
        highlight=False,
        markup=False,
        emoji=False,
        force_terminal=color,
        no_color=not color,
    )


class TerminalView:
    """Progress display while a check runs (a context manager), then :meth:`final`.

    ``color`` forces colour and live redrawing on (True) or off (False); by default
    they follow :func:`use_color` for the stream.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        target: str,
        stream: IO[str] | None = None,
        color: bool | None = None,
    ) -> None:
        self.enabled = enabled
        self.target = target
        self.stream = stream or sys.stderr
        self.color = color
        self.rich = enabled and use_color(self.stream, color)
        self._running: dict[str, str] = {}
        self._finished: list[tuple[str, Status, float]] = []
        self._live: Any = None

    def __enter__(self) -> TerminalView:
        if self.rich:
            from rich.live import Live  # noqa: PLC0415

            self._live = Live(
                self._render(),
                console=_console(self.stream, True),
                refresh_per_second=8,
                transient=True,
            )
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
                    f"[{status.symbol} {status.value:<12}] {_t(event.title)} "
                    f"({event.elapsed_ms / 1000:.2f} s)",
                    file=self.stream,
                    flush=True,
                )
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.text import Text  # noqa: PLC0415

        text = Text(f"rca: checking {_t(self.target)}\n", style="bold")
        for title, status, ms in self._finished:
            text.append(f"  {status.symbol} {status.value:<12}", style=_STYLE[status])
            text.append(f" {_t(title)} ({ms / 1000:.2f} s)\n")
        for title in self._running.values():
            text.append("  … running      ", style="cyan")
            text.append(f" {_t(title)}\n")
        return text

    def final(self, report: Report, *, out: IO[str] | None = None) -> None:
        """Print the step tree and the verdict to ``out`` (standard output)."""
        out = out or sys.stdout
        if use_color(out, self.color):
            console = _console(out, True)
            console.print(_rich_tree(report))
            console.print(verdict_line(report), style=_STYLE[verdict(report)])
            return
        for line in plain_lines(report):
            print(line, file=out)


def _rich_tree(report: Report) -> Any:
    from rich.text import Text  # noqa: PLC0415
    from rich.tree import Tree  # noqa: PLC0415

    root = Tree(Text(f"rca report for {_t(report.target)}", style="bold"))
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
    text.append(f"  {_t(title)}")
    text.append(f"  {ms / 1000:.2f} s", style="dim")
    return text


def _add_step(parent: Any, step: Step) -> None:
    from rich.text import Text  # noqa: PLC0415

    node = parent.add(_label(step.status, step.title, step.elapsed_ms))
    for finding in step.findings:
        if finding.status == Status.PASS:
            continue
        text = Text()
        text.append(f"{finding.status.symbol} {_t(finding.code, 80)}", style=_STYLE[finding.status])
        text.append(f": {_t(finding.title)}")
        if finding.detail:
            text.append(f" — {_t(finding.detail)}", style="dim")
        if finding.remediation:
            text.append(f"\n  → {_t(finding.remediation, 1000)}", style="italic")
        node.add(text)
    for child in step.children:
        if child.status in (Status.PASS, Status.SKIP) and not _has_notes(child):
            continue
        _add_step(node, child)


def _has_notes(step: Step) -> bool:
    return any(f.status != Status.PASS for s in step.walk() for f in s.findings)


def plain_lines(report: Report) -> list[str]:
    """The final tree as plain text lines (no colour, no box drawing)."""
    lines = [f"rca report for {_t(report.target)}"]
    for result in report.results:
        lines.append(
            f"[{result.status.symbol} {result.status.value}] {_t(result.probe, 80)}: "
            f"{_t(result.subject)} ({result.elapsed_ms / 1000:.2f} s)"
        )
        for step in result.steps:
            _plain_step(lines, step, 1)
    lines.append(verdict_line(report))
    return lines


def _plain_step(lines: list[str], step: Step, depth: int) -> None:
    pad = "  " * depth
    lines.append(f"{pad}[{step.status.symbol} {step.status.value}] {_t(step.title)}")
    for finding in step.findings:
        if finding.status == Status.PASS:
            continue
        lines.append(
            f"{pad}  {finding.status.value}: {_t(finding.code, 80)}: {_t(finding.title)}"
        )
        if finding.detail:
            lines.append(f"{pad}    {_t(finding.detail)}")
        if finding.remediation:
            lines.append(f"{pad}    what to do: {_t(finding.remediation, 1000)}")
    for child in step.children:
        if child.status in (Status.PASS, Status.SKIP) and not _has_notes(child):
            continue
        _plain_step(lines, child, depth + 1)
