"""The Autodiscover probe against the lab's emulator behind nginx: every method, redirects,
errors, authentication methods, certificates, v2 and mobilesync, end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.facts import AutodiscoverSettings
from analyzer.core.model import Finding, ProbeResult, Report, Status, Step
from analyzer.core.targets import parse_target
from analyzer.lab import LabInfo
from analyzer.lab.emulator_auth import lab_token
from reports.html import render
from reports.json import dumps

pytestmark = pytest.mark.lab

XML = "/autodiscover/autodiscover.xml"


def run(lab: LabInfo, scenario: str, *, creds: Credentials | None = None, **kw: Any) -> Report:
    """A check with only the Autodiscover probe; the reports must render without the secret."""
    info = lab.scenario(scenario)
    address, password = info.users[0]
    options = RunOptions(
        nameservers=(Nameserver(lab.resolver),),
        ca_file=Path(lab.ca_file),
        credentials=creds or Credentials(address, password=password),
        timeout=40,
        op_timeout=4,
        connect_timeout=2,
        tests=("autodiscover",),
        **kw,
    )
    report = asyncio.run(check(parse_target(address), options))
    html = render(report)
    text = dumps(report)
    assert report.target in html
    for secret in (password, lab_token(address, password)):
        assert secret not in html and secret not in text
    json.loads(text)
    return report


def result(report: Report, subject: str) -> ProbeResult:
    matches = [r for r in report.results if r.subject == subject]
    assert matches, [r.subject for r in report.results]
    return matches[0]


def codes(results: Iterable[ProbeResult] | ProbeResult) -> list[tuple[str, Status]]:
    items = [results] if isinstance(results, ProbeResult) else list(results)
    return [(f.code, f.status) for r in items for f in r.findings()]


def finding(res: ProbeResult, code: str) -> Finding:
    found = [f for f in res.findings() if f.code == code]
    assert found, codes(res)
    return found[0]


def steps(res: ProbeResult) -> list[Step]:
    return [s for top in res.steps for s in top.walk()]


def transcript(res: ProbeResult) -> str:
    return "\n".join(line.text for s in steps(res) for line in s.transcript)


def published(report: Report) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for r in report.results:
        facts.update(r.facts)
    return facts


# --- the healthy domain --------------------------------------------------------------------------


def test_healthy_root_domain_answers_with_ntlm_and_publishes_settings(lab: LabInfo) -> None:
    # Given the healthy domain
    # When Autodiscover runs
    report = run(lab, "healthy")
    # Then SCP is skipped with its reason, the root domain URL (method 2) answers, and nothing
    # beyond it is tried
    subjects = [r.subject for r in report.results]
    assert subjects == [
        "alice@healthy.test",
        "SCP (Active Directory)",
        f"https://healthy.test{XML}",
    ]
    assert ("autodiscover.scp.skipped", Status.SKIP) in codes(report.results)
    root = result(report, f"https://healthy.test{XML}")
    assert root.status == Status.PASS
    titles = [s.title for s in root.steps]
    assert titles[:3] == [
        "Resolve healthy.test",
        "Connect to healthy.test:443 (198.18.1.10)",
        "Validate the certificate of healthy.test:443",
    ]
    assert "NTLM" in titles[4]
    # And the 401's methods are listed, the NTLM blobs shown only by kind and size
    assert finding(root, "autodiscover.auth.offered").evidence["offered"] == [
        "Negotiate",
        "NTLM",
        "Basic",
        "Bearer",
    ]
    text = transcript(root)
    assert "Authorization: NTLM «NTLM type 1," in text and "«NTLM type 3," in text
    # And the settings are a fact for the Exchange probes
    settings = published(report)["autodiscover_settings"]
    assert settings["ews_url"] == "https://mail.healthy.test/EWS/Exchange.asmx"
    # ASUrl is the Availability service (an EWS URL); ActiveSync's URL comes from v2
    assert settings["availability_url"] == settings["ews_url"]
    assert settings["eas_url"] == "https://mail.healthy.test/Microsoft-Server-ActiveSync"
    assert settings["eas_source"] == "v2"
    assert settings["outlook_anywhere"][0]["server"] == "mail.healthy.test"
    assert settings["outlook_anywhere"][0]["auth_package"] == "Ntlm"
    assert settings["mapi_mailstore_url"].startswith("https://mail.healthy.test/mapi/emsmdb/")
    assert settings["method"] == "root"
    assert "mail.healthy.test" in settings["hosts"]
    assert report.status == Status.PASS


def test_healthy_v2_json_agrees_with_the_xml_service(lab: LabInfo) -> None:
    # Given the healthy domain / When Autodiscover runs
    report = run(lab, "healthy")
    # Then v2 answers for AutodiscoverV1, Ews and ActiveSync, consistent with POX
    summary = result(report, "alice@healthy.test")
    v2 = [f for f in summary.findings() if f.code.startswith("autodiscover.v2.")]
    assert [(f.code, f.evidence.get("protocol")) for f in v2] == [
        ("autodiscover.v2.ok", "AutodiscoverV1"),
        ("autodiscover.v2.ok", "Ews"),
        ("autodiscover.v2.ok", "ActiveSync"),
    ]


def test_mobilesync_schema_gives_the_activesync_url(lab: LabInfo) -> None:
    # Given --mobilesync / When Autodiscover runs on the healthy domain
    report = run(lab, "healthy", mobilesync=True)
    # Then the mobilesync answer is reported and used as the ActiveSync URL
    summary = result(report, "alice@healthy.test")
    ok = finding(summary, "autodiscover.mobilesync.ok")
    assert ok.detail == "https://mail.healthy.test/Microsoft-Server-ActiveSync"
    settings = published(report)["autodiscover_settings"]
    assert (settings["eas_url"], settings["eas_source"]) == (ok.detail, "mobilesync")
    # And v2's ActiveSync answer is compared with it (they agree)
    v2 = [f for f in summary.findings() if f.code.startswith("autodiscover.v2.")]
    assert ("autodiscover.v2.ok", "ActiveSync") in [(f.code, f.evidence.get("protocol"))
                                                    for f in v2]  # fmt: skip


def test_asurl_is_reported_as_the_availability_url(lab: LabInfo) -> None:
    # Given the healthy domain, whose POX answer has ASUrl = EwsUrl as Exchange sends it
    report = run(lab, "healthy")
    # Then it is named the Availability URL, as a note, and v2 raises no mismatch
    summary = result(report, "alice@healthy.test")
    note = finding(summary, "autodiscover.settings.availability_url")
    assert note.status == Status.PASS
    assert note.detail == "https://mail.healthy.test/EWS/Exchange.asmx"
    assert "autodiscover.v2.mismatch" not in [c for c, _ in codes(summary)]


def test_availability_url_of_another_site_is_information(lab: LabInfo) -> None:
    # Given ASUrl naming another site's EWS endpoint than EwsUrl
    report = run(lab, "ad-availability-site")
    # Then the difference is reported with both URLs, as a pass (normal across sites)
    summary = result(report, "alice@ad-availability-site.test")
    note = finding(summary, "autodiscover.settings.availability_url_differs")
    assert note.status == Status.PASS
    assert note.evidence == {
        "availability_url": "https://autodiscover.ad-availability-site.test/EWS/Exchange.asmx",
        "ews_url": "https://mail.ad-availability-site.test/EWS/Exchange.asmx",
    }


def test_without_v2_the_mobilesync_schema_is_asked(lab: LabInfo) -> None:
    # Given no Autodiscover v2 service (and no --mobilesync)
    report = run(lab, "ad-no-v2")
    # Then the mobilesync schema is asked because nothing else names the ActiveSync URL
    summary = result(report, "alice@ad-no-v2.test")
    assert ("autodiscover.v2.unavailable", Status.WARN) in codes(summary)
    asked = [s.title for s in steps(summary) if "mobilesync" in s.title]
    assert asked == [f"Ask https://ad-no-v2.test{XML} in the mobilesync (ActiveSync) schema "
                     "(v2 gave none)"]  # fmt: skip
    settings = published(report)["autodiscover_settings"]
    assert settings["eas_url"] == "https://mail.ad-no-v2.test/Microsoft-Server-ActiveSync"
    assert settings["eas_source"] == "mobilesync"


def test_bearer_token_is_used_when_offered(lab: LabInfo) -> None:
    # Given only an OAuth token for the user
    address, password = lab.scenario("healthy").users[0]
    creds = Credentials(address, token=lab_token(address, password))
    # When Autodiscover runs
    report = run(lab, "healthy", creds=creds)
    # Then it logs in with Bearer and finds the settings
    root = result(report, f"https://healthy.test{XML}")
    assert finding(root, "autodiscover.auth.ok").detail.endswith("with Bearer")
    assert "Authorization: Bearer «redacted»" in transcript(root)
    assert ("autodiscover.found", Status.PASS) in codes(report.results)


def test_without_credentials_hosts_are_tested_but_settings_not_requested(lab: LabInfo) -> None:
    # Given no password / When Autodiscover runs
    report = run(lab, "healthy", creds=Credentials("alice@healthy.test"))
    # Then the 401 methods are still recorded, and the verdict says why it stopped
    assert ("autodiscover.auth.offered", Status.PASS) in codes(report.results)
    summary = result(report, "alice@healthy.test")
    assert ("autodiscover.credentials.missing", Status.SKIP) in codes(summary)
    assert "Authorization" not in "".join(transcript(r) for r in report.results)


# --- one method at a time ------------------------------------------------------------------------


def test_only_the_root_domain_works(lab: LabInfo) -> None:
    # Given a domain whose autodiscover host answers 404
    # When every method is tried
    report = run(lab, "ad-root-only", all_methods=True)
    # Then the root domain answers and the autodiscover host is "not found" (clients move on)
    assert ("autodiscover.settings.found", Status.PASS) in codes(
        result(report, f"https://ad-root-only.test{XML}")
    )
    other = result(report, f"https://autodiscover.ad-root-only.test{XML}")
    assert codes(other)[-1] == ("autodiscover.url.not_found", Status.PASS)


def test_only_srv_works(lab: LabInfo) -> None:
    # Given a domain where only the SRV record leads to Autodiscover
    report = run(lab, "ad-srv-only")
    # Then the methods are tried in the client's order, each with its own outcome
    subjects = [r.subject for r in report.results][1:]
    assert subjects == [
        "SCP (Active Directory)",
        f"https://ad-srv-only.test{XML}",
        f"https://autodiscover.ad-srv-only.test{XML}",
        f"http://autodiscover.ad-srv-only.test{XML}",
        "_autodiscover._tcp.ad-srv-only.test (SRV)",
    ]
    assert finding(
        result(report, f"https://autodiscover.ad-srv-only.test{XML}"), "autodiscover.url.not_found"
    ).detail.endswith("has no address")
    srv = result(report, "_autodiscover._tcp.ad-srv-only.test (SRV)")
    assert ("autodiscover.settings.found", Status.PASS) in codes(srv)
    assert published(report)["autodiscover_settings"]["method"] == "srv"


def test_only_the_http_redirect_method_works(lab: LabInfo) -> None:
    # Given a domain reachable only through http://autodiscover's redirect
    report = run(lab, "ad-http-redirect")
    # Then the redirect is followed to https and the method is flagged (Outlook prompts)
    http = result(report, f"http://autodiscover.ad-http-redirect.test{XML}")
    redirect = finding(http, "autodiscover.redirect.http")
    assert f"https://mail.ad-http-redirect.test{XML}" in redirect.detail
    summary = result(report, "alice@ad-http-redirect.test")
    assert ("autodiscover.method.http_redirect", Status.WARN) in codes(summary)
    # And the GET on http never carried credentials
    get_step = next(s for s in steps(http) if s.title.startswith("Ask http://"))
    assert not any("Authorization" in line.text for line in get_step.transcript)


# --- redirects -----------------------------------------------------------------------------------


def test_redirect_addr_to_another_domain_withholds_credentials(lab: LabInfo) -> None:
    # Given a redirectAddr to a user of another domain
    report = run(lab, "ad-redirect-addr")
    # Then discovery restarts for the new address, but no credentials go to that domain
    target = result(
        report, f"https://ad-redirect-target.test{XML} for alice@ad-redirect-target.test"
    )
    assert ("autodiscover.credentials.withheld", Status.SKIP) in codes(target)
    assert "Authorization" not in transcript(target)
    assert result(report, "alice@ad-redirect-addr.test").status == Status.INCONCLUSIVE


def test_redirect_addr_followed_with_trust_redirect(lab: LabInfo) -> None:
    # Given --trust-redirect for the target domain
    report = run(lab, "ad-redirect-addr", trust_redirect=("ad-redirect-target.test",))
    # Then the settings of the new address are found there
    settings = published(report)["autodiscover_settings"]
    assert settings["email"] == "alice@ad-redirect-target.test"
    assert settings["source_url"] == f"https://ad-redirect-target.test{XML}"
    origin = result(report, f"https://ad-redirect-addr.test{XML}")
    assert ("autodiscover.redirect.trusted_domain", Status.PASS) in codes(origin)


def test_redirect_url_chain_of_three(lab: LabInfo) -> None:
    # Given root → autodiscover → mail → autoconfig by redirectUrl
    report = run(lab, "ad-redirect-chain")
    # Then each hop is a nested step and the last URL's settings are used
    root = result(report, f"https://ad-redirect-chain.test{XML}")
    hops = [f.detail for f in root.findings() if f.code == "autodiscover.redirect.url"]
    assert len(hops) == 3 and "redirect 3 of at most 10" in hops[-1]
    follows = [s.title for s in steps(root) if s.title.startswith("Follow the redirectUrl")]
    assert (
        follows[-1] == f"Follow the redirectUrl to https://autoconfig.ad-redirect-chain.test{XML}"
    )
    assert published(report)["autodiscover_settings"]["source_url"].startswith(
        "https://autoconfig.ad-redirect-chain.test/"
    )


def test_redirect_loop_is_reported_as_a_loop(lab: LabInfo) -> None:
    # Given A → B → A
    report = run(lab, "ad-redirect-loop")
    # Then the second visit of A is a loop, and B (tried in the loop) is not asked again
    root = result(report, f"https://ad-redirect-loop.test{XML}")
    loop = finding(root, "autodiscover.redirect.loop")
    assert loop.detail.count("https://ad-redirect-loop.test/autodiscover/autodiscover.xml") == 2
    second = result(report, f"https://autodiscover.ad-redirect-loop.test{XML}")
    assert second.steps[0].title.endswith("was already tried above")
    assert ("autodiscover.none", Status.FAIL) in codes(
        result(report, "alice@ad-redirect-loop.test")
    )


def test_eleven_redirects_stop_at_ten(lab: LabInfo) -> None:
    # Given a chain of 11 redirectUrl hops
    report = run(lab, "ad-redirect-11")
    # Then 10 are followed and the 11th is refused
    root = result(report, f"https://ad-redirect-11.test{XML}")
    found = codes(root)
    assert found.count(("autodiscover.redirect.url", Status.PASS)) == 10
    assert ("autodiscover.redirect.too_many", Status.FAIL) in found
    assert ("autodiscover.auth.anonymous", Status.WARN) not in found


# --- errors, authentication, certificates --------------------------------------------------------


def test_error_602(lab: LabInfo) -> None:
    # Given a server answering ErrorCode 602 / When Autodiscover runs
    report = run(lab, "ad-error-602")
    # Then the error has its own finding, with the server's message
    root = result(report, f"https://ad-error-602.test{XML}")
    error = finding(root, "autodiscover.error.user_not_found")
    assert error.evidence["error_code"] == "602"
    assert "Cannot find a user" in error.detail


def test_ntlm_only(lab: LabInfo) -> None:
    # Given a server offering NTLM only
    report = run(lab, "ad-ntlm-only")
    # Then the offer is recorded as such and the login uses NTLM
    root = result(report, f"https://ad-ntlm-only.test{XML}")
    assert finding(root, "autodiscover.auth.offered").evidence["offered"] == ["NTLM"]
    assert finding(root, "autodiscover.auth.ok").detail.endswith("with NTLM")
    assert "Authorization: Basic" not in transcript(root)


def test_certificate_mismatch_on_the_autodiscover_host(lab: LabInfo) -> None:
    # Given a wrong-name certificate on autodiscover.<domain> and a good root domain
    report = run(lab, "ad-cert-mismatch", all_methods=True)
    # Then the root domain answers; the autodiscover host fails its certificate step and
    # gets no request at all
    assert ("autodiscover.found", Status.PASS) in codes(
        result(report, "alice@ad-cert-mismatch.test")
    )
    bad = result(report, f"https://autodiscover.ad-cert-mismatch.test{XML}")
    assert ("tls.cert.name_mismatch", Status.FAIL) in codes(bad)
    assert ("autodiscover.credentials.withheld", Status.SKIP) in codes(bad)
    assert not any(s.title.startswith("Send") or s.title.startswith("Ask") for s in steps(bad))


def test_insecure_continues_past_the_certificate_and_says_so(lab: LabInfo) -> None:
    # Given the same wrong-name certificate, and --insecure
    report = run(lab, "ad-cert-mismatch", all_methods=True, insecure=True)
    bad = result(report, f"https://autodiscover.ad-cert-mismatch.test{XML}")
    # Then the certificate still fails, the request is made, with a loud warning
    assert ("tls.cert.name_mismatch", Status.FAIL) in codes(bad)
    assert ("autodiscover.tls.insecure", Status.WARN) in codes(bad)
    assert ("autodiscover.credentials.withheld", Status.SKIP) not in codes(bad)


def test_settings_round_trip_as_a_fact(lab: LabInfo) -> None:
    # Given the healthy domain / When Autodiscover runs
    report = run(lab, "healthy")
    # Then the published fact has every field of AutodiscoverSettings
    fact = published(report)["autodiscover_settings"]
    fields = set(AutodiscoverSettings.__dataclass_fields__)
    assert fields <= set(fact)
    assert fact["mail_servers"][0]["protocol"] == "imap"


def test_v2_disagreeing_with_the_xml_service_is_a_warning(lab: LabInfo) -> None:
    # Given a v2 service naming another EWS URL
    report = run(lab, "ad-v2-mismatch")
    # Then the mismatch names both URLs, and the XML service's settings are kept
    summary = result(report, "alice@ad-v2-mismatch.test")
    mismatch = finding(summary, "autodiscover.v2.mismatch")
    assert mismatch.evidence == {
        "protocol": "Ews",
        "v2": "https://ews.ad-v2-mismatch.test/EWS/Exchange.asmx",
        "pox": "https://mail.ad-v2-mismatch.test/EWS/Exchange.asmx",
    }
    assert published(report)["autodiscover_settings"]["ews_url"] == mismatch.evidence["pox"]
