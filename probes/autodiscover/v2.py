"""Autodiscover v2 (JSON): ``GET /autodiscover/autodiscover.json/v1.0/<address>?Protocol=X``.

No formal specification; Exchange 2016 CU and later and Microsoft 365 answer
``{"Protocol": "Ews", "Url": "https://..."}`` without authentication, and 400
``{"ErrorCode": "InvalidProtocol", ...}`` for a protocol they do not know. The answers are
compared with what the XML (POX) service said: a different URL is a warning. The outlook
schema has no ActiveSync URL (its ``ASUrl`` is the Availability service), so v2's
ActiveSync answer is compared only with a mobilesync answer, and otherwise becomes the
ActiveSync URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from analyzer.core.errors import NetError
from analyzer.core.probe import HeldTranscript, concurrently
from analyzer.protocols.httpauth import send_recorded
from probes.autodiscover import findings as F
from probes.autodiscover.settings import same_url

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import httpx

    from analyzer.core.facts import AutodiscoverSettings
    from analyzer.core.probe import ProbeContext, ResultRecorder, StepRecorder
    from analyzer.protocols.net import TranscriptSink

__all__ = [
    "PROTOCOLS",
    "V2Answer",
    "V2Error",
    "ask_v2",
    "check_v2",
    "parse_v2",
    "same_url",
    "v2_host",
]

PROTOCOLS = ("AutodiscoverV1", "Ews", "ActiveSync")
#: What each v2 answer is compared with in the XML service's answers.
_COMPARED = {"Ews": "EwsUrl", "ActiveSync": "mobilesync schema"}
_MAX_BYTES = 64 * 1024
_MAX_HOPS = 3


class V2Error(ValueError):
    """The body is not a usable v2 answer."""


def parse_v2(body: bytes, protocol: str) -> str:
    """The ``Url`` of a v2 answer for ``protocol``; :class:`V2Error` when there is none."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise V2Error(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise V2Error("the JSON is not an object")
    if "ErrorCode" in data:
        raise V2Error(f"{str(data.get('ErrorCode'))[:60]}: {str(data.get('ErrorMessage'))[:200]}")
    url = data.get("Url")
    if not isinstance(url, str) or not url:
        raise V2Error("no Url in the answer")
    answered = data.get("Protocol")
    if isinstance(answered, str) and answered.lower() != protocol.lower():
        raise V2Error(f"answered for Protocol {answered[:40]!r}, not {protocol!r}")
    if not url.lower().startswith("https://"):
        raise V2Error(f"the Url is not https: {url[:200]}")
    return url[:2000]


