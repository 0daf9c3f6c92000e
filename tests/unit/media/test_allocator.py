"""Layer allocation under a bandwidth estimate, and its hysteresis."""

from __future__ import annotations

from gateway.media.allocator import (
    PAUSE_HOLD,
    STEADY_ROLLS,
    UPGRADE_HOLD,
    Allocator,
    allocate,
    cost,
)
from gateway.media.router import DowntrackInfo

SIMULCAST = (150_000, 500_000, 1_500_000)


def audio(track_id: str = "a", rate: int = 40_000) -> DowntrackInfo:
    return DowntrackInfo(
        track_id, "audio", "microphone", 0, 0, 0, None, None, False, False, (rate,)
    )


def video(
    track_id: str,
    *,
    source: str = "camera",
    max_height: int | None = None,
    rates: tuple[int, ...] = SIMULCAST,
    paused: bool = False,
) -> DowntrackInfo:
    top = len(rates) - 1
    if max_height is not None:
        top = {180: 0, 360: 1}.get(max_height, top)
    return DowntrackInfo(
        track_id, "video", source, 0, 0, top, max_height, None, paused, False, rates
    )


def test_everything_fits_gets_the_wanted_layers() -> None:
    result = allocate([audio(), video("v")], 5_000_000)
    assert result.layers == {"a": 0, "v": 2}
    assert result.needed == 40_000 + 1_500_000
    assert not result.limited and result.next_need is None


def test_audio_is_never_paused_even_without_budget() -> None:
    result = allocate([audio(), video("v")], 10_000)
    assert result.layers == {"a": 0, "v": None}
    assert result.limited


def test_lowest_layers_first_then_upgrades_in_priority_order() -> None:
    tracks = [
        audio(),
        video("small", max_height=360),
        video("big"),
        video("screen", source="screen"),
    ]
    # audio 40k + three lowest layers 450k = 490k; one upgrade (+350k) fits in 900k
    result = allocate(tracks, 900_000)
    assert result.layers == {"a": 0, "screen": 1, "big": 0, "small": 0}
    assert result.limited
    assert result.next_need == 840_000 + 350_000


def test_the_lowest_priority_video_is_paused_first() -> None:
    tracks = [audio(), video("camera", max_height=180), video("screen", source="screen")]
    result = allocate(tracks, 250_000)
    assert result.layers == {"a": 0, "screen": 0, "camera": None}


def test_height_limit_caps_the_wanted_layer() -> None:
    result = allocate([video("v", max_height=360)], 5_000_000)
    assert result.layers == {"v": 1}
    assert not result.limited


def test_paused_by_the_subscriber_takes_nothing() -> None:
    result = allocate([audio(), video("v", paused=True)], 100_000)
    assert "v" not in result.layers
    assert result.needed == 40_000


def test_unmeasured_layers_start_low() -> None:
    result = allocate([video("v", rates=(0, 0, 0))], 5_000_000)
    assert result.layers == {"v": 0}


def test_layer_not_seen_lately_is_skipped() -> None:
    result = allocate([video("v", rates=(150_000, 0, 1_500_000))], 700_000)
    assert result.layers == {"v": 0}
    result = allocate([video("v", rates=(150_000, 0, 1_500_000))], 2_000_000)
    assert result.layers == {"v": 2}


def test_a_layer_measuring_below_the_one_under_it_is_not_a_free_upgrade() -> None:
    # a publisher ramping its 720p layer up: 90 kbit/s measured, less than its 180p layer
    ramping = video("v", rates=(150_000, 0, 90_000))
    assert allocate([audio(), ramping], 300_000).layers == {"a": 0, "v": 0}
    assert cost([ramping], {"v": 2}) == 300_000  # at least twice the layer below it
    assert allocate([audio(), ramping], 400_000).layers == {"a": 0, "v": 2}


def test_cost_of_an_allocation() -> None:
    tracks = [audio(), video("v")]
    assert cost(tracks, {"a": 0, "v": 1}) == 540_000
    assert cost(tracks, {"a": 0, "v": None}) == 40_000


def test_downgrade_at_once_upgrade_after_the_hold() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.applied = {"a": 0, "v": 2}  # where it climbed to
    assert allocator.update(tracks, 300_000, 0.5) == {"v": 0}
    # the estimate comes back (a probe carried it): not before it held for UPGRADE_HOLD
    allocator.on_probe(700_000, 1.0)
    assert allocator.update(tracks, 700_000, 1.0) == {}
    assert allocator.update(tracks, 700_000, 1.0 + UPGRADE_HOLD / 2) == {}
    assert allocator.update(tracks, 700_000, 1.0 + UPGRADE_HOLD) == {"v": 1}


