"""Transport-cc feedback: the section 3.1 wire format against another implementation's bytes, the
sequence number extension, and the receive side's arrival recorder."""

import asyncio
import contextlib
import random
import struct
import time

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.srtp_client import LeanPeer, rtp_frames
from gateway.media import native, sdp
from gateway.media.endpoint import PublishRequest
from gateway.media.relay import MediaRelay
from gateway.media.rtcp import RtcpError, RtcpRemb, RtcpTransportCc, parse_rtcp
from gateway.media.rtp import RtpPacket
from gateway.media.sdp import Extmap
from gateway.media.transport import Address
from gateway.media.twcc import (
    ArrivalRecorder,
    PacketResult,
    TransportCcFeedback,
    parse_feedback,
    read_transport_seq,
)

# Byte vectors from pion/rtcp, transport_layer_cc_test.go (github.com/pion/rtcp, commit 14a95159,
# TestTransportLayerCC_Marshal "example1" and "example4", TestTransportLayerCC_Unmarshal "example6").
PION_EXAMPLE1 = bytes.fromhex("afcd0005 fa17fa17 43032fa0 00990001 3de80217 20019401")
PION_EXAMPLE4 = bytes.fromhex(
    "afcd0007 fa17fa17 193dd8bb 00040007 10636e01 20074c24 24100c0c 10000003"
)
PION_EXAMPLE5 = bytes.fromhex("afcd0006 fa17fa17 193dd8bb 0001000e 10636d00 ba00100c 0c100002")
PION_EXAMPLE6 = bytes.fromhex(
    "afcd0007 9b74f61f 9371dcbc 853c0009 63f916b3 d5520030 9baa6aaa 7b010901"
)


def _ms(feedback: TransportCcFeedback) -> list[float | None]:
    """Each result's receive time in ms after the reference time (pion's deltas, accumulated)."""
    origin = feedback.reference_time * 0.064
    return [
        None if r.arrival is None else round((r.arrival - origin) * 1000, 3)
        for r in feedback.results
    ]


def test_pion_example1_one_small_delta_run_length_chunk():
    feedback = parse_feedback(PION_EXAMPLE1)
    assert (feedback.sender_ssrc, feedback.media_ssrc) == (4195875351, 1124282272)
    assert (feedback.base_sequence, feedback.reference_time) == (153, 4057090)
    assert feedback.feedback_count == 23
    assert [r.sequence_number for r in feedback.results] == [153]
    assert _ms(feedback) == [37.0]
    assert feedback.serialize() == PION_EXAMPLE1


def test_pion_example4_run_of_seven_small_deltas():
    feedback = parse_feedback(PION_EXAMPLE4)
    assert (feedback.base_sequence, feedback.reference_time, feedback.feedback_count) == (
        4,
        1074030,
        1,
    )
    # pion's deltas: 19000, 9000, 9000, 4000, 3000, 3000, 4000 us
    assert _ms(feedback) == [19.0, 28.0, 37.0, 41.0, 44.0, 47.0, 51.0]
    assert feedback.serialize() == PION_EXAMPLE4


def test_pion_example5_one_bit_status_vector():
    feedback = parse_feedback(PION_EXAMPLE5)
    assert feedback.base_sequence == 1 and len(feedback.results) == 14
    assert _ms(feedback) == [4.0, 7.0, 10.0, None, 14.0] + [None] * 9
    # our encoder writes the trailing losses as a run; the meaning is the same
    assert parse_feedback(feedback.serialize()) == feedback


def test_pion_example6_two_bit_vector_large_delta_and_a_run_of_losses():
    feedback = parse_feedback(PION_EXAMPLE6)
    assert (feedback.base_sequence, feedback.reference_time, feedback.feedback_count) == (
        34108,
        6551830,
        179,
    )
    # pion's deltas: 38750, 42500, 26500, 42500, 30750 us (small), a loss, 66250 us (large)
    assert _ms(feedback) == [38.75, 81.25, 107.75, 150.25, 181.0, None, 247.25, None, None]
    assert parse_feedback(feedback.serialize()) == feedback


