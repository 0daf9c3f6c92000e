"""Dispatch of incoming calls: which room a dialled number or SIP user reaches, or the PIN prompt.

Order: a dispatch rule for the exact number; then a room named like the SIP user
(``sip:ROOM@gateway``); then the catch-all rule ``*``; else the PIN prompt. An unknown target
gets the same answer as a known one (the PIN prompt), so scanning for rooms learns nothing.

A rule's room may be a link target ``SCHEME:ROOM`` of an installed plugin (``visio:UUID``,
``matrix:!id:server``): the caller joins the target's local room (``visio-UUID``, or ``matrix-`` and
a digest: gateway.links.link_room_id), which the hub makes on demand and links to
the foreign room (gateway/links.py), so a phone can start a meeting nobody has opened yet. Here
such a target is only checked for its shape; the hub gives its canonical form. A rule may carry a
PIN: the caller types it before entering, and typed at any PIN prompt (the ``*`` rule's, an
unknown number's) it reaches the rule's room, as some platforms' own telephony maps one PIN to one
room (livekit/sip Direct rules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.links import LinkTargets, link_room_id
from gateway.rooms import ROOM_ID_PATTERN, RoomManager
from protocols.sip.store import DispatchRule, SipStore

CATCH_ALL = "*"
RULE_PIN_LENGTHS = (4, 16)
"""Digits in a rule's PIN: a phone's PIN reader takes up to 16 (Visio's PINs have 10)."""
PHONE_NUMBER = re.compile(r"\+?[0-9]{2,32}")
"""A rule's number that a phone dials; another rule number is a SIP user (sip:USER@domain)."""
LINK_TARGET = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}:[^\s\x00-\x1f\x7f]+")
"""The shape of a link target, ``SCHEME:ROOM``; its plugin says which are valid."""


def is_link_target(room: str) -> bool:
    """Whether a rule's ``room`` is written as a link target rather than a room name."""
    return ":" in room


def check_rule(room: str, pin: str = "") -> str:
    """A rule's room, stripped: "" (the PIN prompt), a room name, or a link target ``SCHEME:ROOM``
    (its canonical form is the hub's: gateway.links). ValueError with a sentence for the
    configuration file and the admin API."""
    room = room.strip()
    if is_link_target(room):
        if not LINK_TARGET.fullmatch(room):
            raise ValueError(
                "a rule's link target is SCHEME:ROOM (e.g. visio:VISIO_ROOM_UUID), "
                "without spaces or control characters"
            )
    elif room and not ROOM_ID_PATTERN.fullmatch(room):
        raise ValueError(
            f"a rule's room is a room name ({ROOM_ID_PATTERN.pattern}), "
            "a link target such as visio:VISIO_ROOM_UUID, or empty for the PIN prompt"
        )
    low, high = RULE_PIN_LENGTHS
    if pin and not (pin.isdigit() and low <= len(pin) <= high):
        raise ValueError(f"a rule's PIN is {low} to {high} digits")
    if pin and not room:
        raise ValueError("a rule with a PIN names the room it opens")
    return room


@dataclass(frozen=True)
class Route:
    room_id: str | None
    """The room to join; None: ask for a PIN and find the room by it."""
    language: str
    pin: str = ""
    """The rule's PIN, asked before entering ``room_id`` (besides the room's own PIN)."""
    link: str = ""
    """The link target (``visio:UUID``) when ``room_id`` is its local room (made on demand)."""


