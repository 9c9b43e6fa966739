"""The reachability probe against servers that misbehave on purpose.

Each case must end as a finding within its deadline: never a crash, never a hang.
"""

from __future__ import annotations

import socket
import time

import pytest

from analyzer.api import check
from analyzer.core.context import RunOptions
from analyzer.core.model import Finding, Report, Status
from analyzer.core.targets import parse_target
from reports.html import render
from reports.json import dumps
from tests.servers.tcp import delayed, huge_line, reset, say, serve, silent, trickle


async def run_ports(port: int, service: str, **kw: object) -> Report:
    options = RunOptions(
        tests=("ports",), timeout=20, op_timeout=1.5,
        extra_ports=(("127.0.0.1", port, service),), **kw,  # type: ignore[arg-type]
    )
    return await check(parse_target("127.0.0.1"), options)


def findings(report: Report) -> dict[str, Finding]:
    return {f.code: f for _, f in report.findings()}


@pytest.mark.parametrize(
    ("script", "service", "code", "status"),
    [
        (say(b"220 mx.hostile.test ESMTP ready\r\n"), "smtp", "ports.banner.ok", Status.PASS),
        (say(b"* OK [CAPABILITY IMAP4rev1] ready\r\n"), "imap", "ports.banner.ok", Status.PASS),
        (say(b"+OK POP3 ready\r\n"), "pop3", "ports.banner.ok", Status.PASS),
        (say(b"554 5.7.1 You are not welcome\r\n"), "smtp", "ports.banner.refused",
         Status.INCONCLUSIVE),
        (say(b"421 4.3.2 Too busy, try later\r\n"), "submission", "ports.banner.refused",
         Status.INCONCLUSIVE),
        (say(b"* BYE go away\r\n"), "imap", "ports.banner.refused", Status.INCONCLUSIVE),
        (silent, "smtp", "ports.banner.missing", Status.FAIL),
        (huge_line(1024 * 1024), "smtp", "ports.banner.wrong", Status.FAIL),
        (say(b"HTTP/1.1 400 Bad Request\r\n\r\n"), "smtp", "ports.banner.wrong", Status.FAIL),
        (say(b"\x16\x03\x01\x00\xff\xfe garbage \x80\x81\r\n"), "imap", "ports.banner.wrong",
         Status.FAIL),
        (trickle(b"220 slow\r\n", every=0.5), "smtp", "ports.banner.missing", Status.FAIL),
        (reset, "pop3", "ports.banner.missing", Status.FAIL),
        (say(b"220-first line\r\n", b"220-second\r\n", b"220 last\r\n"), "smtp",
         "ports.banner.ok", Status.PASS),
    ],
)
async def test_greeting_cases_end_as_findings(
    script: object, service: str, code: str, status: Status
) -> None:
    # Given a server that greets (or not) in a particular way
    with serve(script) as server:  # type: ignore[arg-type]
        t0 = time.monotonic()
        # When the ports probe checks it
        report = await run_ports(server.port, service)
    # Then the expected finding is there, within the deadline
    assert time.monotonic() - t0 < 10
    found = findings(report)
    if script is reset and "ports.closed" in found:
        # A reset can beat the connect's completion: then it is a refusal, also correct.
        code, status = "ports.closed", Status.FAIL
    assert code in found, sorted(found)
    assert found[code].status == status
    # And both reports render
    assert code in render(report) and code in dumps(report)


async def test_slow_greeting_is_a_warning() -> None:
    with serve(delayed(0.6, b"220 finally\r\n")) as server:
        report = await run_ports(server.port, "submission", slow_greeting_s=0.3)
    found = findings(report)
    assert found["ports.banner.slow"].status == Status.WARN
    assert "ports.banner.ok" in found


async def test_closed_port_is_reported_closed() -> None:
    # Given a port with nothing listening (bind, learn the port, close)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    report = await run_ports(port, "imaps")
    found = findings(report)
    assert found["ports.closed"].status == Status.FAIL
    assert "ports.filtered" not in found


async def test_html_escapes_banner_markup() -> None:
    with serve(say(b"220 <script>alert(1)</script> \"><img src=x onerror=alert(2)>\r\n")) as s:
        report = await run_ports(s.port, "smtp")
    html = render(report)
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)" in html


async def test_non_utf8_banner_is_shown_not_fatal() -> None:
    with serve(say(b"220 caf\xe9 \xff\xfe ready\r\n")) as server:
        report = await run_ports(server.port, "smtp")
    found = findings(report)
    assert found["ports.banner.ok"].status == Status.PASS
    assert "caf" in found["ports.banner.ok"].detail
