"""The run context: everything a probe may use, so tests and users can point a run anywhere.

:class:`RunOptions` is what the user chose (resolver, host overrides, trust, IP families,
timeouts, credentials); it is plain, frozen data. :class:`RunContext` adds what a run
needs at run time (clock, deadline, concurrency limits, worker threads) and hands out
the configured clients: a DNS resolver, an SSL context, connection limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar

from analyzer.core.credpolicy import hide_userinfo
from analyzer.core.errors import UsageError

if TYPE_CHECKING:
    from analyzer.core.shared import SharedResults

__all__ = [
    "Closeable",
    "Credentials",
    "Family",
    "FilesKey",
    "HostLimits",
    "REDACTED",
    "Nameserver",
    "RunContext",
    "RunOptions",
    "files_key",
    "parse_connect_override",
    "parse_host_port",
    "parse_nameserver",
    "read_secret_file",
]

Family = Literal[4, 6]
P = ParamSpec("P")
R = TypeVar("R")


class Closeable(Protocol):
    """What :meth:`RunContext.resource` holds: something closed when the run ends."""

    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)

#: What replaces a secret wherever it would be shown (transcripts, findings, reprs).
REDACTED = "«redacted»"


class Credentials:
    """A username with a password and/or an OAuth2 bearer token.

    The secrets are kept out of ``repr``, ``str``, pickling and JSON: only
    :meth:`password` and :meth:`token` reveal them, and :meth:`redact` removes them from
    any text (plain, base64 and URL-encoded forms) before it is stored in a transcript.
    """

    __slots__ = ("__derived", "__forms", "__password", "__token", "username")

    def __init__(
        self, username: str | None, *, password: str | None = None, token: str | None = None
    ) -> None:
        self.username = username
        self.__password = password or None
        self.__token = token or None
        self.__forms: tuple[str, ...] | None = None
        self.__derived: dict[tuple[str, ...], Any] = {}

    def password(self) -> str | None:
        """The password (never log or store the value)."""
        return self.__password

    def token(self) -> str | None:
        """The OAuth2 bearer token (never log or store the value)."""
        return self.__token

    @property
    def has_secret(self) -> bool:
        """Whether a login can be attempted."""
        return self.__password is not None or self.__token is not None

    def describe(self) -> dict[str, str | None]:
        """What may be shown about these credentials: who, and which kind of secret."""
        kind = "oauth2-token" if self.__token else "password" if self.__password else None
        return {"username": self.username, "secret": kind}

    def derived(self, key: tuple[str, ...], make: Callable[[str], R]) -> R:
        """``make(password)``, computed once per ``key`` for these credentials and kept with
        them as the password is (never shown): a protocol's costly derivation of the
        password, e.g. NTLM's hashes, done once per run instead of once per login.
        Only called with a password (the caller checks :meth:`password` first)."""
        if key not in self.__derived:
            password = self.__password
            if password is None:
                raise ValueError("no password to derive from")
            self.__derived[key] = make(password)
        return self.__derived[key]  # type: ignore[no-any-return]

    def secret_forms(self) -> tuple[str, ...]:
        """Every form in which a secret could appear on the wire (for redaction), longest
        first; computed once (the secrets never change)."""
        if self.__forms is None:
            self.__forms = self._forms()
        return self.__forms

    def _forms(self) -> tuple[str, ...]:
        import base64  # noqa: PLC0415
        from urllib.parse import quote  # noqa: PLC0415

        forms: list[str] = []
        for secret in (self.__password, self.__token):
            if not secret:
                continue
            raw = secret.encode()
            forms.append(secret)
            forms.append(quote(secret, safe=""))
            # IMAP quoted string (RFC 9051 4.3): backslash and double quote escaped.
            forms.append(secret.replace("\\", "\\\\").replace('"', '\\"'))
            forms.append(base64.b64encode(raw).decode())
            if self.username:
                for pair in (f"{self.username}:{secret}", f"\0{self.username}\0{secret}"):
                    forms.append(base64.b64encode(pair.encode()).decode())
            # Inside any larger base64 blob (XOAUTH2, OAUTHBEARER, NTLM...) the secret
            # starts at one of three bit alignments: keep the characters that encode
            # only its own bits, for each.
            for shift in (0, 1, 2):
                encoded = base64.b64encode(b"\0" * shift + raw).decode()
                core = encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
                if len(core) >= 6:
                    forms.append(core)
        return tuple(sorted({f for f in forms if len(f) >= 3}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every form of every secret replaced by a marker, and the userinfo
        of any URL in it hidden (:func:`analyzer.core.credpolicy.hide_userinfo`).

        Called for every transcript line and finding string of a run: kept lean."""
        forms = self.__forms
        for form in self.secret_forms() if forms is None else forms:
            text = text.replace(form, REDACTED)
        return hide_userinfo(text)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret={REDACTED!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


def read_secret_file(path: Path, label: str) -> str:
    """The secret on the first line of ``path`` (a password or token file); a one-line
    :class:`UsageError` naming ``label`` and the path, never the contents, otherwise."""
    try:
        with path.open(encoding="utf-8") as fh:
            line = fh.readline()
    except OSError as exc:
        raise UsageError(f"{label} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{label} {path}: not UTF-8 text") from None
    secret = line.rstrip("\r\n")
    if not secret:
        raise UsageError(f"{label} {path}: the first line is empty")
    return secret


@dataclass(frozen=True, slots=True)
class Nameserver:
    """A DNS server to query instead of the system's resolvers."""

    address: str
    port: int = 53

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}" if self.port != 53 else self.address


