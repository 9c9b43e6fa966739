"""The terminal view, rendered into a StringIO."""

from __future__ import annotations

import io
import re

import pytest

from analyzer.core.model import Report, Status
from analyzer.core.pipeline import ProgressEvent
from reports.terminal import TerminalView, plain_lines, use_color, verdict_line
from tests.reports.sample import XSS


class FakeTty(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_colour_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)


def test_verdict_line_names_verdict_target_counts_and_duration(sample: Report) -> None:
    # Given the sample report; When its verdict line is made
    line = verdict_line(sample)
    # Then it is one line with the verdict, the target, the counts and the duration
    assert line.startswith("rca FAILED: alice@contoso.test (")
    assert "1 fail" in line and "2 warn" in line and "1 skip" in line
    assert line.endswith(" s)")
    assert "\n" not in line


def test_errors_alone_make_an_inconclusive_verdict_that_says_why(sample: Report) -> None:
    from dataclasses import replace

    # Given a report whose only problem is rca's own error
    only_error = replace(sample, status=Status.ERROR,
                         results=tuple(r for r in sample.results if r.probe == "autodiscover"))
    # Then the verdict is inconclusive, and says rca could not judge
    assert verdict_line(only_error).startswith(
        "rca INCONCLUSIVE (rca could not judge every check): alice@contoso.test")


def test_plain_output_when_not_a_terminal(sample: Report) -> None:
    # Given a stream that is not a terminal
    out = io.StringIO()
    # When the final tree is printed
    TerminalView(enabled=True, target=sample.target).final(sample, out=out)
    # Then it is plain text: no escape sequences, no box drawing
    text = out.getvalue()
    assert "\x1b" not in text and "├" not in text
    assert text.splitlines() == plain_lines(sample)
    assert "[✗ fail] tls: mx1.contoso.test:25" in text
    assert "what to do: Install a renewed certificate" in text


def test_colour_tree_on_a_terminal(sample: Report) -> None:
    # Given a terminal
    out = FakeTty()
    # When the final tree is printed
    TerminalView(enabled=True, target=sample.target).final(sample, out=out)
    text = out.getvalue()
    # Then it has colour, a tree, the findings and the verdict
    assert "\x1b[" in text  # colour
    assert "├" in text or "└" in text  # a tree
    assert "tls.cert.expired" in text
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "rca FAILED: alice@contoso.test" in plain


def test_no_color_gives_plain_output_even_on_a_terminal(
    sample: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given NO_COLOR set, and a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    out = FakeTty()
    TerminalView(enabled=True, target=sample.target).final(sample, out=out)
    # Then the output is the plain lines
    assert out.getvalue().splitlines() == plain_lines(sample)


def test_dumb_terminal_gets_no_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given TERM=dumb; Then no colour, unless asked for explicitly
    monkeypatch.setenv("TERM", "dumb")
    assert use_color(FakeTty()) is False
    assert use_color(FakeTty(), True) is True


def test_progress_lines_while_running_when_not_a_terminal() -> None:
    # Given a view writing to a log (not a terminal)
    log = io.StringIO()
    view = TerminalView(enabled=True, target="contoso.test", stream=log)
    # When probes start and finish
    with view:
        view.progress(ProgressEvent(probe="dns", title="DNS records", event="started"))
        view.progress(ProgressEvent(probe="dns", title="DNS records", event="finished",
                                    status=Status.WARN, elapsed_ms=1234))
    # Then each finished probe is one plain line with its status as symbol and word
    assert log.getvalue() == "[! warn        ] DNS records (1.23 s)\n"


def test_live_progress_on_a_terminal_is_redrawn_and_cleared() -> None:
    # Given a view on a terminal
    tty = FakeTty()
    view = TerminalView(enabled=True, target="contoso.test", stream=tty)
    # When a probe starts and finishes
    with view:
        view.progress(ProgressEvent(probe="dns", title="DNS records", event="started"))
        view.progress(ProgressEvent(probe="dns", title="DNS records", event="finished",
                                    status=Status.PASS, elapsed_ms=10))
    # Then the live display showed the run and the probe
    text = tty.getvalue()
    assert "checking contoso.test" in text
    assert "DNS records" in text


def test_disabled_view_prints_nothing_while_running() -> None:
    # Given a disabled view (--quiet and --format json disable it)
    # When probes finish; Then nothing is printed
    log = io.StringIO()
    view = TerminalView(enabled=False, target="t", stream=log)
    with view:
        view.progress(ProgressEvent(probe="dns", title="DNS", event="finished",
                                    status=Status.PASS))
    assert log.getvalue() == ""


@pytest.mark.parametrize("tty", [False, True])
def test_server_text_cannot_drive_the_terminal_or_inject_markup(
    hostile: Report, tty: bool
) -> None:
    # Given a report whose server text holds escape sequences and rich markup
    out = FakeTty() if tty else io.StringIO()
    # When it is printed
    TerminalView(enabled=True, target=hostile.target).final(hostile, out=out)
    text = out.getvalue()
    # Then the server's ESC and bidi override are shown as text, never sent raw
    assert "\\x1b[2J" in text
    assert "\x1b[2J" not in text and "\u202e" not in text and "\x00" not in text
    # And markup-looking text is printed as it came
    assert XSS[0] in text


def test_rich_markup_in_server_text_is_not_interpreted() -> None:
    from datetime import UTC, datetime

    from analyzer.core.model import Finding, ProbeResult, Step

    # Given a finding title that looks like rich markup
    finding = Finding(code="x", status=Status.FAIL, title="[bold red]boom[/bold red] [link=x]y")
    step = Step(title="s", status=Status.FAIL, elapsed_ms=1, findings=(finding,))
    now = datetime.now(UTC)
    result = ProbeResult(probe="p", subject="s", status=Status.FAIL, started=now,
                         elapsed_ms=1, steps=(step,))
    report = Report(tool_version="1", target="t", started=now, elapsed_ms=1,
                    status=Status.FAIL, results=(result,))
    # When it is printed on a terminal
    out = FakeTty()
    TerminalView(enabled=True, target="t").final(report, out=out)
    # Then it is printed as it came
    assert "[bold red]boom[/bold red] [link=x]y" in out.getvalue()
