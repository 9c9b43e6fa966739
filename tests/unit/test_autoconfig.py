"""Autoconfig's pure parts: config-v1.1 parsing, RFC 6186 records, contradictions."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.core.facts import MailServerSetting, SrvRecord
from probes.autoconfig import AutoconfigError, conflicts, parse_autoconfig, srv_settings

DOC = b"""<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="x.test">
    <domain>x.test</domain>
    <incomingServer type="imap">
      <hostname>mail.x.test</hostname><port>993</port><socketType>SSL</socketType>
      <authentication>password-cleartext</authentication><username>%EMAILADDRESS%</username>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>mail.x.test</hostname><port>110</port><socketType>plain</socketType>
      <authentication>password-cleartext</authentication><username>%EMAILLOCALPART%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>MAIL.x.test.</hostname><port>587</port><socketType>STARTTLS</socketType>
      <authentication>OAuth2</authentication><authentication>password-cleartext</authentication>
    </outgoingServer>
    <incomingServer type="exchange"><hostname>ews.x.test</hostname><port>443</port></incomingServer>
    <incomingServer type="imap"><hostname>bad.x.test</hostname><port>99999</port></incomingServer>
  </emailProvider>
</clientConfig>
"""


def imap(host: str, port: int, socket_type: str, source: str) -> MailServerSetting:
    return MailServerSetting(
        protocol="imap", host=host, port=port, socket_type=socket_type, source=source
    )


def test_document_servers_with_templates_filled_in() -> None:
    # Given a config-v1.1 document / When parsed for an address
    doc = parse_autoconfig(DOC, address="alice@x.test", source="https://a")
    # Then IMAP/POP3/SMTP servers are read, unknown types and bad ports skipped
    assert doc.provider == "x.test" and doc.domains == ("x.test",)
    assert [(s.protocol, s.host, s.port, s.socket_type, s.username) for s in doc.servers] == [
        ("imap", "mail.x.test", 993, "SSL", "alice@x.test"),
        ("pop3", "mail.x.test", 110, "plain", "alice"),
        ("smtp", "mail.x.test", 587, "STARTTLS", ""),
    ]
    assert doc.servers[2].authentication == ("OAuth2", "password-cleartext")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<clientConfig>",
        b'<!DOCTYPE c [<!ENTITY e "x">]><clientConfig>&e;</clientConfig>',
        b"<html><body/></html>",
        b"<clientConfig/>",
        b'<clientConfig><emailProvider id="x"><domain>x</domain></emailProvider></clientConfig>',
    ],
)
def test_unusable_documents(body: bytes) -> None:
    # Given a body that is no usable document / Then AutoconfigError says why
    with pytest.raises(AutoconfigError):
        parse_autoconfig(body, address="a@x.test", source="s")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_hostile_bodies_never_raise_anything_else(body: bytes) -> None:
    try:
        parse_autoconfig(body, address="a@x.test", source="s")
    except AutoconfigError:
        pass


def test_srv_records_become_settings_and_dots_are_not_offered() -> None:
    # Given RFC 6186/8314 records, one of them "."
    records = [
        SrvRecord(service="_imaps._tcp", priority=0, weight=0, port=0, target="."),
        SrvRecord(service="_imap._tcp", priority=0, weight=1, port=143, target="mail.x.test"),
        SrvRecord(service="_submissions._tcp", priority=0, weight=1, port=465, target="m.x.test"),
        SrvRecord(service="_autodiscover._tcp", priority=0, weight=0, port=443, target="a.x.test"),
    ]
    # When turned into settings
    found, refused = srv_settings(records, address="a@x.test")
    # Then each offered service is a server, and "." is remembered as not offered
    assert [(s.protocol, s.port, s.socket_type) for s in found] == [
        ("imap", 143, "STARTTLS"),
        ("smtp", 465, "SSL"),
    ]
    assert refused == {("imap", "SSL")}


def test_healthy_sources_agree() -> None:
    # Given autoconfig naming 993 and SRV naming 143 and 993
    sources = [
        ("autoconfig", [imap("mail.x.test", 993, "SSL", "a")]),
        (
            "SRV",
            [imap("mail.x.test", 143, "STARTTLS", "srv"), imap("mail.x.test", 993, "SSL", "srv")],
        ),
    ]
    # Then there is no contradiction
    assert conflicts(sources) == ()


def test_srv_not_offering_what_autoconfig_announces() -> None:
    # Given SRV with IMAP on 143 only (imaps ".") and autoconfig with 993
    sources = [
        ("autoconfig", [imap("mail.x.test", 993, "SSL", "a")]),
        ("SRV", [imap("mail.x.test", 143, "STARTTLS", "srv")]),
    ]
    # When compared
    (found,) = conflicts(sources, frozenset({("imap", "SSL")}))
    # Then both reasons are given and both endpoints are in dispute
    assert found.protocol == "imap"
    assert any("declare not offered" in r for r in found.reasons)
    assert any("no server in common" in r for r in found.reasons)
    assert found.endpoints == (("mail.x.test", 143), ("mail.x.test", 993))


def test_different_hosts_are_a_contradiction() -> None:
    sources = [
        ("autoconfig", [imap("imap.x.test", 993, "SSL", "a")]),
        ("Autodiscover", [imap("mail.x.test", 993, "SSL", "ad")]),
    ]
    (found,) = conflicts(sources)
    assert "no server in common" in found.reasons[0]


def test_a_single_source_cannot_contradict_itself() -> None:
    assert (
        conflicts([("SRV", [imap("m", 143, "STARTTLS", "srv")])], frozenset({("imap", "SSL")}))
        == ()
    )


async def test_sources_are_asked_while_autodiscover_runs_and_merged_after_it() -> None:
    # Given an Autodiscover that answers only once autoconfig has started (its sources are
    # refused at once: nothing listens on loopback's port 443), and DNS that found nothing
    from analyzer.api import check
    from analyzer.core.context import RunOptions
    from analyzer.core.facts import (
        AUTODISCOVER_SETTINGS,
        MX_HOSTS,
        SRV_RECORDS,
        AutodiscoverSettings,
    )
    from analyzer.core.model import Status
    from analyzer.core.pipeline import ProgressEvent
    from analyzer.core.probe import Probe, ProbeContext
    from analyzer.core.targets import Target, parse_target
    from probes.autoconfig import PROBE as AUTOCONFIG

    autoconfig_started = asyncio.Event()
    order: list[str] = []
    exchange_imap = imap("outlook.example.test", 993, "SSL", "autodiscover")

    async def dns(ctx: ProbeContext, target: Target) -> None:
        ctx.publish(MX_HOSTS, ())
        ctx.publish(SRV_RECORDS, ())

    async def autodiscover(ctx: ProbeContext, target: Target) -> None:
        await autoconfig_started.wait()
        order.append("autodiscover answered")
        settings = AutodiscoverSettings(email="alice@example.test", source_url="https://x",
                                        mail_servers=(exchange_imap,))  # fmt: skip
        ctx.publish(AUTODISCOVER_SETTINGS, settings)

    def progress(event: ProgressEvent) -> None:
        if event.probe == "autoconfig" and event.event == "started":
            order.append("autoconfig started")
            autoconfig_started.set()

    probes = [
        Probe(id="dns", title="dns", run=dns, provides=(MX_HOSTS, SRV_RECORDS)),
        Probe(id="autodiscover", title="autodiscover", run=autodiscover,
              provides=(AUTODISCOVER_SETTINGS,)),  # fmt: skip
        AUTOCONFIG,
    ]
    options = RunOptions(timeout=10, probe_timeout=3, connect={
        "autoconfig.example.test": ("127.0.0.1",), "example.test": ("127.0.0.1",)})  # fmt: skip
    # When the run happens
    report = await check(parse_target("alice@example.test"), options, probes=probes,
                         progress=progress)  # fmt: skip
    # Then autoconfig started first, and its merged settings hold Autodiscover's server
    assert order == ["autoconfig started", "autodiscover answered"]
    (summary,) = [r for r in report.results if r.subject == "alice@example.test"
                  and r.probe == "autoconfig"]  # fmt: skip
    merged = summary.facts["mail_settings"]
    assert isinstance(merged, list)
    assert [(s["host"], s["source"]) for s in merged] == [  # type: ignore[index,call-overload]
        ("outlook.example.test", "autodiscover")
    ]
    assert summary.status != Status.ERROR
