import numpy as np
import pytest

from gateway.media.audio.resample import Resampler
from gateway.media.audio.tone import generate_tone, tone_amplitude


def _stream(resampler: Resampler, signal: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate(
        [resampler.process(signal[i : i + chunk]) for i in range(0, len(signal), chunk)]
    )


@pytest.mark.parametrize(
    ("source", "target", "frequency"),
    [(48000, 8000, 440), (48000, 16000, 3000), (8000, 48000, 1000), (16000, 48000, 5000)],
)
def test_a_tone_keeps_frequency_and_level_across_20ms_frames(source, target, frequency) -> None:
    out = _stream(
        Resampler(source, target), generate_tone(frequency, 500, source, 10000), source // 50
    )
    assert len(out) == target // 2
    steady = out[target // 10 :]
    assert tone_amplitude(steady, frequency, target) == pytest.approx(10000, rel=0.02)
    # Frame joins are seamless: no clicks means nothing at an unrelated frequency.
    assert tone_amplitude(steady, 2 * frequency + 123, target) < 30


def test_decimation_rejects_what_the_lower_rate_cannot_carry() -> None:
    out = _stream(Resampler(48000, 8000), generate_tone(6000, 500, 48000, 10000), 960)
    assert tone_amplitude(out[800:], 2000, 8000) < 30  # 6 kHz would alias to 2 kHz


def test_non_integer_ratios_are_refused() -> None:
    with pytest.raises(ValueError):
        Resampler(44100, 8000)
