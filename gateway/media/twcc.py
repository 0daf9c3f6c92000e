"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

The wire format of section 3.1 (RTCP RTPFB, FMT 15: packet status chunks, receive deltas), the
transport-wide sequence number header extension of section 2 (RFC 8285 one-byte or two-byte form)
and `ArrivalRecorder`, the receive side that turns arrivals into feedback packets, as libwebrtc's
receivers send them to a media sender so its own congestion controller adapts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .rtcp import RTCP_RTPFB, RTPFB_TRANSPORT_CC, RtcpError
from .rtp import RtpError, find_extension

EXT_ID_NONE = 0

_FIXED = struct.Struct("!BBHIIHHI")  # RTCP header, SSRCs, base seq, status count, ref time + count
_U16 = struct.Struct("!H")
_I16 = struct.Struct("!h")

_TICKS_PER_SECOND = 4000  # receive deltas count 250 microseconds
_TICKS_PER_REFERENCE = 256  # the reference time counts 64 ms
_REFERENCE_MASK = 0xFFFFFF
_SMALL_MAX = 0xFF
_LARGE_MIN, _LARGE_MAX = -0x8000, 0x7FFF
_RUN_MAX = 0x1FFF

_NOT_RECEIVED, _SMALL, _LARGE = 0, 1, 2
# One feedback packet stays well inside one datagram (libwebrtc keeps a similar bound).
_MAX_FEEDBACK_BYTES = 1200


def read_transport_seq(packet: bytes | bytearray, ext_id: int) -> int | None:
    """The transport-wide sequence number (element `ext_id`) of an RTP packet, or None.

    Every read is bounds-checked: a truncated or malformed header extension gives None.
    """
    if ext_id <= 0 or len(packet) < 12:
        return None
    try:
        data = find_extension(packet, ext_id)
    except RtpError:
        return None
    if data is None or len(data) < 2:
        return None
    return data[0] << 8 | data[1]


@dataclass(frozen=True, slots=True)
class PacketResult:
    """One entry of a feedback: a transport-wide sequence number and when it arrived."""

    sequence_number: int  # 16 bits
    arrival: float | None  # seconds on the feedback's clock (reference time + deltas); None: lost


@dataclass(slots=True)
class TransportCcFeedback:
    """One transport-cc feedback packet (section 3.1); `results` are consecutive from the base."""

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    reference_time: int  # 24 bits, units of 64 ms
    feedback_count: int  # 8 bits
    results: list[PacketResult]

    def serialize(self) -> bytes:
        """A whole RTCP packet (RTPFB, FMT 15), padded to 32 bits with the P bit as libwebrtc does.

        Raises ValueError when a receive delta does not fit 16 bits or the results are too many.
        """
        count = len(self.results)
        if count > 0xFFFF:
            raise ValueError("transport-cc feedback covers at most 65535 packets")
        symbols = bytearray(count)
        deltas = bytearray()
        previous = (self.reference_time & _REFERENCE_MASK) * _TICKS_PER_REFERENCE
        for index, result in enumerate(self.results):
            if result.arrival is None:
                continue
            ticks = round(result.arrival * _TICKS_PER_SECOND)
            delta = ticks - previous
            previous = ticks
            if 0 <= delta <= _SMALL_MAX:
                symbols[index] = _SMALL
                deltas.append(delta)
            elif _LARGE_MIN <= delta <= _LARGE_MAX:
                symbols[index] = _LARGE
                deltas += _I16.pack(delta)
            else:
                raise ValueError(f"receive delta {delta * 250} us does not fit 16 bits")
        return _assemble(
            self.sender_ssrc,
            self.media_ssrc,
            self.base_sequence,
            self.reference_time,
            self.feedback_count,
            symbols,
            deltas,
        )


def _assemble(
    sender_ssrc: int,
    media_ssrc: int,
    base_sequence: int,
    reference_time: int,
    feedback_count: int,
    symbols: bytearray,
    deltas: bytearray,
) -> bytes:
    """The RTCP packet: header, status chunks for SYMBOLS, the encoded DELTAS, padding."""
    body = _encode_chunks(symbols) + deltas
    length = _FIXED.size + len(body)
    padding = -length % 4
    if padding:
        body += bytes(padding - 1) + bytes((padding,))
    header = _FIXED.pack(
        0xA0 + RTPFB_TRANSPORT_CC if padding else 0x80 + RTPFB_TRANSPORT_CC,
        RTCP_RTPFB,
        (length + padding) // 4 - 1,
        sender_ssrc & 0xFFFFFFFF,
        media_ssrc & 0xFFFFFFFF,
        base_sequence & 0xFFFF,
        len(symbols),
        (reference_time & _REFERENCE_MASK) << 8 | (feedback_count & 0xFF),
    )
    return header + body


