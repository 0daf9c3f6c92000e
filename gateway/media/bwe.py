"""Send-side bandwidth estimation of one subscribe transport, fed by transport-wide feedback.

The algorithms of Google Congestion Control (draft-ietf-rmcat-gcc-02), as libwebrtc's goog_cc
implements them and LiveKit and mediasoup follow: inter-arrival groups, a trendline filter with an
adaptive-threshold overuse detector, AIMD rate control bounded by the acknowledged bitrate, a
loss-based bound, and probe results. Sans-I/O: the caller pairs transport-cc feedback
(draft-holmer-rmcat-transport-wide-cc-extensions-01) with its own send records into packet
results `(sequence, send_time, size, arrival or None)`, which a `FeedbackReader` turns into one
`FeedbackSummary` per feedback (loss counts, the acknowledged bitrate, the inter-arrival groups'
deltas) for `BandwidthEstimator.on_feedback`. The native Egress (gateway/media/_fastpath.c
`Egress.feedback`) reads its own send records the same way, so the relay's per-packet work stays
in C. Every time is in seconds, the send times on the sender's clock and the arrivals on the
feedback's own clock (only differences are used).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

PacketResult = tuple[int, float, int, float | None]
"""(transport-wide sequence, send time, size in bytes, arrival time or None when lost)."""
FeedbackSummary = tuple[int, int, float | None, list[tuple[float, float, float]]]
"""One feedback's packets as the estimator reads them: (packets expected, packets lost, the
acknowledged bitrate after them or None while unknown, the (send delta, arrival delta, arrival)
of each inter-arrival group they closed)."""

START_BITRATE = 1_000_000
MIN_BITRATE = 30_000
MAX_BITRATE = 50_000_000

# Inter-arrival grouping: libwebrtc goog_cc/inter_arrival_delta.cc (kSendTimeGroupLength = 5 ms,
# kBurstDeltaThreshold = 5 ms, kMaxBurstDuration = 100 ms, kArrivalTimeOffsetThreshold = 3 s).
GROUP_LENGTH = 0.005
BURST_DELTA = 0.005
MAX_BURST = 0.1
ARRIVAL_JUMP = 3.0

# Trendline: libwebrtc goog_cc/trendline_estimator.cc (kDefaultTrendlineWindowSize = 20,
# kDefaultTrendlineSmoothingCoeff = 0.9, kDefaultTrendlineThresholdGain = 4.0, kMinNumDeltas = 60,
# k_up_ = 0.0087, k_down_ = 0.039, kMaxAdaptOffsetMs = 15, kOverUsingTimeThreshold = 10 ms,
# initial threshold 12.5 ms, clamped to [6, 600] ms).
TREND_WINDOW = 20
TREND_SMOOTHING = 0.9
TREND_GAIN = 4.0
MIN_DELTAS = 60
THRESHOLD_UP = 0.0087
THRESHOLD_DOWN = 0.039
MAX_ADAPT_OFFSET_MS = 15.0
OVERUSE_TIME_MS = 10.0
INITIAL_THRESHOLD_MS = 12.5

# AIMD: libwebrtc goog_cc/aimd_rate_control.cc (kDefaultBackoffFactor = 0.85, 8 % per second
# multiplicative increase, kMinIncreaseRateBpsPerSecond = 4 kbit/s, response time = RTT + 100 ms,
# kDefaultRtt = 200 ms, throughput-based limit 1.5 x acknowledged + 10 kbit/s, 30 fps / 1200-byte
# packets for the additive step) and link_capacity_estimator.cc (alpha 0.05, 3 deviations,
# deviation clamped to [0.4, 2.5]).
BETA = 0.85
MULTIPLICATIVE_INCREASE = 1.08
MIN_ADDITIVE_INCREASE = 4_000
DEFAULT_RTT = 0.2
THROUGHPUT_FACTOR = 1.5
THROUGHPUT_MARGIN = 10_000
CAPACITY_ALPHA = 0.05

# Loss-based bound: libwebrtc goog_cc/send_side_bandwidth_estimation.cc (kDefaultLowLossThreshold
# = 0.02, kDefaultHighLossThreshold = 0.1, kLimitNumPackets = 20, kBweDecreaseInterval = 300 ms,
# decrease by loss / 2, increase 8 % + 1 kbit/s per second).
LOW_LOSS = 0.02
HIGH_LOSS = 0.10
LOSS_MIN_PACKETS = 20
LOSS_DECREASE_INTERVAL = 0.3
CONGESTION_LOSS_GRACE = 1.0  # ours: a queue of up to ~400 ms drains and is reported within it

# Acknowledged bitrate: libwebrtc goog_cc/bitrate_estimator.cc (kInitialRateWindowMs = 500).
ACKED_WINDOW = 0.5
ACKED_MAX_SAMPLES = 8192  # ours: arrivals kept whatever times a receiver reports

# Probe results: libwebrtc goog_cc/probe_bitrate_estimator.cc (kMinReceivedProbesRatio = 0.80,
# kMaxValidRatio = 2.0, kMinRatioForUnsaturatedLink = 0.9, kTargetUtilizationFraction = 0.95) and
# bitrate_prober.cc (kMinProbePacketsSent = 5).
PROBE_MIN_RECEIVED = 0.8
PROBE_MIN_PACKETS = 5
PROBE_MAX_RATIO = 2.0
PROBE_UNSATURATED = 0.9
PROBE_UTILIZATION = 0.95

NORMAL, OVERUSING, UNDERUSING = 0, 1, 2


class _InterArrival:
    """Groups packets sent within GROUP_LENGTH of each other; yields deltas between groups."""

    __slots__ = ("first_send", "last_send", "first_arrival", "last_arrival", "size", "prev")

    def __init__(self) -> None:
        self.first_send = -1.0
        self.last_send = -1.0
        self.first_arrival = -1.0
        self.last_arrival = -1.0
        self.size = 0
        self.prev: tuple[float, float, int] | None = None  # (last send, last arrival, size)

    def add(self, send: float, arrival: float, size: int) -> tuple[float, float] | None:
        """One received packet in send order; (send delta, arrival delta) when a group closes."""
        if self.first_send < 0:
            self._start(send, arrival, size)
            return None
        if send < self.first_send:
            return None  # reordered behind the current group: too late to count
        if self._same_group(send, arrival):
            self.last_send = max(self.last_send, send)
            self.last_arrival = max(self.last_arrival, arrival)
            self.size += size
            return None
        deltas = None
        if self.prev is not None:
            send_delta = self.last_send - self.prev[0]
            arrival_delta = self.last_arrival - self.prev[1]
            if arrival_delta > ARRIVAL_JUMP or arrival_delta < -ARRIVAL_JUMP:
                self.prev = None  # the receiver's clock jumped: start over
            elif send_delta >= 0:
                deltas = (send_delta, arrival_delta)
        self.prev = (self.last_send, self.last_arrival, self.size)
        self._start(send, arrival, size)
        return deltas

    def _start(self, send: float, arrival: float, size: int) -> None:
        self.first_send = self.last_send = send
        self.first_arrival = self.last_arrival = arrival
        self.size = size

    def _same_group(self, send: float, arrival: float) -> bool:
        if send - self.first_send <= GROUP_LENGTH:
            return True
        # a burst: arrives right after the group with less delay than it had (a queue drained)
        arrival_delta = arrival - self.last_arrival
        propagation = arrival_delta - (send - self.last_send)
        return (
            propagation < 0
            and arrival_delta <= BURST_DELTA
            and arrival - self.first_arrival < MAX_BURST
        )


class _Trendline:
    """Delay-gradient trend over the last groups and the adaptive-threshold overuse detector."""

    __slots__ = (
        "points",
        "first_arrival",
        "accumulated",
        "smoothed",
        "deltas",
        "threshold",
        "last_update",
        "overuse_time",
        "overuse_count",
        "previous_trend",
        "state",
    )

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=TREND_WINDOW)
        self.first_arrival = -1.0
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.deltas = 0
        self.threshold = INITIAL_THRESHOLD_MS
        self.last_update = -1.0
        self.overuse_time = -1.0
        self.overuse_count = 0
        self.previous_trend = 0.0
        self.state = NORMAL

    def update(self, send_delta: float, arrival_delta: float, arrival: float) -> int:
        """One group delta (seconds); the detector's state afterwards."""
        delay_ms = (arrival_delta - send_delta) * 1000.0
        self.deltas = min(self.deltas + 1, 1000)
        if self.first_arrival < 0:
            self.first_arrival = arrival
        self.accumulated += delay_ms
        self.smoothed = TREND_SMOOTHING * self.smoothed + (1 - TREND_SMOOTHING) * self.accumulated
        self.points.append(((arrival - self.first_arrival) * 1000.0, self.smoothed))
        trend = self.previous_trend
        if len(self.points) == TREND_WINDOW:
            trend = _slope(self.points, trend)
        self._detect(trend, send_delta * 1000.0, arrival)
        return self.state

    def _detect(self, trend: float, send_delta_ms: float, now: float) -> None:
        modified = min(self.deltas, MIN_DELTAS) * trend * TREND_GAIN
        if modified > self.threshold:
            if self.overuse_time < 0:
                self.overuse_time = send_delta_ms / 2  # assume half the interval was overuse
            else:
                self.overuse_time += send_delta_ms
            self.overuse_count += 1
            if (
                self.overuse_time > OVERUSE_TIME_MS
                and self.overuse_count > 1
                and trend >= self.previous_trend
            ):
                self.overuse_time = 0.0
                self.overuse_count = 0
                self.state = OVERUSING
        elif modified < -self.threshold:
            self.overuse_time = -1.0
            self.overuse_count = 0
            self.state = UNDERUSING
        else:
            self.overuse_time = -1.0
            self.overuse_count = 0
            self.state = NORMAL
        self.previous_trend = trend
        self._adapt(modified, now)

    def _adapt(self, modified: float, now: float) -> None:
        if self.last_update < 0:
            self.last_update = now
        magnitude = abs(modified)
        if magnitude > self.threshold + MAX_ADAPT_OFFSET_MS:
            self.last_update = now  # a spike, e.g. a route change: do not learn from it
            return
        k = THRESHOLD_DOWN if magnitude < self.threshold else THRESHOLD_UP
        elapsed_ms = min((now - self.last_update) * 1000.0, 100.0)
        self.threshold += k * (magnitude - self.threshold) * elapsed_ms
        self.threshold = min(max(self.threshold, 6.0), 600.0)
        self.last_update = now


