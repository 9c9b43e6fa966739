"""RPC over HTTP v2 RTS PDUs ([MS-RPCH] 2.2.3-2.2.4), for the Outlook Anywhere "RPC ping".

A client opens a virtual connection with two HTTP requests to the RPC proxy: on the OUT
channel (``RPC_OUT_DATA``) it sends CONN/A1, on the IN channel (``RPC_IN_DATA``) CONN/B1;
the outbound proxy then answers on the OUT channel with CONN/A3 and, once the RPC server
accepted the connection, CONN/C2. Seeing CONN/C2 proves the whole path (client → proxy →
mailbox server port) without speaking any RPC interface. Both sides of the lab use these
functions: the probe builds A1/B1 and reads A3/C2, the emulator the other way round.

Every PDU starts with the connection-oriented RPC common header ([C706] 12.6.1, 16 bytes:
version 5.0, packet type, flags, data representation, fragment length, auth length, call
id); an RTS PDU (type 20) adds Flags and NumberOfCommands, then the commands
([MS-RPCH] 2.2.3.5), each a little-endian type followed by its fixed-size body.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "COMMON_HEADER",
    "MAX_FRAGMENT",
    "Pdu",
    "RtsError",
    "conn_a1",
    "conn_a3",
    "conn_b1",
    "conn_c2",
    "fault",
    "parse_pdu",
]

COMMON_HEADER = 16
#: frag_length is 16 bits: no PDU is longer.
MAX_FRAGMENT = 0xFFFF

PTYPE_FAULT = 3
PTYPE_RTS = 20
RTS_FLAG_NONE = 0x0000
RTS_FLAG_OUT_CHANNEL = 0x0010

# [MS-RPCH] 2.2.3.5: RTS command types and the size of their bodies.
RECEIVE_WINDOW_SIZE = 0
FLOW_CONTROL_ACK = 1
CONNECTION_TIMEOUT = 2
COOKIE = 3
CHANNEL_LIFETIME = 4
CLIENT_KEEPALIVE = 5
VERSION = 6
EMPTY = 7
PADDING = 8
NEGATIVE_ANCE = 9
ANCE = 10
CLIENT_ADDRESS = 11
ASSOCIATION_GROUP_ID = 12
DESTINATION = 13
PING_TRAFFIC_SENT_NOTIFY = 14
_BODY_SIZE = {
    RECEIVE_WINDOW_SIZE: 4, FLOW_CONTROL_ACK: 24, CONNECTION_TIMEOUT: 4, COOKIE: 16,
    CHANNEL_LIFETIME: 4, CLIENT_KEEPALIVE: 4, VERSION: 4, EMPTY: 0, NEGATIVE_ANCE: 0,
    ANCE: 0, ASSOCIATION_GROUP_ID: 16, DESTINATION: 4, PING_TRAFFIC_SENT_NOTIFY: 4,
}  # fmt: skip
COMMAND_NAMES = {
    RECEIVE_WINDOW_SIZE: "ReceiveWindowSize", FLOW_CONTROL_ACK: "FlowControlAck",
    CONNECTION_TIMEOUT: "ConnectionTimeout", COOKIE: "Cookie",
    CHANNEL_LIFETIME: "ChannelLifetime", CLIENT_KEEPALIVE: "ClientKeepalive",
    VERSION: "Version", EMPTY: "Empty", PADDING: "Padding", NEGATIVE_ANCE: "NegativeANCE",
    ANCE: "ANCE", CLIENT_ADDRESS: "ClientAddress", ASSOCIATION_GROUP_ID: "AssociationGroupId",
    DESTINATION: "Destination", PING_TRAFFIC_SENT_NOTIFY: "PingTrafficSentNotify",
}  # fmt: skip
RPC_VERSION = 1  # [MS-RPCH] 2.2.3.5.7: RPC over HTTP v2


class RtsError(ValueError):
    """Bytes that are not the PDU expected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pdu:
    """A decoded PDU: packet type, RTS flags and commands (type, value), or a fault status."""

    ptype: int
    flags: int = 0
    commands: tuple[tuple[int, int | bytes], ...] = ()
    status: int | None = None  # fault PDUs: the RPC status (1722 = server unavailable)
    length: int = 0

    @property
    def command_types(self) -> tuple[int, ...]:
        """The command types, in order."""
        return tuple(c for c, _ in self.commands)

    def describe(self) -> str:
        """A one-line name for transcripts (``CONN/A3``, ``CONN/C2``, ``fault 0x6ba``...)."""
        if self.ptype == PTYPE_FAULT:
            return f"fault PDU, status 0x{self.status or 0:x} ({self.status})"
        if self.ptype != PTYPE_RTS:
            return f"PDU type {self.ptype}, {self.length} bytes"
        if self.is_conn_a3:
            return "RTS CONN/A3"
        if self.is_conn_c2:
            return "RTS CONN/C2"
        names = ", ".join(COMMAND_NAMES.get(c, str(c)) for c in self.command_types)
        return f"RTS flags 0x{self.flags:04x} [{names}]"

    @property
    def is_conn_a3(self) -> bool:
        """[MS-RPCH] 2.2.4.4: one ConnectionTimeout command."""
        return self.ptype == PTYPE_RTS and self.command_types == (CONNECTION_TIMEOUT,)

    @property
    def is_conn_c2(self) -> bool:
        """[MS-RPCH] 2.2.4.9: Version, ReceiveWindowSize, ConnectionTimeout."""
        return self.ptype == PTYPE_RTS and self.command_types == (
            VERSION, RECEIVE_WINDOW_SIZE, CONNECTION_TIMEOUT,
        )  # fmt: skip


