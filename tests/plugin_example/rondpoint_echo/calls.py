"""``echo:NAME`` calls: dialling NAME adds NAME to the room a moment later, as a phone answers;
each call is kept in the plugin's own table, ``echo_calls``."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.plugins import DialError
from gateway.rooms import Role, RoomError, new_id
from rondpoint_echo.links import ORIGIN, SCHEME, normalize_target

if TYPE_CHECKING:
    from gateway.server import Gateway

MIGRATIONS = [
    # 1: the log of dialled targets; released steps are never edited, a change is a new step.
    """
    CREATE TABLE echo_calls (
        id          TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        target      TEXT NOT NULL,
        dialled_at  REAL NOT NULL
    );
    CREATE INDEX echo_calls_by_time ON echo_calls(dialled_at);
    """,
]

KEPT_CALLS = 1_000
"""Rows ``echo_calls`` keeps; beyond, the oldest call is forgotten."""
LISTED_CALLS = 100
"""Calls the admin API lists, newest first."""
MAX_CALLS_IN_PROGRESS = 100
ANSWER_SECONDS = 0.2
"""How long an echo call rings before NAME answers."""


class CallLog:
    """The ``echo_calls`` table."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def record(self, call_ref: str, room_id: str, target: str) -> None:
        self.db.execute(
            "INSERT INTO echo_calls (id, room_id, target, dialled_at) VALUES (?, ?, ?, ?)",
            (call_ref, room_id, target, time.time()),
        )
        self.db.execute(
            "DELETE FROM echo_calls WHERE id NOT IN "
            "(SELECT id FROM echo_calls ORDER BY dialled_at DESC LIMIT ?)",
            (KEPT_CALLS,),
        )

    def recent(self) -> list[dict[str, object]]:
        rows = self.db.execute(
            "SELECT id, room_id, target, dialled_at FROM echo_calls "
            "ORDER BY dialled_at DESC LIMIT ?",
            (LISTED_CALLS,),
        ).fetchall()
        return [
            {"id": call_ref, "room": room_id, "to": target, "dialled_at": int(at * 1000)}
            for call_ref, room_id, target, at in rows
        ]


@dataclass
class EchoCall:
    """One call placed by the dialler (gateway.plugins.DialledCall)."""

    call_ref: str
    room_id: str
    target: str
    state: str = "ringing"
    """"ringing", "answered", or "failed" (the room was full or gone when NAME answered)."""
    participant_id: str | None = None
    answer: asyncio.TimerHandle | None = None

    def status(self) -> dict[str, object]:
        return {
            "id": self.call_ref,
            "room": self.room_id,
            "to": self.target,
            "status": self.state,
            "participant_id": self.participant_id,
        }


class EchoDialler:
    """Dials ``echo:NAME`` (gateway.plugins.Dialler)."""

    schemes = (SCHEME,)

    def __init__(
        self, gateway: Gateway, log: CallLog, answer_seconds: float = ANSWER_SECONDS
    ) -> None:
        self.gateway = gateway
        self.log = log
        self.answer_seconds = answer_seconds
        self.dialled = 0
        """Calls placed since the gateway started (the metric)."""
        self._calls: dict[str, EchoCall] = {}

    def dial(self, room_id: str, target: str, route: str | None) -> EchoCall:
        if route is not None:
            raise DialError("echo calls take no trunk")
        try:
            canonical = normalize_target(target)
        except ValueError as error:
            raise DialError(str(error)) from None
        self._forget_ended()
        if len(self._calls) >= MAX_CALLS_IN_PROGRESS:
            raise DialError(f"at most {MAX_CALLS_IN_PROGRESS} echo calls at a time")
        call = EchoCall(new_id("EC"), room_id, canonical)
        call.answer = asyncio.get_running_loop().call_later(
            self.answer_seconds, self._answered, call
        )
        self._calls[call.call_ref] = call
        self.log.record(call.call_ref, room_id, canonical)
        self.dialled += 1
        return call

    def calls_of(self, room_id: str) -> list[dict[str, object]]:
        self._forget_ended()
        return [call.status() for call in self._calls.values() if call.room_id == room_id]

    def owns(self, participant_id: str) -> bool:
        return any(call.participant_id == participant_id for call in self._calls.values())

    def transfer(self, participant_id: str, target: str) -> None:
        raise DialError("echo calls cannot be transferred")

    async def stop(self) -> None:
        """Hang up every call: ringing ones stop ringing, answered ones leave their rooms."""
        for call in self._calls.values():
            if call.answer is not None:
                call.answer.cancel()
            if call.participant_id is not None:
                with contextlib.suppress(RoomError):
                    room = self.gateway.rooms.get(call.room_id)
                    self.gateway.rooms.remove_participant(room, call.participant_id)
        self._calls.clear()

    def _answered(self, call: EchoCall) -> None:
        call.answer = None
        try:
            room = self.gateway.rooms.get(call.room_id)
            participant = self.gateway.rooms.add_participant(
                room,
                call.target.partition(":")[2],
                Role.GUEST,
                origin=ORIGIN,
                origin_address=call.target,
                lobby=False,
            )
        except RoomError:
            call.state = "failed"
            return
        call.participant_id = participant.id
        call.state = "answered"

    def _forget_ended(self) -> None:
        """Drops failed calls and answered ones whose participant has left (or was removed)."""
        for call in list(self._calls.values()):
            if call.state == "failed" or (call.state == "answered" and not self._present(call)):
                del self._calls[call.call_ref]

    def _present(self, call: EchoCall) -> bool:
        try:
            room = self.gateway.rooms.get(call.room_id)
        except RoomError:
            return False
        return call.participant_id in room.participants
