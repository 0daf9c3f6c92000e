"""Phone dial-in to Visio rooms (issue 4): dispatch rules with visio:UUID rooms and PINs, the
on-demand local room and its live link (gateway/links.py with a fake adapter), and Visio's lobby
through the loopback stand-in of Visio's backend from tests/unit/test_visio_lobby.py (shapes of
suitenumerique/meet ``core/api/viewsets.py`` and ``core/services/lobby.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.rooms import EventBus, ParticipantState, Role, RoomManager
from gateway.store import Store
from protocols.sip.dispatch import Dispatcher, check_rule, visio_room_id
from protocols.sip.store import DispatchRule, SipStore
from protocols.sip.visio_dial_in import (
    VisioDialInError,
    admit_through_lobby,
    admitted,
    open_visio_room,
    release_visio_room,
)
from protocols.visio.lobby import Outcome
from tests.unit.test_links import FakeAdapter, make_gateway
from tests.unit.test_visio_lobby import FakeVisio, visio  # noqa: F401  (fixture)

UUID = "0b4c8f2e-1d2a-4e3b-9c8d-7e6f5a4b3c2d"
TARGET = f"visio:{UUID}"
LOCAL = f"visio-{UUID}"


def dispatcher(configured: list[DispatchRule] | None = None) -> Dispatcher:
    rooms = RoomManager(Store(":memory:"), EventBus(), "gw.test")
    rooms.create("conseil", pin="123456")
    return Dispatcher(rooms, "fr", configured)


def test_rule_rooms_are_checked_and_made_canonical() -> None:
    assert check_rule(f"VISIO:{UUID.upper()}") == TARGET
    assert check_rule(" cabinet ") == "cabinet"
    assert check_rule("") == ""
    assert check_rule(TARGET, "0123456789") == TARGET
    for room, pin, message in [
        ("visio:cabinet", "", "UUID"),
        ("visio:", "", "UUID"),
        ("Bad Room", "", "room name"),
        (TARGET, "12a4", "digits"),
        (TARGET, "123", "digits"),
        ("", "123456", "names the room"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_rule(room, pin)
    assert visio_room_id(TARGET) == LOCAL


def test_a_visio_rule_routes_to_the_local_room_made_on_demand() -> None:
    d = dispatcher([DispatchRule("0140506070", TARGET, "en")])
    route = d.route("0140506070", trusted=True, allow_anonymous=False)
    assert (route.room_id, route.visio, route.pin, route.language) == (LOCAL, TARGET, "", "en")
    assert not d.rooms.exists(LOCAL)  # made when a caller comes, not by routing


def test_a_rule_pin_reaches_its_visio_room_from_any_pin_prompt() -> None:
    d = dispatcher([DispatchRule("*"), DispatchRule("salle", TARGET, pin="0123456789")])
    at_prompt = d.route("0199999999", trusted=True, allow_anonymous=False)
    assert at_prompt.room_id is None
    found = d.route_for_pin("0123456789", "en")
    assert found is not None and (found.room_id, found.visio, found.language) == (
        LOCAL,
        TARGET,
        "en",
    )
    assert d.room_for_pin("123456") == "conseil"  # room PINs still work
    dialled = d.route("salle", trusted=False, allow_anonymous=True)
    assert (dialled.room_id, dialled.pin) == (LOCAL, "0123456789")  # the number asks the PIN
    # the API's rules win, and an ambiguous PIN finds nothing
    SipStore(d.rooms.store).save_dispatch_rule(DispatchRule("autre", "conseil", pin="0123456789"))
    assert d.route_for_pin("0123456789") is None


def test_the_local_room_is_entered_only_through_its_rule() -> None:
    d = dispatcher([DispatchRule("salle", TARGET, pin="0123456789")])
    d.rooms.create(LOCAL, pin="5555")  # even with a room PIN of its own
    by_name = d.route(LOCAL, trusted=False, allow_anonymous=True)
    assert (by_name.visio, by_name.pin) == (TARGET, "0123456789")
    assert d.route_for_pin("5555") is None
    orphan = dispatcher()
    orphan.rooms.create(LOCAL)
    assert orphan.route(LOCAL, trusted=True, allow_anonymous=True).room_id is None


def test_configuration_file_rules(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[[sip.dispatch]]\nnumber = "0140506070"\nroom = "VISIO:{UUID.upper()}"\n'
        'pin = "0123456789"\n'
    )
    [rule] = load_config(path).sip.dispatch
    assert (rule.room, rule.pin) == (TARGET, "0123456789")
    path.write_text('[[sip.dispatch]]\nnumber = "1"\nroom = "visio:not-a-uuid"\n')
    with pytest.raises(ConfigError, match=r"'sip.dispatch\[0\].room' must match"):
        load_config(path)
    path.write_text(f'[[sip.dispatch]]\nnumber = "1"\nroom = "{TARGET}"\npin = "12"\n')
    with pytest.raises(ConfigError, match=r"'sip.dispatch\[0\].pin'"):
        load_config(path)


async def test_the_first_caller_makes_and_links_the_room_and_the_last_releases_it(
    tmp_path: Path,
) -> None:
    gateway = make_gateway(tmp_path / "data")
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    await gateway.links.start()
    try:
        room = await open_visio_room(gateway.rooms, gateway.links, LOCAL, TARGET)
        assert room.id == LOCAL and room.policy.lobby  # web visitors wait for a host here
        assert adapter.started == [(LOCAL, TARGET)]
        assert room.links == [TARGET]
        assert gateway.store.get_room(LOCAL).links == []  # not stored: no bridge after restart
        again = await open_visio_room(gateway.rooms, gateway.links, LOCAL, TARGET)
        assert again is room and len(adapter.opened) == 1  # idempotent

        caller = gateway.rooms.add_participant(room, "Phone ••• 42", Role.GUEST, "sip", lobby=False)
        assert caller.state is ParticipantState.JOINED
        gateway.rooms.add_participant(room, "Visio user", Role.GUEST, "visio", lobby=False)
        assert not await release_visio_room(gateway.rooms, gateway.links, LOCAL, TARGET, 0)
        gateway.rooms.remove_participant(room, caller.id)
        assert not await release_visio_room(gateway.rooms, gateway.links, LOCAL, TARGET, 1)
        assert await release_visio_room(gateway.rooms, gateway.links, LOCAL, TARGET, 0)
        assert adapter.stopped == [(LOCAL, TARGET)] and room.links == []

        await gateway.links.link(LOCAL, TARGET)  # a host links it on purpose: left alone
        assert not await release_visio_room(gateway.rooms, gateway.links, LOCAL, TARGET, 0)
    finally:
        await gateway.links.stop()
        gateway.store.close()


async def test_no_visio_bridge_is_a_clear_error(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path / "data")
    try:
        with pytest.raises(VisioDialInError, match="Visio bridge"):
            await open_visio_room(gateway.rooms, gateway.links, LOCAL, TARGET)
    finally:
        gateway.store.close()


async def test_visio_lobby_applies_to_the_caller(visio: tuple[FakeVisio, str]) -> None:  # noqa: F811
    fake, url = visio
    prompts: list[float] = []

    def play() -> float:
        prompts.append(asyncio.get_running_loop().time())
        return 0.1

    fake.rooms[UUID] = "public"
    assert await admit_through_lobby(url, TARGET, "Phone ••• 42", play) is None
    assert admitted(None) and not prompts and not fake.notifications

    fake.rooms[UUID] = "restricted"
    waiting = asyncio.create_task(
        admit_through_lobby(url, TARGET, "Phone ••• 42", play, poll_interval=0.05, repeat=0.2)
    )
    await asyncio.sleep(0.8)
    assert len(prompts) >= 2  # the waiting prompt plays again while nobody decides
    [participant] = fake.waiting(UUID)
    assert fake.entries[(UUID, participant)].username == "Phone ••• 42"
    fake.decide(UUID, participant, allow=True)
    admission = await waiting
    assert admission is not None and admitted(admission)

    fake.rooms[UUID] = "trusted"
    waiting = asyncio.create_task(
        admit_through_lobby(url, TARGET, "Phone ••• 07", play, poll_interval=0.05)
    )
    while len(fake.waiting(UUID)) < 1:
        await asyncio.sleep(0.02)
    [participant] = fake.waiting(UUID)
    fake.decide(UUID, participant, allow=False)
    denied = await waiting
    assert denied is not None and denied.outcome is Outcome.DENIED and not admitted(denied)

    waiting = asyncio.create_task(  # a caller who hangs up leaves nothing behind
        admit_through_lobby(url, TARGET, "Phone", play, poll_interval=0.05)
    )
    await asyncio.sleep(0.3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    count = len(fake.requests)
    await asyncio.sleep(0.3)
    assert len(fake.requests) == count


async def test_without_a_backend_the_lobby_cannot_apply() -> None:
    assert await admit_through_lobby("", TARGET, "Phone", lambda: 0.0) is None


def test_only_visio_uuid_rooms_are_kept_for_their_rule() -> None:
    d = dispatcher()
    d.rooms.create("visio-salle")
    route = d.route("visio-salle", trusted=False, allow_anonymous=True)
    assert route.room_id == "visio-salle"  # an ordinary room whose name starts with visio-
    assert d.route(LOCAL, trusted=False, allow_anonymous=True).room_id is None
