"""The room router: forwarding, simulcast switches, RTCP feedback and loss accounting, seen from fake sinks."""

from __future__ import annotations

from gateway.media.nack import NACK_RETRIES
from gateway.media.router import CodecInfo, ExtensionIds, Router
from gateway.media.rtcp import (
    RtcpFir,
    RtcpGenericNack,
    RtcpPli,
    RtcpReceiverReport,
    RtcpReceptionReport,
    RtcpRemb,
    RtcpSenderReport,
    parse_rtcp,
)
from gateway.media.rtp import RtpPacket
from tests.unit.media.sinks import RecordingSink

OPUS = CodecInfo("opus", 111, 48000)
VP8 = CodecInfo("VP8", 96, 90000, rtx_payload_type=97)
H264 = CodecInfo("H264", 102, 90000)

VP8_KEY = bytes.fromhex("90e0923405a010") + b"\x02\x00\x9d\x01\x2a"
VP8_DELTA = bytes.fromhex("90e0923505a011") + b"\x00\x00"
H264_STAP_A_SPS = bytes([0x78, 0x00, 0x03, 0x67, 0x42, 0x00, 0x00, 0x02, 0x68, 0xCE])
H264_FU_A_IDR_MIDDLE = bytes([0x7C, 0x05, 0x00])
H264_NON_IDR = bytes([0x41, 0x9A, 0x00])

PUB_EXT = ExtensionIds(audio_level=1, mid=4, rid=10, repaired_rid=11, abs_send_time=3)
SUB_EXT = ExtensionIds(audio_level=5, abs_send_time=3)


def rtp(
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes = b"\xfc" + b"a" * 40,
    pt: int = 111,
    extensions: dict[int, bytes] | None = None,
) -> bytes:
    return RtpPacket(
        payload_type=pt,
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        extensions=extensions or {},
        payload=payload,
    ).serialize()


def audio_room() -> tuple[Router, RecordingSink, RecordingSink]:
    router = Router("room", None)
    publisher, subscriber = RecordingSink(), RecordingSink()
    router.add_receiver("mic", "alice", "audio", OPUS, PUB_EXT, publisher)
    router.add_downtrack("mic", "bob", subscriber, 5000, 109, SUB_EXT, now=0.0)
    return router, publisher, subscriber


def simulcast_room(codec: CodecInfo = VP8) -> tuple[Router, RecordingSink, RecordingSink]:
    router = Router("room", None, rtcp_ssrc=1)
    publisher, subscriber = RecordingSink(), RecordingSink()
    router.add_receiver(
        "cam",
        "alice",
        "video",
        codec,
        PUB_EXT,
        publisher,
        layers=[("f", 720), ("q", 180)],
    )
    router.set_layer_ssrc("cam", "q", 100)
    router.set_layer_ssrc("cam", "f", 300)
    router.add_downtrack("cam", "bob", subscriber, 7000, codec.payload_type, SUB_EXT, now=0.0)
    return router, publisher, subscriber


def assert_continuous(packets: list[RtpPacket]) -> None:
    for before, after in zip(packets, packets[1:], strict=False):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        assert 0 < (after.timestamp - before.timestamp) & 0xFFFFFFFF < 0x80000000


# --- forwarding ------------------------------------------------------------------------------


def test_audio_forwarded_with_subscriber_ssrc_and_payload_type() -> None:
    router, _, subscriber = audio_room()
    for i in range(5):
        router.on_rtp("mic", rtp(65533 + i, 960 * i, 42), now=0.02 * i)
    packets = subscriber.parsed()
    assert len(packets) == 5
    assert {p.ssrc for p in packets} == {5000}
    assert {p.payload_type for p in packets} == {109}
    assert [p.payload for p in packets] == [b"\xfc" + b"a" * 40] * 5
    assert_continuous(packets)
    assert router.stats.packets_forwarded == 5
    assert router.stats.bytes_forwarded == sum(len(p) for p in subscriber.rtp)


def test_audio_timestamps_keep_their_spacing() -> None:
    router, _, subscriber = audio_room()
    for i in range(3):
        router.on_rtp("mic", rtp(10 + i, 1000 + 960 * i, 42), now=0.02 * i)
    ts = [p.timestamp for p in subscriber.parsed()]
    assert [(b - a) & 0xFFFFFFFF for a, b in zip(ts, ts[1:], strict=False)] == [960, 960]


