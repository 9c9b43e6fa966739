"""A submitted test form → the ``rca check`` command line it stands for, and its options.

The form is turned into ``rca check`` arguments (without the secret), which go through the
command line's own parser and :func:`analyzer.cli.options_from_args`: a web run *is* an
``rca check`` run with those flags, and the page shows the command to repeat it. The
password or token is then put into the options' :class:`~analyzer.core.context.Credentials`,
which lives as long as the run and is never written anywhere.

Off-localhost every name the form can send traffic to (the target, URLs, extra ports) must
be on the configured allowlist, as for ``rca serve``: the server is no open proxy.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from analyzer.core.errors import UsageError
from analyzer.operations.web.catalogue import WebTest
from analyzer.operations.web.config import WebConfig

if TYPE_CHECKING:
    from analyzer.core.context import RunOptions
    from analyzer.core.targets import Target

__all__ = ["FormErrors", "OptionsBuilder", "RunRequest", "parse_run_form", "shown_values"]

#: ``rca check``'s own options from its flags (``argv``, starting with "check") and the
#: default user name (the target's address, if it is one): :func:`analyzer.cli.check_options`,
#: handed in by the command line so that the page builds a run exactly as ``rca check`` does,
#: without importing the command line (operations sit below it). Raises
#: :class:`~analyzer.core.errors.UsageError`.
OptionsBuilder = Callable[[list[str], str | None], "RunOptions"]

MAX_TARGET, MAX_USER, MAX_SECRET, MAX_PORTS = 512, 256, 8192, 10
_SELECTOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Fields never sent back to the browser, not even in a form shown again after an error.
SECRET_FIELDS = frozenset({"password", "token"})
_CHECKBOXES = ("insecure", "insecure_confirm", "all_methods", "mobilesync", "relay_test",
               "send_test_message")


class FormErrors(Exception):
    """What is wrong with a form: a message per field name ("" for the whole form)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k or 'form'}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """A checked form: the test, the target, the equivalent command line, the options.

    ``options`` holds the secret: keep a request only for the duration of its run.
    """

    test: WebTest
    target: Target
    argv: tuple[str, ...]
    options: RunOptions

    @property
    def command(self) -> str:
        """The command a user can run to repeat this check (the secret is not in it)."""
        import shlex  # noqa: PLC0415

        return shlex.join(("rca", *self.argv))


def shown_values(form: Mapping[str, str]) -> dict[str, str]:
    """The values to put back into a form shown again: everything but the secrets."""
    return {k: v for k, v in form.items() if k not in SECRET_FIELDS and k != "csrf"}


def parse_run_form(
    test: WebTest, form: Mapping[str, str], config: WebConfig, build_options: OptionsBuilder
) -> RunRequest:
    """Check ``form`` for ``test``; :class:`FormErrors` naming each bad field."""
    from analyzer.core.targets import parse_target  # noqa: PLC0415

    errors: dict[str, str] = {}
    value = {k: str(v) for k, v in form.items()}

    def text(name: str, limit: int = MAX_TARGET) -> str:
        raw = value.get(name, "").strip()
        if len(raw) > limit:
            errors[name] = f"at most {limit} characters"
            return ""
        if _CONTROL.search(raw):
            errors[name] = "control characters are not allowed"
            return ""
        return raw

    def checked(name: str) -> bool:
        return value.get(name, "") in ("on", "1", "true", "yes")

    argv: list[str] = ["check"]
    target: Target | None = None
    raw_target = text("target")
    if not raw_target:
        errors["target"] = "enter an e-mail address or a domain"
    else:
        try:
            target = parse_target(raw_target)
        except UsageError as exc:
            errors["target"] = str(exc)
        if target is not None and not _allowed(config, target):
            errors["target"] = "this server is not allowed to test this target"
            target = None
        argv.append(raw_target)
    if test.tests:
        argv += ["--tests", ",".join(test.tests)]

    resolver = value.get("resolver", "")
    if resolver and resolver not in config.resolvers:
        errors["resolver"] = "choose one of the listed DNS servers"
    elif resolver:
        argv += ["--resolver", resolver]
    ca_name = value.get("ca_file", "")
    if ca_name and ca_name not in config.ca_files:
        errors["ca_file"] = "choose one of the listed CA files"
    elif ca_name:
        argv += ["--ca-file", str(config.ca_files[ca_name])]
    if config.trust_anchor is not None:
        argv += ["--trust-anchor", str(config.trust_anchor)]
    if checked("insecure"):
        if not checked("insecure_confirm"):
            errors["insecure_confirm"] = (
                "confirm that you understand what ignoring certificate errors means"
            )
        else:
            argv.append("--insecure")
    family = value.get("family", "both") or "both"
    if family not in ("both", "4", "6"):
        errors["family"] = "choose IPv4, IPv6 or both"
    elif family != "both":
        argv.append(f"-{family}")
    timeout = _timeout(value.get("timeout", ""), config, errors)
    argv += ["--timeout", f"{timeout:g}"]

    user = text("user", MAX_USER)
    if user and test.credentials:
        argv += ["--user", user]
    _extra_fields(test, value, config, argv, errors, text, checked)

    password = value.get("password", "") if test.credentials else ""
    token = value.get("token", "") if test.credentials else ""
    for name, secret in (("password", password), ("token", token)):
        if len(secret) > MAX_SECRET:
            errors[name] = f"at most {MAX_SECRET} characters"
    if password and token:
        errors["token"] = "give a password or a token, not both"  # noqa: S105 - a message
    if errors or target is None:
        raise FormErrors(errors or {"target": "enter an e-mail address or a domain"})
    options = _options(argv, target, build_options)
    from analyzer.core.context import Credentials  # noqa: PLC0415

    credentials = Credentials(
        options.credentials.username, password=password or None, token=token or None
    )
    return RunRequest(
        test=test,
        target=target,
        argv=tuple(argv),
        options=dataclasses.replace(options, credentials=credentials),
    )


