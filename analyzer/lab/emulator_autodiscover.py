"""Autodiscover endpoints of the emulator: POX (outlook 2006a, mobilesync) and v2 JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzer.lab.emulator import Handler

__all__ = ["ROUTES"]

ROUTES: dict[str, Handler] = {}
"""Path prefix -> handler, merged into ``analyzer.lab.emulator.ROUTES``."""
