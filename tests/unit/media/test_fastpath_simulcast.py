"""The native fast path (gateway/media/_fastpath.c) carries simulcast video and audio exactly as
the pure-Python path does: the same trace (3-layer VP8 with keyframes, audio with levels, layer
switches down and up, pause/resume, a late joiner, 3% loss repaired by RTX, reordering, an SSRC
restart, subscriber NACKs) through a Router on each path gives every subscriber byte-identical
plain RTP in the same order (SRTP-protected by the native Egress, decrypted here), the same RTCP
and the same counters; most packets never reach Python, and routes tee only while a downtrack
waits for a keyframe."""

from __future__ import annotations

import dataclasses
import os
import random
import socket
from collections.abc import Iterator
from typing import Any

import pylibsrtp
import pytest

from gateway.media import native
from gateway.media.router import CodecInfo, ExtensionIds, Router
from gateway.media.rtcp import RtcpGenericNack
from gateway.media.rtp import RtpPacket
from tests.unit.media.simulcast_trace import (
    ABS_SEND_TIME_ID,
    AUDIO_LEVEL_ID,
    HEIGHTS,
    MID_ID,
    OPUS_PT,
    REPAIRED_RID_ID,
    RID_ID,
    RIDS,
    RTX_PT,
    VP8_PT,
    simulcast_trace,
)

pytestmark = pytest.mark.skipif(not native.available(), reason="the native extension is not built")


@pytest.fixture(autouse=True)
def _native_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pick each path themselves (RONDPOINT_NATIVE=0 included): the Python run's
    publisher simply has no Ingress."""
    monkeypatch.setattr(native, "enabled", True)


PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
PUBLISHER_EXT = ExtensionIds(
    audio_level=AUDIO_LEVEL_ID,
    mid=MID_ID,
    rid=RID_ID,
    repaired_rid=REPAIRED_RID_ID,
    abs_send_time=ABS_SEND_TIME_ID,
)
SUBSCRIBER_EXT = ExtensionIds(audio_level=1, abs_send_time=2)
VP8 = CodecInfo("VP8", VP8_PT, 90000, rtx_payload_type=RTX_PT)
OPUS = CodecInfo("opus", OPUS_PT, 48000)


def _srtp(key: bytes, inbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND
        if inbound
        else pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=PROFILE,
    )
    policy.window_size = 1024
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


class _Publisher:
    """The publisher's transport as the router sees it: its native Ingress (or none) and RTCP."""

    def __init__(self, ingress: Any) -> None:
        self.ingress = ingress
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        raise AssertionError("nothing is sent to a publisher as RTP")

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)


class _Subscriber:
    """A subscriber's transport: with a native Egress, every packet (C's and Python's) goes out
    SRTP-protected on one socket and is decrypted on arrival; without, Python's are recorded."""

    def __init__(self, egress: Any = None, tx: Any = None, key: bytes = b"") -> None:
        self.egress = egress
        self.received: list[bytes] = []
        self.rtcp: list[bytes] = []
        self._tx = tx
        self._key = key
        self._rx: pylibsrtp.Session | None = None
        self._sock: socket.socket | None = None
        self._out: socket.socket | None = None
        self._address: tuple[str, int] | None = None

    @classmethod
    def native(cls, fast: Any, out: socket.socket) -> _Subscriber:
        key = os.urandom(30)
        tx = fast.Session(key, PROFILE, False, 1024, True)
        subscriber = cls(fast.Egress(tx), tx, key)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        subscriber._sock = sock
        subscriber._out = out
        subscriber._address = sock.getsockname()
        subscriber._rx = _srtp(key, inbound=True)
        assert subscriber.egress.set_peer(out.fileno(), "127.0.0.1", subscriber._address[1])
        return subscriber

    def send_rtp(self, packet: bytes) -> None:
        if self._out is None:
            self.received.append(packet)
            return
        assert self._address is not None
        self._out.sendto(self._tx.protect(packet), self._address)
        self.drain()

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def drain(self) -> None:
        if self._sock is None:
            return
        while True:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return
            assert self._rx is not None
            try:
                self.received.append(self._rx.unprotect(data))
            except pylibsrtp.Error:  # a retransmission: the replay window has seen its index
                self.received.append(_srtp(self._key, inbound=True).unprotect(data))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


