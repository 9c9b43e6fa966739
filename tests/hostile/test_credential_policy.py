"""Who gets the password (docs/security.md), against hostile servers on loopback.

Every source the credential policy names has a case here: an SRV record and an http
redirect leading to an outside host that answers Autodiscover without authentication,
autoconfig over plain http naming an outside IMAP server, a redirect carrying
``user:password@``, an endpoint that answers 200 without a challenge, and a Microsoft 365
namespace (resolved to loopback with ``--connect``) that is allowed. Each server keeps its
own log of what arrived; the assertions read that log, not rca's report, to decide whether
a credential arrived where it must not.

Hosts: ``policy.test`` is the e-mail domain; ``outside.test`` is somebody else. One
certificate of a test PKI covers every name. The http-only sources (Autodiscover's http
redirect method, autoconfig over http) use port 80 by definition, so their server binds
port 80 on an address of its own, picked at random in 127.0.0.0/8.
"""

from __future__ import annotations

import base64
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from analyzer.lab.pki import CertSpec, LabPKI
from reports.html import render
from reports.json import dumps
from tests.servers.autodiscover import settings_xml
from tests.servers.dnsserver import DnsServer, dns_server
from tests.servers.tcp import TcpServer, read_http_request, tls_then

ADDRESS = "alice@policy.test"
PASSWORD = "Policy-Pa55word-7f3a!"
URL_SECRET = "Url-Secret-9c1e"
DEADLINE_S = 25.0
NAMES = (
    "policy.test", "autodiscover.policy.test", "ad.policy.test", "mail.policy.test",
    "ad.outside.test",
    "mail.outside.test", "imap.outside.test", "outlook.office365.com",
)  # fmt: skip
#: ``scheme://user:password@`` with a password that is not the hidden form.
USERINFO = re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@\"'<>]*:(?!\*\*\*@)[^/\s@\"'<>]+@", re.I)

Route = Callable[["Request"], bytes]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the server saw it (its own log)."""

    method: str
    path: str
    host: str
    authorization: str
    body: bytes = b""


@dataclass
class Log:
    """What a server received, in order."""

    requests: list[Request] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)

    def with_credentials(self) -> list[Request]:
        return [r for r in self.requests if r.authorization]


def http_script(route: Route, log: Log) -> Callable[[socket.socket, threading.Event], None]:
    """Serve requests on one connection (keep-alive) with ``route``, logging each."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        with conn.makefile("rb") as rfile:
            while not stop.is_set():
                read = read_http_request(rfile)
                if read is None:
                    return
                method, path, headers, body = read
                request = Request(method, path, headers.get("host", ""),
                                  headers.get("authorization", ""), body)  # fmt: skip
                log.requests.append(request)
                conn.sendall(route(request))

    return script


def reply(status: str, body: bytes = b"", *, headers: str = "",
          content_type: str = "text/xml") -> bytes:  # fmt: skip
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


CHALLENGE = reply("401 Unauthorized", headers='WWW-Authenticate: Basic realm="x"\r\n')


def outside_settings(port: int, *, ews_host: str = "mail.outside.test") -> bytes:
    """An outlook-schema answer: EWS and the Availability service (ASUrl) on ``ews_host``."""
    ews = f"https://{ews_host}:{port}/EWS/Exchange.asmx"
    return settings_xml(
        "<Action>settings</Action><Protocol><Type>EXPR</Type><Server>mail.outside.test</Server>"
        "<SSL>On</SSL><AuthPackage>Basic</AuthPackage>"
        f"<EwsUrl>{ews}</EwsUrl><ASUrl>{ews}</ASUrl></Protocol>"
    )


def mobilesync_settings(port: int, *, eas_host: str) -> bytes:
    """A mobilesync-schema answer ([MS-ASCMD] 4.2.4) naming ActiveSync on ``eas_host``."""
    url = f"https://{eas_host}:{port}/Microsoft-Server-ActiveSync"
    return (
        '<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        'autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/'
        'exchange/autodiscover/mobilesync/responseschema/2006"><Action><Settings><Server>'
        f"<Type>MobileSync</Type><Url>{url}</Url><Name>{url}</Name></Server></Settings>"
        "</Action></Response></Autodiscover>"
    ).encode()


