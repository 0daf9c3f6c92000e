"""The Matrix half of a `MatrixLink` (protocols/matrix/link.py) against a fake homeserver and a
fake LiveKit half: refusals with their reasons and notices, a ghost with a call membership per
person here, names, ringing, chat both ways, and everything given back when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.links import LinkState
from gateway.rooms import ChatMessage, Reaction
from gateway.server import Gateway
from protocols.livekit.signal import Participant as LkParticipant
from protocols.matrix.client import MatrixError
from protocols.matrix.link import (
    FORBIDDEN_CALL,
    READ_BACK_PAGES,
    MatrixLink,
    chat_text,
    power_problem,
)
from protocols.matrix.membership import CALL_MEMBER, RTC_NOTIFICATION, is_active
from protocols.matrix.rooms import hashed_identity, hashed_room_name
from protocols.matrix.social import hand_content
from protocols.matrix.store import MatrixStore
from tests.unit.matrix.fake_homeserver import FakeHomeserver
from tests.unit.matrix.link_fakes import (
    ANNA,
    BOT,
    OPEN_CALLS,
    ROOM,
    FakeBridge,
    FakeService,
    bea_in_the_call,
    first_chat,
    gateway_here,
    ghost_of,
    join_here,
    key_of,
    notices,
    until,
)


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return gateway_here(tmp_path)


@pytest.fixture
def link_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """What the link logs, from INFO."""
    caplog.set_level(logging.INFO, logger="protocols.matrix.link")
    return caplog


@pytest.fixture
def homeserver() -> FakeHomeserver:
    homeserver = FakeHomeserver()
    room = homeserver.room(ROOM, invited=(BOT,))
    room.joined.add(ANNA)
    homeserver._set_state(ROOM, "m.room.power_levels", "", dict(OPEN_CALLS), ANNA)
    homeserver._set_state(
        ROOM, "m.room.member", ANNA, {"membership": "join", "displayname": "Anna"}, ANNA
    )
    return homeserver


@pytest.fixture
async def service(gateway: Gateway, homeserver: FakeHomeserver) -> FakeService:
    return FakeService(homeserver, MatrixStore(gateway.store))


@pytest.fixture
async def link(gateway: Gateway, service: FakeService) -> Any:
    link = MatrixLink(
        gateway,
        service,  # type: ignore[arg-type]
        "here",
        ROOM,
        bridge_factory=FakeBridge,  # type: ignore[arg-type]
    )
    yield link
    await link.stop()
    service.consumer.cancel()


# --- pure parts -------------------------------------------------------------------------------


def test_power_levels_that_let_members_hold_call_memberships_are_fine() -> None:
    assert power_problem(OPEN_CALLS, BOT) == ""
    assert power_problem(None, BOT) == ""


def test_power_levels_keeping_call_memberships_to_moderators_forbid_ghosts() -> None:
    assert power_problem({"users_default": 0, "state_default": 50}, BOT) == FORBIDDEN_CALL
    restricted = {"users_default": 0, "events": {CALL_MEMBER: 50}}
    assert power_problem(restricted, BOT) == FORBIDDEN_CALL


def test_power_levels_forbidding_the_bot_to_invite_forbid_ghosts() -> None:
    assert power_problem({**OPEN_CALLS, "invite": 50}, BOT) == FORBIDDEN_CALL
    assert power_problem({**OPEN_CALLS, "invite": 50, "users": {BOT: 50}}, BOT) == ""


def test_chat_text_of_text_notice_emote_and_edit() -> None:
    assert chat_text({"msgtype": "m.text", "body": "hello"}) == "hello"
    assert chat_text({"msgtype": "m.notice", "body": "note"}) == "note"
    assert chat_text({"msgtype": "m.emote", "body": "waves"}) == "* waves"
    edit = {"msgtype": "m.text", "body": "* fixed", "m.relates_to": {"rel_type": "m.replace"}}
    assert chat_text(edit) == "* fixed"
    assert chat_text({"msgtype": "m.image", "body": "cat.png"}) == ""
    assert chat_text({"msgtype": "m.text", "body": 3}) == ""


# --- refusals ---------------------------------------------------------------------------------


async def test_a_room_the_bot_is_not_invited_to_is_refused_with_the_reason(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    homeserver.rooms[ROOM].invited.clear()
    join_here(gateway, "Bea")
    await link.start()
    await until(lambda: link.status().state is LinkState.REFUSED)
    assert link.status().detail == f"invite {BOT} to the room"
    assert FakeBridge.made == []
    assert homeserver.sent == []
    assert BOT not in homeserver.rooms[ROOM].joined


async def test_a_refused_link_connects_once_the_bot_is_invited(
    link: MatrixLink, homeserver: FakeHomeserver
) -> None:
    homeserver.rooms[ROOM].invited.clear()
    await link.start()
    await until(lambda: link.status().state is LinkState.REFUSED)
    homeserver.rooms[ROOM].invited.add(BOT)
    homeserver._set_state(ROOM, "m.room.member", BOT, {"membership": "invite"}, ANNA)
    await until(lambda: link.status().state is LinkState.CONNECTED)


async def test_an_unknown_alias_is_refused(
    gateway: Gateway, service: FakeService, homeserver: FakeHomeserver
) -> None:
    link = MatrixLink(gateway, service, "here", "#nowhere:hs.test", bridge_factory=FakeBridge)  # type: ignore[arg-type]
    await link.start()
    await until(lambda: link.status().state is LinkState.REFUSED)
    assert "#nowhere:hs.test" in link.status().detail
    await link.stop()


async def test_power_levels_forbidding_call_memberships_give_a_notice_in_the_room(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    homeserver._set_state(ROOM, "m.room.power_levels", "", {"users_default": 0}, ANNA)
    join_here(gateway, "Bea")
    await link.start()
    await until(lambda: link.status().state is LinkState.REFUSED)
    assert link.status().detail == FORBIDDEN_CALL
    await until(lambda: bool(notices(homeserver)))
    assert FORBIDDEN_CALL in notices(homeserver)[0]
    assert FakeBridge.made == []
    assert [u for u in homeserver.rooms[ROOM].joined if u.startswith("@rondpoint_")] == []


async def test_the_notice_is_said_once_while_the_reason_stays(
    link: MatrixLink, homeserver: FakeHomeserver
) -> None:
    homeserver._set_state(ROOM, "m.room.power_levels", "", {"users_default": 0}, ANNA)
    await link.start()
    await until(lambda: bool(notices(homeserver)))
    homeserver._set_state(ROOM, "m.room.power_levels", "", {"users_default": 0, "ban": 60}, ANNA)
    await asyncio.sleep(0.1)
    assert len(notices(homeserver)) == 1


async def test_power_levels_opened_later_let_the_link_connect(
    link: MatrixLink, homeserver: FakeHomeserver
) -> None:
    homeserver._set_state(ROOM, "m.room.power_levels", "", {"users_default": 0}, ANNA)
    await link.start()
    await until(lambda: link.status().state is LinkState.REFUSED)
    homeserver._set_state(ROOM, "m.room.power_levels", "", dict(OPEN_CALLS), ANNA)
    await until(lambda: link.status().state is LinkState.CONNECTED)


async def test_an_encrypted_room_is_bridged_with_end_to_end_encryption(
    link: MatrixLink, homeserver: FakeHomeserver
) -> None:
    homeserver._set_state(
        ROOM, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"}, ANNA
    )
    await link.start()
    await until(lambda: link.status().state is LinkState.CONNECTED)
    assert link.media is not None  # tests/unit/matrix/test_e2ee_link.py: what it does
    assert FakeBridge.made[-1].settings.media is link.media


async def test_power_levels_closed_mid_call_end_the_ghosts_and_say_why(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea = join_here(gateway, "Bea")
    await link.start()
    await until(
        lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost_of(bea))) or {})
    )
    homeserver._set_state(ROOM, "m.room.power_levels", "", {"users_default": 0}, ANNA)
    await until(lambda: link.status().state is LinkState.REFUSED)
    await until(lambda: bool(notices(homeserver)))
    assert homeserver.content(ROOM, CALL_MEMBER, key_of(ghost_of(bea))) == {}
    assert FakeBridge.made[0].stopped


# --- ghosts -----------------------------------------------------------------------------------


async def test_a_person_here_becomes_a_named_ghost_holding_a_call_membership(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    await link.start()
    await until(lambda: link.status().state is LinkState.CONNECTED)
    bea = join_here(gateway, "Bea")
    ghost = ghost_of(bea)
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) or {}))
    assert homeserver.names[ghost] == "Bea"
    assert ghost in homeserver.rooms[ROOM].joined
    bridge = FakeBridge.made[0]
    assert bridge.policy.wants_mirror(bea)
    assert bridge.policy.mirror_identity(bea) == f"{ghost}:RONDPOINT"
    assert bridge.resyncs >= 1
    assert bridge.settings.livekit_room == hashed_room_name(ROOM)  # as lk-jwt-service
    assert not bridge.settings.chat


async def test_the_first_ghost_in_an_empty_call_rings_the_room(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea = join_here(gateway, "Bea")
    await link.start()
    await until(lambda: any(kind == RTC_NOTIFICATION for kind, *_ in homeserver.sent))
    (ring,) = [(c, s) for kind, _, c, s in homeserver.sent if kind == RTC_NOTIFICATION]
    assert ring[1] == ghost_of(bea)
    assert ring[0]["notification_type"] == "ring"
    assert ring[0]["m.relates_to"]["rel_type"] == "m.reference"


async def test_a_ghost_joining_a_running_call_does_not_ring(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    homeserver._set_state(
        ROOM,
        CALL_MEMBER,
        "_@anna:hs.test_ANNA_m.call",
        {"application": "m.call", "device_id": "ANNA", "call_id": ""},
        ANNA,
    )
    bea = join_here(gateway, "Bea")
    await link.start()
    await until(
        lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key_of(ghost_of(bea))) or {})
    )
    await asyncio.sleep(0.05)
    assert not any(kind == RTC_NOTIFICATION for kind, *_ in homeserver.sent)


async def test_a_person_leaving_ends_their_membership_and_their_ghost_leaves(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea, ghost = await bea_in_the_call(link, homeserver, gateway)
    gateway.rooms.remove_participant(gateway.rooms.get("here"), bea.id)
    await until(lambda: ghost not in homeserver.rooms[ROOM].joined)
    assert homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) == {}
    assert homeserver.delayed == {}
    assert MatrixStore(gateway.store).memberships() == []
    assert not FakeBridge.made[0].policy.wants_mirror(bea)


async def test_a_rename_here_renames_the_ghost(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea = join_here(gateway, "Bea")
    await link.start()
    ghost = ghost_of(bea)
    await until(lambda: homeserver.names.get(ghost) == "Bea")
    gateway.rooms.update_name(gateway.rooms.get("here"), bea.id, "Beatrice")
    await until(lambda: homeserver.names.get(ghost) == "Beatrice")


async def test_people_brought_from_matrix_get_no_ghost(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    bridge = FakeBridge.made[0]
    anna = bridge.bring(f"{ANNA}:ANNA", "Anna")
    bea = join_here(gateway, "Bea")
    await until(lambda: ghost_of(bea) in homeserver.names)
    await asyncio.sleep(0.05)
    assert ghost_of(anna) not in homeserver.names
    assert set(link.ghosts) == {bea.id}


async def test_a_vanished_membership_of_a_person_still_here_comes_back(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea = join_here(gateway, "Bea")
    await link.start()
    key = key_of(ghost_of(bea))
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key) or {}))
    (delay_id,) = homeserver.delayed
    homeserver.fire(delay_id)  # the delayed leave fired (e.g. the homeserver was down)
    assert homeserver.content(ROOM, CALL_MEMBER, key) == {}
    await until(lambda: is_active(homeserver.content(ROOM, CALL_MEMBER, key) or {}))


async def test_ghosts_are_bounded_by_the_room_capacity(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    gateway.rooms.max_participants = 2
    join_here(gateway, "Bea")
    join_here(gateway, "Carl")
    await link.start()
    await until(lambda: len(link.ghosts) == 2)
    assert len(link.ghosts) <= gateway.rooms.max_participants


async def test_stop_gives_back_every_membership_ghost_and_the_livekit_half(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea, ghost = await bea_in_the_call(link, homeserver, gateway)
    await link.stop()
    assert link.status().state is LinkState.STOPPED
    assert homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) == {}
    assert ghost not in homeserver.rooms[ROOM].joined
    assert homeserver.delayed == {}
    assert FakeBridge.made[0].stopped
    assert link.ghosts == {}


# --- names and chat ---------------------------------------------------------------------------


async def test_a_matrix_member_is_named_by_their_display_name_in_the_room(
    link: MatrixLink, homeserver: FakeHomeserver
) -> None:
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    policy = FakeBridge.made[0].policy
    info = LkParticipant(
        sid="PA_1", identity=f"{ANNA}:ANNA", name="", kind="standard", state="ACTIVE"
    )
    assert policy.remote_name(info) == "Anna"
    assert policy.remote_address(info) == ANNA
    assert policy.is_ours(f"{BOT}:bridge-here")
    assert policy.is_ours("@rondpoint_p__x:hs.test:RONDPOINT")
    assert not policy.is_ours(f"{ANNA}:ANNA")
    homeserver._set_state(
        ROOM, "m.room.member", ANNA, {"membership": "join", "displayname": "Anna K"}, ANNA
    )
    await until(lambda: policy.remote_name(info) == "Anna K")


async def test_matrix_messages_of_members_in_the_call_become_chat_here(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    events = gateway.bus.subscribe("here")
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    anna = FakeBridge.made[0].bring(f"{ANNA}:ANNA", "Anna")
    for sender, body in (
        ("@carl:hs.test", "not in the call"),
        ("@rondpoint_x:hs.test", "ghost"),
        (ANNA, "hello from Matrix"),
    ):
        homeserver.emit(
            {
                "type": "m.room.message",
                "room_id": ROOM,
                "sender": sender,
                "content": {"msgtype": "m.text", "body": body},
                "event_id": "$m",
            }
        )
    chat = await first_chat(events)
    assert (chat.sender.id, chat.text) == (anna.id, "hello from Matrix")
    events.close()


async def test_chat_here_goes_to_the_matrix_room_as_the_ghost(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea = join_here(gateway, "Bea")
    await link.start()
    await until(lambda: bea.id in link.ghosts and link.ghosts[bea.id].joined)
    gateway.rooms.chat(gateway.rooms.get("here"), bea.id, "hello from here")
    await until(
        lambda: any(
            c.get("body") == "hello from here" and s == ghost_of(bea)
            for kind, _, c, s in homeserver.sent
            if kind == "m.room.message"
        )
    )


async def test_memberships_left_behind_end_when_the_link_enters(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    from protocols.matrix.store import Membership

    gone = "@rondpoint_gone:hs.test"
    homeserver.rooms[ROOM].joined.add(gone)
    homeserver._set_state(ROOM, CALL_MEMBER, key_of(gone), {"application": "m.call"}, gone)
    MatrixStore(gateway.store).put_membership(Membership(ROOM, gone, "RONDPOINT", "d-old"))
    await link.start()
    await until(lambda: link.status().state is LinkState.CONNECTED)
    assert homeserver.content(ROOM, CALL_MEMBER, key_of(gone)) == {}
    assert gone not in homeserver.rooms[ROOM].joined
    assert MatrixStore(gateway.store).memberships() == []


async def test_the_bot_kicked_mid_call_ends_the_ghosts_and_asks_for_an_invite(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea, ghost = await bea_in_the_call(link, homeserver, gateway)
    homeserver.rooms[ROOM].joined.discard(BOT)
    homeserver._set_state(ROOM, "m.room.member", BOT, {"membership": "leave"}, ANNA)
    await until(lambda: link.status().state is LinkState.REFUSED)
    assert link.status().detail == f"invite {BOT} to the room"
    assert homeserver.content(ROOM, CALL_MEMBER, key_of(ghost)) == {}
    assert ghost not in homeserver.rooms[ROOM].joined
    assert FakeBridge.made[0].stopped


async def test_malformed_matrix_events_change_nothing(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    bea = join_here(gateway, "Bea")
    await link.start()
    key = key_of(ghost_of(bea))
    await until(lambda: any(kind == RTC_NOTIFICATION for kind, *_ in homeserver.sent))
    sent_before = len(homeserver.sent)
    junk: list[dict[str, Any]] = [
        {"type": "m.room.member", "room_id": ROOM, "sender": ANNA, "state_key": 7, "content": []},
        {"type": "m.room.member", "room_id": ROOM, "sender": ANNA, "state_key": ANNA},
        {
            "type": "m.room.power_levels",
            "room_id": ROOM,
            "sender": ANNA,
            "state_key": "",
            "content": {"users_default": "zero", "events": [], "users": "all", "state_default": 0},
        },
        {"type": CALL_MEMBER, "room_id": ROOM, "sender": ANNA, "state_key": None, "content": {}},
        {"type": "m.room.message", "room_id": ROOM, "sender": ANNA, "content": "hello"},
        {"type": "m.room.message", "room_id": ROOM, "sender": None, "content": {"body": "x"}},
        {
            "type": "m.room.message",
            "room_id": ROOM,
            "sender": ANNA,
            "content": {"msgtype": "m.text", "body": "x" * 100_000},
        },
    ]
    for event in junk:
        homeserver.emit(event)
    await asyncio.sleep(0.1)
    assert link.status().state is LinkState.CONNECTED
    assert is_active(homeserver.content(ROOM, CALL_MEMBER, key) or {})
    assert len(homeserver.sent) == sent_before
    assert [p.name for p in gateway.rooms.get("here").participants.values()] == ["Bea"]


def test_a_notice_names_rondpoint_once_and_ends_its_sentence() -> None:
    from protocols.matrix.link import notice_body

    assert notice_body(FORBIDDEN_CALL) == f"Rondpoint: {FORBIDDEN_CALL}."
    assert notice_body("Rondpoint bridges this call") == "Rondpoint bridges this call."


# --- members whose LiveKit identity is hashed (their token from /get_token) --------------------


def anna_membership(member_id: str) -> dict[str, Any]:
    return {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": "ANNAJS",
        "membershipID": member_id,
    }


async def test_a_member_with_a_hashed_identity_is_known_by_their_call_membership(
    link: MatrixLink, homeserver: FakeHomeserver, gateway: Gateway
) -> None:
    anna_key = f"_{ANNA}_ANNAJS_m.call"
    homeserver._set_state(ROOM, CALL_MEMBER, anna_key, anna_membership("before"), ANNA)
    events = gateway.bus.subscribe("here")
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    bridge = FakeBridge.made[0]
    policy = bridge.policy
    known_from_state = LkParticipant(
        sid="PA_1",
        identity=hashed_identity(ANNA, "ANNAJS", "before"),
        name="",
        kind="standard",
        state="ACTIVE",
    )
    assert not policy.is_ours(known_from_state.identity)
    assert policy.remote_address(known_from_state) == ANNA
    assert policy.remote_name(known_from_state) == "Anna"

    # She joins again with a new member id: the new hash is hers, the old one no one's.
    resyncs = bridge.resyncs
    homeserver._set_state(ROOM, CALL_MEMBER, anna_key, anna_membership("again"), ANNA)
    hashed = hashed_identity(ANNA, "ANNAJS", "again")
    await until(lambda: link.user_of(hashed) == ANNA)
    assert bridge.resyncs > resyncs  # the LiveKit half brings her now
    assert link.user_of(known_from_state.identity) is None
    assert policy.is_ours(known_from_state.identity)  # not brought here: no membership names it

    # Her chat arrives from her.
    anna = bridge.bring(hashed, "Anna")
    homeserver.emit(
        {
            "type": "m.room.message",
            "room_id": ROOM,
            "sender": ANNA,
            "content": {"msgtype": "m.text", "body": "hallo"},
            "event_id": "$m",
        }
    )
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, ChatMessage):
                assert (event.sender.id, event.text) == (anna.id, "hallo")
                break
    events.close()

    # Her membership ends: the identity is no one's, so the LiveKit half lets her go.
    homeserver._set_state(ROOM, CALL_MEMBER, anna_key, {}, ANNA)
    await until(lambda: link.user_of(hashed) is None)
    assert policy.is_ours(hashed)


async def test_a_membership_at_another_users_key_names_no_hashed_identity(
    link: MatrixLink, homeserver: FakeHomeserver
) -> None:
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    carl = "@carl:hs.test"
    homeserver._set_state(
        ROOM, CALL_MEMBER, f"_{ANNA}_ANNAJS_m.call", anna_membership("forged"), carl
    )
    homeserver._set_state(ROOM, CALL_MEMBER, f"_{carl}_C_m.call", anna_membership("x"), carl)
    await until(lambda: link.user_of(hashed_identity(carl, "ANNAJS", "x")) == carl)
    assert link.user_of(hashed_identity(ANNA, "ANNAJS", "forged")) is None
    assert link.user_of(hashed_identity(carl, "ANNAJS", "forged")) is None
    assert FakeBridge.made[0].policy.is_ours("an-unknown-hash")


# --- hands raised before the link entered the room (read back) ----------------------------------

OLGA = "@olga:hs.test"


async def anna_in_the_call(homeserver: FakeHomeserver, service: FakeService) -> str:
    """Anna holds a call membership (device ANNAJS) before the link starts; its event id."""
    homeserver.rooms[ROOM].joined.add(OLGA)
    homeserver._set_state(ROOM, CALL_MEMBER, f"_{ANNA}_ANNAJS_m.call", anna_membership("m"), ANNA)
    return homeserver.rooms[ROOM].event_ids[(CALL_MEMBER, f"_{ANNA}_ANNAJS_m.call")]


async def quiet(service: FakeService) -> None:
    """What the homeserver said so far has been delivered (before the link listens)."""
    await until(lambda: service.queue.empty())
    await asyncio.sleep(0.01)


ANNA_IN_LIVEKIT = LkParticipant(
    sid="PA_1", identity=f"{ANNA}:ANNAJS", name="", kind="standard", state="ACTIVE"
)


async def test_a_hand_raised_before_the_link_entered_is_read_back_as_the_bot(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService
) -> None:
    membership = await anna_in_the_call(homeserver, service)
    await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=OLGA)
    hand = await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)
    raised_at = homeserver.annotations[membership][-1]["origin_server_ts"] / 1000
    await quiet(service)
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    policy = FakeBridge.made[0].policy
    await until(lambda: policy.remote_hand(ANNA_IN_LIVEKIT) is not None)
    assert policy.remote_hand(ANNA_IN_LIVEKIT) == raised_at  # hers, not Olga's earlier one
    assert ("relations", ROOM, membership, BOT) in homeserver.calls
    # lowered (redacted) live: down here
    await homeserver.redact(ROOM, hand, as_user=ANNA)
    await until(lambda: policy.remote_hand(ANNA_IN_LIVEKIT) is None)


async def test_another_users_hand_on_a_membership_is_not_read_back(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService
) -> None:
    membership = await anna_in_the_call(homeserver, service)
    await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=OLGA)
    await quiet(service)
    await link.start()
    await until(lambda: any(call[0] == "relations" for call in homeserver.calls))
    await asyncio.sleep(0.05)
    assert FakeBridge.made[0].policy.remote_hand(ANNA_IN_LIVEKIT) is None


async def test_a_relations_reply_the_bot_cannot_read_changes_nothing_and_says_so_once(
    link: MatrixLink,
    homeserver: FakeHomeserver,
    service: FakeService,
    link_log: pytest.LogCaptureFixture,
) -> None:
    membership = await anna_in_the_call(homeserver, service)
    await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)
    await quiet(service)
    homeserver.relations_answer = MatrixError(200, "M_BAD_JSON", "GET relations: no chunk")
    await link.start()
    await until(lambda: "not read back" in link_log.text)
    await asyncio.sleep(0.05)
    assert link.status().state is LinkState.CONNECTED
    assert FakeBridge.made[0].policy.remote_hand(ANNA_IN_LIVEKIT) is None
    assert [r.getMessage() for r in link_log.records if "not read back" in r.getMessage()] == [
        f"hands on {membership} not read back: GET relations: no chunk"
    ]


async def test_a_hostile_relations_page_raises_no_hand_and_no_reaction(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService, gateway: Gateway
) -> None:
    membership = await anna_in_the_call(homeserver, service)
    await quiet(service)
    reference = {"m.relates_to": {"rel_type": "m.reference", "event_id": membership}}
    homeserver.relations_answer = [
        {"type": "io.element.call.reaction", "event_id": "$r", "sender": ANNA,
         "content": {**reference, "emoji": "👏", "name": "clapping"}},
        {"type": "m.reaction", "event_id": "$h", "sender": ANNA, "content": hand_content("$x")},
        {"type": "m.reaction", "event_id": 5, "sender": ANNA, "content": hand_content(membership)},
        {"type": "m.reaction", "event_id": "$z", "sender": ANNA, "content": []},
    ]  # fmt: skip
    events = gateway.bus.subscribe("here")
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    FakeBridge.made[0].bring(ANNA_IN_LIVEKIT.identity, "Anna")
    await until(lambda: any(call[0] == "relations" for call in homeserver.calls))
    await asyncio.sleep(0.05)
    assert FakeBridge.made[0].policy.remote_hand(ANNA_IN_LIVEKIT) is None
    assert link.status().state is LinkState.CONNECTED
    seen = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.2):
            async for event in events:
                seen.append(event)
    events.close()
    assert not [e for e in seen if isinstance(e, Reaction)]


async def test_a_slow_homeserver_does_not_hold_the_link_and_the_read_back_ends(
    link: MatrixLink,
    homeserver: FakeHomeserver,
    service: FakeService,
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("protocols.matrix.link.READ_BACK_SECONDS", 0.2)
    membership = await anna_in_the_call(homeserver, service)
    await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)
    await quiet(service)
    homeserver.relations_stall = asyncio.Event()
    bea, ghost = await bea_in_the_call(link, homeserver, gateway)  # bridged meanwhile
    await asyncio.sleep(0.3)
    homeserver.relations_stall.set()
    await asyncio.sleep(0.05)
    assert FakeBridge.made[0].policy.remote_hand(ANNA_IN_LIVEKIT) is None  # given up in time
    assert link._lowered is None


async def test_a_hand_lowered_while_it_is_read_back_stays_down(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService
) -> None:
    membership = await anna_in_the_call(homeserver, service)
    hand = await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)
    homeserver.relations_answer = list(homeserver.annotations[membership])  # read before...
    await quiet(service)
    homeserver.relations_stall = asyncio.Event()
    await link.start()
    await until(lambda: any(call[0] == "relations" for call in homeserver.calls))
    await homeserver.redact(ROOM, hand, as_user=ANNA)  # ...and lowered before the answer came
    await quiet(service)
    homeserver.relations_stall.set()
    await until(lambda: link._lowered is None)
    assert FakeBridge.made[0].policy.remote_hand(ANNA_IN_LIVEKIT) is None


async def annas_hand_lowered_here(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService, *, bot_level: int = 50
) -> tuple[str, FakeBridge]:
    """Anna in the call raises her hand while the link is in the room, where the bot has
    BOT_LEVEL (50: a moderator, who may redact others' events), and a host here lowers it: down
    here at once. Her reaction's id."""
    power_levels = {**OPEN_CALLS, "users": {BOT: bot_level}}
    homeserver._set_state(ROOM, "m.room.power_levels", "", power_levels, ANNA)
    membership = await anna_in_the_call(homeserver, service)
    await quiet(service)
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    hand = await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)
    bridge = FakeBridge.made[0]
    await until(lambda: bridge.policy.remote_hand(ANNA_IN_LIVEKIT) is not None)
    assert bridge.policy.lower_hand(ANNA_IN_LIVEKIT) is None  # no LiveKit attribute to set
    assert bridge.policy.remote_hand(ANNA_IN_LIVEKIT) is None
    return hand, bridge


