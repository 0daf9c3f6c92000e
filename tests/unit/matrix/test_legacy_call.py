"""protocols/matrix/legacy_call.py: which ghosts are legacy-call targets, how long an invite may
still ring, and the refusals, with our gateway in this process and a recording homeserver (what
the ghost sends is read from its requests): a phone called from another server, a caller whose
room does not hold the ghost, an expired invite, an offer without usable audio, too many calls,
a host denying the caller in the lobby."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.rooms import ParticipantState
from protocols.matrix import legacy_call
from protocols.matrix.legacy_call import (
    DEFAULT_RING_MS,
    MAX_RING_MS,
    LegacyCalls,
    LegacyTarget,
    legacy_target,
    ring_seconds,
)
from tests.unit.matrix.recording_homeserver import RecordingHomeserver
from tests.unit.matrix.served_gateway import Served, served

OFFER = (Path(__file__).parents[1] / "media" / "chromium_offer.sdp").read_text()
DM = "!dm:hs.test"


def target(user_id: str) -> LegacyTarget | None:
    return legacy_target(user_id, user_prefix="rondpoint_", server_name="hs.test")


def test_room_and_phone_ghosts_name_their_targets() -> None:
    assert target("@rondpoint_room_cabinet-7:hs.test") == LegacyTarget("room", "cabinet-7")
    assert target("@rondpoint_tel_+33612345678:hs.test") == LegacyTarget("tel", "+33612345678")


@pytest.mark.parametrize(
    "user_id",
    [
        "@rondpoint_room_cabinet:other.test",  # another server's user
        "@someone_room_cabinet:hs.test",  # outside our namespace
        "@rondpoint_room_ab:hs.test",  # not a room name here (3 characters at least)
        "@rondpoint_room_=41bc:hs.test",  # escaped characters are never in a room name
        "@rondpoint_tel_0612345678:hs.test",  # not E.164
        "@rondpoint_tel_+0612345678:hs.test",  # E.164 never starts with 0
        "@rondpoint_tel_+3361234567890123:hs.test",  # longer than 15 digits
        "@rondpoint_p__ab_c:hs.test",  # a participant's ghost, not a legacy one
        "@rondpoint:hs.test",
        "not a user id",
    ],
)
def test_anything_else_is_not_a_legacy_target(user_id: str) -> None:
    assert target(user_id) is None


def test_an_invite_rings_for_its_lifetime_less_its_age() -> None:
    assert ring_seconds({"lifetime": 30000}, 10000) == 20.0
    assert ring_seconds({"lifetime": 30000}, 31000) < 0


def test_a_missing_or_absurd_lifetime_rings_the_default_and_never_beyond_the_cap() -> None:
    assert ring_seconds({}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": "60000"}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": True}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": -5}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": 10**12}, 0) == MAX_RING_MS / 1000


@pytest.fixture
async def running(
    tmp_path: Path, homeserver: RecordingHomeserver
) -> AsyncIterator[tuple[Served, LegacyCalls]]:
    async with served(tmp_path, homeserver) as gateway:
        calls = LegacyCalls(gateway.gateway, gateway.service)
        calls.start()
        try:
            yield gateway, calls
        finally:
            await calls.close()


async def in_dm(
    calls: LegacyCalls, homeserver: RecordingHomeserver, ghost: str, caller: str
) -> None:
    """The ghost joined the DM (its join seen in a transaction), and the DM's state as the
    ghost reads it: the ghost and the caller joined."""
    joined = {"membership": "join"}
    await calls.on_event(
        {
            "type": "m.room.member",
            "room_id": DM,
            "sender": ghost,
            "state_key": ghost,
            "content": joined,
        }
    )
    members = [
        {"type": "m.room.member", "state_key": user, "content": {"membership": "join"}}
        for user in (ghost, caller)
    ]
    homeserver.answers[("GET", f"/_matrix/client/v3/rooms/{DM}/state")] = (200, members)


def invite(caller: str, call_id: str, *, offer: str = OFFER, age: int = 0) -> dict[str, Any]:
    return {
        "type": "m.call.invite",
        "room_id": DM,
        "sender": caller,
        "event_id": f"$invite-{call_id}",
        "unsigned": {"age": age},
        "content": {
            "call_id": call_id,
            "party_id": "DEV",
            "version": "1",
            "lifetime": 30000,
            "offer": {"type": "offer", "sdp": offer},
        },
    }


def sent(homeserver: RecordingHomeserver, event_type: str) -> list[dict[str, Any]]:
    return [
        r.body
        for r in homeserver.requests
        if r.method == "PUT" and f"/send/{event_type}/" in r.path
    ]


async def until(check: Any, what: str) -> None:
    async with asyncio.timeout(5):
        while not check():
            await asyncio.sleep(0.02)


async def test_a_phone_called_from_another_server_is_refused_and_nothing_is_dialled(
    running: tuple[Served, LegacyCalls], homeserver: RecordingHomeserver
) -> None:
    gateway, calls = running
    ghost, caller = "@rondpoint_tel_+33612345678:hs.test", "@mallory:elsewhere.test"
    await in_dm(calls, homeserver, ghost, caller)
    await calls.on_event(invite(caller, "c1"))
    await until(lambda: sent(homeserver, "m.call.hangup"), "a hangup")
    [hangup] = sent(homeserver, "m.call.hangup")
    assert (hangup["call_id"], hangup["reason"]) == ("c1", "unknown_error")
    [notice] = sent(homeserver, "m.room.message")
    assert "Only users of hs.test" in notice["body"]
    assert not [r for r in gateway.gateway.rooms.list() if r.id.startswith("matrix-call-")]
    assert not sent(homeserver, "m.call.answer")


async def test_a_call_in_a_room_the_ghost_is_not_in_is_ignored(
    running: tuple[Served, LegacyCalls], homeserver: RecordingHomeserver
) -> None:
    gateway, calls = running
    gateway.gateway.rooms.create("cabinet")
    ghost, caller = "@rondpoint_room_cabinet:hs.test", "@anna:hs.test"
    homeserver.answers[("GET", f"/_matrix/client/v3/rooms/{DM}/state")] = (
        403,
        {"errcode": "M_FORBIDDEN", "error": "not in the room"},
    )
    event = invite(caller, "c2")
    event["content"]["invitee"] = ghost
    await calls.on_event(event)
    await asyncio.sleep(0.1)
    assert not calls.calls and not sent(homeserver, "m.call.hangup")
    assert not gateway.gateway.rooms.get("cabinet").participants


async def test_an_expired_invite_is_ignored(
    running: tuple[Served, LegacyCalls], homeserver: RecordingHomeserver
) -> None:
    _, calls = running
    await in_dm(calls, homeserver, "@rondpoint_room_cabinet:hs.test", "@anna:hs.test")
    await calls.on_event(invite("@anna:hs.test", "c3", age=31000))
    assert not calls.calls and not homeserver.requests


async def test_an_offer_without_usable_audio_is_hung_up(
    running: tuple[Served, LegacyCalls], homeserver: RecordingHomeserver
) -> None:
    gateway, calls = running
    gateway.gateway.rooms.create("cabinet")
    ghost, caller = "@rondpoint_room_cabinet:hs.test", "@anna:hs.test"
    await in_dm(calls, homeserver, ghost, caller)
    await calls.on_event(invite(caller, "c4", offer="v=0\r\n"))
    await until(lambda: sent(homeserver, "m.call.hangup"), "a hangup")
    assert sent(homeserver, "m.call.hangup")[0]["reason"] == "unknown_error"
    assert not gateway.gateway.rooms.get("cabinet").participants
    assert not calls.calls


async def test_a_host_denying_the_caller_in_the_lobby_rejects_the_call_and_more_are_busy(
    running: tuple[Served, LegacyCalls],
    homeserver: RecordingHomeserver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway, calls = running
    monkeypatch.setattr(legacy_call, "MAX_LEGACY_CALLS", 2)
    rooms = gateway.gateway.rooms
    room = rooms.create("salon", lobby=True)
    ghost, caller = "@rondpoint_room_salon:hs.test", "@anna:hs.test"
    await in_dm(calls, homeserver, ghost, caller)
    for call_id in ("w1", "w2", "w3"):
        await calls.on_event(invite(caller, call_id))
    await until(lambda: sent(homeserver, "m.call.hangup"), "the third call refused")
    assert [(h["call_id"], h["reason"]) for h in sent(homeserver, "m.call.hangup")] == [
        ("w3", "user_busy")
    ]
    await until(lambda: len(room.participants) == 2, "two callers in the lobby")
    waiting = list(room.participants.values())
    assert {p.state for p in waiting} == {ParticipantState.LOBBY}
    assert {p.origin for p in waiting} == {"matrix"}
    rooms.remove_participant(room, waiting[0].id, "denied")
    await until(lambda: sent(homeserver, "m.call.reject"), "a reject")
    assert not sent(homeserver, "m.call.answer")
    await calls.close()
    assert not room.participants and not calls.calls
