"""Dispatch of incoming calls: rule, room by name, catch-all, PIN prompt; unknown = PIN prompt.
Rules whose room is a link target (``visio:UUID``, with PINs) send callers to its local room."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.links import LinkTargets, link_room_id
from gateway.rooms import EventBus, RoomManager
from gateway.store import Store
from protocols.matrix.targets import normalize_target as normalize_matrix_target
from protocols.sip.dispatch import Dispatcher, check_rule, is_link_target
from protocols.sip.store import DispatchRule, SipStore
from protocols.visio.targets import normalize_target

UUID = "0b4c8f2e-1d2a-4e3b-9c8d-7e6f5a4b3c2d"
TARGET = f"visio:{UUID}"
LOCAL = f"visio-{UUID}"
TARGETS = LinkTargets({"visio": normalize_target})
"""Link targets as the installed Visio plugin defines them."""


def dispatcher(configured: list[DispatchRule] | None = None) -> Dispatcher:
    rooms = RoomManager(Store(":memory:"), EventBus(), "gw.test")
    rooms.create("cabinet")
    rooms.create("conseil", pin="123456")
    return Dispatcher(rooms, "fr", configured)


def test_order_is_rule_then_room_name_then_catch_all_then_pin_prompt() -> None:
    d = dispatcher([DispatchRule("0140506070", "conseil", "en"), DispatchRule("*", "cabinet")])
    assert d.route("0140506070", trusted=True, allow_anonymous=False).room_id == "conseil"
    assert d.route("0140506070", trusted=True, allow_anonymous=False).language == "en"
    assert d.route("cabinet", trusted=True, allow_anonymous=False).room_id == "cabinet"
    assert d.route("0199999999", trusted=True, allow_anonymous=False).room_id == "cabinet"
    assert dispatcher().route("0199999999", trusted=True, allow_anonymous=False).room_id is None


def test_an_unknown_room_name_gets_the_pin_prompt_like_any_unknown_number() -> None:
    d = dispatcher()
    assert d.route("no-such-room", trusted=False, allow_anonymous=True).room_id is None
    assert d.route("cabinet", trusted=False, allow_anonymous=False).room_id is None


def test_rules_made_through_the_api_win_over_the_configuration_file() -> None:
    d = dispatcher([DispatchRule("0140506070", "cabinet")])
    SipStore(d.rooms.store).save_dispatch_rule(DispatchRule("0140506070", "conseil"))
    assert d.route("0140506070", trusted=True, allow_anonymous=False).room_id == "conseil"


def test_a_pin_finds_its_room_only_when_unique() -> None:
    d = dispatcher()
    assert d.room_for_pin("123456") == "conseil"
    d.rooms.create("autre", pin="123456")
    assert d.room_for_pin("123456") is None


def link_dispatcher(configured: list[DispatchRule] | None = None) -> Dispatcher:
    rooms = RoomManager(Store(":memory:"), EventBus(), "gw.test")
    rooms.create("conseil", pin="123456")
    return Dispatcher(rooms, "fr", configured, TARGETS)


def checked(room: str, pin: str = "") -> str:
    """A rule's room as the configuration file checks it: its shape here, then a link target's
    canonical form from the hub."""
    room = check_rule(room)
    if is_link_target(room):
        room = TARGETS.canonical(room)
    return check_rule(room, pin)


def test_rule_rooms_are_checked_and_made_canonical() -> None:
    assert checked(f"VISIO:{UUID.upper()}") == TARGET
    assert checked(" cabinet ") == "cabinet"
    assert checked("") == ""
    assert checked(TARGET, "0123456789") == TARGET
    for room, pin, message in [
        ("visio:cabinet", "", "UUID"),
        ("visio:", "", "UUID"),
        ("Bad Room", "", "room name"),
        (TARGET, "12a4", "digits"),
        (TARGET, "123", "digits"),
        ("", "123456", "names the room"),
    ]:
        with pytest.raises(ValueError, match=message):
            checked(room, pin)
    assert link_room_id(TARGET) == LOCAL


def test_a_link_rule_routes_to_the_local_room_made_on_demand() -> None:
    d = link_dispatcher([DispatchRule("0140506070", TARGET, "en")])
    route = d.route("0140506070", trusted=True, allow_anonymous=False)
    assert (route.room_id, route.link, route.pin, route.language) == (LOCAL, TARGET, "", "en")
    assert not d.rooms.exists(LOCAL)  # made when a caller comes, not by routing


def test_a_rule_pin_reaches_its_linked_room_from_any_pin_prompt() -> None:
    d = link_dispatcher([DispatchRule("*"), DispatchRule("salle", TARGET, pin="0123456789")])
    at_prompt = d.route("0199999999", trusted=True, allow_anonymous=False)
    assert at_prompt.room_id is None
    found = d.route_for_pin("0123456789", "en")
    assert found is not None and (found.room_id, found.link, found.language) == (
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
    d = link_dispatcher([DispatchRule("salle", TARGET, pin="0123456789")])
    d.rooms.create(LOCAL, pin="5555")  # even with a room PIN of its own
    by_name = d.route(LOCAL, trusted=False, allow_anonymous=True)
    assert (by_name.link, by_name.pin) == (TARGET, "0123456789")
    assert d.route_for_pin("5555") is None
    orphan = link_dispatcher()
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


def test_only_link_target_rooms_are_kept_for_their_rule() -> None:
    d = link_dispatcher()
    d.rooms.create("visio-salle")
    route = d.route("visio-salle", trusted=False, allow_anonymous=True)
    assert route.room_id == "visio-salle"  # an ordinary room whose name starts with visio-
    assert d.route(LOCAL, trusted=False, allow_anonymous=True).room_id is None


MATRIX_TARGET = "matrix:!AbCdEf:hs.test"


def test_a_rule_to_a_matrix_room_routes_to_its_digested_local_room(tmp_path: Path) -> None:
    targets = LinkTargets({"matrix": normalize_matrix_target})
    rooms = RoomManager(Store(":memory:"), EventBus(), "gw.test")
    d = Dispatcher(rooms, "fr", [DispatchRule("0388001122", MATRIX_TARGET)], targets)
    local = link_room_id(MATRIX_TARGET)
    route = d.route("0388001122", trusted=False, allow_anonymous=True)
    assert (route.room_id, route.link) == (local, MATRIX_TARGET) and local.startswith("matrix-")
    rooms.create(local, internal=True)
    assert d.route(local, trusted=False, allow_anonymous=True).link == MATRIX_TARGET
    orphan = Dispatcher(rooms, "fr", [], targets)
    assert orphan.route(local, trusted=True, allow_anonymous=True).room_id is None

    path = tmp_path / "c.toml"
    path.write_text('[[sip.dispatch]]\nnumber = "1"\nroom = "MATRIX:#salle:hs.test"\n')
    assert load_config(path).sip.dispatch[0].room == "matrix:#salle:hs.test"
    path.write_text('[[sip.dispatch]]\nnumber = "1"\nroom = "matrix:salle"\n')
    with pytest.raises(ConfigError, match=r"'sip.dispatch\[0\].room'"):
        load_config(path)
