"""probes.activesync: how FolderSync answers are judged, on answers real servers gave.

The SOGo answers were captured from SOGo 5.8.0 (Debian 12's ``sogo-activesync``
5.8.0-2+deb12u4) in the lab's ``sogo`` scenario, by the request the probe sends (FolderSync,
SyncKey 0, protocol 14.0).
"""

from __future__ import annotations

from analyzer.core.model import Status
from analyzer.protocols import wbxml
from probes.activesync import folders_finding

#: alice: SOGo reached her mailbox on Dovecot: six mail folders (INBOX is type 2), a calendar,
#: a task list and an address book.
SOGO_FOLDERSYNC = bytes.fromhex(
    "03016a000007564c033100015203766d5f343030635f33306336336132655f3100014e57033900014f48036d"
    "61696c2532463939643739663331616430323136366236633431303030303833656363333735000149033000"
    "014703494e424f5800014a03320001014f48036d61696c253246303135363136326661643032313636623663"
    "343130303030383365636333373500014903300001470344726166747300014a03330001014f48036d61696c"
    "2532463938643739663331616430323136366236633431303030303833656363333735000149033000014703"
    "53656e7400014a03350001014f48036d61696c25324634386666343533366164303231363662366334313030"
    "30303833656363333735000149033000014703547261736800014a03340001014f48036d61696c2532463438"
    "6635383833396164303231363662366334313030303038336563633337350001490330000147034a756e6b00"
    "014a0331320001014f48036d61696c2532466538393936343030616530323136366236633431303030303833"
    "65636333373500014903300001470354656d706c6174657300014a0331320001014f4803766576656e742532"
    "46706572736f6e616c000149033000014703506572736f6e616c2043616c656e64617200014a03380001014f"
    "480376746f646f253246706572736f6e616c000149033000014703506572736f6e616c2043616c656e646172"
    "00014a03370001014f48037663617264253246706572736f6e616c000149033000014703506572736f6e616c"
    "204164647265737320426f6f6b00014a03390001010101"
)
#: bob: SOGo's IMAP login was refused (Dovecot denies him), yet FolderSync says status 1 and
#: lists the calendar, task list and address book alone.
SOGO_FOLDERSYNC_IMAP_REFUSED = bytes.fromhex(
    "03016a000007564c033100015203766d5f343030635f33306336336132655f3200014e57033300014f480376"
    "6576656e74253246706572736f6e616c000149033000014703506572736f6e616c2043616c656e6461720001"
    "4a03380001014f480376746f646f253246706572736f6e616c000149033000014703506572736f6e616c2043"
    "616c656e64617200014a03370001014f48037663617264253246706572736f6e616c00014903300001470350"
    "6572736f6e616c204164647265737320426f6f6b00014a03390001010101"
)


def test_sogo_hierarchy_with_an_inbox_passes() -> None:
    # Given SOGo's answer for a user whose mailbox it could open
    finding = folders_finding(wbxml.decode(SOGO_FOLDERSYNC))
    # Then FolderSync succeeded, naming the folders
    assert (finding.code, finding.status) == ("activesync.foldersync.ok", Status.PASS)
    assert finding.detail.startswith("9 folders: INBOX, Drafts, Sent, Trash")


def test_sogo_hierarchy_without_mail_folders_fails() -> None:
    # Given SOGo's answer (status 1) when its IMAP server refused the user
    root = wbxml.decode(SOGO_FOLDERSYNC_IMAP_REFUSED)
    assert root.findtext("Status") == "1"
    # When judged
    finding = folders_finding(root)
    # Then the missing Inbox is a failure: the phone would sync no mail
    assert (finding.code, finding.status) == ("activesync.foldersync.no_inbox", Status.FAIL)
    assert finding.evidence["types"] == ["8", "7", "9"]
    assert "Personal Address Book" in finding.detail


def test_failure_status_is_reported_before_the_folders() -> None:
    # Given FolderSync status 110 (the server cannot reach the mailbox) and no hierarchy
    root = wbxml.Element(tag="FolderHierarchy:FolderSync",
                         children=(wbxml.Element(tag="FolderHierarchy:Status", text="110"),))
    # Then the status is the finding, not the missing Inbox
    finding = folders_finding(root)
    assert (finding.code, finding.detail) == ("activesync.foldersync.status",
                                              "FolderSync status 110")
