"""Subscriber congestion control: transport-wide sequence stamping (Python and native), feedback
in, allocation and probes out (fake router and clock), the router's allocation API, and the relay
end to end on both packet paths."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from bench.srtp_client import LeanPeer, rtp_frames
from gateway.media import native, sdp
from gateway.media.allocator import cost
from gateway.media.congestion import (
    ALLOCATION_INTERVAL,
    SubscriberCongestion,
    stamp_transport_sequence,
)
from gateway.media.relay import MediaRelay
from gateway.media.router import CodecInfo, DowntrackInfo, ExtensionIds, Router
from gateway.media.rtcp import RtcpPli
from gateway.media.rtp import RtpPacket
from gateway.media.srtp import SrtpContext
from gateway.media.twcc import PacketResult, TransportCcFeedback, read_transport_seq
from tests.unit.media.relay_peers import audio_publisher

TCC = 3


def _packet(
    extensions: dict[int, bytes] | None = None, *, profile: int = 0, csrc: int = 0
) -> bytes:
    packet = RtpPacket(
        payload_type=96,
        sequence_number=7,
        timestamp=1234,
        ssrc=0x11223344,
        csrc=list(range(1, csrc + 1)),
        extensions=extensions or {},
        extension_profile=profile,
        payload=b"\x90\x80payload",
    )
    return packet.serialize()


STAMP_CASES = {
    "no extension": _packet(),
    "no extension, CSRCs": _packet(csrc=2),
    "element present": _packet({TCC: b"\x00\x00", 1: b"\x85"}),
    "other elements, padding room": _packet({1: b"\x85"}),
    "other elements, no room": _packet({1: b"\x85\x00", 2: b"\x00\x00\x01"}),
    "two-byte, present": _packet({TCC: b"\x00\x00"}, profile=0x1000),
    "two-byte, absent": _packet({1: b"\x85"}, profile=0x1000),
}


@pytest.mark.parametrize("case", list(STAMP_CASES))
def test_stamp_writes_the_sequence_and_keeps_the_rest(case: str) -> None:
    original = STAMP_CASES[case]
    stamped = stamp_transport_sequence(original, TCC, 0xBEEF)
    assert stamped is not None
    assert read_transport_seq(stamped, TCC) == 0xBEEF
    before, after = RtpPacket.parse(original), RtpPacket.parse(stamped)
    assert after.payload == before.payload
    assert after.csrc == before.csrc
    assert (after.sequence_number, after.timestamp, after.ssrc) == (7, 1234, 0x11223344)
    assert {k: v for k, v in after.extensions.items() if k != TCC} == {
        k: v for k, v in before.extensions.items() if k != TCC
    }
    if native.available():  # the native Egress stamps byte for byte alike
        egress = native.MODULE.Egress(_native_session())  # type: ignore[union-attr]
        egress.set_twcc(TCC)
        for _ in range(0xBEEF):
            egress.next_twcc_seq()
        assert egress.stamp(original) == stamped
        assert egress.twcc_seq == 0xBEEF + 1


def _native_session() -> object:
    fast = native.MODULE
    assert fast is not None
    return fast.Session(bytes(30), 1, False, 1024, True)  # SRTP_AES128_CM_SHA1_80


def test_stamp_refuses_what_it_cannot_stamp() -> None:
    assert stamp_transport_sequence(b"\x80" * 5, TCC, 1) is None
    assert stamp_transport_sequence(_packet(), 0, 1) is None
    assert stamp_transport_sequence(_packet(), 15, 1) is None  # no one-byte id 15
    odd_profile = bytearray(_packet({1: b"\x85"}))
    odd_profile[12:14] = b"\x12\x34"
    assert stamp_transport_sequence(bytes(odd_profile), TCC, 1) is None
    wrong_length = _packet({TCC: b"\x00\x00\x00"})
    assert stamp_transport_sequence(wrong_length, TCC, 1) is None


def test_stamp_never_crashes_on_garbage_and_both_paths_agree() -> None:
    rng = random.Random(3)
    session = _native_session() if native.available() else None
    for _ in range(5000):
        packet = bytearray(rng.choice(list(STAMP_CASES.values())))
        for _ in range(rng.randrange(0, 6)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
        garbled = bytes(packet[: rng.randrange(1, len(packet) + 1)])
        ext_id = rng.randrange(1, 15)
        result = stamp_transport_sequence(garbled, ext_id, 0)
        if result is not None:
            assert len(result) >= len(garbled)
            assert read_transport_seq(result, ext_id) == 0
        if session is not None:  # the native Egress stamps (or refuses) byte for byte alike
            egress = native.MODULE.Egress(session)  # type: ignore[union-attr]
            egress.set_twcc(ext_id)
            stamped = egress.stamp(garbled)
            assert (stamped if egress.twcc_seq else None) == result


@pytest.mark.skipif(not native.available(), reason="the native extension is not built")
def test_native_egress_shares_one_sequence_with_the_python_path() -> None:
    egress = native.MODULE.Egress(_native_session())  # type: ignore[union-attr]
    congestion = SubscriberCongestion(FakeRouter([]), "bob", TCC)
    congestion.bind_egress(egress)
    first = congestion.stamp(_packet(), 1.0)
    native_stamped = egress.stamp(_packet())
    second = congestion.stamp(_packet(), 1.1)
    assert [read_transport_seq(p, TCC) for p in (first, native_stamped, second)] == [0, 1, 2]


class FakeRouter:
    def __init__(self, downtracks: list[DowntrackInfo], *, padding: bool = True) -> None:
        self.downtracks = downtracks
        self.allocations: list[tuple[str, int | None]] = []
        self.padding: list[int] = []
        self.pad = padding
        self.link: Link | None = None

    def subscriber_downtracks(
        self, subscriber_id: str, now: float | None = None
    ) -> list[DowntrackInfo]:
        return self.downtracks

    def set_allocation(
        self, track_id: str, subscriber_id: str, max_layer: int | None, now: float | None = None
    ) -> None:
        self.allocations.append((track_id, max_layer))

    def send_padding(self, subscriber_id: str, octets: int) -> int:
        self.padding.append(octets)
        if not self.pad:
            return 0
        return self.link.pad(octets) if self.link is not None else octets


def _video(
    track_id: str = "v", rates: tuple[int, ...] = (150_000, 500_000, 1_500_000)
) -> DowntrackInfo:
    return DowntrackInfo(track_id, "video", "camera", 0, 0, 2, None, None, False, False, rates)


def _audio() -> DowntrackInfo:
    return DowntrackInfo("a", "audio", "microphone", 0, 0, 0, None, None, False, False, (40_000,))


def _feedback(results: list[tuple[int, float | None]], count: int = 0) -> bytes:
    first = min((a for _, a in results if a is not None), default=0.0)
    reference = int(first / 0.064)
    return TransportCcFeedback(
        1, 2, results[0][0], reference, count, [PacketResult(s, a) for s, a in results]
    ).serialize()


class Link:
    """A bottleneck of CAPACITY bits/s behind a 300 ms drop-tail queue, 20 ms one way."""

    def __init__(
        self, congestion: SubscriberCongestion, capacity: float, loss: float = 0.0
    ) -> None:
        self.congestion = congestion
        self.capacity = capacity
        self.loss = loss
        self.random = random.Random(7)
        self.busy = 0.0
        self.now = 0.0
        self.in_flight: list[tuple[int, float]] = []

    def transmit(self, packet: bytes, at: float) -> None:
        stamped = self.congestion.stamp(packet, at)
        sequence = read_transport_seq(stamped, TCC)
        assert sequence is not None
        begin = max(at, self.busy)
        if begin - at > 0.3 or self.random.random() < self.loss:
            return  # dropped at the queue's tail, or lost on the way
        self.busy = begin + len(stamped) * 8 / self.capacity
        self.in_flight.append((sequence, self.busy + 0.02))

    def pad(self, octets: int) -> int:
        sent = 0
        while sent < octets:
            self.transmit(_packet({TCC: b"\x00\x00"}) + bytes(255), self.now)
            sent += 255
        return sent


def _run_link(
    congestion: SubscriberCongestion,
    capacity: float,
    seconds: float,
    start: float,
    *,
    loss: float = 0.0,
    app_limited: bool = False,
) -> float:
    """Packets sent at the estimate (APP_LIMITED: at what the allocation takes, as the relay
    does) through a Link, feedback every 50 ms with what arrived (a gap before an arrival: lost),
    the timer every 50 ms; returns the time it ended."""
    router = congestion.router
    link = Link(congestion, capacity, loss)
    if isinstance(router, FakeRouter):
        link = router.link or link  # one link across calls: its queue and packets in flight
        link.capacity, link.loss = capacity, loss
        router.link = link
    now = next_send = start
    link.busy = max(link.busy, start)
    count = 0
    while now < start + seconds:
        next_tick = now + 0.05
        while next_send < next_tick:
            link.now = next_send
            link.transmit(_packet({TCC: b"\x00\x00"}) + bytes(1100), next_send)
            rate = congestion.estimate
            if app_limited and isinstance(router, FakeRouter):
                rate = min(rate, max(cost(router.downtracks, congestion.allocator.applied), 30_000))
            next_send += 1200 * 8 / rate
        now = link.now = next_tick
        arrived = sorted((s, a) for s, a in link.in_flight if a <= now)
        link.in_flight = [(s, a) for s, a in link.in_flight if a > now]
        if arrived:
            by_sequence = dict(arrived)
            first, last = arrived[0][0], arrived[-1][0]
            results = [(s, by_sequence.get(s)) for s in range(first, last + 1)]
            congestion.on_feedback(_feedback(results, count), now)
            count += 1
        congestion.tick(now)
    return now


@pytest.fixture(params=["python", "native"])
def records(request: pytest.FixtureRequest) -> str:
    """Where the send records live: a SendRecords, or the native Egress (its C reading)."""
    if request.param == "native" and not native.available():
        pytest.skip("the native extension is not built")
    return str(request.param)


def _controller(records: str, router: FakeRouter, **options: int) -> SubscriberCongestion:
    congestion = SubscriberCongestion(router, "bob", TCC, **options)
    if records == "native":
        congestion.bind_egress(native.MODULE.Egress(_native_session()))  # type: ignore[union-attr]
    return congestion


def test_feedback_drives_the_estimate_and_the_allocation(records: str) -> None:
    router = FakeRouter([_audio(), _video()])
    congestion = _controller(records, router)
    end = _run_link(congestion, 400_000, 15.0, 100.0)
    assert congestion.feedback_packets > 100
    assert 250_000 <= congestion.estimate <= 450_000
    assert router.allocations[0] == ("a", 0)
    assert congestion.allocator.applied == {"a": 0, "v": 0}
    # the link widens: probes ask for the next layer's need, the allocation climbs
    _run_link(congestion, 5_000_000, 20.0, end)
    assert router.padding
    assert congestion.probes >= 1
    assert congestion.allocator.applied["v"] == 2


def test_capped_lossy_link_keeps_the_lowest_layer_then_climbs_back_when_lifted(
    records: str,
) -> None:
    # the netlab scenario: 300 kbit/s with 3 % loss, the relay sending only what it allocates
    router = FakeRouter([_audio(), _video()])
    congestion = _controller(records, router)
    applied: list[int | None] = []
    end = 0.0
    for _ in range(60):
        end = _run_link(congestion, 300_000, 1.0, end, loss=0.03, app_limited=True)
        applied.append(congestion.allocator.applied.get("v"))
    assert applied[10:] == [0] * 50, applied  # the lowest layer, never paused, never above
    assert congestion.layer_downgrades <= 2
    lifted = end
    while congestion.allocator.applied.get("v") != 2 and end < lifted + 10:
        end = _run_link(congestion, 10_000_000, 0.5, end, app_limited=True)
    assert congestion.allocator.applied["v"] == 2, end - lifted


def test_a_narrow_link_pauses_video_never_audio(records: str) -> None:
    router = FakeRouter([_audio(), _video()])
    congestion = _controller(records, router, start_bitrate=100_000)
    _run_link(congestion, 120_000, 10.0, 0.0)
    assert congestion.allocator.applied == {"a": 0, "v": None}
    assert ("v", None) in router.allocations
    assert all(layer == 0 for track, layer in router.allocations if track == "a")


def test_the_estimate_falls_and_the_layer_goes_down_at_once(records: str) -> None:
    router = FakeRouter([_audio(), _video()])
    congestion = _controller(records, router, start_bitrate=3_000_000)
    end = _run_link(congestion, 5_000_000, 5.0, 0.0)
    assert congestion.allocator.applied["v"] == 2
    _run_link(congestion, 300_000, 3.0, end)
    assert congestion.allocator.applied["v"] == 0
    assert congestion.layer_downgrades >= 1


def test_allocation_runs_at_its_interval_once_feedback_came(records: str) -> None:
    router = FakeRouter([_audio()])
    congestion = _controller(records, router)
    congestion.stamp(_packet(), 0.0)
    congestion.tick(0.0)
    assert router.allocations == []  # no feedback yet: nothing is known of the link
    congestion.on_feedback(_feedback([(0, 0.02)]), 0.0)
    congestion.tick(0.0)
    router.downtracks = [_audio(), _video()]
    congestion.tick(ALLOCATION_INTERVAL / 2)
    assert [t for t, _ in router.allocations] == ["a"]
    congestion.tick(ALLOCATION_INTERVAL)
    assert [t for t, _ in router.allocations] == ["a", "v"]


def test_no_padding_no_probe_yet_upgrades_on_the_estimate(records: str) -> None:
    router = FakeRouter([_audio(), _video()], padding=False)
    congestion = _controller(records, router, start_bitrate=300_000)
    end = _run_link(congestion, 300_000, 5.0, 0.0)
    _run_link(congestion, 5_000_000, 30.0, end)
    assert (congestion.allocator.applied["v"] or 0) >= 1


def test_a_router_without_padding_is_never_asked_for_it(records: str) -> None:
    class NoPadding:
        def __init__(self) -> None:
            self.allocations: list[tuple[str, int | None]] = []

        def subscriber_downtracks(
            self, subscriber_id: str, now: float | None = None
        ) -> list[DowntrackInfo]:
            return [_audio(), _video()]

        def set_allocation(
            self, track_id: str, subscriber_id: str, layer: int | None, now: float | None = None
        ) -> None:
            self.allocations.append((track_id, layer))

    router = NoPadding()
    congestion = _controller(records, router, start_bitrate=200_000)
    _run_link(congestion, 5_000_000, 5.0, 0.0)
    assert congestion.probes == 0


class ResendingRouter(FakeRouter):
    """A FakeRouter that retransmitted OCTETS to the subscriber between two allocations."""

    def __init__(self, downtracks: list[DowntrackInfo], octets: int) -> None:
        super().__init__(downtracks)
        self.octets = octets

    def take_resent_octets(self, subscriber_id: str) -> int:
        return self.octets


def test_retransmissions_are_left_out_of_what_the_layers_may_take(records: str) -> None:
    layers = {}
    for octets in (0, 11_250):  # 300 kbit/s of retransmissions at one allocation per 0.3 s
        router = ResendingRouter([_audio(), _video()], octets)
        congestion = _controller(records, router)
        _run_link(congestion, 1_000_000, 20.0, 0.0, app_limited=True)
        layers[octets] = congestion.allocator.applied["v"]
    assert layers == {0: 1, 11_250: 0}


def test_feedback_for_unknown_or_expired_packets_is_ignored(records: str) -> None:
    congestion = _controller(records, FakeRouter([]))
    for i in range(5):
        congestion.stamp(_packet(), float(i) * 0.01)
    congestion.on_feedback(_feedback([(100, 1.0), (101, 1.01)]), 1.0)
    assert congestion.estimator.acknowledged_bitrate is None
    congestion.on_feedback(_feedback([(0, 1.0), (1, 1.01)]), 100.0)  # sent 100 s ago
    assert congestion.estimator.acknowledged_bitrate is None
    assert congestion.feedback_packets == 2


def test_fuzzed_feedback_never_crashes(records: str) -> None:
    rng = random.Random(11)
    congestion = _controller(records, FakeRouter([_audio(), _video()]))
    for i in range(200):
        congestion.stamp(_packet(), i * 0.001)
    good = _feedback([(i, 0.5 + i * 0.001) for i in range(50)] + [(50, None)] * 0)
    for step in range(3000):
        packet = bytearray(good)
        for _ in range(rng.randrange(1, 8)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
        packet = packet[: rng.randrange(4, len(packet) + 1)]
        congestion.on_feedback(bytes(packet), 1.0 + step * 0.001)
        congestion.tick(1.0 + step * 0.001)
    assert congestion.feedback_errors > 0
    assert congestion.estimate >= 30_000


# --- the router's allocation API ---------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)


VP8_KEY = b"\x90\x80\x00\x00\x9d\x01\x2a" + bytes(20)  # descriptor + keyframe header


def _simulcast_router() -> tuple[Router, Sink, Sink]:
    router = Router("room", rtcp_ssrc=1)
    publisher = Sink()
    router.add_receiver(
        "cam",
        "alice",
        "video",
        CodecInfo("VP8", 96, 90000),
        ExtensionIds(),
        publisher,
        layers=[("q", 180), ("h", 360), ("f", 720)],
        source="camera",
    )
    for index, rid in enumerate("qhf"):
        router.set_layer_ssrc("cam", rid, 100 + index)
    subscriber = Sink()
    router.add_downtrack("cam", "bob", subscriber, 555, 96, ExtensionIds(), now=0.0)
    return router, publisher, subscriber


def _send_layers(router: Router, start: float, seconds: float, seq: list[int]) -> None:
    """Each layer sends 50 packets a second (keyframes), sized 100/300/900 bytes + header."""
    steps = int(seconds * 50)
    for step in range(steps):
        now = start + step / 50
        for index, size in enumerate((100, 300, 900)):
            packet = RtpPacket(
                96, seq[index], step * 1800, 100 + index, payload=VP8_KEY + bytes(size)
            )
            seq[index] += 1
            router.on_rtp("cam", packet.serialize(), now)


def test_layer_bitrates_are_measured_per_layer() -> None:
    router, _, _ = _simulcast_router()
    seq = [0, 0, 0]
    router.tick(0.0)
    _send_layers(router, 0.0, 1.0, seq)
    router.tick(1.0)
    rates = router.layer_bitrates("cam")
    overhead = 12 + len(VP8_KEY)
    assert rates == [(size + overhead) * 8 * 50 for size in (100, 300, 900)]
    assert router.layer_bitrates("nothing") == []
    router.tick(2.0)  # a second without packets
    assert router.layer_bitrates("cam") == [0, 0, 0]


def test_rtx_resends_do_not_count_in_a_layers_bitrate() -> None:
    """libwebrtc pads its bandwidth probes with RTX resends of recent packets: they are not what
    the layer costs, and counted they made a 180p layer look dearer than 360p."""
    router, _, _ = _simulcast_router()
    router.set_layer_ssrc("cam", "q", 100, rtx_ssrc=200)
    seq = [0, 0, 0]
    router.tick(0.0)
    _send_layers(router, 0.0, 1.0, seq)
    for n in range(100):  # 100 resends of 1000 bytes on q's RTX stream within the second
        resend = RtpPacket(97, 5000 + n, 0, 200, payload=bytes((0, n % 50)) + bytes(1000))
        router.on_rtp("cam", resend.serialize(), 0.5 + n / 1000)
    router.tick(1.0)
    overhead = 12 + len(VP8_KEY)
    assert router.layer_bitrates("cam")[0] == (100 + overhead) * 8 * 50


def test_set_allocation_is_a_ceiling_below_the_height_choice() -> None:
    router, _, subscriber = _simulcast_router()
    seq = [0, 0, 0]
    _send_layers(router, 0.0, 0.2, seq)
    infos = router.subscriber_downtracks("bob", 0.2)
    assert [(i.track_id, i.height_layer, i.max_layer) for i in infos] == [("cam", 2, None)]
    router.set_allocation("cam", "bob", 2, 0.25)
    router.set_allocation("cam", "bob", 1, 0.3)
    assert router.subscriber_downtracks("bob", 0.3)[0].target_layer == 1
    assert router.stats.layer_downgrades == 1
    router.set_max_height("cam", "bob", 180, 0.4)  # the subscriber's own limit still wins
    assert router.subscriber_downtracks("bob", 0.4)[0].target_layer == 0
    router.set_max_height("cam", "bob", None, 0.5)
    assert router.subscriber_downtracks("bob", 0.5)[0].target_layer == 1
    subscriber.rtp.clear()
    _send_layers(router, 0.6, 0.2, seq)
    ssrcs_forwarded = {RtpPacket.parse(p).ssrc for p in subscriber.rtp}
    assert ssrcs_forwarded == {555}
    assert len(subscriber.rtp) == 10  # one layer's packets only: layer 1


def test_a_downtrack_under_congestion_control_starts_on_the_lowest_layer() -> None:
    """Before its first allocation, a measured subscriber gets the lowest layer (a 720p burst
    into a 300 kbit/s link cost the netlab viewer its video for 17 s); the allocation climbs."""
    router, _, _ = _simulcast_router()
    measured = Sink()
    router.add_downtrack("cam", "carol", measured, 556, 96, ExtensionIds(), now=0.0, max_layer=0)
    seq = [0, 0, 0]
    _send_layers(router, 0.0, 0.2, seq)
    carol = router.subscriber_downtracks("carol", 0.2)[0]
    assert (carol.target_layer, carol.max_layer) == (0, 0)
    assert router.subscriber_downtracks("bob", 0.2)[0].target_layer == 2  # unmeasured: the top
    assert len(measured.rtp) == 10  # the 180p layer's packets only
    router.set_allocation("cam", "carol", 2, 0.25)
    assert router.subscriber_downtracks("carol", 0.25)[0].target_layer == 2


def test_congestion_pause_is_apart_from_the_subscribers_pause() -> None:
    router, publisher, subscriber = _simulcast_router()
    seq = [0, 0, 0]
    router.set_allocation("cam", "bob", None, 0.0)
    _send_layers(router, 0.0, 0.2, seq)
    assert subscriber.rtp == []
    info = router.subscriber_downtracks("bob", 0.2)[0]
    assert info.congestion_paused and not info.paused
    assert router.stats.congestion_pauses == 1
    router.set_paused("cam", "bob", True, 0.3)
    router.set_allocation("cam", "bob", 0, 0.4)  # congestion lifts: the subscriber's pause holds
    _send_layers(router, 0.4, 0.2, seq)
    assert subscriber.rtp == []
    publisher.rtcp.clear()
    router.set_paused("cam", "bob", False, 1.0)  # unpausing asks for a keyframe
    assert any(isinstance(p, RtcpPli) for raw in publisher.rtcp for p in _rtcp(raw))
    _send_layers(router, 1.0, 0.2, seq)
    assert subscriber.rtp


def _rtcp(raw: bytes) -> list[object]:
    from gateway.media.rtcp import parse_rtcp

    return list(parse_rtcp(raw))


def test_transport_cc_slot_is_kept_in_the_subscribers_id() -> None:
    router = Router("room", rtcp_ssrc=1)
    router.add_receiver(
        "mic", "alice", "audio", CodecInfo("opus", 111, 48000), ExtensionIds(transport_cc=5), Sink()
    )
    router.set_layer_ssrc("mic", "", 42)
    subscriber = Sink()
    router.add_downtrack("mic", "bob", subscriber, 9, 111, ExtensionIds(transport_cc=TCC), now=0.0)
    router.on_rtp(
        "mic",
        RtpPacket(111, 1, 960, 42, extensions={5: b"\x12\x34"}, payload=b"x").serialize(),
        0.1,
    )
    assert read_transport_seq(subscriber.rtp[0], TCC) == 0x1234  # the transport overwrites it


# --- the relay end to end ------------------------------------------------------------------


async def test_the_relay_stamps_every_packet_and_reads_the_feedback(packet_path: str) -> None:
    relay = MediaRelay("127.0.0.1", 0, (0, -1))
    await relay.start()
    peers: list[LeanPeer] = []
    try:
        publisher, track_id = await audio_publisher(relay, "room", "alice")
        peers.append(publisher)

        bob = relay.create_endpoint("room", "bob")
        assert bob.subscribe(track_id)
        offer = bob.create_subscribe_offer()
        assert offer is not None
        media = sdp.parse(offer.sdp).media[0]
        assert any(e.id == TCC and e.uri == sdp.EXT_TRANSPORT_CC for e in media.extmaps)
        assert all(
            "transport-cc" in codec.rtcp_fb for codec in media.codecs if codec.name == "opus"
        )
        subscriber = LeanPeer()
        peers.append(subscriber)
        await subscriber.open()
        subscriber.apply_remote(offer.sdp)
        bob.accept_subscribe_answer(subscriber.subscribe_answer(offer.sdp))
        await subscriber.connect()
        congestion = bob._subscribe.congestion  # type: ignore[union-attr]
        assert congestion is not None and congestion.ext_id == TCC
        assert bob.bandwidth_estimate == congestion.estimate

        ssrc = int.from_bytes(os.urandom(4), "big") | 1
        count = 60
        for packet in publisher.protect(rtp_frames(0, count, ssrc, mid="0", audio_level=20)):
            publisher.send(packet)
            await asyncio.sleep(0.003)
        for _ in range(300):
            if len(subscriber.samples) >= count:
                break
            await asyncio.sleep(0.01)
        packets = subscriber.decrypt_samples()
        assert len(packets) == count
        sequences = sorted(read_transport_seq(p.serialize(), TCC) for p in packets)  # type: ignore[type-var]
        assert sequences == list(range(count))  # one transport-wide sequence, both paths

        # a retransmission gets a fresh transport-wide number
        router = relay.router("room")
        downtrack = next(iter(router._receivers[track_id].downtracks.values()))
        from gateway.media.rtcp import RtcpGenericNack

        nack = RtcpGenericNack(1, downtrack.ssrc, [downtrack.forwarder.last_seq])
        router.on_subscriber_rtcp("bob", nack.serialize())
        for _ in range(100):
            if len(subscriber.samples) > count:
                break
            await asyncio.sleep(0.01)
        assert subscriber.dtls.keys is not None
        fresh = SrtpContext(subscriber.dtls.keys)  # the resent packet repeats an RTP sequence
        resent = fresh.unprotect_rtp(subscriber.samples[count])
        assert read_transport_seq(resent, TCC) == count

        # the subscriber's feedback reaches the estimator, not the router
        assert subscriber.srtp is not None
        feedback = _feedback([(i, 1.0 + i * 0.01) for i in range(count + 1)])
        before = router.stats.nacks
        subscriber.send(subscriber.srtp.protect_rtcp(feedback))
        for _ in range(100):
            if congestion.feedback_packets:
                break
            await asyncio.sleep(0.01)
        assert congestion.feedback_packets == 1
        assert congestion.estimator.acknowledged_bitrate is not None
        assert router.stats.nacks == before
    finally:
        for peer in peers:
            peer.close()
        await relay.stop()
