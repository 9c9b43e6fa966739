"""Client login scenarios (IMAP, POP3, SMTP, EWS, ActiveSync, RPC/HTTP, MAPI/HTTP)."""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, FilterRule, HttpRule, Scenario

__all__ = ["SCENARIOS"]

SCENARIOS: tuple[Scenario, ...] = ()

_ = (Expect, FilterRule, HttpRule)
