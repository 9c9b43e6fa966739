"""Outlook Anywhere (RPC over HTTP v2): the proxy's authentication and an "RPC ping" of each
mailbox-server port through it ([MS-RPCH]).

The proxy comes from Autodiscover's EXPR block (``Server``, ``AuthPackage``), else (a guess)
``mail.<domain>``. Steps:

1. ``RPC_IN_DATA /rpc/rpcproxy.dll`` without credentials: the 401's methods, compared with
   Autodiscover's AuthPackage: Outlook uses exactly that one, so a proxy that does not
   offer it is a failure; an anonymous 200 is reported.
2. The same path over plain ``http``: a proxy answering there hints at SSL offloading that
   the server does not know about (Outlook Anywhere's "SSL offloading" setting).
3. For ports 6001 (mail store), 6002 (directory referral) and 6004 (address book), all
   three at once: the virtual connection of [MS-RPCH] 3.2.2.4 - ``RPC_OUT_DATA`` with
   CONN/A1 and ``RPC_IN_DATA`` with CONN/B1, each authenticated on its own connection -
   then CONN/A3 and CONN/C2 read from the OUT channel, after which both channels are
   dropped at once (their requests never finish). ``503 RPC Error: 6BA`` (1722,
   RPC_S_SERVER_UNAVAILABLE), 404 and 401 are told apart.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from analyzer.core.errors import NetError
from analyzer.core.facts import AUTODISCOVER_SETTINGS, TLS_VERDICTS, OutlookAnywhere
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.core.probe import (
    HeldTranscript,
    Probe,
    ProbeContext,
    ResultRecorder,
    StepRecorder,
    concurrently,
)
from analyzer.protocols.endpoints import resolve_host
from analyzer.protocols.exchange import (
    Prepared,
    ServiceUrl,
    auth_error_finding,
    autodiscover,
    http_findings,
    net_finding,
    prepare,
    service_url,
    session_tls,
)
from analyzer.protocols.http import make_client
from analyzer.protocols.httpauth import AuthError, NtlmFailed
from analyzer.protocols.net import Connection, connect
from analyzer.protocols.rawhttp import ChannelRefused, Head, RawHttp, open_channel
from analyzer.protocols.rts import (
    MAX_FRAGMENT,
    RtsError,
    conn_a1,
    conn_b1,
    fragment_length,
    parse_pdu,
)

if TYPE_CHECKING:
    from analyzer.core.targets import Target

__all__ = ["PROBE"]

REFERENCE = "https://learn.microsoft.com/openspecs/windows_protocols/ms-rpch"
#: Ports Outlook reaches through the proxy, with their role (Exchange 2010-2016 defaults).
PORTS = ((6001, "mail store"), (6002, "directory referral"), (6004, "address book"))
#: RPC_IN_DATA announces 1 GiB ([MS-RPCH] 2.1.2.1.1: 128 KB to 2 GB); only CONN/B1 is sent.
IN_CHANNEL_LENGTH = 1024 * 1024 * 1024
RPC_S_SERVER_UNAVAILABLE = 1722

F = http_findings(
    "outlookanywhere",
    "Outlook Anywhere",
    enable_for_user="Check the password; if it is right, check that Outlook Anywhere is "
    "allowed for the mailbox (Set-CASMailbox <user> -MAPIBlockOutlookRpcHttp $false) and the "
    "proxy's authentication (Get-OutlookAnywhere: ExternalClientAuthenticationMethod, "
    "IISAuthenticationMethods).",
    reference=REFERENCE,
)
AUTH_PACKAGE_OK = FindingSpec(
    code="outlookanywhere.auth.package",
    status=Status.PASS,
    title="The proxy offers Autodiscover's authentication method",
    meaning="Outlook authenticates to the RPC proxy with exactly the AuthPackage Autodiscover "
    "gives; the proxy's 401 offers it.",
)
AUTH_PACKAGE_MISSING = FindingSpec(
    code="outlookanywhere.auth.required_missing",
    status=Status.FAIL,
    title="Required authentication method not offered",
    meaning="Autodiscover tells Outlook to authenticate to the RPC proxy with one method "
    "(AuthPackage), but the proxy's 401 does not offer it: Outlook keeps asking for the "
    "password and never connects (ExRCA: \"All required authentication methods could not "
    "be found\").",
    remediation="Make the two agree: Set-OutlookAnywhere -ExternalClientAuthenticationMethod "
    "(what Autodiscover publishes) and -IISAuthenticationMethods (what the proxy offers).",
    reference=REFERENCE,
)
HTTP_ANSWERS = FindingSpec(
    code="outlookanywhere.http_answers",
    status=Status.WARN,
    title="The RPC proxy also answers over plain HTTP",
    meaning="/rpc/rpcproxy.dll answers on http:// (not just a redirect to https): either a "
    "load balancer offloads TLS (then Outlook Anywhere's SSL offloading setting must say "
    "so) or credentials may be sent unencrypted to this path.",
    remediation="Require SSL on the /rpc virtual directory, or set SSLOffloading on Outlook "
    "Anywhere to match the load balancer, and close port 80 for /rpc.",
)
RPC_OK = FindingSpec(
    code="outlookanywhere.rpc.ok",
    status=Status.PASS,
    title="RPC ping succeeded",
    meaning="The proxy accepted both channels and answered CONN/A3 and CONN/C2: the mailbox "
    "server's port is reachable through the proxy with these credentials.",
    reference=REFERENCE,
)
RPC_UNREACHABLE = FindingSpec(
    code="outlookanywhere.rpc.unreachable",
    status=Status.FAIL,
    title="The proxy cannot reach the server port (RPC error 1722)",
    meaning="The proxy answered \"RPC Error: 6BA\" (1722, RPC_S_SERVER_UNAVAILABLE): the "
    "mailbox server's port is closed, filtered between proxy and server, or not in the "
    "proxy's list of valid ports. Outlook reports the server unavailable.",
    remediation="Check the RPC services on the mailbox server, the firewall between proxy and "
    "server, and the ValidPorts of the RPC proxy (HKLM\\Software\\Microsoft\\Rpc\\"
    "RpcProxy).",
    reference=REFERENCE,
)
RPC_FAILED = FindingSpec(
    code="outlookanywhere.rpc.failed",
    status=Status.FAIL,
    title="RPC ping failed",
    meaning="The virtual connection did not come up: the proxy answered with an error or "
    "something other than the RTS PDUs of [MS-RPCH] (the detail says what).",
    remediation="Check the RPC over HTTP proxy component and its IIS log.",
    reference=REFERENCE,
)
FINDINGS = (
    *F.all(), AUTH_PACKAGE_OK, AUTH_PACKAGE_MISSING, HTTP_ANSWERS, RPC_OK, RPC_UNREACHABLE,
    RPC_FAILED,
)  # fmt: skip

#: Autodiscover's AuthPackage → the WWW-Authenticate schemes that satisfy it.
_PACKAGES = {"ntlm": {"ntlm", "negotiate"}, "basic": {"basic"}, "negotiate": {"negotiate"},
             "negoex": {"negotiate"}}  # fmt: skip


async def run(ctx: ProbeContext, target: Target) -> None:
    """One result for the RPC proxy."""
    url = await service_url(ctx, target, "rpc")
    if url is None:
        with ctx.result(target.domain) as res, res.step("Find the RPC proxy") as step:
            step.add(F.not_offered(detail="Autodiscover gave no Outlook Anywhere server and "
                                   "no conventional host exists"))  # fmt: skip
        return
    settings = autodiscover(ctx)
    oa: OutlookAnywhere | None = None
    if settings is not None:
        oa = next((b for b in settings.outlook_anywhere if not b.internal), None)
    package = oa.auth_package if oa is not None else ""
    with ctx.result(url.url) as res:
        # The RPC channels log in over raw connections of their own (open_channel).
        async with prepare(ctx, res, F, url, "RPC proxy", method="RPC_IN_DATA",
                           content=b"", prefer=package,
                           login_over_session=False) as prepared:  # fmt: skip
            if prepared is None:
                return
            if prepared.offered:
                _compare(res, prepared, package)
            server = (settings.mailbox_server if settings is not None and
                      settings.mailbox_server else url.host)  # fmt: skip
            # The plain-http request (no credentials) and the ports, independent virtual
            # connections, go out at once, each a step.
            pings = (
                [_ping(ctx, res, prepared, server, port, role) for port, role in PORTS]
                if prepared.scheme is not None
                else []
            )
            await concurrently(_plain_http(ctx, res, url), *pings)


def _compare(res: ResultRecorder, prepared: Prepared, package: str) -> None:
    with res.step(f"Compare with Autodiscover's AuthPackage ({package or 'none given'})") as step:
        offered = {o.lower() for o in prepared.offered}
        evidence: dict[str, Json] = {"auth_package": package, "offered": list(prepared.offered)}
        if not package:
            step.note("Autodiscover gave no AuthPackage: nothing to compare")
            return
        wanted = _PACKAGES.get(package.lower(), {package.lower()})
        if wanted & offered:
            step.add(AUTH_PACKAGE_OK(detail=f"{package} is offered ({', '.join(prepared.offered)})",
                                     evidence=evidence))  # fmt: skip
        else:
            step.add(AUTH_PACKAGE_MISSING(
                detail=f"Autodiscover says {package}; the proxy offers "
                f"{', '.join(prepared.offered) or 'nothing'}",
                evidence=evidence,
            ))  # fmt: skip


async def _plain_http(ctx: ProbeContext, res: ResultRecorder, url: ServiceUrl) -> None:
    from analyzer.protocols.httpauth import send_recorded  # noqa: PLC0415

    http_url = "http://" + url.url.split("://", 1)[1]
    with res.step(f"Plain HTTP: RPC_IN_DATA {http_url}") as step:
        try:
            async with make_client(ctx.run, timeout=ctx.op_timeout()) as client:
                response = await send_recorded(client, "RPC_IN_DATA", http_url, content=b"",
                                               timeout=ctx.op_timeout(), transcript=step)
        except NetError as exc:
            step.note(f"no answer over http ({exc}): fine")
            return
        location = response.header("location") or ""
        if response.status in (301, 302, 303, 307, 308) and location.startswith("https://"):
            step.note(f"redirected to {location[:200]}: fine")
        elif response.status in (200, 401):
            step.add(HTTP_ANSWERS(
                detail=f"HTTP {response.status} over plain http",
                evidence={"url": http_url, "status": response.status},
            ))  # fmt: skip
        else:
            step.note(f"HTTP {response.status} over plain http: not served there")


async def _ping(
    ctx: ProbeContext, res: ResultRecorder, prepared: Prepared, server: str, port: int, role: str
) -> None:
    assert prepared.scheme is not None  # noqa: S101 - checked by the caller
    host = prepared.url.host
    parts = urlsplit(prepared.url.url)
    target = f"{parts.path}?{server}:{port}"
    with res.step(f"RPC ping {server}:{port} ({role})") as step:
        addrs = await resolve_host(ctx.run, host)
        addresses = addrs.addresses_for(ctx.options.families)
        if not addresses:
            step.add(F.unreachable(detail=f"{host} has no address"))
            return
        context = session_tls(ctx, verified=prepared.session.verified)
        vc, out_cookie, in_cookie, group = (os.urandom(16) for _ in range(4))
        channels: list[RawHttp] = []
        scheme, port_443 = prepared.scheme, parts.port or 443
        # The IN channel's connection (TCP and TLS, nothing sent) opens beside the OUT
        # channel's login; the IN channel logs in on it once the OUT channel is up, as before,
        # and its lines are shown there.
        held = HeldTranscript()
        in_connection = asyncio.get_running_loop().create_task(connect(
            ctx.run, host, addresses[0], port_443, timeout=ctx.op_timeout(), tls=context,
            server_hostname=host, transcript=held,
        ))  # fmt: skip
        try:

            async def channel(method: str, length: int, body: bytes, shown: str,
                              connection: Connection | None = None) -> RawHttp:  # fmt: skip
                opened = await open_channel(
                    ctx, host=host, address=addresses[0], port=port_443, target=target,
                    method=method, scheme=scheme, offered=prepared.offered,
                    content_length=length, first_body=body, body_shown=shown,
                    context=context, transcript=step, connection=connection,
                )  # fmt: skip
                channels.append(opened)
                return opened

            step.note("RPC_OUT_DATA channel")
            out = await channel("RPC_OUT_DATA", 76, conn_a1(vc, out_cookie),
                                "[RTS CONN/A1, 76 bytes]")  # fmt: skip
            step.note("RPC_IN_DATA channel")
            try:
                connection = await in_connection
            finally:
                step.replay(held, on_step_clock=True)
            await channel("RPC_IN_DATA", IN_CHANNEL_LENGTH, conn_b1(vc, in_cookie, group),
                          "[RTS CONN/B1, 104 bytes]", connection)  # fmt: skip
            step.note("OUT channel response")
            step.add(await _read_out(out, step, server, port))
        except ChannelRefused as refused:
            step.add(_refused(refused.head, refused.body, server, port, prepared.url))
        except NtlmFailed as exc:
            step.add(F.auth_broken(detail=str(exc)))
        except AuthError as exc:
            step.add(auth_error_finding(F, exc))
        except NetError as exc:
            step.add(net_finding(F, exc, prepared.url))
        finally:
            # Done as soon as CONN/C2 or a failure was read: both requests stay unfinished
            # for ever, so the connections are dropped, not ended in order (the IN channel's
            # too when the OUT channel failed before using it).
            for opened_channel in channels:
                opened_channel.conn.abort()
            await _drop(in_connection)


async def _drop(opening: asyncio.Task[Connection]) -> None:
    """Stop a connection still opening, or drop it if it opened (no-op once a channel took
    it: aborting twice is harmless)."""
    if not opening.done():
        opening.cancel()
        await asyncio.wait([opening])
    if opening.cancelled() or opening.exception() is not None:
        return
    opening.result().abort()


async def _read_out(out: RawHttp, step: StepRecorder, server: str, port: int) -> Finding:
    head = await out.read_head()
    if head.status != 200:
        body = await out.read_body(head, max_bytes=64 * 1024)
        return _refused(head, body, server, port, None)
    seen: list[str] = []
    try:
        for _ in range(8):
            header = await out.read_exact(16)
            length = fragment_length(header)
            if length > MAX_FRAGMENT:
                raise RtsError(f"a PDU of {length} bytes")
            pdu = parse_pdu(header + await out.read_exact(length - 16))
            seen.append(pdu.describe())
            step.recv(f"[{pdu.describe()}]")
            if pdu.status is not None:
                spec = RPC_UNREACHABLE if pdu.status == RPC_S_SERVER_UNAVAILABLE else RPC_FAILED
                return spec(detail=f"{server}:{port}: {pdu.describe()}",
                            evidence={"pdus": list(seen)})  # fmt: skip
            if pdu.is_conn_c2:
                return RPC_OK(detail=f"{server}:{port}: CONN/A3 and CONN/C2 received",
                              evidence={"pdus": list(seen), "port": port})  # fmt: skip
    except RtsError as exc:
        return RPC_FAILED(detail=f"{server}:{port}: not RTS: {exc}", evidence={"pdus": seen})
    return RPC_FAILED(detail=f"{server}:{port}: no CONN/C2 among {len(seen)} PDUs",
                      evidence={"pdus": seen})  # fmt: skip


def _refused(head: Head, body: bytes, server: str, port: int, url: ServiceUrl | None) -> Finding:
    evidence: dict[str, Json] = {"status": head.status, "reason": head.reason[:200],
                                 "port": port}  # fmt: skip
    reason = head.reason.lower()
    if head.status == 503 and ("6ba" in reason.replace(" ", "") or "1722" in reason):
        return RPC_UNREACHABLE(detail=f"{server}:{port}: HTTP 503 {head.reason[:200]}",
                               evidence=evidence)  # fmt: skip
    if head.status == 401:
        return F.auth_rejected(detail=f"HTTP 401 on the channel to {server}:{port}",
                               evidence=evidence)  # fmt: skip
    if head.status == 404:
        return F.endpoint_missing(detail=f"HTTP 404 for {server}:{port}", evidence=evidence)
    if head.status == 503:
        return F.throttled(detail=f"HTTP 503 {head.reason[:200]}", evidence=evidence)
    snippet = " ".join(body[:200].decode("utf-8", "replace").split())
    return RPC_FAILED(detail=f"{server}:{port}: HTTP {head.status} {head.reason[:100]} "
                      f"{snippet}".strip(), evidence=evidence)  # fmt: skip


PROBE = Probe(
    id="outlook_anywhere",
    title="Outlook Anywhere (RPC over HTTP)",
    run=run,
    uses=(AUTODISCOVER_SETTINGS, TLS_VERDICTS),
    findings=FINDINGS,
    uses_credentials=True,
    verifies_tls=True,
)
