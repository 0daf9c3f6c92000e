"""The room model: participants, lobby, tracks, mute and chat, each change announced on the bus."""

import pytest

from gateway.rooms import (
    ChatMessage,
    EventBus,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    ParticipantUpdated,
    Role,
    RoomError,
    RoomManager,
    Track,
    TrackKind,
    TrackMuted,
    TrackPublished,
    TrackSource,
    TrackUnpublished,
    valid_origin,
)
from gateway.rooms.manager import MAX_REMOVED
from gateway.store import Store


@pytest.fixture
def rooms() -> RoomManager:
    return RoomManager(Store(":memory:"), EventBus(), "gw.example.gouv.fr", max_participants=3)


def drain(sub) -> list:  # type: ignore[no-untyped-def]
    events = []
    while not sub.queue.empty():
        events.append(sub.get_nowait())
    return events


@pytest.mark.parametrize("name", ["ab", "-abc", "Abc", "a" * 65, "abc_def", "abc def", ""])
def test_room_names_outside_the_pattern_are_refused(rooms: RoomManager, name: str) -> None:
    with pytest.raises(RoomError) as error:
        rooms.create(name)
    assert error.value.code == "invalid_room_name"


def test_a_created_room_is_persisted_and_listed(rooms: RoomManager) -> None:
    rooms.create("cabinet-ministre", pin="123456", lobby=True)
    room = rooms.get("cabinet-ministre")
    assert room.policy.pin == "123456" and room.policy.lobby
    assert [r.id for r in rooms.list()] == ["cabinet-ministre"]
    with pytest.raises(RoomError) as error:
        rooms.create("cabinet-ministre")
    assert error.value.status == 409


