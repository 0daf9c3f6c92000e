"""A deterministic publisher trace for packet-path tests: 3-layer VP8 simulcast (RFC 7741 payload
descriptors, periodic keyframes) plus Opus with audio levels (RFC 6464), with loss repaired by RTX
(RFC 4588), reordering, and an SSRC restart of the lowest layer."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from gateway.media.rtp import RtpPacket

VP8_PT = 96
RTX_PT = 97
OPUS_PT = 111
RIDS = ("q", "h", "f")
HEIGHTS = (180, 360, 720)
LAYER_SSRCS = (0x1000, 0x1001, 0x1002)
RTX_SSRCS = (0x2000, 0x2001, 0x2002)
RESTARTED_SSRC = 0x1100  # layer 0's SSRC after the publisher restarts that encoding
AUDIO_SSRC = 0x3000
# the publisher's extension ids (Chromium's numbering)
AUDIO_LEVEL_ID = 1
ABS_SEND_TIME_ID = 3
MID_ID = 4
RID_ID = 10
REPAIRED_RID_ID = 11


@dataclass(frozen=True, slots=True)
class TracePacket:
    time: float
    track: str  # "cam" or "mic"
    packet: bytes  # plain RTP, as the publisher sends it


def _vp8_payload(picture_id: int, tl0: int, first: bool, keyframe: bool, size: int) -> bytes:
    # X=1, S on the first packet of the frame; I (15-bit M), L, T present
    descriptor = bytes(
        (
            0x90 if first else 0x80,
            0xE0,
            0x80 | (picture_id >> 8 & 0x7F),
            picture_id & 0xFF,
            tl0 & 0xFF,
            0x20,  # TID 0, Y
        )
    )
    header = bytes((0x00 if keyframe else 0x01,)) if first else b"\x55"
    return descriptor + header + bytes((picture_id + i) & 0xFF for i in range(size))


def simulcast_trace(
    seed: int = 13, duration: float = 4.5, loss: float = 0.03, reorder: float = 0.01
) -> list[TracePacket]:
    """Every packet the publisher sends, in sending order."""
    rng = random.Random(seed)
    sent: list[tuple[float, int, str, bytes]] = []  # (time, tiebreak, track, packet)
    order = 0

    def emit(time: float, track: str, packet: RtpPacket) -> None:
        nonlocal order
        sent.append((time, order, track, packet.serialize()))
        order += 1

    seqs = [rng.randrange(0x10000) for _ in RIDS]
    rtx_seqs = [rng.randrange(0x10000) for _ in RIDS]
    ssrcs = list(LAYER_SSRCS)
    pictures = [rng.randrange(0x8000) for _ in RIDS]
    tl0s = [rng.randrange(256) for _ in RIDS]
    base_ts = [rng.randrange(1 << 32) for _ in RIDS]
    frames = int(duration * 30)
    for frame in range(frames):
        time = frame / 30
        for layer, rid in enumerate(RIDS):
            keyframe = frame == 0 or frame % 15 == layer * 5
            if frame == int(3.5 * 30) and layer == 0:  # the encoder restarts: new SSRC
                ssrcs[0] = RESTARTED_SSRC
                seqs[0] = rng.randrange(0x10000)
                keyframe = True
            pictures[layer] = (pictures[layer] + 1) & 0x7FFF
            tl0s[layer] = (tl0s[layer] + 1) & 0xFF
            count = layer + 1
            for i in range(count):
                seq = seqs[layer]
                seqs[layer] = (seq + 1) & 0xFFFF
                payload = _vp8_payload(
                    pictures[layer], tl0s[layer], i == 0, keyframe, 150 + 200 * layer
                )
                packet = RtpPacket(
                    payload_type=VP8_PT,
                    sequence_number=seq,
                    timestamp=(base_ts[layer] + 3000 * frame) & 0xFFFFFFFF,
                    ssrc=ssrcs[layer],
                    marker=i == count - 1,
                    extensions={
                        ABS_SEND_TIME_ID: struct.pack("!I", frame)[1:],
                        MID_ID: b"1",
                        RID_ID: rid.encode(),
                    },
                    payload=payload,
                )
                at = time + i * 0.001
                if rng.random() < loss:  # lost on the way; the publisher repairs it on NACK
                    rtx_seq = rtx_seqs[layer]
                    rtx_seqs[layer] = (rtx_seq + 1) & 0xFFFF
                    emit(
                        at + 0.04,
                        "cam",
                        RtpPacket(
                            payload_type=RTX_PT,
                            sequence_number=rtx_seq,
                            timestamp=packet.timestamp,
                            ssrc=RTX_SSRCS[layer],
                            marker=packet.marker,
                            extensions={
                                MID_ID: b"1",
                                REPAIRED_RID_ID: rid.encode(),
                            },
                            payload=struct.pack("!H", seq) + payload,
                        ),
                    )
                    continue
                emit(at, "cam", packet)
    audio_seq = rng.randrange(0x10000)
    audio_ts = rng.randrange(1 << 32)
    for i in range(int(duration * 50)):
        packet = RtpPacket(
            payload_type=OPUS_PT,
            sequence_number=(audio_seq + i) & 0xFFFF,
            timestamp=(audio_ts + 960 * i) & 0xFFFFFFFF,
            ssrc=AUDIO_SSRC,
            extensions={AUDIO_LEVEL_ID: bytes((0x80 | (20 + i % 40),)), MID_ID: b"0"},
            payload=bytes((i + k) & 0xFF for k in range(80)),
        )
        if rng.random() < loss:
            continue
        emit(i * 0.02 + 0.0005, "mic", packet)
    sent.sort()
    for i in range(len(sent) - 1):  # reordering: a packet overtakes the one before it
        if rng.random() < reorder:
            (t1, o1, k1, p1), (t2, o2, k2, p2) = sent[i], sent[i + 1]
            sent[i], sent[i + 1] = (t1, o1, k2, p2), (t2, o2, k1, p1)
    return [TracePacket(time, track, packet) for time, _, track, packet in sent]
