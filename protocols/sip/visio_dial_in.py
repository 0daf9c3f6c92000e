"""Phone dial-in to Visio rooms (issue 4): the local room, the link, and Visio's lobby.

A dispatch rule whose room is ``visio:UUID`` sends its callers to the local room ``visio-UUID``.
``open_visio_room`` makes that room on demand (persistent, with a local lobby so that web visitors
who find it by name wait for a host here instead of slipping into the Visio meeting) and links it
live to the Visio room with ``gateway.links.LinkManager.ensure(..., persist=False)``: the first
caller starts the Visio meeting, and no stored link keeps the bridge in Visio after a restart.

Visio's lobby (suitenumerique/meet ``LobbyService``, see protocols/visio/lobby.py) is respected
when ``[visio] backend_url`` is set: the room's ``access_level`` is read, and for ``trusted`` and
``restricted`` rooms (where an anonymous participant waits) the caller asks for entry as
"Phone ••• 42" and waits, hearing the waiting prompt, until a Visio host admits or denies them.
Without a backend the gateway cannot know the room's access level and lets callers in (the rule
is the operator's decision); this is logged once per call.

``release_visio_room`` stops the on-demand link when nobody from this side is left in the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.rooms import RoomError
from protocols.sip.dispatch import VISIO_SCHEME
from protocols.visio.lobby import (
    POLL_INTERVAL,
    WAIT_TIMEOUT,
    Admission,
    Outcome,
    VisioLobby,
    VisioLobbyError,
    lobby_applies,
)

if TYPE_CHECKING:
    from gateway.links import LinkManager
    from gateway.rooms import Room, RoomManager

log = logging.getLogger(__name__)

VISIO_ORIGIN = "visio"
"""Origin of participants mirrored from Visio (they do not keep an on-demand link alive)."""
WAITING_REPEAT = 20.0
"""Seconds of silence between two waiting prompts."""


class VisioDialInError(Exception):
    """The caller cannot be taken to the Visio room; the message is safe to log."""


async def open_visio_room(
    rooms: RoomManager, links: LinkManager, room_id: str, target: str
) -> Room:
    """The local room of a Visio room, made if need be and linked live to it."""
    if not rooms.exists(room_id):
        with contextlib.suppress(RoomError):  # room_exists: another caller made it just now
            rooms.create(room_id, lobby=True, internal=True)
    room = rooms.get(room_id)
    try:
        link = await links.ensure(room_id, target, persist=False)
    except RoomError as error:  # LinkError: visio: links not configured, or a bad target
        raise VisioDialInError(f"the Visio bridge cannot link {room_id}: {error}") from None
    if link.status().state == "failed":
        raise VisioDialInError(f"the Visio link of {room_id} failed: {link.status().detail}")
    return room


async def admit_through_lobby(
    backend_url: str,
    target: str,
    display_name: str,
    play_waiting: Callable[[], float],
    *,
    poll_interval: float = POLL_INTERVAL,
    timeout: float = WAIT_TIMEOUT,
    repeat: float = WAITING_REPEAT,
    session_factory: Callable[[str], VisioLobby] | None = None,
) -> Admission | None:
    """Ask Visio's backend to let the caller in; None when no lobby applies (public room, or no
    backend configured). ``play_waiting`` starts the waiting prompt and returns its length in
    seconds; it plays again after ``repeat`` seconds of silence. VisioLobbyError when the backend
    fails (the caller then cannot be admitted: the lobby is not bypassed on failure)."""
    if not backend_url:
        log.warning("Visio dial-in without [visio] backend_url: Visio's lobby cannot be applied")
        return None
    room_uuid = target[len(VISIO_SCHEME) :]
    make = session_factory or VisioLobby
    lobby = make(backend_url)
    try:
        level = await lobby.access_level(room_uuid)
        if lobby_applies(level) is False:
            return None
        ticket = await lobby.request_entry(room_uuid, display_name)
        if ticket.status.value != "waiting":
            return await lobby.wait_admitted(ticket)
        waiter = asyncio.create_task(
            lobby.wait_admitted(ticket, poll_interval=poll_interval, timeout=timeout)
        )
        try:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=play_waiting() + repeat)
            return waiter.result()
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
    finally:
        await lobby.close()


def admitted(admission: Admission | None) -> bool:
    return admission is None or admission.outcome is Outcome.ACCEPTED


async def release_visio_room(
    rooms: RoomManager, links: LinkManager, room_id: str, target: str, callers_pending: int
) -> bool:
    """Stop the on-demand link when no one from this side is in the room any more and no other
    caller is on the way (``callers_pending``); a link a host stored is left alone. True when
    the link was stopped."""
    if callers_pending or not rooms.exists(room_id):
        return False
    room = rooms.get(room_id)
    if any(p.origin != VISIO_ORIGIN for p in room.participants.values()):
        return False
    record = rooms.store.get_room(room_id)
    if record is not None and target in record.links:
        return False  # linked on purpose (rondpoint link): not ours to stop
    try:
        await links.unlink(room_id, target)
    except (RoomError, VisioLobbyError):
        return False
    log.info("Visio room released by its last caller", extra={"room": room_id})
    return True
