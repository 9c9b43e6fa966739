"""The Autodiscover probe against purpose-built hostile HTTPS servers on loopback.

Each server speaks just enough HTTP over TLS (a lab-PKI certificate for ``ad.hostile.test``):
401 with Basic to a request without credentials, then the hostile answer to the logged-in
request. The probe is pointed at it with ``--autodiscover-url`` and ``--connect``. Every case
must end as its own finding within the deadline, without a crash, and without the password
anywhere in the JSON or HTML report.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Report, Status
from analyzer.core.targets import parse_target
from analyzer.lab.pki import CertSpec, LabPKI
from reports.html import render
from reports.json import dumps
from tests.servers.autodiscover import settings_xml
from tests.servers.dnsserver import dns_server
from tests.servers.tcp import TcpServer, read_http_request, tls_then

HOST = "ad.hostile.test"
ADDRESS = "alice@hostile.test"
PASSWORD = "Hostile-Pa55word!"
DEADLINE_S = 20.0

Answer = Callable[[ssl.SSLSocket, threading.Event, int], None]


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, LabPKI]:
    pki = LabPKI.create(tmp_path_factory.mktemp("pki"), now=datetime.now(UTC))
    cert = pki.issue(CertSpec(name="ad-hostile", dns_names=(HOST,)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return context, pki


def http_server(answer: Answer) -> Callable[[socket.socket, threading.Event], None]:
    """401 Basic without credentials; ``answer(tls, stop, port)`` to the logged-in request."""

    def after(tls: socket.socket, stop: threading.Event) -> None:
        assert isinstance(tls, ssl.SSLSocket)
        port = tls.getsockname()[1]
        with tls.makefile("rb") as rfile:
            while not stop.is_set():
                request = read_http_request(rfile)
                if request is None:
                    return
                headers = request[2]
                if "authorization" not in headers:
                    tls.sendall(
                        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"\r\n'
                        b"Content-Length: 0\r\n\r\n"
                    )
                    continue
                answer(tls, stop, port)
                return

    return after


def respond(
    status: str, body: bytes, *, content_type: str = "text/xml", extra: bytes = b""
) -> Answer:
    def answer(tls: ssl.SSLSocket, stop: threading.Event, port: int) -> None:
        payload = body.replace(b"{port}", str(port).encode())
        tls.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n".encode()
            + extra
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )

    return answer


GOOD = settings_xml(
    "<Action>settings</Action><Protocol><Type>EXPR</Type><Server>mail.hostile.test</Server>"
    "<SSL>On</SSL><AuthPackage>Basic</AuthPackage>"
    "<EwsUrl>https://mail.hostile.test/EWS/Exchange.asmx</EwsUrl></Protocol>"
)


@pytest.fixture
def serve(tls_context: tuple[ssl.SSLContext, LabPKI]) -> Iterator[Callable[[Answer], TcpServer]]:
    servers: list[TcpServer] = []

    def start(answer: Answer) -> TcpServer:
        server = TcpServer(tls_then(tls_context[0], http_server(answer)))
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


async def probe(pki: LabPKI, port: int, **kw: object) -> tuple[Report, float]:
    options = RunOptions(
        tests=("autodiscover",),
        timeout=DEADLINE_S,
        op_timeout=2,
        connect_timeout=2,
        probe_timeout=DEADLINE_S,
        ca_file=pki.ca_file,
        connect={HOST: ("127.0.0.1",)},
        credentials=Credentials(ADDRESS, password=PASSWORD),
        autodiscover_url=f"https://{HOST}:{port}/autodiscover/autodiscover.xml",
        **kw,  # type: ignore[arg-type]
    )
    started = time.monotonic()
    report = await check(parse_target(ADDRESS), options)
    return report, time.monotonic() - started


def judged(report: Report, elapsed: float) -> dict[str, Status]:
    """The findings by code; asserts no crash, the deadline and no password in the reports."""
    found: dict[str, Status] = {}
    for _, f in report.findings():
        found.setdefault(f.code, f.status)
    assert "probe.crashed" not in found, [f.detail for _, f in report.findings()]
    assert elapsed < DEADLINE_S
    for text in (dumps(report), render(report)):
        assert PASSWORD not in text
    return found


# --- XML that must never be expanded -------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b"<Autodiscover>&lol3;</Autodiscover>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<Autodiscover><Response>&x;</Response></Autodiscover>"
)
DTD_ONLY = (
    b'<?xml version="1.0"?><!DOCTYPE Autodiscover SYSTEM "http://127.0.0.1:9/x.dtd">' + GOOD[21:]
)


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, DTD_ONLY],
    ids=["billion-laughs", "external-entity", "dtd"],
)
async def test_xml_with_dtd_or_entities_is_refused(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer], body: bytes
) -> None:
    # Given a server answering XML with a DTD / entity declarations
    server = serve(respond("200 OK", body))
    # When the probe reads it
    report, elapsed = await probe(tls_context[1], server.port)
    # Then it is refused unread, as its own finding
    assert judged(report, elapsed)["autodiscover.response.unsafe_xml"] == Status.FAIL


async def test_malformed_xml(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a truncated answer / When read / Then malformed, with the start of the body shown
    server = serve(respond("200 OK", GOOD[:-40]))
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.response.malformed"] == Status.FAIL


async def test_wrong_content_type(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given good settings labelled text/html
    server = serve(respond("200 OK", GOOD, content_type="text/html"))
    # When read / Then the label is a warning and the settings are still used
    report, elapsed = await probe(tls_context[1], server.port)
    found = judged(report, elapsed)
    assert found["autodiscover.response.content_type"] == Status.WARN
    assert found["autodiscover.settings.found"] == Status.PASS


async def test_html_login_page_is_not_autodiscover(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a reverse proxy's XHTML login page / When read / Then not an Autodiscover answer
    page = b'<html xmlns="http://www.w3.org/1999/xhtml"><body><form>Sign in</form></body></html>'
    server = serve(respond("200 OK", page, content_type="text/html"))
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.response.not_autodiscover"] == Status.FAIL


# --- size and time -------------------------------------------------------------------------------


def fifty_megabytes(tls: ssl.SSLSocket, stop: threading.Event, port: int) -> None:
    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n")
    chunk = b"<x>" + b"A" * 65530 + b"</x>"
    sent = 0
    while sent < 50 * 1024 * 1024 and not stop.is_set():
        tls.sendall(chunk)
        sent += len(chunk)


def trickle(tls: ssl.SSLSocket, stop: threading.Event, port: int) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n" + GOOD:
        if stop.wait(1.0):
            return
        tls.sendall(bytes([byte]))


async def test_fifty_megabytes_stop_at_the_limit(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a 50 MB answer without a Content-Length
    server = serve(fifty_megabytes)
    # When read / Then reading stops at the limit, as its own finding
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.response.too_large"] == Status.FAIL


async def test_announced_fifty_megabytes_are_not_read(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given an answer announcing 50 MB / When read / Then refused before reading
    def answer(tls: ssl.SSLSocket, stop: threading.Event, port: int) -> None:
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 52428800\r\n\r\n<x>"
        )
        stop.wait(5)

    server = serve(answer)
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.response.too_large"] == Status.FAIL


async def test_trickling_one_byte_per_second_ends_at_the_deadline(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a server sending its answer one byte per second
    server = serve(trickle)
    # When read / Then the request's own deadline (2 s) ends it, as a finding
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.response.timeout"] == Status.FAIL
    assert elapsed < 10


async def test_garbage_instead_of_http(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a server answering garbage after TLS / Then it is a finding, not a crash
    def answer(tls: ssl.SSLSocket, stop: threading.Event, port: int) -> None:
        tls.sendall(b"\x00\xff garbage that is not HTTP\r\n\r\n")

    server = serve(answer)
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.response.malformed"] == Status.FAIL


# --- redirects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "http://ad.hostile.test/autodiscover/autodiscover.xml",
        "gopher://ad.hostile.test/",
    ],
)
async def test_http_redirect_to_an_insecure_scheme_is_refused(
    tls_context: tuple[ssl.SSLContext, LabPKI],
    serve: Callable[[Answer], TcpServer],
    location: str,
) -> None:
    # Given a 302 to a URL that is not https
    server = serve(respond("302 Found", b"", extra=f"Location: {location}\r\n".encode()))
    # When the probe meets it / Then it is not followed
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.redirect.insecure"] == Status.FAIL


async def test_redirect_url_to_file_is_refused(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a redirectUrl to file:// / Then it is refused
    body = settings_xml("<Action>redirectUrl</Action><RedirectUrl>file:///etc/shadow</RedirectUrl>")
    server = serve(respond("200 OK", body))
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.redirect.insecure"] == Status.FAIL


async def test_redirect_url_with_embedded_credentials_is_refused_and_not_shown(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a redirectUrl carrying user:password (the user's own password, even)
    target = f"https://alice:{PASSWORD}@{HOST}:{{port}}/autodiscover/autodiscover.xml"
    body = settings_xml(f"<Action>redirectUrl</Action><RedirectUrl>{target}</RedirectUrl>")
    server = serve(respond("200 OK", body.replace(b"{{port}}", b"{port}")))
    # When the probe meets it
    report, elapsed = await probe(tls_context[1], server.port)
    # Then it is refused, and the credentials are not repeated in the report
    found = judged(report, elapsed)
    assert found["autodiscover.redirect.credentials_in_url"] == Status.FAIL
    detail = next(
        f.detail
        for _, f in report.findings()
        if f.code == "autodiscover.redirect.credentials_in_url"
    )
    # (shown as user:***@, docs/security.md)
    assert "alice:***@" in detail and PASSWORD not in detail


async def test_redirect_url_to_itself_is_a_loop(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a redirectUrl to the very URL asked / Then a loop
    target = f"https://{HOST}:{{port}}/AutoDiscover/AutoDiscover.xml"
    body = settings_xml(f"<Action>redirectUrl</Action><RedirectUrl>{target}</RedirectUrl>")
    server = serve(respond("200 OK", body.replace(b"{{port}}", b"{port}")))
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.redirect.loop"] == Status.FAIL


async def test_redirect_addr_to_the_same_address_is_invalid(
    tls_context: tuple[ssl.SSLContext, LabPKI], serve: Callable[[Answer], TcpServer]
) -> None:
    # Given a redirectAddr naming the address asked for / Then it is invalid, not followed
    body = settings_xml(
        f"<Action>redirectAddr</Action><RedirectAddr>{ADDRESS.upper()}</RedirectAddr>"
    )
    server = serve(respond("200 OK", body))
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)["autodiscover.redirect.same_address"] == Status.FAIL


@pytest.mark.parametrize(
    ("code", "finding"),
    [
        ("500", "autodiscover.error.invalid_address"),
        ("501", "autodiscover.error.no_configuration"),
        ("600", "autodiscover.error.invalid_request"),
        ("601", "autodiscover.error.schema_unavailable"),
        ("602", "autodiscover.error.user_not_found"),
        ("603", "autodiscover.error.server_error"),
        ("999", "autodiscover.error.other"),
    ],
)
async def test_every_error_code_has_its_finding(
    tls_context: tuple[ssl.SSLContext, LabPKI],
    serve: Callable[[Answer], TcpServer],
    code: str,
    finding: str,
) -> None:
    # Given an Error response with the code / Then its own finding
    body = (
        '<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        'autodiscover/responseschema/2006"><Response><Error Time="1" Id="2">'
        f"<ErrorCode>{code}</ErrorCode><Message>m</Message></Error></Response></Autodiscover>"
    ).encode()
    server = serve(respond("200 OK", body))
    report, elapsed = await probe(tls_context[1], server.port)
    assert judged(report, elapsed)[finding] == Status.FAIL


# --- an SRV record leading outside the domain -----------------------------------------------------

OTHER = "ad.other.test"


@pytest.fixture(scope="module")
def other_context(tls_context: tuple[ssl.SSLContext, LabPKI]) -> ssl.SSLContext:
    cert = tls_context[1].issue(CertSpec(name="ad-other", dns_names=(OTHER,)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


async def srv_probe(
    pki: LabPKI, other_context: ssl.SSLContext, **kw: object
) -> tuple[Report, float]:
    """Only the SRV method works: hostile.test has no addresses, its SRV record names OTHER."""
    with TcpServer(tls_then(other_context, http_server(respond("200 OK", GOOD)))) as server:
        zone = (
            "$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\n"
            f"_autodiscover._tcp IN SRV 0 0 {server.port} {OTHER}.\n"
        )
        with dns_server({"hostile.test.": zone}) as dns:
            options = RunOptions(
                tests=("autodiscover",),
                timeout=DEADLINE_S,
                op_timeout=2,
                connect_timeout=2,
                probe_timeout=DEADLINE_S,
                ca_file=pki.ca_file,
                connect={OTHER: ("127.0.0.1",)},
                nameservers=(Nameserver("127.0.0.1", dns.port),),
                credentials=Credentials(ADDRESS, password=PASSWORD),
                **kw,  # type: ignore[arg-type]
            )
            started = time.monotonic()
            report = await check(parse_target(ADDRESS), options)
            return report, time.monotonic() - started


async def test_srv_target_outside_the_domain_gets_no_credentials(
    tls_context: tuple[ssl.SSLContext, LabPKI], other_context: ssl.SSLContext
) -> None:
    # Given an SRV record pointing to another domain
    # When Autodiscover runs
    report, elapsed = await srv_probe(tls_context[1], other_context)
    # Then the target is a warning (Outlook prompts), and no credentials were sent there
    found = judged(report, elapsed)
    assert found["autodiscover.srv.outside_domain"] == Status.WARN
    assert found["autodiscover.credentials.withheld"] == Status.SKIP
    assert found["autodiscover.not_judged"] == Status.INCONCLUSIVE
    sent = [
        line.text
        for r in report.results
        for s in r.steps
        for n in s.walk()
        for line in n.transcript
        if line.direction == "send"
    ]
    assert not any(text.startswith("Authorization") for text in sent)


async def test_srv_target_outside_the_domain_with_trust_redirect(
    tls_context: tuple[ssl.SSLContext, LabPKI], other_context: ssl.SSLContext
) -> None:
    # Given the same record and --trust-redirect other.test / When Autodiscover runs
    report, elapsed = await srv_probe(tls_context[1], other_context, trust_redirect=("other.test",))
    # Then the settings are found there, still with the warning
    found = judged(report, elapsed)
    assert found["autodiscover.srv.outside_domain"] == Status.WARN
    assert found["autodiscover.found"] == Status.PASS