def test_joining_and_leaving_are_announced(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    sub = rooms.bus.subscribe("salle")
    alice = rooms.add_participant(room, "Alice", Role.HOST)
    rooms.remove_participant(room, alice.id)
    events = drain(sub)
    assert isinstance(events[0], ParticipantJoined) and events[0].participant.name == "Alice"
    assert isinstance(events[1], ParticipantLeft) and events[1].reason == "left"
    assert room.participants == {}


def test_lobby_holds_guests_until_a_host_admits_them(rooms: RoomManager) -> None:
    room = rooms.create("salle", lobby=True)
    host = rooms.add_participant(room, "Host", Role.HOST)
    guest = rooms.add_participant(room, "Guest", Role.GUEST)
    assert host.state is ParticipantState.JOINED
    assert guest.state is ParticipantState.LOBBY
    sub = rooms.bus.subscribe("salle")
    rooms.admit(room, guest.id)
    assert guest.state is ParticipantState.JOINED
    assert isinstance(drain(sub)[0], ParticipantUpdated)
    with pytest.raises(RoomError):
        rooms.admit(room, guest.id)


def test_a_full_room_refuses_another_participant(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    for i in range(3):
        rooms.add_participant(room, f"P{i}", Role.MEMBER)
    with pytest.raises(RoomError) as error:
        rooms.add_participant(room, "P4", Role.MEMBER)
    assert error.value.code == "room_full"
    assert len(room.participants) == 3


def test_the_lobby_has_its_own_bound_and_never_keeps_a_host_out() -> None:
    rooms = RoomManager(Store(":memory:"), EventBus(), "gw", max_participants=2, max_lobby=3)
    room = rooms.create("salle", lobby=True)
    waiting = [rooms.add_participant(room, f"S{i}", Role.GUEST) for i in range(3)]
    with pytest.raises(RoomError) as error:
        rooms.add_participant(room, "S4", Role.GUEST)
    assert error.value.code == "room_full"
    host = rooms.add_participant(room, "Host", Role.HOST)
    assert host.state is ParticipantState.JOINED
    rooms.admit(room, waiting[0].id)
    with pytest.raises(RoomError) as error:  # two joined: the room itself is full
        rooms.admit(room, waiting[1].id)
    assert error.value.code == "room_full"
    assert waiting[1].state is ParticipantState.LOBBY
    with pytest.raises(RoomError):
        rooms.add_participant(room, "Host 2", Role.HOST)


def test_tracks_publish_mute_and_leave_with_their_owner(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    sub = rooms.bus.subscribe("salle")
    track = Track("TR_1", alice.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus")
    rooms.publish_track(room, track)
    rooms.set_muted(room, alice.id, "TR_1", True)
    rooms.set_muted(room, alice.id, "TR_1", True)  # no change, no event
    rooms.remove_participant(room, alice.id)
    kinds = [type(e) for e in drain(sub)]
    assert kinds == [TrackPublished, TrackMuted, TrackUnpublished, ParticipantLeft]


def test_chat_to_an_unknown_participant_is_refused(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    sub = rooms.bus.subscribe("salle")
    with pytest.raises(RoomError):
        rooms.chat(room, alice.id, "bonjour", to="PA_nobody")
    message = rooms.chat(room, alice.id, "bonjour")
    assert drain(sub) == [message]
    assert isinstance(message, ChatMessage) and message.sender.name == "Alice"


def test_chat_beyond_the_burst_is_refused_until_the_rate_refills(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    bob = rooms.add_participant(room, "Bob", Role.MEMBER)
    sub = rooms.bus.subscribe("salle")
    drain(sub)
    for _ in range(20):
        rooms.chat(room, alice.id, "flood", now=100.0)
    with pytest.raises(RoomError) as error:
        rooms.chat(room, alice.id, "flood", now=100.0)
    assert (error.value.code, error.value.status) == ("rate_limited", 429)
    assert len(drain(sub)) == 20, "a refused message reaches nobody"
    rooms.chat(room, bob.id, "bonjour", now=100.0)  # per participant
    rooms.chat(room, alice.id, "later", now=100.2)  # 5 per second
    assert [e.text for e in drain(sub)] == ["bonjour", "later"]


def test_a_subscriber_that_falls_behind_its_limit_is_closed_and_told() -> None:
    bus = EventBus()
    told = []
    session = bus.subscribe("salle", limit=3, on_overflow=lambda: told.append(True))
    internal = bus.subscribe()  # the gateway's own: no limit, never dropped
    for n in range(5):
        bus.publish(ParticipantLeft("salle", Participant(f"PA_{n}", "P")))
    assert (told, session.overflowed, session.queue.qsize()) == ([True], True, 3)
    bus.publish(ParticipantLeft("salle", Participant("PA_5", "P")))
    assert told == [True] and session.queue.qsize() == 3, "a closed subscription gets nothing"
    assert internal.queue.qsize() == 6 and not internal.overflowed


def test_a_removed_identity_is_refused_until_let_back(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    bob = rooms.add_participant(room, "Bob", Role.MEMBER, identity="bob")
    rooms.remove_participant(room, bob.id, "removed")
    with pytest.raises(RoomError) as error:
        rooms.add_participant(room, "Bob", Role.MEMBER, identity="bob")
    assert (error.value.code, error.value.status) == ("removed", 403)
    rooms.add_participant(room, "Bob", Role.MEMBER, identity="bob2")  # another identity
    assert not rooms.let_back(room, "PA_unknown")
    assert rooms.let_back(room, bob.id)
    assert rooms.add_participant(room, "Bob", Role.MEMBER, identity="bob").identity == "bob"


def test_leaving_is_not_a_removal_and_removals_are_bounded(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER, identity="alice")
    rooms.remove_participant(room, alice.id, "left")
    assert room.removed == {}
    rooms.max_participants = 10_000
    for n in range(MAX_REMOVED + 1):
        p = rooms.add_participant(room, "P", Role.GUEST, identity=f"guest-{n}")
        rooms.remove_participant(room, p.id, "denied")
    assert len(room.removed) == MAX_REMOVED and "guest-0" not in room.removed


def test_deleting_a_room_removes_everyone(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    rooms.add_participant(room, "Alice", Role.MEMBER)
    sub = rooms.bus.subscribe("salle")
    rooms.delete("salle")
    events = drain(sub)
    assert isinstance(events[0], ParticipantLeft) and events[0].reason == "room_closed"
    assert not rooms.exists("salle")


def test_origins() -> None:
    assert all(valid_origin(o) for o in ("ors", "sip", "visio", "matrix", "federation:de.example"))
    assert all(valid_origin(o) for o in ("echo", "opentalk", "jitsi_meet"))  # plugins' names
    assert not any(valid_origin(o) for o in ("federation:", "", "x", "Skype", "sip:alice", "a b"))


def test_a_participant_needs_a_valid_origin() -> None:
    rooms = RoomManager(Store(":memory:"), EventBus(), "local", 10)
    room = rooms.create("salle")
    with pytest.raises(ValueError, match="origin"):
        rooms.add_participant(room, "Alice", Role.MEMBER, origin="Sip!")
    assert not room.participants
