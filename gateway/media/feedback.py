"""Send records of one subscribe transport, matched with its transport-cc feedback
(draft-holmer-rmcat-transport-wide-cc-extensions-01): what the bandwidth estimator reads.

`SendRecords` is the pure-Python twin of the native Egress (gateway/media/_fastpath.c), which
stamps, records and reads feedback in C: both have `next_twcc_seq`, `twcc_seq`, `record` and
`feedback`, and answer alike (tests/unit/media/test_feedback.py feeds both the same packets).
A feedback is read into a `FeedbackResult`: the estimator's `FeedbackSummary` (bwe.py), the
shortest feedback delay (a round-trip measurement), the packet results of a probe cluster's send
window, and the last sequence number the feedback covered.
"""

from __future__ import annotations

from typing import NamedTuple

from .bwe import FeedbackReader, FeedbackSummary, PacketResult
from .twcc import parse_feedback

SEND_RING = 8192  # send records kept (a power of two, below the 16-bit sequence space)
RECORD_MAX_AGE = 5.0  # a send record older than this when its feedback comes is ignored
# Results read from one feedback packet: Chromium's cover the ~100 packets of 50-100 ms; a run-length
# chunk can claim thousands in two bytes, which must not cost thousands of iterations.
MAX_FEEDBACK_RESULTS = 2048


class FeedbackResult(NamedTuple):
    """One feedback packet read against the send records."""

    summary: FeedbackSummary
    rtt: float | None
    """The shortest time from a reported packet's send to now (seconds), None if none arrived."""
    probe: list[PacketResult]
    """Results of the packets sent within the probe window given to `feedback`."""
    last_sequence: int
    """The last transport-wide sequence number the feedback covered (-1: none)."""


class SendRecords:
    """A ring of SEND_RING send records indexed by transport-wide sequence number, each read once
    by the first feedback that reports it."""

    def __init__(self) -> None:
        self._mask = SEND_RING - 1
        self._sequences = [-1] * SEND_RING
        self._send_times = [0.0] * SEND_RING
        self._sizes = [0] * SEND_RING
        self._next = 0
        self._reader = FeedbackReader()

    @property
    def twcc_seq(self) -> int:
        """The next transport-wide sequence number (not taken)."""
        return self._next

    def next_twcc_seq(self) -> int:
        """The next transport-wide sequence number, taken."""
        sequence = self._next
        self._next = (sequence + 1) & 0xFFFF
        return sequence

    def record(self, sequence: int, sent: float, size: int) -> None:
        """Packet SEQUENCE of SIZE bytes went out at SENT."""
        slot = sequence & self._mask
        self._sequences[slot] = sequence
        self._send_times[slot] = sent
        self._sizes[slot] = size

    def feedback(
        self, packet: bytes, now: float, probe_start: float, probe_end: float
    ) -> FeedbackResult:
        """Read one transport-cc feedback packet (RTCP RTPFB FMT 15); raises RtcpError on a
        malformed one, which changes nothing."""
        results = parse_feedback(packet).results[:MAX_FEEDBACK_RESULTS]
        matched: list[PacketResult] = []
        probe: list[PacketResult] = []
        sequences, mask = self._sequences, self._mask
        rtt: float | None = None
        oldest = now - RECORD_MAX_AGE
        for result in results:
            sequence = result.sequence_number
            slot = sequence & mask
            if sequences[slot] != sequence:
                continue  # never sent, or its record was overwritten
            sequences[slot] = -1  # each packet counts once
            sent = self._send_times[slot]
            if sent < oldest or sent > now:
                continue
            entry = (sequence, sent, self._sizes[slot], result.arrival)
            matched.append(entry)
            if probe_start <= sent <= probe_end:
                probe.append(entry)
            if result.arrival is not None and (rtt is None or now - sent < rtt):
                rtt = now - sent
        last = results[-1].sequence_number if results else -1
        return FeedbackResult(self._reader.read(matched), rtt, probe, last)
