"""FederationLink's lifecycle against a scripted partner: connected, refused, failed and retrying
with the partner's words, state first, relinking when the partner forgot the link, transactions
applied once, the partner's people gone after the grace, and unlinking told to the partner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gateway.federation.link import FederationLink
from gateway.links import LinkState
from gateway.rooms import EventBus, Role, RoomManager
from gateway.store import Store


class Unreachable(Exception):
    pass


class Partner:
    """Answers each request with the first matching scripted answer (or 200 {})."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.answers: list[tuple[str, Callable[[], tuple[int, dict[str, Any]]]]] = []

    def answer(self, prefix: str, status: int, body: dict[str, Any] | None = None) -> None:
        self.answers.insert(0, (prefix, lambda: (status, body or {})))

    def fail(self, prefix: str) -> None:
        def raise_unreachable() -> tuple[int, dict[str, Any]]:
            raise Unreachable("de.test: connection refused")

        self.answers.insert(0, (prefix, raise_unreachable))

    async def request(
        self, peer: str, method: str, path: str, body: object | None = None, *, timeout: float = 10
    ) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, path, body))
        await asyncio.sleep(0)
        for prefix, make in self.answers:
            if f"{method} {path}".startswith(prefix):
                return make()
        return 200, {}

    def sent(self, method: str, prefix: str = "") -> list[Any]:
        return [b for m, p, b in self.requests if m == method and p.startswith(prefix)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def rooms() -> RoomManager:
    manager = RoomManager(Store(":memory:"), EventBus(), "fr.test", max_participants=10)
    manager.create("salon")
    return manager


def make_link(rooms: RoomManager, partner: Partner, clock: Clock, **kwargs: Any) -> FederationLink:
    return FederationLink(
        rooms=rooms,
        client=partner,
        unreachable=(Unreachable,),
        room_id="salon",
        peer="de.test",
        peer_room="kabinett",
        link_id="l_0123456789abcdef",
        initiator=kwargs.pop("initiator", True),
        heartbeat_seconds=kwargs.pop("heartbeat", 0.01),
        grace_seconds=2.0,
        max_participants=10,
        clock=clock,
        sleep=clock.sleep,
        is_peer=kwargs.pop("is_peer", lambda name: True),
    )


async def until(check: Callable[[], object], turns: int = 2000) -> None:
    for _ in range(turns):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def test_connects_then_sends_the_full_state_first(rooms: RoomManager) -> None:
    rooms.add_participant(rooms.get("salon"), "Marie", Role.HOST)
    partner, clock = Partner(), Clock()
    link = make_link(rooms, partner, clock)
    await link.start()
    try:
        await until(lambda: partner.sent("PUT"))
        assert link.status().state is LinkState.CONNECTED
        (ask,) = partner.sent("POST", "/links")
        assert ask == {"link_id": link.link_id, "room": "kabinett", "peer_room": "salon"}
        first = partner.sent("PUT")[0]
        assert first["link_id"] == link.link_id
        assert first["events"][0]["type"] == "state"
        assert [p["name"] for p in first["events"][0]["participants"]] == ["Marie"]
    finally:
        await link.stop()
    assert link.status().state is LinkState.STOPPED


@pytest.mark.parametrize(
    ("status", "code", "state"),
    [(403, "peer_not_allowed", LinkState.REFUSED), (404, "room_not_found", LinkState.FAILED)],
)
async def test_a_refusal_shows_the_partners_detail_and_is_retried_slowly(
    rooms: RoomManager, status: int, code: str, state: LinkState
) -> None:
    partner, clock = Partner(), Clock()
    detail = f"the partner says {code}"
    written = f"\u202e{detail}\x07\n"
    partner.answer("POST /links", status, {"code": code, "detail": written})
    link = make_link(rooms, partner, clock)
    await link.start()
    try:
        await until(lambda: len(partner.sent("POST")) >= 2)
        assert link.status().state is state
        assert link.status().detail == detail
        assert sum(clock.slept) >= 60  # once a minute
        assert partner.sent("PUT") == []
    finally:
        await link.stop()


async def test_an_unreachable_partner_is_retried_with_backoff(rooms: RoomManager) -> None:
    partner, clock = Partner(), Clock()
    partner.fail("POST /links")
    link = make_link(rooms, partner, clock, heartbeat=100)
    await link.start()
    try:
        await until(lambda: len(partner.sent("POST")) >= 6)
        status = link.status()
        assert status.state is LinkState.RETRYING
        assert "connection refused" in status.detail
        assert status.attempts >= 5
        assert clock.slept[:5] == [0.5, 1, 2, 4, 8]
        partner.answers.clear()
        await until(lambda: link.status().state is LinkState.CONNECTED)
    finally:
        await link.stop()


async def test_a_partner_that_forgot_the_link_is_asked_again(rooms: RoomManager) -> None:
    partner, clock = Partner(), Clock()
    link = make_link(rooms, partner, clock)
    await link.start()
    try:
        await until(lambda: partner.sent("PUT"))
        partner.answer("PUT /transactions/", 404, {"code": "link_not_found", "detail": "no"})
        await until(lambda: len(partner.sent("POST", "/links")) >= 2)
        partner.answers.clear()
        count = len(partner.sent("PUT"))
        await until(lambda: len(partner.sent("PUT")) > count + 1)
        assert link.status().state is LinkState.CONNECTED
    finally:
        await link.stop()


async def test_transactions_apply_once_and_people_leave_after_the_grace(
    rooms: RoomManager,
) -> None:
    partner, clock = Partner(), Clock()
    link = make_link(rooms, partner, clock, heartbeat=15)
    hans = {"id": "PA_h", "name": "Hans", "origin": "ors", "tracks": []}
    link.receive("t_00000001", [{"type": "participant", "participant": hans}])
    link.receive("t_00000002", [{"type": "participant_left", "participant_id": "PA_h"}])
    link.receive("t_00000001", [{"type": "participant", "participant": hans}])  # replayed
    assert link.status().remote_participants == 0
    link.receive("t_00000003", [{"type": "participant", "participant": hans}])
    assert link.status().remote_participants == 1
    clock.now += 3 * 15  # three heartbeats missed: still within the grace
    link.check_contact()
    assert link.status().remote_participants == 1
    clock.now += 2.5
    link.check_contact()
    assert link.status().remote_participants == 0
    assert [p.name for p in rooms.get("salon").participants.values()] == []


async def test_forget_tells_the_partner_unless_it_unlinked_first(rooms: RoomManager) -> None:
    partner, clock = Partner(), Clock()
    link = make_link(rooms, partner, clock)
    await link.forget()
    assert partner.requests == [("DELETE", f"/links/{link.link_id}", None)]
    other = make_link(rooms, Partner(), clock)
    other.partner_forgot = True
    await other.forget()
    assert other.client.requests == []  # type: ignore[attr-defined]
    partner.fail("DELETE")
    await link.forget()  # best effort: an unreachable partner raises nothing


async def test_a_removed_peer_shows_failed_until_it_is_added_again(rooms: RoomManager) -> None:
    partner, clock = Partner(), Clock()
    peers = {"de.test"}
    link = make_link(rooms, partner, clock, is_peer=lambda name: name in peers)
    await link.start()
    try:
        await until(lambda: partner.sent("PUT"))
        hans = {"id": "x", "name": "H", "origin": "ors", "tracks": []}
        link.receive("t_00000001", [{"type": "participant", "participant": hans}])
        peers.clear()
        link.peer_removed()
        status = link.status()
        assert status.state is LinkState.FAILED and status.remote_participants == 0
        assert status.detail == "not a federation peer any more"
        asked = len(partner.sent("POST"))
        await until(lambda: sum(clock.slept) > 120)
        assert link.status().state is LinkState.FAILED
        assert len(partner.sent("POST")) == asked  # nothing is asked of a server not trusted
        peers.add("de.test")
        await until(lambda: link.status().state is LinkState.CONNECTED)
    finally:
        await link.stop()


async def test_events_the_partner_refuses_are_not_sent_again(rooms: RoomManager) -> None:
    partner, clock = Partner(), Clock()
    link = make_link(rooms, partner, clock)
    await link.start()
    try:
        await until(lambda: partner.sent("PUT"))
        partner.answer("PUT /transactions/", 400, {"code": "invalid_message", "detail": "bad"})
        room = rooms.get("salon")
        marie = rooms.add_participant(room, "Marie", Role.HOST)
        rooms.chat(room, marie.id, "refused once")
        await until(lambda: link.status().state is LinkState.FAILED)
        assert link.status().detail == "bad"
        partner.answers.clear()
        await until(lambda: link.status().state is LinkState.CONNECTED)
        await until(lambda: len(partner.sent("PUT")) > 4)
        chats = [e for body in partner.sent("PUT") for e in body["events"] if e["type"] == "chat"]
        assert len(chats) == 1  # sent in the refused transaction only
    finally:
        await link.stop()


async def test_a_partner_back_ends_the_backoff(rooms: RoomManager) -> None:
    partner, clock = Partner(), Clock()
    asked_at: list[float] = []
    partner.answers.insert(0, ("POST /links", lambda: (asked_at.append(clock.now), (503, {}))[1]))
    link = make_link(rooms, partner, clock, heartbeat=2)
    await link.start()
    try:
        await until(lambda: len(asked_at) >= 9)  # 30 s between attempts now
        assert asked_at[-1] - asked_at[-2] == 30
        link.partner_linked(link.link_id)
        count, nudged_at = len(asked_at), clock.now
        await until(lambda: len(asked_at) > count)
        assert asked_at[count] - nudged_at <= 1  # asked again within one heartbeat/2
    finally:
        await link.stop()


async def test_a_partner_too_slow_for_the_events_gets_one_full_state_instead(
    rooms: RoomManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.federation.link.MAX_PENDING", 20)
    room = rooms.get("salon")
    marie = rooms.add_participant(room, "Marie", Role.HOST)
    partner, clock = Partner(), Clock()
    link = make_link(rooms, partner, clock)
    await link.start()
    try:
        await until(lambda: partner.sent("PUT"))
        gate = asyncio.Event()
        answer = partner.request

        async def slow(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
            await gate.wait()  # the partner answers, but only later
            return await answer(*args, **kwargs)

        partner.request = slow  # type: ignore[method-assign]
        rooms.update_name(room, marie.id, "Marie Curie")
        rooms.add_participant(room, "Ana", Role.MEMBER)  # must not be lost in the flood
        for n in range(50):
            rooms.update_name(room, marie.id, f"Marie {n}")
        await asyncio.sleep(0.05)
        gate.set()

        def known() -> set[str]:
            names = set()
            for body in partner.sent("PUT"):
                for event in body["events"]:
                    if event["type"] == "state":
                        names = {p["name"] for p in event["participants"]}
                    elif event["type"] == "participant":
                        names.add(event["participant"]["name"])
            return names

        await until(lambda: {"Ana", "Marie 49"} <= known())
    finally:
        await link.stop()
