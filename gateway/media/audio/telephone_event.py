"""RFC 4733 telephone-events (DTMF over RTP): payload format, a digit detector and a sender.

The detector keys each event by its RTP timestamp (the event's start, RFC 4733 §2.5.1.2) and
reports a digit once: on its first end-bit packet (the two retransmissions of the end packet
are ignored), or, when every end packet was lost, as soon as a new event timestamp starts.
It never relies on the RTP marker bit, which real phones get wrong.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from ..rtp import RtpPacket

TELEPHONE_EVENT_PAYLOAD_TYPE = 101  # the usual dynamic number; the SDP decides
EVENTS = "0123456789*#ABCD"  # event codes 0-15 (RFC 4733 §3.2); 16 is flash
FLASH = 16

_PAYLOAD = struct.Struct("!BBH")
_END_RETRANSMISSIONS = 3  # RFC 4733 §2.5.1.4


class TelephoneEventError(ValueError):
    """The payload is not an RFC 4733 event."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte event payload (RFC 4733 §2.3)."""

    event: int
    end: bool
    volume: int  # 0..63, as -dBm0
    duration: int  # in RTP timestamp units, since the event's timestamp

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise TelephoneEventError(f"telephone-event payload of {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        return _PAYLOAD.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )


def event_name(event: int) -> str:
    """'0'-'9', '*', '#', 'A'-'D', 'flash', or the number for other events."""
    if event < len(EVENTS):
        return EVENTS[event]
    return "flash" if event == FLASH else str(event)


def event_code(digit: str) -> int:
    """The event code of a DTMF digit ('0'-'9', '*', '#', 'A'-'D')."""
    index = EVENTS.find(digit.upper())
    if len(digit) != 1 or index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


@dataclass(frozen=True, slots=True)
class Digit:
    """A detected DTMF digit. `ended` is False when it was inferred because its end was lost."""

    digit: str
    timestamp: int  # the event's RTP timestamp
    duration: int  # RTP timestamp units, as far as seen
    ended: bool


class DtmfDetector:
    """Turns one stream's telephone-event packets into digits, each reported once."""

    def __init__(self, remembered_events: int = 16) -> None:
        self._current: tuple[int, TelephoneEvent] | None = None  # (timestamp, latest packet)
        self._reported: deque[int] = deque(maxlen=remembered_events)

    def feed(self, packet: RtpPacket) -> list[Digit]:
        """Digits completed by this packet (usually none, at most two)."""
        return self.feed_payload(packet.timestamp, packet.payload)

    def feed_payload(self, timestamp: int, payload: bytes) -> list[Digit]:
        try:
            event = TelephoneEvent.parse(payload)
        except TelephoneEventError:
            return []
        if timestamp in self._reported:
            return []  # an end retransmission, or a late packet of a reported event
        digits: list[Digit] = []
        if self._current is not None and self._current[0] != timestamp:
            digits += self.flush()  # a new event started: the previous one lost its end packets
        current = self._current
        if current is None or event.duration >= current[1].duration or event.end:
            self._current = (timestamp, event)
        if event.end:
            digits += self.flush()
        return digits

    def flush(self) -> list[Digit]:
        """Report the event in progress, if any (call end, or an inter-digit timeout)."""
        if self._current is None:
            return []
        timestamp, event = self._current
        self._current = None
        self._reported.append(timestamp)
        return [Digit(event_name(event.event), timestamp, event.duration, event.end)]


def dtmf_packets(
    digit: str,
    *,
    ssrc: int,
    sequence_number: int,
    timestamp: int,
    payload_type: int = TELEPHONE_EVENT_PAYLOAD_TYPE,
    duration_ms: int = 100,
    volume: int = 10,
    clock_rate: int = 8000,
    packet_ms: int = 20,
) -> list[RtpPacket]:
    """The packets that send one digit (RFC 4733 §2.5.1): send one every `packet_ms`.

    The first carries the marker bit; each update repeats the event timestamp with a growing
    duration; the final duration goes out three times with the end bit, each with its own
    sequence number (SRTP replay protection would drop a reused one).
    """
    code = event_code(digit)
    step = clock_rate * packet_ms // 1000
    total = clock_rate * duration_ms // 1000
    durations = list(range(step, total, step)) + [total] * _END_RETRANSMISSIONS
    packets = []
    for index, duration in enumerate(durations):
        end = index >= len(durations) - _END_RETRANSMISSIONS
        packets.append(
            RtpPacket(
                payload_type=payload_type,
                sequence_number=(sequence_number + index) & 0xFFFF,
                timestamp=timestamp & 0xFFFFFFFF,
                ssrc=ssrc,
                marker=index == 0,
                payload=TelephoneEvent(code, end, volume, duration).serialize(),
            )
        )
    return packets
