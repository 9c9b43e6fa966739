"""The batch index (``index.html`` in ``rca batch --out``): every target on one page.

One row per target, those needing attention first: the verdict (an icon and a word,
never colour alone), the target linked to its own HTML report, how many findings
failed, warned or could not be judged, the certificate that expires first, and what
changed since the previous run (``--history``). Self-contained like the reports: inline
CSS allowed by its hash in a Content-Security-Policy, no script, no request of any kind;
every value is autoescaped after :func:`reports.summary.clean_text`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from analyzer.core.model import EXIT_SEVERITY, EXIT_VERDICTS, Status

if TYPE_CHECKING:
    from analyzer.core.batchmodel import BatchResult, TargetSummary

__all__ = ["render_index"]

#: The index's own word for each exit code (a verdict of a whole target, not of one check).
_WORD = {0: "Passed", 1: "Warnings", 2: "Failed", 3: "Unknown"}
#: A certificate expiring within this many days is shown as a warning, expired as a failure.
EXPIRY_WARN_DAYS = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One target's line of the index."""

    summary: TargetSummary
    status: Status
    word: str
    html: str | None
    json: str | None
    expiry_text: str
    expiry_status: Status | None
    changes_text: str
    changes_status: Status | None


def _link(name: str | None) -> str | None:
    # File names come from the batch (letters, digits, . _ @ + -); quoted all the same.
    return quote(name) if name else None


def _row(s: TargetSummary) -> Row:
    status = EXIT_VERDICTS[s.exit_code]
    expiry_text, expiry_status = "—", None
    if s.expiry is not None:
        days = s.expiry.days
        when = f"in {days} days" if days >= 0 else f"expired {-days} days ago"
        expiry_text = f"{when} ({s.expiry.not_after.date()}) · {s.expiry.subject}"
        expiry_status = (
            Status.FAIL if days < 0 else Status.WARN if days < EXPIRY_WARN_DAYS else Status.PASS
        )
    if s.changes is None:
        changes_text, changes_status = "—", None
    elif not s.changes.items:
        changes_text, changes_status = "none", Status.PASS
    else:
        parts = []
        if s.changes.worse:
            parts.append(f"{s.changes.worse} worse")
        if s.changes.better:
            parts.append(f"{s.changes.better} better")
        other = len(s.changes.items) - s.changes.worse - s.changes.better
        if other:
            parts.append(f"{other} other")
        changes_text = ", ".join(parts)
        changes_status = Status.FAIL if s.changes.worse else Status.SKIP
    return Row(
        summary=s,
        status=status,
        word=_WORD[s.exit_code],
        html=_link(s.files.get("html")),
        json=_link(s.files.get("json")),
        expiry_text=expiry_text,
        expiry_status=expiry_status,
        changes_text=changes_text,
        changes_status=changes_status,
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_index(result: BatchResult) -> str:
    """The index page of a finished batch (a ``str``; write it as UTF-8)."""
    from reports.html import WORDS, _duration, _environment  # noqa: PLC0415

    env = _environment()
    css = env.get_template("report.css").render() + env.get_template("index.css").render()
    rows = sorted(
        (_row(s) for s in result.targets),
        key=lambda r: (-EXIT_SEVERITY[r.summary.exit_code], r.summary.name),
    )
    counts = {code: sum(1 for s in result.targets if s.exit_code == code) for code in _WORD}
    chips: list[tuple[Status, int, str]] = [
        (EXIT_VERDICTS[code], counts[code], phrase)
        for code, phrase in ((2, "failed"), (3, "unknown"), (1, "warned"), (0, "passed"))
        if counts[code]
    ]
    context: dict[str, Any] = {
        "result": result,
        "rows": rows,
        "chips": chips,
        "verdict": EXIT_VERDICTS[result.exit_code],
        "verdict_word": _WORD[result.exit_code],
        "started": _when(result.started),
        "duration": _duration(result.elapsed_s * 1000),
        "css": css,
        "csp_hash": base64.b64encode(hashlib.sha256(css.encode()).digest()).decode(),
        "history": any(s.changes is not None for s in result.targets),
        "WORDS": WORDS,
    }
    return str(env.get_template("index.html.j2").render(**context))