def _encode_chunks(symbols: bytearray) -> bytes:
    """Status chunks for the symbols: run-length chunks for runs, else status vectors."""
    out = bytearray()
    i, count = 0, len(symbols)
    while i < count:
        symbol = symbols[i]
        run = 1
        while i + run < count and run < _RUN_MAX and symbols[i + run] == symbol:
            run += 1
        if run >= 14 or i + run == count:
            out += _U16.pack(symbol << 13 | run)
            i += run
            continue
        window = symbols[i : i + 14]
        if max(window) <= _SMALL:  # 1-bit vector: 14 symbols, received means a small delta
            word = 0x8000
            for position, value in enumerate(window):
                word |= value << (13 - position)
            i += 14
        else:  # 2-bit vector: 7 symbols
            word = 0xC000
            for position, value in enumerate(window[:7]):
                word |= value << (12 - 2 * position)
            i += 7
        out += _U16.pack(word)
    return bytes(out)


def parse_feedback(packet: bytes) -> TransportCcFeedback:
    """One transport-cc RTCP packet (header included); raises RtcpError on anything malformed.

    The work is bounded by the packet status count (at most 65535 results).
    """
    size = len(packet)
    if size < _FIXED.size:
        raise RtcpError("transport-cc feedback truncated")
    b0, packet_type, words, sender, media, base, count, reference = _FIXED.unpack_from(packet)
    if b0 >> 6 != 2 or packet_type != RTCP_RTPFB or b0 & 0x1F != RTPFB_TRANSPORT_CC:
        raise RtcpError("not a transport-cc feedback packet")
    end = 4 + 4 * words
    if end > size:
        raise RtcpError("transport-cc feedback truncated")
    if b0 & 0x20:
        padding = packet[end - 1]
        if padding == 0 or end - padding < _FIXED.size:
            raise RtcpError("RTCP padding invalid")
        end -= padding
    symbols = bytearray()
    offset = _FIXED.size
    while len(symbols) < count:
        if offset + 2 > end:
            raise RtcpError("transport-cc status chunks truncated")
        chunk = packet[offset] << 8 | packet[offset + 1]
        offset += 2
        if not chunk & 0x8000:
            run = min(chunk & _RUN_MAX, count - len(symbols))
            symbols += bytes((chunk >> 13 & 0x3,)) * run
        elif chunk & 0x4000:
            symbols += bytes(chunk >> (12 - 2 * p) & 0x3 for p in range(7))
        else:
            symbols += bytes(chunk >> (13 - p) & 0x1 for p in range(14))
    del symbols[count:]
    results: list[PacketResult] = []
    ticks = (reference >> 8) * _TICKS_PER_REFERENCE
    for index, symbol in enumerate(symbols):
        sequence = (base + index) & 0xFFFF
        if symbol == _NOT_RECEIVED:
            results.append(PacketResult(sequence, None))
            continue
        if symbol == _SMALL:
            if offset + 1 > end:
                raise RtcpError("transport-cc receive deltas truncated")
            ticks += packet[offset]
            offset += 1
        elif symbol == _LARGE:
            if offset + 2 > end:
                raise RtcpError("transport-cc receive deltas truncated")
            ticks += _I16.unpack_from(packet, offset)[0]
            offset += 2
        else:
            raise RtcpError("transport-cc reserved status symbol")
        results.append(PacketResult(sequence, ticks / _TICKS_PER_SECOND))
    return TransportCcFeedback(sender, media, base, reference >> 8, reference & 0xFF, results)


