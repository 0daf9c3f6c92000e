"""What the gateway says to a phone: the recorded prompts (protocols/sip/prompts/LANGUAGE/*.wav),
the join and leave tones, and the lobby's waiting prompt, played again after each silence."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.media.audio.codecs import Samples
from gateway.media.audio.resample import Resampler
from gateway.media.audio.tone import generate_tone
from protocols.sip.clock import Clock, Timer, resolve
from protocols.sip.media_leg import MediaLeg

log = logging.getLogger("protocols.sip.call")
"""Prompts are logged as the call's own lines, as they always were."""

PROMPTS = Path(__file__).resolve().parent / "prompts"
JOIN_TONE = (660.0, 880.0)
LEAVE_TONE = (880.0, 660.0)
FRAME_SECONDS = 0.02
PROMPT_GRACE = 2.0
"""Seconds beyond its length that ``PromptPlayer.play`` waits for a prompt to be sent."""


@functools.cache
def load_prompt(language: str, name: str, rate: int) -> tuple[Samples, ...]:
    """A prompt as 20 ms frames at ``rate`` (the WAVs are 8 kHz mono 16-bit)."""
    with wave.open(str(PROMPTS / language / f"{name}.wav"), "rb") as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.int16)
    if rate != 8000:
        samples = Resampler(8000, rate).process(samples)
    return _frames(samples, rate)


@functools.cache
def tone_frames(
    frequencies: tuple[float, ...], rate: int, each_ms: int = 120
) -> tuple[Samples, ...]:
    samples = np.concatenate([generate_tone(f, each_ms, rate, amplitude=6000) for f in frequencies])
    return _frames(samples, rate)


def _frames(samples: Samples, rate: int) -> tuple[Samples, ...]:
    """20 ms frames, read-only: cached prompts and tones are shared by every call."""
    size = rate // 50
    padded = np.concatenate([samples, np.zeros(-len(samples) % size, np.int16)])
    padded.flags.writeable = False
    return tuple(padded[i : i + size] for i in range(0, len(padded), size))


class PromptPlayer:
    """Plays prompts and tones to one call's phone, in the call's language, at its codec's rate;
    nothing while the call has no leg in a conference."""

    def __init__(self, media: MediaLeg, language: str, call_id: str) -> None:
        self.media = media
        self.language = language
        self.call_id = call_id

    def start(self, name: str, on_done: Callable[[], None] | None = None) -> float:
        """Start a prompt without waiting for it (logged); its length in seconds."""
        leg, offer = self.media.leg, self.media.offer
        if leg is None or offer is None:
            return 0.0
        frames = load_prompt(self.language, name, offer.codec.sample_rate)
        log.info("phone prompt", extra={"call_id": self.call_id, "prompt": name})
        leg.play(frames, on_done)
        return len(frames) * FRAME_SECONDS

    async def play(self, name: str) -> None:
        """Play a prompt and return when it has been sent (or a little after it should have)."""
        if self.media.leg is None or self.media.offer is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seconds = self.start(name, lambda: resolve(done, None))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done, seconds + PROMPT_GRACE)

    def notice(self, name: str) -> None:
        """A short notice (joined, muted, unmuted), not logged: the event it tells is."""
        leg, offer = self.media.leg, self.media.offer
        if leg is not None and offer is not None:
            leg.play(load_prompt(self.language, name, offer.codec.sample_rate))

    def tone(self, frequencies: tuple[float, ...]) -> None:
        """A tone (someone joined or left), unless a prompt is playing."""
        leg, offer = self.media.leg, self.media.offer
        if leg is not None and offer is not None and not leg.prompt:
            leg.play(tone_frames(frequencies, offer.codec.sample_rate))


class RepeatingPrompt:
    """A prompt started again after each ``pause`` seconds of silence that follow it, for as long
    as ``wanted()`` holds, until stopped (the lobby's waiting prompt)."""

    def __init__(
        self, clock: Clock, start: Callable[[], float], pause: float, wanted: Callable[[], bool]
    ) -> None:
        self.clock = clock
        self._start = start
        self.pause = pause
        self._wanted = wanted
        self._timer: Timer | None = None

    def start(self) -> None:
        """Play it now, and again after its length and the pause, while it is wanted."""
        self._timer = None
        if self._wanted():
            self._timer = self.clock.call_later(self._start() + self.pause, self.start)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
