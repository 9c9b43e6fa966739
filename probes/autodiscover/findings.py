"""The finding codes of the Autodiscover probe (``autodiscover.*``), declared once each."""

from __future__ import annotations

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status

__all__ = ["FINDINGS"]

OXDISCO = (
    "https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxdisco/"
    "d912502b-c0e3-4e8c-8bab-be29b1e1e3c4"
)
OXDSCLI = (
    "https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxdscli/"
    "78530279-d042-4eb0-a1f4-03b18143cd19"
)
ERRORCODE = "https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/errorcode-pox"
ASURL = "https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/asurl-pox"
MOBILESYNC_DOC = (
    "https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-ascmd/"
    "1a3e2483-1992-4581-942e-5f6214605062"
)
V2_DOC = (
    "https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/"
    "autodiscover-for-exchange"
)

# --- methods ------------------------------------------------------------------------------------

SCP_SKIPPED = FindingSpec(
    code="autodiscover.scp.skipped",
    status=Status.SKIP,
    title="SCP lookup skipped: rca is not domain-joined",
    meaning="Domain-joined Outlook first reads the Autodiscover service connection point (SCP) "
    "from Active Directory over LDAP. rca runs from outside the domain, as a remote client "
    "does, and does not query Active Directory, so it starts with the DNS-based methods.",
    reference=OXDISCO,
)
NOT_OFFERED = FindingSpec(
    code="autodiscover.url.not_found",
    status=Status.PASS,
    title="No Autodiscover service at this URL; clients move on",
    meaning="The host has no address, refuses the connection, or answers 404 for the "
    "Autodiscover path. Clients try the next method at once, so this is normal as long as "
    "another method answers.",
    reference=OXDISCO,
)
UNREACHABLE = FindingSpec(
    code="autodiscover.url.unreachable",
    status=Status.WARN,
    title="Autodiscover URL does not answer: clients wait before moving on",
    meaning="The connection or the request timed out (a firewall dropping packets, a server "
    "that hangs). Outlook waits for its own timeout at every start before it tries the next "
    "method, so users see slow starts and password prompts.",
    remediation="Either make the service answer here, or make the name not resolve / the port "
    "refuse connections so clients move on at once.",
    reference=OXDISCO,
)
TLS_FAILED = FindingSpec(
    code="autodiscover.tls.failed",
    status=Status.FAIL,
    title="TLS handshake with the Autodiscover host failed",
    meaning="The host accepts TCP connections on the HTTPS port but the TLS handshake fails, so "
    "clients get an error here (and Outlook may show it) before moving on.",
    remediation="Check the web server's certificate binding and TLS settings on this host and "
    "port, or stop listening here if the host is not meant to serve Autodiscover.",
)
CREDENTIALS_WITHHELD = FindingSpec(
    code="autodiscover.credentials.withheld",
    status=Status.SKIP,
    title="Credentials not sent to this URL",
    meaning="rca sends credentials only over HTTPS to a host whose certificate is valid and "
    "trusted, and that the credential policy allows by its name (inside the e-mail domain, a "
    "domain trusted with --trust-redirect, a Microsoft 365 Exchange Online namespace; "
    "docs/security.md); the reason is in the detail, with the flag that allows the host "
    "(run with --insecure to continue past certificate failures).",
)
TLS_INSECURE = FindingSpec(
    code="autodiscover.tls.insecure",
    status=Status.WARN,
    title="--insecure: continuing past a certificate that failed",
    meaning="The certificate of this host failed (the findings above say why), and the user "
    "asked to go on with --insecure: the requests, credentials included, go over TLS that "
    "proves nothing about who answers. Outlook would show a certificate warning here.",
    remediation="Fix the certificate; run without --insecure to see what clients see.",
)
NO_CREDENTIALS = FindingSpec(
    code="autodiscover.credentials.missing",
    status=Status.SKIP,
    title="No password or token: Autodiscover settings not requested",
    meaning="Autodiscover answers only authenticated requests; without a password "
    "(--password-file, RCA_PASSWORD) or a token (--oauth-token-file) rca can test the hosts "
    "and see which authentication methods they offer, but not the settings.",
    remediation="Run again with the user's credentials (they never leave your machine).",
)
AUTH_OFFERED = FindingSpec(
    code="autodiscover.auth.offered",
    status=Status.PASS,
    title="Authentication methods offered",
    meaning="The unauthenticated request was answered 401 with the methods listed in the "
    "evidence; Outlook uses Negotiate/NTLM or Basic, OAuth-capable clients Bearer.",
)
AUTH_NONE_USABLE = FindingSpec(
    code="autodiscover.auth.none_usable",
    status=Status.FAIL,
    title="No authentication method that clients can use is offered",
    meaning="The 401 lists no Basic, NTLM, Negotiate or Bearer method (or none at all), so no "
    'client can log in ("All required authentication methods could not be found").',
    remediation="Enable Windows authentication (Negotiate/NTLM) and/or Basic or OAuth on the "
    "Autodiscover virtual directory (Set-AutodiscoverVirtualDirectory).",
)
AUTH_ANONYMOUS = FindingSpec(
    code="autodiscover.auth.anonymous",
    status=Status.WARN,
    title="Autodiscover answers without authentication",
    meaning="The request without credentials got an answer instead of a 401. Exchange never "
    "does this: a proxy or another application answers here, and if it returns settings it "
    "discloses them (and the user's existence) to anyone.",
    remediation="Require authentication on the Autodiscover virtual directory, or check what "
    "answers at this URL.",
)
AUTH_OK = FindingSpec(
    code="autodiscover.auth.ok",
    status=Status.PASS,
    title="Logged in",
    meaning="The server accepted the credentials with the method named in the detail.",
)
AUTH_REJECTED = FindingSpec(
    code="autodiscover.auth.rejected",
    status=Status.FAIL,
    title="The credentials were refused",
    meaning="The authenticated request was answered 401 again. One refusal does not prove a "
    "wrong password (the account may be locked, or need another method or the user name in "
    "another form); clients try the next Autodiscover method.",
    remediation="Check the user name (UPN or DOMAIN\\user, --user), the password, and that the "
    "account is enabled and not locked out.",
)
AUTH_FAILED = FindingSpec(
    code="autodiscover.auth.failed",
    status=Status.FAIL,
    title="Authentication could not be completed",
    meaning="The authentication exchange broke before the server could judge the credentials "
    "(for example an NTLM challenge lost because a load balancer switched connections).",
    remediation="Read the detail; for NTLM, make sure keep-alive works end to end and that load "
    "balancers keep a client on one server.",
)
HTTP_STATUS = FindingSpec(
    code="autodiscover.http.status",
    status=Status.FAIL,
    title="Unexpected HTTP status from Autodiscover",
    meaning="The server answered neither 200 (settings), 401 (log in) nor a redirect; 5xx "
    "means the application pool or a back end is broken, 403 that access is blocked.",
    remediation="Check the Autodiscover application pool and the web server's logs for this "
    "request (the time is in the transcript).",
)

