"""Participants kept while they reconnect (ORS 6.6) in the room model: announced, bounded per room
and per server, counted toward the room's limit, forgotten when they leave."""

import pytest

from gateway.rooms import (
    EventBus,
    ParticipantLeft,
    ParticipantUpdated,
    Role,
    RoomError,
    RoomManager,
    Track,
    TrackKind,
    TrackSource,
    TrackUnpublished,
)
from gateway.store import Store
from tests.unit.test_rooms_extras import drain, people


def manager(per_room: int = 50, total: int = 1_000, max_participants: int = 100) -> RoomManager:
    return RoomManager(
        Store(":memory:"),
        EventBus(),
        "gw.example.gouv.fr",
        max_participants=max_participants,
        max_reconnecting=per_room,
        max_reconnecting_total=total,
    )


def test_a_reconnecting_participant_is_announced_and_taken_back_once() -> None:
    rooms = manager()
    room, (host, alice) = people(rooms, "Host", "Alice")
    sub = rooms.bus.subscribe("salle")
    assert rooms.set_reconnecting(room, alice.id, True)
    assert rooms.set_reconnecting(room, alice.id, True)  # already: nothing more is said
    assert alice.to_wire()["reconnecting"] is True
    assert rooms.reconnecting_count() == 1
    assert rooms.set_reconnecting(room, alice.id, False)
    events = drain(sub)
    assert [(type(e), e.participant.id) for e in events] == [(ParticipantUpdated, alice.id)] * 2
    assert alice.to_wire()["reconnecting"] is False and rooms.reconnecting_count() == 0
    assert host.to_wire()["reconnecting"] is False


def test_the_room_and_the_server_keep_no_more_than_their_bounds() -> None:
    rooms = manager(per_room=2, total=3)
    room, members = people(rooms, "Host", "A", "B", "C")
    other = rooms.create("autre")
    outsiders = [rooms.add_participant(other, n, Role.MEMBER) for n in ("D", "E")]
    sub = rooms.bus.subscribe()
    assert rooms.set_reconnecting(room, members[1].id, True)
    assert rooms.set_reconnecting(room, members[2].id, True)
    assert not rooms.set_reconnecting(room, members[3].id, True)  # the room keeps 2
    assert rooms.set_reconnecting(other, outsiders[0].id, True)
    assert not rooms.set_reconnecting(other, outsiders[1].id, True)  # the server keeps 3
    assert [p.reconnecting for p in (*members, *outsiders)] == [
        False,
        True,
        True,
        False,
        True,
        False,
    ]
    assert len(drain(sub)) == 3  # a refusal is announced to nobody
    # one that leaves frees its place
    rooms.remove_participant(room, members[1].id, "disconnected")
    assert rooms.set_reconnecting(other, outsiders[1].id, True)
    assert rooms.reconnecting_count() == 3


def test_a_participant_in_the_lobby_is_never_kept() -> None:
    rooms = manager()
    room = rooms.create("salle", lobby=True)
    waiting = rooms.add_participant(room, "Eve", Role.GUEST)
    assert not rooms.set_reconnecting(room, waiting.id, True)
    assert not waiting.reconnecting and rooms.reconnecting_count() == 0
    with pytest.raises(RoomError) as unknown:
        rooms.set_reconnecting(room, "PA_nobody", True)
    assert unknown.value.code == "participant_not_found"


def test_a_kept_participant_counts_toward_the_room_and_leaves_with_its_tracks() -> None:
    rooms = manager(max_participants=2)
    room, (host, alice) = people(rooms, "Host", "Alice")
    assert rooms.set_reconnecting(room, alice.id, True)
    with pytest.raises(RoomError) as full:
        rooms.add_participant(room, "Bob", Role.MEMBER)
    assert full.value.code == "room_full"
    rooms.publish_track(room, Track("TR_a", alice.id, TrackKind.AUDIO, TrackSource.MICROPHONE))
    sub = rooms.bus.subscribe("salle")
    rooms.remove_participant(room, alice.id, "disconnected")
    events = drain(sub)
    assert [type(e) for e in events] == [TrackUnpublished, ParticipantLeft]
    assert events[-1].reason == "disconnected"
    assert rooms.reconnecting_count() == 0 and not alice.reconnecting
    rooms.add_participant(room, "Bob", Role.MEMBER)  # its place is free
