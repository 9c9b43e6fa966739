"""The endpoints a mail client or server uses, built from what DNS found.

Every MX on port 25; IMAP, POP3 and submission where RFC 6186/8314 SRV records point
(or, without them, on the host names clients guess, if those exist); HTTPS on the
domain, ``autodiscover.<domain>`` and ``mta-sts.<domain>``; plus what the user added
with ``--port``. Shared by the reachability and TLS probes, which check each endpoint as
soon as its own host is resolved (:func:`check_endpoints`), not once every host is; host
addresses are looked up once per run (:meth:`analyzer.core.context.RunContext.shared`),
honouring ``--connect``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeVar

from analyzer.core.facts import (
    DOMAIN_ADDRESSES,
    MX_HOSTS,
    SRV_RECORDS,
    HostAddresses,
    MxHost,
    SrvRecord,
)
from analyzer.core.targets import is_ip
from analyzer.protocols.resolve import lookup

if TYPE_CHECKING:
    from analyzer.core.context import RunContext
    from analyzer.core.probe import ProbeContext
    from analyzer.core.targets import Target

__all__ = [
    "SERVICES",
    "Endpoint",
    "ServiceInfo",
    "Wanted",
    "check_endpoints",
    "host_addresses",
    "plan_endpoints",
    "resolve_host",
    "wanted_endpoints",
]

T = TypeVar("T")

TlsMode = Literal["starttls", "implicit", "none"]
Source = Literal["mx", "srv", "guess", "standard", "user", "target"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """What runs on a well-known port: protocol, TLS mode, who speaks first."""

    name: str
    port: int
    tls: TlsMode
    speaks: Literal["smtp", "imap", "pop3", "http"]
    title: str


SERVICES: dict[str, ServiceInfo] = {
    s.name: s
    for s in (
        ServiceInfo(name="smtp", port=25, tls="starttls", speaks="smtp", title="SMTP (MX)"),
        ServiceInfo(
            name="submission", port=587, tls="starttls", speaks="smtp", title="SMTP submission"
        ),
        ServiceInfo(
            name="submissions",
            port=465,
            tls="implicit",
            speaks="smtp",
            title="SMTP submission over TLS",
        ),
        ServiceInfo(name="imap", port=143, tls="starttls", speaks="imap", title="IMAP"),
        ServiceInfo(name="imaps", port=993, tls="implicit", speaks="imap", title="IMAP over TLS"),
        ServiceInfo(name="pop3", port=110, tls="starttls", speaks="pop3", title="POP3"),
        ServiceInfo(name="pop3s", port=995, tls="implicit", speaks="pop3", title="POP3 over TLS"),
        ServiceInfo(name="https", port=443, tls="implicit", speaks="http", title="HTTPS"),
        ServiceInfo(name="http", port=80, tls="none", speaks="http", title="HTTP"),
    )
}
_BY_PORT = {s.port: s for s in SERVICES.values()}
# RFC 6186 3 and RFC 8314 5.1 service labels → our service names.
_SRV_SERVICE = {
    "_imap._tcp": "imap",
    "_imaps._tcp": "imaps",
    "_pop3._tcp": "pop3",
    "_pop3s._tcp": "pop3s",
    "_submission._tcp": "submission",
    "_submissions._tcp": "submissions",
}
# Thunderbird's guesses (REFERENCE.md): host prefixes per service family.
_GUESSES = {
    "imap": ("imap", "mail"),
    "imaps": ("imap", "mail"),
    "pop3": ("pop", "mail"),
    "pop3s": ("pop", "mail"),
    "submission": ("smtp", "mail"),
    "submissions": ("smtp", "mail"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One host:port to test, on each of its addresses.

    ``expected`` is True when something published it (MX, SRV, the user): then closed or
    filtered is a failure. A guessed endpoint that is closed is simply not offered.
    """

    host: str
    port: int
    service: ServiceInfo
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    source: Source
    expected: bool

    @property
    def label(self) -> str:
        """``host:port`` as shown in reports."""
        return f"{self.host}:{self.port}"

    def addresses(self, families: Sequence[int]) -> tuple[str, ...]:
        """The addresses to test for the run's IP families."""
        return (self.ipv4 if 4 in families else ()) + (self.ipv6 if 6 in families else ())


