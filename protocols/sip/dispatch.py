"""Dispatch of incoming calls: which room a dialled number or SIP user reaches, or the PIN prompt.

Order: a dispatch rule for the exact number; then a room named like the SIP user
(``sip:ROOM@gateway``); then the catch-all rule ``*``; else the PIN prompt. An unknown target
gets the same answer as a known one (the PIN prompt), so scanning for rooms learns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.rooms import ROOM_ID_PATTERN, RoomManager
from gateway.store import DispatchRule

CATCH_ALL = "*"


@dataclass(frozen=True)
class Route:
    room_id: str | None
    """The room to join; None: ask for a PIN and find the room by it."""
    language: str


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

    def route(self, user: str, trusted: bool, allow_anonymous: bool) -> Route:
        """Where a call to ``user`` goes; ``trusted`` when it came from a trunk."""
        rules = {rule.number: rule for rule in self.configured}
        rules.update({rule.number: rule for rule in self.rooms.store.dispatch_rules()})
        rule = rules.get(user)
        if rule is not None and (trusted or allow_anonymous):
            return self._from_rule(rule)
        if (
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
        room = rule.room_id if rule.room_id and self.rooms.exists(rule.room_id) else None
        return Route(room, rule.language or self.default_language)

    def room_for_pin(self, pin: str) -> str | None:
        """The one room whose PIN this is (an ambiguous PIN finds none)."""
        rooms = self.rooms.store.rooms_with_pin(pin)
        return rooms[0] if len(rooms) == 1 else None
