"""The per-subscriber munger: continuity across pauses and switches (sequence numbers, timestamps,
VP8 PictureID / TL0PICIDX / KEYIDX), stale packets dropped."""

import pytest

from gateway.media import native
from gateway.media.forwarder import Forwarder
from gateway.media.payload import parse_vp8_descriptor
from gateway.media.router import CodecInfo, ExtensionIds, Router
from gateway.media.rtp import RtpPacket
from tests.unit.media.sinks import RecordingSink


def test_resume_after_pause_continues_sequence_and_advances_timestamp() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=100, timestamp=5000)
    assert forwarder.forward(0, 9, 10, 0, True, 0.0) == 100
    assert forwarder.out_ts == 5000
    forwarder.pause()
    assert forwarder.forward(0, 9, 11, 3000, False, 0.033) == -1
    forwarder.resume()
    assert forwarder.forward(0, 9, 50, 90000, False, 2.0) == -1  # waits for a keyframe
    assert forwarder.forward(0, 9, 51, 93000, True, 2.0) == 101
    assert forwarder.out_ts == 5000 + 2 * 90000


def test_packets_older_than_the_switch_are_dropped() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=0, timestamp=0)
    forwarder.forward(0, 9, 1000, 0, True, 0.0)
    assert forwarder.forward(0, 9, 999, 0, False, 0.0) == -1
    assert forwarder.forward(0, 9, 1001, 0, False, 0.0) == 1


def test_late_packet_keeps_its_place() -> None:
    forwarder = Forwarder(1, 111, 48000, False, sequence_number=0, timestamp=0)
    forwarder.forward(0, 9, 10, 0, True, 0.0)
    assert forwarder.forward(0, 9, 12, 1920, True, 0.04) == 2
    assert forwarder.forward(0, 9, 11, 960, True, 0.05) == 1
    assert forwarder.last_seq == 2


def test_long_stream_keeps_forwarding_across_sequence_wrap() -> None:
    forwarder = Forwarder(1, 111, 48000, False, sequence_number=0, timestamp=0)
    out = [
        forwarder.forward(0, 9, seq & 0xFFFF, seq * 960, True, seq * 0.02) for seq in range(70000)
    ]
    assert out[-1] == (70000 - 1) & 0xFFFF
    assert -1 not in out


def test_new_publisher_ssrc_on_same_layer_restarts_at_keyframe() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=0, timestamp=0)
    forwarder.forward(0, 9, 10, 0, True, 0.0)
    assert forwarder.forward(0, 10, 500, 7, False, 0.1) == -1
    assert forwarder.forward(0, 10, 501, 7, True, 0.1) == 1


# --- VP8 descriptor continuity ---------------------------------------------------------------


def vp8_payload(
    picture_id: int, tl0: int, key_idx: int, first: bool, keyframe: bool, short: bool = False
) -> bytes:
    """A VP8 payload: descriptor with I, L, T, K (TID 0), then a payload header byte."""
    descriptor = bytes([0x90 if first else 0x80, 0xF0])
    if short:
        descriptor += bytes([picture_id & 0x7F])
    else:
        descriptor += bytes([0x80 | picture_id >> 8, picture_id & 0xFF])
    descriptor += bytes([tl0, key_idx & 0x1F])
    header = (0x10 if keyframe else 0x11) if first else 0x00
    return descriptor + bytes([header, 0x02, 0x00, 0x9D])