def outside_answer(request: Request, port: int, *, ews_host: str = "mail.outside.test",
                   eas_host: str = "mail.outside.test") -> bytes:  # fmt: skip
    """The outside Autodiscover server's answer to ``request``, in the schema it asked for:
    ActiveSync's URL comes from the mobilesync schema (ASUrl is the Availability service)."""
    if b"mobilesync/requestschema" in request.body:
        return mobilesync_settings(port, eas_host=eas_host)
    return outside_settings(port, ews_host=ews_host)


def hostile_autodiscover(port: Callable[[], int]) -> Route:
    """Autodiscover answered without authentication; every other path asks for Basic and
    answers 200 once it gets it (so a credential that arrives is logged and used)."""

    def route(request: Request) -> bytes:
        if request.path.lower().startswith("/autodiscover/"):
            return reply("200 OK", outside_answer(request, port()))
        if not request.authorization:
            return CHALLENGE
        return reply("200 OK", b"<ok/>")

    return route


# --- fixtures ------------------------------------------------------------------------------------


@dataclass
class World:
    pki: LabPKI
    server_context: ssl.SSLContext
    stack: list[TcpServer] = field(default_factory=list)

    def https(self, route: Route) -> tuple[TcpServer, Log]:
        log = Log()
        server = TcpServer(tls_then(self.server_context, http_script(route, log)))
        server.__enter__()
        self.stack.append(server)
        return server, log

    def tls(self, script: Callable[[socket.socket, threading.Event], None]) -> TcpServer:
        server = TcpServer(tls_then(self.server_context, script))
        server.__enter__()
        self.stack.append(server)
        return server

    def http80(self, route: Route) -> tuple[TcpServer, Log]:
        """A plain http server on port 80 of an address of its own."""
        log = Log()
        rng = random.Random()  # noqa: S311 - an address, not a secret
        for _ in range(20):
            address = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.{rng.randint(2, 250)}"
            with socket.socket() as trial:  # closed at once: no socket left behind on failure
                try:
                    trial.bind((address, 80))
                except OSError:
                    continue
            server = TcpServer(http_script(route, log), address=address, port=80)
            server.__enter__()
            self.stack.append(server)
            return server, log
        raise AssertionError("could not bind port 80 on loopback (it needs root, as the lab)")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabPKI, ssl.SSLContext]:
    pki = LabPKI.create(tmp_path_factory.mktemp("policy-pki"), now=datetime.now(UTC))
    cert = pki.issue(CertSpec(name="policy", dns_names=NAMES))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return pki, context


@pytest.fixture
def world(certificates: tuple[LabPKI, ssl.SSLContext]) -> Iterator[World]:
    state = World(pki=certificates[0], server_context=certificates[1])
    yield state
    for server in state.stack:
        server.__exit__(None, None, None)


def zones(*, policy: str = "", outside: str = "") -> dict[str, str]:
    head = "$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n"
    return {
        "policy.test.": head + policy,
        "outside.test.": head + "ad IN A 127.0.0.1\nmail IN A 127.0.0.1\nimap IN A 127.0.0.1\n"
        + outside,
    }


async def run(
    world: World, dns: DnsServer, *tests: str, crash_expected: bool = False, **kw: object
) -> Report:
    options = RunOptions(
        tests=tests,
        timeout=DEADLINE_S,
        op_timeout=3,
        connect_timeout=2,
        probe_timeout=DEADLINE_S,
        ca_file=world.pki.ca_file,
        families=(4,),
        nameservers=(Nameserver(dns.address, dns.port),),
        credentials=Credentials(ADDRESS, password=PASSWORD),
        **kw,  # type: ignore[arg-type]
    )
    started = time.monotonic()
    report = await check(parse_target(ADDRESS), options)
    assert time.monotonic() - started < DEADLINE_S + 5
    crashed = [f.detail for _, f in report.findings() if f.code == "probe.crashed"]
    assert bool(crashed) == crash_expected, crashed
    assert_clean(report)
    return report


def assert_clean(report: Report) -> None:
    """Neither the password nor any URL's userinfo in the reports."""
    for text in (dumps(report), render(report)):
        assert PASSWORD not in text
        assert URL_SECRET not in text
        assert not USERINFO.search(text), USERINFO.search(text)


def found(report: Report, code: str) -> list[str]:
    return [f.detail for _, f in report.findings() if f.code == code]


# --- an outside host answering Autodiscover anonymously ------------------------------------------


