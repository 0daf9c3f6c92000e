"""Measures forwarded packets per CPU-second: the relay (real ORS join, ICE, DTLS-SRTP) vs rtpengine (userspace).

Per room, N publishers each send one Opus stream (50 packets/s) and M subscribers receive all N, so the
relay forwards rooms x N x M streams. rtpengine gets the same number of one-way plain-RTP call legs at
the same rate and wire size. CPU is utime+stime of each server process from /proc/PID/stat over the
measurement window; the relay's forwarded count is its /metrics counter, cross-checked against what
the subscribers received. Loopback only; every loop is bounded; every process started is stopped.

    .venv/bin/python -m bench.relay_vs_rtpengine [--rooms R --publishers N --subscribers M --seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvloop

from bench.measure import cpu_seconds, machine
from bench.participants import Publisher, Subscriber, join_publisher, join_subscriber
from bench.rtpengine import Call, RtpEngine
from bench.srtp_client import (
    PACKET_INTERVAL,
    PAYLOAD_SIZE,
    SRTP_TAG_SIZE,
    parse_frame_payload,
    rtp_frames,
)
from tests.gateway_process import RunningGateway, running_gateway

SETTLE = 0.4  # seconds after the last packet before the window closes (packets in flight)
WARMUP_FRAMES = 50


async def pace(senders: list[Callable[[], None]], frames: int) -> None:
    """Call every sender once per 20 ms tick, `frames` ticks, on a fixed schedule (late ticks catch up)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k in range(frames):
        delay = start + k * PACKET_INTERVAL - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for send in senders:
            send()


@dataclass
class Window:
    """One measurement window of one forwarder."""

    name: str
    seconds: float
    cpu: float
    forwarded: int  # the server's own count (relay: /metrics; rtpengine: what receivers got)
    received: int
    expected: int
    client_cpu: float
    ingress: int  # packets the server received from senders

    @property
    def handled_per_cpu_second(self) -> float:
        """Datagrams in plus out per CPU-second (the relay fans out; rtpengine's legs are 1:1)."""
        return (self.ingress + self.forwarded) / self.cpu if self.cpu > 0 else float("inf")

    @property
    def per_cpu_second(self) -> float:
        return self.forwarded / self.cpu if self.cpu > 0 else float("inf")

    @property
    def loss(self) -> float:
        return 1 - self.received / self.expected if self.expected else 0.0

    def line(self) -> str:
        return (
            f"{self.name:9} forwarded {self.forwarded:7d}  received {self.received:7d}/"
            f"{self.expected:<7d} loss {100 * self.loss:5.2f}%  cpu {self.cpu:6.2f} s "
            f"({100 * self.cpu / self.seconds:5.1f}% of a core)  "
            f"{self.per_cpu_second:7.0f} fwd/cpu-s  {self.handled_per_cpu_second:7.0f} in+out/cpu-s"
            f"  [load client cpu {self.client_cpu:4.2f} s]"
        )


