"""Autodiscover answers for purpose-built servers ([MS-OXDSCLI] POX, outlook schema)."""

from __future__ import annotations

__all__ = ["settings_xml"]


def settings_xml(inner: str) -> bytes:
    """A POX response whose ``Account`` holds ``inner`` (an Action and Protocol blocks)."""
    return (
        '<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        'autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/'
        'exchange/autodiscover/outlook/responseschema/2006a"><Account><AccountType>email'
        f"</AccountType>{inner}</Account></Response></Autodiscover>"
    ).encode()
