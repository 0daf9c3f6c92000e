"""RTCP compound packets: SR, RR, SDES, BYE (RFC 3550), generic NACK (RFC 4585), PLI, FIR (RFC 5104),
REMB (draft-alvestrand-rmcat-remb) and transport-cc (kept raw, for passthrough)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205  # RFC 4585 transport layer feedback
RTCP_PSFB = 206  # RFC 4585 payload-specific feedback

RTPFB_NACK = 1
RTPFB_TRANSPORT_CC = 15  # draft-holmer-rmcat-transport-wide-cc-extensions
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15  # application layer feedback; REMB lives here

SDES_CNAME = 1

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_TWO_U32 = struct.Struct("!II")
_SR = struct.Struct("!IQIII")
_REPORT = struct.Struct("!IIIIII")
_NACK_FCI = struct.Struct("!HH")

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


class RtcpError(ValueError):
    """The bytes are not a well-formed RTCP compound packet."""


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4) for a Unix time in seconds."""
    seconds = int(unix_time) + NTP_EPOCH_OFFSET
    fraction = int((unix_time % 1.0) * (1 << 32)) & 0xFFFFFFFF
    return (seconds & 0xFFFFFFFF) << 32 | fraction


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise RtcpError("RTCP body not a multiple of 32 bits")
    return _HEADER.pack(0x80 | count, packet_type, len(body) // 4) + body


@dataclass(slots=True)
class RtcpReceptionReport:
    """One report block of an SR or RR (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0  # cumulative, signed 24 bits
    highest_sequence: int = 0  # extended highest sequence number received
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def serialize(self) -> bytes:
        lost = self.packets_lost & 0xFFFFFF
        return _REPORT.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> RtcpReceptionReport:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


def _parse_reports(data: bytes, offset: int, count: int) -> list[RtcpReceptionReport]:
    if offset + 24 * count > len(data):
        raise RtcpError("RTCP report blocks truncated")
    return [RtcpReceptionReport.parse(data, offset + 24 * i) for i in range(count)]


@dataclass(slots=True)
class RtcpSenderReport:
    """SR (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int = 0
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    reports: list[RtcpReceptionReport] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = _SR.pack(
            self.ssrc,
            self.ntp_timestamp,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        ) + b"".join(r.serialize() for r in self.reports)
        return _header(len(self.reports), RTCP_SR, body)


@dataclass(slots=True)
class RtcpReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: list[RtcpReceptionReport] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = _U32.pack(self.ssrc) + b"".join(r.serialize() for r in self.reports)
        return _header(len(self.reports), RTCP_RR, body)


@dataclass(slots=True)
class RtcpSdesChunk:
    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)  # (type, text), e.g. CNAME = 1


@dataclass(slots=True)
class RtcpSdes:
    """SDES (RFC 3550 §6.5)."""

    chunks: list[RtcpSdesChunk] = field(default_factory=list)

    def serialize(self) -> bytes:
        parts = []
        for chunk in self.chunks:
            data = _U32.pack(chunk.ssrc) + b"".join(
                bytes((kind, len(text))) + text for kind, text in chunk.items
            )
            # the item list ends with at least one null octet, then pads to 32 bits
            data += bytes(4 - len(data) % 4)
            parts.append(data)
        return _header(len(self.chunks), RTCP_SDES, b"".join(parts))


@dataclass(slots=True)
class RtcpBye:
    """BYE (RFC 3550 §6.6)."""

    sources: list[int] = field(default_factory=list)
    reason: bytes | None = None

    def serialize(self) -> bytes:
        body = b"".join(_U32.pack(s) for s in self.sources)
        if self.reason is not None:
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _header(len(self.sources), RTCP_BYE, body)


@dataclass(slots=True)
class RtcpGenericNack:
    """Generic NACK (RFC 4585 §6.2.1); `lost` lists the sequence numbers, in PID/BLP order."""

    sender_ssrc: int
    media_ssrc: int
    lost: list[int] = field(default_factory=list)

    def serialize(self) -> bytes:
        fci = []
        pending = list(dict.fromkeys(s & 0xFFFF for s in self.lost))
        while pending:
            pid = pending.pop(0)
            blp = 0
            rest = []
            for seq in pending:
                distance = (seq - pid) & 0xFFFF
                if 1 <= distance <= 16:
                    blp |= 1 << (distance - 1)
                else:
                    rest.append(seq)
            pending = rest
            fci.append(_NACK_FCI.pack(pid, blp))
        body = _TWO_U32.pack(self.sender_ssrc, self.media_ssrc) + b"".join(fci)
        return _header(RTPFB_NACK, RTCP_RTPFB, body)


@dataclass(slots=True)
class RtcpTransportCc:
    """Transport-wide congestion control feedback (RTPFB FMT 15); the FCI is kept as bytes."""

    sender_ssrc: int
    media_ssrc: int
    fci: bytes = b""

    def serialize(self) -> bytes:
        body = _TWO_U32.pack(self.sender_ssrc, self.media_ssrc) + self.fci
        return _header(RTPFB_TRANSPORT_CC, RTCP_RTPFB, body)


@dataclass(slots=True)
class RtcpPli:
    """Picture Loss Indication (RFC 4585 §6.3.1)."""

    sender_ssrc: int
    media_ssrc: int

    def serialize(self) -> bytes:
        return _header(PSFB_PLI, RTCP_PSFB, _TWO_U32.pack(self.sender_ssrc, self.media_ssrc))


@dataclass(slots=True)
class RtcpFir:
    """Full Intra Request (RFC 5104 §4.3.1); entries are (SSRC, command sequence number)."""

    sender_ssrc: int
    media_ssrc: int = 0  # RFC 5104: SHALL be 0
    entries: list[tuple[int, int]] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = _TWO_U32.pack(self.sender_ssrc, self.media_ssrc) + b"".join(
            _TWO_U32.pack(ssrc, (seq & 0xFF) << 24) for ssrc, seq in self.entries
        )
        return _header(PSFB_FIR, RTCP_PSFB, body)


@dataclass(slots=True)
class RtcpRemb:
    """Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb §2.2), in bits/s."""

    sender_ssrc: int
    bitrate: int
    ssrcs: list[int] = field(default_factory=list)
    media_ssrc: int = 0

    def serialize(self) -> bytes:
        mantissa, exponent = self.bitrate, 0
        while mantissa > 0x3FFFF:
            mantissa >>= 1
            exponent += 1
        body = (
            _TWO_U32.pack(self.sender_ssrc, self.media_ssrc)
            + b"REMB"
            + _U32.pack(len(self.ssrcs) << 24 | exponent << 18 | mantissa)
            + b"".join(_U32.pack(s) for s in self.ssrcs)
        )
        return _header(PSFB_AFB, RTCP_PSFB, body)


@dataclass(slots=True)
class RtcpUnknown:
    """Any other packet (APP, XR, unknown feedback), kept as is for passthrough."""

    packet_type: int
    count: int
    body: bytes

    def serialize(self) -> bytes:
        return _header(self.count, self.packet_type, self.body)


RtcpPacket = (
    RtcpSenderReport
    | RtcpReceiverReport
    | RtcpSdes
    | RtcpBye
    | RtcpGenericNack
    | RtcpTransportCc
    | RtcpPli
    | RtcpFir
    | RtcpRemb
    | RtcpUnknown
)


def serialize_rtcp(packets: list[RtcpPacket]) -> bytes:
    """One compound packet (RFC 3550 §6.1) from its parts, in the given order."""
    return b"".join(p.serialize() for p in packets)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Every packet of a compound RTCP packet; raises RtcpError on a malformed one."""
    packets: list[RtcpPacket] = []
    offset, size = 0, len(data)
    while offset < size:
        if offset + 4 > size:
            raise RtcpError("RTCP header truncated")
        b0, packet_type, words = _HEADER.unpack_from(data, offset)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6}, expected 2")
        end = offset + 4 + 4 * words
        if end > size:
            raise RtcpError("RTCP packet truncated")
        body_end = end
        if b0 & 0x20:  # padding, only allowed on the last packet
            padding = data[end - 1]
            if padding == 0 or padding > 4 * words:
                raise RtcpError("RTCP padding invalid")
            body_end -= padding
        body = bytes(data[offset + 4 : body_end])
        packets.append(_parse_one(b0 & 0x1F, packet_type, body))
        offset = end
    return packets


def _parse_one(count: int, packet_type: int, body: bytes) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if len(body) < 24:
            raise RtcpError("SR truncated")
        ssrc, ntp, rtp_ts, packets, octets = _SR.unpack_from(body, 0)
        return RtcpSenderReport(ssrc, ntp, rtp_ts, packets, octets, _parse_reports(body, 24, count))
    if packet_type == RTCP_RR:
        if len(body) < 4:
            raise RtcpError("RR truncated")
        return RtcpReceiverReport(_U32.unpack_from(body, 0)[0], _parse_reports(body, 4, count))
    if packet_type == RTCP_SDES:
        return RtcpSdes(_parse_sdes_chunks(body, count))
    if packet_type == RTCP_BYE:
        if len(body) < 4 * count:
            raise RtcpError("BYE truncated")
        sources = [_U32.unpack_from(body, 4 * i)[0] for i in range(count)]
        reason = None
        if len(body) > 4 * count:
            length = body[4 * count]
            reason = body[4 * count + 1 : 4 * count + 1 + length]
        return RtcpBye(sources, reason)
    if packet_type in (RTCP_RTPFB, RTCP_PSFB):
        if len(body) < 8:
            raise RtcpError("RTCP feedback truncated")
        sender, media = _TWO_U32.unpack_from(body, 0)
        fci = body[8:]
        if packet_type == RTCP_RTPFB:
            if count == RTPFB_NACK:
                return RtcpGenericNack(sender, media, _parse_nack_fci(fci))
            if count == RTPFB_TRANSPORT_CC:
                return RtcpTransportCc(sender, media, fci)
        else:
            if count == PSFB_PLI:
                return RtcpPli(sender, media)
            if count == PSFB_FIR:
                entries = [
                    (_U32.unpack_from(fci, i)[0], fci[i + 4]) for i in range(0, len(fci) - 7, 8)
                ]
                return RtcpFir(sender, media, entries)
            if count == PSFB_AFB and fci[:4] == b"REMB" and len(fci) >= 8:
                word = _U32.unpack_from(fci, 4)[0]
                num = word >> 24
                bitrate = (word & 0x3FFFF) << ((word >> 18) & 0x3F)
                if len(fci) < 8 + 4 * num:
                    raise RtcpError("REMB truncated")
                ssrcs = [_U32.unpack_from(fci, 8 + 4 * i)[0] for i in range(num)]
                return RtcpRemb(sender, bitrate, ssrcs, media)
    return RtcpUnknown(packet_type, count, body)


def _parse_nack_fci(fci: bytes) -> list[int]:
    lost = []
    for i in range(0, len(fci) - 3, 4):
        pid, blp = _NACK_FCI.unpack_from(fci, i)
        lost.append(pid)
        for bit in range(16):
            if blp & (1 << bit):
                lost.append((pid + bit + 1) & 0xFFFF)
    return lost


def _parse_sdes_chunks(body: bytes, count: int) -> list[RtcpSdesChunk]:
    chunks = []
    i = 0
    for _ in range(count):
        if i + 4 > len(body):
            raise RtcpError("SDES chunk truncated")
        chunk = RtcpSdesChunk(_U32.unpack_from(body, i)[0])
        i += 4
        while i < len(body) and body[i] != 0:
            if i + 2 > len(body):
                raise RtcpError("SDES item truncated")
            kind, length = body[i], body[i + 1]
            chunk.items.append((kind, body[i + 2 : i + 2 + length]))
            i += 2 + length
        i += 4 - i % 4  # the null terminator and padding up to the next 32-bit boundary
        chunks.append(chunk)
    return chunks
