"""The Autodiscover client: each method of [MS-OXDISCO] 3.1.5 as its own function, and the
host block and requests every candidate URL goes through.

A :class:`Discovery` runs the methods for one address in the client's order and records
each as a result of its own, whose steps show exactly where it broke:

1. SCP (Active Directory): skipped, rca is not domain-joined (:meth:`Discovery.method_scp`);
2. ``https://<domain>/autodiscover/autodiscover.xml`` (:meth:`Discovery.method_root`);
3. ``https://autodiscover.<domain>/autodiscover/autodiscover.xml``
   (:meth:`Discovery.method_autodiscover_host`);
4. unauthenticated ``GET http://autodiscover.<domain>/autodiscover/autodiscover.xml``, only a
   301/302/307 to https is used (:meth:`Discovery.method_http_redirect`);
5. DNS SRV ``_autodiscover._tcp.<domain>``, RFC 2782 order (:meth:`Discovery.method_srv`).

Every candidate URL goes through :meth:`Discovery.try_url`: resolve, TCP connect, the
certificate (diagnosed by :mod:`probes.tlschain`), an unauthenticated POST (the 401's
methods; anonymous access flagged), then the authenticated POST and the answer. Redirects
(redirectUrl, HTTP 3xx) are followed inside the step that met them, only to https, at most
:data:`MAX_REDIRECTS` in all (redirectAddr included), loops reported as such; visited URLs
(per address) and visited addresses are tracked apart. Credentials go only to hosts the
credential policy allows by name (:func:`analyzer.core.credpolicy.allowed_by_name`: inside the
e-mail domain, a ``--trust-redirect`` domain, a Microsoft 365 namespace, the host of
``--autodiscover-url``), over https with a valid certificate (``--insecure`` continues past
certificate failures). An answer vouches for the hosts it names (:attr:`Attempt.vouched`)
only when such a host gave it over a verified certificate; an anonymous answer from any
other host is still read and reported, but vouches for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from analyzer.core.credpolicy import Provenance, allowed_by_name, hide_userinfo, inside, judge
from analyzer.core.errors import (
    ConnectionRefused,
    NetError,
    NetTimeout,
    ProtocolViolation,
    TlsFailure,
)
from analyzer.core.model import Json, Status
from analyzer.core.probe import HeldTranscript
from analyzer.protocols.endpoints import resolve_host
from analyzer.protocols.http import preopen
from analyzer.protocols.httpauth import (
    AuthError,
    AuthScheme,
    MissingSecret,
    NtlmFailed,
    parse_www_authenticate,
    send_authenticated,
    send_recorded,
)
from analyzer.protocols.net import probe_connect
from analyzer.protocols.resolve import lookup
from analyzer.protocols.tlsprobe import (
    TlsSession,
    insecure_context,
    inspection_context,
    open_tls,
)
from probes import tlschain
from probes.autodiscover import findings as F
from probes.autodiscover.pox import (
    MalformedXml,
    NotAutodiscover,
    PoxResponse,
    Schema,
    UnsafeXml,
    build_request,
    parse_response,
)
from probes.autodiscover.v2 import PROTOCOLS as V2_PROTOCOLS
from probes.autodiscover.v2 import V2Answer, ask_v2, v2_host
from probes.srv import SrvRecord, order_srv

if TYPE_CHECKING:
    import httpx
    from cryptography import x509

    from analyzer.core.probe import ProbeContext, ResultRecorder, StepRecorder
    from analyzer.protocols.http import BoundedResponse

__all__ = [
    "MAX_REDIRECTS",
    "MAX_RESPONSE",
    "Attempt",
    "Discovery",
    "choose_scheme",
    "inside",
    "normalize_url",
    "scheme_name",
]

#: [MS-OXDISCO] 3.1.5: clients follow at most 10 redirects.
MAX_REDIRECTS = 10
#: An Autodiscover answer is a few KB; anything past this is not one.
MAX_RESPONSE = 512 * 1024
_PATH = "/autodiscover/autodiscover.xml"
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)

Kind = Literal[
    "settings",
    "redirect_addr",
    "not_found",
    "unreachable",
    "failed",
    "withheld",
    "no_credentials",
    "abort",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """How one candidate (with its redirects) ended."""

    kind: Kind
    url: str
    address: str
    method: str
    response: PoxResponse | None = None
    redirect_addr: str = ""
    hops: int = 0
    chain: tuple[str, ...] = ()
    auth: str = ""
    detail: str = ""
    #: The answer vouches for the hosts it names (see the module docstring).
    vouched: bool = False
    unvouched_reason: str = ""


@dataclass(slots=True)
class _Host:
    state: Literal["ok", "not_found", "unreachable", "failed", "invalid"]
    detail: str = ""
    valid_certificate: bool = True


def normalize_url(url: str) -> str:
    """A URL as compared for loops: scheme and host lower-cased, default port and case of the
    path ignored (IIS paths are case-insensitive)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port
    netloc = host if port in (None, {"https": 443, "http": 80}.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.lower() or "/", parts.query, ""))


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


