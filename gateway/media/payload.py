"""Codec payload inspection without decoding: VP8 keyframes (RFC 7741), H.264 IDR/SPS (RFC 6184), Opus TOC (RFC 6716);
and the in-place rewrite of the VP8 PictureID, TL0PICIDX and KEYIDX (RFC 7741 §4.2) that keeps
them continuous for a receiver across simulcast layer switches.

Detectors take the whole RTP packet plus the payload bounds, so the hot path never slices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Buffer = bytes | bytearray

# (packet, payload start, payload end) -> is this the first packet of a keyframe?
KeyframeDetector = Callable[[Buffer, int, int], bool]

H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_STAP_A = 24
H264_FU_A = 28


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """The VP8 payload descriptor (RFC 7741 §4.2), plus where the VP8 payload starts."""

    start_of_partition: bool  # S
    partition_id: int  # PID
    non_reference: bool  # N
    picture_id: int | None
    tl0_pic_idx: int | None
    temporal_id: int | None
    layer_sync: bool  # Y
    key_idx: int | None
    size: int  # descriptor length in bytes


def parse_vp8_descriptor(data: Buffer, start: int = 0, end: int | None = None) -> Vp8Descriptor:
    """Parse the descriptor at data[start:end]; raises ValueError when it is truncated."""
    if end is None:
        end = len(data)
    i = start
    if i >= end:
        raise ValueError("VP8 payload empty")
    b = data[i]
    i += 1
    picture_id = tl0 = tid = key_idx = None
    layer_sync = False
    if b & 0x80:  # X
        if i >= end:
            raise ValueError("VP8 descriptor truncated")
        x = data[i]
        i += 1
        if x & 0x80:  # I
            if i >= end:
                raise ValueError("VP8 descriptor truncated")
            if data[i] & 0x80:  # M: 15-bit picture id
                if i + 1 >= end:
                    raise ValueError("VP8 descriptor truncated")
                picture_id = (data[i] & 0x7F) << 8 | data[i + 1]
                i += 2
            else:
                picture_id = data[i] & 0x7F
                i += 1
        if x & 0x40:  # L
            if i >= end:
                raise ValueError("VP8 descriptor truncated")
            tl0 = data[i]
            i += 1
        if x & 0x30:  # T or K
            if i >= end:
                raise ValueError("VP8 descriptor truncated")
            t = data[i]
            i += 1
            if x & 0x20:
                tid = t >> 6
                layer_sync = bool(t & 0x20)
            if x & 0x10:
                key_idx = t & 0x1F
    return Vp8Descriptor(
        start_of_partition=bool(b & 0x10),
        partition_id=b & 0x0F,
        non_reference=bool(b & 0x20),
        picture_id=picture_id,
        tl0_pic_idx=tl0,
        temporal_id=tid,
        layer_sync=layer_sync,
        key_idx=key_idx,
        size=i - start,
    )


# The continuity fields of a VP8 payload descriptor, as `vp8_fields` finds them:
# (PictureID, its width in bits (7 or 15; 0 = absent), its offset in the packet,
#  TL0PICIDX, its offset, KEYIDX, the offset of the TID/Y/KEYIDX byte); -1 where absent.
Vp8Fields = tuple[int, int, int, int, int, int, int]


def vp8_fields(data: Buffer, start: int, end: int) -> Vp8Fields | None:
    """Where the PictureID, TL0PICIDX and KEYIDX of the descriptor at data[start:end] are, and
    their values; None when the descriptor has no extension byte or is truncated."""
    if end - start < 2 or not data[start] & 0x80:
        return None
    x = data[start + 1]
    i = start + 2
    picture_id = picture_bits = picture_pos = tl0 = tl0_pos = key_idx = key_pos = -1
    if x & 0x80:  # I
        if i >= end:
            return None
        picture_pos = i
        if data[i] & 0x80:  # M: 15 bits
            if i + 1 >= end:
                return None
            picture_id = (data[i] & 0x7F) << 8 | data[i + 1]
            picture_bits = 15
            i += 2
        else:
            picture_id = data[i]
            picture_bits = 7
            i += 1
    if x & 0x40:  # L
        if i >= end:
            return None
        tl0 = data[i]
        tl0_pos = i
        i += 1
    if x & 0x10:  # K (the TID/Y/KEYIDX byte is there for T or K)
        if i >= end:
            return None
        key_idx = data[i] & 0x1F
        key_pos = i
    return picture_id, max(picture_bits, 0), picture_pos, tl0, tl0_pos, key_idx, key_pos


def vp8_write_fields(
    packet: bytearray, fields: Vp8Fields, picture_id: int, tl0: int, key_idx: int
) -> None:
    """Write new PictureID / TL0PICIDX / KEYIDX values where `fields` (of this packet) found the
    old ones, keeping the PictureID's width; absent fields stay absent."""
    _, picture_bits, picture_pos, _, tl0_pos, _, key_pos = fields
    if picture_bits == 15:
        packet[picture_pos] = 0x80 | (picture_id >> 8) & 0x7F
        packet[picture_pos + 1] = picture_id & 0xFF
    elif picture_bits == 7:
        packet[picture_pos] = picture_id & 0x7F
    if tl0_pos >= 0:
        packet[tl0_pos] = tl0 & 0xFF
    if key_pos >= 0:
        packet[key_pos] = (packet[key_pos] & 0xE0) | (key_idx & 0x1F)