class ArrivalRecorder:
    """Receive side: records transport-wide sequence numbers as they arrive, then reports them.

    Memory is fixed: a ring of `max_packets` slots indexed by the unwrapped sequence number, so
    only the newest `max_packets` sequence numbers are ever reported. A packet that arrives after
    the feedback covering it was sent (reported lost: reordered past a feedback) takes the next
    feedback back to it, so that it is reported received after all, with what followed it
    reported again (libwebrtc's remote_estimator_proxy.cc moves its window start so); duplicates
    are ignored.
    """

    def __init__(self, sender_ssrc: int, max_packets: int = 4096) -> None:
        self.sender_ssrc = sender_ssrc
        self._size = min(max(1, max_packets), 0x8000)  # a feedback counts at most 65535
        self._sequences = [-1] * self._size  # unwrapped sequence number held by each slot
        self._ticks = [0] * self._size  # its arrival, in 250 us ticks
        self._highest = -1  # highest unwrapped sequence number seen; -1 before the first
        self._next_report = 0  # first unwrapped sequence number not yet reported
        self._feedback_count = 0

    def on_arrival(self, sequence_number: int, now: float) -> None:
        """Record one packet: its 16-bit transport-wide sequence number and arrival (seconds)."""
        highest = self._highest
        if highest < 0:
            unwrapped = (1 << 16) + (sequence_number & 0xFFFF)  # room for reordering below it
            self._next_report = unwrapped
        else:
            step = (sequence_number - highest) & 0xFFFF
            unwrapped = highest + (step - 0x10000 if step >= 0x8000 else step)
            if unwrapped <= highest - self._size:
                return
        slot = unwrapped % self._size
        if self._sequences[slot] == unwrapped:
            return
        self._sequences[slot] = unwrapped
        self._ticks[slot] = round(now * _TICKS_PER_SECOND)
        if unwrapped > highest:
            self._highest = unwrapped
        elif unwrapped < self._next_report:
            self._next_report = unwrapped  # late: the next feedback starts back at it

    @property
    def pending(self) -> int:
        """How many sequence numbers (received or lost) the next feedback would cover."""
        return max(0, self._highest - max(self._next_report, self._highest - self._size + 1) + 1)

    def feedback(self, media_ssrc: int) -> list[bytes]:
        """RTCP packets covering what arrived since the last call; [] when nothing did."""
        highest = self._highest
        start = max(self._next_report, highest - self._size + 1)
        if highest < 0 or start > highest:
            return []
        self._next_report = highest + 1
        sequences, ticks, size = self._sequences, self._ticks, self._size
        packets: list[bytes] = []
        first = start
        while first <= highest:
            first = self._one_packet(first, highest, media_ssrc, sequences, ticks, size, packets)
        return packets

    def _one_packet(
        self,
        first: int,
        highest: int,
        media_ssrc: int,
        sequences: list[int],
        ticks: list[int],
        size: int,
        packets: list[bytes],
    ) -> int:
        """Append one feedback packet starting at `first`; returns where the next one starts."""
        symbols = bytearray()
        deltas = bytearray()
        reference = previous = -1
        estimate = float(_FIXED.size)
        last_received = first - 1
        sequence = first
        while sequence <= highest:
            slot = sequence % size
            if sequences[slot] != sequence:
                symbols.append(_NOT_RECEIVED)
                estimate += 0.3  # a status symbol costs at most 2 bits
                sequence += 1
                continue
            arrival = ticks[slot]
            if reference < 0:  # the first received packet of this feedback sets its clock
                reference = arrival // _TICKS_PER_REFERENCE
                previous = reference * _TICKS_PER_REFERENCE
            delta = arrival - previous
            if 0 <= delta <= _SMALL_MAX:
                cost, symbol = 1, _SMALL
            elif _LARGE_MIN <= delta <= _LARGE_MAX:
                cost, symbol = 2, _LARGE
            else:
                break  # split: the next packet starts here with its own reference time
            if last_received >= first and estimate + cost > _MAX_FEEDBACK_BYTES:
                break
            if symbol == _SMALL:
                deltas.append(delta)
            else:
                deltas += _I16.pack(delta)
            symbols.append(symbol)
            previous = arrival
            estimate += cost + 0.3
            last_received = sequence
            sequence += 1
        # never end a packet on losses: the next one starts after the last packet received
        del symbols[last_received - first + 1 :]
        packets.append(
            _assemble(
                self.sender_ssrc,
                media_ssrc,
                first,
                reference & _REFERENCE_MASK,
                self._feedback_count,
                symbols,
                deltas,
            )
        )
        self._feedback_count = (self._feedback_count + 1) & 0xFF
        return last_received + 1
