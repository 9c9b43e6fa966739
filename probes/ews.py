"""EWS: prove Exchange Web Services answers for the mailbox, as Outlook for Mac and EWS
clients use it.

The URL comes from ``--ews-url``, else Autodiscover's ``EwsUrl``, else (reported as a
guess) ``https://mail.<domain>/EWS/Exchange.asmx``. Steps: an unauthenticated SOAP POST
(the authentication methods the 401 offers, or an anonymous answer), then ``GetFolder``
of the Inbox with the user's credentials (NTLM, Basic or Bearer); the response class and
code, the folder's counts and the server's version (``ServerVersionInfo``) are reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzer.errors import NetError
from analyzer.exchange import (
    auth_error_finding,
    authenticated,
    http_findings,
    judge_status,
    net_finding,
    prepare,
    service_url,
)
from analyzer.facts import AUTODISCOVER_SETTINGS, TLS_VERDICTS
from analyzer.findings import FindingSpec
from analyzer.httpauth import AuthError
from analyzer.model import Finding, Json, Status
from analyzer.probe import Probe, ProbeContext

if TYPE_CHECKING:
    from analyzer.http import BoundedResponse
    from analyzer.targets import Target

__all__ = ["PROBE"]

REFERENCE = (
    "https://learn.microsoft.com/exchange/client-developer/web-service-reference/"
    "getfolder-operation"
)

F = http_findings(
    "ews",
    "EWS",
    enable_for_user="Check the password; if it is right, enable EWS for the mailbox "
    "(Set-CASMailbox <user> -EwsEnabled $true; also check -EwsBlockList / EwsAllowList and "
    "the organization's EwsApplicationAccessPolicy).",
    reference=REFERENCE,
)
GETFOLDER_OK = FindingSpec(
    code="ews.getfolder.ok",
    status=Status.PASS,
    title="EWS answered GetFolder for the Inbox",
    meaning="The authenticated SOAP request succeeded (ResponseClass Success, NoError): EWS "
    "works for this mailbox; the evidence has the folder's counts and the server version.",
    reference=REFERENCE,
)
GETFOLDER_ERROR = FindingSpec(
    code="ews.getfolder.error",
    status=Status.FAIL,
    title="EWS refused GetFolder",
    meaning="The login worked, but EWS answered the request with an error response (its "
    "ResponseCode says why: ErrorMailboxMoveInProgress, ErrorMailboxStoreUnavailable, "
    "ErrorAccessDenied...).",
    remediation="Look up the ResponseCode in the EWS reference; check the mailbox's database "
    "and its health on the server.",
    reference=REFERENCE,
)
NOT_SOAP = FindingSpec(
    code="ews.not_soap",
    status=Status.FAIL,
    title="The EWS URL does not answer SOAP",
    meaning="After login the answer was not a SOAP envelope from EWS (a web page, a proxy's "
    "error page, or garbage): something else answers at this URL.",
    remediation="Check the URL and what the reverse proxy publishes there.",
)
FINDINGS = (*F.all(), GETFOLDER_OK, GETFOLDER_ERROR, NOT_SOAP)

_SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_TYPES = "http://schemas.microsoft.com/exchange/services/2006/types"
_MESSAGES = "http://schemas.microsoft.com/exchange/services/2006/messages"
GETFOLDER = f"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="{_SOAP_NS}" xmlns:t="{_TYPES}" xmlns:m="{_MESSAGES}">
  <soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/></soap:Header>
  <soap:Body>
    <m:GetFolder>
      <m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>
      <m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds>
    </m:GetFolder>
  </soap:Body>
</soap:Envelope>
""".encode()
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml"}


