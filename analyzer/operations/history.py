"""History of scheduled runs, and what changed between two reports.

:class:`History` keeps each run's JSON report per target (``DIR/<name>/<UTC time>.json``)
and prunes old ones (``keep`` runs, ``keep_days`` days; the newest is always kept, the
next run compares with it). :func:`diff` compares two reports of the same target and
lists what a person on call wants to know first::

    new          a problem (finding code on a subject, warn or worse) that was not there
    resolved     a problem that is gone
    status       a check (probe on a subject) whose status changed, appeared or went away
    verdict      the whole report's verdict changed
    certificate  a server presents another certificate (rotated), or its expiry is near
    dns          MX, SPF or DMARC records changed
    port         a port is no longer open (closed, filtered, unreachable), or open again

``rca diff OLD.json NEW.json`` prints :func:`format_text`; a batch with ``--history``
puts the same list in each HTML report and in the index. The comparison reads only
the model (the reports' findings, evidence and facts): it never touches the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analyzer.core.batchmodel import Change, ChangeDirection, Changes
from analyzer.core.model import (
    EXIT_SEVERITY,
    EXIT_WORDS,
    Finding,
    Report,
    Status,
    report_from_json,
)
from reports.summary import Certificate, certificates, check_status, format_when

__all__ = [
    "History",
    "diff",
    "format_text",
    "load_report",
]


#: Statuses that make a finding "a problem" for the comparison.
_PROBLEM = (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE, Status.WARN)
#: A leaf certificate expiring within this many days is listed with its countdown.
EXPIRY_NOTICE_DAYS = 30
#: Order of the kinds in a change list: what needs attention first.
_KIND_ORDER: dict[str, int] = {
    "verdict": 0,
    "new": 1,
    "port": 2,
    "certificate": 3,
    "dns": 4,
    "status": 5,
    "resolved": 6,
}
_DIRECTION_ORDER = {"worse": 0, "info": 1, "better": 2}


# --- comparing two reports ----------------------------------------------------------------------


def diff(old: Report, new: Report, *, expiry_days: int = EXPIRY_NOTICE_DAYS) -> Changes:
    """What changed from ``old`` to ``new`` (two reports of the same target)."""
    items: list[Change] = []
    old_code, new_code = check_status(old), check_status(new)
    if old_code != new_code:
        items.append(
            Change(
                kind="verdict",
                direction=_direction(old_code, new_code),
                subject=new.target,
                title=f"Verdict {EXIT_WORDS[old_code]} → {EXIT_WORDS[new_code]}",
                before=EXIT_WORDS[old_code],
                after=EXIT_WORDS[new_code],
            )
        )
    found, explained = _finding_changes(old, new)
    items += found
    items += _status_changes(old, new, explained=explained)
    items += _certificate_changes(old, new, expiry_days=expiry_days)
    items += _dns_changes(old, new)
    items += _port_changes(old, new)
    items.sort(key=lambda c: (_KIND_ORDER[c.kind], _DIRECTION_ORDER[c.direction], c.subject))
    return Changes(
        target=new.target,
        old_started=old.started,
        new_started=new.started,
        old_verdict=old_code,
        new_verdict=new_code,
        items=tuple(items),
    )


def _direction(before: int, after: int) -> ChangeDirection:
    b, a = EXIT_SEVERITY[before], EXIT_SEVERITY[after]
    return "worse" if a > b else "better" if a < b else "info"


def _problems(report: Report) -> dict[tuple[str, str, str], Finding]:
    """The worst finding per (probe, subject, code) among those that are problems."""
    found: dict[tuple[str, str, str], Finding] = {}
    for result, finding in report.findings():
        if finding.status not in _PROBLEM:
            continue
        key = (result.probe, result.subject, finding.code)
        if key not in found or finding.status.severity > found[key].status.severity:
            found[key] = finding
    return found


def _finding_changes(
    old: Report, new: Report
) -> tuple[list[Change], set[tuple[str, str]]]:
    """New, resolved and changed problems, and the (probe, subject) pairs they explain."""
    before, after = _problems(old), _problems(new)
    changes = []
    explained: set[tuple[str, str]] = set()
    for key, finding in after.items():
        probe, subject, code = key
        was = before.get(key)
        if was is None or was.status != finding.status:
            explained.add((probe, subject))
        if was is None:
            changes.append(
                Change(
                    kind="new",
                    direction="worse",
                    subject=subject,
                    title=f"New {finding.status.value}: {finding.title}",
                    after=finding.status.value,
                    code=code,
                )
            )
        elif was.status != finding.status:
            worse = finding.status.severity > was.status.severity
            changes.append(
                Change(
                    kind="status",
                    direction="worse" if worse else "better",
                    subject=subject,
                    title=f"{finding.title}: {was.status.value} → {finding.status.value}",
                    before=was.status.value,
                    after=finding.status.value,
                    code=code,
                )
            )
    for key, finding in before.items():
        if key not in after:
            explained.add((key[0], key[1]))
            changes.append(
                Change(
                    kind="resolved",
                    direction="better",
                    subject=key[1],
                    title=f"Resolved: {finding.title}",
                    before=finding.status.value,
                    code=key[2],
                )
            )
    return changes, explained


def _result_status(report: Report) -> dict[tuple[str, str], Status]:
    found: dict[tuple[str, str], Status] = {}
    for r in report.results:
        key = (r.probe, r.subject)
        if key not in found or r.status.severity > found[key].severity:
            found[key] = r.status
    return found


def _status_changes(
    old: Report, new: Report, *, explained: set[tuple[str, str]]
) -> list[Change]:
    """Checks whose status changed, appeared or disappeared (probes that ran in both),
    unless a new, resolved or changed problem on the same check already says so."""
    before, after = _result_status(old), _result_status(new)
    both = {p for p, _ in before} & {p for p, _ in after}
    changes = []
    for key in sorted(set(before) | set(after)):
        probe, subject = key
        if probe not in both or key in explained:
            continue  # ran only once (other --tests), or already told by its findings
        was, now = before.get(key), after.get(key)
        if was == now:
            continue
        if was is None:
            direction: ChangeDirection = "info"
            title = f"{probe} now checks {subject} ({now.value if now else '?'})"
        elif now is None:
            direction = "info"
            title = f"{probe} no longer checks {subject} (was {was.value})"
        else:
            direction = "worse" if now.severity > was.severity else "better"
            if Status.SKIP in (was, now):
                direction = "info"
            title = f"{probe} on {subject}: {was.value} → {now.value}"
        changes.append(
            Change(
                kind="status",
                direction=direction,
                subject=subject,
                title=title,
                before=was.value if was else None,
                after=now.value if now else None,
                code=probe,
            )
        )
    return changes


def leaf_certificates(report: Report) -> dict[str, Certificate]:
    """The leaf certificate each endpoint presented (by the result's subject)."""
    leaves: dict[str, Certificate] = {}
    for result in report.results:
        if result.subject in leaves:
            continue
        certs = certificates(result.findings())
        leaf = next((c for c in certs if c.fields.get("is_ca") is not True), None)
        if leaf is not None:
            leaves[result.subject] = leaf
    return leaves


def _days(delta: timedelta) -> int:
    return int(delta.total_seconds() // 86400)


def _certificate_changes(old: Report, new: Report, *, expiry_days: int) -> list[Change]:
    before, after = leaf_certificates(old), leaf_certificates(new)
    changes = []
    now = new.started.astimezone(UTC)
    for subject, cert in sorted(after.items()):
        was = before.get(subject)
        left = _days(cert.not_after - now)
        if was is not None and was.serial != cert.serial:
            changes.append(
                Change(
                    kind="certificate",
                    direction="better" if cert.not_after > was.not_after else "info",
                    subject=subject,
                    title=f"Certificate rotated (now valid until {cert.not_after.date()}, "
                    f"{left} days left)",
                    before=f"serial {was.serial}, until {was.not_after.date()}",
                    after=f"serial {cert.serial}, until {cert.not_after.date()}",
                )
            )
        elif left < expiry_days:
            earlier = (
                f"{_days(was.not_after - old.started.astimezone(UTC))} days left"
                if was is not None
                else None
            )
            word = f"expires in {left} days" if left >= 0 else f"expired {-left} days ago"
            changes.append(
                Change(
                    kind="certificate",
                    direction="worse",
                    subject=subject,
                    title=f"Certificate {word} ({cert.not_after.date()})",
                    before=earlier,
                    after=f"{left} days left",
                )
            )
    return changes


_SPF_CODE = re.compile(r"^dns\.spf\.")
_DMARC_CODE = re.compile(r"^dns\.dmarc\.")


def dns_records(report: Report) -> dict[str, str]:
    """The MX, SPF and DMARC records a report saw (only those its checks looked at).

    MX comes from the DNS check's ``mx_hosts`` fact (preference, host, addresses); SPF
    and DMARC from the mail-authentication findings' ``record`` evidence of the target's
    own domain (``(none)`` when the check ran and found no record).
    """
    records: dict[str, str] = {}
    for result in report.results:
        if result.probe == "dns" and "mx_hosts" in result.facts:
            records["MX"] = _mx_text(result.facts["mx_hosts"])
        if result.probe == "mailauth":
            for label, pattern in (("SPF", _SPF_CODE), ("DMARC", _DMARC_CODE)):
                if label in records:
                    continue
                found = _first_record(result.findings(), pattern)
                if found is not None:
                    records[label] = found
    return records


def _first_record(findings: Iterable[Finding], pattern: re.Pattern[str]) -> str | None:
    seen_code = False
    for finding in findings:
        if not pattern.match(finding.code):
            continue
        seen_code = True
        record = finding.evidence.get("record")
        if isinstance(record, str):
            return record
    return "(none)" if seen_code else None


def _mx_text(value: Any) -> str:
    if not isinstance(value, list) or not value:
        return "(none)"
    lines = []
    for mx in value:
        if not isinstance(mx, Mapping):
            continue
        addresses = [*(mx.get("ipv4") or ()), *(mx.get("ipv6") or ())]
        where = f" ({', '.join(map(str, addresses))})" if addresses else ""
        lines.append(f"{mx.get('preference', '?')} {mx.get('host', '?')}{where}")
    return "; ".join(sorted(lines)) or "(none)"


def _dns_changes(old: Report, new: Report) -> list[Change]:
    before, after = dns_records(old), dns_records(new)
    return [
        Change(
            kind="dns",
            direction="info",
            subject=new.target,
            title=f"{label} records changed",
            before=before[label],
            after=after[label],
        )
        for label in ("MX", "SPF", "DMARC")
        if label in before and label in after and before[label] != after[label]
    ]


def port_states(report: Report) -> dict[tuple[str, str], str]:
    """``(endpoint, address) -> state`` (open, closed, filtered...) from the ports check."""
    states: dict[tuple[str, str], str] = {}
    for result in report.results:
        if result.probe != "ports":
            continue
        for finding in result.findings():
            address, state = finding.evidence.get("address"), finding.evidence.get("state")
            if isinstance(address, str) and isinstance(state, str):
                states.setdefault((result.subject, address), state)
    return states


def _port_changes(old: Report, new: Report) -> list[Change]:
    before, after = port_states(old), port_states(new)
    changes = []
    for key in sorted(after):
        was, now = before.get(key), after[key]
        if was is None or was == now:
            continue
        if was == "open" or now == "open":
            subject, address = key
            changes.append(
                Change(
                    kind="port",
                    direction="better" if now == "open" else "worse",
                    subject=subject,
                    title=f"{subject} on {address}: {was} → {now}",
                    before=was,
                    after=now,
                )
            )
    return changes


def format_text(changes: Changes) -> str:
    """The changes as plain text lines (``rca diff``), worst first."""
    head = (
        f"{changes.target}: {len(changes.items)} change(s) from "
        f"{format_when(changes.old_started)} to {format_when(changes.new_started)}"
    )
    if not changes.items:
        return head.replace(" change(s)", " changes: none") + "\n"
    mark = {"worse": "-", "better": "+", "info": "~"}
    lines = [head]
    for c in changes.items:
        line = f"  {mark[c.direction]} [{c.kind}] {c.title}"
        if c.subject and c.subject != changes.target and c.subject not in c.title:
            line += f" — {c.subject}"
        if c.code and c.code not in line:
            line += f" ({c.code})"
        lines.append(line)
        if c.kind == "dns" or (c.kind == "certificate" and c.before and "serial" in c.before):
            lines.append(f"      before: {c.before}")
            lines.append(f"      after:  {c.after}")
    return "\n".join(lines) + "\n"


# --- keeping runs -------------------------------------------------------------------------------

_STAMP = "%Y%m%dT%H%M%S%fZ"
_FILE = re.compile(r"^\d{8}T\d{12}Z\.json$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")


def load_report(path: Path) -> Report:
    """A saved JSON report; :class:`ValueError` if it is not one (or :class:`OSError`)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    try:
        return report_from_json(data)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an rca JSON report: {exc}") from None


class History:
    """Past JSON reports per target name under ``directory``, pruned as runs are added.

    ``keep``: runs kept per target (at least 1); ``keep_days``: runs older than this are
    removed too (``None``: no age limit). The newest run is never removed.
    """

    def __init__(self, directory: Path, *, keep: int = 30, keep_days: float | None = None):
        if keep < 1:
            raise ValueError("keep must be at least 1")
        if keep_days is not None and keep_days <= 0:
            raise ValueError("keep_days must be positive")
        self.directory = directory
        self.keep = keep
        self.keep_days = keep_days

    def _folder(self, name: str) -> Path:
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"{name!r} cannot name a history folder")
        return self.directory / name

    def runs(self, name: str) -> list[Path]:
        """The saved runs of ``name``, oldest first."""
        folder = self._folder(name)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if _FILE.fullmatch(p.name) and p.is_file())

    def latest(self, name: str, *, before: datetime | None = None) -> Report | None:
        """The newest readable run of ``name`` (started before ``before``, if given).

        A file that cannot be read (cut short by a crash, edited by hand) is passed over:
        the history must never stop a batch.
        """
        for path in reversed(self.runs(name)):
            try:
                report = load_report(path)
            except (OSError, ValueError):
                continue
            if before is not None and _comparable(report.started) >= _comparable(before):
                continue
            return report
        return None

    def save(self, name: str, report: Report, text: str) -> Path:
        """Store ``text`` (the report's JSON) as a run of ``name``; then prune."""
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_comparable(report.started).strftime(_STAMP)}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        self.prune(name, now=_comparable(report.started))
        return path

    def prune(self, name: str, *, now: datetime | None = None) -> list[Path]:
        """Remove runs past ``keep`` or older than ``keep_days``; the removed paths."""
        runs = self.runs(name)
        doomed = set(runs[: max(0, len(runs) - self.keep)])
        if self.keep_days is not None:
            limit = (now or datetime.now(UTC)) - timedelta(days=self.keep_days)
            doomed |= {p for p in runs if _stamp_of(p) < limit}
        if runs:
            doomed.discard(runs[-1])
        for path in doomed:
            path.unlink(missing_ok=True)
        return sorted(doomed)

    def names(self) -> Iterator[str]:
        """Target names with at least one saved run."""
        if not self.directory.is_dir():
            return
        for folder in sorted(self.directory.iterdir()):
            if folder.is_dir() and _NAME.fullmatch(folder.name) and self.runs(folder.name):
                yield folder.name


def _comparable(moment: datetime) -> datetime:
    """An aware UTC time (a naive one from a hand-edited report is taken as UTC)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stamp_of(path: Path) -> datetime:
    return datetime.strptime(path.stem, _STAMP).replace(tzinfo=UTC)



def main_diff(args: Any) -> int:
    """``rca diff OLD.json NEW.json``: 0 nothing changed, 1 something did, 3 unusable input."""
    import sys  # noqa: PLC0415

    from analyzer.core.errors import UsageError  # noqa: PLC0415
    from analyzer.core.model import to_json  # noqa: PLC0415

    reports = []
    for path in (args.old, args.new):
        try:
            reports.append(load_report(path))
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"{path} is not an rca JSON report: {exc}") from None
    changes = diff(reports[0], reports[1])
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(changes), indent=2, ensure_ascii=False) + "\n")
    else:
        from reports.summary import clean_text  # noqa: PLC0415

        sys.stdout.write(clean_text(format_text(changes)))
    return 1 if changes.items else 0
