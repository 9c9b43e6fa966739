"""The tests the start page offers, grouped as ExRCA groups them.

Each test is a set of ``rca check --tests`` ids (the pipeline adds what they need) and
the form fields that make sense for it. A web run of a test is *the* ``rca check`` run
with the same flags (see :mod:`analyzer.operations.web.forms`): the catalogue only chooses flags.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "GROUPS", "WebTest", "find_test"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebTest:
    """One entry of the start page."""

    id: str
    group: str
    title: str
    summary: str
    #: ``--tests`` ids; empty: every default check (as a plain ``rca check``).
    tests: tuple[str, ...]
    #: What the target field asks for.
    target_label: str = "E-mail address"
    target_hint: str = "alice@example.com"
    #: Whether the test logs in: the credential fields are shown (and optional).
    credentials: bool = True
    #: Optional fields the test shows, each the ``rca check`` flag of the same name.
    fields: frozenset[str] = frozenset()


GROUPS = ("Exchange Server", "Internet e-mail", "Certificates and ports", "Everything")

CATALOGUE: tuple[WebTest, ...] = (
    WebTest(
        id="autodiscover",
        group="Exchange Server",
        title="Autodiscover",
        summary="Finds the Exchange settings of a mailbox the way Outlook does: every "
        "Autodiscover method, with the redirects and the answer.",
        tests=("autodiscover",),
        fields=frozenset({"autodiscover_url", "all_methods", "mobilesync"}),
    ),
    WebTest(
        id="ews",
        group="Exchange Server",
        title="Exchange Web Services",
        summary="Logs in to EWS as Outlook for Mac does and opens the Inbox (GetFolder); "
        "reports the server's version.",
        tests=("ews",),
        fields=frozenset({"ews_url", "autodiscover_url"}),
    ),
    WebTest(
        id="activesync",
        group="Exchange Server",
        title="Exchange ActiveSync",
        summary="Logs in as a new phone would: OPTIONS, FolderSync, and Provision when "
        "the server asks for it.",
        tests=("activesync",),
        fields=frozenset({"activesync_url", "autodiscover_url", "mobilesync"}),
    ),
    WebTest(
        id="outlook_anywhere",
        group="Exchange Server",
        title="Outlook Anywhere (RPC over HTTP)",
        summary="Checks the RPC over HTTP endpoint Outlook uses from outside the network.",
        tests=("outlook_anywhere",),
        fields=frozenset({"autodiscover_url"}),
    ),
    WebTest(
        id="mapi_http",
        group="Exchange Server",
        title="MAPI over HTTP",
        summary="Checks the MAPI over HTTP endpoint of current Outlook versions.",
        tests=("mapi_http",),
        fields=frozenset({"autodiscover_url"}),
    ),
    WebTest(
        id="inbound_smtp",
        group="Internet e-mail",
        title="Inbound SMTP e-mail",
        summary="What a sending server sees: MX records, SPF, DMARC, DKIM, MTA-STS, DNSSEC "
        "and DANE, then each MX on port 25 with STARTTLS and the recipient.",
        tests=("dns", "dnssec", "mailauth", "dane", "smtp"),
        target_label="E-mail address or domain",
        target_hint="alice@example.com or example.com",
        credentials=False,
        fields=frozenset({"dkim_selector", "relay_test"}),
    ),
    WebTest(
        id="outbound_smtp",
        group="Internet e-mail",
        title="Outbound SMTP (submission)",
        summary="Logs in to the submission service (587 with STARTTLS, 465 with TLS) as a "
        "mail client does; optionally sends a test message to the mailbox itself.",
        tests=("smtp",),
        fields=frozenset({"send_test_message"}),
    ),
    WebTest(
        id="imap",
        group="Internet e-mail",
        title="IMAP",
        summary="Logs in to IMAP (993, and 143 with STARTTLS) and opens the inbox.",
        tests=("imap",),
    ),
    WebTest(
        id="pop3",
        group="Internet e-mail",
        title="POP3",
        summary="Logs in to POP3 (995, and 110 with STLS) and reads the mailbox size; "
        "nothing is deleted.",
        tests=("pop3",),
    ),
    WebTest(
        id="certificates",
        group="Certificates and ports",
        title="Certificates and ports",
        summary="Which mail ports answer, and the certificate and TLS of every endpoint.",
        tests=("ports", "tls"),
        target_label="Domain, host or e-mail address",
        target_hint="example.com or mail.example.com:993",
        credentials=False,
        fields=frozenset({"port"}),
    ),
    WebTest(
        id="everything",
        group="Everything",
        title="Everything",
        summary="Every check rca has, as a plain rca check: DNS, mail authentication, "
        "Autodiscover, ports, certificates and each login.",
        tests=(),
        target_label="E-mail address or domain",
        target_hint="alice@example.com",
        fields=frozenset(
            {"autodiscover_url", "all_methods", "dkim_selector", "relay_test", "port"}
        ),
    ),
)


def find_test(test_id: str) -> WebTest | None:
    """The catalogue entry ``test_id``, or None."""
    for test in CATALOGUE:
        if test.id == test_id:
            return test
    return None
