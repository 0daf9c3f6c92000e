"""Audio codecs for mixed legs: PCMA/PCMU (G.711), G.722 and Opus, per the RTP profiles RFC 3551 and RFC 7587.

Each codec names its RTP clock rate apart from its audio sample rate: G.722 is 16 kHz audio
on an 8 kHz RTP clock (RFC 3551 §4.5.2), Opus is always a 48 kHz clock (RFC 7587 §4.1).
Decoders return int16 mono frames at the rate the consumer asks for, and conceal a lost frame
on request; encoders take int16 mono frames at the codec's sample rate.

Opus is decoded by libopus itself at the consumer's rate (8 kHz for a G.711 leg) through
ctypes, using the libopus that PyAV ships (or the system's): FFmpeg's libopus wrapper forces
48 kHz output and cannot conceal or use in-band FEC, so PyAV's decoder plus a resampler is
only the fallback. G.722 and the Opus encoder go through PyAV's codec contexts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, cast

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame

from . import g711
from .resample import Resampler

Samples = npt.NDArray[np.int16]

FRAME_MS = 20
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_FADE_FRAMES = 5  # G.711/G.722 concealment fades to silence over this many lost frames


class AudioDecoder(Protocol):
    output_rate: int

    def decode(self, payload: bytes) -> Samples:
        """One RTP payload -> int16 samples at output_rate."""
        ...

    def conceal(self, next_payload: bytes | None = None) -> Samples:
        """One frame standing in for a lost packet; `next_payload` may carry FEC for it."""
        ...


class AudioEncoder(Protocol):
    def encode(self, samples: Samples) -> bytes:
        """One frame at the codec's sample rate -> one RTP payload (b"" if none is ready)."""
        ...


@dataclass(frozen=True, slots=True)
class AudioCodec:
    """An audio codec as SDP and RTP see it (rtpmap name, default payload type, clock rate)."""

    name: str  # the rtpmap encoding name
    payload_type: int  # static (RFC 3551) or our default dynamic number
    clock_rate: int  # RTP timestamp units per second, as in rtpmap
    sample_rate: int  # audio samples per second the codec carries
    channels: int = 1  # rtpmap channels (Opus always says 2, RFC 7587 §7)

    @property
    def samples_per_frame(self) -> int:
        """Audio samples in one 20 ms frame at the codec's sample rate."""
        return self.sample_rate * FRAME_MS // 1000

    @property
    def timestamp_step(self) -> int:
        """RTP timestamp increment per 20 ms frame (clock rate, not sample rate)."""
        return self.clock_rate * FRAME_MS // 1000

    def decoder(self, output_rate: int | None = None) -> AudioDecoder:
        """A decoder producing frames at `output_rate` (default: the codec's sample rate)."""
        rate = output_rate or self.sample_rate
        if self.name in ("PCMA", "PCMU"):
            return G711Decoder(self.name, rate)
        if self.name == "G722":
            return G722Decoder(rate)
        if self.name == "opus":
            return OpusDecoder(rate)
        raise ValueError(f"no decoder for {self.name}")

    def encoder(self) -> AudioEncoder:
        if self.name in ("PCMA", "PCMU"):
            return G711Encoder(self.name)
        if self.name == "G722":
            return G722Encoder()
        if self.name == "opus":
            return OpusEncoder()
        raise ValueError(f"no encoder for {self.name}")


PCMU = AudioCodec("PCMU", 0, 8000, 8000)
PCMA = AudioCodec("PCMA", 8, 8000, 8000)
G722 = AudioCodec("G722", 9, 8000, 16000)
OPUS = AudioCodec("opus", 111, 48000, 48000, channels=2)
CODECS = {codec.name.lower(): codec for codec in (PCMU, PCMA, G722, OPUS)}


def codec_by_name(name: str) -> AudioCodec:
    """The codec for an rtpmap encoding name, case-insensitively (KeyError if unknown)."""
    return CODECS[name.lower()]


class _FadingConcealer:
    """Repeats the last decoded frame, fading it to silence over a few lost frames."""

    def __init__(self, frame_samples: int) -> None:
        self._last: Samples = np.zeros(frame_samples, np.int16)
        self._lost = 0

    def heard(self, frame: Samples) -> Samples:
        self._last = frame
        self._lost = 0
        return frame

    def conceal(self) -> Samples:
        start = max(0.0, 1.0 - self._lost / _FADE_FRAMES)
        self._lost += 1
        end = max(0.0, 1.0 - self._lost / _FADE_FRAMES)
        if start == 0.0:
            return np.zeros_like(self._last)
        ramp = np.linspace(start, end, len(self._last), endpoint=False)
        return (self._last * ramp).astype(np.int16)


