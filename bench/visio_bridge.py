"""The Visio bridge: CPU per bridged participant and added one-way latency.

Everything runs on loopback: a real livekit-server (tests/interop/livekit_fixtures.py, `--dev`),
the gateway as its own process (tests/gateway_process.py) with a `[visio]` section, a room here
linked to a Visio room through the admin API (POST /api/v1/rooms/{room}/links).

**CPU** (utime+stime from /proc/PID/stat over a fixed window, for the gateway and, side by side,
for livekit-server, the reference for the same participants in the same run):

- Visio -> here: one phone here listens (so Visio's audio is decoded and mixed, as for a real
  room); N Visio users (LiveKit's SDK, in this process, `auto_subscribe=False` so livekit-server
  forwards each of them only to the bridge) publish a tone, then a tone and a 320x240 15 fps
  video. Per bridged participant = (window with N users - window with 0 users) / N.
- here -> Visio: K phones here send a tone (one helper process places all K calls); an SDK
  listener in the Visio room subscribes to everything. The same room is measured unlinked then
  linked: per mirrored participant = ((linked K - unlinked K) - (linked 0 - unlinked 0)) / K, i.e.
  what mirroring costs, without the phone legs themselves and the bridge's fixed cost.

**Latency** (CLOCK_MONOTONIC, shared by the processes): onsets of 200 ms tone bursts after silence.
The time of an onset at a receiver is the arrival time of the first packet holding a loud sample
minus the duration of the samples after it in that packet; every receiver timestamps packets as
they come off its socket, before any jitter buffer:

- LiveKit -> phone: an SDK user publishes the bursts; a *probe* (this project's LiveKit client,
  protocols/livekit, encoded mode, hidden, in its own process, decoding Opus only to find the
  onset) and the phone (a raw SIP UA in its own process, tests/interop/sipclient.py, PCMA RTP on
  its own socket) both receive them. Added = phone onset - probe onset: what the bridge adds over
  a LiveKit participant's direct path.
- phone -> LiveKit: the phone sends the bursts (onset at the first sample of a packet, sent on a
  20 ms clock); the probe receives the phone's mirror. Added = probe onset - the onset's time at
  the phone (the send time of its packet minus 20 ms, when a real phone would have captured it).
  It includes livekit-server's forwarding, about what the direct path above costs after capture.
- An SDK listener also records both paths after the SDK's own jitter buffer, for context.

    .venv/bin/python -m bench.visio_bridge [--visio-users 2,6 --phones 2,6 --seconds 10
        --repetitions 3 --bursts 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import select
import statistics
import struct
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import cpu_seconds, loadavg, machine
from gateway.media.audio.codecs import OpusDecoder
from gateway.media.audio.g711 import alaw_decode, alaw_encode
from gateway.media.rtp import RtpPacket

BURST_HZ = 1000.0
BURST_MS = 200
BURST_AMPLITUDE = 12000
LOUD = 1000
"""A sample louder than this (int16) is burst; silence decodes to a few units at most."""
PHONE_RATE = 8000
PHONE_FRAME = PHONE_RATE // 50  # 20 ms of PCMA
SDK_RATE = 48000
SDK_FRAME = SDK_RATE // 100  # the SDK's 10 ms frames
SDK_QUEUE_MS = 20
PREFIX = "rondpoint-"

Onsets = list[tuple[float, int, int]]
"""Per received packet or frame: (arrival time, index of its first loud sample or -1, length)."""


# pure helpers (tests/unit/test_bench_visio_bridge.py) ----------------------------------------


def loud_index(samples: np.ndarray, threshold: int = LOUD) -> int:
    """Index of the first sample louder than THRESHOLD, or -1."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return int(loud[0]) if len(loud) else -1


def onset_times(
    records: Onsets, starts: Sequence[float], rate: int, within: float = 1.0
) -> list[float | None]:
    """For each burst start (sender's clock), when its onset reached this receiver: the arrival of
    the first packet after it that holds a loud sample, minus the samples after that one; None
    when no loud packet arrived within WITHIN seconds."""
    found: list[float | None] = []
    for start in starts:
        onset = None
        for arrival, index, length in records:
            if arrival < start or index < 0:
                continue
            if arrival > start + within:
                break
            onset = arrival - (length - index) / rate
            break
        found.append(onset)
    return found


