"""The same SFU load on our relay and on livekit-server: forwarded packets per CPU-second, loss, rooms per core.

Rooms of 8 participants; each publishes Opus (50 packets/s) and VP8 simulcast q/h/f (320x180,
640x360, 1280x720 at 150/500/1500 kbit/s, 30 fps, key frames every 3 s and on PLI/FIR) and
subscribes to the 7 others, half of the video subscriptions on the low layer and half on the high
one (ORS `subscription` `max_height` on ours, `UpdateTrackSettings` width/height on LiveKit's). Real
ICE, DTLS-SRTP, RTCP both ways (sender and receiver reports), and congestion control on in both:
the load clients send transport-cc on what they publish and transport-cc feedback for what they
receive (every 50 ms); livekit-server runs with `congestion_control.use_send_side_bwe` (its
transport-cc based estimator for subscribers). Clients: bench/sfu_clients.py, in several load
processes (spawned; whole rooms per process).

Figures, per server process (utime+stime from /proc over the window):
- forwarded packets per CPU-second: media packets the subscribers received (padding and RTX
  excluded, both servers counted the same way) / server CPU-seconds; per server, 6 s of warm-up
  (congestion control climbing, a key frame of every layer) then back-to-back windows of
  continuous media, their median, and the ratio of the two medians;
- loss seen by subscribers: sequence-number gaps per received stream, and audio received vs sent;
- the most rooms one core holds: the server pinned to CPU 1 (`sched_setaffinity` on every
  thread), the load processes to CPU 0, rooms added one at a time until loss > 0.5% or the
  server uses more than 95% of its core.

Loopback only; every process started is stopped; each wait is bounded.

    .venv/bin/python -m bench.sfu_vs_livekit [--rooms 2 --seconds 8 --repetitions 3
        --workers 2 --ramp-max 10 --ramp-seconds 5 --no-ramp]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.measure import cpu_seconds, loadavg, machine
from bench.sfu_clients import socket_drops

ROOM_SIZE = 8
WARMUP = 6.0  # first window of a server: BWE ramp-up, key frames of every layer
RAMP_WARMUP = 4.0
RAMP_LOSS = 0.005
SATURATED = 0.95
SERVERS = ("relay", "livekit")


# the load processes ---------------------------------------------------------------------------


class LoadWorker:
    """State of one load process: its participants on each server, the send and RTCP loops."""

    def __init__(self) -> None:
        from bench.sfu_clients import Participant

        self.participants: dict[str, list[Participant]] = {kind: [] for kind in SERVERS}
        self.sending: str | None = None
        self.http: aiohttp.ClientSession | None = None

    async def join(self, kind: str, target: str, members: list[list[Any]]) -> float:
        """Join MEMBERS ([room, index, token] rows): rooms in parallel, a room's members in turn."""
        from bench.sfu_clients import SETTINGS, LiveKitParticipant, OrsParticipant, Participant

        if self.http is None:
            self.http = aiohttp.ClientSession()
        started = time.perf_counter()
        rooms: dict[str, list[tuple[int, str]]] = {}
        for room, index, token in members:
            rooms.setdefault(room, []).append((index, token))

        async def join_room(room: str, rows: list[tuple[int, str]]) -> list[Participant]:
            joined: list[Participant] = []
            for index, token in rows:
                participant: Participant
                if kind == "relay":
                    ors = OrsParticipant(index)
                    joined.append(ors)
                    await ors.join(target, room, token)
                else:
                    lk = LiveKitParticipant(index)
                    joined.append(lk)
                    assert self.http is not None
                    await lk.join(target, token, self.http)
                participant = joined[-1]
                self.participants[kind].append(participant)
            return joined

        async with asyncio.timeout(120):
            await asyncio.gather(*(join_room(r, rows) for r, rows in rooms.items()))
            # Every subscribe leg up and every video subscription asked for. LiveKit offers a
            # track to subscribers once its first packets arrived: media flows meanwhile there.
            sending = self.sending
            if kind == "livekit":
                self.sending = kind
            try:
                videos = 0 if SETTINGS["audio_only"] else ROOM_SIZE - 1
                while not all(
                    p.sub.connected.is_set() and p.high + p.low >= videos
                    for p in self.participants[kind]
                ):
                    await asyncio.sleep(0.1)
            finally:
                self.sending = sending
        return time.perf_counter() - started

    async def stop(self) -> None:
        self.sending = None

    async def configure(self, room_size: int, audio_only: bool, all_high: bool) -> None:
        """The load shape (bench/saturation.py): room size, audio only, all video high."""
        from bench.sfu_clients import SETTINGS

        global ROOM_SIZE
        ROOM_SIZE = room_size
        SETTINGS["audio_only"] = audio_only
        SETTINGS["all_high"] = all_high

    async def window(self, kind: str, start: float, end: float) -> dict[str, float]:
        """Send on KIND's legs (and keep sending after); count from START to END."""
        from bench.sfu_media import LAYERS, window_loss

        people = self.participants[kind]
        if self.sending != kind:
            for p in people:
                p.reset_schedule()
            self.sending = kind
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        before = self._snapshot(kind)
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        after = self._snapshot(kind)
        cpu1 = time.process_time()
        received = expected = 0
        for p in people:
            got, want = window_loss(before["streams"][id(p)], after["streams"][id(p)])
            received += got
            expected += want
        stats = {key: after[key] - before[key] for key in before if key != "streams"}
        stats["seq_received"] = received
        stats["seq_expected"] = expected
        stats["cpu"] = cpu1 - cpu0
        seconds = end - start
        stats["video_nominal"] = seconds * sum(
            p.high * LAYERS[-1].packet_rate + p.low * LAYERS[0].packet_rate for p in people
        )
        stats["high"] = sum(p.high for p in people)
        stats["low"] = sum(p.low for p in people)
        stats["participants"] = len(people)
        return stats

    def _snapshot(self, kind: str) -> dict[str, Any]:
        from bench.sfu_clients import socket_drops

        people = self.participants[kind]
        return {
            "audio_sent": sum(p.pub.audio_sender.sent for p in people if p.pub.audio_sender),
            "video_sent": sum(s.sent for p in people for s in p.pub.video_senders),
            "audio_received": sum(p.sub.audio_received for p in people),
            "video_received": sum(p.sub.video_received for p in people),
            "other_received": sum(p.sub.other_received for p in people),
            "keyframe_requests": sum(p.pub.keyframe_requests for p in people),
            "socket_drops": socket_drops({p.sub.local_port for p in people if p.sub.transport}),
            "streams": {id(p): p.sub.counter.snapshot() for p in people},
        }

    async def leave(self, kind: str) -> int:
        if self.sending == kind:
            self.sending = None
        people, self.participants[kind] = self.participants[kind], []
        await asyncio.gather(*(p.close() for p in people), return_exceptions=True)
        return len(people)

    async def pace(self) -> None:
        """Every 5 ms, each publisher of the server being measured sends what is due."""
        while True:
            kind = self.sending
            if kind is not None:
                now = time.monotonic()
                for p in self.participants.get(kind, ()):
                    p.tick(now)
            await asyncio.sleep(0.005)

    async def feedback(self) -> None:
        """Transport-wide feedback every 50 ms, sender and receiver reports every second."""
        for n in range(10**9):
            await asyncio.sleep(0.05)
            for people in self.participants.values():
                for p in people:
                    p.sub.send_feedback()
                    if n % 20 == 0:
                        p.sub.send_reports()
                        p.pub.send_reports()

    async def close(self) -> None:
        for kind in SERVERS:
            await self.leave(kind)
        if self.http is not None:
            await self.http.close()


