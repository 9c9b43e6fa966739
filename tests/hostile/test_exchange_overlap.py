"""EWS and MAPI/HTTP against the lab's Exchange emulator on loopback, held by a server that
answers some requests only once another request has arrived: only a client that sends
independent requests at once gets its answers in time.

- MAPI/HTTP: the unauthenticated request to the mailbox (emsmdb) waits for the one to the
  address book (nspi); the plain-http request (the SSL offloading probe, to port 80 of the
  same host) waits for the authenticated requests of its endpoint;
- EWS: the GetUserAvailability answer waits for the GetUserOofSettings request;
- Outlook Anywhere: the plain-http RPC_IN_DATA waits for an authenticated RPC request;
- Autodiscover v2: the answer for the first protocol waits for the request for the last.

Each wait is bounded (``HOLD``), and records whether the other request came: a client that
asks one after the other still ends, with the rendezvous missed.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, RunOptions
from analyzer.core.facts import AUTODISCOVER_SETTINGS, AutodiscoverSettings, OutlookAnywhere
from analyzer.core.model import Report, Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target, parse_target
from analyzer.lab import emulator
from analyzer.lab.emulator import EmulatorRequest, EmulatorResponse
from analyzer.lab.pki import LabPKI
from analyzer.protocols.http import make_client
from probes.autodiscover.v2 import PROTOCOLS as V2_PROTOCOLS
from probes.autodiscover.v2 import check_v2
from probes.ews import PROBE as EWS
from probes.mapi_http import PROBE as MAPI
from probes.outlook_anywhere import PROBE as OUTLOOK_ANYWHERE
from reports.html import render
from reports.json import dumps
from tests.servers.exchange import serve_emulator
from tests.servers.tcp import server_context

DOMAIN = "overlap.test"
HOST = f"mail.{DOMAIN}"
USER = f"alice@{DOMAIN}"
PASSWORD = "S3cret-overlap-pw"  # noqa: S105 - a test secret
#: How long a held request waits for its partner (s); below the run's op_timeout.
HOLD = 3.0


@dataclass(slots=True)
class Rendezvous:
    """Requests that wait for another one; ``met`` says which saw their partner in time."""

    arrived: dict[str, threading.Event] = field(default_factory=dict)
    met: dict[str, bool] = field(default_factory=dict)

    def event(self, name: str) -> threading.Event:
        return self.arrived.setdefault(name, threading.Event())

    def arrive(self, name: str) -> None:
        self.event(name).set()

    def wait(self, name: str, partner: str) -> None:
        self.met[name] = self.event(partner).wait(HOLD)


def _held(rv: Rendezvous, original: Callable[[EmulatorRequest], EmulatorResponse]
          ) -> Callable[[EmulatorRequest], EmulatorResponse]:  # fmt: skip
    def handler(request: EmulatorRequest) -> EmulatorResponse:
        path = request.path.lower()
        endpoint = ("emsmdb" if "/emsmdb" in path else "nspi" if "/nspi" in path
                    else "rpc" if path.startswith("/rpc/") else "ews")  # fmt: skip
        if request.scenario == "plain":
            rv.wait(f"{endpoint} plain", f"{endpoint} authenticated")
            return original(request)
        if "authorization" in request.headers:
            rv.arrive(f"{endpoint} authenticated")
        elif endpoint != "ews":
            rv.arrive(f"{endpoint} anonymous")
            if endpoint == "emsmdb":
                rv.wait("emsmdb anonymous", "nspi anonymous")
        response = original(request)
        if b"GetUserOofSettingsResponse" in response.body:
            rv.arrive("oof")
        if b"GetUserAvailabilityResponse" in response.body:
            rv.wait("availability", "oof")
        return response

    return handler


def _held_v2(rv: Rendezvous, original: Callable[[EmulatorRequest], EmulatorResponse]
             ) -> Callable[[EmulatorRequest], EmulatorResponse]:  # fmt: skip
    first, last = V2_PROTOCOLS[0], V2_PROTOCOLS[-1]

    def handler(request: EmulatorRequest) -> EmulatorResponse:
        protocol = (request.query.get("Protocol") or [""])[0]
        rv.arrive(f"v2 {protocol}")
        if protocol == first:
            rv.wait(f"v2 {first}", f"v2 {last}")
        return original(request)

    return handler


@pytest.fixture(scope="module")
def tls(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "overlap", HOST)


@pytest.fixture
def exchange(tls: ssl.SSLContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[tuple[str, int, Rendezvous]]:  # fmt: skip
    """The emulator over TLS on port 443 of a loopback address of its own, and over plain
    http on its port 80 (where the plain-http URLs of the host lead)."""
    rv = Rendezvous()
    for prefix in ("/mapi/", "/EWS/", "/rpc/"):
        monkeypatch.setitem(emulator.ROUTES, prefix, _held(rv, emulator.ROUTES[prefix]))
    json_route = "/autodiscover/autodiscover.json"
    monkeypatch.setitem(emulator.ROUTES, json_route, _held_v2(rv, emulator.ROUTES[json_route]))
    with serve_emulator(host=HOST, domain=DOMAIN, users=[(USER, PASSWORD)], tls=tls,
                        tmp_path=tmp_path, monkeypatch=monkeypatch, listeners=(443, 80)
                        ) as (address, servers):  # fmt: skip
        yield address, servers[0].server_address[1], rv


async def _run(pki: LabPKI, address: str, port: int) -> Report:
    base = f"https://{HOST}" if port == 443 else f"https://{HOST}:{port}"

    async def autodiscover(ctx: ProbeContext, target: Target) -> None:
        ews = f"{base}/EWS/Exchange.asmx"
        ctx.publish(AUTODISCOVER_SETTINGS, AutodiscoverSettings(
            email=USER, source_url=f"https://autodiscover.{DOMAIN}/autodiscover/autodiscover.xml",
            legacy_dn=f"/o={DOMAIN}/ou=Exchange Administrative Group/cn=Recipients/cn=alice",
            ews_url=ews, availability_url=ews, oof_url=ews,
            mapi_mailstore_url=f"{base}/mapi/emsmdb/?MailboxId=alice@{DOMAIN}",
            mapi_addressbook_url=f"{base}/mapi/nspi/?MailboxId=alice@{DOMAIN}",
            mailbox_server=f"alice@{DOMAIN}",
            outlook_anywhere=(OutlookAnywhere(server=base.removeprefix("https://"),
                                              auth_package="Ntlm"),),
            vouched=True,
        ))  # fmt: skip

    probes = [
        Probe(id="autodiscover", title="Autodiscover", run=autodiscover,
              provides=(AUTODISCOVER_SETTINGS,)),  # fmt: skip
        EWS,
        MAPI,
        OUTLOOK_ANYWHERE,
    ]
    options = RunOptions(
        timeout=30, op_timeout=HOLD + 5, ca_file=pki.ca_file, connect={HOST: (address,)},
        credentials=Credentials(USER, password=PASSWORD),
    )  # fmt: skip
    return await check(parse_target(USER), options, probes=probes)


async def test_mapi_endpoints_and_the_plain_http_request_go_out_at_once(
    pki: LabPKI, exchange: tuple[str, int, Rendezvous]
) -> None:
    # Given the emulator holding the emsmdb requests for nspi's and for the plain-http one
    address, port, rv = exchange
    # When EWS and MAPI/HTTP run
    report = await _run(pki, address, port)
    # Then both MAPI endpoints were asked at once, and the plain-http request went out
    # beside the authenticated ones
    assert rv.met.get("emsmdb anonymous") is True
    assert rv.met.get("emsmdb plain") is True
    assert rv.met.get("nspi plain") is True
    # And the report keeps its order (emsmdb, then nspi; plain http before the PING)
    mapi = [r for r in report.results if r.probe == "mapi_http"]
    assert ["/emsmdb/" in mapi[0].subject, "/nspi/" in mapi[1].subject] == [True, True]
    titles = [s.title for s in mapi[0].steps]
    assert titles.index(next(t for t in titles if t.startswith("Plain HTTP"))) < titles.index(
        next(t for t in titles if t.startswith("PING as"))
    )
    # (the plain-http answer is a warning: the emulator serves /mapi over http too)
    sessions = [f.code for r in mapi for s in r.steps for f in s.findings
                if f.code.startswith("mapihttp.session")]  # fmt: skip
    assert sessions == ["mapihttp.session.ok", "mapihttp.session.ok"]
    assert {r.status for r in mapi} == {Status.WARN}
    assert PASSWORD not in dumps(report) and PASSWORD not in render(report)


async def test_ews_mailbox_requests_go_out_at_once_after_getfolder(
    pki: LabPKI, exchange: tuple[str, int, Rendezvous]
) -> None:
    # Given the emulator holding the GetUserAvailability answer for GetUserOofSettings
    address, port, rv = exchange
    # When EWS runs
    report = await _run(pki, address, port)
    # Then both went out together, once GetFolder had proved the login
    assert rv.met.get("availability") is True
    (ews,) = [r for r in report.results if r.probe == "ews"]
    titles = [s.title.split(" ")[0] for s in ews.steps]
    assert titles[-3:] == ["GetFolder", "GetUserAvailability", "GetUserOofSettings"]
    assert ews.status == Status.PASS, [(s.title, [f.code for f in s.findings]) for s in ews.steps]
    assert PASSWORD not in dumps(report) and PASSWORD not in render(report)


async def test_rpc_plain_http_request_goes_out_beside_the_pings(
    pki: LabPKI, exchange: tuple[str, int, Rendezvous]
) -> None:
    # Given the emulator holding the plain-http RPC_IN_DATA until an authenticated RPC request
    address, port, rv = exchange
    # When Outlook Anywhere runs
    report = await _run(pki, address, port)
    # Then the plain-http request went out beside the authenticated pings
    (oa,) = [r for r in report.results if r.probe == "outlook_anywhere"]
    assert rv.met.get("rpc plain") is True
    titles = [s.title.split(":")[0] for s in oa.steps]
    assert titles.index("Plain HTTP") < titles.index("RPC ping alice@overlap.test")
    pings = [f.code for s in oa.steps for f in s.findings if s.title.startswith("RPC ping")]
    assert pings == ["outlookanywhere.rpc.ok"] * 3


async def test_autodiscover_v2_questions_go_out_at_once(
    pki: LabPKI, exchange: tuple[str, int, Rendezvous]
) -> None:
    # Given the emulator holding the v2 answer for the first protocol until the request for
    # the last one has arrived
    address, port, rv = exchange
    host = HOST if port == 443 else f"{HOST}:{port}"

    async def v2(ctx: ProbeContext, target: Target) -> None:
        with ctx.result(USER) as res:
            async with make_client(ctx.run) as client:
                await check_v2(ctx, res, client, host=host, address=USER, settings=None)

    options = RunOptions(timeout=30, op_timeout=HOLD + 5, ca_file=pki.ca_file,
                         connect={HOST: (address,)})  # fmt: skip
    # When the v2 questions are asked
    report = await check(parse_target(USER), options,
                         probes=[Probe(id="autodiscover", title="Autodiscover", run=v2)])
    # Then they went out at once
    assert rv.met.get(f"v2 {V2_PROTOCOLS[0]}") is True
    # And the report lists them in the order of PROTOCOLS, each answered
    (result,) = report.results
    (step,) = result.steps
    assert [c.title.rsplit("=", 1)[1] for c in step.children] == list(V2_PROTOCOLS)
    assert [f.code for c in step.children for f in c.findings] == ["autodiscover.v2.ok"] * 3