@dataclasses.dataclass
class _Run:
    router: Router
    publisher: _Publisher
    subscribers: dict[str, _Subscriber]
    python_packets: int  # packets that reached Router.on_rtp
    teed_packets: int


# (time, action, subscriber, argument): what the subscribers do during the trace
EVENTS: list[tuple[float, str, str, Any]] = [
    (1.0, "max_height", "a", 360),  # down one layer
    (1.2, "join", "e", None),  # a late joiner resyncs on a keyframe
    (1.5, "nack", "", None),
    (2.0, "max_height", "a", None),  # back up
    (2.5, "pause", "b", True),
    (3.0, "pause", "b", False),
    (3.2, "nack", "", None),
    (3.6, "max_height", "c", 720),
]
START_HEIGHTS = {"a": None, "b": 360, "c": 180, "d": None}


def _run(path: str, python_served: str = "d") -> Iterator[_Run]:
    fast = native.MODULE if path == "native" else None
    random.seed(1313)  # the forwarders' random initial sequence numbers and timestamps
    publish_key = os.urandom(30)
    sender = _srtp(publish_key, inbound=False)
    ingress = None if fast is None else fast.Ingress(fast.Session(publish_key, PROFILE, True))
    publisher = _Publisher(ingress)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    router = Router("room", None, rtcp_ssrc=1, speaker_interval=0.3)
    router.add_receiver(
        "cam",
        "alice",
        "video",
        VP8,
        PUBLISHER_EXT,
        publisher,
        layers=list(zip(RIDS, HEIGHTS, strict=True)),
    )
    router.add_receiver("mic", "alice", "audio", OPUS, PUBLISHER_EXT, publisher)
    subscribers: dict[str, _Subscriber] = {}

    def join(name: str, now: float) -> None:
        # one without a native Egress (e.g. an ICE-TCP session): Python serves it on both paths
        with_egress = fast is not None and name != python_served
        subscriber = _Subscriber.native(fast, out) if with_egress else _Subscriber()
        subscribers[name] = subscriber
        index = len(subscribers)
        router.add_downtrack(
            "cam", name, subscriber, 7000 + index, 96, SUBSCRIBER_EXT, now, None, 7100 + index, 97
        )
        router.add_downtrack("mic", name, subscriber, 5000 + index, 111, SUBSCRIBER_EXT, now)
        router.set_max_height("cam", name, START_HEIGHTS.get(name), now)

    for name in START_HEIGHTS:
        join(name, 0.0)
    events = list(EVENTS)
    next_tick = 1.0
    python_packets = teed = 0
    on_rtp = router.on_rtp

    def counting_on_rtp(track_id: str, packet: bytes, now: float | None = None) -> None:
        nonlocal python_packets
        python_packets += 1
        on_rtp(track_id, packet, now)

    router.on_rtp = counting_on_rtp  # type: ignore[method-assign]
    try:
        for item in simulcast_trace():
            now = item.time
            while events and events[0][0] <= now:
                at, action, name, argument = events.pop(0)
                if action == "max_height":
                    router.set_max_height("cam", name, argument, at)
                elif action == "pause":
                    router.set_paused("cam", name, argument, at)
                elif action == "join":
                    join(name, at)
                elif action == "nack":
                    router.sync_routes()
                    for sub, subscriber in subscribers.items():
                        downtrack = router._receivers["cam"].downtracks[sub]
                        last = downtrack.forwarder.last_seq
                        nack = RtcpGenericNack(9, downtrack.ssrc, [(last - 2) & 0xFFFF, last])
                        router.on_subscriber_rtcp(sub, nack.serialize(), at)
                        subscriber.drain()
            if now >= next_tick:
                router.tick(next_tick, wall_time=1_700_000_000.0 + next_tick)
                next_tick += 1.0
            if ingress is None:
                router.on_rtp(item.track, item.packet, now)
            else:
                fast.set_clock(now)
                result = ingress.handle(sender.protect(item.packet))
                if result is not None:
                    route = router._receivers[item.track].by_ssrc.get(RtpPacket.parse(result).ssrc)
                    if route is not None and route.route is not None and route.route.teed:
                        teed += 1
                    router.on_rtp(item.track, result, now)
            for subscriber in subscribers.values():
                subscriber.drain()
        router.sync_routes()
        yield _Run(router, publisher, subscribers, python_packets, teed)
    finally:
        if fast is not None:
            fast.set_clock(-1.0)
        for subscriber in subscribers.values():
            subscriber.close()
        out.close()
        router.close()