def _timeout(raw: str, config: WebConfig, errors: dict[str, str]) -> float:
    if not raw.strip():
        return config.timeout
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if not 1 <= timeout <= config.max_timeout:  # also refuses nan
        errors["timeout"] = f"a number of seconds from 1 to {config.max_timeout:g}"
        return config.timeout
    return timeout


def _extra_fields(
    test: WebTest,
    value: Mapping[str, str],
    config: WebConfig,
    argv: list[str],
    errors: dict[str, str],
    text: Callable[[str, int], str],
    checked: Callable[[str], bool],
) -> None:
    """The test's own options (catalogue ``fields``), each as its ``rca check`` flag."""
    for name in ("autodiscover_url", "ews_url", "activesync_url"):
        url = text(name, 2000) if name in test.fields else ""
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme.lower() != "https" or not parts.hostname or "@" in parts.netloc:
            errors[name] = "an https:// URL without user name or password"
        elif not _allowed_host(config, parts.hostname):
            errors[name] = "this server is not allowed to connect to this host"
        else:
            argv += [f"--{name.replace('_', '-')}", url]
    for name in ("all_methods", "mobilesync", "relay_test", "send_test_message"):
        if name in test.fields and checked(name):
            argv.append(f"--{name.replace('_', '-')}")
    if "dkim_selector" in test.fields:
        for selector in text("dkim_selector", 500).replace(",", " ").split():
            if not _SELECTOR.fullmatch(selector):
                errors["dkim_selector"] = f"{selector[:64]!r} is not a DKIM selector"
                break
            argv += ["--dkim-selector", selector]
    if "port" in test.fields:
        from analyzer.core.context import parse_host_port  # noqa: PLC0415

        ports = text("port", 2000).replace(",", " ").split()
        if len(ports) > MAX_PORTS:
            errors["port"] = f"at most {MAX_PORTS} endpoints"
            return
        for item in ports:
            try:
                host, _port, _service = parse_host_port(item)
            except UsageError as exc:
                errors["port"] = str(exc)
                break
            if not _allowed_host(config, host):
                errors["port"] = f"this server is not allowed to connect to {host[:100]}"
                break
            argv += ["--port", item]


def _allowed(config: WebConfig, target: Target) -> bool:
    return not config.allow or config.allow.allows(target)


def _allowed_host(config: WebConfig, host: str) -> bool:
    from analyzer.core.targets import parse_target  # noqa: PLC0415

    if not config.allow:
        return True
    try:
        return config.allow.allows(parse_target(host))
    except UsageError:
        return False


def _options(argv: list[str], target: Target, build_options: OptionsBuilder) -> RunOptions:
    """``rca check``'s own parser and option builder (handed in by the command line), for
    the same flags."""
    try:
        return build_options(argv, target.address)
    except UsageError as exc:
        raise FormErrors({"": str(exc)}) from None
