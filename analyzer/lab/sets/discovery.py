"""Autodiscover, autoconfig and RFC 6186 discovery scenarios."""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, FilterRule, HttpRule, Scenario

__all__ = ["SCENARIOS"]

SCENARIOS: tuple[Scenario, ...] = ()

_ = (Expect, FilterRule, HttpRule)
