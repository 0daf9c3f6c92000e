"""The neutral room model of DESIGN.md: rooms, participants and tracks, whatever system they came from."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ROOM_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")


class Role(StrEnum):
    HOST = "host"
    MEMBER = "member"
    GUEST = "guest"


class ParticipantState(StrEnum):
    LOBBY = "lobby"
    JOINED = "joined"


class TrackKind(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class TrackSource(StrEnum):
    MICROPHONE = "microphone"
    CAMERA = "camera"
    SCREEN = "screen"
    SCREEN_AUDIO = "screen_audio"


ORIGIN = re.compile(r"[a-z][a-z0-9_]{1,31}|federation:\S+")
"""A participant's origin (spec 2.3): ``ors``, a protocol plugin's name (``sip``, ``visio``), or
``federation:<server>``."""


def valid_origin(origin: str) -> bool:
    return ORIGIN.fullmatch(origin) is not None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(9)}"


@dataclass
class SimulcastLayer:
    rid: str
    width: int | None = None
    height: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"rid": self.rid}
        if self.width:
            wire["width"] = self.width
        if self.height:
            wire["height"] = self.height
        return wire


@dataclass
class Track:
    id: str
    owner: str
    kind: TrackKind
    source: TrackSource
    codec: str = ""
    muted: bool = False
    layers: list[SimulcastLayer] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "participant_id": self.owner,
            "kind": self.kind.value,
            "source": self.source.value,
            "codec": self.codec,
            "muted": self.muted,
        }
        if self.layers:
            wire["simulcast"] = [layer.to_wire() for layer in self.layers]
        return wire


@dataclass
class Participant:
    id: str
    name: str
    origin: str = "ors"
    origin_address: str = ""
    role: Role = Role.MEMBER
    state: ParticipantState = ParticipantState.JOINED
    joined_at: float = field(default_factory=time.time)
    tracks: dict[str, Track] = field(default_factory=dict)
    identity: str = ""
    """Who joined, as its token names it (``sub``), for ORS participants; "" for the others.
    Never sent to clients."""
    hand_raised_at: float | None = None
    """When the participant raised its hand (seconds since the epoch), None when it is down."""
    reconnecting: bool = False
    """Its connection dropped and the room keeps it a grace period for it to resume (ORS 6.6)."""

    @property
    def is_host(self) -> bool:
        return self.role is Role.HOST

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "origin": self.origin,
            "origin_address": self.origin_address,
            "role": self.role.value,
            "state": self.state.value,
            "joined_at": int(self.joined_at * 1000),
            "tracks": [t.to_wire() for t in self.tracks.values()],
            "hand_raised_at": (
                None if self.hand_raised_at is None else int(self.hand_raised_at * 1000)
            ),
            "reconnecting": self.reconnecting,
        }


@dataclass
class RoomPolicy:
    pin: str = ""
    """The room's PIN in clear (digits): entered by phone callers too, so it cannot be hashed."""
    lobby: bool = False
    federation_peers: list[str] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {
            "pin": bool(self.pin),
            "lobby": self.lobby,
            "federation_peers": list(self.federation_peers),
        }


@dataclass
class Room:
    id: str
    server: str
    policy: RoomPolicy = field(default_factory=RoomPolicy)
    links: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    persistent: bool = True
    participants: dict[str, Participant] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    """Identities a host removed (or denied) -> the participant id they had, oldest first: they
    may not join again until a host lets them back (RoomManager.let_back)."""
    hosts: list[str] = field(default_factory=list)
    """The identities (token `sub`) that are the room's hosts, oldest first, as the store keeps
    them: whoever joined with a host token and the co-hosts a host named (ORS 2.4)."""

    def tracks(self) -> list[Track]:
        return [t for p in self.participants.values() for t in p.tracks.values()]

    def joined(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.state is ParticipantState.JOINED]

    def waiting(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.state is ParticipantState.LOBBY]

    def hosts_present(self) -> bool:
        """Whether a host has joined the room (the lobby is told when this changes)."""
        return any(p.is_host for p in self.joined())

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "server": self.server,
            "policy": self.policy.to_wire(),
            "links": list(self.links),
            "created_at": int(self.created_at * 1000),
        }
