"""The finding catalogue: docs/findings.md and `rca findings` cover every code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from analyzer.core.registry import all_finding_specs

DOC = Path(__file__).parents[2] / "docs" / "findings.md"


def test_every_code_has_an_entry_with_its_status_and_meaning() -> None:
    # Given the committed catalogue (regenerate with `make docs`)
    text = DOC.read_text(encoding="utf-8")
    entries = dict(re.findall(r"^### `([^`]+)` \((\w+)\)$", text, flags=re.M))
    # Then every code rca can produce has an entry with its status and meaning
    specs = all_finding_specs()
    missing = sorted(s.code for s in specs if s.code not in entries)
    assert missing == [], f"undocumented codes (run `make docs`): {missing}"
    for spec in specs:
        assert entries[spec.code] == spec.status.value, spec.code
        assert spec.meaning.split(".")[0] in text, spec.code
    # And nothing documented has gone away
    assert sorted(set(entries) - {s.code for s in specs}) == []


def test_every_failing_code_says_what_to_do() -> None:
    # Given every code rca can produce
    # When the failing ones are looked at
    # Then each says what to do: a failure is what a help-desk engineer acts on
    lacking = sorted(s.code for s in all_finding_specs()
                     if s.status.value == "fail" and not s.remediation.strip())
    assert lacking == []


def test_rca_findings_json_gives_status_meaning_and_remediation() -> None:
    # When `rca findings --format json` runs
    out = subprocess.run([sys.executable, "-m", "analyzer", "findings", "--format", "json"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    # Then it lists every code, in order, with status, meaning and remediation
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [item["code"] for item in listed] == [s.code for s in all_finding_specs()]
    assert all({"status", "title", "meaning", "remediation", "reference"} <= set(item)
               for item in listed)
