"""Synthetic conference media for the SFU benchmarks: Opus-sized audio and three-layer VP8 simulcast.

No codec runs: a publisher's packets have the sizes, rates and headers of a browser's, built per
packet from templates (the transport-wide sequence number changes in every packet, so nothing can
be protected in advance). VP8 payloads start with a valid payload descriptor (RFC 7741 section 4.2:
X, S, PID, a 15-bit PictureID) and payload header (section 4.3: P bit, and for a key frame the start
code and dimensions), so keyframe detection in any SFU sees real key frames. Header extensions use
the one-byte form (RFC 8285): MID, RID (RFC 8852), audio level (RFC 6464) and transport-cc
(draft-holmer-rmcat-transport-wide-cc-extensions-01).

`StreamCounter` is the receive side: per SSRC, packets counted and the extended highest sequence
number, so loss in a window is 1 - received / (highest_end - highest_start), as RTCP receiver
reports count it (RFC 3550 appendix A.3).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

OPUS_PT = 111
VP8_PT = 96
AUDIO_INTERVAL = 0.02  # 20 ms Opus frames: 50 packets/s
AUDIO_PAYLOAD = 80  # bytes, about 32 kbit/s
MAX_VIDEO_PAYLOAD = 1180  # bytes of VP8 per packet, as libwebrtc packetizes under a 1200-byte MTU
KEYFRAME_FACTOR = 4  # a key frame is this many average frames
KEYFRAME_INTERVAL = 3.0  # seconds between periodic key frames of one layer
KEYFRAME_MIN_GAP = 0.5  # a PLI is answered with a key frame at most this often per layer

# Chromium's extension ids, which both SFUs accept.
EXT_AUDIO_LEVEL_ID = 1
EXT_TRANSPORT_CC_ID = 3
EXT_MID_ID = 4
EXT_RID_ID = 10

_HEADER = struct.Struct("!BBHII")
_TCC = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class Layer:
    """One simulcast encoding of a 1280x720 camera, as Chromium sends it."""

    rid: str
    width: int
    height: int
    bitrate: int  # bits/s
    fps: int

    @property
    def frame_bytes(self) -> int:
        return self.bitrate // 8 // self.fps

    def packets_per_frame(self, keyframe: bool = False) -> int:
        size = self.frame_bytes * (KEYFRAME_FACTOR if keyframe else 1)
        return max(1, math.ceil(size / MAX_VIDEO_PAYLOAD))

    @property
    def packet_rate(self) -> int:
        """Packets per second between key frames."""
        return self.packets_per_frame() * self.fps


LAYERS = (
    Layer("q", 320, 180, 150_000, 30),
    Layer("h", 640, 360, 500_000, 30),
    Layer("f", 1280, 720, 1_500_000, 30),
)


def one_byte_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """An RFC 8285 one-byte header extension block (0xBEDE profile), padded to 32 bits."""
    body = b"".join(
        bytes(((ext_id << 4) | (len(value) - 1),)) + value for ext_id, value in elements
    )
    body += b"\0" * (-len(body) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(body) // 4) + body


def vp8_payload(picture_id: int, first: bool, keyframe: bool, layer: Layer, size: int) -> bytes:
    """One packet's VP8 payload: descriptor with a 15-bit PictureID, then SIZE bytes in all."""
    descriptor = bytes(
        (0x90 if first else 0x80, 0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF)
    )
    if not first:
        head = b""
    elif keyframe:
        # Frame tag (P=0: key frame, version 0, show_frame), start code, 14-bit sizes, scale 0.
        head = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", layer.width, layer.height)
    else:
        head = b"\x11\x02\x00"  # P=1: interframe
    filler = max(0, size - len(descriptor) - len(head))
    return descriptor + head + bytes(filler)


