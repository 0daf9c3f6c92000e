"""Audio for legs that take one mixed stream (SIP phones): codecs, jitter buffer, mix-minus, DTMF (DESIGN.md)."""

from .codecs import G722, OPUS, PCMA, PCMU, AudioCodec, AudioDecoder, AudioEncoder, codec_by_name
from .jitter import JitterBuffer, JitterStats, Lost
from .mixer import Mix, MixMinusMixer, MixResult
from .resample import Resampler
from .telephone_event import Digit, DtmfDetector, TelephoneEvent, dtmf_packets
from .tone import generate_tone, goertzel, tone_amplitude

__all__ = [
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "AudioCodec",
    "AudioDecoder",
    "AudioEncoder",
    "Digit",
    "DtmfDetector",
    "JitterBuffer",
    "JitterStats",
    "Lost",
    "Mix",
    "MixMinusMixer",
    "MixResult",
    "Resampler",
    "TelephoneEvent",
    "codec_by_name",
    "dtmf_packets",
    "generate_tone",
    "goertzel",
    "tone_amplitude",
]
