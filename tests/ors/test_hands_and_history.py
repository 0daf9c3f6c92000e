"""Hands, requests to unmute and the chat history with what the conformance suite cannot make
from outside: a participant of another system (the example plugin's ``echo:``, as a phone would
be), a lobby, and a room that empties."""

from __future__ import annotations

import asyncio

import pytest

from spec.conformance.orsclient import OrsClient, OrsError
from tests.gateway_process import RunningGateway
from tests.ors.test_session import joined_client, participants

pytestmark = pytest.mark.interop


async def test_a_participant_of_another_system_cannot_be_asked_to_unmute(
    gateway: RunningGateway,
) -> None:
    room = "unmute-other-system"
    gateway.create_room(room)
    status, link = gateway.admin("POST", f"/api/v1/rooms/{room}/links", {"target": "echo:alice"})
    assert status == 201, link
    host = await joined_client(gateway, room, "host", role="host")
    [echo] = [p for p in host.received[0]["participants"] if p["origin"] == "echo"]
    with pytest.raises(OrsError) as refused:
        await host.request({"type": "unmute_request", "participant_id": echo["id"]})
    assert refused.value.code == "invalid_state"
    assert refused.value.problem["field"] == "/participant_id"
    # its hand is down and stays so: lowering it changes nothing and announces nothing
    assert echo["hand_raised_at"] is None
    await host.request({"type": "hand", "raised": False, "participant_id": echo["id"]})
    assert (await host.request({"type": "ping"}))["type"] == "pong"
    assert not any(m["type"] == "participant_updated" for m in host.received)
    await host.close()


async def test_a_participant_admitted_from_the_lobby_reads_the_history(
    gateway: RunningGateway,
) -> None:
    room = "history-lobby"
    gateway.create_room(room, lobby=True)
    host = await joined_client(gateway, room, "host", role="host")
    await host.request({"type": "chat", "text": "avant vous"})
    guest = await OrsClient.connect(gateway.base_url, room)
    waiting = await guest.join(gateway.token(room, "guest", "Guest", role="guest"))
    assert waiting["type"] == "lobby" and "chat" not in waiting
    # a waiting guest can neither raise a hand, nor react, nor read the chat yet
    for message in ({"type": "hand", "raised": True}, {"type": "reaction", "emoji": "👍"}):
        with pytest.raises(OrsError) as refused:
            await guest.request(message)
        assert refused.value.code == "invalid_state"
    await host.request({"type": "admit", "participant_id": waiting["participant"]["id"]})
    joined = await guest.next_event("joined")
    assert [m["text"] for m in joined["chat"]] == ["avant vous"]
    for client in (host, guest):
        await client.close()


async def test_the_history_is_forgotten_when_the_last_participant_leaves(
    gateway: RunningGateway,
) -> None:
    room = "history-forgotten"
    gateway.create_room(room)
    alice = await joined_client(gateway, room, "alice")
    await alice.request({"type": "chat", "text": "secret de réunion"})
    await alice.request({"type": "leave"})
    await alice.close()
    async with asyncio.timeout(10):
        while participants(gateway, room):
            await asyncio.sleep(0.05)
    bob = await joined_client(gateway, room, "bob")
    assert bob.received[0]["chat"] == []
    await bob.close()
