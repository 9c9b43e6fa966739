"""The server's past runs, read from its history folder (``rca batch --history``'s format:
``<name>/<stamp>.json``, where ``rca web`` names a folder ``<target>+<test id>``).

A run is addressed as ``name/stamp``; a key is only ever resolved by listing the folder
through :class:`analyzer.operations.history.History`, never joined into a path as given.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from analyzer.core.model import Status
from analyzer.operations.history import History, load_report

if TYPE_CHECKING:
    from analyzer.core.model import Report

__all__ = ["HistoryRow", "RunHistory"]

_STAMP = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRow:
    """One past run as the recent-runs page lists it."""

    key: str
    test_id: str
    target: str
    status: Status
    started: datetime
    previous: str = ""


class RunHistory:
    """Read access to the runs under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.history = History(directory)

    def path(self, key: str) -> Path:
        """The file of run ``key``; :class:`KeyError` if there is no such run."""
        name, _, stamp = key.partition("/")
        try:
            runs = self.history.runs(name)
        except ValueError:
            raise KeyError(key) from None
        for path in runs:
            if path.stem == stamp:
                return path
        raise KeyError(key)

    def load(self, key: str) -> Report:
        """The report of run ``key`` (:class:`KeyError`, :class:`ValueError`, OSError)."""
        return load_report(self.path(key))

    def previous(self, key: str) -> str:
        """The key of the run of the same folder before ``key``, or ""."""
        name, _, stamp = key.partition("/")
        try:
            stems = [p.stem for p in self.history.runs(name)]
        except ValueError:
            return ""
        index = stems.index(stamp) if stamp in stems else -1
        return f"{name}/{stems[index - 1]}" if index > 0 else ""

    def recent(self, limit: int = 100) -> list[HistoryRow]:
        """The newest ``limit`` runs of every folder, newest first (unreadable ones skipped)."""
        # (stamp, name, previous stamp, file): each folder is listed once, here.
        entries: list[tuple[str, str, str, Path]] = []
        for name in self.history.names():
            paths = self.history.runs(name)
            entries += [(p.stem, name, paths[i - 1].stem if i else "", p)
                        for i, p in enumerate(paths)]
        rows = []
        for stamp, name, before, path in heapq.nlargest(limit, entries):
            key = f"{name}/{stamp}"
            try:
                report = load_report(path)
            except (ValueError, OSError):
                continue
            rows.append(
                HistoryRow(
                    key=key,
                    test_id=name.rpartition("+")[2] if "+" in name else "",
                    target=report.target,
                    status=report.status,
                    started=datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC),
                    previous=f"{name}/{before}" if before else "",
                )
            )
        return rows