async def test_a_hand_a_host_lowers_here_is_redacted_by_the_bot(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService
) -> None:
    hand, bridge = await annas_hand_lowered_here(link, homeserver, service)
    await until(lambda: ("redact", ROOM, hand, BOT) in homeserver.calls)
    membership = homeserver.rooms[ROOM].event_ids[(CALL_MEMBER, f"_{ANNA}_ANNAJS_m.call")]
    assert not homeserver.annotations[membership]
    # lowering again (a hand already down) redacts nothing more
    bridge.policy.lower_hand(ANNA_IN_LIVEKIT)
    await asyncio.sleep(0.05)
    assert [c for c in homeserver.calls if c[0] == "redact"] == [("redact", ROOM, hand, BOT)]


async def test_without_the_power_to_redact_a_hand_lowered_here_stays_down_here_only(
    link: MatrixLink,
    homeserver: FakeHomeserver,
    service: FakeService,
    link_log: pytest.LogCaptureFixture,
) -> None:
    hand, bridge = await annas_hand_lowered_here(link, homeserver, service, bot_level=0)
    await asyncio.sleep(0.05)
    assert not [c for c in homeserver.calls if c[0] == "redact"]  # not even tried
    assert f"{BOT} may not redact others' events" in link_log.text
    # the call changes (her name): her hand is still down here, still raised in Matrix
    homeserver._set_state(
        ROOM, "m.room.member", ANNA, {"membership": "join", "displayname": "A"}, ANNA
    )
    await asyncio.sleep(0.05)
    assert bridge.policy.remote_hand(ANNA_IN_LIVEKIT) is None
    # she lowers it there and raises it again: up here
    await homeserver.redact(ROOM, hand, as_user=ANNA)
    membership = homeserver.rooms[ROOM].event_ids[(CALL_MEMBER, f"_{ANNA}_ANNAJS_m.call")]
    await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)
    await until(lambda: bridge.policy.remote_hand(ANNA_IN_LIVEKIT) is not None)


