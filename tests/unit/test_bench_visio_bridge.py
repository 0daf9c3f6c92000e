"""Smoke test of bench/visio_bridge.py's measuring code (the benchmark itself is not in make test:
`.venv/bin/python -m bench.visio_bridge`, BENCHMARKS.md "Visio bridge")."""

from __future__ import annotations

import numpy as np
import pytest

from bench import visio_bridge as vb
from gateway.media.audio.g711 import alaw_decode
from gateway.media.rtp import RtpPacket


def test_bursts_start_loud_and_cut_into_frames() -> None:
    frames = vb.burst_frames(vb.PHONE_RATE, vb.PHONE_FRAME)
    assert len(frames) == vb.BURST_MS // 20
    assert all(len(f) == vb.PHONE_FRAME for f in frames)
    assert vb.loud_index(frames[0]) == 0
    assert vb.loud_index(np.zeros(160, np.int16)) == -1


def test_pcma_packet_round_trips() -> None:
    payload = bytes(range(160))
    packet = RtpPacket.parse(vb.pcma_packet(0x12345678, 70000, 2**32 + 5, payload))
    assert (packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc) == (
        8,
        70000 & 0xFFFF,
        5,
        0x12345678,
    )
    assert packet.payload == payload
    assert len(alaw_decode(packet.payload)) == 160


def test_onsets_are_found_per_burst_and_refined_to_the_sample() -> None:
    # 20 ms packets at 8 kHz: silence, then a burst whose first loud sample is the 40th of the
    # packet that arrives at t = 10.1; a second burst is never heard.
    records: vb.Onsets = [(10.06, -1, 160), (10.08, -1, 160), (10.1, 40, 160), (10.12, 0, 160)]
    onsets = vb.onset_times(records, [10.0, 12.0], rate=8000)
    assert onsets[0] == pytest.approx(10.1 - 120 / 8000)
    assert onsets[1] is None
    assert vb.differences([1.05, None], [1.0, 2.0]) == pytest.approx([50.0])


def test_per_participant_and_percentile() -> None:
    # 1.3 CPU-s under load, 0.5 at baseline, 4 participants over 10 s: 2% of a core each
    assert vb.per_participant(1.3, 0.5, 4, 10.0) == pytest.approx(2.0)
    assert vb.percentile([float(i) for i in range(1, 11)], 0.9) == 9.0
