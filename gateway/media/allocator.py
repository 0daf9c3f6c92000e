"""Simulcast layer allocation of one subscriber under its bandwidth estimate.

What LiveKit's stream allocator (pkg/sfu/streamallocator) does for a subscriber peer connection:
audio first and never paused by congestion; then each video its lowest layer in priority order
(screen shares, then larger requested heights); then one-layer upgrades in the same order while
they fit; when even a lowest layer does not fit, that video is paused (a congestion pause, apart
from the subscriber's own pause). `Allocator` adds the hysteresis: downgrades at once, upgrades only
when the estimate covers the new need with a margin for a while, and after a probe for big steps;
a video is paused only when its lowest layer fits neither the estimate nor what a recent probe
carried (a busy receiver's jitter can hold a delay-based estimate far below the link).
Sans-I/O: the caller passes `Router.subscriber_downtracks` and the estimate, and applies the result
with `Router.set_allocation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .router import DowntrackInfo

# A layer's or an audio track's cost before the router measured it (bits/s): a 180p VP8 layer
# and an Opus voice with its headers, what LiveKit assumes for unmeasured tracks of these kinds.
UNMEASURED_VIDEO = 150_000
UNMEASURED_AUDIO = 40_000
# Upgrade hysteresis: the estimate must cover the upgraded need by 15 % (LiveKit's
# streamallocator keeps a similar headroom) for UPGRADE_HOLD seconds.
UPGRADE_MARGIN = 1.15
UPGRADE_HOLD = 1.0
# A video keeps its lowest layer while that fits what the link was last seen to carry: GoogCC sets
# the estimate to 0.85 x the acknowledged rate on overuse (libwebrtc aimd_rate_control.cc
# kDefaultBackoffFactor), so the link carried estimate / 0.85; below that it is paused.
LOWEST_LAYER_BUDGET = 1 / 0.85
# A step that adds more than this share of what is already sent needs a probe first.
BIG_STEP = 0.3
PROBE_VALIDITY = 5.0  # seconds a probe result confirms upgrades for
# A video is paused only when its lowest layer has not fit for this long (downgrades within its
# layers stay immediate): a short dip of the estimate, e.g. a CPU-starved receiver's delay spike,
# must not blank a picture that costs a few hundred kbit/s.
PAUSE_HOLD = 2.0
# A layer costs the lowest of its last this many one-second measurements: the keyframes that layer
# switches and losses ask for (a 180p layer of 160 kbit/s measured 730 kbit/s for a second under
# them) are spikes, not what the layer takes.
STEADY_ROLLS = 4
# A layer costs at least this many times the layer below it: a publisher ramping up or thinning a
# layer (its own estimate, its CPU) can make 720p measure less than 180p for a few seconds, and a
# free upgrade to it would flood a capped link with its keyframe. Simulcast ladders step by 3 to
# 4 (livekit-client: 160, 450 and 1,700 kbit/s; libwebrtc's 720p: 150, 500 and 1,700 kbit/s).
LAYER_STEP = 2


@dataclass(frozen=True, slots=True)
class Allocation:
    """One allocation: a ceiling per track (None = paused by congestion) and its figures."""

    layers: dict[str, int | None]
    needed: int
    """Bits/s the allocated layers take."""
    limited: bool
    """The estimate kept some video below the layer its subscriber wants."""
    next_need: int | None
    """Bits/s the allocation would take with the next wanted step up (None: nothing to add)."""


def _candidates(info: DowntrackInfo) -> list[tuple[int, int]]:
    """(layer, cost) the subscriber may get, lowest first; layers not seen lately left out. A
    layer costs at least LAYER_STEP times the layer below it, whatever it measured."""
    wanted = max(info.height_layer, 0)
    candidates: list[tuple[int, int]] = []
    floor = 0
    for layer, rate in enumerate(info.layer_bitrates[: wanted + 1]):
        if rate > 0:
            layer_cost = max(rate, floor)
            candidates.append((layer, layer_cost))
            floor = int(layer_cost * LAYER_STEP)
    return candidates or [(0, UNMEASURED_VIDEO)]


def _priority(info: DowntrackInfo) -> tuple[int, int, str]:
    height = info.max_height if info.max_height is not None else 1 << 30
    return (0 if info.source == "screen" else 1, -height, info.track_id)


def allocate(downtracks: Sequence[DowntrackInfo], budget: int) -> Allocation:
    """The best allocation of `budget` bits/s (no hysteresis)."""
    layers: dict[str, int | None] = {}
    needed = 0
    for info in downtracks:
        if info.kind == "audio" and not info.paused:
            rate = info.layer_bitrates[0] if info.layer_bitrates else 0
            needed += rate or UNMEASURED_AUDIO
            layers[info.track_id] = 0
    videos = sorted(
        (info for info in downtracks if info.kind != "audio" and not info.paused),
        key=_priority,
    )
    chosen: dict[str, int] = {}  # index into the track's candidates
    candidates = {info.track_id: _candidates(info) for info in videos}
    for info in videos:
        cost = candidates[info.track_id][0][1]
        if needed + cost <= budget * LOWEST_LAYER_BUDGET:
            chosen[info.track_id] = 0
            needed += cost
    next_need: int | None = None
    upgraded = True
    while upgraded:
        upgraded = False
        for info in videos:
            index = chosen.get(info.track_id)
            options = candidates[info.track_id]
            if index is None or index + 1 >= len(options):
                continue
            extra = options[index + 1][1] - options[index][1]
            if needed + extra <= budget:
                chosen[info.track_id] = index + 1
                needed += extra
                upgraded = True
            elif next_need is None:
                next_need = needed + max(extra, 0)
    limited = False
    for info in videos:
        index = chosen.get(info.track_id)
        options = candidates[info.track_id]
        if index is None:
            layers[info.track_id] = None
            limited = True
            if next_need is None:
                next_need = needed + options[0][1]
        else:
            layers[info.track_id] = options[index][0]
            limited = limited or index + 1 < len(options)
    return Allocation(layers, needed, limited, next_need if limited else None)


def _rank(layer: int | None) -> int:
    return -1 if layer is None else layer


def cost(downtracks: Sequence[DowntrackInfo], layers: dict[str, int | None]) -> int:
    """Bits/s that `layers` (track -> layer, None = paused) take."""
    total = 0
    for info in downtracks:
        layer = layers.get(info.track_id)
        if layer is None or info.paused:
            continue
        if info.kind == "audio":
            rate = info.layer_bitrates[0] if info.layer_bitrates else 0
            total += rate or UNMEASURED_AUDIO
            continue
        options = dict(_candidates(info))
        below = [c for i, c in options.items() if i <= layer]
        total += below[-1] if below else next(iter(options.values()))
    return total


class Allocator:
    """The allocation with hysteresis, for one subscriber."""

    def __init__(self) -> None:
        self.applied: dict[str, int | None] = {}
        self._upgrade_since: float | None = None
        self._probed_rate = 0
        self._probed_at = -1e9
        self._short_since: dict[str, float] = {}  # track -> since when its lowest layer misses
        # track -> its last STEADY_ROLLS distinct measurements of layer bitrates, newest first
        # (the router rolls them every second): keyframes inflate some seconds' figures, not all
        self._rates: dict[str, tuple[tuple[int, ...], ...]] = {}
        self.probe_target: int | None = None
        """Bits/s a probe should reach to allow the next upgrade (None: nothing to probe for)."""

    def on_probe(self, rate: int, now: float) -> None:
        """A probe showed the link carried `rate` bits/s."""
        self._probed_rate = rate
        self._probed_at = now

    def _steady(self, info: DowntrackInfo) -> DowntrackInfo:
        """INFO with each layer's cost the lowest of its last STEADY_ROLLS measurements (a layer
        not seen in the newest one stays 0: not available)."""
        rates = info.layer_bitrates
        history = self._rates.get(info.track_id, ())
        if not history or rates != history[0]:
            history = (rates, *history)[:STEADY_ROLLS]
            self._rates[info.track_id] = history
        steady = tuple(
            min((r[i] for r in history if len(r) == len(rates) and r[i]), default=rate)
            if rate
            else 0
            for i, rate in enumerate(rates)
        )
        return info if steady == rates else replace(info, layer_bitrates=steady)

    def update(
        self, downtracks: Sequence[DowntrackInfo], estimate: int, now: float
    ) -> dict[str, int | None]:
        """The ceilings that change now (track -> layer, or None to pause)."""
        downtracks = [self._steady(info) for info in downtracks]
        target = allocate(downtracks, estimate)
        cautious = allocate(downtracks, int(estimate / UPGRADE_MARGIN))
        lowest = {info.track_id: _candidates(info)[0][0] for info in downtracks}
        if now - self._probed_at <= PROBE_VALIDITY and self._probed_rate > estimate:
            # A recent probe carried more than the estimate says: the link takes at least that
            # much (a delay-based estimate starved by a busy receiver's jitter sits far below
            # what its probes measure). Nothing is paused that fits what the probe carried.
            carried = allocate(downtracks, self._probed_rate).layers
            target, cautious = (
                replace(
                    a,
                    layers={
                        track_id: lowest[track_id]
                        if layer is None and carried.get(track_id) is not None
                        else layer
                        for track_id, layer in a.layers.items()
                    },
                )
                for a in (target, cautious)
            )
        self.probe_target = (
            int(cautious.next_need * UPGRADE_MARGIN) if cautious.next_need is not None else None
        )
        present = {info.track_id for info in downtracks}
        for track_id in [t for t in self.applied if t not in present]:
            del self.applied[track_id]
            self._short_since.pop(track_id, None)
        for track_id in [t for t in self._rates if t not in present]:
            del self._rates[track_id]
        changes: dict[str, int | None] = {}
        upgrades: dict[str, int | None] = {}
        for track_id, layer in target.layers.items():
            if track_id not in self.applied:
                # a new video starts on its lowest layer (or paused when even that does not
                # fit) and climbs like any other: the start estimate is a guess, not a measure
                if layer is not None and layer > 0:
                    layer = lowest.get(track_id, 0)
                changes[track_id] = layer
                continue
            current = self.applied[track_id]
            if layer is None and current is not None:
                since = self._short_since.setdefault(track_id, now)
                if now - since < PAUSE_HOLD:
                    if current != 0:
                        changes[track_id] = 0  # the lowest layer meanwhile
                    continue
            else:
                self._short_since.pop(track_id, None)
            if _rank(layer) < _rank(current):
                changes[track_id] = layer  # downgrade at once
                continue
            safe = cautious.layers.get(track_id, current)
            if _rank(safe) > _rank(current):
                upgrades[track_id] = safe
        self.applied.update(changes)
        if not upgrades:
            self._upgrade_since = None
            return changes
        if self._upgrade_since is None:
            self._upgrade_since = now
        if now - self._upgrade_since < UPGRADE_HOLD:
            return changes
        before = cost(downtracks, self.applied)
        after = cost(downtracks, {**self.applied, **upgrades})
        if after - before > BIG_STEP * max(before, 1):
            recent = now - self._probed_at <= PROBE_VALIDITY
            if not recent or self._probed_rate < after:
                self.probe_target = int(after * UPGRADE_MARGIN)
                return changes  # a big step waits for a probe that carried it
        changes.update(upgrades)
        self.applied.update(upgrades)
        self._upgrade_since = None
        return changes
