"""Saturation: the highest forwarded packet rate one core sustains with under 0.1% loss, relay vs rtpengine.

The server under test is pinned to CPU 1 (`sched_setaffinity` on every thread), the load processes
to CPU 0. The offered rate grows step by step (about x1.4 a step); each step runs a few seconds of
continuous media after a short warm-up, and the ramp stops at the first step with more than 0.1%
loss (sequence-number gaps at the receivers), or when the load processes themselves run out of CPU
(then the figure is a lower bound, and says so).

- relay, audio: rooms of 10, each participant publishing Opus (50 packets/s) and receiving the 9
  others, over ORS, ICE, DTLS-SRTP, with transport-cc feedback (bench/sfu_clients.py); the
  single-layer audio the native fast path forwards.
- relay, video: rooms of 4, each participant publishing Opus and VP8 simulcast q/h/f and receiving
  the 3 others' audio and high layer (1280x720, 1.5 Mbit/s, 180 packets/s).
- rtpengine (userspace, bench/rtpengine.py), audio: one-way plain RTP legs at 50 packets/s of the
  relay's SRTP audio wire size; video: legs at 180 packets/s of 1,200-byte packets. rtpengine
  forwards each leg 1:1 and does no simulcast, SRTP or RTCP here, so per packet it does less.

Forwarded rate = media packets the receivers got per second. Loopback only; every process started
is stopped; each wait is bounded.

    .venv/bin/python -m bench.saturation [--seconds 4 --max-steps 14 --workers 2
        --only relay-audio,relay-video,rtpengine-audio,rtpengine-video]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench.measure import cpu_seconds, loadavg, machine
from bench.sfu_clients import socket_drops
from bench.sfu_media import AUDIO_PAYLOAD, MAX_VIDEO_PAYLOAD, StreamCounter, window_loss
from bench.sfu_vs_livekit import LoadWorker, Server, Workers, relay_server, serve

MAX_LOSS = 0.001
SATURATED = 0.95
GROWTH = 1.4
WARMUP = 2.0
AUDIO_WIRE = 12 + 12 + AUDIO_PAYLOAD + 10  # header, extensions, payload, SRTP tag
VIDEO_WIRE = 12 + 16 + MAX_VIDEO_PAYLOAD + 10
_HEADER = struct.Struct("!BBHII")
STOPPED: dict[str, str] = {}  # why a ramp stopped early, when a join failed
MODES = ("relay-audio", "relay-video", "rtpengine-audio", "rtpengine-video")


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, counter: StreamCounter) -> None:
        self.counter = counter
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 12 and not 191 < data[1] < 224:
            self.counter.count(
                data[8] << 24 | data[9] << 16 | data[10] << 8 | data[11], data[2] << 8 | data[3]
            )

    def error_received(self, exc: Exception) -> None:
        return None


@dataclass
class PlainLeg:
    """One sender socket and one receiver socket of a plain RTP leg through rtpengine."""

    sender: _Receiver
    receiver: _Receiver
    ssrc: int
    interval: float
    size: int
    target: tuple[str, int] | None = None
    sequence: int = 0
    next_at: float = 0.0
    sent: int = 0

    def tick(self, now: float) -> None:
        transport = self.sender.transport
        if self.target is None or transport is None:
            return
        while self.next_at <= now:
            head = _HEADER.pack(0x80, 111, self.sequence, self.sequence * 960, self.ssrc)
            transport.sendto(head + bytes(self.size - 12), self.target)
            self.sequence = (self.sequence + 1) & 0xFFFF
            self.sent += 1
            self.next_at += self.interval


class SaturationWorker(LoadWorker):
    """The SFU load processes' participants, plus plain RTP legs for rtpengine."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = StreamCounter()
        self.legs: list[PlainLeg] = []

    async def rtp_open(self, count: int, video: bool) -> list[list[int]]:
        """COUNT more legs; returns their [sender port, receiver port] for the ng offers."""
        from bench.sfu_clients import RECEIVE_BUFFER, SO_RCVBUFFORCE

        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(count):
            ends = []
            for _ in range(2):
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: _Receiver(self.counter), local_addr=("127.0.0.1", 0)
                )
                assert protocol.transport is not None
                sock = protocol.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
                ends.append(protocol)
            sender, receiver = ends
            self.legs.append(
                PlainLeg(
                    sender,
                    receiver,
                    int.from_bytes(os.urandom(4), "big"),
                    1 / 180 if video else 0.02,
                    VIDEO_WIRE if video else AUDIO_WIRE,
                )
            )
            ports.append([self._port(sender), self._port(receiver)])
        return ports

    @staticmethod
    def _port(protocol: _Receiver) -> int:
        assert protocol.transport is not None
        return int(protocol.transport.get_extra_info("sockname")[1])

    async def rtp_targets(self, targets: list[list[Any]]) -> None:
        """Where each leg without a target yet sends (rtpengine's port facing it)."""
        pending = [leg for leg in self.legs if leg.target is None]
        now = time.monotonic()
        for leg, (host, port) in zip(pending, targets, strict=True):
            leg.target = (host, int(port))
            leg.next_at = now + (leg.ssrc % 1000) / 1000 * leg.interval

    async def rtp_window(self, start: float, end: float) -> dict[str, float]:
        from bench.sfu_clients import socket_drops

        self.sending = "rtpengine"
        ports = {self._port(leg.receiver) for leg in self.legs}
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        before, sent0, drops0 = self.counter.snapshot(), self._sent(), socket_drops(ports)
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        after, sent1, drops1 = self.counter.snapshot(), self._sent(), socket_drops(ports)
        cpu1 = time.process_time()
        received, expected = window_loss(before, after)
        return {
            "sent": sent1 - sent0,
            "received": received,
            "expected": expected,
            "socket_drops": drops1 - drops0,
            "cpu": cpu1 - cpu0,
        }

    def _sent(self) -> int:
        return sum(leg.sent for leg in self.legs)

    async def pace(self) -> None:
        while True:
            if self.sending == "rtpengine":
                now = time.monotonic()
                for leg in self.legs:
                    leg.tick(now)
            elif self.sending is not None:
                now = time.monotonic()
                for p in self.participants[self.sending]:
                    p.tick(now)
            await asyncio.sleep(0.005)

    async def rtp_close(self) -> None:
        self.sending = None
        for leg in self.legs:
            for end in (leg.sender, leg.receiver):
                if end.transport is not None:
                    end.transport.close()
        self.legs = []


