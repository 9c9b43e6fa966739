"""Reports built by the real pipeline from purpose-built probes (no network).

``sample_report`` has every status and every evidence shape the renderers know:
records, a certificate chain, headers, rows, nested data, transcripts, a crash, a skip.
``hostile_report`` carries markup, script and ``javascript:`` URLs in every place a
server's text can reach. ``big_report`` has about 200 steps with transcripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from analyzer.api import check
from analyzer.core.context import RunOptions
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Report, Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target, parse_target

TARGET = parse_target("alice@contoso.test")
NOW = datetime.now(UTC)

MX_FOUND = FindingSpec(code="dns.mx.found", status=Status.PASS, title="MX records found",
                       meaning="The domain publishes MX records.")
SPF_WEAK = FindingSpec(code="mailauth.spf.softfail_all", status=Status.WARN,
                       title="SPF ends in ~all", meaning="Soft fail only.",
                       remediation="End the SPF record with -all once every sender is listed.",
                       reference="https://www.rfc-editor.org/rfc/rfc7208#section-5.1")
CERT_EXPIRED = FindingSpec(code="tls.cert.expired", status=Status.FAIL,
                           title="The certificate has expired",
                           meaning="Clients refuse an expired certificate.",
                           remediation="Install a renewed certificate on the server and "
                           "restart the service.",
                           reference="https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.5")
CERT_OK = FindingSpec(code="tls.cert.valid", status=Status.PASS, title="Certificate is valid",
                      meaning="Trusted, current, matching name.")
GREYLISTED = FindingSpec(code="smtp.greylisted", status=Status.INCONCLUSIVE,
                         title="The server greylisted us",
                         meaning="A temporary rejection: try later.",
                         remediation="Run the check again in a few minutes.")
SLOW_GREETING = FindingSpec(code="imap.greeting.slow", status=Status.WARN,
                            title="The IMAP greeting was slow",
                            meaning="Clients may time out.",
                            remediation="Check the server's load and reverse DNS lookups.")
LOGIN_OK = FindingSpec(code="imap.login.ok", status=Status.PASS, title="Login succeeded",
                       meaning="The credentials were accepted.")
DKIM_FOUND = FindingSpec(code="mailauth.dkim.found", status=Status.PASS, title="DKIM key found",
                         meaning="The selector publishes a key.")
ALL_SPECS = (MX_FOUND, SPF_WEAK, CERT_EXPIRED, CERT_OK, GREYLISTED, SLOW_GREETING, LOGIN_OK,
             DKIM_FOUND)
#: A DKIM public key: a long run of text without a break, as real DNS records have.
DKIM_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x7Qz3Kp9" * 40 + "IDAQAB"


def certificate(subject: str, serial: str, not_after: datetime, **extra: Any) -> dict[str, Any]:
    """Certificate evidence in the shape the TLS probe writes."""
    return {
        "subject": subject,
        "issuer": "CN=Contoso Issuing CA 1,O=Contoso",
        "serial": serial,
        "not_before": (not_after - timedelta(days=90)).isoformat(),
        "not_after": not_after.isoformat(),
        "sans": [subject.removeprefix("CN="), "mail.contoso.test"],
        "key": "RSA 2048",
        **extra,
    }


def _probe(pid: str, run: Any, **kw: Any) -> Probe:
    return Probe(id=pid, title=f"probe {pid}", run=run, findings=ALL_SPECS, **kw)


async def _dns(ctx: ProbeContext, target: Target) -> None:
    with ctx.result("contoso.test") as res:
        with res.step("Look up the MX records of contoso.test") as step:
            step.note("192.0.2.53: answer in 4.1 ms")
            step.recv("contoso.test MX 10 mx1.contoso.test.")
            step.recv("contoso.test MX 20 mx2.contoso.test.")
            step.add(MX_FOUND(detail="10 mx1.contoso.test, 20 mx2.contoso.test", evidence={
                "query": "contoso.test MX", "ttl": 300,
                "records": ["10 mx1.contoso.test.", "20 mx2.contoso.test."],
            }))
            with step.step("Resolve mx1.contoso.test") as child:
                child.recv("mx1.contoso.test A 192.0.2.25")
        with res.step("Read the DKIM key selector1._domainkey.contoso.test") as step:
            step.add(DKIM_FOUND(evidence={"records": [f"v=DKIM1; k=rsa; p={DKIM_KEY}",
                                                      "v=DKIM1; k=ed25519; p=11qYAYKx"]}))
        with res.step("Read the SPF record of contoso.test") as step:
            step.add(SPF_WEAK(detail="v=spf1 mx include:spf.protection.test ~all", evidence={
                "record": "v=spf1 mx include:spf.protection.test ~all",
                "lookups": [{"mechanism": "mx", "lookups": 1},
                            {"mechanism": "include:spf.protection.test", "lookups": 3}],
            }))
        await asyncio.sleep(0.02)


async def _tls(ctx: ProbeContext, target: Target) -> None:
    await asyncio.sleep(0.03)
    with ctx.result("mx1.contoso.test:25") as res:
        with res.step("STARTTLS on mx1.contoso.test:25") as step:
            step.recv("220 mx1.contoso.test ESMTP")
            step.send("EHLO rca.invalid")
            step.recv("250-mx1.contoso.test")
            step.recv("250 STARTTLS")
            step.send("STARTTLS")
            step.recv("220 2.0.0 Ready to start TLS")
            await asyncio.sleep(0.05)
            with step.step("Check the certificate chain") as child:
                child.add(CERT_EXPIRED(
                    detail="The leaf certificate expired 12 days before the check.",
                    evidence={"certificates": [
                        certificate("CN=mx1.contoso.test", "0a1b2c3d4e5f",
                                    NOW - timedelta(days=12)),
                        certificate("CN=Contoso Issuing CA 1", "77",
                                    NOW + timedelta(days=800)),
                    ]},
                ))
    with ctx.result("mx2.contoso.test:25") as res, res.step("STARTTLS on mx2…:25") as step:
        await asyncio.sleep(0.02)
        step.add(CERT_OK(evidence={"certificates": [
            certificate("CN=mx2.contoso.test", "0bcdef", NOW + timedelta(days=60)),
        ]}))


async def _smtp(ctx: ProbeContext, target: Target) -> None:
    await asyncio.sleep(0.06)
    with ctx.result("mx2.contoso.test:25") as res, res.step("Send a test message") as step:
        step.send("MAIL FROM:<rca@rca.invalid>")
        step.recv("451 4.7.1 Greylisted, try again in 300 seconds")
        step.add(GREYLISTED(detail="451 4.7.1 Greylisted", evidence={"reply": "451 4.7.1"}))


async def _imap(ctx: ProbeContext, target: Target) -> None:
    with ctx.result("imap.contoso.test:993") as res:
        with res.step("Connect to imap.contoso.test:993") as step:
            await asyncio.sleep(0.04)
            step.recv("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.")
            step.add(SLOW_GREETING(detail="The greeting came after 6.2 s.", evidence={
                "headers": {"server": "Dovecot", "x-powered-by": "nothing"},
                "phases": {"connect_ms": 3.1, "greeting_ms": 6200},
                "nested": {"a": {"b": [1, {"c": None}]}},
            }))
        with res.step("Log in as alice@contoso.test") as step:
            step.send("a1 LOGIN alice@contoso.test ***")
            step.recv("a1 OK Logged in")
            step.add(LOGIN_OK())


async def _autodiscover(ctx: ProbeContext, target: Target) -> None:
    with ctx.result("https://autodiscover.contoso.test/autodiscover/autodiscover.xml") as res:
        with res.step("POST the Autodiscover request") as step:
            step.note("no answer parsed")
            raise ValueError("unexpected XML element <Weird>")


async def _ews(ctx: ProbeContext, target: Target) -> None:  # pragma: no cover - skipped
    raise AssertionError("needs a fact that nobody provides")


def sample_probes() -> list[Probe]:
    """The probes of :func:`sample_report`."""
    return [
        _probe("dns", _dns),
        _probe("tls", _tls),
        _probe("smtp", _smtp),
        _probe("imap", _imap),
        _probe("autodiscover", _autodiscover),
        _probe("ews", _ews, needs=("ews_url",)),
    ]


def run(probes: Sequence[Probe], *, target: Target = TARGET, **options: Any) -> Report:
    """Run ``probes`` through the real pipeline and return the report."""
    opts = RunOptions(timeout=10, probe_timeout=5, **options)
    return asyncio.run(check(target, opts, probes=list(probes)))


def sample_report() -> Report:
    """Every status, every evidence shape, transcripts, a crash and a skip."""
    return run(sample_probes())


# --- hostile text -----------------------------------------------------------------------------

XSS = (
    '<script>alert(1)</script>',
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "javascript:alert(4)",
    "</textarea></pre></details><script>alert(5)</script>",
    '<a href="javascript:alert(6)">click</a>',
    "<style>body{display:none}</style>",
    "\x1b[2J\x00\u202egnp.exe",
)
HOSTILE_URLS = (
    "javascript:alert(7)",
    " JavaScript:alert(8)",
    "java\tscript:alert(9)",
    "data:text/html,<script>alert(10)</script>",
    'https://ok.test/"onmouseover="alert(11)',
    "vbscript:msgbox(12)",
)


def hostile_probes() -> list[Probe]:
    """Probes that put attacker-controlled text in every field a report shows.

    (A saved JSON report can hold anything, even in fields rca itself fills, such as
    the code: ``rca report`` renders whatever it is given.)
    """
    payload = " | ".join(XSS)

    async def evil(ctx: ProbeContext, target: Target) -> None:
        for n, url in enumerate(HOSTILE_URLS):
            with ctx.result(f"{XSS[n % len(XSS)]}.test:{n}") as res, res.step(payload) as step:
                step.recv(payload)
                step.send(XSS[1])
                step.add(Finding(
                    code=f"hostile.{XSS[3]}{XSS[0]}",
                    status=(Status.FAIL, Status.WARN, Status.PASS)[n % 3],
                    title=f"{XSS[0]} {n}",
                    detail=payload,
                    remediation=XSS[1],
                    evidence={
                        "records": list(XSS),
                        "headers": {XSS[0]: XSS[1], "location": url},
                        "certificates": [certificate(f"CN={XSS[1]}", XSS[2],
                                                     NOW + timedelta(days=3), extra=XSS[3])],
                        XSS[2]: {"deep": [XSS[4], {XSS[5]: XSS[6]}]},
                        "url": url,
                    },
                    reference=url,
                ))
                res.publish("evil", {"x": XSS[0]})

    return [Probe(id="evil", title="evil", run=evil, provides=("evil",))]


def hostile_report() -> Report:
    """A report whose every server-controlled string is an injection attempt."""
    return run(hostile_probes(), target=parse_target("evil.test"))


# --- size -------------------------------------------------------------------------------------


def big_probes(*, results: int = 20, steps_per_result: int = 10) -> list[Probe]:
    """``results`` × ``steps_per_result`` steps, each with a finding and a transcript."""
    spec = FindingSpec(code="big.step", status=Status.PASS, title="step checked", meaning="m")

    async def many(ctx: ProbeContext, target: Target) -> None:
        for r in range(results):
            with ctx.result(f"host{r}.contoso.test:443") as res:
                for s in range(steps_per_result):
                    with res.step(f"Request {s} to host{r}.contoso.test") as step:
                        for line in range(12):
                            step.send(f"GET /path/{line} HTTP/1.1")
                            step.recv(f"HTTP/1.1 200 OK content-length: {line * 100}")
                        status = Status.WARN if (r + s) % 7 == 0 else Status.PASS
                        step.add(spec(status=status, detail=f"answer {s} of host {r}", evidence={
                            "headers": {"server": "nginx", "content-type": "text/xml"},
                            "timings": {"connect_ms": 1.2, "tls_ms": 3.4, "request_ms": 5.6},
                        }))

    return [Probe(id="big", title="big", run=many, findings=(spec,))]


def big_report() -> Report:
    """About 200 steps, each with a finding, evidence and a 24-line transcript."""
    return run(big_probes())
