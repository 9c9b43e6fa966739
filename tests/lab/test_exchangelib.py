"""An independent EWS client against the lab's Exchange emulator (DESIGN.md §8).

exchangelib, a widely used EWS client built against real Exchange and Microsoft 365, runs
its own Autodiscover (SOAP ``GetUserSettings`` at ``/autodiscover/autodiscover.svc``, found
by its own steps: ``https://<domain>/`` first) and then ``GetFolder`` of the Inbox (after
``GetFolder`` of the root), with NTLM and with Basic. Where it and the emulator disagree,
the emulator is wrong until proven otherwise.

exchangelib runs in this process, which the ``lab`` fixture moved into the lab's client
namespace. It is pointed at the lab and nowhere else: names resolve through the lab's DNS
(``lab_system_resolver`` for the sockets of requests, the same server for exchangelib's own
dnspython resolver), the lab's CA is the only trust (an HTTP adapter that verifies with it),
and its Autodiscover cache lives in the test's temporary directory and starts empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
from exchangelib import Account, Configuration, Credentials
from exchangelib.autodiscover import AutodiscoverProtocol, Autodiscovery, cache
from exchangelib.protocol import BaseProtocol
from exchangelib.transport import BASIC, NTLM
from requests.adapters import HTTPAdapter

from analyzer.lab import LabInfo

pytestmark = pytest.mark.lab


@pytest.fixture
def exchangelib_in_the_lab(
    lab: LabInfo, lab_system_resolver: dns.resolver.Resolver, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:  # fmt: skip
    """exchangelib resolving, trusting and caching only the lab (see the module docstring)."""
    ca_file = str(lab.ca_file)

    class LabTrust(HTTPAdapter):
        """Verify every certificate with the lab's CA, nothing else."""

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            super().cert_verify(conn, url, ca_file, cert)

    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", LabTrust)
    monkeypatch.setattr(Autodiscovery, "DNS_RESOLVER_KWARGS", {"configure": False})
    monkeypatch.setattr(Autodiscovery, "DNS_RESOLVER_ATTRS",
                        {"nameservers": [lab.resolver], "timeout": 2.0})  # fmt: skip
    monkeypatch.setattr(cache, "AUTODISCOVER_PERSISTENT_STORAGE", tmp_path / "autodiscover")
    cache.autodiscover_cache.clear()
    try:
        yield
    finally:
        cache.autodiscover_cache.close()
        cache.autodiscover_cache.clear()


def _account(lab: LabInfo, scenario: str, auth_type: str | None) -> Any:
    user, password = lab.scenario(scenario).users[0]
    credentials = Credentials(user, password)
    config = Configuration(credentials=credentials, auth_type=auth_type)
    return Account(primary_smtp_address=user, config=config, autodiscover=True)


def test_exchangelib_autodiscovers_and_reads_the_inbox_with_ntlm(
    lab: LabInfo, exchangelib_in_the_lab: None
) -> None:
    # Given exchangelib with the healthy user's password, left to pick the method itself
    account = _account(lab, "healthy", None)
    # When it autodiscovers and asks for the Inbox
    inbox = account.inbox
    # Then Autodiscover gave the EWS URL and the version, NTLM was picked from the 401, and
    # GetFolder answered
    assert account.protocol.service_endpoint == "https://mail.healthy.test/EWS/Exchange.asmx"
    assert account.protocol.auth_type == NTLM
    assert account.version.api_version == "Exchange2016"
    assert inbox.name == "Inbox" and inbox.total_count == 0 and inbox.unread_count == 0


def test_exchangelib_autodiscovers_and_reads_the_inbox_with_basic(
    lab: LabInfo, exchangelib_in_the_lab: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given exchangelib told to use Basic, for Autodiscover too (it would pick NTLM itself)
    monkeypatch.setattr(AutodiscoverProtocol, "get_auth_type", lambda self: BASIC)
    account = _account(lab, "healthy", BASIC)
    # When it autodiscovers and asks for the Inbox / Then both work with Basic
    assert account.inbox.name == "Inbox"
    assert account.protocol.auth_type == BASIC
    assert account.ad_response.autodiscover_smtp_address == lab.scenario("healthy").users[0][0]
