"""Exchange ActiveSync: prove a phone could sync the mailbox ([MS-ASHTTP], [MS-ASCMD]).

The URL comes from ``--activesync-url``, else Autodiscover's mobilesync (ActiveSync) schema,
else Autodiscover v2 (``Protocol=ActiveSync``), else (reported as a guess) the conventional
``/Microsoft-Server-ActiveSync`` on the EWS host, or on ``mail.<domain>`` when Autodiscover
gave nothing; the first step names the source. Never the outlook schema's ``ASUrl``: that is
the Availability service, an EWS URL. Steps: an unauthenticated
OPTIONS (the methods offered); OPTIONS with credentials (``MS-ASProtocolVersions``,
``MS-ASProtocolCommands``); then ``FolderSync`` with SyncKey 0 in WBXML, as a new device
does. HTTP 449 (or FolderSync status 142-144) means the device must provision first: the
two-step ``Provision`` exchange of [MS-ASPROV] is made and FolderSync sent again with the
policy key. A hierarchy without an Inbox fails (the device would sync no mail; SOGo answers
so when its IMAP login fails). 451 is a redirect to another server (followed once,
reported), 503 throttling (inconclusive), 401/403 refusals. The device id is derived from the
user name, so repeated checks reuse one device partnership instead of adding one per run.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from analyzer.core.facts import AUTODISCOVER_SETTINGS, TLS_VERDICTS
from analyzer.core.findings import FindingSpec
from analyzer.core.model import Finding, Json, Status
from analyzer.core.probe import Probe, ProbeContext, ResultRecorder, StepRecorder
from analyzer.protocols import wbxml
from analyzer.protocols.exchange import (
    Prepared,
    ServiceUrl,
    ask,
    http_findings,
    judge_status,
    prepare,
    service_url,
)

if TYPE_CHECKING:
    from analyzer.core.targets import Target
    from analyzer.protocols.http import BoundedResponse

__all__ = ["PROBE", "folders_finding", "parse_options"]

REFERENCE = "https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-ascmd"
#: Protocol versions rca speaks, best first. 14.0 is the newest whose Provision request needs
#: no device-information block ([MS-ASPROV] 2.2.2.52 makes it required from 14.1).
SPOKEN = ("14.0", "12.1", "12.0", "2.5")
DEVICE_TYPE = "rca"
POLICY_TYPE = "MS-EAS-Provisioning-WBXML"

F = http_findings(
    "activesync",
    "ActiveSync",
    enable_for_user="Check the password; if it is right, enable ActiveSync for the mailbox "
    "(Set-CASMailbox <user> -ActiveSyncEnabled $true) and check the device access rules and "
    "quarantine (Get-ActiveSyncDeviceAccessRule, Get-MobileDevice).",
    reference=REFERENCE,
)
OPTIONS_OK = FindingSpec(
    code="activesync.options",
    status=Status.PASS,
    title="ActiveSync protocol versions and commands",
    meaning="OPTIONS with credentials listed the protocol versions (MS-ASProtocolVersions) and "
    "commands (MS-ASProtocolCommands) the server offers.",
    reference="https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-ashttp",
)
OPTIONS_INCOMPLETE = FindingSpec(
    code="activesync.options.incomplete",
    status=Status.WARN,
    title="OPTIONS did not list the ActiveSync versions",
    meaning="The answer to OPTIONS lacks MS-ASProtocolVersions or MS-ASProtocolCommands: a "
    "proxy strips the headers or something other than ActiveSync answers. Devices then fall "
    "back to an old protocol version or fail.",
    remediation="Check what answers on the URL and that the reverse proxy passes the MS-AS* "
    "headers through.",
)
NO_COMMON_VERSION = FindingSpec(
    code="activesync.version.none_common",
    status=Status.FAIL,
    title="No ActiveSync protocol version in common",
    meaning="The server offers none of the protocol versions rca speaks (12.0 to 14.0); "
    "current devices will not sync either.",
    remediation="Update the server, or check the versions it announces.",
)
PROVISION_REQUIRED = FindingSpec(
    code="activesync.provision.required",
    status=Status.PASS,
    title="The server requires device provisioning",
    meaning="FolderSync was answered with HTTP 449 (or status 142-144): devices must accept "
    "the mobile device mailbox policy first (Provision), as Exchange requires by default.",
    reference="https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-asprov",
)
PROVISION_OK = FindingSpec(
    code="activesync.provision.ok",
    status=Status.PASS,
    title="Device provisioned",
    meaning="The two-step Provision exchange gave a final policy key.",
    reference="https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-asprov",
)
PROVISION_FAILED = FindingSpec(
    code="activesync.provision.failed",
    status=Status.FAIL,
    title="Provisioning failed",
    meaning="The Provision exchange did not give a policy key (its Status says why), so "
    "devices cannot sync.",
    remediation="Check the mobile device mailbox policy assigned to the user and the server's "
    "log.",
    reference="https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-asprov",
)
FOLDERSYNC_OK = FindingSpec(
    code="activesync.foldersync.ok",
    status=Status.PASS,
    title="FolderSync succeeded",
    meaning="The server answered FolderSync with status 1 and the folder hierarchy: a device "
    "can sync this mailbox.",
    reference=REFERENCE,
)
FOLDERSYNC_STATUS = FindingSpec(
    code="activesync.foldersync.status",
    status=Status.FAIL,
    title="FolderSync failed",
    meaning="The server answered FolderSync with a failure status ([MS-ASCMD] 2.2.3.177.5: "
    "6 server error, 9 bad sync key, 110 the server cannot reach the mailbox, 111 "
    "unknown...).",
    remediation="Look up the status; check the mailbox's health on the server.",
    reference=REFERENCE,
)
FOLDERSYNC_NO_INBOX = FindingSpec(
    code="activesync.foldersync.no_inbox",
    status=Status.FAIL,
    title="FolderSync listed no Inbox",
    meaning="The server answered FolderSync with status 1 but its folder hierarchy holds no "
    "Inbox (folder type 2, [MS-ASCMD] 2.2.3.186.3): a device would sync what is listed "
    "(calendars, contacts) and no mail. SOGo answers so when it cannot log in to its IMAP "
    "server with the user's credentials.",
    remediation="Check the server's access to the mail store: its IMAP server setting "
    "(SOGo: SOGoIMAPServer, and the certificate that server presents), the IMAP server's log "
    "for the user's login, and that the mailbox exists.",
    reference=REFERENCE,
)
REDIRECT = FindingSpec(
    code="activesync.redirect",
    status=Status.WARN,
    title="ActiveSync redirected to another server (451)",
    meaning="The server answered 451 with X-MS-Location: the mailbox is served elsewhere. "
    "Devices follow it, but Autodiscover should give the right URL in the first place.",
    remediation="Publish the mailbox's own ActiveSync URL in Autodiscover (ExternalUrl of its "
    "site).",
)
BAD_WBXML = FindingSpec(
    code="activesync.wbxml_invalid",
    status=Status.FAIL,
    title="The server's WBXML is invalid",
    meaning="The answer to FolderSync or Provision could not be read as WBXML, or went past "
    "rca's limits (size, depth, element count): devices cannot read it either.",
    remediation="Check what answers on the URL (a proxy rewriting bodies?) and the server log.",
)
FINDINGS = (
    *F.all(), OPTIONS_OK, OPTIONS_INCOMPLETE, NO_COMMON_VERSION, PROVISION_REQUIRED,
    PROVISION_OK, PROVISION_FAILED, FOLDERSYNC_OK, FOLDERSYNC_STATUS, FOLDERSYNC_NO_INBOX,
    REDIRECT, BAD_WBXML,
)  # fmt: skip

_PROVISIONING_STATUS = {"142", "143", "144"}
#: [MS-ASCMD] 2.2.3.186.3: the folder type of the default Inbox.
_INBOX_TYPE = "2"


async def run(ctx: ProbeContext, target: Target) -> None:
    """One result for the ActiveSync URL."""
    url = await service_url(ctx, target, "eas")
    if url is None:
        with ctx.result(target.domain) as res, res.step("Find the ActiveSync URL") as step:
            step.add(F.not_offered(detail="no --activesync-url, Autodiscover gave no "
                                   "ActiveSync URL and no conventional host exists"))  # fmt: skip
        return
    with ctx.result(url.url) as res:
        async with prepare(ctx, res, F, url, "ActiveSync", method="OPTIONS") as prepared:
            if prepared is None or prepared.scheme is None:
                return
            version = await _options(ctx, res, prepared)
            if version is None:
                return
            await _foldersync(ctx, res, prepared, url, version)


async def _request(
    ctx: ProbeContext, step: StepRecorder, prepared: Prepared, method: str, url: str, *,
    headers: dict[str, str] | None = None, content: bytes | None = None, more: int = 0,
) -> BoundedResponse | None:  # fmt: skip
    """One authenticated request (``more``: how many follow at once); None when a finding already
    ended the step."""
    return await ask(ctx, step, prepared, F, method, prepared.url, target=url, headers=headers,
                     content=content, more=more)


async def _options(ctx: ProbeContext, res: ResultRecorder, prepared: Prepared) -> str | None:
    user = ctx.options.credentials.username
    with res.step(f"OPTIONS as {user} ({prepared.scheme})") as step:
        # FolderSync follows a good OPTIONS: its connection opens meanwhile.
        response = await _request(ctx, step, prepared, "OPTIONS", prepared.url.url, more=1)
        if response is None:
            return None
        ended = judge_status(F, response, prepared.url)
        if ended is not None:
            step.add(ended)
            return None
        versions, commands, server = parse_options(response)
        evidence: dict[str, Json] = {"versions": versions, "commands": commands, "server": server}
        if not versions or not commands:
            step.add(OPTIONS_INCOMPLETE(detail="versions: " + (", ".join(versions) or "none")
                                        + f"; {len(commands)} commands",
                                        evidence=evidence))  # fmt: skip
            return SPOKEN[0]
        step.add(OPTIONS_OK(detail=f"versions {', '.join(versions)}; {len(commands)} commands",
                            evidence=evidence))  # fmt: skip
        common = next((v for v in SPOKEN if v in versions), None)
        if common is None:
            step.add(NO_COMMON_VERSION(detail=f"the server offers {', '.join(versions)}",
                                       evidence=evidence))  # fmt: skip
            return None
        if "FolderSync" not in commands:
            step.note("FolderSync is not among the commands offered; trying it anyway")
        step.note(f"speaking protocol version {common}")
        return common


def parse_options(response: BoundedResponse) -> tuple[list[str], list[str], str]:
    """The versions, commands and server version an OPTIONS answer announces ([MS-ASHTTP]
    2.2.4.1.2: comma-separated ``MS-ASProtocolVersions`` and ``MS-ASProtocolCommands``)."""

    def listed(name: str) -> list[str]:
        return [v.strip() for v in (response.header(name) or "").split(",") if v.strip()]

    server = response.header("ms-server-activesync") or ""
    return listed("ms-asprotocolversions"), listed("ms-asprotocolcommands"), server


def _device_id(user: str) -> str:
    # [MS-ASHTTP] 2.2.1.1.1.1.3: up to 32 alphanumeric characters; stable per user.
    return "RCA" + hashlib.sha256(user.lower().encode()).hexdigest()[:29].upper()


def _command_url(base: str, command: str, user: str) -> str:
    return (f"{base}?Cmd={command}&User={quote(user, safe='')}&DeviceId={_device_id(user)}"
            f"&DeviceType={DEVICE_TYPE}")  # fmt: skip


def _headers(version: str, policy_key: str) -> dict[str, str]:
    return {
        "Content-Type": "application/vnd.ms-sync.wbxml",
        "MS-ASProtocolVersion": version,
        "X-MS-PolicyKey": policy_key,
        "User-Agent": "rca-ActiveSync/1.0",
    }


def _decode(step: StepRecorder, response: BoundedResponse) -> wbxml.Element | None:
    try:
        root = wbxml.decode(response.body)
    except wbxml.WbxmlError as exc:
        step.add(BAD_WBXML(detail=str(exc), evidence={"bytes": len(response.body)}))
        return None
    step.recv(f"[WBXML] {_outline(root)}")
    return root


def _outline(node: wbxml.Element, depth: int = 0) -> str:
    """A short readable form of a WBXML tree for the transcript."""
    if depth > 4:
        return "…"
    inner = node.text if node.text is not None and not node.children else " ".join(
        _outline(c, depth + 1) for c in node.children[:12])  # fmt: skip
    return f"<{node.name}>{(inner or '')[:200]}</{node.name}>"


FOLDERSYNC = wbxml.Element(
    tag="FolderHierarchy:FolderSync",
    children=(wbxml.Element(tag="FolderHierarchy:SyncKey", text="0"),),
)


async def _foldersync(
    ctx: ProbeContext, res: ResultRecorder, prepared: Prepared, url: ServiceUrl, version: str
) -> None:
    user = ctx.options.credentials.username or ""
    base = url.url
    policy_key = "0"
    redirected = False
    provisioned = False
    while True:
        with res.step(f"FolderSync (SyncKey 0) at {urlsplit(base).netloc}") as step:
            step.send("[WBXML] <FolderSync><SyncKey>0</SyncKey></FolderSync>")
            response = await _request(ctx, step, prepared, "POST",
                                      _command_url(base, "FolderSync", user),
                                      headers=_headers(version, policy_key),
                                      content=wbxml.encode(FOLDERSYNC))  # fmt: skip
            if response is None:
                return
            status = response.status
            if status == 451 and not redirected:
                location = response.header("x-ms-location") or ""
                step.add(REDIRECT(detail=f"451 to {location or '(no X-MS-Location)'}",
                                  evidence={"location": location}))  # fmt: skip
                if not location.lower().startswith("https://"):
                    return
                base, redirected = location.split("?", 1)[0], True
                continue
            needs_provision = status == 449
            root: wbxml.Element | None = None
            if status == 200:
                root = _decode(step, response)
                if root is None:
                    return
                needs_provision = root.findtext("Status") in _PROVISIONING_STATUS
            if needs_provision and not provisioned:
                step.add(PROVISION_REQUIRED(
                    detail=f"HTTP {status}" + (f", status {root.findtext('Status')}"
                                               if root is not None else ""),
                ))  # fmt: skip
                key = await _provision(ctx, res, prepared, base, version, user)
                if key is None:
                    return
                policy_key, provisioned = key, True
                continue
            if status != 200:
                ended = judge_status(F, response, prepared.url)
                step.add(ended or FOLDERSYNC_STATUS(detail=f"HTTP {status}"))
                return
            assert root is not None  # noqa: S101 - decoded above
            step.add(folders_finding(root))
            return


def folders_finding(root: wbxml.Element) -> Finding:
    """The verdict on a decoded FolderSync answer: status 1 and the folders, or the status."""
    status = root.findtext("Status")
    changes = root.find("Changes")
    adds = list(changes.findall("Add")) if changes is not None else []
    names = [a.findtext("DisplayName") for a in adds]
    evidence: dict[str, Json] = {"status": status, "folders": names[:50],
                                 "count": root.findtext("Changes/Count")}  # fmt: skip
    if status != "1":
        return FOLDERSYNC_STATUS(detail=f"FolderSync status {status or '(none)'}",
                                 evidence=evidence)  # fmt: skip
    if not any(a.findtext("Type") == _INBOX_TYPE for a in adds):
        evidence["types"] = [a.findtext("Type") for a in adds][:50]
        return FOLDERSYNC_NO_INBOX(
            detail=f"{len(names)} folders, none of them an Inbox: "
            + (", ".join(n for n in names[:8] if n) or "(none)"),
            evidence=evidence,
        )
    return FOLDERSYNC_OK(detail=f"{len(names)} folders: {', '.join(n for n in names[:8] if n)}",
                         evidence=evidence)  # fmt: skip


def _provision_request(key: str | None) -> wbxml.Element:
    children = [wbxml.Element(tag="Provision:PolicyType", text=POLICY_TYPE)]
    if key is not None:
        children += [wbxml.Element(tag="Provision:PolicyKey", text=key),
                     wbxml.Element(tag="Provision:Status", text="1")]  # fmt: skip
    policy = wbxml.Element(tag="Provision:Policy", children=tuple(children))
    policies = wbxml.Element(tag="Provision:Policies", children=(policy,))
    return wbxml.Element(tag="Provision:Provision", children=(policies,))


async def _provision(
    ctx: ProbeContext, res: ResultRecorder, prepared: Prepared, base: str, version: str,
    user: str,
) -> str | None:  # fmt: skip
    """[MS-ASPROV] 3.1.5.1: request the policy (temporary key), acknowledge it (final key)."""
    with res.step("Provision (request the policy, then acknowledge it)") as step:
        key: str | None = None
        for phase in ("request", "acknowledge"):
            step.send(f"[WBXML] Provision {phase}" + (f" with key {key}" if key else ""))
            response = await _request(ctx, step, prepared, "POST",
                                      _command_url(base, "Provision", user),
                                      headers=_headers(version, key or "0"),
                                      content=wbxml.encode(_provision_request(key)))  # fmt: skip
            if response is None:
                return None
            ended = judge_status(F, response, prepared.url)
            if ended is not None:
                step.add(ended)
                return None
            root = _decode(step, response)
            if root is None:
                return None
            status = root.findtext("Status")
            policy_status = root.findtext("Policies/Policy/Status")
            key = root.findtext("Policies/Policy/PolicyKey") or None
            if status != "1" or policy_status != "1" or key is None:
                step.add(PROVISION_FAILED(
                    detail=f"{phase}: status {status}, policy status {policy_status}, "
                    f"key {key or 'none'}",
                ))  # fmt: skip
                return None
        step.add(PROVISION_OK(detail=f"policy key {key}", evidence={"policy_key": key}))
        return key


PROBE = Probe(
    id="activesync",
    title="ActiveSync login and folder sync",
    run=run,
    uses=(AUTODISCOVER_SETTINGS, TLS_VERDICTS),
    findings=FINDINGS,
    uses_credentials=True,
    verifies_tls=True,
)
