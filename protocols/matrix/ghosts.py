"""Ghost Matrix users: registered in our namespace, named, and brought into rooms by the bot.

What each ghost was last named is kept in the store (``matrix_ghosts``), so a restarted gateway
neither registers nor renames a ghost again without need. A homeserver that forgot a ghost (its
database replaced) says so, and the ghost is registered again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from protocols.matrix.client import MatrixClient, MatrixError
from protocols.matrix.ids import split_user_id
from protocols.matrix.store import MatrixStore

log = logging.getLogger(__name__)

UNREGISTERED = "has not registered this user"
"""What Synapse answers (403) when the application service acts as a user it does not know."""


class Ghosts:
    """Registers, names, and joins the bot's ghost users."""

    def __init__(self, client: MatrixClient, store: MatrixStore) -> None:
        self.client = client
        self.store = store

    async def register(self, user_id: str) -> None:
        """Register the ghost once (a ghost the homeserver already has is fine)."""
        if self.store.ghost_name(user_id) is not None:
            return
        parts = split_user_id(user_id)
        if parts is None:
            raise ValueError(f"not a Matrix user id: {user_id[:80]!r}")
        await self.client.register(parts[0])
        self.store.put_ghost(user_id, "")

    async def ensure(self, user_id: str, display_name: str) -> None:
        """The ghost registered, with ``display_name`` set if it changed."""
        await self.register(user_id)
        if display_name and self.store.ghost_name(user_id) != display_name:
            await self._as_registered(
                user_id, lambda: self.client.set_display_name(user_id, display_name)
            )
            self.store.put_ghost(user_id, display_name)

    async def join(self, room_id: str, user_id: str) -> None:
        """The ghost joins ``room_id``; when the room wants an invite, the bot invites it first."""
        try:
            await self._as_registered(user_id, lambda: self.client.join(room_id, as_user=user_id))
            return
        except MatrixError as error:
            if error.status != 403:
                raise
            log.debug("ghost %s needs an invite to %s", user_id, room_id)
        try:
            await self.client.invite(room_id, user_id)
        except MatrixError as error:
            # already invited or joined: the homeserver says 403 "is already in the room"
            if error.status != 403 or "already" not in str(error):
                raise
        await self.client.join(room_id, as_user=user_id)

    async def _as_registered(self, user_id: str, call: Callable[[], Awaitable[object]]) -> None:
        """``call`` as the ghost; registered again and called once more when the homeserver
        no longer knows it."""
        try:
            await call()
            return
        except MatrixError as error:
            if error.status != 403 or UNREGISTERED not in str(error):
                raise
        log.info("the homeserver forgot the ghost %s: registering it again", user_id)
        parts = split_user_id(user_id)
        if parts is None:
            raise ValueError(f"not a Matrix user id: {user_id[:80]!r}")
        await self.client.register(parts[0])
        self.store.put_ghost(user_id, "")
        await call()

    async def leave(self, room_id: str, user_id: str) -> None:
        """The ghost leaves ``room_id`` (a ghost not there is fine)."""
        try:
            await self.client.leave(room_id, as_user=user_id)
        except MatrixError as error:
            if error.status not in (403, 404):
                raise
