"""A partner's participants in a room here, and this room's people as events for the partner.

One ``Mirror`` per federation link. Inbound, it checks a transaction's events as a whole
(``check_events``) and applies them to the room through the RoomManager: the partner's
participants appear with fresh local ids (a partner's ids never enter our room), origin
``federation:PEER``, ``origin_address`` = their origin there, role guest, names sanitised by the
room; ``state`` reconciles (absent ones leave, present ones are upserted), so replaying it never
duplicates anyone. Outbound, it turns room events into events for the partner, for the home
participants only (origin not ``federation:*``), so nothing echoes around a triangle of gateways.

Two local actions on mirrored people go back to the partner: a host's removal (``removed``; that
remote participant is ignored for the link's life) and a host's mute (``mute``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.ors.problems import Problem
from gateway.rooms import (
    ChatMessage,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    ParticipantUpdated,
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
MAX_EVENTS = 100
MAX_TRACKS_PER_PARTICIPANT = 16
MAX_CHAT_TEXT = 4000
MAX_NAME_INPUT = 1024
"""Characters of a partner's display name we look at (the room keeps 64)."""
SEEN_CHAT_IDS = 1_000
FALLBACK_NAME = "Guest"

_OBJECT_ID = re.compile(r"[A-Za-z0-9_.:~-]{1,128}")
_RID = re.compile(r"[A-Za-z0-9]{0,16}")
_ORIGIN = re.compile(r"[a-z][a-z0-9_]{1,31}")
EVENT_TYPES = ("state", "participant", "participant_left", "chat", "demand", "mute", "removed")


def is_home(participant: Participant) -> bool:
    """Whether the participant is one of this gateway's own (not brought by a federation link)."""
    return not participant.origin.startswith(FEDERATION_ORIGIN_PREFIX)


# --- checking a transaction's events as a whole -----------------------------------------------


def _fail(pointer: str, detail: str) -> Problem:
    return Problem("invalid_message", detail, 400, pointer)


