"""DNS look-ups that keep every outcome apart, for probes to judge.

A diagnostic must not confuse "no such record" with "could not ask": NXDOMAIN,
NODATA, SERVFAIL, REFUSED and a timeout are different outcomes here (a timeout is
*inconclusive*, never "record missing"). Queries go straight to the configured
nameservers (``--resolver`` or the system's), over UDP from a few sockets the run keeps
(:mod:`analyzer.protocols.dnsudp`, which says why that is as safe as a socket per query)
with TCP fallback on truncation, asking for the AD bit so a validating resolver's verdict
is visible.
CNAME chains are followed across zones and loops are reported.

Each question is asked once per run: :func:`lookup` keeps every outcome in the run
context (question → answer, NXDOMAIN and NODATA included, and a timeout or SERVFAIL too:
one run reports one view of the DNS, and a question that timed out would only time out
again), and probes asking the same question at the same time share the one query in
flight. That cache lives and dies with the :class:`~analyzer.core.context.RunContext`, so
it always holds answers of the run's own resolvers.

In a batch, the runs also share definitive answers (records, NXDOMAIN, NODATA) through the
batch's :class:`~analyzer.core.shared.SharedAnswers`, because a thousand domains of one
provider ask the same questions about its hosts. A shared answer is used until its TTL runs
out, counted from when it was received (a negative answer: the SOA's TTL or MINIMUM,
whichever is lower, RFC 2308 section 5; without an SOA, :data:`NEGATIVE_WITHOUT_SOA_S`),
and only by runs asking the same resolvers the same question with the same options (the
name as written, type, DNSSEC records or not). A timeout, SERVFAIL, REFUSED or any error is
never shared: the next run asks again. The run that uses a shared answer records the same
:class:`Lookup` as the run that received it. ``rca batch --no-share`` turns this off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import dns.message
    import dns.rdata

    from analyzer.core.context import RunContext

__all__ = ["Lookup", "Outcome", "lookup"]

Outcome = Literal["answer", "nxdomain", "nodata", "servfail", "refused", "timeout", "error"]

#: RFC 1034 does not bound CNAME chains; resolvers commonly stop near 8-16 links.
MAX_CNAME_CHAIN = 12
#: Seconds a batch shares a negative answer that carries no SOA. RFC 2308 section 5 says
#: not to cache one at all; runs of a batch that ask at nearly the same time may still share
#: it (what the resolver said a moment ago).
NEGATIVE_WITHOUT_SOA_S = 5.0
#: The most a batch shares a negative answer, in seconds (RFC 2308 section 5: one to three
#: hours works well).
MAX_NEGATIVE_TTL_S = 3 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    """The outcome of one question, after following CNAMEs."""

    name: str
    rdtype: str
    outcome: Outcome
    records: tuple[dns.rdata.Rdata, ...] = ()
    cname_chain: tuple[str, ...] = ()
    cname_loop: bool = False
    ttl: int | None = None
    authenticated: bool = False
    nameserver: str = ""
    detail: str = ""
    elapsed_ms: float = 0.0
    responses: tuple[dns.message.Message, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        """True when the name has records of the type asked for."""
        return self.outcome == "answer"

    @property
    def definitive(self) -> bool:
        """True when the DNS gave an answer we can judge (records, NXDOMAIN or NODATA)."""
        return self.outcome in ("answer", "nxdomain", "nodata")

    def texts(self) -> list[str]:
        """The records in presentation format (for evidence only; parse fields, not text)."""
        return [r.to_text() for r in self.records]

    def evidence(self) -> dict[str, Any]:
        """A small JSON summary for findings."""
        data: dict[str, Any] = {
            "query": f"{self.name} {self.rdtype}",
            "outcome": self.outcome,
            "nameserver": self.nameserver,
        }
        if self.records:
            data["records"] = self.texts()[:50]
            if len(self.records) > 50:
                data["records_omitted"] = len(self.records) - 50
        if self.cname_chain:
            data["cname_chain"] = list(self.cname_chain)
        if self.ttl is not None:
            data["ttl"] = self.ttl
        if self.detail:
            data["detail"] = self.detail
        return data


async def lookup(
    ctx: RunContext,
    name: str,
    rdtype: str,
    *,
    timeout: float | None = None,
    dnssec: bool = False,
) -> Lookup:
    """Ask ``name``/``rdtype`` and follow CNAMEs; never raises for DNS outcomes."""
    import dns.name  # noqa: PLC0415

    t0 = time.monotonic()
    chain: list[str] = []
    responses: list[dns.message.Message] = []
    seen: set[str] = set()
    current = dns.name.from_text(name)
    result: Lookup | None = None
    while True:
        text = current.to_text()
        key = text.lower()
        if key in seen or len(chain) > MAX_CNAME_CHAIN:
            result = Lookup(
                name=name,
                rdtype=rdtype,
                outcome="error",
                cname_chain=tuple(chain),
                cname_loop=key in seen,
                detail=(
                    f"CNAME loop at {key}"
                    if key in seen
                    else f"CNAME chain longer than {MAX_CNAME_CHAIN}"
                ),
            )
            break
        seen.add(key)
        step = await _cached_query(
            ctx, _Question(name=current, text=text, rdtype=rdtype, dnssec=dnssec, timeout=timeout)
        )
        if step.response is not None:
            responses.append(step.response)
        if step.lookup.outcome != "answer" or step.next_name is None:
            result = step.lookup
            break
        # The answer holds only a CNAME pointing out of the server's zones: follow it.
        chain.extend(step.chain)
        current = step.next_name
    chain.extend(c for c in result.cname_chain if c not in chain)
    return Lookup(
        name=name,
        rdtype=rdtype,
        outcome=result.outcome,
        records=result.records,
        cname_chain=tuple(chain),
        cname_loop=result.cname_loop,
        ttl=result.ttl,
        authenticated=result.authenticated,
        nameserver=result.nameserver,
        detail=result.detail,
        elapsed_ms=round((time.monotonic() - t0) * 1000, 1),
        responses=tuple(responses),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Question:
    """One question as asked: the name, its text (made once: dnspython escapes every label
    each time), the type, whether DNSSEC records are wanted (DO bit), the timeout."""

    name: Any
    text: str
    rdtype: str
    dnssec: bool
    timeout: float | None


async def _cached_query(ctx: RunContext, question: _Question) -> _Step:
    """One question's outcome, asked once per run (see the module docstring)."""
    do = "do" if question.dnssec else "-"
    key = f"dns:{question.text.lower()}/{question.rdtype.upper()}/{do}"
    return await ctx.shared(key, lambda: _batch_query(ctx, question))