def worker_main(conn: multiprocessing.connection.Connection) -> None:
    """A load process: runs commands from the parent until `quit` (or the pipe closes)."""
    uvloop.run(serve(conn, LoadWorker()))


async def serve(conn: multiprocessing.connection.Connection, worker: Any) -> None:
    loop = asyncio.get_running_loop()
    background = [asyncio.create_task(worker.pace()), asyncio.create_task(worker.feedback())]
    try:
        while True:
            try:
                command, args = await loop.run_in_executor(None, conn.recv)
            except EOFError:
                return
            if command == "quit":
                return
            try:
                if command == "pin":
                    os.sched_setaffinity(0, set(args["cpus"]))
                    result: Any = None
                else:
                    result = await getattr(worker, command)(**args)
                conn.send(("ok", result))
            except Exception as exc:  # reported to the parent, which stops the run
                conn.send(("error", f"{command}: {type(exc).__name__}: {exc}"))
    finally:
        for task in background:
            task.cancel()
        await worker.close()


class Workers:
    """The parent's handle on the load processes."""

    def __init__(self, count: int, target: Any = None) -> None:
        context = multiprocessing.get_context("spawn")
        target = target or worker_main
        self.conns: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(child,), daemon=True)
            process.start()
            self.conns.append(parent)
            self.processes.append(process)

    async def call(self, index: int, command: str, timeout: float = 90, **args: Any) -> Any:
        conn = self.conns[index]
        conn.send((command, args))
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, conn.poll, timeout)
        if not ready:
            raise TimeoutError(f"load process {index} did not answer {command} in {timeout} s")
        status, result = conn.recv()
        if status != "ok":
            raise RuntimeError(f"load process {index}: {result}")
        return result

    async def all(self, command: str, timeout: float = 90, **args: Any) -> list[Any]:
        return list(
            await asyncio.gather(
                *(self.call(i, command, timeout, **args) for i in range(len(self.conns)))
            )
        )

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("quit", {}))
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)


