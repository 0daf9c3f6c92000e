"""The SFU benchmark's pure pieces: synthetic VP8 simulcast packets, extension blocks, loss counting."""

from __future__ import annotations

from bench.sfu_media import (
    EXT_MID_ID,
    EXT_RID_ID,
    EXT_TRANSPORT_CC_ID,
    LAYERS,
    StreamCounter,
    TrackSender,
    one_byte_extensions,
    wants_high,
    window_loss,
)
from gateway.media.payload import parse_vp8_descriptor, vp8_is_keyframe
from gateway.media.rtp import RtpPacket, find_extension, payload_offset
from gateway.media.twcc import read_transport_seq


def test_layers_are_a_720p_camera_at_150_500_1500_kbits() -> None:
    assert [(x.rid, x.height, x.bitrate) for x in LAYERS] == [
        ("q", 180, 150_000),
        ("h", 360, 500_000),
        ("f", 720, 1_500_000),
    ]
    assert [x.packet_rate for x in LAYERS] == [30, 60, 180]


def test_one_byte_extension_block_is_padded_and_parsed_back() -> None:
    block = one_byte_extensions([(EXT_MID_ID, b"1"), (EXT_TRANSPORT_CC_ID, b"\x01\x02")])
    assert block[:2] == b"\xbe\xde" and len(block) % 4 == 0


def test_video_frames_carry_mid_rid_transport_seq_and_a_valid_vp8_descriptor() -> None:
    layer = LAYERS[-1]
    ext = [(EXT_MID_ID, b"1"), (EXT_RID_ID, b"f")]
    sender = TrackSender(1234, 96, 3000, ext, EXT_TRANSPORT_CC_ID, layer, seed=7)
    key = sender.video_frame(0.0, 100)
    assert len(key) == layer.packets_per_frame(keyframe=True) > layer.packets_per_frame()
    for n, data in enumerate(key):
        packet = RtpPacket.parse(data)
        assert packet.ssrc == 1234 and packet.payload_type == 96
        assert packet.marker == (n == len(key) - 1)
        assert find_extension(data, EXT_RID_ID) == b"f"
        assert find_extension(data, EXT_MID_ID) == b"1"
        assert read_transport_seq(data, EXT_TRANSPORT_CC_ID) == 100 + n
        descriptor = parse_vp8_descriptor(data, payload_offset(data))
        assert descriptor.picture_id == 7
        assert descriptor.start_of_partition == (n == 0)
    assert vp8_is_keyframe(key[0], payload_offset(key[0]))
    delta = sender.video_frame(1 / 30, 200)
    assert len(delta) == layer.packets_per_frame()
    assert not vp8_is_keyframe(delta[0], payload_offset(delta[0]))
    assert parse_vp8_descriptor(delta[0], payload_offset(delta[0])).picture_id == 8
    seqs = [RtpPacket.parse(p).sequence_number for p in key + delta]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]


def test_a_pli_gets_a_keyframe_at_most_twice_a_second() -> None:
    sender = TrackSender(1, 96, 3000, [], 0, LAYERS[0])
    sender.video_frame(0.0, 0)  # the first frame is a key frame
    sender.keyframe_wanted = True
    soon = sender.video_frame(0.1, 0)[0]
    assert not vp8_is_keyframe(soon, payload_offset(soon))
    later = sender.video_frame(0.6, 0)[0]
    assert vp8_is_keyframe(later, payload_offset(later))
    assert not sender.keyframe_wanted


def test_stream_counter_loss_over_a_window_across_the_wrap() -> None:
    counter = StreamCounter()
    for seq in (65530, 65531, 65532):
        counter.count(9, seq)
    before = counter.snapshot()
    for seq in (65534, 65535, 0, 2, 1, 3):  # 65533 lost, 1 and 2 reordered
        counter.count(9, seq)
    received, expected = window_loss(before, counter.snapshot())
    assert (received, expected) == (6, 7)


def test_the_layer_pattern_mixes_high_and_low() -> None:
    choices = [wants_high(s, f"track-{t}") for s in range(8) for t in range(8)]
    assert 0.3 < sum(choices) / len(choices) < 0.7
