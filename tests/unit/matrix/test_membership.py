"""MatrixRTC memberships (protocols/matrix/membership.py): the contents matrix-js-sdk 43 sends and
parses, and a `MembershipKeeper` against a fake homeserver: the delayed leave before the
membership, restarts, leaving, joining again when the membership vanished, and the leftovers a
previous run left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.store import Store
from protocols.matrix.membership import (
    CALL_MEMBER,
    MembershipKeeper,
    end_leftovers,
    is_active,
    member_of,
    membership_content,
    ring_content,
    state_key,
)
from protocols.matrix.store import MIGRATIONS, MatrixStore, Membership
from tests.unit.matrix.fake_homeserver import FakeHomeserver

ROOM = "!call:hs.test"
GHOST = "@rondpoint_p__a:hs.test"
KEY = f"_{GHOST}_RONDPOINT_m.call"
FOCUS = "http://127.0.0.1:8080/matrix"


@pytest.fixture
def store(tmp_path: Path) -> MatrixStore:
    db = Store(tmp_path / "gateway.db")
    db.migrate_plugin("matrix", MIGRATIONS)
    return MatrixStore(db)


@pytest.fixture
def homeserver() -> FakeHomeserver:
    homeserver = FakeHomeserver()
    homeserver.room(ROOM).joined.add(GHOST)
    return homeserver


def keeper_for(homeserver: FakeHomeserver, store: MatrixStore, **kw: object) -> MembershipKeeper:
    return MembershipKeeper(
        homeserver,  # type: ignore[arg-type]
        store,
        ROOM,
        GHOST,
        "RONDPOINT",
        FOCUS,
        **{"restart_seconds": 0.01, **kw},  # type: ignore[arg-type]
    )


async def until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


async def started_keeper(
    homeserver: FakeHomeserver, store: MatrixStore, **kw: object
) -> tuple[MembershipKeeper, list[str]]:
    """A keeper started and holding its membership, with the list its on_held callback fills."""
    held: list[str] = []
    keeper = keeper_for(homeserver, store, on_held=held.append, **kw)
    keeper.start()
    await until(lambda: len(held) == 1)
    return keeper, held


def test_state_key_is_user_device_and_application() -> None:
    assert state_key(GHOST, "RONDPOINT") == KEY


def test_membership_content_is_what_matrix_js_sdk_sends() -> None:
    content = membership_content(GHOST, "RONDPOINT", ROOM, FOCUS, intent="audio", created_ts=5)
    assert content == {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": "RONDPOINT",
        "membershipID": f"{GHOST}:RONDPOINT",
        "expires": 14_400_000,
        "m.call.intent": "audio",
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [
            {"type": "livekit", "livekit_service_url": FOCUS, "livekit_alias": ROOM}
        ],
        "created_ts": 5,
    }
    assert is_active(content)
    assert not is_active({})


def test_member_of_reads_sender_and_device_from_the_state_key() -> None:
    event = {
        "type": CALL_MEMBER,
        "state_key": "_@anna:hs.test_ABC_m.call",
        "sender": "@anna:hs.test",
    }
    assert member_of(event) == ("@anna:hs.test", "ABC")


def test_member_of_refuses_a_key_naming_another_user() -> None:
    event = {
        "type": CALL_MEMBER,
        "state_key": "_@bob:hs.test_ABC_m.call",
        "sender": "@anna:hs.test",
    }
    assert member_of(event) is None
    assert member_of({"type": "m.room.member", "state_key": "x", "sender": "@a:b"}) is None


def test_ring_refers_to_the_membership_and_mentions_the_room() -> None:
    content = ring_content("$member", now_ms=1000)
    assert content["notification_type"] == "ring"
    assert content["m.relates_to"] == {"rel_type": "m.reference", "event_id": "$member"}
    assert content["m.mentions"] == {"room": True, "user_ids": []}
    assert content["sender_ts"] == 1000
    assert 0 < content["lifetime"] <= 90_000
    assert content["slot_id"] == content["msc4354_sticky_key"] == "m.call#ROOM"


async def test_join_schedules_the_delayed_leave_before_the_membership(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper, _ = await started_keeper(homeserver, store)
    kinds = [call[0] for call in homeserver.calls]
    assert kinds.index("put_delayed_state") < kinds.index("put_state")
    assert is_active(homeserver.content(ROOM, CALL_MEMBER, KEY) or {})
    (delayed,) = homeserver.delayed.values()
    assert (delayed.state_key, delayed.content) == (KEY, {})
    assert [m.user_id for m in store.memberships(ROOM)] == [GHOST]
    await keeper.leave()


async def test_the_delayed_leave_is_restarted_while_held(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper = keeper_for(homeserver, store)
    keeper.start()
    await until(lambda: sum(c[:1] == ("update_delayed",) for c in homeserver.calls) >= 3)
    assert all(c[2] == "restart" for c in homeserver.calls if c[0] == "update_delayed")
    await keeper.leave()


async def test_leave_ends_the_membership_and_cancels_the_delayed_leave(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper = keeper_for(homeserver, store)
    keeper.start()
    await until(lambda: keeper.held)
    await keeper.leave()
    assert homeserver.content(ROOM, CALL_MEMBER, KEY) == {}
    assert homeserver.delayed == {}
    assert store.memberships() == []


async def test_a_leave_interrupting_the_membership_on_its_way_keeps_the_delayed_leave(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    """The membership's request, abandoned by the leave, lands after the leave's {} (the
    homeserver had it already): the delayed leave, still scheduled, ends it."""
    late: list[dict[str, object]] = []
    put_state = homeserver.put_state
    sent = asyncio.Event()

    async def slow_membership(*args: Any, **kwargs: Any) -> str:
        if args[3]:  # the membership, not a leave
            late.append(args[3])
            sent.set()
            await asyncio.Event().wait()  # no answer: the leave cancels the wait
        return await put_state(*args, **kwargs)

    homeserver.put_state = slow_membership  # type: ignore[method-assign]
    keeper = keeper_for(homeserver, store)
    keeper.start()
    await sent.wait()
    await keeper.leave()
    assert homeserver.content(ROOM, CALL_MEMBER, KEY) == {}
    homeserver._set_state(ROOM, CALL_MEMBER, KEY, dict(late[0]), GHOST)  # lands late
    (delay_id,) = homeserver.delayed
    homeserver.fire(delay_id)
    assert homeserver.content(ROOM, CALL_MEMBER, KEY) == {}


async def test_a_vanished_membership_is_sent_again_under_the_same_key(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper, held = await started_keeper(homeserver, store, restart_seconds=30.0)
    (delay_id,) = homeserver.delayed
    homeserver.fire(delay_id)  # the homeserver ended it while we could not restart it
    keeper.vanished()
    await until(lambda: len(held) == 2)
    assert is_active(homeserver.content(ROOM, CALL_MEMBER, KEY) or {})
    assert [k for (t, k) in homeserver.rooms[ROOM].state if t == CALL_MEMBER] == [KEY]
    assert len(homeserver.delayed) == 1
    await keeper.leave()


async def test_a_membership_still_held_is_not_sent_again(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper, held = await started_keeper(homeserver, store, restart_seconds=30.0)
    keeper.vanished()  # an old leave event seen late: the membership is still there
    await until(lambda: any(c[0] == "update_delayed" for c in homeserver.calls))
    assert len(held) == 1
    await keeper.leave()


async def test_a_forgotten_delayed_leave_makes_it_join_again(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper, held = await started_keeper(homeserver, store)
    (delay_id,) = homeserver.delayed
    homeserver.fire(delay_id)  # e.g. the homeserver restarted past the delay
    await until(lambda: len(held) == 2)
    assert is_active(homeserver.content(ROOM, CALL_MEMBER, KEY) or {})
    assert len(homeserver.delayed) == 1
    await keeper.leave()


async def test_an_outage_keeps_the_membership_and_it_carries_on_after(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper, held = await started_keeper(homeserver, store)
    homeserver.down = True
    await asyncio.sleep(0.05)
    homeserver.down = False
    count = len(homeserver.calls)
    await until(lambda: len(homeserver.calls) > count + 1)
    assert len(held) == 1
    await keeper.leave()


async def test_a_leave_during_an_outage_keeps_the_row_for_the_next_start(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper = keeper_for(homeserver, store)
    keeper.start()
    await until(lambda: keeper.held)
    homeserver.down = True
    await keeper.leave()
    assert [m.user_id for m in store.memberships()] == [GHOST]
    homeserver.down = False
    (ended,) = await end_leftovers(homeserver, store)  # type: ignore[arg-type]
    assert ended.user_id == GHOST
    assert homeserver.content(ROOM, CALL_MEMBER, KEY) == {}
    assert homeserver.delayed == {}
    assert store.memberships() == []


async def test_end_leftovers_ends_one_rooms_memberships_only(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    other = homeserver.room("!other:hs.test")
    other.joined.add(GHOST)
    store.put_membership(Membership(ROOM, GHOST, "RONDPOINT", "gone"))
    store.put_membership(Membership("!other:hs.test", GHOST, "RONDPOINT", ""))
    ended = await end_leftovers(homeserver, store, matrix_room_id=ROOM)  # type: ignore[arg-type]
    assert [m.matrix_room_id for m in ended] == [ROOM]
    assert homeserver.content(ROOM, CALL_MEMBER, KEY) == {}
    assert [m.matrix_room_id for m in store.memberships()] == ["!other:hs.test"]


async def test_end_leftovers_keeps_rows_while_the_homeserver_is_down(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    store.put_membership(Membership(ROOM, GHOST, "RONDPOINT", "d1"))
    homeserver.down = True
    assert await end_leftovers(homeserver, store) == []  # type: ignore[arg-type]
    assert len(store.memberships()) == 1


async def test_a_membership_overwritten_by_someone_else_is_sent_again(
    homeserver: FakeHomeserver, store: MatrixStore
) -> None:
    keeper, held = await started_keeper(homeserver, store, restart_seconds=30.0)
    forged = {"application": "m.call", "device_id": "RONDPOINT", "membershipID": "@mallory:x:Y"}
    homeserver._set_state(ROOM, CALL_MEMBER, KEY, forged, "@mallory:hs.test")
    keeper.vanished()
    await until(lambda: len(held) == 2)
    content = homeserver.content(ROOM, CALL_MEMBER, KEY) or {}
    assert content["membershipID"] == f"{GHOST}:RONDPOINT"
    await keeper.leave()
