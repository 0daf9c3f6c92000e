"""The room's mix-minus audio mixer for legs that take one stream (DESIGN.md, "The media relay": mixing).

Every 20 ms tick takes one decoded frame per talker (int16 at 48 kHz), keeps the N loudest
(frame energy with peak-hold and hysteresis, so seats do not flap between syllables), and
builds one shared mix of them for every listener who is not a top talker, plus a private
mix (the others, minus themselves) for each top talker who listens. Listeners on the same mix
get the same `Mix` object, so each distinct mix is resampled once per rate (`at_rate`) and
encoded once per codec (`encode_once`); the resampler and encoder states live per mix, so a
listener keeps hearing one continuous stream while its mix stays the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .codecs import AudioCodec, AudioEncoder
from .resample import Resampler

Samples = npt.NDArray[np.int16]
ParticipantId = Any  # any hashable id; Any so a Mapping[str, ...] is accepted (keys are invariant)

_INT16_MAX = 32767


@dataclass(eq=False, slots=True)
class Mix:
    """One mix for one tick. `without` is the talker left out (None for the shared mix)."""

    samples: Samples  # int16 at the mixer rate, read-only: shared by reference
    without: ParticipantId | None
    tick: int

    @property
    def key(self) -> tuple[str, ParticipantId | None]:
        """Identifies the mix across ticks (the shared mix, or the mix minus one talker)."""
        return ("shared", None) if self.without is None else ("minus", self.without)


@dataclass(slots=True)
class MixResult:
    tick: int
    talkers: tuple[ParticipantId, ...]  # the top talkers, loudest first
    shared: Mix
    mixes: dict[ParticipantId, Mix]  # per listener; non-talkers all hold `shared`


class MixMinusMixer:
    """Mixes a room's top talkers for every listener; one instance per room."""

    def __init__(
        self,
        rate: int = 48000,
        frame_ms: int = 20,
        max_talkers: int = 3,
        hysteresis: float = 2.0,
        silence_rms: float = 50.0,
        release: float = 0.9,
    ) -> None:
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self.max_talkers = max_talkers
        self.hysteresis = hysteresis  # a challenger needs this energy ratio over a seated talker
        self.silence_energy = silence_rms**2
        self.release = release  # per-tick decay of a talker's held level
        self._levels: dict[ParticipantId, float] = {}
        self._talkers: list[ParticipantId] = []
        self._tick = 0
        self._silence = np.zeros(self.frame_samples, np.int16)
        self._silence.flags.writeable = False
        self._gains: dict[tuple[str, ParticipantId | None], float] = {}
        self._resamplers: dict[tuple[tuple[str, ParticipantId | None], int], Resampler] = {}
        self._encoders: dict[tuple[tuple[str, ParticipantId | None], str], AudioEncoder] = {}
        self._resampled: dict[tuple[tuple[str, ParticipantId | None], int], Samples] = {}
        self._encoded: dict[tuple[tuple[str, ParticipantId | None], str], bytes] = {}

    @property
    def talkers(self) -> tuple[ParticipantId, ...]:
        return tuple(self._talkers)

    def tick(
        self, frames: Mapping[ParticipantId, Samples], listeners: Iterable[ParticipantId]
    ) -> MixResult:
        """Mix one frame per talker (`frames`) for every listener."""
        self._tick += 1
        self._resampled.clear()
        self._encoded.clear()
        self._select(frames)
        talkers = tuple(self._talkers)
        if talkers:
            total = np.zeros(self.frame_samples, np.int32)
            for talker in talkers:
                total += frames[talker]
            shared = Mix(self._limit(total, ("shared", None)), None, self._tick)
        else:
            total = None
            shared = Mix(self._silence, None, self._tick)
        mixes: dict[ParticipantId, Mix] = {}
        for listener in listeners:
            if total is not None and listener in talkers:
                private = total - frames[listener]
                mixes[listener] = Mix(
                    self._limit(private, ("minus", listener)), listener, self._tick
                )
            else:
                mixes[listener] = shared
        self._forget_unused({mix.key for mix in mixes.values()} | {shared.key})
        return MixResult(self._tick, talkers, shared, mixes)

    def at_rate(self, mix: Mix, rate: int) -> Samples:
        """The mix at `rate` (8/16/48 kHz), resampled once per mix and rate per tick."""
        if rate == self.rate:
            return mix.samples
        self._check_current(mix)
        cache_key = (mix.key, rate)
        resampled = self._resampled.get(cache_key)
        if resampled is None:
            resampler = self._resamplers.get(cache_key)
            if resampler is None:
                resampler = self._resamplers[cache_key] = Resampler(self.rate, rate)
            resampled = self._resampled[cache_key] = resampler.process(mix.samples)
        return resampled

    def encode_once(self, codec: AudioCodec, mix: Mix) -> bytes:
        """The mix encoded with `codec`: one encode per distinct mix and codec per tick."""
        self._check_current(mix)
        cache_key = (mix.key, codec.name)
        payload = self._encoded.get(cache_key)
        if payload is None:
            encoder = self._encoders.get(cache_key)
            if encoder is None:
                encoder = self._encoders[cache_key] = codec.encoder()
            payload = encoder.encode(self.at_rate(mix, codec.sample_rate))
            self._encoded[cache_key] = payload
        return payload

    def _check_current(self, mix: Mix) -> None:
        if mix.tick != self._tick:
            raise ValueError(f"mix of tick {mix.tick}, the mixer is at tick {self._tick}")

    def _select(self, frames: Mapping[ParticipantId, Samples]) -> None:
        levels = self._levels
        for participant in list(levels):
            if participant not in frames:
                del levels[participant]
        for participant, frame in frames.items():
            samples = frame.astype(np.float32)
            energy = float(np.dot(samples, samples)) / len(samples)
            levels[participant] = max(energy, levels.get(participant, 0.0) * self.release)
        audible = {p for p, level in levels.items() if level >= self.silence_energy}
        seated = [p for p in self._talkers if p in audible]
        challengers = sorted(audible.difference(seated), key=levels.__getitem__, reverse=True)
        while challengers and len(seated) < self.max_talkers:
            seated.append(challengers.pop(0))
        if challengers and seated:
            weakest = min(seated, key=levels.__getitem__)
            if levels[challengers[0]] > self.hysteresis * levels[weakest]:
                seated[seated.index(weakest)] = challengers[0]
        self._talkers = sorted(seated, key=levels.__getitem__, reverse=True)

    def _limit(
        self, total: npt.NDArray[np.int32], key: tuple[str, ParticipantId | None]
    ) -> Samples:
        """int32 sum -> int16, scaling down (ramped across the frame) rather than clipping hard."""
        peak = max(int(total.max()), -int(total.min()))
        previous = self._gains.get(key, 1.0)
        if peak <= _INT16_MAX and previous == 1.0:
            out = total.astype(np.int16)
        else:
            wanted = min(1.0, _INT16_MAX / peak) if peak else 1.0
            gain = wanted if wanted < previous else min(1.0, previous * 1.05)  # fast attack
            ramp = np.linspace(previous, gain, len(total), dtype=np.float32)
            out = np.clip(total * ramp, -32768, _INT16_MAX).astype(np.int16)
            self._gains[key] = gain
        out.flags.writeable = False
        return out

    def _forget_unused(self, keys: set[tuple[str, ParticipantId | None]]) -> None:
        """Drop limiter, resampler and encoder state of mixes no listener got this tick."""
        for key in [k for k in self._gains if k not in keys]:
            del self._gains[key]
        for state_key in [k for k in self._resamplers if k[0] not in keys]:
            del self._resamplers[state_key]
        for codec_key in [k for k in self._encoders if k[0] not in keys]:
            del self._encoders[codec_key]
