"""Visio's raised hands and reactions, as suitenumerique/meet carries them in LiveKit.

- A raised hand is the participant attribute ``handRaisedAt``: an ISO 8601 time while the hand
  is up, empty or absent while it is down (Visio's backend sets it, ``toggle-hand``).
- A reaction is a reliable data packet (a LiveKit ``UserPacket`` without topic) whose payload is
  the JSON ``{"type": "reactionReceived", "data": {"emoji": NAME}}``, NAME one of Visio's eight
  reaction names. Seven of them are reactions here too (spec 8.18); Visio's thumbs-down and our
  thinking face have no counterpart and do not cross.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from livekit.protocol import models

from gateway.rooms import REACTIONS

__all__ = [
    "HAND_ATTRIBUTE",
    "REACTION_NAMES",
    "hand_attribute",
    "hand_raised_at",
    "reaction_from_packet",
    "reaction_packet",
]

HAND_ATTRIBUTE = "handRaisedAt"
REACTION_TYPE = "reactionReceived"
MAX_PAYLOAD = 1024
"""A reaction's payload is a few dozen bytes: anything longer is not one."""

REACTION_NAMES: dict[str, str] = {
    "👍": "thumbs-up",
    "👏": "clapping-hands",
    "😂": "face-with-tears-of-joy",
    "❤️": "red-heart",
    "🎉": "party-popper",
    "😮": "face-with-open-mouth",
    "🙏": "folded-hands",
}
"""Our reaction -> Visio's name of it (meet: src/frontend/src/features/reactions/types.ts)."""
_EMOJI_OF = {name: emoji for emoji, name in REACTION_NAMES.items()}
assert set(REACTION_NAMES) <= set(REACTIONS)


def hand_raised_at(attributes: dict[str, str]) -> float | None:
    """When a Visio participant raised its hand (seconds since the epoch), None when it is down.
    A value that is not an ISO 8601 time still means a raised hand (Visio shows it): raised now."""
    value = attributes.get(HAND_ATTRIBUTE, "").strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return time.time()
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def hand_attribute(raised_at: float | None) -> str:
    """The ``handRaisedAt`` value of a hand raised at RAISED_AT (seconds), "" when it is down."""
    if raised_at is None:
        return ""
    return datetime.fromtimestamp(raised_at, UTC).isoformat().replace("+00:00", "Z")


def reaction_from_packet(packet: models.DataPacket) -> str | None:
    """Our reaction carried by a Visio data packet, None when it is not one we know."""
    if packet.WhichOneof("value") != "user" or packet.user.topic:
        return None
    payload = packet.user.payload
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or message.get("type") != REACTION_TYPE:
        return None
    data = message.get("data")
    name = data.get("emoji") if isinstance(data, dict) else None
    return _EMOJI_OF.get(name) if isinstance(name, str) else None


def reaction_packet(emoji: str, sender_identity: str) -> models.DataPacket | None:
    """The data packet Visio shows as EMOJI from SENDER_IDENTITY, None when Visio has no such
    reaction."""
    name = REACTION_NAMES.get(emoji)
    if name is None:
        return None
    payload = json.dumps({"type": REACTION_TYPE, "data": {"emoji": name}}).encode()
    return models.DataPacket(
        kind=models.DataPacket.RELIABLE,
        participant_identity=sender_identity,
        user=models.UserPacket(payload=payload),
    )
