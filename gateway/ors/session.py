"""One ORS client on its WebSocket (spec/ors-v1.md): join, media negotiation, room events, leave,
and the resumption of a participant whose connection dropped (6.6)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.media.endpoint import (
    PublishRequest,
    SimulcastLayerInfo,
    WebRtcEndpoint,
    check_publish_offer,
)
from gateway.media.sdp import SdpError
from gateway.media.sdp import parse as parse_sdp
from gateway.ors import schemas
from gateway.ors.problems import Problem
from gateway.plugins import DialError
from gateway.ratelimit import RateLimiter
from gateway.rooms import (
    ActiveSpeakers,
    Caption,
    ChatMessage,
    LobbyStatus,
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
    SimulcastLayer,
    Subscription,
    Track,
    TrackKind,
    TrackMuted,
    TrackPublished,
    TrackSource,
    TrackUnpublished,
    UnmuteRequested,
    new_id,
)
from gateway.rooms.names import display_name
from gateway.tokens import JoinGrant, TokenError

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

Message = dict[str, Any]


class SessionState(StrEnum):
    CONNECTED = "connected"
    LOBBY = "lobby"
    JOINED = "joined"
    PARKED = "parked"
    """The socket closed without `leave`: the participant is kept for the grace (spec 6.6)."""
    LEFT = "left"


_SOCKET_ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)
ALLOWED_BEFORE_JOIN = {"join", "ping", "leave"}
ALLOWED_IN_LOBBY = {"ping", "leave", "update", "join"}

JOIN_DEADLINE_SECONDS = 10.0
"""A socket that has not joined (or entered the lobby) this long after opening is closed (6.1)."""
CLOSE_JOIN_TIMEOUT = 4408
"""WebSocket close code of a socket closed for not joining in time (spec 6.1)."""

EVENT_BACKLOG = 1_000
"""Room events a session may fall behind its client by (a client that stopped reading its socket,
once the socket's buffers are full); one more and it is closed with ``CLOSE_TOO_SLOW`` (spec 6.4)."""
CLOSE_TOO_SLOW = 4008
"""WebSocket close code of a session whose client did not keep up with the room's events."""
CLOSE_SERVICE_RESTART = 1012
"""WebSocket close code of every session when the gateway stops (RFC 6455's registry: service
restart): without `left`, since the room is not closed and its clients come back (spec 6.4, 6.7)."""
CLOSE_GRACE_SECONDS = 5.0
"""How long a too-slow client has to take the close frame before its connection is cut."""
RENAMES_PER_SECOND = 1
RENAME_BURST = 10
"""A session's renames (`update`, 8.9), each announced to everyone who sees the participant, as a
chat message is (chat has its own limit, [limits] chat_messages_per_second, in RoomManager)."""
HANDS_PER_SECOND = 1
HAND_BURST = 10
"""A session's raised and lowered hands (`hand`, 8.17), announced to everyone like a rename."""
ROLE_CHANGES_PER_SECOND = 1
ROLE_CHANGE_BURST = 10
"""A host's `set_role` messages (8.15), each announced to everyone in the room."""
RESUME_TOKEN_BYTES = 32
"""Random bytes of a resume token (spec 6.6): 256 bits, never guessed."""


class OrsSession:
    def __init__(
        self,
        gateway: Gateway,
        ws: web.WebSocketResponse,
        room_id: str,
        remote: str,
        transport: asyncio.Transport | None = None,
    ):
        self.gateway = gateway
        self.ws = ws
        self.transport = transport
        """The connection under ``ws``, cut when a client that does not read cannot be closed."""
        self.room_id = room_id
        self.remote = remote
        self.state = SessionState.CONNECTED
        self.grant: JoinGrant | None = None
        self.room: Room | None = None
        self.participant: Participant | None = None
        self.endpoint: WebRtcEndpoint | None = None
        self._events: Subscription | None = None
        self._event_task: asyncio.Task[None] | None = None
        self._join_timeout: asyncio.Task[bool] | None = None
        self._slow_close: asyncio.Task[None] | None = None
        self._renames = RateLimiter(rate_per_minute=RENAMES_PER_SECOND * 60, burst=RENAME_BURST)
        self._hands = RateLimiter(rate_per_minute=HANDS_PER_SECOND * 60, burst=HAND_BURST)
        self._role_changes = RateLimiter(
            rate_per_minute=ROLE_CHANGES_PER_SECOND * 60, burst=ROLE_CHANGE_BURST
        )
        self._send_lock = asyncio.Lock()
        self._visible: set[str] = set()
        self._awaiting_answer = False
        self._offer_wanted = False
        self._leaving = False
        self._mids: dict[str, str] = {}
        """Publish m-line mid -> track id, kept across renegotiations."""
        self._resume_digest = b""
        """SHA-256 of the resume token of this session's latest `joined` (6.6); the token
        itself is never kept, nor logged."""
        self._grace: asyncio.TimerHandle | None = None
        """While PARKED: the end of the grace, when the participant leaves."""
        self._retired: set[str] = set()
        """A resumed session's tracks from before the resume, until the client's first publish
        offer replaces them or the grace ends (6.6)."""
        self._retire_deadline: asyncio.TimerHandle | None = None
        self._ending: asyncio.Task[None] | None = None
        """Ends the session in the background (the grace is over; another session took over)."""

    # the socket ------------------------------------------------------------------
    async def run(self) -> None:
        max_bytes = self.gateway.config.limits.max_message_bytes
        deadline = asyncio.get_running_loop().call_later(
            JOIN_DEADLINE_SECONDS, self._join_deadline_passed
        )
        finished = False  # closed by the client with 1000 (normal closure): it is done (6.6)
        try:
            while self.state is not SessionState.LEFT:
                frame = await self.ws.receive()
                if frame.type == WSMsgType.TEXT:
                    await self._receive(frame.data, max_bytes)
                elif frame.type == WSMsgType.BINARY:
                    await self._send_error(Problem("invalid_json", "messages are JSON text frames"))
                elif frame.type in _SOCKET_ENDS:
                    finished = frame.type == WSMsgType.CLOSE and frame.data == WSCloseCode.OK
                    break
        finally:
            deadline.cancel()
            if finished or not self._park():
                await self._close("disconnected")

    def _join_deadline_passed(self) -> None:
        if self.state is SessionState.CONNECTED and not self.ws.closed:
            self._join_timeout = asyncio.create_task(
                self.ws.close(code=CLOSE_JOIN_TIMEOUT, message=b"join timeout")
            )

    async def _receive(self, text: str, max_bytes: int) -> None:
        if len(text.encode()) > max_bytes:
            await self._send_error(
                Problem("message_too_large", f"messages are limited to {max_bytes} bytes", 413)
            )
            return
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            await self._send_error(Problem("invalid_json", "the message is not valid JSON"))
            return
        request_id = message.get("id") if isinstance(message, dict) else None
        reply_to = (
            request_id if isinstance(request_id, str) and 1 <= len(request_id) <= 64 else None
        )
        try:
            schemas.validate("client", message)
            handler = self._handler(message["type"])
            reply = await handler(message)
        except Problem as problem:
            await self._send_error(problem, reply_to)
            return
        except (RoomError, TokenError) as e:
            await self._send_error(Problem.of(e), reply_to)
            return
        except SdpError as e:
            await self._send_error(Problem("negotiation_failed", str(e)), reply_to)
            return
        except Exception:
            log.exception("ORS message handler failed", extra={"room": self.room_id})
            await self._send_error(
                Problem("internal", "the server failed on this message", 500), reply_to
            )
            return
        if reply is None:
            reply = {"type": "ok"}
        if reply_to is not None:
            reply["reply_to"] = reply_to
        if reply["type"] != "ok" or reply_to is not None:
            await self.send(reply)
        if self._leaving:
            await self.end("left")

    def _handler(self, message_type: str) -> Callable[[Message], Awaitable[Message | None]]:
        if self.state is SessionState.LEFT:
            raise Problem("invalid_state", "this session has ended", 409)
        if self.state is SessionState.CONNECTED and message_type not in ALLOWED_BEFORE_JOIN:
            raise Problem("not_joined", "send 'join' first", 409)
        if self.state is SessionState.LOBBY and message_type not in ALLOWED_IN_LOBBY:
            raise Problem("invalid_state", "you are waiting in the lobby", 409)
        handler = getattr(self, f"_on_{message_type}", None)
        if handler is None:
            raise Problem("unknown_type", "the message type is not part of ORS v1", field="/type")
        return handler  # type: ignore[no-any-return]

    async def send(self, message: Message) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def _send_error(self, problem: Problem, reply_to: str | None = None) -> None:
        message: Message = {"type": "error", "problem": problem.to_json()}
        if reply_to is not None:
            message["reply_to"] = reply_to
        await self.send(message)

    # joining -------------------------------------------------------------------------
    async def _on_join(self, message: Message) -> Message:
        if self.state is not SessionState.CONNECTED:
            raise Problem("already_joined", "this socket has already joined", 409)
        grant = self.gateway.tokens.verify(message["token"], self.room_id)
        name = _client_name(message) if "name" in message else grant.name
        room = self.gateway.rooms.get(self.room_id)
        previous = self.gateway.sessions.get((self.room_id, grant.identity))
        if previous is not None and previous.resumable(message.get("resume")):
            return self._resume(previous, grant)
        if previous is not None:
            await previous.end("replaced")
        self.grant, self.room = grant, room
        self._events = self.gateway.bus.subscribe(
            room.id, limit=EVENT_BACKLOG, on_overflow=self._fell_behind
        )
        try:
            self.participant = self.gateway.rooms.add_participant(
                room, name, grant.role, origin="ors", identity=grant.identity
            )
        except RoomError:
            self._events.close()
            self._events = None
            raise
        self.gateway.sessions[(self.room_id, grant.identity)] = self
        self._event_task = asyncio.create_task(self._pump_events())
        log.info(
            "participant joined",
            extra={
                "room": room.id,
                "participant": self.participant.id,
                "state": self.participant.state,
            },
        )
        if self.participant.state is ParticipantState.LOBBY:
            self.state = SessionState.LOBBY
            return {
                "type": "lobby",
                "participant": self.participant.to_wire(),
                "room": room.to_wire(),
                "hosts_present": room.hosts_present(),
            }
        reply = self._enter_room()
        if "resume" in message:
            reply["resumed"] = False  # a new participant: the one the client had is gone
        return reply

    def resumable(self, resume_token: object) -> bool:
        """Whether RESUME_TOKEN, from a new session's `join` with a token of this session's
        identity, takes this session's participant over (6.6): it is the token of this
        session's latest `joined`, and the participant is still in the room."""
        if not isinstance(resume_token, str) or not self._resume_digest:
            return False
        if self.state not in (SessionState.JOINED, SessionState.PARKED):
            return False
        if self.room is None or self.participant is None or self.endpoint is None:
            return False
        if self.room.participants.get(self.participant.id) is not self.participant:
            return False  # it left, and this session has not heard it yet
        return hmac.compare_digest(_digest(resume_token), self._resume_digest)

    def _resume(self, previous: OrsSession, grant: JoinGrant) -> Message:
        """Take PREVIOUS's participant and media endpoint over (6.6): nobody sees it leave or
        join; it keeps its id, name, role and tracks, and its rate limits. Nothing here waits,
        so no room event can come between the hand-over and this session's subscription."""
        participant, endpoint, room = previous.participant, previous.endpoint, previous.room
        assert participant is not None and endpoint is not None and room is not None
        previous._hand_over()
        self.grant, self.room, self.participant = grant, room, participant
        self._renames, self._hands = previous._renames, previous._hands
        self._role_changes = previous._role_changes
        self.gateway.rooms.set_reconnecting(room, participant.id, False)
        self._events = self.gateway.bus.subscribe(
            room.id, limit=EVENT_BACKLOG, on_overflow=self._fell_behind
        )
        self.gateway.sessions[(self.room_id, grant.identity)] = self
        self._event_task = asyncio.create_task(self._pump_events())
        log.info("participant resumed", extra={"room": room.id, "participant": participant.id})
        reply = self._enter_room(endpoint)
        reply["resumed"] = True
        return reply

    def _enter_room(self, resumed: WebRtcEndpoint | None = None) -> Message:
        """The participant is in the room (joined, admitted, or RESUMED with the media endpoint
        of the session it takes over): its endpoint, subscriptions and `joined`."""
        assert self.room is not None and self.participant is not None
        self.state = SessionState.JOINED
        others = [p for p in self.room.participants.values() if self._is_visible(p)]
        self._visible = {p.id for p in others}
        if resumed is None:
            self.endpoint = self.gateway.relay.create_endpoint(self.room.id, self.participant.id)
        else:
            self.endpoint = resumed
            resumed.renew()  # the client comes back with new peer connections
            self._retire(set(self.participant.tracks))
        if self.grant is not None and self.grant.can_subscribe:
            for participant in others:
                for track in participant.tracks.values():
                    self._offer_wanted |= self.endpoint.subscribe(track.id)
        if self._offer_wanted:
            asyncio.get_running_loop().call_soon(self._schedule_offer)
        reply: Message = {
            "type": "joined",
            "participant": self.participant.to_wire(),
            "room": self.room.to_wire(),
            "participants": [p.to_wire() for p in others],
            "ice_servers": self.gateway.ice_servers(self.participant.id),
            "chat": [
                m.to_wire() for m in self.gateway.rooms.chat_history(self.room, self.participant.id)
            ],
        }
        grace = self.gateway.config.rooms.reconnect_grace
        if grace:
            resume_token = secrets.token_urlsafe(RESUME_TOKEN_BYTES)
            self._resume_digest = _digest(resume_token)  # the previous token is no longer valid
            reply["resume_token"] = resume_token
            reply["resume_grace"] = grace
        return reply

    def _is_visible(self, other: Participant) -> bool:
        assert self.participant is not None
        if other.id == self.participant.id:
            return False
        return other.state is ParticipantState.JOINED or self.participant.is_host

    # media negotiation ---------------------------------------------------------------
    async def _on_offer(self, message: Message) -> Message:
        assert self.room is not None and self.participant is not None and self.endpoint is not None
        if message["pc"] != "publish":
            raise Problem(
                "invalid_message", "clients offer only on the 'publish' connection", field="/pc"
            )
        if self.grant is not None and not self.grant.can_publish:
            raise Problem("forbidden", "your token does not allow publishing", 403)
        for n, entry in enumerate(message["tracks"]):
            if self.grant is not None and not self.grant.may_publish(entry["source"]):
                raise Problem(
                    "forbidden",
                    f"your token does not allow publishing a {entry['source']} track",
                    403,
                    f"/tracks/{n}/source",
                )
        requests = []
        for entry in message["tracks"]:
            track_id = self._mids.get(entry["mid"]) or new_id("TR")
            layers = [
                SimulcastLayerInfo(rid=s["rid"], width=s.get("width"), height=s.get("height"))
                for s in entry.get("simulcast", [])
            ]
            requests.append(PublishRequest(entry["mid"], track_id, entry["source"], layers))
        try:
            # every check comes before anything changes: a refused offer publishes nothing and
            # leaves the publish connection as it was (8.2, 10.4, 10.6)
            offer = parse_sdp(message["sdp"])
            check_publish_offer(offer, requests)
            answer = self.endpoint.accept_publish_offer(offer, requests)
        except SdpError as e:
            raise Problem("negotiation_failed", str(e), field=e.field or "/sdp") from None
        self._drop_retired()  # the first offer of a resumed session replaces its old tracks
        sources = {r.mid: r.source for r in requests}
        tracks = []
        for info in answer.tracks:
            self._mids[info.mid] = info.track_id
            track = self.participant.tracks.get(info.track_id)
            if track is None:
                track = Track(
                    id=info.track_id,
                    owner=self.participant.id,
                    kind=TrackKind(info.kind),
                    source=TrackSource(sources.get(info.mid, _default_source(info.kind))),
                    codec=info.codec,
                    layers=[SimulcastLayer(s.rid, s.width, s.height) for s in info.simulcast],
                )
                self.gateway.rooms.publish_track(self.room, track)
            tracks.append({**track.to_wire(), "mid": info.mid})
        return {"type": "answer", "pc": "publish", "sdp": answer.sdp, "tracks": tracks}

    async def _on_answer(self, message: Message) -> None:
        assert self.endpoint is not None
        if message["pc"] != "subscribe":
            raise Problem(
                "invalid_message", "clients answer only on the 'subscribe' connection", field="/pc"
            )
        if not self._awaiting_answer:
            raise Problem("invalid_state", "no subscribe offer is waiting for an answer", 409)
        self.endpoint.accept_subscribe_answer(message["sdp"])
        self._awaiting_answer = False
        if self._offer_wanted:
            await self._send_offer()

    async def _on_candidate(self, message: Message) -> None:
        return None  # ICE-lite: the server answers the client's checks; trickled candidates are not needed

    def _schedule_offer(self) -> None:
        if self.state is SessionState.JOINED:
            asyncio.create_task(self._send_offer())

    async def _send_offer(self) -> None:
        if self.endpoint is None or self._awaiting_answer or self.state is not SessionState.JOINED:
            return
        self._offer_wanted = False
        offer = self.endpoint.create_subscribe_offer()
        if offer is None:
            return
        owners = {t.id: t.owner for t in self.room.tracks()} if self.room else {}
        self._awaiting_answer = True
        await self.send(
            {
                "type": "offer",
                "pc": "subscribe",
                "sdp": offer.sdp,
                "tracks": [
                    {"mid": mid, "track_id": track_id, "participant_id": owners.get(track_id, "")}
                    for mid, track_id in offer.tracks
                ],
            }
        )

    # tracks ----------------------------------------------------------------------------
    async def _on_unpublish(self, message: Message) -> None:
        assert self.room is not None and self.participant is not None and self.endpoint is not None
        self.gateway.rooms.unpublish_track(self.room, self.participant.id, message["track_id"])
        self.endpoint.unpublish(message["track_id"])
        self._retired.discard(message["track_id"])

    async def _on_mute(self, message: Message) -> None:
        assert self.room is not None and self.participant is not None
        track = self._find_track(message["track_id"])
        if track.owner != self.participant.id and not (
            self.participant.is_host and message["muted"]
        ):
            raise Problem("forbidden", "only a host may mute someone else, and only to mute", 403)
        self.gateway.rooms.set_muted(self.room, track.owner, track.id, message["muted"])

    async def _on_subscription(self, message: Message) -> None:
        assert self.endpoint is not None
        track = self._find_track(message["track_id"])
        if "subscribed" in message:
            self.endpoint.set_paused(track.id, not message["subscribed"])
        if "max_height" in message:
            self.endpoint.set_max_height(track.id, message["max_height"])

    def _find_track(self, track_id: str) -> Track:
        assert self.room is not None
        for track in self.room.tracks():
            if track.id == track_id:
                return track
        raise Problem(
            "track_not_found", f"no track '{track_id[:64]}' in this room", 404, "/track_id"
        )

    # people and chat -----------------------------------------------------------------------
    async def _on_chat(self, message: Message) -> None:
        assert self.room is not None and self.participant is not None
        self.gateway.rooms.chat(self.room, self.participant.id, message["text"], message.get("to"))

    async def _on_hand(self, message: Message) -> None:
        """Raise or lower one's own hand; a host lowers anyone's (8.17; a partner's participant's
        home is asked to lower it too, 14.7)."""
        assert self.room is not None and self.participant is not None
        target_id = message.get("participant_id", self.participant.id)
        if target_id != self.participant.id:
            if not self.participant.is_host or message["raised"]:
                raise Problem(
                    "forbidden", "only a host may lower someone else's hand, and only lower", 403
                )
            target = self.room.participants.get(target_id)
            if target is None:
                raise Problem(
                    "participant_not_found", "no such participant", 404, "/participant_id"
                )
        if not self._hands.allow(self.participant.id):
            raise Problem("rate_limited", "too many hands raised and lowered; wait and retry", 429)
        self.gateway.rooms.set_hand(self.room, target_id, message["raised"])

    async def _on_reaction(self, message: Message) -> None:
        assert self.room is not None and self.participant is not None
        self.gateway.rooms.react(self.room, self.participant.id, message["emoji"])

    async def _on_unmute_request(self, message: Message) -> None:
        """A host asks one participant to unmute (8.19); the server unmutes nothing."""
        assert self.room is not None and self.participant is not None
        self._require_host()
        target = self.room.participants.get(message["participant_id"])
        if target is None:
            raise Problem("participant_not_found", "no such participant", 404, "/participant_id")
        if target.origin != "ors":
            raise Problem(
                "invalid_state",
                "only an ORS participant can be asked to unmute; a phone unmutes itself",
                409,
                "/participant_id",
            )
        kind = message.get("kind", "audio")
        self.gateway.rooms.request_unmute(self.room, self.participant.id, target.id, kind)

    async def _on_update(self, message: Message) -> None:
        assert self.room is not None and self.participant is not None
        name = _client_name(message)
        if not self._renames.allow(self.participant.id):
            raise Problem("rate_limited", "too many renames; wait and retry", 429)
        self.gateway.rooms.update_name(self.room, self.participant.id, name)

    async def _on_admit(self, message: Message) -> None:
        assert self.room is not None
        self._require_host()
        # the id of someone a host removed: let that person join again (8.10)
        if self.gateway.rooms.let_back(self.room, message["participant_id"]):
            return
        self.gateway.rooms.admit(self.room, message["participant_id"])

    async def _on_remove(self, message: Message) -> None:
        assert self.room is not None
        self._require_host()
        target = self._target(message)
        reason = "denied" if target.state is ParticipantState.LOBBY else "removed"
        self.gateway.rooms.remove_participant(self.room, target.id, reason)

    async def _on_admit_all(self, message: Message) -> None:
        assert self.room is not None
        self._require_host()
        self.gateway.rooms.admit_all(self.room)

    async def _on_set_role(self, message: Message) -> None:
        assert self.room is not None
        self._require_host()
        target = self._target(message)
        if not self._role_changes.allow(self.participant.id if self.participant else ""):
            raise Problem("rate_limited", "too many role changes; wait and retry", 429)
        self.gateway.rooms.set_role(self.room, target.id, Role(message["role"]))

    def _target(self, message: Message) -> Participant:
        """The participant a host's message names (``participant_id``), in the lobby or joined."""
        assert self.room is not None
        target = self.room.participants.get(message["participant_id"])
        if target is None:
            raise Problem("participant_not_found", "no such participant", 404, "/participant_id")
        return target

    def _require_host(self) -> None:
        if self.participant is None or self.participant.role is not Role.HOST:
            raise Problem("forbidden", "only a host may do this", 403)

    async def _on_dial(self, message: Message) -> None:
        assert self.room is not None
        self._require_host()
        if self.grant is None or self.grant.anonymous:
            # Anyone may create a room and host it; a call goes out through the operator's trunk
            # to whatever number is typed, so it needs a host token the operator issued.
            raise Problem(
                "forbidden",
                "a host who joined anonymously cannot dial out; an operator can "
                "(rondpoint dial), or a host token issued by the operator",
                403,
            )
        diallers = self.gateway.diallers
        if not diallers.schemes():
            raise Problem("invalid_state", "this server has no telephony", 409)
        try:
            diallers.dial(self.room.id, message["to"], message.get("trunk"))
        except DialError as error:
            raise Problem("invalid_message", str(error), field="/to") from None

    async def _on_ping(self, message: Message) -> Message:
        return {"type": "pong"}

    async def _on_leave(self, message: Message) -> None:
        self._leaving = True  # the reply goes out first, then `left`

    # room events ----------------------------------------------------------------------------
    async def _pump_events(self) -> None:
        assert self._events is not None
        try:
            async for event in self._events:
                await self._on_event(event)
                if self.state is SessionState.LEFT:
                    return  # the event ended this session (a host removed it): nothing to deliver
                if self._offer_wanted and self._events.queue.empty():
                    await self._send_offer()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("ORS event delivery failed", extra={"room": self.room_id})

    async def _on_event(self, event: RoomEvent) -> None:
        me = self.participant
        if me is None:
            return
        if isinstance(event, ParticipantLeft) and event.participant.id == me.id:
            await self.end(event.reason, already_removed=True)
            return
        if isinstance(event, ParticipantUpdated) and event.participant.id == me.id:
            if self.state is SessionState.LOBBY and me.state is ParticipantState.JOINED:
                await self.send(self._enter_room())
            else:  # a new name or role, in the room or in the lobby (8.9): the sender sees it too
                await self.send({"type": "participant_updated", "participant": me.to_wire()})
                await self._show_lobby()
            return
        if isinstance(event, LobbyStatus):
            if self.state is SessionState.LOBBY:
                await self.send({"type": "lobby_status", "hosts_present": event.hosts_present})
            return
        if self.state is not SessionState.JOINED:
            return
        message = self._translate(event, me)
        if message is not None:
            await self.send(message)

    async def _show_lobby(self) -> None:
        """A participant made a host (8.15) sees the lobby from then on, as if it had joined as
        one: `participant_joined` for each participant waiting there."""
        if self.state is not SessionState.JOINED or self.room is None:
            return
        for waiting in self.room.waiting():
            if waiting.id not in self._visible and self._is_visible(waiting):
                self._visible.add(waiting.id)
                await self.send({"type": "participant_joined", "participant": waiting.to_wire()})

    def _translate(self, event: RoomEvent, me: Participant) -> Message | None:
        if isinstance(event, ParticipantJoined | ParticipantUpdated):
            other = event.participant
            if other.id == me.id or not self._is_visible(other):
                return None
            if other.id not in self._visible:
                self._visible.add(other.id)
                return {"type": "participant_joined", "participant": other.to_wire()}
            return {"type": "participant_updated", "participant": other.to_wire()}
        if isinstance(event, ParticipantLeft):
            if event.participant.id not in self._visible:
                return None
            self._visible.discard(event.participant.id)
            return {
                "type": "participant_left",
                "participant_id": event.participant.id,
                "reason": event.reason,
            }
        if isinstance(event, TrackPublished):
            if event.track.owner == me.id:
                return None
            if self.endpoint is not None and self.grant is not None and self.grant.can_subscribe:
                self._offer_wanted |= self.endpoint.subscribe(event.track.id)
            return {"type": "track_published", "track": event.track.to_wire()}
        if isinstance(event, TrackUnpublished):
            if self.endpoint is not None and event.track.owner != me.id:
                self.endpoint.unsubscribe(event.track.id)
                self._offer_wanted = True
            return {
                "type": "track_unpublished",
                "track_id": event.track.id,
                "participant_id": event.track.owner,
            }
        if isinstance(event, TrackMuted):
            return {
                "type": "track_muted",
                "track_id": event.track.id,
                "participant_id": event.track.owner,
                "muted": event.track.muted,
            }
        if isinstance(event, ActiveSpeakers):
            return {
                "type": "active_speakers",
                "speakers": [
                    {"participant_id": pid, "level": round(level, 3)}
                    for pid, level in event.speakers
                ],
            }
        if isinstance(event, ChatMessage):
            if not event.visible_to(me.id):
                return None
            return {"type": "chat", "message": event.to_wire()}
        if isinstance(event, Reaction):
            return {
                "type": "reaction",
                "participant_id": event.participant_id,
                "emoji": event.emoji,
                "at": int(event.timestamp * 1000),
            }
        if isinstance(event, UnmuteRequested):
            if event.participant_id != me.id:
                return None
            return {"type": "unmute_requested", "by": event.by, "kind": event.kind}
        if isinstance(event, Caption):
            return {
                "type": "caption",
                "participant_id": event.participant_id,
                "text": event.text,
                "final": event.final,
                "language": event.language,
            }
        return None

    # resumption (6.6) -------------------------------------------------------------------
    def _park(self) -> bool:
        """The socket closed without `leave`: keep the joined participant, its tracks and its
        media endpoint for the grace, the others told it is reconnecting. False, keeping
        nothing, when the server does not resume or its bounds are reached."""
        grace = self.gateway.config.rooms.reconnect_grace
        if self.state is not SessionState.JOINED or not grace:
            return False
        assert self.room is not None and self.participant is not None
        if self.room.participants.get(self.participant.id) is not self.participant:
            return False  # it has just left (a host removed it): nothing to keep
        if not self.gateway.rooms.set_reconnecting(self.room, self.participant.id, True):
            return False
        self.state = SessionState.PARKED
        self._grace = asyncio.get_running_loop().call_later(grace, self._grace_over)
        log.info(
            "participant reconnecting",
            extra={"room": self.room.id, "participant": self.participant.id},
        )
        return True

    def _grace_over(self) -> None:
        self._grace = None
        if self.state is SessionState.PARKED:
            self._ending = asyncio.create_task(self._close("disconnected"))

    def _hand_over(self) -> None:
        """Another session resumes this one's participant (6.6): stop following the room and
        give up the participant and its endpoint, removing nothing. A socket still open (its
        end not seen yet) is told `left` (`replaced`) and closed."""
        self._stop()
        self.participant = self.endpoint = None
        if not self.ws.closed:
            self._ending = asyncio.create_task(self._say_replaced())

    async def _say_replaced(self) -> None:
        await self.send({"type": "left", "reason": "replaced"})
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.ws.close()

    def _retire(self, track_ids: set[str]) -> None:
        """A resumed session's tracks from before: replaced by its first publish offer, or
        unpublished at the end of the grace."""
        self._retired = track_ids
        if track_ids:
            grace = self.gateway.config.rooms.reconnect_grace
            self._retire_deadline = asyncio.get_running_loop().call_later(grace, self._drop_retired)

    def _drop_retired(self) -> None:
        """Unpublish the tracks from before the resume that are still retired (the first
        publish offer has replaced them, or the grace is over)."""
        if self._retire_deadline is not None:
            self._retire_deadline.cancel()
            self._retire_deadline = None
        retired, self._retired = self._retired, set()
        if self.room is None or self.participant is None:
            return
        for track_id in retired:
            if track_id in self.participant.tracks:
                self.gateway.rooms.unpublish_track(self.room, self.participant.id, track_id)
            if self.endpoint is not None:
                self.endpoint.unpublish(track_id)

    # leaving --------------------------------------------------------------------------------
    def _fell_behind(self) -> None:
        """The bus's call when this session's client fell EVENT_BACKLOG events behind."""
        if self.state is not SessionState.LEFT and self._slow_close is None:
            self._slow_close = asyncio.create_task(self._close_too_slow())

    async def _close_too_slow(self) -> None:
        """Take the participant out (the others see `disconnected`) and close the socket with
        CLOSE_TOO_SLOW, rather than keep a session that no longer hears the room."""
        log.warning(
            "ORS client fell %d room events behind; closing its session",
            EVENT_BACKLOG,
            extra={
                "room": self.room_id,
                "participant": self.participant.id if self.participant else "",
            },
        )
        await self._close("disconnected")
        if self.transport is not None:
            # a client that never reads again would hold the connection, and the messages
            # waiting for it, for ever: the close frame waits its turn this long, no longer
            asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, self.transport.abort)
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow")

    async def stop_serving(self) -> None:
        """The gateway stops: take the participant out and close the socket with
        CLOSE_SERVICE_RESTART, without `left`, so that the client joins again once the gateway
        is back (spec 6.7) rather than show that the meeting ended."""
        if self.state is SessionState.LEFT:
            return
        await self._close("disconnected")
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.ws.close(code=CLOSE_SERVICE_RESTART, message=b"service restart")

    async def end(self, reason: str, already_removed: bool = False) -> None:
        """Tell the client why it leaves, remove it from the room and close the socket."""
        if self.state is SessionState.LEFT:
            return
        await self.send({"type": "left", "reason": reason})
        await self._close(reason, already_removed)
        await self.ws.close()

    def _stop(self) -> None:
        """The session ends: it no longer follows the room, and no timer of it runs."""
        self.state = SessionState.LEFT
        if self._event_task is not None and self._event_task is not asyncio.current_task():
            self._event_task.cancel()
        if self._events is not None:
            self._events.close()
        for timer in (self._grace, self._retire_deadline):
            if timer is not None:
                timer.cancel()
        self._grace = self._retire_deadline = None

    async def _close(self, reason: str, already_removed: bool = False) -> None:
        if self.state is SessionState.LEFT:
            return
        parked = self.state is SessionState.PARKED
        self._stop()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        if self.room is not None and self.participant is not None:
            if not already_removed:
                # the others see a replaced session as an ordinary leave (the person is still
                # here), and a kept participant (6.6) replaced by a new one as what it was
                seen_as = reason
                if reason == "replaced":
                    seen_as = "disconnected" if parked else "left"
                self.gateway.rooms.remove_participant(self.room, self.participant.id, seen_as)
            log.info(
                "participant left",
                extra={"room": self.room.id, "participant": self.participant.id, "reason": reason},
            )
        if self.grant is not None:
            key = (self.room_id, self.grant.identity)
            if self.gateway.sessions.get(key) is self:
                del self.gateway.sessions[key]


def _digest(resume_token: str) -> bytes:
    return hashlib.sha256(resume_token.encode()).digest()


def _default_source(kind: str) -> str:
    return "microphone" if kind == "audio" else "camera"


def _client_name(message: Message) -> str:
    """The ``name`` of a join or update as the room shows it (spec 7.1); refused when nothing
    displayable remains (only controls, bidi or format characters, white space)."""
    name = display_name(message["name"])
    if not name:
        raise Problem(
            "invalid_message", "'name' has no character that can be displayed", field="/name"
        )
    return name
