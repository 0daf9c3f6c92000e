"""LiveKit frame encryption (protocols/matrix/frame_crypto.py): livekit-client's vectors both ways
(frame_crypto_vectors.json, written by tests/matrix/test_e2ee_frames.py from livekit-client's
own E2EE worker), and the RTP half: Opus packets, VP8 frames over several packets, loss, garbage.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from gateway.media.rtp import RtpPacket
from protocols.matrix.frame_crypto import (
    OVERHEAD,
    FrameCryptoError,
    FrameCryptor,
    KeyRing,
    OpusCryptor,
    Vp8Cryptor,
    packet_cryptor,
    ratchet,
)

VECTORS = Path(__file__).with_name("frame_crypto_vectors.json")
SIF_TRAILER = bytes.fromhex("4c4b2d534946")
VP8_SIF = bytes.fromhex("1002009d012a080008000047088585888584880202000c0d6000feffab5080")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _send_count(encrypted: bytes, timestamp: int) -> int:
    """The IV counter a frame was encrypted with (IV = ssrc | ts | ts - count)."""
    third = struct.unpack("!I", encrypted[-6:-2])[0]
    return (timestamp - third) % 2**32


def _reencrypt(material: bytes, index: int, frame: dict[str, Any]) -> bytes:
    encrypted = unb64(frame["encrypted"])
    cryptor = FrameCryptor(KeyRing())
    cryptor.keys.set_key(material, index)
    cryptor.send_counts[frame["ssrc"]] = _send_count(encrypted, frame["timestamp"])
    return cryptor.encrypt_frame(
        unb64(frame["data"]), frame["codec"], frame["keyframe"], frame["ssrc"], frame["timestamp"]
    )


def check_vectors(vectors: dict[str, Any]) -> None:
    """What livekit-client encrypted we decrypt (and encrypt to the same bytes); what we
    encrypted it decrypted; a tampered frame neither accepts."""
    rings: dict[str, FrameCryptor] = {}
    for identity, keys in vectors["keys"].items():
        rings[identity] = FrameCryptor(KeyRing())
        for index, key in keys.items():
            rings[identity].keys.set_key(unb64(key), int(index))

    ratcheted = vectors["ours_ratcheted"]
    ghost = ratcheted["identity"]
    (bruno,) = {r["identity"] for r in vectors["ratchets"]} - {ghost}
    ratchets = [r for r in vectors["ratchets"] if r["identity"] == bruno]
    bruno_index = ratchets[0]["index"]
    original = unb64(vectors["keys"][bruno][str(bruno_index)])
    assert [unb64(r["chain_key"]) for r in ratchets] == [
        ratchet(original),
        ratchet(ratchet(original)),
    ]
    # livekit-client followed the ratchet step of our key to open our frames
    ours_material = unb64(vectors["keys"][ghost][str(ratcheted["index"])])
    for _ in range(ratcheted["steps"]):
        ours_material = ratchet(ours_material)
    assert [unb64(r["chain_key"]) for r in vectors["ratchets"] if r["identity"] == ghost] == [
        ours_material
    ]

    assert len(vectors["theirs"]) >= 12
    for frame in vectors["theirs"]:
        encrypted = unb64(frame["encrypted"])
        plain = unb64(frame["data"])
        assert len(encrypted) == len(plain) + OVERHEAD
        cryptor = rings[frame["identity"]]
        assert cryptor.decrypt_frame(encrypted, frame["codec"], frame["keyframe"]) == plain
        index = encrypted[-1]
        material = cryptor.keys.material(index)
        assert material is not None
        assert _reencrypt(material, index, frame) == encrypted
    # Bruno's frames only opened after our ring followed his two ratchet steps.
    assert rings[bruno].keys.material(bruno_index) == unb64(ratchets[-1]["chain_key"])

    for frame in vectors["ours"]:
        assert frame["livekit_decrypted"] == frame["data"]
        assert _reencrypt(ours_material, ratcheted["index"], frame) == unb64(frame["encrypted"])

    assert vectors["tampered"]["livekit_decrypted"] is None
    with pytest.raises(FrameCryptoError):
        FrameCryptor(KeyRing()).decrypt_frame(unb64(vectors["tampered"]["data"]), "opus", False)
    ours = FrameCryptor(KeyRing())
    ours.keys.set_key(ours_material, ratcheted["index"])
    with pytest.raises(FrameCryptoError):
        ours.decrypt_frame(unb64(vectors["tampered"]["data"]), "opus", False)


def test_livekit_client_vectors_both_ways() -> None:
    check_vectors(json.loads(VECTORS.read_text()))


def _pair(material: bytes = b"k" * 16, index: int = 0) -> tuple[FrameCryptor, FrameCryptor]:
    sender, receiver = FrameCryptor(KeyRing()), FrameCryptor(KeyRing())
    sender.keys.set_key(material, index)
    receiver.keys.set_key(material, index)
    return sender, receiver


def test_header_stays_clear_and_trailer_carries_the_key_index() -> None:
    sender, receiver = _pair(index=7)
    key = bytes([0x10]) + bytes(range(1, 40))
    sealed = sender.encrypt_frame(key, "vp8", True, 1, 2)
    assert sealed[:10] == key[:10] and sealed[-2:] == bytes([12, 7])
    assert sealed[-14:-10] == b"\x00\x00\x00\x01" and sealed[-10:-6] == b"\x00\x00\x00\x02"
    assert receiver.decrypt_frame(sealed, "vp8", True) == key
    delta = sender.encrypt_frame(bytes([0x31]) + bytes(30), "vp8", False, 1, 3)
    assert delta[:3] == bytes([0x31, 0, 0])
    assert sender.encrypt_frame(b"", "opus", False, 1, 2) == b""


def test_wrong_key_missing_key_malformed_and_unsupported_codec_are_refused() -> None:
    sender, _ = _pair(b"a" * 16)
    _, stranger = _pair(b"b" * 16)
    sealed = sender.encrypt_frame(b"\xf8hello", "opus", False, 1, 2)
    with pytest.raises(FrameCryptoError):
        stranger.decrypt_frame(sealed, "opus", False)
    with pytest.raises(FrameCryptoError, match="no key at index 0"):
        FrameCryptor(KeyRing()).decrypt_frame(sealed, "opus", False)
    for garbage in (
        b"\xf8",
        b"\xf8\x0c\x00",
        bytes(20) + b"\x0c\x00",
        b"\xf8" + bytes(40) + b"\xff\x00",
        b"\xf8" + bytes(300) + b"\xc8\x00",  # IV of 200 bytes: beyond AES-GCM's
    ):
        with pytest.raises(FrameCryptoError):
            stranger.decrypt_frame(garbage, "opus", False)
    with pytest.raises(FrameCryptoError, match="not supported"):
        sender.encrypt_frame(b"\x00\x00\x00\x01\x67", "h264", True, 1, 2)
    with pytest.raises(FrameCryptoError, match="no key"):
        FrameCryptor(KeyRing()).encrypt_frame(b"\xf8hi", "opus", False, 1, 2)


def test_a_key_failing_more_than_ten_frames_is_given_up_until_set_again() -> None:
    sender, receiver = _pair(b"a" * 16)
    receiver.keys.set_key(b"b" * 16, 0)
    sealed = sender.encrypt_frame(b"\xf8hello", "opus", False, 1, 2)
    for _ in range(11):
        with pytest.raises(FrameCryptoError, match="decryption failed"):
            receiver.decrypt_frame(sealed, "opus", False)
    with pytest.raises(FrameCryptoError, match="too often"):
        receiver.decrypt_frame(sealed, "opus", False)
    receiver.keys.set_key(b"a" * 16, 0)
    assert receiver.decrypt_frame(sealed, "opus", False) == b"\xf8hello"


def test_ratchet_window_is_ten_steps() -> None:
    sender, receiver = _pair()
    for _ in range(10):
        sender.keys.ratchet_key()
    assert receiver.decrypt_frame(
        sender.encrypt_frame(b"\xf8x", "opus", False, 1, 2), "opus", False
    )
    sender.keys.ratchet_key()
    late = FrameCryptor(KeyRing())
    late.keys.set_key(b"k" * 16, 0)
    with pytest.raises(FrameCryptoError):
        late.decrypt_frame(sender.encrypt_frame(b"\xf8x", "opus", False, 1, 3), "opus", False)


def test_server_injected_frames_pass_in_clear_only_when_known() -> None:
    receiver = FrameCryptor(KeyRing(), sif_trailer=SIF_TRAILER)
    assert receiver.decrypt_frame(VP8_SIF + SIF_TRAILER, "vp8", True) == VP8_SIF
    with pytest.raises(FrameCryptoError, match="server-injected"):
        receiver.decrypt_frame(b"\x10anything" + SIF_TRAILER, "vp8", True)


def _rtp(payload: bytes, seq: int, ts: int, marker: bool = False, pt: int = 96) -> bytes:
    return RtpPacket(
        payload_type=pt,
        sequence_number=seq & 0xFFFF,
        timestamp=ts,
        ssrc=0xCAFE,
        marker=marker,
        extensions={1: b"\x10"},
        payload=payload,
    ).serialize()


def test_opus_packets_both_ways_and_garbage_dropped() -> None:
    sender, receiver = _pair()
    encrypt, decrypt = OpusCryptor(sender, encrypt=True), OpusCryptor(receiver, encrypt=False)
    packet = _rtp(b"\xf8" + bytes(range(60)), 10, 960, pt=111)
    (sealed,) = encrypt.process(packet)
    assert len(sealed) == len(packet) + OVERHEAD
    assert sealed[: len(packet) - 61] == packet[: len(packet) - 61]  # header and extension kept
    assert decrypt.process(sealed) == [packet]
    long_iv = packet[:-2] + bytes([200, 0])  # an IV length AES-GCM refuses
    for garbage in (b"", b"\x80", b"\x00" * 12, sealed[:-5], b"\x90" + bytes(13), long_iv):
        assert decrypt.process(garbage) == []
    assert decrypt.stats.frames == 1 and decrypt.stats.dropped == 6


def _vp8_packets(frame: bytes, sizes: list[int], seq: int, ts: int) -> list[bytes]:
    packets, offset = [], 0
    for i, size in enumerate(sizes):
        descriptor = bytes([0x90 if i == 0 else 0x80, 0x80, 0x80 | i, 0x05])  # X, I (15-bit id)
        last = i == len(sizes) - 1
        packets.append(_rtp(descriptor + frame[offset : offset + size], seq + i, ts, last))
        offset += size
    return packets


def test_vp8_frame_over_packets_both_ways_keeps_headers_and_sequence_numbers() -> None:
    sender, receiver = _pair()
    encrypt, decrypt = Vp8Cryptor(sender, encrypt=True), Vp8Cryptor(receiver, encrypt=False)
    frame = bytes([0x10]) + bytes(range(255)) * 10
    packets = _vp8_packets(frame, [1000, 1000, len(frame) - 2000], 65534, 90000)
    sealed = []
    for packet in packets:
        sealed += encrypt.process(packet)
    assert [RtpPacket.parse(p).sequence_number for p in sealed] == [65534, 65535, 0]
    assert [len(p) for p in sealed] == [len(p) for p in packets[:2]] + [len(packets[2]) + OVERHEAD]
    opened = []
    for packet in sealed:
        opened += decrypt.process(packet)
    assert opened == packets
    assert decrypt.stats.frames == 1


def test_vp8_decryption_shrinks_a_small_last_packet_without_emptying_one() -> None:
    sender, receiver = _pair()
    frame = bytes([0x31]) + bytes(range(100))
    sealed = Vp8Cryptor(sender, encrypt=True)
    pieces: list[bytes] = []
    for packet in _vp8_packets(frame, [101], 5, 1):
        pieces += sealed.process(packet)
    # the receiver's packetizer may cut the larger frame anywhere: 120 + 11 bytes
    whole = RtpPacket.parse(pieces[0]).payload[4:]
    split = _vp8_packets(whole, [120, len(whole) - 120], 5, 1)
    out: list[bytes] = []
    decrypt = Vp8Cryptor(receiver, encrypt=False)
    for packet in split:
        out += decrypt.process(packet)
    payloads = [RtpPacket.parse(p).payload[4:] for p in out]
    assert [len(p) for p in payloads] == [100, 1] and b"".join(payloads) == frame


def test_vp8_lost_packet_drops_the_frame_and_the_next_frame_passes() -> None:
    sender, receiver = _pair()
    encrypt, decrypt = Vp8Cryptor(sender, encrypt=True), Vp8Cryptor(receiver, encrypt=False)
    first = [
        p
        for q in _vp8_packets(bytes([0x10]) + bytes(3000), [1000] * 3 + [1], 1, 100)
        for p in encrypt.process(q)
    ]
    second = [
        p
        for q in _vp8_packets(bytes([0x31]) + bytes(500), [300, 201], 5, 200)
        for p in encrypt.process(q)
    ]
    out = []
    for packet in first[:1] + first[2:] + second:  # the second packet is lost
        out += decrypt.process(packet)
    assert len(out) == 2 and decrypt.stats.dropped == 1 and decrypt.stats.frames == 1
    # a frame whose first packet is missing is never started
    assert [p for q in second[1:] for p in decrypt.process(q)] == []


def test_vp8_garbage_bounds_and_padding_never_raise() -> None:
    sender, receiver = _pair()
    decrypt = Vp8Cryptor(receiver, encrypt=False, max_packets=4)
    for garbage in (b"", b"\x80" * 5, bytes(12), _rtp(b"", 1, 1, True), _rtp(b"\x80", 2, 1)):
        decrypt.process(garbage)
    padding = bytearray(_rtp(b"\x00" * 4, 3, 1))
    padding[0] |= 0x20
    padding[-1] = 4
    assert decrypt.process(bytes(padding)) == [bytes(padding)]
    many = _vp8_packets(bytes([0x10]) + bytes(600), [100] * 6 + [1], 4, 2)
    assert [p for q in many for p in decrypt.process(q)] == []
    unencrypted = _vp8_packets(bytes([0x10]) + bytes(50), [51], 20, 3)
    assert decrypt.process(unencrypted[0]) == []
    assert decrypt.stats.frames == 0


def test_packet_cryptors_by_codec_name() -> None:
    cryptor = FrameCryptor(KeyRing())
    assert isinstance(packet_cryptor("opus", cryptor, encrypt=True), OpusCryptor)
    assert isinstance(packet_cryptor("VP8", cryptor, encrypt=False), Vp8Cryptor)
    assert packet_cryptor("H264", cryptor, encrypt=False) is None


def test_random_and_mangled_packets_never_raise() -> None:
    rng = random.Random(7)
    sender, receiver = _pair()
    good = [
        p
        for q in _vp8_packets(bytes([0x10]) + bytes(2500), [1000, 1000, 501], 1, 9)
        for p in Vp8Cryptor(sender, encrypt=True).process(q)
    ] + OpusCryptor(sender, encrypt=True).process(_rtp(b"\xf8" + bytes(50), 1, 960, pt=111))
    cryptors = [
        OpusCryptor(receiver, encrypt=False),
        Vp8Cryptor(receiver, encrypt=False),
        OpusCryptor(sender, encrypt=True),
        Vp8Cryptor(sender, encrypt=True),
    ]
    for _ in range(3000):
        if rng.random() < 0.5:
            packet = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        else:
            mangled = bytearray(rng.choice(good))
            for _ in range(rng.randrange(1, 4)):
                mangled[rng.randrange(len(mangled))] = rng.getrandbits(8)
            packet = bytes(mangled[: rng.randrange(1, len(mangled) + 1)])
        for cryptor in cryptors:
            assert isinstance(cryptor.process(packet), list)
