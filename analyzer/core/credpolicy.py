"""Who gets the password: the credential policy of ``docs/security.md``, in one place.

A host may receive the user's credentials only if it is

1. inside the e-mail domain (or a subdomain of it);
2. in a domain the user named with ``--trust-redirect`` (or named on the command line
   itself: the target, ``--port``, ``--ews-url``, ``--activesync-url``,
   ``--autodiscover-url``);
3. one of Microsoft 365's published Exchange Online namespaces
   (``analyzer/data/m365_namespaces.toml``, which names its source);
4. named by an Autodiscover or autoconfig answer that was itself obtained over verified
   HTTPS from a host allowed by 1-3 (an answer given after such a host accepted the
   credentials is one of those) — the answer *vouches* for the hosts it names.

Nothing else, however it was learned: an anonymous answer from a host outside the domain
(a stale SRV record, a hijacked http redirect, a captive portal), autoconfig fetched over
plain http, an RFC 6186 SRV record or the ISPDB naming an outside host. Those hosts still
get every step that needs no credentials; the login is withheld with a finding built from
:class:`Verdict` (which host, which source named it, why it is not trusted, and the flag
that allows it).

How credentials travel once a host is allowed (verified TLS or ``--insecure``, a challenge
offering the method first, no redirect followed) is enforced where they are sent
(:mod:`analyzer.protocols.httpauth`, :mod:`analyzer.protocols.login`,
:mod:`analyzer.protocols.exchange`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzer.core.probe import ProbeContext
    from analyzer.core.targets import Target

__all__ = [
    "M365_SOURCE",
    "Provenance",
    "Verdict",
    "allowed_by_name",
    "hide_userinfo",
    "inside",
    "judge",
    "judge_for",
    "m365_namespaces",
    "run_domains",
    "trust_flag",
]

#: Where the Microsoft 365 list comes from (also in the data file).
M365_SOURCE = "https://learn.microsoft.com/en-us/microsoft-365/enterprise/urls-and-ip-address-ranges"


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where a host name was learned.

    ``source`` names it for a reader ("the Autodiscover answer of https://...", "the SRV
    record _imaps._tcp.example.com"); ``vouched`` is True when the source itself is trusted
    (rule 4, or the user's own command line); ``why`` says why it is not.
    """

    source: str
    vouched: bool = False
    why: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Whether ``host`` may receive credentials, and the words that explain it."""

    allowed: bool
    host: str
    source: str
    reason: str
    #: The command-line flag that would allow the host (empty when allowed).
    flag: str = ""

    def detail(self) -> str:
        """One sentence for a finding's detail."""
        if self.allowed:
            return f"{self.host}: {self.reason}"
        return (
            f"credentials withheld from {self.host}: named by {self.source}; {self.reason}. "
            f"To send them anyway, run again with {self.flag}"
        )

    def evidence(self) -> dict[str, str]:
        """The same as structured evidence."""
        found = {"host": self.host, "source": self.source, "reason": self.reason}
        if self.flag:
            found["allow_with"] = self.flag
        return found


# scheme "://" userinfo "@": the userinfo runs to the authority's last "@" (a sloppy
# "user:p@ss@host" keeps nothing of the password), never past "/", "?", "#" or a space.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s\"'<>]*)@")


def _hidden(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:***@" if colon else f"{match.group(1)}***@"


def hide_userinfo(text: str) -> str:
    """``text`` with the userinfo of every URL in it hidden: ``https://user:***@host/``
    (the password replaced), ``https://***@host/`` (a lone user name may be a token)."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(_hidden, text)


def inside(host: str, domains: Sequence[str]) -> bool:
    """True when ``host`` is one of ``domains`` or below one of them."""
    host = host.lower().rstrip(".")
    names = (d.lower().rstrip(".") for d in domains)
    return any(host == d or host.endswith("." + d) for d in names)


def trust_flag(host: str) -> str:
    """The ``--trust-redirect`` argument that allows ``host`` (its last two labels: without
    the Public Suffix List, the usual registrable domain)."""
    labels = host.lower().rstrip(".").split(".")
    return "--trust-redirect " + (".".join(labels[-2:]) if len(labels) >= 2 else host)


@functools.cache  # package data, fixed for the process: not an observation of any target
def m365_namespaces() -> tuple[str, ...]:
    """The Exchange Online host names of ``analyzer/data/m365_namespaces.toml`` (read once per
    process; every credential judgement of an outside host consults it)."""
    import tomllib  # noqa: PLC0415 - only runs that judge credentials read it
    from importlib import resources  # noqa: PLC0415

    text = resources.files("analyzer").joinpath("data/m365_namespaces.toml").read_text("utf-8")
    hosts = tomllib.loads(text)["namespaces"]["hosts"]
    return tuple(str(h).lower().rstrip(".") for h in hosts)


def run_domains(target: Target) -> tuple[str, ...]:
    """The e-mail domain of a run (for a host or URL target: the host the user named)."""
    return (target.domain.lower().rstrip("."),)


def allowed_by_name(host: str, *, domains: Sequence[str], trusted: Sequence[str]) -> str | None:
    """Why ``host`` is allowed by its name alone (rules 1-3), or None."""
    host = host.lower().rstrip(".")
    if inside(host, domains):
        return f"inside the e-mail domain {domains[0]}" if domains else "inside the e-mail domain"
    for domain in trusted:
        if inside(host, (domain,)):
            return f"in {domain}, trusted with --trust-redirect {domain}"
    if host in m365_namespaces():
        return f"a Microsoft 365 Exchange Online namespace ({M365_SOURCE})"
    return None


def judge(
    host: str, *, domains: Sequence[str], trusted: Sequence[str], provenance: Provenance
) -> Verdict:
    """The policy's verdict on sending credentials to ``host`` (see the module docstring)."""
    host = host.lower().rstrip(".")
    by_name = allowed_by_name(host, domains=domains, trusted=trusted)
    if by_name is not None:
        return Verdict(allowed=True, host=host, source=provenance.source, reason=by_name)
    if provenance.vouched:
        return Verdict(
            allowed=True,
            host=host,
            source=provenance.source,
            reason=f"named by {provenance.source}",
        )
    outside = f"{host} is outside {domains[0]}" if domains else f"{host} is outside the domain"
    why = f", and that source is not trusted: {provenance.why}" if provenance.why else ""
    return Verdict(
        allowed=False,
        host=host,
        source=provenance.source,
        reason=outside + why,
        flag=trust_flag(host),
    )


def judge_for(ctx: ProbeContext, target: Target, host: str, provenance: Provenance) -> Verdict:
    """:func:`judge` with the run's e-mail domain and ``--trust-redirect`` domains."""
    return judge(
        host,
        domains=run_domains(target),
        trusted=tuple(d.lower().rstrip(".") for d in ctx.options.trust_redirect),
        provenance=provenance,
    )