def v2_host(url: str) -> str:
    """The host (``host:port`` off 443) whose v2 service is asked after ``url`` answered."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port not in (None, 443) else host


@dataclass(frozen=True, slots=True, kw_only=True)
class V2Answer:
    """One v2 question asked ahead of its step (:func:`ask_v2`): what came back, and the
    transcript kept for the step."""

    protocol: str
    url: str
    answer: str | None
    error: str
    held: HeldTranscript


async def ask_v2(
    ctx: ProbeContext, client: httpx.AsyncClient, *, host: str, address: str
) -> tuple[V2Answer, ...]:
    """Ask ``host``'s v2 service for each of :data:`PROTOCOLS` now, recording nothing yet:
    :func:`check_v2` (given these answers) reports them in its step, as if asked there."""

    async def one(protocol: str) -> V2Answer:
        url = _url(host, address, protocol)
        held = HeldTranscript()
        answer, error = await _fetch(ctx, client, url=url, protocol=protocol, transcript=held)
        return V2Answer(protocol=protocol, url=url, answer=answer, error=error, held=held)

    return tuple(await concurrently(*(one(protocol) for protocol in PROTOCOLS)))


async def check_v2(
    ctx: ProbeContext,
    res: ResultRecorder,
    client: httpx.AsyncClient,
    *,
    host: str,
    address: str,
    settings: AutodiscoverSettings | None,
    asked: Awaitable[tuple[V2Answer, ...]] | None = None,
) -> dict[str, str]:
    """Ask ``host``'s v2 service for each of :data:`PROTOCOLS` (or take the answers of
    :func:`ask_v2` for this host and address, ``asked``); compare with ``settings`` (EWS
    with ``EwsUrl``, ActiveSync with a mobilesync answer if there was one). Returns the URL
    answered for each protocol that answered."""
    compare = {
        "Ews": settings.ews_url if settings else "",
        "ActiveSync": settings.eas_url if settings and settings.eas_source == "mobilesync" else "",
    }
    with res.step(f"Ask Autodiscover v2 (JSON) on {host}") as step:
        if asked is not None:
            found = [_report(step, a, compare.get(a.protocol, "")) for a in await asked]
        else:
            # The three questions are independent anonymous GETs to the same host: asked at
            # once, listed in this order (each sub-step is made when its request starts).
            found = await concurrently(*(
                _ask(ctx, step, client, host=host, address=address, protocol=protocol,
                     expected=compare.get(protocol, ""))
                for protocol in PROTOCOLS
            ))  # fmt: skip
    return {p: answer for p, answer in zip(PROTOCOLS, found, strict=True) if answer is not None}


def _url(host: str, address: str, protocol: str) -> str:
    return (
        f"https://{host}/autodiscover/autodiscover.json/v1.0/"
        f"{quote(address, safe='@')}?Protocol={protocol}"
    )


async def _ask(
    ctx: ProbeContext, step: StepRecorder, client: httpx.AsyncClient, *, host: str,
    address: str, protocol: str, expected: str,
) -> str | None:  # fmt: skip
    """Ask for ``protocol`` in a sub-step of ``step``; the URL answered, or None (the
    sub-step says why)."""
    url = _url(host, address, protocol)
    with step.step(f"GET {url}") as sub:
        answer, error = await _fetch(ctx, client, url=url, protocol=protocol, transcript=sub)
        return _judge(sub, protocol, answer, error, expected)


def _report(step: StepRecorder, asked: V2Answer, expected: str) -> str | None:
    """:func:`_ask`'s sub-step for an answer asked ahead (:func:`ask_v2`)."""
    with step.step(f"GET {asked.url}") as sub:
        sub.replay(asked.held)
        return _judge(sub, asked.protocol, asked.answer, asked.error, expected)


async def _fetch(
    ctx: ProbeContext, client: httpx.AsyncClient, *, url: str, protocol: str,
    transcript: TranscriptSink,
) -> tuple[str | None, str]:  # fmt: skip
    """GET ``url`` (following up to :data:`_MAX_HOPS` https redirects): the URL answered
    for ``protocol`` and "", or None and why not."""
    try:
        for _ in range(_MAX_HOPS + 1):
            response = await send_recorded(
                client,
                "GET",
                url,
                max_bytes=_MAX_BYTES,
                timeout=ctx.op_timeout(),
                transcript=transcript,
            )
            location = response.header("location") or ""
            if response.status in (301, 302, 307, 308) and location:
                url = urljoin(url, location)
                if not url.lower().startswith("https://"):
                    raise V2Error(f"redirect to a URL that is not https: {url[:200]}")
                continue
            if response.status != 200:
                raise V2Error(f"HTTP {response.status}")
            return parse_v2(response.body, protocol), ""
        raise V2Error("too many redirects")
    except (NetError, V2Error) as exc:
        return None, str(exc)


def _judge(
    sub: StepRecorder, protocol: str, answer: str | None, error: str, expected: str
) -> str | None:
    """The finding of one v2 answer, in its sub-step; the answer."""
    if answer is None:
        sub.add(F.V2_UNAVAILABLE(detail=f"Protocol={protocol}: {error}"[:500]))
        return None
    if expected and not same_url(expected, answer):
        sub.add(
            F.V2_MISMATCH(
                detail=f"{protocol}: v2 says {answer}, the XML service "
                f"({_COMPARED[protocol]}) {expected}",
                evidence={"protocol": protocol, "v2": answer, "pox": expected},
            )
        )
    else:
        sub.add(
            F.V2_OK(
                detail=f"{protocol}: {answer}",
                evidence={"protocol": protocol, "url": answer},
            )
        )
    return answer
