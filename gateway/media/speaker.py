"""Active speaker detection for one room from the client-to-mixer audio level extension (RFC 6464), no decoding.

Each packet carries the level of its audio in -dBov (0 loudest, 127 silence). Over each interval
(300 ms) a participant whose packets were mostly louder than `active_level` gets the mean linear
amplitude 10^(-dBov/20) of those packets; that value is smoothed across intervals, so a speaker
fades out over about a second instead of flickering between words. Levels are linear, 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

SILENCE_DBOV = 127


def audio_level_from_extension(data: bytes) -> tuple[int, bool]:
    """(level in -dBov, voice activity flag) from the one byte of the RFC 6464 extension."""
    b = data[0]
    return b & 0x7F, bool(b & 0x80)


def dbov_to_linear(level: int) -> float:
    return float(10.0 ** (-level / 20.0))


@dataclass(slots=True)
class _Accumulator:
    samples: int = 0
    active_samples: int = 0
    active_sum: float = 0.0
    smoothed: float = 0.0


class ActiveSpeakerDetector:
    """Feed it RFC 6464 levels; `update` says who speaks, loudest first, when that changes."""

    def __init__(
        self,
        interval: float = 0.3,
        active_level: int = 40,
        min_active_fraction: float = 0.4,
        smoothing: float = 0.5,
    ) -> None:
        self.interval = interval
        self.active_level = active_level
        self.min_active_fraction = min_active_fraction
        self.smoothing = smoothing
        self.threshold = dbov_to_linear(active_level) / 4
        self.next_update = 0.0
        self._participants: dict[str, _Accumulator] = {}
        self._speakers: list[str] = []
        self._levels: list[tuple[str, float]] = []

    @property
    def speakers(self) -> list[tuple[str, float]]:
        """The last list `update` returned: (participant_id, level), loudest first."""
        return list(self._levels)

    def on_audio_level(self, participant_id: str, level: int) -> None:
        acc = self._participants.get(participant_id)
        if acc is None:
            acc = self._participants[participant_id] = _Accumulator()
        acc.samples += 1
        if level <= self.active_level:
            acc.active_samples += 1
            acc.active_sum += 10.0 ** (-level / 20.0)

    def on_audio_levels(
        self, participant_id: str, samples: int, active_samples: int, active_sum: float
    ) -> None:
        """Many `on_audio_level` calls at once (the native fast path accumulates them)."""
        acc = self._participants.get(participant_id)
        if acc is None:
            acc = self._participants[participant_id] = _Accumulator()
        acc.samples += samples
        acc.active_samples += active_samples
        acc.active_sum += active_sum

    def remove(self, participant_id: str) -> None:
        self._participants.pop(participant_id, None)

    def update(self, now: float) -> list[tuple[str, float]] | None:
        """Close the interval if it is over; the new speaker list if it changed, else None."""
        if now < self.next_update:
            return None
        self.next_update = now + self.interval
        for participant_id, acc in list(self._participants.items()):
            raw = 0.0
            if acc.samples and acc.active_samples >= self.min_active_fraction * acc.samples:
                raw = acc.active_sum / acc.active_samples
            acc.smoothed += (raw - acc.smoothed) * self.smoothing
            if acc.samples == 0 and acc.smoothed < self.threshold:
                del self._participants[participant_id]
                continue
            acc.samples = acc.active_samples = 0
            acc.active_sum = 0.0
        levels = sorted(
            (
                (participant_id, round(acc.smoothed, 4))
                for participant_id, acc in self._participants.items()
                if acc.smoothed >= self.threshold
            ),
            key=lambda item: -item[1],
        )
        speakers = [participant_id for participant_id, _ in levels]
        if speakers == self._speakers:
            return None
        self._speakers = speakers
        self._levels = levels
        return list(levels)