@dataclass(slots=True, kw_only=True)
class Discovery:
    """The state of one Autodiscover run (see the module docstring)."""

    ctx: ProbeContext
    roots: Sequence[x509.Certificate]
    #: Closes the HTTP clients made during the run.
    stack: contextlib.AsyncExitStack
    original: str
    trusted: tuple[str, ...]
    schema: Schema = "outlook"
    addresses: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    _hosts: dict[tuple[str, int, str], _Host] = field(default_factory=dict)
    _tried_by_address: dict[str, dict[str, Attempt]] = field(default_factory=dict)
    _edges: set[tuple[str, str]] = field(default_factory=set)
    _clients: dict[tuple[bool, bool], httpx.AsyncClient] = field(default_factory=dict)
    #: Autodiscover v2 asked ahead, by (host, address) (see :meth:`v2_asked`).
    _v2_ahead: dict[tuple[str, str], asyncio.Task[tuple[V2Answer, ...]]] = field(
        default_factory=dict
    )
    #: URLs whose login connections try_url opened ahead, not yet asked by _ask.
    _opened_ahead: set[str] = field(default_factory=set)

    async def client(self, *, authenticated: bool, insecure: bool = False) -> httpx.AsyncClient:
        """An HTTP client of the run. Unauthenticated requests get a pool of their own: IIS
        keeps a connection that passed NTLM authenticated, so reusing it would make a request
        without credentials look like anonymous access."""
        key = (authenticated, insecure)
        if key not in self._clients:
            from analyzer.protocols.http import make_client  # noqa: PLC0415

            if not insecure:
                # The verifying context may still be building: wait without holding the
                # event loop (the host block goes on meanwhile, see try_url).
                await self.ctx.run.ssl_context_built()
            if key in self._clients:  # made by another caller meanwhile
                return self._clients[key]
            verify = insecure_context() if insecure else True
            client = make_client(self.ctx.run, verify=verify)
            self._clients[key] = client
            await self.stack.enter_async_context(client)
        return self._clients[key]

    def v2_asked(self, url: str, address: str) -> Awaitable[tuple[V2Answer, ...]] | None:
        """The Autodiscover v2 answers asked ahead of the verdict on ``url``'s host for
        ``address`` (:meth:`_ask_v2_ahead`), or None if they were not asked."""
        return self._v2_ahead.get((v2_host(url), address))

    def _ask_v2_ahead(self, url: str, address: str, client: httpx.AsyncClient) -> None:
        """Should ``url`` answer with settings, Autodiscover v2 asks its host for
        ``address``'s protocols next (anonymous GETs): asked now, while the login runs, so
        the answers wait for their step instead of the probe waiting for them (once per
        host and address). Questions whose answers are never used are cancelled at the end
        of the run, before the clients close."""
        key = (v2_host(url), address)
        if key in self._v2_ahead:
            return
        task = asyncio.get_running_loop().create_task(
            ask_v2(self.ctx, client, host=key[0], address=address)
        )
        self._v2_ahead[key] = task
        self.stack.push_async_callback(_settle, task)

    async def _open_ahead(self, url: str, host: str, key: str) -> None:
        """The connections try_url opens ahead for ``url`` (see there)."""
        anonymous = await self.client(authenticated=False)
        preopen(anonymous, url, shared=True)
        if self._may_log_in(host):
            self._open_for_login(url, anonymous, await self.client(authenticated=True))
            self._opened_ahead.add(key)

    def _may_log_in(self, host: str) -> bool:
        """rca holds a password and the policy lets ``host`` have it by name."""
        return self.ctx.options.credentials.password() is not None and bool(self.allowed(host))

    @staticmethod
    def _open_for_login(
        url: str, anonymous: httpx.AsyncClient, authenticated: httpx.AsyncClient
    ) -> None:
        """Open ahead what a login to ``url`` uses next (:func:`preopen`): the connection of
        its own of an NTLM handshake, and the connections beyond the pooled one that
        Autodiscover v2 asks its questions on, at once, should this answer be the one."""
        preopen(authenticated, url)
        for _ in V2_PROTOCOLS[1:]:
            preopen(anonymous, url, shared=True)

    def allowed(self, host: str) -> str | None:
        """Why the policy lets ``host`` receive credentials by its name, or None."""
        named = self.ctx.options.autodiscover_url
        user_host = (urlsplit(named).hostname or "").lower() if named else ""
        trusted = (*self.trusted, user_host) if user_host else self.trusted
        return allowed_by_name(host, domains=(_domain_of(self.original),), trusted=trusted)

    # --- the run ------------------------------------------------------------------------------

    async def run(self) -> Attempt | None:
        """Every method for the original address (and for any redirectAddr): the attempt that
        returned settings, or None. Every attempt is kept in :attr:`attempts`."""
        with self.ctx.result("SCP (Active Directory)") as res:
            self.method_scp(res)
        return await self.discover(self.original, hops=0)

    async def discover(self, address: str, *, hops: int) -> Attempt | None:
        """The methods in order for ``address``; stops at the first that returns settings
        unless ``--all-methods``."""
        self.addresses.append(address.lower())
        domain = _domain_of(address)
        custom = self.ctx.options.autodiscover_url
        methods = (
            [("url", custom)]
            if custom
            else [
                ("root", f"https://{domain}{_PATH}"),
                ("autodiscover", f"https://autodiscover.{domain}{_PATH}"),
                ("http", f"http://autodiscover.{domain}{_PATH}"),
                ("srv", f"_autodiscover._tcp.{domain}"),
            ]
        )
        found: Attempt | None = None
        for method, where in methods:
            subject = f"{where} (SRV)" if method == "srv" else where
            if address.lower() != self.original.lower():
                subject += f" for {address}"
            with self.ctx.result(subject) as res:
                if method == "http":
                    attempt = await self.method_http_redirect(res, where, address, hops=hops)
                elif method == "srv":
                    attempt = await self.method_srv(res, domain, address, hops=hops)
                else:
                    attempt = await self.try_method_url(res, where, address, method, hops=hops)
            self.attempts.append(attempt)
            if attempt.kind == "redirect_addr":
                # The new address replaces this one (as in Outlook); with --all-methods the
                # remaining methods of this address are still reported, without following
                # the same redirect twice.
                if attempt.redirect_addr.lower() not in self.addresses:
                    nested = await self.discover(attempt.redirect_addr, hops=attempt.hops)
                    found = found or nested
                if not self.ctx.options.all_methods:
                    return found
                continue
            if attempt.kind == "settings":
                found = found or attempt
                if not self.ctx.options.all_methods:
                    return found
        return found

    # --- the methods ------------------------------------------------------------------------

    def method_scp(self, res: ResultRecorder) -> None:
        """[MS-OXDISCO] 3.1.5.1: "the client queries Active Directory for SCP objects" — only
        domain-joined clients can; rca is not, and has no LDAP client."""
        with res.step("Look up the Autodiscover SCP in Active Directory") as step:
            step.add(
                F.SCP_SKIPPED(
                    detail="skipped: rca is not domain-joined and does not query Active "
                    "Directory over LDAP; the DNS-based methods follow"
                )
            )

    async def try_method_url(
        self, res: ResultRecorder, url: str, address: str, method: str, *, hops: int
    ) -> Attempt:
        """[MS-OXDISCO] 3.1.5.2/3.1.5.3: "the client sends an Autodiscover request to
        https://<domain>/autodiscover/autodiscover.xml, then to
        https://autodiscover.<domain>/autodiscover/autodiscover.xml"."""
        return await self.try_url(res, url, address, method=method, hops=hops, chain=())

    async def method_http_redirect(
        self, res: ResultRecorder, url: str, address: str, *, hops: int
    ) -> Attempt:
        """[MS-OXDISCO] 3.1.5.4: "an unauthenticated GET to http://autodiscover.<domain>/
        autodiscover/autodiscover.xml; only a 302 redirect to https is followed"."""
        host = urlsplit(url).hostname or ""
        check = await self.host_block(res, host, 80, "http")
        if check.state != "ok":
            return Attempt(
                kind=check.state if check.state != "invalid" else "failed",
                url=url,
                address=address,
                method="http",
                detail=check.detail,
            )
        with res.step(f"Ask {url} for a redirect (GET, no credentials)") as step:
            response = await self._send(step, "GET", url, address, scheme=None, content=None)
            if response is None:
                return Attempt(kind="failed", url=url, address=address, method="http")
            location = response.header("location") or ""
            # MS-OXDISCO 3.1.5.4: only a redirect (301, 302, 307) is used from this method.
            if response.status not in (301, 302, 307) or not location:
                step.add(F.HTTP_REDIRECT_NONE(detail=f"HTTP {response.status}, no redirect"))
                return Attempt(kind="not_found", url=url, address=address, method="http")
            return await self.follow(
                step,
                "HTTP redirect",
                location,
                base=url,
                address=address,
                method="http",
                hops=hops,
                chain=(normalize_url(url),),
            )

    async def method_srv(
        self, res: ResultRecorder, domain: str, address: str, *, hops: int
    ) -> Attempt:
        """[MS-OXDISCO] 3.1.5.5: "the client queries DNS for _autodiscover._tcp.<domain> SRV
        and sends the request to https://<target>:<port>/autodiscover/autodiscover.xml";
        RFC 2782: lowest priority first, weight among equals."""
        name = f"_autodiscover._tcp.{domain}"
        with res.step(f"Look up the SRV record {name}") as step:
            found = await lookup(self.ctx.run, name, "SRV")
            step.note(f"{found.nameserver or 'resolver'}: {found.outcome} in {found.elapsed_ms} ms")
            for text in found.texts():
                step.recv(f"{name} SRV {text}")
            if found.outcome in ("nxdomain", "nodata"):
                step.add(F.SRV_NONE(detail=f"{name}: {found.outcome}"))
                return Attempt(kind="not_found", url=name, address=address, method="srv")
            if not found.ok:
                step.add(
                    F.SRV_FAILED(
                        detail=f"{name}: {found.outcome} {found.detail}".strip(),
                        evidence=found.evidence(),
                    )
                )
                return Attempt(kind="unreachable", url=name, address=address, method="srv")
            # A fixed seed per name: the weighted order is random by design, the report
            # should still read the same on every run.
            rng = random.Random(name)  # noqa: S311 - not for security
            selection = order_srv([SrvRecord.from_rdata(r) for r in found.records], rng=rng)
            if not selection.targets:
                step.add(F.SRV_NONE(detail=f'{name}: target "." (not offered)'))
                return Attempt(kind="not_found", url=name, address=address, method="srv")
            step.note("order: " + ", ".join(f"{t.target}:{t.port}" for t in selection.targets))
        last = Attempt(kind="not_found", url=name, address=address, method="srv")
        for record in selection.targets:
            port = "" if record.port == 443 else f":{record.port}"
            url = f"https://{record.target}{port}{_PATH}"
            with res.step(f"Try the SRV target {record.target}:{record.port}") as step:
                # Outlook prompts the user for any target outside the domain, trusted or not.
                if not inside(record.target, (domain,)):
                    step.add(F.SRV_OUTSIDE_DOMAIN(detail=f"{record.target} is not in {domain}"))
                last = await self.try_url(step, url, address, method="srv", hops=hops, chain=())
            if last.kind in ("settings", "redirect_addr"):
                return last
        return last

    # --- one candidate ------------------------------------------------------------------------

    async def try_url(
        self,
        parent: ResultRecorder | StepRecorder,
        url: str,
        address: str,
        *,
        method: str,
        hops: int,
        chain: tuple[str, ...],
    ) -> Attempt:
        """The host block, the unauthenticated request, the login and the answer, for ``url``."""
        key = normalize_url(url)
        tried = self._tried_by_address.setdefault(address.lower(), {})
        if key in tried and key not in chain:
            earlier = tried[key]
            with parent.step(f"{url} was already tried above") as step:
                step.note(f"outcome there: {earlier.kind}; not asked again")
            return replace(earlier, method=method)
        chain = (*chain, key)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or 443
        base = Attempt(
            kind="failed", url=url, address=address, method=method, hops=hops, chain=chain
        )
        opening: asyncio.Task[None] | None = None
        if (host, port, "https") not in self._hosts:
            # The unauthenticated request follows a good host block (a failed certificate
            # fails this connection's TLS too): its connection opens meanwhile, and so do
            # those of the login and of Autodiscover v2 should the policy let this host have
            # the password (closed unused otherwise, see _ask). Made beside the host block,
            # which need not wait for the clients' trust to be loaded.
            opening = asyncio.get_running_loop().create_task(self._open_ahead(url, host, key))
        try:
            check = await self.host_block(parent, host, port, "https")
        except BaseException:
            if opening is not None:
                await _settle(opening)
            raise
        if opening is not None:
            await opening
        if check.state != "ok":
            kind: Kind = "failed" if check.state == "invalid" else check.state
            attempt = replace(base, kind=kind, detail=check.detail)
        else:
            attempt = await self._ask(parent, url, address, base, check, host)
        tried.setdefault(key, attempt)
        return attempt

    async def _ask(
        self,
        parent: ResultRecorder | StepRecorder,
        url: str,
        address: str,
        base: Attempt,
        check: _Host,
        host: str,
    ) -> Attempt:
        creds = self.ctx.options.credentials
        key = normalize_url(url)
        ahead = key in self._opened_ahead
        self._opened_ahead.discard(key)
        if check.valid_certificate and self._may_log_in(host) and not ahead:
            # The policy lets this host have the password: should the answer ask for NTLM,
            # its connection of its own opens meanwhile (closed unused otherwise).
            self._open_for_login(
                url,
                await self.client(authenticated=False),
                await self.client(authenticated=True),
            )
        with parent.step(f"Send an unauthenticated request to {url}") as step:
            body = build_request(address, self.schema)
            response = await self._send(
                step,
                "POST",
                url,
                address,
                scheme=None,
                content=body,
                insecure=not check.valid_certificate,
            )
            if response is None:
                return replace(base, kind="failed")
            if response.status in _REDIRECT_STATUSES:
                return await self._http_redirect(step, response, url, base)
            if response.status == 404:
                step.add(F.NOT_OFFERED(detail=f"HTTP 404 for {url}"))
                return replace(base, kind="not_found")
            if response.status == 200:
                step.add(F.AUTH_ANONYMOUS(detail=f"HTTP 200 without credentials from {url}"))
                base = self._vouch(base, host, check, anonymous=True)
                return await self._answer(step, response, base, auth="anonymous")
            if response.status != 401:
                step.add(
                    F.HTTP_STATUS(
                        detail=f"HTTP {response.status} from {url}",
                        evidence={"status": response.status},
                    )
                )
                return replace(base, kind="failed")
            offered = parse_www_authenticate(response)
            evidence: dict[str, Json] = {"offered": list(offered)}
            usable = [m for m in offered if m.lower() in ("basic", "ntlm", "negotiate", "bearer")]
            if not usable:
                step.add(
                    F.AUTH_NONE_USABLE(
                        detail="offered: " + (", ".join(offered) or "none"), evidence=evidence
                    )
                )
                return replace(base, kind="failed")
            step.add(F.AUTH_OFFERED(detail=", ".join(offered), evidence=evidence))
        if self.allowed(host) is None:
            verdict = judge(
                host,
                domains=(_domain_of(self.original),),
                trusted=self.trusted,
                provenance=Provenance(source=_source_of(base)),
            )
            with parent.step(f"Log in to {host}") as step:
                step.add(
                    F.CREDENTIALS_WITHHELD(detail=verdict.detail(), evidence=verdict.evidence())
                )
            return replace(base, kind="withheld")
        scheme = choose_scheme(
            offered, has_password=creds.password() is not None, has_token=creds.token() is not None
        )
        if scheme is None:
            with parent.step(f"Log in to {host}") as step:
                if creds.has_secret:
                    step.add(
                        F.AUTH_NONE_USABLE(
                            detail=f"offered: {', '.join(offered)}; rca holds "
                            f"{'a token' if creds.token() else 'a password'} only",
                            status=Status.SKIP,
                        )
                    )
                else:
                    step.add(F.NO_CREDENTIALS(detail=f"{url} answered 401 as expected"))
            return replace(base, kind="no_credentials")
        if check.valid_certificate:
            # Should this answer be the one, Autodiscover v2 asks this host its protocols at
            # once, anonymously: asked now, beside the login.
            self._ask_v2_ahead(url, address, await self.client(authenticated=False))
        user = creds.username or address
        title = f"Ask for the settings of {address} as {user} ({scheme_name(scheme)})"
        with parent.step(title) as step:
            response = await self._send(
                step,
                "POST",
                url,
                address,
                scheme=scheme,
                content=build_request(address, self.schema),
                offered=offered,
                insecure=not check.valid_certificate,
            )
            if response is None:
                return replace(base, kind="failed")
            if response.status == 401:
                step.add(
                    F.AUTH_REJECTED(
                        detail=f"{url} refused {user} ({scheme}); offered: {', '.join(offered)}",
                        evidence={"offered": list(offered)},
                    )
                )
                return replace(base, kind="failed", auth=scheme)
            step.add(F.AUTH_OK(detail=f"{user} with {scheme_name(scheme)}"))
            if response.status in _REDIRECT_STATUSES:
                return await self._http_redirect(step, response, url, replace(base, auth=scheme))
            if response.status == 404:
                step.add(F.NOT_OFFERED(detail=f"HTTP 404 for {url} after logging in"))
                return replace(base, kind="not_found", auth=scheme)
            if response.status != 200:
                step.add(
                    F.HTTP_STATUS(
                        detail=f"HTTP {response.status} from {url}",
                        evidence={"status": response.status},
                    )
                )
                return replace(base, kind="failed", auth=scheme)
            base = self._vouch(base, host, check, anonymous=False)
            return await self._answer(step, response, base, auth=scheme)

    def _vouch(self, base: Attempt, host: str, check: _Host, *, anonymous: bool) -> Attempt:
        """Whether the answer about to be read vouches for the hosts it names."""
        by_name = self.allowed(host)
        if by_name is not None and check.valid_certificate:
            return replace(base, vouched=True, unvouched_reason="")
        how = "without authentication" if anonymous else "after a login"
        if by_name is None:
            why = f"answered {how} by {host}, outside {_domain_of(self.original)}"
        else:
            why = f"answered by {host} over a certificate that failed (--insecure)"
        return replace(base, vouched=False, unvouched_reason=why)

    async def _http_redirect(
        self, step: StepRecorder, response: BoundedResponse, url: str, base: Attempt
    ) -> Attempt:
        location = response.header("location") or ""
        if not location:
            step.add(F.REDIRECT_INVALID(detail=f"HTTP {response.status} without a Location"))
            return replace(base, kind="failed")
        return await self.follow(
            step,
            "HTTP redirect",
            location,
            base=url,
            address=base.address,
            method=base.method,
            hops=base.hops,
            chain=base.chain,
        )

    async def _answer(
        self, step: StepRecorder, response: BoundedResponse, base: Attempt, *, auth: str
    ) -> Attempt:
        """Read a 200 answer: content type, XML, then settings, an error or a redirect."""
        base = replace(base, auth=auth)
        content_type = (response.header("content-type") or "").split(";")[0].strip().lower()
        if content_type not in ("text/xml", "application/xml"):
            step.add(F.RESPONSE_CONTENT_TYPE(detail=f"Content-Type: {content_type or 'none'}"))
        try:
            answer = parse_response(response.body)
        except UnsafeXml as exc:
            step.add(F.RESPONSE_UNSAFE(detail=str(exc)))
            return replace(base, kind="failed")
        except MalformedXml as exc:
            step.add(F.RESPONSE_MALFORMED(detail=str(exc), evidence=_head(response.body)))
            return replace(base, kind="failed")
        except NotAutodiscover as exc:
            step.add(F.RESPONSE_NOT_AUTODISCOVER(detail=str(exc), evidence=_head(response.body)))
            return replace(base, kind="failed")
        if answer.action == "error":
            spec = F.ERROR_SPECS.get(answer.error_code, F.ERROR_OTHER)
            step.add(
                spec(
                    detail=f"ErrorCode {answer.error_code}: {answer.error_message}"[:500],
                    evidence={
                        "error_code": answer.error_code,
                        "message": answer.error_message[:500],
                    },
                )
            )
            return replace(base, kind="failed", response=answer)
        if answer.action == "redirectUrl":
            return await self.follow(
                step,
                "redirectUrl",
                answer.redirect,
                base=base.url,
                address=base.address,
                method=base.method,
                hops=base.hops,
                chain=base.chain,
            )
        if answer.action == "redirectAddr":
            return self._redirect_addr(step, answer, base)
        step.add(
            F.SETTINGS_FOUND(
                detail=f"{len(answer.protocols)} Protocol blocks from {base.url}",
                evidence={"protocols": [p.type for p in answer.protocols]},
            )
        )
        return replace(base, kind="settings", response=answer)

    def _redirect_addr(self, step: StepRecorder, answer: PoxResponse, base: Attempt) -> Attempt:
        target = answer.redirect.strip()
        local, at, domain = target.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in target):
            step.add(F.REDIRECT_INVALID(detail=f"redirectAddr {target[:200]!r} is not an address"))
            return replace(base, kind="failed")
        if target.lower() == base.address.lower():
            step.add(F.REDIRECT_SAME_ADDRESS(detail=f"redirectAddr {target} is the address asked"))
            return replace(base, kind="failed")
        edge = (base.address.lower(), target.lower())
        if edge in self._edges:
            step.add(F.REDIRECT_ADDR(detail=f"{base.address} → {target} (followed above)"))
            return replace(base, kind="redirect_addr", redirect_addr=target, hops=base.hops + 1)
        if target.lower() in self.addresses:
            step.add(
                F.REDIRECT_LOOP(
                    detail=f"redirectAddr {target} was already asked for: "
                    + " → ".join(self.addresses + [target.lower()])
                )
            )
            return replace(base, kind="failed")
        if base.hops + 1 > MAX_REDIRECTS:
            step.add(
                F.REDIRECT_TOO_MANY(
                    detail=f"redirectAddr {target} would be redirect {base.hops + 1}"
                )
            )
            return replace(base, kind="failed")
        self._edges.add(edge)
        step.add(F.REDIRECT_ADDR(detail=f"{base.address} → {target}"))
        if not inside(domain, (_domain_of(self.original), *self.trusted)):
            step.add(
                F.REDIRECT_OTHER_DOMAIN(detail=f"{target} is outside {_domain_of(self.original)}")
            )
        elif not inside(domain, (_domain_of(self.original),)):
            step.add(F.REDIRECT_TRUSTED(detail=f"{domain} (--trust-redirect)"))
        return replace(base, kind="redirect_addr", redirect_addr=target, hops=base.hops + 1)

    async def follow(
        self,
        parent: StepRecorder,
        kind: str,
        target: str,
        *,
        base: str,
        address: str,
        method: str,
        hops: int,
        chain: tuple[str, ...],
    ) -> Attempt:
        """Follow a redirectUrl or an HTTP redirect (only https, no loops, at most 10)."""
        from urllib.parse import urljoin  # noqa: PLC0415

        failed = Attempt(
            kind="failed", url=base, address=address, method=method, hops=hops, chain=chain
        )
        shown = _safe(target)
        try:
            absolute = urljoin(base, target.strip()) if kind == "HTTP redirect" else target.strip()
            parts = urlsplit(absolute)
            _ = parts.port  # raises ValueError for a bad port
        except ValueError:
            parent.add(F.REDIRECT_INVALID(detail=f"{kind} to {shown!r}: not a URL"))
            return failed
        if parts.scheme.lower() != "https" or not parts.hostname:
            parent.add(
                F.REDIRECT_INSECURE(
                    detail=f"{kind} to {shown[:300]}: not followed ({parts.scheme or 'no scheme'})"
                )
            )
            return failed
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            parent.add(F.REDIRECT_WITH_CREDENTIALS(detail=f"{kind} to {shown[:300]}"))
            return failed
        key = normalize_url(absolute)
        if key in chain:
            parent.add(F.REDIRECT_LOOP(detail=" → ".join([*chain, key])[:1000]))
            return failed
        if hops + 1 > MAX_REDIRECTS:
            parent.add(
                F.REDIRECT_TOO_MANY(
                    detail=f"{kind} to {shown[:200]} would be redirect {hops + 1}",
                    evidence={"chain": list(chain)[-12:]},
                )
            )
            return failed
        spec = F.REDIRECT_URL if kind == "redirectUrl" else F.REDIRECT_HTTP
        parent.add(
            spec(detail=f"→ {absolute[:300]} (redirect {hops + 1} of at most {MAX_REDIRECTS})")
        )
        host = (parts.hostname or "").lower()
        with parent.step(f"Follow the {kind} to {absolute[:200]}") as step:
            if self.allowed(host) is None:
                step.add(
                    F.REDIRECT_OTHER_DOMAIN(detail=f"{host} is outside {_domain_of(self.original)}")
                )
            return await self.try_url(
                step, absolute, address, method=method, hops=hops + 1, chain=chain
            )

    # --- the host block -----------------------------------------------------------------------

    async def host_block(
        self, parent: ResultRecorder | StepRecorder, host: str, port: int, scheme: str
    ) -> _Host:
        """Resolve, TCP, and for https the certificate (name and trust), once per host:port."""
        key = (host, port, scheme)
        if key in self._hosts:
            return self._hosts[key]
        result = await self._host_block(parent, host, port, scheme)
        self._hosts[key] = result
        return result

    async def _host_block(
        self, parent: ResultRecorder | StepRecorder, host: str, port: int, scheme: str
    ) -> _Host:
        run = self.ctx.run
        with parent.step(f"Resolve {host}") as step:
            addrs = await resolve_host(run, host)
            addresses = addrs.addresses_for(self.ctx.options.families)
            if not addresses:
                step.add(F.NOT_OFFERED(detail=f"{host} has no address"))
                return _Host("not_found", f"{host} has no address")
            step.note(f"{host}: {', '.join(addresses)}")
        address = addresses[0]
        shown = f"[{address}]" if ":" in address else address
        held = HeldTranscript()
        # The certificate's connection opens beside the TCP test rather than after it (one
        # round trip less); its lines wait for their step, dropped if the port is not open.
        tls = (
            asyncio.get_running_loop().create_task(
                open_tls(
                    run,
                    host=host,
                    address=address,
                    port=port,
                    mode="implicit",
                    speaks="http",
                    context=inspection_context(run),
                    timeout=self.ctx.op_timeout(),
                    transcript=held,
                )
            )
            if scheme == "https"
            else None
        )
        try:
            with parent.step(f"Connect to {host}:{port} ({shown})") as step:
                outcome, conn = await probe_connect(
                    run, host, address, port, timeout=self.ctx.options.connect_timeout
                )
                if conn is not None:
                    await conn.close()
                step.note(f"{outcome.state} in {outcome.elapsed_ms} ms {outcome.detail}".strip())
                if outcome.state == "closed":
                    step.add(F.NOT_OFFERED(detail=f"{host}:{port} refuses connections"))
                    return _Host("not_found", f"{host}:{port} closed")
                if outcome.state != "open":
                    step.add(
                        F.UNREACHABLE(detail=f"{host}:{port}: {outcome.state} {outcome.detail}")
                    )
                    return _Host("unreachable", outcome.detail)
            if tls is None:
                return _Host("ok")
            return await self._certificate(parent, host, port, tls, held)
        finally:
            if tls is not None:
                await _settle(tls)

    async def _certificate(
        self,
        parent: ResultRecorder | StepRecorder,
        host: str,
        port: int,
        tls: asyncio.Task[TlsSession],
        held: HeldTranscript,
    ) -> _Host:
        """The certificate step of the host block, on the TLS session ``tls`` opened."""
        with parent.step(f"Validate the certificate of {host}:{port}") as step:
            try:
                try:
                    session = await asyncio.shield(tls)
                finally:
                    step.replay(held)
            except (TlsFailure, ProtocolViolation) as exc:
                step.add(F.TLS_FAILED(detail=str(exc)))
                return _Host("failed", str(exc))
            except NetError as exc:
                step.add(F.UNREACHABLE(detail=str(exc)))
                return _Host("unreachable", str(exc))
            step.note(f"{session.tls.version}, {session.tls.cipher}")
            valid = await self._judge_chain(step, host, session.tls.chain_der)
            if valid:
                return _Host("ok")
            if self.ctx.options.insecure:
                step.add(F.TLS_INSECURE(detail=f"{host}: the certificate is not valid"))
                return _Host("ok", valid_certificate=False)
            step.add(
                F.CREDENTIALS_WITHHELD(
                    detail=f"the certificate of {host} is not valid: no request sent (clients "
                    "show a certificate warning here); --insecure continues"
                )
            )
            return _Host("invalid", "certificate not valid")

    async def _judge_chain(self, step: StepRecorder, host: str, chain: tuple[bytes, ...]) -> bool:
        run = self.ctx.run
        fetched: dict[str, bytes | None] = {}
        diagnosis = tlschain.run_diagnose(run, chain, host, roots=self.roots)
        while diagnosis.fetch_url is not None:
            fetched[diagnosis.fetch_url] = await self._fetch_issuer(step, diagnosis.fetch_url)
            diagnosis = tlschain.run_diagnose(run, chain, host, roots=self.roots,
                                              fetched=fetched)  # fmt: skip
        certs: list[Json] = [c.as_evidence() for c in diagnosis.presented]
        for finding in diagnosis.findings:
            evidence = dict(finding.evidence)
            evidence.setdefault("certificates", certs)
            step.add(replace(finding, evidence=evidence))
        if not diagnosis.findings:
            step.add(tlschain.CHAIN_VALID(evidence={"certificates": certs}))
        return diagnosis.valid and diagnosis.status not in (Status.FAIL, Status.ERROR)

    async def _fetch_issuer(self, step: StepRecorder, url: str) -> bytes | None:
        with step.step(f"Fetch the issuer certificate from {url[:200]}") as sub:
            if not url.lower().startswith(("http://", "https://")):
                sub.note("not fetched: only http and https URLs are followed")
                return None
            try:
                response = await send_recorded(
                    await self.client(authenticated=False),
                    "GET",
                    url,
                    max_bytes=tlschain.MAX_AIA_BYTES,
                    timeout=self.ctx.op_timeout(),
                )
            except NetError as exc:
                sub.note(f"fetch failed: {exc}")
                return None
            sub.recv(f"HTTP {response.status}, {len(response.body)} bytes")
            return response.body if response.status == 200 else None

    # --- requests -----------------------------------------------------------------------------

    async def _send(
        self,
        step: StepRecorder,
        method: str,
        url: str,
        address: str,
        *,
        scheme: AuthScheme | None,
        content: bytes | None,
        offered: tuple[str, ...] | None = None,
        insecure: bool = False,
    ) -> BoundedResponse | None:
        """One request (with ``scheme``'s credentials, or none); None with a finding on failure."""
        client = await self.client(
            authenticated=scheme is not None, insecure=insecure and self.ctx.options.insecure
        )
        headers = {"X-MapiHttpCapability": "1"}
        if content is not None:
            headers["Content-Type"] = "text/xml; charset=utf-8"
        timeout = self.ctx.op_timeout()
        try:
            if scheme is None:
                return await send_recorded(
                    client,
                    method,
                    url,
                    headers=headers,
                    content=content,
                    max_bytes=MAX_RESPONSE,
                    timeout=timeout,
                    transcript=step,
                )
            return await send_authenticated(
                client,
                method,
                url,
                creds=self.ctx.options.credentials,
                scheme=scheme,
                headers=headers,
                content=content,
                offered=offered,
                max_bytes=MAX_RESPONSE,
                timeout=timeout,
                transcript=step,
            )
        except MissingSecret as exc:
            step.add(F.NO_CREDENTIALS(detail=str(exc)))
        except NtlmFailed as exc:
            step.add(F.AUTH_FAILED(detail=str(exc)))
        except AuthError as exc:
            step.add(F.CREDENTIALS_WITHHELD(detail=str(exc)))
        except ConnectionRefused as exc:
            step.add(F.NOT_OFFERED(detail=str(exc)))
        except NetTimeout as exc:
            spec = F.UNREACHABLE if exc.phase == "connect" else F.RESPONSE_SLOW
            step.add(spec(detail=f"{exc} (limit {timeout:.1f} s)"))
        except ProtocolViolation as exc:
            text = str(exc)
            too_large = "bytes" in text and ("larger" in text or "announces" in text)
            spec = F.RESPONSE_TOO_LARGE if too_large else F.RESPONSE_MALFORMED
            step.add(spec(detail=text[:500]))
        except TlsFailure as exc:
            step.add(F.TLS_FAILED(detail=str(exc)))
        except NetError as exc:
            step.add(F.UNREACHABLE(detail=str(exc)))
        return None