async def host_addresses(ctx: ProbeContext, host: str) -> HostAddresses:
    """A and AAAA of ``host`` (``--connect`` wins), looked up once per run."""
    return await resolve_host(ctx.run, host)


async def resolve_host(run: RunContext, host: str) -> HostAddresses:
    """A and AAAA of ``host`` (``--connect`` wins; an IP is itself), once per run."""
    host = host.lower().rstrip(".")
    forced = run.connect_addresses(host)
    if not forced and is_ip(host):
        forced = (host,)
    if forced:
        return HostAddresses(
            host=host,
            ipv4=tuple(a for a in forced if ":" not in a),
            ipv6=tuple(a for a in forced if ":" in a),
        )

    async def resolve() -> HostAddresses:
        v4, v6 = await asyncio.gather(lookup(run, host, "A"), lookup(run, host, "AAAA"))
        return HostAddresses(
            host=host,
            ipv4=tuple(r.to_text() for r in v4.records) if v4.ok else (),
            ipv6=tuple(r.to_text() for r in v6.records) if v6.ok else (),
        )

    return await run.shared(f"addresses:{host}", resolve)


class Wanted(NamedTuple):
    """One endpoint wanted, before its host is resolved."""

    host: str
    port: int
    name: str  # the service's name (SERVICES), or what --port called it
    source: Source
    expected: bool

    @property
    def label(self) -> str:
        """``host:port`` as shown in reports."""
        return f"{self.host}:{self.port}"

    @property
    def service(self) -> ServiceInfo:
        """What runs there (an unknown name: plain, spoken as HTTP)."""
        known = SERVICES.get(self.name)
        if known is not None:
            return known
        return ServiceInfo(name=self.name, port=self.port, tls="none", speaks="http",
                           title=f"port {self.port}")  # fmt: skip


async def plan_endpoints(ctx: ProbeContext, target: Target) -> tuple[Endpoint, ...]:
    """Every endpoint to test for ``target`` (see the module docstring), in a stable order,
    once every host is resolved."""

    async def planned(ep: Endpoint) -> None:
        return None

    checked = await check_endpoints(ctx, wanted_endpoints(ctx, target), planned)
    return tuple(ep for ep, _ in checked)


async def check_endpoints(
    ctx: ProbeContext,
    wanted: Sequence[Wanted],
    check: Callable[[Endpoint], Awaitable[T]],
    *,
    dropped: Callable[[str], None] | None = None,
) -> list[tuple[Endpoint, T]]:
    """Run ``check`` on every ``wanted`` endpoint, each as soon as *its* host's addresses
    are known: one slow or missing name does not hold the others. Returns each endpoint
    with what ``check`` returned, in the order of ``wanted``. ``dropped`` is told the
    ``host:port`` of each wanted endpoint that is none after all (a standard or guessed
    name that does not exist).
    """
    known = _known_addresses(ctx)
    hosts: dict[str, list[Wanted]] = {}
    for w in wanted:
        hosts.setdefault(w.host, []).append(w)

    async def of_host(host: str, entries: list[Wanted]) -> list[tuple[Endpoint, T]]:
        endpoints = await _host_endpoints(ctx, host, entries, known)
        planned = {(ep.host, ep.port) for ep in endpoints}
        for w in entries:
            if (w.host, w.port) not in planned and dropped is not None:
                dropped(w.label)
        values = await asyncio.gather(*(check(ep) for ep in endpoints))
        return list(zip(endpoints, values, strict=True))

    checked = [p for group in await asyncio.gather(*(of_host(h, e) for h, e in hosts.items()))
               for p in group]  # fmt: skip
    rank = {(w.host, w.port): i for i, w in enumerate(wanted)}
    return sorted(checked, key=lambda p: rank[(p[0].host, p[0].port)])


