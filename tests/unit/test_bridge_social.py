"""How the bridges read and write raised hands and reactions (protocols/visio/social.py,
protocols/matrix/social.py): what the other system sends, well formed or not, and what we send."""

from __future__ import annotations

import json
from typing import Any

import pytest
from livekit.protocol import models

from gateway.rooms import REACTIONS
from protocols.matrix import social as matrix
from protocols.visio import social as visio


def visio_packet(payload: bytes, topic: str = "") -> models.DataPacket:
    return models.DataPacket(user=models.UserPacket(payload=payload, topic=topic))


def reaction(name: object) -> bytes:
    return json.dumps({"type": "reactionReceived", "data": {"emoji": name}}).encode()


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (visio_packet(reaction("clapping-hands")), "👏"),
        (visio_packet(reaction("red-heart")), "❤️"),
        (visio_packet(reaction("thumbs-down")), None),  # Visio's only
        (visio_packet(reaction("👏")), None),  # a name, not an emoji
        (visio_packet(reaction(["thumbs-up"])), None),
        (visio_packet(reaction("thumbs-up"), topic="lk.chat"), None),
        (visio_packet(b'{"type": "participantMuted"}'), None),
        (visio_packet(b"not json \xff"), None),
        (visio_packet(b"[1, 2]"), None),
        (visio_packet(reaction("thumbs-up") + b" " * 2000), None),  # too long to be one
        (models.DataPacket(chat_message=models.ChatMessage(message="thumbs-up")), None),
    ],
)
def test_visio_reactions_in(packet: models.DataPacket, expected: str | None) -> None:
    assert visio.reaction_from_packet(packet) == expected


def test_visio_reactions_out_round_trip_and_thinking_stays_here() -> None:
    for emoji in REACTIONS:
        packet = visio.reaction_packet(emoji, "rondpoint-p1")
        if emoji == "🤔":
            assert packet is None
            continue
        assert packet is not None and packet.participant_identity == "rondpoint-p1"
        assert json.loads(packet.user.payload)["type"] == "reactionReceived"
        assert visio.reaction_from_packet(packet) == emoji


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-04T09:30:15.250000+00:00", 1796376615.25),
        ("2026-12-04T09:30:15.250Z", 1796376615.25),
        ("2026-12-04T10:30:15.250+01:00", 1796376615.25),
        ("", None),
        ("   ", None),
    ],
)
def test_visio_hand_attribute_in(value: str, expected: float | None) -> None:
    assert visio.hand_raised_at({"handRaisedAt": value}) == expected


def test_visio_hand_attribute_out_and_back() -> None:
    assert visio.hand_raised_at({}) is None
    assert visio.hand_raised_at({"handRaisedAt": "yes"}) is not None  # Visio shows a hand
    assert visio.hand_attribute(None) == ""
    text = visio.hand_attribute(1796376615.25)
    assert text.endswith("Z") and visio.hand_raised_at({"handRaisedAt": text}) == 1796376615.25


def annotation(rel_type: str, key: str, event_id: object = "$m") -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": rel_type, "event_id": event_id, "key": key}}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (matrix.hand_content("$m"), "$m"),
        (annotation("m.annotation", "🖐️"), "$m"),
        (annotation("m.annotation", "🖐"), None),  # without the variation selector
        (annotation("m.annotation", "👍"), None),
        (annotation("m.reference", "🖐️"), None),
        (annotation("m.annotation", "🖐️", event_id=5), None),
        ({"m.relates_to": "$m"}, None),
        ({}, None),
    ],
)
def test_element_call_hands_in(content: dict[str, Any], expected: str | None) -> None:
    assert matrix.hand_target(content) == expected


@pytest.mark.parametrize(
    ("emoji", "name", "expected"),
    [
        ("👏", "clapping", "👏"),
        ("❤", "generic", "❤️"),
        ("🥰", "heart", "❤️"),
        ("😄", "laugh", "😂"),
        ("🐶", "dog", None),
        ("🐶", "clapping", None),  # a name only counts for heart and laugh
        (" 🎉 ", "party", "🎉"),
        ("👏" * 20, "generic", None),
        (7, "thumbsup", None),
        ("<b>👍</b>", "generic", None),
    ],
)
def test_element_call_reactions_in(emoji: object, name: str, expected: str | None) -> None:
    content = {"m.relates_to": {"rel_type": "m.reference", "event_id": "$m"}}
    assert matrix.reaction_of({**content, "emoji": emoji, "name": name}) == expected


def test_element_call_reactions_out() -> None:
    for emoji in REACTIONS:
        content = matrix.call_reaction_content("$m", emoji)
        assert matrix.reaction_target(content) == "$m"
        assert matrix.reaction_of(content) == emoji
    assert matrix.call_reaction_content("$m", "👍")["name"] == "thumbsup"
    assert matrix.call_reaction_content("$m", "🙏")["name"] == "generic"
    assert matrix.reaction_target(annotation("m.annotation", "👍")) is None


def test_element_call_hands_read_back_from_a_relations_page() -> None:
    def hand(event_id: str, ts: object, **more: Any) -> dict[str, Any]:
        return {
            "type": "m.reaction",
            "event_id": event_id,
            "sender": "@anna:hs.test",
            "origin_server_ts": ts,
            "content": matrix.hand_content("$m"),
            **more,
        }

    later, earlier = hand("$later", 2_000), hand("$earlier", 1_000)
    page: list[Any] = [
        later,
        earlier,
        hand("$other", 500, content=matrix.hand_content("$another_membership")),
        hand("$thumb", 500, content=annotation("m.annotation", "👍")),
        hand("$typed", 500, type="io.element.call.reaction"),
        hand("$gone", 500, unsigned={"redacted_because": {}}),
        hand("$emptied", 500, content={}),  # redacted: no relation left
        {**earlier, "event_id": 7},
        {**earlier, "sender": None},
        {**earlier, "content": "🖐️"},
        "junk",
        None,
    ]
    assert matrix.hands_in(page, "$m") == [earlier, later]
    assert matrix.hands_in([], "$m") == []
    assert matrix.sent_at(earlier) == 1.0
    for ts in (None, "1000", True, 0, -5, 1.5e3):
        assert matrix.sent_at(hand("$x", ts)) is None
