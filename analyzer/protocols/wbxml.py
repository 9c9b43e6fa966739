"""A small WBXML codec for the ActiveSync check: FolderSync and Provision, nothing more.

WBXML 1.3 as ActiveSync uses it ([MS-ASWBXML]): a 4-field header (version 0x03, public id
1, charset 106 = UTF-8, an empty string table), then tags from numbered code pages,
``SWITCH_PAGE`` between pages, inline strings (``STR_I``) and opaque data (``OPAQUE``);
ActiveSync never uses attributes or the string table.

The decoder reads what a server (possibly a hostile one) sends, so it is bounded: at most
:data:`MAX_INPUT` bytes, :data:`MAX_DEPTH` levels of nesting, :data:`MAX_ELEMENTS`
elements and :data:`MAX_TEXT` bytes of text in all; multi-byte integers of at most 5
bytes. Anything beyond raises :class:`WbxmlError` at once (a "WBXML bomb" costs nothing).
Tags outside the pages below decode as ``Page:0xNN`` rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_INPUT",
    "MAX_TEXT",
    "CODE_PAGES",
    "Element",
    "WbxmlError",
    "decode",
    "encode",
]

MAX_INPUT = 1024 * 1024
MAX_DEPTH = 32
MAX_ELEMENTS = 20_000
MAX_TEXT = 1024 * 1024

# Global tokens (WBXML 1.3, section 7.1).
SWITCH_PAGE = 0x00
END = 0x01
ENTITY = 0x02
STR_I = 0x03
LITERAL = 0x04
STR_T = 0x83
OPAQUE = 0xC3
_HAS_CONTENT = 0x40
_HAS_ATTRIBUTES = 0x80

#: [MS-ASWBXML] 2.1.2.1: the code pages this codec knows, by number: (name, {token: tag}).
CODE_PAGES: Mapping[int, tuple[str, Mapping[int, str]]] = {
    # Page 7, FolderHierarchy ([MS-ASWBXML] 2.1.2.1.8).
    7: ("FolderHierarchy", {
        0x05: "Folders", 0x06: "Folder", 0x07: "DisplayName", 0x08: "ServerId",
        0x09: "ParentId", 0x0A: "Type", 0x0C: "Status", 0x0E: "Changes", 0x0F: "Add",
        0x10: "Delete", 0x11: "Update", 0x12: "SyncKey", 0x13: "FolderCreate",
        0x14: "FolderDelete", 0x15: "FolderUpdate", 0x16: "FolderSync", 0x17: "Count",
    }),
    # Page 14, Provision ([MS-ASWBXML] 2.1.2.1.15); the policy settings inside
    # EASProvisionDoc are not needed to provision and decode as Provision:0xNN.
    14: ("Provision", {
        0x05: "Provision", 0x06: "Policies", 0x07: "Policy", 0x08: "PolicyType",
        0x09: "PolicyKey", 0x0A: "Data", 0x0B: "Status", 0x0C: "RemoteWipe",
        0x0D: "EASProvisionDoc", 0x0E: "DevicePasswordEnabled",
    }),
}  # fmt: skip
_BY_NAME: Mapping[str, tuple[int, int]] = {
    f"{page_name}:{tag}": (page, token)
    for page, (page_name, tags) in CODE_PAGES.items()
    for token, tag in tags.items()
}


class WbxmlError(ValueError):
    """The bytes are not WBXML this codec accepts (malformed, or beyond a limit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Element:
    """One element: ``tag`` is ``Page:Name`` (``FolderHierarchy:SyncKey``)."""

    tag: str
    children: tuple[Element, ...] = ()
    text: str | None = None
    opaque: bytes | None = None

    def find(self, path: str) -> Element | None:
        """The first descendant at ``path`` (``Changes/Count``; names without the page)."""
        node: Element | None = self
        for part in path.split("/"):
            if node is None:
                return None
            node = next((c for c in node.children if c.name == part), None)
        return node

    def findall(self, name: str) -> Iterator[Element]:
        """Every direct child named ``name``."""
        return (c for c in self.children if c.name == name)

    def findtext(self, path: str, default: str = "") -> str:
        """The text at ``path``, or ``default``."""
        node = self.find(path)
        return node.text if node is not None and node.text is not None else default

    @property
    def name(self) -> str:
        """The tag without its page."""
        return self.tag.rsplit(":", 1)[-1]


# --- encoding -----------------------------------------------------------------------------------


def _mb_uint32(value: int) -> bytes:
    """WBXML multi-byte integer: 7 bits per byte, most significant first."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def encode(root: Element) -> bytes:
    """WBXML 1.3 bytes of ``root`` (tags must be in :data:`CODE_PAGES`)."""
    out = bytearray(b"\x03\x01\x6a\x00")  # version 1.3, unknown public id, UTF-8, no strtbl
    page = [0]

    def emit(node: Element) -> None:
        try:
            node_page, token = _BY_NAME[node.tag]
        except KeyError:
            raise WbxmlError(f"no WBXML token for {node.tag!r}") from None
        if node_page != page[0]:
            out.extend((SWITCH_PAGE, node_page))
            page[0] = node_page
        content = bool(node.children) or node.text is not None or node.opaque is not None
        out.append(token | (_HAS_CONTENT if content else 0))
        if not content:
            return
        if node.text is not None:
            out.append(STR_I)
            out.extend(node.text.encode("utf-8"))
            out.append(0)
        if node.opaque is not None:
            out.append(OPAQUE)
            out.extend(_mb_uint32(len(node.opaque)))
            out.extend(node.opaque)
        for child in node.children:
            emit(child)
        out.append(END)

    emit(root)
    return bytes(out)


# --- decoding -----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.elements = 0
        self.text = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise WbxmlError("the WBXML ends in the middle of the document")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def mb_uint32(self) -> int:
        value = 0
        for _ in range(5):
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value
        raise WbxmlError("a WBXML multi-byte integer longer than 5 bytes")

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise WbxmlError("an inline string without its terminating NUL")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        self.count_text(len(raw))
        return raw.decode("utf-8", "replace")

    def count_text(self, size: int) -> None:
        self.text += size
        if self.text > MAX_TEXT:
            raise WbxmlError(f"more than {MAX_TEXT:,} bytes of text in one document")


def decode(data: bytes) -> Element:
    """The element tree of WBXML ``data``; :class:`WbxmlError` if malformed or too big."""
    if len(data) > MAX_INPUT:
        raise WbxmlError(f"{len(data):,} bytes of WBXML (the limit is {MAX_INPUT:,})")
    r = _Reader(data)
    version = r.byte()
    if version not in (0x01, 0x02, 0x03):
        raise WbxmlError(f"not WBXML: version byte 0x{version:02x}")
    public_id = r.mb_uint32()
    if public_id == 0:
        r.mb_uint32()  # a string-table index naming the public id
    r.mb_uint32()  # charset (ActiveSync: 106, UTF-8)
    strtbl = r.mb_uint32()
    if strtbl > len(data) - r.pos:
        raise WbxmlError("the WBXML string table is longer than the document")
    r.pos += strtbl
    page = [0]
    root = _element(r, page, 1)
    return root


def _element(r: _Reader, page: list[int], depth: int) -> Element:
    if depth > MAX_DEPTH:
        raise WbxmlError(f"WBXML nested deeper than {MAX_DEPTH} levels")
    token = r.byte()
    while token == SWITCH_PAGE:
        page[0] = r.byte()
        token = r.byte()
    if token in (END, ENTITY, STR_I, LITERAL, STR_T, OPAQUE) or (token & 0x3F) < 0x05:
        raise WbxmlError(f"expected a tag, found token 0x{token:02x} at byte {r.pos - 1}")
    if token & _HAS_ATTRIBUTES:
        raise WbxmlError("WBXML attributes are not used by ActiveSync")
    r.elements += 1
    if r.elements > MAX_ELEMENTS:
        raise WbxmlError(f"more than {MAX_ELEMENTS:,} elements in one document")
    page_name, tags = CODE_PAGES.get(page[0], (f"Page{page[0]}", {}))
    ident = token & 0x3F
    tag = f"{page_name}:{tags.get(ident, f'0x{ident:02x}')}"
    if not token & _HAS_CONTENT:
        return Element(tag=tag)
    children: list[Element] = []
    texts: list[str] = []
    opaque: bytes | None = None
    while True:
        if r.pos >= len(r.data):
            raise WbxmlError(f"the WBXML ends inside <{tag}>")
        nxt = r.data[r.pos]
        if nxt == END:
            r.pos += 1
            break
        if nxt == STR_I:
            r.pos += 1
            texts.append(r.cstring())
        elif nxt == OPAQUE:
            r.pos += 1
            size = r.mb_uint32()
            if size > len(r.data) - r.pos:
                raise WbxmlError(f"opaque data of {size:,} bytes announced past the end")
            r.count_text(size)
            opaque = r.data[r.pos : r.pos + size]
            r.pos += size
        elif nxt == ENTITY:
            r.pos += 1
            texts.append(chr(min(r.mb_uint32(), 0x10FFFF)))
        elif nxt == SWITCH_PAGE:
            children.append(_element(r, page, depth + 1))
        elif nxt in (STR_T, LITERAL):
            raise WbxmlError("string-table references are not used by ActiveSync")
        else:
            children.append(_element(r, page, depth + 1))
    text = "".join(texts) if texts else None
    if text is None and opaque is not None:
        text = opaque.decode("utf-8", "replace")
    return Element(tag=tag, children=tuple(children), text=text, opaque=opaque)