# --- the response -------------------------------------------------------------------------------

RESPONSE_TOO_LARGE = FindingSpec(
    code="autodiscover.response.too_large",
    status=Status.FAIL,
    title="The Autodiscover response is far too large",
    meaning="An Autodiscover answer is a few kilobytes; rca stopped reading past its limit. "
    "Something else answers at this URL, or the server is hostile.",
    remediation="Check what answers at this URL (a proxy error page, a download).",
)
RESPONSE_SLOW = FindingSpec(
    code="autodiscover.response.timeout",
    status=Status.FAIL,
    title="The Autodiscover response did not arrive in time",
    meaning="The server accepted the request but the complete answer did not arrive before the "
    "deadline (a hung back end, or a response trickling in).",
    remediation="Check the server's load and the Autodiscover application pool.",
)
RESPONSE_CONTENT_TYPE = FindingSpec(
    code="autodiscover.response.content_type",
    status=Status.WARN,
    title="The Autodiscover response is not labelled as XML",
    meaning="Exchange answers text/xml; another Content-Type usually means another application "
    "answers (an HTML error or login page). Strict clients refuse it.",
    remediation="Check what answers at this URL; a reverse proxy may be rewriting it.",
)
RESPONSE_UNSAFE = FindingSpec(
    code="autodiscover.response.unsafe_xml",
    status=Status.FAIL,
    title="The response holds a DTD or entity declarations: refused",
    meaning="The XML declares a DTD, entities or external references. Autodiscover never "
    "needs them; they are how XML bombs (billion laughs) and external-entity attacks work, so "
    "rca refuses to read it, as careful clients do.",
    remediation="Find what answers at this URL: it is not Exchange, or something in between "
    "rewrites the answer.",
)
RESPONSE_MALFORMED = FindingSpec(
    code="autodiscover.response.malformed",
    status=Status.FAIL,
    title="The Autodiscover response is not well-formed XML",
    meaning="Clients cannot read the answer (cut off, wrong encoding, or not XML at all).",
    remediation="Check what answers at this URL and whether a proxy truncates responses.",
)
RESPONSE_NOT_AUTODISCOVER = FindingSpec(
    code="autodiscover.response.not_autodiscover",
    status=Status.FAIL,
    title="The response is XML, but not an Autodiscover answer",
    meaning="The document is well-formed but lacks Autodiscover/Response/Account or Error: "
    "another application answers at this URL.",
    remediation="Point this URL at Exchange's Autodiscover virtual directory.",
    reference=OXDSCLI,
)
ERROR_INVALID_ADDRESS = FindingSpec(
    code="autodiscover.error.invalid_address",
    status=Status.FAIL,
    title="Autodiscover error 500: invalid e-mail address",
    meaning="The server says the e-mail address in the request is not valid for it.",
    remediation="Check the address, and that its domain is an accepted domain of the organisation.",
    reference=ERRORCODE,
)
ERROR_NO_CONFIG = FindingSpec(
    code="autodiscover.error.no_configuration",
    status=Status.FAIL,
    title="Autodiscover error 501: no configuration for this client type",
    meaning="The server has no settings of the requested kind for this user (e.g. a mailbox "
    "without the protocol enabled).",
    remediation="Enable the protocol for the mailbox (Set-CASMailbox) and check the virtual "
    "directories' external URLs.",
    reference=ERRORCODE,
)
ERROR_INVALID_REQUEST = FindingSpec(
    code="autodiscover.error.invalid_request",
    status=Status.FAIL,
    title="Autodiscover error 600: invalid request",
    meaning="The server says rca's request (a standard outlook 2006 request) is invalid: "
    "something other than Exchange answers, or a proxy altered the request body.",
    remediation="Check for proxies that rewrite POST bodies in front of Exchange.",
    reference=ERRORCODE,
)
ERROR_SCHEMA = FindingSpec(
    code="autodiscover.error.schema_unavailable",
    status=Status.FAIL,
    title="Autodiscover error 601: the requested schema is not available",
    meaning="The server does not provide the response schema asked for (outlook 2006a, or "
    "mobilesync for ActiveSync clients).",
    remediation="Check that the Autodiscover virtual directory serves this schema (for "
    "mobilesync: ActiveSync enabled).",
    reference=ERRORCODE,
)
ERROR_USER_NOT_FOUND = FindingSpec(
    code="autodiscover.error.user_not_found",
    status=Status.FAIL,
    title="Autodiscover error 602: the user's mailbox cannot be found",
    meaning="The server knows no mailbox for this address: a typo, a mailbox not yet "
    "provisioned or synchronised, or Autodiscover answering for the wrong organisation (e.g. "
    "an old on-premises server after a migration to Microsoft 365).",
    remediation="Check the address and the mailbox (Get-Mailbox); after a migration, point "
    "Autodiscover DNS at the new service.",
    reference=ERRORCODE,
)
ERROR_SERVER = FindingSpec(
    code="autodiscover.error.server_error",
    status=Status.FAIL,
    title="Autodiscover error 603: server error",
    meaning="The server failed while building the answer (Active Directory or a back end "
    "unavailable).",
    remediation="Check the Exchange server's event log at the time of the request.",
    reference=ERRORCODE,
)
ERROR_OTHER = FindingSpec(
    code="autodiscover.error.other",
    status=Status.FAIL,
    title="Autodiscover answered with an error",
    meaning="The response carries an error code rca does not know; its code and message are "
    "in the detail.",
    remediation="Look the code and message up in the server's documentation and its event "
    "log at the time of the request.",
    reference=ERRORCODE,
)
ERROR_SPECS = {
    "500": ERROR_INVALID_ADDRESS,
    "501": ERROR_NO_CONFIG,
    "600": ERROR_INVALID_REQUEST,
    "601": ERROR_SCHEMA,
    "602": ERROR_USER_NOT_FOUND,
    "603": ERROR_SERVER,
}
SETTINGS_FOUND = FindingSpec(
    code="autodiscover.settings.found",
    status=Status.PASS,
    title="Autodiscover returned the user's settings",
    meaning="The response holds the mailbox's settings (Protocol blocks); the evidence lists "
    "the URLs and servers clients will use.",
    reference=OXDSCLI,
)
SETTINGS_INSECURE_URL = FindingSpec(
    code="autodiscover.settings.insecure_url",
    status=Status.WARN,
    title="The settings point clients at plain http URLs",
    meaning="A URL in the settings is http, not https: clients would send credentials readable "
    "on the network, and modern clients refuse it.",
    remediation="Set the virtual directories' ExternalUrl/InternalUrl to https URLs.",
)
SETTINGS_UNVOUCHED = FindingSpec(
    code="autodiscover.settings.unvouched",
    status=Status.WARN,
    title="Settings from an untrusted answer: they name no host for the password",
    meaning="The settings were answered by a host the credential policy does not trust by "
    "its name (outside the e-mail domain, answering without authentication), or over a "
    "certificate that failed. Anyone who can answer that look-up (a stale SRV record, a "
    "hijacked http redirect, a captive portal) can write such settings, so rca sends no "
    "credentials to the hosts they name unless the policy allows those hosts by name "
    "(docs/security.md).",
    remediation="Serve Autodiscover from the e-mail domain's own hosts, with authentication; "
    "if the outside host is expected (a hosting provider), run again with --trust-redirect "
    "<its domain>.",
)
SETTINGS_NO_EWS = FindingSpec(
    code="autodiscover.settings.no_ews",
    status=Status.WARN,
    title="The settings name no EWS URL",
    meaning="Without EwsUrl, Outlook cannot use free/busy, out-of-office, mail tips and the "
    "offline address book download over EWS; Mac Outlook and many apps cannot connect at all.",
    remediation="Set the EWS virtual directory's ExternalUrl (Set-WebServicesVirtualDirectory).",
)
SETTINGS_NO_EXTERNAL = FindingSpec(
    code="autodiscover.settings.no_external_access",
    status=Status.WARN,
    title="Neither Outlook Anywhere nor MAPI over HTTP is published",
    meaning="The settings have no EXPR (Outlook Anywhere) block and no external MAPI over HTTP "
    "URL, so Outlook outside the internal network has no way to reach the mailbox.",
    remediation="Configure Outlook Anywhere's ExternalHostname or the MAPI virtual directory's "
    "ExternalUrl.",
)

