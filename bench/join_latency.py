"""Measures join latency: WebSocket connect to the first media packet for a subscriber joining a room that already has audio.

One lean publisher sends Opus over DTLS-SRTP at 50 packets/s; a lean subscriber then joins about ten
times in a row (ORS connect, join, subscribe offer/answer, ICE check, DTLS handshake, first SRTP
packet from the relay). Prints the median and p90 of the total and of each phase.

    .venv/bin/python -m bench.join_latency [--joins 10]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
from pathlib import Path

import uvloop

from bench.participants import Publisher, join_publisher, join_subscriber
from bench.relay_vs_rtpengine import machine, pace
from bench.srtp_client import PACKET_INTERVAL
from tests.gateway_process import running_gateway

ROOM = "bench-join"
PHASES = [
    ("connected", "WebSocket open"),
    ("joined", "join -> joined"),
    ("offer", "subscribe offer received"),
    ("answered", "answer -> ok"),
    ("ice", "STUN check answered"),
    ("dtls", "DTLS-SRTP established"),
    ("media", "first RTP packet"),
]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def run(joins: int) -> int:
    print(f"machine: {machine()}")
    frames = int((20 + 2 * joins) / PACKET_INTERVAL)  # enough packets for the whole run
    totals: list[float] = []
    phases: dict[str, list[float]] = {key: [] for key, _ in PHASES}
    with (
        tempfile.TemporaryDirectory(prefix="rondpoint-bench-") as tmp,
        running_gateway(Path(tmp)) as gateway,
    ):
        gateway.create_room(ROOM)
        token = gateway.token(ROOM, "publisher")
        publisher: Publisher = await join_publisher(gateway.base_url, ROOM, token, 0, frames)
        sending = asyncio.create_task(pace([publisher.send_next], frames))
        try:
            await asyncio.sleep(0.5)
            for i in range(joins):
                token = gateway.token(ROOM, f"viewer-{i}")  # minted before the clock starts
                subscriber = await join_subscriber(
                    gateway.base_url, ROOM, token, f"viewer-{i}", expected_tracks=1
                )
                try:
                    await asyncio.wait_for(subscriber.peer.first_rtp_event.wait(), 5)
                    assert subscriber.peer.first_rtp_at is not None
                    marks = {**subscriber.timings, "media": subscriber.peer.first_rtp_at}
                    start = marks["start"]
                    previous = start
                    for key, _ in PHASES:
                        phases[key].append(marks[key] - previous)
                        previous = marks[key]
                    totals.append(marks["media"] - start)
                    steps = " ".join(f"{1000 * phases[key][-1]:5.1f}" for key, _ in PHASES)
                    print(f"join {i + 1:2d}: {1000 * totals[-1]:7.1f} ms  (phases, ms: {steps})")
                finally:
                    await subscriber.close()
                await asyncio.sleep(0.2)
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            await publisher.close()
    print(f"WebSocket connect -> first media packet over {len(totals)} joins:")
    print(
        f"  median {1000 * statistics.median(totals):.1f} ms,"
        f" p90 {1000 * percentile(totals, 0.9):.1f} ms,"
        f" min {1000 * min(totals):.1f} ms, max {1000 * max(totals):.1f} ms"
    )
    print("  phases (median / p90, ms):")
    for key, label in PHASES:
        print(
            f"    {label:26} {1000 * statistics.median(phases[key]):6.1f}"
            f" / {1000 * percentile(phases[key], 0.9):6.1f}"
        )
    print(
        f"  (the publisher sends every {1000 * PACKET_INTERVAL:.0f} ms, so the last phase includes"
        f" up to {1000 * PACKET_INTERVAL:.0f} ms of waiting for the next packet)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=10)
    args = parser.parse_args(argv)
    if not 1 <= args.joins <= 100:
        parser.error("--joins must be between 1 and 100")

    async def bounded() -> int:
        async with asyncio.timeout(60 + 10 * args.joins):
            return await run(args.joins)

    return uvloop.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
