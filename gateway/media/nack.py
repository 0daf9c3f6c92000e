"""Retransmission: the send history of a downtrack, RTX packets (RFC 4588 §4) and padding-only
probes built from it, and receive-side loss tracking that drives generic NACKs (RFC 4585 §6.2.1)
and reception reports (RFC 3550 §6.4.1, appendix A.3 and A.8)."""

from __future__ import annotations

import struct

from gateway.media.rtcp import RtcpReceptionReport
from gateway.media.rtp import payload_offset

MAX_NACK_GAP = 256  # a larger gap is not worth asking for: counted lost at once
RESET_GAP = 3000  # a jump this large is a new sequence space (RFC 3550 A.1 MAX_DROPOUT)
MISSING_LIMIT = 512
NACK_RETRIES = 3
NACK_RETRY_INTERVAL = 0.1
MISSING_TIMEOUT = 1.0
# A packet is resent at most once per this long, or per the subscriber's round trip when longer.
RESEND_INTERVAL = 0.1
MAX_RESEND_INTERVAL = 1.0
MAX_PADDING = 255  # padding bytes in one padding-only packet (what libwebrtc sends)

_HEADER = struct.Struct("!BBHII")


def rtx_packet(packet: bytes, rtx_ssrc: int, rtx_payload_type: int, rtx_seq: int) -> bytes:
    """The RFC 4588 §4 retransmission of a sent packet: same header (marker, timestamp, CSRCs,
    extensions), the RTX payload type, sequence number and SSRC, and the original sequence number
    (OSN) in the first two bytes of the payload, before the original payload."""
    start = payload_offset(packet)
    b0, b1, osn, timestamp, _ = _HEADER.unpack_from(packet, 0)
    header = bytearray(packet[:start])
    _HEADER.pack_into(
        header, 0, b0, (b1 & 0x80) | rtx_payload_type, rtx_seq & 0xFFFF, timestamp, rtx_ssrc
    )
    header += osn.to_bytes(2, "big")
    header += packet[start:]
    return bytes(header)


def padding_packet(
    rtx_ssrc: int,
    rtx_payload_type: int,
    rtx_seq: int,
    timestamp: int,
    padding: int = MAX_PADDING,
    transport_cc_id: int = 0,
) -> bytes:
    """A padding-only RTX packet (RFC 3550 §5.1 P bit): no payload, `padding` bytes (1-255) whose
    last one holds the count. With `transport_cc_id`, a one-byte header extension slot
    (RFC 8285 §4.2) for the transport-wide sequence number, which the transport fills."""
    padding = max(1, min(MAX_PADDING, padding))
    extension = b""
    b0 = 0xA0  # V=2, P=1
    if transport_cc_id:
        b0 |= 0x10
        extension = bytes([0xBE, 0xDE, 0, 1, transport_cc_id << 4 | 1, 0, 0, 0])
    header = _HEADER.pack(b0, rtx_payload_type, rtx_seq & 0xFFFF, timestamp & 0xFFFFFFFF, rtx_ssrc)
    return header + extension + bytes(padding - 1) + bytes([padding])


class SendHistory:
    """Ring buffer of the last `size` packets sent on a downtrack, by outgoing sequence number.

    `size` is a power of two; a slot remembers the sequence number it holds, so a request for a
    packet already overwritten returns None rather than a wrong packet. `resend` paces
    retransmissions: a packet is resent at most once per RESEND_INTERVAL however often it is
    NACKed.
    """

    __slots__ = ("mask", "packets", "sequence_numbers", "resent_sequence", "resent_time")

    def __init__(self, size: int = 1024) -> None:
        if size <= 0 or size & (size - 1) or size > 65536:
            raise ValueError("history size must be a power of two up to 65536")
        self.mask = size - 1
        self.packets: list[bytes | None] = [None] * size
        self.sequence_numbers = [-1] * size
        # the last resend of each slot: which sequence number, when
        self.resent_sequence = [-1] * size
        self.resent_time = [0.0] * size

    def put(self, sequence_number: int, packet: bytes) -> None:
        index = sequence_number & self.mask
        self.packets[index] = packet
        self.sequence_numbers[index] = sequence_number

    def get(self, sequence_number: int) -> bytes | None:
        index = sequence_number & self.mask
        if self.sequence_numbers[index] != sequence_number:
            return None
        return self.packets[index]

    def resend(
        self, sequence_number: int, now: float, interval: float = RESEND_INTERVAL
    ) -> bytes | None:
        """The packet to retransmit for a NACK, or None when it is no longer held or was
        resent less than INTERVAL ago (the subscriber's round trip: a resend still on its way
        is not sent again, as libwebrtc's RTPSender answers NACKs)."""
        index = sequence_number & self.mask
        if self.sequence_numbers[index] != sequence_number:
            return None
        if (
            self.resent_sequence[index] == sequence_number
            and now - self.resent_time[index] < interval
        ):
            return None
        self.resent_sequence[index] = sequence_number
        self.resent_time[index] = now
        return self.packets[index]

    def clear(self) -> None:
        size = self.mask + 1
        self.packets = [None] * size
        self.sequence_numbers = [-1] * size
        self.resent_sequence = [-1] * size
        self.resent_time = [0.0] * size