AVAILABILITY_SAME = FindingSpec(
    code="autodiscover.settings.availability_url",
    status=Status.PASS,
    title="Availability (free/busy) URL: the EWS URL",
    meaning="ASUrl names the Availability service, which answers free/busy requests; it is an "
    "EWS URL, here the same as EwsUrl. (ASUrl is not the ActiveSync URL: that comes from the "
    "mobilesync schema or Autodiscover v2.)",
    reference=ASURL,
)
AVAILABILITY_DIFFERS = FindingSpec(
    code="autodiscover.settings.availability_url_differs",
    status=Status.PASS,
    title="Availability (free/busy) URL differs from the EWS URL",
    meaning="ASUrl, the Availability service that answers free/busy requests, names another "
    "URL than EwsUrl. This is normal when the mailbox's site publishes its own EWS endpoint "
    "(several sites or forests); free/busy requests go to ASUrl. Both URLs are in the "
    "evidence.",
    remediation="Nothing to do if ASUrl is the EWS URL of the mailbox's site; otherwise set "
    "that site's ExternalUrl/InternalUrl (Set-WebServicesVirtualDirectory).",
    reference=ASURL,
)

# --- redirects ----------------------------------------------------------------------------------

REDIRECT_ADDR = FindingSpec(
    code="autodiscover.redirect.address",
    status=Status.PASS,
    title="Autodiscover redirects to another address (redirectAddr)",
    meaning="The server says the mailbox is known under another address; discovery starts "
    "again from the first method with that address, as Outlook does.",
    reference=OXDSCLI,
)
REDIRECT_URL = FindingSpec(
    code="autodiscover.redirect.url",
    status=Status.PASS,
    title="Autodiscover redirects to another URL (redirectUrl)",
    meaning="The server sends the client to another Autodiscover URL, where the request is "
    "sent again.",
    reference=OXDSCLI,
)
REDIRECT_HTTP = FindingSpec(
    code="autodiscover.redirect.http",
    status=Status.PASS,
    title="HTTP redirect followed",
    meaning="The server answered with a 301/302/307 to another https URL; it was followed "
    "(counted among the at most 10 redirects).",
)
REDIRECT_SAME_ADDRESS = FindingSpec(
    code="autodiscover.redirect.same_address",
    status=Status.FAIL,
    title="redirectAddr names the same address",
    meaning="A redirect to the address that was asked for is invalid (MS-OXDSCLI): clients "
    "stop, or loop until their redirect limit.",
    remediation="Fix the mailbox's targetAddress / the mail user's ExternalEmailAddress.",
    reference=OXDSCLI,
)
REDIRECT_LOOP = FindingSpec(
    code="autodiscover.redirect.loop",
    status=Status.FAIL,
    title="Autodiscover redirect loop",
    meaning="A redirect leads back to a URL (or an address) already visited; clients would "
    "loop until their limit and fail.",
    remediation="Follow the chain in the steps and fix the redirect that points back.",
    reference=OXDSCLI,
)
REDIRECT_TOO_MANY = FindingSpec(
    code="autodiscover.redirect.too_many",
    status=Status.FAIL,
    title="More than 10 Autodiscover redirects",
    meaning="Clients give up after 10 redirects (MS-OXDISCO); so did rca.",
    remediation="Shorten the chain of redirects (the steps show each hop).",
    reference=OXDISCO,
)
REDIRECT_INSECURE = FindingSpec(
    code="autodiscover.redirect.insecure",
    status=Status.FAIL,
    title="Redirect to a URL that is not https: refused",
    meaning="A redirect points to http, file or another scheme. Clients must only follow "
    "Autodiscover redirects to https (credentials and settings would otherwise be exposed or "
    "forged); rca did not follow it.",
    remediation="Make the redirect point at the https URL of the Autodiscover service.",
    reference=OXDISCO,
)
REDIRECT_WITH_CREDENTIALS = FindingSpec(
    code="autodiscover.redirect.credentials_in_url",
    status=Status.FAIL,
    title="Redirect URL carries a user name or password: refused",
    meaning="The redirect URL has a user:password@ part. Clients must not use it; it leaks "
    "credentials into logs and histories.",
    remediation="Remove the credentials from the redirect URL.",
)
REDIRECT_INVALID = FindingSpec(
    code="autodiscover.redirect.invalid",
    status=Status.FAIL,
    title="The redirect target is not usable",
    meaning="redirectAddr is not an e-mail address, or redirectUrl / Location is not a URL.",
    remediation="Fix the redirect's target (the detail shows what was sent).",
)
REDIRECT_OTHER_DOMAIN = FindingSpec(
    code="autodiscover.redirect.other_domain",
    status=Status.WARN,
    title="Redirect to another domain: credentials withheld",
    meaning="The redirect leads outside the e-mail domain. Outlook asks the user whether to "
    "trust it; rca does not send the credentials there unless told to with --trust-redirect "
    "DOMAIN, so the settings beyond it were not fetched.",
    remediation="If the redirect is expected (a hosted service, a hybrid tenant), run again "
    "with --trust-redirect <domain>; otherwise find what sends clients away.",
)
REDIRECT_TRUSTED = FindingSpec(
    code="autodiscover.redirect.trusted_domain",
    status=Status.PASS,
    title="Redirect to another domain trusted by --trust-redirect",
    meaning="The redirect leads outside the e-mail domain, to a domain you trusted, so "
    "credentials were sent there.",
)

