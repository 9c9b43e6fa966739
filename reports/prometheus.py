"""The Prometheus text report (``--prometheus FILE``) for node-exporter's textfile collector.

Run rca from cron with ``--prometheus /var/lib/node_exporter/textfile/rca-example.prom``;
the CLI writes the file atomically (a temporary file in the same folder, then a
rename), so the collector never reads half a file. Every series has a ``target``
label, so one file per target can sit side by side in the collector's folder.

Metrics (all gauges)::

    rca_check_status{target}                      0 ok, 1 warn, 2 fail, 3 unknown (= exit code)
    rca_check_duration_seconds{target}            how long the run took
    rca_check_timestamp_seconds{target}           when it ran (alert when it gets old)
    rca_probe_status{target,probe,subject}        the same codes per result; skip = 0
    rca_probe_duration_seconds{target,probe,subject}
    rca_finding{target,code,status,subject}       how many findings of that code and status
    rca_certificate_expiry_timestamp_seconds{target,subject,serial,probe,certificate}

``rca_certificate_expiry_timestamp_seconds`` comes from finding evidence holding a
certificate's ``serial`` and ``not_after`` (the TLS probe's ``{"certificates": [...]}``);
``subject`` is the result's subject (the endpoint that served it), ``certificate`` the
certificate's own subject name. Alert with e.g.
``rca_certificate_expiry_timestamp_seconds - time() < 14 * 86400``.

Label values are escaped per the exposition format (backslash, double quote, newline);
other control characters from server text are made visible first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from analyzer.core.model import Report
from reports.summary import certificates, check_status, clean_text, status_code

__all__ = ["dumps", "escape_label"]

_HELP = {
    "rca_check_status": "Result of the whole check: 0 ok, 1 warn, 2 fail, 3 unknown "
    "(inconclusive or error), as rca's exit code.",
    "rca_check_duration_seconds": "How long the whole check took.",
    "rca_check_timestamp_seconds": "When the check started (Unix time).",
    "rca_probe_status": "Result of one probe on one subject: 0 pass (or skipped), 1 warn, "
    "2 fail, 3 inconclusive or error.",
    "rca_probe_duration_seconds": "How long one probe took on one subject.",
    "rca_finding": "Number of findings with this code and status on this subject.",
    "rca_certificate_expiry_timestamp_seconds": "notAfter of a certificate a server "
    "presented (Unix time).",
}

Labels = Mapping[str, str]


def escape_label(value: str) -> str:
    """A label value for the exposition format: control characters made visible, then
    backslash, double quote and line feed escaped."""
    text = clean_text(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _family(name: str, samples: Iterable[tuple[Labels, float]]) -> list[str]:
    lines = [f"# HELP {name} {_escape_help(_HELP[name])}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        inner = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{inner}}} {_number(value)}")
    return lines


def dumps(report: Report) -> str:
    """The report in the Prometheus text exposition format (version 0.0.4)."""
    target = {"target": report.target}
    lines: list[str] = []
    lines += _family("rca_check_status", [(target, check_status(report))])
    lines += _family("rca_check_duration_seconds", [(target, report.elapsed_ms / 1000)])
    lines += _family("rca_check_timestamp_seconds", [(target, report.started.timestamp())])

    # One series per label set: two results of one probe on one subject are summed up
    # (duration) or take the worst (status), never emitted twice.
    status: dict[tuple[str, str], int] = {}
    duration: dict[tuple[str, str], float] = {}
    for result in report.results:
        key = (result.probe, result.subject)
        status[key] = max(status.get(key, 0), status_code(result.status))
        duration[key] = round(duration.get(key, 0.0) + result.elapsed_ms / 1000, 6)
    lines += _family(
        "rca_probe_status",
        [({**target, "probe": p, "subject": s}, v) for (p, s), v in status.items()],
    )
    lines += _family(
        "rca_probe_duration_seconds",
        [({**target, "probe": p, "subject": s}, v) for (p, s), v in duration.items()],
    )

    findings: dict[tuple[str, str, str], int] = {}
    for result, finding in report.findings():
        code = (finding.code, finding.status.value, result.subject)
        findings[code] = findings.get(code, 0) + 1
    lines += _family(
        "rca_finding",
        [
            ({**target, "code": c, "status": st, "subject": s}, n)
            for (c, st, s), n in findings.items()
        ],
    )

    expiry: dict[tuple[str, str], tuple[Labels, float]] = {}
    for result in report.results:
        for cert in certificates(result.findings()):
            where = (result.subject, cert.serial)
            labels = {
                **target,
                "subject": result.subject,
                "serial": cert.serial,
                "probe": result.probe,
                "certificate": cert.subject,
            }
            expiry.setdefault(where, (labels, cert.not_after.timestamp()))
    lines += _family("rca_certificate_expiry_timestamp_seconds", expiry.values())
    return "\n".join(lines) + "\n"