def test_extensions_renumbered_to_subscriber_ids_and_others_stripped() -> None:
    router, _, subscriber = audio_room()
    extensions = {1: b"\x9e", 4: b"0", 3: b"\x01\x02\x03"}  # audio level, mid, abs-send-time
    router.on_rtp("mic", rtp(1, 0, 42, extensions=extensions), now=0.0)
    [packet] = subscriber.parsed()
    assert packet.extensions == {5: b"\x9e", 3: b"\x01\x02\x03"}


def test_every_subscriber_gets_its_own_ssrc() -> None:
    router, _, first = audio_room()
    second = RecordingSink()
    router.add_downtrack("mic", "carol", second, 6000, 111, ExtensionIds(), now=0.0)
    router.on_rtp("mic", rtp(1, 0, 42, extensions={1: b"\x9e"}), now=0.0)
    assert first.parsed()[0].ssrc == 5000
    assert second.parsed()[0].ssrc == 6000
    assert second.parsed()[0].extensions == {}


def test_muted_track_not_forwarded() -> None:
    router, _, subscriber = audio_room()
    router.on_rtp("mic", rtp(1, 0, 42), now=0.0)
    router.set_muted("mic", True)
    router.on_rtp("mic", rtp(2, 960, 42), now=0.02)
    router.on_rtp("mic", rtp(3, 1920, 42), now=0.04)
    assert len(subscriber.rtp) == 1
    router.set_muted("mic", False, now=0.05)
    router.on_rtp("mic", rtp(4, 2880, 42), now=0.06)
    packets = subscriber.parsed()
    assert len(packets) == 2
    assert_continuous(packets)  # no sequence gap for the packets never sent


def test_paused_downtrack_not_forwarded_but_others_are() -> None:
    router, _, bob = audio_room()
    carol = RecordingSink()
    router.add_downtrack("mic", "carol", carol, 6000, 111, ExtensionIds(), now=0.0)
    router.set_paused("mic", "bob", True)
    router.on_rtp("mic", rtp(1, 0, 42), now=0.0)
    assert bob.rtp == []
    assert len(carol.rtp) == 1
    router.set_paused("mic", "bob", False, now=0.01)
    router.on_rtp("mic", rtp(2, 960, 42), now=0.02)
    assert len(bob.rtp) == 1


def test_removed_downtrack_gets_nothing() -> None:
    router, _, subscriber = audio_room()
    router.remove_downtrack("mic", "bob")
    router.on_rtp("mic", rtp(1, 0, 42), now=0.0)
    assert subscriber.rtp == []


# --- simulcast -------------------------------------------------------------------------------


def test_default_layer_is_the_highest() -> None:
    router, _, subscriber = simulcast_room()
    router.on_rtp("cam", rtp(1, 0, 100, VP8_KEY, pt=96), now=0.0)
    router.on_rtp("cam", rtp(1, 0, 300, VP8_KEY, pt=96), now=0.0)
    [packet] = subscriber.parsed()
    assert packet.payload == VP8_KEY
    assert packet.ssrc == 7000


def test_first_video_packet_forwarded_is_a_keyframe() -> None:
    router, _, subscriber = simulcast_room()
    router.on_rtp("cam", rtp(1, 0, 300, VP8_DELTA, pt=96), now=0.0)
    assert subscriber.rtp == []
    router.on_rtp("cam", rtp(2, 3000, 300, VP8_KEY, pt=96), now=0.033)
    assert len(subscriber.rtp) == 1


