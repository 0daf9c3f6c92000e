"""Rooms under abuse, over the ORS WebSocket of a real gateway: chat floods, clients that stop
reading, removed participants who come back, strangers who fill the lobby.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import aioice
import pytest
from aiortc import RTCPeerConnection

from spec.conformance.orsclient import OrsClient, OrsError
from spec.conformance.webrtc import ToneTrack, WebRtcPeer
from tests.gateway_process import RunningGateway, running_gateway
from tests.ors.test_session import joined_client

pytestmark = pytest.mark.interop

FLOODERS = 8
FLOOD = 2_000
"""Messages per flooder: 16,000 in all, more than a subscriber's queue held before it was bounded."""


def participant_names(gateway: RunningGateway, room: str) -> list[str]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200
    return sorted(p["name"] for p in body["participants"])


async def flood_chat(client: OrsClient, count: int, text: str = "flood") -> None:
    for _ in range(count):
        await client.send({"type": "chat", "text": text})


async def next_matching(client: OrsClient, kind: str, condition, timeout: float = 15) -> dict:  # type: ignore[no-untyped-def]
    """The next ``kind`` event for which ``condition`` holds, skipping the others."""
    async with asyncio.timeout(timeout):
        while not condition(message := await client.next_event(kind)):
            pass
    return message


