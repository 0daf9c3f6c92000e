"""Streaming integer-ratio polyphase resampler (48 kHz <-> 16 kHz <-> 8 kHz) in numpy.

A Kaiser-windowed sinc low-pass, applied only at the output instants: decimating by M computes
one dot product per output sample, interpolating by L one small matrix product per input
sample. Filter history carries across calls, so 20 ms frames join without clicks.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

Samples = npt.NDArray[np.int16]

_ZERO_CROSSINGS = 8  # per side, in samples of the lower rate
_KAISER_BETA = 8.0
_PASSBAND = 0.90  # cutoff as a fraction of the lower rate's Nyquist frequency


@functools.cache
def _lowpass(factor: int) -> npt.NDArray[np.float64]:
    length = 2 * _ZERO_CROSSINGS * factor + 1
    cutoff = _PASSBAND * 0.5 / factor  # cycles per sample at the higher rate
    n = np.arange(length) - (length - 1) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(length, _KAISER_BETA)
    taps /= taps.sum()  # unity gain at DC
    taps.flags.writeable = False  # cached: shared by every resampler of this factor
    return taps


class Resampler:
    """Converts int16 mono audio from `input_rate` to `output_rate`; one instance per stream."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        high, low = max(input_rate, output_rate), min(input_rate, output_rate)
        if high % low:
            raise ValueError(f"only integer ratios are supported ({input_rate} -> {output_rate})")
        self.input_rate = input_rate
        self.output_rate = output_rate
        self._factor = high // low
        taps = _lowpass(self._factor)
        if output_rate < input_rate:
            # y[m] = sum_k h[k] x[mM - k]: dot each window of the input with the reversed taps.
            self._kernel = taps[::-1].copy()
            width = len(taps)
        else:
            # Phase p of output n*L + p: y = sum_j L h[p + jL] x[n - j]; one column per phase.
            width = -(-len(taps) // self._factor)
            padded = np.zeros(width * self._factor)
            padded[: len(taps)] = taps * self._factor
            self._kernel = padded.reshape(width, self._factor)[::-1].copy()
        self._history = np.zeros(width - 1)
        self._offset = 0  # decimation: where the next output falls in the next call's input

    def process(self, samples: Samples) -> Samples:
        """Resample one chunk; output length is len(samples) * output_rate / input_rate."""
        if self.input_rate == self.output_rate:
            return samples
        buffer = np.concatenate((self._history, samples))
        windows = sliding_window_view(buffer, len(self._history) + 1)
        if self.output_rate < self.input_rate:
            picked = windows[self._offset :: self._factor]
            self._offset = (self._offset - len(samples)) % self._factor
            out = picked @ self._kernel
        else:
            out = (windows @ self._kernel).reshape(-1)
        self._history = buffer[len(buffer) - len(self._history) :].astype(np.float64, copy=False)
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def reset(self) -> None:
        """Forget the filter history (a new talkspurt or stream)."""
        self._history[:] = 0
        self._offset = 0