def test_layer_switch_waits_for_vp8_keyframe_and_keeps_seq_ts_continuous() -> None:
    router, publisher, subscriber = simulcast_room()
    router.on_rtp("cam", rtp(1000, 0, 300, VP8_KEY, pt=96), now=0.0)
    router.on_rtp("cam", rtp(5000, 77, 100, VP8_KEY, pt=96), now=0.0)
    router.on_rtp("cam", rtp(1001, 3000, 300, VP8_DELTA, pt=96), now=0.033)

    router.set_max_height("cam", "bob", 200, now=0.04)
    # still on "f" until "q" shows a keyframe
    router.on_rtp("cam", rtp(5001, 3077, 100, VP8_DELTA, pt=96), now=0.066)
    router.on_rtp("cam", rtp(1002, 6000, 300, VP8_DELTA, pt=96), now=0.066)
    assert len(subscriber.rtp) == 3
    router.on_rtp("cam", rtp(5002, 6077, 100, VP8_KEY, pt=96), now=0.1)
    router.on_rtp("cam", rtp(1003, 9000, 300, VP8_DELTA, pt=96), now=0.1)  # old layer: dropped
    router.on_rtp("cam", rtp(5003, 6077, 100, VP8_DELTA, pt=96), now=0.1)

    packets = subscriber.parsed()
    assert len(packets) == 5
    assert {p.ssrc for p in packets} == {7000}
    assert packets[3].payload[6:] == VP8_KEY[6:]  # the descriptor continues the numbering
    assert_continuous(packets[:4])
    # the keyframe's timestamp advanced by the elapsed time (0.1 - 0.066 s at 90 kHz)
    assert (packets[3].timestamp - packets[2].timestamp) & 0xFFFFFFFF == int(0.034 * 90000)
    assert packets[4].timestamp == packets[3].timestamp  # same frame
    assert (packets[4].sequence_number - packets[3].sequence_number) & 0xFFFF == 1
    # the switch asked the target layer for a keyframe
    assert 100 in [pli.media_ssrc for pli in publisher.plis()]


def test_layer_switch_waits_for_h264_keyframe() -> None:
    router, _, subscriber = simulcast_room(H264)
    router.on_rtp("cam", rtp(1, 0, 300, H264_STAP_A_SPS, pt=102), now=0.0)
    router.set_max_height("cam", "bob", 180, now=0.01)
    router.on_rtp("cam", rtp(9, 0, 100, H264_FU_A_IDR_MIDDLE, pt=102), now=0.02)
    router.on_rtp("cam", rtp(10, 0, 100, H264_NON_IDR, pt=102), now=0.03)
    assert len(subscriber.rtp) == 1
    router.on_rtp("cam", rtp(11, 3000, 100, H264_STAP_A_SPS, pt=102), now=0.06)
    router.on_rtp("cam", rtp(12, 3000, 100, H264_FU_A_IDR_MIDDLE, pt=102), now=0.06)
    packets = subscriber.parsed()
    assert [p.payload for p in packets] == [H264_STAP_A_SPS, H264_STAP_A_SPS, H264_FU_A_IDR_MIDDLE]
    assert_continuous(packets[:2])


def test_layer_that_stops_falls_back_to_the_next_available() -> None:
    router, publisher, subscriber = simulcast_room()
    router.on_rtp("cam", rtp(1, 0, 300, VP8_KEY, pt=96), now=0.0)
    router.on_rtp("cam", rtp(1, 0, 100, VP8_KEY, pt=96), now=0.0)
    # "f" stops; "q" keeps coming
    for i in range(1, 40):
        router.on_rtp("cam", rtp(1 + i, 3000 * i, 100, VP8_DELTA, pt=96), now=0.05 * i)
    router.on_rtp("cam", rtp(41, 3000 * 41, 100, VP8_KEY, pt=96), now=2.05)
    packets = subscriber.parsed()
    assert len(packets) == 2
    assert packets[1].payload[6:] == VP8_KEY[6:]  # the descriptor continues the numbering
    assert_continuous(packets)
    assert 100 in [pli.media_ssrc for pli in publisher.plis()]


def test_simulcast_ssrc_learned_from_rid_extension() -> None:
    router = Router("room", None)
    publisher, subscriber = RecordingSink(), RecordingSink()
    router.add_receiver("cam", "alice", "video", VP8, PUB_EXT, publisher, rids=["q", "f"])
    router.add_downtrack("cam", "bob", subscriber, 7000, 96, SUB_EXT, now=0.0)
    router.on_rtp("cam", rtp(1, 0, 100, VP8_KEY, pt=96, extensions={10: b"q"}), now=0.0)
    router.on_rtp("cam", rtp(1, 0, 300, VP8_KEY, pt=96, extensions={10: b"f"}), now=0.0)
    router.on_rtp("cam", rtp(2, 3000, 300, VP8_DELTA, pt=96), now=0.03)  # no RID any more
    router.on_rtp("cam", rtp(2, 3000, 100, VP8_DELTA, pt=96), now=0.03)
    packets = subscriber.parsed()
    assert len(packets) == 2  # "f", the highest by list order
    assert packets[0].extensions == {}  # RID stripped


