"""ActiveSync against a real server: SOGo 5 (Debian's sogo-activesync) behind the lab's nginx,
with the scenario's Dovecot as its IMAP store (the ``sogo`` scenario, analyzer.lab.sogo).

What our emulator cannot prove: that the probe reads a server we did not write. SOGo offers
no Autodiscover, so the probe uses the conventional URL, as it would for such a domain.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import httpx
import pytest

from analyzer.api import check
from analyzer.core.context import Credentials, Nameserver, RunOptions
from analyzer.core.model import Finding, Report, Status, report_from_json
from analyzer.core.targets import parse_target
from analyzer.lab import LabInfo
from reports.html import render
from reports.json import dumps

pytestmark = pytest.mark.lab

EAS = "https://mail.sogo.test/Microsoft-Server-ActiveSync"


def run(lab: LabInfo, user: int = 0, *, password: str | None = None,
        tests: tuple[str, ...] = ("activesync",)) -> Report:  # fmt: skip
    address, secret = lab.scenario("sogo").users[user]
    options = RunOptions(
        nameservers=(Nameserver(lab.resolver),), ca_file=Path(lab.ca_file),
        credentials=Credentials(address, password=password or secret),
        tests=("dns", "autodiscover", *tests), timeout=40, op_timeout=8, connect_timeout=2,
    )  # fmt: skip
    report = asyncio.run(check(parse_target(address), options))
    assert report.target in render(report)
    assert report_from_json(json.loads(dumps(report))) == report
    return report


def found(report: Report, probe: str = "activesync") -> dict[str, Finding]:
    return {f.code: f for r, f in report.findings() if r.probe == probe}


def test_sogo_answers_options_and_foldersync_without_provisioning(lab: LabInfo) -> None:
    # Given SOGo with alice's mailbox on Dovecot
    report = run(lab)
    codes = found(report)
    # Then OPTIONS lists SOGo's versions and commands, on the conventional URL
    assert codes["activesync.endpoint"].evidence["source"] == "conventional"
    options = codes["activesync.options"].evidence
    assert options["server"] == "14.1"
    assert options["versions"] == ["2.5", "12.0", "12.1", "14.0", "14.1"]
    assert "FolderSync" in options["commands"]
    # And FolderSync gives the mail folders SOGo read over IMAP, and its own collections
    folders = codes["activesync.foldersync.ok"].evidence["folders"]
    assert isinstance(folders, list)
    assert {"INBOX", "Drafts", "Sent", "Trash", "Personal Address Book"} <= set(folders)
    # And SOGo never asks for a policy: no Provision was made
    assert "activesync.provision.required" not in codes
    assert {r.status for r in report.results if r.probe == "activesync"} == {Status.PASS}


def test_sogo_refuses_a_wrong_password(lab: LabInfo) -> None:
    report = run(lab, password="not-the-password")  # noqa: S106 - a wrong one, on purpose
    codes = found(report)
    assert codes["activesync.auth.rejected"].status == Status.FAIL
    assert codes["activesync.auth.rejected"].evidence["offered"] == ["Basic"]
    assert "activesync.foldersync.ok" not in codes


def test_sogo_without_its_imap_login_syncs_no_mail(lab: LabInfo) -> None:
    # Given bob, whom SOGo knows but whose IMAP login Dovecot refuses
    report = run(lab, user=1)
    # Then FolderSync "succeeds" with no mail folder, and the probe says what is missing
    finding = found(report)["activesync.foldersync.no_inbox"]
    assert finding.status == Status.FAIL
    assert finding.evidence["folders"] == [
        "Personal Calendar", "Personal Calendar", "Personal Address Book",
    ]  # fmt: skip


def test_the_other_exchange_services_are_not_offered(lab: LabInfo) -> None:
    # Given a SOGo host, which has no EWS, Outlook Anywhere or MAPI over HTTP
    report = run(lab, tests=("ews", "outlook_anywhere", "mapi_http"))
    # Then each is "not offered" on its conventional URL: skipped, never failed
    for probe, prefix in (("ews", "ews"), ("outlook_anywhere", "outlookanywhere"),
                          ("mapi_http", "mapihttp")):  # fmt: skip
        codes = found(report, probe)
        assert f"{prefix}.not_offered" in codes, (probe, sorted(codes))
        assert {r.status for r in report.results if r.probe == probe} <= {
            Status.SKIP, Status.PASS,
        }, probe  # fmt: skip


def _options(lab: LabInfo, scenario: str) -> httpx.Response:
    address, password = lab.scenario(scenario).users[0]
    with httpx.Client(verify=ssl.create_default_context(cafile=lab.ca_file),
                      auth=(address, password), timeout=10) as client:  # fmt: skip
        return client.options(f"https://mail.{scenario}.test/Microsoft-Server-ActiveSync")


def test_the_emulator_answers_options_with_the_headers_sogo_sends(
    lab: LabInfo, lab_system_resolver: object
) -> None:
    # Given OPTIONS with credentials, to SOGo and to our Exchange emulator
    sogo, emulator = _options(lab, "sogo"), _options(lab, "healthy")
    assert sogo.status_code == emulator.status_code == 200
    # Then every header SOGo sends about ActiveSync ([MS-ASHTTP] 4.1's example has them
    # too) is in the emulator's answer, methods written alike
    for name in ("Cache-Control", "Allow", "Public", "MS-Server-ActiveSync",
                 "MS-ASProtocolVersions", "MS-ASProtocolCommands"):  # fmt: skip
        assert name in sogo.headers and name in emulator.headers, name
    for name in ("Allow", "Public"):
        assert {m.strip() for m in sogo.headers[name].split(",")} == {
            m.strip() for m in emulator.headers[name].split(",")
        } == {"OPTIONS", "POST"}
    assert sogo.headers["Cache-Control"] == emulator.headers["Cache-Control"] == "private"


def test_sogo_tables_and_personal_folders_exist_before_any_client(lab: LabInfo) -> None:
    # Given the lab as started (sogod with eight workers, which each look for SOGo's tables
    # when they start, and make a user's folders at that user's first request)
    log = (lab.directory / "sogo" / "postgres.log").read_text(encoding="utf-8")
    readiness = (lab.directory / "readiness.log").read_text(encoding="utf-8")
    # Then no worker found a table missing or raced another to make it: the lab made them
    for table in ("sogo_folder_info", "sogo_sessions_folder", "sogo_user_profile"):
        assert f'relation "{table}" does not exist' not in log
    assert "pg_type_typname_nsp_index" not in log
    for address, _ in lab.scenario("sogo").users:
        assert f'relation "sogo_cache_folder_{address.replace("@", "_a_").replace(".", "_d_")}"' \
            " does not exist" not in log
        # And each user's calendars and address books were opened once, before any client
        for collection in ("Calendar", "Contacts"):
            assert f"sogo first request: {address} {collection}: 207" in readiness
