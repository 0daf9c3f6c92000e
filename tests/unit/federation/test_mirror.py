"""Mirror: a partner's participants in a room here (reconciled, never duplicated, fresh ids), and
the room's home participants as events for the partner (never a federation: one)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.federation import schemas
from gateway.federation.mirror import Mirror
from gateway.ors.problems import Problem
from gateway.rooms import (
    EventBus,
    Role,
    RoomEvent,
    RoomManager,
    Subscription,
    Track,
    TrackKind,
    TrackSource,
)
from gateway.store import Store


@pytest.fixture
def rooms() -> RoomManager:
    manager = RoomManager(Store(":memory:"), EventBus(), "fr.test", max_participants=10)
    manager.create("salon")
    return manager


@pytest.fixture
def events(rooms: RoomManager) -> Subscription:
    return rooms.bus.subscribe("salon")


def drain(sub: Subscription) -> list[RoomEvent]:
    found = []
    while not sub.queue.empty():
        found.append(sub.get_nowait())
    return found


def person(pid: str, name: str = "Anna", tracks: list[dict[str, Any]] | None = None) -> dict:
    return {
        "id": pid,
        "name": name,
        "origin": "sip",
        "origin_address": "Phone •••12",
        "role": "host",
        "state": "joined",
        "joined_at": 0,
        "tracks": tracks or [],
    }


def track(tid: str, muted: bool = False, kind: str = "audio") -> dict[str, Any]:
    source = "microphone" if kind == "audio" else "camera"
    return {
        "id": tid,
        "participant_id": "x",
        "kind": kind,
        "source": source,
        "codec": "opus" if kind == "audio" else "VP8",
        "muted": muted,
        "streams": [{"rid": "", "ssrc": 1000 + len(tid)}],
    }


def check_events(events: Any) -> list[dict[str, Any]]:
    """The events of a transaction, checked as the routes check them."""
    schemas.check("transaction", {"link_id": "l_0123456789abcdef", "events": events})
    return list(events)


def mirror_of(rooms: RoomManager, **kwargs: Any) -> Mirror:
    return Mirror(rooms, "salon", "de.test", max_participants=kwargs.pop("max_participants", 10))


def federated(rooms: RoomManager) -> list:
    return [p for p in rooms.get("salon").participants.values() if p.origin == "federation:de.test"]


def test_state_twice_brings_each_person_once_with_fresh_ids(rooms: RoomManager) -> None:
    mirror = mirror_of(rooms)
    state = {"type": "state", "participants": [person("PA_1", tracks=[track("TR_1")])]}
    mirror.apply(check_events([state]))
    mirror.apply(check_events([state]))
    (anna,) = federated(rooms)
    assert anna.name == "Anna"
    assert anna.origin_address == "sip"
    assert anna.role is Role.GUEST
    assert anna.id != "PA_1"
    (local_track,) = anna.tracks.values()
    assert local_track.id != "TR_1"
    assert mirror.remote_track_id(local_track.id) == "TR_1"


def test_state_drops_the_absent_and_upserts_the_present(rooms: RoomManager) -> None:
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "state", "participants": [person("PA_1"), person("PA_2", "Ben")]}])
    mirror.apply([{"type": "state", "participants": [person("PA_2", "Benoît")]}])
    assert [p.name for p in federated(rooms)] == ["Benoît"]
    mirror.apply([{"type": "participant_left", "participant_id": "PA_2", "reason": "left"}])
    assert federated(rooms) == []


def test_names_are_sanitised_by_the_room(rooms: RoomManager) -> None:
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "participant", "participant": person("PA_1", "\u202eEve\x1b[31m ")}])
    mirror.apply([{"type": "participant", "participant": person("PA_2", "\u200b")}])
    assert sorted(p.name for p in federated(rooms)) == ["Eve[31m", "Guest"]


def test_tracks_follow_the_partner_and_are_bounded(rooms: RoomManager) -> None:
    mirror = mirror_of(rooms)
    many = [track(f"TR_{i}") for i in range(16)]
    mirror.apply(
        check_events([{"type": "participant", "participant": person("PA_1", tracks=many)}])
    )
    assert len(federated(rooms)[0].tracks) == 16
    with pytest.raises(Problem) as refused:
        check_events(
            [{"type": "participant", "participant": person("PA_1", tracks=[*many, track("x")])}]
        )
    assert refused.value.field == "/events/0/participant/tracks"
    mirror.apply([{"type": "participant", "participant": person("PA_1", tracks=[track("TR_3")])}])
    (only,) = federated(rooms)[0].tracks.values()
    assert mirror.remote_track_id(only.id) == "TR_3"


def test_a_link_brings_at_most_max_participants(rooms: RoomManager) -> None:
    mirror = Mirror(rooms, "salon", "de.test", max_participants=2)
    mirror.apply([{"type": "state", "participants": [person(f"PA_{i}") for i in range(5)]}])
    assert len(federated(rooms)) == 2


def test_one_bad_event_refuses_the_whole_transaction(rooms: RoomManager) -> None:
    good = {"type": "participant", "participant": person("PA_1")}
    bad = {"type": "participant", "participant": {**person("PA_2"), "tracks": [{"id": "t"}]}}
    with pytest.raises(Problem) as refused:
        check_events([good, good, good, bad])
    assert refused.value.code == "invalid_message"
    assert (refused.value.field or "").startswith("/events/3/participant/tracks/0/")
    assert federated(rooms) == []
    for body in ("x", [{"type": "state"}], [{}], [good] * 101):
        with pytest.raises(Problem):
            check_events(body)


def test_chat_is_deduplicated_by_message_id(rooms: RoomManager, events: Subscription) -> None:
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "participant", "participant": person("PA_1")}])
    chat = {"type": "chat", "message": {"id": "CH_1", "from": "PA_1", "text": "hallo", "ts": 1}}
    drain(events)
    mirror.apply([chat, chat])
    mirror.apply([chat])
    said = [e for e in drain(events) if type(e).__name__ == "ChatMessage"]
    assert [e.text for e in said] == ["hallo"]  # type: ignore[attr-defined]
    assert said[0].sender.origin == "federation:de.test"  # type: ignore[attr-defined]


def test_partner_chat_goes_through_the_room_rate_limit(rooms: RoomManager) -> None:
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "participant", "participant": person("PA_1")}])
    sub = rooms.bus.subscribe("salon")
    flood = [
        {"type": "chat", "message": {"id": f"CH_{i}", "from": "PA_1", "text": "spam", "ts": 1}}
        for i in range(100)
    ]
    mirror.apply(flood)
    assert len([e for e in drain(sub) if type(e).__name__ == "ChatMessage"]) < 100


def test_only_home_participants_leave_in_events(rooms: RoomManager, events: Subscription) -> None:
    """Triangle: de's participant, here as federation:de.test, is never told to anyone."""
    room = rooms.get("salon")
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "participant", "participant": person("PA_DE")}])
    other = Mirror(rooms, "salon", "be.test", max_participants=10)
    home = rooms.add_participant(room, "Marie", Role.HOST, origin="ors")
    rooms.publish_track(
        room, Track("TR_M", home.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus")
    )
    rooms.chat(room, federated(rooms)[0].id, "from de")
    rooms.chat(room, home.id, "from fr")
    sent = [e for event in drain(events) for e in other.outbound(event)]
    state = other.state_event()
    assert [p["name"] for p in state["participants"]] == ["Marie"]
    everyone = str(sent)
    assert "federation:" not in everyone and "from de" not in everyone
    assert "from fr" in everyone and "TR_M" in everyone


def test_a_host_removal_here_is_sent_and_the_person_ignored(
    rooms: RoomManager, events: Subscription
) -> None:
    room = rooms.get("salon")
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "participant", "participant": person("PA_1", tracks=[track("T")])}])
    drain(events)
    rooms.remove_participant(room, federated(rooms)[0].id, "removed")
    sent = [e for event in drain(events) for e in mirror.outbound(event)]
    assert sent == [{"type": "removed", "participant_id": "PA_1"}]
    mirror.apply([{"type": "state", "participants": [person("PA_1")]}])
    mirror.apply([{"type": "participant", "participant": person("PA_1")}])
    assert federated(rooms) == []


