"""MatrixRTC media key events (protocols/matrix/call_keys.py): the content matrix-js-sdk 43 sends
(ToDeviceKeyTransport.sendKey), the checks it makes on receipt, and the key rings they feed."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from protocols.matrix.call_keys import (
    CallKeyError,
    CallKeyRings,
    OwnCallKey,
    build_content,
    parse_content,
)
from protocols.matrix.frame_crypto import FrameCryptor, KeyRing

ROOM = "!room:hs.test"
ANNA = "@anna:hs.test"

# What matrix-js-sdk 43's ToDeviceKeyTransport.sendKey puts in the event, field for field.
JS_SDK_CONTENT: dict[str, Any] = {
    "keys": {"index": 3, "key": "AAECAwQFBgcICQoLDA0ODw=="},
    "room_id": ROOM,
    "member": {"claimed_device_id": "ANNADEVICE", "id": "@anna:hs.test:ANNADEVICE"},
    "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
    "sent_ts": 1764800000000,
}


def test_our_content_is_shaped_as_matrix_js_sdk_sends_it() -> None:
    content = build_content(
        ROOM, "ANNADEVICE", "@anna:hs.test:ANNADEVICE", bytes(range(16)), 3, 1764800000000
    )
    assert content == JS_SDK_CONTENT
    own = OwnCallKey(ROOM, "RONDPOINT", "@rondpoint_p:hs.test:RONDPOINT")
    assert own.index == 0 and len(own.key) == 16
    first = own.key
    own.rotate()
    assert own.index == 1 and own.key != first
    own.index = 255
    own.rotate()
    assert own.index == 0
    parsed = parse_content("@rondpoint_p:hs.test", own.content())
    assert (parsed.key, parsed.index, parsed.device_id) == (own.key, 0, "RONDPOINT")


def test_a_key_from_matrix_js_sdk_is_read() -> None:
    key = parse_content(ANNA, JS_SDK_CONTENT, ROOM)
    assert key.identity == "@anna:hs.test:ANNADEVICE"
    assert (key.index, key.key, key.member_id, key.sent_ts) == (
        3,
        bytes(range(16)),
        "@anna:hs.test:ANNADEVICE",
        1764800000000,
    )
    # base64url and unpadded keys are read as js-sdk's decodeBase64 reads them
    url = {
        **JS_SDK_CONTENT,
        "keys": {"index": 0, "key": base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode().rstrip("=")},
    }
    assert parse_content(ANNA, url).key == b"\xfb\xff" * 8
    # without member.id, the legacy member id
    legacy = {**JS_SDK_CONTENT, "member": {"claimed_device_id": "D"}}
    assert parse_content(ANNA, legacy).member_id == "@anna:hs.test:D"


@pytest.mark.parametrize(
    "change",
    [
        {"room_id": None},
        {"room_id": ""},
        {"room_id": "!other:hs.test"},
        {"keys": None},
        {"keys": {"index": 0}},
        {"keys": {"index": 0, "key": ""}},
        {"keys": {"index": "0", "key": "AAAA"}},
        {"keys": {"index": True, "key": "AAAA"}},
        {"keys": {"index": 256, "key": "AAAA"}},
        {"keys": {"index": -1, "key": "AAAA"}},
        {"keys": {"index": 0, "key": "!!!"}},
        {"keys": {"index": 0, "key": base64.b64encode(bytes(129)).decode()}},
        {"member": None},
        {"member": {"id": "x"}},
        {"member": {"claimed_device_id": ""}},
    ],
)
def test_content_matrix_js_sdk_would_drop_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(CallKeyError):
        parse_content(ANNA, {**JS_SDK_CONTENT, **change}, ROOM)


def test_refused_non_object_content() -> None:
    with pytest.raises(CallKeyError):
        parse_content(ANNA, ["x"])


def test_key_rings_decrypt_each_members_frames_with_its_latest_key() -> None:
    rings = CallKeyRings()
    anna = parse_content(ANNA, JS_SDK_CONTENT, ROOM)
    assert rings.add(anna) == "@anna:hs.test:ANNADEVICE"
    sender = FrameCryptor(KeyRing())
    sender.keys.set_key(anna.key, anna.index)
    frame = sender.encrypt_frame(b"\xf8voice", "opus", False, 1, 960)
    cryptor = rings.cryptor("@anna:hs.test:ANNADEVICE")
    assert cryptor is not None and cryptor.decrypt_frame(frame, "opus", False) == b"\xf8voice"
    # a rotated key at the next index, and the old index still opens older frames
    rotated = parse_content(
        ANNA, {**JS_SDK_CONTENT, "keys": {"index": 4, "key": base64.b64encode(b"n" * 16).decode()}}
    )
    rings.add(rotated)
    sender.keys.set_key(b"n" * 16, 4)
    assert (
        cryptor.decrypt_frame(
            sender.encrypt_frame(b"\xf8new", "opus", False, 1, 1920), "opus", False
        )
        == b"\xf8new"
    )
    assert cryptor.decrypt_frame(frame, "opus", False) == b"\xf8voice"
    rings.set_sif_trailer(b"TRAILER")
    assert cryptor.sif_trailer == b"TRAILER"
    assert rings.identities() == ["@anna:hs.test:ANNADEVICE"]
    rings.forget("@anna:hs.test:ANNADEVICE")
    assert rings.cryptor("@anna:hs.test:ANNADEVICE") is None
