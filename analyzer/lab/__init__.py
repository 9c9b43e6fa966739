"""The bundled lab: real mail, DNS and web servers in network namespaces (DESIGN.md section 7).

::

    from analyzer.lab import Lab, LabInfo, enter_netns

    info = Lab(directory=Path("/run/rca-lab"), scenarios=None, latency_ms=0).up()
    enter_netns(info.client_netns)          # this thread now talks from the client side
    info.scenario("healthy").hosts["mail"]  # HostInfo(name, ipv4, ipv6)
    Lab.down(info.directory)

``rca lab up|down|status`` (``analyzer.lab.cli``) wraps the same calls. Scenarios are data, in
``analyzer.lab.scenarios``.
"""

from __future__ import annotations

from analyzer.lab.errors import LabError
from analyzer.lab.lab import DEFAULT_DIRECTORY, Lab, check_prerequisites, process_status
from analyzer.lab.netns import CLIENT_NETNS, SERVER_NETNS, enter_netns, in_netns
from analyzer.lab.scenarios import (
    SCENARIOS,
    Expect,
    FilterRule,
    HttpRule,
    Scenario,
    get_scenario,
)
from analyzer.lab.state import HostInfo, LabInfo, LabUser, ScenarioInfo

__all__ = [
    "CLIENT_NETNS",
    "DEFAULT_DIRECTORY",
    "SCENARIOS",
    "SERVER_NETNS",
    "Expect",
    "FilterRule",
    "HostInfo",
    "HttpRule",
    "Lab",
    "LabError",
    "LabInfo",
    "LabUser",
    "Scenario",
    "ScenarioInfo",
    "check_prerequisites",
    "enter_netns",
    "get_scenario",
    "in_netns",
    "process_status",
]