# --- methods that prompt the user -----------------------------------------------------------------

HTTP_REDIRECT_METHOD = FindingSpec(
    code="autodiscover.method.http_redirect",
    status=Status.WARN,
    title="Autodiscover works only through the HTTP redirect method",
    meaning="Settings were found by following the redirect of http://autodiscover.<domain>. "
    'Outlook then asks the user "Allow this website to configure server settings?", and '
    "users learn to click yes to any site.",
    remediation="Publish Autodiscover at https://autodiscover.<domain> (a certificate for that "
    "name) or with an SRV record inside the domain.",
    reference=OXDISCO,
)
HTTP_REDIRECT_NONE = FindingSpec(
    code="autodiscover.http_redirect.none",
    status=Status.PASS,
    title="No HTTP redirect offered",
    meaning="http://autodiscover.<domain> does not redirect to an https Autodiscover URL; "
    "clients move on to the SRV method.",
)
SRV_NONE = FindingSpec(
    code="autodiscover.srv.none",
    status=Status.PASS,
    title="No _autodiscover._tcp SRV record",
    meaning="The domain publishes no Autodiscover SRV record; that method is not used.",
    reference=OXDISCO,
)
SRV_FAILED = FindingSpec(
    code="autodiscover.srv.lookup_failed",
    status=Status.INCONCLUSIVE,
    title="The Autodiscover SRV record could not be looked up",
    meaning="The DNS query failed (SERVFAIL, timeout); whether the domain publishes one is "
    "unknown.",
    remediation="Run again; if it persists, check the domain's DNS servers and delegation.",
)
SRV_OUTSIDE_DOMAIN = FindingSpec(
    code="autodiscover.srv.outside_domain",
    status=Status.WARN,
    title="The Autodiscover SRV record points outside the e-mail domain",
    meaning='Outlook asks the user "Allow this website to configure server settings?" before '
    "using an SRV target outside the domain, and rca withholds credentials there unless "
    "--trust-redirect names its domain.",
    remediation="Publish Autodiscover under the e-mail domain's own names, or accept the "
    "prompt as part of the setup (hosted services).",
    reference=OXDISCO,
)