def differences(later: Sequence[float | None], earlier: Sequence[float | None]) -> list[float]:
    """later - earlier in ms, for the bursts both saw."""
    return [
        (a - b) * 1000
        for a, b in zip(later, earlier, strict=True)
        if a is not None and b is not None
    ]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def per_participant(load: float, base: float, count: int, seconds: float) -> float:
    """% of one core per participant: (CPU-s under load - CPU-s of the baseline) / count."""
    return (load - base) / seconds / count * 100


def pcma_packet(ssrc: int, seq: int, timestamp: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def burst_frames(rate: int, frame: int, seconds: float = BURST_MS / 1000) -> list[np.ndarray]:
    """A BURST_HZ tone of SECONDS cut in FRAME-sample frames, starting at phase 0."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    tone = (np.sin(2 * np.pi * BURST_HZ * t) * BURST_AMPLITUDE).astype(np.int16)
    # the first sample of a sine at phase 0 is 0: start a quarter period in, so sample 0 is loud
    tone = np.roll(tone, -int(rate / BURST_HZ / 4))
    return [tone[i : i + frame] for i in range(0, n - frame + 1, frame)]


# the phone: a raw SIP UA in its own process -----------------------------------------------------


@dataclass
class PhoneReport:
    received: Onsets = field(default_factory=list)
    """What call 0 received (PCMA at 8 kHz)."""
    sent_onsets: list[float] = field(default_factory=list)
    """Send times of the first packet of each burst call 0 sent."""
    packets_in: int = 0
    packets_out: int = 0


def phone_main(
    sip: tuple[str, int], room: str, calls: int, tone_hz: float, conn: Any
) -> None:  # pragma: no cover - runs in a child process
    """CALLS calls to ROOM; each sends 20 ms PCMA frames on a 20 ms clock: a tone of TONE_HZ (0:
    silence); call 0 sends bursts at the times the parent sends as ("bursts", [times]) and
    timestamps what it receives. ("stop",) hangs up and sends back a PhoneReport."""
    from tests.interop.sipclient import SipClient

    clients: list[SipClient] = []
    targets: list[tuple[str, int]] = []
    dialogs = []
    for _ in range(calls):
        client = SipClient(sip)
        call = client.invite(room)
        final = client.wait_answer(call, timeout=10)
        if final is None or final.status != 200:
            conn.send(("failed", f"call answered {final.status if final else 'nothing'}"))
            return
        body = final.body.decode()
        host = re.search(r"c=IN IP4 (\S+)", body)
        port = re.search(r"m=audio (\d+)", body)
        assert host and port, body
        clients.append(client)
        targets.append((host.group(1), int(port.group(1))))
        dialogs.append(call)
    conn.send(("ready", calls))
    t = np.arange(PHONE_RATE) / PHONE_RATE
    tone = (
        alaw_encode((np.sin(2 * np.pi * tone_hz * t) * 8000).astype(np.int16)) if tone_hz else b""
    )
    silence = alaw_encode(np.zeros(PHONE_FRAME, np.int16))
    burst = [alaw_encode(f) for f in burst_frames(PHONE_RATE, PHONE_FRAME)]
    report = PhoneReport()
    bursts: list[float] = []
    burst_left: list[bytes] = []
    ssrcs = [random.getrandbits(32) for _ in clients]
    rtp = {c.rtp.fileno(): i for i, c in enumerate(clients)}
    sip_socks = {c.sock.fileno(): c for c in clients}
    for c in clients:
        c.rtp.setblocking(False)
    start = time.monotonic()
    frame = 0
    stop = False
    while not stop:
        due = start + frame * 0.02
        while (left := due - time.monotonic()) > 0:
            readable, _, _ = select.select([*rtp, *sip_socks, conn.fileno()], [], [], left)
            for fd in readable:
                if fd in rtp:
                    data = clients[rtp[fd]].rtp.recv(2048)
                    now = time.monotonic()
                    if rtp[fd] == 0 and len(data) > 12:
                        payload = RtpPacket.parse(data).payload
                        samples = alaw_decode(payload)
                        report.received.append((now, loud_index(samples), len(samples)))
                    report.packets_in += 1
                elif fd in sip_socks:
                    sip_socks[fd].receive(0.001)  # answers the gateway's requests
                else:
                    message = conn.recv()
                    if message[0] == "bursts":
                        bursts.extend(message[1])
                        bursts.sort()
                    else:
                        stop = True
        for i, client in enumerate(clients):
            if i == 0 and not burst_left and bursts and bursts[0] <= time.monotonic():
                bursts.pop(0)
                burst_left = list(burst)
                report.sent_onsets.append(-1.0)  # set right after the send below
            if i == 0 and burst_left:
                payload = burst_left.pop(0)
                first = len(burst_left) == len(burst) - 1
            else:
                first = False
                offset = (frame * PHONE_FRAME) % (PHONE_RATE - PHONE_FRAME)
                payload = tone[offset : offset + PHONE_FRAME] if tone else silence
            client.rtp.sendto(
                pcma_packet(ssrcs[i], frame, frame * PHONE_FRAME, payload), targets[i]
            )
            if first:
                report.sent_onsets[-1] = time.monotonic()
            report.packets_out += 1
        frame += 1
    for client, call in zip(clients, dialogs, strict=True):
        client.bye(call, timeout=2)
        client.close()
    conn.send(("report", report))


# the probe: this project's LiveKit client, encoded, in its own process --------------------------


def probe_main(url: str, token: str, conn: Any) -> None:  # pragma: no cover - child process
    """Joins hidden, subscribes to everything, timestamps each RTP packet and finds its loud
    samples (Opus decoded at 48 kHz). ("stop",) sends back {participant identity: Onsets}."""
    asyncio.run(_probe(url, token, conn))


async def _probe(url: str, token: str, conn: Any) -> None:  # pragma: no cover - child process
    from protocols.livekit.rtc import LiveKitParticipant, RemoteTrack

    received: dict[str, Onsets] = {}
    tracks: dict[str, tuple[str, OpusDecoder]] = {}

    def on_remote_track(track: RemoteTrack) -> None:
        if track.kind == "audio":
            tracks[track.sid] = (track.participant_identity, OpusDecoder(SDK_RATE))

    def on_rtp(sid: str, packet: bytes) -> None:
        now = time.monotonic()
        found = tracks.get(sid)
        if found is None:
            return
        identity, decoder = found
        payload = RtpPacket.parse(packet).payload
        if not payload:
            return
        samples = decoder.decode(payload)
        received.setdefault(identity, []).append((now, loud_index(samples), len(samples)))

    participant = await LiveKitParticipant.connect(url, token, encoded=True)
    participant.on_remote_track = on_remote_track
    participant.on_rtp = on_rtp
    conn.send(("ready", participant.identity))
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_reader(conn.fileno(), stopped.set)
    await stopped.wait()
    loop.remove_reader(conn.fileno())
    conn.recv()
    conn.send(("report", received))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(participant.close(), 5)


@contextlib.contextmanager
def child(target: Callable[..., None], *args: object) -> Iterator[Any]:
    """A spawned process running TARGET(*args, conn); yields our end of the pipe; always reaped."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    ours.pid = process.pid  # type: ignore[attr-defined]
    try:
        yield ours
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)


