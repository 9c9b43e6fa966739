"""HTTP authentication against the lab's Exchange front (nginx + emulator), under load and
from a client we did not write.

- The emulator binds NTLM to the client's TCP connection, as IIS does: an authenticate
  message sent on another connection than the one that got the challenge is refused.
- Twenty full Exchange checks of the healthy domain at once, and one with
  ``--all-methods``, end without a single authentication failure (a handshake whose legs
  were spread over pooled connections used to end as ``*.auth.rejected``).
- Debian's curl logs in with ``--ntlm`` and ``--basic`` at every endpoint that offers them
  (DESIGN.md §8: where curl and the emulator disagree, the emulator is wrong).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from analyzer.lab import LabInfo
from analyzer.protocols.ewsxml import GETFOLDER_INBOX as GETFOLDER
from probes.autodiscover.pox import build_request

pytestmark = pytest.mark.lab

EXCHANGE_TESTS = ("dns", "autodiscover", "ews", "activesync", "outlook_anywhere", "mapi_http")
EXCHANGE_PROBES = EXCHANGE_TESTS[1:]
OK = (Status.PASS, Status.SKIP)


# --- the emulator: NTLM belongs to one connection ------------------------------------------------


def _connect(lab: LabInfo, host: str, address: str) -> http.client.HTTPConnection:
    """An HTTP connection over TLS to ``address`` (SNI and Host ``host``), already open."""
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    raw = socket.create_connection((address, 443), timeout=10)
    conn = http.client.HTTPConnection(host, 443, timeout=10)
    conn.sock = context.wrap_socket(raw, server_hostname=host)
    return conn


def _post(conn: http.client.HTTPConnection, authorization: str) -> http.client.HTTPResponse:
    conn.request("POST", "/EWS/Exchange.asmx", body=GETFOLDER, headers={
        "Content-Type": "text/xml; charset=utf-8", "Authorization": authorization,
    })  # fmt: skip
    response = conn.getresponse()
    response.read()
    return response


def test_emulator_refuses_an_authenticate_message_on_another_connection(lab: LabInfo) -> None:
    import spnego

    # Given an NTLM negotiate message answered with a challenge on connection A
    info = lab.scenario("healthy")
    user, password = info.users[0]
    host = info.host("mail")
    client = spnego.client(user, password, hostname=host.name, service="HTTP", protocol="ntlm")
    first, second = _connect(lab, host.name, host.ipv4), _connect(lab, host.name, host.ipv4)
    try:
        negotiate = base64.b64encode(client.step() or b"").decode()
        challenge = _post(first, f"NTLM {negotiate}")
        assert challenge.status == 401
        token = base64.b64decode(challenge.getheader("WWW-Authenticate", "").partition(" ")[2])
        authenticate = f"NTLM {base64.b64encode(client.step(token) or b'').decode()}"
        # When the (valid) authenticate message goes over connection B
        elsewhere = _post(second, authenticate)
        # Then B is refused, while the same message on A logs in: the connection decides
        same = _post(first, authenticate)
    finally:
        first.close()
        second.close()
    assert elsewhere.status == 401
    assert same.status == 200


# --- many checks at once -------------------------------------------------------------------------


def _options(lab: LabInfo, **kw: Any) -> tuple[str, RunOptions]:
    user, password = lab.scenario("healthy").users[0]
    # Generous timeouts: twenty checks share two busy cores; slowness is not what is tested.
    return user, RunOptions(
        nameservers=(Nameserver(lab.resolver),), ca_file=Path(lab.ca_file),
        credentials=Credentials(user, password=password), tests=EXCHANGE_TESTS,
        timeout=150, probe_timeout=150, op_timeout=30, connect_timeout=15, **kw,
    )  # fmt: skip


def _not_passing(report: Report) -> list[str]:
    """Every result of the Exchange probes that failed, warned or errored, with its findings
    (``skip`` is fine: Autodiscover's SCP method never runs outside a domain)."""
    bad = []
    for result in report.results:
        if result.probe in EXCHANGE_PROBES and result.status not in OK:
            codes = [f"{f.code}={f.status}: {f.detail[:160]}" for top in result.steps
                     for s in top.walk() for f in s.findings if f.status not in OK]  # fmt: skip
            bad.append(f"{result.probe} {result.subject}: {result.status} {codes}")
    return bad


def test_twenty_concurrent_exchange_checks_have_no_authentication_failure(
    lab: LabInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given twenty full Exchange checks of the healthy domain, started at once
    user, options = _options(lab)

    async def one() -> tuple[Report, float]:
        started = time.monotonic()
        report = await check(parse_target(user), options)
        return report, time.monotonic() - started

    async def many() -> list[tuple[Report, float]]:
        return list(await asyncio.gather(*(one() for _ in range(20))))

    started = time.monotonic()
    outcomes = asyncio.run(many())
    elapsed = time.monotonic() - started
    # Then every Exchange probe of every check passed: no rejected login, no broken handshake
    failures = [line for report, _ in outcomes for line in _not_passing(report)]
    assert failures == []
    # And every check logged in at every endpoint (each one's transcript shows NTLM type 3)
    for report, _ in outcomes:
        probes = {r.probe for r in report.results if r.probe in EXCHANGE_PROBES}
        assert probes == set(EXCHANGE_PROBES)
    with capsys.disabled():  # measured, never asserted
        each = sorted(t for _, t in outcomes)
        print(f"\n20 concurrent Exchange checks: {elapsed:.2f} s in all, each "
              f"{each[0]:.2f}-{each[-1]:.2f} s")  # fmt: skip


def test_a_check_with_all_methods_has_no_authentication_failure(
    lab: LabInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one full Exchange check trying every Autodiscover method
    user, options = _options(lab, all_methods=True)
    started = time.monotonic()
    report = asyncio.run(check(parse_target(user), options))
    elapsed = time.monotonic() - started
    # Then no authentication failed anywhere (Autodiscover's methods included)
    codes = [f.code for _, f in report.findings() if ".auth." in f.code
             and f.status not in OK]  # fmt: skip
    assert codes == []
    assert _not_passing(report) == []
    with capsys.disabled():  # measured, never asserted
        print(f"\nExchange check with --all-methods: {elapsed:.2f} s")


# --- curl, a client we did not write -------------------------------------------------------------


def _curl(lab: LabInfo, auth: str, method: str, path: str, *, host: str,
          headers: tuple[str, ...] = (), body: bytes = b"") -> tuple[int, int]:  # fmt: skip
    """Run curl with ``--<auth>`` as the healthy domain's user: (HTTP status, connections)."""
    info = lab.scenario("healthy")
    user, password = info.users[0]
    address = info.host(host).ipv4
    name = info.host(host).name
    # The credentials go in through a config on stdin, never on the command line.
    config = f'user = "{user}:{password}"\n'
    args = ["curl", "--silent", "--show-error", f"--{auth}", "--config", "-",
            "--cacert", str(lab.ca_file), "--resolve", f"{name}:443:{address}",
            "--request", method, "--output", "/dev/null",
            "--write-out", "%{http_code} %{num_connects}", "--max-time", "20"]  # fmt: skip
    for header in headers:
        args += ["--header", header]
    if body:
        args += ["--data-binary", "@" + _body_file(lab, body)]
    args.append(f"https://{name}{path}")
    done = subprocess.run(args, input=config, capture_output=True, text=True, check=False,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, connects = done.stdout.split()
    return int(status), int(connects)


def _body_file(lab: LabInfo, body: bytes) -> str:
    path = lab.directory / "curl-body.bin"
    path.write_bytes(body)
    return str(path)


def _endpoints(lab: LabInfo) -> list[tuple[str, str, str, tuple[str, ...], bytes]]:
    """(host role, method, path, headers, body) of each NTLM endpoint of the healthy domain."""
    info = lab.scenario("healthy")
    user = info.users[0][0]
    request = build_request(user)
    mailbox = f"/mapi/emsmdb/?MailboxId=x@{info.domain}"
    return [
        ("autodiscover", "POST", "/autodiscover/autodiscover.xml",
         ("Content-Type: text/xml",), request),
        ("mail", "POST", "/EWS/Exchange.asmx", ("Content-Type: text/xml; charset=utf-8",),
         GETFOLDER),
        ("mail", "OPTIONS", "/Microsoft-Server-ActiveSync", (), b""),
        ("mail", "POST", mailbox, ("Content-Type: application/mapi-http",
                                   "X-RequestType: PING"), b""),
    ]  # fmt: skip


@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_curl_logs_in_at_every_exchange_endpoint(lab: LabInfo, auth: str) -> None:
    for role, method, path, headers, body in _endpoints(lab):
        # When Debian's curl sends the request with --ntlm / --basic
        status, connects = _curl(lab, auth, method, path, host=role, headers=headers, body=body)
        # Then the emulator lets it in, and curl needed one connection (NTLM's handshake and
        # the authenticated request on it)
        assert (path, status) == (path, 200)
        assert connects == 1, path


def test_twenty_concurrent_activesync_checks_of_sogo_all_pass(
    lab: LabInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given twenty ActiveSync checks of the SOGo scenario (a real ActiveSync server, Dovecot
    # behind it), started at once
    user, password = lab.scenario("sogo").users[0]
    options = RunOptions(
        nameservers=(Nameserver(lab.resolver),), ca_file=Path(lab.ca_file),
        credentials=Credentials(user, password=password), tests=("activesync",),
        timeout=150, probe_timeout=150, op_timeout=30, connect_timeout=15,
    )  # fmt: skip

    async def many() -> list[Report]:
        return list(await asyncio.gather(*(check(parse_target(user), options)
                                           for _ in range(20))))  # fmt: skip

    started = time.monotonic()
    reports = asyncio.run(many())
    elapsed = time.monotonic() - started
    # Then every one logged in, listed the folders and passed: nothing SOGo does not deserve
    for report in reports:
        results = [r for r in report.results if r.probe == "activesync"]
        assert results and all(r.status is Status.PASS for r in results), [
            f"{f.code}={f.status}: {f.detail[:160]}" for r in results for _, f in
            ((r, f) for top in r.steps for s in top.walk() for f in s.findings)
            if f.status not in OK
        ]
    with capsys.disabled():  # measured, never asserted
        print(f"\n20 concurrent ActiveSync checks of SOGo: {elapsed:.2f} s")