class StreamCounter:
    """Per-SSRC receive counts with extended (wrap-aware) highest sequence numbers."""

    __slots__ = ("streams",)

    def __init__(self) -> None:
        # ssrc -> [received, highest extended seq]
        self.streams: dict[int, list[int]] = {}

    def count(self, ssrc: int, seq: int) -> None:
        stream = self.streams.get(ssrc)
        if stream is None:
            self.streams[ssrc] = [1, seq]
            return
        stream[0] += 1
        highest = stream[1]
        delta = (seq - highest) & 0xFFFF
        if 0 < delta < 0x8000:
            stream[1] = highest + delta

    def snapshot(self) -> dict[int, tuple[int, int]]:
        return {ssrc: (s[0], s[1]) for ssrc, s in self.streams.items()}


def window_loss(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> tuple[int, int]:
    """(received, expected) over a window, summed over the streams seen at both ends."""
    received = expected = 0
    for ssrc, (count1, highest1) in after.items():
        start = before.get(ssrc)
        if start is None:
            continue
        received += count1 - start[0]
        expected += highest1 - start[1]
    return received, expected


class TrackSender:
    """Builds one RTP stream's packets (one audio track or one simulcast layer)."""

    __slots__ = (
        "ssrc",
        "payload_type",
        "clock_step",
        "sequence",
        "timestamp",
        "ext_prefix",
        "tcc_id",
        "layer",
        "picture_id",
        "last_keyframe",
        "keyframe_wanted",
        "sent",
    )

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        clock_step: int,
        ext_prefix: list[tuple[int, bytes]],
        tcc_id: int,
        layer: Layer | None = None,
        seed: int = 0,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_step = clock_step
        self.sequence = seed & 0xFFFF
        self.timestamp = (seed * 7919) & 0xFFFFFFFF
        self.ext_prefix = ext_prefix
        self.tcc_id = tcc_id
        self.layer = layer
        self.picture_id = seed & 0x7FFF
        self.last_keyframe = -math.inf
        self.keyframe_wanted = True
        self.sent = 0

    def _header(self, marker: bool, tcc_seq: int) -> bytes:
        elements = self.ext_prefix
        if self.tcc_id:
            elements = [*elements, (self.tcc_id, _TCC.pack(tcc_seq & 0xFFFF))]
        first = 0x90 if elements else 0x80
        head = _HEADER.pack(
            first,
            (0x80 if marker else 0) | self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        return head + one_byte_extensions(elements) if elements else head

    def audio_packet(self, tcc_seq: int) -> bytes:
        packet = self._header(False, tcc_seq) + b"\xfc" + bytes(AUDIO_PAYLOAD - 1)
        self.timestamp = (self.timestamp + self.clock_step) & 0xFFFFFFFF
        self.sent += 1
        return packet

    def video_frame(self, now: float, next_tcc_seq: int) -> list[bytes]:
        """One frame's packets; a key frame when one was asked for or the period elapsed."""
        layer = self.layer
        assert layer is not None
        keyframe = now - self.last_keyframe >= KEYFRAME_INTERVAL or (
            self.keyframe_wanted and now - self.last_keyframe >= KEYFRAME_MIN_GAP
        )
        if keyframe:
            self.last_keyframe = now
            self.keyframe_wanted = False
        count = layer.packets_per_frame(keyframe)
        size = min(MAX_VIDEO_PAYLOAD, layer.frame_bytes * (KEYFRAME_FACTOR if keyframe else 1))
        packets = []
        for i in range(count):
            header = self._header(i == count - 1, next_tcc_seq + i)
            packets.append(header + vp8_payload(self.picture_id, i == 0, keyframe, layer, size))
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.timestamp = (self.timestamp + self.clock_step) & 0xFFFFFFFF
        self.sent += count
        return packets


def wants_high(subscriber_index: int, track_key: str) -> bool:
    """The mixed-layer pattern both SFUs get: about half the video subscriptions high, half low."""
    return (subscriber_index + sum(track_key.encode())) % 2 == 0
