import numpy as np
import pytest

from gateway.media.audio.codecs import (
    G722,
    OPUS,
    PCMA,
    PCMU,
    AudioCodec,
    OpusDecoder,
    OpusEncoder,
    codec_by_name,
)
from gateway.media.audio.tone import generate_tone, tone_amplitude


def _through(codec: AudioCodec, frequency: float, output_rate: int, frames: int = 25) -> np.ndarray:
    encoder, decoder = codec.encoder(), codec.decoder(output_rate)
    tone = generate_tone(frequency, 20 * frames, codec.sample_rate, amplitude=10000)
    n = codec.samples_per_frame
    return np.concatenate(
        [decoder.decode(encoder.encode(tone[i * n : (i + 1) * n])) for i in range(frames)]
    )


def test_g722_runs_16khz_audio_on_an_8khz_rtp_clock() -> None:
    assert (G722.sample_rate, G722.clock_rate, G722.payload_type) == (16000, 8000, 9)
    assert (G722.samples_per_frame, G722.timestamp_step) == (320, 160)


def test_static_and_default_payload_types() -> None:
    assert (PCMU.payload_type, PCMA.payload_type, OPUS.payload_type) == (0, 8, 111)
    assert (OPUS.clock_rate, OPUS.channels, OPUS.timestamp_step) == (48000, 2, 960)
    assert codec_by_name("pcma") is PCMA
    assert codec_by_name("OPUS") is OPUS


@pytest.mark.parametrize("codec", [PCMA, PCMU])
def test_g711_payload_is_one_byte_per_sample(codec: AudioCodec) -> None:
    payload = codec.encoder().encode(generate_tone(1000, 20, 8000))
    assert len(payload) == 160


def test_opus_encoded_at_48khz_decodes_at_8khz_keeping_a_440hz_tone() -> None:
    out = _through(OPUS, 440, 8000)
    assert len(out) == 25 * 160
    steady = out[1600:]
    assert tone_amplitude(steady, 440, 8000) == pytest.approx(10000, rel=0.1)
    assert tone_amplitude(steady, 1000, 8000) < 100


def test_opus_decoding_uses_libopus_at_the_requested_rate() -> None:
    decoder = OpusDecoder(8000)
    assert decoder.uses_libopus
    with pytest.raises(ValueError):
        OpusDecoder(44100)


def test_g722_keeps_a_tone_through_encode_and_decode() -> None:
    out = _through(G722, 1000, 16000)
    assert len(out) == 25 * 320
    assert tone_amplitude(out[3200:], 1000, 16000) == pytest.approx(10000, rel=0.05)


def test_g711_decoder_upsamples_to_the_mixer_rate() -> None:
    out = _through(PCMA, 1000, 48000)
    assert len(out) == 25 * 960
    assert tone_amplitude(out[4800:], 1000, 48000) == pytest.approx(10000, rel=0.03)


def test_g711_concealment_repeats_then_fades_to_silence() -> None:
    decoder = PCMU.decoder()
    heard = decoder.decode(PCMU.encoder().encode(generate_tone(1000, 20, 8000, 10000)))
    concealed = [decoder.conceal() for _ in range(6)]
    assert tone_amplitude(concealed[0], 1000, 8000) > 0.7 * tone_amplitude(heard, 1000, 8000)
    levels = [np.abs(frame.astype(np.int32)).max() for frame in concealed]
    assert levels == sorted(levels, reverse=True)
    assert levels[-1] == 0


def test_opus_concealment_continues_the_tone_through_a_lost_packet() -> None:
    encoder, decoder = OPUS.encoder(), OPUS.decoder(8000)
    tone = generate_tone(440, 400, 48000, amplitude=10000)
    frames = []
    for i in range(20):
        payload = encoder.encode(tone[i * 960 : (i + 1) * 960])
        frames.append(decoder.conceal() if i == 15 else decoder.decode(payload))
    assert len(frames[15]) == 160
    assert tone_amplitude(frames[15], 440, 8000) > 5000


def test_opus_fec_rebuilds_a_lost_frame_from_the_next_packet() -> None:
    encoder, decoder = OPUS.encoder(), OPUS.decoder(8000)
    tone = generate_tone(440, 400, 48000, amplitude=10000)
    payloads = [encoder.encode(tone[i * 960 : (i + 1) * 960]) for i in range(20)]
    for payload in payloads[:15]:
        decoder.decode(payload)
    rebuilt = decoder.conceal(next_payload=payloads[16])  # packet 15 lost, 16 arrived
    assert len(rebuilt) == 160
    assert tone_amplitude(rebuilt, 440, 8000) > 5000


def test_a_phones_voice_is_opus_encoded_from_8khz_and_heard_at_48khz() -> None:
    """The conference encodes a narrowband phone from 8 kHz as it is: no resampler."""
    encoder, decoder = OpusEncoder(8000), OpusDecoder(48000)
    tone = generate_tone(440, 500, 8000, amplitude=10000)
    out = np.concatenate(
        [decoder.decode(encoder.encode(tone[i * 160 : (i + 1) * 160])) for i in range(25)]
    )
    assert len(out) == 25 * 960  # 20 ms frames on Opus's 48 kHz clock
    steady = out[9600:]
    assert tone_amplitude(steady, 440, 48000) == pytest.approx(10000, rel=0.2)
    assert tone_amplitude(steady, 1000, 48000) < 300
    with pytest.raises(ValueError):
        OpusEncoder(44100)
