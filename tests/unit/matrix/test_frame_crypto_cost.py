"""What LiveKit frame encryption costs in Python, per Opus packet and per VP8 frame, both ways
(protocols/matrix/frame_crypto.py's packet cryptors). Run as a script for the figures:

    .venv/bin/python -m tests.unit.matrix.test_frame_crypto_cost

The test only runs the same code on a few packets and checks what comes out (no timing).
"""

from __future__ import annotations

import time

from gateway.media.rtp import RtpPacket
from protocols.matrix.frame_crypto import FrameCryptor, KeyRing, OpusCryptor, Vp8Cryptor

OPUS_PAYLOAD = 100  # bytes after the TOC byte: ~40 kbit/s at 20 ms
VP8_PACKET = 1100  # bytes of frame per packet, as browsers cut them


def _pair() -> tuple[FrameCryptor, FrameCryptor]:
    sender, receiver = FrameCryptor(KeyRing()), FrameCryptor(KeyRing())
    sender.keys.set_key(b"k" * 16, 0)
    receiver.keys.set_key(b"k" * 16, 0)
    return sender, receiver


def opus_packets(count: int) -> list[bytes]:
    return [
        RtpPacket(
            payload_type=111,
            sequence_number=i & 0xFFFF,
            timestamp=960 * i,
            ssrc=1,
            extensions={1: b"\x10"},
            payload=b"\xf8" + bytes(OPUS_PAYLOAD),
        ).serialize()
        for i in range(count)
    ]


def vp8_packets(frames: int, frame_size: int) -> list[bytes]:
    packets, sequence = [], 0
    for f in range(frames):
        data = bytes([0x31]) + bytes(frame_size - 1)
        chunks = [data[i : i + VP8_PACKET] for i in range(0, len(data), VP8_PACKET)]
        for j, chunk in enumerate(chunks):
            descriptor = bytes([0x90 if j == 0 else 0x80, 0x80, 0x80, f & 0x7F])
            packets.append(
                RtpPacket(
                    payload_type=96,
                    sequence_number=sequence & 0xFFFF,
                    timestamp=3000 * f,
                    ssrc=2,
                    marker=j == len(chunks) - 1,
                    payload=descriptor + chunk,
                ).serialize()
            )
            sequence += 1
    return packets


def measure_opus(count: int) -> tuple[float, float]:
    """(µs per packet encrypting, µs per packet decrypting)."""
    sender, receiver = _pair()
    encrypt, decrypt = OpusCryptor(sender, encrypt=True), OpusCryptor(receiver, encrypt=False)
    packets = opus_packets(count)
    start = time.perf_counter()
    sealed = [out for p in packets for out in encrypt.process(p)]
    middle = time.perf_counter()
    opened = [out for p in sealed for out in decrypt.process(p)]
    end = time.perf_counter()
    assert opened == packets
    return 1e6 * (middle - start) / count, 1e6 * (end - middle) / count


def measure_vp8(frames: int, frame_size: int) -> tuple[float, float]:
    """(µs per frame encrypting, µs per frame decrypting), packets in and out."""
    sender, receiver = _pair()
    encrypt, decrypt = Vp8Cryptor(sender, encrypt=True), Vp8Cryptor(receiver, encrypt=False)
    packets = vp8_packets(frames, frame_size)
    start = time.perf_counter()
    sealed = [out for p in packets for out in encrypt.process(p)]
    middle = time.perf_counter()
    opened = [out for p in sealed for out in decrypt.process(p)]
    end = time.perf_counter()
    assert opened == packets
    return 1e6 * (middle - start) / frames, 1e6 * (end - middle) / frames


def test_the_measured_code_round_trips() -> None:
    measure_opus(20)
    for size in (1200, 6000):
        measure_vp8(5, size)


if __name__ == "__main__":
    encrypt, decrypt = measure_opus(20_000)
    print(f"Opus {1 + OPUS_PAYLOAD} B: encrypt {encrypt:.1f} µs/packet, decrypt {decrypt:.1f}")
    for size in (1200, 6000, 30_000):
        encrypt, decrypt = measure_vp8(2000, size)
        packets = -(-size // VP8_PACKET)
        print(
            f"VP8 {size} B frame ({packets} packets): encrypt {encrypt:.1f} µs/frame, "
            f"decrypt {decrypt:.1f}"
        )
