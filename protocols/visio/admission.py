"""Phones entering Visio rooms past Visio's own lobby (protocols/visio/lobby.py).

Visio's lobby (suitenumerique/meet ``LobbyService``) is respected when ``[visio] backend_url`` is
set: the room's ``access_level`` is read, and for ``trusted`` and ``restricted`` rooms (where an
anonymous participant waits) the caller asks for entry under its display name ("Phone ••• 42") and
waits, hearing the waiting prompt, until a Visio host admits or denies them. Without a backend the
gateway cannot know the room's access level and lets callers in (the dispatch rule is the
operator's decision); this is logged once per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from protocols.visio.lobby import (
    POLL_INTERVAL,
    WAIT_TIMEOUT,
    Admission,
    Outcome,
    VisioLobby,
    lobby_applies,
)
from protocols.visio.targets import visio_room

log = logging.getLogger(__name__)

WAITING_REPEAT = 20.0
"""Seconds of silence between two waiting prompts."""


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
    """Ask Visio's backend to let the caller into the room of ``target`` (``visio:UUID``); None
    when no lobby applies (public room, or no backend configured). ``play_waiting`` starts the
    waiting prompt and returns its length in seconds; it plays again after ``repeat`` seconds of
    silence. VisioLobbyError when the backend fails (the caller then cannot be admitted: the lobby
    is not bypassed on failure)."""
    if not backend_url:
        log.warning("Visio dial-in without [visio] backend_url: Visio's lobby cannot be applied")
        return None
    room_uuid = visio_room(target)
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
    """Whether the caller may enter: no lobby applied, or a host accepted."""
    return admission is None or admission.outcome is Outcome.ACCEPTED
