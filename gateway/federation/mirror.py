"""A partner's participants in a room here, and this room's people as events for the partner.

One ``Mirror`` per federation link. Inbound, it applies a transaction's events, checked as a
whole beforehand (gateway/federation/schemas.py), to the room through the RoomManager: the partner's
participants appear with fresh local ids (a partner's ids never enter our room), origin
``federation:PEER``, ``origin_address`` = their origin there, role guest, names sanitised by the
room; ``state`` reconciles (absent ones leave, present ones are upserted), so replaying it never
duplicates anyone. Outbound, it turns room events into events for the partner, for the home
participants only (origin not ``federation:*``), so nothing echoes around a triangle of gateways.

Three local actions on mirrored people go back to the partner: a host's removal (``removed``;
that remote participant is ignored for the link's life), a host's mute (``mute``) and a host
lowering a hand (``lower_hand``; the home keeps the hand, spec 14.7).

Passing reactions (spec 8.18) cross both ways as ``reaction`` events: a home participant's go to
the partner, and a partner's participant's are shown here through ``RoomManager.react``, so they
count against the same per-participant limit as anyone's (the excess is dropped, never refused).
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.rooms import (
    ChatMessage,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    ParticipantUpdated,
    Reaction,
    Role,
    Room,
    RoomError,
    RoomEvent,
    RoomManager,
    SimulcastLayer,
    Track,
    TrackKind,
    TrackMuted,
    TrackPublished,
    TrackSource,
    TrackUnpublished,
    new_id,
)
from gateway.rooms.names import display_name

log = logging.getLogger(__name__)

FEDERATION_ORIGIN_PREFIX = "federation:"
MAX_TRACKS_PER_PARTICIPANT = 16
MAX_NAME_INPUT = 1024
"""Characters of a partner's display name we look at (the room keeps 64)."""
SEEN_CHAT_IDS = 1_000
FALLBACK_NAME = "Guest"
LEFT_REASONS = ("left", "removed", "disconnected", "room_closed")
"""Why a participant left, as federation events say it (another reason here is "left")."""
_LINK_CODEC_NAMES = {"opus": "opus", "vp8": "VP8", "h264": "H264"}
"""Codec names as the federation events spell them."""


def is_home(participant: Participant) -> bool:
    """Whether the participant is one of this gateway's own (not brought by a federation link)."""
    return not participant.origin.startswith(FEDERATION_ORIGIN_PREFIX)


# --- media, as the link's relay link sees it ---------------------------------------------------


class MediaSide(Protocol):
    """What the mirror asks of the link's media (gateway/media/relay_link.py through link.py)."""

    def add_remote_track(self, track: Track, streams: Sequence[tuple[str, int]]) -> None: ...

    def remove_remote_track(self, track_id: str) -> None: ...

    def local_streams(self, track_id: str) -> list[dict[str, Any]]: ...

    def set_demand(self, demand: Mapping[str, Sequence[str]]) -> None: ...


# --- the mirror -------------------------------------------------------------------------------


@dataclass
class _Remote:
    """A partner's participant, present here."""

    remote_id: str
    local_id: str
    tracks: dict[str, str] = field(default_factory=dict)
    """The partner's track id -> our track id."""
    muted: dict[str, bool] = field(default_factory=dict)
    """Our track id -> muted as the partner last said."""
    hand: bool = False
    """The hand raised, as the partner last said."""


