"""The send-side bandwidth estimator against a simulated bottleneck (no wall clock)."""

from __future__ import annotations

import random

from gateway.media.bwe import (
    MIN_BITRATE,
    BandwidthEstimator,
    FeedbackReader,
    PacketResult,
    probe_rate,
)

PACKET = 1200
FEEDBACK_INTERVAL = 0.05


class Bottleneck:
    """A link of `capacity` bits/s behind a drop-tail queue of `queue_time` seconds, with a
    one-way delay, optional random loss and optional per-packet jitter."""

    def __init__(
        self,
        capacity: float,
        *,
        delay: float = 0.02,
        queue_time: float = 0.3,
        loss: float = 0.0,
        jitter: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.capacity = capacity
        self.delay = delay
        self.queue_time = queue_time
        self.loss = loss
        self.jitter = jitter
        self.busy_until = 0.0
        self.random = random.Random(seed)

    def send(self, now: float, size: int) -> float | None:
        if self.loss and self.random.random() < self.loss:
            return None
        start = max(now, self.busy_until)
        if start - now > self.queue_time:
            return None  # the queue is full: dropped at its tail
        self.busy_until = start + size * 8 / self.capacity
        return self.busy_until + self.delay + self.random.uniform(0, self.jitter)


class Simulation:
    """A sender that sends at the estimate (or at `app_rate` when it has less to send), feedback
    every 50 ms with what arrived by then and what was lost half a second ago."""

    def __init__(self, link: Bottleneck, estimator: BandwidthEstimator | None = None) -> None:
        self.link = link
        self.estimator = estimator or BandwidthEstimator()
        self.reader = FeedbackReader()
        self.now = 0.0
        self.sequence = 0
        self.next_send = 0.0
        self.next_feedback = FEEDBACK_INTERVAL
        self.pending: list[tuple[int, float, int, float | None]] = []
        self.trace: list[tuple[float, int]] = []

    def run(self, seconds: float, app_rate: float | None = None, *, fixed: bool = False) -> None:
        """FIXED: send at APP_RATE whatever the estimate (a layer switch still pending)."""
        end = self.now + seconds
        while self.now < end:
            step = min(self.next_send, self.next_feedback)
            self.now = step
            if step == self.next_send:
                rate: float = self.estimator.estimate
                if app_rate is not None:
                    rate = app_rate if fixed else min(rate, app_rate)
                arrival = self.link.send(self.now, PACKET)
                self.pending.append((self.sequence, self.now, PACKET, arrival))
                self.sequence = (self.sequence + 1) & 0xFFFF
                self.next_send = self.now + PACKET * 8 / rate
            else:
                self.feedback()
                self.next_feedback = self.now + FEEDBACK_INTERVAL

    def feedback(self) -> None:
        now = self.now
        report: list[PacketResult] = []
        kept = []
        for result in self.pending:
            arrival = result[3]
            arrived = arrival is not None and arrival <= now
            if arrived or (arrival is None and result[1] <= now - 0.5):
                report.append(result)
            else:
                kept.append(result)
        self.pending = kept
        if report:
            self.estimator.on_feedback(self.reader.read(report), now)
        self.trace.append((now, self.estimator.estimate))

    def estimates(self, start: float, end: float) -> list[int]:
        return [value for t, value in self.trace if start <= t < end]


def _mean(values: list[int]) -> float:
    return sum(values) / len(values)


def test_converges_to_the_bottleneck_capacity() -> None:
    for capacity in (600_000, 2_500_000):
        sim = Simulation(Bottleneck(capacity))
        sim.run(40)
        mean = _mean(sim.estimates(30, 40))
        assert 0.7 * capacity <= mean <= 1.1 * capacity, (capacity, mean)


def test_drops_within_two_seconds_when_the_capacity_halves() -> None:
    sim = Simulation(Bottleneck(2_000_000))
    sim.run(30)
    assert sim.estimator.estimate > 1_400_000
    sim.link.capacity = 1_000_000
    sim.run(2)
    assert sim.estimator.estimate <= 1.1 * 1_000_000


def test_climbs_back_after_the_capacity_is_restored() -> None:
    sim = Simulation(Bottleneck(2_000_000))
    sim.run(20)
    sim.link.capacity = 1_000_000
    sim.run(15)
    assert _mean(sim.estimates(30, 35)) <= 1.1 * 1_000_000
    sim.link.capacity = 2_000_000
    sim.run(30)
    assert _mean(sim.estimates(55, 65)) >= 0.7 * 2_000_000


def test_random_loss_alone_lowers_the_estimate() -> None:
    sim = Simulation(Bottleneck(50_000_000, loss=0.25))
    sim.run(5, app_rate=800_000)
    assert sim.estimator.estimate < 600_000
    assert sim.estimator.loss_fraction > 0.1


def test_low_loss_does_not_lower_the_estimate() -> None:
    sim = Simulation(Bottleneck(50_000_000, loss=0.01))
    sim.run(10, app_rate=800_000)
    assert min(sim.estimates(0, 10)) >= 1_000_000


def test_jitter_alone_does_not_lower_the_estimate() -> None:
    sim = Simulation(Bottleneck(50_000_000, jitter=0.03))
    sim.run(20, app_rate=600_000)
    assert min(sim.estimates(0, 20)) >= 1_000_000


def test_capped_lossy_link_keeps_room_for_the_lowest_layer_and_audio() -> None:
    # 300 kbit/s with 3 % random loss: after settling, never below the lowest simulcast layer
    # (~150 kbit/s) plus audio (~40 kbit/s), never above the cap by much.
    sim = Simulation(Bottleneck(300_000, loss=0.03, seed=7))
    sim.run(60)
    settled = sim.estimates(10, 60)
    assert min(settled) >= 190_000
    assert _mean(settled) <= 330_000


def test_capped_link_application_limited_stays_put() -> None:
    # sending only the lowest layer + audio (190 kbit/s) through the same link: no decrease
    sim = Simulation(Bottleneck(300_000, loss=0.03, seed=3))
    sim.run(10)
    sim.run(50, app_rate=190_000)
    assert min(sim.estimates(20, 60)) >= 190_000


def test_estimate_stays_within_bounds() -> None:
    estimator = BandwidthEstimator(max_bitrate=700_000)
    sim = Simulation(Bottleneck(5_000_000), estimator)
    sim.run(20)
    assert max(value for _, value in sim.trace) <= 700_000
    sim = Simulation(Bottleneck(10_000, queue_time=1.0))
    sim.run(20)
    assert min(value for _, value in sim.trace) >= MIN_BITRATE


def test_probe_raises_the_estimate_to_what_the_link_carried() -> None:
    estimator = BandwidthEstimator(300_000)
    link = Bottleneck(3_000_000)
    # 2 Mbit/s for 100 ms: 21 packets of 1200 bytes
    results = []
    for i in range(21):
        send = i * PACKET * 8 / 2_000_000
        results.append((i, send, PACKET, link.send(send, PACKET)))
    rate = estimator.on_probe_results(results, 0.2)
    assert rate is not None and 1_800_000 <= rate <= 2_100_000
    assert estimator.estimate == rate


def test_probe_through_a_narrow_link_measures_the_link() -> None:
    link = Bottleneck(1_000_000)
    results = []
    for i in range(21):
        send = i * PACKET * 8 / 2_000_000
        results.append((i, send, PACKET, link.send(send, PACKET)))
    rate = probe_rate(results)
    assert rate is not None and 850_000 <= rate <= 1_000_000


def test_probe_with_too_few_packets_tells_nothing() -> None:
    assert (
        probe_rate([(0, 0.0, 1200, 0.01), (1, 0.001, 1200, None), (2, 0.002, 1200, None)]) is None
    )
    assert probe_rate([]) is None
    assert probe_rate([(i, 0.0, 1200, 0.0) for i in range(10)]) is None  # no spread


def test_garbage_results_never_crash() -> None:
    rng = random.Random(5)
    estimator, reader = BandwidthEstimator(), FeedbackReader()
    for step in range(300):
        results: list[PacketResult] = []
        for _ in range(rng.randrange(0, 40)):
            arrival = rng.choice([None, rng.uniform(-1e6, 1e6), rng.uniform(0, 10)])
            results.append(
                (rng.randrange(65536), rng.uniform(0, 10), rng.randrange(0, 2000), arrival)
            )
        estimator.on_feedback(reader.read(results), step * 0.05)
        estimator.on_probe_results(results, step * 0.05)
        assert MIN_BITRATE <= estimator.estimate <= estimator.max_bitrate


def test_arrivals_reported_at_one_instant_stay_bounded() -> None:
    reader = FeedbackReader()
    for step in range(20):
        results = [(i, step + i * 1e-6, 1200, 5.0) for i in range(1000)]
        reader.read(results)
    assert len(reader._acked.samples) <= 8192


def test_overflowing_a_saturated_queue_lands_on_what_the_link_delivers() -> None:
    # the relay keeps sending a 600 kbit/s layer into 300 kbit/s until the lower layer's
    # keyframe: the drop-tail queue is full (no delay trend), half the packets are lost
    sim = Simulation(Bottleneck(300_000, queue_time=0.4))
    sim.run(4, app_rate=600_000, fixed=True)
    settled = sim.estimates(2, 4)
    assert min(settled) >= 0.75 * 300_000 and max(settled) <= 1.1 * 300_000, settled


def test_a_probe_sent_in_bursts_counts_over_its_duration() -> None:
    # 10 kB meant for 100 ms, sent as two bursts 50 ms apart through a wide link
    results = [
        (i, 0.0 if i < 5 else 0.05, 1000, (0.0 if i < 5 else 0.05) + i * 1e-4) for i in range(10)
    ]
    assert (probe_rate(results) or 0) > 1_400_000  # over the 50 ms the bursts spanned
    rate = probe_rate(results, 0.1)
    assert rate is not None and rate <= 800_000  # 9 kB over the 100 ms it was meant for
