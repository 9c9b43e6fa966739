"""MAPI over HTTP: the mailbox (emsmdb) and address book (nspi) endpoints Outlook 2016+ uses
([MS-OXCMAPIHTTP]).

The URLs come from Autodiscover's ``mapiHttp`` block (MailStore / AddressBook), else (a
guess) ``https://mail.<domain>/mapi/emsmdb/`` and ``/mapi/nspi/``. For each endpoint: an
unauthenticated PING (the methods offered), the same over plain http (SSL offloading
hint), an authenticated PING, then a real session without any ROP: Connect/Disconnect on
emsmdb with the user's LegacyDN, Bind/Unbind on nspi. Success is ``X-ResponseCode: 0`` and
a zero StatusCode/ErrorCode in the response body; any other code is reported by name.
"""

from __future__ import annotations

import struct
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from analyzer.core.errors import NetError
from analyzer.core.facts import AUTODISCOVER_SETTINGS, TLS_VERDICTS
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.core.probe import (
    Probe,
    ProbeContext,
    ResultRecorder,
    StepRecorder,
    concurrently,
)
from analyzer.protocols.exchange import (
    Kind,
    Prepared,
    ServiceUrl,
    ask,
    autodiscover,
    http_findings,
    judge_status,
    prepare,
    service_url,
)
from analyzer.protocols.http import make_client
from analyzer.protocols.httpauth import send_recorded

if TYPE_CHECKING:
    from analyzer.core.targets import Target
    from analyzer.protocols.http import BoundedResponse

__all__ = ["PROBE", "response_code"]

REFERENCE = "https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxcmapihttp"

#: [MS-OXCMAPIHTTP] 2.2.3.3.3: X-ResponseCode values.
RESPONSE_CODES = {
    0: "Success", 1: "Unknown Failure", 2: "Invalid Verb", 3: "Invalid Path",
    4: "Invalid Header", 5: "Invalid Request Type", 6: "Invalid Context Cookie",
    7: "Missing Header", 8: "Anonymous Not Allowed", 9: "Too Large", 10: "Context Not Found",
    11: "No Privilege", 12: "Invalid Request Body", 13: "Missing Cookie",
}  # fmt: skip

F = http_findings(
    "mapihttp",
    "MAPI over HTTP",
    enable_for_user="Check the password; if it is right, check MAPI over HTTP for the mailbox "
    "(Set-CASMailbox <user> -MapiHttpEnabled $true, -MAPIBlockOutlookRpcHttp) and the "
    "/mapi virtual directory's authentication (Get-MapiVirtualDirectory).",
    reference=REFERENCE,
)
HTTP_ANSWERS = FindingSpec(
    code="mapihttp.http_answers",
    status=Status.WARN,
    title="The MAPI endpoint also answers over plain HTTP",
    meaning="The endpoint answers on http:// (not just a redirect to https): a load balancer "
    "offloads TLS without the server knowing, or credentials may cross the network "
    "unencrypted to this path.",
    remediation="Require SSL on the /mapi virtual directory and close port 80 for /mapi (or "
    "configure SSL offloading consistently on the load balancer and Exchange).",
)
PING_OK = FindingSpec(
    code="mapihttp.ping.ok",
    status=Status.PASS,
    title="PING answered",
    meaning="The authenticated PING request got X-ResponseCode 0: the endpoint is reachable "
    "and accepts the credentials.",
    reference=REFERENCE,
)
SESSION_OK = FindingSpec(
    code="mapihttp.session.ok",
    status=Status.PASS,
    title="A MAPI session was opened and closed",
    meaning="Connect/Disconnect (mailbox) or Bind/Unbind (address book) succeeded with "
    "X-ResponseCode 0 and zero status codes: Outlook can open this mailbox over MAPI/HTTP.",
    reference=REFERENCE,
)
RESPONSE_CODE = FindingSpec(
    code="mapihttp.response_code",
    status=Status.FAIL,
    title="The endpoint answered with a failure X-ResponseCode",
    meaning="The request reached the MAPI/HTTP endpoint, which refused it with a non-zero "
    "X-ResponseCode (the detail names it: No Privilege, Context Not Found, Invalid "
    "Context Cookie...).",
    remediation="Look up the code in [MS-OXCMAPIHTTP] 2.2.3.3.3; check the mailbox's "
    "permissions and health, and the MAPI/HTTP configuration of the server.",
    reference=REFERENCE,
)
STATUS_FAILED = FindingSpec(
    code="mapihttp.status",
    status=Status.FAIL,
    title="The MAPI request failed inside a successful response",
    meaning="X-ResponseCode was 0 but the response's StatusCode or ErrorCode is not (for "
    "Connect, 0x3F2 LogonFailed or 0x80040111 means the user cannot open this mailbox).",
    remediation="Check the mailbox's permissions and that the LegacyDN from Autodiscover is "
    "the mailbox's own.",
    reference=REFERENCE,
)
NO_LEGACY_DN = FindingSpec(
    code="mapihttp.connect.skipped",
    status=Status.SKIP,
    title="Connect not tried: no LegacyDN",
    meaning="Connect needs the user's LegacyDN, which only Autodiscover gives; it gave none.",
    remediation="Fix Autodiscover first (see its findings).",
)
FINDINGS = (*F.all(), HTTP_ANSWERS, PING_OK, SESSION_OK, RESPONSE_CODE, STATUS_FAILED,
            NO_LEGACY_DN)  # fmt: skip


