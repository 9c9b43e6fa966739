"""Client sides of IMAP, POP3 and SMTP for the login probes, on rca's bounded line reader.

The login probes speak these protocols through :class:`~analyzer.protocols.net.Connection` rather
than imaplib/imapclient, poplib and smtplib in worker threads, because a diagnostic meets
hostile servers and the standard clients cannot bound what such a server sends:
imaplib reads an announced literal in one ``read(size)`` (a ``{2147483648}`` literal is
a 2 GB allocation), smtplib accepts any number of reply lines, and a thread stuck in a
read cannot be cancelled when the probe's deadline expires. Here every line is bounded
(:data:`analyzer.protocols.net.MAX_LINE`), every reply has a line budget, an IMAP literal has a
size limit, every read a timeout, and the whole dialogue is an asyncio task the pipeline
can cancel. What imapclient does well without touching the socket, it still does here: its
response parser reads LIST answers (quoting, NIL, modified UTF-7 names) once our reader
has bounded the lines. Connections go to the address rca resolved (``--resolver``/``--connect``)
with the host name as SNI and for certificate checks, and every line lands in the
step's transcript, secrets replaced (``shown=``).

Each session raises :class:`CommandRejected` when the server answers a command with a
refusal (it carries the reply, so the probe can quote the server's own words) and the
:mod:`analyzer.core.errors` ``NetError`` tree for everything else.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from analyzer.core.context import REDACTED
from analyzer.core.errors import ConnectionReset, NetTimeout, ProtocolViolation, map_exception
from analyzer.protocols.mailproto import EHLO_NAME
from analyzer.protocols.net import Connection, Reply, TlsInfo

__all__ = [
    "MAX_LITERAL",
    "CommandRejected",
    "ImapResponse",
    "ImapSession",
    "Pop3Session",
    "SaslStart",
    "SmtpSession",
    "oauthbearer",
    "sasl_plain",
    "sasl_start",
    "xoauth2",
]

#: The largest IMAP literal accepted. The probes read mailbox names, counts and, for the
#: round trip, one short header; nothing legitimate comes close (RFC 3501 4.3).
MAX_LITERAL = 1024 * 1024
#: The most untagged lines one IMAP command may produce (LIST of a very large mailbox).
MAX_IMAP_LINES = 50_000
#: Continuation requests accepted in one command (AUTHENTICATE: challenge + error).
MAX_CONTINUATIONS = 3
#: The most bytes an error challenge (XOAUTH2/OAUTHBEARER JSON) is shown with.
_CHALLENGE_SHOWN = 500


# --- SASL -------------------------------------------------------------------------------------


def sasl_plain(username: str, password: str) -> bytes:
    """RFC 4616 PLAIN: empty authorization identity, NUL, user, NUL, password."""
    return b"\0" + username.encode() + b"\0" + password.encode()


def xoauth2(username: str, token: str) -> bytes:
    """Google/Microsoft XOAUTH2: ``user=<u>^Aauth=Bearer <token>^A^A``."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(username: str, token: str, *, host: str, port: int) -> bytes:
    """RFC 7628 3.1 OAUTHBEARER initial client response (GS2 header with ``a=`` user)."""
    user = username.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslStart:
    """A SASL mechanism to authenticate with and its initial response (which holds the
    secret: it is sent, never shown); ``abort`` answers an error challenge."""

    mechanism: str
    initial: bytes
    abort: str = "*"


def sasl_start(
    mechanisms: Collection[str],
    *,
    user: str,
    token: str | None,
    password: str | None,
    host: str,
    port: int,
) -> SaslStart | None:
    """The strongest SASL mechanism the server offers for the credentials given.

    With a token: OAUTHBEARER (RFC 7628), then XOAUTH2; with a password: PLAIN. None
    when there is none in common: the protocol's own fallback comes next (IMAP LOGIN,
    POP3 USER/PASS, SMTP AUTH LOGIN), or the "no mechanism" finding.
    """
    if token is not None and "OAUTHBEARER" in mechanisms:
        initial = oauthbearer(user, token, host=host, port=port)
        return SaslStart(mechanism="OAUTHBEARER", initial=initial, abort="AQ==")
    if token is not None and "XOAUTH2" in mechanisms:
        return SaslStart(mechanism="XOAUTH2", initial=xoauth2(user, token), abort="")
    if password is not None and "PLAIN" in mechanisms:
        return SaslStart(mechanism="PLAIN", initial=sasl_plain(user, password))
    return None


