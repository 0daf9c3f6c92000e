"""RTP packets (RFC 3550) and header extensions (RFC 8285): parse, serialize, rewrite in place.

`RtpPacket` is the one RTP packet type of the project, for code that wants the whole packet.
The hot path does not build it: the module-level helpers read or rewrite single header fields
on `bytes` / `bytearray` with `struct`, without a full parse.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
ONE_BYTE_PROFILE = 0xBEDE  # RFC 8285 §4.2
TWO_BYTE_PROFILE = 0x1000  # RFC 8285 §4.3: 0x100 followed by 4 "appbits" (we send 0)
_TWO_BYTE_MASK = 0xFFF0

_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EXT_HEADER = struct.Struct("!HH")

Buffer = bytes | bytearray


class RtpError(ValueError):
    """The bytes are not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1) with its RFC 8285 header extensions as {id: data}."""

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extensions: dict[int, bytes] = field(default_factory=dict)
    # 0: pick one-byte or two-byte form automatically; ONE_BYTE_PROFILE / TWO_BYTE_PROFILE: force
    # it; anything else: an RFC 3550 §5.3.1 extension kept raw in `extension_data`.
    extension_profile: int = 0
    extension_data: bytes = b""
    payload: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: Buffer) -> RtpPacket:
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet too short ({size} bytes)")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        cc = b0 & 0x0F
        offset = RTP_HEADER_SIZE + 4 * cc
        if offset > size:
            raise RtpError("RTP CSRC list truncated")
        csrc = [_U32.unpack_from(data, RTP_HEADER_SIZE + 4 * i)[0] for i in range(cc)]
        packet = cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            csrc=csrc,
        )
        if b0 & 0x10:
            if offset + 4 > size:
                raise RtpError("RTP extension header truncated")
            profile, words = _EXT_HEADER.unpack_from(data, offset)
            start = offset + 4
            offset = start + 4 * words
            if offset > size:
                raise RtpError("RTP extension truncated")
            packet.extension_profile = profile
            body = bytes(data[start:offset])
            if profile == ONE_BYTE_PROFILE or profile & _TWO_BYTE_MASK == TWO_BYTE_PROFILE:
                packet.extensions = _parse_extensions(body, profile)
            else:
                packet.extension_data = body
        end = size
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or offset + padding > size:
                raise RtpError("RTP padding length invalid")
            packet.padding_size = padding
            end -= padding
        packet.payload = bytes(data[offset:end])
        return packet

    def serialize(self) -> bytes:
        b0 = RTP_VERSION << 6 | len(self.csrc)
        extension = b""
        if self.extensions or self.extension_data:
            b0 |= 0x10
            extension = self._serialize_extensions()
        padding = b""
        if self.padding_size:
            b0 |= 0x20
            padding = bytes(self.padding_size - 1) + bytes((self.padding_size,))
        csrc = b"".join([_U32.pack(c) for c in self.csrc]) if self.csrc else b""
        head = _HEADER.pack(
            b0,
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence_number,
            self.timestamp,
            self.ssrc,
        )
        return head + csrc + extension + self.payload + padding

    def _serialize_extensions(self) -> bytes:
        profile = self.extension_profile
        body = bytearray()
        if (
            self.extension_data
            and profile not in (0, ONE_BYTE_PROFILE)
            and (profile & _TWO_BYTE_MASK != TWO_BYTE_PROFILE)
        ):
            body += self.extension_data
        else:
            if profile == 0:
                one_byte = all(
                    1 <= i <= 14 and 1 <= len(v) <= 16 for i, v in self.extensions.items()
                )
                profile = ONE_BYTE_PROFILE if one_byte else TWO_BYTE_PROFILE
            for ext_id, value in sorted(self.extensions.items()):
                if profile == ONE_BYTE_PROFILE:
                    body.append(ext_id << 4 | (len(value) - 1))
                else:
                    body += bytes((ext_id, len(value)))
                body += value
        body += bytes(-len(body) % 4)
        return _EXT_HEADER.pack(profile, len(body) // 4) + body


def _parse_extensions(body: bytes, profile: int) -> dict[int, bytes]:
    extensions: dict[int, bytes] = {}
    i, n = 0, len(body)
    if profile == ONE_BYTE_PROFILE:
        while i < n:
            b = body[i]
            if b == 0:  # padding
                i += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:  # reserved: stop processing (RFC 8285 §4.2)
                break
            length = (b & 0x0F) + 1
            extensions[ext_id] = body[i + 1 : i + 1 + length]
            i += 1 + length
    else:
        while i < n:
            ext_id = body[i]
            if ext_id == 0:
                i += 1
                continue
            if i + 1 >= n:
                break
            length = body[i + 1]
            extensions[ext_id] = body[i + 2 : i + 2 + length]
            i += 2 + length
    return extensions


# --- hot-path helpers on raw packets -------------------------------------------------------


def is_rtp(data: Buffer) -> bool:
    """RFC 7983 / RFC 5761: first byte 128..191 and not an RTCP packet type 192..223."""
    return len(data) >= RTP_HEADER_SIZE and data[0] >> 6 == 2 and not 192 <= data[1] <= 223


def get_payload_type(packet: Buffer) -> int:
    return packet[1] & 0x7F


def get_marker(packet: Buffer) -> bool:
    return bool(packet[1] & 0x80)


def get_sequence_number(packet: Buffer) -> int:
    return int(_U16.unpack_from(packet, 2)[0])


def get_timestamp(packet: Buffer) -> int:
    return int(_U32.unpack_from(packet, 4)[0])


def get_ssrc(packet: Buffer) -> int:
    return int(_U32.unpack_from(packet, 8)[0])


def set_payload_type(packet: bytearray, payload_type: int) -> None:
    packet[1] = (packet[1] & 0x80) | payload_type


def set_sequence_number(packet: bytearray, sequence_number: int) -> None:
    _U16.pack_into(packet, 2, sequence_number & 0xFFFF)


def set_timestamp(packet: bytearray, timestamp: int) -> None:
    _U32.pack_into(packet, 4, timestamp & 0xFFFFFFFF)


def set_ssrc(packet: bytearray, ssrc: int) -> None:
    _U32.pack_into(packet, 8, ssrc)


def rewrite_header(
    packet: bytearray, payload_type: int, sequence_number: int, timestamp: int, ssrc: int
) -> None:
    """Rewrite PT (keeping the marker bit), sequence number, timestamp and SSRC with one pack."""
    _HEADER.pack_into(
        packet,
        0,
        packet[0],
        (packet[1] & 0x80) | payload_type,
        sequence_number & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


def extension_bounds(packet: Buffer) -> tuple[int, int, int]:
    """(profile, start, end) of the header extension body; (0, end, end) when there is none."""
    offset = RTP_HEADER_SIZE + 4 * (packet[0] & 0x0F)
    if not packet[0] & 0x10:
        return 0, offset, offset
    if offset + 4 > len(packet):
        raise RtpError("RTP extension header truncated")
    profile, words = _EXT_HEADER.unpack_from(packet, offset)
    start = offset + 4
    end = start + 4 * words
    if end > len(packet):
        raise RtpError("RTP extension truncated")
    return profile, start, end


def payload_offset(packet: Buffer) -> int:
    """Where the payload starts: after the fixed header, CSRCs and header extension."""
    return extension_bounds(packet)[2]


def payload_end(packet: Buffer) -> int:
    """Where the payload ends: before RTP padding (RFC 3550 §5.1, P bit)."""
    if packet[0] & 0x20:
        return len(packet) - packet[-1]
    return len(packet)


def find_extension(packet: Buffer, ext_id: int) -> bytes | None:
    """The data of RFC 8285 element `ext_id`, or None (also when it overruns the extension block);
    walks the elements without a full parse."""
    if not packet[0] & 0x10 or ext_id == 0:
        return None
    profile, i, end = extension_bounds(packet)
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = packet[i]
            if b == 0:
                i += 1
                continue
            element = b >> 4
            if element == 15:
                return None
            length = (b & 0x0F) + 1
            if element == ext_id:
                return None if i + 1 + length > end else bytes(packet[i + 1 : i + 1 + length])
            i += 1 + length
    elif profile & _TWO_BYTE_MASK == TWO_BYTE_PROFILE:
        while i + 1 < end:
            element = packet[i]
            if element == 0:
                i += 1
                continue
            length = packet[i + 1]
            if element == ext_id:
                return None if i + 2 + length > end else bytes(packet[i + 2 : i + 2 + length])
            i += 2 + length
    return None


def rewrite_extension_ids(packet: bytearray, id_map: bytes) -> None:
    """Renumber RFC 8285 elements in place: element `i` becomes `id_map[i]`; 0 strips it.

    A stripped element is overwritten with zero bytes, which RFC 8285 §4.1 defines as padding
    between elements, so the packet never changes size. `id_map` has 256 entries.
    """
    if not packet[0] & 0x10:
        return
    profile, i, end = extension_bounds(packet)
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = packet[i]
            if b == 0:
                i += 1
                continue
            element = b >> 4
            if element == 15:
                packet[i:end] = bytes(end - i)
                return
            length = (b & 0x0F) + 1
            new = id_map[element]
            if new == 0 or new > 14:
                stop = min(i + 1 + length, end)
                packet[i:stop] = bytes(stop - i)
            elif new != element:
                packet[i] = new << 4 | (b & 0x0F)
            i += 1 + length
    elif profile & _TWO_BYTE_MASK == TWO_BYTE_PROFILE:
        while i + 1 < end:
            element = packet[i]
            if element == 0:
                i += 1
                continue
            length = packet[i + 1]
            new = id_map[element]
            if new == 0:
                stop = min(i + 2 + length, end)
                packet[i:stop] = bytes(stop - i)
            elif new != element:
                packet[i] = new
            i += 2 + length