# servers --------------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    pid: int
    target: str  # base URL (relay) or ws URL (livekit)
    tokens: Any  # (room, identity) -> token
    ports: frozenset[int] = frozenset()  # its media UDP ports (socket drops: it fell behind)

    def threads(self) -> list[int]:
        return [int(t) for t in os.listdir(f"/proc/{self.pid}/task")]

    def pin(self, cpus: set[int]) -> None:
        for tid in self.threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def livekit_server(tmp: Path) -> Iterator[Server]:
    """livekit-server on loopback: one UDP port for all peers (as our relay), ICE-lite (so the
    lean clients are the controlling agent on both legs, as with our relay), send-side BWE."""
    from protocols.livekit.tokens import VideoGrant, mint_token
    from tests.gateway_process import free_port, free_udp_block
    from tests.interop.livekit_fixtures import API_KEY, API_SECRET, livekit_server_binary
    from tests.processes import spawn_logged, stop_process, wait_http_ready

    binary = livekit_server_binary()
    port, tcp_port = free_port(), free_port()
    udp_port = free_udp_block(1, (40000, 59999), align=1)
    config = tmp / "livekit.yaml"
    config.write_text(
        f"port: {port}\n"
        "rtc:\n"
        f"  tcp_port: {tcp_port}\n"
        f"  udp_port: {udp_port}\n"
        "  use_external_ip: false\n"
        "  use_ice_lite: true\n"
        "  enable_loopback_candidate: true\n"
        "  ips:\n"
        "    includes: [127.0.0.1/32]\n"
        "  congestion_control:\n"
        "    enabled: true\n"
        "    use_send_side_bwe: true\n"
        "logging:\n"
        "  level: warn\n"
    )
    log = tmp / "livekit-server.log"
    command = [str(binary), "--dev", "--bind", "127.0.0.1", "--node-ip", "127.0.0.1"]
    process = spawn_logged([*command, "--config", str(config)], log, name="livekit", cwd=tmp)
    try:
        wait_http_ready(
            f"http://127.0.0.1:{port}/", process, log, name="livekit-server", timeout=20
        )

        def token(room: str, identity: str) -> str:
            return mint_token(
                API_KEY,
                API_SECRET,
                identity=identity,
                name=identity,
                grant=VideoGrant.join(room),
            )

        yield Server("livekit", process.pid, f"ws://127.0.0.1:{port}", token, frozenset({udp_port}))
    finally:
        stop_process(process)


@contextlib.contextmanager
def relay_server(tmp: Path) -> Iterator[Server]:
    from tests.gateway_process import running_gateway

    with contextlib.ExitStack() as stack:
        for attempt in range(3):  # a free port taken meanwhile by another process: try again
            here = tmp / f"gateway-{attempt}"
            here.mkdir(parents=True, exist_ok=True)
            try:
                gateway = stack.enter_context(running_gateway(here, log_format="json"))
                break
            except RuntimeError as exc:
                if "cannot start" not in str(exc) or attempt == 2:
                    raise
        created: set[str] = set()

        def token(room: str, identity: str) -> str:
            if room not in created:
                gateway.create_room(room)
                created.add(room)
            return gateway.token(room, identity)

        yield Server(
            "relay", gateway.process.pid, gateway.base_url, token, frozenset({gateway.media_port})
        )


# measurement ----------------------------------------------------------------------------------