async def test_a_redaction_the_homeserver_refuses_leaves_the_hand_down_here_and_says_so(
    link: MatrixLink,
    homeserver: FakeHomeserver,
    service: FakeService,
    link_log: pytest.LogCaptureFixture,
) -> None:
    homeserver.redaction_refusal = MatrixError(403, "M_FORBIDDEN", "not allowed to redact")
    hand, bridge = await annas_hand_lowered_here(link, homeserver, service)
    await until(lambda: "not allowed to redact" in link_log.text)
    assert ("redact", ROOM, hand, BOT) in homeserver.calls
    assert bridge.policy.remote_hand(ANNA_IN_LIVEKIT) is None
    assert link.status().state is LinkState.CONNECTED


async def test_a_hand_a_host_lowers_while_it_is_read_back_stays_down(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService
) -> None:
    membership = await anna_in_the_call(homeserver, service)
    await quiet(service)
    homeserver.relations_stall = asyncio.Event()
    await link.start()
    await until(lambda: any(call[0] == "relations" for call in homeserver.calls))
    await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)  # live
    policy = FakeBridge.made[0].policy
    await until(lambda: policy.remote_hand(ANNA_IN_LIVEKIT) is not None)
    homeserver.relations_answer = list(homeserver.annotations[membership])  # read before...
    policy.lower_hand(ANNA_IN_LIVEKIT)  # ...and lowered by a host here (the bot may not redact)
    homeserver.relations_stall.set()
    await until(lambda: link._lowered is None)
    assert policy.remote_hand(ANNA_IN_LIVEKIT) is None