def _packet_with_chunk(chunk: int, count: int, deltas: bytes) -> bytes:
    body = struct.pack("!IIHHIH", 1, 2, 10, count, 5 << 8, chunk) + deltas
    body += bytes(-len(body) % 4)
    return struct.pack("!BBH", 0x8F, 205, len(body) // 4) + body


@pytest.mark.parametrize(
    ("chunk", "count", "deltas", "expected"),
    [
        # draft section 3.1.3 example 1: a run of 221 packets not received
        (0x00DD, 221, b"", [None] * 221),
        # draft section 3.1.3 example 2: a run of 24 packets received with small deltas
        (0x2018, 24, bytes(range(24)), "small"),
        # draft section 3.1.4 example 1: 1-bit vector 0 1 1 1 1 1 0 0 0 1 1 1 0 0
        (0x9F1C, 14, bytes(8), [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]),
    ],
)
def test_draft_chunk_examples(chunk, count, deltas, expected):
    feedback = parse_feedback(_packet_with_chunk(chunk, count, deltas))
    received = [r.arrival is not None for r in feedback.results]
    if expected == "small":
        assert all(received) and len(received) == 24
    elif isinstance(expected[0], int):
        assert received == [bool(x) for x in expected]
    else:
        assert received == [False] * 221


def test_draft_two_bit_vector_example_has_the_reserved_symbol_and_is_refused():
    # draft section 3.1.4 example 2: 0xCD50 = not received, reserved (11), small x3, lost x2
    with pytest.raises(RtcpError):
        parse_feedback(_packet_with_chunk(0xCD50, 7, bytes(3)))


def _feedback(arrivals: list[float | None], base: int = 100, reference: int = 1000):
    return TransportCcFeedback(
        sender_ssrc=7,
        media_ssrc=8,
        base_sequence=base,
        reference_time=reference,
        feedback_count=3,
        results=[PacketResult((base + i) & 0xFFFF, a) for i, a in enumerate(arrivals)],
    )


def test_round_trip_mixed_small_large_negative_and_lost():
    origin = 1000 * 0.064
    arrivals = [origin + 0.001, None, origin + 0.1, origin + 0.09, None, None, origin + 3.0]
    feedback = _feedback(arrivals)
    data = feedback.serialize()
    assert len(data) % 4 == 0
    parsed = parse_feedback(data)
    assert [r.sequence_number for r in parsed.results] == list(range(100, 107))
    for got, want in zip(parsed.results, arrivals, strict=True):
        assert (got.arrival is None) == (want is None)
        if want is not None:
            assert got.arrival == pytest.approx(want, abs=0.000125)
    # rtcp.parse_rtcp still sees it as a raw transport-cc packet
    (raw,) = parse_rtcp(data)
    assert isinstance(raw, RtcpTransportCc) and raw.media_ssrc == 8


def test_round_trip_long_runs_and_sequence_wrap():
    origin = 77 * 0.064
    arrivals = [origin + i * 0.002 for i in range(30)] + [None] * 9000 + [origin + 1.0]
    feedback = _feedback(arrivals, base=65530, reference=77)
    data = feedback.serialize()
    parsed = parse_feedback(data)
    assert parsed.results[6].sequence_number == 0
    assert [r.arrival is None for r in parsed.results] == [a is None for a in arrivals]
    assert len(data) < 80  # runs, not vectors


def test_delta_that_does_not_fit_sixteen_bits_is_refused_by_serialize():
    origin = 10 * 0.064
    with pytest.raises(ValueError):
        _feedback([origin, origin + 9.0], reference=10).serialize()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        PION_EXAMPLE1[:19],
        PION_EXAMPLE1[:-1],  # the length says more
        bytes([0x8F, 206]) + PION_EXAMPLE1[2:],  # not RTPFB
        bytes([0x81]) + PION_EXAMPLE1[1:],  # FMT 1 (NACK)
        bytes([0x4F]) + PION_EXAMPLE1[1:],  # version 1
        PION_EXAMPLE1[:-1] + b"\x00",  # padding count 0
        PION_EXAMPLE1[:-1] + b"\xff",  # padding longer than the packet
        bytes.fromhex(
            "afcd0006 fa17fa17 193dd8bb 00040007 10636e01 20074c24 24100001"
        ),  # 7 deltas?
    ],
)
def test_malformed_feedback_raises_rtcp_error(data):
    with pytest.raises(RtcpError):
        parse_feedback(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 0xFFFF), st.booleans())
