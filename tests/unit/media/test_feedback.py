"""Send records read against transport-cc feedback: the Python SendRecords and the native Egress
answer alike, packet for packet, on well-formed, reordered, repeated, lost and garbled feedback."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from gateway.media import native
from gateway.media.bwe import FeedbackReader
from gateway.media.feedback import MAX_FEEDBACK_RESULTS, SEND_RING, SendRecords
from gateway.media.twcc import PacketResult, TransportCcFeedback

needs_native = pytest.mark.skipif(
    not native.available(), reason="the native extension is not built"
)


def _egress() -> Any:
    fast = native.MODULE
    assert fast is not None
    return fast.Egress(fast.Session(bytes(30), 1, False, 1024, True))


def _feedback(base: int, arrivals: list[float | None], count: int = 0) -> bytes:
    first = min((a for a in arrivals if a is not None), default=0.0)
    results = [PacketResult((base + i) & 0xFFFF, a) for i, a in enumerate(arrivals)]
    return TransportCcFeedback(1, 2, base, int(first / 0.064), count & 0xFF, results).serialize()


def _read(records: Any, packet: bytes, now: float, probe: tuple[float, float]) -> Any:
    try:
        return tuple(records.feedback(packet, now, *probe))
    except ValueError:  # the native refusal; RtcpError, the Python one, is a ValueError too
        return "refused"


def test_a_feedback_is_read_into_loss_groups_rate_rtt_and_probe_results() -> None:
    records = SendRecords()
    for i in range(40):
        records.record(records.next_twcc_seq(), 10.0 + i * 0.002, 1000)
    arrivals: list[float | None] = [0.5 + i * 0.002 for i in range(40)]
    arrivals[7] = None
    summary, rtt, probe, last = records.feedback(_feedback(0, arrivals), 10.1, 10.0, 10.01)
    expected, lost, acked, deltas = summary
    assert (expected, lost, last) == (40, 1, 39)
    assert rtt == pytest.approx(10.1 - 10.078)
    assert acked is None  # 78 ms of arrivals: under half the 500 ms window
    # groups of 5 ms (2 or 3 packets: arrivals count 250 us ticks) closed after the first, the last
    # still open; no queueing: arrival deltas = send deltas
    assert len(deltas) == 9
    assert all(send == pytest.approx(arrival) for send, arrival, _ in deltas)
    assert [r[0] for r in probe] == [0, 1, 2, 3, 4, 5]
    # each packet counts once: the same feedback again reads nothing
    again = records.feedback(_feedback(0, arrivals), 10.2, 10.0, 10.01)
    assert again.summary[0] == 0 and again.rtt is None and again.probe == []


def test_the_reader_matches_what_the_estimator_reads_from_packet_results() -> None:
    reader = FeedbackReader()
    results = [(i, 1.0 + i * 0.01, 1200, 2.0 + i * 0.01) for i in range(100)]
    expected, lost, acked, deltas = reader.read(reversed(results))  # any order: send order
    assert (expected, lost) == (100, 0)
    assert acked == pytest.approx(1200 * 8 * 49 / 0.49)
    assert len(deltas) == 98


def test_records_are_a_bounded_ring_and_expire() -> None:
    records = SendRecords()
    for i in range(3 * SEND_RING):
        records.record(i & 0xFFFF, i * 0.0001, 100)
    assert len(records._sequences) == SEND_RING
    # sequence 5 was overwritten by 5 + 2 x SEND_RING: its feedback matches nothing
    assert records.feedback(_feedback(5, [3.0]), 3.0, 1.0, 0.0).summary[0] == 0
    records.record(9, 0.0, 100)
    assert records.feedback(_feedback(9, [3.0]), 100.0, 1.0, 0.0).summary[0] == 0  # too old


def test_a_feedback_claiming_every_sequence_costs_a_bounded_walk() -> None:
    records = SendRecords()
    for i in range(4000):
        records.record(records.next_twcc_seq(), i * 0.0001, 100)
    huge = TransportCcFeedback(1, 2, 0, 0, 0, [PacketResult(i, 0.01) for i in range(65535)])
    result = records.feedback(huge.serialize(), 1.0, 1.0, 0.0)
    assert result.summary[0] == MAX_FEEDBACK_RESULTS
    assert result.last_sequence == MAX_FEEDBACK_RESULTS - 1


@needs_native
def test_the_native_egress_keeps_records_of_what_it_stamps_and_what_python_sent() -> None:
    egress = _egress()
    egress.set_twcc(3)
    packet = b"\x80\x60\x00\x07" + bytes(8) + b"payload"
    stamped = egress.stamp(packet)
    assert egress.twcc_seq == 1
    now = time.monotonic()  # the clock the Egress stamps with
    egress.record(egress.next_twcc_seq(), now, 300)  # the Python path's send
    result = egress.feedback(_feedback(0, [7.0, 7.01]), now + 0.1, 0.0, now + 1)
    assert result[0][:2] == (2, 0)
    assert [(seq, size) for seq, _sent, size, _arrival in result[2]] == [
        (0, len(stamped)),
        (1, 300),
    ]


@needs_native
@pytest.mark.parametrize("seed", range(6))
def test_native_and_python_read_feedback_alike(seed: int) -> None:
    rng = random.Random(seed)
    python, egress = SendRecords(), _egress()
    sent_at = 50.0
    base = rng.randrange(0x10000) if seed % 2 else 0xFFF0  # across the wrap too
    sequence = base
    arrival = 5.0
    for round_ in range(300):
        # a burst of sends, recorded by both (sizes and times as the relay's)
        first = sequence
        for _ in range(rng.randrange(1, 40)):
            sent_at += rng.choice((0.0, 0.0005, 0.002, 0.01))
            size = rng.randrange(60, 1300)
            python.record(sequence, sent_at, size)
            egress.record(sequence, sent_at, size)
            sequence = (sequence + 1) & 0xFFFF
        count = (sequence - first) & 0xFFFF
        arrivals: list[float | None] = []
        for _ in range(count):
            arrival += rng.choice((0.0, 0.00025, 0.001, 0.004, 0.02, -0.001))
            arrivals.append(None if rng.random() < 0.1 else max(arrival, 0.0))
        if rng.random() < 0.05:
            arrival += rng.choice((4.0, -4.0))  # the receiver's clock jumps
            arrival = max(arrival, 0.0)
        start = (first - rng.randrange(0, 3)) & 0xFFFF  # reports overlap: each counts once
        lead: list[float | None] = [None] * ((first - start) & 0xFFFF)
        packet = _feedback(start, lead + arrivals, round_)
        if rng.random() < 0.15:  # garbled: both refuse it, or both read the same
            garbled = bytearray(packet)
            for _ in range(rng.randrange(1, 4)):
                garbled[rng.randrange(len(garbled))] = rng.randrange(256)
            packet = bytes(garbled[: rng.randrange(4, len(garbled) + 1)])
        now = sent_at + rng.choice((0.0, 0.05, 0.2))
        probe = (sent_at - 0.05, sent_at) if rng.random() < 0.3 else (1.0, 0.0)
        assert _read(python, packet, now, probe) == _read(egress, packet, now, probe)
