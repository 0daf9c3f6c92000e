"""Adaptive jitter buffer for one RTP audio stream (RFC 3550 ordering and interarrival jitter).

Sans-I/O: the caller pushes packets with their arrival time and pulls one frame per 20 ms
playout tick. Each pull yields the packet due at that tick, `Lost` (the decoder should
conceal), or None (nothing to play: not started, or the talker paused).

Delay adapts within [min_delay, max_delay]: the target follows the RFC 3550 §6.4.1 jitter
estimate and jumps up by a frame whenever a packet arrives too late to play. Playout
stretches by repeating `Lost` when the buffer runs dry (the delay grows by a frame) and skips
a frame when more than the target plus two frames stays queued for 100 ms (the delay shrinks). Packets are
assumed to carry one frame each (ptime = frame_ms).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..rtp import RtpPacket

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_OVERFULL_TICKS = 5  # consecutive overfull ticks before dropping a frame


@dataclass(frozen=True, slots=True)
class Lost:
    """No packet for this tick: conceal one frame. `timestamp` is the missing RTP timestamp."""

    timestamp: int


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    played: int = 0
    late: int = 0  # arrived after their playout tick; dropped
    duplicate: int = 0
    lost: int = 0  # ticks answered with Lost
    skipped: int = 0  # frames dropped to shrink the delay


def _unwrap(value: int, reference: int, modulus: int) -> int:
    """The extended value nearest to `reference` whose low bits are `value`."""
    half = modulus >> 1
    delta = (value - reference) % modulus
    if delta >= half:
        delta -= modulus
    return reference + delta


class JitterBuffer:
    """Reorders one SSRC's RTP audio packets and releases one frame per playout tick."""

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_ms: int = 20,
        min_delay: float = 0.02,
        max_delay: float = 0.30,
        max_conceal_frames: int = 5,
    ) -> None:
        self.clock_rate = clock_rate
        self.frame_duration = frame_ms / 1000
        self.timestamp_step = clock_rate * frame_ms // 1000
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.max_conceal_frames = max_conceal_frames
        self.stats = JitterStats()
        self._packets: dict[int, RtpPacket] = {}  # extended timestamp -> packet
        self._sequences: set[int] = set()  # extended sequence numbers buffered or played
        self._ssrc: int | None = None
        self._last_seq: int | None = None
        self._last_ts: int | None = None
        self._next_ts: int | None = None  # extended timestamp due at the next tick
        self._playing = False
        self._first_arrival = 0.0
        self._missing = 0
        self._jitter = 0.0  # seconds, RFC 3550 §6.4.1
        self._transit: float | None = None
        self._late_boost = 0.0
        self._overfull_ticks = 0

    @property
    def jitter(self) -> float:
        """The RFC 3550 interarrival jitter estimate, in seconds."""
        return self._jitter

    @property
    def target_delay(self) -> float:
        """The playout delay aimed at, in seconds, within [min_delay, max_delay]."""
        wanted = max(self.min_delay, self.frame_duration + 4 * self._jitter, self._late_boost)
        return min(self.max_delay, wanted)

    @property
    def buffered(self) -> float:
        """Media queued from the next due frame to the newest packet, in seconds."""
        if not self._packets:
            return 0.0
        start = self._next_ts if self._playing and self._next_ts is not None else min(self._packets)
        span = max(self._packets) - start + self.timestamp_step
        return max(0, span) / self.clock_rate

    def push(self, packet: RtpPacket, arrival_time: float) -> bool:
        """Queue a packet; False when it is dropped as a duplicate or as too late to play."""
        if packet.ssrc != self._ssrc:
            self._restart(packet.ssrc)
        if self._last_seq is None or self._last_ts is None:
            seq, ts = packet.sequence_number, packet.timestamp
        else:
            seq = _unwrap(packet.sequence_number, self._last_seq, _SEQ_MOD)
            ts = _unwrap(packet.timestamp, self._last_ts, _TS_MOD)
        if seq in self._sequences or ts in self._packets:
            self.stats.duplicate += 1
            return False
        if self._playing and self._next_ts is not None and ts < self._next_ts:
            self.stats.late += 1
            self._late_boost = min(self.max_delay, self.target_delay + self.frame_duration)
            return False
        self._update_jitter(ts, arrival_time)
        if self._last_seq is None or seq > self._last_seq:
            self._last_seq = seq
            self._last_ts = ts
        if not self._packets and not self._playing:
            self._first_arrival = arrival_time
        self._packets[ts] = packet
        self._sequences.add(seq)
        if len(self._sequences) > 2048:  # prune now and then (amortised O(1) per packet)
            floor = (self._last_seq or 0) - 1024
            self._sequences = {s for s in self._sequences if s > floor}
        self.stats.received += 1
        return True

    def pop(self, now: float) -> RtpPacket | Lost | None:
        """The packet for this playout tick, Lost for a gap to conceal, or None for silence."""
        if not self._playing:
            if not self._packets or now - self._first_arrival < self.target_delay:
                return None
            self._playing = True
            self._next_ts = min(self._packets)
            self._missing = 0
        assert self._next_ts is not None
        self._late_boost *= 0.995
        if not self._packets:
            self._missing += 1
            if self._missing > self.max_conceal_frames:
                self._playing = False  # the talker paused: rebuffer on the next packet
                return None
            self.stats.lost += 1
            return Lost(self._next_ts % _TS_MOD)  # not advancing: playout stretches a frame
        if self.buffered > self.target_delay + 2 * self.frame_duration:
            self._overfull_ticks += 1
        else:
            self._overfull_ticks = 0
        if self._overfull_ticks >= _OVERFULL_TICKS:  # not a momentary burst: shrink
            self._packets.pop(self._next_ts, None)
            self._next_ts += self.timestamp_step
            self.stats.skipped += 1
        head = min(self._packets)
        if head > self._next_ts + self.max_delay * self.clock_rate:
            self._next_ts = head  # a timestamp jump (new talkspurt, sender restart)
        self._missing = 0
        packet = self._packets.pop(self._next_ts, None)
        due = self._next_ts
        self._next_ts += self.timestamp_step
        if packet is None:
            self.stats.lost += 1
            return Lost(due % _TS_MOD)
        self.stats.played += 1
        return packet

    def _update_jitter(self, ts: int, arrival_time: float) -> None:
        transit = arrival_time - ts / self.clock_rate
        if self._transit is not None:
            self._jitter += (abs(transit - self._transit) - self._jitter) / 16
        self._transit = transit

    def _restart(self, ssrc: int) -> None:
        self._ssrc = ssrc
        self._packets.clear()
        self._sequences.clear()
        self._last_seq = self._last_ts = self._next_ts = None
        self._playing = False
        self._transit = None
