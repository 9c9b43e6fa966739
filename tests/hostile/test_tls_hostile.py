"""The TLS probe against loopback servers: real handshakes with lab certificates, and
servers that break TLS on purpose. Each case ends as a finding within the deadline."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzer.api import check
from analyzer.core.context import Nameserver, RunOptions
from analyzer.core.facts import (
    DNSSEC_ZONES,
    DOMAIN_ADDRESSES,
    MX_HOSTS,
    SRV_RECORDS,
    TLS_VERDICTS,
    HostAddresses,
    MxHost,
)
from analyzer.core.model import ProbeResult, Report, Status
from analyzer.core.pipeline import ProgressEvent
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target, parse_target
from analyzer.lab.pki import CertSpec, IssuedCert, LabPKI
from probes.dane import PROBE as DANE
from probes.ports import PROBE as PORTS
from probes.tls import PROBE as TLS
from reports.html import render
from reports.json import dumps
from tests.servers.dnsserver import dns_server
from tests.servers.tcp import (
    huge_line,
    reset,
    say,
    serve,
    silent,
    smtp_server,
    smtp_starttls,
    tls_then,
)

HOST = "mail.tls.test"


def server_context(cert: IssuedCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    return ctx


def issue(pki: LabPKI, kind: str, name: str, **kw: object) -> IssuedCert:
    return pki.issue(CertSpec(name=name, dns_names=(HOST,), kind=kind, **kw))  # type: ignore[arg-type]


async def run_tls(pki: LabPKI, port: int, service: str, **kw: object) -> Report:
    options = RunOptions(
        tests=("tls",), timeout=20, op_timeout=2, ca_file=pki.ca_file,
        connect={HOST: ("127.0.0.1",)}, extra_ports=((HOST, port, service),), **kw,  # type: ignore[arg-type]
    )
    return await check(parse_target("127.0.0.1"), options)


def first_then_held(
    context: ssl.SSLContext, release: threading.Event
) -> Callable[[socket.socket, threading.Event], None]:
    """A TLS server's script: the first connection (the TLS check's handshake) is answered
    at once, every later one (its version checks) once ``release`` is set (at most 5 s)."""
    first = threading.Lock()

    def script(conn: socket.socket, stop: threading.Event) -> None:
        if not first.acquire(blocking=False):
            release.wait(5)
        tls_then(context)(conn, stop)

    return script


def versions_note(result: ProbeResult) -> str:
    """What the TLS check's version step of ``result`` says of each version."""
    (versions,) = [s for s in result.steps if s.title.startswith("TLS versions")]
    (note,) = [line.text for line in versions.transcript]
    return note


