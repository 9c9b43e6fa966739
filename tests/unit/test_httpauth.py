"""Client-side HTTP authentication (analyzer.protocols.httpauth) against the emulator's server side
(analyzer.lab.emulator_auth), over real TLS on loopback: Basic, NTLM over one keep-alive
connection, Bearer; what the 401 lists; what the transcript shows (never a secret)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.core.context import Credentials, RunContext, RunOptions
from analyzer.lab import emulator
from analyzer.lab.emulator import (
    EmulatorConfig,
    EmulatorRequest,
    EmulatorResponse,
    HostEntry,
    make_server,
)
from analyzer.lab.emulator_auth import (
    authenticate,
    lab_token,
    offered_methods,
    write_ntlm_user_file,
)
from analyzer.lab.pki import LabPKI
from analyzer.protocols import httpauth
from analyzer.protocols.http import make_client
from analyzer.protocols.httpauth import (
    InsecureUrl,
    MissingSecret,
    NtlmFailed,
    check_url,
    describe_token,
    parse_challenges,
    parse_www_authenticate,
    send_authenticated,
    send_recorded,
    shown_header,
)
from tests.servers.tcp import serve, server_context, tls_then

HOST = "auth.test"
USER = "alice@auth.test"
PASSWORD = "S3cret-lab-pw!"
PATH = "/autodiscover/authtest"


class Transcript:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def send(self, text: str) -> None:
        self.lines.append(("send", text))

    def recv(self, text: str) -> None:
        self.lines.append(("recv", text))

    def note(self, text: str) -> None:
        self.lines.append(("info", text))

    def text(self) -> str:
        return "\n".join(t for _, t in self.lines)


# --- WWW-Authenticate parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "schemes"),
    [
        ([("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")], ("Negotiate", "NTLM")),
        ([("WWW-Authenticate", 'Negotiate, NTLM, Basic realm="x"')], ("Negotiate", "NTLM",
                                                                       "Basic")),
        ([("www-authenticate", 'basic realm="a, b", charset="UTF-8"')], ("Basic",)),
        ([("WWW-Authenticate", "NTLM TlRMTVNTUAACAAAA/w==")], ("NTLM",)),
        ([("WWW-Authenticate", 'Bearer realm="x", error="y", NTLM')], ("Bearer", "NTLM")),
        ([("WWW-Authenticate", "ntlm"), ("WWW-Authenticate", "NTLM")], ("NTLM",)),
        ([("Content-Type", "text/html")], ()),
        ([("WWW-Authenticate", ", , =,,")], ()),
    ],
)
def test_parse_www_authenticate(headers: list[tuple[str, str]], schemes: tuple[str, ...]) -> None:
    # Given response headers / When the offered schemes are read / Then they come in order
    assert parse_www_authenticate(headers) == schemes


def test_challenge_params_and_tokens_are_kept_apart() -> None:
    # Given a Basic realm with a comma inside quotes and an NTLM challenge blob
    headers = [("WWW-Authenticate", 'Basic realm="a, b"'), ("WWW-Authenticate", "NTLM abc+/==")]
    # When parsed
    basic, ntlm = parse_challenges(headers)
    # Then the realm is a parameter and the blob a token
    assert basic.param("realm") == "a, b" and basic.token == ""
    assert ntlm.token == "abc+/=="


def test_secrets_are_never_shown() -> None:
    # Given an NTLM type 1 blob and a Basic header
    type1 = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw=="
    # When shown in a transcript
    ntlm = shown_header("Authorization", f"NTLM {type1}")
    basic = shown_header("Authorization", "Basic YWxpY2U6cHc=")
    cookie = shown_header("Set-Cookie", "X-BackEndCookie=secret; path=/")
    # Then only kind and size remain
    assert ntlm == "Authorization: NTLM «NTLM type 1, 40 bytes»"
    assert basic == "Authorization: Basic «redacted»"
    assert cookie == "Set-Cookie: X-BackEndCookie=«redacted»"
    assert describe_token("!!") == "«token, 2 characters, not base64»"


@pytest.mark.parametrize(
    "url",
    ["http://auth.test/x", "ftp://auth.test/x", "https://u:p@auth.test/x", "https://u@auth.test/"],
)
def test_credentials_refused_for_insecure_urls(url: str) -> None:
    # Given a URL that is not plain https / When checked / Then it is refused
    with pytest.raises(InsecureUrl):
        check_url(url)


# --- the emulator's side alone ------------------------------------------------------------------


def _request(headers: dict[str, str], behaviour: dict[str, Any] | None = None) -> EmulatorRequest:
    return EmulatorRequest(
        method="POST",
        path=PATH,
        query={},
        headers=headers,
        body=b"",
        host=HOST,
        entry=HostEntry(scenario="auth", role="autodiscover", host=HOST),
        behaviour=behaviour or {},
        scenario_data={"domain": "auth.test", "users": [[USER, PASSWORD]]},
        connection="c1",
        state={},
    )


def test_offered_methods_follow_the_scenario() -> None:
    # Given a scenario offering NTLM only under /autodiscover/ and Basic elsewhere
    behaviour = {"auth": {"/autodiscover/": ["NTLM"], "*": ["Basic"]}}
    # When the offer for the path is computed
    offered = offered_methods(_request({}, behaviour))
    # Then only NTLM is offered
    assert offered == ("NTLM",)
    assert offered_methods(_request({}, {"auth": ["Basic", "NTLM"]}), ("NTLM",)) == ("NTLM",)


def test_basic_accepts_netbios_form_and_refuses_a_wrong_password() -> None:
    import base64

    def basic(user: str, pw: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    # Given the lab user / When Basic is checked with both name forms and a wrong password
    ok = authenticate(_request(basic("AUTH\\alice", PASSWORD)))
    bad = authenticate(_request(basic(USER, "wrong")))
    # Then the right one passes as the address, the wrong one gets a 401 with the offer
    assert ok.ok and ok.user == USER and ok.method == "Basic"
    assert bad.response is not None and bad.response.status == 401
    offered = [v for k, v in bad.response.headers if k == "WWW-Authenticate"]
    assert offered[0] == "Negotiate" and any(v.startswith("Basic realm=") for v in offered)


def test_anonymous_access_when_the_scenario_allows_it() -> None:
    # Given a scenario allowing anonymous access / When no credentials are sent
    result = authenticate(_request({}, {"anonymous": True}))
    # Then the request passes, marked anonymous
    assert result.ok and result.user is None and result.method == "anonymous"


# --- client against server, over TLS on loopback --------------------------------------------------


@pytest.fixture(scope="module")
def server_tls(pki: LabPKI) -> ssl.SSLContext:
    return server_context(pki, "auth", HOST)


def _handler(request: EmulatorRequest) -> EmulatorResponse:
    auth = authenticate(request)
    if auth.response is not None:
        return auth.response
    return EmulatorResponse.json(200, {"user": auth.user, "method": auth.method})


@pytest.fixture
def server(
    server_tls: ssl.SSLContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The emulator's HTTP server over TLS on 127.0.0.1, with one route that authenticates."""
    users = tmp_path / "ntlm-users"
    write_ntlm_user_file(users, [(USER, PASSWORD)])
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    monkeypatch.setitem(emulator.ROUTES, PATH, _handler)
    behaviour: dict[str, Any] = {}
    config = EmulatorConfig(
        listen=("127.0.0.1", 0),
        addresses={},
        hosts={HOST: HostEntry(scenario="auth", role="autodiscover", host=HOST)},
        scenarios={"auth": {"domain": "auth.test", "users": [[USER, PASSWORD]],
                            "behaviour": behaviour}},
    )  # fmt: skip
    httpd = make_server(config)
    httpd.socket = server_tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


