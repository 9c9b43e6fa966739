"""The JSON report: the model itself, with ``schema_version``."""

from __future__ import annotations

import json

from analyzer.core.model import Report, to_json

__all__ = ["dumps"]


def dumps(report: Report) -> str:
    """The report as pretty-printed JSON text (UTF-8, ends with a newline)."""
    return json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"