class RelayLoad:
    """Rooms of lean ORS publishers and subscribers on the gateway under test."""

    def __init__(self, gateway: RunningGateway, rooms: int, publishers: int, subscribers: int):
        self.gateway = gateway
        self.rooms = [f"bench-{i}" for i in range(rooms)]
        self.n_publishers = publishers
        self.n_subscribers = subscribers
        self.publishers: list[Publisher] = []
        self.subscribers: list[Subscriber] = []
        self.http: aiohttp.ClientSession | None = None

    async def setup(self, frames: int) -> None:
        gw = self.gateway
        self.http = aiohttp.ClientSession()
        for room in self.rooms:
            gw.create_room(room)
        publisher_jobs = []
        for r, room in enumerate(self.rooms):
            for p in range(self.n_publishers):
                index = r * self.n_publishers + p
                token = gw.token(room, f"pub-{index}")
                level = 20 + 5 * p  # distinct, constant audio levels: a stable speaker list
                publisher_jobs.append(
                    join_publisher(gw.base_url, room, token, index, frames, audio_level=level)
                )
        self.publishers = list(await asyncio.gather(*publisher_jobs))
        subscriber_jobs = []
        for r, room in enumerate(self.rooms):
            for s in range(self.n_subscribers):
                name = f"sub-{r}-{s}"
                token = gw.token(room, name)
                subscriber_jobs.append(
                    join_subscriber(gw.base_url, room, token, name, self.n_publishers)
                )
        self.subscribers = list(await asyncio.gather(*subscriber_jobs))

    @property
    def streams(self) -> int:
        return len(self.rooms) * self.n_publishers * self.n_subscribers

    async def forwarded_metric(self) -> int:
        assert self.http is not None
        async with self.http.get(self.gateway.base_url + "/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            if line.startswith("rondpoint_relay_packets_forwarded"):
                return int(float(line.split()[-1]))
        raise RuntimeError("/metrics has no rondpoint_relay_packets_forwarded counter")

    def received(self) -> int:
        return sum(s.peer.rtp_received for s in self.subscribers)

    def sent(self) -> int:
        return sum(p.sent for p in self.publishers)

    async def send(self, frames: int) -> None:
        await pace([p.send_next for p in self.publishers], frames)

    async def measure(self, frames: int) -> Window:
        pid = self.gateway.process.pid
        forwarded0 = await self.forwarded_metric()
        received0, sent0 = self.received(), self.sent()
        client0, cpu0, t0 = time.process_time(), cpu_seconds(pid), time.perf_counter()
        await self.send(frames)
        await asyncio.sleep(SETTLE)
        cpu1, t1, client1 = cpu_seconds(pid), time.perf_counter(), time.process_time()
        forwarded1 = await self.forwarded_metric()
        return Window(
            "relay",
            t1 - t0,
            cpu1 - cpu0,
            forwarded1 - forwarded0,
            self.received() - received0,
            (self.sent() - sent0) * self.n_subscribers,
            client1 - client0,
            self.sent() - sent0,
        )

    def check_decryption(self) -> int:
        """Decrypt every subscriber's kept samples; each must be a benchmark frame of its own room."""
        checked = 0
        for subscriber in self.subscribers:
            room_index = int(subscriber.name.split("-")[1])
            for packet in subscriber.peer.decrypt_samples():
                frame = parse_frame_payload(packet.payload)
                if frame is None or frame[0] // self.n_publishers != room_index:
                    raise RuntimeError(f"subscriber got a foreign payload: {packet.payload[:16]!r}")
                checked += 1
        return checked

    async def close(self) -> None:
        await asyncio.gather(
            *(s.close() for s in self.subscribers), *(p.close() for p in self.publishers)
        )
        if self.http is not None:
            await self.http.close()


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not 191 < data[1] < 224:  # RTP, not RTCP
            self.received += 1

    def error_received(self, exc: Exception) -> None:
        return None


@dataclass
class _Leg:
    sender: _Counter
    receiver: _Counter
    call: Call
    packets: list[bytes]
    sent: int = 0

    def send_next(self) -> None:
        if self.sent < len(self.packets) and self.sender.transport is not None:
            self.sender.transport.sendto(self.packets[self.sent], self.call.a_target)
            self.sent += 1


class RtpEngineLoad:
    """`streams` one-way plain-RTP legs through rtpengine, same rate and wire size as the relay's."""

    def __init__(self, engine: RtpEngine, streams: int) -> None:
        self.engine = engine
        self.streams = streams
        self.legs: list[_Leg] = []

    async def setup(self, frames: int) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.streams):
            endpoints = []
            for _ in range(2):
                _, protocol = await loop.create_datagram_endpoint(
                    _Counter, local_addr=("127.0.0.1", 0)
                )
                endpoints.append(protocol)
            sender, receiver = endpoints
            assert sender.transport is not None and receiver.transport is not None
            call = await asyncio.to_thread(
                Call,
                self.engine,
                f"bench-{i}-{os.urandom(4).hex()}",
                sender.transport.get_extra_info("sockname")[1],
                receiver.transport.get_extra_info("sockname")[1],
            )
            # Same size on the wire as the relay's SRTP packets: plain payload + the SRTP tag's bytes.
            packets = rtp_frames(
                i, frames, 0x10000 + i, mid="0", payload_size=PAYLOAD_SIZE + SRTP_TAG_SIZE
            )
            self.legs.append(_Leg(sender, receiver, call, packets))

    def received(self) -> int:
        return sum(leg.receiver.received for leg in self.legs)

    def sent(self) -> int:
        return sum(leg.sent for leg in self.legs)

    async def send(self, frames: int) -> None:
        await pace([leg.send_next for leg in self.legs], frames)

    async def measure(self, frames: int) -> Window:
        pid = self.engine.pid
        received0, sent0 = self.received(), self.sent()
        client0, cpu0, t0 = time.process_time(), cpu_seconds(pid), time.perf_counter()
        await self.send(frames)
        await asyncio.sleep(SETTLE)
        cpu1, t1, client1 = cpu_seconds(pid), time.perf_counter(), time.process_time()
        received = self.received() - received0
        return Window(
            "rtpengine",
            t1 - t0,
            cpu1 - cpu0,
            received,
            received,
            self.sent() - sent0,
            client1 - client0,
            self.sent() - sent0,
        )

    async def close(self) -> None:
        for leg in self.legs:
            await asyncio.to_thread(leg.call.delete)
            for protocol in (leg.sender, leg.receiver):
                if protocol.transport is not None:
                    protocol.transport.close()


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def run(args: argparse.Namespace) -> int:
    frames = int(round(args.seconds / PACKET_INTERVAL))
    total_frames = WARMUP_FRAMES + args.repetitions * frames
    streams = args.rooms * args.publishers * args.subscribers
    print(f"machine: {machine()}")
    print(
        f"load: {args.rooms} room(s) x {args.publishers} publishers x {args.subscribers} subscribers"
        f" = {streams} forwarded Opus streams at {1 / PACKET_INTERVAL:.0f} packets/s"
        f" = {streams / PACKET_INTERVAL:.0f} forwarded packets/s"
        f" (relay ingress {args.rooms * args.publishers / PACKET_INTERVAL:.0f} packets/s);"
        f" {args.repetitions} x {args.seconds:g} s windows"
    )
    windows: dict[str, list[Window]] = {"relay": [], "rtpengine": []}
    with tempfile.TemporaryDirectory(prefix="rondpoint-bench-") as tmp:
        tmp_path = Path(tmp)
        with running_gateway(tmp_path, log_format="json") as gateway:
            relay = RelayLoad(gateway, args.rooms, args.publishers, args.subscribers)
            engine: RtpEngine | None = None
            rtpengine: RtpEngineLoad | None = None
            try:
                started = time.perf_counter()
                await relay.setup(total_frames)
                print(
                    f"relay: {len(relay.publishers)} publishers and {len(relay.subscribers)} "
                    f"subscribers joined over ORS, ICE and DTLS in "
                    f"{time.perf_counter() - started:.1f} s"
                )
                engine = RtpEngine(tmp_path / "rtpengine.log", ports=max(256, 8 * streams))
                rtpengine = RtpEngineLoad(engine, streams)
                await rtpengine.setup(total_frames)
                print(f"rtpengine: {streams} calls set up over ng (pid {engine.pid})")
                idle0 = cpu_seconds(gateway.process.pid), cpu_seconds(engine.pid)
                await asyncio.sleep(2)
                idle1 = cpu_seconds(gateway.process.pid), cpu_seconds(engine.pid)
                print(
                    "idle cpu with every session set up, no packets:"
                    f" relay {50 * (idle1[0] - idle0[0]):.1f}% of a core,"
                    f" rtpengine {50 * (idle1[1] - idle0[1]):.1f}%"
                )
                await asyncio.gather(relay.send(WARMUP_FRAMES), rtpengine.send(WARMUP_FRAMES))
                await asyncio.sleep(SETTLE)
                checked = relay.check_decryption()
                print(f"warm-up done; {checked} forwarded SRTP samples decrypted and verified")
                for rep in range(args.repetitions):
                    loads: list[RelayLoad | RtpEngineLoad] = [relay, rtpengine]
                    if rep % 2:
                        loads.reverse()  # alternate the order: neither always runs first
                    for load in loads:
                        window = await load.measure(frames)
                        windows[window.name].append(window)
                    relay_window, engine_window = windows["relay"][-1], windows["rtpengine"][-1]
                    ratio = relay_window.per_cpu_second / engine_window.per_cpu_second
                    print(f"repetition {rep + 1}:")
                    print("  " + relay_window.line())
                    print("  " + engine_window.line())
                    metric_vs_counted = relay_window.forwarded - relay_window.received
                    print(
                        f"  relay/rtpengine efficiency ratio {ratio:.3f};"
                        f" relay metric minus subscriber count: {metric_vs_counted:+d}"
                    )
            finally:
                if rtpengine is not None:
                    await rtpengine.close()
                if engine is not None:
                    engine.stop()
                await relay.close()
    relay_rate = _median([w.per_cpu_second for w in windows["relay"]])
    engine_rate = _median([w.per_cpu_second for w in windows["rtpengine"]])
    ratios = [
        r.per_cpu_second / e.per_cpu_second
        for r, e in zip(windows["relay"], windows["rtpengine"], strict=True)
    ]
    print(f"median over {args.repetitions} repetitions:")
    print(
        f"  relay     {relay_rate:9.0f} forwarded packets per CPU-second"
        f" (cpu {_median([100 * w.cpu / w.seconds for w in windows['relay']]):.1f}% of a core,"
        f" loss {100 * _median([w.loss for w in windows['relay']]):.2f}%)"
    )
    print(
        f"  rtpengine {engine_rate:9.0f} forwarded packets per CPU-second"
        f" (cpu {_median([100 * w.cpu / w.seconds for w in windows['rtpengine']]):.1f}% of a core,"
        f" loss {100 * _median([w.loss for w in windows['rtpengine']]):.2f}%)"
    )
    print(f"  ratio relay/rtpengine {_median(ratios):.3f} (median of per-repetition ratios)")
    handled = [
        r.handled_per_cpu_second / e.handled_per_cpu_second
        for r, e in zip(windows["relay"], windows["rtpengine"], strict=True)
    ]
    print(
        f"  per datagram handled (in+out): relay"
        f" {_median([w.handled_per_cpu_second for w in windows['relay']]):.0f}, rtpengine"
        f" {_median([w.handled_per_cpu_second for w in windows['rtpengine']]):.0f}"
        f" per CPU-second, ratio {_median(handled):.3f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--publishers", type=int, default=4, help="publishers per room")
    parser.add_argument("--subscribers", type=int, default=4, help="subscribers per room")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.rooms, args.publishers, args.subscribers, args.repetitions) < 1:
        parser.error("rooms, publishers, subscribers and repetitions must be >= 1")
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds must be between 1 and 120")
    budget = 120 + args.repetitions * 2 * (args.seconds + 5)

    async def bounded() -> int:
        async with asyncio.timeout(budget):
            return await run(args)

    return uvloop.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
