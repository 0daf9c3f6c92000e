"""Live rooms: the one place that changes the room model and announces each change on the bus."""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence

from gateway.ratelimit import RateLimiter
from gateway.rooms.events import (
    ChatMessage,
    EventBus,
    LobbyStatus,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    Reaction,
    RoomClosed,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
    UnmuteRequested,
)
from gateway.rooms.model import (
    ROOM_ID_PATTERN,
    Participant,
    ParticipantState,
    Role,
    Room,
    RoomPolicy,
    Track,
    new_id,
    valid_origin,
)
from gateway.store import RoomRecord, Store

MAX_REMOVED = 1_000
"""Removed identities a room remembers; beyond, the oldest removal is forgotten."""
CHAT_HISTORY_MESSAGES = 50
CHAT_HISTORY_CHARACTERS = 32_000
"""A room's chat history for late joiners (spec 9.1 ``chat``): its last messages, at most this
many and this much text in all; the oldest go first. Kept in memory while someone is in the room."""
REACTIONS = ("👍", "👏", "😂", "❤️", "🎉", "😮", "🙏", "🤔")
"""The reactions a participant may send (spec 8.18), as Visio and Jitsi offer them."""
REACTIONS_PER_SECOND = 1.0
REACTION_BURST = 10
"""Reactions per participant: 10 at once, then 10 per 10 s; each one reaches every session."""
UNMUTE_REQUEST_INTERVAL = 5.0
"""Seconds between two requests to unmute from one host to one participant (spec 8.19)."""
MAX_HOSTS = 50
"""Identities a room keeps as its hosts (ORS 2.4); naming one more co-host is refused."""


