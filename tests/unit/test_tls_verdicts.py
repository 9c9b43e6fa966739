"""TLS verdicts and chains published while the TLS check runs: each login (and DANE) waits
for its endpoint only."""

from __future__ import annotations

import asyncio

from analyzer.core.facts import TlsChains, TlsVerdicts
from analyzer.core.model import to_json


async def test_a_verdict_is_awaited_for_its_own_endpoint_only() -> None:
    # Given the verdicts of two endpoints, neither checked yet
    verdicts = TlsVerdicts(["imap.example.test:993", "smtp.example.test:465"])
    waiting = asyncio.create_task(verdicts.verdict("imap.example.test:993"))
    await asyncio.sleep(0)
    # When the other endpoint's check ends
    verdicts.settle("smtp.example.test:465", "invalid")
    await asyncio.sleep(0)
    # Then the waiter for the first one still waits
    assert not waiting.done()
    # And gets its verdict as soon as its own check ends
    verdicts.settle("imap.example.test:993", "valid")
    assert await asyncio.wait_for(waiting, 1) == "valid"


async def test_closing_wakes_every_waiter_without_a_verdict() -> None:
    # Given a check that ends (deadline, crash) before an endpoint was judged
    verdicts = TlsVerdicts(["mail.example.test:587"])
    waiting = asyncio.create_task(verdicts.verdict("mail.example.test:587"))
    await asyncio.sleep(0)
    verdicts.close()
    # Then the waiter goes on, with no verdict
    assert await asyncio.wait_for(waiting, 1) == ""


async def test_a_withdrawn_endpoint_wakes_its_waiter_without_a_verdict() -> None:
    # Given a login waiting for a guessed endpoint, and another endpoint still being checked
    verdicts = TlsVerdicts(["imap.example.test:993", "mx.example.test:25"])
    waiting = asyncio.create_task(verdicts.verdict("imap.example.test:993"))
    await asyncio.sleep(0)
    # When its host turns out not to exist
    verdicts.withdraw("imap.example.test:993")
    # Then the waiter goes on at once, with no verdict, while the other is still awaited
    assert await asyncio.wait_for(waiting, 1) == ""
    assert "imap.example.test:993" not in verdicts


async def test_an_endpoint_the_check_does_not_cover_has_no_verdict_at_once() -> None:
    verdicts = TlsVerdicts(["mx.example.test:25"])
    assert await asyncio.wait_for(verdicts.verdict("other.example.test:993"), 1) == ""


def test_it_reads_and_reports_as_the_verdicts_known() -> None:
    # Given one endpoint judged and one not yet
    verdicts = TlsVerdicts(["a.example.test:993", "b.example.test:993"])
    verdicts.settle("a.example.test:993", "valid")
    # Then it reads, and is shown in a report, as the plain mapping of what is known
    assert dict(verdicts) == {"a.example.test:993": "valid"}
    assert to_json(verdicts) == {"a.example.test:993": "valid"}
    assert verdicts.get("b.example.test:993") is None


async def test_a_chain_is_awaited_for_its_own_endpoint_and_none_comes_when_withdrawn() -> None:
    # Given the chains of an MX and of a guessed endpoint, neither captured yet
    chains = TlsChains(["mx.example.test:25", "imap.example.test:993"])
    mx = asyncio.create_task(chains.chain("mx.example.test:25"))
    guessed = asyncio.create_task(chains.chain("imap.example.test:993"))
    await asyncio.sleep(0)
    # When the guessed host turns out not to exist
    chains.withdraw("imap.example.test:993")
    # Then its waiter goes on at once with no chain, while the MX's still waits
    assert await asyncio.wait_for(guessed, 1) == ()
    assert not mx.done()
    # And the MX's waiter gets the chain as soon as its handshakes end
    chains.settle("mx.example.test:25", (b"leaf", b"ca"))
    assert await asyncio.wait_for(mx, 1) == (b"leaf", b"ca")


async def test_a_chain_never_captured_is_empty_once_the_check_ends() -> None:
    # Given a check that ends (deadline, crash) before the MX's handshakes did
    chains = TlsChains(["mx.example.test:25"])
    waiting = asyncio.create_task(chains.chain("mx.example.test:25"))
    await asyncio.sleep(0)
    chains.close()
    # Then DANE goes on with no chain, as for an endpoint the check does not cover
    assert await asyncio.wait_for(waiting, 1) == ()
    assert await asyncio.wait_for(chains.chain("other.example.test:25"), 1) == ()


def test_a_report_lists_the_verdicts_in_the_same_order_whatever_order_checks_end_in() -> None:
    # Given two runs whose endpoint checks end in opposite orders
    labels = ["mx.example.test:25", "imap.example.test:993", "smtp.example.test:465"]
    first, second = TlsVerdicts(labels), TlsVerdicts(labels)
    for label in labels:
        first.settle(label, "valid")
    for label in reversed(labels):
        second.settle(label, "valid")
    # Then both show the same fact, key for key, in the report
    assert list(to_json(first)) == list(to_json(second)) == sorted(labels)