# --- RTCP from subscribers -------------------------------------------------------------------


def test_nack_retransmits_exactly_the_requested_packets_with_rewritten_headers() -> None:
    router, _, subscriber = audio_room()
    for i in range(10):
        router.on_rtp("mic", rtp(200 + i, 960 * i, 42, b"\xfc" + bytes([i])), now=0.02 * i)
    sent = subscriber.parsed()
    wanted = [sent[2].sequence_number, sent[5].sequence_number, sent[6].sequence_number]
    subscriber.rtp.clear()
    nack = RtcpGenericNack(0xABC, 5000, wanted)
    router.on_subscriber_rtcp("bob", nack.serialize(), now=0.3)
    again = subscriber.parsed()
    assert [p.sequence_number for p in again] == wanted
    assert [p.payload for p in again] == [b"\xfc\x02", b"\xfc\x05", b"\xfc\x06"]
    assert {p.ssrc for p in again} == {5000}
    assert {p.payload_type for p in again} == {109}
    assert router.stats.nacks == 3


def test_nack_for_unknown_packets_or_other_subscriber_sends_nothing() -> None:
    router, _, subscriber = audio_room()
    router.on_rtp("mic", rtp(1, 0, 42), now=0.0)
    subscriber.rtp.clear()
    first = RtpPacket.parse(rtp(1, 0, 42)).sequence_number
    router.on_subscriber_rtcp("bob", RtcpGenericNack(1, 5000, [first + 1000]).serialize())
    router.on_subscriber_rtcp("carol", RtcpGenericNack(1, 5000, [first]).serialize())
    assert subscriber.rtp == []


def test_pli_forwarded_to_publisher_and_rate_limited() -> None:
    router, publisher, subscriber = simulcast_room()
    router.on_rtp("cam", rtp(1, 0, 300, VP8_KEY, pt=96), now=0.0)
    publisher.rtcp.clear()
    requests_before = router.stats.keyframe_requests
    pli = RtcpPli(0xABC, 7000).serialize()
    router.on_subscriber_rtcp("bob", pli, now=1.0)
    router.on_subscriber_rtcp("bob", pli, now=1.2)
    router.on_subscriber_rtcp("bob", pli, now=1.4)
    plis = publisher.plis()
    assert [(p.sender_ssrc, p.media_ssrc) for p in plis] == [(1, 300)]
    router.on_subscriber_rtcp("bob", pli, now=2.1)  # no keyframe came within a second
    assert len(publisher.plis()) == 2
    assert router.stats.keyframe_requests == requests_before + 2


def test_fir_forwarded_as_pli() -> None:
    router, publisher, _ = simulcast_room()
    router.on_rtp("cam", rtp(1, 0, 300, VP8_KEY, pt=96), now=0.0)
    publisher.rtcp.clear()
    router.on_subscriber_rtcp("bob", RtcpFir(0xABC, 0, [(7000, 1)]).serialize(), now=5.0)
    assert [p.media_ssrc for p in publisher.plis()] == [300]


def test_pli_for_audio_is_ignored() -> None:
    router, publisher, _ = audio_room()
    router.on_rtp("mic", rtp(1, 0, 42), now=0.0)
    router.on_subscriber_rtcp("bob", RtcpPli(1, 5000).serialize(), now=1.0)
    assert publisher.plis() == []


def test_receiver_report_losses_are_counted_once() -> None:
    router, _, _ = audio_room()
    router.on_rtp("mic", rtp(1, 0, 42), now=0.0)
    report = RtcpReceiverReport(9, [RtcpReceptionReport(5000, fraction_lost=10, packets_lost=3)])
    router.on_subscriber_rtcp("bob", report.serialize())
    router.on_subscriber_rtcp("bob", report.serialize())
    assert router.stats.packets_lost == 3
    report.reports[0].packets_lost = 5
    router.on_subscriber_rtcp("bob", report.serialize())
    assert router.stats.packets_lost == 5


