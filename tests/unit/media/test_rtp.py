"""RTP packets and RFC 8285 header extensions: hand-built vectors, round trips, in-place rewriting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.media.rtp import (
    ONE_BYTE_PROFILE,
    TWO_BYTE_PROFILE,
    RtpError,
    RtpPacket,
    find_extension,
    get_payload_type,
    get_sequence_number,
    get_ssrc,
    get_timestamp,
    payload_end,
    payload_offset,
    rewrite_extension_ids,
    rewrite_header,
    set_payload_type,
    set_sequence_number,
    set_ssrc,
    set_timestamp,
)

# V=2 X=1 CC=0 | M=1 PT=111 | seq 0x1234 | ts 960 | SSRC 0xdeadbeef
# one-byte extensions: id 1 len 1 (audio level 0x9e), id 4 len 2 ("01"), 1 byte of padding
ONE_BYTE = bytes.fromhex(
    "90ef1234 000003c0 deadbeef"
    "bede0002 109e 413031 00 0000"  # ext header, 2 words: 10 9e | 41 30 31 | 00 | 00 00
    "cafebabe"
)

# V=2 P=1 X=1 CC=1 | PT=96 | seq 7 | ts 90000 | SSRC 1 | CSRC 2
# two-byte extensions (0x1000): id 1 len 0, id 200 len 3 "abc"; then payload, 3 bytes of padding
TWO_BYTE = bytes.fromhex(
    "b1600007 00015f90 00000001 00000002"
    "10000002 0100 c803616263 00"  # 1 word = 8 bytes: 01 00 | c8 03 61 62 63 | 00
    "0102"
    "000003"
)


def test_parse_one_byte_extensions() -> None:
    packet = RtpPacket.parse(ONE_BYTE)
    assert packet.payload_type == 111
    assert packet.marker is True
    assert packet.sequence_number == 0x1234
    assert packet.timestamp == 960
    assert packet.ssrc == 0xDEADBEEF
    assert packet.extension_profile == ONE_BYTE_PROFILE
    assert packet.extensions == {1: b"\x9e", 4: b"01"}
    assert packet.payload == bytes.fromhex("cafebabe")


def test_serialize_one_byte_extensions_round_trip() -> None:
    packet = RtpPacket.parse(ONE_BYTE)
    again = RtpPacket.parse(packet.serialize())
    assert again == packet
    # the canonical layout (elements packed, then padding) is byte-identical here
    assert packet.serialize() == bytes.fromhex(
        "90ef1234000003c0deadbeefbede0002109e413031000000cafebabe"
    )


def test_parse_two_byte_extensions_csrc_and_padding() -> None:
    packet = RtpPacket.parse(TWO_BYTE)
    assert packet.csrc == [2]
    assert packet.extension_profile == TWO_BYTE_PROFILE
    assert packet.extensions == {1: b"", 200: b"abc"}
    assert packet.payload == b"\x01\x02"
    assert packet.padding_size == 3


def test_serialize_two_byte_extensions_round_trip() -> None:
    packet = RtpPacket.parse(TWO_BYTE)
    assert packet.serialize() == TWO_BYTE


def test_serialize_picks_two_byte_form_when_needed() -> None:
    packet = RtpPacket(payload_type=96, extensions={15: b"x"}, payload=b"p")
    data = packet.serialize()
    assert data[12:14] == b"\x10\x00"
    assert RtpPacket.parse(data).extensions == {15: b"x"}


def test_raw_rfc3550_extension_round_trip() -> None:
    packet = RtpPacket(extension_profile=0xABCD, extension_data=b"\x01\x02\x03\x04", payload=b"z")
    again = RtpPacket.parse(packet.serialize())
    assert again.extension_profile == 0xABCD
    assert again.extension_data == b"\x01\x02\x03\x04"
    assert again.extensions == {}


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x00",
        bytes.fromhex("400000000000000000000000"),
        bytes.fromhex("9000000100000000000000"),
    ],
)
def test_parse_rejects_malformed(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_field_helpers_read_without_parsing() -> None:
    assert get_payload_type(ONE_BYTE) == 111
    assert get_sequence_number(ONE_BYTE) == 0x1234
    assert get_timestamp(ONE_BYTE) == 960
    assert get_ssrc(ONE_BYTE) == 0xDEADBEEF
    assert payload_offset(ONE_BYTE) == 24
    assert payload_offset(TWO_BYTE) == 28
    assert payload_end(TWO_BYTE) == len(TWO_BYTE) - 3


def test_field_helpers_rewrite_in_place() -> None:
    buf = bytearray(ONE_BYTE)
    set_ssrc(buf, 42)
    set_sequence_number(buf, 0x10000 + 5)
    set_timestamp(buf, 7)
    set_payload_type(buf, 96)
    packet = RtpPacket.parse(buf)
    assert (packet.ssrc, packet.sequence_number, packet.timestamp) == (42, 5, 7)
    assert packet.payload_type == 96 and packet.marker is True
    assert packet.extensions == {1: b"\x9e", 4: b"01"}


def test_rewrite_header_keeps_marker_and_body() -> None:
    buf = bytearray(ONE_BYTE)
    rewrite_header(buf, 100, 1, 2, 3)
    assert buf[12:] == ONE_BYTE[12:]
    packet = RtpPacket.parse(buf)
    assert (packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc) == (
        100,
        1,
        2,
        3,
    )
    assert packet.marker is True


def test_find_extension() -> None:
    assert find_extension(ONE_BYTE, 1) == b"\x9e"
    assert find_extension(ONE_BYTE, 4) == b"01"
    assert find_extension(ONE_BYTE, 2) is None
    assert find_extension(TWO_BYTE, 200) == b"abc"
    assert find_extension(TWO_BYTE, 1) == b""


def test_rewrite_extension_ids_renumbers_and_strips_one_byte() -> None:
    buf = bytearray(ONE_BYTE)
    id_map = bytearray(256)
    id_map[1] = 3  # keep audio level as id 3, strip id 4
    rewrite_extension_ids(buf, bytes(id_map))
    assert len(buf) == len(ONE_BYTE)
    packet = RtpPacket.parse(buf)
    assert packet.extensions == {3: b"\x9e"}
    assert packet.payload == bytes.fromhex("cafebabe")


def test_rewrite_extension_ids_two_byte() -> None:
    buf = bytearray(TWO_BYTE)
    id_map = bytearray(256)
    id_map[200] = 9
    rewrite_extension_ids(buf, bytes(id_map))
    packet = RtpPacket.parse(buf)
    assert packet.extensions == {9: b"abc"}
    assert packet.payload == b"\x01\x02"


@given(
    payload_type=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    extensions=st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=5),
    payload=st.binary(max_size=64),
    padding=st.integers(0, 16),
)
def test_round_trip_any_packet(
    payload_type: int,
    seq: int,
    ts: int,
    ssrc: int,
    marker: bool,
    csrc: list[int],
    extensions: dict[int, bytes],
    payload: bytes,
    padding: int,
) -> None:
    packet = RtpPacket(
        payload_type, seq, ts, ssrc, marker, csrc, extensions, 0, b"", payload, padding
    )
    again = RtpPacket.parse(packet.serialize())
    assert again.extensions == extensions
    assert (again.payload_type, again.sequence_number, again.timestamp, again.ssrc) == (
        payload_type,
        seq,
        ts,
        ssrc,
    )
    assert again.marker == marker and again.csrc == csrc
    assert again.payload == payload and again.padding_size == padding
    for ext_id, value in extensions.items():
        assert find_extension(packet.serialize(), ext_id) == value
