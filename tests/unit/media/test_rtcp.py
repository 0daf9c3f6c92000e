"""RTCP packets: every type parsed from, and serialized to, hand-built RFC layouts."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.media.rtcp import (
    RtcpBye,
    RtcpError,
    RtcpFir,
    RtcpGenericNack,
    RtcpPli,
    RtcpReceiverReport,
    RtcpReceptionReport,
    RtcpRemb,
    RtcpSdes,
    RtcpSdesChunk,
    RtcpSenderReport,
    RtcpTransportCc,
    RtcpUnknown,
    ntp_timestamp,
    parse_rtcp,
    serialize_rtcp,
)

REPORT_BLOCK = bytes.fromhex(
    "00000002"  # SSRC_1
    "19fffffe"  # fraction lost 25, cumulative lost -2 (24-bit two's complement)
    "00010064"  # extended highest sequence: cycles 1, seq 100
    "0000000a"  # jitter 10
    "11223344"  # LSR
    "00010000"  # DLSR (1 s)
)

SR = (
    bytes.fromhex("81c8000c")  # V=2 RC=1 PT=200 length 12
    + bytes.fromhex("00000001e1234567 89abcdef00015f900000006400001388")
    + REPORT_BLOCK
)
RR = bytes.fromhex("81c9000700000001") + REPORT_BLOCK
SDES = bytes.fromhex("81ca0004000000010109" + b"rondpoint".hex() + "00")
NACK = bytes.fromhex("81cd000400000001000000020064000500c80000")
PLI = bytes.fromhex("81ce00020000000100000002")
FIR = bytes.fromhex("84ce000400000001000000000000000207000000")
TRANSPORT_CC = bytes.fromhex("8fcd000400000001000000020001000220020000")


def test_sender_report() -> None:
    [sr] = parse_rtcp(SR)
    assert sr == RtcpSenderReport(
        ssrc=1,
        ntp_timestamp=0xE123456789ABCDEF,
        rtp_timestamp=90000,
        packet_count=100,
        octet_count=5000,
        reports=[RtcpReceptionReport(2, 25, -2, 0x10064, 10, 0x11223344, 0x10000)],
    )
    assert sr.serialize() == SR


def test_receiver_report() -> None:
    [rr] = parse_rtcp(RR)
    assert isinstance(rr, RtcpReceiverReport)
    assert rr.ssrc == 1
    assert rr.reports[0].packets_lost == -2
    assert rr.reports[0].fraction_lost == 25
    assert rr.serialize() == RR


def test_sdes_cname() -> None:
    [sdes] = parse_rtcp(SDES)
    assert sdes == RtcpSdes([RtcpSdesChunk(1, [(1, b"rondpoint")])])
    assert sdes.serialize() == SDES


def test_sdes_chunk_needing_a_full_padding_word() -> None:
    sdes = RtcpSdes([RtcpSdesChunk(7, [(1, b"ab")]), RtcpSdesChunk(8, [(1, b"c")])])
    data = sdes.serialize()
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [sdes]


def test_bye_with_reason() -> None:
    data = bytes.fromhex("82cb0003000000010000000203627965")
    [bye] = parse_rtcp(data)
    assert bye == RtcpBye([1, 2], b"bye")
    assert bye.serialize() == data


def test_bye_without_reason() -> None:
    bye = RtcpBye([5])
    assert bye.serialize() == bytes.fromhex("81cb000100000005")
    assert parse_rtcp(bye.serialize()) == [bye]


def test_generic_nack_expands_pid_and_blp() -> None:
    [nack] = parse_rtcp(NACK)
    # PID 100, BLP 0b101 -> 101 and 103; PID 200, BLP 0
    assert nack == RtcpGenericNack(1, 2, [100, 101, 103, 200])
    assert nack.serialize() == NACK


def test_generic_nack_across_wrap() -> None:
    nack = RtcpGenericNack(1, 2, [65535, 0, 3])
    [again] = parse_rtcp(nack.serialize())
    assert isinstance(again, RtcpGenericNack)
    assert again.lost == [65535, 0, 3]
    assert len(nack.serialize()) == 16  # one FCI entry covers all three


def test_pli() -> None:
    [pli] = parse_rtcp(PLI)
    assert pli == RtcpPli(1, 2)
    assert pli.serialize() == PLI


def test_fir() -> None:
    [fir] = parse_rtcp(FIR)
    assert fir == RtcpFir(1, 0, [(2, 7)])
    assert fir.serialize() == FIR


def test_remb() -> None:
    # 1 SSRC; exponent 0 and mantissa 0x3d090 would be 250000 b/s
    data = bytes.fromhex("8fce0005000000010000000052454d420103d09000000002")
    [remb] = parse_rtcp(data)
    assert remb == RtcpRemb(1, 250000, [2])
    assert remb.serialize() == data


def test_remb_large_bitrate_uses_exponent() -> None:
    remb = RtcpRemb(1, 10_000_000, [2, 3])
    [again] = parse_rtcp(remb.serialize())
    assert isinstance(again, RtcpRemb)
    assert again.ssrcs == [2, 3]
    assert 9_990_000 <= again.bitrate <= 10_000_000


def test_transport_cc_is_kept_raw_for_passthrough() -> None:
    [feedback] = parse_rtcp(TRANSPORT_CC)
    assert feedback == RtcpTransportCc(1, 2, bytes.fromhex("0001000220020000"))
    assert feedback.serialize() == TRANSPORT_CC


def test_unknown_packet_type_is_kept() -> None:
    app = bytes.fromhex("80cc00020000000174657374")  # APP "test"
    [packet] = parse_rtcp(app)
    assert packet == RtcpUnknown(204, 0, bytes.fromhex("0000000174657374"))
    assert packet.serialize() == app


def test_compound_packet_round_trip() -> None:
    compound = RR + SDES + NACK + PLI
    packets = parse_rtcp(compound)
    assert [type(p) for p in packets] == [RtcpReceiverReport, RtcpSdes, RtcpGenericNack, RtcpPli]
    assert serialize_rtcp(packets) == compound


def test_padding_on_last_packet_is_removed() -> None:
    padded = bytes.fromhex("a1ce0003000000010000000200000004")
    assert parse_rtcp(padded) == [RtcpPli(1, 2)]


@pytest.mark.parametrize(
    "data",
    [bytes.fromhex("81c9"), bytes.fromhex("81c9000700000001"), bytes.fromhex("41c90001 00000001")],
)
def test_malformed_compound_rejected(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_rtcp(data)


def test_ntp_timestamp() -> None:
    assert ntp_timestamp(0.5) == (2208988800 << 32) | (1 << 31)


@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=60, unique=True))
def test_nack_round_trip_keeps_the_lost_set(lost: list[int]) -> None:
    [again] = parse_rtcp(RtcpGenericNack(1, 2, lost).serialize())
    assert isinstance(again, RtcpGenericNack)
    assert sorted(again.lost) == sorted(lost)