def test_malformed_subscriber_rtcp_is_ignored() -> None:
    router, _, subscriber = audio_room()
    router.on_subscriber_rtcp("bob", b"\x81\xcd\x00\x09garbage")
    assert subscriber.rtp == [] and router.stats.nacks == 0


# --- publisher side --------------------------------------------------------------------------


def test_publisher_gap_is_nacked_and_unrecovered_packets_counted_lost() -> None:
    router, publisher, _ = audio_room()
    router.on_rtp("mic", rtp(100, 0, 42), now=0.0)
    router.on_rtp("mic", rtp(104, 4 * 960, 42), now=0.08)
    [nack] = publisher.nacks()
    assert nack.media_ssrc == 42
    assert nack.lost == [101, 102, 103]
    router.on_rtp("mic", rtp(102, 2 * 960, 42), now=0.1)  # recovered
    router.tick(now=2.0, wall_time=1_700_000_000.0)
    assert router.stats.packets_lost == 2


def test_a_missing_packet_is_asked_for_again_every_100_ms_between_ticks() -> None:
    # a retransmission lost on a lossy uplink: asked again at the fast timer's pace, not once a
    # second, before the subscribers' decoders give up on the frame
    router, publisher, _ = audio_room()
    router.on_rtp("mic", rtp(100, 0, 42), now=0.0)
    router.on_rtp("mic", rtp(102, 2 * 960, 42), now=0.02)
    times = [round(0.05 * step, 2) for step in range(1, 12)]
    asked = []
    for now in times:
        before = len(publisher.nacks())
        router.retry_nacks(now)
        asked += [now] * (len(publisher.nacks()) - before)
    assert len(publisher.nacks()) == NACK_RETRIES  # the first NACK and the retries
    assert asked == [0.15, 0.25]  # each NACK_RETRY_INTERVAL after the one before
    router.on_rtp("mic", rtp(101, 960, 42), now=0.3)  # the last one repaired it
    router.tick(now=2.0, wall_time=1_700_000_000.0)
    assert router.stats.packets_lost == 0


def test_rtx_retransmission_is_unwrapped_and_forwarded() -> None:
    router, publisher, subscriber = simulcast_room()
    router.set_layer_ssrc("cam", "f", 300, rtx_ssrc=301)
    router.on_rtp("cam", rtp(10, 0, 300, VP8_KEY, pt=96), now=0.0)
    router.on_rtp("cam", rtp(12, 3000, 300, VP8_DELTA, pt=96), now=0.03)
    assert publisher.nacks()[-1].lost == [11]
    rtx_payload = b"\x00\x0b" + VP8_DELTA  # OSN 11
    router.on_rtp("cam", rtp(555, 3000, 301, rtx_payload, pt=97), now=0.05)
    packets = subscriber.parsed()
    assert len(packets) == 3
    assert packets[2].payload == VP8_DELTA
    assert packets[2].sequence_number == (packets[0].sequence_number + 1) & 0xFFFF
    assert packets[2].payload_type == 96 and packets[2].ssrc == 7000
    # a second copy of the same retransmission is a duplicate
    router.on_rtp("cam", rtp(556, 3000, 301, rtx_payload, pt=97), now=0.06)
    assert len(subscriber.rtp) == 3


def test_tick_sends_receiver_report_to_publisher_and_sender_report_to_subscriber() -> None:
    router, publisher, subscriber = audio_room()
    for i in range(5):
        router.on_rtp("mic", rtp(i, 960 * i, 42), now=0.02 * i)
    publisher.rtcp.clear()
    router.tick(now=1.0, wall_time=1_700_000_000.0)
    [rr] = [
        p for data in publisher.rtcp for p in parse_rtcp(data) if isinstance(p, RtcpReceiverReport)
    ]
    assert rr.reports[0].ssrc == 42
    assert rr.reports[0].highest_sequence == 4
    [sr] = [
        p for data in subscriber.rtcp for p in parse_rtcp(data) if isinstance(p, RtcpSenderReport)
    ]
    assert sr.ssrc == 5000
    assert sr.packet_count == 5
    last = subscriber.parsed()[-1]
    # extrapolated from the last packet (0.08 s) to now (1.0 s) at 48 kHz
    assert (sr.rtp_timestamp - last.timestamp) & 0xFFFFFFFF == int(0.92 * 48000)