def _common(ptype: int, length: int) -> bytes:
    # rpc_vers 5, minor 0, type, PFC_FIRST_FRAG|PFC_LAST_FRAG, little-endian ASCII IEEE drep,
    # frag_length, auth_length 0, call_id 0.
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, 0x03, b"\x10\x00\x00\x00", length, 0, 0)


def _rts(flags: int, commands: list[bytes]) -> bytes:
    body = b"".join(commands)
    length = COMMON_HEADER + 4 + len(body)
    return _common(PTYPE_RTS, length) + struct.pack("<HH", flags, len(commands)) + body


def _u32(kind: int, value: int) -> bytes:
    return struct.pack("<II", kind, value)


def _cookie(kind: int, cookie: bytes) -> bytes:
    if len(cookie) != 16:
        raise ValueError("an RTS cookie is 16 bytes")
    return struct.pack("<I", kind) + cookie


def conn_a1(virtual_connection: bytes, out_channel: bytes, *, window: int = 0x10000) -> bytes:
    """[MS-RPCH] 2.2.4.2 CONN/A1 (76 bytes, the whole RPC_OUT_DATA body)."""
    return _rts(RTS_FLAG_NONE, [
        _u32(VERSION, RPC_VERSION), _cookie(COOKIE, virtual_connection),
        _cookie(COOKIE, out_channel), _u32(RECEIVE_WINDOW_SIZE, window),
    ])  # fmt: skip


def conn_b1(
    virtual_connection: bytes, in_channel: bytes, association_group: bytes, *,
    lifetime: int = 0x40000000, keepalive: int = 300_000,
) -> bytes:  # fmt: skip
    """[MS-RPCH] 2.2.4.5 CONN/B1 (104 bytes, the start of the RPC_IN_DATA body)."""
    return _rts(RTS_FLAG_NONE, [
        _u32(VERSION, RPC_VERSION), _cookie(COOKIE, virtual_connection),
        _cookie(COOKIE, in_channel), _u32(CHANNEL_LIFETIME, lifetime),
        _u32(CLIENT_KEEPALIVE, keepalive), _cookie(ASSOCIATION_GROUP_ID, association_group),
    ])  # fmt: skip


def conn_a3(*, timeout_ms: int = 900_000) -> bytes:
    """[MS-RPCH] 2.2.4.4 CONN/A3, from the outbound proxy."""
    return _rts(RTS_FLAG_NONE, [_u32(CONNECTION_TIMEOUT, timeout_ms)])


def conn_c2(*, window: int = 0x10000, timeout_ms: int = 900_000) -> bytes:
    """[MS-RPCH] 2.2.4.9 CONN/C2, from the outbound proxy: the virtual connection is up."""
    return _rts(RTS_FLAG_NONE, [
        _u32(VERSION, RPC_VERSION), _u32(RECEIVE_WINDOW_SIZE, window),
        _u32(CONNECTION_TIMEOUT, timeout_ms),
    ])  # fmt: skip


def fault(status: int) -> bytes:
    """A fault PDU ([C706] 12.6.4.7) carrying ``status`` (1722: RPC_S_SERVER_UNAVAILABLE)."""
    body = struct.pack("<IHBBI4s", 0, 0, 0, 0, status, b"\0\0\0\0")
    return _common(PTYPE_FAULT, COMMON_HEADER + len(body)) + body


def fragment_length(header: bytes) -> int:
    """frag_length of a common header (RtsError unless it is RPC version 5)."""
    if len(header) < COMMON_HEADER:
        raise RtsError("a PDU header is 16 bytes")
    if header[0] != 5 or header[1] != 0:
        raise RtsError(f"not an RPC PDU (version {header[0]}.{header[1]})")
    length = int(struct.unpack_from("<H", header, 8)[0])
    if length < COMMON_HEADER:
        raise RtsError(f"a PDU claims a length of {length} bytes")
    return length


def parse_pdu(data: bytes) -> Pdu:
    """Decode one whole PDU (RTS commands, or the status of a fault)."""
    length = fragment_length(data)
    if len(data) < length:
        raise RtsError(f"the PDU is cut short ({len(data)} of {length} bytes)")
    ptype = data[2]
    if ptype == PTYPE_FAULT:
        status = struct.unpack_from("<I", data, 24)[0] if length >= 28 else None
        return Pdu(ptype=ptype, status=status, length=length)
    if ptype != PTYPE_RTS:
        return Pdu(ptype=ptype, length=length)
    if length < COMMON_HEADER + 4:
        raise RtsError("an RTS PDU without its flags")
    flags, count = struct.unpack_from("<HH", data, COMMON_HEADER)
    pos = COMMON_HEADER + 4
    commands: list[tuple[int, int | bytes]] = []
    for _ in range(count):
        if pos + 4 > length:
            raise RtsError("an RTS command runs past the end of its PDU")
        kind = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if kind == PADDING:
            if pos + 4 > length:
                raise RtsError("a Padding command runs past the end of its PDU")
            size = struct.unpack_from("<I", data, pos)[0]
            pos += 4 + size
            commands.append((kind, size))
            continue
        if kind == CLIENT_ADDRESS:
            family = struct.unpack_from("<I", data, pos)[0] if pos + 4 <= length else 0
            pos += 4 + (4 if family == 0 else 16) + 12
            commands.append((kind, family))
            continue
        size = _BODY_SIZE.get(kind)
        if size is None:
            raise RtsError(f"unknown RTS command type {kind}")
        if pos + size > length:
            raise RtsError("an RTS command runs past the end of its PDU")
        value: int | bytes = (
            struct.unpack_from("<I", data, pos)[0] if size == 4 else data[pos : pos + size]
        )
        commands.append((kind, value))
        pos += size
    return Pdu(ptype=ptype, flags=flags, commands=tuple(commands), length=length)
