"""Megolm room chat (protocols/matrix/megolm.py): members' room keys taken in and their messages
decrypted, our messages encrypted with keys shared first, rotation, and every refusal; two
vodozemac devices through the in-memory key server of test_olm (the real Synapse and
matrix-js-sdk are in tests/matrix/test_e2ee_chat.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from protocols.matrix.megolm import (
    MAX_PENDING,
    PENDING_SECONDS,
    ROTATION_MESSAGES,
    MegolmError,
    RoomChatEncryption,
)
from protocols.matrix.olm import MEGOLM_ALGORITHM, OlmDevice, OlmError
from tests.unit.matrix.test_olm import FakeKeyServer, _two_devices, run

ROOM = "!room:hs.test"
ANNA = "@anna:hs.test"
GHOST = "@rondpoint_p:hs.test"


def _event(content: dict[str, Any], sender: str, event_id: str, room: str = ROOM) -> dict[str, Any]:
    return {
        "type": "m.room.encrypted",
        "room_id": room,
        "sender": sender,
        "event_id": event_id,
        "content": content,
    }


async def _deliver_keys(
    server: FakeKeyServer, device: OlmDevice, chat: RoomChatEncryption
) -> list[dict[str, Any]]:
    """The to-device events of the server's inbox for `device`, Olm-decrypted into `chat`."""
    released = []
    for event in [e for e in server.inbox if e["to_user_id"] == device.user_id]:
        server.inbox.remove(event)
        released += await chat.take_room_key(device, device.decrypt(event))
    return released


def text(body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body}


def test_messages_both_ways_with_keys_shared_over_olm() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, _, _ = await _two_devices(server)
        ours, hers = RoomChatEncryption(server, ROOM), RoomChatEncryption(server, ROOM)
        content = await hers.encrypt(anna, [GHOST], "m.room.message", text("hello"))
        assert content["algorithm"] == MEGOLM_ALGORITHM
        assert "hello" not in str(content)
        assert await _deliver_keys(server, ghost, ours) == []
        inner = ours.decrypt(_event(content, ANNA, "$1"))
        assert inner == {
            "sender": ANNA,
            "event_id": "$1",
            "room_id": ROOM,
            "type": "m.room.message",
            "content": text("hello"),
        }
        # the other way, and a second message needs no new key
        first = await ours.encrypt(ghost, [ANNA], "m.room.message", text("bonjour"))
        await _deliver_keys(server, anna, hers)
        second = await ours.encrypt(ghost, [ANNA], "m.room.message", text("encore"))
        assert server.inbox == []
        assert first["session_id"] == second["session_id"]
        assert hers.decrypt(_event(first, GHOST, "$2"))["content"] == text("bonjour")
        assert hers.decrypt(_event(second, GHOST, "$3"))["content"] == text("encore")
        assert hers.decrypt(_event(second, GHOST, "$3"))["content"] == text("encore")  # again

    run(scenario())


def test_an_event_waits_for_its_key_and_is_dropped_when_it_does_not_come() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, _, _ = await _two_devices(server)
        ours, hers = RoomChatEncryption(server, ROOM), RoomChatEncryption(server, ROOM)
        content = await hers.encrypt(anna, [GHOST], "m.room.message", text("early"))
        assert ours.decrypt(_event(content, ANNA, "$1")) is None  # waits
        released = await _deliver_keys(server, ghost, ours)
        assert [e["content"] for e in released] == [text("early")]
        # a session whose key never comes: its events are dropped after PENDING_SECONDS
        other = RoomChatEncryption(server, ROOM)
        late = await other.encrypt(anna, [], "m.room.message", text("lost"))
        assert ours.decrypt(_event(late, ANNA, "$2"), now=0.0) is None
        ours._expire(PENDING_SECONDS + 1)
        assert ours._pending == type(ours._pending)()
        for n in range(MAX_PENDING + 5):  # bounded
            ours.decrypt(_event(late, ANNA, f"$w{n}"))
        assert len(ours._pending) == MAX_PENDING

    run(scenario())


