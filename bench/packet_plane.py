"""Micro-benchmark of the packet plane: Router.on_rtp packets per CPU-second (1 Opus track, 10 subscribers).

Run: .venv/bin/python -m bench.packet_plane [--packets N] [--subscribers N]
"""

from __future__ import annotations

import argparse
import time

from gateway.media.router import CodecInfo, ExtensionIds, Router
from gateway.media.rtp import RtpPacket


class _CountingSink:
    """Stands in for a transport: counts what it is given (SRTP and sockets are not measured)."""

    def __init__(self) -> None:
        self.packets = 0

    def send_rtp(self, packet: bytes) -> None:
        self.packets += 1

    def send_rtcp(self, packet: bytes) -> None:
        pass


def _packets(count: int) -> list[bytes]:
    # a typical Opus packet from a browser: audio level, MID and abs-send-time extensions
    return [
        RtpPacket(
            payload_type=111,
            sequence_number=seq & 0xFFFF,
            timestamp=(seq * 960) & 0xFFFFFFFF,
            ssrc=0x1234,
            extensions={1: bytes([0x80 | 30]), 4: b"0", 3: b"\x00\x00\x01"},
            payload=bytes(80),
        ).serialize()
        for seq in range(count)
    ]


def run(packets: int, subscribers: int) -> float:
    router = Router("bench", lambda room, speakers: None)
    publisher_ext = ExtensionIds(audio_level=1, mid=4, abs_send_time=3)
    subscriber_ext = ExtensionIds(audio_level=1, abs_send_time=3)
    router.add_receiver(
        "mic", "alice", "audio", CodecInfo("opus", 111, 48000), publisher_ext, _CountingSink()
    )
    sinks = [_CountingSink() for _ in range(subscribers)]
    for i, sink in enumerate(sinks):
        router.add_downtrack("mic", f"sub{i}", sink, 1000 + i, 111, subscriber_ext, now=0.0)
    data = _packets(packets)
    on_rtp = router.on_rtp
    start = time.process_time()
    for i, packet in enumerate(data):
        on_rtp("mic", packet, 0.02 * i)
    elapsed = time.process_time() - start
    assert all(sink.packets == packets for sink in sinks), "not every packet was forwarded"
    return packets / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=10)
    args = parser.parse_args()
    rate = run(args.packets, args.subscribers)
    print(
        f"Router.on_rtp: {rate:,.0f} packets/CPU-s in, "
        f"{rate * args.subscribers:,.0f} packets/CPU-s out "
        f"(1 Opus track, {args.subscribers} subscribers, {args.packets} packets)"
    )


if __name__ == "__main__":
    main()
