"""RTX towards subscribers (RFC 4588): packet format, NACK answers, resend pacing, padding probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.media import sdp
from gateway.media.endpoint import PublishRequest, WebRtcEndpoint
from gateway.media.nack import (
    MAX_PADDING,
    MAX_RESEND_INTERVAL,
    SendHistory,
    padding_packet,
    rtx_packet,
)
from gateway.media.relay import MediaRelay
from gateway.media.router import (
    KEYFRAME_REQUESTS_PER_SECOND,
    MAX_PADDING_PACKETS,
    CodecInfo,
    ExtensionIds,
    Router,
)
from gateway.media.rtcp import RtcpFir, RtcpGenericNack, RtcpPli, parse_rtcp
from gateway.media.rtp import RtpPacket
from tests.unit.media.sinks import RecordingSink

VP8 = CodecInfo("VP8", 96, 90000, rtx_payload_type=97)
OPUS = CodecInfo("opus", 111, 48000)
VP8_KEY = bytes.fromhex("90e0923405a010") + b"\x02\x00\x9d\x01\x2a"
VP8_DELTA = bytes.fromhex("90e0923505a011") + b"\x00\x00"
PUB_EXT = ExtensionIds(abs_send_time=3)
SUB_EXT = ExtensionIds(abs_send_time=3, transport_cc=5)
MEDIA_SSRC = 7000
RTX_SSRC = 7001
RTX_PT = 120


def rtp(seq: int, ts: int, ssrc: int, payload: bytes, pt: int = 96) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload
    ).serialize()


def video_room(rtx: bool = True) -> tuple[Router, RecordingSink, RecordingSink, RecordingSink]:
    """alice publishes a VP8 camera; bob (with RTX if `rtx`) and carol subscribe."""
    router = Router("room", None, rtcp_ssrc=1)
    publisher, bob, carol = RecordingSink(), RecordingSink(), RecordingSink()
    router.add_receiver("cam", "alice", "video", VP8, PUB_EXT, publisher)
    router.set_layer_ssrc("cam", "", 300)
    rtx_args = {"rtx_ssrc": RTX_SSRC, "rtx_payload_type": RTX_PT} if rtx else {}
    router.add_downtrack("cam", "bob", bob, MEDIA_SSRC, 96, SUB_EXT, now=0.0, **rtx_args)
    router.add_downtrack("cam", "carol", carol, 8000, 96, SUB_EXT, now=0.0)
    router.on_rtp("cam", rtp(10, 0, 300, VP8_KEY), now=0.0)
    for i in range(1, 10):
        router.on_rtp("cam", rtp(10 + i, 3000 * i, 300, VP8_DELTA + bytes([i])), now=0.03 * i)
    return router, publisher, bob, carol


def nack(seqs: list[int], media_ssrc: int = MEDIA_SSRC) -> bytes:
    return RtcpGenericNack(0xB0B, media_ssrc, seqs).serialize()


# --- packet format ---------------------------------------------------------------------------


def test_rtx_packet_is_byte_exact_rfc4588_section_4() -> None:
    # V=2 X=1 CC=1, M=1 PT=96, seq 0x1234, ts 0x01020304, SSRC 0x0A0B0C0D, one CSRC, a one-byte
    # extension (id 3, 3 bytes), payload "abc"
    original = bytes.fromhex("91 e0 1234 01020304 0a0b0c0d 11223344 bede0001 32aabbcc 616263")
    packet = rtx_packet(original, 0xCAFEBABE, 97, 0x0102)
    # the RTX header: PT 97 (M kept), seq 0x0102, same timestamp, RTX SSRC, same CSRC and
    # extension; then the OSN 0x1234 and the original payload
    assert packet == bytes.fromhex(
        "91 e1 0102 01020304 cafebabe 11223344 bede0001 32aabbcc 1234 616263"
    )
    parsed = RtpPacket.parse(packet)
    assert (parsed.payload_type, parsed.marker, parsed.sequence_number) == (97, True, 0x0102)
    assert parsed.csrc == [0x11223344] and parsed.extensions == {3: b"\xaa\xbb\xcc"}
    assert parsed.payload == b"\x12\x34abc"


def test_padding_packet_is_well_formed() -> None:
    packet = padding_packet(0xCAFEBABE, 97, 0xFFFF, 1234)
    assert len(packet) == 12 + MAX_PADDING
    assert packet[:12] == bytes.fromhex("a061ffff000004d2cafebabe")
    assert packet[-1] == MAX_PADDING and not any(packet[12:-1])
    parsed = RtpPacket.parse(packet)
    assert parsed.payload == b"" and parsed.padding_size == MAX_PADDING
    with_slot = padding_packet(1, 97, 2, 3, padding=10, transport_cc_id=5)
    parsed = RtpPacket.parse(with_slot)
    assert parsed.extensions == {5: b"\x00\x00"} and parsed.payload == b""
    assert parsed.padding_size == 10 and len(with_slot) == 12 + 8 + 10


def test_history_resend_is_paced_per_packet() -> None:
    history = SendHistory(16)
    history.put(5, b"five")
    assert history.resend(5, 1.0) == b"five"
    assert history.resend(5, 1.05) is None
    assert history.resend(5, 1.11) == b"five"
    assert history.resend(6, 1.2) is None
    history.put(21, b"twenty-one")  # same slot, newer packet
    assert history.resend(5, 5.0) is None
    assert history.resend(21, 5.0) == b"twenty-one"


# --- NACK answers ----------------------------------------------------------------------------


def test_nack_answered_with_rtx_packets_of_their_own_sequence() -> None:
    router, _, bob, _ = video_room()
    sent = bob.parsed()
    wanted = [sent[3], sent[7]]
    bob.rtp.clear()
    router.on_subscriber_rtcp("bob", nack([p.sequence_number for p in wanted]), now=0.5)
    again = bob.parsed()
    assert [p.ssrc for p in again] == [RTX_SSRC, RTX_SSRC]
    assert [p.payload_type for p in again] == [RTX_PT, RTX_PT]
    assert (again[1].sequence_number - again[0].sequence_number) & 0xFFFF == 1
    for original, rtx in zip(wanted, again, strict=True):
        assert rtx.payload[:2] == original.sequence_number.to_bytes(2, "big")
        assert rtx.payload[2:] == original.payload
        assert (rtx.timestamp, rtx.marker) == (original.timestamp, original.marker)
    assert router.stats.retransmissions == 2
    # what repairs took is told to the congestion controller, once
    assert router.take_resent_octets("bob") == sum(len(p) for p in bob.rtp)
    assert router.take_resent_octets("bob") == 0
    # the history keeps the plain packet: a later NACK gets an RTX packet of the media packet
    router.on_subscriber_rtcp("bob", nack([wanted[0].sequence_number]), now=1.0)
    third = RtpPacket.parse(bob.rtp[-1])
    assert third.payload[:2] == wanted[0].sequence_number.to_bytes(2, "big")
    assert third.sequence_number == (again[1].sequence_number + 1) & 0xFFFF


def test_without_rtx_the_packet_is_resent_as_it_was() -> None:
    router, _, _, carol = video_room()
    original = carol.rtp[4]
    carol.rtp.clear()
    router.on_subscriber_rtcp("carol", nack([RtpPacket.parse(original).sequence_number], 8000))
    assert carol.rtp == [original]


def test_repeated_nacks_within_100_ms_resend_once() -> None:
    router, _, bob, _ = video_room()
    seq = bob.parsed()[5].sequence_number
    bob.rtp.clear()
    for i in range(10):
        router.on_subscriber_rtcp("bob", nack([seq, seq]), now=1.0 + 0.005 * i)
    assert len(bob.rtp) == 1
    router.on_subscriber_rtcp("bob", nack([seq]), now=1.2)
    assert len(bob.rtp) == 2
    assert router.stats.nacks == 11 and router.stats.retransmissions == 2


def test_resends_wait_for_the_subscribers_round_trip() -> None:
    """On a saturated link the round trip grows past 100 ms: NACKs for a packet whose resend is
    still queued are not answered again (bounded to 100 ms .. 1 s, and per subscriber)."""
    router, _, bob, carol = video_room()
    router.set_resend_interval("bob", 0.5)
    seq = bob.parsed()[5].sequence_number
    bob.rtp.clear()
    for at in (1.0, 1.2, 1.4):
        router.on_subscriber_rtcp("bob", nack([seq]), now=at)
    assert len(bob.rtp) == 1  # the resend of 1.0 was still on its way
    router.on_subscriber_rtcp("bob", nack([seq]), now=1.55)
    assert len(bob.rtp) == 2
    router.set_resend_interval("bob", 30.0)  # a silly figure is bounded by MAX_RESEND_INTERVAL
    router.on_subscriber_rtcp("bob", nack([seq]), now=1.56 + MAX_RESEND_INTERVAL)
    assert len(bob.rtp) == 3
    # carol's round trip is her own: 100 ms
    carol_seq = RtpPacket.parse(carol.rtp[5]).sequence_number
    carol.rtp.clear()
    for at in (1.0, 1.15):
        router.on_subscriber_rtcp("carol", nack([carol_seq], 8000), now=at)
    assert len(carol.rtp) == 2


def test_nack_for_a_packet_not_in_history_is_ignored() -> None:
    router, _, bob, _ = video_room()
    newest = bob.parsed()[-1].sequence_number
    bob.rtp.clear()
    router.on_subscriber_rtcp("bob", nack([(newest + 1) & 0xFFFF, (newest - 2000) & 0xFFFF]))
    assert bob.rtp == [] and router.stats.retransmissions == 0


def test_nack_for_another_subscribers_ssrc_sends_nothing() -> None:
    router, _, bob, carol = video_room()
    carol_seq = carol.parsed()[2].sequence_number
    bob_seq = bob.parsed()[2].sequence_number
    bob.rtp.clear()
    carol.rtp.clear()
    # bob names carol's SSRC, and his own RTX SSRC: neither is a downtrack of his
    router.on_subscriber_rtcp("bob", nack([carol_seq], 8000), now=1.0)
    router.on_subscriber_rtcp("bob", nack([bob_seq], RTX_SSRC), now=1.0)
    router.on_subscriber_rtcp("mallory", nack([bob_seq]), now=1.0)
    assert bob.rtp == [] and carol.rtp == []
    assert router.stats.retransmissions == 0


# --- padding ---------------------------------------------------------------------------------


def test_padding_goes_out_on_the_rtx_stream_bounded() -> None:
    router, _, bob, _ = video_room()
    last = bob.parsed()[-1]
    bob.rtp.clear()
    sent = router.send_padding("bob", 2000)
    packets = bob.parsed()
    assert sent == sum(len(p) for p in bob.rtp) and sent >= 2000
    assert len(packets) == 8
    for packet in packets:
        assert (packet.ssrc, packet.payload_type) == (RTX_SSRC, RTX_PT)
        assert packet.payload == b"" and packet.padding_size == MAX_PADDING
        assert packet.timestamp == last.timestamp
        assert packet.extensions == {5: b"\x00\x00"}
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    bob.rtp.clear()
    router.send_padding("bob", 10**9)
    assert len(bob.rtp) == MAX_PADDING_PACKETS
    # RTX retransmissions continue the same RTX sequence space
    router.on_subscriber_rtcp("bob", nack([last.sequence_number]), now=2.0)
    assert (
        RtpPacket.parse(bob.rtp[-1]).sequence_number
        == (RtpPacket.parse(bob.rtp[-2]).sequence_number + 1) & 0xFFFF
    )
    # the congestion controller's repair budget counts the retransmission, not the padding
    assert router.take_resent_octets("bob") == len(bob.rtp[-1])


def test_padding_needs_an_rtx_video_downtrack() -> None:
    router, _, _, carol = video_room()
    carol.rtp.clear()
    assert router.send_padding("carol", 1000) == 0
    assert router.send_padding("nobody", 1000) == 0
    assert router.send_padding("bob", 0) == 0
    assert carol.rtp == []
    audio = Router("room", None)
    sink = RecordingSink()
    audio.add_receiver("mic", "alice", "audio", OPUS, PUB_EXT, RecordingSink())
    audio.add_downtrack("mic", "bob", sink, 1, 111, SUB_EXT, rtx_ssrc=2, rtx_payload_type=3)
    assert audio.send_padding("bob", 1000) == 0 and sink.rtp == []


# --- SDP: the subscribe offer and the WHEP answer ----------------------------------------------

CHROMIUM_OFFER = (Path(__file__).parent / "chromium_offer.sdp").read_text()
TRACKS = [PublishRequest("0", "t-mic", "microphone"), PublishRequest("1", "t-cam", "camera")]
SINGLE_LAYER_OFFER = "\n".join(
    line for line in CHROMIUM_OFFER.splitlines() if not line.startswith(("a=rid:", "a=simulcast:"))
)


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    media_relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0))
    await media_relay.start()
    yield media_relay
    await media_relay.stop()


def _answer_to(offer_sdp: str, keep_rtx: bool) -> str:
    """A browser's answer to a subscribe offer: recvonly, active, its own ICE credentials; with
    or without the RTX payload type."""
    parsed = sdp.parse(offer_sdp)
    parsed.ice_lite = False
    for media in parsed.media:
        media.setup = "active"
        media.direction = "recvonly" if media.direction == "sendonly" else media.direction
        media.ice_ufrag, media.ice_pwd = "bobU", "bobpassword0123456789012"
        media.ssrcs, media.ssrc_groups, media.msid = [], [], None
        if not keep_rtx:
            media.codecs = [c for c in media.codecs if c.name != "rtx"]
            media.fmt = [str(c.payload_type) for c in media.codecs]
    return parsed.serialize()


def _attached(endpoint: WebRtcEndpoint, track_id: str) -> tuple[int, int, int, int]:
    slot = next(s for s in endpoint._slots if s.track_id == track_id)
    return slot.ssrc, slot.rtx_ssrc, slot.payload_type, slot.rtx_payload_type


async def test_subscribe_offer_carries_rtx_for_video_only(relay: MediaRelay) -> None:
    relay.create_endpoint("room-rtx", "alice").accept_publish_offer(SINGLE_LAYER_OFFER, TRACKS)
    bob = relay.create_endpoint("room-rtx", "bob")
    assert bob.subscribe("t-mic") and bob.subscribe("t-cam")
    offer = bob.create_subscribe_offer()
    assert offer is not None
    audio, video = sdp.parse(offer.sdp).media
    assert [c.name for c in audio.codecs] == ["opus"] and audio.ssrc_groups == []
    vp8, rtx = video.codecs
    assert (vp8.name, rtx.name, rtx.clock_rate) == ("VP8", "rtx", 90000)
    assert rtx.fmtp == f"apt={vp8.payload_type}" and rtx.payload_type != vp8.payload_type
    assert video.fmt == [str(vp8.payload_type), str(rtx.payload_type)]
    assert video.rtx_payload_type(vp8.payload_type) == rtx.payload_type
    [group] = video.ssrc_groups
    media_ssrc, rtx_ssrc = group.ssrcs
    assert group.semantics == "FID" and media_ssrc != rtx_ssrc
    assert audio.ssrc_values()[0] not in (media_ssrc, rtx_ssrc)
    assert sorted(video.ssrcs) == sorted(
        [
            (media_ssrc, "cname", "alice"),
            (media_ssrc, "msid", "alice t-cam"),
            (rtx_ssrc, "cname", "alice"),
            (rtx_ssrc, "msid", "alice t-cam"),
        ]
    )
    text = offer.sdp
    assert f"a=rtpmap:{rtx.payload_type} rtx/90000\r\n" in text
    assert f"a=fmtp:{rtx.payload_type} apt={vp8.payload_type}\r\n" in text
    assert f"a=ssrc-group:FID {media_ssrc} {rtx_ssrc}\r\n" in text

    bob.accept_subscribe_answer(_answer_to(offer.sdp, keep_rtx=True))
    assert _attached(bob, "t-cam") == (media_ssrc, rtx_ssrc, vp8.payload_type, rtx.payload_type)


async def test_an_answer_without_rtx_leaves_retransmission_plain(relay: MediaRelay) -> None:
    relay.create_endpoint("room-rtx", "alice").accept_publish_offer(SINGLE_LAYER_OFFER, TRACKS)
    bob = relay.create_endpoint("room-rtx", "bob")
    assert bob.subscribe("t-cam")
    offer = bob.create_subscribe_offer()
    assert offer is not None
    bob.accept_subscribe_answer(_answer_to(offer.sdp, keep_rtx=False))
    assert _attached(bob, "t-cam")[3] == 0


async def test_whep_answer_has_rtx_when_the_offer_has_it(relay: MediaRelay) -> None:
    relay.create_endpoint("room-rtx", "alice").accept_publish_offer(SINGLE_LAYER_OFFER, TRACKS)
    recvonly = CHROMIUM_OFFER.replace("a=sendonly", "a=recvonly")
    viewer = relay.create_endpoint("room-rtx", "viewer")
    _, video = sdp.parse(viewer.accept_view_offer(recvonly, ["t-mic", "t-cam"])).media
    assert [(c.payload_type, c.name, c.fmtp) for c in video.codecs][1] == (97, "rtx", "apt=96")
    assert video.fmt == ["96", "97"]
    [group] = video.ssrc_groups
    assert group.semantics == "FID" and len(set(group.ssrcs)) == 2
    assert {ssrc for ssrc, _, _ in video.ssrcs} == set(group.ssrcs)
    assert _attached(viewer, "t-cam")[1:] == (group.ssrcs[1], 96, 97)

    without_rtx = "\n".join(
        line
        for line in recvonly.splitlines()
        if not line.startswith(("a=rtpmap:97 ", "a=fmtp:97 "))
    ).replace(" 96 97 102", " 96 102")
    other = relay.create_endpoint("room-rtx", "viewer2")
    _, video = sdp.parse(other.accept_view_offer(without_rtx, ["t-mic", "t-cam"])).media
    assert [c.name for c in video.codecs] == ["VP8"] and video.ssrc_groups == []


# --- keyframe requests -----------------------------------------------------------------------

VP8_FIR = CodecInfo("VP8", 96, 90000, rtx_payload_type=97, fir=True)


def simulcast_room(codec: CodecInfo = VP8_FIR) -> tuple[Router, RecordingSink, RecordingSink]:
    """alice publishes three layers (SSRCs 100, 200, 300); bob takes the highest."""
    router = Router("room", None, rtcp_ssrc=1)
    publisher, bob = RecordingSink(), RecordingSink()
    router.add_receiver(
        "cam",
        "alice",
        "video",
        codec,
        PUB_EXT,
        publisher,
        layers=[("q", 180), ("h", 360), ("f", 720)],
    )
    for rid, ssrc in (("q", 100), ("h", 200), ("f", 300)):
        router.set_layer_ssrc("cam", rid, ssrc)
    router.add_downtrack("cam", "bob", bob, MEDIA_SSRC, 96, SUB_EXT, now=0.0)
    router.on_rtp("cam", rtp(1, 0, 300, VP8_KEY), now=0.0)
    publisher.rtcp.clear()
    return router, publisher, bob


def requests(publisher: RecordingSink) -> list[tuple[str, int, int]]:
    """("pli", media SSRC, 0) / ("fir", media SSRC, sequence number) the publisher was sent."""
    found = []
    for data in publisher.rtcp:
        for packet in parse_rtcp(data):
            if isinstance(packet, RtcpPli):
                found.append(("pli", packet.media_ssrc, 0))
            elif isinstance(packet, RtcpFir):
                found.extend(("fir", ssrc, seq) for ssrc, seq in packet.entries)
    return found


def test_no_new_pli_while_the_keyframe_is_expected() -> None:
    router, publisher, _ = simulcast_room()
    before = router.stats.keyframe_requests
    pli = RtcpPli(0xB0B, MEDIA_SSRC).serialize()
    router.on_subscriber_rtcp("bob", pli, now=1.0)
    router.on_subscriber_rtcp("bob", pli, now=1.2)
    assert requests(publisher) == [("pli", 300, 0)]
    router.on_rtp("cam", rtp(2, 3000, 300, VP8_DELTA), now=1.3)
    router.on_subscriber_rtcp("bob", pli, now=1.4)
    assert len(requests(publisher)) == 1  # a delta frame does not answer it
    router.on_rtp("cam", rtp(3, 6000, 300, VP8_KEY), now=1.5)
    router.on_subscriber_rtcp("bob", pli, now=1.55)  # the keyframe came: a new request may go
    router.on_subscriber_rtcp("bob", pli, now=2.5)
    router.on_subscriber_rtcp("bob", pli, now=2.56)  # unanswered for a second: ask again
    assert requests(publisher) == [("pli", 300, 0)] * 3
    assert router.stats.keyframe_requests == before + 3


def test_fir_replaces_pli_after_two_ignored_plis_when_negotiated() -> None:
    for codec, expected in (
        (VP8_FIR, ["pli", "pli", "fir", "fir"]),
        (VP8, ["pli", "pli", "pli", "pli"]),
    ):
        router, publisher, _ = simulcast_room(codec)
        pli = RtcpPli(0xB0B, MEDIA_SSRC).serialize()
        for i in range(4):
            router.on_subscriber_rtcp("bob", pli, now=1.0 + 1.1 * i)
        sent = requests(publisher)
        assert [kind for kind, _, _ in sent] == expected
        if codec.fir:
            assert [seq for _, _, seq in sent[2:]] == [1, 2]  # RFC 5104: a new number each time
            assert {ssrc for _, ssrc, _ in sent} == {300}
        router.on_rtp("cam", rtp(9, 9000, 300, VP8_KEY), now=6.0)  # answered: PLI again
        router.on_subscriber_rtcp("bob", pli, now=6.1)
        assert requests(publisher)[-1][0] == "pli"


def test_a_pli_flood_gives_the_publisher_at_most_the_paced_number() -> None:
    """1000 PLIs from a subscriber in one second, each answered at once by a keyframe: the
    publisher gets at most KEYFRAME_REQUESTS_PER_SECOND requests."""
    router, publisher, _ = simulcast_room()
    before = router.stats.keyframe_requests
    pli = RtcpPli(0xB0B, MEDIA_SSRC).serialize()
    for i in range(1000):
        now = 1.0 + i / 1000
        router.on_subscriber_rtcp("bob", pli, now=now)
        router.on_rtp("cam", rtp(10 + i, 90 * i, 300, VP8_KEY), now=now)
    assert 1 <= len(requests(publisher)) <= KEYFRAME_REQUESTS_PER_SECOND
    assert router.stats.keyframe_requests - before == len(requests(publisher))


def test_pause_and_resume_toggled_a_thousand_times_a_second_stay_within_the_budget() -> None:
    """Paused (spec 8.7 `subscribed: false`), nothing is forwarded; resumed, the publisher is asked
    for a keyframe at once and the video restarts on it. Two subscribers toggling 1000 times in
    one second, each keyframe arriving at once, give the publisher at most
    KEYFRAME_REQUESTS_PER_SECOND requests."""
    router, publisher, bob = simulcast_room()
    router.set_paused("cam", "bob", True, now=0.5)
    router.on_rtp("cam", rtp(2, 90, 300, VP8_KEY), now=0.5)
    assert len(bob.rtp) == 1  # the first keyframe, before the pause
    router.set_paused("cam", "bob", False, now=0.6)
    assert requests(publisher) == [("pli", 300, 0)]
    router.on_rtp("cam", rtp(3, 180, 300, VP8_DELTA), now=0.61)
    assert len(bob.rtp) == 1  # a resumed video starts on a keyframe
    router.on_rtp("cam", rtp(4, 270, 300, VP8_KEY), now=0.62)
    assert len(bob.rtp) == 2

    carol = RecordingSink()
    router.add_downtrack("cam", "carol", carol, MEDIA_SSRC + 2, 96, SUB_EXT, now=0.7)
    router.on_rtp("cam", rtp(5, 360, 300, VP8_KEY), now=0.7)
    publisher.rtcp.clear()
    before = router.stats.keyframe_requests
    for i in range(1000):
        now = 1.0 + i / 1000
        for subscriber in ("bob", "carol"):
            router.set_paused("cam", subscriber, i % 2 == 0, now=now)
        router.on_rtp("cam", rtp(10 + i, 450 + 90 * i, 300, VP8_KEY), now=now)
    assert 1 <= len(requests(publisher)) <= KEYFRAME_REQUESTS_PER_SECOND
    assert router.stats.keyframe_requests - before == len(requests(publisher))


def test_requests_across_layers_and_tracks_share_the_publishers_budget() -> None:
    router, publisher, _ = simulcast_room()
    screen = RecordingSink()
    router.add_receiver("screen", "alice", "video", VP8, PUB_EXT, publisher)
    router.set_layer_ssrc("screen", "", 400)
    router.add_downtrack("screen", "bob", screen, 9000, 96, SUB_EXT, now=0.0)
    publisher.rtcp.clear()
    heights = [100, 400, None] * 10  # q, h, f in turn
    for i, height in enumerate(heights):
        router.set_max_height("cam", "bob", height, now=1.0 + i * 0.01)
        router.on_subscriber_rtcp("bob", RtcpPli(0xB0B, 9000).serialize(), now=1.0 + i * 0.01)
        router.on_rtp("screen", rtp(i + 1, 90 * i, 400, VP8_KEY), now=1.0 + i * 0.01)
    sent = requests(publisher)
    assert len(sent) == KEYFRAME_REQUESTS_PER_SECOND
    assert {ssrc for _, ssrc, _ in sent} >= {100, 200, 400}
    router.tick(now=2.5)  # deferred requests go out in the next second
    assert len(requests(publisher)) > KEYFRAME_REQUESTS_PER_SECOND


async def test_ccm_fir_in_the_publish_offer_enables_fir(relay: MediaRelay) -> None:
    alice = relay.create_endpoint("room-rtx", "alice")
    alice.accept_publish_offer(SINGLE_LAYER_OFFER, TRACKS)
    assert alice._router.receiver_info("t-cam").codec.fir  # type: ignore[union-attr]
    assert not alice._router.receiver_info("t-mic").codec.fir  # type: ignore[union-attr]
    bob = relay.create_endpoint("room-rtx", "bob")
    bob.accept_publish_offer(
        SINGLE_LAYER_OFFER.replace("a=rtcp-fb:96 ccm fir\n", ""),
        [PublishRequest("0", "b-mic", "microphone"), PublishRequest("1", "b-cam", "camera")],
    )
    assert not bob._router.receiver_info("b-cam").codec.fir  # type: ignore[union-attr]