class G711Decoder:
    def __init__(self, name: str, output_rate: int) -> None:
        self._decode = g711.alaw_decode if name == "PCMA" else g711.ulaw_decode
        self.output_rate = output_rate
        self._resampler = Resampler(8000, output_rate)
        self._concealer = _FadingConcealer(output_rate * FRAME_MS // 1000)

    def decode(self, payload: bytes) -> Samples:
        return self._concealer.heard(self._resampler.process(self._decode(payload)))

    def conceal(self, next_payload: bytes | None = None) -> Samples:
        return self._concealer.conceal()


class G711Encoder:
    def __init__(self, name: str) -> None:
        self._encode = g711.alaw_encode if name == "PCMA" else g711.ulaw_encode

    def encode(self, samples: Samples) -> bytes:
        return self._encode(samples)


def _av_frame(samples: Samples, rate: int, pts: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def _frames_to_samples(frames: list[AudioFrame]) -> Samples:
    if not frames:
        return np.zeros(0, np.int16)
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(np.int16)


class G722Decoder:
    def __init__(self, output_rate: int) -> None:
        self.output_rate = output_rate
        self._context = cast(AudioCodecContext, av.CodecContext.create("g722", "r"))
        self._context.sample_rate = 16000
        self._context.layout = "mono"
        self._context.open()
        self._resampler = Resampler(16000, output_rate)
        self._concealer = _FadingConcealer(output_rate * FRAME_MS // 1000)

    def decode(self, payload: bytes) -> Samples:
        pcm = _frames_to_samples(self._context.decode(av.Packet(payload)))
        return self._concealer.heard(self._resampler.process(pcm))

    def conceal(self, next_payload: bytes | None = None) -> Samples:
        return self._concealer.conceal()


class _AvEncoder:
    def __init__(self, codec_name: str, rate: int, options: dict[str, str] | None = None) -> None:
        self._rate = rate
        self._context = cast(AudioCodecContext, av.CodecContext.create(codec_name, "w"))
        self._context.sample_rate = rate
        self._context.layout = "mono"
        self._context.format = "s16"
        if options:
            self._context.options = options
        self._context.open()
        self._pts = 0

    def encode(self, samples: Samples) -> bytes:
        frame = _av_frame(np.ascontiguousarray(samples, np.int16), self._rate, self._pts)
        self._pts += len(samples)
        return b"".join(bytes(packet) for packet in self._context.encode(frame))


class G722Encoder(_AvEncoder):
    def __init__(self) -> None:
        super().__init__("g722", 16000)


class _AvOpusEncoder(_AvEncoder):
    """PyAV's libopus at 48 kHz mono (when libopus cannot be loaded through ctypes)."""

    def __init__(self, bitrate: int) -> None:
        super().__init__(
            "libopus",
            48000,
            {"application": "voip", "fec": "1", "packet_loss": "10", "b": str(bitrate)},
        )


# opus_defines.h
_OPUS_APPLICATION_VOIP = 2048
_OPUS_SET_BITRATE = 4002
_OPUS_SET_COMPLEXITY = 4010
_OPUS_SET_INBAND_FEC = 4012
_OPUS_SET_PACKET_LOSS_PERC = 4014
_OPUS_MAX_PACKET = 1275


class OpusEncoder:
    """libopus in VoIP mode, mono, with in-band FEC so receivers can recover a loss.

    It takes samples at `input_rate` (8/12/16/24/48 kHz): a narrowband phone's voice is encoded
    from 8 kHz as it is, with no resampling (the RTP clock stays 48 kHz, RFC 7587). Complexity 5:
    a phone's voice gains nothing audible from more, and the encoder costs half as much."""

    def __init__(self, input_rate: int = 48000, bitrate: int = 32000, complexity: int = 5) -> None:
        if input_rate not in _OPUS_RATES:
            raise ValueError(f"Opus encodes from {_OPUS_RATES}, not {input_rate}")
        self.input_rate = input_rate
        self._out = ctypes.create_string_buffer(_OPUS_MAX_PACKET)
        self._fallback: _AvOpusEncoder | None = None
        self._resampler: Resampler | None = None
        self._state: int | None = None
        if _LIBOPUS is None:
            self._fallback = _AvOpusEncoder(bitrate)
            if input_rate != 48000:
                self._resampler = Resampler(input_rate, 48000)
            return
        error = ctypes.c_int()
        state = _LIBOPUS.opus_encoder_create(
            input_rate, 1, _OPUS_APPLICATION_VOIP, ctypes.byref(error)
        )
        if error.value != 0 or not state:
            raise RuntimeError(f"opus_encoder_create failed ({error.value})")
        self._state = state
        weakref.finalize(self, _LIBOPUS.opus_encoder_destroy, state)
        for request, value in (
            (_OPUS_SET_BITRATE, bitrate),
            (_OPUS_SET_COMPLEXITY, complexity),
            (_OPUS_SET_INBAND_FEC, 1),
            (_OPUS_SET_PACKET_LOSS_PERC, 10),
        ):
            _LIBOPUS.opus_encoder_ctl(state, request, value)

    def encode(self, samples: Samples) -> bytes:
        if self._fallback is not None:
            if self._resampler is not None:
                samples = self._resampler.process(samples)
            return self._fallback.encode(samples)
        assert _LIBOPUS is not None
        pcm = np.ascontiguousarray(samples, np.int16)
        count = _LIBOPUS.opus_encode(
            self._state, pcm.ctypes.data, len(pcm), self._out, _OPUS_MAX_PACKET
        )
        return self._out.raw[:count] if count > 0 else b""


def _load_libopus() -> ctypes.CDLL | None:
    bundled = os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libopus*.so*")
    candidates = sorted(glob.glob(bundled))
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_encoder_create.restype = ctypes.c_void_p
        lib.opus_encoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.opus_encode.restype = ctypes.c_int32
        lib.opus_encode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int32,
        ]
        lib.opus_encoder_ctl.restype = ctypes.c_int
        # variadic in C; every request used here takes one opus_int32
        lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int32]
        lib.opus_encoder_destroy.restype = None
        lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
        return lib
    return None


_LIBOPUS = _load_libopus()


class OpusDecoder:
    """Opus decoded by libopus at `output_rate` (8/12/16/24/48 kHz), with its PLC and FEC."""

    def __init__(self, output_rate: int = 48000) -> None:
        if output_rate not in _OPUS_RATES:
            raise ValueError(f"Opus decodes at {_OPUS_RATES}, not {output_rate}")
        self.output_rate = output_rate
        self._frame = output_rate * FRAME_MS // 1000
        self._pcm = np.zeros(output_rate * 120 // 1000, np.int16)  # the longest Opus packet
        self._fallback: _AvOpusDecoder | None = None
        self._state: int | None = None
        if _LIBOPUS is None:
            self._fallback = _AvOpusDecoder(output_rate)
            return
        error = ctypes.c_int()
        state = _LIBOPUS.opus_decoder_create(output_rate, 1, ctypes.byref(error))
        if error.value != 0 or not state:
            raise RuntimeError(f"opus_decoder_create failed ({error.value})")
        self._state = state
        weakref.finalize(self, _LIBOPUS.opus_decoder_destroy, state)

    @property
    def uses_libopus(self) -> bool:
        return self._fallback is None

    def _run(self, payload: bytes | None, frame_size: int, fec: int) -> Samples:
        assert _LIBOPUS is not None
        size = len(payload) if payload else 0
        count = _LIBOPUS.opus_decode(
            self._state, payload or None, size, self._pcm.ctypes.data, frame_size, fec
        )
        if count < 0:  # a corrupt packet: conceal instead
            count = _LIBOPUS.opus_decode(
                self._state, None, 0, self._pcm.ctypes.data, self._frame, 0
            )
        return self._pcm[: max(count, 0)].copy()

    def decode(self, payload: bytes) -> Samples:
        if self._fallback is not None:
            return self._fallback.decode(payload)
        return self._run(payload, len(self._pcm), 0)

    def conceal(self, next_payload: bytes | None = None) -> Samples:
        """libopus PLC, or the lost frame rebuilt from `next_payload`'s in-band FEC (LBRR)."""
        if self._fallback is not None:
            return self._fallback.conceal(next_payload)
        if next_payload:
            return self._run(next_payload, self._frame, 1)
        return self._run(None, self._frame, 0)


class _AvOpusDecoder:
    """PyAV's libopus decoder (48 kHz only) plus a resampler; no PLC beyond a fade."""

    def __init__(self, output_rate: int) -> None:
        self.output_rate = output_rate
        self._context = cast(AudioCodecContext, av.CodecContext.create("libopus", "r"))
        self._context.open()
        self._resampler = Resampler(48000, output_rate)
        self._concealer = _FadingConcealer(output_rate * FRAME_MS // 1000)

    def decode(self, payload: bytes) -> Samples:
        pcm = _frames_to_samples(self._context.decode(av.Packet(payload)))
        return self._concealer.heard(self._resampler.process(pcm))

    def conceal(self, next_payload: bytes | None = None) -> Samples:
        return self._concealer.conceal()
