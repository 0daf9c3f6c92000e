"""Tones: a sine generator and a single-frequency power detector (the Goertzel algorithm's DFT bin).

Used for join/leave tones and by tests that check which talker a listener hears.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


def generate_tone(
    frequency: float,
    duration_ms: float,
    rate: int,
    amplitude: int = 8000,
    phase: float = 0.0,
) -> Samples:
    """A sine of `amplitude` (int16 peak) at `frequency` Hz lasting `duration_ms`, sampled at `rate`."""
    count = round(rate * duration_ms / 1000)
    t = np.arange(count) / rate
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t + phase)).astype(np.int16)


def goertzel(samples: npt.ArrayLike, frequency: float, rate: int) -> float:
    """Power of `samples` at `frequency`, normalized so a sine of peak A gives A**2 / 4.

    This is the value the Goertzel recursion computes (one DFT term at an arbitrary frequency),
    evaluated as one vectorized dot product instead of a per-sample loop. A Hann window keeps
    neighbouring tones from leaking in; the normalization accounts for its gain.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = len(x)
    if n == 0:
        return 0.0
    window = np.hanning(n)
    phasor = np.exp(-2j * np.pi * frequency / rate * np.arange(n))
    term = np.dot(x * window, phasor)
    return float(abs(term) ** 2 / window.sum() ** 2)


def tone_amplitude(samples: npt.ArrayLike, frequency: float, rate: int) -> float:
    """Estimated peak amplitude of the sine at `frequency` in `samples` (2 * sqrt(power))."""
    return 2.0 * float(np.sqrt(goertzel(samples, frequency, rate)))
