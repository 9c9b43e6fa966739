"""The HTML report: one self-contained file to attach to a support ticket.

What it promises (tests/reports check each in a real browser):

* **Self-contained, no request of any kind.** Inline CSS, inline SVG for icons and the
  timeline, no script, no font, no image file. A Content-Security-Policy meta allows
  nothing but the one inline style sheet (by its hash), so even a rendering bug could
  not load or run anything.
* **Readable without JavaScript.** The step tree is nested ``<details>``; steps that need
  attention start open. Print CSS opens them all, so a PDF shows everything.
* **Server text is data.** Every value goes through jinja2's autoescaping, after
  :func:`reports.summary.clean_text` has made control and bidi characters visible;
  reference links become ``<a>`` only for ``http(s)`` URLs. Evidence, details and
  transcripts are bounded, so a hostile server cannot make the report huge.
* **Status is never colour alone**: an icon of its own shape and a word, always.

Layout: the verdict banner (target, when, how long, rca version, options, counts), "what
to fix first", a timeline of the probes, then one section per probe result, failures
first. A probe may have its own partial, ``templates/probe-<id>.html.j2``; evidence is
drawn by the partial for its shape (``templates/evidence-*.html.j2``: certificates, lists,
key/value tables, rows, JSON).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeGuard
from urllib.parse import urlsplit

from analyzer.core.model import Finding, Json, ProbeResult, Report, Status, Step, to_json
from reports.summary import (
    Certificate,
    certificates,
    check_status,
    clean_text,
    counts,
    fix_first,
    format_when,
    ordered_results,
    parse_time,
    template_environment,
    truncate,
    verdict,
)

if TYPE_CHECKING:
    from analyzer.core.batchmodel import Changes

__all__ = [
    "MAX_TRANSCRIPT_LINES",
    "icon_sheet",
    "render",
    "render_part",
    "render_result",
    "stylesheet",
    "stylesheet_hash",
]

#: Transcript lines shown per step (the JSON report keeps what the probe recorded).
MAX_TRANSCRIPT_LINES = 100
#: Characters shown of one transcript line, a detail, a title, one evidence string.
MAX_LINE, MAX_DETAIL, MAX_TITLE, MAX_VALUE = 400, 4000, 500, 1000
#: Items shown of one evidence list, and characters of one block of JSON evidence.
MAX_ITEMS, MAX_JSON = 50, 6000
#: Characters of transcripts and of evidence in the whole report; past them, the rest is
#: left to the JSON report, so that no target can make the HTML unreasonably large.
TRANSCRIPT_BUDGET, EVIDENCE_BUDGET = 150_000, 150_000

WORDS = {
    Status.PASS: "Pass",
    Status.WARN: "Warning",
    Status.FAIL: "Fail",
    Status.INCONCLUSIVE: "Inconclusive",
    Status.ERROR: "Error",
    Status.SKIP: "Skipped",
}
VERDICTS = {
    Status.PASS: "Passed",
    Status.WARN: "Passed with warnings",
    Status.FAIL: "Failed",
    Status.INCONCLUSIVE: "Inconclusive",
}
#: How a change since the previous run is marked: for the worse, the better, or neither.
CHANGE_STATUS = {"worse": Status.FAIL, "better": Status.PASS, "info": Status.SKIP}
CHANGE_WORDS = {"worse": "Worse", "better": "Better", "info": "Changed"}
_MARKS = {"send": ("C:", "c"), "recv": ("S:", "s"), "info": ("··", "n")}
_PARTIAL_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
_CERT_FIELDS = (
    "subject",
    "common_name",
    "issuer",
    "serial",
    "serial_hex",
    "not_before",
    "not_after",
    "dns_names",
    "sans",
    "san",
    "names",
    "ip_addresses",
    "key",
    "key_type",
    "key_bits",
    "signature_algorithm",
    "fingerprint_sha256",
    "sha256",
)


def render(report: Report, *, changes: Changes | None = None) -> str:
    """The report as one HTML document (a ``str``; write it as UTF-8).

    ``changes`` (from :func:`analyzer.operations.history.diff`) adds a "changes since the previous
    run" section under the verdict (``rca batch --history``).
    """
    return _Renderer(report, changes).render()


def render_part(report: Report, part: Literal["summary", "checks"]) -> str:
    """One part of the report page as an HTML fragment, exactly as :func:`render` draws it:
    ``summary`` (the verdict card and "what to fix first") or ``checks`` (one section per
    probe result). ``rca web`` shows them when a run ends; they need :func:`stylesheet`
    and :func:`icon_sheet` on the page."""
    renderer = _Renderer(report)
    env = _environment()
    return str(env.get_template(f"_{part}.html.j2").render(**renderer.context()))


def render_result(report: Report, result: ProbeResult, *, anchor: str) -> str:
    """The section of one probe result (its step tree, findings and transcripts), drawn
    as in the report; ``report`` supplies the run's start (certificate expiry is relative
    to it) and may be a provisional one while the run goes on. ``anchor`` is the
    section's element id."""
    renderer = _Renderer(report)
    env = _environment()
    return str(
        env.get_template(_partial(result, _page_parts()[2])).render(
            result=result, anchor=anchor, r=renderer
        )
    )