def wanted_endpoints(
    ctx: ProbeContext, target: Target, *, keep: Callable[[ServiceInfo], bool] | None = None
) -> list[Wanted]:
    """The endpoints to test (those whose service ``keep`` accepts), before their hosts are
    resolved: one per ``host:port``, an endpoint both guessed and published counting as
    published. A standard or guessed host that turns out to have no address is none
    (:func:`check_endpoints` drops it)."""
    domain = target.domain
    wanted: list[Wanted] = []

    if target.kind in ("host", "url") and target.port is not None:
        service = _BY_PORT.get(target.port)
        name = service.name if service else "https" if target.kind == "url" else "unknown"
        wanted.append(Wanted(domain, target.port, name, "target", True))

    mx: tuple[MxHost, ...] = ctx.fact_or(MX_HOSTS, ()) or ()
    for m in mx:
        wanted.append(Wanted(m.host, 25, "smtp", "mx", True))

    srv: tuple[SrvRecord, ...] = ctx.fact_or(SRV_RECORDS, ()) or ()
    announced: set[str] = set()
    for rec in srv:
        srv_service = _SRV_SERVICE.get(rec.service)
        if srv_service is None:
            continue
        announced.add(srv_service)
        if rec.offered:
            host = rec.target.rstrip(".").lower()
            wanted.append(Wanted(host, rec.port, srv_service, "srv", True))

    if target.kind in ("address", "domain"):
        # Clients guess these names only for what SRV does not announce; a guess whose
        # name does not exist is dropped when its host is resolved.
        for name, prefixes in _GUESSES.items():
            if name in announced:
                continue
            for prefix in prefixes:
                host = f"{prefix}.{domain}"
                wanted.append(Wanted(host, SERVICES[name].port, name, "guess", False))
        for host, expected in (
            (domain, False),
            (f"autodiscover.{domain}", True),
            (f"mta-sts.{domain}", True),
        ):
            wanted.append(Wanted(host, 443, "https", "standard", expected))
        wanted.append(Wanted(f"autodiscover.{domain}", 80, "http", "standard", False))

    for host, port, named in ctx.options.extra_ports:
        by_port = _BY_PORT.get(port)
        name = named or (by_port.name if by_port else "unknown")
        wanted.append(Wanted(host, port, name, "user", True))

    return [w for w in _dedupe(wanted) if keep is None or keep(w.service)]


def _dedupe(wanted: Iterable[Wanted]) -> list[Wanted]:
    seen: dict[tuple[str, int], int] = {}
    out: list[Wanted] = []
    for item in wanted:
        key = (item.host, item.port)
        if key in seen:
            idx = seen[key]
            # An endpoint both guessed and published counts as published.
            if item.expected and not out[idx].expected:
                out[idx] = item
            continue
        seen[key] = len(out)
        out.append(item)
    return out


def _known_addresses(ctx: ProbeContext) -> dict[str, HostAddresses]:
    """The addresses the DNS check already published: the MX hosts' and the domain's."""
    domain_addrs: HostAddresses | None = ctx.fact_or(DOMAIN_ADDRESSES)
    mx: tuple[MxHost, ...] = ctx.fact_or(MX_HOSTS, ()) or ()
    known = {m.host: HostAddresses(host=m.host, ipv4=m.ipv4, ipv6=m.ipv6) for m in mx}
    if domain_addrs is not None:
        known.setdefault(domain_addrs.host, domain_addrs)
    return known


async def _host_endpoints(
    ctx: ProbeContext, host: str, entries: list[Wanted], known: dict[str, HostAddresses]
) -> list[Endpoint]:
    """The endpoints of one host, once its addresses are known (``--connect`` wins)."""
    addrs = known.get(host)
    if addrs is None or ctx.run.connect_addresses(host) or is_ip(host):
        addrs = await host_addresses(ctx, host)
    endpoints = []
    for w in entries:
        if not addrs.addresses and w.source in ("standard", "guess"):
            continue  # a name that does not exist is not an endpoint
        endpoints.append(
            Endpoint(
                host=host,
                port=w.port,
                service=w.service,
                ipv4=addrs.ipv4,
                ipv6=addrs.ipv6,
                source=w.source,
                expected=w.expected,
            )
        )
    return endpoints
