"""The ORS WebSocket session, driven by the spec-written client against a real gateway process.

A full join, publish, subscribe and leave with real media, then every kind of bad input: each gets
its documented error and nothing else in the room changes.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import jwt
import pytest

from gateway.ors import schemas
from gateway.store import Store
from spec.conformance.orsclient import OrsClient, OrsError
from spec.conformance.webrtc import WebRtcPeer
from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop


def assert_all_valid(*clients: OrsClient) -> None:
    for client in clients:
        for message in client.received:
            schemas.validate("server", message)


async def joined_client(
    gateway: RunningGateway, room: str, identity: str, role: str = "member"
) -> OrsClient:
    client = await OrsClient.connect(gateway.base_url, room)
    await client.join(gateway.token(room, identity, identity.capitalize(), role))
    return client


def participants(gateway: RunningGateway, room: str) -> list[dict]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200
    return body["participants"]


async def test_join_publish_subscribe_and_leave_with_media(gateway: RunningGateway) -> None:
    gateway.create_room("media-room")
    alice = await joined_client(gateway, "media-room", "alice")
    alice_peer = WebRtcPeer(alice)
    answer = await alice_peer.publish(frequency=660.0)
    [track] = answer["tracks"]
    assert (track["kind"], track["source"], track["codec"].lower()) == (
        "audio",
        "microphone",
        "opus",
    )

    bob = await OrsClient.connect(gateway.base_url, "media-room")
    joined = await bob.join(gateway.token("media-room", "bob", "Bob"))
    [seen] = joined["participants"]
    assert (seen["name"], seen["origin"]) == ("Alice", "ors")
    assert [t["id"] for t in seen["tracks"]] == [track["id"]]
    bob_peer = WebRtcPeer(bob)
    offer = await bob.next_event("offer")
    assert [t["track_id"] for t in offer["tracks"]] == [track["id"]]
    await bob_peer.accept_offer(offer)

    async with asyncio.timeout(15):
        while (received := bob_peer.received.get(track["id"])) is None or received.frames < 60:
            await asyncio.sleep(0.1)
    assert abs(received.frequency() - 660.0) < 15

    joined_event = await alice.next_event("participant_joined")
    assert joined_event["participant"]["name"] == "Bob"

    await alice.send({"type": "leave"})
    left = await bob.next_event("participant_left")
    assert left["participant_id"] == seen["id"] and left["reason"] == "left"
    assert [p["name"] for p in participants(gateway, "media-room")] == ["Bob"]
    await alice_peer.close()
    await bob_peer.close()
    assert_all_valid(alice, bob)
    await alice.close()
    await bob.close()


@pytest.fixture
async def room_with_witness(gateway: RunningGateway):  # type: ignore[no-untyped-def]
    """A room with one participant who must notice nothing while another socket misbehaves."""
    room = f"bad-input-{int(time.monotonic() * 1000) % 100000}"
    gateway.create_room(room)
    witness = await joined_client(gateway, room, "witness")
    before = participants(gateway, room)
    yield room, witness
    await asyncio.sleep(0.3)
    assert participants(gateway, room) == before
    unexpected = [
        m
        for m in witness.received[1:]
        if m["type"] not in ("participant_joined", "participant_left")
    ]
    assert unexpected == []
    assert_all_valid(witness)
    await witness.close()


async def expect_error(client: OrsClient, code: str) -> dict:
    message = await client.next_event("error", timeout=5)
    assert message["problem"]["code"] == code, message
    return message["problem"]


async def test_invalid_json_gets_invalid_json(gateway: RunningGateway, room_with_witness) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    client = await OrsClient.connect(gateway.base_url, room)
    await client.send_raw("{not json")
    await expect_error(client, "invalid_json")
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_unknown_type_gets_unknown_type(gateway: RunningGateway, room_with_witness) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    client = await joined_client(gateway, room, "carol")
    with pytest.raises(OrsError) as error:
        await client.request({"type": "teleport", "where": "moon"})
    assert error.value.code == "unknown_type" and error.value.problem["field"] == "/type"
    await client.close()


async def test_missing_field_is_named(gateway: RunningGateway, room_with_witness) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    client = await OrsClient.connect(gateway.base_url, room)
    with pytest.raises(OrsError) as error:
        await client.request({"type": "join", "name": "No Token"})
    assert error.value.code == "invalid_message"
    assert error.value.problem["field"] == "/token"
    await client.close()


async def test_oversized_message_is_refused_and_the_socket_stays(
    gateway: RunningGateway, room_with_witness
) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    client = await joined_client(gateway, room, "dave")
    await client.send({"type": "chat", "text": "x" * 70_000})
    await expect_error(client, "message_too_large")
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_expired_token_gets_token_expired(gateway: RunningGateway, room_with_witness) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    secret = Store(gateway.data_dir / "rondpoint.sqlite3").token_keys()["rondpoint"]
    claims = {
        "iss": "rondpoint",
        "sub": "erin",
        "exp": int(time.time()) - 60,
        "ors": {"room": room},
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    client = await OrsClient.connect(gateway.base_url, room)
    with pytest.raises(OrsError) as error:
        await client.join(token)
    assert error.value.code == "token_expired" and error.value.problem["status"] == 401
    await client.close()


async def test_forged_token_gets_token_invalid(gateway: RunningGateway, room_with_witness) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    real = gateway.token(room, "frank", role="host")
    claims = jwt.decode(real, options={"verify_signature": False})
    forged = jwt.encode(claims, "guessed-secret-guessed-secret-0123", algorithm="HS256")
    client = await OrsClient.connect(gateway.base_url, room)
    with pytest.raises(OrsError) as error:
        await client.join(forged)
    assert error.value.code == "token_invalid" and error.value.problem["status"] == 401
    assert forged not in json.dumps(error.value.problem)
    assert forged not in gateway.log_text()
    await client.close()


async def test_room_name_outside_the_pattern_is_refused_before_upgrade(
    gateway: RunningGateway,
) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await http.ws_connect(gateway.ws_base + "/ors/v1/rooms/Not_A_Room/ws")
        assert error.value.status == 400
        async with http.get(gateway.base_url + "/ors/v1/rooms/Not_A_Room/ws") as response:
            assert response.status == 400
            problem = await response.json(content_type="application/problem+json")
            assert problem["code"] == "invalid_room_name"


async def test_second_join_on_the_same_socket_is_refused(
    gateway: RunningGateway, room_with_witness
) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    client = await joined_client(gateway, room, "grace")
    with pytest.raises(OrsError) as error:
        await client.join(gateway.token(room, "grace2"))
    assert error.value.code == "already_joined"
    names = [p["name"] for p in participants(gateway, room)]
    assert names.count("Grace") == 1 and "Grace2" not in names
    await client.close()


async def test_messages_before_join_get_not_joined(
    gateway: RunningGateway, room_with_witness
) -> None:  # type: ignore[no-untyped-def]
    room, _ = room_with_witness
    client = await OrsClient.connect(gateway.base_url, room)
    with pytest.raises(OrsError) as error:
        await client.request({"type": "chat", "text": "hello"})
    assert error.value.code == "not_joined"
    await client.close()


async def test_chat_reaches_everyone(gateway: RunningGateway) -> None:
    gateway.create_room("chat-room")
    alice = await joined_client(gateway, "chat-room", "alice")
    bob = await joined_client(gateway, "chat-room", "bob")
    await alice.request({"type": "chat", "text": "Bonjour à tous"})
    message = (await bob.next_event("chat"))["message"]
    assert (message["from_name"], message["text"]) == ("Alice", "Bonjour à tous")
    assert_all_valid(alice, bob)
    await alice.close()
    await bob.close()


async def test_lobby_guest_waits_until_a_host_admits(gateway: RunningGateway) -> None:
    gateway.create_room("lobby-room", lobby=True)
    host = await joined_client(gateway, "lobby-room", "host", role="host")
    guest = await OrsClient.connect(gateway.base_url, "lobby-room")
    waiting = await guest.join(gateway.token("lobby-room", "guest", "Guest", role="guest"))
    assert waiting["type"] == "lobby"
    seen = await host.next_event("participant_joined")
    assert seen["participant"]["state"] == "lobby"
    with pytest.raises(OrsError) as error:
        await guest.request({"type": "chat", "text": "let me in"})
    assert error.value.code == "invalid_state"
    await host.request({"type": "admit", "participant_id": seen["participant"]["id"]})
    joined = await guest.next_event("joined")
    assert [p["name"] for p in joined["participants"]] == ["Host"]
    assert_all_valid(host, guest)
    await host.close()
    await guest.close()


async def test_a_member_cannot_admit_or_remove(gateway: RunningGateway) -> None:
    gateway.create_room("rights-room")
    member = await joined_client(gateway, "rights-room", "member")
    other = await joined_client(gateway, "rights-room", "other")
    target = participants(gateway, "rights-room")[1]["id"]
    with pytest.raises(OrsError) as error:
        await member.request({"type": "remove", "participant_id": target})
    assert error.value.code == "forbidden"
    assert len(participants(gateway, "rights-room")) == 2
    await member.close()
    await other.close()


async def test_leave_with_an_id_gets_ok_then_left(gateway: RunningGateway) -> None:
    gateway.create_room("leave-room")
    client = await joined_client(gateway, "leave-room", "henri")
    assert (await client.request({"type": "leave"}))["type"] == "ok"
    assert (await client.next_event("left"))["reason"] == "left"
    await asyncio.wait_for(client.closed.wait(), 5)
    assert participants(gateway, "leave-room") == []
    assert_all_valid(client)
    await client.close()


async def test_a_second_socket_with_the_same_identity_replaces_the_first(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("replace-room")
    witness = await joined_client(gateway, "replace-room", "witness")
    first = await joined_client(gateway, "replace-room", "ines")
    second = await joined_client(gateway, "replace-room", "ines")
    assert (await first.next_event("left"))["reason"] == "replaced"
    left = await witness.next_event("participant_left")
    assert left["reason"] == "left"
    assert [p["name"] for p in participants(gateway, "replace-room")] == ["Witness", "Ines"]
    assert_all_valid(witness, first, second)
    for client in (witness, first, second):
        await client.close()


async def test_renaming_reaches_everyone_including_oneself(gateway: RunningGateway) -> None:
    gateway.create_room("rename-room")
    alice = await joined_client(gateway, "rename-room", "alice")
    bob = await joined_client(gateway, "rename-room", "bob")
    await alice.request({"type": "update", "name": "Alice Dupont"})
    for client in (alice, bob):
        updated = await client.next_event("participant_updated")
        assert updated["participant"]["name"] == "Alice Dupont"
    assert_all_valid(alice, bob)
    await alice.close()
    await bob.close()


async def test_renaming_in_the_lobby_reaches_oneself_and_hosts_only(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("lobby-rename-room", lobby=True)
    host = await joined_client(gateway, "lobby-rename-room", "host", role="host")
    member = await OrsClient.connect(gateway.base_url, "lobby-rename-room")
    waiting = await member.join(gateway.token("lobby-rename-room", "member", "Member"))
    await host.request({"type": "admit", "participant_id": waiting["participant"]["id"]})
    await member.next_event("joined")
    guest = await OrsClient.connect(gateway.base_url, "lobby-rename-room")
    waiting = await guest.join(gateway.token("lobby-rename-room", "guest", "Guest", role="guest"))
    assert waiting["type"] == "lobby"
    guest_id = waiting["participant"]["id"]

    assert (await guest.request({"type": "update", "name": "Guest Durand"}))["type"] == "ok"
    for client in (guest, host):
        while (updated := await client.next_event("participant_updated"))["participant"][
            "id"
        ] != guest_id:
            pass
        assert (updated["participant"]["name"], updated["participant"]["state"]) == (
            "Guest Durand",
            "lobby",
        )
    # the member does not see the lobby: nothing about the guest before the host's chat
    await host.request({"type": "chat", "text": "welcome"})
    while (event := await member.next_event())["type"] != "chat":
        assert guest_id not in json.dumps(event), event
    assert_all_valid(host, member, guest)
    for client in (host, member, guest):
        await client.close()


async def test_an_aiortc_publisher_with_a_data_channel_is_heard(gateway: RunningGateway) -> None:
    # The relay rejects the data channel's m-section (port 0); aiortc under max-bundle takes the
    # shared transport's candidates from the last m-section it reads, so the rejected one must
    # carry them too, or its ICE never connects.
    gateway.create_room("data-channel-room")
    alice = await joined_client(gateway, "data-channel-room", "alice")
    alice_peer = WebRtcPeer(alice)
    alice_peer.publish_pc.createDataChannel("chat")
    answer = await alice_peer.publish(frequency=523.0)
    [track] = answer["tracks"]
    bob = await joined_client(gateway, "data-channel-room", "bob")
    bob_peer = WebRtcPeer(bob)
    await bob_peer.accept_offer(await bob.next_event("offer"))
    async with asyncio.timeout(15):
        while (heard := bob_peer.received.get(track["id"])) is None or heard.frames < 50:
            await asyncio.sleep(0.1)
    assert abs(heard.frequency() - 523.0) < 15
    for peer in (alice_peer, bob_peer):
        await peer.close()
    assert_all_valid(alice, bob)
    await alice.close()
    await bob.close()
