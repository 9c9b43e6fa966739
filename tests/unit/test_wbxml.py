"""analyzer.protocols.wbxml: the ActiveSync subset, round trips, and the limits that stop a
WBXML bomb."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.protocols.wbxml import MAX_DEPTH, MAX_ELEMENTS, Element, WbxmlError, decode, encode


def test_foldersync_request_bytes_are_the_canonical_ones() -> None:
    # Given the first FolderSync of a new device
    root = Element(tag="FolderHierarchy:FolderSync",
                   children=(Element(tag="FolderHierarchy:SyncKey", text="0"),))  # fmt: skip
    # Then the bytes are those every ActiveSync client sends ([MS-ASWBXML] page 7)
    assert encode(root).hex() == "03016a00000756520330000101"


def test_page_switches_and_round_trip() -> None:
    # Given a Provision acknowledgement (page 14)
    policy = Element(tag="Provision:Policy", children=(
        Element(tag="Provision:PolicyType", text="MS-EAS-Provisioning-WBXML"),
        Element(tag="Provision:PolicyKey", text="3942919513"),
        Element(tag="Provision:Status", text="1"),
    ))  # fmt: skip
    root = Element(tag="Provision:Provision",
                   children=(Element(tag="Provision:Policies", children=(policy,)),))
    # When encoded and decoded
    again = decode(encode(root))
    # Then the tree is the same, and paths find the values
    assert again == root
    assert again.findtext("Policies/Policy/PolicyKey") == "3942919513"


def test_unknown_tags_decode_by_number() -> None:
    # A policy setting outside the table decodes instead of failing
    data = bytes.fromhex("03016a0000" "0e" "45" "5f" "03" "31" "00" "01" "01")
    root = decode(data)
    assert root.tag == "Provision:Provision"
    assert root.children[0].tag == "Provision:0x1f"
    assert root.children[0].text == "1"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "ends"),
        (b"\x09\x01\x6a\x00", "version"),
        (b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x30", "NUL"),  # unterminated inline string
        (b"\x03\x01\x6a\x00\x00\x07\x56", "ends"),  # unterminated element
        (b"\x03\x01\x6a\x00\x00\x07\x56\xc3\xff\xff\xff\x7f", "opaque"),  # 256 MB opaque
        (b"\x03\x01\x6a\x00\x00\x07\x56\xc3\x80\x80\x80\x80\x80\x01", "5 bytes"),
        (b"\x03\x01\x6a\x00\x00\x07\x96\x01", "attributes"),
        (b"\x03\x01\x6a\x00\x00\x07\x56\x83\x00\x01", "string-table"),
    ],
)
def test_malformed_wbxml_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(WbxmlError, match=words):
        decode(data)


def test_deep_nesting_bomb_is_refused() -> None:
    # Given a document nesting FolderSync inside itself far deeper than any answer needs
    depth = 100_000
    data = b"\x03\x01\x6a\x00\x00\x07" + b"\x56" * depth + b"\x01" * depth
    # Then decoding stops at the depth limit, quickly and without recursion errors
    with pytest.raises(WbxmlError, match=f"deeper than {MAX_DEPTH}"):
        decode(data)


def test_element_count_bomb_is_refused() -> None:
    # Given a flat document of empty elements beyond the limit
    data = b"\x03\x01\x6a\x00\x00\x07\x56" + b"\x17" * (MAX_ELEMENTS + 10) + b"\x01"
    with pytest.raises(WbxmlError, match="elements"):
        decode(data)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_wbxml_error(data: bytes) -> None:
    # Property: hostile input never raises anything but WbxmlError
    try:
        decode(b"\x03\x01\x6a\x00" + data)
    except WbxmlError:
        pass


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0",
                                               blacklist_categories=("Cs",)),
                        max_size=30), max_size=10))  # fmt: skip
def test_folder_names_round_trip(names: list[str]) -> None:
    adds = tuple(Element(tag="FolderHierarchy:Add",
                         children=(Element(tag="FolderHierarchy:DisplayName", text=n),))
                 for n in names)  # fmt: skip
    root = Element(tag="FolderHierarchy:FolderSync",
                   children=(Element(tag="FolderHierarchy:Changes", children=adds),))
    assert decode(encode(root)) == root