def vp8_is_keyframe(data: Buffer, start: int = 0, end: int | None = None) -> bool:
    """True on the first packet of a VP8 key frame: S=1, PID=0 and the P bit of the
    VP8 payload header (RFC 7741 §4.3) is 0."""
    if end is None:
        end = len(data)
    if start >= end:
        return False
    b = data[start]
    if not b & 0x10 or b & 0x0F:  # not the start of partition 0
        return False
    i = start + 1
    if b & 0x80:
        if i >= end:
            return False
        x = data[i]
        i += 1
        if x & 0x80:
            if i >= end:
                return False
            i += 2 if data[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    if i >= end:
        return False
    return not data[i] & 0x01


def h264_nal_types(data: Buffer, start: int = 0, end: int | None = None) -> list[int]:
    """NAL unit types carried by one RTP payload (RFC 6184 §5.6-5.8). For FU-A only the start
    fragment reports its type; middle and end fragments give []."""
    if end is None:
        end = len(data)
    if start >= end:
        return []
    nal_type = data[start] & 0x1F
    if nal_type == H264_STAP_A:
        types = []
        i = start + 1
        while i + 2 < end:
            size = data[i] << 8 | data[i + 1]
            if size == 0 or i + 2 + size > end:
                break
            types.append(data[i + 2] & 0x1F)
            i += 2 + size
        return types
    if nal_type == H264_FU_A:
        if start + 1 >= end:
            return []
        fu_header = data[start + 1]
        return [fu_header & 0x1F] if fu_header & 0x80 else []
    return [nal_type]


def h264_is_keyframe(data: Buffer, start: int = 0, end: int | None = None) -> bool:
    """True when the payload starts an IDR picture or carries an SPS (which precedes one)."""
    for nal_type in h264_nal_types(data, start, end):
        if nal_type in (H264_NAL_IDR, H264_NAL_SPS):
            return True
    return False


def _always(data: Buffer, start: int = 0, end: int | None = None) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class OpusToc:
    """The TOC byte of an Opus packet (RFC 6716 §3.1)."""

    config: int
    stereo: bool
    frame_count_code: int

    @property
    def mode(self) -> str:
        if self.config < 12:
            return "silk"
        return "hybrid" if self.config < 16 else "celt"

    @property
    def frame_duration(self) -> float:
        """Duration of one frame in seconds."""
        if self.config < 12:
            return (0.010, 0.020, 0.040, 0.060)[self.config % 4]
        if self.config < 16:
            return (0.010, 0.020)[self.config % 2]
        return (0.0025, 0.005, 0.010, 0.020)[self.config % 4]


def parse_opus_toc(data: Buffer, start: int = 0) -> OpusToc:
    b = data[start]
    return OpusToc(config=b >> 3, stereo=bool(b & 0x04), frame_count_code=b & 0x03)


def keyframe_detector(codec_name: str) -> KeyframeDetector:
    """The detector for a codec name as in SDP rtpmap; audio and unknown codecs never wait."""
    name = codec_name.upper()
    if name == "VP8":
        return vp8_is_keyframe
    if name == "H264":
        return h264_is_keyframe
    return _always


def needs_keyframe(codec_name: str) -> bool:
    """Whether switching to a new source of this codec waits for a keyframe (those we can see)."""
    return codec_name.upper() in ("VP8", "H264")