async def _settle(task: asyncio.Task[Any]) -> None:
    """Stop ``task`` if it still runs (work started ahead that is no longer wanted) and wait
    for it to end; its outcome is read, so an error it ended with is not logged as lost."""
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


def choose_scheme(
    offered: Sequence[str], *, has_password: bool, has_token: bool
) -> AuthScheme | None:
    """The scheme a client uses among ``offered``: Bearer with a token; else NTLM (or
    Negotiate) before Basic, as Outlook prefers; None when nothing fits."""
    lowered = {m.lower() for m in offered}
    if has_token and "bearer" in lowered:
        return "bearer"
    if has_password and lowered & {"ntlm", "negotiate"}:
        return "ntlm"
    if has_password and "basic" in lowered:
        return "basic"
    return None


def scheme_name(scheme: str) -> str:
    """How a scheme is written in reports: NTLM, Basic, Bearer."""
    return {"ntlm": "NTLM", "negotiate": "Negotiate", "basic": "Basic", "bearer": "Bearer"}.get(
        scheme, scheme or "no"
    )


def _safe(url: str) -> str:
    """``url`` with any ``user:password@`` part hidden (it is shown in reports)."""
    return hide_userinfo(url)[:300]


def _head(body: bytes) -> dict[str, Json]:
    """The start of a body, as evidence of what answered (bounded, decoded leniently)."""
    return {"body_start": body[:300].decode("utf-8", "replace"), "body_bytes": len(body)}


def _source_of(attempt: Attempt) -> str:
    """The discovery step that named a host, for the credential policy's findings."""
    how = {
        "srv": "the Autodiscover SRV record",
        "http": "the Autodiscover http redirect",
        "url": "--autodiscover-url",
    }.get(attempt.method, f"the Autodiscover {attempt.method} URL")
    return f"a redirect during {how}" if attempt.hops else how