def saturation_worker_main(conn: Any) -> None:
    uvloop.run(serve(conn, SaturationWorker()))


@dataclass
class Step:
    offered: float  # forwarded packets/s the load asks for
    seconds: float
    forwarded: int  # media packets the receivers got
    expected: int
    cpu: float
    client_cpu: float
    socket_drops: int
    ingress: int = 0  # packets the load sent to the server in the window
    server_drops: int = 0  # datagrams the server's own sockets dropped (it fell behind)

    @property
    def rate(self) -> float:
        return self.forwarded / self.seconds

    @property
    def loss(self) -> float:
        """Sequence gaps at the receivers, or the share of the ingress the server's sockets
        dropped when higher (a stream the server dropped whole shows no gap)."""
        gaps = 1 - self.forwarded / self.expected if self.expected else 0.0
        return max(gaps, self.server_drops / self.ingress if self.ingress else 0.0)

    @property
    def core(self) -> float:
        return self.cpu / self.seconds

    @property
    def clients(self) -> float:
        return self.client_cpu / self.seconds

    def line(self) -> str:
        return (
            f"offered {self.offered:7.0f} pkt/s  forwarded {self.rate:7.0f} pkt/s"
            f"  loss {100 * self.loss:6.3f}%  server {100 * self.core:5.1f}% of CPU 1"
            f"  load processes {100 * self.clients:5.1f}% of CPU 0"
            f"  ({self.socket_drops} dropped in their sockets, {self.server_drops} in the"
            " server's)"
        )


