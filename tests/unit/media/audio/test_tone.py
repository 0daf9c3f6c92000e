import numpy as np
import pytest

from gateway.media.audio.tone import generate_tone, goertzel, tone_amplitude


def test_generated_tone_has_the_requested_length_and_peak() -> None:
    tone = generate_tone(440, 20, 48000, amplitude=12000)
    assert tone.dtype == np.int16
    assert len(tone) == 960
    assert abs(int(tone.max()) - 12000) <= 1


def test_goertzel_measures_the_amplitude_of_a_sine() -> None:
    tone = generate_tone(697, 100, 8000, amplitude=5000)
    assert tone_amplitude(tone, 697, 8000) == pytest.approx(5000, rel=0.01)
    assert goertzel(tone, 697, 8000) == pytest.approx(5000**2 / 4, rel=0.02)


def test_goertzel_separates_two_dtmf_frequencies() -> None:
    mixed = generate_tone(770, 50, 8000, 4000) + generate_tone(1336, 50, 8000, 2000)
    assert tone_amplitude(mixed, 770, 8000) == pytest.approx(4000, rel=0.02)
    assert tone_amplitude(mixed, 1336, 8000) == pytest.approx(2000, rel=0.02)
    assert tone_amplitude(mixed, 1000, 8000) < 40


def test_goertzel_of_silence_is_zero() -> None:
    assert goertzel(np.zeros(160, np.int16), 1000, 8000) == 0.0
    assert goertzel(np.zeros(0, np.int16), 1000, 8000) == 0.0
