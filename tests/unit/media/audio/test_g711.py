import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gateway.media.audio import g711
from gateway.media.audio.tone import generate_tone, goertzel, tone_amplitude


def test_silence_encodes_to_the_standard_idle_codes() -> None:
    zero = np.zeros(1, np.int16)
    assert g711.alaw_encode(zero) == bytes([g711.PCMA_SILENCE]) == b"\xd5"
    assert g711.ulaw_encode(zero) == bytes([g711.PCMU_SILENCE]) == b"\xff"


def test_decoding_gives_the_g711_reconstruction_values() -> None:
    assert g711.alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    assert g711.ulaw_decode(b"\xff\x7f\x80\x00").tolist() == [0, 0, 32124, -32124]


def test_full_scale_saturates_to_the_largest_code() -> None:
    extremes = np.array([32767, -32768], np.int16)
    assert g711.alaw_decode(g711.alaw_encode(extremes)).tolist() == [32256, -32256]
    assert g711.ulaw_decode(g711.ulaw_encode(extremes)).tolist() == [32124, -32124]


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.alaw_encode, g711.alaw_decode), (g711.ulaw_encode, g711.ulaw_decode)],
)
def test_every_code_reencodes_to_itself(encode, decode) -> None:
    codes = bytes(range(256))
    again = encode(decode(codes))
    if encode is g711.ulaw_encode:  # mu-law has two zeros; 0x7F (-0) comes back as 0xFF (+0)
        codes = codes.replace(b"\x7f", b"\xff")
    assert again == codes


@pytest.mark.parametrize("codec", ["pcm_alaw", "pcm_mulaw"])
def test_decoding_matches_ffmpeg(codec: str) -> None:
    av = pytest.importorskip("av")
    context = av.CodecContext.create(codec, "r")
    context.sample_rate = 8000
    context.layout = "mono"
    context.open()
    codes = bytes(range(256))
    reference = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in context.decode(av.Packet(codes))]
    )
    ours = g711.alaw_decode(codes) if codec == "pcm_alaw" else g711.ulaw_decode(codes)
    assert np.array_equal(ours, reference)


@settings(deadline=None)  # CPU-bound; a loaded CI machine must not fail it
@given(arrays(np.int16, st.integers(1, 400)))
def test_round_trip_error_stays_within_half_a_quantization_step(samples: np.ndarray) -> None:
    x = samples.astype(np.int32)
    for encode, decode, largest in [
        (g711.alaw_encode, g711.alaw_decode, 32256),
        (g711.ulaw_encode, g711.ulaw_decode, 32124),
    ]:
        clipped = np.clip(x, -largest, largest)
        error = np.abs(decode(encode(samples)).astype(np.int32) - clipped)
        # Steps double per segment: half a step is at most 1/32 of the magnitude, plus the
        # smallest half-step near zero.
        assert np.all(error <= np.abs(clipped) / 32 + 8)


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.alaw_encode, g711.alaw_decode), (g711.ulaw_encode, g711.ulaw_decode)],
)
def test_a_1khz_tone_keeps_its_frequency_and_level(encode, decode) -> None:
    tone = generate_tone(1000, 200, 8000, amplitude=10000)
    out = decode(encode(tone))
    assert tone_amplitude(out, 1000, 8000) == pytest.approx(10000, rel=0.01)
    # Quantization noise at a neighbouring frequency stays ~50 dB down.
    assert goertzel(out, 1300, 8000) < goertzel(out, 1000, 8000) * 1e-5
