"""A phone waiting in a room's lobby (protocols/sip/lobby_wait.py): the waiting prompt plays at
once and again after each LOBBY_REPEAT seconds of silence, room events do not restart it, and the
wait ends when a host admits the phone or the call ends; time is a clock the test moves."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from gateway.rooms import ParticipantState
from protocols.sip.lobby_wait import LOBBY_REPEAT, wait_in_lobby
from tests.unit.sip.fake_clock import FakeClock, settle

PROMPT_SECONDS = 4.0


class Lobby:
    """A participant in the lobby, the room events it sees, the prompts it hears."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.participant = SimpleNamespace(state=ParticipantState.LOBBY)
        self.calling = True
        self.events: asyncio.Queue[str] = asyncio.Queue()
        self.prompts: list[float] = []

    def start_prompt(self) -> float:
        self.prompts.append(self.clock.now)
        return PROMPT_SECONDS

    async def next_event(self) -> None:
        await self.events.get()

    def wait(self) -> asyncio.Task[None]:
        return asyncio.create_task(
            wait_in_lobby(
                self.clock,
                self.participant,  # type: ignore[arg-type]
                lambda: self.calling,
                self.start_prompt,
                self.next_event,
            )
        )


async def test_the_waiting_prompt_repeats_after_each_silence_until_admitted() -> None:
    clock = FakeClock()
    lobby = Lobby(clock)
    waiting = lobby.wait()
    await settle()
    assert lobby.prompts == [1000.0]
    clock.advance(PROMPT_SECONDS + LOBBY_REPEAT)
    clock.advance(PROMPT_SECONDS + LOBBY_REPEAT)
    assert lobby.prompts == [1000.0, 1024.0, 1048.0]

    lobby.participant.state = ParticipantState.JOINED
    lobby.events.put_nowait("participant_updated")
    await waiting
    clock.advance(100)
    assert len(lobby.prompts) == 3 and clock.pending() == []


async def test_other_room_events_do_not_restart_the_prompt() -> None:
    clock = FakeClock()
    lobby = Lobby(clock)
    waiting = lobby.wait()
    await settle()
    clock.advance(10)
    lobby.events.put_nowait("participant_joined")
    await settle()
    assert lobby.prompts == [1000.0] and clock.pending() == [PROMPT_SECONDS + LOBBY_REPEAT - 10]
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert clock.pending() == []


async def test_an_admission_just_before_the_repeat_cuts_the_repeat() -> None:
    clock = FakeClock()
    lobby = Lobby(clock)
    waiting = lobby.wait()
    await settle()
    lobby.participant.state = ParticipantState.JOINED  # admitted; its event not read yet
    clock.advance(PROMPT_SECONDS + LOBBY_REPEAT)
    assert lobby.prompts == [1000.0]
    lobby.events.put_nowait("participant_updated")
    await waiting


async def test_the_wait_ends_with_the_call() -> None:
    clock = FakeClock()
    lobby = Lobby(clock)
    waiting = lobby.wait()
    await settle()
    lobby.calling = False  # the phone hung up
    lobby.events.put_nowait("participant_left")
    await waiting
    assert clock.pending() == []
