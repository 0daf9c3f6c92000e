"""Mixing cost per SIP leg: a room of G.711 callers, a few talking (decode once per talker, mix, encode once per mix).

Measures CPU time (time.process_time) per 20 ms tick for the whole room and per leg, the
implied legs per core, and the two measured choices behind gateway/media/audio: numpy
polyphase vs av.AudioResampler for 48 kHz -> 8 kHz, and libopus decoding straight to 8 kHz vs
PyAV's 48 kHz decoder plus a resampler.

Run: .venv/bin/python -m bench.mixer [--callers 10] [--talkers 3] [--ticks 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from fractions import Fraction

import av
from av.audio.frame import AudioFrame

from gateway.media.audio.codecs import OPUS, PCMA, OpusDecoder, _AvOpusDecoder
from gateway.media.audio.g711 import alaw_encode
from gateway.media.audio.mixer import MixMinusMixer
from gateway.media.audio.resample import Resampler
from gateway.media.audio.tone import generate_tone

TICK_US = 20_000


def _cpu_us_per_call(function: Callable[[], object], calls: int) -> float:
    function()  # warm up
    start = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - start) / calls * 1e6


def bench_room(callers: int, talkers: int, ticks: int) -> dict[str, float]:
    """Every caller sends G.711 (talkers a tone, the others near-silence); all are listeners."""
    legs = [f"sip-{i}" for i in range(callers)]
    payloads = {}
    for i, leg in enumerate(legs):
        level = 8000 if i < talkers else 20
        payloads[leg] = [
            alaw_encode(generate_tone(200 + 90 * i, 20, 8000, level, phase=k * 0.7))
            for k in range(50)
        ]
    decoders = {leg: PCMA.decoder(48000) for leg in legs}
    mixer = MixMinusMixer(max_talkers=3)
    timings = {"decode": 0.0, "mix": 0.0, "encode": 0.0}
    sent = 0
    for tick in range(ticks):
        t0 = time.process_time()
        # Decode once per incoming leg: a phone sends RTP whether or not it talks.
        frames = {leg: decoders[leg].decode(payloads[leg][tick % 50]) for leg in legs}
        t1 = time.process_time()
        result = mixer.tick(frames, legs)
        t2 = time.process_time()
        for leg in legs:
            mixer.encode_once(PCMA, result.mixes[leg])  # the payload each leg would be sent
            sent += 1
        t3 = time.process_time()
        timings["decode"] += t1 - t0
        timings["mix"] += t2 - t1
        timings["encode"] += t3 - t2
    per_tick = {name: total / ticks * 1e6 for name, total in timings.items()}
    per_tick["total"] = sum(per_tick.values())
    per_tick["distinct_mixes"] = len({id(m) for m in result.mixes.values()})
    return per_tick


def bench_resamplers(calls: int) -> dict[str, float]:
    frame = generate_tone(440, 20, 48000, 8000)
    ours = Resampler(48000, 8000)
    theirs = av.AudioResampler(format="s16", layout="mono", rate=8000)

    def with_av() -> object:
        av_frame = AudioFrame.from_ndarray(frame.reshape(1, -1), format="s16", layout="mono")
        av_frame.sample_rate = 48000
        av_frame.time_base = Fraction(1, 48000)
        return [out.to_ndarray() for out in theirs.resample(av_frame)]

    return {
        "numpy polyphase 48k->8k": _cpu_us_per_call(lambda: ours.process(frame), calls),
        "av.AudioResampler 48k->8k": _cpu_us_per_call(with_av, calls),
    }


def bench_opus_to_8k(calls: int) -> dict[str, float]:
    encoder = OPUS.encoder()
    tone = generate_tone(440, 1000, 48000, 8000)
    packets = [encoder.encode(tone[i * 960 : (i + 1) * 960]) for i in range(50)]
    native, fallback = OpusDecoder(8000), _AvOpusDecoder(8000)
    counter = iter(range(1 << 62))
    results = {}
    for name, decoder in [
        ("libopus decode at 8 kHz (ctypes)", native),
        ("PyAV libopus 48 kHz + numpy resample", fallback),
    ]:
        results[name] = _cpu_us_per_call(
            lambda d=decoder: d.decode(packets[next(counter) % 50]), calls
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=10)
    parser.add_argument("--talkers", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=2000)
    args = parser.parse_args()

    room = bench_room(args.callers, args.talkers, args.ticks)
    per_leg = room["total"] / args.callers
    print(
        f"room: {args.callers} G.711 (PCMA) callers, {args.talkers} talking, "
        f"{args.ticks} ticks of 20 ms, {int(room['distinct_mixes'])} distinct mixes per tick"
    )
    print(
        f"  CPU per tick: {room['total']:.0f} us "
        f"(decode {room['decode']:.0f}, mix {room['mix']:.0f}, resample+encode {room['encode']:.0f})"
    )
    print(f"  per SIP leg: {per_leg:.1f} us per tick = {per_leg / TICK_US:.2%} of a core")
    print(f"  implied legs per core: {TICK_US / per_leg:.0f}")
    print("resampling one 20 ms frame (CPU us):")
    for name, value in bench_resamplers(2000).items():
        print(f"  {name}: {value:.1f}")
    print("Opus 20 ms packet -> 8 kHz PCM (CPU us):")
    for name, value in bench_opus_to_8k(2000).items():
        print(f"  {name}: {value:.1f}")


if __name__ == "__main__":
    main()
