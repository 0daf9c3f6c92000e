"""A room's hosts are identities (ORS 2.4): kept in the store, named co-hosts, the lobby told."""

from pathlib import Path

import pytest

from gateway.rooms import (
    MAX_HOSTS,
    EventBus,
    LobbyStatus,
    ParticipantState,
    ParticipantUpdated,
    Role,
    RoomError,
    RoomManager,
)
from gateway.store import Store
from tests.unit.test_rooms import drain


@pytest.fixture
def rooms() -> RoomManager:
    return RoomManager(Store(":memory:"), EventBus(), "gw.example.gouv.fr", max_participants=4)


def test_a_host_identity_is_host_again_with_a_guest_token_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    rooms = RoomManager(store, EventBus(), "gw")
    room = rooms.create("salle")
    creator = rooms.add_participant(room, "Alice", Role.HOST, identity="guest-alice")
    rooms.remove_participant(room, creator.id)
    store.close()

    rooms = RoomManager(Store(tmp_path / "db.sqlite3"), EventBus(), "gw")
    room = rooms.get("salle")
    assert room.hosts == ["guest-alice"]
    again = rooms.add_participant(room, "Alice", Role.GUEST, identity="guest-alice")
    assert again.role is Role.HOST
    other = rooms.add_participant(room, "Bob", Role.GUEST, identity="guest-bob")
    assert other.role is Role.GUEST


def test_only_ors_identities_become_hosts_and_the_bound_holds(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    phone = rooms.add_participant(room, "Phone", Role.HOST, origin="sip")
    assert room.hosts == [] and phone.role is Role.HOST  # no identity to remember
    for n in range(MAX_HOSTS + 3):
        rooms.add_participant(room, f"H{n}", Role.HOST, identity=f"h{n}", lobby=False)
        if len(room.joined()) >= rooms.max_participants:
            for p in room.joined()[1:]:
                rooms.remove_participant(room, p.id)
    assert len(room.hosts) == MAX_HOSTS
    assert rooms.store.get_room("salle").hosts == room.hosts  # type: ignore[union-attr]


def test_set_role_names_and_takes_back_a_co_host(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    host = rooms.add_participant(room, "Alice", Role.HOST, identity="alice")
    bob = rooms.add_participant(room, "Bob", Role.GUEST, identity="bob")
    sub = rooms.bus.subscribe("salle")
    rooms.set_role(room, bob.id, Role.HOST)
    assert bob.role is Role.HOST and room.hosts == ["alice", "bob"]
    assert [type(e) for e in drain(sub)] == [ParticipantUpdated]
    rooms.set_role(room, host.id, Role.MEMBER)  # Alice gives up her own: Bob is still a host
    assert host.role is Role.MEMBER and room.hosts == ["bob"]
    with pytest.raises(RoomError) as error:
        rooms.set_role(room, bob.id, Role.MEMBER)
    assert error.value.code == "invalid_state" and bob.role is Role.HOST
    assert rooms.store.get_room("salle").hosts == ["bob"]  # type: ignore[union-attr]


def test_set_role_refuses_other_origins_lobby_and_beyond_the_bound(rooms: RoomManager) -> None:
    room = rooms.create("salle", lobby=True)
    rooms.add_participant(room, "Alice", Role.HOST, identity="alice")
    phone = rooms.add_participant(room, "Phone", Role.GUEST, origin="sip", lobby=False)
    partner = rooms.add_participant(
        room, "Hans", Role.GUEST, origin="federation:de.example", identity="x", lobby=False
    )
    waiting = rooms.add_participant(room, "Carol", Role.GUEST, identity="carol")
    for target, code in ((phone, "forbidden"), (partner, "forbidden"), (waiting, "invalid_state")):
        with pytest.raises(RoomError) as error:
            rooms.set_role(room, target.id, Role.HOST)
        assert error.value.code == code and target.role is Role.GUEST
    room.hosts.extend(f"h{n}" for n in range(MAX_HOSTS - 1))
    rooms.admit(room, waiting.id)
    with pytest.raises(RoomError) as error:
        rooms.set_role(room, waiting.id, Role.HOST)
    assert error.value.code == "too_many_hosts" and "carol" not in room.hosts


def test_a_removed_host_is_no_longer_a_host(rooms: RoomManager) -> None:
    room = rooms.create("salle")
    rooms.add_participant(room, "Alice", Role.HOST, identity="alice")
    bob = rooms.add_participant(room, "Bob", Role.GUEST, identity="bob")
    rooms.set_role(room, bob.id, Role.HOST)
    rooms.remove_participant(room, bob.id, "removed")
    assert room.hosts == ["alice"]
    rooms.let_back(room, bob.id)
    assert rooms.add_participant(room, "Bob", Role.GUEST, identity="bob").role is Role.GUEST


def test_the_lobby_is_told_when_the_last_host_leaves_and_when_one_comes(
    rooms: RoomManager,
) -> None:
    room = rooms.create("salle", lobby=True)
    host = rooms.add_participant(room, "Alice", Role.HOST, identity="alice")
    second = rooms.add_participant(room, "Dan", Role.HOST, identity="dan")
    sub = rooms.bus.subscribe("salle")
    rooms.add_participant(room, "Guest", Role.GUEST, identity="guest")
    rooms.remove_participant(room, second.id)
    assert not any(isinstance(e, LobbyStatus) for e in drain(sub))  # Alice is still there
    rooms.remove_participant(room, host.id)
    assert [e.hosts_present for e in drain(sub) if isinstance(e, LobbyStatus)] == [False]
    rooms.add_participant(room, "Alice", Role.GUEST, identity="alice")
    assert [e.hosts_present for e in drain(sub) if isinstance(e, LobbyStatus)] == [True]


def test_admit_all_admits_everyone_or_nobody(rooms: RoomManager) -> None:
    room = rooms.create("salle", lobby=True)
    rooms.add_participant(room, "Alice", Role.HOST, identity="alice")
    waiting = [rooms.add_participant(room, f"G{n}", Role.GUEST, identity=f"g{n}") for n in range(4)]
    with pytest.raises(RoomError) as error:
        rooms.admit_all(room)  # 1 + 4 > 4
    assert error.value.code == "room_full" and len(room.waiting()) == 4
    rooms.remove_participant(room, waiting[0].id, "denied")
    assert rooms.admit_all(room) == waiting[1:]
    assert all(p.state is ParticipantState.JOINED for p in waiting[1:]) and room.waiting() == []
    assert rooms.admit_all(room) == []