def test_sessions_rotate_after_100_messages_and_when_a_device_leaves() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, _, _ = await _two_devices(server)
        ours = RoomChatEncryption(server, ROOM)
        first = await ours.encrypt(ghost, [ANNA], "m.room.message", text("0"))
        for n in range(1, ROTATION_MESSAGES):
            same = await ours.encrypt(ghost, [ANNA], "m.room.message", text(str(n)))
            assert same["session_id"] == first["session_id"]
        rotated = await ours.encrypt(ghost, [ANNA], "m.room.message", text("new"))
        assert rotated["session_id"] != first["session_id"]
        assert sum(e["to_user_id"] == ANNA for e in server.inbox) == 2  # each key once
        # a member joins: the same session, its key sent to her; she leaves: a new session
        bea = OlmDevice("@bea:hs.test", "BEA")
        await bea.upload_keys(server)
        joined = await ours.encrypt(ghost, [ANNA, bea.user_id], "m.room.message", text("bea"))
        assert joined["session_id"] == rotated["session_id"]
        assert [e["to_user_id"] for e in server.inbox].count(bea.user_id) == 1
        left = await ours.encrypt(ghost, [ANNA], "m.room.message", text("gone"))
        assert left["session_id"] != rotated["session_id"]
        # a week old: a new session
        week = await ours.encrypt(ghost, [ANNA], "m.room.message", text("w"), now=1e12)
        assert week["session_id"] != left["session_id"]

    run(scenario())


def test_room_keys_refused() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, _, _ = await _two_devices(server)
        hers = RoomChatEncryption(server, ROOM)
        await hers.encrypt(anna, [GHOST], "m.room.message", text("x"))
        key = ghost.decrypt(server.inbox.pop())
        ours = RoomChatEncryption(server, ROOM)
        # another room's key: not ours to take
        elsewhere = dataclasses.replace(key, content={**key.content, "room_id": "!b:hs.test"})
        assert await ours.take_room_key(ghost, elsewhere) == []
        assert ours._inbound == {}
        assert await ours.take_room_key(ghost, dataclasses.replace(key, type="m.dummy")) == []
        bad = [
            {**key.content, "algorithm": "m.olm.v1.curve25519-aes-sha2"},
            {**key.content, "session_key": "garbage"},
            {**key.content, "session_id": "another"},
            {k: v for k, v in key.content.items() if k != "session_key"},
        ]
        for content in bad:
            with pytest.raises(MegolmError):
                await ours.take_room_key(ghost, dataclasses.replace(key, content=content))
        # a sender key that is not one of the sender's devices
        impostor = OlmDevice("@eve:hs.test", "EVE")
        forged = dataclasses.replace(key, sender_key=impostor.curve25519)
        with pytest.raises(OlmError):
            await ours.take_room_key(ghost, forged)
        assert ours._inbound == {}
        await ours.take_room_key(ghost, key)
        # the same session claimed by another sender
        eve = OlmDevice("@eve:hs.test", "EVE")
        await eve.upload_keys(server)
        stolen = dataclasses.replace(
            key,
            sender="@eve:hs.test",
            sender_key=eve.curve25519,
            sender_device="EVE",
            sender_ed25519=eve.ed25519,
        )
        with pytest.raises(MegolmError):
            await ours.take_room_key(ghost, stolen)

    run(scenario())


def test_encrypted_events_refused() -> None:
    async def scenario() -> None:
        server = FakeKeyServer()
        ghost, anna, _, _ = await _two_devices(server)
        ours, hers = RoomChatEncryption(server, ROOM), RoomChatEncryption(server, ROOM)
        content = await hers.encrypt(anna, [GHOST], "m.room.message", text("x"))
        await _deliver_keys(server, ghost, ours)
        refused = [
            _event(content, "@eve:hs.test", "$1"),  # not the session's sender
            _event(content, ANNA, "$1", room="!b:hs.test"),  # another room
            _event({**content, "ciphertext": "AAAA"}, ANNA, "$1"),
            _event({**content, "ciphertext": content["ciphertext"][:-8]}, ANNA, "$1"),
            _event({**content, "algorithm": "m.olm.v1.curve25519-aes-sha2"}, ANNA, "$1"),
            _event({**content, "ciphertext": 5}, ANNA, "$1"),
            _event({**content, "ciphertext": "A" * 70_000}, ANNA, "$1"),
            {"type": "m.room.encrypted", "room_id": ROOM, "sender": ANNA, "content": "x"},
        ]
        for event in refused:
            with pytest.raises(MegolmError):
                ours.decrypt(event)
        assert ours.decrypt(_event(content, ANNA, "$1"))["content"] == text("x")
        with pytest.raises(MegolmError, match="replay"):
            ours.decrypt(_event(content, ANNA, "$other"))
        # a payload naming another room than the event's
        wrong_room = RoomChatEncryption(server, "!b:hs.test")
        moved = await wrong_room.encrypt(anna, [GHOST], "m.room.message", text("y"))
        ghost_b = RoomChatEncryption(server, "!b:hs.test")
        await _deliver_keys(server, ghost, ghost_b)
        ours._inbound.update(ghost_b._inbound)
        with pytest.raises(MegolmError):
            ours.decrypt(_event(moved, ANNA, "$2"))

    run(scenario())
