"""The per-subscriber munger: continuity across pauses and switches, stale packets dropped."""

from gateway.media.forwarder import Forwarder


def test_resume_after_pause_continues_sequence_and_advances_timestamp() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=100, timestamp=5000)
    assert forwarder.forward(0, 9, 10, 0, True, 0.0) == 100
    assert forwarder.out_ts == 5000
    forwarder.pause()
    assert forwarder.forward(0, 9, 11, 3000, False, 0.033) == -1
    forwarder.resume()
    assert forwarder.forward(0, 9, 50, 90000, False, 2.0) == -1  # waits for a keyframe
    assert forwarder.forward(0, 9, 51, 93000, True, 2.0) == 101
    assert forwarder.out_ts == 5000 + 2 * 90000


def test_packets_older_than_the_switch_are_dropped() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=0, timestamp=0)
    forwarder.forward(0, 9, 1000, 0, True, 0.0)
    assert forwarder.forward(0, 9, 999, 0, False, 0.0) == -1
    assert forwarder.forward(0, 9, 1001, 0, False, 0.0) == 1


def test_late_packet_keeps_its_place() -> None:
    forwarder = Forwarder(1, 111, 48000, False, sequence_number=0, timestamp=0)
    forwarder.forward(0, 9, 10, 0, True, 0.0)
    assert forwarder.forward(0, 9, 12, 1920, True, 0.04) == 2
    assert forwarder.forward(0, 9, 11, 960, True, 0.05) == 1
    assert forwarder.last_seq == 2


def test_long_stream_keeps_forwarding_across_sequence_wrap() -> None:
    forwarder = Forwarder(1, 111, 48000, False, sequence_number=0, timestamp=0)
    out = [
        forwarder.forward(0, 9, seq & 0xFFFF, seq * 960, True, seq * 0.02) for seq in range(70000)
    ]
    assert out[-1] == (70000 - 1) & 0xFFFF
    assert -1 not in out


def test_new_publisher_ssrc_on_same_layer_restarts_at_keyframe() -> None:
    forwarder = Forwarder(1, 96, 90000, True, sequence_number=0, timestamp=0)
    forwarder.forward(0, 9, 10, 0, True, 0.0)
    assert forwarder.forward(0, 10, 500, 7, False, 0.1) == -1
    assert forwarder.forward(0, 10, 501, 7, True, 0.1) == 1
