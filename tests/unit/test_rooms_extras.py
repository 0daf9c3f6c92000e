"""Raised hands, reactions, requests to unmute, the chat history of a room, and participants
kept while they reconnect (RoomManager)."""

import pytest

from gateway.rooms import (
    CHAT_HISTORY_CHARACTERS,
    CHAT_HISTORY_MESSAGES,
    REACTIONS,
    EventBus,
    Participant,
    ParticipantLeft,
    ParticipantUpdated,
    Reaction,
    Role,
    Room,
    RoomError,
    RoomManager,
    Track,
    TrackKind,
    TrackSource,
    TrackUnpublished,
    UnmuteRequested,
)
from gateway.store import Store


@pytest.fixture
def rooms() -> RoomManager:
    return RoomManager(Store(":memory:"), EventBus(), "gw.example.gouv.fr", chat_burst=1_000)


def drain(sub) -> list:  # type: ignore[no-untyped-def]
    events = []
    while not sub.queue.empty():
        events.append(sub.get_nowait())
    return events


def people(rooms: RoomManager, *names: str) -> tuple[Room, list[Participant]]:
    """Room "salle" with a host and members of these names, in order."""
    room = rooms.create("salle")
    roles = [Role.HOST] + [Role.MEMBER] * (len(names) - 1)
    return room, [rooms.add_participant(room, n, r) for n, r in zip(names, roles, strict=True)]


def test_a_hand_goes_up_once_and_down_once_and_each_change_is_announced(
    rooms: RoomManager,
) -> None:
    room = rooms.create("salle")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    sub = rooms.bus.subscribe("salle")
    rooms.set_hand(room, alice.id, True, at=1_767_226_830.5)
    rooms.set_hand(room, alice.id, True)  # already up: keeps its first time, says nothing
    assert alice.to_wire()["hand_raised_at"] == 1_767_226_830_500
    rooms.set_hand(room, alice.id, False)
    rooms.set_hand(room, alice.id, False)
    assert [type(e) for e in drain(sub)] == [ParticipantUpdated, ParticipantUpdated]
    assert alice.to_wire()["hand_raised_at"] is None


def test_a_participant_in_the_lobby_has_no_hand_and_one_who_leaves_loses_it(
    rooms: RoomManager,
) -> None:
    room = rooms.create("salle", lobby=True)
    waiting = rooms.add_participant(room, "Eve", Role.GUEST)
    with pytest.raises(RoomError) as error:
        rooms.set_hand(room, waiting.id, True)
    assert error.value.code == "invalid_state" and waiting.hand_raised_at is None
    bob = rooms.add_participant(room, "Bob", Role.HOST)
    rooms.set_hand(room, bob.id, True)
    rooms.remove_participant(room, bob.id)
    assert bob.hand_raised_at is None


def test_only_the_allowed_reactions_pass_within_the_rate(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    sub = rooms.bus.subscribe("salle")
    assert len(REACTIONS) == 8
    with pytest.raises(RoomError) as error:
        rooms.react(room, alice.id, "💩", now=0.0)
    assert error.value.code == "invalid_message"
    for n in range(10):
        rooms.react(room, alice.id, REACTIONS[n % 8], now=0.0)
    with pytest.raises(RoomError) as error:
        rooms.react(room, alice.id, "👍", now=0.5)
    assert error.value.code == "rate_limited" and error.value.status == 429
    rooms.react(room, alice.id, "👍", now=1.5)  # one more a second later
    reactions = drain(sub)
    assert len(reactions) == 11 and all(isinstance(r, Reaction) for r in reactions)
    assert reactions[0].emoji == "👍" and reactions[0].participant_id == alice.id


def test_a_request_to_unmute_goes_out_once_per_five_seconds_per_host_and_target(
    rooms: RoomManager,
) -> None:
    room, (host, bob, carol) = people(rooms, "Host", "Bob", "Carol")
    sub = rooms.bus.subscribe("salle")
    rooms.request_unmute(room, host.id, bob.id, "audio", now=0.0)
    with pytest.raises(RoomError) as error:
        rooms.request_unmute(room, host.id, bob.id, "video", now=4.0)
    assert error.value.code == "rate_limited"
    rooms.request_unmute(room, host.id, carol.id, "audio", now=4.0)  # another target
    rooms.request_unmute(room, host.id, bob.id, "audio", now=5.5)
    assert drain(sub) == [
        UnmuteRequested("salle", bob.id, host.id, "audio"),
        UnmuteRequested("salle", carol.id, host.id, "audio"),
        UnmuteRequested("salle", bob.id, host.id, "audio"),
    ]


def test_the_history_keeps_the_last_messages_and_private_ones_for_their_two_ends(
    rooms: RoomManager,
) -> None:
    room, (alice, bob, carol) = people(rooms, "Alice", "Bob", "Carol")
    rooms.chat(room, alice.id, "pour Bob", to=bob.id)
    for n in range(CHAT_HISTORY_MESSAGES):
        rooms.chat(room, alice.id, f"message {n}")
    assert [m.text for m in rooms.chat_history(room, carol.id)] == [
        f"message {n}" for n in range(CHAT_HISTORY_MESSAGES)
    ]
    rooms.chat(room, bob.id, "pour Alice", to=alice.id)
    assert rooms.chat_history(room, alice.id)[-1].text == "pour Alice"
    assert rooms.chat_history(room, bob.id)[-1].text == "pour Alice"
    assert rooms.chat_history(room, carol.id)[-1].text == f"message {CHAT_HISTORY_MESSAGES - 1}"
    assert len(rooms.chat_history(room, alice.id)) == CHAT_HISTORY_MESSAGES


def test_the_history_is_bounded_in_characters_and_forgotten_when_the_room_empties(
    rooms: RoomManager,
) -> None:
    room = rooms.create("salle")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    for n in range(20):
        rooms.chat(room, alice.id, str(n % 10) * 4000)
    history = rooms.chat_history(room, alice.id)
    assert sum(len(m.text) for m in history) <= CHAT_HISTORY_CHARACTERS
    assert len(history) == CHAT_HISTORY_CHARACTERS // 4000
    assert history[-1].text.startswith("9")
    rooms.remove_participant(room, alice.id)
    bob = rooms.add_participant(room, "Bob", Role.MEMBER)
    assert rooms.chat_history(room, bob.id) == []


# participants kept while they reconnect (ORS 6.6) --------------------------------------------
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
