"""The pages' templates (``analyzer/operations/web/templates``) and the pieces drawn from a report.

Autoescaping is on and every value passes :func:`reports.summary.clean_text` first, as
in the HTML report: a target or a banner holding HTML is shown as text. Report parts come
from :mod:`reports.html` and are inserted as they are (already escaped there).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from reports.summary import format_when, template_environment

if TYPE_CHECKING:
    from analyzer.core.model import Report
    from analyzer.operations.web.runs import Run

__all__ = ["done_parts", "environment", "page"]


#: A moment as the pages show it (UTC), as the reports do.
when = format_when


@functools.cache
def environment() -> Any:
    """The one template environment of the process."""
    from reports.html import WORDS, icon_sheet  # noqa: PLC0415

    env = template_environment("analyzer.operations.web")
    env.filters["when"] = when
    env.globals.update(icons=icon_sheet(), WORDS=WORDS)
    return env


def page(name: str, **context: Any) -> str:
    """Render the page template ``name``."""
    return str(environment().get_template(name).render(**context))


def done_parts(run: Run, report: Report, *, previous: str = "") -> tuple[str, str]:
    """What a finished run shows above and in place of its live steps: the downloads and
    the report's verdict with "what to fix first"; and the report's sections.
    ``previous``: the history key of the run to compare with ("" if none)."""
    from reports.html import render_part  # noqa: PLC0415

    summary = page(
        "_done.html.j2", run=run, report=report, previous=previous,
        summary=render_part(report, "summary"),
    )
    return summary, render_part(report, "checks")