async def test_hands_are_read_back_for_at_most_the_room_capacity_of_memberships(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService, gateway: Gateway
) -> None:
    gateway.rooms.max_participants = 2
    for device in ("A1", "A2", "A3", "A4"):
        content = {**anna_membership(device), "device_id": device}
        homeserver._set_state(ROOM, CALL_MEMBER, f"_{ANNA}_{device}_m.call", content, ANNA)
    await quiet(service)
    await link.start()
    await until(lambda: any(call[0] == "relations" for call in homeserver.calls))
    await until(lambda: link._lowered is None)
    assert len([call for call in homeserver.calls if call[0] == "relations"]) == 2


def thumbs_up(membership: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": membership, "key": "👍"}}


@pytest.mark.parametrize(("others", "found"), [(120, True), (250, False)])
async def test_a_hand_behind_others_reactions_is_read_back_page_by_page_up_to_a_bound(
    link: MatrixLink, homeserver: FakeHomeserver, service: FakeService, others: int, found: bool
) -> None:
    membership = await anna_in_the_call(homeserver, service)
    await homeserver.send(ROOM, "m.reaction", hand_content(membership), as_user=ANNA)
    for _ in range(others):  # Olga's reactions on Anna's membership, newer than the hand
        await homeserver.send(ROOM, "m.reaction", thumbs_up(membership), as_user=OLGA)
    await quiet(service)
    await link.start()
    await until(lambda: bool(FakeBridge.made))
    await until(lambda: link._lowered is None)  # the read-back ended
    pages = [call for call in homeserver.calls if call[0] == "relations"]
    policy = FakeBridge.made[0].policy
    if found:  # on the third page of 50: no fourth asked for
        await until(lambda: policy.remote_hand(ANNA_IN_LIVEKIT) is not None)
        assert len(pages) == 3
    else:  # behind more than READ_BACK_PAGES pages: not found, and no more asked for
        assert policy.remote_hand(ANNA_IN_LIVEKIT) is None
        assert len(pages) == READ_BACK_PAGES