async def _send(
    pki: LabPKI, port: int, scheme: str, creds: Credentials, transcript: Transcript
) -> Any:
    options = RunOptions(connect={HOST: ("127.0.0.1",)}, ca_file=pki.ca_file, timeout=20,
                         credentials=creds)  # fmt: skip
    async with RunContext(options) as run, make_client(run) as client:
        return await send_authenticated(
            client, "POST", f"https://{HOST}:{port}{PATH}", creds=creds,
            scheme=scheme,  # type: ignore[arg-type]
            headers={"Content-Type": "text/xml"}, content=b"<x/>", timeout=10,
            transcript=transcript,
        )  # fmt: skip


@pytest.mark.parametrize("scheme", ["basic", "ntlm", "negotiate"])
async def test_password_schemes_log_in(
    pki: LabPKI, server: tuple[int, dict[str, Any]], scheme: str
) -> None:
    # Given the lab user's password
    transcript = Transcript()
    # When the request is sent with the scheme
    response = await _send(pki, server[0], scheme, Credentials(USER, password=PASSWORD),
                           transcript)  # fmt: skip
    # Then the server accepted it, and the transcript never shows the password
    assert response.status == 200, transcript.text()
    assert USER in response.body.decode()
    assert PASSWORD not in transcript.text()
    if scheme != "basic":
        text = transcript.text()
        assert "«NTLM type 1," in text and "«NTLM type 2," in text and "«NTLM type 3," in text
        assert "new connection" not in text  # the handshake stayed on one connection


