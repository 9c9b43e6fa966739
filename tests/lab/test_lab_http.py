"""The lab's nginx (TLS front, static files) and the emulator behind it."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Mapping
from typing import Any

import dns.resolver
import httpx
import pytest
from cryptography import x509

from analyzer.lab import LabInfo
from analyzer.lab.emulator import (
    PROXIED_PATHS,
    ROUTES,
    EmulatorConfig,
    EmulatorRequest,
    HostEntry,
    dispatch,
)

pytestmark = pytest.mark.lab

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def tls(lab: LabInfo) -> ssl.SSLContext:
    """Trusts the lab CA and nothing else; checks host names."""
    return ssl.create_default_context(cafile=str(lab.ca_file))


def _get(
    address: str, name: str, path: str, *, tls: ssl.SSLContext | None
) -> tuple[int, httpx.Headers, bytes]:
    """GET ``path`` from ``address`` as ``name``: Host header, SNI, certificate name check."""
    host = f"[{address}]" if ":" in address else address
    url = f"{'https' if tls else 'http'}://{host}{path}"
    with httpx.Client(verify=tls or False, trust_env=False, timeout=TIMEOUT) as client:
        response = client.get(
            url, headers={"Host": name}, extensions={"sni_hostname": name} if tls else {}
        )
    return response.status_code, response.headers, response.content


def test_autodiscover_host_proxies_health_to_the_emulator(
    lab: LabInfo, tls: ssl.SSLContext
) -> None:
    # Given the healthy autodiscover host
    host = lab.scenario("healthy").hosts["autodiscover"]
    # When /health is fetched over HTTPS, on both address families
    for address in (host.ipv4, host.ipv6):
        status, headers, body = _get(address, host.name, "/health", tls=tls)
        # Then the emulator answers, knowing the scenario and role by the address reached
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {
            "status": "ok",
            "scenario": "healthy",
            "role": "autodiscover",
            "host": host.name,
        }


def test_exchange_paths_reach_the_emulator_case_insensitively(
    lab: LabInfo, tls: ssl.SSLContext
) -> None:
    # Given an Exchange path, in IIS's mixed case
    host = lab.scenario("healthy").hosts["autodiscover"]
    # When it is requested without credentials
    status, headers, _ = _get(
        host.ipv4, host.name, "/AutoDiscover/AutoDiscover.xml", tls=tls
    )
    # Then nginx passed it on and the emulator asked for authentication, as Exchange does
    assert status == 401
    assert "NTLM" in headers.get_list("WWW-Authenticate")


def test_mta_sts_policy_is_served(lab: LabInfo, tls: ssl.SSLContext) -> None:
    # Given the healthy mta-sts host
    scenario = lab.scenario("healthy")
    host = scenario.hosts["mta-sts"]
    # When the policy is fetched (RFC 8461 3.3)
    status, headers, body = _get(host.ipv4, host.name, "/.well-known/mta-sts.txt", tls=tls)
    # Then it is text/plain, in enforce mode, naming the MX
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    lines = body.decode().splitlines()
    assert "mode: enforce" in lines
    assert f"mx: {scenario.hosts['mx'].name}" in lines


def test_autoconfig_is_served_over_http_and_https(lab: LabInfo, tls: ssl.SSLContext) -> None:
    # Given the healthy autoconfig host
    scenario = lab.scenario("healthy")
    host = scenario.hosts["autoconfig"]
    # When Thunderbird's autoconfig URL is fetched over both schemes
    for context in (tls, None):
        status, _, body = _get(host.ipv4, host.name, "/mail/config-v1.1.xml", tls=context)
        # Then both serve the XML naming the mail host
        assert status == 200
        assert f"<hostname>{scenario.hosts['mail'].name}</hostname>".encode() in body


def test_intermediate_is_served_at_the_aia_url(lab: LabInfo, tls: ssl.SSLContext) -> None:
    # Given the healthy mail host's certificate
    mail = lab.scenario("healthy").hosts["mail"]
    with socket.create_connection((mail.ipv4, 993), timeout=TIMEOUT) as sock:
        with tls.wrap_socket(sock, server_hostname=mail.name) as tls_sock:
            der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    leaf = x509.load_der_x509_certificate(der)
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    (url,) = [d.access_location.value for d in aia if d.access_method.dotted_string
              == "1.3.6.1.5.5.7.48.2"]  # fmt: skip  # id-ad-caIssuers
    # When the caIssuers URL is fetched (by the address the lab DNS gives its host)
    assert url.startswith("http://pki.lab.test/")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab.resolver]
    pki_address = resolver.resolve("pki.lab.test", "A")[0].address
    status, _, body = _get(pki_address, "pki.lab.test", url.split("pki.lab.test", 1)[1], tls=None)
    # Then it is the DER of the certificate that issued the leaf
    assert status == 200
    issuer = x509.load_der_x509_certificate(body)
    assert issuer.subject == leaf.issuer


# -- the emulator's dispatch, without the network ------------------------------------------------


def _request(path: str, behaviour: Mapping[str, Any] | None = None) -> EmulatorRequest:
    return EmulatorRequest(
        method="GET",
        path=path,
        query={},
        headers={},
        body=b"",
        host="autodiscover.healthy.test",
        entry=HostEntry(scenario="healthy", role="autodiscover", host="autodiscover.healthy.test"),
        behaviour=behaviour or {},
        scenario_data={},
    )


_CONFIG = EmulatorConfig(listen=("127.0.0.1", 0), addresses={}, hosts={}, scenarios={})


def test_emulator_routes_are_proxied_by_nginx() -> None:
    # Given the emulator's routes and the paths nginx passes on
    proxied = [p.lower() for p in PROXIED_PATHS]
    # Then every route is reachable through nginx
    for prefix in ROUTES:
        assert any(prefix.lower().startswith(p.rstrip("/")) for p in proxied), prefix


def test_emulator_pinned_response_wins_over_the_handler() -> None:
    # Given a scenario that pins /health to 503
    behaviour = {"responses": {"/HEALTH": {"status": 503, "body": "down"}}}
    # When /health is dispatched
    response = dispatch(_CONFIG, _request("/health", behaviour))
    # Then the pinned answer is given
    assert (response.status, response.body) == (503, b"down")


def test_emulator_unknown_path_is_not_emulated() -> None:
    # Given a path no handler emulates (the offline address book)
    # When it is dispatched
    response = dispatch(_CONFIG, _request("/OAB/0a1b/oab.xml"))
    # Then the answer is a 404 saying so
    assert response.status == 404


def test_http_rules_redirect_and_shadow(lab: LabInfo, tls: ssl.SSLContext) -> None:
    # Given the autodiscover-redirect scenario
    scenario = lab.scenario("autodiscover-redirect")
    autodiscover, apex = scenario.hosts["autodiscover"], scenario.hosts["apex"]
    path = "/autodiscover/autodiscover.xml"
    # When its Autodiscover URLs are fetched over HTTP and HTTPS
    status, headers, _ = _get(autodiscover.ipv4, autodiscover.name, path, tls=None)
    apex_status, _, apex_body = _get(apex.ipv4, apex.name, path, tls=tls)
    proxied_status, _, proxied_body = _get(autodiscover.ipv4, autodiscover.name, path, tls=tls)
    # Then HTTP redirects to the HTTPS URL (placeholders filled in), the apex answers nginx's
    # own 404, and HTTPS on the autodiscover host still reaches the emulator (its 401)
    assert status == 302
    assert headers["Location"] == f"https://{autodiscover.name}{path}"
    assert apex_status == 404 and not apex_body.startswith(b"not emulated")
    assert proxied_status == 401 and proxied_body.startswith(b"<html><body><h1>401")
