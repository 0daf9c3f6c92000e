"""G.711 A-law (PCMA) and mu-law (PCMU) companding (ITU-T G.711), vectorized with lookup tables.

Decoding indexes a 256-entry table; encoding indexes a 65536-entry table built once at import
from the segment arithmetic of the ITU reference (Sun's g711.c), so a frame is one numpy take.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

PCMA_SILENCE = 0xD5  # encodes 0
PCMU_SILENCE = 0xFF  # encodes 0

_ALAW_SEGMENT_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_SEGMENT_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _alaw_decode_table() -> Samples:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    magnitude = np.where(segment == 0, mantissa + 8, mantissa + 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _ulaw_decode_table() -> Samples:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - magnitude, magnitude - _ULAW_BIAS).astype(np.int16)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    pcm = np.where(negative, -pcm - 1, pcm)
    segment = np.searchsorted(_ALAW_SEGMENT_END, pcm)  # first end >= pcm
    shift = np.where(segment < 2, 1, segment)
    code = (np.minimum(segment, 7) << 4) | ((pcm >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_END, pcm)
    code = (np.minimum(segment, 7) << 4) | ((pcm >> (np.minimum(segment, 7) + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


_ALAW_DECODE = _alaw_decode_table()
_ULAW_DECODE = _ulaw_decode_table()
# Indexed by sample + 32768, i.e. the int16 reinterpreted as uint16 after a sign flip.
_ALAW_ENCODE = _alaw_encode_table()
_ULAW_ENCODE = _ulaw_encode_table()


def _table_index(samples: Samples) -> npt.NDArray[np.uint16]:
    # int16 -> uint16 with the sign bit flipped == sample + 32768, without a widening copy.
    return np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16) ^ np.uint16(0x8000)


def alaw_encode(samples: Samples) -> bytes:
    """int16 samples -> PCMA bytes, one byte per sample."""
    return _ALAW_ENCODE[_table_index(samples)].tobytes()


def ulaw_encode(samples: Samples) -> bytes:
    """int16 samples -> PCMU bytes, one byte per sample."""
    return _ULAW_ENCODE[_table_index(samples)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> Samples:
    """PCMA bytes -> int16 samples."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_decode(data: bytes | bytearray | memoryview) -> Samples:
    """PCMU bytes -> int16 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