def test_any_bytes_parse_to_a_result_or_rtcp_error(tail, count, padded):
    header = bytes([0xAF if padded else 0x8F, 205]) + struct.pack("!H", (len(tail) + 12) // 4)
    for data in (tail, header + struct.pack("!IIHH", 1, 2, 3, count) + tail):
        try:
            feedback = parse_feedback(data)
        except RtcpError:
            continue
        assert len(feedback.results) <= 0xFFFF


def test_random_garbage_fuzz_is_bounded():
    rng = random.Random(13)
    for _ in range(3000):
        size = rng.randrange(0, 64)
        data = bytearray(rng.randbytes(size))
        if size >= 2 and rng.random() < 0.8:
            data[0] = 0x80 | rng.choice((0x00, 0x20)) | 15
            data[1] = 205
        with contextlib.suppress(RtcpError):
            parse_feedback(bytes(data))


# --- the sequence number header extension ---------------------------------------------------


def _rtp(extension: bytes, profile: int = 0xBEDE, csrcs: int = 0) -> bytes:
    extension += bytes(-len(extension) % 4)
    return (
        bytes([0x90 | csrcs, 96])
        + struct.pack("!HII", 1, 2, 3)
        + bytes(4 * csrcs)
        + struct.pack("!HH", profile, len(extension) // 4)
        + extension
        + b"payload"
    )


def test_read_transport_seq_one_byte_and_two_byte_forms():
    # one-byte: audio level (id 1, 1 byte), padding, transport-cc (id 3, 2 bytes)
    packet = _rtp(bytes([0x10, 0xAA, 0x00, 0x31, 0x12, 0x34]))
    assert read_transport_seq(packet, 3) == 0x1234
    assert read_transport_seq(bytearray(packet), 3) == 0x1234
    assert read_transport_seq(packet, 5) is None
    assert read_transport_seq(packet, 0) is None
    two = _rtp(bytes([1, 1, 0xAA, 0, 3, 2, 0xBE, 0xEF]), profile=0x1000)
    assert read_transport_seq(two, 3) == 0xBEEF
    assert read_transport_seq(_rtp(bytes([0x31, 0xAB, 0xCD]), csrcs=2), 3) == 0xABCD


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        bytes(11),
        bytes([0x80, 96]) + bytes(10),  # no extension
        _rtp(bytes([0x30, 0x12]))[:16],  # extension header cut
        _rtp(bytes([0xF0, 0x31, 0x12, 0x34])),  # id 15 stops the walk
        _rtp(bytes([0x30, 0x12])),  # transport-cc one byte long
        _rtp(bytes([0x00, 0x00, 0x00, 0x31])),  # element cut by the extension's end
        _rtp(bytes([3, 2, 0x12]), profile=0x1000)[:19],  # two-byte element cut
        _rtp(bytes([0x31, 0x12, 0x34]), profile=0xABCD),  # unknown profile
        bytes([0x90, 96]) + bytes(10) + bytes([0xBE, 0xDE, 0xFF, 0xFF]) + bytes(8),  # length lies
    ],
)
def test_read_transport_seq_malformed_gives_none(packet):
    assert read_transport_seq(packet, 3) is None


def test_read_transport_seq_random_bytes_never_raise():
    rng = random.Random(8285)
    for _ in range(5000):
        data = bytearray(rng.randbytes(rng.randrange(0, 40)))
        if data:
            data[0] |= 0x90
        result = read_transport_seq(bytes(data), rng.randrange(1, 15))
        assert result is None or 0 <= result <= 0xFFFF


# --- the arrival recorder -------------------------------------------------------------------


def _report(recorder: ArrivalRecorder) -> list[TransportCcFeedback]:
    return [parse_feedback(p) for p in recorder.feedback(media_ssrc=99)]