async def _batch_query(ctx: RunContext, question: _Question) -> _Step:
    """One question's outcome from the batch's shared answers, or asked (and then shared
    when it is definitive); see the module docstring."""
    batch = ctx.shared_results
    answers = batch.answers if batch is not None else None
    if answers is None:
        return await _query_once(ctx, question)
    # Everything that changes the answer or what the run records of it: the resolvers (and
    # their order: the Lookup names the one that answered), the name as written (it is
    # echoed in the evidence), the type and the DO bit.
    key = ("dns", ctx.nameservers(), question.text, question.rdtype.upper(), question.dnssec)
    step: _Step | None = answers.get(key)
    if step is None:
        step = await _query_once(ctx, question)
        ttl = shared_ttl(step.lookup, step.response)
        if ttl is not None:
            answers.put(key, step, ttl)
    return step


def shared_ttl(found: Lookup, response: dns.message.Message | None) -> float | None:
    """Seconds the runs of a batch may share the outcome ``found`` (from ``response``), or
    None when it must not be shared: only definitive outcomes are, for the lowest TTL of
    the records they rest on (RFC 2308 section 5 for negative answers)."""
    import dns.rdatatype  # noqa: PLC0415

    if response is None or not found.definitive:
        return None
    ttls = [rrset.ttl for rrset in response.answer]  # the answer, or the CNAMEs before it
    if found.outcome == "answer":
        return float(min(ttls)) if ttls else None
    soa = [
        min(rrset.ttl, rrset[0].minimum)
        for rrset in response.authority
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset)
    ]
    negative = min(soa) if soa else NEGATIVE_WITHOUT_SOA_S
    return float(min([MAX_NEGATIVE_TTL_S, negative, *ttls]))


@dataclass(frozen=True, slots=True)
class _Step:
    lookup: Lookup
    response: dns.message.Message | None
    next_name: Any = None
    chain: tuple[str, ...] = ()