def test_native_and_python_paths_send_the_same_bytes_and_count_the_same() -> None:
    native_run = next(_run("native"))
    python_run = next(_run("python"))
    total = len(simulcast_trace())
    assert set(native_run.subscribers) == set(python_run.subscribers) == set("abcde")
    for name, subscriber in python_run.subscribers.items():
        expected = subscriber.received
        got = native_run.subscribers[name].received
        assert len(got) == len(expected), name
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a == b, (name, i, RtpPacket.parse(a), RtpPacket.parse(b))
        assert native_run.subscribers[name].rtcp == subscriber.rtcp, name
    assert native_run.publisher.rtcp == python_run.publisher.rtcp
    assert dataclasses.asdict(native_run.router.stats) == dataclasses.asdict(
        python_run.router.stats
    )
    stats = python_run.router.stats
    assert stats.nacks_sent > 0 and stats.retransmissions > 0 and stats.keyframe_requests > 0
    # the trace exercised what it is meant to: every subscriber got video from several layers
    layers = {
        RtpPacket.parse(p).ssrc for p in python_run.subscribers["a"].received if p[1] & 0x7F == 96
    }
    assert len(layers) == 1  # one outgoing SSRC, whatever the layer
    assert python_run.python_packets == total


def test_most_packets_of_a_simulcast_room_never_reach_python() -> None:
    run = next(_run("native", python_served=""))
    total = len(simulcast_trace())
    # what reaches Python: RTX repairs (not forwarded natively), and teed: packets after a gap
    # (for the NACK), the first packet of a layer after each layer check (every 250 ms) and the
    # switches' keyframe waits
    assert run.python_packets < total * 0.3, (run.python_packets, total)
    assert run.python_packets - run.teed_packets < total * 0.08, (run.python_packets, total)