def _arrivals(feedbacks: list[TransportCcFeedback]) -> dict[int, float | None]:
    return {r.sequence_number: r.arrival for f in feedbacks for r in f.results}


def test_recorder_reports_in_order_with_gaps_as_lost_and_a_late_packet_after_all():
    recorder = ArrivalRecorder(sender_ssrc=5)
    for seq, at in [(10, 100.000), (11, 100.005), (14, 100.020), (15, 100.021)]:
        recorder.on_arrival(seq, at)
    (feedback,) = _report(recorder)
    assert (feedback.sender_ssrc, feedback.media_ssrc, feedback.base_sequence) == (5, 99, 10)
    origin = feedback.results[0].arrival
    assert origin is not None
    offsets = [
        None if r.arrival is None else round(r.arrival - origin, 4) for r in feedback.results
    ]
    assert offsets == [0.0, 0.005, None, None, 0.02, 0.021]
    assert recorder.feedback(99) == []  # nothing new arrived
    recorder.on_arrival(11, 100.03)  # duplicate of a reported packet
    assert recorder.feedback(99) == []
    recorder.on_arrival(12, 100.03)  # late: it was reported lost; the next feedback goes back
    (second,) = _report(recorder)
    assert second.base_sequence == 12 and second.feedback_count == feedback.feedback_count + 1
    received = [(r.sequence_number, r.arrival is not None) for r in second.results]
    assert received == [(12, True), (13, False), (14, True), (15, True)]
    recorder.on_arrival(16, 100.04)
    (third,) = _report(recorder)
    assert third.base_sequence == 16 and [r.sequence_number for r in third.results] == [16]


def test_recorder_reordering_gives_negative_deltas():
    recorder = ArrivalRecorder(sender_ssrc=5)
    for seq, at in [(1, 5.0), (3, 5.001), (2, 5.002), (4, 5.003)]:
        recorder.on_arrival(seq, at)
    (feedback,) = _report(recorder)
    times = [r.arrival for r in feedback.results]
    assert [r.sequence_number for r in feedback.results] == [1, 2, 3, 4]
    assert times[1] == pytest.approx(times[0] + 0.002) and times[2] == pytest.approx(
        times[0] + 0.001
    )


def test_recorder_sequence_wrap():
    recorder = ArrivalRecorder(sender_ssrc=5)
    for i, seq in enumerate([65533, 65534, 65535, 0, 1, 2]):
        recorder.on_arrival(seq, 1.0 + i * 0.001)
    (feedback,) = _report(recorder)
    assert [r.sequence_number for r in feedback.results] == [65533, 65534, 65535, 0, 1, 2]
    assert all(r.arrival is not None for r in feedback.results)


def test_recorder_splits_when_a_delta_does_not_fit():
    recorder = ArrivalRecorder(sender_ssrc=5)
    recorder.on_arrival(1, 50.0)
    recorder.on_arrival(2, 50.010)
    recorder.on_arrival(3, 70.0)  # 20 s later: more than a 16-bit delta holds
    feedbacks = _report(recorder)
    assert [f.base_sequence for f in feedbacks] == [1, 3]
    arrivals = _arrivals(feedbacks)
    assert arrivals[2] - arrivals[1] == pytest.approx(0.010)
    assert (feedbacks[1].reference_time - feedbacks[0].reference_time) * 0.064 == pytest.approx(
        20.0, abs=0.064
    )


def test_recorder_large_but_fitting_delta_is_a_large_delta():
    recorder = ArrivalRecorder(sender_ssrc=5)
    recorder.on_arrival(1, 50.0)
    recorder.on_arrival(2, 50.5)  # 500 ms: more than a small delta (63.75 ms) holds
    (feedback,) = _report(recorder)
    assert feedback.results[1].arrival - feedback.results[0].arrival == pytest.approx(0.5)


def test_recorder_splits_big_reports_into_datagram_sized_packets():
    recorder = ArrivalRecorder(sender_ssrc=5)
    for i in range(3000):  # every other packet arrives, each 100 ms apart: large deltas
        recorder.on_arrival(2 * i, 1.0 + 0.1 * i)
    packets = recorder.feedback(99)
    assert len(packets) > 1 and all(len(p) <= 1200 for p in packets)
    arrivals = _arrivals([parse_feedback(p) for p in packets])
    assert sum(a is not None for a in arrivals.values()) == 2048  # the newest max_packets seqs