async def _query_once(ctx: RunContext, question: _Question) -> _Step:
    import dns.exception  # noqa: PLC0415
    import dns.flags  # noqa: PLC0415
    import dns.message  # noqa: PLC0415
    import dns.rcode  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415

    qname, rdtype, dnssec = question.name, question.rdtype, question.dnssec
    servers = ctx.nameservers()
    per_try, lifetime = ctx.dns_timeouts(question.timeout)
    name_text = question.text.rstrip(".") or "."
    if not servers:
        return _Step(
            Lookup(
                name=name_text, rdtype=rdtype, outcome="error", detail="no nameserver configured"
            ),
            None,
        )
    # The id is set by the socket pool, for each try (id=0 spares dnspython drawing one).
    request = dns.message.make_query(
        qname, rdtype, want_dnssec=dnssec, use_edns=0, payload=1232, id=0
    )
    request.flags |= dns.flags.AD  # RFC 6840 5.7: ask for the AD bit without DO
    deadline = time.monotonic() + lifetime
    failures: list[str] = []
    last_outcome: Literal["servfail", "refused", "timeout", "error"] = "timeout"
    attempt = 0
    while time.monotonic() < deadline:
        address, port = servers[attempt % len(servers)]
        attempt += 1
        where = f"{address}:{port}" if port != 53 else address
        budget = min(per_try, deadline - time.monotonic())
        if budget <= 0:
            break
        try:
            response = await _ask(ctx, request, address, port, budget)
        except dns.exception.Timeout:
            failures.append(f"{where}: timeout")
            last_outcome = "timeout"
            continue
        except (OSError, dns.exception.DNSException, ValueError) as exc:
            failures.append(f"{where}: {type(exc).__name__}: {exc}")
            last_outcome = "error"
            if attempt >= len(servers) * 2:
                break
            continue
        rcode = response.rcode()
        ad = bool(response.flags & dns.flags.AD)
        if rcode == dns.rcode.NXDOMAIN:
            chain, _ = _cnames(response, qname)
            return _Step(
                Lookup(
                    name=name_text,
                    rdtype=rdtype,
                    outcome="nxdomain",
                    nameserver=where,
                    authenticated=ad,
                    cname_chain=chain,
                ),
                response,
            )
        if rcode == dns.rcode.NOERROR:
            return _answer_step(response, qname, rdtype, where, ad, name_text)
        failures.append(f"{where}: {dns.rcode.to_text(rcode)}")
        last_outcome = (
            "refused"
            if rcode == dns.rcode.REFUSED
            else ("servfail" if rcode == dns.rcode.SERVFAIL else "error")
        )
        if attempt >= len(servers) * 2:
            break
    return _Step(
        Lookup(
            name=name_text,
            rdtype=rdtype,
            outcome=last_outcome,
            detail="; ".join(failures[-6:]) or "no answer",
            nameserver=servers[0][0],
        ),
        None,
    )


async def _ask(
    ctx: RunContext, request: dns.message.Message, address: str, port: int, budget: float
) -> dns.message.Message:
    """One try: over UDP from the run's sockets, and over TCP when the answer was
    truncated (RFC 7766), within ``budget`` seconds."""
    from analyzer.protocols.dnsudp import UdpPool  # noqa: PLC0415

    expires = time.monotonic() + budget
    response, truncated = await ctx.resource("dns.udp", UdpPool).query(
        request, address, port, timeout=budget
    )
    if not truncated:
        return response
    import dns.asyncquery  # noqa: PLC0415

    return await dns.asyncquery.tcp(
        request, address, timeout=max(0.0, expires - time.monotonic()), port=port
    )


def _cnames(response: dns.message.Message, qname: Any) -> tuple[tuple[str, ...], Any]:
    """The CNAME chain for ``qname`` within one response, and where it ends."""
    import dns.rdataclass  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415

    chain: list[str] = []
    current = qname
    seen = {current}
    while True:
        try:
            rrset = response.find_rrset(
                response.answer, current, dns.rdataclass.IN, dns.rdatatype.CNAME
            )
        except KeyError:
            return tuple(chain), current
        target = rrset[0].target
        chain.append(f"{current.to_text().rstrip('.')} → {target.to_text().rstrip('.')}")
        if target in seen:
            return tuple(chain), None
        seen.add(target)
        current = target


def _answer_step(
    response: dns.message.Message,
    qname: Any,
    rdtype: str,
    where: str,
    ad: bool,
    name_text: str,
) -> _Step:
    import dns.rdataclass  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415

    wanted = dns.rdatatype.from_text(rdtype)
    chain, end = _cnames(response, qname)
    if end is None:
        return _Step(
            Lookup(
                name=name_text,
                rdtype=rdtype,
                outcome="error",
                cname_chain=chain,
                cname_loop=True,
                nameserver=where,
                detail="CNAME loop inside one response",
            ),
            response,
        )
    if wanted == dns.rdatatype.CNAME:
        end = qname
    try:
        rrset = response.find_rrset(response.answer, end, dns.rdataclass.IN, wanted)
    except KeyError:
        if chain:
            # The chain leaves the server's zones: the caller asks again for its end.
            return _Step(
                Lookup(
                    name=name_text,
                    rdtype=rdtype,
                    outcome="answer",
                    cname_chain=chain,
                    nameserver=where,
                    authenticated=ad,
                ),
                response,
                next_name=end,
                chain=chain,
            )
        return _Step(
            Lookup(
                name=name_text, rdtype=rdtype, outcome="nodata", nameserver=where, authenticated=ad
            ),
            response,
        )
    return _Step(
        Lookup(
            name=name_text,
            rdtype=rdtype,
            outcome="answer",
            records=tuple(rrset),
            cname_chain=chain,
            ttl=rrset.ttl,
            authenticated=ad,
            nameserver=where,
        ),
        response,
    )