async def run(ctx: ProbeContext, target: Target) -> None:
    """One result for the EWS URL."""
    url = await service_url(ctx, target, "ews")
    if url is None:
        with ctx.result(target.domain) as res, res.step("Find the EWS URL") as step:
            step.add(F.not_offered(detail="Autodiscover gave no EWS URL and neither "
                                   f"mail.{target.domain} nor autodiscover.{target.domain} "
                                   "exists"))  # fmt: skip
        return
    with ctx.result(url.url) as res:
        async with prepare(ctx, res, F, url, "EWS", method="POST", headers=HEADERS,
                           content=GETFOLDER) as prepared:  # fmt: skip
            if prepared is None or prepared.scheme is None:
                return
            user = ctx.options.credentials.username
            with res.step(f"GetFolder (Inbox) as {user} ({prepared.scheme})") as step:
                try:
                    response = await authenticated(
                        ctx, step, prepared.session, "POST", url.url, scheme=prepared.scheme,
                        offered=prepared.offered, headers=HEADERS, content=GETFOLDER,
                    )  # fmt: skip
                except AuthError as exc:
                    step.add(auth_error_finding(F, exc))
                    return
                except NetError as exc:
                    step.add(net_finding(F, exc, url))
                    return
                ended = judge_status(F, response, url)
                if ended is not None:
                    step.add(ended)
                    return
                step.add(_judge_soap(response))


def _judge_soap(response: BoundedResponse) -> Finding:
    """The finding for a 200 answer to GetFolder."""
    import defusedxml.ElementTree as ET  # noqa: N817, PLC0415 - safe XML parsing

    evidence: dict[str, Json] = {"status": response.status}
    for header in ("x-feserver", "x-beserver", "x-owa-version", "x-diaginfo"):
        value = response.header(header)
        if value:
            evidence[header] = value[:200]
    try:
        root = ET.fromstring(response.body)
    except Exception as exc:  # defusedxml's and expat's errors alike
        return NOT_SOAP(detail=f"not XML: {type(exc).__name__}: {str(exc)[:200]}",
                        evidence=evidence)  # fmt: skip
    if root.tag != f"{{{_SOAP_NS}}}Envelope":
        return NOT_SOAP(detail=f"the root element is {root.tag[:100]}", evidence=evidence)
    version = root.find(f".//{{{_TYPES}}}ServerVersionInfo")
    if version is not None:
        evidence["server_version"] = ".".join(
            version.get(a, "?") for a in ("MajorVersion", "MinorVersion", "MajorBuildNumber",
                                          "MinorBuildNumber")
        )  # fmt: skip
        evidence["schema_version"] = version.get("Version", "")
    fault = root.find(f".//{{{_SOAP_NS}}}Fault")
    if fault is not None:
        text = " ".join("".join(fault.itertext()).split())[:300]
        return GETFOLDER_ERROR(detail=f"SOAP fault: {text}", evidence=evidence)
    message = root.find(f".//{{{_MESSAGES}}}GetFolderResponseMessage")
    if message is None:
        return NOT_SOAP(detail="no GetFolderResponseMessage in the answer", evidence=evidence)
    response_class = message.get("ResponseClass", "")
    code = message.findtext(f"{{{_MESSAGES}}}ResponseCode", "")
    evidence["response_class"] = response_class
    evidence["response_code"] = code
    if response_class != "Success":
        text = message.findtext(f"{{{_MESSAGES}}}MessageText", "")
        return GETFOLDER_ERROR(detail=f"{response_class} {code}: {text[:300]}",
                               evidence=evidence)  # fmt: skip
    folder = message.find(f".//{{{_TYPES}}}Folder")
    if folder is not None:
        for field in ("DisplayName", "TotalCount", "UnreadCount", "ChildFolderCount"):
            value = folder.findtext(f"{{{_TYPES}}}{field}")
            if value is not None:
                evidence[field.lower()] = int(value) if value.isdigit() else value[:100]
    shown = evidence.get("server_version", "unknown")
    return GETFOLDER_OK(
        detail=f"{code}: {evidence.get('displayname', 'Inbox')} holds "
        f"{evidence.get('totalcount', '?')} items; Exchange {shown}",
        evidence=evidence,
    )


PROBE = Probe(
    id="ews",
    title="EWS login and mailbox",
    run=run,
    uses=(AUTODISCOVER_SETTINGS, TLS_VERDICTS),
    findings=FINDINGS,
    uses_credentials=True,
)