async def test_ntlm_with_a_wrong_password_ends_in_401(
    pki: LabPKI, server: tuple[int, dict[str, Any]]
) -> None:
    # Given a wrong password / When NTLM runs / Then the final answer is a 401 (not raised)
    response = await _send(pki, server[0], "ntlm", Credentials(USER, password="nope"),
                           Transcript())  # fmt: skip
    assert response.status == 401


async def test_bearer_token(pki: LabPKI, server: tuple[int, dict[str, Any]]) -> None:
    # Given the lab token of the user
    creds = Credentials(USER, token=lab_token(USER, PASSWORD))
    transcript = Transcript()
    # When sent as a bearer token
    response = await _send(pki, server[0], "bearer", creds, transcript)
    # Then it is accepted and shown redacted
    assert response.status == 200
    assert "Authorization: Bearer «redacted»" in transcript.text()
    assert lab_token(USER, PASSWORD) not in transcript.text()


async def test_ntlm_refused_when_only_basic_is_offered(
    pki: LabPKI, server: tuple[int, dict[str, Any]]
) -> None:
    # Given a server offering Basic only
    server[1]["auth"] = ["Basic"]
    # When NTLM is attempted / Then the handshake stops, naming what is offered
    with pytest.raises(NtlmFailed, match="offers: Basic"):
        await _send(pki, server[0], "ntlm", Credentials(USER, password=PASSWORD), Transcript())


async def test_basic_without_a_password_is_refused_before_sending(pki: LabPKI) -> None:
    # Given no password / When Basic is asked for / Then nothing is sent
    with pytest.raises(MissingSecret):
        await _send(pki, 9, "basic", Credentials(USER), Transcript())


async def test_plain_http_never_receives_credentials(pki: LabPKI) -> None:
    # Given an http URL
    creds = Credentials(USER, password=PASSWORD)
    async with RunContext(RunOptions(credentials=creds)) as run, make_client(run) as client:
        # When credentials would be sent / Then it is refused before any connection
        with pytest.raises(InsecureUrl, match="never sent over http"):
            await send_authenticated(client, "GET", "http://127.0.0.1:9/", creds=creds,
                                     scheme="basic", timeout=1)  # fmt: skip


# --- NTLM owns its connection --------------------------------------------------------------------


def _recording_handler(seen: list[tuple[str, str]]) -> Any:
    """The authenticating route, recording (connection, NTLM message type or "-") per request."""

    def handler(request: EmulatorRequest) -> EmulatorResponse:
        header = request.headers.get("authorization", "")
        kind = describe_token(header.partition(" ")[2]) if header else "-"
        seen.append((request.connection, kind))
        return _handler(request)

    return handler


