"""Purpose-built probes and an HTTP client for the rca web tests.

The probes take the ids of real ones (``dns``, ``imap``) so the catalogue's tests plan
them, never touch the network, and put hostile text where servers put theirs: the
transcript (a banner) and the subject. ``imap`` waits for a gate, so a test decides when
the run may end, and echoes the password into its transcript (the recorder must redact it).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from analyzer.cli import check_options
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target
from analyzer.operations.web.app import create_app
from analyzer.operations.web.config import WebConfig
from analyzer.operations.web.security import Guard

SECRET = "Pw-only-in-memory-4711"  # noqa: S105 - test data
BASE = "http://127.0.0.1:8080"
BANNER = '* OK <img src=x onerror="alert(1)"><script>alert(2)</script> ready'
SUBJECT = 'mail.example.test:993 <b id="injected">bold</b>'
PASS = FindingSpec(code="test.pass", status=Status.PASS, title="fine", meaning="test")
FAIL = FindingSpec(code="test.fail", status=Status.FAIL, title="broken <i>x</i>",
                   meaning="test", remediation="Mend it.")


def probes(gate: threading.Event | None = None, *, fail: bool = False) -> list[Probe]:
    """``dns`` (at once) and ``imap`` (after ``gate``, if given)."""

    async def dns(ctx: ProbeContext, target: Target) -> None:
        with ctx.result(target.domain) as res, res.step("Look up the MX records") as step:
            step.add(PASS())
            res.publish("mx_hosts", ("mail.example.test",))

    async def imap(ctx: ProbeContext, target: Target) -> None:
        while gate is not None and not gate.is_set():
            await asyncio.sleep(0.02)  # cancellable, as a probe's waits must be
        with ctx.result(SUBJECT) as res, res.step("Greeting and login") as step:
            step.recv(BANNER)
            password = ctx.options.credentials.password() or ""
            step.send(f"a1 LOGIN alice {password}")
            step.add(FAIL(detail="the server said <script>no</script>") if fail else PASS())

    return [
        Probe(id="dns", title="DNS: MX records", run=dns, provides=("mx_hosts",),
              findings=(PASS,)),
        Probe(id="imap", title="IMAP login", run=imap, uses=("mx_hosts",),
              findings=(PASS, FAIL), uses_credentials=True),
    ]


def csrf_of(page: str) -> str:
    """The CSRF token of a page's form."""
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


@asynccontextmanager
async def client(
    history: Path,
    *,
    gate: threading.Event | None = None,
    fail: bool = False,
    guard: Guard | None = None,
    base: str = BASE,
    **config: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI client of an app with the purpose-built probes (history under ``history``)."""
    app = create_app(WebConfig(history=history, **config), build_options=check_options,
                     guard=guard, probes=probes(gate, fail=fail))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base) as http:
        http.headers["Origin"] = base
        yield http
    await app.state.runs.aclose()


async def start_run(http: httpx.AsyncClient, test: str = "imap", **fields: str) -> str:
    """Submit ``test``'s form; the run's page URL."""
    form = await http.get(f"/test/{test}")
    data = {"csrf": csrf_of(form.text), "target": "alice@example.test", **fields}
    response = await http.post(f"/test/{test}", data=data)
    assert response.status_code == 303, response.text[:500]
    return str(response.headers["location"])