def _slope(points: Sequence[tuple[float, float]], fallback: float) -> float:
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    numerator = denominator = 0.0
    for x, y in points:
        numerator += (x - mean_x) * (y - mean_y)
        denominator += (x - mean_x) ** 2
    return numerator / denominator if denominator else fallback


class _AcknowledgedRate:
    """Bits per second the receiver got over the last ACKED_WINDOW of arrivals."""

    __slots__ = ("samples", "octets", "rate")

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()
        self.octets = 0
        self.rate: float | None = None

    def add(self, arrival: float, size: int) -> None:
        samples = self.samples
        if samples and arrival < samples[-1][0] - ARRIVAL_JUMP:
            samples.clear()  # the receiver's clock jumped back
            self.octets = 0
        samples.append((arrival, size))
        self.octets += size
        if len(samples) > ACKED_MAX_SAMPLES:
            self.octets -= samples.popleft()[1]
        newest = max(arrival, samples[-1][0])
        while samples and newest - samples[0][0] > ACKED_WINDOW:
            self.octets -= samples.popleft()[1]
        if len(samples) > 1 and newest - samples[0][0] >= ACKED_WINDOW / 2:
            span = max(newest - samples[0][0], ACKED_WINDOW / 2)
            self.rate = (self.octets - samples[0][1]) * 8 / span