class Mirror:
    """The partner's participants of one link in one room, and this room's events for the partner
    (see the module docstring)."""

    def __init__(
        self,
        rooms: RoomManager,
        room_id: str,
        peer: str,
        *,
        max_participants: int,
        media: MediaSide | None = None,
    ) -> None:
        self.rooms = rooms
        self.room_id = room_id
        self.peer = peer
        self.origin = f"{FEDERATION_ORIGIN_PREFIX}{peer}"
        self.max_participants = max_participants
        self.media = media
        self._remotes: dict[str, _Remote] = {}
        self._by_local: dict[str, str] = {}
        """Our participant id -> the partner's."""
        self._ignored: set[str] = set()
        """Partner's participants a host here removed: never shown again on this link."""
        self._seen_chat: OrderedDict[str, None] = OrderedDict()
        self._full_logged = False

    # --- what is here ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._remotes)

    def local_id(self, remote_id: str) -> str | None:
        remote = self._remotes.get(remote_id)
        return remote.local_id if remote is not None else None

    def remote_track_id(self, local_track_id: str) -> str | None:
        """The partner's id of a track this link brought here."""
        for remote in self._remotes.values():
            for theirs, ours in remote.tracks.items():
                if ours == local_track_id:
                    return theirs
        return None

    def _room(self) -> Room | None:
        try:
            return self.rooms.get(self.room_id)
        except RoomError:
            return None

    # --- partner -> here ------------------------------------------------------------------

    def apply(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Apply checked events in order (a type not known here is ignored, spec 3.2)."""
        room = self._room()
        if room is None:
            return
        for event in events:
            kind = event["type"]
            if kind == "state":
                self._apply_state(room, event["participants"])
            elif kind == "participant":
                self._upsert(room, event["participant"])
            elif kind == "participant_left":
                remote = self._remotes.get(event["participant_id"])
                if remote is not None:
                    self._drop(room, remote, event.get("reason", "left"))
            elif kind == "chat":
                self._chat(room, event["message"])
            elif kind == "reaction":
                self._reaction(room, event["participant_id"], event["emoji"])
            elif kind == "mute":
                self._host_mute(room, event["participant_id"], event["track_id"])
            elif kind == "lower_hand":
                self._host_lower_hand(room, event["participant_id"])
            elif kind == "removed":
                log.info(
                    "a host on %s removed %s from their room",
                    self.peer,
                    event["participant_id"],
                    extra={"room": self.room_id},
                )
            elif kind == "demand" and self.media is not None:
                self.media.set_demand(self._demand(room, event["tracks"]))

    def clear(self, reason: str = "left") -> None:
        """Remove every participant this link brought (unlink, grace over, stop)."""
        room = self._room()
        for remote in list(self._remotes.values()):
            if room is not None:
                self._drop(room, remote, reason)
            else:
                self._forget(remote)

    def _apply_state(self, room: Room, participants: Sequence[Mapping[str, Any]]) -> None:
        present = {p["id"] for p in participants}
        for remote in list(self._remotes.values()):
            if remote.remote_id not in present:
                self._drop(room, remote, "left")
        for participant in participants:
            self._upsert(room, participant)

    def _upsert(self, room: Room, wire: Mapping[str, Any]) -> None:
        remote_id = wire["id"]
        if remote_id in self._ignored:
            return
        remote = self._remotes.get(remote_id)
        name = display_name(wire["name"][:MAX_NAME_INPUT]) or FALLBACK_NAME
        if remote is None:
            if len(self._remotes) >= self.max_participants:
                if not self._full_logged:
                    self._full_logged = True
                    log.warning(
                        "%s brings more than %d participants: the extra ones are refused",
                        self.peer,
                        self.max_participants,
                        extra={"room": self.room_id},
                    )
                return
            try:
                participant = self.rooms.add_participant(
                    room,
                    name,
                    Role.GUEST,
                    origin=self.origin,
                    origin_address=wire["origin"],
                    lobby=False,
                )
            except RoomError as error:
                log.warning(
                    "a participant from %s cannot join: %s",
                    self.peer,
                    error.detail,
                    extra={"room": self.room_id},
                )
                return
            remote = _Remote(remote_id, participant.id)
            self._remotes[remote_id] = remote
            self._by_local[participant.id] = remote_id
        here = room.participants.get(remote.local_id)
        if here is None:
            return  # removed here just now: the room event that says so comes next
        if here.name != name:
            self.rooms.update_name(room, here.id, name)
        self._sync_hand(room, remote, here, wire.get("hand_raised_at"))
        self._sync_tracks(room, remote, wire["tracks"])

    def _sync_hand(
        self, room: Room, remote: _Remote, here: Participant, raised_at: int | None
    ) -> None:
        """The hand as its home says (7.1 ``hand_raised_at``; absent from older partners: down)."""
        remote.hand = raised_at is not None  # before the room event, so no lower_hand goes back
        if (raised_at is None) != (here.hand_raised_at is None):
            at = None if raised_at is None else raised_at / 1000
            self.rooms.set_hand(room, here.id, raised_at is not None, at)

    def _sync_tracks(
        self, room: Room, remote: _Remote, tracks: Sequence[Mapping[str, Any]]
    ) -> None:
        wanted = {t["id"]: t for t in tracks[:MAX_TRACKS_PER_PARTICIPANT]}
        for theirs in [t for t in remote.tracks if t not in wanted]:
            self._drop_track(room, remote, theirs)
        for theirs, wire in wanted.items():
            ours = remote.tracks.get(theirs)
            muted = bool(wire["muted"])
            if ours is None:
                ours = new_id("TR")
                remote.tracks[theirs] = ours
                remote.muted[ours] = muted
                track = Track(
                    id=ours,
                    owner=remote.local_id,
                    kind=TrackKind(wire["kind"]),
                    source=TrackSource(wire["source"]),
                    codec=str(wire.get("codec", "")),
                    muted=muted,
                    layers=[
                        SimulcastLayer(layer["rid"], layer.get("width"), layer.get("height"))
                        for layer in wire.get("simulcast", [])
                    ],
                )
                if self.media is not None:
                    streams = [(s["rid"], s["ssrc"]) for s in wire.get("streams", [])]
                    try:
                        self.media.add_remote_track(track, streams)
                    except (ValueError, RuntimeError) as error:
                        log.warning("a track from %s has no media: %s", self.peer, error)
                self.rooms.publish_track(room, track)
            else:
                remote.muted[ours] = muted
                with contextlib.suppress(RoomError):
                    self.rooms.set_muted(room, remote.local_id, ours, muted)

    def _drop_track(self, room: Room, remote: _Remote, theirs: str) -> None:
        ours = remote.tracks.pop(theirs)
        remote.muted.pop(ours, None)
        if self.media is not None:
            self.media.remove_remote_track(ours)
        with contextlib.suppress(RoomError):
            self.rooms.unpublish_track(room, remote.local_id, ours)

    def _drop(self, room: Room, remote: _Remote, reason: str) -> None:
        for theirs in list(remote.tracks):
            self._drop_track(room, remote, theirs)
        self._forget(remote)
        self.rooms.remove_participant(room, remote.local_id, reason if reason else "left")

    def _forget(self, remote: _Remote) -> None:
        if self.media is not None:
            for ours in remote.tracks.values():
                self.media.remove_remote_track(ours)
        remote.tracks.clear()
        self._remotes.pop(remote.remote_id, None)
        self._by_local.pop(remote.local_id, None)

    def _chat(self, room: Room, message: Mapping[str, Any]) -> None:
        if message["id"] in self._seen_chat:
            return
        self._seen_chat[message["id"]] = None
        while len(self._seen_chat) > SEEN_CHAT_IDS:
            self._seen_chat.popitem(last=False)
        remote = self._remotes.get(message["from"])
        if remote is None or remote.local_id not in room.participants:
            return
        try:
            self.rooms.chat(room, remote.local_id, message["text"])
        except RoomError as error:
            log.info("chat from %s not shown: %s", self.peer, error.detail)

    def _reaction(self, room: Room, remote_id: str, emoji: str) -> None:
        """A partner's participant's reaction, shown here; an unknown participant's is ignored,
        and one beyond the room's reaction limit (or refused for any reason) dropped silently."""
        remote = self._remotes.get(remote_id)
        if remote is None or remote.local_id not in room.participants:
            return
        try:
            self.rooms.react(room, remote.local_id, emoji)
        except RoomError as error:
            log.debug("reaction from %s not shown: %s", self.peer, error.detail)

    def _host_mute(self, room: Room, participant_id: str, track_id: str) -> None:
        participant = room.participants.get(participant_id)
        if participant is None or not is_home(participant) or track_id not in participant.tracks:
            return
        self.rooms.set_muted(room, participant_id, track_id, True)

    def _host_lower_hand(self, room: Room, participant_id: str) -> None:
        participant = room.participants.get(participant_id)
        if participant is None or not self._crosses(participant):
            return
        self.rooms.set_hand(room, participant_id, False)

    def _demand(self, room: Room, tracks: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """The partner's demand, kept to our home participants' tracks."""
        home = {t.id for p in room.participants.values() if is_home(p) for t in p.tracks.values()}
        return {w["track_id"]: list(w["rids"]) for w in tracks if w["track_id"] in home}

    # --- here -> partner ------------------------------------------------------------------

    def participant_wire(self, participant: Participant) -> dict[str, Any]:
        """A home participant as the partner is told (tracks with their SSRC streams)."""
        wire = participant.to_wire()
        if self.media is not None:
            announced = []
            for track in wire["tracks"]:
                streams = self.media.local_streams(track["id"])
                if streams:  # a track the relay link cannot carry is not announced
                    codec = _LINK_CODEC_NAMES.get(track["codec"].lower(), track["codec"])
                    announced.append({**track, "codec": codec, "streams": streams})
            wire["tracks"] = announced
        return wire

    def _crosses(self, participant: Participant) -> bool:
        return is_home(participant) and participant.state is ParticipantState.JOINED

    def state_event(self) -> dict[str, Any]:
        """This room's full state for the partner: its joined home participants."""
        room = self._room()
        people = [] if room is None else [p for p in room.participants.values() if self._crosses(p)]
        return {"type": "state", "participants": [self.participant_wire(p) for p in people]}

    def outbound(self, event: RoomEvent) -> list[dict[str, Any]]:
        """The events for the partner that one room event makes (often none)."""
        room = self._room()
        if room is None or event.room_id != self.room_id:
            return []
        if isinstance(event, ParticipantLeft):
            return self._left(event)
        if isinstance(event, ParticipantUpdated) and event.participant.id in self._by_local:
            return self._local_lower_hand(event.participant)
        if isinstance(event, ParticipantJoined | ParticipantUpdated):
            return self._upsert_event(room, event.participant.id)
        if isinstance(event, TrackMuted) and event.track.owner in self._by_local:
            return self._local_mute(event.track)
        if isinstance(event, TrackPublished | TrackUnpublished | TrackMuted):
            return self._upsert_event(room, event.track.owner)
        if isinstance(event, ChatMessage) and event.to is None and is_home(event.sender):
            return [{"type": "chat", "message": event.to_wire()}]
        if isinstance(event, Reaction):
            return self._reaction_event(room, event)
        return []

    def _reaction_event(self, room: Room, event: Reaction) -> list[dict[str, Any]]:
        """A home participant's reaction for the partner (a partner's is never relayed)."""
        participant = room.participants.get(event.participant_id)
        if participant is None or not self._crosses(participant):
            return []
        return [
            {
                "type": "reaction",
                "participant_id": participant.id,
                "emoji": event.emoji,
                "at": int(event.timestamp * 1000),
            }
        ]

    def _upsert_event(self, room: Room, participant_id: str) -> list[dict[str, Any]]:
        participant = room.participants.get(participant_id)
        if participant is None or not self._crosses(participant):
            return []
        return [{"type": "participant", "participant": self.participant_wire(participant)}]

    def _left(self, event: ParticipantLeft) -> list[dict[str, Any]]:
        participant = event.participant
        remote_id = self._by_local.get(participant.id)
        if remote_id is not None:
            # one of the partner's, gone without us removing it: a host here removed it (or the
            # room closed); the partner is told of a removal, and we ignore that person from now
            remote = self._remotes[remote_id]
            self._forget(remote)
            if event.reason != "removed":
                return []
            self._ignored.add(remote_id)
            return [{"type": "removed", "participant_id": remote_id}]
        if not is_home(participant):
            return []
        reason = event.reason if event.reason in LEFT_REASONS else "left"
        return [{"type": "participant_left", "participant_id": participant.id, "reason": reason}]

    def _local_mute(self, track: Track) -> list[dict[str, Any]]:
        """A mirrored track muted here: by a host (send ``mute``) or by the partner's upsert."""
        remote_id = self._by_local[track.owner]
        remote = self._remotes.get(remote_id)
        if remote is None or not track.muted or remote.muted.get(track.id, False):
            return []
        theirs = next((t for t, ours in remote.tracks.items() if ours == track.id), None)
        if theirs is None:
            return []
        remote.muted[track.id] = True
        return [{"type": "mute", "participant_id": remote_id, "track_id": theirs}]

    def _local_lower_hand(self, participant: Participant) -> list[dict[str, Any]]:
        """A partner's participant updated here: its hand lowered by a host (send ``lower_hand``)
        or by the partner's upsert (nothing to send)."""
        remote = self._remotes.get(self._by_local[participant.id])
        if remote is None or participant.hand_raised_at is not None or not remote.hand:
            return []
        remote.hand = False
        return [{"type": "lower_hand", "participant_id": remote.remote_id}]

    def demand_event(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """Our media receiver's wishes (our track ids -> rids) as the partner's track ids."""
        tracks = []
        for ours, rids in wanted.items():
            theirs = self.remote_track_id(ours)
            remote_id = self._by_local.get(self._owner_of(ours) or "")
            if theirs is not None and remote_id not in self._ignored:
                tracks.append({"track_id": theirs, "rids": list(rids)})
        return {"type": "demand", "tracks": tracks}

    def _owner_of(self, local_track_id: str) -> str | None:
        for remote in self._remotes.values():
            if local_track_id in remote.tracks.values():
                return remote.local_id
        return None
