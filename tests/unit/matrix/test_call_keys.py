"""MatrixRTC media key events (protocols/matrix/call_keys.py): the content matrix-js-sdk 43 sends
(ToDeviceKeyTransport.sendKey), the checks it makes on receipt, and the key rings they feed."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from protocols.matrix.call_keys import (
    CALL_KEYS_EVENT,
    CallEncryption,
    CallKey,
    CallKeyError,
    CallKeyRings,
    OwnCallKey,
    build_content,
    parse_content,
)
from protocols.matrix.frame_crypto import FrameCryptoError, FrameCryptor, KeyRing

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
    sender = FrameCryptor(KeyRing())
    sender.keys.set_key(anna.key, anna.index)
    frame = sender.encrypt_frame(b"\xf8voice", "opus", False, 1, 960)
    # her track may come before her key: its cryptor drops frames until the key is in
    assert rings.cryptor("@anna:hs.test:ANNADEVICE") is None
    early = rings.cryptor_for("@anna:hs.test:ANNADEVICE")
    with pytest.raises(FrameCryptoError):
        early.decrypt_frame(frame, "opus", False)
    assert rings.add(anna) == "@anna:hs.test:ANNADEVICE"
    cryptor = rings.cryptor("@anna:hs.test:ANNADEVICE")
    assert cryptor is early and cryptor.decrypt_frame(frame, "opus", False) == b"\xf8voice"
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


def test_call_encryption_shares_rotates_and_takes_keys_in() -> None:
    from gateway.store import open_store
    from protocols.matrix.olm import OlmDevice, pickle_key
    from protocols.matrix.plugin import plugin
    from protocols.matrix.store import MatrixStore
    from tests.unit.matrix.test_olm import FakeKeyServer

    ghost_id = "@rondpoint_p:hs.test"

    async def scenario() -> None:
        server = FakeKeyServer()
        store = MatrixStore(open_store(":memory:", [plugin]))
        anna = OlmDevice(ANNA, "ANNADEVICE")
        bruno = OlmDevice("@bruno:hs.test", "BRUNODEVICE")
        for member in (anna, bruno):
            await member.upload_keys(server)
        encryption = CallEncryption(server, store, pickle_key("t"), ROOM, use_key_delay=0)
        ours = await encryption.add_ghost(ghost_id)
        assert (ghost_id, "RONDPOINT") in server.devices
        assert store.device_pickle(ghost_id, "RONDPOINT") is not None

        def received(member: OlmDevice) -> CallKey:
            (event,) = [e for e in server.inbox if e["to_user_id"] == member.user_id]
            server.inbox.remove(event)
            decrypted = member.decrypt(event)
            return parse_content(decrypted.sender, decrypted.content, ROOM)

        await encryption.members_changed({(ANNA, "ANNADEVICE")})
        first = received(anna)
        assert (first.index, first.identity) == (0, f"{ghost_id}:RONDPOINT")
        opener = FrameCryptor(KeyRing())
        opener.keys.set_key(first.key, first.index)
        sealed = ours.encrypt_frame(b"\xf8ghost", "opus", False, 5, 960)
        assert opener.decrypt_frame(sealed, "opus", False) == b"\xf8ghost"

        # Bruno joins within the grace period: he alone gets the same key
        both = {(ANNA, "ANNADEVICE"), ("@bruno:hs.test", "BRUNODEVICE")}
        await encryption.members_changed(both)
        assert received(bruno).key == first.key and server.inbox == []
        # Bruno leaves: a new key at the next index for Anna, used after the delay
        await encryption.members_changed({(ANNA, "ANNADEVICE")})
        second = received(anna)
        assert second.index == 1 and second.key != first.key
        await asyncio.sleep(0.01)
        assert ours.keys.current_index == 1
        opener.keys.set_key(second.key, 1)
        assert opener.decrypt_frame(
            ours.encrypt_frame(b"\xf8x", "opus", False, 5, 1), "opus", False
        )

        # Anna's key comes in, Olm-encrypted to the ghost's device
        ghost_peer = (await anna.query_devices(server, [ghost_id]))[ghost_id]["RONDPOINT"]
        anna_key = bytes(range(16))
        content = build_content(ROOM, "ANNADEVICE", f"{ANNA}:ANNADEVICE", anna_key, 2)
        await anna.send_encrypted(server, CALL_KEYS_EVENT, {ghost_peer: content}, "a1")
        key = await encryption.on_to_device(server.inbox.pop())
        assert key is not None and key.key == anna_key and key.index == 2
        anna_frames = FrameCryptor(KeyRing())
        anna_frames.keys.set_key(anna_key, 2)
        cryptor = encryption.rings.cryptor(f"{ANNA}:ANNADEVICE")
        assert cryptor is not None
        frame = anna_frames.encrypt_frame(b"\xf8anna", "opus", False, 9, 960)
        assert cryptor.decrypt_frame(frame, "opus", False) == b"\xf8anna"

        # refused: another room, a device not the sender's, sent in clear, garbage, not ours
        refused = [
            build_content("!other:hs.test", "ANNADEVICE", "m", anna_key, 3),
            build_content(ROOM, "BRUNODEVICE", "m", anna_key, 3),
        ]
        for bad in refused:
            await anna.send_encrypted(server, CALL_KEYS_EVENT, {ghost_peer: bad}, "a2")
            assert await encryption.on_to_device(server.inbox.pop()) is None
        clear = {
            "type": CALL_KEYS_EVENT,
            "sender": ANNA,
            "to_user_id": ghost_id,
            "to_device_id": "RONDPOINT",
            "content": content,
        }
        assert await encryption.on_to_device(clear) is None
        garbage = {**clear, "type": "m.room.encrypted", "content": {"algorithm": "x"}}
        assert await encryption.on_to_device(garbage) is None
        assert await encryption.on_to_device({**clear, "to_user_id": "@x:hs.test"}) is None
        assert encryption.rings.cryptor(f"{ANNA}:BRUNODEVICE") is None
        await encryption.close()

    asyncio.run(scenario())
