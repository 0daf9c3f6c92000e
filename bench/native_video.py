"""Simulcast video through the relay on each packet path: forwarded packets per CPU-second with the
native fast path (gateway/media/_fastpath.c) and with the pure-Python path (RONDPOINT_NATIVE=0).

The load is bench/sfu_vs_livekit.py's (its load processes and clients): rooms of 8, each
participant publishing Opus and three-layer VP8 simulcast and subscribing to the 7 others, half
the video on the low layer and half on the high one, real ICE, DTLS-SRTP, RTCP and transport-cc
both ways. One gateway process per path, started with the path's RONDPOINT_NATIVE; the figure is
what the subscribers received (media, not padding or RTX) per gateway CPU-second, the median of
the windows. `--livekit` adds livekit-server under the same load for the ratio.

Loopback only; every process started is stopped; each wait is bounded.

    .venv/bin/python -m bench.native_video [--rooms 1 --seconds 6 --repetitions 3 --livekit]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import uvloop

from bench.measure import loadavg, machine
from bench.sfu_vs_livekit import (
    ROOM_SIZE,
    WARMUP,
    Server,
    Window,
    Workers,
    _median,
    join_rooms,
    livekit_server,
    measure,
    relay_server,
)

PATHS = {"native": "1", "python": "0"}


@contextlib.contextmanager
def relay_on_path(tmp: Path, path: str) -> Iterator[Server]:
    """A gateway process whose relay runs on `path` (the load processes keep their own)."""
    before = os.environ.get("RONDPOINT_NATIVE")
    os.environ["RONDPOINT_NATIVE"] = PATHS[path]
    try:
        context = relay_server(tmp)
        server = context.__enter__()
    finally:
        if before is None:
            os.environ.pop("RONDPOINT_NATIVE", None)
        else:
            os.environ["RONDPOINT_NATIVE"] = before
    try:
        yield server
    finally:
        context.__exit__(None, None, None)


async def windows_of(
    workers: Workers, server: Server, label: str, args: argparse.Namespace
) -> list[Window]:
    took, used = await join_rooms(workers, server, 0, args.rooms, f"video-{label}")
    print(f"{label}: {args.rooms * ROOM_SIZE} participants joined in {took:.1f} s")
    windows = []
    try:
        for rep in range(args.repetitions):
            warmup = WARMUP if rep == 0 else 0.0
            window = await measure(workers, server, args.rooms, args.seconds, used, warmup)
            windows.append(window)
            print(f"  {rep + 1}: {label:8} " + window.line())
    finally:
        await workers.all("stop")
        await workers.all("leave", kind=server.kind)
    return windows


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}; load average {loadavg()}")
    labels = list(PATHS) + (["livekit"] if args.livekit else [])
    results: dict[str, list[Window]] = {}
    with tempfile.TemporaryDirectory(prefix="rondpoint-video-") as tmp:
        workers = Workers(args.workers)
        try:
            for label in labels:
                directory = Path(tmp) / label
                directory.mkdir()
                context = (
                    livekit_server(directory)
                    if label == "livekit"
                    else relay_on_path(directory, label)
                )
                with context as server:
                    results[label] = await windows_of(workers, server, label, args)
        finally:
            workers.stop()
    print(f"median over {args.repetitions} windows of {args.seconds:.0f} s, {args.rooms} room(s):")
    medians = {label: _median([w.per_cpu_second for w in rows]) for label, rows in results.items()}
    for label, rows in results.items():
        print(
            f"  {label:8} {medians[label]:8.0f} forwarded packets per CPU-second,"
            f" cpu {100 * _median([w.core for w in rows]):5.1f}% of a core,"
            f" loss {100 * _median([w.seq_loss for w in rows]):.2f}%"
        )
    print(f"  native / python {medians['native'] / medians['python']:.2f}")
    if "livekit" in medians:
        for path in PATHS:
            print(f"  {path} / livekit {medians[path] / medians['livekit']:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--livekit", action="store_true", help="livekit-server too")
    args = parser.parse_args(argv)
    if min(args.rooms, args.repetitions, args.workers) < 1 or not 1 <= args.seconds <= 60:
        parser.error("rooms, repetitions, workers >= 1; seconds between 1 and 60")
    budget = 120 + 3 * (args.repetitions * (args.seconds + 2) + WARMUP + 30)

    async def bounded() -> int:
        async with asyncio.timeout(budget):
            return await run(args)

    return uvloop.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
