"""``ors:ROOM@SERVER`` link targets: a room on a partner gateway (spec 14.1). Light to import."""

from __future__ import annotations

import re

from gateway.rooms.model import ROOM_ID_PATTERN

SCHEME = "ors"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def is_server_name(name: str) -> bool:
    """Whether ``name`` is a server's name: a lowercase DNS host name (not an IP address: its
    last label is not all digits)."""
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


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
    if not is_server_name(server):
        raise ValueError(f"{_SHAPE}; SERVER is the partner's DNS name, such as de.example")
    return room, server


def normalize_target(target: str) -> str:
    """The canonical ``ors:room@server`` (server lowercase); ValueError with a sentence."""
    return target_of(*split_target(target))


def target_of(peer_room: str, peer: str) -> str:
    return f"{SCHEME}:{peer_room}@{peer}"
