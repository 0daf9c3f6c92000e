"""Dispatch of incoming calls: rule, room by name, catch-all, PIN prompt; unknown = PIN prompt."""

from __future__ import annotations

from gateway.rooms import EventBus, RoomManager
from gateway.store import DispatchRule, Store
from protocols.sip.dispatch import Dispatcher


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
    d.rooms.store.save_dispatch_rule(DispatchRule("0140506070", "conseil"))
    assert d.route("0140506070", trusted=True, allow_anonymous=False).room_id == "conseil"


def test_a_pin_finds_its_room_only_when_unique() -> None:
    d = dispatcher()
    assert d.room_for_pin("123456") == "conseil"
    d.rooms.create("autre", pin="123456")
    assert d.room_for_pin("123456") is None