# --- the outcome --------------------------------------------------------------------------------

FOUND = FindingSpec(
    code="autodiscover.found",
    status=Status.PASS,
    title="Autodiscover works",
    meaning="A discovery method returned the user's settings; the detail names the method "
    "and URL, the facts hold the settings other checks use.",
)
NONE_FOUND = FindingSpec(
    code="autodiscover.none",
    status=Status.FAIL,
    title="No Autodiscover method returned settings",
    meaning="Every method was tried (root domain, autodiscover host, HTTP redirect, SRV) and "
    "none returned the user's settings, so Outlook and mobile clients cannot configure "
    "themselves. The steps show where each method broke.",
    remediation="Publish Autodiscover at https://autodiscover.<domain>/autodiscover/"
    "autodiscover.xml with a valid certificate for that name (or an SRV record), and fix the "
    "failure shown for that method.",
    reference=OXDISCO,
)
NOT_JUDGED = FindingSpec(
    code="autodiscover.not_judged",
    status=Status.INCONCLUSIVE,
    title="Whether Autodiscover works could not be judged",
    meaning="Hosts answered, but the settings could not be requested (no credentials, or "
    "credentials withheld at a redirect to another domain).",
    remediation="Run again with credentials (and --trust-redirect for expected redirects).",
)

# --- Autodiscover v2 and mobilesync ---------------------------------------------------------------

