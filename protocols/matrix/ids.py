"""Matrix user ids of the bot and the ghosts, and LiveKit identities of Matrix devices.

Ghost localparts map participant ids (mixed case, ``p_AbC-12_xyz``) to the characters a Matrix
localpart allows with the spec's recommended mapping ("Mapping from other character sets",
appendices of the Matrix specification): ``_`` -> ``__``, ``A``-``Z`` -> ``_`` + lowercase, any
other character outside ``[a-z0-9.=-/]`` -> ``=`` + two lowercase hex digits of its UTF-8 bytes.
It is reversible.
"""

from __future__ import annotations

import re

GHOST_DEVICE = "RONDPOINT"
"""The device id every ghost uses (its MatrixRTC membership, its LiveKit identity)."""

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.=-/")
_ESCAPED = re.compile(r"__|_[a-z]|=[0-9a-f]{2}|[a-z0-9.\-/]")
_USER_ID = re.compile(r"@[^:\s]+:[^\s]+")
TEL_PREFIX = "tel_"
ROOM_PREFIX = "room_"


def escape(text: str) -> str:
    """``text`` as localpart characters (reversible with ``unescape``)."""
    out: list[str] = []
    for char in text:
        if char == "_":
            out.append("__")
        elif "A" <= char <= "Z":
            out.append("_" + char.lower())
        elif char in _PLAIN and char != "=":
            out.append(char)
        else:
            out.extend(f"={byte:02x}" for byte in char.encode())
    return "".join(out)


def unescape(localpart: str) -> str:
    """The text ``escape`` made ``localpart`` from; ValueError when it cannot have made it."""
    data = bytearray()
    position = 0
    while position < len(localpart):
        match = _ESCAPED.match(localpart, position)
        if match is None:
            raise ValueError(f"not an escaped localpart: {localpart[:80]!r}")
        token = match.group()
        if token == "__":
            data += b"_"
        elif token.startswith("_"):
            data += token[1].upper().encode()
        elif token.startswith("="):
            data.append(int(token[1:], 16))
        else:
            data += token.encode()
        position = match.end()
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"not an escaped localpart: {localpart[:80]!r}") from None


def bot_user_id(sender_localpart: str, server_name: str) -> str:
    return f"@{sender_localpart}:{server_name}"


def ghost_user_id(user_prefix: str, participant_id: str, server_name: str) -> str:
    """The ghost Matrix user of a participant here."""
    return f"@{user_prefix}{escape(participant_id)}:{server_name}"


def tel_ghost_user_id(user_prefix: str, e164: str, server_name: str) -> str:
    """The ghost a legacy 1:1 call dials a phone through: ``@{prefix}tel_+33612345678``."""
    return f"@{user_prefix}{TEL_PREFIX}{e164}:{server_name}"


def room_ghost_user_id(user_prefix: str, room_id: str, server_name: str) -> str:
    """The ghost a legacy 1:1 call enters a room here through: ``@{prefix}room_{ROOM}``."""
    return f"@{user_prefix}{ROOM_PREFIX}{escape(room_id)}:{server_name}"


def split_user_id(user_id: str) -> tuple[str, str] | None:
    """(localpart, server name) of ``@localpart:server``; None for anything else."""
    if not _USER_ID.fullmatch(user_id):
        return None
    localpart, _, server = user_id[1:].partition(":")
    return localpart, server


def is_ours(user_id: str, *, sender_localpart: str, user_prefix: str, server_name: str) -> bool:
    """Whether ``user_id`` is the bot or one of the ghosts (never brought back: loop cut)."""
    parts = split_user_id(user_id)
    if parts is None or parts[1] != server_name:
        return False
    localpart = parts[0]
    return localpart == sender_localpart or localpart.startswith(user_prefix)


def ghost_participant_id(user_id: str, *, user_prefix: str, server_name: str) -> str | None:
    """The participant id here whose ghost ``user_id`` is; None for any other user."""
    parts = split_user_id(user_id)
    if parts is None or parts[1] != server_name or not parts[0].startswith(user_prefix):
        return None
    try:
        return unescape(parts[0][len(user_prefix) :])
    except ValueError:
        return None


def livekit_identity(user_id: str, device_id: str) -> str:
    """Element Call's LiveKit identity of a Matrix device: ``{user_id}:{device_id}``."""
    return f"{user_id}:{device_id}"


def split_identity(identity: str) -> tuple[str, str] | None:
    """(user id, device id) of a LiveKit identity ``@user:server:DEVICE``; None otherwise."""
    user_id, colon, device_id = identity.rpartition(":")
    if not colon or not device_id or split_user_id(user_id) is None:
        return None
    return user_id, device_id