def _headers(request_type: str, client: str, sequence: int) -> dict[str, str]:
    return {
        "Content-Type": "application/mapi-http",
        "X-RequestType": request_type,
        "X-RequestId": f"{{{client}}}:{sequence}",
        "X-ClientInfo": f"{{{client}}}-1",
        "X-ClientApplication": "Outlook/16.0.0000.0000",
        "Accept": "application/mapi-http",
    }


def connect_body(user_dn: str) -> bytes:
    """[MS-OXCMAPIHTTP] 2.2.4.1.1 Connect request: UserDn, Flags, code page, locales, no aux."""
    return user_dn.encode("ascii", "replace") + b"\0" + struct.pack("<IIIII", 0, 1252, 1033,
                                                                      1033, 0)  # fmt: skip


def bind_body() -> bytes:
    """[MS-OXCMAPIHTTP] 2.2.5.1.1 Bind request: Flags, a STAT (code page 1252), no aux."""
    stat = struct.pack("<IIIiIIIII", 0, 0, 0, 0, 0, 0, 1252, 1033, 1033)
    return struct.pack("<I", 0) + b"\x01" + stat + struct.pack("<I", 0)


def binary_part(body: bytes) -> bytes:
    """The binary response after the PROCESSING/PENDING/DONE lines and the meta headers."""
    if not body.startswith((b"PROCESSING", b"PENDING", b"DONE")):
        return body
    end = body.find(b"\r\n\r\n")
    return body[end + 4 :] if end >= 0 else b""


async def run(ctx: ProbeContext, target: Target) -> None:
    """One result per endpoint (mailbox, address book), both checked at once.

    Neither endpoint's requests depend on the other's, and both were always asked whatever
    the other answered, so running them concurrently sends nothing more; the results keep
    the order emsmdb, nspi.
    """
    settings = autodiscover(ctx)
    client = str(uuid.uuid4()).upper()
    endpoints: tuple[tuple[Kind, str], ...] = (("mapi_emsmdb", "emsmdb"), ("mapi_nspi", "nspi"))
    urls = await concurrently(*(service_url(ctx, target, kind) for kind, _ in endpoints))
    legacy_dn = settings.legacy_dn if settings is not None else ""
    checks = []
    for (_, name), url in zip(endpoints, urls, strict=True):
        if url is None:
            with ctx.result(target.domain) as res, res.step(f"Find the {name} URL") as step:
                step.add(F.not_offered(detail="Autodiscover gave no MAPI/HTTP URL and no "
                                       "conventional host exists"))  # fmt: skip
            continue
        # Made now, in this order, so the report lists emsmdb before nspi.
        checks.append(_checked(ctx, ctx.result(url.url), url, name, client, legacy_dn))
    await concurrently(*checks)


async def _checked(
    ctx: ProbeContext, res: ResultRecorder, url: ServiceUrl, name: str, client: str,
    legacy_dn: str,
) -> None:  # fmt: skip
    with res:
        await _endpoint(ctx, res, url, name, client, legacy_dn)


async def _endpoint(
    ctx: ProbeContext, res: ResultRecorder, url: ServiceUrl, name: str, client: str,
    legacy_dn: str,
) -> None:  # fmt: skip
    async with prepare(ctx, res, F, url, f"MAPI/HTTP {name}", method="POST",
                       headers=_headers("PING", client, 1), content=b"") as prepared:  # fmt: skip
        if prepared is None:
            return
        # The plain-http request sends no credentials and nothing after it waits for it:
        # it runs beside the authenticated ones (started first, so listed first).
        await concurrently(
            _plain_http(ctx, res, url, client),
            _authenticated(ctx, res, prepared, name, client, legacy_dn),
        )


async def _authenticated(
    ctx: ProbeContext, res: ResultRecorder, prepared: Prepared, name: str, client: str,
    legacy_dn: str,
) -> None:  # fmt: skip
    if prepared.scheme is None:
        return
    user = ctx.options.credentials.username
    # Each request is a handshake of its own: the next one's connection opens meanwhile.
    session_follows = 1 if name != "emsmdb" or legacy_dn else 0
    with res.step(f"PING as {user} ({prepared.scheme})") as step:
        if await _call(ctx, step, prepared, "PING", client, 2, b"",
                       more=session_follows) is None:  # fmt: skip
            return
        step.add(PING_OK(detail=f"{name}: X-ResponseCode 0"))
    if name == "emsmdb":
        with res.step("Connect and Disconnect (mailbox session, no ROP)") as step:
            if not legacy_dn:
                step.add(NO_LEGACY_DN())
                return
            await _session(ctx, step, prepared, client, ("Connect", connect_body(legacy_dn)),
                           ("Disconnect", struct.pack("<I", 0)))  # fmt: skip
    else:
        with res.step("Bind and Unbind (address book session)") as step:
            await _session(ctx, step, prepared, client, ("Bind", bind_body()),
                           ("Unbind", struct.pack("<II", 0, 0)))  # fmt: skip


