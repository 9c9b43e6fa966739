"""The lab's Dovecot and Postfix, used from the client namespace with the stdlib clients.

Clients connect by name (``lab_system_resolver`` sends ``getaddrinfo`` to the lab DNS) and
trust only the lab CA, so every handshake also checks that the certificate matches the name.
"""

from __future__ import annotations

import email.message
import imaplib
import poplib
import smtplib
import socket
import ssl
import time
import uuid
from pathlib import Path

import dns.resolver
import pytest

from analyzer.lab import LabInfo

pytestmark = pytest.mark.lab

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def tls(lab: LabInfo) -> ssl.SSLContext:
    """Trusts the lab CA and nothing else; checks host names."""
    return ssl.create_default_context(cafile=str(lab.ca_file))


def _user(lab: LabInfo, scenario: str = "healthy") -> tuple[str, str]:
    address, password = lab.scenario(scenario).users[0]
    return address, password


def test_imaps_login(
    lab: LabInfo, tls: ssl.SSLContext, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given the healthy mail host and its user
    host = lab.scenario("healthy").hosts["mail"].name
    address, password = _user(lab)
    # When they log in over IMAPS
    with imaplib.IMAP4_SSL(host, 993, ssl_context=tls, timeout=TIMEOUT) as imap:
        status, _ = imap.login(address, password)
        selected, _ = imap.select("INBOX")
        # Then login and SELECT succeed over a verified TLS session
        assert (status, selected) == ("OK", "OK")
        assert imap.sock.getpeercert()["subject"] == ((("commonName", host),),)  # type: ignore[attr-defined]


def test_imap_refuses_plaintext_login_before_starttls(
    lab: LabInfo, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given a plain connection to IMAP 143 (the client has its own address: not "secured")
    host = lab.scenario("healthy").hosts["mail"].name
    address, password = _user(lab)
    with imaplib.IMAP4(host, 143, timeout=TIMEOUT) as imap:
        # When the capabilities are read and a LOGIN is tried
        # Then STARTTLS is offered, LOGIN disabled, and the attempt refused
        assert "STARTTLS" in imap.capabilities
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(address, password)


def test_imap_starttls_login(
    lab: LabInfo, tls: ssl.SSLContext, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given a plain connection to IMAP 143
    host = lab.scenario("healthy").hosts["mail"].name
    address, password = _user(lab)
    with imaplib.IMAP4(host, 143, timeout=TIMEOUT) as imap:
        # When STARTTLS is negotiated, then LOGIN sent
        imap.starttls(ssl_context=tls)
        status, _ = imap.login(address, password)
        # Then the login succeeds
        assert status == "OK"


def test_pop3s_login(
    lab: LabInfo, tls: ssl.SSLContext, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given the healthy mail host
    host = lab.scenario("healthy").hosts["mail"].name
    address, password = _user(lab)
    # When the user logs in over POP3S
    pop = poplib.POP3_SSL(host, 995, context=tls, timeout=TIMEOUT)
    try:
        pop.user(address)
        reply = pop.pass_(password)
        count, _size = pop.stat()
    finally:
        pop.quit()
    # Then the server accepts and reports a mailbox
    assert reply.startswith(b"+OK")
    assert count >= 0


def test_smtp_25_offers_starttls_and_no_auth(
    lab: LabInfo, tls: ssl.SSLContext, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given the healthy MX on port 25
    mx = lab.scenario("healthy").hosts["mx"].name
    with smtplib.SMTP(mx, 25, local_hostname="client.lab.test", timeout=TIMEOUT) as smtp:
        # When EHLO, STARTTLS, EHLO again
        code, banner = smtp.ehlo()
        assert code == 250 and banner.startswith(mx.encode())
        assert smtp.has_extn("starttls")
        smtp.starttls(context=tls)
        smtp.ehlo()
        # Then the session is encrypted, and an MX offers no AUTH
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert not smtp.has_extn("auth")


def test_submission_offers_auth_only_after_starttls(
    lab: LabInfo, tls: ssl.SSLContext, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given the healthy mail host's submission port
    host = lab.scenario("healthy").hosts["mail"].name
    address, password = _user(lab)
    with smtplib.SMTP(host, 587, local_hostname="client.lab.test", timeout=TIMEOUT) as smtp:
        # When EHLO is sent before and after STARTTLS
        smtp.ehlo()
        before = smtp.has_extn("auth")
        smtp.starttls(context=tls)
        smtp.ehlo()
        after = smtp.esmtp_features.get("auth", "")
        code, _ = smtp.login(address, password)
    # Then AUTH appears only once encrypted, and the login succeeds
    assert not before
    assert "PLAIN" in after.upper()
    assert code == 235


def test_submissions_465_implicit_tls_login(
    lab: LabInfo, tls: ssl.SSLContext, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given port 465 of the healthy mail host
    host = lab.scenario("healthy").hosts["mail"].name
    address, password = _user(lab)
    # When the client logs in over implicit TLS
    with smtplib.SMTP_SSL(
        host, 465, local_hostname="client.lab.test", context=tls, timeout=TIMEOUT
    ) as smtp:
        code, _ = smtp.login(address, password)
    # Then it is accepted
    assert code == 235


def test_submitted_message_is_delivered_to_imap(
    lab: LabInfo, tls: ssl.SSLContext, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given a message with a unique subject
    host = lab.scenario("healthy").hosts["mail"].name
    address, password = _user(lab)
    subject = f"lab delivery {uuid.uuid4()}"
    message = email.message.EmailMessage()
    message["From"] = address
    message["To"] = address
    message["Subject"] = subject
    message.set_content("sent through Postfix, delivered by Dovecot LMTP\n")
    # When it is submitted on 587
    with smtplib.SMTP(host, 587, local_hostname="client.lab.test", timeout=TIMEOUT) as smtp:
        smtp.starttls(context=tls)
        smtp.login(address, password)
        smtp.send_message(message)
    # Then it shows up in the user's INBOX over IMAP (bounded wait, not a fixed sleep)
    deadline = time.monotonic() + 20
    found: list[str] = []
    with imaplib.IMAP4_SSL(host, 993, ssl_context=tls, timeout=TIMEOUT) as imap:
        imap.login(address, password)
        while time.monotonic() < deadline:
            imap.select("INBOX")
            _, data = imap.search(None, "SUBJECT", f'"{subject}"')
            found = [n.decode() for n in data[0].split()]
            if found:
                break
            time.sleep(0.1)
        assert found, f"message {subject!r} not delivered within 20 s"
        _, fetched = imap.fetch(found[0], "(BODY[HEADER.FIELDS (SUBJECT)])")
    header = fetched[0]
    assert isinstance(header, tuple) and subject.encode() in header[1]


def test_expired_cert_scenario_presents_an_expired_certificate(
    lab: LabInfo, tls: ssl.SSLContext
) -> None:
    # Given the expired-cert scenario's mail host
    mail = lab.scenario("expired-cert").hosts["mail"]
    # When a client that trusts the lab CA connects to IMAPS
    with socket.create_connection((mail.ipv4, 993), timeout=TIMEOUT) as sock:
        with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
            tls.wrap_socket(sock, server_hostname=mail.name)
    # Then verification fails because the certificate expired (X509_V_ERR_CERT_HAS_EXPIRED)
    assert excinfo.value.verify_code == 10


def test_expired_cert_scenario_keeps_good_certificates_elsewhere(
    lab: LabInfo, tls: ssl.SSLContext
) -> None:
    # Given the same scenario's autodiscover host, which has no certificate override
    host = lab.scenario("expired-cert").hosts["autodiscover"]
    # When a TLS session is opened on 443
    with socket.create_connection((host.ipv4, 443), timeout=TIMEOUT) as sock:
        with tls.wrap_socket(sock, server_hostname=host.name) as tls_sock:
            cert = tls_sock.getpeercert()
    # Then the certificate verifies and names the host
    assert cert is not None and cert["subject"] == ((("commonName", host.name),),)


def test_filtered_993_times_out(lab: LabInfo) -> None:
    # Given the filtered scenario, whose IMAPS port drops packets
    mail = lab.scenario("filtered").hosts["mail"]
    # When a connection is attempted with a short timeout
    # Then it times out (no answer at all)
    with pytest.raises(TimeoutError):
        socket.create_connection((mail.ipv4, 993), timeout=0.5).close()


def test_filtered_995_is_refused(lab: LabInfo) -> None:
    # Given the filtered scenario, whose POP3S port rejects
    mail = lab.scenario("filtered").hosts["mail"]
    # When connecting, over either family
    # Then a TCP reset refuses the connection
    for address in (mail.ipv4, mail.ipv6):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, 995), timeout=2).close()


def test_filtered_mx_ipv6_dropped_while_ipv4_open(lab: LabInfo) -> None:
    # Given the filtered scenario's MX
    mx = lab.scenario("filtered").hosts["mx"]
    # When port 25 is tried on each address
    socket.create_connection((mx.ipv4, 25), timeout=2).close()
    # Then IPv4 connects and IPv6 times out
    with pytest.raises(TimeoutError):
        socket.create_connection((mx.ipv6, 25), timeout=0.5).close()


def test_filtered_scenario_leaves_other_ports_open(lab: LabInfo) -> None:
    # Given the filtered scenario's mail host
    mail = lab.scenario("filtered").hosts["mail"]
    # When IMAP 143 is tried
    # Then it connects: only the listed ports are filtered
    socket.create_connection((mail.ipv4, 143), timeout=2).close()


def test_plaintext_auth_scenario_accepts_login_before_starttls(
    lab: LabInfo, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given the plaintext-auth scenario (Dovecot option in its `local` block only)
    host = lab.scenario("plaintext-auth").hosts["mail"].name
    address, password = _user(lab, "plaintext-auth")
    # When LOGIN is sent on IMAP 143 without STARTTLS
    with imaplib.IMAP4(host, 143, timeout=TIMEOUT) as imap:
        disabled = "LOGINDISABLED" in imap.capabilities
        status, _ = imap.login(address, password)
    # Then it is accepted (the healthy scenario refuses the same, see above)
    assert not disabled
    assert status == "OK"


def test_no_starttls_scenario_mx_offers_no_starttls(
    lab: LabInfo, lab_system_resolver: dns.resolver.Resolver
) -> None:
    # Given the no-starttls scenario's MX (Postfix -o override on its port-25 service only)
    scenario = lab.scenario("no-starttls")
    # When EHLO is sent on 25, and on the same scenario's submission port
    with smtplib.SMTP(scenario.hosts["mx"].name, 25, "client.lab.test", TIMEOUT) as smtp:
        smtp.ehlo()
        mx_starttls = smtp.has_extn("starttls")
    with smtplib.SMTP(scenario.hosts["mail"].name, 587, "client.lab.test", TIMEOUT) as smtp:
        smtp.ehlo()
        submission_starttls = smtp.has_extn("starttls")
    # Then the MX offers no STARTTLS, while submission still does
    assert not mx_starttls
    assert submission_starttls


def _login_processes(lab: LabInfo, service: str) -> set[int]:
    """PIDs of this lab's Dovecot ``service`` processes (children of its master)."""
    config = str(lab.directory / "dovecot")
    masters = set()
    children: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        if cmdline.startswith("/usr/sbin/dovecot") and config in cmdline:
            masters.add(int(entry.name))
        children[int(entry.name)] = (parent, cmdline)
    return {pid for pid, (parent, cmdline) in children.items()
            if parent in masters and cmdline.split(" ", 1)[0].endswith(f"/{service}")}  # fmt: skip


@pytest.mark.parametrize(("service", "port"), [("imap-login", 143), ("pop3-login", 110)])
def test_dovecot_serves_many_connections_per_login_process(
    lab: LabInfo, lab_system_resolver: dns.resolver.Resolver, service: str, port: int
) -> None:
    # Given four clients connected at once to the healthy mail host, each greeted
    host = lab.scenario("healthy").hosts["mail"].name
    clients = [socket.create_connection((host, port), timeout=TIMEOUT) for _ in range(4)]
    try:
        for client in clients:
            assert client.recv(200).startswith(b"+OK" if port == 110 else b"* OK")
        # Then one login process serves them all (Dovecot's high-performance mode): the
        # benchmarks do not pay a process and its TLS set-up for each of a check's ~30
        # connections, which real large installations do not either
        assert len(_login_processes(lab, service)) == 1
    finally:
        for client in clients:
            client.close()