def record_opens(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ssl.SSLContext]]:
    """Every TLS session the TLS check opens, from now on, as ``("inspection" or "version",
    the context it used)``."""
    import probes.tls

    opened: list[tuple[str, ssl.SSLContext]] = []
    real_open = probes.tls.open_tls

    async def recording(run: object, **kw: Any) -> Any:
        opened.append(("inspection" if kw.get("transcript") else "version", kw["context"]))
        return await real_open(run, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(probes.tls, "open_tls", recording)
    return opened


def codes(report: Report) -> dict[str, Status]:
    found: dict[str, Status] = {}
    for _, f in report.findings():
        if f.status.severity >= found.get(f.code, Status.SKIP).severity:
            found[f.code] = f.status
    return found


@pytest.mark.parametrize(
    ("kind", "service", "code", "status"),
    [
        ("good", "imaps", "tls.chain.valid", Status.PASS),
        ("expired", "imaps", "tls.cert.expired", Status.FAIL),
        ("wrong_name", "submissions", "tls.cert.name_mismatch", Status.FAIL),
        ("self_signed", "pop3s", "tls.cert.self_signed", Status.FAIL),
        ("untrusted_root", "imaps", "tls.chain.untrusted_root", Status.FAIL),
        ("rsa1024", "imaps", "tls.key.weak", Status.FAIL),
        ("sha1", "imaps", "tls.cert.sha1_signature", Status.FAIL),
    ],
)
async def test_implicit_tls_chain_faults(
    pki: LabPKI, kind: str, service: str, code: str, status: Status
) -> None:
    cert = issue(pki, kind, f"implicit-{kind}-{service}")
    with serve(tls_then(server_context(cert))) as server:
        report = await run_tls(pki, server.port, service)
    found = codes(report)
    assert found.get(code) == status, found
    assert found.get("tls.handshake.ok") == Status.PASS


async def test_self_signed_on_mx_port_25_is_only_a_warning(pki: LabPKI) -> None:
    # Given an MX (smtp service) with a self-signed certificate behind STARTTLS
    cert = issue(pki, "self_signed", "mx-selfsigned")
    with serve(smtp_starttls(server_context(cert))) as server:
        report = await run_tls(pki, server.port, "smtp")
    # Then it is a warning (opportunistic TLS), while submission would fail
    assert codes(report)["tls.cert.self_signed"] == Status.WARN
    with serve(smtp_starttls(server_context(cert))) as server:
        report = await run_tls(pki, server.port, "submission")
    assert codes(report)["tls.cert.self_signed"] == Status.FAIL


async def test_starttls_not_offered(pki: LabPKI) -> None:
    with serve(smtp_server(starttls=False)) as server:
        report = await run_tls(pki, server.port, "submission")
    assert codes(report)["tls.starttls.missing"] == Status.FAIL


async def test_garbage_after_starttls_is_a_handshake_failure(pki: LabPKI) -> None:
    with serve(smtp_server(starttls=True)) as server:
        report = await run_tls(pki, server.port, "submission")
    assert codes(report)["tls.handshake.failed"] == Status.FAIL


async def test_data_injected_before_handshake_is_flagged(pki: LabPKI) -> None:
    with serve(smtp_server(extra=b"250 injected\r\n")) as server:
        report = await run_tls(pki, server.port, "submission")
    assert codes(report)["tls.protocol_error"] == Status.FAIL


@pytest.mark.parametrize(
    "script",
    [say(b"\x15\x03\x01\x00\x02\x02\x28garbage"), reset, silent, huge_line(1024 * 1024)],
    ids=["garbage", "reset", "silent", "huge"],
)
async def test_broken_implicit_tls_ends_as_failure_in_time(pki: LabPKI, script: object) -> None:
    with serve(script) as server:  # type: ignore[arg-type]
        t0 = time.monotonic()
        report = await run_tls(pki, server.port, "imaps")
    assert time.monotonic() - t0 < 12
    found = codes(report)
    assert found.get("tls.handshake.failed") == Status.FAIL, found


async def test_hostile_certificate_fields_are_escaped(pki: LabPKI, tmp_path: Path) -> None:
    # Given a certificate whose names carry markup and hundreds of SANs
    names = (HOST, *(f"n{i}.tls.test" for i in range(500)))
    cert = pki.issue(CertSpec(name="hostile-sans", dns_names=names))
    with serve(tls_then(server_context(cert))) as server:
        report = await run_tls(pki, server.port, "imaps")
    html, data = render(report), dumps(report)
    assert codes(report)["tls.handshake.ok"] == Status.PASS
    assert len(html) < 2_000_000 and len(data) < 2_000_000


async def test_missing_intermediate_confirmed_through_aia(pki: LabPKI) -> None:
    # Given a leaf-only chain whose AIA URL points at a loopback HTTP server with the issuer
    der = pki.intermediate_der_file.read_bytes()
    body = (b"HTTP/1.1 200 OK\r\nContent-Type: application/pkix-cert\r\nContent-Length: "
            + str(len(der)).encode() + b"\r\nConnection: close\r\n\r\n" + der)
    with serve(say(body, then_wait=False)) as aia:
        cert = issue(pki, "leaf_only", "aia-leaf",
                     aia_url=f"http://aia.tls.test:{aia.port}/intermediate.der")
        with serve(tls_then(server_context(cert))) as server:
            options = RunOptions(
                tests=("tls",), timeout=20, op_timeout=2, ca_file=pki.ca_file,
                connect={HOST: ("127.0.0.1",), "aia.tls.test": ("127.0.0.1",)},
                extra_ports=((HOST, server.port, "imaps"),),
            )
            report = await check(parse_target("127.0.0.1"), options)
    missing = [f for _, f in report.findings() if f.code == "tls.chain.missing_intermediate"]
    assert missing and missing[0].evidence.get("confirmed") is True
    assert "fixes the chain" in missing[0].detail


async def test_versions_are_reported(pki: LabPKI) -> None:
    cert = issue(pki, "good", "versions")
    with serve(tls_then(server_context(cert))) as server:
        report = await run_tls(pki, server.port, "imaps")
    found = codes(report)
    assert "tls.version.ok" in found or "tls.version.legacy" in found


def test_a_batch_checks_an_endpoint_its_targets_share_once(pki: LabPKI, tmp_path: Path) -> None:
    # Given 4 targets whose submission endpoint is the same STARTTLS server
    from analyzer.operations.batch import BatchConfig, TargetSpec, run_batch
    from analyzer.operations.history import load_report

    cert = issue(pki, "good", "shared-submission")

    def batch(server_port: int, *, share: bool) -> None:
        settings = {
            "tests": ["ports", "tls"], "timeout": 20, "ca_file": str(pki.ca_file),
            "connect": [f"{HOST}=127.0.0.1"], "ports": [f"submission/{HOST}:{server_port}"],
        }
        specs = tuple(
            TargetSpec(name=f"t{i}", target="127.0.0.1", settings=settings) for i in range(4)
        )
        config = BatchConfig(source="test", base=tmp_path, targets=specs)
        out = tmp_path / ("shared" if share else "fresh")
        asyncio.run(run_batch(config, out=out, concurrency=4, writers=0, share=share))

    # When the batch runs with sharing (the default), then without
    with serve(smtp_starttls(server_context(cert))) as server:
        batch(server.port, share=True)
    shared_connections, label = server.connections, f"{HOST}:{server.port}"
    with serve(smtp_starttls(server_context(cert))) as server:
        batch(server.port, share=False)
    # Then the shared run cost the server a quarter of the connections
    assert shared_connections * 4 == server.connections
    # And every target's report holds the full TLS verdict on it, three marked as copies
    copies = 0
    for i in range(4):
        report = load_report(tmp_path / "shared" / f"t{i}.json")
        tls = [r for r in report.results if r.probe == "tls" and r.subject == label]
        assert len(tls) == 1
        found = {f.code for f in tls[0].findings()}
        assert {"tls.handshake.ok", "tls.chain.valid"} <= found, found
        if "shared" in tls[0].facts:
            copies += 1
            # And a reader of the HTML report sees that it is a copy, not only the JSON
            assert "Shared check:" in render(report)
    assert copies == 3


async def test_a_verdict_is_known_before_the_version_checks_end(pki: LabPKI) -> None:
    # Given an IMAPS server that answers the first handshake at once and holds every later
    # connection (the version checks) until a login-like probe has the endpoint's verdict
    verdict_known = threading.Event()
    script = first_then_held(server_context(issue(pki, "good", "verdict-first")), verdict_known)
    seen: list[str] = []

    async def login(ctx: ProbeContext, target: Target) -> None:
        verdicts = ctx.fact(TLS_VERDICTS)
        seen.append(await verdicts.verdict(f"{HOST}:{port}"))
        verdict_known.set()

    consumer = Probe(id="login", title="login", run=login, uses=(TLS_VERDICTS,))
    with serve(script) as server:
        port = server.port
        # When the TLS check runs beside it
        options = RunOptions(
            timeout=20, op_timeout=2, ca_file=pki.ca_file, connect={HOST: ("127.0.0.1",)},
            extra_ports=((HOST, port, "imaps"),),
        )  # fmt: skip
        report = await check(parse_target("127.0.0.1"), options, probes=[TLS, consumer])
    # Then the verdict came while the version checks were held: they were answered once it
    # was known (before, the verdict waited for them and they ran out of time)
    assert seen == ["valid"]
    (result,) = [r for r in report.results if r.probe == "tls"]
    note = versions_note(result)
    assert "no answer in time" not in note
    assert "TLSv1.2: accepted" in note


@pytest.mark.parametrize("probe", [PORTS, TLS], ids=["ports", "tls"])
async def test_a_host_is_checked_before_another_host_is_resolved(
    pki: LabPKI, probe: Probe
) -> None:
    # Given a domain whose autodiscover host resolves only once the check of another host
    # (an IMAPS endpoint named with --port and --connect) has reached that host's server
    cert = issue(pki, "good", f"per-host-{probe.id}")
    context = server_context(cert)
    reached = threading.Event()

    def script(conn: socket.socket, stop: threading.Event) -> None:
        reached.set()
        tls_then(context)(conn, stop)

    async def dns(ctx: ProbeContext, target: Target) -> None:
        ctx.publish(DOMAIN_ADDRESSES, HostAddresses(host="slow.test"))
        ctx.publish(MX_HOSTS, ())
        ctx.publish(SRV_RECORDS, ())

    zone = "@ 3600 IN SOA ns. h. 1 3600 600 86400 60\nautodiscover 60 IN A 127.0.0.1\n"
    fake = Probe(id="dns", title="dns", run=dns,
                 provides=(DOMAIN_ADDRESSES, MX_HOSTS, SRV_RECORDS))  # fmt: skip
    with serve(script) as server, dns_server({"slow.test.": zone},
                                             held={"autodiscover.slow.test": reached}) as ns:
        options = RunOptions(
            timeout=20, op_timeout=8, ca_file=pki.ca_file, connect={HOST: ("127.0.0.1",)},
            extra_ports=((HOST, server.port, "imaps"),),
            nameservers=(Nameserver("127.0.0.1", ns.port),),
        )  # fmt: skip
        # When the check runs
        report = await check(parse_target("slow.test"), options, probes=[fake, probe])
    # Then the IMAPS host was checked while the autodiscover host was still being resolved
    assert ns.released == {"autodiscover.slow.test": True}
    # And the results keep the planned order (standard hosts, then --port)
    subjects = [r.subject for r in report.results if r.probe == probe.id]
    assert subjects[0] == "autodiscover.slow.test:443"
    assert subjects[-1] == f"{HOST}:{server.port}"
    (mine,) = [r for r in report.results if r.subject == f"{HOST}:{server.port}"]
    assert mine.status == Status.PASS


async def test_dane_judges_an_mx_before_the_tls_check_of_other_endpoints_ends(
    pki: LabPKI,
) -> None:
    # Given an MX host without an address (no chain will ever come from it), TLSA records
    # for it in a zone said to be secure, and an IMAPS endpoint whose version checks are
    # held until the DANE check has finished
    dane_done = threading.Event()
    script = first_then_held(server_context(issue(pki, "good", "dane-first")), dane_done)

    async def dns(ctx: ProbeContext, target: Target) -> None:
        ctx.publish(DOMAIN_ADDRESSES, HostAddresses(host="dane.test"))
        ctx.publish(MX_HOSTS, (MxHost(preference=10, host="mx.dane.test"),))
        ctx.publish(SRV_RECORDS, ())

    async def dnssec(ctx: ProbeContext, target: Target) -> None:
        ctx.publish(DNSSEC_ZONES, {"mx.dane.test": "secure"})

    def progress(event: ProgressEvent) -> None:
        if event.probe == "dane" and event.event == "finished":
            dane_done.set()

    zone = ("@ 3600 IN SOA ns. h. 1 3600 600 86400 60\n"
            f"_25._tcp.mx 60 IN TLSA 3 1 1 {'ab' * 32}\n")  # fmt: skip
    fakes = [
        Probe(id="dns", title="dns", run=dns, provides=(DOMAIN_ADDRESSES, MX_HOSTS, SRV_RECORDS)),
        Probe(id="dnssec", title="dnssec", run=dnssec, provides=(DNSSEC_ZONES,)),
    ]
    with serve(script) as server, dns_server({"dane.test.": zone}) as ns:
        options = RunOptions(
            timeout=20, op_timeout=2, ca_file=pki.ca_file, connect={HOST: ("127.0.0.1",)},
            extra_ports=((HOST, server.port, "imaps"),),
            nameservers=(Nameserver("127.0.0.1", ns.port),),
        )  # fmt: skip
        # When DANE runs beside the TLS check
        report = await check(parse_target("dane.test"), options, probes=[*fakes, TLS, DANE],
                             progress=progress)  # fmt: skip
    # Then DANE judged the MX (no chain: it has no address) while the IMAPS endpoint's
    # version checks were held: they were answered once DANE had finished
    (dane,) = [r for r in report.results if r.probe == "dane"]
    assert [f.code for s in dane.steps for f in s.findings] == ["dane.no_chain"]
    (imaps,) = [r for r in report.results if r.subject == f"{HOST}:{server.port}"]
    note = versions_note(imaps)
    assert "no answer in time" not in note
    assert "TLSv1.2: accepted" in note
    dane_end = dane.started + timedelta(milliseconds=dane.elapsed_ms)
    assert dane_end <= imaps.started + timedelta(milliseconds=imaps.elapsed_ms)


async def test_the_tls_contexts_are_made_once_per_run_each_with_its_own_settings(
    pki: LabPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two IMAPS endpoints, and every TLS session the TLS check opens recorded with the
    # context it used (kept alive, so that two contexts never share an id)
    context = server_context(issue(pki, "good", "contexts"))
    opened = record_opens(monkeypatch)
    # When the TLS check runs on both
    report, _ = await tls_on_two_endpoints(pki, context)
    assert {r.status for r in report.results if r.probe == "tls"} == {Status.PASS}
    # Then both inspections used one context, which accepts any chain and any version
    inspections = {id(c): c for kind, c in opened if kind == "inspection"}
    assert sum(kind == "inspection" for kind, _ in opened) == 2
    (inspection,) = inspections.values()
    assert inspection.verify_mode == ssl.CERT_NONE and not inspection.check_hostname
    assert inspection.minimum_version == ssl.TLSVersion.MINIMUM_SUPPORTED
    # And the version checks of both endpoints one context per version, offering only it
    versions: dict[ssl.TLSVersion, set[int]] = {}
    for kind, c in opened:
        if kind == "version":
            assert c.minimum_version == c.maximum_version
            assert c.verify_mode == ssl.CERT_NONE and not c.check_hostname
            versions.setdefault(c.minimum_version, set()).add(id(c))
    assert versions and all(len(ids) == 1 for ids in versions.values())


async def test_a_host_s_chain_is_diagnosed_once_per_run(
    pki: LabPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two IMAPS endpoints of one host presenting the same chain, and every diagnosis
    # the TLS check makes counted
    from probes import tlschain

    context = server_context(issue(pki, "good", "diagnosed-once"))
    diagnosed: list[str] = []
    real_diagnose = tlschain.diagnose

    def counting(chain: Any, host: str, **kw: Any) -> tlschain.ChainDiagnosis:
        diagnosed.append(host)
        return real_diagnose(chain, host, **kw)

    monkeypatch.setattr(tlschain, "diagnose", counting)
    # When the TLS check runs on both
    report, ports = await tls_on_two_endpoints(pki, context)
    # Then the chain was diagnosed once, and both endpoints report its diagnosis
    assert diagnosed == [HOST]
    valid = [r.subject for r, f in report.findings() if f.code == "tls.chain.valid"]
    assert valid == [f"{HOST}:{port}" for port in ports]


async def tls_on_two_endpoints(pki: LabPKI, context: ssl.SSLContext) -> tuple[Report, list[int]]:
    """The TLS check of two IMAPS endpoints of :data:`HOST` serving ``context``."""
    with serve(tls_then(context)) as one, serve(tls_then(context)) as two:
        ports = [one.port, two.port]
        options = RunOptions(
            tests=("tls",), timeout=20, op_timeout=2, ca_file=pki.ca_file,
            connect={HOST: ("127.0.0.1",)}, extra_ports=tuple((HOST, p, "imaps") for p in ports),
        )  # fmt: skip
        return await check(parse_target("127.0.0.1"), options), ports


async def test_the_version_the_inspection_negotiated_is_not_offered_again(
    pki: LabPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an IMAPS server that speaks TLS 1.2 and 1.3, and the version each of the TLS
    # check's version checks offers recorded
    context = server_context(issue(pki, "good", "negotiated"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    opened = record_opens(monkeypatch)
    with serve(tls_then(context)) as server:
        # When the TLS check runs
        report = await run_tls(pki, server.port, "imaps")
    offered = [c.maximum_version for kind, c in opened if kind == "version"]
    (result,) = [r for r in report.results if r.probe == "tls"]
    (handshake,) = [f for s in result.steps for f in s.findings if f.code == "tls.handshake.ok"]
    assert handshake.evidence["version"] == "TLSv1.3"
    # Then TLS 1.3, which the inspection's handshake negotiated, was not offered again
    assert ssl.TLSVersion.TLSv1_3 not in offered
    assert ssl.TLSVersion.TLSv1_2 in offered
    # And the report still says every version the server accepts, and only those
    note = versions_note(result)
    assert "TLSv1.2: accepted" in note and "TLSv1.3: accepted" in note
    assert note.count("accepted") == 2 and "no answer in time" not in note
    assert "tls.version.ok" in {f.code for s in result.steps for f in s.findings}


async def test_version_checks_start_while_the_inspection_talks(pki: LabPKI) -> None:
    # Given a STARTTLS submission server that greets its first connection (the TLS check's
    # inspection) only once a second connection (a version check) has arrived
    context = server_context(issue(pki, "good", "versions-beside"))
    arrived = threading.Event()
    first = threading.Lock()

    def script(conn: socket.socket, stop: threading.Event) -> None:
        if first.acquire(blocking=False):
            arrived.wait(5)
        else:
            arrived.set()
        smtp_starttls(context)(conn, stop)

    with serve(script) as server:
        # When the TLS check runs (each step may wait 2 s at most)
        report = await run_tls(pki, server.port, "submission")
    # Then the version checks went out while the inspection waited for its greeting, and
    # both ended well (before, the versions waited for the inspection, which ran out of time)
    assert arrived.is_set()
    (result,) = [r for r in report.results if r.probe == "tls"]
    assert codes(report)["tls.handshake.ok"] == Status.PASS
    assert "TLSv1.2: accepted" in versions_note(result)


async def test_version_checks_started_ahead_end_with_the_check_at_its_deadline(
    pki: LabPKI,
) -> None:
    # Given a STARTTLS submission server that never greets: the inspection is connected (so
    # the version checks start ahead) and then waits, as they do
    with serve(silent) as server:
        # When the TLS check's deadline comes while the inspection still waits
        await run_tls(pki, server.port, "submission", probe_timeout=1)
        # Then no version check started ahead outlives the check
        left = [
            t for t in asyncio.all_tasks()
            if not t.done() and getattr(t.get_coro(), "__name__", "") == "_accepts"
        ]  # fmt: skip
        for task in left:
            task.cancel()
        assert left == []
