"""Purpose-built TCP servers for behaviour no real server shows on purpose.

Each server binds 127.0.0.1 on port 0, runs in a daemon thread, and serves every
connection with one *script*: a function of the connected socket. Scripts cover the
hostile cases (silence, a 1 MB line, garbage, resets, trickling, refusals). The server
stops, and closes every connection, when its context manager exits.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Script = Callable[[socket.socket, threading.Event], None]


class TcpServer:
    """A listening socket whose connections are each handled by ``script``."""

    def __init__(
        self, script: Script, *, family: int = socket.AF_INET, address: str | None = None,
        port: int = 0,
    ) -> None:
        self.script = script
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        default = "127.0.0.1" if family == socket.AF_INET else "::1"
        self.sock.bind((address or default, port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.address, self.port = self.sock.getsockname()[:2]
        self.stop = threading.Event()
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.script(conn, self.stop)
            except OSError:
                pass

    def __enter__(self) -> TcpServer:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._accept.join(timeout=2)
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()


@contextmanager
def serve(script: Script, *, address: str | None = None, port: int = 0) -> Iterator[TcpServer]:
    """Run a :class:`TcpServer` (on ``address:port``, default loopback:any) for the block."""
    with TcpServer(script, address=address, port=port) as server:
        yield server


# --- scripts ---------------------------------------------------------------------------------


def say(*lines: bytes, then_wait: bool = True) -> Script:
    """Send ``lines`` (each as given: include CRLF), then keep the connection open."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        for line in lines:
            conn.sendall(line)
        if then_wait:
            stop.wait(10)

    return script


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept and never say anything."""
    stop.wait(10)


def reset(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, then reset the connection (SO_LINGER 0 makes close send RST)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def trickle(data: bytes, *, every: float) -> Script:
    """Send ``data`` one byte at a time, ``every`` seconds apart."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        for byte in data:
            if stop.wait(every):
                return
            conn.sendall(bytes([byte]))
        stop.wait(10)

    return script


def delayed(seconds: float, *lines: bytes) -> Script:
    """Wait, then send ``lines``."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        if stop.wait(seconds):
            return
        for line in lines:
            conn.sendall(line)
        stop.wait(10)

    return script


def huge_line(size: int) -> Script:
    """Send ``size`` bytes without a line ending."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        chunk = b"2" * 65536
        sent = 0
        while sent < size and not stop.is_set():
            try:
                conn.sendall(chunk)
            except OSError:
                return
            sent += len(chunk)
        stop.wait(10)

    return script


def smtp_server(*, starttls: bool = True, extra: bytes = b"") -> Script:
    """A minimal SMTP dialogue up to STARTTLS (then answers TLS garbage)."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 hostile.test ESMTP\r\n")
        buf = b""
        conn.settimeout(5)
        while not stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                return
            buf += data
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                cmd = line.split(b" ", 1)[0].upper()
                if cmd == b"EHLO":
                    caps = b"250-hostile.test\r\n250-PIPELINING\r\n"
                    caps += b"250-STARTTLS\r\n" if starttls else b""
                    conn.sendall(caps + b"250 8BITMIME\r\n")
                elif cmd == b"STARTTLS":
                    conn.sendall(b"220 go ahead\r\n" + extra)
                    time.sleep(0.05)
                    conn.sendall(b"\x15\x03\x01\x00\x02\x02\x28 not a TLS server hello")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 unknown\r\n")

    return script


def server_context(pki: Any, name: str, *dns_names: str) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for ``dns_names`` from ``pki`` (a
    :class:`~analyzer.lab.pki.LabPKI`), issued under ``name``."""
    from analyzer.lab.pki import CertSpec  # noqa: PLC0415 - only TLS servers need it

    cert = pki.issue(CertSpec(name=name, dns_names=dns_names))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


def read_http_request(
    rfile: Any, *, max_body: int = 10_000_000
) -> tuple[str, str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request from a binary file object: method, target, headers (names
    lower-cased) and the body of its Content-Length (unread past ``max_body``); None at the
    end of the connection."""
    line = rfile.readline(65536)
    if not line:
        return None
    method, target = (line.decode("latin-1").split(" ") + ["", ""])[:2]
    headers: dict[str, str] = {}
    while True:
        raw = rfile.readline(65536)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = rfile.read(length) if 0 < length < max_body else b""
    return method, target, headers, body


def tls_then(context: Any, after: Script | None = None) -> Script:
    """Implicit TLS with ``context`` (an ``ssl.SSLContext`` for servers), then ``after``."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (OSError, ValueError):
            return
        with tls:
            if after is not None:
                after(tls, stop)
            else:
                stop.wait(2)

    return script


def smtp_starttls(context: Any) -> Script:
    """SMTP up to STARTTLS, then a real TLS handshake with ``context``."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        conn.sendall(b"220 tls.test ESMTP\r\n")
        reader = conn.makefile("rb", buffering=0)
        while not stop.is_set():
            line = reader.readline()
            if not line:
                return
            cmd = line.split(b" ", 1)[0].strip().upper()
            if cmd == b"EHLO":
                conn.sendall(b"250-tls.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            elif cmd == b"STARTTLS":
                conn.sendall(b"220 ready\r\n")
                try:
                    tls = context.wrap_socket(conn, server_side=True)
                except (OSError, ValueError):
                    return
                with tls, tls.makefile("rb") as rd:
                    tls.settimeout(5)
                    while not stop.is_set():
                        data = rd.readline()
                        if not data:
                            return
                        if data.upper().startswith(b"EHLO"):
                            tls.sendall(b"250-tls.test\r\n250 AUTH PLAIN\r\n")
                        else:
                            tls.sendall(b"221 bye\r\n")
                            return
                return
            else:
                conn.sendall(b"502 no\r\n")

    return script
