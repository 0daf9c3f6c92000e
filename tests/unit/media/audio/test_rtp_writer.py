"""The conference's outgoing RTP streams: the bytes RFC 3550 and RFC 6464 lay out, packet by packet."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from gateway.media.audio import conference
from gateway.media.audio.conference import RtpWriter

SSRC = 0x11223344
FIRST_SEQUENCE = 0xFFFE  # the third packet wraps to 0
FIRST_TIMESTAMP = 0xFFFFFF00  # the second packet wraps past 2**32
PAYLOAD = b"\xd5" * 160


@pytest.fixture(autouse=True)
def _known_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer draws its SSRC, first sequence number and first timestamp, in that order."""
    numbers: Iterator[int] = iter((SSRC, FIRST_SEQUENCE, FIRST_TIMESTAMP))
    monkeypatch.setattr(conference.secrets, "randbits", lambda bits: next(numbers))


def header(first: int, second: int, sequence: int, timestamp: int, ssrc: int = SSRC) -> bytes:
    return struct.pack("!BBHII", first, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def test_a_talkspurt_starts_marked_and_counts_on_across_wraps() -> None:
    writer = RtpWriter(8, 160)

    packets = [writer.packet(PAYLOAD) for _ in range(3)]

    assert packets == [
        header(0x80, 0x80 | 8, FIRST_SEQUENCE, FIRST_TIMESTAMP) + PAYLOAD,
        header(0x80, 8, FIRST_SEQUENCE + 1, FIRST_TIMESTAMP + 160) + PAYLOAD,
        header(0x80, 8, 0, FIRST_TIMESTAMP + 320) + PAYLOAD,
    ]


def test_a_skipped_frame_moves_time_on_and_marks_the_next_packet() -> None:
    writer = RtpWriter(0, 160)
    writer.packet(PAYLOAD)

    writer.skip()
    after_silence = writer.packet(PAYLOAD)
    next_one = writer.packet(PAYLOAD, advance=3)
    after_advance = writer.packet(PAYLOAD)

    assert after_silence == header(0x80, 0x80, FIRST_SEQUENCE + 1, FIRST_TIMESTAMP + 320) + PAYLOAD
    assert next_one == header(0x80, 0, FIRST_SEQUENCE + 2, FIRST_TIMESTAMP + 480) + PAYLOAD
    assert after_advance == header(0x80, 0, FIRST_SEQUENCE + 3, FIRST_TIMESTAMP + 960) + PAYLOAD


def test_each_packet_carries_its_audio_level_and_voice_activity_in_a_one_byte_extension() -> None:
    writer = RtpWriter(111, 960, with_level=True)

    loud = writer.packet(b"opus", level=30)
    quiet = writer.packet(b"opus", level=100)
    empty = writer.packet(b"", level=127)

    extension = b"\xbe\xde\x00\x01"  # RFC 8285 one-byte profile, one word
    assert (
        loud
        == header(0x90, 0x80 | 111, FIRST_SEQUENCE, FIRST_TIMESTAMP)
        + extension
        + bytes([0x10, 0x80 | 30, 0, 0])
        + b"opus"
    )
    assert (
        quiet
        == header(0x90, 111, FIRST_SEQUENCE + 1, FIRST_TIMESTAMP + 960)
        + extension
        + bytes([0x10, 100, 0, 0])
        + b"opus"
    )
    assert empty == header(0x90, 111, 0, FIRST_TIMESTAMP + 1920) + extension + bytes(
        [0x10, 127, 0, 0]
    )


def test_an_ssrc_set_after_creation_is_the_one_sent() -> None:
    writer = RtpWriter(111, 960)
    writer.ssrc = 0xCAFE

    assert (
        writer.packet(b"x")
        == header(0x80, 0x80 | 111, FIRST_SEQUENCE, FIRST_TIMESTAMP, 0xCAFE) + b"x"
    )