class FeedbackReader:
    """Packet results of one transport, feedback after feedback, read into FeedbackSummary: what
    the native Egress.feedback computes in C (the two are checked alike by the unit tests)."""

    __slots__ = ("_arrivals", "_acked")

    def __init__(self) -> None:
        self._arrivals = _InterArrival()
        self._acked = _AcknowledgedRate()

    def read(self, results: Iterable[PacketResult]) -> FeedbackSummary:
        """One feedback's packet results (any order): taken in send order."""
        expected = lost = 0
        deltas: list[tuple[float, float, float]] = []
        for _sequence, send, size, arrival in sorted(results, key=lambda result: result[1]):
            expected += 1
            if arrival is None:
                lost += 1
                continue
            self._acked.add(arrival, size)
            group = self._arrivals.add(send, arrival, size)
            if group is not None:
                deltas.append((group[0], group[1], arrival))
        return expected, lost, self._acked.rate, deltas


class BandwidthEstimator:
    """Delay-based, loss-based and probe-driven estimate of what a subscriber's link carries."""

    def __init__(
        self,
        start_bitrate: int = START_BITRATE,
        *,
        min_bitrate: int = MIN_BITRATE,
        max_bitrate: int = MAX_BITRATE,
    ) -> None:
        self.min_bitrate = min_bitrate
        self.max_bitrate = max_bitrate
        self._delay_based = float(min(max(start_bitrate, min_bitrate), max_bitrate))
        self._loss_based = self._delay_based
        self._trendline = _Trendline()
        self._acked: float | None = None  # the acknowledged bitrate (bits/s), None while unknown
        self._rate_state = "hold"
        self._last_change = -1.0
        self._last_decrease = -1e9
        self._capacity: float | None = None  # link capacity estimate (bits/s) at overuse
        self._capacity_deviation = 0.4
        self._rtt = DEFAULT_RTT
        self._loss_expected = 0
        self._loss_lost = 0
        self._loss_last_change = -1.0
        self._loss_last_decrease = -1e9
        self._loss_decreased = False  # one decrease per loss report, as libwebrtc
        # Drop-tail loss while the queue overflowed is the delay-based controller's to answer:
        # a loss report overlapping an overuse does not decrease the loss-based bound too.
        self._loss_congested = False
        self.loss_fraction = 0.0
        self.usage = NORMAL

    # --- inputs --------------------------------------------------------------------------------

    def set_max_bitrate(self, max_bitrate: int) -> None:
        """A configured ceiling (bits/s); the estimate never exceeds it."""
        self.max_bitrate = max(max_bitrate, self.min_bitrate)
        self._delay_based = min(self._delay_based, self.max_bitrate)
        self._loss_based = min(self._loss_based, self.max_bitrate)

    def set_rtt(self, rtt: float) -> None:
        """A round-trip time measurement (seconds), e.g. from feedback delay."""
        if 0 < rtt < 10:
            self._rtt = rtt

    def on_feedback(self, summary: FeedbackSummary, now: float) -> None:
        """One feedback's packets, as a FeedbackReader (or the native Egress) read them; `now`
        on the sender's clock."""
        expected, lost, acked, deltas = summary
        self._loss_expected += expected
        self._loss_lost += lost
        if acked is not None:
            self._acked = acked
        usage = self.usage
        for send_delta, arrival_delta, arrival in deltas:
            usage = self._trendline.update(send_delta, arrival_delta, arrival)
            self._loss_congested = self._loss_congested or usage == OVERUSING
        self.usage = usage
        if expected:
            self._update_delay_based(usage, now)
            self._update_loss_based(now)

    def on_probe_results(
        self, results: Sequence[PacketResult], now: float, duration: float = 0.0
    ) -> int | None:
        """A finished probe cluster's results; raises the estimate to what the link carried.
        Returns the measured rate (bits/s), or None when the cluster tells nothing."""
        rate = probe_rate(results, duration)
        if rate is None:
            return None
        if self.usage != OVERUSING and rate > self._delay_based:
            self._delay_based = min(rate, float(self.max_bitrate))
            self._loss_based = max(self._loss_based, self._delay_based)
            self._last_change = now
        return rate

    # --- outputs -------------------------------------------------------------------------------

    @property
    def estimate(self) -> int:
        """The target bitrate (bits/s) the subscriber's link is believed to carry."""
        value = min(self._delay_based, self._loss_based, float(self.max_bitrate))
        return int(max(value, self.min_bitrate))

    @property
    def rtt(self) -> float:
        """The last round-trip measurement (seconds), DEFAULT_RTT before the first."""
        return self._rtt

    @property
    def acknowledged_bitrate(self) -> int | None:
        rate = self._acked
        return None if rate is None else int(rate)

    # --- internals -----------------------------------------------------------------------------

    def _update_delay_based(self, usage: int, now: float) -> None:
        # AIMD state machine: overuse -> decrease; normal -> increase (from hold); underuse -> hold
        if usage == OVERUSING:
            self._rate_state = "decrease"
        elif usage == UNDERUSING:
            self._rate_state = "hold"
        elif self._rate_state != "increase":
            self._rate_state = "increase"
            self._last_change = now  # (re)start increasing from here, not from the last change
        acked = self._acked
        current = self._delay_based
        if self._rate_state == "increase":
            if self._capacity is not None and current > self._capacity_upper():
                self._capacity = None  # we passed what we measured: the link changed
            elapsed = 0.0 if self._last_change < 0 else min(now - self._last_change, 1.0)
            if self._capacity is not None:
                current += self._additive_increase(current, elapsed)
            else:
                current += max(current * (MULTIPLICATIVE_INCREASE**elapsed - 1), 1000 * elapsed)
            if acked is not None:  # never more than the link showed it carries, never less
                limit = THROUGHPUT_FACTOR * acked + THROUGHPUT_MARGIN
                current = min(current, max(self._delay_based, limit))
            self._last_change = now
        elif self._rate_state == "decrease":
            if acked is not None and now - self._last_decrease >= self._rtt:
                if self._capacity is not None and acked < self._capacity_lower():
                    self._capacity = None
                decreased = BETA * acked
                if decreased > current and self._capacity is not None:
                    decreased = BETA * self._capacity
                current = min(current, decreased)
                self._update_capacity(acked)
                self._last_decrease = now
            self._rate_state = "hold"
            self._last_change = now
        self._delay_based = min(max(current, float(self.min_bitrate)), float(self.max_bitrate))

    def _additive_increase(self, current: float, elapsed: float) -> float:
        bits_per_frame = current / 30.0
        packets_per_frame = math.ceil(bits_per_frame / (1200 * 8))
        packet_bits = bits_per_frame / packets_per_frame
        response_time = self._rtt + 0.1
        return max(MIN_ADDITIVE_INCREASE, packet_bits / response_time) * elapsed

    def _update_capacity(self, sample: float) -> None:
        if self._capacity is None:
            self._capacity = sample
        else:
            self._capacity = (1 - CAPACITY_ALPHA) * self._capacity + CAPACITY_ALPHA * sample
        norm = max(self._capacity / 1000.0, 1.0)
        error = (self._capacity - sample) / 1000.0
        deviation = (1 - CAPACITY_ALPHA) * self._capacity_deviation
        deviation += CAPACITY_ALPHA * error * error / norm
        self._capacity_deviation = min(max(deviation, 0.4), 2.5)

    def _capacity_spread(self) -> float:
        assert self._capacity is not None
        return 3 * math.sqrt(self._capacity_deviation * self._capacity / 1000.0) * 1000.0

    def _capacity_upper(self) -> float:
        assert self._capacity is not None
        return self._capacity + self._capacity_spread()

    def _capacity_lower(self) -> float:
        assert self._capacity is not None
        return self._capacity - self._capacity_spread()

    def _update_loss_based(self, now: float) -> None:
        if self._loss_last_change < 0:
            self._loss_last_change = now
        if self._loss_expected >= LOSS_MIN_PACKETS:
            self.loss_fraction = self._loss_lost / self._loss_expected
            self._loss_expected = self._loss_lost = 0
            # losses of a queue that overflowed (overuse, or the drain after a delay-based
            # decrease) are not random losses of the link
            recent = now - self._last_decrease < CONGESTION_LOSS_GRACE
            self._loss_decreased = self._loss_congested or recent
            self._loss_congested = False
        elapsed = min(now - self._loss_last_change, 1.0)
        self._loss_last_change = now
        if self.loss_fraction <= LOW_LOSS:
            grown = self._loss_based * MULTIPLICATIVE_INCREASE**elapsed + 1000 * elapsed
            self._loss_based = max(self._loss_based, min(grown, self._delay_based))
        elif self.loss_fraction > HIGH_LOSS:
            due = now - self._loss_last_decrease >= LOSS_DECREASE_INTERVAL + self._rtt
            if due and not self._loss_decreased:
                base = min(self._loss_based, self._delay_based)
                decreased = base * (1 - 0.5 * self.loss_fraction)
                acked = self._acked
                if acked is not None:
                    # A saturated drop-tail queue shows loss but no delay trend: go straight to
                    # what the link delivered, never below BETA x that for one report (the
                    # acknowledged rate bounds the loss-based estimate as in libwebrtc's
                    # loss_based_bwe_v2.cc instant upper bound).
                    decreased = max(min(decreased, acked), BETA * acked)
                self._loss_based = min(base, decreased)
                self._loss_last_decrease = now
                self._loss_decreased = True
        self._loss_based = max(self._loss_based, float(self.min_bitrate))