def stylesheet() -> str:
    """The report's style sheet (inline in the report; a file of its own for rca web)."""
    return _page_parts()[0]


def stylesheet_hash() -> str:
    """The base64 SHA-256 of :func:`stylesheet`, for a ``style-src 'sha256-…'`` policy
    (computed once, as the report's own policy uses it)."""
    return _page_parts()[1]


def icon_sheet() -> str:
    """The SVG symbols the status icons of :func:`render_part` and :func:`render_result`
    refer to (once per page)."""
    return str(_environment().get_template("_icons.html.j2").render())


def _partial(result: ProbeResult, names: frozenset[str]) -> str:
    """The template drawing ``result``: its probe's own partial, or the default one."""
    # Flat names: the package data glob (templates/*) ships no subfolder.
    own = f"probe-{result.probe}.html.j2"
    mine = _PARTIAL_NAME.fullmatch(result.probe) is not None and own in names
    return own if mine else "probe-default.html.j2"


# --- view pieces ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """One piece of evidence, drawn by ``templates/evidence-<kind>.html.j2``."""

    kind: str
    label: str
    value: Any
    omitted: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptView:
    """The lines of a transcript to show, and how many were left out."""

    lines: tuple[tuple[str, str, str, str], ...]  # (offset, css class, mark, text)
    total: int
    omitted: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineRow:
    """One probe result on the timeline; ``x`` and ``width`` are in 1/1000 of the axis."""

    result: ProbeResult
    anchor: str
    x: float
    width: float
    offset_ms: float


def _duration(ms: float) -> str:
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


def _offset_ms(started: datetime, run_started: datetime) -> float:
    """How long after the run a result started; 0 if unknown (a hand-edited JSON report
    may mix times with and without a time zone)."""
    try:
        return max(0.0, (started - run_started).total_seconds() * 1000)
    except TypeError:
        return 0.0


