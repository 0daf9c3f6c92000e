"""``echo:NAME`` room links (gateway/links.py): the foreign room holds one person, NAME."""

from __future__ import annotations

import contextlib
import re
import time
from typing import TYPE_CHECKING

from gateway.links import LinkState, LinkStatus
from gateway.rooms import Role, RoomError

if TYPE_CHECKING:
    from gateway.server import Gateway

SCHEME = "echo"
ORIGIN = "echo"
_NAME = re.compile(r"[a-z0-9-]{1,32}")


def normalize_target(target: str) -> str:
    """The canonical ``echo:name`` (lowercase); ValueError with a sentence otherwise."""
    scheme, _, name = target.strip().partition(":")
    name = name.lower()
    if scheme.lower() != SCHEME or not _NAME.fullmatch(name):
        raise ValueError("an echo target is echo:NAME, NAME 1 to 32 letters, digits or '-'")
    return f"{SCHEME}:{name}"


class EchoLink:
    """A room's link to the echo room NAME: while it runs, NAME sits in the room."""

    def __init__(self, gateway: Gateway, room_id: str, target: str, greeting: str) -> None:
        self.gateway = gateway
        self.room_id = room_id
        self.target = target
        self.display_name = f"{greeting} {target.partition(':')[2]}"
        self._participant_id: str | None = None
        self._since = time.time()

    def status(self) -> LinkStatus:
        if self._participant_id is None:
            return LinkStatus(LinkState.CONNECTING, "", self._since)
        return LinkStatus(LinkState.CONNECTED, "", self._since, remote_participants=1)

    async def start(self) -> None:
        """Adds the participant at once (a real link would connect in the background)."""
        room = self.gateway.rooms.get(self.room_id)
        participant = self.gateway.rooms.add_participant(
            room,
            self.display_name,
            Role.MEMBER,
            origin=ORIGIN,
            origin_address=self.target,
            lobby=False,
        )
        self._participant_id = participant.id
        self._since = time.time()

    async def stop(self) -> None:
        if self._participant_id is None:
            return
        participant_id, self._participant_id = self._participant_id, None
        with contextlib.suppress(RoomError):  # the room was deleted, and its people with it
            room = self.gateway.rooms.get(self.room_id)
            self.gateway.rooms.remove_participant(room, participant_id)

    async def forget(self) -> None:
        """The echo room has nobody to tell."""


class EchoAdapter:
    """Opens ``EchoLink``s; registered by the plugin's ``start`` (gateway/links.py LinkAdapter)."""

    scheme = SCHEME

    def __init__(self, gateway: Gateway, greeting: str) -> None:
        self.gateway = gateway
        self.greeting = greeting

    def normalize(self, target: str) -> str:
        return normalize_target(target)

    def open(self, room_id: str, target: str) -> EchoLink:
        return EchoLink(self.gateway, room_id, normalize_target(target), self.greeting)