def test_upgrade_needs_the_margin() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.update(tracks, 300_000, 0.0)
    # 540k needed for layer 1: 560k is not 15 % above it
    for step in range(10):
        assert allocator.update(tracks, 560_000, step * 0.5) == {}
    assert allocator.probe_target == int(540_000 * 1.15)


def test_big_step_waits_for_a_probe() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.applied = {"a": 0, "v": 1}
    allocator.update(tracks, 600_000, 0.0)
    assert allocator.applied == {"a": 0, "v": 1}
    # the estimate says layer 2 fits, but 540k -> 1540k is a big step: no probe yet
    allocator.update(tracks, 2_000_000, 1.0)
    assert allocator.update(tracks, 2_000_000, 2.5) == {}
    assert allocator.probe_target is not None and allocator.probe_target >= 1_540_000
    allocator.on_probe(1_900_000, 2.6)
    assert allocator.update(tracks, 2_000_000, 2.7) == {"v": 2}


def test_a_removed_track_is_forgotten() -> None:
    allocator = Allocator()
    allocator.update([audio(), video("v")], 5_000_000, 0.0)
    allocator.update([audio()], 5_000_000, 1.0)
    assert allocator.applied == {"a": 0}


def test_pause_waits_for_the_hold_a_downgrade_does_not() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.applied = {"a": 0, "v": 2}
    assert allocator.update(tracks, 100_000, 1.0) == {"v": 0}  # the lowest layer meanwhile
    assert allocator.update(tracks, 100_000, 1.0 + PAUSE_HOLD / 2) == {}
    assert allocator.update(tracks, 100_000, 1.0 + PAUSE_HOLD) == {"v": None}


def test_keyframe_spikes_of_a_layer_do_not_pause_it() -> None:
    allocator = Allocator()
    assert allocator.update([audio(), video("v")], 220_000, 0.0) == {"a": 0, "v": 0}
    # keyframes (layer switches, losses) inflate the lowest layer's figure for a few seconds
    for step in range(STEADY_ROLLS - 1):
        spiky = [audio(), video("v", rates=(300_000 + step, 500_000, 1_500_000))]
        for tick in range(4):
            assert allocator.update(spiky, 220_000, 1.0 + step + tick * 0.25) == {}
    # measured so for STEADY_ROLLS seconds in a row, it is what the layer costs: paused after
    # the hold
    steady_high = [audio(), video("v", rates=(310_000, 510_000, 1_500_000))]
    allocator.update(steady_high, 220_000, 6.0)
    allocator.update(steady_high, 220_000, 6.0 + PAUSE_HOLD)
    assert allocator.applied["v"] is None


def test_a_new_video_starts_on_its_lowest_layer_whatever_the_estimate() -> None:
    allocator = Allocator()
    assert allocator.update([audio(), video("v")], 5_000_000, 0.0) == {"a": 0, "v": 0}
    assert allocator.update([audio(), video("w")], 100_000, 0.1) == {"w": None}


def test_a_recent_probe_that_carried_the_lowest_layer_keeps_it_unpaused() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.applied = {"a": 0, "v": 0}
    # the estimate says 100 kbit/s, but a probe just carried 260 kbit/s: 180p + audio fit
    allocator.on_probe(260_000, 0.5)
    assert allocator.update(tracks, 100_000, 1.0) == {}
    assert allocator.update(tracks, 100_000, 1.0 + PAUSE_HOLD) == {}
    assert allocator.applied["v"] == 0  # kept on the lowest layer, never upgraded by the probe


def test_a_probe_that_did_not_carry_the_lowest_layer_does_not_keep_it() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.applied = {"a": 0, "v": 0}
    allocator.on_probe(120_000, 0.5)  # more than the estimate, less than audio + 180p
    allocator.update(tracks, 100_000, 1.0)
    assert allocator.update(tracks, 100_000, 1.0 + PAUSE_HOLD) == {"v": None}


def test_a_paused_video_resumes_on_its_lowest_layer_after_a_probe_that_carried_it() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.applied = {"a": 0, "v": None}
    assert allocator.update(tracks, 100_000, 1.0) == {}
    allocator.on_probe(260_000, 1.2)
    assert allocator.update(tracks, 100_000, 1.3) == {}  # an upgrade: after UPGRADE_HOLD
    assert allocator.update(tracks, 100_000, 1.4 + UPGRADE_HOLD) == {"v": 0}


def test_an_old_probe_keeps_nothing() -> None:
    allocator = Allocator()
    tracks = [audio(), video("v")]
    allocator.applied = {"a": 0, "v": 0}
    allocator.on_probe(260_000, 0.0)
    allocator.update(tracks, 100_000, 10.0)
    assert allocator.update(tracks, 100_000, 10.0 + PAUSE_HOLD) == {"v": None}
