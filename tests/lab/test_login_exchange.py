"""EWS, ActiveSync, Outlook Anywhere and MAPI over HTTP against the lab's Exchange emulator
(behind nginx, with Basic, NTLM and Bearer from analyzer.lab.emulator_auth).

Each test runs the real pipeline with Autodiscover (which gives the URLs), checks the
findings, and renders the HTML and JSON reports.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Finding, Report, Status, report_from_json
from analyzer.core.targets import parse_target
from analyzer.lab import LabInfo
from analyzer.lab.emulator_auth import lab_token
from reports.html import render
from reports.json import dumps

pytestmark = pytest.mark.lab

HTTP_PROBES = ("ews", "activesync", "outlook_anywhere", "mapi_http")


def run(
    lab: LabInfo, scenario: str, tests: tuple[str, ...] = HTTP_PROBES, *,
    secret: str | None = "password", **kw: object,  # noqa: S107
) -> Report:  # fmt: skip
    info = lab.scenario(scenario)
    user, password = info.users[0]
    creds = Credentials(user)
    if secret == "password":
        creds = Credentials(user, password=password)
    elif secret == "token":
        creds = Credentials(user, token=lab_token(user, password))
    options = RunOptions(
        nameservers=(Nameserver(lab.resolver),), ca_file=Path(lab.ca_file), credentials=creds,
        tests=("dns", "autodiscover", *tests),
        timeout=40, op_timeout=4, connect_timeout=2, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    report = asyncio.run(check(parse_target(user), options))
    assert report.target in render(report)
    assert report_from_json(json.loads(dumps(report))) == report
    return report


def found(report: Report, probe: str) -> dict[str, Finding]:
    """The worst finding of each code of ``probe``."""
    out: dict[str, Finding] = {}
    for r, f in report.findings():
        if r.probe == probe and (f.code not in out or f.status.severity
                                 > out[f.code].status.severity):  # fmt: skip
            out[f.code] = f
    return out


def all_of(report: Report, probe: str, code: str) -> list[Finding]:
    return [f for r, f in report.findings() if r.probe == probe and f.code == code]


def test_healthy_exchange_endpoints_all_work(lab: LabInfo) -> None:
    # Given the healthy domain: Autodiscover gives every URL, NTLM is offered
    report = run(lab, "healthy")
    # Then EWS, ActiveSync, the three RPC ports and both MAPI sessions succeed
    assert found(report, "ews")["ews.getfolder.ok"].evidence["server_version"] == "15.2.1544.4"
    assert found(report, "activesync")["activesync.foldersync.ok"].status == Status.PASS
    pings = all_of(report, "outlook_anywhere", "outlookanywhere.rpc.ok")
    assert {f.evidence["port"] for f in pings} == {6001, 6002, 6004}
    assert len(all_of(report, "mapi_http", "mapihttp.session.ok")) == 2
    for probe in HTTP_PROBES:
        statuses = {r.status for r in report.results if r.probe == probe}
        assert statuses == {Status.PASS}, (probe, statuses)
    # And the login used NTLM, recorded as token sizes, never as the blobs themselves
    text = dumps(report)
    assert "«NTLM type 3" in text and "TlRMTVNTUAAD" not in text


def test_activesync_url_is_not_the_availability_url(lab: LabInfo) -> None:
    # Given Autodiscover answering as Exchange does: ASUrl is the EWS (Availability) URL
    report = run(lab, "healthy", ("activesync",))
    # Then ActiveSync is tested at its own URL, named from Autodiscover v2, and works
    codes = found(report, "activesync")
    assert codes["activesync.endpoint"].evidence == {
        "url": "https://mail.healthy.test/Microsoft-Server-ActiveSync",
        "source": "autodiscover_v2",
    }
    assert codes["activesync.foldersync.ok"].status == Status.PASS
    # And Autodiscover v2 agrees with the XML service: no mismatch
    assert not all_of(report, "autodiscover", "autodiscover.v2.mismatch")


def test_activesync_url_from_the_mobilesync_schema(lab: LabInfo) -> None:
    # Given --mobilesync
    report = run(lab, "healthy", ("activesync",), mobilesync=True)
    # Then its answer is the source the ActiveSync check names
    endpoint = found(report, "activesync")["activesync.endpoint"]
    assert endpoint.evidence["source"] == "mobilesync"
    assert "mobilesync" in endpoint.detail


def test_activesync_url_guessed_on_the_ews_host(lab: LabInfo) -> None:
    # Given Autodiscover settings, but no v2 service and no mobilesync answer
    report = run(lab, "ad-eas-guess", ("activesync",))
    # Then the mobilesync schema was asked (and failed), and the ActiveSync check tries the
    # conventional path on the EWS host, saying it is a guess
    assert found(report, "autodiscover")["autodiscover.mobilesync.failed"].status == (
        Status.FAIL
    )
    endpoint = found(report, "activesync")["activesync.endpoint"]
    assert endpoint.evidence == {
        "url": "https://mail.ad-eas-guess.test/Microsoft-Server-ActiveSync",
        "source": "conventional",
    }
    assert endpoint.detail.endswith("(a guess: the conventional path on the EWS host, "
                                    "Autodiscover gave none)")  # fmt: skip
    steps = [s.title for r in report.results if r.probe == "activesync" for s in r.steps]
    assert steps[0].startswith("ActiveSync URL (a guess")
    assert found(report, "activesync")["activesync.foldersync.ok"].status == Status.PASS


def test_v2_and_mobilesync_disagreeing_on_activesync(lab: LabInfo) -> None:
    # Given v2 naming another ActiveSync URL than the mobilesync schema
    plain = run(lab, "ad-v2-eas-elsewhere", ("activesync",))
    asked = run(lab, "ad-v2-eas-elsewhere", ("activesync",), mobilesync=True)
    # Then without --mobilesync v2's URL is used (nothing to compare it with) ...
    assert not all_of(plain, "autodiscover", "autodiscover.v2.mismatch")
    assert found(plain, "activesync")["activesync.endpoint"].evidence["url"] == (
        "https://autodiscover.ad-v2-eas-elsewhere.test/Microsoft-Server-ActiveSync"
    )
    # ... and with it the mobilesync answer wins and the disagreement is a warning
    mismatch = found(asked, "autodiscover")["autodiscover.v2.mismatch"]
    assert mismatch.status == Status.WARN
    assert mismatch.evidence == {
        "protocol": "ActiveSync",
        "v2": "https://autodiscover.ad-v2-eas-elsewhere.test/Microsoft-Server-ActiveSync",
        "pox": "https://mail.ad-v2-eas-elsewhere.test/Microsoft-Server-ActiveSync",
    }
    assert found(asked, "activesync")["activesync.endpoint"].evidence == {
        "url": "https://mail.ad-v2-eas-elsewhere.test/Microsoft-Server-ActiveSync",
        "source": "mobilesync",
    }


def test_activesync_url_option_wins(lab: LabInfo) -> None:
    # Given --activesync-url
    url = "https://autodiscover.healthy.test/Microsoft-Server-ActiveSync"
    report = run(lab, "healthy", ("activesync",), activesync_url=url)
    # Then it is used as given, and the mobilesync schema is not asked for it
    assert found(report, "activesync")["activesync.endpoint"].evidence == {
        "url": url, "source": "option"}  # fmt: skip
    assert not all_of(report, "autodiscover", "autodiscover.mobilesync.ok")


def test_urls_come_from_autodiscover_or_are_reported_as_a_guess(lab: LabInfo) -> None:
    # Given a domain where no host answers Autodiscover
    report = run(lab, "login-no-autodiscover", ("ews",))
    endpoint = found(report, "ews")["ews.endpoint"]
    # Then the conventional URL is tried, and said to be one
    assert endpoint.evidence["source"] == "conventional"
    assert "Autodiscover gave none" in endpoint.detail
    assert found(report, "ews")["ews.getfolder.ok"].status == Status.PASS


def test_ews_url_option(lab: LabInfo) -> None:
    # Given --ews-url naming a path that does not exist
    url = "https://mail.healthy.test/EWS-missing/Exchange.asmx"
    report = run(lab, "healthy", ("ews",), ews_url=url)
    codes = found(report, "ews")
    # Then that URL is used, and its absence is a failure (it was given, not guessed)
    assert codes["ews.endpoint"].evidence == {"url": url, "source": "option"}
    assert codes["ews.endpoint_missing"].status == Status.FAIL


def test_without_credentials_only_the_methods_are_probed(lab: LabInfo) -> None:
    report = run(lab, "healthy", secret=None)
    for probe, prefix in (("ews", "ews"), ("activesync", "activesync"),
                          ("outlook_anywhere", "outlookanywhere"), ("mapi_http", "mapihttp")):
        codes = found(report, probe)
        assert codes[f"{prefix}.auth.methods"].status == Status.PASS
        assert codes[f"{prefix}.login.skipped"].status == Status.SKIP


def test_bearer_token_is_used_where_offered(lab: LabInfo) -> None:
    # Given only an OAuth2 token
    report = run(lab, "healthy", ("ews", "imap"), secret="token")
    # Then EWS logs in with Bearer, and IMAP (no XOAUTH2 in Dovecot) says there is no common
    # method rather than trying the token as a password
    assert found(report, "ews")["ews.getfolder.ok"].status == Status.PASS
    sent = [t.text for r in report.results if r.probe == "ews" for s in r.steps
            for t in s.transcript if t.direction == "send"]  # fmt: skip
    assert "Authorization: Bearer «redacted»" in sent
    assert found(report, "imap")["imap.login.no_mechanism"].status == Status.FAIL


def test_wrong_password(lab: LabInfo) -> None:
    report = run(lab, "login-wrong-password", ("ews", "activesync", "outlook_anywhere"))
    assert found(report, "ews")["ews.auth.rejected"].status == Status.FAIL
    assert found(report, "activesync")["activesync.auth.rejected"].status == Status.FAIL
    assert found(report, "outlook_anywhere")["outlookanywhere.auth.rejected"].status == (
        Status.FAIL
    )


def test_ews_blocked_for_the_user_while_activesync_works(lab: LabInfo) -> None:
    report = run(lab, "login-ews-blocked", ("ews", "activesync"))
    rejected = found(report, "ews")["ews.auth.rejected"]
    assert rejected.status == Status.FAIL
    assert "EwsEnabled" in rejected.remediation
    assert found(report, "activesync")["activesync.foldersync.ok"].status == Status.PASS


def test_activesync_provisions_after_449(lab: LabInfo) -> None:
    report = run(lab, "login-activesync-provision", ("activesync",))
    codes = found(report, "activesync")
    assert codes["activesync.provision.required"].detail == "HTTP 449"
    assert codes["activesync.provision.ok"].evidence["policy_key"] == "1307199584"
    assert codes["activesync.foldersync.ok"].status == Status.PASS


def test_rpc_proxy_basic_only_while_autodiscover_says_ntlm(lab: LabInfo) -> None:
    report = run(lab, "login-rpc-basic-only", ("outlook_anywhere",))
    codes = found(report, "outlook_anywhere")
    missing = codes["outlookanywhere.auth.required_missing"]
    assert missing.status == Status.FAIL
    assert missing.evidence == {"auth_package": "Ntlm", "offered": ["Basic"]}
    # The ping itself still works with Basic, which is what the proxy offers
    assert len(all_of(report, "outlook_anywhere", "outlookanywhere.rpc.ok")) == 3


def test_rpc_port_6004_unreachable_behind_the_proxy(lab: LabInfo) -> None:
    report = run(lab, "login-rpc-6004-down", ("outlook_anywhere",))
    ok = {f.evidence["port"] for f in all_of(report, "outlook_anywhere", "outlookanywhere.rpc.ok")}
    down = all_of(report, "outlook_anywhere", "outlookanywhere.rpc.unreachable")
    assert ok == {6001, 6002}
    assert len(down) == 1 and ":6004" in down[0].detail and "6ba" in down[0].detail


def test_mapi_response_code_is_named(lab: LabInfo) -> None:
    report = run(lab, "login-mapi-no-privilege", ("mapi_http",))
    code = found(report, "mapi_http")["mapihttp.response_code"]
    assert code.evidence["x_responsecode"] == 11
    assert code.evidence["meaning"] == "No Privilege"


def test_expired_certificate_withholds_credentials_unless_insecure(lab: LabInfo) -> None:
    # Given the mail host (EWS, ActiveSync...) with an expired certificate
    strict = run(lab, "expired-cert", ("ews",))
    loose = run(lab, "expired-cert", ("ews",), insecure=True)
    # Then nothing is asked over the rejected certificate; with --insecure, the login is sent
    assert "ews.auth.methods" not in found(strict, "ews")
    assert found(strict, "ews")["ews.tls.untrusted"].status == Status.FAIL
    assert "ews.getfolder.ok" not in found(strict, "ews")
    assert found(loose, "ews")["ews.tls.insecure"].status == Status.WARN
    assert found(loose, "ews")["ews.getfolder.ok"].status == Status.PASS


def test_password_never_in_exchange_reports(lab: LabInfo) -> None:
    for scenario in ("healthy", "login-wrong-password", "login-rpc-basic-only"):
        report = run(lab, scenario)
        password = lab.scenario(scenario).users[0][1]
        for text in (dumps(report), render(report)):
            assert password not in text


def test_free_busy_and_oof_of_the_own_mailbox(lab: LabInfo) -> None:
    # Given the healthy domain (Autodiscover gives the EWS and OOF URLs)
    report = run(lab, "healthy", ("ews",))
    codes = found(report, "ews")
    user = lab.scenario("healthy").users[0][0]
    # Then the next day's free/busy of the user's own mailbox is read: 24 free hours
    availability = codes["ews.availability.ok"]
    assert availability.evidence["mailbox"] == user
    assert availability.evidence["view_type"] == "FreeBusyMerged"
    assert availability.evidence["merged_free_busy"] == "0" * 24
    assert availability.evidence["url"] == "https://mail.healthy.test/EWS/Exchange.asmx"
    # And the OOF settings, at the OOF URL Autodiscover published
    oof = codes["ews.oof.ok"]
    assert (oof.evidence["oof_state"], oof.evidence["url_from"]) == ("Disabled", "OOFUrl")
    # And all three requests are steps of the one EWS result (one URL, one session)
    assert {r.subject for r in report.results if r.probe == "ews"} == {
        "https://mail.healthy.test/EWS/Exchange.asmx"
    }


def test_availability_error_names_the_response_code(lab: LabInfo) -> None:
    # Given free/busy that the server cannot proxy to the mailbox's server
    report = run(lab, "login-availability-proxy-failed", ("ews",))
    codes = found(report, "ews")
    # Then the check fails naming the EWS ResponseCode and the certificate on the internal URL
    error = codes["ews.availability.error"]
    assert error.status == Status.FAIL
    assert error.evidence["response_code"] == "ErrorProxyRequestProcessingFailed"
    assert "Could not establish trust relationship" in error.detail
    assert "InternalUrl" in error.remediation and "certificate" in error.remediation
    # And the mailbox and its OOF settings are still reported working
    assert codes["ews.getfolder.ok"].status == Status.PASS
    assert codes["ews.oof.ok"].status == Status.PASS


def test_oof_refused_and_free_busy_throttled(lab: LabInfo) -> None:
    report = run(lab, "login-oof-denied", ("ews",))
    codes = found(report, "ews")
    # Then OOF fails with ErrorAccessDenied and the EWS access settings to check
    denied = codes["ews.oof.error"]
    assert denied.evidence["response_code"] == "ErrorAccessDenied"
    assert "EwsApplicationAccessPolicy" in denied.remediation
    # And the throttled free/busy (a SOAP fault with HTTP 500) is inconclusive, not a failure
    busy = codes["ews.server_busy"]
    assert busy.status == Status.INCONCLUSIVE
    assert busy.evidence["back_off_ms"] == 30000
    assert "ews.availability.error" not in codes and "ews.server_error" not in codes