def test_a_steady_simulcast_room_stays_in_c_and_tees_only_while_a_switch_waits() -> None:
    fast = native.MODULE
    assert fast is not None
    random.seed(7)
    key = os.urandom(30)
    sender = _srtp(key, inbound=False)
    ingress = fast.Ingress(fast.Session(key, PROFILE, True))
    publisher = _Publisher(ingress)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    router = Router("room", None, rtcp_ssrc=1)
    router.add_receiver(
        "cam",
        "alice",
        "video",
        VP8,
        PUBLISHER_EXT,
        publisher,
        layers=list(zip(RIDS, HEIGHTS, strict=True)),
    )
    subscribers = {name: _Subscriber.native(fast, out) for name in ("a", "b")}
    for i, (name, subscriber) in enumerate(subscribers.items()):
        router.add_downtrack("cam", name, subscriber, 7000 + i, 96, SUBSCRIBER_EXT, 0.0)
    router.set_max_height("cam", "b", 180, 0.0)
    receiver = router._receivers["cam"]
    seen: list[tuple[float, bool]] = []  # (time, teed) of what reached Python
    tees: list[tuple[float, tuple[bool, ...]]] = []
    switch_at = 1.0
    try:
        for item in simulcast_trace(loss=0.0, reorder=0.0, duration=2.5):
            if item.track != "cam":
                continue
            if switch_at and item.time >= switch_at:
                router.set_max_height("cam", "b", 720, item.time)
                switch_at = 0.0
            fast.set_clock(item.time)
            result = ingress.handle(sender.protect(item.packet))
            if result is not None:
                known = receiver.by_ssrc.get(RtpPacket.parse(result).ssrc)
                seen.append(
                    (item.time, known is not None and bool(known.route and known.route.teed))
                )
                router.on_rtp("cam", result, item.time)
            tees.append(
                (
                    item.time,
                    tuple(layer.route is not None and layer.route.tee for layer in receiver.layers),
                )
            )
        for subscriber in subscribers.values():
            subscriber.drain()
    finally:
        fast.set_clock(-1.0)
        for subscriber in subscribers.values():
            subscriber.close()
        out.close()
    # steady once the keyframes the joins asked for came (each layer has one every 0.5 s): only
    # the first packet of each layer after each layer check (every 250 ms) is teed to Python
    before = [time for time, _ in seen if 0.6 < time < 1.0]
    assert len(before) <= 3 * 3, before
    steady_tees = [flags for time, flags in tees if 0.6 < time < 1.0]
    assert not any(any(flags) for flags in steady_tees)
    # the steady state: a few packets per layer check (every 250 ms) reach Python, nothing more
    video = sum(
        1 for item in simulcast_trace(loss=0.0, reorder=0.0, duration=2.5) if item.track == "cam"
    )
    assert len(seen) < video * 0.2, (len(seen), video)
    # b waits for layer 2's keyframe (frame 10 of each 15: t = 1.0 + ...): layer 2's route tees
    waiting = [flags for time, flags in tees if 1.0 <= time < 1.3]
    assert any(flags[2] for flags in waiting)
    after = [flags for time, flags in tees if time > 1.5]
    assert after and not any(any(flags) for flags in after)  # switched: no tee any more
    assert receiver.downtracks["b"].forwarder.current_layer == 2
    assert len(receiver.layers[2].route_downtracks) == 2  # both on layer 2's route now
    assert len(subscribers["b"].received) > 0


def test_a_full_route_table_leaves_python_in_charge() -> None:
    fast = native.MODULE
    assert fast is not None
    key = os.urandom(30)
    sender = _srtp(key, inbound=False)
    ingress = fast.Ingress(fast.Session(key, PROFILE, True))
    for i in range(fast.MAX_ROUTES):  # other tracks' routes fill the table
        other = fast.Route(0x9000 + i, 96, 0, 0, float("inf"), 90000.0, 0, 127, 0.0, 0.0, [])
        assert ingress.install(other)
    assert not ingress.install(
        fast.Route(0x8FFF, 96, 0, 0, float("inf"), 90000.0, 0, 127, 0.0, 0.0, [])
    )
    publisher = _Publisher(ingress)
    router = Router("room", None, rtcp_ssrc=1)
    router.add_receiver(
        "cam",
        "alice",
        "video",
        VP8,
        PUBLISHER_EXT,
        publisher,
        layers=list(zip(RIDS, HEIGHTS, strict=True)),
    )
    subscriber = _Subscriber()
    router.add_downtrack("cam", "a", subscriber, 7000, 96, SUBSCRIBER_EXT, 0.0)
    trace = [p for p in simulcast_trace(loss=0.0, reorder=0.0, duration=1.0) if p.track == "cam"]
    for item in trace:
        result = ingress.handle(sender.protect(item.packet))
        assert result is not None  # nothing forwarded natively: no route fits
        router.on_rtp("cam", result, item.time)
    receiver = router._receivers["cam"]
    assert all(layer.route is None for layer in receiver.layers)
    assert receiver.routes == 0
    top = {RtpPacket.parse(p.packet).sequence_number for p in trace if p.packet[11] == 0x02}
    assert len(subscriber.received) >= len(top) - 10  # the top layer, from its first keyframe