class ReceiveStream:
    """Sequence tracking for one incoming SSRC: loss, NACK candidates, jitter, RR contents."""

    __slots__ = (
        "ssrc",
        "clock_rate",
        "started",
        "base_seq",
        "max_seq",
        "cycles",
        "received",
        "expected_prior",
        "received_prior",
        "lost_reported",
        "transit",
        "jitter",
        "last_sr",
        "last_sr_time",
        "sr_ntp",
        "sr_rtp",
        "missing",
        "lost",
    )

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.started = False
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.lost_reported = 0
        self.transit = 0.0
        self.jitter = 0.0
        self.last_sr = 0  # middle 32 bits of the last SR's NTP timestamp
        self.last_sr_time = 0.0
        self.sr_ntp = 0  # last SR: full NTP timestamp and its RTP timestamp, for lip sync
        self.sr_rtp = 0
        # extended sequence number -> [first noticed, last NACKed, NACKs sent]
        self.missing: dict[int, list[float]] = {}
        self.lost = 0  # packets given up on (never recovered)

    def on_packet(self, seq: int, timestamp: int, now: float) -> tuple[bool, list[int]]:
        """Account one packet. Returns (forward it?, sequence numbers newly found missing).

        Only an exact duplicate of the newest packet, or a retransmission of a packet that is
        not missing, is refused.
        """
        if not self.started:
            self.started = True
            self.base_seq = self.max_seq = seq
            self.received = 1
            self.transit = now * self.clock_rate - timestamp
            return True, []
        delta = (seq - self.max_seq) & 0xFFFF
        newly_missing: list[int] = []
        if delta == 0:
            return False, newly_missing
        if delta < 0x8000:
            if delta > RESET_GAP:
                self._restart(seq, timestamp, now)
                return True, newly_missing
            if seq < self.max_seq:
                self.cycles += 0x10000
            extended_max = self.cycles + seq
            gap = delta - 1
            if gap:
                if gap > MAX_NACK_GAP:
                    self.lost += gap
                else:
                    for ext in range(extended_max - gap, extended_max):
                        self.missing[ext] = [now, now, 1.0]
                        newly_missing.append(ext & 0xFFFF)
                    if len(self.missing) > MISSING_LIMIT:
                        for ext in sorted(self.missing)[: len(self.missing) - MISSING_LIMIT]:
                            del self.missing[ext]
                            self.lost += 1
            self.max_seq = seq
        else:
            extended = self.cycles + seq
            if seq > self.max_seq:  # belongs to the previous cycle
                extended -= 0x10000
            if self.missing.pop(extended, None) is None:
                return False, newly_missing
        self.received += 1
        transit = now * self.clock_rate - timestamp
        d = abs(transit - self.transit)
        self.transit = transit
        self.jitter += (d - self.jitter) / 16.0
        return True, newly_missing

    def _restart(self, seq: int, timestamp: int, now: float) -> None:
        self.started = False
        self.missing.clear()
        self.cycles = 0
        self.received = self.expected_prior = self.received_prior = 0
        self.on_packet(seq, timestamp, now)

    def nack_due(self, now: float) -> list[int]:
        """Missing sequence numbers to ask for again; expired ones are counted in `lost`."""
        due = []
        for ext, entry in list(self.missing.items()):
            first, last, sent = entry
            if now - first > MISSING_TIMEOUT:
                del self.missing[ext]
                self.lost += 1
            elif sent < NACK_RETRIES and now - last >= NACK_RETRY_INTERVAL:
                entry[1] = now
                entry[2] = sent + 1
                due.append(ext & 0xFFFF)
        return due

    def on_sender_report(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        self.last_sr = (ntp >> 16) & 0xFFFFFFFF
        self.last_sr_time = now
        self.sr_ntp = ntp
        self.sr_rtp = rtp_timestamp

    def report(self, now: float) -> RtcpReceptionReport:
        """The report block for the next RR (RFC 3550 A.3), advancing the interval counters."""
        extended_max = self.cycles + self.max_seq
        expected = extended_max - self.base_seq + 1
        lost = max(-0x800000, min(0x7FFFFF, expected - self.received))
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = int((now - self.last_sr_time) * 65536) if self.last_sr else 0
        return RtcpReceptionReport(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            packets_lost=lost,
            highest_sequence=extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self.last_sr,
            dlsr=dlsr,
        )
