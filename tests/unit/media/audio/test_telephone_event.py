import glob
import struct
from pathlib import Path

import pytest

from gateway.media.audio.telephone_event import (
    DtmfDetector,
    TelephoneEvent,
    TelephoneEventError,
    dtmf_packets,
)
from gateway.media.rtp import RtpPacket

SIPP_PCAPS = Path("/usr/share/sip-tester")


def _event_packet(
    seq: int, ts: int, event: int, duration: int, end: bool, marker: bool
) -> RtpPacket:
    return RtpPacket(
        payload_type=101,
        sequence_number=seq,
        timestamp=ts,
        ssrc=1,
        marker=marker,
        payload=TelephoneEvent(event, end, 10, duration).serialize(),
    )


def test_payload_fields_parse_and_serialize() -> None:
    event = TelephoneEvent.parse(bytes.fromhex("0b8a0320"))
    assert event == TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert event.serialize() == bytes.fromhex("0b8a0320")
    with pytest.raises(TelephoneEventError):
        TelephoneEvent.parse(b"\x01\x0a")


def test_the_generator_sends_marker_first_growing_durations_and_three_ends() -> None:
    packets = dtmf_packets("5", ssrc=9, sequence_number=65534, timestamp=4000, duration_ms=100)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert {p.timestamp for p in packets} == {4000}
    assert [p.sequence_number for p in packets[:3]] == [65534, 65535, 0]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}


def test_digits_are_reported_once_despite_triple_ends_and_bad_markers() -> None:
    stream = []
    seq = 100
    for number, (digit, ts) in enumerate([("1", 8000), ("2", 16000), ("#", 24000)]):
        for packet in dtmf_packets(digit, ssrc=1, sequence_number=seq, timestamp=ts):
            seq += 1
            stream.append(packet)
        if number == 1:  # the phone "forgets" the marker on the second digit...
            stream[-7].marker = False
    stream[3].marker = True  # ...and sets it mid-event on the first
    detector = DtmfDetector()
    digits = [d.digit for packet in stream for d in detector.feed(packet)]
    assert digits == ["1", "2", "#"]


def test_a_digit_whose_end_packets_were_all_lost_is_reported_when_the_next_starts() -> None:
    detector = DtmfDetector()
    found = []
    for i in range(4):  # "7", no end packet ever arrives
        found += detector.feed(_event_packet(i, 800, 7, 160 * (i + 1), False, i == 0))
    assert found == []
    found += detector.feed(_event_packet(10, 2400, 9, 160, False, True))
    assert [(d.digit, d.ended, d.duration) for d in found] == [("7", False, 640)]
    for i in range(3):
        found += detector.feed(_event_packet(11 + i, 2400, 9, 480, True, False))
    assert [d.digit for d in found] == ["7", "9"]


def test_the_same_digit_twice_is_two_digits() -> None:
    detector = DtmfDetector()
    packets = dtmf_packets("4", ssrc=1, sequence_number=0, timestamp=0) + dtmf_packets(
        "4", ssrc=1, sequence_number=7, timestamp=1600
    )
    assert [d.digit for p in packets for d in detector.feed(p)] == ["4", "4"]


def _pcap_rtp(path: Path) -> list[RtpPacket]:
    """RTP packets of a classic little/big-endian pcap of Ethernet/IPv4/UDP frames."""
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    link_type = struct.unpack_from(endian + "I", data, 20)[0]
    assert link_type == 1  # Ethernet
    packets, offset = [], 24
    while offset + 16 <= len(data):
        captured = struct.unpack_from(endian + "I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if frame[12:14] != b"\x08\x00":
            continue
        ip_header = (frame[14] & 0x0F) * 4
        if frame[23] != 17:  # UDP
            continue
        udp = 14 + ip_header
        packets.append(RtpPacket.parse(frame[udp + 8 :]))
    return packets


@pytest.mark.skipif(not SIPP_PCAPS.exists(), reason="Debian sip-tester (SIPp pcaps) not installed")
@pytest.mark.parametrize(
    "path", sorted(glob.glob(str(SIPP_PCAPS / "dtmf_2833_*.pcap"))), ids=lambda p: Path(p).stem
)
def test_sipp_dtmf_pcaps_give_their_digit_once(path: str) -> None:
    name = Path(path).stem.removeprefix("dtmf_2833_")
    expected = {"star": "*", "pound": "#"}.get(name, name)
    detector = DtmfDetector()
    digits = [d for packet in _pcap_rtp(Path(path)) for d in detector.feed(packet)]
    assert [d.digit for d in digits] == [expected]
    assert digits[0].ended