def test_tick_grants_publishers_their_bitrate_by_remb() -> None:
    router, publisher, _ = audio_room()
    router.publisher_remb_bitrate = 2_500_000
    for i in range(5):
        router.on_rtp("mic", rtp(i, 960 * i, 42), now=0.02 * i)
    publisher.rtcp.clear()
    router.tick(now=1.0, wall_time=1_700_000_000.0)
    [remb] = [p for data in publisher.rtcp for p in parse_rtcp(data) if isinstance(p, RtcpRemb)]
    assert remb.ssrcs == [42]
    assert abs(remb.bitrate - 2_500_000) / 2_500_000 < 0.01  # mantissa/exponent rounding


# --- speakers --------------------------------------------------------------------------------


def test_active_speakers_ordered_by_level_and_reported_on_change_only() -> None:
    calls: list[tuple[str, list[tuple[str, float]]]] = []
    router = Router("room", lambda room, speakers: calls.append((room, speakers)))
    for participant, track in (("alice", "a"), ("carol", "c")):
        router.add_receiver(track, participant, "audio", OPUS, PUB_EXT, RecordingSink())
    for i in range(60):  # 1.2 s, alice at -20 dBov, carol at -35 dBov
        now = 0.02 * i
        router.on_rtp("a", rtp(i, 960 * i, 1, extensions={1: bytes([0x80 | 20])}), now=now)
        router.on_rtp("c", rtp(i, 960 * i, 2, extensions={1: bytes([0x80 | 35])}), now=now)
    assert calls, "no speaker update"
    room, speakers = calls[-1]
    assert room == "room"
    assert [participant for participant, _ in speakers] == ["alice", "carol"]
    assert speakers[0][1] > speakers[1][1] > 0
    assert len(calls) <= 2  # the order settled and was not repeated


def test_rtx_before_its_layer_is_known_is_dropped() -> None:
    router = Router("room", None)
    publisher, subscriber = RecordingSink(), RecordingSink()
    router.add_receiver("cam", "alice", "video", VP8, PUB_EXT, publisher, rids=["q", "f"])
    router.add_downtrack("cam", "bob", subscriber, 7000, 96, SUB_EXT, now=0.0)
    rtx = rtp(5, 0, 901, b"\x00\x01" + VP8_KEY, pt=97, extensions={11: b"f"})
    router.on_rtp("cam", rtx, now=0.0)
    assert subscriber.rtp == []


def test_a_downtrack_readded_on_its_ssrc_continues_its_stream() -> None:
    # A receiver's SRTP replay check drops packets whose index jumps back, so a stream stopped
    # and started again on the same SSRC (a partner gateway's demand coming and going) must
    # go on from where it stopped: the next sequence number, a later timestamp.
    router, _, subscriber = audio_room()
    for i in range(3):
        router.on_rtp("mic", rtp(100 + i, 960 * i, 42), now=0.02 * i)
    position = router.remove_downtrack("mic", "bob", now=0.1)
    assert position is not None
    assert router.remove_downtrack("mic", "bob") is None
    router.on_rtp("mic", rtp(103, 960 * 3, 42), now=0.06)  # nobody subscribed: not sent
    router.add_downtrack("mic", "bob", subscriber, 5000, 109, SUB_EXT, now=5.0, resume=position)
    for i in range(4, 7):
        router.on_rtp("mic", rtp(100 + i, 960 * i, 42), now=5.0 + 0.02 * i)
    packets = subscriber.parsed()
    assert len(packets) == 6
    assert_continuous(packets)
    gap = (packets[3].timestamp - packets[2].timestamp) & 0xFFFFFFFF
    assert gap >= int(4.9 * 48000)  # the pause shows as elapsed time, not as a jump back
