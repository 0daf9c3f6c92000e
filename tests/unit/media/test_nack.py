"""Send history for retransmission and receive-side loss tracking (RFC 4585 NACK, RFC 3550 A.3)."""

import pytest

from gateway.media.nack import MAX_NACK_GAP, ReceiveStream, SendHistory


def test_history_returns_stored_packets_by_sequence_number() -> None:
    history = SendHistory(8)
    for seq in range(65530, 65536):
        history.put(seq, bytes([seq & 0xFF]))
    for seq in range(0, 2):
        history.put(seq, bytes([seq]))
    assert history.get(65535) == b"\xff"
    assert history.get(1) == b"\x01"


def test_history_forgets_overwritten_packets() -> None:
    history = SendHistory(4)
    for seq in range(10):
        history.put(seq, bytes([seq]))
    assert history.get(5) is None  # slot now holds 9
    assert history.get(9) == b"\x09"
    assert history.get(12) is None


def test_history_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        SendHistory(1000)


def test_gap_reports_missing_packets_across_wrap() -> None:
    stream = ReceiveStream(1, 48000)
    stream.on_packet(65534, 0, 0.0)
    accepted, missing = stream.on_packet(2, 4 * 960, 0.08)
    assert accepted
    assert missing == [65535, 0, 1]


def test_late_missing_packet_is_accepted_once() -> None:
    stream = ReceiveStream(1, 48000)
    stream.on_packet(10, 0, 0.0)
    stream.on_packet(12, 1920, 0.04)
    assert stream.on_packet(11, 960, 0.05) == (True, [])
    assert stream.on_packet(11, 960, 0.06) == (False, [])  # duplicate
    assert stream.on_packet(12, 1920, 0.07) == (False, [])


def test_nack_retries_then_expiry_counts_lost() -> None:
    stream = ReceiveStream(1, 48000)
    stream.on_packet(1, 0, 0.0)
    stream.on_packet(3, 1920, 0.0)
    assert stream.nack_due(0.05) == []  # too soon after the first NACK
    assert stream.nack_due(0.2) == [2]
    assert stream.nack_due(0.4) == [2]
    assert stream.nack_due(0.6) == []  # retries exhausted
    assert stream.lost == 0
    stream.nack_due(1.5)
    assert stream.lost == 1


def test_huge_gap_is_not_nacked_but_counted() -> None:
    stream = ReceiveStream(1, 90000)
    stream.on_packet(1, 0, 0.0)
    accepted, missing = stream.on_packet(2 + MAX_NACK_GAP + 10, 0, 0.1)
    assert accepted and missing == []
    assert stream.lost == MAX_NACK_GAP + 10


def test_reception_report_fraction_and_cumulative_loss() -> None:
    stream = ReceiveStream(7, 48000)
    for seq in (0, 1, 2, 3, 5, 6, 7, 8, 9):  # 4 lost out of 10
        stream.on_packet(seq, seq * 960, seq * 0.02)
    report = stream.report(1.0)
    assert report.ssrc == 7
    assert report.packets_lost == 1
    assert report.highest_sequence == 9
    assert report.fraction_lost == 256 // 10
    assert stream.report(2.0).fraction_lost == 0  # nothing new in this interval