class Layer:
    """One simulcast encoding with its own SSRC, sequence numbers and descriptor counters."""

    def __init__(self, ssrc: int, seq: int, picture_id: int, tl0: int, key_idx: int) -> None:
        self.ssrc, self.seq = ssrc, seq
        self.picture_id, self.tl0, self.key_idx = picture_id, tl0, key_idx

    def picture(self, number: int, keyframe: bool, short: bool = False) -> list[bytes]:
        """Two packets of one picture; the counters advance (a keyframe moves KEYIDX)."""
        if keyframe:
            self.key_idx = (self.key_idx + 1) & 0x1F
        packets = []
        for first in (True, False):
            payload = vp8_payload(self.picture_id, self.tl0, self.key_idx, first, keyframe, short)
            packets.append(
                RtpPacket(
                    payload_type=96,
                    sequence_number=self.seq,
                    timestamp=number * 3000,
                    ssrc=self.ssrc,
                    payload=payload,
                ).serialize()
            )
            self.seq = (self.seq + 1) & 0xFFFF
        self.picture_id = (self.picture_id + 1) & (0x7F if short else 0x7FFF)
        self.tl0 = (self.tl0 + 1) & 0xFF
        return packets


def assert_descriptors_continuous(sent: list[bytes], picture_mask: int) -> list[int]:
    """Every picture's first packet has PictureID and TL0PICIDX one more than the previous
    picture's, and its other packets the same; KEYIDX never goes back. The PictureIDs."""
    descriptors = [parse_vp8_descriptor(RtpPacket.parse(p).payload) for p in sent]
    picture_ids = []
    previous = None
    for descriptor in descriptors:
        if previous is not None:
            assert descriptor.picture_id is not None and previous.picture_id is not None
            assert descriptor.tl0_pic_idx is not None and previous.tl0_pic_idx is not None
            step = 1 if descriptor.start_of_partition else 0
            assert (descriptor.picture_id - previous.picture_id) & picture_mask == step
            assert (descriptor.tl0_pic_idx - previous.tl0_pic_idx) & 0xFF == step
            assert (descriptor.key_idx or 0) - (previous.key_idx or 0) & 0x1F in (0, 1)
        if descriptor.start_of_partition:
            assert descriptor.picture_id is not None
            picture_ids.append(descriptor.picture_id)
        previous = descriptor
    return picture_ids


def test_vp8_numbering_continues_across_three_layer_switches_and_wraps() -> None:
    router = Router("room", None, rtcp_ssrc=1)
    subscriber = RecordingSink()
    router.add_receiver(
        "cam",
        "alice",
        "video",
        CodecInfo("VP8", 96, 90000),
        ExtensionIds(),
        RecordingSink(),
        layers=[("q", 180), ("h", 360), ("f", 720)],
    )
    layers = {
        "q": Layer(100, 60000, 17, 3, 9),
        "h": Layer(200, 10, 0x4000, 128, 30),
        "f": Layer(300, 65530, 0x7FF8, 0xFA, 0),  # first keyframe at picture 4: both wrap
    }
    for rid, layer in layers.items():
        router.set_layer_ssrc("cam", rid, layer.ssrc)
    router.add_downtrack("cam", "bob", subscriber, 7000, 96, ExtensionIds(), now=0.0)
    heights = {15: 200, 30: 400, 45: None, 60: 200, 75: None}
    switches_seen = []
    for number in range(90):
        now = number * 0.033
        if number in heights:
            router.set_max_height("cam", "bob", heights[number], now=now)
        for index, (rid, layer) in enumerate(layers.items()):
            keyframe = (number + 3 * index) % 10 == 0
            for packet in layer.picture(number, keyframe):
                before = len(subscriber.rtp)
                router.on_rtp("cam", packet, now=now)
                if len(subscriber.rtp) > before and (not switches_seen or switches_seen[-1] != rid):
                    switches_seen.append(rid)
    assert switches_seen == ["f", "q", "h", "f", "q", "f"]
    picture_ids = assert_descriptors_continuous(subscriber.rtp, 0x7FFF)
    assert picture_ids[0] == 0x7FFC and 0x7FFF in picture_ids and 0 in picture_ids
    tl0s = [parse_vp8_descriptor(RtpPacket.parse(p).payload).tl0_pic_idx for p in subscriber.rtp]
    assert 0xFF in tl0s and 0 in tl0s
    sent = subscriber.parsed()
    assert all(
        (b.sequence_number - a.sequence_number) & 0xFFFF == 1
        for a, b in zip(sent, sent[1:], strict=False)
    )