@dataclass
class Window:
    kind: str
    rooms: int
    seconds: float
    cpu: float
    stats: dict[str, float]
    client_cpu: list[float]

    @property
    def media_received(self) -> float:
        return self.stats["audio_received"] + self.stats["video_received"]

    @property
    def per_cpu_second(self) -> float:
        return self.media_received / self.cpu if self.cpu > 0 else float("inf")

    @property
    def seq_loss(self) -> float:
        s = self.stats
        return 1 - s["seq_received"] / s["seq_expected"] if s["seq_expected"] else 0.0

    @property
    def audio_loss(self) -> float:
        expected = self.stats["audio_sent"] * (ROOM_SIZE - 1)
        return 1 - self.stats["audio_received"] / expected if expected else 0.0

    @property
    def loss(self) -> float:
        """Sequence-number gaps (what receiver reports count), or the share of the ingress the
        server's own socket dropped when higher. (The audio count check drifts with the few
        packets in flight at the window's two ends.)"""
        ingress = self.stats["audio_sent"] + self.stats["video_sent"]
        dropped = self.stats.get("server_drops", 0) / ingress if ingress else 0.0
        return max(self.seq_loss, dropped)

    @property
    def clients_busy(self) -> float:
        """The load processes' CPU together, in cores."""
        return sum(self.client_cpu) / self.seconds

    @property
    def core(self) -> float:
        return self.cpu / self.seconds

    def line(self) -> str:
        s = self.stats
        video_share = s["video_received"] / s["video_nominal"] if s["video_nominal"] else 0
        return (
            f"{self.kind:8} {self.rooms:2d} room(s): in {(s['audio_sent'] + s['video_sent']) / self.seconds:6.0f}"
            f" pkt/s, out {self.media_received / self.seconds:6.0f} pkt/s"
            f" (+{s['other_received'] / self.seconds:.0f} padding/RTX)"
            f"  loss {100 * self.seq_loss:5.2f}% (audio {100 * self.audio_loss:5.2f}%)"
            f"  video {100 * video_share:5.1f}% of nominal"
            f"  cpu {100 * self.core:5.1f}% of a core  {self.per_cpu_second:7.0f} fwd/cpu-s"
            f"  [clients {', '.join(f'{100 * c / self.seconds:.0f}%' for c in self.client_cpu)}"
            f" of a core each; {s['keyframe_requests']:.0f} PLI/FIR;"
            f" {s['socket_drops']:.0f} dropped in their sockets,"
            f" {s['server_drops']:.0f} in the server's]"
        )


