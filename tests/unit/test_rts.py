"""analyzer.protocols.rts: the RTS PDUs of the RPC over HTTP v2 virtual connection."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.protocols.rts import (
    RtsError,
    conn_a1,
    conn_a3,
    conn_b1,
    conn_c2,
    fault,
    parse_pdu,
)


def test_conn_a1_is_the_76_byte_out_channel_body() -> None:
    # [MS-RPCH]: RPC_OUT_DATA carries exactly CONN/A1, Content-Length 76
    vc, out = os.urandom(16), os.urandom(16)
    data = conn_a1(vc, out)
    assert len(data) == 76
    pdu = parse_pdu(data)
    # Version, VirtualConnectionCookie, OUTChannelCookie, ReceiveWindowSize
    assert pdu.command_types == (6, 3, 3, 0)
    assert pdu.commands[1][1] == vc and pdu.commands[2][1] == out


def test_conn_b1_layout() -> None:
    pdu = parse_pdu(conn_b1(os.urandom(16), os.urandom(16), os.urandom(16)))
    assert pdu.length == 104
    # Version, VC cookie, IN channel cookie, ChannelLifetime, ClientKeepalive, AssociationGroupId
    assert pdu.command_types == (6, 3, 3, 4, 5, 12)


def test_a3_and_c2_are_recognised() -> None:
    assert parse_pdu(conn_a3()).is_conn_a3
    c2 = parse_pdu(conn_c2())
    assert c2.is_conn_c2 and not c2.is_conn_a3
    assert c2.describe() == "RTS CONN/C2"


def test_fault_carries_the_rpc_status() -> None:
    # 1722 = RPC_S_SERVER_UNAVAILABLE, what Outlook shows when the mailbox port is unreachable
    pdu = parse_pdu(fault(1722))
    assert pdu.status == 1722
    assert "0x6ba" in pdu.describe()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x04\x00" + b"\0" * 14, "not an RPC PDU"),
        (struct.pack("<BBBB4sHHI", 5, 0, 20, 3, b"\x10\0\0\0", 8, 0, 0), "claims a length"),
        (conn_a3()[:-2], "cut short"),
        (conn_a3()[:16] + struct.pack("<HH", 0, 5) + b"\0" * 8, "past the end"),
    ],
)
def test_malformed_pdus(data: bytes, words: str) -> None:
    with pytest.raises(RtsError, match=words):
        parse_pdu(data)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_rts_error(data: bytes) -> None:
    try:
        parse_pdu(b"\x05\x00\x14\x03\x10\x00\x00\x00" + data)
    except RtsError:
        pass