def test_seven_bit_picture_ids_stay_seven_bit_and_wrap_at_0x7f() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=0, timestamp=0, vp8=True)
    assert forwarder.forward(0, 9, 10, 0, True, 0.0) == 0
    forwarder.rebase_vp8(None, (0x7E, 7, 2, 4, 3, 1, 4))  # the first source: unchanged
    assert not forwarder.vp8_rewrite and not forwarder.vp8_rebase
    forwarder.target_layer = 1
    assert forwarder.forward(1, 20, 500, 90, True, 0.066) == 1
    assert forwarder.vp8_rebase
    forwarder.rebase_vp8((0x7F, 7, 2, 5, 3, 1, 4), (0x33, 7, 2, 200, 3, 17, 4))
    assert forwarder.vp8_rewrite
    assert forwarder.vp8_outgoing((0x33, 7, 2, 200, 3, 17, 4)) == (0, 6, 2)
    assert forwarder.vp8_outgoing((0x34, 7, 2, 201, 3, 17, 4)) == (1, 7, 2)


def test_a_source_without_descriptor_fields_is_not_rewritten() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=0, timestamp=0, vp8=True)
    forwarder.forward(0, 9, 10, 0, True, 0.0)
    forwarder.rebase_vp8((500, 15, 2, 9, 4, 3, 5), None)
    assert not forwarder.vp8_rewrite
    forwarder.rebase_vp8((500, 15, 2, -1, -1, -1, -1), (7, 15, 2, 40, 4, -1, -1))
    assert forwarder.vp8_outgoing((7, 15, 2, 40, 4, -1, -1))[:2] == (501, 40)


def test_only_vp8_forwarders_rebase() -> None:
    forwarder = Forwarder(1, 111, 48000, False, sequence_number=0, timestamp=0)
    forwarder.forward(0, 9, 10, 0, True, 0.0)
    assert not forwarder.vp8_rebase


def test_resume_after_pause_continues_the_vp8_numbering() -> None:
    router = Router("room", None, rtcp_ssrc=1)
    subscriber = RecordingSink()
    router.add_receiver(
        "cam", "alice", "video", CodecInfo("VP8", 96, 90000), ExtensionIds(), RecordingSink()
    )
    router.set_layer_ssrc("cam", "", 300)
    router.add_downtrack("cam", "bob", subscriber, 7000, 96, ExtensionIds(), now=0.0)
    layer = Layer(300, 10, 100, 1, 0)
    for number in range(20):
        if number == 3:
            router.set_paused("cam", "bob", True, now=0.1)
        if number == 8:
            router.set_paused("cam", "bob", False, now=0.3)
        for packet in layer.picture(number, keyframe=number in (0, 12)):
            router.on_rtp("cam", packet, now=number * 0.033)
    picture_ids = assert_descriptors_continuous(subscriber.rtp, 0x7FFF)
    assert picture_ids == list(range(100, 111))  # 100-102, then 103-110 for pictures 12-19


class _FakeRoute:
    teed = False  # never forwards: every packet reaches the router
    transit = jitter = 0.0

    def __init__(self, *args: object) -> None:
        self.args = args
        self.tee = bool(args[11]) if len(args) > 11 else False

    def take(self) -> tuple[int | float, ...]:
        return (0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0, 0, 0)


class _FakeNative:
    MAX_OUTPUTS = 64
    Route = _FakeRoute


class _FakeIngress:
    def __init__(self) -> None:
        self.routes: list[_FakeRoute] = []

    def install(self, route: _FakeRoute) -> bool:
        self.routes.append(route)
        return True

    def remove(self, route: _FakeRoute) -> None:
        self.routes.remove(route)


class _FakeEgress:
    ready = True


