"""Element Call's raised hands and reactions (MatrixRTC), as element-hq/element-call sends them.

- A raised hand is an ``m.reaction`` annotation with key "🖐️" (U+1F590 U+FE0F) that relates to
  the member's own call membership event (``org.matrix.msc3401.call.member``); it is lowered by
  redacting that reaction, and it ends with the membership (a new membership event has no hand).
- A reaction is an ``io.element.call.reaction`` event referencing the member's membership event:
  ``{"m.relates_to": {"rel_type": "m.reference", "event_id": ...}, "emoji": ..., "name": ...}``.
  Element Call shows any emoji and knows some by name (its sound). A reaction crosses to this room
  when it is one of ours (spec 8.18), by its emoji or by the name of Element Call's nearest one
  ("heart", "laugh"); ours all cross to Element Call, named when Element Call has the same emoji.
- A hand raised before we looked (the link entering the room, a restart of ours) is read back
  from the relations API: the annotations "🖐️" of each active membership event (`hands_in`).
  Element Call's client (matrix-js-sdk) sends ``m.reaction`` in clear even in an encrypted room
  (the relation is clear anyway, and reactions are aggregated by the server), so this holds in
  an encrypted room too. A hand some other client sent encrypted (``m.room.encrypted``) is not
  read back: only ``m.reaction`` events are asked for, and the room keys of messages sent before
  the link entered are not the bridge's to have.

(element-call: src/reactions/index.ts, ReactionsReader.ts, useReactionsSender.tsx.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.rooms import REACTIONS

__all__ = [
    "CALL_REACTION",
    "HAND_KEY",
    "REACTION",
    "call_reaction_content",
    "hand_content",
    "hand_target",
    "hands_in",
    "reaction_of",
    "reaction_target",
    "sent_at",
]

REACTION = "m.reaction"
CALL_REACTION = "io.element.call.reaction"
HAND_KEY = "🖐️"
MAX_EMOJI = 16
"""Characters of an emoji worth reading (the longest of ours is 2)."""

_NAMES = {"👍": "thumbsup", "🎉": "party", "👏": "clapping"}
"""Our reactions that Element Call has too, by its name (the others go as ``generic``)."""
_BY_NAME = {"heart": "❤️", "laugh": "😂"}
"""Element Call's reactions shown here as our nearest one."""
_SPELLINGS = {"❤": "❤️"}


def _relation(content: Mapping[str, Any], rel_type: str) -> Mapping[str, Any] | None:
    relation = content.get("m.relates_to")
    if not isinstance(relation, dict) or relation.get("rel_type") != rel_type:
        return None
    if not isinstance(relation.get("event_id"), str):
        return None
    return relation


def hand_target(content: Mapping[str, Any]) -> str | None:
    """The membership event id a raised hand (an ``m.reaction``) relates to, None if it is not
    a raised hand."""
    relation = _relation(content, "m.annotation")
    if relation is None or relation.get("key") != HAND_KEY:
        return None
    return str(relation["event_id"])


def hands_in(events: list[Any], membership_event_id: str) -> list[dict[str, Any]]:
    """The raised hands on MEMBERSHIP_EVENT_ID among a page of its relations (EVENTS, as the
    homeserver answered: anything else, redacted or malformed is left out), oldest first. Who
    may raise that hand (its membership's holder) is the caller's to check."""
    hands = [
        event
        for event in events
        if isinstance(event, dict)
        and event.get("type") == REACTION
        and isinstance(event.get("event_id"), str)
        and isinstance(event.get("sender"), str)
        and isinstance(event.get("content"), dict)
        and hand_target(event["content"]) == membership_event_id
        and not _redacted(event)
    ]
    return sorted(hands, key=_sent_at)


def sent_at(event: Mapping[str, Any]) -> float | None:
    """When the homeserver received EVENT (``origin_server_ts``), in seconds; None when it
    does not say."""
    sent = event.get("origin_server_ts")
    if isinstance(sent, int) and not isinstance(sent, bool) and sent > 0:
        return sent / 1000
    return None


def _sent_at(event: Mapping[str, Any]) -> float:
    return sent_at(event) or 0.0


def _redacted(event: Mapping[str, Any]) -> bool:
    unsigned = event.get("unsigned")
    return isinstance(unsigned, dict) and "redacted_because" in unsigned


def reaction_target(content: Mapping[str, Any]) -> str | None:
    """The membership event id an ``io.element.call.reaction`` references."""
    relation = _relation(content, "m.reference")
    return None if relation is None else str(relation["event_id"])


def reaction_of(content: Mapping[str, Any]) -> str | None:
    """Our reaction (spec 8.18) an ``io.element.call.reaction`` shows, None when we have none."""
    emoji = content.get("emoji")
    if isinstance(emoji, str) and len(emoji) <= MAX_EMOJI:
        emoji = emoji.strip()
        emoji = _SPELLINGS.get(emoji, emoji)
        if emoji in REACTIONS:
            return emoji
    name = content.get("name")
    return _BY_NAME.get(name) if isinstance(name, str) else None


def hand_content(membership_event_id: str) -> dict[str, Any]:
    """The ``m.reaction`` raising a member's hand."""
    return {
        "m.relates_to": {
            "rel_type": "m.annotation",
            "event_id": membership_event_id,
            "key": HAND_KEY,
        }
    }


def call_reaction_content(membership_event_id: str, emoji: str) -> dict[str, Any]:
    """The ``io.element.call.reaction`` showing EMOJI (one of ours) from a member."""
    return {
        "m.relates_to": {"rel_type": "m.reference", "event_id": membership_event_id},
        "emoji": emoji,
        "name": _NAMES.get(emoji, "generic"),
    }