def b64(data: bytes) -> str:
    """Base64 text (``=`` alone for an empty initial response, RFC 4959 / RFC 4954)."""
    return base64.b64encode(data).decode("ascii") if data else "="


def decode_challenge(text: str) -> str:
    """A server's SASL challenge as readable text (base64-decoded when it is base64)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        return text[:_CHALLENGE_SHOWN]
    shown = raw[:_CHALLENGE_SHOWN].decode("utf-8", "replace")
    return "".join(ch if ch >= " " or ch == "\t" else " " for ch in shown)


class CommandRejected(Exception):
    """The server answered a command, but with a refusal; ``reply`` holds its words."""

    def __init__(self, command: str, reply: Reply, *, status: str = "") -> None:
        super().__init__(f"{command} refused: {reply.text[:300]}")
        self.command = command
        self.reply = reply
        self.status = status

    @property
    def text(self) -> str:
        """The server's reply, lines joined."""
        return self.reply.text


async def _readexactly(conn: Connection, size: int, *, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            data = await conn.reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ConnectionReset(
            f"the connection closed inside a literal of {size:,} bytes", phase="read"
        ) from None
    except TimeoutError:
        raise NetTimeout(
            f"a literal of {size:,} bytes did not arrive in time", phase="read"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise map_exception(exc, phase="read") from exc
    conn.received += size
    return data


async def _upgrade(
    conn: Connection, context: ssl.SSLContext, *, server_hostname: str | None, timeout: float
) -> TlsInfo:
    # RFC 3207 4.2 / RFC 3501 6.2.1 / RFC 2595 4: data the server sent after its STARTTLS
    # answer and before the handshake would be read as if it came over TLS.
    if conn.reader._buffer:  # type: ignore[attr-defined]  # noqa: SLF001
        raise ProtocolViolation(
            "the server sent data after its STARTTLS answer and before the TLS handshake "
            "(a STARTTLS command-injection weakness)",
            phase="tls",
        )
    return await conn.start_tls(context, server_hostname=server_hostname, timeout=timeout)


# --- IMAP (RFC 3501 / RFC 9051) -----------------------------------------------------------------

_LITERAL = re.compile(r"\{(\d{1,20})\+?\}$")
_CODE = re.compile(r"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]\s*(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapResponse:
    """A tagged completion with the untagged lines that came before it."""

    status: str  # OK, NO, BAD
    code: str = ""  # the response code's atom, upper-case: AUTHENTICATIONFAILED...
    code_args: str = ""
    text: str = ""
    untagged: tuple[str, ...] = ()
    line: str = ""

    @property
    def ok(self) -> bool:
        """Whether the command completed with OK."""
        return self.status == "OK"

    def reply(self) -> Reply:
        """As a :class:`Reply` (for :class:`CommandRejected` and evidence)."""
        return Reply(lines=(*self.untagged[-20:], self.line))


def parse_status_text(rest: str) -> tuple[str, str, str]:
    """``[CODE args] text`` → (CODE, args, text); no code → ("", "", rest)."""
    m = _CODE.match(rest)
    if m is None:
        return "", "", rest
    return m.group(1).upper(), m.group(2) or "", m.group(3)


class ImapSession:
    """An IMAP client conversation over one :class:`Connection`.

    ``timeout`` is called before every command for the seconds it may take (the probe
    passes its per-operation timeout, bounded by the deadline).
    """

    def __init__(self, conn: Connection, *, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.capabilities: tuple[str, ...] = ()
        self._tag = 0

    # --- reading -------------------------------------------------------------------------------

    async def _logical_line(self, deadline: float) -> str:
        """One response line with its literals inlined (each bounded by MAX_LITERAL)."""
        line = await self.conn.readline(timeout=self._left(deadline))
        parts = []
        while (m := _LITERAL.search(line)) is not None:
            size = int(m.group(1))
            if size > MAX_LITERAL:
                raise ProtocolViolation(
                    f"the server announced a literal of {size:,} bytes (the limit is "
                    f"{MAX_LITERAL:,}): a malicious or broken server",
                    phase="read",
                )
            data = await _readexactly(self.conn, size, timeout=self._left(deadline))
            text = data.decode("utf-8", "replace")
            if self.conn.transcript is not None:
                self.conn.transcript.recv(f"[literal of {size} bytes] {text[:200]}")
            parts.append(line[: m.start()] + _quote(text))
            line = await self.conn.readline(timeout=self._left(deadline))
        parts.append(line)
        return "".join(parts)

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NetTimeout("the server did not finish its answer in time", phase="read")
        return left

    async def greeting(self) -> tuple[str, str]:
        """The greeting: (status OK/PREAUTH/BYE, its line). ProtocolViolation if not IMAP."""
        deadline = time.monotonic() + self.timeout
        line = await self._logical_line(deadline)
        word = line[2:].split(" ", 1)[0].upper() if line.startswith("* ") else ""
        if word not in ("OK", "PREAUTH", "BYE"):
            raise ProtocolViolation(f"not an IMAP greeting: {line[:200]!r}", phase="read")
        rest = line[2 + len(word) :].strip()
        code, args, _ = parse_status_text(rest)
        if code == "CAPABILITY":
            self.capabilities = tuple(args.upper().split())
        return word, line

    async def _complete(
        self, tag: str, deadline: float, *, continuations: list[str] | None = None
    ) -> ImapResponse | str:
        """Read up to the tagged line; a ``+`` line returns its text when ``continuations``
        is given (a list counting them), else it is a protocol violation."""
        untagged: list[str] = []
        while True:
            line = await self._logical_line(deadline)
            if line.startswith("+"):
                if continuations is None:
                    raise ProtocolViolation(
                        f"the server asked for more data where no command needs any: "
                        f"{line[:200]!r}",
                        phase="read",
                    )
                continuations.append(line)
                if len(continuations) > MAX_CONTINUATIONS:
                    raise ProtocolViolation(
                        f"the server kept asking for more data ({len(continuations)} "
                        "continuation requests)",
                        phase="read",
                    )
                return line[1:].strip()
            if line.startswith(f"{tag} "):
                status, _, rest = line[len(tag) + 1 :].partition(" ")
                status = status.upper()
                if status not in ("OK", "NO", "BAD"):
                    raise ProtocolViolation(f"not an IMAP completion: {line[:200]!r}", phase="read")
                code, args, text = parse_status_text(rest)
                if code == "CAPABILITY":
                    self.capabilities = tuple(args.upper().split())
                return ImapResponse(
                    status=status, code=code, code_args=args, text=text,
                    untagged=tuple(untagged), line=line,
                )  # fmt: skip
            if not line.startswith("* "):
                raise ProtocolViolation(f"not an IMAP response line: {line[:200]!r}", phase="read")
            untagged.append(line)
            if len(untagged) > MAX_IMAP_LINES:
                raise ProtocolViolation(
                    f"the answer went on for more than {MAX_IMAP_LINES:,} lines", phase="read"
                )
            upper = line[2:].upper()
            if upper.startswith("CAPABILITY "):
                self.capabilities = tuple(line[13:].upper().split())
            elif upper.startswith("BYE"):
                # RFC 3501 7.1.5: the server is closing; the tagged line may never come.
                raise CommandRejected(tag, Reply(lines=tuple(untagged[-5:])), status="BYE")

    def _next_tag(self) -> str:
        self._tag += 1
        return f"a{self._tag}"

    async def command(self, text: str, *, shown: str | None = None) -> ImapResponse:
        """Send ``<tag> text`` and read its completion (untagged lines included)."""
        tag = self._next_tag()
        deadline = time.monotonic() + self.timeout
        await self.conn.send(
            f"{tag} {text}", timeout=self.timeout, shown=None if shown is None else f"{tag} {shown}"
        )
        result = await self._complete(tag, deadline)
        assert isinstance(result, ImapResponse)  # noqa: S101 - no continuation allowed
        return result

    # --- commands ------------------------------------------------------------------------------

    async def capability(self) -> tuple[str, ...]:
        """CAPABILITY (RFC 3501 6.1.1): the atoms, upper-cased."""
        response = await self.command("CAPABILITY")
        if not response.ok:
            raise CommandRejected("CAPABILITY", response.reply(), status=response.status)
        return self.capabilities

    async def starttls(
        self, context: ssl.SSLContext, *, server_hostname: str | None
    ) -> TlsInfo:
        """STARTTLS (RFC 3501 6.2.1) and the handshake; the capabilities are forgotten."""
        response = await self.command("STARTTLS")
        if not response.ok:
            raise CommandRejected("STARTTLS", response.reply(), status=response.status)
        info = await _upgrade(
            self.conn, context, server_hostname=server_hostname, timeout=self.timeout
        )
        self.capabilities = ()
        return info

    async def login(self, username: str, password: str) -> ImapResponse:
        """LOGIN (RFC 3501 6.2.3), the password as a quoted string or a literal."""
        user = _astring(username)
        if _quotable(password):
            return await self.command(
                f"LOGIN {user} {_quote(password)}", shown=f"LOGIN {user} {REDACTED}"
            )
        # A password with characters a quoted string cannot hold goes as a literal.
        tag = self._next_tag()
        deadline = time.monotonic() + self.timeout
        data = password.encode()
        await self.conn.send(
            f"{tag} LOGIN {user} {{{len(data)}}}", timeout=self.timeout,
            shown=f"{tag} LOGIN {user} {{{len(data)}}}",
        )  # fmt: skip
        first = await self._complete(tag, deadline, continuations=[])
        if isinstance(first, ImapResponse):
            return first
        await self._send_raw(data + b"\r\n", shown=REDACTED)
        result = await self._complete(tag, deadline)
        assert isinstance(result, ImapResponse)  # noqa: S101
        return result

    async def authenticate(
        self, mechanism: str, initial: bytes, *, abort: str = "*"
    ) -> tuple[ImapResponse, tuple[str, ...]]:
        """AUTHENTICATE (RFC 3501 6.2.2), with SASL-IR (RFC 4959) when offered.

        Returns the completion and any error challenges the server sent (decoded), which
        OAuth mechanisms use to explain a refusal (RFC 7628 3.2.2); ``abort`` is the line
        that answers them ("*" cancels, RFC 3501 6.2.2; XOAUTH2 wants an empty line and
        OAUTHBEARER ``AQ==``, a base64 %x01).
        """
        tag = self._next_tag()
        deadline = time.monotonic() + self.timeout
        encoded = b64(initial)
        if "SASL-IR" in self.capabilities:
            await self.conn.send(
                f"{tag} AUTHENTICATE {mechanism} {encoded}", timeout=self.timeout,
                shown=f"{tag} AUTHENTICATE {mechanism} {REDACTED}",
            )  # fmt: skip
        else:
            await self.conn.send(f"{tag} AUTHENTICATE {mechanism}", timeout=self.timeout)
            first = await self._complete(tag, deadline, continuations=[])
            if isinstance(first, ImapResponse):
                return first, ()
            await self.conn.send(encoded, timeout=self.timeout, shown=REDACTED)
        challenges: list[str] = []
        seen: list[str] = []
        while True:
            result = await self._complete(tag, deadline, continuations=seen)
            if isinstance(result, ImapResponse):
                return result, tuple(challenges)
            challenges.append(decode_challenge(result))
            await self.conn.send(abort, timeout=self.timeout)

    async def examine(self, mailbox: str = "INBOX") -> ImapResponse:
        """EXAMINE (RFC 3501 6.3.2): SELECT without the right to change anything."""
        return await self.command(f"EXAMINE {_astring(mailbox)}")

    async def select(self, mailbox: str = "INBOX") -> ImapResponse:
        """SELECT (read-write): only the round trip uses it, to delete its own message."""
        return await self.command(f"SELECT {_astring(mailbox)}")

    async def list_all(self) -> ImapResponse:
        """LIST "" "*": every mailbox the user sees."""
        return await self.command('LIST "" "*"')

    async def logout(self) -> None:
        """LOGOUT; a server that closes at once is fine."""
        try:
            await self.command("LOGOUT")
        except (CommandRejected, ConnectionReset):
            pass

    async def _send_raw(self, data: bytes, *, shown: str) -> None:
        if self.conn.transcript is not None:
            self.conn.transcript.send(shown)
        await self.conn.write(data, timeout=self.timeout)


def mailbox_status(response: ImapResponse) -> dict[str, int]:
    """EXISTS, RECENT, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ from a SELECT/EXAMINE answer."""
    found: dict[str, int] = {}
    for line in response.untagged:
        words = line[2:].split()
        if len(words) >= 2 and words[0].isdigit() and words[1].upper() in ("EXISTS", "RECENT"):
            found[words[1].upper()] = int(words[0])
            continue
        code, args, _ = parse_status_text(line[2:].partition(" ")[2])
        if code in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ", "UNSEEN") and args.isdigit():
            found[code] = int(args)
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailbox:
    """One mailbox of a LIST answer (RFC 9051 7.3.1)."""

    name: str  # decoded from modified UTF-7 (RFC 3501 5.1.3) where it is that
    flags: tuple[str, ...]  # as sent: \\HasNoChildren, \\Sent (RFC 6154)...
    delimiter: str | None  # None: NIL, a flat namespace


#: The special-use attributes of RFC 6154 2 (clients map their folders by these).
SPECIAL_USE: tuple[str, ...] = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk",
                                "\\Sent", "\\Trash")


def list_mailboxes(response: ImapResponse) -> tuple[Mailbox, ...]:
    """The mailboxes of a LIST answer, parsed by imapclient's response parser.

    Our line reader has already bounded every line and inlined every literal as a quoted
    string, so imapclient sees only whole, bounded lines. An untagged line it cannot parse
    is skipped (a broken server's line does not hide the others).
    """
    from imapclient import imap_utf7  # noqa: PLC0415  (only a login that lists needs it)
    from imapclient.exceptions import ProtocolError  # noqa: PLC0415
    from imapclient.response_parser import parse_response  # noqa: PLC0415

    found = []
    for line in response.untagged:
        keyword, _, rest = line[2:].partition(" ")
        if keyword.upper() != "LIST":
            continue
        try:
            parsed = parse_response([rest.encode("utf-8", "surrogateescape")])
        except (ProtocolError, ValueError):
            continue
        if len(parsed) != 3 or not isinstance(parsed[0], tuple):
            continue
        flags = tuple(_text(f) for f in parsed[0])
        raw_name = parsed[2] if isinstance(parsed[2], bytes) else str(parsed[2]).encode()
        try:
            name = imap_utf7.decode(raw_name)
        except (UnicodeError, ValueError):
            name = raw_name.decode("utf-8", "replace")
        delimiter = None if parsed[1] is None else _text(parsed[1])
        found.append(Mailbox(name=name, flags=flags, delimiter=delimiter))
    return tuple(found)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _quotable(text: str) -> bool:
    return all(" " <= ch < "\x7f" for ch in text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _astring(text: str) -> str:
    if text and all(ch.isalnum() or ch in "._-@+" for ch in text) and text.isascii():
        return text
    return _quote(text)


# --- POP3 (RFC 1939, RFC 2449, RFC 5034) -------------------------------------------------------


class Pop3Session:
    """A POP3 client conversation over one :class:`Connection`."""

    def __init__(self, conn: Connection, *, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.capabilities: tuple[str, ...] = ()

    async def greeting(self) -> tuple[bool, str]:
        """(+OK?, the greeting line); ProtocolViolation when it is not POP3."""
        reply = await self.conn.read_reply("pop3", timeout=self.timeout)
        first = reply.lines[0]
        if not first.startswith(("+OK", "-ERR")):
            raise ProtocolViolation(f"not a POP3 greeting: {first[:200]!r}", phase="read")
        return first.startswith("+OK"), first

    async def command(self, text: str, *, shown: str | None = None) -> str:
        """Send one command, return its status line (``+OK``/``-ERR``/``+ ``)."""
        await self.conn.send(text, timeout=self.timeout, shown=shown)
        reply = await self.conn.read_reply("pop3", timeout=self.timeout)
        line = reply.lines[0]
        if not line.startswith(("+OK", "-ERR", "+")):
            raise ProtocolViolation(f"not a POP3 status line: {line[:200]!r}", phase="read")
        return line

    async def capa(self) -> tuple[str, ...]:
        """CAPA (RFC 2449); () when the server does not know it."""
        status = await self.command("CAPA")
        if not status.startswith("+OK"):
            self.capabilities = ()
            return ()
        body = await self.conn.read_multiline(timeout=self.timeout)
        self.capabilities = tuple(line.strip().upper() for line in body.lines if line.strip())
        return self.capabilities

    def sasl_mechanisms(self) -> tuple[str, ...]:
        """The mechanisms of the ``SASL`` capability."""
        for cap in self.capabilities:
            if cap.startswith("SASL"):
                return tuple(cap.split()[1:])
        return ()

    async def stls(self, context: ssl.SSLContext, *, server_hostname: str | None) -> TlsInfo:
        """STLS (RFC 2595 4) and the handshake."""
        status = await self.command("STLS")
        if not status.startswith("+OK"):
            raise CommandRejected("STLS", Reply(lines=(status,)), status="-ERR")
        info = await _upgrade(
            self.conn, context, server_hostname=server_hostname, timeout=self.timeout
        )
        self.capabilities = ()
        return info

    async def user_pass(self, username: str, password: str) -> str:
        """USER/PASS (RFC 1939 7); the last status line (``+OK`` on success)."""
        status = await self.command(f"USER {username}")
        if not status.startswith("+OK"):
            return status
        return await self.command(f"PASS {password}", shown=f"PASS {REDACTED}")

    async def auth(
        self, mechanism: str, initial: bytes, *, abort: str = "*"
    ) -> tuple[str, tuple[str, ...]]:
        """AUTH (RFC 5034) with an initial response; (final status line, error challenges)."""
        status = await self.command(
            f"AUTH {mechanism} {b64(initial)}", shown=f"AUTH {mechanism} {REDACTED}"
        )
        challenges: list[str] = []
        while status.startswith("+ ") or status == "+":
            challenges.append(decode_challenge(status[1:].strip()))
            if len(challenges) > MAX_CONTINUATIONS:
                raise ProtocolViolation("the server kept sending challenges", phase="read")
            status = await self.command(abort)
        return status, tuple(challenges)

    async def stat(self) -> tuple[int, int] | str:
        """STAT: (messages, octets), or the -ERR line."""
        status = await self.command("STAT")
        words = status.split()
        if (status.startswith("+OK") and len(words) >= 3 and words[1].isdigit()
                and words[2].isdigit()):  # fmt: skip
            return int(words[1]), int(words[2])
        return status

    async def quit(self) -> None:
        """QUIT (never DELE: nothing is ever marked for deletion, so nothing is removed)."""
        try:
            await self.command("QUIT")
        except (ConnectionReset, ProtocolViolation):
            pass


# --- SMTP (RFC 5321, RFC 3207, RFC 4954) -------------------------------------------------------


class SmtpSession:
    """An SMTP client conversation over one :class:`Connection`."""

    def __init__(self, conn: Connection, *, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.ehlo_reply: Reply | None = None

    async def read(self) -> Reply:
        """One whole reply (multi-line, bounded)."""
        return await self.conn.read_reply("smtp", timeout=self.timeout)

    async def command(self, text: str, *, shown: str | None = None) -> Reply:
        """Send one command and read its whole reply."""
        await self.conn.send(text, timeout=self.timeout, shown=shown)
        return await self.read()

    async def ehlo(self) -> Reply:
        """EHLO (RFC 5321 4.1.1.1); CommandRejected unless 250."""
        reply = await self.command(f"EHLO {EHLO_NAME}")
        if reply.code != 250:
            raise CommandRejected("EHLO", reply)
        self.ehlo_reply = reply
        return reply

    @property
    def extensions(self) -> tuple[str, ...]:
        """The EHLO keywords with their parameters, upper-cased (not the greeting line)."""
        if self.ehlo_reply is None:
            return ()
        return tuple(line[4:].strip().upper() for line in self.ehlo_reply.lines[1:])

    def has(self, keyword: str) -> bool:
        """Whether EHLO announced ``keyword``."""
        return any(ext.split(" ", 1)[0] == keyword for ext in self.extensions)

    def auth_mechanisms(self) -> tuple[str, ...]:
        """The mechanisms of ``AUTH`` (or the pre-RFC ``AUTH=`` form)."""
        mechs: list[str] = []
        for ext in self.extensions:
            head, _, rest = ext.replace("=", " ", 1).partition(" ")
            if head == "AUTH":
                mechs.extend(m for m in rest.split() if m not in mechs)
        return tuple(mechs)

    async def starttls(self, context: ssl.SSLContext, *, server_hostname: str | None) -> TlsInfo:
        """STARTTLS (RFC 3207) and the handshake; EHLO must be sent again afterwards."""
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            raise CommandRejected("STARTTLS", reply)
        info = await _upgrade(
            self.conn, context, server_hostname=server_hostname, timeout=self.timeout
        )
        self.ehlo_reply = None
        return info

    async def auth(
        self, mechanism: str, initial: bytes, *, abort: str = "*"
    ) -> tuple[Reply, tuple[str, ...]]:
        """AUTH with an initial response (RFC 4954 4); (final reply, error challenges)."""
        reply = await self.command(
            f"AUTH {mechanism} {b64(initial)}", shown=f"AUTH {mechanism} {REDACTED}"
        )
        return await self._challenges(reply, abort)

    async def auth_login(self, username: str, password: str) -> tuple[Reply, tuple[str, ...]]:
        """AUTH LOGIN (draft-murchison-sasl-login): user and password each on request."""
        reply = await self.command("AUTH LOGIN")
        if reply.code == 334:
            reply = await self.command(b64(username.encode()))
        if reply.code == 334:
            reply = await self.command(b64(password.encode()), shown=REDACTED)
        return await self._challenges(reply, "*")

    async def _challenges(self, reply: Reply, abort: str) -> tuple[Reply, tuple[str, ...]]:
        challenges: list[str] = []
        while reply.code == 334:
            challenges.append(decode_challenge(reply.lines[-1][4:]))
            if len(challenges) > MAX_CONTINUATIONS:
                raise ProtocolViolation("the server kept sending challenges", phase="read")
            # RFC 4954 4: "*" cancels; OAuth mechanisms expect an empty or %x01 answer.
            reply = await self.command(abort)
        return reply, tuple(challenges)

    async def data(self, message: Sequence[str]) -> Reply:
        """DATA with ``message`` lines (dot-stuffed, RFC 5321 4.5.2); the final reply."""
        reply = await self.command("DATA")
        if reply.code != 354:
            return reply
        for line in message:
            await self.conn.send(
                "." + line if line.startswith(".") else line, timeout=self.timeout
            )
        return await self.command(".")

    async def quit(self) -> None:
        """QUIT; a server that closes at once is fine."""
        try:
            await self.command("QUIT")
        except (ConnectionReset, ProtocolViolation, NetTimeout):
            pass