async def _call(
    ctx: ProbeContext, step: StepRecorder, prepared: Prepared, request_type: str, client: str,
    sequence: int, body: bytes, *, more: int = 0,
) -> BoundedResponse | None:  # fmt: skip
    """One authenticated request (``more``: how many follow at once); None when a finding ended the
    step."""
    response = await ask(ctx, step, prepared, F, "POST", prepared.url,
                         headers=_headers(request_type, client, sequence), content=body,
                         more=more)  # fmt: skip
    if response is None:
        return None
    ended = judge_status(F, response, prepared.url)
    if ended is not None:
        step.add(ended)
        return None
    code = response_code(response)
    if code is None:
        step.add(RESPONSE_CODE(
            title="No X-ResponseCode: not a MAPI/HTTP endpoint",
            detail=f"{request_type}: HTTP {response.status} without X-ResponseCode",
        ))  # fmt: skip
        return None
    if code != 0:
        step.add(_response_code(request_type, code, response))
        return None
    return response


def response_code(response: BoundedResponse) -> int | None:
    """The ``X-ResponseCode`` header ([MS-OXCMAPIHTTP] 2.2.3.3.3) as a number; None when it
    is missing or not a number (then what answered is not a MAPI/HTTP endpoint)."""
    text = (response.header("x-responsecode") or "").strip()
    return int(text) if text.isdigit() else None


def _response_code(request_type: str, code: int, response: BoundedResponse) -> Finding:
    name = RESPONSE_CODES.get(code, "unknown code")
    evidence: dict[str, Json] = {"request_type": request_type, "x_responsecode": code,
                                 "meaning": name}  # fmt: skip
    server = response.header("x-serverapplication")
    if server:
        evidence["server_application"] = server[:100]
    return RESPONSE_CODE(detail=f"{request_type}: X-ResponseCode {code} ({name})",
                         evidence=evidence)  # fmt: skip


async def _session(
    ctx: ProbeContext, step: StepRecorder, prepared: Prepared, client: str,
    opening: tuple[str, bytes], closing: tuple[str, bytes],
) -> None:  # fmt: skip
    evidence: dict[str, Json] = {}
    for sequence, (request_type, body) in enumerate((opening, closing), start=3):
        step.send(f"[{request_type} request, {len(body)} bytes]")
        response = await _call(ctx, step, prepared, request_type, client, sequence, body,
                               more=1 if request_type == opening[0] else 0)  # fmt: skip
        if response is None:
            return
        binary = binary_part(response.body)
        if len(binary) < 8:
            step.add(STATUS_FAILED(detail=f"{request_type}: a response body of {len(binary)} "
                                   "bytes, too short for StatusCode and ErrorCode"))  # fmt: skip
            return
        status, error = struct.unpack_from("<II", binary)
        step.recv(f"[{request_type} response: StatusCode 0x{status:x}, ErrorCode 0x{error:x}]")
        # Unbind answers ErrorCode 1 (UnbindSuccess, [MS-OXNSPI] 2.2.1.2).
        if status != 0 or (error != 0 and not (request_type == "Unbind" and error == 1)):
            step.add(STATUS_FAILED(detail=f"{request_type}: StatusCode 0x{status:x}, "
                                   f"ErrorCode 0x{error:x}",
                                   evidence={"status_code": status, "error_code": error}))
            return
        evidence[request_type.lower()] = "ok"
    step.add(SESSION_OK(detail=f"{opening[0]} and {closing[0]} succeeded", evidence=evidence))


async def _plain_http(ctx: ProbeContext, res: ResultRecorder, url: ServiceUrl, client: str
                      ) -> None:  # fmt: skip
    parts = urlsplit(url.url)
    http_url = parts._replace(scheme="http", netloc=parts.hostname or "").geturl()
    with res.step(f"Plain HTTP: PING {http_url}") as step:
        try:
            async with make_client(ctx.run, timeout=ctx.op_timeout()) as http:
                response = await send_recorded(http, "POST", http_url, content=b"",
                                               headers=_headers("PING", client, 0),
                                               timeout=ctx.op_timeout(), transcript=step)
        except NetError as exc:
            step.note(f"no answer over http ({exc}): fine")
            return
        if response.status in (200, 401):
            step.add(HTTP_ANSWERS(detail=f"HTTP {response.status} over plain http",
                                  evidence={"url": http_url, "status": response.status}))
        else:
            step.note(f"HTTP {response.status} over plain http: not served there")


PROBE = Probe(
    id="mapi_http",
    title="MAPI over HTTP",
    run=run,
    uses=(AUTODISCOVER_SETTINGS, TLS_VERDICTS),
    findings=FINDINGS,
    uses_credentials=True,
    verifies_tls=True,
)
