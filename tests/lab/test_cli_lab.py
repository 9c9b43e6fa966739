"""`rca check` as a user runs it, in a separate process, against the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.lab import LabInfo

pytestmark = pytest.mark.lab


def test_full_check_of_a_signed_domain_prints_nothing_on_stderr(
    lab: LabInfo, tmp_path: Path
) -> None:
    # Given the DNSSEC-signed lab domain and every check (dnssec included), run the way a user
    # runs rca: its own process, Python's default warning filters, no pytest filters
    scenario = lab.scenario("signed")
    address = scenario.users[0][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    command = [
        sys.executable, "-m", "analyzer", "check", address,
        "--resolver", lab.resolver, "--ca-file", str(lab.ca_file),
        "--trust-anchor", str(lab.trust_anchor_file),
        "--password-file", str(lab.password_file(address)),
        "--timeout", "40", "--json", str(tmp_path / "r.json"), "--quiet",
    ]  # fmt: skip
    # When it runs
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    # Then it checked DNSSEC, and wrote no warning (nor anything else) on stderr
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert "dnssec" in {r["probe"] for r in report["results"]}, done.stdout
    assert done.stderr == ""
