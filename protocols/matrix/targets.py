"""``matrix:`` link targets: a Matrix room by its id (``matrix:!id:server``) or alias
(``matrix:#alias:server``).

Light to import (no client, no LiveKit): the plugin checks targets in configuration files with it
before the bridge runs.
"""

from __future__ import annotations

import re

SCHEME = "matrix"
_SERVER = r"(?:[A-Za-z0-9.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
_ROOM_ID = re.compile(r"![\x21-\x39\x3b-\x7e]{1,255}:" + _SERVER)
_ROOM_ID_V12 = re.compile(r"![A-Za-z0-9_-]{43}")
"""Room version 12 ids name no server: the create event's reference hash, unpadded base64url."""
_ALIAS = re.compile(r"#[^\s:]{1,255}:" + _SERVER)
EXAMPLE = "matrix:!AbCdEf:example.org or matrix:#room:example.org"


def matrix_room(target: str) -> str:
    """The room id or alias of a ``matrix:`` target; ValueError with a sentence otherwise."""
    scheme, _, rest = target.strip().partition(":")
    if scheme.lower() != SCHEME:
        raise ValueError(f"a Matrix link looks like {EXAMPLE}, not {target[:80]!r}")
    room = rest.strip()
    if len(room) > 255 or not any(p.fullmatch(room) for p in (_ROOM_ID, _ROOM_ID_V12, _ALIAS)):
        raise ValueError(
            "a Matrix room is named by its id (!id:server, or !id alone since room version 12: in "
            "the room's advanced settings) or an "
            f"alias (#name:server), e.g. {EXAMPLE}"
        )
    return room


def is_room_id(text: str) -> bool:
    """Whether ``text`` is a room id: ``!id:server``, or ``!HASH`` from room version 12 on."""
    return len(text) <= 255 and any(p.fullmatch(text) for p in (_ROOM_ID, _ROOM_ID_V12))


def is_alias(room: str) -> bool:
    return room.startswith("#")


def normalize_target(target: str) -> str:
    """The canonical ``matrix:!id:server`` or ``matrix:#alias:server``; ValueError otherwise."""
    return f"{SCHEME}:{matrix_room(target)}"