def test_a_native_route_carries_the_vp8_numbering_offsets_of_its_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(native, "enabled", True)
    monkeypatch.setattr(native, "MODULE", _FakeNative)
    publisher, subscriber = RecordingSink(), RecordingSink()
    ingress = _FakeIngress()
    publisher.ingress = ingress  # type: ignore[attr-defined]
    subscriber.egress = _FakeEgress()  # type: ignore[attr-defined]
    router = Router("room", None, rtcp_ssrc=1)
    router.add_receiver(
        "cam", "alice", "video", CodecInfo("VP8", 96, 90000), ExtensionIds(), publisher
    )
    router.set_layer_ssrc("cam", "", 300)
    router.add_downtrack("cam", "bob", subscriber, 7000, 96, ExtensionIds(), now=0.0)
    layer = Layer(300, 10, 100, 1, 0)
    for number in range(3):
        for packet in layer.picture(number, keyframe=number == 0):
            router.on_rtp("cam", packet, now=number * 0.033)
    assert len(ingress.routes) == 1  # steady and unchanged numbering: the route is installed

    router.set_paused("cam", "bob", True, now=0.1)
    assert ingress.routes == []
    for number in range(3, 10):
        layer.picture(number, keyframe=False)  # not forwarded: paused
    router.set_paused("cam", "bob", False, now=0.4)
    for number in range(10, 13):
        for packet in layer.picture(number, keyframe=number == 10):
            router.on_rtp("cam", packet, now=number * 0.033)
    # the picture ids are now rewritten: the route's output carries the offsets (the native path
    # rewrites as Forwarder.vp8_outgoing does)
    assert len(ingress.routes) == 1
    output = ingress.routes[0].args[10][0]  # type: ignore[index]
    forwarder = router._receivers["cam"].downtracks["bob"].forwarder
    assert forwarder.vp8_rewrite
    assert output[8:11] == (
        forwarder.vp8_picture_offset,
        forwarder.vp8_tl0_offset,
        forwarder.vp8_key_offset,
    )
    assert assert_descriptors_continuous(subscriber.rtp, 0x7FFF) == [100, 101, 102, 103, 104, 105]


def test_numbering_continues_after_packets_the_native_path_sent() -> None:
    """The native path writes what it sends into the downtrack's history, where a switch reads
    the last values sent: a route that forwarded pictures behind Python's back is accounted."""
    router = Router("room", None, rtcp_ssrc=1)
    subscriber = RecordingSink()
    router.add_receiver(
        "cam", "alice", "video", CodecInfo("VP8", 96, 90000), ExtensionIds(), RecordingSink()
    )
    router.set_layer_ssrc("cam", "", 300)
    router.add_downtrack("cam", "bob", subscriber, 7000, 96, ExtensionIds(), now=0.0)
    layer = Layer(300, 10, 100, 1, 0)
    for packet in layer.picture(0, keyframe=True):
        router.on_rtp("cam", packet, now=0.0)
    downtrack = router._receivers["cam"].downtracks["bob"]
    forwarder = downtrack.forwarder
    for number in range(1, 4):  # what a route would do: history and forwarder state only
        for packet in layer.picture(number, keyframe=False):
            parsed = RtpPacket.parse(packet)
            out_seq = (parsed.sequence_number + forwarder.seq_offset) & 0xFFFF
            parsed.sequence_number, parsed.ssrc = out_seq, 7000
            downtrack.history.put(out_seq, parsed.serialize())
            forwarder.last_seq = out_seq
    router.set_paused("cam", "bob", True, now=0.2)
    router.set_paused("cam", "bob", False, now=0.3)
    for packet in layer.picture(50, keyframe=True):
        router.on_rtp("cam", packet, now=1.0)
    sent = [parse_vp8_descriptor(RtpPacket.parse(p).payload) for p in subscriber.rtp]
    assert [d.picture_id for d in sent] == [100, 100, 104, 104]
    assert [d.tl0_pic_idx for d in sent] == [1, 1, 5, 5]
