"""Dispatch of incoming calls: which room a dialled number or SIP user reaches, or the PIN prompt.

Order: a dispatch rule for the exact number; then a room named like the SIP user
(``sip:ROOM@gateway``); then the catch-all rule ``*``; else the PIN prompt. An unknown target
gets the same answer as a known one (the PIN prompt), so scanning for rooms learns nothing.

A rule's room may be a Visio room, ``visio:UUID`` (issue 4): the caller joins the local room
``visio-UUID``, made on demand and linked to the Visio room (gateway/links.py), so a phone can
start a Visio meeting nobody has opened yet. A rule may carry a PIN: the caller types it before
entering, and typed at any PIN prompt (the ``*`` rule's, an unknown number's) it reaches the
rule's room, as Visio's own telephony maps one PIN to one room (livekit/sip Direct rules).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from gateway.rooms import ROOM_ID_PATTERN, RoomManager
from protocols.sip.store import DispatchRule, SipStore

CATCH_ALL = "*"
VISIO_SCHEME = "visio:"
VISIO_ROOM_PREFIX = "visio-"
RULE_PIN_LENGTHS = (4, 16)
"""Digits in a rule's PIN: a phone's PIN reader takes up to 16 (Visio's PINs have 10)."""


def visio_target(room: str) -> str | None:
    """The canonical ``visio:UUID`` when ``room`` names a Visio room, else None."""
    if not room.lower().startswith(VISIO_SCHEME):
        return None
    try:
        return VISIO_SCHEME + str(uuid.UUID(room[len(VISIO_SCHEME) :].strip()))
    except ValueError:
        raise ValueError("a Visio room is visio: followed by the Visio room's UUID") from None


def visio_room_id(target: str) -> str:
    """The local room a ``visio:UUID`` rule's callers join: ``visio-UUID``."""
    return VISIO_ROOM_PREFIX + target[len(VISIO_SCHEME) :]


def is_visio_room_id(room: str) -> bool:
    """Whether ROOM is the local room of a Visio room (``visio-UUID``), reached only by its rule;
    other names starting with ``visio-`` are ordinary rooms."""
    if not room.startswith(VISIO_ROOM_PREFIX):
        return False
    try:
        uuid.UUID(room[len(VISIO_ROOM_PREFIX) :])
    except ValueError:
        return False
    return True


def check_rule(room: str, pin: str = "") -> str:
    """A rule's room in canonical form: "" (the PIN prompt), a room name, or ``visio:UUID``.
    ValueError with a sentence for the configuration file and the admin API."""
    room = room.strip()
    target = visio_target(room)
    if target is None and room and not ROOM_ID_PATTERN.fullmatch(room):
        raise ValueError(
            f"a rule's room is a room name ({ROOM_ID_PATTERN.pattern}), "
            "visio:VISIO_ROOM_UUID, or empty for the PIN prompt"
        )
    low, high = RULE_PIN_LENGTHS
    if pin and not (pin.isdigit() and low <= len(pin) <= high):
        raise ValueError(f"a rule's PIN is {low} to {high} digits")
    if pin and not room:
        raise ValueError("a rule with a PIN names the room it opens")
    return target or room


@dataclass(frozen=True)
class Route:
    room_id: str | None
    """The room to join; None: ask for a PIN and find the room by it."""
    language: str
    pin: str = ""
    """The rule's PIN, asked before entering ``room_id`` (besides the room's own PIN)."""
    visio: str = ""
    """``visio:UUID`` when ``room_id`` is that Visio room's local room (made on demand)."""


class Dispatcher:
    def __init__(
        self,
        rooms: RoomManager,
        default_language: str,
        configured: list[DispatchRule] | None = None,
    ) -> None:
        self.rooms = rooms
        self.default_language = default_language
        self.configured = list(configured or [])
        """Rules from the configuration file; the admin API's rules win for the same number."""

    def rules(self) -> dict[str, DispatchRule]:
        rules = {rule.number: rule for rule in self.configured}
        rules.update({rule.number: rule for rule in SipStore(self.rooms.store).dispatch_rules()})
        return rules

    def route(self, user: str, trusted: bool, allow_anonymous: bool) -> Route:
        """Where a call to ``user`` goes; ``trusted`` when it came from a trunk."""
        rules = self.rules()
        rule = rules.get(user)
        if rule is not None and (trusted or allow_anonymous):
            return self._from_rule(rule)
        if is_visio_room_id(user):
            # a Visio room's local room is entered only as its rule says (PIN, Visio's lobby)
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
        try:
            target = visio_target(rule.room_id)
        except ValueError:
            return Route(None, language)
        if target is not None:
            return Route(visio_room_id(target), language, rule.pin, target)
        room = rule.room_id if rule.room_id and self.rooms.exists(rule.room_id) else None
        return Route(room, language, rule.pin if room else "")

    def room_for_pin(self, pin: str) -> str | None:
        """The one room whose PIN this is (an ambiguous PIN finds none)."""
        route = self.route_for_pin(pin)
        return route.room_id if route is not None else None

    def route_for_pin(self, pin: str, language: str | None = None) -> Route | None:
        """The one room, or Visio room of a rule, whose PIN this is; None when none or several."""
        language = language or self.default_language
        found = [
            Route(room, language)
            for room in self.rooms.store.rooms_with_pin(pin)
            if not is_visio_room_id(room)  # reached only through its rule
        ]
        for rule in self.rules().values():
            if rule.pin and rule.pin == pin and rule.room_id:
                route = self._from_rule(rule)
                if route.room_id is not None:
                    found.append(Route(route.room_id, language, "", route.visio))
        rooms = {route.room_id for route in found}
        return found[0] if len(rooms) == 1 else None