def _sum(results: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for result in results:
        for key, value in result.items():
            if key != "cpu":
                total[key] = total.get(key, 0) + value
    return total


async def measure(
    workers: Workers,
    server: Server,
    rooms: int,
    seconds: float,
    workers_used: list[int],
    warmup: float,
) -> Window:
    """One window: the load processes send (from now, and on after it), CPU read at its ends."""
    now = time.monotonic()
    start, end = now + warmup, now + warmup + seconds
    calls = [
        workers.call(
            i, "window", timeout=warmup + seconds + 30, kind=server.kind, start=start, end=end
        )
        for i in workers_used
    ]
    gathered = asyncio.gather(*calls)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu0, drops0 = cpu_seconds(server.pid), socket_drops(server.ports)
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    cpu1, drops1 = cpu_seconds(server.pid), socket_drops(server.ports)
    results = await gathered
    stats = _sum(results)
    stats["server_drops"] = drops1 - drops0
    return Window(server.kind, rooms, seconds, cpu1 - cpu0, stats, [r["cpu"] for r in results])


async def join_rooms(
    workers: Workers, server: Server, first: int, count: int, tag: str, size: int = ROOM_SIZE
) -> tuple[float, list[int]]:
    """Rooms FIRST..FIRST+COUNT-1 of SIZE participants (room r in load process r % workers)."""
    per_worker: dict[int, list[list[Any]]] = {}
    for r in range(first, first + count):
        room = f"{tag}-{r}"
        rows = per_worker.setdefault(r % len(workers.conns), [])
        for p in range(size):
            index = r * size + p
            token = await asyncio.to_thread(server.tokens, room, f"u{index}")
            rows.append([room, index, token])
    started = time.perf_counter()
    await asyncio.gather(
        *(
            workers.call(
                i, "join", timeout=150, kind=server.kind, target=server.target, members=rows
            )
            for i, rows in per_worker.items()
        )
    )
    return time.perf_counter() - started, sorted(per_worker)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def efficiency(
    workers: Workers, servers: dict[str, Server], args: argparse.Namespace
) -> dict[str, list[Window]]:
    """Per server: join, warm up (BWE ramp-up, a key frame of every layer), then back-to-back
    windows of continuous media; then leave before the other server's turn."""
    windows: dict[str, list[Window]] = {kind: [] for kind in servers}
    for kind, server in servers.items():
        took, used = await join_rooms(workers, server, 0, args.rooms, f"eff-{kind}")
        print(f"{kind}: {args.rooms * ROOM_SIZE} participants joined in {took:.1f} s")
        for rep in range(args.repetitions):
            warmup = WARMUP if rep == 0 else 0.0
            window = await measure(workers, server, args.rooms, args.seconds, used, warmup)
            windows[kind].append(window)
            print(f"  {rep + 1}: " + window.line())
        await workers.all("stop")
        await workers.all("leave", kind=kind)
    return windows


async def ramp(workers: Workers, server: Server, args: argparse.Namespace) -> list[Window]:
    """Add rooms one at a time, server on CPU 1 and the load on CPU 0, until loss or saturation."""
    steps: list[Window] = []
    server.pin({1})
    await workers.all("pin", cpus=[0])
    used: set[int] = set()
    try:
        for rooms in range(1, args.ramp_max + 1):
            try:
                _, now_used = await join_rooms(workers, server, rooms - 1, 1, f"ramp-{server.kind}")
            except (RuntimeError, TimeoutError) as exc:
                print(f"  (stopped: room {rooms} could not join: {exc})")
                break
            used.update(now_used)
            window = await measure(
                workers, server, rooms, args.ramp_seconds, sorted(used), RAMP_WARMUP
            )
            steps.append(window)
            print("  " + window.line())
            if window.loss > RAMP_LOSS or window.core > SATURATED:
                break
            if window.clients_busy > SATURATED:
                print("  (stopped: the load processes saturate CPU 0)")
                break
    finally:
        await workers.all("leave", kind=server.kind)
        await workers.all("pin", cpus=list(range(os.cpu_count() or 1)))
        with contextlib.suppress(OSError):
            server.pin(set(range(os.cpu_count() or 1)))
    return steps


def rooms_held(steps: list[Window]) -> int:
    """The most rooms of a ramp below RAMP_LOSS loss and below saturation."""
    held = 0
    for step in steps:
        if step.loss > RAMP_LOSS or step.core > SATURATED:
            break
        held = step.rooms
    return held


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}; load average {loadavg()}")
    print(
        f"load: rooms of {ROOM_SIZE}, each participant publishing Opus 50 pkt/s + VP8 simulcast"
        " q/h/f and subscribing to the 7 others (video half low, half high);"
        f" {args.workers} load processes"
    )
    with (
        tempfile.TemporaryDirectory(prefix="rondpoint-sfu-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        tmp_path = Path(tmp)
        (tmp_path / "relay").mkdir()
        (tmp_path / "livekit").mkdir()
        servers = {
            "relay": stack.enter_context(relay_server(tmp_path / "relay")),
            "livekit": stack.enter_context(livekit_server(tmp_path / "livekit")),
        }
        workers = Workers(args.workers)
        stack.callback(workers.stop)
        windows = await efficiency(workers, servers, args)
        print(f"load average after the efficiency runs: {loadavg()}")
        ramps: dict[str, list[Window]] = {}
        if args.ramp:
            for kind, server in servers.items():
                print(f"ramp {kind} (server on CPU 1, load processes on CPU 0):")
                ramps[kind] = await ramp(workers, server, args)
            print(f"load average after the ramps: {loadavg()}")
    print(f"median over {args.repetitions} repetitions, {args.rooms} room(s) of {ROOM_SIZE}:")
    for kind, rows in windows.items():
        print(
            f"  {kind:8} {_median([w.per_cpu_second for w in rows]):8.0f} forwarded packets per"
            f" CPU-second, cpu {100 * _median([w.core for w in rows]):5.1f}% of a core,"
            f" loss {100 * _median([w.seq_loss for w in rows]):.2f}%"
            f" (audio {100 * _median([w.audio_loss for w in rows]):.2f}%)"
        )
    ratio = _median([w.per_cpu_second for w in windows["relay"]]) / _median(
        [w.per_cpu_second for w in windows["livekit"]]
    )
    print(f"  ratio relay/livekit {ratio:.2f} (of the medians)")
    for kind, steps in ramps.items():
        print(f"  {kind:8} holds {rooms_held(steps)} room(s) on one core below 0.5% loss")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--ramp-max", type=int, default=10)
    parser.add_argument("--ramp-seconds", type=float, default=5.0)
    parser.add_argument("--no-ramp", dest="ramp", action="store_false")
    args = parser.parse_args(argv)
    if min(args.rooms, args.repetitions, args.workers, args.ramp_max) < 1:
        parser.error("rooms, repetitions, workers and ramp-max must be >= 1")
    if not 1 <= args.seconds <= 60 or not 1 <= args.ramp_seconds <= 60:
        parser.error("--seconds and --ramp-seconds must be between 1 and 60")
    budget = (
        180
        + args.repetitions * 2 * (args.seconds + 8)
        + 2 * args.ramp_max * (args.ramp_seconds + 20)
    )

    async def bounded() -> int:
        async with asyncio.timeout(budget):
            return await run(args)

    return uvloop.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
