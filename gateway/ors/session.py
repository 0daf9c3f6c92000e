"""One ORS client on its WebSocket (spec/ors-v1.md): join, media negotiation, room events, leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

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
    LEFT = "left"


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

    # the socket ------------------------------------------------------------------
    async def run(self) -> None:
        max_bytes = self.gateway.config.limits.max_message_bytes
        deadline = asyncio.get_running_loop().call_later(
            JOIN_DEADLINE_SECONDS, self._join_deadline_passed
        )
        try:
            async for frame in self.ws:
                if frame.type == WSMsgType.TEXT:
                    await self._receive(frame.data, max_bytes)
                elif frame.type == WSMsgType.BINARY:
                    await self._send_error(Problem("invalid_json", "messages are JSON text frames"))
                if self.state is SessionState.LEFT:
                    break
        finally:
            deadline.cancel()
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
        return self._enter_room()

    def _enter_room(self) -> Message:
        assert self.room is not None and self.participant is not None
        self.state = SessionState.JOINED
        others = [p for p in self.room.participants.values() if self._is_visible(p)]
        self._visible = {p.id for p in others}
        self.endpoint = self.gateway.relay.create_endpoint(self.room.id, self.participant.id)
        if self.grant is not None and self.grant.can_subscribe:
            for participant in others:
                for track in participant.tracks.values():
                    self._offer_wanted |= self.endpoint.subscribe(track.id)
        if self._offer_wanted:
            asyncio.get_running_loop().call_soon(self._schedule_offer)
        return {
            "type": "joined",
            "participant": self.participant.to_wire(),
            "room": self.room.to_wire(),
            "participants": [p.to_wire() for p in others],
            "ice_servers": self.gateway.ice_servers(self.participant.id),
            "chat": [
                m.to_wire() for m in self.gateway.rooms.chat_history(self.room, self.participant.id)
            ],
        }

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
        if self.endpoint is None or self._awaiting_answer:
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
        """Raise or lower one's own hand; a host lowers anyone's (8.17)."""
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
            if target.origin.startswith("federation:"):
                raise Problem(
                    "forbidden", "a partner's participant's hand is kept by its own server", 403
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

    async def end(self, reason: str, already_removed: bool = False) -> None:
        """Tell the client why it leaves, remove it from the room and close the socket."""
        if self.state is SessionState.LEFT:
            return
        await self.send({"type": "left", "reason": reason})
        await self._close(reason, already_removed)
        await self.ws.close()

    async def _close(self, reason: str, already_removed: bool = False) -> None:
        if self.state is SessionState.LEFT:
            return
        self.state = SessionState.LEFT
        if self._event_task is not None and self._event_task is not asyncio.current_task():
            self._event_task.cancel()
        if self._events is not None:
            self._events.close()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        if self.room is not None and self.participant is not None:
            if not already_removed:
                # the others see a replaced session as an ordinary leave: the person is still here
                seen_as = "left" if reason == "replaced" else reason
                self.gateway.rooms.remove_participant(self.room, self.participant.id, seen_as)
            log.info(
                "participant left",
                extra={"room": self.room.id, "participant": self.participant.id, "reason": reason},
            )
        if self.grant is not None:
            key = (self.room_id, self.grant.identity)
            if self.gateway.sessions.get(key) is self:
                del self.gateway.sessions[key]


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