def _string(value: object, pointer: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(pointer, f"field '{pointer}' must be of type string")
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(pointer, f"field '{pointer}' must match {pattern.pattern}")
    return value


def _object(value: object, pointer: str, required: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(pointer, f"field '{pointer or '/'}' must be of type object")
    for name in required:
        if name not in value:
            raise _fail(f"{pointer}/{name}", f"field '{pointer}/{name}' is required")
    return value


def _list(value: object, pointer: str, most: int) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(pointer, f"field '{pointer}' must be of type array")
    if len(value) > most:
        raise _fail(pointer, f"field '{pointer}' has more than {most} items")
    return value


def _check_track(value: object, pointer: str) -> None:
    track = _object(value, pointer, ("id", "kind", "source", "muted"))
    _string(track["id"], f"{pointer}/id", _OBJECT_ID)
    if track["kind"] not in ("audio", "video"):
        raise _fail(f"{pointer}/kind", f"field '{pointer}/kind' must be one of audio, video")
    if track["source"] not in [source.value for source in TrackSource]:
        raise _fail(f"{pointer}/source", f"field '{pointer}/source' is not a track source")
    if not isinstance(track["muted"], bool):
        raise _fail(f"{pointer}/muted", f"field '{pointer}/muted' must be of type boolean")
    if "codec" in track and (not isinstance(track["codec"], str) or len(track["codec"]) > 32):
        raise _fail(f"{pointer}/codec", f"field '{pointer}/codec' must be a short string")
    for index, layer in enumerate(_list(track.get("simulcast", []), f"{pointer}/simulcast", 4)):
        where = f"{pointer}/simulcast/{index}"
        _string(_object(layer, where, ("rid",))["rid"], f"{where}/rid", _RID)
        for size in ("width", "height"):
            if size in layer and not _small_int(layer[size], 1, 16384):
                raise _fail(f"{where}/{size}", f"field '{where}/{size}' must be 1 to 16384")
    for index, stream in enumerate(_list(track.get("streams", []), f"{pointer}/streams", 4)):
        where = f"{pointer}/streams/{index}"
        _string(_object(stream, where, ("rid", "ssrc"))["rid"], f"{where}/rid", _RID)
        if not _small_int(stream["ssrc"], 1, 2**32 - 1):
            raise _fail(f"{where}/ssrc", f"field '{where}/ssrc' must be 1 to 4294967295")


def _small_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_participant(value: object, pointer: str) -> None:
    participant = _object(value, pointer, ("id", "name", "origin", "tracks"))
    _string(participant["id"], f"{pointer}/id", _OBJECT_ID)
    name = _string(participant["name"], f"{pointer}/name")
    if len(name) > MAX_NAME_INPUT:
        raise _fail(f"{pointer}/name", f"field '{pointer}/name' is too long")
    _string(participant["origin"], f"{pointer}/origin", _ORIGIN)
    if "origin_address" in participant:
        address = _string(participant["origin_address"], f"{pointer}/origin_address")
        if len(address) > 256:
            raise _fail(f"{pointer}/origin_address", f"field '{pointer}/origin_address' too long")
    tracks = _list(participant["tracks"], f"{pointer}/tracks", MAX_TRACKS_PER_PARTICIPANT)
    for index, track in enumerate(tracks):
        _check_track(track, f"{pointer}/tracks/{index}")


def _check_event(value: object, pointer: str) -> None:
    event = _object(value, pointer, ("type",))
    kind = event["type"]
    if kind not in EVENT_TYPES:
        raise _fail(f"{pointer}/type", f"field '{pointer}/type' must be one of {EVENT_TYPES}")
    if kind == "state":
        people = _list(
            _object(event, pointer, ("participants",))["participants"],
            f"{pointer}/participants",
            10_000,
        )
        for index, participant in enumerate(people):
            _check_participant(participant, f"{pointer}/participants/{index}")
    elif kind == "participant":
        _check_participant(_object(event, pointer, ("participant",))["participant"], pointer)
    elif kind in ("participant_left", "removed"):
        pid = _object(event, pointer, ("participant_id",))["participant_id"]
        _string(pid, f"{pointer}/participant_id", _OBJECT_ID)
    elif kind == "mute":
        _object(event, pointer, ("participant_id", "track_id"))
        _string(event["participant_id"], f"{pointer}/participant_id", _OBJECT_ID)
        _string(event["track_id"], f"{pointer}/track_id", _OBJECT_ID)
    elif kind == "chat":
        where = f"{pointer}/message"
        message = _object(_object(event, pointer, ("message",))["message"], where, ("id", "from"))
        _string(message["id"], f"{where}/id", _OBJECT_ID)
        _string(message["from"], f"{where}/from", _OBJECT_ID)
        text = _string(message.get("text"), f"{where}/text")
        if not 1 <= len(text) <= MAX_CHAT_TEXT:
            raise _fail(f"{where}/text", f"field '{where}/text' must be 1 to 4000 characters")
    elif kind == "demand":
        tracks = _list(_object(event, pointer, ("tracks",))["tracks"], f"{pointer}/tracks", 1024)
        for index, wanted in enumerate(tracks):
            where = f"{pointer}/tracks/{index}"
            _string(_object(wanted, where, ("track_id", "rids"))["track_id"], f"{where}/track_id")
            for n, rid in enumerate(_list(wanted["rids"], f"{where}/rids", 4)):
                _string(rid, f"{where}/rids/{n}", _RID)


def check_events(events: object) -> list[dict[str, Any]]:
    """The events of a transaction body, checked as a whole; Problem ``invalid_message`` with the
    JSON pointer (``/events/3/...``) of the first bad field. Nothing is applied before this."""
    checked = _list(events, "/events", MAX_EVENTS)
    for index, event in enumerate(checked):
        _check_event(event, f"/events/{index}")
    return checked


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rooms = rooms
        self.room_id = room_id
        self.peer = peer
        self.origin = f"{FEDERATION_ORIGIN_PREFIX}{peer}"
        self.max_participants = max_participants
        self.media = media
        self.clock = clock
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
        """Apply checked events (``check_events``) in order."""
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
            elif kind == "mute":
                self._host_mute(room, event["participant_id"], event["track_id"])
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
        self._sync_tracks(room, remote, wire["tracks"])

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

    def _host_mute(self, room: Room, participant_id: str, track_id: str) -> None:
        participant = room.participants.get(participant_id)
        if participant is None or not is_home(participant) or track_id not in participant.tracks:
            return
        self.rooms.set_muted(room, participant_id, track_id, True)

    def _demand(self, room: Room, tracks: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """The partner's demand, kept to our home participants' tracks."""
        home = {t.id for p in room.participants.values() if is_home(p) for t in p.tracks.values()}
        return {w["track_id"]: list(w["rids"]) for w in tracks if w["track_id"] in home}

    # --- here -> partner ------------------------------------------------------------------

    def participant_wire(self, participant: Participant) -> dict[str, Any]:
        """A home participant as the partner is told (tracks with their SSRC streams)."""
        wire = participant.to_wire()
        if self.media is not None:
            for track in wire["tracks"]:
                track["streams"] = self.media.local_streams(track["id"])
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
        if isinstance(event, ParticipantJoined | ParticipantUpdated):
            return self._upsert_event(room, event.participant.id)
        if isinstance(event, TrackMuted) and event.track.owner in self._by_local:
            return self._local_mute(event.track)
        if isinstance(event, TrackPublished | TrackUnpublished | TrackMuted):
            return self._upsert_event(room, event.track.owner)
        if isinstance(event, ChatMessage) and event.to is None and is_home(event.sender):
            return [
                {
                    "type": "chat",
                    "message": {
                        "id": event.id,
                        "from": event.sender.id,
                        "from_name": event.sender.name,
                        "text": event.text,
                        "ts": int(event.timestamp * 1000),
                    },
                }
            ]
        return []

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
        return [
            {"type": "participant_left", "participant_id": participant.id, "reason": event.reason}
        ]

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