V2_OK = FindingSpec(
    code="autodiscover.v2.ok",
    status=Status.PASS,
    title="Autodiscover v2 (JSON) answers",
    meaning="autodiscover.json/v1.0 returned a URL for the protocol, as new Outlook, Outlook "
    "mobile and Microsoft 365 clients expect.",
    reference=V2_DOC,
)
V2_UNAVAILABLE = FindingSpec(
    code="autodiscover.v2.unavailable",
    status=Status.WARN,
    title="Autodiscover v2 (JSON) does not answer",
    meaning="autodiscover.json/v1.0 gave no usable answer for this protocol. Outlook for "
    "Windows still uses the XML service, but new Outlook and Outlook mobile rely on v2.",
    remediation="Exchange 2016 CU and later serve it at /autodiscover/autodiscover.json; make "
    "sure proxies pass that path.",
    reference=V2_DOC,
)
V2_MISMATCH = FindingSpec(
    code="autodiscover.v2.mismatch",
    status=Status.WARN,
    title="Autodiscover v2 and the XML service disagree",
    meaning="The JSON service names another URL for a protocol than the XML service does "
    "(EwsUrl for EWS, the mobilesync answer for ActiveSync), so clients get different "
    "endpoints depending on which they ask.",
    remediation="Make the virtual directories' URLs consistent on every server behind the "
    "Autodiscover names.",
)
MOBILESYNC_OK = FindingSpec(
    code="autodiscover.mobilesync.ok",
    status=Status.PASS,
    title="ActiveSync Autodiscover (mobilesync) answers",
    meaning="The mobilesync schema returned the ActiveSync URL mobile devices will use; the "
    "ActiveSync check tests it.",
    reference=MOBILESYNC_DOC,
)
MOBILESYNC_FAILED = FindingSpec(
    code="autodiscover.mobilesync.failed",
    status=Status.FAIL,
    title="ActiveSync Autodiscover (mobilesync) failed",
    meaning="The request in the mobilesync schema got no ActiveSync URL; mobile devices must "
    "then be configured by hand. The detail says why.",
    remediation="Check the ActiveSync virtual directory's ExternalUrl and that ActiveSync is "
    "enabled for the mailbox.",
    reference=MOBILESYNC_DOC,
)

