"""``ors:ROOM@SERVER`` link targets: a room on a partner gateway (spec 14.1). Light to import."""

from __future__ import annotations

import re

from gateway.rooms.model import ROOM_ID_PATTERN

SCHEME = "ors"
HOSTNAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
"""A server's name: a DNS host name, lowercase."""
_SHAPE = "an ors: target is ors:ROOM@SERVER, e.g. ors:cabinet@de.example"


def split_target(target: str) -> tuple[str, str]:
    """(room on the partner, partner's server name) of a target; ValueError with a sentence."""
    scheme, colon, rest = target.strip().partition(":")
    if scheme.lower() != SCHEME or not colon:
        raise ValueError(_SHAPE)
    room, at, server = rest.rpartition("@")
    server = server.lower().rstrip(".")
    if not at or not ROOM_ID_PATTERN.fullmatch(room):
        raise ValueError(
            f"{_SHAPE}; ROOM is the room's name on the partner "
            "(3 to 64 lowercase letters, digits or '-')"
        )
    if not HOSTNAME.fullmatch(server):
        raise ValueError(f"{_SHAPE}; SERVER is the partner's DNS name, such as de.example")
    return room, server


def normalize_target(target: str) -> str:
    """The canonical ``ors:room@server`` (server lowercase); ValueError with a sentence."""
    room, server = split_target(target)
    return f"{SCHEME}:{room}@{server}"


def target_of(peer_room: str, peer: str) -> str:
    return f"{SCHEME}:{peer_room}@{peer}"
