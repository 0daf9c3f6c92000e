"""An ORS session gives back its event task whatever ends it: a host's removal ends the session
from inside its own event delivery, which must stop there rather than wait for ever on a closed
subscription (a pending task per removed participant, destroyed later with an ERROR in the log)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse

from gateway.rooms import Role
from tests.http.test_links_api import Harness, create_room, harness  # noqa: F401


async def join(
    h: Harness, room: str, identity: str, role: Role
) -> tuple[ClientWebSocketResponse, str]:
    ws = await h.client.ws_connect(f"/ors/v1/rooms/{room}/ws")
    token = h.gateway.tokens.mint(room, identity, identity.title(), role, 600)
    await ws.send_str(json.dumps({"type": "join", "id": "1", "token": token}))
    while (message := await receive(ws))["type"] != "joined":
        pass
    return ws, message["participant"]["id"]


async def receive(ws: ClientWebSocketResponse) -> dict[str, Any]:
    frame = await ws.receive(timeout=5)
    assert isinstance(frame.data, str), frame
    message: dict[str, Any] = json.loads(frame.data)
    return message


async def test_a_removed_participants_session_ends_its_event_task(harness: Harness) -> None:  # noqa: F811
    h = harness
    await create_room(h, "salle")
    alice, _ = await join(h, "salle", "alice", Role.HOST)
    bob, bob_id = await join(h, "salle", "bob", Role.MEMBER)
    session = h.gateway.sessions[("salle", "bob")]
    task = session._event_task
    assert task is not None and not task.done()

    await alice.send_str(json.dumps({"type": "remove", "id": "2", "participant_id": bob_id}))
    while (message := await receive(bob))["type"] != "left":
        pass
    assert message["reason"] == "removed"
    async with asyncio.timeout(5):
        await asyncio.wait({task})
    assert task.done() and not task.cancelled() and task.exception() is None
    assert ("salle", "bob") not in h.gateway.sessions
    await alice.close()
    await bob.close()