def test_a_host_mute_here_is_sent_once(rooms: RoomManager, events: Subscription) -> None:
    room = rooms.get("salon")
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "participant", "participant": person("PA_1", tracks=[track("T1")])}])
    (ours,) = federated(rooms)[0].tracks.values()
    drain(events)
    rooms.set_muted(room, ours.owner, ours.id, True)
    sent = [e for event in drain(events) for e in mirror.outbound(event)]
    assert sent == [{"type": "mute", "participant_id": "PA_1", "track_id": "T1"}]
    # the partner's own upsert saying so, and its later unmute, send nothing back
    muted = person("PA_1", tracks=[track("T1", muted=True)])
    mirror.apply([{"type": "participant", "participant": muted}])
    mirror.apply([{"type": "participant", "participant": person("PA_1", tracks=[track("T1")])}])
    mirror.apply([{"type": "participant", "participant": muted}])
    assert [e for event in drain(events) for e in mirror.outbound(event)] == []
    assert ours.muted is True


def test_a_partner_mute_mutes_our_home_track_only(rooms: RoomManager) -> None:
    room = rooms.get("salon")
    mirror = mirror_of(rooms)
    home = rooms.add_participant(room, "Marie", Role.MEMBER)
    mic = Track("TR_M", home.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus")
    rooms.publish_track(room, mic)
    mirror.apply([{"type": "participant", "participant": person("PA_1", tracks=[track("T1")])}])
    (theirs,) = federated(rooms)[0].tracks.values()
    mirror.apply(
        [
            {"type": "mute", "participant_id": home.id, "track_id": "TR_M"},
            {"type": "mute", "participant_id": theirs.owner, "track_id": theirs.id},
            {"type": "removed", "participant_id": home.id},
        ]
    )
    assert mic.muted is True
    assert theirs.muted is False
    assert home.id in room.participants


def test_clear_removes_everyone_the_link_brought(rooms: RoomManager) -> None:
    mirror = mirror_of(rooms)
    mirror.apply([{"type": "state", "participants": [person("PA_1"), person("PA_2")]}])
    mirror.clear()
    assert federated(rooms) == [] and len(mirror) == 0


class FakeMedia:
    """Streams for opus tracks only (the relay link carries no VP9), as RelayLink says."""

    def __init__(self, rooms: RoomManager) -> None:
        self.rooms = rooms
        self.demand: dict[str, list[str]] = {}

    def add_remote_track(self, track: Track, streams: Any) -> None:
        return None

    def remove_remote_track(self, track_id: str) -> None:
        return None

    def local_streams(self, track_id: str) -> list[dict[str, Any]]:
        track = next(t for t in self.rooms.get("salon").tracks() if t.id == track_id)
        return [{"rid": "", "ssrc": 4242}] if track.codec.lower() == "opus" else []

    def set_demand(self, demand: Any) -> None:
        self.demand = dict(demand)


def test_what_leaves_conforms_to_the_published_schemas(
    rooms: RoomManager, events: Subscription
) -> None:
    room = rooms.get("salon")
    media = FakeMedia(rooms)
    mirror = Mirror(rooms, "salon", "de.test", max_participants=10, media=media)
    mirror.apply(
        check_events([{"type": "participant", "participant": person("PA_1", tracks=[track("T1")])}])
    )
    marie = rooms.add_participant(room, "Marie", Role.HOST)
    rooms.publish_track(
        room, Track("TR_A", marie.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "OPUS")
    )
    rooms.publish_track(room, Track("TR_V", marie.id, TrackKind.VIDEO, TrackSource.CAMERA, "VP9"))
    sent = [e for event in drain(events) for e in mirror.outbound(event)]
    rooms.chat(room, marie.id, "bonjour")
    (theirs,) = federated(rooms)[0].tracks.values()
    rooms.set_muted(room, theirs.owner, theirs.id, True)
    sent += [e for event in drain(events) for e in mirror.outbound(event)]
    sent += [mirror.state_event()]
    rooms.remove_participant(room, theirs.owner, "removed")
    rooms.remove_participant(room, marie.id)
    sent += [e for event in drain(events) for e in mirror.outbound(event)]
    sent += [mirror.demand_event({})]
    assert {e["type"] for e in sent} == {
        "participant",
        "chat",
        "mute",
        "removed",
        "participant_left",
        "state",
        "demand",
    }
    announced = [e for e in sent if e["type"] == "participant"][-1]["participant"]
    assert [(t["id"], t["codec"]) for t in announced["tracks"]] == [("TR_A", "opus")]
    check_events(sent)


def test_a_partner_demand_reaches_our_home_tracks_only(rooms: RoomManager) -> None:
    room = rooms.get("salon")
    media = FakeMedia(rooms)
    mirror = Mirror(rooms, "salon", "de.test", max_participants=10, media=media)
    mirror.apply([{"type": "participant", "participant": person("PA_1", tracks=[track("T1")])}])
    marie = rooms.add_participant(room, "Marie", Role.HOST)
    rooms.publish_track(
        room, Track("TR_A", marie.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus")
    )
    (theirs,) = federated(rooms)[0].tracks.values()
    demand = [{"track_id": "TR_A", "rids": [""]}, {"track_id": theirs.id, "rids": [""]}]
    mirror.apply(check_events([{"type": "demand", "tracks": demand}]))
    assert media.demand == {"TR_A": [""]}
    asked = mirror.demand_event({theirs.id: ["h"]})
    assert asked == {"type": "demand", "tracks": [{"track_id": "T1", "rids": ["h"]}]}


def test_reasons_outside_the_federation_ones_leave_as_left(
    rooms: RoomManager, events: Subscription
) -> None:
    room = rooms.get("salon")
    mirror = mirror_of(rooms)
    ann = rooms.add_participant(room, "Ann", Role.MEMBER)
    bob = rooms.add_participant(room, "Bob", Role.MEMBER)
    rooms.remove_participant(room, ann.id, "denied")
    rooms.remove_participant(room, bob.id, "disconnected")
    sent = [e for event in drain(events) for e in mirror.outbound(event)]
    left = [(e["participant_id"], e["reason"]) for e in sent if e["type"] == "participant_left"]
    assert left == [(ann.id, "left"), (bob.id, "disconnected")]
    check_events(sent)


def test_a_partners_raised_hand_crosses_with_its_time_and_goes_down_again(
    rooms: RoomManager, events: Subscription
) -> None:
    mirror = mirror_of(rooms)
    room = rooms.get("salon")
    raised = {**person("their-1"), "hand_raised_at": 1_767_226_830_000}
    mirror.apply(check_events([{"type": "participant", "participant": raised}]))
    here = room.participants[str(mirror.local_id("their-1"))]
    assert here.to_wire()["hand_raised_at"] == 1_767_226_830_000
    # an older partner that never sends the member, or sends null: the hand is down
    mirror.apply(check_events([{"type": "participant", "participant": person("their-1")}]))
    assert here.hand_raised_at is None
    mirror.apply(check_events([{"type": "participant", "participant": raised}]))
    mirror.apply(
        check_events([{"type": "participant", "participant": {**raised, "hand_raised_at": None}}])
    )
    assert here.hand_raised_at is None
    assert (
        sum(type(e).__name__ == "ParticipantUpdated" for e in drain(events)) == 4
    )  # up, down, up, down


def test_a_home_participants_hand_goes_to_the_partner(rooms: RoomManager) -> None:
    mirror = mirror_of(rooms)
    room = rooms.get("salon")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    sub = rooms.bus.subscribe("salon")
    rooms.set_hand(room, alice.id, True, at=1_767_226_830.0)
    [event] = drain(sub)
    [out] = check_events(mirror.outbound(event))
    assert out["participant"]["hand_raised_at"] == 1_767_226_830_000


def test_a_host_here_lowering_a_partners_hand_asks_its_home_once(rooms: RoomManager) -> None:
    """14.7: a host's lowering goes to the home as ``lower_hand`` (its id), once; the home's own
    lowering sends nothing back; the home raising it again is shown, and can be lowered again."""
    mirror = mirror_of(rooms)
    room = rooms.get("salon")
    raised = {**person("their-1"), "hand_raised_at": 1_767_226_830_000}
    mirror.apply(check_events([{"type": "participant", "participant": raised}]))
    here = str(mirror.local_id("their-1"))
    sub = rooms.bus.subscribe("salon")

    def sent() -> list[dict[str, Any]]:
        return check_events([e for event in drain(sub) for e in mirror.outbound(event)])

    rooms.set_hand(room, here, False)  # a host here
    assert sent() == [{"type": "lower_hand", "participant_id": "their-1"}]
    rooms.set_hand(room, here, False)  # already down: nothing
    assert sent() == []
    # the home says so (its next upsert): nothing goes back
    mirror.apply(check_events([{"type": "participant", "participant": person("their-1")}]))
    assert sent() == []
    # raised again at home, lowered by the home: nothing goes back either
    mirror.apply(check_events([{"type": "participant", "participant": raised}]))
    assert room.participants[here].hand_raised_at == 1_767_226_830.0
    mirror.apply(check_events([{"type": "participant", "participant": person("their-1")}]))
    assert sent() == []
    # a home that ignores lower_hand raises it here again with its next upsert: the home keeps it
    mirror.apply(check_events([{"type": "participant", "participant": raised}]))
    rooms.set_hand(room, here, False)
    assert [e["type"] for e in sent()] == ["lower_hand"]
    mirror.apply(check_events([{"type": "participant", "participant": raised}]))
    assert room.participants[here].hand_raised_at is not None


def test_a_partners_lower_hand_lowers_a_home_participants_hand_and_nothing_else(
    rooms: RoomManager,
) -> None:
    mirror = mirror_of(rooms)
    room = rooms.get("salon")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    rooms.set_hand(room, alice.id, True)
    raised = {**person("their-1"), "hand_raised_at": 1_767_226_830_000}
    mirror.apply(check_events([{"type": "participant", "participant": raised}]))
    theirs = str(mirror.local_id("their-1"))
    sub = rooms.bus.subscribe("salon")
    mirror.apply(
        check_events(
            [
                {"type": "lower_hand", "participant_id": theirs},  # the partner's own: not home
                {"type": "lower_hand", "participant_id": "p_nobody_here"},
                {"type": "lower_hand", "participant_id": alice.id},
                {"type": "lower_hand", "participant_id": alice.id},  # already down
            ]
        )
    )
    assert alice.hand_raised_at is None
    assert room.participants[theirs].hand_raised_at is not None
    updates = [e for e in drain(sub) if type(e).__name__ == "ParticipantUpdated"]
    assert [e.participant.id for e in updates] == [alice.id]
    [out] = check_events([e for event in updates for e in mirror.outbound(event)])
    assert out["participant"]["hand_raised_at"] is None  # the partners see it down


def test_a_kept_home_participant_stays_with_the_partner_and_the_partner_keeps_nobody_here(
    rooms: RoomManager,
) -> None:
    """A home participant kept for a resume (ORS 6.6) stays in `state`, `reconnecting`; a
    partner's `reconnecting` is informative and is not kept here (no bound of ours is used)."""
    mirror = mirror_of(rooms)
    room = rooms.get("salon")
    alice = rooms.add_participant(room, "Alice", Role.MEMBER)
    sub = rooms.bus.subscribe("salon")
    assert rooms.set_reconnecting(room, alice.id, True)
    [out] = check_events(mirror.outbound(drain(sub)[0]))
    assert out["participant"]["reconnecting"] is True
    [state] = check_events([mirror.state_event()])
    assert [p["id"] for p in state["participants"]] == [alice.id]

    theirs = {**person("their-1"), "reconnecting": True}
    mirror.apply(check_events([{"type": "participant", "participant": theirs}]))
    here = room.participants[str(mirror.local_id("their-1"))]
    assert not here.reconnecting and rooms.reconnecting_count() == 1


# reactions (ORS 8.18, federation event `reaction` of 14.5) ------------------------------------


def reactions_in(sub: Subscription) -> list[tuple[str, str]]:
    return [
        (e.participant_id, e.emoji)  # type: ignore[attr-defined]
        for e in drain(sub)
        if type(e).__name__ == "Reaction"
    ]


def test_a_partners_reaction_is_shown_for_its_mirrored_participant(
    rooms: RoomManager, events: Subscription
) -> None:
    mirror = mirror_of(rooms)
    mirror.apply(check_events([{"type": "participant", "participant": person("PA_1")}]))
    drain(events)
    reaction = {"type": "reaction", "participant_id": "PA_1", "emoji": "❤️", "at": 1}
    mirror.apply(check_events([reaction]))
    assert reactions_in(events) == [(mirror.local_id("PA_1"), "❤️")]


def test_a_flood_of_partner_reactions_is_bounded_per_participant_and_never_refused(
    rooms: RoomManager, events: Subscription
) -> None:
    mirror = mirror_of(rooms)
    people_there = [{"type": "participant", "participant": person(f"PA_{i}")} for i in (1, 2)]
    mirror.apply(check_events(people_there))
    drain(events)
    flood = [{"type": "reaction", "participant_id": "PA_1", "emoji": "👏"} for _ in range(30)]
    mirror.apply(check_events(flood))  # the transaction is accepted as a whole
    mirror.apply(check_events([{"type": "reaction", "participant_id": "PA_2", "emoji": "👍"}]))
    shown = reactions_in(events)
    assert shown.count((mirror.local_id("PA_1"), "👏")) == 10  # REACTION_BURST, as for anyone
    assert shown[-1] == (mirror.local_id("PA_2"), "👍")  # another person's limit is their own


def test_a_forged_reaction_changes_nothing(rooms: RoomManager, events: Subscription) -> None:
    room = rooms.get("salon")
    mirror = mirror_of(rooms)
    mirror.apply(check_events([{"type": "participant", "participant": person("PA_1")}]))
    marie = rooms.add_participant(room, "Marie", Role.HOST)
    drain(events)
    # a participant the partner never announced, one of ours named by our id, a removed one
    for forged in ("PA_unknown", marie.id, str(mirror.local_id("PA_1"))):
        mirror.apply(check_events([{"type": "reaction", "participant_id": forged, "emoji": "👍"}]))
    mirror.apply(check_events([{"type": "participant", "participant": person("PA_2")}]))
    rooms.remove_participant(room, str(mirror.local_id("PA_2")), "removed")
    for event in drain(events):
        mirror.outbound(event)
    mirror.apply(check_events([{"type": "reaction", "participant_id": "PA_2", "emoji": "👍"}]))
    assert reactions_in(events) == []
    # an emoji outside the eight (a later version's, or junk) is ignored, never a stalled link
    for emoji in ("💩", "❤", "<img src=x>"):
        mirror.apply(check_events([{"type": "reaction", "participant_id": "PA_1", "emoji": emoji}]))
    # no emoji, an empty or overlong one refuses the whole transaction, the good event before it too
    good = {"type": "reaction", "participant_id": "PA_1", "emoji": "👍"}
    for emoji in ("", "👏" * 33, ["👏"]):
        with pytest.raises(Problem) as refused:
            check_events([good, {"type": "reaction", "participant_id": "PA_1", "emoji": emoji}])
        assert (refused.value.code, refused.value.field) == ("invalid_message", "/events/1/emoji")
    assert reactions_in(events) == []


def test_home_reactions_go_to_the_partner_and_a_partners_are_never_relayed(
    rooms: RoomManager, events: Subscription
) -> None:
    """Triangle: de's participant reacts here; be is told only of our home participant's."""
    room = rooms.get("salon")
    mirror = mirror_of(rooms)
    mirror.apply(check_events([{"type": "participant", "participant": person("PA_DE")}]))
    other = Mirror(rooms, "salon", "be.test", max_participants=10)
    marie = rooms.add_participant(room, "Marie", Role.HOST)
    drain(events)
    mirror.apply(check_events([{"type": "reaction", "participant_id": "PA_DE", "emoji": "🎉"}]))
    rooms.react(room, marie.id, "🙏")
    sent = check_events([e for event in drain(events) for e in other.outbound(event)])
    assert [(e["type"], e["participant_id"], e["emoji"]) for e in sent] == [
        ("reaction", marie.id, "🙏")
    ]
    assert isinstance(sent[0]["at"], int) and sent[0]["at"] > 0
    # nor back to de, where it came from
    rooms.react(room, str(mirror.local_id("PA_DE")), "🎉")
    assert [e for event in drain(events) for e in mirror.outbound(event)] == []