def verdict(steps: list[Step], stopped: str = "") -> str:
    """The highest forwarded rate below MAX_LOSS, and what ended the ramp (STOPPED: a join
    failure, when that ended it)."""
    best = 0.0
    ended = stopped or "the step limit"
    for step in steps:
        if step.loss > MAX_LOSS:
            ended = f"{100 * step.loss:.2f}% loss at {step.offered:.0f} pkt/s offered"
            break
        best = max(best, step.rate)
        if step.clients > SATURATED or step.socket_drops:
            ended = "the load processes (a lower bound)"
            break
        if step.core > SATURATED:
            ended = "the server's core saturated"
            break
    return f"{best:.0f} pkt/s (ended by {ended})"


async def relay_ramp(
    workers: Workers, server: Server, video: bool, args: argparse.Namespace
) -> list[Step]:
    from bench.sfu_vs_livekit import join_rooms

    size = 4 if video else 10
    per_room = size * (size - 1) * (230 if video else 50)
    await workers.all("configure", room_size=size, audio_only=not video, all_high=video)
    steps: list[Step] = []
    rooms = 0
    used: set[int] = set()
    tag = f"sat-{'video' if video else 'audio'}"
    try:
        for _ in range(args.max_steps):
            target = max(rooms + 1, math.ceil(rooms * GROWTH))
            try:
                _, now_used = await join_rooms(workers, server, rooms, target - rooms, tag, size)
            except (RuntimeError, TimeoutError) as exc:
                print(f"  (stopped: {target} rooms could not join: {exc})")
                STOPPED[server.kind] = f"{target} rooms failing to join"
                break
            rooms = target
            used.update(now_used)
            step = await relay_step(workers, server, sorted(used), rooms * per_room, args.seconds)
            steps.append(step)
            print(f"  {rooms:3d} rooms: " + step.line())
            if step.loss > MAX_LOSS or step.core > SATURATED or step.clients > SATURATED:
                break
    finally:
        await workers.all("leave", kind="relay")
    return steps


async def relay_step(
    workers: Workers, server: Server, used: list[int], offered: float, seconds: float
) -> Step:
    now = time.monotonic()
    start, end = now + WARMUP, now + WARMUP + seconds
    calls = asyncio.gather(
        *(
            workers.call(i, "window", timeout=seconds + 30, kind="relay", start=start, end=end)
            for i in used
        )
    )
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu0, drops0 = cpu_seconds(server.pid), socket_drops(server.ports)
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    cpu1, drops1 = cpu_seconds(server.pid), socket_drops(server.ports)
    results = await calls
    return Step(
        offered,
        seconds,
        int(sum(r["seq_received"] for r in results)),
        int(sum(r["seq_expected"] for r in results)),
        cpu1 - cpu0,
        sum(r["cpu"] for r in results),
        int(sum(r["socket_drops"] for r in results)),
        int(sum(r["audio_sent"] + r["video_sent"] for r in results)),
        drops1 - drops0,
    )