def parse_nameserver(text: str) -> Nameserver:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` → :class:`Nameserver` (UsageError if not)."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise UsageError(f"--resolver {text!r}: expected an IP address, optionally :PORT") from None
    return Nameserver(address, port)


def parse_connect_override(text: str) -> tuple[str, str]:
    """``HOST=IP`` → ``(host, ip)`` for ``--connect`` (UsageError if not)."""
    host, sep, ip = text.partition("=")
    if not sep or not host or not ip:
        raise UsageError(f"--connect {text!r}: expected HOST=IP")
    try:
        address = str(ipaddress.ip_address(ip.strip("[]")))
    except ValueError:
        raise UsageError(f"--connect {text!r}: {ip!r} is not an IP address") from None
    return host.lower().rstrip("."), address


def parse_host_port(text: str) -> tuple[str, int, str | None]:
    """``[SERVICE/]HOST:PORT`` → ``(host, port, service)`` for ``--port`` (UsageError if not).

    ``SERVICE`` names the protocol on a non-standard port (``smtp/mx.example.com:2525``):
    smtp, submission, submissions, imap, imaps, pop3, pop3s, https or http.
    """
    text = text.strip()
    service: str | None = None
    if "/" in text:
        service, _, text = text.partition("/")
        service = service.lower()
        if service not in _PORT_SERVICES:
            raise UsageError(
                f"--port: unknown service {service!r}; use one of {', '.join(_PORT_SERVICES)}"
            )
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":")
    if not host:
        raise UsageError(f"--port {text!r}: expected [SERVICE/]HOST:PORT")
    return host.lower().rstrip("."), _port(port_text, text), service


_PORT_SERVICES = (
    "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "https", "http"
)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"{whole!r}: {text!r} is not a port number")
    return int(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """What the user asked for; the same for every probe of a run."""

    nameservers: tuple[Nameserver, ...] = ()
    connect: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ca_file: Path | None = None
    insecure: bool = False
    families: tuple[Family, ...] = (4, 6)
    timeout: float = 60.0
    op_timeout: float = 10.0
    probe_timeout: float = 45.0
    concurrency: int = 32
    #: Connection attempts at once to one host name (a slot is held while connecting only).
    #: A full check makes about 80 to the Exchange/mail host (ports, TLS versions, logins,
    #: one connection per NTLM handshake): with 4 they queued up to 0.4 s at 50 ms round
    #: trips, on the path of the Exchange logins. A batch adds its own shared limit.
    per_host: int = 8
    credentials: Credentials = field(default_factory=lambda: Credentials(None))
    tests: tuple[str, ...] = ()
    #: Autodiscover: this URL instead of the discovery methods (``--autodiscover-url``).
    autodiscover_url: str | None = None
    #: Autodiscover: try and report every method, not only up to the first that answers.
    all_methods: bool = False
    #: Autodiscover: also ask in the ActiveSync (mobilesync) schema.
    mobilesync: bool = False
    #: Domains outside the e-mail domain that may receive credentials after a redirect.
    trust_redirect: tuple[str, ...] = ()
    #: Autoconfig: also ask Thunderbird's ISPDB (a third party) for the domain.
    ispdb: bool = False
    dkim_selectors: tuple[str, ...] = ()
    trust_anchor_file: Path | None = None
    extra_ports: tuple[tuple[str, int, str | None], ...] = ()
    dnsbl: tuple[str, ...] = ()
    connect_timeout: float = 5.0
    slow_greeting_s: float = 5.0
    cert_warn_days: int = 30
    cert_fail_days: int = 7
    now: datetime | None = None
    #: Send a tagged test message to the user's own mailbox and wait for it (roundtrip).
    send_test_message: bool = False
    #: Try a recipient outside the domain on every MX (inbound SMTP open-relay test).
    relay_test: bool = False
    #: Endpoints to test instead of Autodiscover's (or the conventional ones).
    ews_url: str | None = None
    activesync_url: str | None = None

    def describe(self) -> dict[str, Any]:
        """The options as shown in a report: secrets never included."""
        return {
            "resolvers": [str(n) for n in self.nameservers] or ["system"],
            "autodiscover_url": (
                hide_userinfo(self.autodiscover_url) if self.autodiscover_url else None
            ),
            "all_methods": self.all_methods,
            "mobilesync": self.mobilesync,
            "trust_redirect": list(self.trust_redirect),
            "ispdb": self.ispdb,
            "connect": {k: list(v) for k, v in self.connect.items()},
            "ca_file": str(self.ca_file) if self.ca_file else None,
            "insecure": self.insecure,
            "families": list(self.families),
            "timeout": self.timeout,
            "tests": list(self.tests),
            "credentials": self.credentials.describe(),
            "dkim_selectors": list(self.dkim_selectors),
            "trust_anchor_file": str(self.trust_anchor_file) if self.trust_anchor_file else None,
            "ports": [f"{s + '/' if s else ''}{h}:{p}" for h, p, s in self.extra_ports],
            "dnsbl": list(self.dnsbl),
            "send_test_message": self.send_test_message,
            "relay_test": self.relay_test,
            "ews_url": hide_userinfo(self.ews_url) if self.ews_url else None,
            "activesync_url": hide_userinfo(self.activesync_url) if self.activesync_url else None,
        }


class HostLimits:
    """Connection slots per host shared by several runs (a batch, the exporter).

    A run's own limits (``RunOptions.per_host``) hold per run; a batch of 1,000 domains
    served by one provider also needs a bound across its runs. Give one instance to every
    :class:`RunContext` of the batch; :meth:`RunContext.slot` then takes a slot here too.
    """

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def semaphore(self, host: str) -> asyncio.Semaphore:
        """The semaphore of ``host`` (names are compared in lower case)."""
        key = host.lower().rstrip(".")
        sem = self._hosts.get(key)
        if sem is None:
            sem = self._hosts[key] = asyncio.Semaphore(self.per_host)
        return sem


class RunContext:
    """Run-time services shared by every probe of one run.

    Holds no module-level state: a test builds one with the options it wants, a batch
    builds one per target. Use as an async context manager so worker threads are
    joined when the run ends.
    """

    def __init__(
        self,
        options: RunOptions,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        shared_limits: HostLimits | None = None,
        shared_results: SharedResults | None = None,
    ):
        self.options = options
        self.shared_limits = shared_limits
        #: Endpoint checks shared with the other runs of a batch (None: not in a batch).
        self.shared_results = shared_results
        self._monotonic = monotonic
        self.started_at = monotonic()
        self.started = options.now or datetime.now(UTC)
        self.deadline = self.started_at + options.timeout
        self._global = asyncio.Semaphore(options.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._ssl: ssl.SSLContext | None = None
        self._ssl_building: Future[ssl.SSLContext] | None = None
        self._nameservers: tuple[tuple[str, int], ...] | None = None
        self._shared: dict[str, asyncio.Future[Any]] = {}
        self._made: dict[Hashable, Any] = {}
        self._closing: list[Closeable] = []

    # --- time ---------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The run's clock: fixed by ``RunOptions.now`` in tests, else the wall clock."""
        if self.options.now is not None:
            return self.options.now
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds on the run's monotonic clock."""
        return self._monotonic()

    def remaining(self) -> float:
        """Seconds left before the global deadline (never negative)."""
        return max(0.0, self.deadline - self._monotonic())

    def elapsed_ms(self) -> float:
        """Milliseconds since the run started."""
        return (self._monotonic() - self.started_at) * 1000.0

    # --- concurrency --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one connection slot overall and one for ``host`` (politeness per server),
        and one of the ``shared_limits`` for ``host`` when the run is part of a batch."""
        key = host.lower()
        sem = self._hosts.get(key)
        if sem is None:
            sem = self._hosts[key] = asyncio.Semaphore(self.options.per_host)
        shared = self.shared_limits.semaphore(key) if self.shared_limits else None
        async with self._global, sem:
            if shared is None:
                yield
            else:
                async with shared:
                    yield

    async def to_thread(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a blocking call (imaplib, poplib, smtplib) on the run's worker threads.

        The call must bound itself with socket timeouts taken from the deadline: a
        thread cannot be cancelled, only abandoned.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers(), lambda: fn(*args, **kwargs))

    def _workers(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=max(4, self.options.concurrency // 2), thread_name_prefix="rca-io"
            )
        return self._executor

    async def shared(self, key: str, factory: Callable[[], Awaitable[R]]) -> R:
        """The result of ``factory()``, computed once per run for ``key``.

        Probes that need the same thing at the same time (the addresses of a host) share
        one look-up. This is per run, never across runs: a diagnostic looks afresh.
        """
        fut = self._shared.get(key)
        if fut is None:
            fut = self._shared[key] = asyncio.ensure_future(factory())
        result: R = await asyncio.shield(fut)
        return result

    def resource(self, key: str, make: Callable[[], C]) -> C:
        """Something the run makes once for ``key`` (:meth:`made`, same keys) and closes
        when it ends (the DNS sockets: :class:`analyzer.protocols.dnsudp.UdpPool`)."""

        def make_closed_at_end() -> C:
            made = make()
            self._closing.append(made)
            return made

        return self.made(key, make_closed_at_end)

    def made(self, key: Hashable, make: Callable[[], R]) -> R:
        """What ``make()`` returns, made once per run for ``key`` and shared by every probe
        of the run: settings that need no closing, such as the SSL contexts of the
        certificate inspections (a context holds settings; each connection has its own
        state), or what :meth:`resource` closes. Call it on the event loop's thread."""
        if key not in self._made:
            self._made[key] = make()
        made: R = self._made[key]
        return made

    async def __aenter__(self) -> RunContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel shared look-ups still running, close the run's resources and join the
        worker threads."""
        for fut in self._shared.values():
            fut.cancel()
        if self._shared:
            await asyncio.gather(*self._shared.values(), return_exceptions=True)
        self._shared.clear()
        for resource in self._closing:
            resource.close()
        self._closing.clear()
        self._made.clear()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)

    # --- clients ------------------------------------------------------------------------------

    def nameservers(self) -> tuple[tuple[str, int], ...]:
        """The DNS servers every question of the run goes to, as ``(address, port)``:
        ``--resolver``, or the system's (``/etc/resolv.conf``, read once per run)."""
        if self._nameservers is None:
            if self.options.nameservers:
                self._nameservers = tuple((n.address, n.port) for n in self.options.nameservers)
            else:
                import dns.resolver  # noqa: PLC0415 - keep start-up fast

                try:
                    system = dns.resolver.Resolver()
                except Exception as exc:  # no /etc/resolv.conf, or an unreadable one
                    raise UsageError(
                        f"no system DNS resolver could be configured ({exc}); use --resolver IP"
                    ) from None
                self._nameservers = tuple(
                    (str(ns), system.nameserver_ports.get(str(ns), system.port))
                    for ns in system.nameservers
                )
        return self._nameservers

    def dns_timeouts(self, timeout: float | None = None) -> tuple[float, float]:
        """``(per try, overall)`` seconds for one DNS question, as dnspython's ``timeout``
        and ``lifetime``: ``timeout`` (default: the per-operation timeout) overall and half
        of it per try, bounded by the time left in the run."""
        op = self.options.op_timeout if timeout is None else timeout
        return max(0.05, min(op / 2, self.remaining())), max(0.05, min(op, self.remaining()))

    def connect_addresses(self, host: str) -> tuple[str, ...]:
        """Addresses forced by ``--connect HOST=IP`` for ``host`` (empty if none)."""
        return tuple(self.options.connect.get(host.lower().rstrip("."), ()))

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client SSL context trusting certifi + the system store + ``--ca-file``.

        Verification is off only in :func:`analyzer.protocols.tlsprobe.inspection_context` (the
        certificate inspections, which report every problem) and, with ``--insecure``,
        :func:`analyzer.protocols.tlsprobe.insecure_context`. Built once per run (once per
        batch); if :meth:`prepare_ssl_context` started building it, this waits for that build
        and raises what it raised (a ``--ca-file`` that cannot be read).
        """
        if self._ssl is None:
            building, self._ssl_building = self._ssl_building, None
            if building is not None:
                self._ssl = building.result()
            else:
                files = self.trust_files()
                batch = self.shared_results
                self._ssl = (
                    _verifying_context(files)
                    if batch is None
                    # In a batch, built once for all its runs (loading certifi costs ~15 ms).
                    else batch.resource(
                        ("ssl", files_key(files)), lambda: _verifying_context(files)
                    )
                )
        return self._ssl

    async def ssl_context_built(self) -> ssl.SSLContext:
        """:meth:`ssl_context`, waiting for the build :meth:`prepare_ssl_context` started
        without holding the event loop: other work goes on until the context is there."""
        building = self._ssl_building
        if self._ssl is None and building is not None:
            # Shielded: a cancelled caller must not cancel the build others wait for. Its
            # error, if any, is raised by ssl_context() below.
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wrap_future(building))
        return self.ssl_context()

    def prepare_ssl_context(self) -> None:
        """Start building :meth:`ssl_context` in a worker thread, for a run whose plan will
        need it: OpenSSL releases the GIL while it reads the trust store (about 50-100 ms
        of CPU), so the build overlaps the run's first DNS questions on another core.

        Only OpenSSL works in the thread (no ``warnings`` filters, which are not
        thread-safe). Does nothing in a batch, where the context is built once for all runs,
        or when it is built or being built.
        """
        if self._ssl is None and self._ssl_building is None and self.shared_results is None:
            self._ssl_building = self._workers().submit(_verifying_context, self.trust_files())

    def trust_files(self) -> tuple[Path, ...]:
        """PEM files of trusted roots, in addition to the system store."""
        import certifi  # noqa: PLC0415

        files = [Path(certifi.where())]
        if self.options.ca_file is not None:
            files.append(self.options.ca_file)
        return tuple(files)

    def environment(self) -> dict[str, Any]:
        """What the report records about where and how the run happened.

        The platform is put together from ``uname`` and the C library's own answer:
        :func:`platform.platform` would also run ``uname -p`` in a subprocess at every run
        for a processor name that Linux does not know."""
        import platform  # noqa: PLC0415

        system = platform.uname()
        libc, libc_version = platform.libc_ver()
        return {
            "resolvers": [str(n) for n in self.options.nameservers] or ["system"],
            "trust": [str(p) for p in self.trust_files()] + ["system store"],
            "families": [f"IPv{f}" for f in self.options.families],
            "python": platform.python_version(),
            "platform": "-".join(
                part
                for part in (system.system, system.release, system.machine,
                             f"{libc}{libc_version}")
                if part
            ),
            "openssl": ssl.OPENSSL_VERSION,
        }


FilesKey = tuple[tuple[str, int, int, int], ...]


def files_key(paths: Iterable[Path]) -> FilesKey:
    """The identity of files as they are now (path, inode, size, modification time), to
    key what was parsed from them; :class:`OSError` for a file that is gone."""
    key = []
    for path in paths:
        st = path.stat()
        key.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(key)


def _verifying_context(files: tuple[Path, ...]) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    for cafile in files:
        context.load_verify_locations(cafile=str(cafile))
    return context
