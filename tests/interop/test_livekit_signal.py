"""Our LiveKit signalling client (protocols/livekit) against a real livekit-server on loopback.

The second participant is LiveKit's official Python SDK (`livekit`, Rust core), which makes a full
WebRTC connection, so the server sees a real client beside ours.
"""

from __future__ import annotations

import uuid

import pytest
from livekit import rtc

from protocols.livekit.signal import (
    Participant,
    ParticipantsChanged,
    PongReceived,
    SignalClient,
    SignalConnectError,
)
from protocols.livekit.tokens import VideoGrant, mint_token
from tests.interop.livekit_fixtures import RunningLiveKit

pytestmark = [
    pytest.mark.interop,
    # livekit-server's --dev secret is "secret", shorter than PyJWT recommends for HS256.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


def token(lk: RunningLiveKit, room: str, identity: str, name: str, **kwargs: object) -> str:
    return mint_token(
        lk.api_key,
        lk.api_secret,
        identity=identity,
        name=name,
        grant=VideoGrant.join(room),
        **kwargs,
    )  # type: ignore[arg-type]


def room_name() -> str:
    return str(uuid.uuid4())  # Visio names its LiveKit rooms by UUID


async def test_join_names_room_and_identity(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    client = await SignalClient.connect(
        livekit_server.url, token(livekit_server, room, "gateway-1", "Rondpoint")
    )
    try:
        joined = client.joined
        assert joined.room_name == room
        assert joined.room_sid.startswith("RM_")
        assert joined.participant.identity == "gateway-1"
        assert joined.participant.name == "Rondpoint"
        assert joined.participant.sid.startswith("PA_")
        assert joined.other_participants == ()
        assert joined.server_version == "1.13.5"
        assert joined.ping_interval > 0 and joined.ping_timeout > joined.ping_interval

        await client.ping()
        pong = await client.wait_for(lambda e: isinstance(e, PongReceived), timeout=5)
        assert isinstance(pong, PongReceived) and pong.last_ping_timestamp > 0
    finally:
        await client.leave()


async def test_sdk_participant_appears_and_leaves(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    ours = await SignalClient.connect(
        livekit_server.url, token(livekit_server, room, "gateway-1", "Rondpoint")
    )
    sdk_room = rtc.Room()
    try:
        await sdk_room.connect(
            livekit_server.url,
            token(livekit_server, room, "visio-alice", "Alice Martin", attributes={"color": "red"}),
        )
        # The SDK sees us under our name...
        [seen] = sdk_room.remote_participants.values()
        assert (seen.identity, seen.name) == ("gateway-1", "Rondpoint")

        # ...and we get a participant_update listing it with its name and attributes.
        def lists_alice(e: object) -> bool:
            return isinstance(e, ParticipantsChanged) and any(
                p.identity == "visio-alice" for p in e.updated
            )

        event = await ours.wait_for(lists_alice, timeout=10)
        assert isinstance(event, ParticipantsChanged)
        alice = next(p for p in event.updated if p.identity == "visio-alice")
        assert isinstance(alice, Participant)
        assert (alice.name, alice.kind, alice.attributes) == (
            "Alice Martin",
            "standard",
            {"color": "red"},
        )
        assert alice.sid in ours.session.participants

        await sdk_room.disconnect()
        event = await ours.wait_for(
            lambda e: isinstance(e, ParticipantsChanged) and bool(e.left), timeout=10
        )
        assert isinstance(event, ParticipantsChanged)
        assert [p.identity for p in event.left] == ["visio-alice"]
        assert ours.session.participants == {}
    finally:
        await sdk_room.disconnect()
        await ours.leave()


async def test_second_client_of_ours_sees_the_first(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    first = await SignalClient.connect(livekit_server.url, token(livekit_server, room, "a", "A"))
    second = await SignalClient.connect(livekit_server.url, token(livekit_server, room, "b", "B"))
    try:
        assert [(p.identity, p.name) for p in second.joined.other_participants] == [("a", "A")]
        event = await first.wait_for(
            lambda e: (
                isinstance(e, ParticipantsChanged) and any(p.identity == "b" for p in e.updated)
            ),
            timeout=10,
        )
        assert isinstance(event, ParticipantsChanged)
    finally:
        await second.leave()
        await first.leave()


async def test_token_with_wrong_secret_is_refused(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    forged = mint_token(
        livekit_server.api_key,
        "not-the-secret",
        identity="mallory",
        name="Mallory",
        grant=VideoGrant.join(room),
    )
    with pytest.raises(SignalConnectError) as refused:
        await SignalClient.connect(livekit_server.url, forged)
    assert refused.value.status == 401
    message = str(refused.value)
    assert "refused the join (HTTP 401)" in message
    assert "signature is invalid" in message
    assert forged not in message  # the token itself is kept out of error messages

    # The server and our client are fine after the refusal.
    client = await SignalClient.connect(
        livekit_server.url, token(livekit_server, room, "after", "After")
    )
    try:
        assert client.joined.room_name == room
    finally:
        await client.leave()


async def test_unreachable_server_is_a_clear_error() -> None:
    from tests.gateway_process import free_port

    with pytest.raises(SignalConnectError, match="cannot reach LiveKit"):
        await SignalClient.connect(f"ws://127.0.0.1:{free_port()}", "x.y.z", timeout=3)
