"""LiveKit's end-to-end media frame encryption, as livekit-client 2.23 does it (src/e2ee/), for the
media of encrypted Matrix calls (Element Call).

Each participant encrypts its own frames with its own key; the keys travel over Matrix
(call_keys.py). What a key is and what a frame looks like:

- A key is raw bytes (Element Call: 16 random bytes) imported as HKDF material. The AES-GCM-128
  key is HKDF-SHA256(material, salt "LKFrameEncryptionKey", info 128 zero bytes); ratcheting
  replaces the material with 32 bytes of HKDF output (same salt and info). Each participant
  has a ring of 256 keys (Element Call's keyring size); the key index travels with every frame.
- An encrypted frame is `header | AES-GCM(rest, aad=header) | IV (12) | 12 | key index`. The
  header stays clear: the Opus TOC byte (1 byte), the first 10 bytes of a VP8 key frame or 3 of a
  delta frame (RFC 6386 §9.1), nothing for VP9. The IV is SSRC (4) | RTP timestamp (4) |
  timestamp - (send count mod 0xffff) (4), the send count per SSRC starting at a random value.
- A frame the SFU injects itself (LiveKit's "SIF": silence, a black key frame) ends with the
  room's SIF trailer (from LiveKit's join response) and is passed on in clear when it is one of
  the known payloads.
- Decryption failing with a key index's key tries up to 10 ratchet steps (Element Call's ratchet
  window) and keeps the ratcheted key on success; a key failing more than 10 frames in a row is
  given up until it is set again (livekit-client's failure tolerance).

The RTP half (`OpusCryptor`, `Vp8Cryptor`) works on whole RTP packets (RFC 3550): Opus carries
one frame per packet; a VP8 frame (RFC 7741) spans packets up to the marker bit and is collected,
transformed and split again along its packets' boundaries, keeping every header and sequence
number. A lost or reordered packet drops its frame; garbage never raises there.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.media.payload import parse_vp8_descriptor
from gateway.media.rtp import RtpError, payload_end, payload_offset

SALT = b"LKFrameEncryptionKey"
HKDF_INFO = bytes(128)
IV_LENGTH = 12
TRAILER_LENGTH = 2
TAG_LENGTH = 16
OVERHEAD = TAG_LENGTH + IV_LENGTH + TRAILER_LENGTH
KEY_RING_SIZE = 256
RATCHET_WINDOW = 10
FAILURE_TOLERANCE = 10
AES_KEY_BYTES = 16  # livekit-client's keySize 128
CODECS = ("opus", "vp8", "vp9")

# Payloads LiveKit's SFU injects (livekit-client src/e2ee/worker/sifPayload.ts), by SHA-256.
SIF_PAYLOAD_HASHES = frozenset(
    {
        "ef0161653d8b2b23aad46624b420af1d03ce48950e9fc85718028f91b50f9219",  # VP8 key frame 8x8
        "f0a0e09647d891d6d50aa898bce7108090375d0d55e50a2bb21147afee558e44",  # H.264 SPS
        "61d9665eed71b6d424ae9539330a3bdd5cb386d4d781c808219a6e36750493a7",  # H.264 PPS
        "faffc26b68a2fc09096fa20f3351e706398b6f838a7500c8063472c2e476e90d",  # H.264 IDR
        "aad8d31fc56b2802ca500e58c2fb9d0b29ad71bb7cb52cd6530251eade188988",  # Opus silence
    }
)

_U32 = struct.Struct("!I")


class FrameCryptoError(ValueError):
    """A frame could not be encrypted or decrypted (no key, wrong key, malformed, codec)."""


def _hkdf(material: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=HKDF_INFO).derive(
        material
    )


def derive_key(material: bytes) -> bytes:
    """The AES-GCM key of a key material (livekit-client utils.deriveKeys)."""
    return _hkdf(material, AES_KEY_BYTES)


def ratchet(material: bytes) -> bytes:
    """The next key material (livekit-client utils.ratchet: 256 bits of HKDF output)."""
    return _hkdf(material, 32)


def unencrypted_bytes(codec: str, keyframe: bool) -> int:
    """How many leading bytes of a frame stay clear (livekit-client constants.UNENCRYPTED_BYTES)."""
    if codec == "opus":
        return 1
    if codec == "vp8":
        return 10 if keyframe else 3
    if codec == "vp9":
        return 0
    raise FrameCryptoError(f"codec {codec!r} is not supported for frame encryption")


@dataclass(slots=True)
class _Key:
    material: bytes
    aead: AESGCM
    failures: int = 0


def _key(material: bytes) -> _Key:
    return _Key(material, AESGCM(derive_key(material)))


@dataclass
class KeyRing:
    """One participant's keys (livekit-client ParticipantKeyHandler), indexed 0..size-1."""

    size: int = KEY_RING_SIZE
    ratchet_window: int = RATCHET_WINDOW
    failure_tolerance: int = FAILURE_TOLERANCE
    current_index: int = 0
    _keys: dict[int, _Key] = field(default_factory=dict, repr=False)

    def set_key(self, material: bytes, index: int = 0, *, make_current: bool = True) -> None:
        """Set the key material at `index` (modulo the ring size); it becomes the current key."""
        if not material:
            raise FrameCryptoError("empty key")
        index %= self.size
        self._keys[index] = _key(bytes(material))
        if make_current:
            self.current_index = index

    def has_key(self, index: int) -> bool:
        return index % self.size in self._keys

    def material(self, index: int) -> bytes | None:
        key = self._keys.get(index % self.size)
        return key.material if key else None

    def ratchet_key(self, index: int | None = None) -> bytes:
        """Ratchet the key at `index` (default: current) in place; returns the new material."""
        index = self.current_index if index is None else index % self.size
        key = self._keys.get(index)
        if key is None:
            raise FrameCryptoError(f"no key at index {index}")
        self._keys[index] = _key(ratchet(key.material))
        return self._keys[index].material

    def sealing_key(self, index: int | None = None) -> tuple[int, AESGCM]:
        """(index, AES-GCM key) to encrypt with: the key at `index`, default the current one."""
        index = self.current_index if index is None else index % self.size
        key = self._keys.get(index)
        if key is None:
            raise FrameCryptoError(f"no key at index {index}")
        return index, key.aead

    def open(self, index: int, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """AES-GCM decryption with the key at `index`, ratcheting it forward (up to the window)
        when it fails; FrameCryptoError when no step opens it."""
        index %= self.size
        key = self._keys.get(index)
        if key is None:
            raise FrameCryptoError(f"no key at index {index}")
        if self.failure_tolerance >= 0 and key.failures > self.failure_tolerance:
            raise FrameCryptoError(f"key at index {index} failed too often; waiting for a new one")
        try:
            plain = key.aead.decrypt(iv, ciphertext, aad)
            key.failures = 0
            return plain
        except InvalidTag:
            pass
        material = key.material
        for _ in range(self.ratchet_window):
            material = ratchet(material)
            candidate = _key(material)
            try:
                plain = candidate.aead.decrypt(iv, ciphertext, aad)
            except InvalidTag:
                continue
            self._keys[index] = candidate
            return plain
        key.failures += 1
        raise FrameCryptoError(f"decryption failed with the key at index {index}")


class FrameCryptor:
    """Encrypts or decrypts the frames of one participant with its key ring."""

    def __init__(self, keys: KeyRing | None = None, *, sif_trailer: bytes = b"") -> None:
        self.keys = keys if keys is not None else KeyRing()
        self.sif_trailer = sif_trailer
        self.send_counts: dict[int, int] = {}  # per SSRC, the IV's next frame counter

    def encrypt_frame(
        self,
        frame: bytes,
        codec: str,
        keyframe: bool,
        ssrc: int,
        timestamp: int,
        key_index: int | None = None,
    ) -> bytes:
        """The frame encrypted with the key at `key_index` (default: the current key)."""
        if not frame:
            return frame  # livekit-client leaves empty (DTX) frames alone
        clear = unencrypted_bytes(codec, keyframe)
        key_index, aead = self.keys.sealing_key(key_index)
        ssrc &= 0xFFFFFFFF
        timestamp &= 0xFFFFFFFF
        count = self.send_counts.get(ssrc)
        if count is None:
            count = secrets.randbelow(0xFFFF)
        self.send_counts[ssrc] = count + 1
        iv = (
            _U32.pack(ssrc) + _U32.pack(timestamp) + _U32.pack((timestamp - count % 0xFFFF) % 2**32)
        )
        header = frame[:clear]
        sealed = aead.encrypt(iv, frame[clear:], header)
        return b"".join((header, sealed, iv, bytes((IV_LENGTH, key_index))))

    def decrypt_frame(self, frame: bytes, codec: str, keyframe: bool) -> bytes:
        """The frame decrypted; raises FrameCryptoError when it cannot be."""
        if not frame:
            return frame
        trailer = self.sif_trailer
        if trailer and len(frame) >= len(trailer) and frame.endswith(trailer):
            injected = frame[: len(frame) - len(trailer)]
            if hashlib.sha256(injected).hexdigest() in SIF_PAYLOAD_HASHES:
                return injected
            raise FrameCryptoError("unexpected server-injected frame")
        clear = unencrypted_bytes(codec, keyframe)
        if len(frame) < clear + TRAILER_LENGTH:
            raise FrameCryptoError("frame too short")
        iv_length, key_index = frame[-2], frame[-1]
        ciphertext_end = len(frame) - TRAILER_LENGTH - iv_length
        if not 8 <= iv_length <= 128 or ciphertext_end - clear < TAG_LENGTH:  # AES-GCM's range
            raise FrameCryptoError("malformed frame trailer")
        header = frame[:clear]
        iv = frame[ciphertext_end : len(frame) - TRAILER_LENGTH]
        plain = self.keys.open(key_index, iv, frame[clear:ciphertext_end], header)
        return header + plain


def _split_rtp(packet: bytes) -> tuple[bytes, bytes]:
    """(header without padding flag, payload without padding); raises RtpError on garbage."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        raise RtpError("not an RTP packet")
    start = payload_offset(packet)
    end = payload_end(packet)
    if end < start:
        raise RtpError("RTP padding longer than the payload")
    header = bytes((packet[0] & ~0x20,)) + packet[1:start]
    return header, packet[start:end]


@dataclass
class CryptorStats:
    """What a packet cryptor did, for logs and metrics."""

    frames: int = 0
    dropped: int = 0  # frames that failed (no key, wrong key, loss, malformed)


class OpusCryptor:
    """Encrypts or decrypts Opus RTP packets (one frame each) of one participant."""

    def __init__(self, cryptor: FrameCryptor, *, encrypt: bool) -> None:
        self.cryptor = cryptor
        self.encrypt = encrypt
        self.stats = CryptorStats()

    def process(self, packet: bytes) -> list[bytes]:
        """The packet with its payload transformed; none when it must be dropped."""
        try:
            header, payload = _split_rtp(packet)
            if self.encrypt:
                ssrc, timestamp = _U32.unpack_from(packet, 8)[0], _U32.unpack_from(packet, 4)[0]
                out = self.cryptor.encrypt_frame(payload, "opus", False, ssrc, timestamp)
            else:
                out = self.cryptor.decrypt_frame(payload, "opus", False)
        except (ValueError, IndexError, struct.error):  # FrameCryptoError, RtpError too
            self.stats.dropped += 1
            return []
        self.stats.frames += 1
        return [header + out]


@dataclass(slots=True)
class _Part:
    header: bytes  # RTP header (padding flag cleared) and VP8 payload descriptor
    data_length: int  # VP8 frame bytes this packet carried


class Vp8Cryptor:
    """Encrypts or decrypts the VP8 RTP packets of one stream (one SSRC) of one participant.

    `process` takes packets in order and returns the packets of each frame once its last one
    (marker bit) arrives, transformed; nothing for the packets before it. Sequence numbers and
    headers are kept: the frame's bytes are split again over the same packets (each keeps at
    least one byte; growth from encryption goes to the last packet).
    """

    def __init__(
        self,
        cryptor: FrameCryptor,
        *,
        encrypt: bool,
        max_packets: int = 256,
        max_frame_bytes: int = 2_000_000,
    ) -> None:
        self.cryptor = cryptor
        self.encrypt = encrypt
        self.max_packets = max_packets
        self.max_frame_bytes = max_frame_bytes
        self.stats = CryptorStats()
        self._parts: list[_Part] = []
        self._data: list[bytes] = []
        self._size = 0
        self._timestamp = -1
        self._next_sequence = -1
        self._collecting = False

    def _drop(self) -> None:
        if self._collecting:
            self.stats.dropped += 1
        self._parts.clear()
        self._data.clear()
        self._size = 0
        self._collecting = False

    def process(self, packet: bytes) -> list[bytes]:
        """The packets of the frame this one completes, transformed; none before its end."""
        try:
            return self._process(packet)
        except (RtpError, ValueError, IndexError, struct.error):
            self._drop()
            return []

    def _process(self, packet: bytes) -> list[bytes]:
        header, payload = _split_rtp(packet)
        sequence = packet[2] << 8 | packet[3]
        timestamp = _U32.unpack_from(packet, 4)[0]
        if not payload:  # padding only (bandwidth probes): passed on, keeps the count going
            if self._collecting and sequence != self._next_sequence:
                self._drop()
            self._next_sequence = (sequence + 1) & 0xFFFF
            return [packet]
        descriptor = parse_vp8_descriptor(payload)
        first = descriptor.start_of_partition and descriptor.partition_id == 0
        if first:
            self._drop()
            self._collecting = True
            self._timestamp = timestamp
        elif (
            not self._collecting or sequence != self._next_sequence or timestamp != self._timestamp
        ):
            self._drop()
            self._next_sequence = (sequence + 1) & 0xFFFF
            return []
        self._next_sequence = (sequence + 1) & 0xFFFF
        data = payload[descriptor.size :]
        self._parts.append(_Part(header + payload[: descriptor.size], len(data)))
        self._data.append(data)
        self._size += len(data)
        if len(self._parts) > self.max_packets or self._size > self.max_frame_bytes:
            self._drop()
            return []
        if not packet[1] & 0x80:  # marker: last packet of the frame
            return []
        return self._finish(_U32.unpack_from(packet, 8)[0])

    def _finish(self, ssrc: int) -> list[bytes]:
        parts, frame = self._parts[:], b"".join(self._data)
        self._parts.clear()
        self._data.clear()
        self._size = 0
        self._collecting = False
        if not frame:
            self.stats.dropped += 1
            return []
        keyframe = not frame[0] & 0x01
        try:
            if self.encrypt:
                out = self.cryptor.encrypt_frame(frame, "vp8", keyframe, ssrc, self._timestamp)
            else:
                out = self.cryptor.decrypt_frame(frame, "vp8", keyframe)
        except FrameCryptoError:
            self.stats.dropped += 1
            return []
        if len(out) < len(parts):
            self.stats.dropped += 1
            return []
        self.stats.frames += 1
        packets = []
        offset = 0
        for i, part in enumerate(parts):
            left_after = len(parts) - 1 - i
            if left_after:
                size = min(part.data_length, len(out) - offset - left_after)
            else:
                size = len(out) - offset
            packets.append(part.header + out[offset : offset + size])
            offset += size
        return packets


PacketCryptor = OpusCryptor | Vp8Cryptor


def packet_cryptor(codec: str, cryptor: FrameCryptor, *, encrypt: bool) -> PacketCryptor | None:
    """The packet cryptor of one track in CODEC (an a=rtpmap name), None when frame encryption
    of that codec is not done here (only Opus and VP8 are)."""
    name = codec.lower()
    if name == "opus":
        return OpusCryptor(cryptor, encrypt=encrypt)
    if name == "vp8":
        return Vp8Cryptor(cryptor, encrypt=encrypt)
    return None