async def test_concurrent_ntlm_handshakes_each_own_one_connection(
    pki: LabPKI, server: tuple[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server that records which connection carried each request
    seen: list[tuple[str, str]] = []
    monkeypatch.setitem(emulator.ROUTES, PATH, _recording_handler(seen))
    creds = Credentials(USER, password=PASSWORD)
    options = RunOptions(connect={HOST: ("127.0.0.1",)}, ca_file=pki.ca_file, timeout=30,
                         credentials=creds)  # fmt: skip
    url = f"https://{HOST}:{server[0]}{PATH}"
    # When twelve NTLM logins run at once through one pooled client, beside plain requests
    async with RunContext(options) as run, make_client(run) as client:

        async def login() -> int:
            transcript = Transcript()
            response = await send_authenticated(
                client, "POST", url, creds=creds, scheme="ntlm", offered=("NTLM",),
                content=b"<x/>", timeout=20, transcript=transcript,
            )  # fmt: skip
            assert "closed the connection" not in transcript.text()
            return response.status

        async def anonymous() -> int:
            response = await send_recorded(client, "POST", url, content=b"<x/>", timeout=20)
            return response.status

        statuses = await asyncio.gather(*(login() for _ in range(12)),
                                        *(anonymous() for _ in range(6)))  # fmt: skip
    # Then every login succeeded and the anonymous requests were refused
    assert statuses == [200] * 12 + [401] * 6, seen
    # And each handshake had a connection of its own: negotiate, then authenticate, nothing
    # else in between (the counts per connection prove it)
    per_connection: dict[str, list[str]] = {}
    for connection, kind in seen:
        per_connection.setdefault(connection, []).append(kind)
    handshakes = [kinds for kinds in per_connection.values() if "-" not in kinds]
    assert len(handshakes) == 12, per_connection
    for kinds in handshakes:
        assert [k.split(",")[0] for k in kinds] == ["«NTLM type 1", "«NTLM type 3"], kinds


def _read_request(conn: socket.socket) -> dict[str, str]:
    """One request's headers (lower-case names); its body is read and dropped."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return {}
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += conn.recv(4096)
    return headers


def _challenge_then_hang_up(conn: socket.socket, stop: threading.Event) -> None:
    """Answer a negotiate message with a challenge and close the connection without saying
    so (no ``Connection: close``); answer anything else with a bare 401."""
    import base64

    import spnego

    headers = _read_request(conn)
    token = headers.get("authorization", "").partition(" ")[2]
    if token and describe_token(token).startswith("«NTLM type 1"):
        challenge = spnego.server(protocol="ntlm").step(base64.b64decode(token)) or b""
        offer = f"NTLM {base64.b64encode(challenge).decode()}"
    else:
        offer = "NTLM"
    conn.sendall(f"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {offer}\r\n"
                 "Content-Length: 0\r\n\r\n".encode())  # fmt: skip


class _SlowAnswer:
    """An NTLM initiator that takes ``delay`` seconds over the challenge, blocking the event
    loop as a busy process does."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def step(self, token: bytes | None = None) -> bytes | None:
        if token is not None:
            time.sleep(self.delay)
        out: bytes | None = self.inner.step(token)
        return out


async def test_a_stalled_client_keeps_its_handshake_on_one_connection(
    pki: LabPKI, server: tuple[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client whose event loop stalls between the challenge and the authenticate
    # message for longer than an idle pooled connection is kept (5 s), as under load
    seen: list[tuple[str, str]] = []
    monkeypatch.setitem(emulator.ROUTES, PATH, _recording_handler(seen))
    real = httpauth.ntlm_client
    monkeypatch.setattr(httpauth, "ntlm_client", lambda c, h: _SlowAnswer(real(c, h), 5.5))
    transcript = Transcript()
    # When it logs in with NTLM
    response = await _send(pki, server[0], "ntlm", Credentials(USER, password=PASSWORD),
                           transcript)  # fmt: skip
    # Then the authenticate message still went over the connection that got the challenge
    assert response.status == 200, transcript.text()
    assert len({connection for connection, _ in seen}) == 1, seen


async def test_a_server_closing_the_handshake_connection_is_named_not_the_password(
    pki: LabPKI, server_tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a server that hangs up silently after sending its NTLM challenge
    creds = Credentials(USER, password=PASSWORD)
    monkeypatch.setenv("NTLM_USER_FILE", str(write_ntlm_user_file(tmp_path / "users",
                                                                  [(USER, PASSWORD)])))
    real = httpauth.ntlm_client
    # (a moment over the challenge, so the hang-up arrives before the authenticate message
    # leaves; else both race, as on the internet)
    monkeypatch.setattr(httpauth, "ntlm_client", lambda c, h: _SlowAnswer(real(c, h), 0.3))
    transcript = Transcript()
    with serve(tls_then(server_tls, _challenge_then_hang_up)) as hanging_up:
        options = RunOptions(connect={HOST: ("127.0.0.1",)}, ca_file=pki.ca_file, timeout=20,
                             credentials=creds)  # fmt: skip
        async with RunContext(options) as run, make_client(run) as client:
            # When rca logs in with NTLM
            with pytest.raises(NtlmFailed, match="server closed the connection") as failed:
                await send_authenticated(
                    client, "POST", f"https://{HOST}:{hanging_up.port}{PATH}", creds=creds,
                    scheme="ntlm", offered=("NTLM",), content=b"<x/>", timeout=10,
                    transcript=transcript,
                )  # fmt: skip
    # Then the handshake failure is blamed on the closed connection (not a wrong password),
    # the transcript says so, and the authenticate message went over a second connection
    assert "keep-alive" in str(failed.value)
    assert "the server closed the connection that carried the NTLM challenge" in (
        transcript.text()
    )
    assert hanging_up.connections == 2


async def test_ntlm_logins_of_one_run_derive_the_password_once(
    pki: LabPKI, server: tuple[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the run's credentials, and pyspnego's constructor watched (a context made from a
    # password derives the LM and NT hashes: pure-Python DES and MD4)
    import spnego

    made_from_password: list[str] = []
    real_client = spnego.client

    def watched(*args: Any, **kwargs: Any) -> Any:
        made_from_password.append(kwargs.get("hostname", ""))
        return real_client(*args, **kwargs)

    monkeypatch.setattr(spnego, "client", watched)
    creds = Credentials(USER, password=PASSWORD)
    # When three NTLM logins run to the same host with them
    for _ in range(3):
        transcript = Transcript()
        response = await _send(pki, server[0], "ntlm", creds, transcript)
        # Then each one is accepted
        assert response.status == 200, transcript.text()
    # And the password's hashes were derived once for that host, not once per login
    assert made_from_password == [HOST]
    # And the derived credential shows in no repr
    assert PASSWORD not in repr(creds)
