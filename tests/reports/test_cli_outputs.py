"""`rca check` writes every report format it is asked for (DNS only, on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.servers.dnsserver import DnsServer


def test_check_writes_json_html_junit_and_prometheus(example_dns: DnsServer,
                                                     tmp_path: Path) -> None:
    # Given a DNS-only check against the loopback zone (its MX is a CNAME: a warning)
    out = {ext: tmp_path / "out" / f"r.{ext}" for ext in ("json", "html", "xml", "prom")}
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("RCA_PASSWORD", None)
    # When every output is asked for
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "check", "example.test", "--tests", "dns",
         "--resolver", f"127.0.0.1:{example_dns.port}", "--timeout", "20", "--quiet",
         "--json", str(out["json"]), "--report", str(out["html"]),
         "--junit", str(out["xml"]), "--prometheus", str(out["prom"])],
        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )
    # Then the run warned, printed one line, and wrote four reports that agree
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("rca PASSED WITH WARNINGS: example.test")
    assert json.loads(out["json"].read_text())["status"] == "warn"
    assert "Passed with warnings" in out["html"].read_text()
    suites = ET.fromstring(out["xml"].read_bytes())  # noqa: S314 - our own output
    assert [s.get("name") for s in suites.iter("testsuite")] == ["dns"]
    families = {f.name: f for f in text_string_to_metric_families(out["prom"].read_text())}
    assert families["rca_check_status"].samples[0].value == 1
    # And no temporary file is left beside them
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "r.html", "r.json", "r.prom", "r.xml"]