async def test_srv_to_an_outside_host_answering_anonymously_gets_no_password(
    world: World,
) -> None:
    # Given an SRV record pointing at an outside host that answers Autodiscover without
    # authentication, naming EWS on that host
    server, log = world.https(hostile_autodiscover(lambda: server.port))
    srv = f"_autodiscover._tcp IN SRV 0 0 {server.port} ad.outside.test.\n"
    with dns_server(zones(policy=srv)) as dns:
        # When rca discovers the settings and tests EWS with the user's password
        report = await run(world, dns, "autodiscover", "ews")
    # Then the EWS host was asked without credentials, and none ever arrived
    assert any(r.path.startswith("/EWS/") for r in log.requests), log.requests
    assert log.with_credentials() == []
    # And the withheld login is a finding naming the host, the source and the flag
    (withheld,) = found(report, "ews.login.withheld")
    assert "mail.outside.test" in withheld
    assert "Autodiscover" in withheld
    assert "--trust-redirect outside.test" in withheld
    assert found(report, "autodiscover.settings.unvouched")


async def test_the_flag_named_in_the_finding_allows_the_host(world: World) -> None:
    # Given the same outside host, and the user trusting its domain with the flag named
    server, log = world.https(hostile_autodiscover(lambda: server.port))
    srv = f"_autodiscover._tcp IN SRV 0 0 {server.port} ad.outside.test.\n"
    with dns_server(zones(policy=srv)) as dns:
        report = await run(world, dns, "autodiscover", "ews", trust_redirect=("outside.test",))
    # Then the EWS host gets the login after its Basic challenge
    logged_in = [r for r in log.with_credentials() if r.path.startswith("/EWS/")]
    assert logged_in and logged_in[0].authorization.startswith("Basic ")
    assert not found(report, "ews.login.withheld")


async def test_an_authenticated_answer_from_the_domain_vouches_for_an_outside_host(
    world: World,
) -> None:
    # Given Autodiscover inside the domain (through SRV) that asks for the login and then
    # names EWS on an outside host (a hosting provider)
    def route(request: Request) -> bytes:
        if not request.authorization:
            return CHALLENGE
        if request.path.lower().startswith("/autodiscover/"):
            return reply("200 OK", outside_answer(request, server.port))
        return reply("200 OK", b"<ok/>")

    server, log = world.https(route)
    srv = f"_autodiscover._tcp IN SRV 0 0 {server.port} ad.policy.test.\n"
    with dns_server(zones(policy=srv + "ad IN A 127.0.0.1\n")) as dns:
        report = await run(world, dns, "autodiscover", "ews")
    # Then the outside EWS host, named by a trusted answer, gets the login
    hosts = {r.host.split(":")[0] for r in log.with_credentials()}
    assert hosts == {"ad.policy.test", "mail.outside.test"}, log.requests
    assert not found(report, "ews.login.withheld")
    assert not found(report, "autodiscover.settings.unvouched")


async def test_http_redirect_to_an_outside_host_gets_no_password(world: World) -> None:
    # Given http://autodiscover.policy.test redirecting to an outside host that answers
    # Autodiscover without authentication
    server, log = world.https(hostile_autodiscover(lambda: server.port))
    target = f"https://ad.outside.test:{server.port}/autodiscover/autodiscover.xml"
    http, http_log = world.http80(
        lambda r: reply("302 Found", headers=f"Location: {target}\r\n")
    )
    with dns_server(zones(policy=f"autodiscover IN A {http.address}\n")) as dns:
        # When rca discovers the settings and tests EWS
        report = await run(world, dns, "autodiscover", "ews")
    # Then the redirect was followed without credentials, and none arrived anywhere
    assert http_log.requests and not http_log.with_credentials()
    assert any(r.path.startswith("/autodiscover/") for r in log.requests)
    assert log.with_credentials() == []
    (withheld,) = found(report, "ews.login.withheld")
    assert "mail.outside.test" in withheld
    assert "--trust-redirect outside.test" in withheld