async def rtpengine_ramp(
    workers: Workers, video: bool, tmp: Path, args: argparse.Namespace
) -> list[Step]:
    from bench.rtpengine import Call, RtpEngine

    rate = 180 if video else 50
    engine = RtpEngine(tmp / f"rtpengine-{'video' if video else 'audio'}.log", ports=6000)
    steps: list[Step] = []
    calls: list[Call] = []
    server = Server("rtpengine", engine.pid, "", None)
    server.pin({1})
    engine_ports = set(range(engine.port_min, engine.port_max + 1))
    legs = 0
    try:
        first = 4000 // rate + 1
        for _ in range(args.max_steps):
            target = max(first, math.ceil(legs * GROWTH))
            per_worker = _split(target - legs, len(workers.conns))
            opened = await asyncio.gather(
                *(
                    workers.call(i, "rtp_open", count=n, video=video)
                    for i, n in enumerate(per_worker)
                )
            )
            try:
                for i, ports in enumerate(opened):
                    targets = []
                    for a_port, b_port in ports:
                        call = await asyncio.to_thread(
                            Call, engine, f"sat-{len(calls)}-{os.urandom(4).hex()}", a_port, b_port
                        )
                        calls.append(call)
                        targets.append(list(call.a_target))
                    await workers.call(i, "rtp_targets", targets=targets)
            except RuntimeError as exc:  # e.g. rtpengine out of ports: a lower bound
                print(f"  (stopped: {target} legs could not be set up: {exc})")
                STOPPED["rtpengine"] = f"{target} legs failing to set up (a lower bound)"
                break
            legs = target
            now = time.monotonic()
            start, end = now + WARMUP, now + WARMUP + args.seconds
            gathered = asyncio.gather(
                *(
                    workers.call(i, "rtp_window", timeout=args.seconds + 30, start=start, end=end)
                    for i in range(len(workers.conns))
                )
            )
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            cpu0, drops0 = cpu_seconds(engine.pid), socket_drops(engine_ports)
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            cpu1, drops1 = cpu_seconds(engine.pid), socket_drops(engine_ports)
            results = await gathered
            step = Step(
                legs * rate,
                args.seconds,
                int(sum(r["received"] for r in results)),
                int(sum(r["expected"] for r in results)),
                cpu1 - cpu0,
                sum(r["cpu"] for r in results),
                int(sum(r["socket_drops"] for r in results)),
                int(sum(r["sent"] for r in results)),
                drops1 - drops0,
            )
            steps.append(step)
            print(f"  {legs:4d} legs: " + step.line())
            if step.loss > MAX_LOSS or step.core > SATURATED or step.clients > SATURATED:
                break
    finally:
        await workers.all("rtp_close")
        for call in calls:
            await asyncio.to_thread(call.delete)
        engine.stop()
    return steps


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}; load average {loadavg()}")
    results: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory(prefix="rondpoint-sat-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        tmp_path = Path(tmp)
        workers = Workers(args.workers, saturation_worker_main)
        stack.callback(workers.stop)
        await workers.all("pin", cpus=[0])
        for mode in args.only:
            print(f"{mode} (server on CPU 1, {args.workers} load processes on CPU 0):")
            if mode.startswith("relay"):
                (tmp_path / mode).mkdir()
                with relay_server(tmp_path / mode) as server:
                    server.pin({1})
                    steps = await relay_ramp(workers, server, mode.endswith("video"), args)
            else:
                steps = await rtpengine_ramp(workers, mode.endswith("video"), tmp_path, args)
            results[mode] = verdict(steps, STOPPED.pop(mode.split("-")[0], ""))
            print(f"  -> {results[mode]}; load average {loadavg()}")
    print("highest forwarded rate one core sustains below 0.1% loss:")
    for mode, text in results.items():
        print(f"  {mode:16} {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured part of a step")
    parser.add_argument("--max-steps", type=int, default=14)
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--only", default=",".join(MODES))
    args = parser.parse_args(argv)
    args.only = [m for m in args.only.split(",") if m]
    if not set(args.only) <= set(MODES):
        parser.error(f"--only takes {', '.join(MODES)}")
    if not 1 <= args.seconds <= 30 or not 1 <= args.max_steps <= 30 or args.workers < 1:
        parser.error("--seconds 1..30, --max-steps 1..30, --workers >= 1")
    budget = 60 + len(args.only) * args.max_steps * (args.seconds + WARMUP + 25)

    async def bounded() -> int:
        async with asyncio.timeout(budget):
            return await run(args)

    return uvloop.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
