"""Scenarios served by real servers other than our emulator (DESIGN.md section 8: grounding).

``sogo``: ActiveSync from SOGo 5 (Debian's ``sogo-activesync``) behind nginx, with the
scenario's Dovecot as its IMAP store (see ``analyzer.lab.sogo``). SOGo offers no Autodiscover,
so the domain publishes none: the Exchange checks fall back to the conventional URLs on
``mail.<domain>``, where only ActiveSync answers (EWS, Outlook Anywhere and MAPI over HTTP are
404, "not offered"). SOGo never asks a device to provision (its FolderSync needs no policy key).
The second user, ``bob``, exists in SOGo's user source but Dovecot refuses his login: SOGo
then answers FolderSync with status 1 and no mail folder at all.
"""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, Scenario

__all__ = ["SCENARIOS"]

_EAS = "https://mail.sogo.test/Microsoft-Server-ActiveSync"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="sogo",
        description="ActiveSync from a real SOGo (sogod behind nginx, Dovecot as its IMAP "
        "store); no Autodiscover, as SOGo offers none",
        sogo=True,
        users=(("alice", "alice-lab-password"), ("bob", "bob-lab-password")),
        dovecot={"rca_deny": "bob@sogo.test"},
        remove=(("autodiscover", "A"), ("autodiscover", "AAAA"), ("_autodiscover._tcp", "SRV")),
        expect=(
            # Deserved: without Autodiscover, phones and Outlook cannot set themselves up.
            Expect(code="autodiscover.none", status="fail", subject="alice@sogo.test"),
            Expect(code="activesync.options", status="pass", subject=_EAS),
            Expect(code="activesync.foldersync.ok", status="pass", subject=_EAS),
        ),
    ),
)