async def wait_for(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_chat_flood_is_rate_limited_and_the_room_still_hears_joins_and_chat(
    gateway: RunningGateway,
) -> None:
    room = "chat-flood"
    gateway.create_room(room)
    witness = await joined_client(gateway, room, "witness")
    flooders = [await joined_client(gateway, room, f"flooder{n}") for n in range(FLOODERS)]
    ids = {f.received[0]["participant"]["id"]: f for f in flooders}

    await asyncio.gather(*(flood_chat(f, FLOOD) for f in flooders))

    def refused(client: OrsClient) -> int:
        return sum(
            1
            for m in client.received
            if m["type"] == "error" and m["problem"]["code"] == "rate_limited"
        )

    def delivered(sender_id: str) -> int:
        return sum(
            1 for m in witness.received if m["type"] == "chat" and m["message"]["from"] == sender_id
        )

    # every message is accounted for: delivered to the room, or refused to its sender; none lost
    await wait_for(lambda: all(refused(f) + delivered(i) == FLOOD for i, f in ids.items()))
    for sender_id, flooder in ids.items():
        assert refused(flooder) > FLOOD // 2, "most of a flood is refused"
        assert delivered(sender_id) >= 20, "the burst gets through"
    refusal = next(m for m in flooders[0].received if m["type"] == "error")["problem"]
    assert (refusal["status"], refusal["title"]) == (429, "Too many requests")

    # the room still works for everyone in it: a newcomer is seen, and chat flows both ways
    newcomer = await joined_client(gateway, room, "newcomer")
    await next_matching(
        witness, "participant_joined", lambda m: m["participant"]["name"] == "Newcomer"
    )
    await witness.request({"type": "chat", "text": "still here"})
    await next_matching(newcomer, "chat", lambda m: m["message"]["text"] == "still here")
    assert len(participant_names(gateway, room)) == FLOODERS + 2
    for client in [witness, newcomer, *flooders]:
        await client.close()


async def test_a_client_that_stops_reading_is_closed_too_slow_and_leaves(tmp_path: Path) -> None:
    # chat unlimited here, so that one sender can put more events in the room than a socket holds
    limits = "[limits]\nchat_messages_per_second = 1000000\nchat_burst = 1000000\n"
    with running_gateway(tmp_path, extra_config=limits) as gateway:
        room = "slow-reader"
        gateway.create_room(room)
        witness = await joined_client(gateway, room, "witness")
        sender = await joined_client(gateway, room, "sender")
        async with aiohttp.ClientSession() as http:
            slow = await http.ws_connect(f"{gateway.ws_base}/ors/v1/rooms/{room}/ws")
            token = gateway.token(room, "slow", "Slow")
            await slow.send_str(json.dumps({"type": "join", "id": "1", "token": token}))
            joined = json.loads((await slow.receive(timeout=10)).data)
            assert joined["type"] == "joined"
            slow_id = joined["participant"]["id"]
            await next_matching(
                witness, "participant_joined", lambda m: m["participant"]["id"] == slow_id
            )

            # the slow client reads nothing from here on, while the room talks: 4,000 messages of
            # 3,000 characters are 12 MB per reader, more than the socket buffers and the backlog
            async def talk() -> None:
                await flood_chat(sender, 4_000, "x" * 3_000)

            talking = asyncio.create_task(talk())
            left = await witness.next_event("participant_left", timeout=60)
            assert left == {
                "type": "participant_left",
                "participant_id": joined["participant"]["id"],
                "reason": "disconnected",
            }
            await talking
            assert participant_names(gateway, room) == ["Sender", "Witness"]

            # when it reads again, it finds the room's messages, then the close that says why
            async with asyncio.timeout(60):
                while (frame := await slow.receive()).type == aiohttp.WSMsgType.TEXT:
                    pass
            assert frame.type == aiohttp.WSMsgType.CLOSE, frame
            assert (frame.data, frame.extra) == (4008, "too slow")

            # the others never stopped hearing the room
            await sender.request({"type": "chat", "text": "after"})
            await wait_for(
                lambda: any(
                    m["type"] == "chat" and m["message"]["text"] == "after"
                    for m in witness.received
                )
            )
        await witness.close()
        await sender.close()


async def test_a_hosts_mute_stops_forwarding_after_a_flood_in_another_room(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("flooded")
    gateway.create_room("quiet")
    flooders = [await joined_client(gateway, "flooded", f"noisy{n}") for n in range(FLOODERS)]
    await asyncio.gather(*(flood_chat(f, FLOOD) for f in flooders))

    host = await joined_client(gateway, "quiet", "host", role="host")
    alice = await joined_client(gateway, "quiet", "alice")
    alice_peer = WebRtcPeer(alice)
    [track] = (await alice_peer.publish(frequency=550.0))["tracks"]
    bob = await joined_client(gateway, "quiet", "bob")
    bob_peer = WebRtcPeer(bob)
    await bob_peer.accept_offer(await bob.next_event("offer"))
    await wait_for(lambda: (r := bob_peer.received.get(track["id"])) is not None and r.frames > 50)

    await host.request({"type": "mute", "track_id": track["id"], "muted": True})
    muted = await bob.next_event("track_muted", timeout=10)
    assert (muted["track_id"], muted["muted"]) == (track["id"], True)
    received = bob_peer.received[track["id"]]
    await asyncio.sleep(0.5)  # what was already in flight
    frames = received.frames
    await asyncio.sleep(1.5)  # 75 frames of a tone that is still being sent
    assert received.frames - frames < 5, "the relay still forwards a muted track"

    for peer in (alice_peer, bob_peer):
        await peer.close()
    for client in [host, alice, bob, *flooders]:
        await client.close()


async def test_a_removed_participant_stays_out_until_a_host_lets_them_back(
    gateway: RunningGateway,
) -> None:
    room = "removal"
    gateway.create_room(room)
    host = await joined_client(gateway, room, "host", role="host")
    bob_token = gateway.token(room, "bob", "Bob")
    bob = await OrsClient.connect(gateway.base_url, room)
    bob_id = (await bob.join(bob_token))["participant"]["id"]

    await host.request({"type": "remove", "participant_id": bob_id})
    assert (await bob.next_event("left"))["reason"] == "removed"
    await bob.close()

    # the same token, at once: refused, and nobody sees Bob come back
    again = await OrsClient.connect(gateway.base_url, room)
    with pytest.raises(OrsError) as refused:
        await again.join(bob_token)
    assert (refused.value.code, refused.value.problem["status"]) == ("removed", 403)
    assert participant_names(gateway, room) == ["Host"]
    carol = await joined_client(gateway, room, "carol")  # another identity is not affected

    # the host lets him back with the id he had; the same token then joins
    await host.request({"type": "admit", "participant_id": bob_id})
    joined = await again.join(bob_token)
    assert joined["type"] == "joined"
    assert participant_names(gateway, room) == ["Bob", "Carol", "Host"]
    for client in (host, again, carol):
        await client.close()


async def test_a_removed_whip_publisher_can_neither_publish_again_nor_join(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aioice skips 127.0.0.1 when it gathers; the test stays on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *_, **__: ["127.0.0.1"])
    room = "removed-whip"
    gateway.create_room(room)
    token = gateway.token(room, "streamer", "Streamer")

    async def whip(http: aiohttp.ClientSession) -> tuple[int, dict]:
        publisher = RTCPeerConnection()
        publisher.addTransceiver(ToneTrack(440.0), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        async with http.post(
            f"{gateway.base_url}/ors/v1/rooms/{room}/whip",
            data=publisher.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        ) as response:
            body = await response.json(content_type=None) if response.status >= 400 else {}
            status = response.status
        await publisher.close()
        return status, body

    async with aiohttp.ClientSession() as http:
        assert (await whip(http))[0] == 201
        host = await joined_client(gateway, room, "host", role="host")
        [streamer] = [p["id"] for p in host.received[0]["participants"]]
        await host.request({"type": "remove", "participant_id": streamer})
        status, problem = await whip(http)
        assert (status, problem.get("code")) == (403, "removed")
    client = await OrsClient.connect(gateway.base_url, room)
    with pytest.raises(OrsError) as refused:
        await client.join(token)
    assert refused.value.code == "removed"
    assert participant_names(gateway, room) == ["Host"]
    for c in (client, host):
        await c.close()


async def test_strangers_who_fill_the_lobby_never_keep_the_host_out(tmp_path: Path) -> None:
    limits = "[rooms]\nmax_participants = 4\nmax_lobby = 6\n"
    with running_gateway(tmp_path, extra_config=limits) as gateway:
        room = "guarded"
        gateway.create_room(room, lobby=True)
        strangers = []
        for n in range(6):
            stranger = await OrsClient.connect(gateway.base_url, room)
            reply = await stranger.join(gateway.token(room, f"stranger{n}", role="guest"))
            assert reply["type"] == "lobby"
            strangers.append(stranger)

        # the lobby is full; the host still enters the room
        host = await OrsClient.connect(gateway.base_url, room)
        joined = await host.join(gateway.token(room, "host", "Host", role="host"))
        assert joined["type"] == "joined"
        assert len(joined["participants"]) == 6  # a host sees the lobby

        # the lobby's own bound refuses the next stranger
        late = await OrsClient.connect(gateway.base_url, room)
        with pytest.raises(OrsError) as refused:
            await late.join(gateway.token(room, "stranger6", role="guest"))
        assert refused.value.code == "room_full"

        # the room's bound counts joined participants: the host admits three, not a fourth
        waiting = [p["id"] for p in joined["participants"]]
        for participant_id in waiting[:3]:
            await host.request({"type": "admit", "participant_id": participant_id})
        with pytest.raises(OrsError) as full:
            await host.request({"type": "admit", "participant_id": waiting[3]})
        assert full.value.code == "room_full"
        status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
        states = sorted(p["state"] for p in body["participants"])
        assert states == ["joined"] * 4 + ["lobby"] * 3
        for client in [host, late, *strangers]:
            await client.close()


async def test_a_rename_flood_is_rate_limited(gateway: RunningGateway) -> None:
    room = "rename-flood"
    gateway.create_room(room)
    witness = await joined_client(gateway, room, "witness")
    renamer = await joined_client(gateway, room, "renamer")
    renamer_id = renamer.received[0]["participant"]["id"]
    for n in range(200):
        await renamer.send({"type": "update", "name": f"Name {n}"})

    def refused() -> int:
        return sum(
            1
            for m in renamer.received
            if m["type"] == "error" and m["problem"]["code"] == "rate_limited"
        )

    def announced() -> int:
        return sum(
            1
            for m in witness.received
            if m["type"] == "participant_updated" and m["participant"]["id"] == renamer_id
        )

    await wait_for(lambda: refused() + announced() == 200)
    assert refused() > 150 and announced() >= 10
    for client in (witness, renamer):
        await client.close()
