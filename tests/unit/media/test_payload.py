"""Keyframe detection on payload vectors laid out as in RFC 7741 (VP8) and RFC 6184 (H.264); Opus TOC."""

from gateway.media.payload import (
    h264_is_keyframe,
    h264_nal_types,
    keyframe_detector,
    parse_opus_toc,
    parse_vp8_descriptor,
    vp8_fields,
    vp8_is_keyframe,
    vp8_write_fields,
)

# X=1 S=1 PID=0 | I=1 L=1 T=1 | M=1 picture id 0x1234 (15 bits) | TL0PICIDX 5 | TID 2, Y=1 |
# VP8 payload header first byte with P=0 (key frame)
VP8_KEYFRAME = bytes.fromhex("90e0923405a010") + b"\x02\x00\x9d\x01\x2a"
VP8_INTERFRAME = bytes.fromhex("90e09235060011") + b"\x00\x00"
VP8_CONTINUATION = bytes.fromhex("80e0923405a0") + b"\x10\x00"  # S=0
VP8_MINIMAL_KEYFRAME = bytes.fromhex("1010")  # no X, S=1, P=0
VP8_SECOND_PARTITION = bytes.fromhex("1110")  # PID=1


def test_vp8_keyframe_detected() -> None:
    assert vp8_is_keyframe(VP8_KEYFRAME)
    assert vp8_is_keyframe(VP8_MINIMAL_KEYFRAME)


def test_vp8_interframe_and_continuation_are_not_keyframes() -> None:
    assert not vp8_is_keyframe(VP8_INTERFRAME)
    assert not vp8_is_keyframe(VP8_CONTINUATION)
    assert not vp8_is_keyframe(VP8_SECOND_PARTITION)
    assert not vp8_is_keyframe(b"")


def test_vp8_detection_within_packet_bounds() -> None:
    packet = b"\x00" * 12 + VP8_KEYFRAME
    assert vp8_is_keyframe(packet, 12, len(packet))
    assert not vp8_is_keyframe(packet, 12, 16)  # truncated before the payload header


def test_vp8_descriptor_fields() -> None:
    descriptor = parse_vp8_descriptor(VP8_KEYFRAME)
    assert descriptor.start_of_partition and descriptor.partition_id == 0
    assert descriptor.picture_id == 0x1234
    assert descriptor.tl0_pic_idx == 5
    assert descriptor.temporal_id == 2 and descriptor.layer_sync
    assert descriptor.size == 6


H264_IDR = bytes([0x65, 0x88, 0x84])  # single NAL unit, type 5
H264_NON_IDR = bytes([0x41, 0x9A, 0x00])  # type 1
# STAP-A: size 3 SPS (0x67...), size 2 PPS (0x68...)
H264_STAP_A_SPS = bytes([0x78, 0x00, 0x03, 0x67, 0x42, 0x00, 0x00, 0x02, 0x68, 0xCE])
H264_STAP_A_NON_KEY = bytes([0x78, 0x00, 0x02, 0x06, 0x05, 0x00, 0x02, 0x41, 0x00])  # SEI + slice
H264_FU_A_IDR_START = bytes([0x7C, 0x85, 0x88])  # FU indicator type 28, S=1 type 5
H264_FU_A_IDR_MIDDLE = bytes([0x7C, 0x05, 0x00])  # S=0
H264_FU_A_NON_IDR_START = bytes([0x5C, 0x81, 0x00])  # S=1 type 1


def test_h264_idr_and_sps_are_keyframes() -> None:
    assert h264_is_keyframe(H264_IDR)
    assert h264_is_keyframe(H264_STAP_A_SPS)
    assert h264_is_keyframe(H264_FU_A_IDR_START)


def test_h264_other_payloads_are_not_keyframes() -> None:
    assert not h264_is_keyframe(H264_NON_IDR)
    assert not h264_is_keyframe(H264_STAP_A_NON_KEY)
    assert not h264_is_keyframe(H264_FU_A_IDR_MIDDLE)
    assert not h264_is_keyframe(H264_FU_A_NON_IDR_START)


def test_h264_nal_types() -> None:
    assert h264_nal_types(H264_STAP_A_SPS) == [7, 8]
    assert h264_nal_types(H264_FU_A_IDR_START) == [5]
    assert h264_nal_types(H264_FU_A_IDR_MIDDLE) == []


def test_detector_by_codec_name() -> None:
    assert keyframe_detector("vp8") is vp8_is_keyframe
    assert keyframe_detector("H264") is h264_is_keyframe
    assert keyframe_detector("opus")(b"\xfc", 0, 1)


def test_opus_toc() -> None:
    toc = parse_opus_toc(bytes([0xFC]))  # config 31 (CELT FB 20 ms), stereo, code 0
    assert toc.config == 31 and toc.stereo and toc.frame_count_code == 0
    assert toc.mode == "celt"
    assert toc.frame_duration == 0.020
    silk = parse_opus_toc(bytes([0x08]))  # config 1: SILK NB 20 ms, mono
    assert silk.mode == "silk" and silk.frame_duration == 0.020 and not silk.stereo


def test_vp8_fields_and_rewrite_keep_the_picture_id_width() -> None:
    long_id = bytearray(bytes.fromhex("90f0923405a3") + b"\x10\x02\x00")  # I, L, T, K; 15 bits
    fields = vp8_fields(long_id, 0, len(long_id))
    assert fields == (0x1234, 15, 2, 5, 4, 3, 5)
    vp8_write_fields(long_id, fields, 0x7FFF, 0xFF, 0x1F)
    descriptor = parse_vp8_descriptor(long_id)
    assert (descriptor.picture_id, descriptor.tl0_pic_idx, descriptor.key_idx) == (0x7FFF, 255, 31)
    assert (descriptor.temporal_id, descriptor.layer_sync, descriptor.size) == (2, True, 6)
    assert long_id[6:] == b"\x10\x02\x00"

    short_id = bytearray(bytes.fromhex("90c01207") + b"\x11")  # I, L; 7-bit picture id
    fields = vp8_fields(short_id, 0, len(short_id))
    assert fields == (0x12, 7, 2, 7, 3, -1, -1)
    vp8_write_fields(short_id, fields, 0x7F, 8, 0)
    assert bytes(short_id) == bytes.fromhex("90c07f08") + b"\x11"


def test_vp8_fields_absent_or_truncated() -> None:
    assert vp8_fields(b"\x10\x00", 0, 2) is None  # no X byte
    assert vp8_fields(b"\x90\x80\x92", 0, 3) is None  # 15-bit picture id cut short
    assert vp8_fields(b"", 0, 0) is None
    assert vp8_fields(b"\x90\x20\xa0\x10", 0, 4) == (-1, 0, -1, -1, -1, -1, -1)  # T only
