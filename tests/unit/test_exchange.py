"""analyzer.protocols.exchange: how HTTP answers and network failures become findings."""

from __future__ import annotations

import pytest

from analyzer.core.errors import ConnectionRefused, NetTimeout, ProtocolViolation
from analyzer.core.model import Status
from analyzer.protocols.exchange import ServiceUrl, http_findings, judge_status, net_finding
from analyzer.protocols.http import BoundedResponse

F = http_findings("ews", "EWS", enable_for_user="enable it", reference="ref")
GIVEN = ServiceUrl(url="https://mail.x.test/EWS/Exchange.asmx", source="autodiscover")
GUESS = ServiceUrl(url="https://mail.x.test/EWS/Exchange.asmx", source="conventional")


def response(status: int, *headers: tuple[str, str], body: bytes = b"") -> BoundedResponse:
    return BoundedResponse(status=status, headers=headers, body=body, url=GIVEN.url,
                           http_version="HTTP/1.1", elapsed_ms=1.0)  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code", "verdict"),
    [
        (401, "ews.auth.rejected", Status.FAIL),
        (403, "ews.forbidden", Status.FAIL),
        (404, "ews.endpoint_missing", Status.FAIL),
        (429, "ews.throttled", Status.INCONCLUSIVE),
        (503, "ews.throttled", Status.INCONCLUSIVE),
        (302, "ews.redirected", Status.WARN),
        (500, "ews.server_error", Status.FAIL),
        (418, "ews.protocol_error", Status.FAIL),
    ],
)
def test_judge_status(status: int, code: str, verdict: Status) -> None:
    finding = judge_status(F, response(status, ("Location", "https://elsewhere.test/")), GIVEN)
    assert finding is not None
    assert (finding.code, finding.status) == (code, verdict)


def test_success_goes_on() -> None:
    assert judge_status(F, response(200), GIVEN) is None


def test_a_guessed_url_that_is_not_there_is_not_a_failure() -> None:
    # Given the conventional URL (Autodiscover gave none)
    # Then 404 or nothing listening means "not offered", never a failure
    finding = judge_status(F, response(404), GUESS)
    assert finding is not None and finding.code == "ews.not_offered"
    assert finding.status == Status.SKIP
    refused = net_finding(F, ConnectionRefused("refused", phase="connect"), GUESS)
    assert refused.code == "ews.not_offered"


@pytest.mark.parametrize("status", [405, 501])
def test_a_guessed_url_that_refuses_the_method_is_not_offered(status: int) -> None:
    # Given the conventional URL on a web server that is no Exchange (nginx answers 405 to
    # RPC_IN_DATA on a path it has no application for, as on the lab's SOGo host)
    finding = judge_status(F, response(status), GUESS)
    # Then the service is not offered there: a skip, not a failure
    assert finding is not None
    assert (finding.code, finding.status) == ("ews.not_offered", Status.SKIP)
    # While on a URL Autodiscover published, the same answer is still an error
    published = judge_status(F, response(status), GIVEN)
    assert published is not None and published.status == Status.FAIL


def test_network_failures_on_a_published_url() -> None:
    assert net_finding(F, ConnectionRefused("x", phase="connect"), GIVEN).code == (
        "ews.unreachable"
    )
    assert net_finding(F, NetTimeout("x", phase="read"), GIVEN).status == Status.INCONCLUSIVE
    assert net_finding(F, ProtocolViolation("x", phase="read"), GIVEN).code == (
        "ews.protocol_error"
    )


def test_401_lists_what_the_server_offers() -> None:
    finding = judge_status(F, response(401, ("WWW-Authenticate", "Negotiate"),
                                       ("WWW-Authenticate", 'Basic realm="x"')), GIVEN)
    assert finding is not None
    assert finding.evidence["offered"] == ["Negotiate", "Basic"]
