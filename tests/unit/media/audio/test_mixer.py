import numpy as np
import pytest

from gateway.media.audio.codecs import OPUS, PCMA, PCMU
from gateway.media.audio.g711 import alaw_decode
from gateway.media.audio.mixer import MixMinusMixer
from gateway.media.audio.tone import generate_tone, tone_amplitude

RATE = 48000
VOICES = {"a": 300.0, "b": 500.0, "c": 700.0, "d": 900.0}


def _frames(levels: dict[str, int]) -> dict[str, np.ndarray]:
    return {
        who: generate_tone(VOICES[who], 20, RATE, amplitude=level) for who, level in levels.items()
    }


def test_a_talker_hears_the_others_but_not_itself() -> None:
    mixer = MixMinusMixer(max_talkers=3)
    result = mixer.tick(_frames({"a": 8000, "b": 6000, "c": 4000}), ["a", "b", "c", "x"])
    heard_by_a = result.mixes["a"].samples
    assert tone_amplitude(heard_by_a, VOICES["a"], RATE) < 1
    assert tone_amplitude(heard_by_a, VOICES["b"], RATE) == pytest.approx(6000, rel=0.02)
    assert tone_amplitude(heard_by_a, VOICES["c"], RATE) == pytest.approx(4000, rel=0.02)


def test_listeners_who_do_not_talk_share_one_mix_object() -> None:
    mixer = MixMinusMixer(max_talkers=3)
    result = mixer.tick(_frames({"a": 8000, "b": 6000, "c": 4000}), ["a", "b", "c", "x", "y", "z"])
    assert result.mixes["x"] is result.mixes["y"] is result.mixes["z"] is result.shared
    assert len({id(result.mixes[who]) for who in "abc"}) == 3
    for who in "abc":
        assert tone_amplitude(result.shared.samples, VOICES[who], RATE) > 3000


def test_only_the_loudest_talkers_are_mixed() -> None:
    mixer = MixMinusMixer(max_talkers=2)
    result = mixer.tick(_frames({"a": 8000, "b": 6000, "c": 1000}), ["c", "x"])
    assert result.talkers == ("a", "b")
    assert tone_amplitude(result.shared.samples, VOICES["c"], RATE) < 1
    assert result.mixes["c"] is result.shared  # c is not a top talker: it hears a and b


def test_a_seated_talker_keeps_its_seat_against_a_slightly_louder_one() -> None:
    mixer = MixMinusMixer(max_talkers=1, hysteresis=2.0)
    mixer.tick(_frames({"a": 5000, "b": 1000}), [])
    assert mixer.tick(_frames({"a": 5000, "b": 6000}), []).talkers == ("a",)  # < 2x energy
    assert mixer.tick(_frames({"a": 5000, "b": 9000}), []).talkers == ("b",)  # > 2x energy


def test_silence_takes_no_seat() -> None:
    mixer = MixMinusMixer()
    result = mixer.tick(_frames({"a": 10}), ["a", "x"])
    assert result.talkers == ()
    assert not result.shared.samples.any()
    assert result.mixes["a"] is result.shared


def test_the_sum_is_limited_to_int16_without_wrapping() -> None:
    mixer = MixMinusMixer()
    loud = {"a": 30000, "b": 30000, "c": 30000}
    for _ in range(3):
        result = mixer.tick(_frames(loud), ["x"])
    samples = result.shared.samples
    assert samples.dtype == np.int16
    assert tone_amplitude(samples, VOICES["a"], RATE) > 5000  # scaled down, not wrapped to noise


def test_mixes_are_read_only_because_they_are_shared() -> None:
    result = MixMinusMixer().tick(_frames({"a": 8000}), ["x"])
    with pytest.raises(ValueError):
        result.shared.samples[0] = 1


def test_each_distinct_mix_is_encoded_once_per_codec() -> None:
    mixer = MixMinusMixer()
    result = mixer.tick(_frames({"a": 8000, "b": 6000}), ["a", "b", "x", "y"])
    shared_x = mixer.encode_once(PCMA, result.mixes["x"])
    assert mixer.encode_once(PCMA, result.mixes["y"]) is shared_x
    assert len(shared_x) == 160
    assert mixer.encode_once(PCMA, result.mixes["a"]) is not shared_x
    assert mixer.encode_once(PCMU, result.mixes["x"]) is not shared_x
    assert mixer.at_rate(result.shared, 8000) is mixer.at_rate(result.mixes["y"], 8000)
    assert len(mixer.encode_once(OPUS, result.shared)) > 0


def test_a_g711_listener_hears_the_mix_minus_itself_at_8khz() -> None:
    mixer = MixMinusMixer()
    heard = []
    for _ in range(10):
        result = mixer.tick(_frames({"a": 8000, "b": 6000}), ["a"])
        heard.append(alaw_decode(mixer.encode_once(PCMA, result.mixes["a"])))
    audio = np.concatenate(heard[2:])
    assert tone_amplitude(audio, VOICES["b"], 8000) == pytest.approx(6000, rel=0.05)
    assert tone_amplitude(audio, VOICES["a"], 8000) < 30


def test_a_mix_from_an_earlier_tick_is_refused() -> None:
    mixer = MixMinusMixer()
    old = mixer.tick(_frames({"a": 8000}), ["x"])
    mixer.tick(_frames({"a": 8000}), ["x"])
    with pytest.raises(ValueError):
        mixer.encode_once(PCMA, old.shared)