async def test_a_microsoft_365_namespace_is_allowed_and_nothing_else(world: World) -> None:
    # Given an anonymous outside answer naming EWS at outlook.office365.com (Microsoft's
    # published Exchange Online namespace, resolved to loopback) and ActiveSync at an
    # outside host
    def route(request: Request) -> bytes:
        if request.path.lower().startswith("/autodiscover/"):
            body = outside_answer(request, server.port, ews_host="outlook.office365.com")
            return reply("200 OK", body)
        return CHALLENGE if not request.authorization else reply("200 OK", b"<ok/>")

    server, log = world.https(route)
    srv = f"_autodiscover._tcp IN SRV 0 0 {server.port} ad.outside.test.\n"
    with dns_server(zones(policy=srv)) as dns:
        report = await run(world, dns, "autodiscover", "ews", "activesync",
                           connect={"outlook.office365.com": ("127.0.0.1",)})  # fmt: skip
    # Then the Microsoft 365 host got the login, after its challenge
    hosts = {r.host.split(":")[0] for r in log.with_credentials()}
    assert hosts == {"outlook.office365.com"}, log.requests
    # And the outside ActiveSync host did not
    assert any(r.path.startswith("/Microsoft-Server-ActiveSync") for r in log.requests)
    (withheld,) = found(report, "activesync.login.withheld")
    assert "mail.outside.test" in withheld and "--trust-redirect outside.test" in withheld


# --- autoconfig over http naming an outside IMAP server ------------------------------------------