def _safe_url(url: str) -> str | None:
    """``url`` if it is a plain http(s) URL to link to, else None (shown as text)."""
    url = url.strip()
    if not url or clean_text(url) != url or any(ch.isspace() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalar_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return truncate(str(value), MAX_VALUE)


def _value_text(value: Any) -> str:
    """A compact one-cell rendering of a scalar or a list/dict of scalars."""
    if _is_scalar(value):
        return _scalar_text(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return "—"
        shown = ", ".join(_scalar_text(v) if _is_scalar(v) else _json(v) for v in value[:MAX_ITEMS])
        more = len(value) - MAX_ITEMS
        return truncate(shown + (f" … and {more} more" if more > 0 else ""), MAX_VALUE)
    if isinstance(value, Mapping):
        if not value:
            return "—"
        return truncate(", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()), MAX_VALUE)
    return truncate(str(value), MAX_VALUE)


def _json(value: Any) -> str:
    """JSON text: on one line when short, else indented."""
    data = to_json(value)
    compact = json.dumps(data, ensure_ascii=False)
    return compact if len(compact) <= 90 else json.dumps(data, indent=2, ensure_ascii=False)


def _simple_list(value: Any) -> TypeGuard[Sequence[Any]]:
    """A list of scalars (DNS records, names, addresses)."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(_is_scalar(v) for v in value)
    )


def _flat(value: Any) -> bool:
    """A scalar, or a list of scalars: fits one table cell."""
    return _is_scalar(value) or _simple_list(value)


_SECRET_KEY = re.compile(r"password|passwd|token|authorization|cookie|api[_-]?key", re.I)


def _public_options(options: Mapping[str, Json]) -> tuple[list[tuple[str, str]], int]:
    """The options that were set, as rows, and how many were left at an empty default.

    Anything keyed like a secret is withheld whatever its value: the model holds no
    secret (the credentials describe themselves without one), and this is a second lock
    for reports read back from JSON written elsewhere.
    """
    rows = []
    unset = 0
    for key, value in options.items():
        if value is None or value == [] or value == {} or value == "":
            unset += 1
        elif _SECRET_KEY.search(key) and not isinstance(value, bool):
            rows.append((key, "(withheld)"))
        elif key == "credentials" and isinstance(value, Mapping):
            user, secret = value.get("username"), value.get("secret")
            if not user and not secret:
                unset += 1
                continue
            text = f"{_scalar_text(user) if user else 'no user name'}"
            rows.append((key, text + (f", with a {secret} (not shown)" if secret else "")))
        else:
            rows.append((key, _value_text(value)))
    return rows, unset


class _Renderer:
    """Turns one report into HTML; holds the per-render budgets (no module state)."""

    def __init__(self, report: Report, changes: Changes | None = None) -> None:
        self.report = report
        self.changes = changes
        self.transcript_left = TRANSCRIPT_BUDGET
        self.evidence_left = EVIDENCE_BUDGET
        self.anchors = {id(f): f"f{i}" for i, (_, f) in enumerate(report.findings())}

    # --- template helpers -----------------------------------------------------------------

    def anchor(self, finding: Finding) -> str:
        """The element id of a finding (for "what to fix first" links)."""
        return self.anchors.get(id(finding), "")

    def evidence(self, finding: Finding) -> list[Block]:
        """The finding's evidence split into blocks, each drawn by the partial for its shape.

        Shapes: ``certificates`` (a list of certificate mappings), a list of simple values
        (records) as a list, a mapping of simple values (headers) as a key/value table, a
        list of flat records as a table with a column per field, anything else as JSON.
        Simple values and one-item lists gather in one key/value table at the top.
        """
        blocks: list[Block] = []
        scalars: list[tuple[str, str]] = []
        for key, value in finding.evidence.items():
            label = str(key)
            if key in ("certificates", "certificate"):
                certs = value if isinstance(value, Sequence) else [value]
                if certs and all(isinstance(c, Mapping) for c in certs):
                    blocks.append(self._certificates(label, certs))
                    continue
            if _is_scalar(value) or (_simple_list(value) and len(value) <= 1):
                scalars += self._fit([(label, _value_text(value))])
            elif _simple_list(value):
                items = self._fit([_scalar_text(v) for v in value[:MAX_ITEMS]])
                omitted = len(value) - len(items)
                blocks.append(Block(kind="list", label=label, value=items, omitted=omitted))
            elif isinstance(value, Mapping) and all(_flat(v) for v in value.values()):
                pairs = list(value.items())[:MAX_ITEMS]
                rows = self._fit([(str(k), _value_text(v)) for k, v in pairs])
                omitted = len(value) - len(rows)
                blocks.append(Block(kind="table", label=label, value=rows, omitted=omitted))
            elif self._is_rows(value):
                blocks.append(self._rows(label, value))
            else:
                blocks.append(self._json_block(label, value))
        if scalars:
            blocks.insert(0, Block(kind="table", label="", value=scalars))
        return blocks

    def _fit(self, items: list[Any]) -> list[Any]:
        """The leading ``items`` (strings or tuples of them) that fit the evidence budget."""
        taken = []
        for item in items:
            cost = sum(map(len, item)) if isinstance(item, tuple) else len(item)
            cost += 30  # markup
            if cost > self.evidence_left:
                self.evidence_left = 0
                break
            self.evidence_left -= cost
            taken.append(item)
        return taken

    def presented(self, result: ProbeResult) -> list[tuple[Certificate, str]]:
        """Certificates in the result's evidence (leaf first) with their expiry phrase."""
        return [
            (cert, self.expiry(cert.not_after.isoformat()))
            for cert in certificates(result.findings())
        ]

    @staticmethod
    def skip_reason(result: ProbeResult) -> str:
        """Why a skipped result did not run: its first finding's detail (or title)."""
        for finding in result.findings():
            return finding.detail or finding.title
        return "no reason was recorded"

    def facts(self, result: ProbeResult) -> Block:
        """What the probe published for other probes, as bounded JSON."""
        return self._json_block("", result.facts)

    def transcript(self, step: Step) -> TranscriptView:
        """The step's transcript lines to show, within the per-step and whole-report bounds."""
        lines: list[tuple[str, str, str, str]] = []
        shown = step.transcript[:MAX_TRANSCRIPT_LINES]
        width = max((len(f"+{line.at_ms:.1f}") for line in shown), default=0)
        for line in shown:
            text = truncate(line.text, MAX_LINE)
            cost = len(text) + width + 20  # the text and its markup
            if cost > self.transcript_left:
                self.transcript_left = 0
                break
            self.transcript_left -= cost
            mark, css = _MARKS.get(line.direction, _MARKS["info"])
            lines.append((f"+{line.at_ms:.1f}".rjust(width), css, mark, text))
        total = len(step.transcript)
        return TranscriptView(lines=tuple(lines), total=total, omitted=total - len(lines))

    def timeline(self) -> tuple[list[TimelineRow], list[str]]:
        """Rows of the timeline (run order) and the axis labels (0, ¼, ½, ¾, end)."""
        report = self.report
        offsets = [_offset_ms(r.started, report.started) for r in report.results]
        ends = (o + r.elapsed_ms for o, r in zip(offsets, report.results, strict=True))
        span = max([report.elapsed_ms, *ends])
        span = span if span > 0 else 1.0
        anchors = {id(r): f"p{i}" for i, r in enumerate(ordered_results(report))}
        rows = [
            TimelineRow(
                result=r,
                anchor=anchors[id(r)],
                x=round(min(o / span, 1.0) * 1000, 1),
                width=round(max(r.elapsed_ms / span * 1000, 2.0), 1),
                offset_ms=o,
            )
            for o, r in sorted(zip(offsets, report.results, strict=True), key=lambda p: p[0])
        ]
        axis = [_duration(span * q / 4) if q else "0" for q in range(5)]
        return rows, axis

    def expiry(self, value: Any) -> str:
        """``not_after`` relative to when the check ran: "in 12 days", "expired 3 days ago"."""
        not_after = parse_time(value)
        if not_after is None:
            return ""
        days = (not_after - self.report.started.astimezone(UTC)).total_seconds() / 86400
        unit = "day" if round(abs(days)) == 1 else "days"
        if days >= 0:
            return f"expires {days:.0f} {unit} after the check"
        return f"expired {-days:.0f} {unit} before the check"

    # --- evidence shapes ------------------------------------------------------------------

    def _certificates(self, label: str, certs: Sequence[Any]) -> Block:
        tables = []
        for cert in list(certs)[:MAX_ITEMS]:
            keys = [k for k in _CERT_FIELDS if k in cert]
            keys += [k for k in cert if k not in _CERT_FIELDS]
            rows = []
            for key in keys:
                when = parse_time(cert[key]) if key in ("not_before", "not_after") else None
                text = format_when(when) if when is not None else _value_text(cert[key])
                rows.append((str(key), text, self.expiry(cert[key]) if key == "not_after" else ""))
            rows = self._fit(rows)
            if not rows:
                break
            tables.append(rows)
        omitted = len(certs) - len(tables)
        return Block(kind="certificates", label=label, value=tables, omitted=omitted)

    @staticmethod
    def _is_rows(value: Any) -> TypeGuard[Sequence[Mapping[str, Any]]]:
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            return False
        if not all(isinstance(v, Mapping) and all(_flat(x) for x in v.values()) for v in value):
            return False
        columns = {k for v in value for k in v}
        return len(columns) <= 8

    def _rows(self, label: str, value: Sequence[Mapping[str, Any]]) -> Block:
        columns: list[str] = []
        for item in value:
            columns += [str(k) for k in item if str(k) not in columns]
        rows = [
            list(cells)
            for cells in self._fit(
                [tuple(_value_text(item.get(c)) for c in columns) for item in value[:MAX_ITEMS]]
            )
        ]
        return Block(
            kind="rows", label=label, value=(columns, rows), omitted=len(value) - len(rows)
        )

    def _json_block(self, label: str, value: Any) -> Block:
        text = _json(value)
        if self.evidence_left <= 0:
            return Block(kind="json", label=label, value="", omitted=len(text))
        limit = min(MAX_JSON, self.evidence_left)
        self.evidence_left -= min(len(text), limit)
        shown = text[:limit]
        return Block(kind="json", label=label, value=shown, omitted=len(text) - len(shown))

    # --- the page -------------------------------------------------------------------------

    def context(self) -> dict[str, Any]:
        """The variables of ``report.html.j2`` and of its parts."""
        report = self.report
        css, csp_hash, names = _page_parts()
        sections = [
            (result, f"p{index}", _partial(result, names))
            for index, result in enumerate(ordered_results(report))
        ]
        rows, axis = self.timeline()
        options, unset = _public_options(report.options)
        verdict_status = verdict(report)
        return dict(
            report=report,
            css=css,
            csp_hash=csp_hash,
            sections=sections,
            counts=counts(report),
            verdict=verdict_status,
            verdict_word=VERDICTS[verdict_status],
            sentence=_sentence(report),
            exit_code=check_status(report),
            fixes=fix_first(report),
            options=options,
            unset_options=unset,
            environment=[(str(k), _value_text(v)) for k, v in report.environment.items()],
            timeline=rows,
            axis=axis,
            started=format_when(report.started),
            r=self,
            changes=self.changes,
            CHANGE_STATUS=CHANGE_STATUS,
            CHANGE_WORDS=CHANGE_WORDS,
        )

    def render(self) -> str:
        env = _environment()
        return str(env.get_template("report.html.j2").render(**self.context()))


#: Statuses in the order a reader cares about, with how a count of them reads.
PHRASES = (
    (Status.FAIL, "failed"),
    (Status.ERROR, "could not judge"),
    (Status.INCONCLUSIVE, "inconclusive"),
    (Status.WARN, "warned"),
    (Status.PASS, "passed"),
    (Status.SKIP, "skipped"),
)


def _sentence(report: Report) -> str:
    """One line under the verdict: how many checks of how many subjects."""
    total = len(report.results)
    if not total:
        return "No check ran."
    subjects = len({r.subject for r in report.results})
    noun = "check" if total == 1 else "checks"
    where = "one subject" if subjects == 1 else f"{subjects} subjects"
    return f"{total} {noun} of {where}."


@functools.cache
def _page_parts() -> tuple[str, str, frozenset[str]]:
    """What every page shares: the CSS, its CSP hash, and the template names (listing
    them reads the package folder), computed once with the environment."""
    env = _environment()
    css = str(env.get_template("report.css").render())
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, digest, frozenset(env.list_templates())


@functools.cache
def _environment() -> Any:
    """The one template environment of the process: it keeps the compiled templates
    (compiling them costs about 50 ms, five times the rendering of a typical report).
    Not reloading them (:func:`~reports.summary.template_environment`) saves about a tenth
    of a batch's report writing."""
    env = template_environment("reports")
    env.filters["duration"] = _duration
    env.filters["when"] = format_when
    env.filters["cut"] = truncate
    env.filters["safe_url"] = _safe_url
    env.filters["json"] = _json
    env.globals.update(
        MAX_DETAIL=MAX_DETAIL, MAX_TITLE=MAX_TITLE, WORDS=WORDS, Status=Status, PHRASES=PHRASES
    )
    return env