class RoomError(Exception):
    """A room operation refused; ``code`` is the stable ORS error code."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


class RoomManager:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        server_name: str,
        max_participants: int = 100,
        max_lobby: int = 50,
        chat_per_second: float = 5.0,
        chat_burst: int = 20,
        max_reconnecting: int = 50,
        max_reconnecting_total: int = 1_000,
    ):
        self.store = store
        self.bus = bus
        self.server_name = server_name
        self.max_participants = max_participants
        """Joined participants per room, hosts included; the lobby does not count."""
        self.max_lobby = max_lobby
        """Participants waiting in a room's lobby: strangers who fill it never keep a host out."""
        self.max_reconnecting = max_reconnecting
        self.max_reconnecting_total = max_reconnecting_total
        """Participants kept while they reconnect (ORS 6.6), per room and in all rooms together;
        beyond, a participant whose connection drops leaves at once."""
        self._reconnecting: set[tuple[str, str]] = set()
        """(room id, participant id) of every participant kept while it reconnects."""
        self._chat_limiter = RateLimiter(rate_per_minute=chat_per_second * 60, burst=chat_burst)
        """Per participant, whatever its origin: one chat message reaches every session."""
        self._chat_history: dict[str, deque[ChatMessage]] = {}
        """Room id -> its last chat messages, oldest first (CHAT_HISTORY_*)."""
        self._reaction_limiter = RateLimiter(
            rate_per_minute=REACTIONS_PER_SECOND * 60, burst=REACTION_BURST
        )
        self._unmute_limiter = RateLimiter(rate_per_minute=60 / UNMUTE_REQUEST_INTERVAL, burst=1)
        """Per (host, participant): a host's requests must not become a stream of prompts."""
        self._live: dict[str, Room] = {}
        self._reserved: list[tuple[Callable[[str], bool], str]] = []

    # definitions -----------------------------------------------------------
    def reserve(self, is_reserved: Callable[[str], bool], purpose: str) -> None:
        """Room names for which ``is_reserved`` holds are made by the gateway only (``internal``),
        for ``purpose``: nobody can pre-create one and become the host of the room that, say, the
        phone callers of a Visio meeting land in."""
        self._reserved.append((is_reserved, purpose))

    def create(
        self, room_id: str, pin: str = "", lobby: bool = False, internal: bool = False
    ) -> Room:
        """A new room; ``internal`` for the gateway's own rooms, the only way to a reserved name."""
        check_room_id(room_id)
        purpose = next((p for reserved, p in self._reserved if reserved(room_id)), None)
        if purpose is not None and not internal:
            raise RoomError("forbidden", f"this room name is reserved for {purpose}", 403)
        if pin and not (pin.isdigit() and 4 <= len(pin) <= 12):
            raise RoomError("invalid_field", "pin must be 4 to 12 digits")
        if self.store.get_room(room_id) is not None:
            raise RoomError("room_exists", f"room '{room_id}' already exists", 409)
        self.store.save_room(RoomRecord(id=room_id, pin=pin, lobby=lobby))
        return self.get(room_id)

    def get(self, room_id: str) -> Room:
        """The live room, loaded from the store; RoomError 404 when it does not exist."""
        room = self._live.get(room_id)
        if room is not None:
            return room
        record = self.store.get_room(room_id)
        if record is None:
            raise RoomError("room_not_found", f"room '{room_id}' does not exist", 404)
        room = Room(
            id=record.id,
            server=self.server_name,
            policy=RoomPolicy(
                pin=record.pin, lobby=record.lobby, federation_peers=record.federation_peers
            ),
            links=record.links,
            created_at=record.created_at,
            hosts=list(record.hosts),
        )
        self._live[room_id] = room
        return room

    def live_rooms(self) -> list[Room]:
        return list(self._live.values())

    def exists(self, room_id: str) -> bool:
        return room_id in self._live or self.store.get_room(room_id) is not None

    def list(self) -> list[Room]:
        return [self.get(record.id) for record in self.store.list_rooms()]

    def delete(self, room_id: str) -> None:
        room = self.get(room_id)
        for participant in list(room.participants.values()):
            self.remove_participant(room, participant.id, reason="room_closed")
        self.store.delete_room(room_id)
        self._live.pop(room_id, None)
        self._chat_history.pop(room_id, None)
        self.bus.publish(RoomClosed(room_id, reason="deleted"))

    # participants ------------------------------------------------------------
    def add_participant(
        self,
        room: Room,
        name: str,
        role: Role,
        origin: str = "ors",
        origin_address: str = "",
        participant_id: str | None = None,
        lobby: bool | None = None,
        identity: str = "",
    ) -> Participant:
        """LOBBY overrides the room's policy (None: hosts enter, others wait if the room has one).
        IDENTITY, the token's subject, is refused (``removed``) while a host's removal holds; an
        identity that is one of the room's hosts joins as host whatever ROLE its token grants, and
        one that joins with ROLE host becomes one of them (while the room has room for it)."""
        if not valid_origin(origin):
            raise ValueError(f"not a participant origin: {origin!r}")
        if identity and identity in room.removed:
            raise RoomError("removed", "a host removed you from this room", 403)
        if identity and origin == "ors":
            if identity in room.hosts:
                role = Role.HOST
            elif role is Role.HOST and len(room.hosts) < MAX_HOSTS:
                self._add_host(room, identity)
        hosts_present = room.hosts_present()
        waits = room.policy.lobby and role is not Role.HOST if lobby is None else lobby
        if waits:
            if len(room.waiting()) >= self.max_lobby:
                raise RoomError("room_full", "the room's lobby is full", 403)
        else:
            self._check_room_for_one_more(room)
        participant = Participant(
            id=participant_id or new_id("PA"),
            name=name,
            origin=origin,
            origin_address=origin_address,
            role=role,
            state=ParticipantState.LOBBY if waits else ParticipantState.JOINED,
            identity=identity,
        )
        room.participants[participant.id] = participant
        self.bus.publish(ParticipantJoined(room.id, participant))
        self._tell_lobby(room, hosts_present)
        return participant

    def admit(self, room: Room, participant_id: str) -> Participant:
        participant = self._participant(room, participant_id)
        if participant.state is ParticipantState.JOINED:
            raise RoomError("invalid_state", "participant is not waiting in the lobby", 409)
        self._check_room_for_one_more(room)
        self._enter([participant], room)
        return participant

    def admit_all(self, room: Room) -> Sequence[Participant]:
        """Admit everyone waiting in the lobby, or nobody (``room_full``) when they do not all fit."""
        waiting = room.waiting()
        if len(room.joined()) + len(waiting) > self.max_participants:
            raise RoomError(
                "room_full", f"the room has no place for the {len(waiting)} waiting", 403
            )
        self._enter(waiting, room)
        return waiting

    def _enter(self, waiting: Sequence[Participant], room: Room) -> None:
        hosts_present = room.hosts_present()
        for participant in waiting:
            participant.state = ParticipantState.JOINED
            self.bus.publish(ParticipantUpdated(room.id, participant))
        self._tell_lobby(room, hosts_present)

    # hosts ---------------------------------------------------------------------
    def set_role(self, room: Room, participant_id: str, role: Role) -> Participant:
        """Make a joined ORS participant of this server a host (its identity joins the room's
        hosts) or a member (its identity leaves them); the last host present stays one."""
        participant = self._participant(room, participant_id)
        if participant.origin != "ors" or not participant.identity:
            raise RoomError(
                "forbidden",
                "only a participant who joined this server over ORS can be a host: phones, "
                "bridged and federated participants have no identity here",
                403,
            )
        if participant.state is not ParticipantState.JOINED:
            raise RoomError("invalid_state", "admit the participant first", 409)
        hosts_present = room.hosts_present()
        if role is Role.HOST:
            if participant.identity not in room.hosts:
                if len(room.hosts) >= MAX_HOSTS:
                    raise RoomError("too_many_hosts", f"a room has at most {MAX_HOSTS} hosts", 409)
                self._add_host(room, participant.identity)
        else:
            others = [p for p in room.joined() if p.is_host and p.id != participant.id]
            if participant.is_host and not others:
                raise RoomError(
                    "invalid_state", "the last host present cannot stop being a host", 409
                )
            self._drop_host(room, participant.identity)
        if participant.role is not role:
            participant.role = role
            self.bus.publish(ParticipantUpdated(room.id, participant))
        self._tell_lobby(room, hosts_present)
        return participant

    def _add_host(self, room: Room, identity: str) -> None:
        room.hosts.append(identity)
        self.store.add_room_host(room.id, identity)

    def _drop_host(self, room: Room, identity: str) -> None:
        if identity in room.hosts:
            room.hosts.remove(identity)
            self.store.remove_room_host(room.id, identity)

    def _tell_lobby(self, room: Room, hosts_present: bool) -> None:
        """Announce LobbyStatus, when someone waits in the lobby, if whether a host is present is
        no longer HOSTS_PRESENT (who enters the lobby later learns it from ``lobby``)."""
        if room.hosts_present() is not hosts_present and room.waiting():
            self.bus.publish(LobbyStatus(room.id, not hosts_present))

    def set_reconnecting(self, room: Room, participant_id: str, reconnecting: bool) -> bool:
        """Keep a joined participant whose connection dropped while it reconnects (ORS 6.6), or
        take it back; everyone who sees it hears ``ParticipantUpdated``. False, and nothing
        changes, for one in the lobby, or when the room or the server already keeps as many
        as they may (``max_reconnecting``, ``max_reconnecting_total``)."""
        participant = self._participant(room, participant_id)
        key = (room.id, participant_id)
        if participant.reconnecting is reconnecting:
            return True
        if reconnecting:
            kept_here = sum(1 for p in room.participants.values() if p.reconnecting)
            if (
                participant.state is not ParticipantState.JOINED
                or kept_here >= self.max_reconnecting
                or len(self._reconnecting) >= self.max_reconnecting_total
            ):
                return False
            self._reconnecting.add(key)
        else:
            self._reconnecting.discard(key)
        participant.reconnecting = reconnecting
        self.bus.publish(ParticipantUpdated(room.id, participant))
        return True

    def reconnecting_count(self) -> int:
        """Participants kept while they reconnect, in every room."""
        return len(self._reconnecting)

    def let_back(self, room: Room, participant_id: str) -> bool:
        """Lift the removal of whoever had PARTICIPANT_ID when a host removed it; False if none."""
        for identity, removed_id in room.removed.items():
            if removed_id == participant_id:
                del room.removed[identity]
                return True
        return False

    def update_name(self, room: Room, participant_id: str, name: str) -> Participant:
        participant = self._participant(room, participant_id)
        participant.name = name
        self.bus.publish(ParticipantUpdated(room.id, participant))
        return participant

    def set_hand(
        self, room: Room, participant_id: str, raised: bool, at: float | None = None
    ) -> Participant:
        """Raise (at ``at``, default now) or lower a joined participant's hand; everyone who sees
        it hears ``ParticipantUpdated`` when it changes. A raised hand keeps its first time."""
        participant = self._participant(room, participant_id)
        if participant.state is not ParticipantState.JOINED:
            raise RoomError("invalid_state", "only a joined participant has a hand to raise", 409)
        if raised and participant.hand_raised_at is None:
            participant.hand_raised_at = time.time() if at is None else at
        elif not raised and participant.hand_raised_at is not None:
            participant.hand_raised_at = None
        else:
            return participant
        self.bus.publish(ParticipantUpdated(room.id, participant))
        return participant

    def remove_participant(self, room: Room, participant_id: str, reason: str = "left") -> None:
        """A removed or denied identity may not come back (until let back) and is no longer a
        host of the room."""
        hosts_present = room.hosts_present()
        participant = room.participants.pop(participant_id, None)
        if participant is None:
            return
        if reason in ("removed", "denied") and participant.identity:
            room.removed.pop(participant.identity, None)
            room.removed[participant.identity] = participant.id
            while len(room.removed) > MAX_REMOVED:
                del room.removed[next(iter(room.removed))]
            self._drop_host(room, participant.identity)
        for track in list(participant.tracks.values()):
            self.bus.publish(TrackUnpublished(room.id, track))
        participant.tracks.clear()
        participant.hand_raised_at = None
        participant.reconnecting = False
        self._reconnecting.discard((room.id, participant.id))
        if not room.participants:
            self._chat_history.pop(room.id, None)  # the meeting is over: its chat goes with it
        self.bus.publish(ParticipantLeft(room.id, participant, reason))
        self._tell_lobby(room, hosts_present)

    def _check_room_for_one_more(self, room: Room) -> None:
        if len(room.joined()) >= self.max_participants:
            raise RoomError("room_full", "the room is full", 403)

    def _participant(self, room: Room, participant_id: str) -> Participant:
        participant = room.participants.get(participant_id)
        if participant is None:
            raise RoomError("participant_not_found", f"no participant '{participant_id}'", 404)
        return participant

    # tracks --------------------------------------------------------------------
    def publish_track(self, room: Room, track: Track) -> None:
        participant = self._participant(room, track.owner)
        participant.tracks[track.id] = track
        self.bus.publish(TrackPublished(room.id, track))

    def unpublish_track(self, room: Room, participant_id: str, track_id: str) -> Track:
        participant = self._participant(room, participant_id)
        track = participant.tracks.pop(track_id, None)
        if track is None:
            raise RoomError("track_not_found", f"no track '{track_id}'", 404)
        self.bus.publish(TrackUnpublished(room.id, track))
        return track

    def set_muted(self, room: Room, participant_id: str, track_id: str, muted: bool) -> Track:
        participant = self._participant(room, participant_id)
        track = participant.tracks.get(track_id)
        if track is None:
            raise RoomError("track_not_found", f"no track '{track_id}'", 404)
        if track.muted != muted:
            track.muted = muted
            self.bus.publish(TrackMuted(room.id, track))
        return track

    # chat ------------------------------------------------------------------------
    def chat(
        self, room: Room, sender_id: str, text: str, to: str | None = None, now: float | None = None
    ) -> ChatMessage:
        """Announce a chat message; RoomError 429 ``rate_limited`` beyond the sender's rate."""
        sender = self._participant(room, sender_id)
        if to is not None:
            self._participant(room, to)
        if not self._chat_limiter.allow(sender_id, now):
            raise RoomError("rate_limited", "too many chat messages; wait and retry", 429)
        message = ChatMessage(
            room.id, id=new_id("CH"), sender=sender, text=text, timestamp=time.time(), to=to
        )
        self._remember(message)
        self.bus.publish(message)
        return message

    def _remember(self, message: ChatMessage) -> None:
        history = self._chat_history.setdefault(message.room_id, deque())
        history.append(message)
        size = sum(len(m.text) for m in history)
        while len(history) > CHAT_HISTORY_MESSAGES or size > CHAT_HISTORY_CHARACTERS:
            size -= len(history.popleft().text)

    def chat_history(self, room: Room, participant_id: str) -> Sequence[ChatMessage]:
        """The room's last chat messages that the participant may read, oldest first."""
        history = self._chat_history.get(room.id, ())
        return [m for m in history if m.visible_to(participant_id)]

    # reactions and requests ----------------------------------------------------------------
    def react(
        self, room: Room, participant_id: str, emoji: str, now: float | None = None
    ) -> Reaction:
        """Show a passing reaction to everyone; nothing is kept. RoomError ``invalid_message``
        for a reaction not in REACTIONS, 429 ``rate_limited`` beyond the participant's rate."""
        self._participant(room, participant_id)
        if emoji not in REACTIONS:
            raise RoomError("invalid_message", "not one of the allowed reactions (spec 8.18)")
        if not self._reaction_limiter.allow(participant_id, now):
            raise RoomError("rate_limited", "too many reactions; wait and retry", 429)
        reaction = Reaction(room.id, participant_id, emoji, time.time())
        self.bus.publish(reaction)
        return reaction

    def request_unmute(
        self, room: Room, by: str, participant_id: str, kind: str, now: float | None = None
    ) -> None:
        """Ask one participant to unmute its ``kind`` (audio, video); only that participant
        hears it, and nothing is unmuted: only the person unmutes (spec 8.19). RoomError 429
        ``rate_limited`` for a second request from ``by`` to the same participant too soon."""
        self._participant(room, by)
        target = self._participant(room, participant_id)
        if target.state is not ParticipantState.JOINED:
            raise RoomError("invalid_state", "the participant is not in the room", 409)
        if not self._unmute_limiter.allow(f"{by}>{participant_id}", now):
            raise RoomError("rate_limited", "this participant was just asked; wait and retry", 429)
        self.bus.publish(UnmuteRequested(room.id, participant_id, by, kind))


def check_room_id(room_id: str) -> None:
    if not ROOM_ID_PATTERN.fullmatch(room_id):
        raise RoomError(
            "invalid_room_name",
            f"room names match {ROOM_ID_PATTERN.pattern}: 3 to 64 lowercase letters, digits or '-'",
        )


def random_room_id() -> str:
    return "room-" + secrets.token_hex(4)
