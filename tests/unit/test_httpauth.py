"""Client-side HTTP authentication (analyzer.httpauth) against the emulator's server side
(analyzer.lab.emulator_auth), over real TLS on loopback: Basic, NTLM over one keep-alive
connection, Bearer; what the 401 lists; what the transcript shows (never a secret)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analyzer.context import Credentials, RunContext, RunOptions
from analyzer.http import make_client
from analyzer.httpauth import (
    InsecureUrl,
    MissingSecret,
    NtlmFailed,
    check_url,
    describe_token,
    parse_challenges,
    parse_www_authenticate,
    send_authenticated,
    shown_header,
)
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
from analyzer.lab.pki import CertSpec, LabPKI

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
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return LabPKI.create(tmp_path_factory.mktemp("pki"), now=datetime.now(UTC))


@pytest.fixture(scope="module")
def server_tls(pki: LabPKI) -> ssl.SSLContext:
    cert = pki.issue(CertSpec(name="auth", dns_names=(HOST,)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


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
