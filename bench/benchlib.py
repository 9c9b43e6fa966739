"""Shared by the benchmarks (run as scripts: this folder is first on sys.path): results."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")

__all__ = ["RESULTS", "append_rows", "machine", "stamp"]


def stamp() -> str:
    """When a result was measured (UTC, to the minute)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def machine(note: str = "") -> str:
    """The machine, and the conditions a result was measured in (``note``)."""
    base = f"{platform.machine()}, {os.cpu_count()} cores"
    return f"{base}; {note}" if note else base


def append_rows(heading: str, header: str, rows: list[str], path: Path = RESULTS) -> None:
    """Add ``rows`` at the end of the table under ``heading`` (``## ...``), creating the
    section with its ``header`` (column names and separator lines) when it is missing."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    lines = text.rstrip("\n").splitlines()
    if heading not in lines:
        lines += ["", heading, "", *header.rstrip("\n").splitlines()]
    start = lines.index(heading)
    end = start + 1
    while end < len(lines) and not lines[end].startswith("## "):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    lines[end:end] = rows
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