class Dispatcher:
    def __init__(
        self,
        rooms: RoomManager,
        default_language: str,
        configured: list[DispatchRule] | None = None,
        targets: LinkTargets | None = None,
    ) -> None:
        self.rooms = rooms
        self.store = SipStore(rooms.store)
        """The rules made through the admin API."""
        self.default_language = default_language
        self.configured = list(configured or [])
        """Rules from the configuration file; the admin API's rules win for the same number."""
        self.targets = targets if targets is not None else LinkTargets.installed()
        """The link targets a rule may name (by default, those of the installed plugins)."""

    def rules(self) -> dict[str, DispatchRule]:
        rules = {rule.number: rule for rule in self.configured}
        rules.update({rule.number: rule for rule in self.store.dispatch_rules()})
        return rules

    def route(self, user: str, trusted: bool, allow_anonymous: bool) -> Route:
        """Where a call to ``user`` goes; ``trusted`` when it came from a trunk."""
        rules = self.rules()
        rule = rules.get(user)
        if rule is not None and (trusted or allow_anonymous):
            return self._from_rule(rule)
        if self.targets.is_room_id(user):
            # a link target's local room is entered only as its rule says (PIN, the foreign lobby)
            for rule in rules.values():
                if (trusted or allow_anonymous) and self._from_rule(rule).room_id == user:
                    return self._from_rule(rule)
        elif (
            (trusted or allow_anonymous)
            and ROOM_ID_PATTERN.fullmatch(user)
            and self.rooms.exists(user)
        ):
            return Route(user, self.default_language)
        catch_all = rules.get(CATCH_ALL)
        if catch_all is not None:
            return self._from_rule(catch_all)
        return Route(None, self.default_language)

    def _from_rule(self, rule: DispatchRule) -> Route:
        language = rule.language or self.default_language
        if is_link_target(rule.room_id):
            try:
                target = self.targets.canonical(rule.room_id)
                room_id = link_room_id(target)
            except ValueError:
                return Route(None, language)
            return Route(room_id, language, rule.pin, target)
        room = rule.room_id if rule.room_id and self.rooms.exists(rule.room_id) else None
        return Route(room, language, rule.pin if room else "")

    def dial_in(
        self, room_id: str, host: str, allow_anonymous: bool
    ) -> tuple[list[str], list[str]]:
        """(numbers, SIP URIs) that lead a phone to ``room_id``: the rules to the room (or to its
        link target), the rules to the PIN prompt when the room's PIN opens this room alone, and
        ``sip:ROOM@host`` when callers that are no trunk's may dial a room by name. The catch-all
        rule ``*`` has no number to show."""
        pin = self.rooms.get(room_id).policy.pin if self.rooms.exists(room_id) else ""
        by_pin = self.route_for_pin(pin) if pin else None
        numbers: list[str] = []
        uris: list[str] = []
        for rule in sorted(self.rules().values(), key=lambda rule: rule.number):
            if rule.number == CATCH_ALL:
                continue
            reaches = self._from_rule(rule).room_id == room_id if rule.room_id else False
            prompt = not rule.room_id and by_pin is not None and by_pin.room_id == room_id
            if not (reaches or prompt):
                continue
            if PHONE_NUMBER.fullmatch(rule.number):
                numbers.append(rule.number)
            else:
                uris.append(f"sip:{rule.number}@{host}")
        if allow_anonymous and not self.targets.is_room_id(room_id):
            uris.append(f"sip:{room_id}@{host}")
        return numbers, uris

    def room_for_pin(self, pin: str) -> str | None:
        """The one room whose PIN this is (an ambiguous PIN finds none)."""
        route = self.route_for_pin(pin)
        return route.room_id if route is not None else None

    def route_for_pin(self, pin: str, language: str | None = None) -> Route | None:
        """The one room, or link target of a rule, whose PIN this is; None when none or several."""
        language = language or self.default_language
        found = [
            Route(room, language)
            for room in self.rooms.store.rooms_with_pin(pin)
            if not self.targets.is_room_id(room)  # reached only through its rule
        ]
        for rule in self.rules().values():
            if rule.pin and rule.pin == pin and rule.room_id:
                route = self._from_rule(rule)
                if route.room_id is not None:
                    found.append(Route(route.room_id, language, "", route.link))
        rooms = {route.room_id for route in found}
        return found[0] if len(rooms) == 1 else None
