"""A phone waiting in a room's lobby until a host admits it, hearing the waiting prompt again
after each ``LOBBY_REPEAT`` seconds of silence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.rooms import Participant, ParticipantState
from protocols.sip.clock import Clock
from protocols.sip.prompt_player import RepeatingPrompt

LOBBY_REPEAT = 20.0
"""Seconds of silence in the lobby before the waiting prompt plays again."""


async def wait_in_lobby(
    clock: Clock,
    participant: Participant,
    calling: Callable[[], bool],
    start_prompt: Callable[[], float],
    next_event: Callable[[], Awaitable[None]],
) -> None:
    """Return once ``participant`` leaves the lobby (admitted, or gone) or the call ends
    (``calling()`` false). Room events go to ``next_event`` meanwhile; an admission cuts the
    prompt short (the phone leaves the prompt's conference), other events do not restart it."""

    def waiting() -> bool:
        return participant.state is ParticipantState.LOBBY and calling()

    prompt = RepeatingPrompt(clock, start_prompt, LOBBY_REPEAT, waiting)
    prompt.start()
    try:
        while waiting():
            await next_event()
    finally:
        prompt.stop()