def probe_rate(results: Sequence[PacketResult], duration: float = 0.0) -> int | None:
    """What a probe cluster measured (bits/s): the lower of its send and receive rates, or 95 %
    of the receive rate when the link was saturated; None when too few packets arrived."""
    received = [r for r in results if r[3] is not None]
    if len(received) < PROBE_MIN_PACKETS or len(received) < PROBE_MIN_RECEIVED * len(results):
        return None
    by_send = sorted(received, key=lambda r: r[1])
    by_arrival = sorted(received, key=lambda r: r[3] or 0.0)
    # A cluster meant to last DURATION but sent in a few bursts offered its bytes over DURATION,
    # and a link that passed a burst at once (a wide one, a token bucket's allowance) says no
    # more than that it kept up.
    send_span = max(by_send[-1][1] - by_send[0][1], duration)
    arrival_span = max((by_arrival[-1][3] or 0.0) - (by_arrival[0][3] or 0.0), duration)
    if send_span <= 0 or arrival_span <= 0:
        return None
    send_rate = sum(r[2] for r in by_send[:-1]) * 8 / send_span
    receive_rate = sum(r[2] for r in by_arrival[1:]) * 8 / arrival_span
    if receive_rate > PROBE_MAX_RATIO * send_rate:
        return None  # arrivals bunched up by something other than the link
    rate = min(send_rate, receive_rate)
    if receive_rate < PROBE_UNSATURATED * send_rate:
        rate = PROBE_UTILIZATION * receive_rate
    return int(rate)
