from gateway.media.audio.jitter import JitterBuffer, Lost
from gateway.media.rtp import RtpPacket

FRAME = 0.02


def _packet(index: int, *, seq0: int = 1000, ts0: int = 5000, ssrc: int = 7) -> RtpPacket:
    return RtpPacket(
        payload_type=8,
        sequence_number=(seq0 + index) & 0xFFFF,
        timestamp=(ts0 + 160 * index) & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=bytes([index & 0xFF]) * 160,
    )


def _play(buffer: JitterBuffer, start: float, ticks: int) -> list:
    return [buffer.pop(start + i * FRAME) for i in range(ticks)]


def _simulate(buffer: JitterBuffer, arrivals: list[tuple[int, float]], ticks: int) -> list:
    """Pushes packets at their arrival times and pops every 20 ms from t=0, in time order."""
    pending = sorted(arrivals, key=lambda item: item[1])
    outputs = []
    for tick in range(ticks):
        now = tick * FRAME
        while pending and pending[0][1] <= now:
            index, arrival = pending.pop(0)
            buffer.push(_packet(index), arrival)
        outputs.append(buffer.pop(now))
    return [out for out in outputs if out is not None]


def _indexes(outputs: list) -> list:
    return [
        "lost" if isinstance(out, Lost) else None if out is None else out.payload[0]
        for out in outputs
    ]


def test_nothing_plays_until_the_target_delay_has_been_buffered() -> None:
    buffer = JitterBuffer(min_delay=0.06)
    buffer.push(_packet(0), 0.0)
    assert buffer.pop(0.0) is None
    assert buffer.pop(0.04) is None
    played = buffer.pop(0.06)
    assert isinstance(played, RtpPacket) and played.payload[0] == 0


def test_reordered_packets_play_in_sequence() -> None:
    buffer = JitterBuffer(min_delay=0.06)
    arrivals = [(0, 0.0), (2, 0.02), (1, 0.035), (4, 0.06), (3, 0.075), (5, 0.1)]
    assert _indexes(_simulate(buffer, arrivals, 10))[:6] == [0, 1, 2, 3, 4, 5]
    assert buffer.stats.played == 6 and buffer.stats.late == 0


def test_a_missing_packet_is_reported_lost_for_concealment() -> None:
    buffer = JitterBuffer(min_delay=0.04)
    outputs = _simulate(buffer, [(i, i * FRAME) for i in [0, 1, 3, 4, 5]], 8)
    assert _indexes(outputs[:5]) == [0, 1, "lost", 3, 4]
    assert outputs[2].timestamp == 5000 + 2 * 160
    assert buffer.stats.lost == 1


def test_duplicates_are_dropped() -> None:
    buffer = JitterBuffer()
    assert buffer.push(_packet(0), 0.0)
    assert not buffer.push(_packet(0), 0.001)
    assert buffer.stats.duplicate == 1


def test_a_packet_after_its_playout_tick_is_dropped_as_late() -> None:
    buffer = JitterBuffer(min_delay=0.04)
    buffer.push(_packet(0), 0.0)
    buffer.push(_packet(2), 0.04)
    assert _indexes(_play(buffer, 0.04, 2)) == [0, "lost"]
    assert not buffer.push(_packet(1), 0.09)
    assert buffer.stats.late == 1


def test_sequence_and_timestamp_wraparound_keep_order() -> None:
    buffer = JitterBuffer(min_delay=0.04)
    for index in [0, 2, 1, 3]:
        buffer.push(_packet(index, seq0=0xFFFE, ts0=0xFFFFFF00), index * FRAME)
    assert _indexes(_play(buffer, 0.06, 4)) == [0, 1, 2, 3]


def test_when_the_talker_pauses_concealment_stops_then_playout_resumes() -> None:
    buffer = JitterBuffer(min_delay=0.04, max_conceal_frames=3)
    buffer.push(_packet(0), 0.0)
    outputs = _play(buffer, 0.04, 6)
    assert _indexes(outputs) == [0, "lost", "lost", "lost", None, None]
    buffer.push(_packet(100), 2.0)  # a new talkspurt, 2 s of timestamps later
    assert buffer.pop(2.0) is None
    assert _indexes([buffer.pop(2.04)]) == [100]


def test_target_delay_grows_with_jitter_and_stays_within_bounds() -> None:
    steady = JitterBuffer(min_delay=0.04, max_delay=0.2)
    jittery = JitterBuffer(min_delay=0.04, max_delay=0.2)
    for index in range(200):
        steady.push(_packet(index), index * FRAME)
        jittery.push(_packet(index), index * FRAME + (0.06 if index % 2 else 0.0))
    assert steady.target_delay == 0.04
    assert 0.1 < jittery.target_delay <= 0.2


def test_late_packets_raise_the_target_delay() -> None:
    buffer = JitterBuffer(min_delay=0.04, max_delay=0.3)
    buffer.push(_packet(0), 0.0)
    buffer.push(_packet(2), 0.04)
    _play(buffer, 0.04, 2)
    before = buffer.target_delay
    buffer.push(_packet(1), 0.09)
    assert buffer.target_delay >= before + FRAME - 1e-9


def test_an_overfull_buffer_skips_frames_to_shrink_the_delay() -> None:
    buffer = JitterBuffer(min_delay=0.04)
    # A 300 ms stall then a burst: the packets of the stall all arrive at once.
    arrivals = [(i, i * FRAME) for i in range(5)] + [(i, 0.4) for i in range(5, 20)]
    arrivals += [(i, i * FRAME) for i in range(20, 60)]
    outputs = _indexes(_simulate(buffer, arrivals, 60))
    played = [out for out in outputs if out != "lost"]
    assert played == sorted(played)
    assert buffer.stats.skipped > 0
    assert buffer.buffered <= buffer.target_delay + 2 * FRAME


def test_a_steady_stream_plays_every_packet_without_loss() -> None:
    buffer = JitterBuffer(min_delay=0.04)
    outputs = _simulate(buffer, [(i, i * FRAME + 0.003 * (i % 3)) for i in range(100)], 103)
    assert _indexes(outputs)[:100] == list(range(100))
    assert buffer.stats.late == 0 and buffer.stats.skipped == 0
