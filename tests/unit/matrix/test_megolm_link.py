"""Megolm chat wired into the link of an encrypted room (protocols/matrix/link.py with
protocols/matrix/megolm.py): a member's encrypted message, before and after its room key, becomes
chat here from her; the chat here leaves as m.room.encrypted that her device decrypts; garbage is
logged and changes nothing; on the fakes of test_e2ee_link (real vodozemac devices)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from protocols.matrix.link import MatrixLink
from protocols.matrix.megolm import RoomChatEncryption
from protocols.matrix.membership import CALL_MEMBER, is_active
from protocols.matrix.olm import OlmDevice
from tests.unit.matrix.link_fakes import (
    FakeBridge,
    FakeService,
    first_chat,
    ghost_of,
    join_here,
    key_of,
    until,
)
from tests.unit.matrix.test_e2ee_link import (
    ANNA,
    ANNA_DEVICE,
    ROOM,
    _Homeserver,
    encrypt_room,
    linked,
)

__all__ = ["linked"]  # the fixture


def text(body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body}


async def test_encrypted_chat_both_ways(
    linked: tuple[MatrixLink, _Homeserver, FakeService], caplog: pytest.LogCaptureFixture
) -> None:
    link, homeserver, service = linked
    keys = homeserver.keys
    encrypt_room(homeserver)
    homeserver._set_state(ROOM, "m.room.member", ANNA, {"membership": "join"}, ANNA)
    anna = OlmDevice(ANNA, ANNA_DEVICE)
    await anna.upload_keys(keys)
    hers = RoomChatEncryption(keys, ROOM)
    events = link.gateway.bus.subscribe("here")
    await link.start()
    bea = join_here(link.gateway, "Bea")
    ghost = ghost_of(bea)
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) or {}))
    anna_here = FakeBridge.made[-1].bring(f"{ANNA}:{ANNA_DEVICE}", "Anna")

    async def deliver(event: dict[str, Any]) -> None:
        for handler in list(service.listeners):
            await handler(event)

    # her message comes before its key: it waits, and goes through when the key comes
    content = await hers.encrypt(anna, [ghost], "m.room.message", text("geheim"))
    encrypted = {"type": "m.room.encrypted", "room_id": ROOM, "sender": ANNA, "event_id": "$1"}
    await deliver({**encrypted, "content": content})
    with caplog.at_level(logging.INFO, logger="protocols.matrix.link"):
        for garbage in ("x", {"algorithm": "m.megolm.v1.aes-sha2", "session_id": 1}):
            await deliver({**encrypted, "event_id": "$g", "content": garbage})
    assert sum("not decrypted" in r.getMessage() for r in caplog.records) == 2
    (room_key,) = [e for e in keys.inbox if e["to_user_id"] == ghost]
    keys.inbox.remove(room_key)
    for handler in list(service.to_device_listeners):
        await handler(room_key)
    chat = await first_chat(events)
    assert (chat.sender.id, chat.text) == (anna_here.id, "geheim")
    events.close()

    # the chat here leaves encrypted by the ghost; its key reaches Anna's device first
    link.gateway.rooms.chat(link.gateway.rooms.get("here"), bea.id, "secret")
    await until(lambda: any(kind == "m.room.encrypted" for kind, *_ in homeserver.sent))
    assert not any(kind == "m.room.message" and s == ghost for kind, _, _, s in homeserver.sent)
    ((_, _, sent, sender),) = [x for x in homeserver.sent if x[0] == "m.room.encrypted"]
    assert sender == ghost and "secret" not in str(sent)
    for event in [e for e in keys.inbox if e["to_user_id"] == ANNA]:
        await hers.take_room_key(anna, anna.decrypt(event))
    inner = hers.decrypt({**encrypted, "sender": ghost, "event_id": "$2", "content": sent})
    assert inner is not None and inner["content"] == text("secret")
