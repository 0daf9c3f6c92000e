"""A fake homeserver client for unit tests of the Matrix link and memberships: room state, MSC4140
delayed events, invites and joins, sent events, annotations (the relations API), and an outage
switch. It answers what a `protocols.matrix.client.MatrixClient` answers (same method names,
same errors)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.matrix.client import MatrixError, MatrixUnavailable

BOT = "@rondpoint:hs.test"
"""The application service's bot: who acts when no `as_user` is given."""


@dataclass
class Delayed:
    room_id: str
    event_type: str
    state_key: str
    content: dict[str, Any]
    sender: str


@dataclass
class FakeRoom:
    room_id: str
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    senders: dict[tuple[str, str], str] = field(default_factory=dict)
    event_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    joined: set[str] = field(default_factory=set)
    invited: set[str] = field(default_factory=set)
    public: bool = False


class FakeHomeserver:
    """Rooms, delayed events and a log of calls ("put_state", room, type, key, user)..."""

    def __init__(self) -> None:
        self.rooms: dict[str, FakeRoom] = {}
        self.aliases: dict[str, str] = {}
        self.delayed: dict[str, Delayed] = {}
        self.sent: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.calls: list[tuple[str, ...]] = []
        self.names: dict[str, str] = {}
        self.down = False
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        """Gets every event, as the homeserver's transactions would carry it."""
        self.annotations: dict[str, list[dict[str, Any]]] = {}
        """Event id -> the ``m.reaction`` events relating to it, as sent (oldest first)."""
        self.relations_answer: Any = None
        """When set, what every relations request answers instead: a list of events, or an
        exception raised (a hostile or failing homeserver)."""
        self.relations_stall: asyncio.Event | None = None
        """When set, relations requests wait for it (a slow homeserver)."""
        self.redaction_refusal: MatrixError | None = None
        """When set, what every redaction raises (a homeserver that refuses it)."""
        self._ids = itertools.count(1)

    # --- test controls --------------------------------------------------------------------

    def room(
        self, room_id: str, *, invited: tuple[str, ...] = (), public: bool = False
    ) -> FakeRoom:
        room = FakeRoom(room_id, invited=set(invited), public=public)
        self.rooms[room_id] = room
        return room

    def fire(self, delay_id: str) -> None:
        """The delayed event fires (its delay passed while nobody restarted it)."""
        delayed = self.delayed.pop(delay_id)
        self._set_state(
            delayed.room_id, delayed.event_type, delayed.state_key, delayed.content, delayed.sender
        )

    def content(self, room_id: str, event_type: str, state_key: str) -> dict[str, Any] | None:
        return self.rooms[room_id].state.get((event_type, state_key))

    # --- the client's API -----------------------------------------------------------------

    def _check(self) -> None:
        if self.down:
            raise MatrixUnavailable(502, "M_UNAVAILABLE", "the homeserver is down")

    def _event_id(self) -> str:
        return f"$e{next(self._ids)}"

    def _set_state(
        self, room_id: str, event_type: str, key: str, content: dict[str, Any], sender: str
    ) -> str:
        room = self.rooms[room_id]
        room.state[(event_type, key)] = dict(content)
        room.senders[(event_type, key)] = sender
        event_id = self._event_id()
        room.event_ids[(event_type, key)] = event_id
        self.emit(
            {
                "type": event_type,
                "state_key": key,
                "content": dict(content),
                "sender": sender,
                "room_id": room_id,
                "event_id": event_id,
            }
        )
        return event_id

    def emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _room(self, room_id: str) -> FakeRoom:
        room = self.rooms.get(room_id)
        if room is None:
            raise MatrixError(404, "M_NOT_FOUND", "no such room")
        return room

    def _member(self, room_id: str, user: str) -> FakeRoom:
        room = self._room(room_id)
        if user not in room.joined:
            raise MatrixError(403, "M_FORBIDDEN", f"{user} is not in the room")
        return room

    async def resolve_alias(self, alias: str) -> str:
        self._check()
        if alias not in self.aliases:
            raise MatrixError(404, "M_NOT_FOUND", "no such alias")
        return self.aliases[alias]

    async def join(self, room: str, *, as_user: str | None = None) -> str:
        self._check()
        user = as_user or BOT
        room_id = self.aliases.get(room, room)
        found = self._room(room_id)
        if not found.public and user not in found.invited and user not in found.joined:
            raise MatrixError(403, "M_FORBIDDEN", "You are not invited to this room.")
        found.joined.add(user)
        found.invited.discard(user)
        self._set_state(room_id, "m.room.member", user, {"membership": "join"}, user)
        self.calls.append(("join", room_id, user))
        return room_id

    async def invite(self, room_id: str, user_id: str, *, as_user: str | None = None) -> None:
        self._check()
        self._member(room_id, as_user or BOT).invited.add(user_id)

    async def leave(self, room_id: str, *, as_user: str) -> None:
        self._check()
        room = self._room(room_id)
        room.joined.discard(as_user)
        self._set_state(room_id, "m.room.member", as_user, {"membership": "leave"}, as_user)
        self.calls.append(("leave", room_id, as_user))

    async def room_state(self, room_id: str, *, as_user: str | None = None) -> list[dict[str, Any]]:
        self._check()
        room = self._member(room_id, as_user or BOT)
        return [
            {
                "type": t,
                "state_key": k,
                "content": c,
                "sender": room.senders[(t, k)],
                "room_id": room_id,
                "event_id": room.event_ids[(t, k)],
            }
            for (t, k), c in room.state.items()
        ]

    async def put_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str,
        content: dict[str, Any],
        *,
        as_user: str | None = None,
    ) -> str:
        self._check()
        user = as_user or BOT
        self._member(room_id, user)
        self.calls.append(
            (
                "put_state",
                room_id,
                event_type,
                state_key,
                user,
                "{}" if not content else "membership",
            )
        )
        return self._set_state(room_id, event_type, state_key, content, user)

    async def put_delayed_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str,
        content: dict[str, Any],
        delay_ms: int,
        *,
        as_user: str,
    ) -> str:
        self._check()
        self._member(room_id, as_user)
        delay_id = f"d{next(self._ids)}"
        self.delayed[delay_id] = Delayed(room_id, event_type, state_key, dict(content), as_user)
        self.calls.append(("put_delayed_state", room_id, event_type, state_key, as_user))
        return delay_id

    async def update_delayed(self, delay_id: str, action: str, *, as_user: str) -> None:
        self._check()
        if delay_id not in self.delayed:
            raise MatrixError(404, "M_NOT_FOUND", "no such delayed event")
        self.calls.append(("update_delayed", delay_id, action))
        if action == "cancel":
            del self.delayed[delay_id]
        elif action == "send":
            self.fire(delay_id)

    async def send(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        *,
        as_user: str | None = None,
        txn_id: str | None = None,
    ) -> str:
        self._check()
        self._member(room_id, as_user or BOT)
        self.sent.append((event_type, room_id, content, as_user))
        event_id = self._event_id()
        event = {
            "type": event_type,
            "content": dict(content),
            "sender": as_user or BOT,
            "room_id": room_id,
            "event_id": event_id,
            "origin_server_ts": 1_000_000 + len(self.sent),
        }
        relation = content.get("m.relates_to")
        if event_type == "m.reaction" and isinstance(relation, dict):
            self.annotations.setdefault(str(relation.get("event_id")), []).append(event)
        self.emit(event)
        return event_id

    async def redact(self, room_id: str, event_id: str, *, as_user: str | None = None) -> None:
        """The event's relation is gone (a redacted event keeps none)."""
        self._check()
        self._member(room_id, as_user or BOT)
        self.calls.append(("redact", room_id, event_id, as_user or BOT))
        if self.redaction_refusal is not None:
            raise self.redaction_refusal
        for related in self.annotations.values():
            related[:] = [e for e in related if e["event_id"] != event_id]
        self.emit(
            {
                "type": "m.room.redaction",
                "redacts": event_id,
                "content": {},
                "sender": as_user or BOT,
                "room_id": room_id,
                "event_id": self._event_id(),
            }
        )

    async def relations(
        self,
        room_id: str,
        event_id: str,
        rel_type: str,
        event_type: str,
        *,
        limit: int,
        page: str | None = None,
        as_user: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """LIMIT annotations of EVENT_TYPE on EVENT_ID, newest first, from the page PAGE (the
        index of its first, as a string), and the next page's token."""
        self._check()
        self._member(room_id, as_user or BOT)
        self.calls.append(("relations", room_id, event_id, as_user or ""))
        if self.relations_stall is not None:
            await self.relations_stall.wait()
        if isinstance(self.relations_answer, Exception):
            raise self.relations_answer
        if self.relations_answer is not None:
            return list(self.relations_answer), None
        related = self.annotations.get(event_id, []) if rel_type == "m.annotation" else []
        events = [e for e in reversed(related) if e["type"] == event_type]
        start = int(page or 0)
        end = start + limit
        return events[start:end], (str(end) if end < len(events) else None)

    async def register(self, localpart: str) -> None:
        self._check()

    async def set_display_name(self, user_id: str, name: str) -> None:
        self._check()
        self.names[user_id] = name

    async def request(self, method: str, path: str, *_: Any, **__: Any) -> dict[str, Any]:
        """Only GET /rooms/{room}/state/{type}/{key} (what memberships look at); the rest of
        MatrixClient.request's arguments are not looked at."""
        self._check()
        from urllib.parse import unquote

        parts = path.split("/")
        room_id, event_type, key = unquote(parts[5]), unquote(parts[7]), unquote(parts[8])
        content = self._room(room_id).state.get((event_type, key))
        if content is None:
            raise MatrixError(404, "M_NOT_FOUND", "no such state")
        return dict(content)