FINDINGS = (
    SCP_SKIPPED,
    NOT_OFFERED,
    UNREACHABLE,
    TLS_FAILED,
    CREDENTIALS_WITHHELD,
    TLS_INSECURE,
    NO_CREDENTIALS,
    AUTH_OFFERED,
    AUTH_NONE_USABLE,
    AUTH_ANONYMOUS,
    AUTH_OK,
    AUTH_REJECTED,
    AUTH_FAILED,
    HTTP_STATUS,
    RESPONSE_TOO_LARGE,
    RESPONSE_SLOW,
    RESPONSE_CONTENT_TYPE,
    RESPONSE_UNSAFE,
    RESPONSE_MALFORMED,
    RESPONSE_NOT_AUTODISCOVER,
    *ERROR_SPECS.values(),
    ERROR_OTHER,
    SETTINGS_FOUND,
    SETTINGS_INSECURE_URL,
    SETTINGS_UNVOUCHED,
    SETTINGS_NO_EWS,
    SETTINGS_NO_EXTERNAL,
    AVAILABILITY_SAME,
    AVAILABILITY_DIFFERS,
    REDIRECT_ADDR,
    REDIRECT_URL,
    REDIRECT_HTTP,
    REDIRECT_SAME_ADDRESS,
    REDIRECT_LOOP,
    REDIRECT_TOO_MANY,
    REDIRECT_INSECURE,
    REDIRECT_WITH_CREDENTIALS,
    REDIRECT_INVALID,
    REDIRECT_OTHER_DOMAIN,
    REDIRECT_TRUSTED,
    HTTP_REDIRECT_METHOD,
    HTTP_REDIRECT_NONE,
    SRV_NONE,
    SRV_FAILED,
    SRV_OUTSIDE_DOMAIN,
    FOUND,
    NONE_FOUND,
    NOT_JUDGED,
    V2_OK,
    V2_UNAVAILABLE,
    V2_MISMATCH,
    MOBILESYNC_OK,
    MOBILESYNC_FAILED,
)
