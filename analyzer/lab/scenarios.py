"""Lab scenarios: data, not code paths.

The types are in :mod:`analyzer.lab.scenario_model`; the scenarios themselves, one module
per area, in :mod:`analyzer.lab.sets`. :data:`SCENARIOS` joins them in a fixed order: a
scenario's addresses derive from its position here, so the lab renumbers when entries are
inserted before others (tests use names, never addresses).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from analyzer.lab.errors import LabError
from analyzer.lab.pki import CERT_KINDS
from analyzer.lab.scenario_model import (
    _MAX_SCENARIOS,
    MAIL_PORTS,
    ROLES,
    WEB_ROLES,
    Expect,
    FilterRule,
    HttpRule,
    Record,
    Scenario,
)
from analyzer.lab.sets import base, discovery, dns, login, servers, tls

__all__ = [
    "MAIL_PORTS",
    "ROLES",
    "SCENARIOS",
    "WEB_ROLES",
    "Expect",
    "FilterRule",
    "HttpRule",
    "Record",
    "Scenario",
    "get_scenario",
    "host_addresses",
    "host_name",
    "scenario_index",
    "select_scenarios",
]

SCENARIOS: Final[tuple[Scenario, ...]] = (
    base.SCENARIOS + dns.SCENARIOS + tls.SCENARIOS + discovery.SCENARIOS + login.SCENARIOS
    + servers.SCENARIOS
)


def scenario_index(name: str) -> int:
    """Position of scenario ``name`` in ``SCENARIOS`` (what its addresses derive from)."""
    for index, scenario in enumerate(SCENARIOS):
        if scenario.name == name:
            return index
    known = ", ".join(s.name for s in SCENARIOS)
    raise LabError(f"unknown lab scenario {name!r}; known: {known}")


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; ``LabError`` naming the known ones if there is none."""
    return SCENARIOS[scenario_index(name)]


def select_scenarios(names: Iterable[str] | None) -> tuple[Scenario, ...]:
    """The scenarios named (all when ``None``), in ``SCENARIOS`` order, without duplicates."""
    if names is None:
        return SCENARIOS
    wanted = {get_scenario(name).name for name in names}
    if not wanted:
        raise LabError("no lab scenario selected")
    return tuple(s for s in SCENARIOS if s.name in wanted)


def host_name(domain: str, role: str) -> str:
    """The host name of ``role`` in ``domain`` (the apex is the domain itself)."""
    return domain if role == "apex" else f"{role}.{domain}"


def host_addresses(index: int, role: str) -> tuple[str, str]:
    """The (IPv4, IPv6) addresses of ``role`` in the scenario at ``index``.

    198.18.0.0/15 is the RFC 2544 benchmarking range and 2001:db8::/32 the RFC 3849
    documentation range, so no lab address can be a real host. 198.18.0.x and 2001:db8::x are
    the lab's own hosts (DNS, PKI); scenario ``i`` gets 198.18.<i+1>.<10+r> and
    2001:db8:<i+1>::<10+r> for the role at position ``r`` of ``ROLES``.
    """
    if not 0 <= index < _MAX_SCENARIOS:
        raise LabError(f"scenario index {index} out of range (at most {_MAX_SCENARIOS})")
    octet = 10 + ROLES.index(role)
    return f"198.18.{index + 1}.{octet}", f"2001:db8:{index + 1:x}::{octet:x}"


def _check(scenarios: tuple[Scenario, ...]) -> None:
    """Fail at import on a malformed registry, not halfway through ``Lab.up``."""
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise LabError(f"duplicate scenario names in {names}")
    if len(scenarios) > _MAX_SCENARIOS:
        raise LabError(f"at most {_MAX_SCENARIOS} scenarios")
    # One sogod serves the lab, with one IMAP server (SOGoIMAPServer).
    if sum(s.sogo for s in scenarios) > 1:
        raise LabError("at most one scenario may use SOGo")
    for scenario in scenarios:
        for key, kind in scenario.certs.items():
            role, _, port = key.partition(":")
            if role not in ROLES or (port and not port.isdigit()):
                raise LabError(f"{scenario.name}: certs key {key!r} is not 'role' or 'role:port'")
            if kind not in CERT_KINDS:
                raise LabError(f"{scenario.name}: unknown certificate kind {kind!r}")
        for rule in scenario.filters:
            if rule.role not in ROLES:
                raise LabError(f"{scenario.name}: filter on unknown role {rule.role!r}")
        for http in scenario.http:
            if not http.path.startswith("/") or any(r not in WEB_ROLES for r in http.roles):
                raise LabError(f"{scenario.name}: bad http rule {http!r}")
            if not set(http.ports) <= {80, 443}:
                raise LabError(f"{scenario.name}: http rule ports must be 80 and/or 443")
        for smtpd_port in scenario.postfix:
            if smtpd_port not in (25, 587, 465):
                raise LabError(f"{scenario.name}: postfix options for port {smtpd_port}: no smtpd")


_check(SCENARIOS)