def test_recorder_reference_time_wraps_at_24_bits():
    recorder = ArrivalRecorder(sender_ssrc=5)
    wrap = (1 << 24) * 0.064
    recorder.on_arrival(1, wrap + 0.5)
    recorder.on_arrival(2, wrap + 0.51)
    (feedback,) = _report(recorder)
    assert feedback.reference_time == 7  # 0.5 s after the wrap
    assert feedback.results[1].arrival - feedback.results[0].arrival == pytest.approx(0.01)


def test_recorder_memory_is_bounded_under_random_sequence_numbers():
    recorder = ArrivalRecorder(sender_ssrc=5, max_packets=256)
    rng = random.Random(4)
    for i in range(20000):
        recorder.on_arrival(rng.randrange(0x10000), 1.0 + i * 0.0001)
        if i % 500 == 0:
            for packet in recorder.feedback(1):
                assert len(packet) <= 1200
                parse_feedback(packet)
    assert len(recorder._sequences) == 256 and len(recorder._ticks) == 256
    total = sum(len(parse_feedback(p).results) for p in recorder.feedback(1))
    assert total <= 256


# --- on the relay, both packet paths -----------------------------------------------------------

TWCC_ID = 3  # Chromium's id


class _FeedbackPeer(LeanPeer):
    """A lean publisher that keeps the transport-cc feedback the relay sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.feedbacks: list[TransportCcFeedback] = []
        self.remb: list[tuple[float, int]] = []  # (when, bits/s)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if len(data) > 1 and 127 < data[0] < 192 and 191 < data[1] < 224 and self.srtp:
            compound = self.srtp.unprotect_rtcp(data)
            offset = 0
            while offset + 4 <= len(compound):  # each packet of the compound, padding included
                end = offset + 4 + 4 * struct.unpack_from("!H", compound, offset + 2)[0]
                if compound[offset + 1] == 205 and compound[offset] & 0x1F == 15:
                    self.feedbacks.append(parse_feedback(compound[offset:end]))
                offset = end
            for packet in parse_rtcp(compound):
                if isinstance(packet, RtcpRemb):
                    self.remb.append((time.monotonic(), packet.bitrate))
        super().datagram_received(data, addr)

    def feedback(self) -> list[TransportCcFeedback]:
        return list(self.feedbacks)


@pytest.fixture(params=["native", "python"])
def packet_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native" and not native.available():
        pytest.skip("the native extension is not built (pip install -e . with libsrtp2-dev)")
    monkeypatch.setattr(native, "enabled", request.param == "native")
    return str(request.param)


def _with_transport_cc(offer: str) -> str:
    description = sdp.parse(offer)
    for media in description.media:
        media.extmaps.append(Extmap(TWCC_ID, sdp.EXT_TRANSPORT_CC))
    return description.serialize()


def _stamped(packets: list[bytes], first_seq: int) -> list[bytes]:
    stamped = []
    for index, data in enumerate(packets):
        packet = RtpPacket.parse(data)
        packet.extensions[TWCC_ID] = struct.pack("!H", (first_seq + index) & 0xFFFF)
        stamped.append(packet.serialize())
    return stamped


async def _until(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


async def test_relay_sends_feedback_for_every_arrival_once_on_both_paths(packet_path: str) -> None:
    relay = MediaRelay("127.0.0.1", 0, (0, -1))
    await relay.start()
    peers: list[LeanPeer] = []
    try:
        alice = relay.create_endpoint("room", "alice")
        publisher = _FeedbackPeer()
        peers.append(publisher)
        await publisher.open()
        answer = alice.accept_publish_offer(
            _with_transport_cc(publisher.publish_offer(["0"])),
            [PublishRequest("0", "", "microphone")],
        )
        assert f"a=extmap:{TWCC_ID} {sdp.EXT_TRANSPORT_CC}" in answer.sdp
        assert "a=rtcp-fb:111 transport-cc" in answer.sdp
        publisher.apply_remote(answer.sdp)
        await publisher.connect()
        track_id = answer.tracks[0].track_id
        for name in ("bob", "carol"):  # subscribers, so that the native path forwards
            endpoint = relay.create_endpoint("room", name)
            assert endpoint.subscribe(track_id)
            offer = endpoint.create_subscribe_offer()
            assert offer is not None
            peer = LeanPeer()
            peers.append(peer)
            await peer.open()
            peer.apply_remote(offer.sdp)
            endpoint.accept_subscribe_answer(peer.subscribe_answer(offer.sdp))
            await peer.connect()

        transport = alice._publish
        assert transport is not None and transport.arrivals is not None
        recorded: list[int] = []
        record = transport.arrivals.on_arrival
        transport.arrivals.on_arrival = lambda seq, at: (recorded.append(seq), record(seq, at))  # type: ignore[method-assign]

        count, lost, first_seq = 80, 30, 65500  # the transport-wide sequence wraps on the way
        plain = _stamped(rtp_frames(0, count, 0x1234ABCD, mid="0"), first_seq)
        protected = publisher.protect(plain)
        order = [i for i in range(count) if i != lost]
        a, b = order.index(44), order.index(45)
        order[a], order[b] = 45, 44  # reordered: 45 arrives before 44
        started = time.monotonic()
        for i in order:
            publisher.send(protected[i])
            await asyncio.sleep(0.004)
        sent = [(first_seq + i) & 0xFFFF for i in order]
        await _until(lambda: len(recorded) >= len(sent))
        await _until(
            lambda: (
                {
                    r.sequence_number
                    for f in publisher.feedback()
                    for r in f.results
                    if r.arrival is not None
                }
                >= set(sent)
            )
        )

        assert sorted(recorded) == sorted(sent)  # each arrival recorded once, on either path
        feedbacks = publisher.feedback()
        received = [
            r.sequence_number for f in feedbacks for r in f.results if r.arrival is not None
        ]
        # and reported: each received packet, none that was not (a feedback that fell between
        # 45 and 44 is followed by one going back to 44, which reports 45 again)
        assert set(received) == set(sent)
        assert len(received) - len(sent) <= 1
        missing = {r.sequence_number for f in feedbacks for r in f.results if r.arrival is None}
        assert (first_seq + lost) & 0xFFFF in missing
        assert all(f.sender_ssrc == transport.arrivals.sender_ssrc for f in feedbacks)
        assert [f.feedback_count for f in feedbacks] == list(range(len(feedbacks)))
        if packet_path == "native":
            assert transport.ingress is not None
            egress = relay._rooms["room"].endpoints["bob"]._subscribe.egress  # type: ignore[union-attr]
            assert egress is not None and egress.sent > count // 2  # most were forwarded in C
        else:
            assert transport.ingress is None

        # the REMB ceiling came at once with the first feedback, not only with the receiver reports
        assert publisher.remb and publisher.remb[0][1] == relay.publish_bitrate
        assert publisher.remb[0][0] - started < 0.3

        # nothing arrives: no more feedback
        before = len(feedbacks)
        await asyncio.sleep(0.3)
        assert len(publisher.feedback()) == before
    finally:
        for peer in peers:
            peer.close()
        await relay.stop()


def test_native_ingress_records_both_header_forms_bounded_and_never_reads_past_the_packet() -> None:
    module = native.MODULE
    if module is None:
        pytest.skip("the native extension is not built")
    key, profile = bytes(range(30)), 1  # AES_CM_128_HMAC_SHA1_80
    sender = module.Session(key, profile, False, 1024, True)
    ingress = module.Ingress(module.Session(key, profile, True, 1024, False))

    def arrive(extension: bytes, seq: int, profile: int = 0xBEDE) -> None:
        plain = bytearray(_rtp(extension, profile))
        plain[2:4] = struct.pack("!H", seq)  # the RTP sequence number: libsrtp's replay check
        assert ingress.handle(sender.protect(bytes(plain))) is not None  # no route: handed back

    arrive(bytes([0x31, 0x00, 0x07]), 1)  # before set_twcc: not recorded
    ingress.set_twcc(3)
    arrive(bytes([0x10, 0xAA, 0x31, 0x12, 0x34]), 2)
    arrive(bytes([1, 1, 0xAA, 0, 3, 2, 0xBE, 0xEF]), 3, profile=0x1000)
    arrive(bytes([0x30, 0x12]), 4)  # one byte long: not a sequence number
    arrive(bytes([0x00, 0x00, 0x00, 0x31]), 5)  # cut by the extension's end
    arrive(bytes([0xF0, 0x31, 0x12, 0x34]), 6)  # after the id-15 stop
    arrivals = ingress.take_arrivals()
    assert [seq for seq, _ in arrivals] == [0x1234, 0xBEEF]
    assert all(abs(at - time.monotonic()) < 5 for _, at in arrivals)  # CLOCK_MONOTONIC seconds
    assert ingress.take_arrivals() == []
    for i in range(5000):  # more than the ring holds: the oldest go
        arrive(bytes([0x31]) + struct.pack("!H", i & 0xFFFF), 100 + i)
    arrivals = ingress.take_arrivals()
    assert len(arrivals) == 4096 and arrivals[-1][0] == 4999 and arrivals[0][0] == 5000 - 4096
    ingress.set_twcc(0)
    arrive(bytes([0x31, 0x00, 0x07]), 6000)
    assert ingress.take_arrivals() == []
    with pytest.raises(ValueError):
        ingress.set_twcc(256)
    ingress.set_twcc(5)
    rng = random.Random(3)
    for i in range(3000):  # authentic packets with garbage header extensions
        body = rng.randbytes(rng.randrange(0, 24))
        plain = bytearray(_rtp(body, rng.choice((0xBEDE, 0x1000, 0x1234))))
        plain[2:4] = struct.pack("!H", (7000 + i) & 0xFFFF)
        if rng.random() < 0.3:  # the length lies (libsrtp refuses most of these itself)
            plain[14:16] = struct.pack("!H", rng.randrange(8))
        with contextlib.suppress(pylibsrtp.Error):
            ingress.handle(sender.protect(bytes(plain)))
    assert all(0 <= seq <= 0xFFFF for seq, _ in ingress.take_arrivals())


def test_recorder_pending_counts_what_the_next_feedback_covers():
    recorder = ArrivalRecorder(sender_ssrc=5)
    assert recorder.pending == 0
    recorder.on_arrival(10, 1.0)
    recorder.on_arrival(13, 1.01)  # 11 and 12 lost so far
    assert recorder.pending == 4
    recorder.feedback(1)
    assert recorder.pending == 0


def test_transport_sends_feedback_for_five_packets_or_after_100_ms():
    from gateway.media.dtls import DtlsCertificate  # noqa: PLC0415
    from gateway.media.transport import UdpMux, WebRtcTransport  # noqa: PLC0415

    transport = WebRtcTransport(UdpMux(), DtlsCertificate())
    sent: list[bytes] = []
    transport.send_rtcp = sent.append  # type: ignore[method-assign]
    transport.srtp = object()  # type: ignore[assignment]  # connected, as far as this goes
    transport.set_transport_cc(3)
    assert transport.arrivals is not None
    assert transport.send_transport_feedback(1, 10.0) == 0  # nothing arrived
    transport.arrivals.on_arrival(1, 10.0)
    assert transport.send_transport_feedback(1, 10.05) == 1  # the first goes at once
    transport.arrivals.on_arrival(2, 10.06)
    assert transport.send_transport_feedback(1, 10.10) == 0  # one packet, 50 ms: it waits
    assert transport.send_transport_feedback(1, 10.16) == 1  # 100 ms since the last
    for seq in range(3, 8):
        transport.arrivals.on_arrival(seq, 10.17)
    assert transport.send_transport_feedback(1, 10.18) == 1  # five waiting: at once
    assert [parse_feedback(p).base_sequence for p in sent] == [1, 2, 3]
    transport.set_transport_cc(0)
    assert transport.arrivals is None and transport.send_transport_feedback(1, 11.0) == 0