def imap_script(log: Log) -> Callable[[socket.socket, threading.Event], None]:
    """Just enough IMAP over TLS to reach the login; every line received is logged and a
    login is refused (so one that arrives is visible in the log)."""

    def script(tls: socket.socket, stop: threading.Event) -> None:
        tls.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile IMAP ready\r\n")
        with tls.makefile("rb") as rfile:
            while not stop.is_set():
                line = rfile.readline(65536)
                if not line:
                    return
                log.lines.append(line)
                tag, _, rest = line.decode("latin-1").strip().partition(" ")
                command = rest.split(" ")[0].upper()
                literal = re.search(r"\{(\d+)\}$", rest)
                if literal or (command == "AUTHENTICATE" and len(rest.split(" ")) == 2):
                    tls.sendall(b"+ go on\r\n")
                    extra = rfile.read(int(literal.group(1))) if literal else b""
                    log.lines.append(extra + rfile.readline(65536))
                if command == "CAPABILITY":
                    tls.sendall(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode())
                elif command in ("LOGIN", "AUTHENTICATE"):
                    tls.sendall(f"{tag} NO [AUTHENTICATIONFAILED] no\r\n".encode())
                elif command == "LOGOUT":
                    tls.sendall(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                    return
                else:
                    tls.sendall(f"{tag} OK done\r\n".encode())

    return script


async def test_autoconfig_over_http_naming_an_outside_imap_server_gets_no_password(
    world: World,
) -> None:
    # Given autoconfig served only over plain http, naming an IMAP server outside the domain
    imap_log = Log()
    imap = world.tls(imap_script(imap_log))
    document = (
        '<?xml version="1.0"?><clientConfig version="1.1"><emailProvider id="policy.test">'
        "<domain>policy.test</domain><incomingServer type=\"imap\">"
        f"<hostname>imap.outside.test</hostname><port>{imap.port}</port>"
        "<socketType>SSL</socketType><authentication>password-cleartext</authentication>"
        "<username>%EMAILADDRESS%</username></incomingServer></emailProvider></clientConfig>"
    ).encode()
    http, http_log = world.http80(lambda r: reply("200 OK", document))
    with dns_server(zones(policy=f"autoconfig IN A {http.address}\n")) as dns:
        # When rca reads the settings and tests IMAP with the user's password
        report = await run(world, dns, "autoconfig", "imap")
    # Then the IMAP server was opened (greeting, capabilities) but no login arrived
    assert http_log.requests
    received = b"".join(imap_log.lines)
    assert b"CAPABILITY" in received.upper()
    assert b"LOGIN" not in received.upper() and b"AUTHENTICATE" not in received.upper()
    assert PASSWORD.encode() not in received
    assert base64.b64encode(f"\0{ADDRESS}\0{PASSWORD}".encode()) not in received
    # And the finding names the host, the http source and the flag
    (withheld,) = found(report, "imap.login.withheld")
    assert "imap.outside.test" in withheld
    assert "http://autoconfig.policy.test" in withheld
    assert "--trust-redirect outside.test" in withheld


# --- user:password@ in a redirect ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["https", "http"])
@pytest.mark.parametrize("how", ["redirectUrl", "Location"])
async def test_userinfo_of_a_redirect_appears_nowhere(world: World, how: str, scheme: str) -> None:
    # Given Autodiscover in the domain answering the login with a redirect whose URL
    # carries a user name and password
    leaked = f"{scheme}://svc:{URL_SECRET}@mail.policy.test/autodiscover/autodiscover.xml"

    def route(request: Request) -> bytes:
        if not request.authorization:
            return CHALLENGE
        if how == "Location":
            return reply("302 Found", headers=f"Location: {leaked}\r\n")
        return reply("200 OK", settings_xml(
            f"<Action>redirectUrl</Action><RedirectUrl>{leaked}</RedirectUrl>"
        ))  # fmt: skip

    server, log = world.https(route)
    with dns_server(zones()) as dns:
        report = await run(
            world, dns, "autodiscover", connect={"autodiscover.policy.test": ("127.0.0.1",)},
            autodiscover_url=f"https://autodiscover.policy.test:{server.port}"
            "/autodiscover/autodiscover.xml",
        )
    # Then the redirect is refused (not https, or carrying credentials), shown with the
    # password hidden, and its password is in no report (assert_clean)
    code = {"https": "credentials_in_url", "http": "insecure"}[scheme]
    (refused,) = found(report, f"autodiscover.redirect.{code}")
    assert f"{scheme}://svc:***@mail.policy.test" in refused
    # The challenge and the login; the redirect not followed. Autodiscover v2 was asked
    # ahead of the verdict, beside the login (anonymous GETs to the same host, unused).
    posts = [r for r in log.requests if r.method == "POST"]
    assert len(posts) == 2
    others = [r for r in log.requests if r.method != "POST"]
    assert all(r.method == "GET" and "/autodiscover.json/" in r.path for r in others)
    assert not any(r.authorization for r in others)


# --- an endpoint that never asks for credentials -------------------------------------------------


async def test_an_endpoint_answering_200_without_a_challenge_gets_no_password(
    world: World,
) -> None:
    # Given an EWS URL in the domain that answers everything 200, asking for nothing
    server, log = world.https(lambda r: reply("200 OK", b"<ok/>"))
    with dns_server(zones()) as dns:
        # When rca tests EWS with the user's password
        report = await run(
            world, dns, "ews", connect={"mail.policy.test": ("127.0.0.1",)},
            ews_url=f"https://mail.policy.test:{server.port}/EWS/Exchange.asmx",
        )
    # Then the unauthenticated request was made, and no credential followed it
    assert log.requests
    assert log.with_credentials() == []
    assert found(report, "ews.auth.no_challenge")


# --- rca's own failure is not the target's -------------------------------------------------------


async def test_an_exception_in_rca_is_reported_as_rca_failing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bug in rca's own code on the request path (not the network)
    def broken(*args: object, **kwargs: object) -> bytes:
        raise KeyError("a bug inside rca")

    monkeypatch.setattr("analyzer.protocols.http.read_bounded", broken)
    server, _ = world.https(lambda r: CHALLENGE)
    with dns_server(zones()) as dns:
        # When EWS is tested
        report = await run(
            world, dns, "ews", connect={"mail.policy.test": ("127.0.0.1",)}, crash_expected=True,
            ews_url=f"https://mail.policy.test:{server.port}/EWS/Exchange.asmx",
        )
    # Then the EWS result is rca's error, with the crash named, and nothing blamed on the
    # server
    ews = [r for r in report.results if r.probe == "ews"]
    assert ews and all(r.status == Status.ERROR for r in ews)
    crashes = [f for r in ews for f in r.findings() if f.code == "probe.crashed"]
    assert crashes and "KeyError" in crashes[0].detail and "rca failed" in crashes[0].detail
    blamed = [f.code for r in ews for f in r.findings() if f.status == Status.FAIL]
    assert blamed == []


def test_the_microsoft_365_list_names_its_source() -> None:
    # Given the data file / Then it names Microsoft's page and lists only client names
    text = (Path(__file__).parents[2] / "analyzer" / "data" / "m365_namespaces.toml").read_text()
    assert "learn.microsoft.com" in text
    from analyzer.core.credpolicy import m365_namespaces

    names = m365_namespaces()
    assert "outlook.office365.com" in names
    assert not any(n.startswith("*") or "protection.outlook.com" in n for n in names)
