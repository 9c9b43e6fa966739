"""The HTML report: one self-contained file for a support ticket.

Inline CSS, no script, no remote load (a Content-Security-Policy meta forbids them),
``<details>`` for the step tree so it reads without JavaScript. Every string from a
server passes through jinja2's autoescaping.
"""

from __future__ import annotations

from typing import Any

from analyzer.model import Report, Status, to_json

__all__ = ["render"]

_ORDER = {
    Status.FAIL: 0,
    Status.ERROR: 1,
    Status.INCONCLUSIVE: 2,
    Status.WARN: 3,
    Status.PASS: 4,
    Status.SKIP: 5,
}
_VERDICT = {
    Status.PASS: "Passed",
    Status.WARN: "Passed with warnings",
    Status.FAIL: "Failed",
    Status.INCONCLUSIVE: "Inconclusive",
    Status.ERROR: "Could not judge",
    Status.SKIP: "Nothing was run",
}


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined  # noqa: PLC0415

    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_pretty"] = _json_pretty
    env.filters["seconds"] = lambda ms: f"{ms / 1000:.2f} s"
    return env


def _json_pretty(value: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(to_json(value), indent=2, ensure_ascii=False)


def render(report: Report) -> str:
    """The report as one HTML document."""
    results = sorted(report.results, key=lambda r: (_ORDER[r.status], r.probe, r.subject))
    counts = {s: 0 for s in Status}
    for r in report.results:
        counts[r.status] += 1
    fix_first = [
        (result, finding)
        for result, finding in report.findings()
        if finding.status in (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE, Status.WARN)
    ]
    fix_first.sort(key=lambda pair: _ORDER[pair[1].status])
    template = _environment().get_template("report.html.j2")
    return str(
        template.render(
            report=report,
            results=results,
            counts=counts,
            verdict=_VERDICT[report.status],
            fix_first=fix_first[:20],
            Status=Status,
        )
    )
