"""Room events, and the async bus that carries them from the room model to every adapter.

In-process by default; a Redis bus with the same interface joins nodes into a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.rooms.model import Participant, Track


@dataclass(frozen=True)
class RoomEvent:
    room_id: str


@dataclass(frozen=True)
class ParticipantJoined(RoomEvent):
    participant: Participant


@dataclass(frozen=True)
class ParticipantUpdated(RoomEvent):
    participant: Participant


@dataclass(frozen=True)
class LobbyStatus(RoomEvent):
    """Whether a host is present in the room (joined) changed: the lobby is told (ORS 9.18)."""

    hosts_present: bool


@dataclass(frozen=True)
class ParticipantLeft(RoomEvent):
    participant: Participant
    reason: str = "left"


@dataclass(frozen=True)
class TrackPublished(RoomEvent):
    track: Track


@dataclass(frozen=True)
class TrackUnpublished(RoomEvent):
    track: Track


@dataclass(frozen=True)
class TrackMuted(RoomEvent):
    track: Track


@dataclass(frozen=True)
class ActiveSpeakers(RoomEvent):
    speakers: tuple[tuple[str, float], ...]
    """(participant id, level 0..1), loudest first."""


@dataclass(frozen=True)
class ChatMessage(RoomEvent):
    id: str
    sender: Participant
    text: str
    timestamp: float
    to: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The message as ORS ``chat`` carries it (spec 9.12), in ``joined``'s history too."""
        wire: dict[str, Any] = {
            "id": self.id,
            "from": self.sender.id,
            "from_name": self.sender.name,
            "text": self.text,
            "ts": int(self.timestamp * 1000),
        }
        if self.to is not None:
            wire["to"] = self.to
        return wire

    def visible_to(self, participant_id: str) -> bool:
        """Whether the participant may read it: everyone, or a private message's two ends."""
        return self.to is None or participant_id in (self.to, self.sender.id)


@dataclass(frozen=True)
class Reaction(RoomEvent):
    """A participant's passing reaction (spec 8.18): shown to everyone, never stored."""

    participant_id: str
    emoji: str
    timestamp: float


@dataclass(frozen=True)
class UnmuteRequested(RoomEvent):
    """A host asks one participant to unmute (spec 8.19); for that participant only."""

    participant_id: str
    by: str
    kind: str


@dataclass(frozen=True)
class Caption(RoomEvent):
    participant_id: str
    text: str
    final: bool = True
    language: str = ""


@dataclass(frozen=True)
class RoomClosed(RoomEvent):
    reason: str = "deleted"


@dataclass
class Subscription:
    """One subscriber's queue of events; iterate it, close it when done.

    ``limit`` bounds how far behind the subscriber may fall: the event that would exceed it closes
    the subscription instead and calls ``on_overflow`` (an ORS session then disconnects its client
    as too slow). Nothing is dropped silently: a subscription without a limit (the gateway's own,
    in-process subscribers, which must see every mute, removal and leave) keeps every event.
    """

    bus: EventBus
    room_id: str | None
    limit: int | None = None
    on_overflow: Callable[[], None] | None = None
    queue: asyncio.Queue[RoomEvent] = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    def __aiter__(self) -> AsyncIterator[RoomEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RoomEvent]:
        while True:
            yield await self.queue.get()

    def get_nowait(self) -> RoomEvent:
        return self.queue.get_nowait()

    def close(self) -> None:
        self.bus._subscriptions.discard(self)

    def deliver(self, event: RoomEvent) -> None:
        if self.limit is not None and self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.close()
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self.queue.put_nowait(event)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class EventBus:
    """Fan-out of room events to subscribers, each with its own queue; nothing polls."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(
        self,
        room_id: str | None = None,
        limit: int | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> Subscription:
        """Events of one room, or of every room when ``room_id`` is None; ``limit`` and
        ``on_overflow`` as in Subscription (no limit: every event is kept)."""
        sub = Subscription(self, room_id, limit, on_overflow)
        self._subscriptions.add(sub)
        return sub

    def publish(self, event: RoomEvent) -> None:
        for sub in list(self._subscriptions):
            if sub.room_id is None or sub.room_id == event.room_id:
                sub.deliver(event)