async def expect(conn: Any, kind: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {kind} from the helper process within {timeout:g} s")
        await asyncio.sleep(0.05)
    message = conn.recv()
    if message[0] != kind:
        raise RuntimeError(f"helper process: {message}")
    return message[1]


# the scenario ---------------------------------------------------------------------------------


@dataclass
class Setup:
    gateway: Any
    livekit: Any
    phone_pids: list[int] = field(default_factory=list)

    def cpu(self) -> dict[str, float]:
        values = {
            "gateway": cpu_seconds(self.gateway.process.pid),
            "livekit": cpu_seconds(self.livekit.process.pid),
            "bench": cpu_seconds(os.getpid()),
        }
        values["phones"] = sum(cpu_seconds(pid) for pid in self.phone_pids)
        return values

    async def window(self, seconds: float) -> dict[str, float]:
        before = self.cpu()
        await asyncio.sleep(seconds)
        after = self.cpu()
        return {key: after[key] - before[key] for key in before}

    def participants(self, room: str) -> list[dict[str, Any]]:
        status, body = self.gateway.admin("GET", f"/api/v1/rooms/{room}")
        assert status == 200, body
        return list(body["participants"])

    def link(self, room: str, visio_room: str) -> None:
        status, body = self.gateway.admin(
            "POST", f"/api/v1/rooms/{room}/links", {"target": f"visio:{visio_room}"}
        )
        assert status == 201, body

    def unlink(self, room: str, visio_room: str) -> None:
        status, body = self.gateway.admin(
            "DELETE", f"/api/v1/rooms/{room}/links/visio:{visio_room}"
        )
        assert status in (200, 204), (status, body)

    def link_state(self, room: str) -> str:
        status, body = self.gateway.admin("GET", f"/api/v1/rooms/{room}/links")
        assert status == 200, body
        items = body["links"] if isinstance(body, dict) else body
        return str(items[0]["status"]["state"]) if items else "none"


async def wait_for(what: Callable[[], object], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        await asyncio.sleep(0.1)


def visio_here(setup: Setup, room: str, kinds: set[str]) -> int:
    """Visio participants here with at least the track KINDS."""
    return sum(
        1
        for p in setup.participants(room)
        if p["origin"] == "visio" and kinds <= {t["kind"] for t in p["tracks"]}
    )


def phones_here(setup: Setup, room: str) -> int:
    return sum(1 for p in setup.participants(room) if p["origin"] == "sip")


def visio_count(setup: Setup, room: str, kinds: set[str], n: int) -> Callable[[], bool]:
    return lambda: visio_here(setup, room, kinds) == n


def phone_count(setup: Setup, room: str, k: int) -> Callable[[], bool]:
    return lambda: phones_here(setup, room) == k


def probe_token(livekit: Any, room: str, identity: str) -> str:
    from protocols.livekit.tokens import VideoGrant, mint_token

    grant = VideoGrant(
        room=room, room_join=True, can_subscribe=True, can_publish=False, hidden=True
    )
    return mint_token(
        livekit.api_key, livekit.api_secret, identity=identity, name=identity, grant=grant
    )


@contextlib.asynccontextmanager
async def phone(setup: Setup, room: str, calls: int, tone_hz: float) -> AsyncIterator[Any]:
    with child(phone_main, ("127.0.0.1", setup.gateway.sip_port), room, calls, tone_hz) as conn:
        await expect(conn, "ready")
        setup.phone_pids.append(conn.pid)
        try:
            yield conn
        finally:
            setup.phone_pids.remove(conn.pid)
            with contextlib.suppress(OSError):
                conn.send(("stop",))
            conn.report = await expect(conn, "report")


async def linked(setup: Setup, room: str, visio_room: str) -> None:
    setup.link(room, visio_room)
    await wait_for(
        lambda: setup.link_state(room) == "connected", 20, f"{room}: link never connected"
    )


def pct(seconds: float, window: float) -> float:
    return seconds / window * 100


async def visio_to_here(
    setup: Setup, rep: int, counts: list[int], seconds: float
) -> list[dict[str, Any]]:
    """Windows with 0, then N Visio users (audio, then audio+video); one phone here listens."""
    from tests.interop.livekit_sdk import VisioUser

    room, visio_room = f"bench-a{rep}", str(uuid.uuid4())
    setup.gateway.create_room(room)
    rows: list[dict[str, Any]] = []
    async with phone(setup, room, 1, 0):
        await linked(setup, room, visio_room)
        await asyncio.sleep(2)
        base = await setup.window(seconds)
        rows.append({"rep": rep, "users": 0, "media": "-", **base})
        for n in counts:
            users = [
                await VisioUser.join(
                    setup.livekit, visio_room, f"v{rep}-{n}-{i}", f"Visio {i}", auto_subscribe=False
                )
                for i in range(n)
            ]
            try:
                for i, user in enumerate(users):
                    await user.publish_tone(300 + 50 * i)
                await wait_for(visio_count(setup, room, {"audio"}, n), 30, "audio not bridged")
                await asyncio.sleep(2)
                rows.append(
                    {"rep": rep, "users": n, "media": "audio", **await setup.window(seconds)}
                )
                for user in users:
                    await user.publish_video()
                await wait_for(
                    visio_count(setup, room, {"audio", "video"}, n),
                    30,
                    "video not bridged",
                )
                await asyncio.sleep(2)
                rows.append(
                    {"rep": rep, "users": n, "media": "audio+video", **await setup.window(seconds)}
                )
            finally:
                for user in users:
                    await user.leave()
            await wait_for(lambda: visio_here(setup, room, set()) == 0, 20, "Visio users stayed")
        setup.unlink(room, visio_room)
    for row in rows:
        n = row["users"]
        if n:
            for key in ("gateway", "livekit"):
                row[f"{key}_pp"] = per_participant(row[key], base[key], n, seconds)
        print(
            f"  rep {rep} visio->here {n} users {row['media']:<11} gateway {pct(row['gateway'], seconds):5.1f}% "
            f"livekit {pct(row['livekit'], seconds):5.1f}% SDK(bench) {pct(row['bench'], seconds):5.1f}%",
            flush=True,
        )
    return rows


async def here_to_visio(
    setup: Setup, rep: int, counts: list[int], seconds: float
) -> list[dict[str, Any]]:
    """For K in 0 and COUNTS: K phones in a fresh room, unlinked then linked; an SDK listener in
    the Visio room subscribes to every mirror."""
    from tests.interop.livekit_sdk import VisioUser

    rows: list[dict[str, Any]] = []
    for k in [0, *counts]:
        room, visio_room = f"bench-b{rep}-{k}", str(uuid.uuid4())
        setup.gateway.create_room(room)
        listener = await VisioUser.join(
            setup.livekit, visio_room, f"listener-{rep}-{k}", "Listener"
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                if k:
                    await stack.enter_async_context(phone(setup, room, k, 700))
                    await wait_for(phone_count(setup, room, k), 20, "phones not in")
                await asyncio.sleep(2)
                unlinked = await setup.window(seconds)
                await linked(setup, room, visio_room)

                def mirrored(k: int = k, listener: Any = listener) -> bool:
                    people = listener.room.remote_participants.values()
                    return (
                        sum(
                            1
                            for p in people
                            if p.identity.startswith(PREFIX) and p.track_publications
                        )
                        == k
                    )

                await wait_for(mirrored, 30, "phones not mirrored into LiveKit")
                await asyncio.sleep(2)
                link = await setup.window(seconds)
                setup.unlink(room, visio_room)
        finally:
            await listener.leave()
        row: dict[str, Any] = {"rep": rep, "phones": k, "unlinked": unlinked, "linked": link}
        rows.append(row)
        print(
            f"  rep {rep} here->visio {k} phones: gateway unlinked {pct(unlinked['gateway'], seconds):5.1f}% "
            f"linked {pct(link['gateway'], seconds):5.1f}%, livekit {pct(link['livekit'], seconds):5.1f}% "
            f"(unlinked {pct(unlinked['livekit'], seconds):4.1f}%), phones {pct(link['phones'], seconds):4.1f}% "
            f"SDK(bench) {pct(link['bench'], seconds):4.1f}%",
            flush=True,
        )
    zero = rows[0]
    for row in rows[1:]:
        k = row["phones"]
        for key in ("gateway", "livekit"):
            added = row["linked"][key] - row["unlinked"][key]
            fixed = zero["linked"][key] - zero["unlinked"][key]
            row[f"{key}_pp"] = per_participant(added, fixed, k, seconds)
        row["gateway_total_pp"] = per_participant(
            row["linked"]["gateway"], zero["unlinked"]["gateway"], k, seconds
        )
    return rows


class BurstSpeaker:
    """An SDK user publishing silence, and BURST_MS bursts when asked; keeps each onset's capture time."""

    def __init__(self, user: Any) -> None:
        from livekit import rtc

        self.user = user
        self.rtc = rtc
        self.source = rtc.AudioSource(
            SDK_RATE, 1, queue_size_ms=SDK_QUEUE_MS, loop=asyncio.get_running_loop()
        )
        self.pending: list[np.ndarray] = []
        self.captured: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rtc = self.rtc
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self.task = asyncio.create_task(self._pump())
        await self.user.room.local_participant.publish_track(track, options)

    def burst(self) -> None:
        self.pending = burst_frames(SDK_RATE, SDK_FRAME)

    async def _pump(self) -> None:
        silence = np.zeros(SDK_FRAME, np.int16)
        while True:
            first = len(self.pending) == BURST_MS // 10
            samples = self.pending.pop(0) if self.pending else silence
            await self.source.capture_frame(
                self.rtc.AudioFrame(samples.tobytes(), SDK_RATE, 1, SDK_FRAME)
            )
            if first:
                self.captured.append(time.monotonic())

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await self.source.aclose()


async def record_frames(user: Any, identity: str, into: Onsets) -> None:
    """Every 10 ms frame the SDK plays out from IDENTITY (after its jitter buffer), timestamped."""
    from livekit import rtc

    track = await user.remote_track(identity, "audio", 20)
    stream = rtc.AudioStream(
        track, loop=asyncio.get_running_loop(), sample_rate=SDK_RATE, num_channels=1
    )
    try:
        async for event in stream:
            now = time.monotonic()
            samples = np.frombuffer(event.frame.data, dtype=np.int16)
            into.append((now, loud_index(samples), len(samples)))
    finally:
        await stream.aclose()


def summary(name: str, values: list[float], expected: int) -> dict[str, Any]:
    if not values:
        print(f"  {name}: no burst seen", flush=True)
        return {"name": name, "n": 0}
    result = {
        "name": name,
        "n": len(values),
        "median": statistics.median(values),
        "p90": percentile(values, 0.9),
        "min": min(values),
        "max": max(values),
    }
    print(
        f"  {name}: median {result['median']:.1f} ms, p90 {result['p90']:.1f}, "
        f"min {result['min']:.1f}, max {result['max']:.1f} ({len(values)}/{expected} bursts)",
        flush=True,
    )
    return result


async def latency(setup: Setup, bursts: int, period: float) -> list[dict[str, Any]]:
    from tests.interop.livekit_sdk import VisioUser

    room, visio_room = "bench-latency", str(uuid.uuid4())
    setup.gateway.create_room(room)
    token = probe_token(setup.livekit, visio_room, "probe")
    results: list[dict[str, Any]] = []
    speaker_user = await VisioUser.join(
        setup.livekit, visio_room, "speaker", "Speaker", auto_subscribe=False
    )
    listener = await VisioUser.join(setup.livekit, visio_room, "listener", "Listener")
    speaker = BurstSpeaker(speaker_user)
    recorders: list[asyncio.Task[None]] = []
    heard: dict[str, Onsets] = {"speaker": [], "phone": []}
    try:
        await speaker.start()
        with child(probe_main, setup.livekit.url, token) as probe:
            await expect(probe, "ready")
            async with phone(setup, room, 1, 0) as phone_conn:
                await linked(setup, room, visio_room)
                await wait_for(
                    lambda: visio_here(setup, room, {"audio"}) >= 1, 20, "speaker not bridged"
                )
                mirror = ""

                def find_mirror() -> bool:
                    nonlocal mirror
                    for p in listener.room.remote_participants.values():
                        if p.identity.startswith(PREFIX) and p.track_publications:
                            mirror = p.identity
                    return bool(mirror)

                await wait_for(find_mirror, 30, "the phone was not mirrored")
                recorders = [
                    asyncio.create_task(record_frames(listener, "speaker", heard["speaker"])),
                    asyncio.create_task(record_frames(listener, mirror, heard["phone"])),
                ]
                await asyncio.sleep(3)
                # LiveKit -> phone: the speaker's bursts, 1 per PERIOD at a random phase
                for _ in range(bursts):
                    speaker.burst()
                    await asyncio.sleep(period + random.uniform(0, 0.1))
                await asyncio.sleep(1)
                # phone -> LiveKit
                first = time.monotonic() + 0.5
                starts = [first + i * period + random.uniform(0, 0.1) for i in range(bursts)]
                phone_conn.send(("bursts", starts))
                await asyncio.sleep(starts[-1] - time.monotonic() + 1.5)
            report: PhoneReport = phone_conn.report
            probe.send(("stop",))
            probed: dict[str, Onsets] = await expect(probe, "report")
    finally:
        for task in recorders:
            task.cancel()
        await speaker.close()
        await speaker_user.leave()
        await listener.leave()
    captured = speaker.captured
    # onsets are searched from a little before the capture: the SDK's queue holds SDK_QUEUE_MS
    lk_starts = [t - 0.05 for t in captured]
    probe_lk = onset_times(probed.get("speaker", []), lk_starts, SDK_RATE)
    phone_lk = onset_times(report.received, lk_starts, PHONE_RATE)
    listener_lk = onset_times(heard["speaker"], lk_starts, SDK_RATE)
    sent = [t - 0.02 for t in report.sent_onsets]  # when a real phone would have captured it
    phone_starts = [t - 0.001 for t in report.sent_onsets]
    probe_phone = onset_times(probed.get(mirror, []), phone_starts, SDK_RATE)
    listener_phone = onset_times(heard["phone"], phone_starts, SDK_RATE)
    print("latency (one-way, onset of a 200 ms burst):", flush=True)
    n = len(captured)
    results.append(
        summary("LiveKit->phone ADDED (phone - probe)", differences(phone_lk, probe_lk), n)
    )
    results.append(
        summary("  SDK capture -> probe (direct RTP arrival)", differences(probe_lk, captured), n)
    )
    results.append(
        summary("  SDK capture -> phone RTP arrival", differences(phone_lk, captured), n)
    )
    results.append(
        summary(
            "  SDK capture -> SDK listener playout (direct)", differences(listener_lk, captured), n
        )
    )
    m = len(sent)
    results.append(
        summary("phone->LiveKit ADDED (probe - phone capture)", differences(probe_phone, sent), m)
    )
    results.append(
        summary("  phone capture -> SDK listener playout", differences(listener_phone, sent), m)
    )
    return results


def median_of(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


async def run(args: argparse.Namespace) -> int:
    from tests.gateway_process import running_gateway
    from tests.interop.livekit_fixtures import running_livekit

    warnings.filterwarnings("ignore", message=".*HMAC key.*")
    visio_users = [int(x) for x in args.visio_users.split(",") if x]
    phones = [int(x) for x in args.phones.split(",") if x]
    print(f"machine: {machine()}; load average {loadavg()}", flush=True)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rondpoint-bench-")))
        (tmp / "lk").mkdir()
        (tmp / "gw").mkdir()
        livekit = stack.enter_context(running_livekit(tmp / "lk"))
        config = (
            f'[visio]\nurl = "{livekit.url}"\napi_key = "{livekit.api_key}"\n'
            f'api_secret = "{livekit.api_secret}"\nreconnect_max_seconds = 2\n'
        )
        gateway = stack.enter_context(running_gateway(tmp / "gw", config))
        setup = Setup(gateway, livekit)
        seconds = args.seconds
        if not args.skip_cpu:
            a_rows: list[dict[str, Any]] = []
            b_rows: list[dict[str, Any]] = []
            for rep in range(args.repetitions):
                print(f"repetition {rep + 1} (load average {loadavg()})", flush=True)
                if visio_users:
                    a_rows += await visio_to_here(setup, rep, visio_users, seconds)
                if phones:
                    b_rows += await here_to_visio(setup, rep, phones, seconds)
            print(f"\nCPU per bridged participant, % of one core, median of {args.repetitions}:")
            for n in visio_users:
                for media in ("audio", "audio+video"):
                    rows = [r for r in a_rows if r["users"] == n and r["media"] == media]
                    g, lk = median_of(rows, "gateway_pp"), median_of(rows, "livekit_pp")
                    ratios = [
                        r["gateway_pp"] / r["livekit_pp"] for r in rows if r["livekit_pp"] > 0
                    ]
                    bench = statistics.median(pct(r["bench"], seconds) for r in rows)
                    print(
                        f"  Visio->here {n} users {media:<11}: gateway {g:.2f}%  livekit-server {lk:.2f}%  "
                        f"ratio {statistics.median(ratios) if ratios else float('nan'):.2f}  "
                        f"(SDK users in the bench process: {bench:.0f}% of a core in all)"
                    )
            for k in phones:
                rows = [r for r in b_rows if r["phones"] == k]
                g, lk = median_of(rows, "gateway_pp"), median_of(rows, "livekit_pp")
                ratios = [r["gateway_pp"] / r["livekit_pp"] for r in rows if r["livekit_pp"] > 0]
                total = median_of(rows, "gateway_total_pp")
                print(
                    f"  here->Visio {k} phones: gateway {g:.2f}% per mirror (with the phone leg: {total:.2f}%)  "
                    f"livekit-server {lk:.2f}%  ratio {statistics.median(ratios) if ratios else float('nan'):.2f}"
                )
        if args.bursts:
            print(
                f"\nlatency, {args.bursts} bursts each way (load average {loadavg()})", flush=True
            )
            await latency(setup, args.bursts, args.period)
    print(f"load average at the end: {loadavg()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visio-users", default="2,6", help="N Visio users per step (comma list)")
    parser.add_argument("--phones", default="2,6", help="K phones here per step (comma list)")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU window")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=12, help="bursts each way (0: no latency)")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between bursts")
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
