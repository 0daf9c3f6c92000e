"""Legacy 1:1 Matrix calls (``m.call.*``, the Matrix spec's "Voice over IP" module, version 1) to a
ghost: ``@{prefix}room_{ROOM}`` enters that room here, ``@{prefix}tel_{E164}`` dials the phone.

Element Web still places these calls in a direct-message room (Element X does not). A ghost of
either kind accepts an invite to a room (``m.room.member`` invite → it joins); an ``m.call.invite``
there is then handled as a call:

- ``room_ROOM``: the caller enters room ROOM here as a guest of origin ``matrix`` (their display
  name in that Matrix room, their user id as origin address and identity, so a host's removal
  holds). The room's policy applies: a room with a PIN refuses (a legacy call cannot type it), a
  lobby keeps the call ringing until a host admits (accepted) or denies (``m.call.reject``).
- ``tel_+E164``: only for users of our own homeserver (dialling costs the operator money): a
  private room here is made for the call (``matrix-call-…``, reserved), the caller is its
  participant and the phone is dialled into it through the gateway's diallers (``tel:``); the
  call is answered when the phone answers; busy/declined → ``user_busy``, no answer →
  ``invite_timeout``.

The call's media is one audio stream each way (gateway/media/webrtc_audio.py: ICE-lite, DTLS-SRTP
on the relay's socket), joined to the room's audio conference like a phone: the caller hears the
room's mix and is heard as one Opus track. The answer is not trickled: our one host candidate is in
the SDP, then an ``m.call.candidates`` with an empty candidate ends them; the caller's candidates
are not needed (ICE-lite). Video is declined; ``m.call.negotiate`` (renegotiation) is not
supported, the call goes on as first negotiated.

Either side ends it: ``m.call.hangup``/``m.call.reject`` from the caller, a ``select_answer`` of
another party, removal of the participant here, the phone leaving, or the caller's ICE consent
stopping (``ice_failed``); every end gives back the participant, the conference leg, the socket
session and the private room it took. Bounds: at most ``MAX_LEGACY_CALLS`` at once (more get
``user_busy``), the invite's ``lifetime`` (capped at ``MAX_RING_MS``) bounds the ringing, and an
invite older than its lifetime when it arrives is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.media.audio.codecs import AudioCodec
from gateway.media.webrtc_audio import WebRtcAudioLeg
from gateway.plugins import DialError
from gateway.rooms import (
    ParticipantLeft,
    ParticipantState,
    Role,
    RoomError,
    Track,
    TrackKind,
    TrackSource,
)
from gateway.rooms.events import Subscription
from gateway.rooms.model import Participant, Room
from gateway.rooms.names import display_name
from gateway.tasks import TaskSet
from protocols.matrix.client import MatrixError
from protocols.matrix.ids import GHOST_DEVICE, ROOM_PREFIX, TEL_PREFIX, is_ours, split_user_id

if TYPE_CHECKING:
    from gateway.server import Gateway
    from protocols.matrix.service import MatrixService

log = logging.getLogger(__name__)

MAX_LEGACY_CALLS = 20
"""Legacy calls bridged at once by one gateway; more are refused with ``user_busy``."""
DEFAULT_RING_MS = 60_000
"""How long a call rings when its invite says no ``lifetime``."""
MAX_RING_MS = 120_000
"""The longest an invite may ring (a larger ``lifetime`` is cut to it)."""
CONSENT_TIMEOUT = 30.0
"""Seconds without the caller's ICE consent checks after which the call is ``ice_failed``."""
MAX_REMEMBERED_ROOMS = 10_000
"""Matrix rooms whose legacy ghost is remembered; the oldest is forgotten beyond."""
PHONE_POLL = 0.2
"""How often a ringing phone's dialled call is looked at."""
PRIVATE_ROOM_PREFIX = "matrix-call-"
"""Names of the rooms made here for calls to phones (reserved: nobody else can make one)."""
VERSION = "1"
PARTY_ID = GHOST_DEVICE
"""Our party in every call: the ghost's device."""
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ROOM_ID = re.compile(r"[a-z0-9-]{3,64}")


@dataclass(frozen=True)
class LegacyTarget:
    """What a legacy ghost stands for: a room here (``room``) or a phone number (``tel``)."""

    kind: str
    value: str


def legacy_target(user_id: str, *, user_prefix: str, server_name: str) -> LegacyTarget | None:
    """The target of a legacy-call ghost ``@{prefix}room_{ROOM}`` / ``@{prefix}tel_{E164}`` on our
    server; None for any other user (or a malformed room name or number)."""
    parts = split_user_id(user_id)
    if parts is None or parts[1] != server_name or not parts[0].startswith(user_prefix):
        return None
    rest = parts[0][len(user_prefix) :]
    if rest.startswith(ROOM_PREFIX) and _ROOM_ID.fullmatch(rest[len(ROOM_PREFIX) :]):
        return LegacyTarget("room", rest[len(ROOM_PREFIX) :])
    if rest.startswith(TEL_PREFIX) and _E164.fullmatch(rest[len(TEL_PREFIX) :]):
        return LegacyTarget("tel", rest[len(TEL_PREFIX) :])
    return None


def ring_seconds(content: dict[str, Any], age_ms: int) -> float:
    """Seconds an invite may still ring: its lifetime (default ``DEFAULT_RING_MS``, at most
    ``MAX_RING_MS``) less its age; 0 or less when it has expired."""
    lifetime = content.get("lifetime")
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_RING_MS
    return (min(lifetime, MAX_RING_MS) - max(age_ms, 0)) / 1000


class CallRefused(Exception):
    """The call cannot be bridged. ``reason``: the hangup reason (None: ``m.call.reject``, the
    callee declined); ``notice``: what the ghost tells the caller in the room."""

    def __init__(self, reason: str | None, notice: str) -> None:
        super().__init__(notice)
        self.reason = reason
        self.notice = notice


@dataclass
class _Call:
    """One legacy call in progress."""

    matrix_room: str
    call_id: str
    caller: str
    caller_party: str
    ghost: str
    target: LegacyTarget
    offer: str
    ring_seconds: float
    caller_name: str = ""
    ended_by_caller: asyncio.Event = field(default_factory=asyncio.Event)
    answered: bool = False
    task: asyncio.Task[None] | None = None
    audio: WebRtcAudioLeg | None = None
    codec: AudioCodec | None = None
    room: Room | None = None
    participant: Participant | None = None
    private_room: str | None = None
    phone_participant: str | None = None
    in_conference: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.matrix_room, self.call_id)


class LegacyCalls:
    """Answers legacy calls to the legacy ghosts; ``start()`` with the plugin, ``close()`` when it
    stops."""

    def __init__(self, gateway: Gateway, service: MatrixService) -> None:
        self.gateway = gateway
        self.service = service
        self.config = service.config
        self.calls: dict[tuple[str, str], _Call] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks = TaskSet()
        self._ghost_rooms: dict[str, str] = {}
        """Matrix room -> the legacy ghost joined in it (seen since the start)."""

    def start(self) -> None:
        if self._unsubscribe is None:
            self.gateway.rooms.reserve(
                lambda name: name.startswith(PRIVATE_ROOM_PREFIX), "calls from Matrix to phones"
            )
            self._unsubscribe = self.service.listen(self.on_event)

    async def close(self) -> None:
        """Hang up every call (``user_hangup``) and wait for each to give back what it took."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for call in list(self.calls.values()):
            if call.task is not None:
                call.task.cancel()
        tasks = [c.task for c in self.calls.values() if c.task is not None] + list(self._tasks)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- Matrix events ------------------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        sender = event.get("sender", "")
        if kind == "m.room.member":
            await self._on_member(event)
            return
        if self._ours(sender):
            return
        content = event.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("call_id"), str):
            return
        call = self.calls.get((event["room_id"], content["call_id"]))
        if kind == "m.call.invite":
            await self._on_invite(event, content)
        elif call is None or sender != call.caller:
            return
        elif kind in ("m.call.hangup", "m.call.reject"):
            call.ended_by_caller.set()
        elif kind == "m.call.select_answer" and content.get("selected_party_id") != PARTY_ID:
            call.ended_by_caller.set()  # the caller chose another device of the callee's

    async def _on_member(self, event: dict[str, Any]) -> None:
        """A room invites a legacy ghost: the ghost joins it (a DM to call in), or declines when
        its room here does not exist. Which legacy ghost is in which room is remembered."""
        ghost = event.get("state_key")
        content = event.get("content")
        room_id: str = event["room_id"]
        if not isinstance(ghost, str) or not isinstance(content, dict):
            return
        target = self._target(ghost)
        membership = content.get("membership")
        if target is None:
            return
        if membership == "join":
            self._remember(room_id, ghost)
            return
        if membership != "invite" or self._ours(event.get("sender", "")):
            if membership in ("leave", "ban") and self._ghost_rooms.get(room_id) == ghost:
                del self._ghost_rooms[room_id]
            return
        try:
            if target.kind == "room" and not self.gateway.rooms.exists(target.value):
                await self.service.ghosts.register(ghost)
                await self.service.client.leave(room_id, as_user=ghost)
                return
            await self.service.ghosts.ensure(ghost, _ghost_name(target))
            await self.service.client.join(room_id, as_user=ghost)
            self._remember(room_id, ghost)
        except MatrixError as error:
            log.warning("legacy-call ghost cannot answer a room invite: %s", error)

    async def _on_invite(self, event: dict[str, Any], content: dict[str, Any]) -> None:
        room_id: str = event["room_id"]
        caller: str = event["sender"]
        unsigned = event.get("unsigned")
        age = unsigned.get("age") if isinstance(unsigned, dict) else None
        if not isinstance(age, int):
            stamp = event.get("origin_server_ts")
            age = int(time.time() * 1000) - stamp if isinstance(stamp, int) else 0
        seconds = ring_seconds(content, age)
        if seconds <= 0:
            log.info("legacy call invite expired before it arrived: ignored")
            return
        found = await self._callee(room_id, content.get("invitee"), caller)
        if found is None:
            return  # not a call to one of our legacy ghosts
        ghost, caller_name = found
        target = self._target(ghost)
        offer = content.get("offer")
        party = content.get("party_id")
        assert target is not None
        call = _Call(
            room_id,
            content["call_id"],
            caller,
            party if isinstance(party, str) else "",
            ghost,
            target,
            offer.get("sdp", "") if isinstance(offer, dict) else "",
            seconds,
            caller_name,
        )
        if call.key in self.calls:
            return  # the same invite again
        if len(self.calls) >= MAX_LEGACY_CALLS:
            self._spawn(self._refuse(call, CallRefused("user_busy", "Too many calls right now.")))
            return
        self.calls[call.key] = call
        call.task = asyncio.get_running_loop().create_task(
            self._run(call), name=f"matrix-legacy-call-{call.call_id[:32]}"
        )

    async def _callee(self, room_id: str, invitee: object, caller: str) -> tuple[str, str] | None:
        """(the legacy ghost the invite calls, the caller's name): its ``invitee``, else the
        legacy ghost we know joined the room, checked in the room's state; None when the call is
        not for a legacy ghost in the room."""
        ghost = invitee if isinstance(invitee, str) else self._ghost_rooms.get(room_id)
        if ghost is None or self._target(ghost) is None:
            return None
        try:
            state = await self.service.client.room_state(room_id, as_user=ghost)
        except MatrixError as error:
            log.info("legacy call: the room's members cannot be read as its ghost: %s", error)
            return None
        members = {
            e["state_key"]: e["content"]
            for e in state
            if e.get("type") == "m.room.member"
            and isinstance(e.get("state_key"), str)
            and isinstance(e.get("content"), dict)
        }
        if members.get(ghost, {}).get("membership") != "join":
            return None
        name = members.get(caller, {}).get("displayname")
        localpart = (split_user_id(caller) or (caller, ""))[0]
        return ghost, (
            display_name(name if isinstance(name, str) else "")
            or display_name(localpart)
            or "Matrix"
        )

    # --- one call -----------------------------------------------------------------------------

    async def _run(self, call: _Call) -> None:
        try:
            call.audio = self._audio_leg(call)
            async with asyncio.timeout(call.ring_seconds):
                ringing = asyncio.ensure_future(self._ring(call))
                hung_up = asyncio.ensure_future(call.ended_by_caller.wait())
                try:
                    await asyncio.wait((ringing, hung_up), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    hung_up.cancel()
                    if not ringing.done():
                        ringing.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await ringing
                if call.ended_by_caller.is_set():
                    return
                ringing.result()
            await self._answer(call)
            reason = await self._follow(call)
            if reason:
                await self._send(call, "m.call.hangup", {"reason": reason})
        except asyncio.CancelledError:  # the plugin stops: the caller is told
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._send(call, "m.call.hangup", {"reason": "user_hangup"})
            raise
        except CallRefused as refusal:
            await self._refuse(call, refusal)
        except TimeoutError:
            await self._refuse(call, CallRefused("invite_timeout", "Nobody answered in time."))
        except (MatrixError, RoomError, DialError, OSError) as error:
            log.warning("legacy call failed: %s", error)
            await self._refuse(call, CallRefused("unknown_error", "The call failed."))
        finally:
            self._release(call)
            self.calls.pop(call.key, None)

    def _audio_leg(self, call: _Call) -> WebRtcAudioLeg:
        relay = self.gateway.relay
        audio = WebRtcAudioLeg(relay.mux, relay.certificate, relay.candidate_ip)
        try:
            call.codec = audio.accept_offer(call.offer)
        except ValueError as error:  # SdpError: an offer we cannot take
            audio.close()
            log.info("legacy call offer refused: %s", error)
            raise CallRefused("unknown_error", "This call's audio cannot be taken.") from None
        return audio

    async def _ring(self, call: _Call) -> None:
        """Until the call can be answered: in the room here (room_), or the phone answered."""
        if call.target.kind == "room":
            await self._enter_room(call, call.target.value)
        else:
            await self._ring_phone(call)

    async def _enter_room(self, call: _Call, room_id: str) -> None:
        rooms = self.gateway.rooms
        try:
            room = rooms.get(room_id)
        except RoomError:
            raise CallRefused("unknown_error", "There is no such room.") from None
        if room.policy.pin and call.private_room is None:
            raise CallRefused(
                "unknown_error", "This room needs a PIN: a Matrix call cannot enter it."
            )
        events = self.gateway.bus.subscribe(room_id)
        try:
            try:
                participant = rooms.add_participant(
                    room,
                    call.caller_name,
                    Role.GUEST,
                    origin="matrix",
                    origin_address=call.caller,
                    lobby=False if call.private_room is not None else None,
                    identity=f"matrix:{call.caller}",
                )
            except RoomError as error:
                busy = error.code == "room_full"
                raise CallRefused("user_busy" if busy else None, str(error)) from None
            call.room, call.participant = room, participant
            while participant.state is ParticipantState.LOBBY:
                event = await events.queue.get()
                if isinstance(event, ParticipantLeft) and event.participant.id == participant.id:
                    call.participant = None
                    raise CallRefused(None, "A host of the room did not let you in.")
        finally:
            events.close()

    async def _ring_phone(self, call: _Call) -> None:
        parts = split_user_id(call.caller)
        if parts is None or parts[1] != self.config.server_name:
            raise CallRefused(
                "unknown_error", f"Only users of {self.config.server_name} can call phones here."
            )
        if "tel" not in self.gateway.diallers.schemes():
            raise CallRefused("unknown_error", "This gateway cannot call phones.")
        room_id = f"{PRIVATE_ROOM_PREFIX}{secrets.token_hex(6)}"
        self.gateway.rooms.create(room_id, internal=True)
        call.private_room = room_id
        await self._enter_room(call, room_id)
        try:
            dialled = self.gateway.diallers.dial(room_id, f"tel:{call.target.value}", None)
        except DialError as error:
            raise CallRefused("unknown_error", str(error)) from None
        while True:
            status = dialled.status()
            state = status.get("status")
            if state == "answered":
                phone = status.get("participant_id")
                call.phone_participant = phone if isinstance(phone, str) else None
                return
            if state in ("busy", "declined"):
                raise CallRefused("user_busy", f"The phone is {state}.")
            if state == "no answer":
                raise CallRefused("invite_timeout", "The phone did not answer.")
            if state not in ("calling", "ringing"):
                raise CallRefused("unknown_error", "The phone cannot be reached.")
            await asyncio.sleep(PHONE_POLL)

    async def _answer(self, call: _Call) -> None:
        """Join the room's conference, then send the answer and the end of our candidates."""
        audio, room, participant = call.audio, call.room, call.participant
        assert audio is not None and room is not None and participant is not None
        assert call.codec is not None
        conference = self.gateway.relay.conference(room.id)
        leg = conference.add_leg(participant.id, call.codec, audio.send, audio.telephone_event_pt)
        call.in_conference = True
        audio.on_rtp = leg.receive
        for track in room.tracks():
            if track.kind is TrackKind.AUDIO:
                conference.add_track(track.id)
        track_id = conference.enter_room(leg, participant.id)
        self.gateway.rooms.publish_track(
            room, Track(track_id, participant.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus")
        )
        assert leg.writer is not None
        sdp = audio.answer(leg.writer.ssrc, f"rondpoint-{participant.id}")
        await self._send(call, "m.call.answer", {"answer": {"type": "answer", "sdp": sdp}})
        call.answered = True
        end = {"candidate": "", "sdpMid": audio.audio_mid, "sdpMLineIndex": audio.audio_index}
        await self._send(call, "m.call.candidates", {"candidates": [end]})
        log.info("legacy call answered", extra={"room": room.id, "participant": participant.id})

    async def _follow(self, call: _Call) -> str:
        """Until the call ends; the hangup reason to send ("" when the caller ended it)."""
        room, participant = call.room, call.participant
        assert room is not None and participant is not None
        watched = {pid for pid in (participant.id, call.phone_participant) if pid is not None}
        if participant.id not in room.participants:
            call.participant = None
            return "user_hangup"
        if not watched <= set(room.participants):
            return "user_hangup"
        events = self.gateway.bus.subscribe(room.id)
        waits = [
            asyncio.ensure_future(call.ended_by_caller.wait()),
            asyncio.ensure_future(_left(events, watched)),
            asyncio.ensure_future(self._consent_lost(call)),
        ]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            events.close()
        if waits[0] in done:
            return ""
        if waits[2] in done:
            return "ice_failed"
        left = waits[1].result()
        if left == participant.id:
            call.participant = None
        return "user_hangup"

    async def _consent_lost(self, call: _Call) -> None:
        audio = call.audio
        assert audio is not None
        seen, since = audio.consent_checks, time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            if audio.consent_checks != seen:
                seen, since = audio.consent_checks, time.monotonic()
            elif time.monotonic() - since >= CONSENT_TIMEOUT:
                return

    def _release(self, call: _Call) -> None:
        """Give back all the call took: conference leg, participant, socket session, room."""
        room, participant = call.room, call.participant
        if room is not None and participant is not None:
            conference = self.gateway.relay.room_conference(room.id)
            if call.in_conference and conference is not None:
                conference.remove_leg(participant.id)
            self.gateway.rooms.remove_participant(room, participant.id)
        if call.audio is not None:
            call.audio.close()
        if call.private_room is not None:
            with contextlib.suppress(RoomError):
                self.gateway.rooms.delete(call.private_room)
            self.gateway.relay.close_room(call.private_room)
        call.room = call.participant = None

    async def _refuse(self, call: _Call, refusal: CallRefused) -> None:
        """Tell the caller why (a notice), end the call (reject or hangup); a ghost whose room
        here is gone leaves the Matrix room."""
        log.info("legacy call refused: %s", refusal.reason or "declined")
        client = self.service.client
        notice = {"msgtype": "m.notice", "body": refusal.notice}
        try:
            await client.send(call.matrix_room, "m.room.message", notice, as_user=call.ghost)
            if refusal.reason is None:
                await self._send(call, "m.call.reject", {})
            else:
                await self._send(call, "m.call.hangup", {"reason": refusal.reason})
            if call.target.kind == "room" and not self.gateway.rooms.exists(call.target.value):
                await client.leave(call.matrix_room, as_user=call.ghost)
        except MatrixError as error:
            log.warning("legacy call refusal not sent: %s", error)

    async def _send(self, call: _Call, event_type: str, content: dict[str, Any]) -> None:
        body = {"call_id": call.call_id, "party_id": PARTY_ID, "version": VERSION, **content}
        await self.service.client.send(call.matrix_room, event_type, body, as_user=call.ghost)

    # --- helpers --------------------------------------------------------------------------------

    def _remember(self, room_id: str, ghost: str) -> None:
        self._ghost_rooms.pop(room_id, None)
        self._ghost_rooms[room_id] = ghost
        while len(self._ghost_rooms) > MAX_REMEMBERED_ROOMS:
            del self._ghost_rooms[next(iter(self._ghost_rooms))]

    def _target(self, user_id: str) -> LegacyTarget | None:
        return legacy_target(
            user_id, user_prefix=self.config.user_prefix, server_name=self.config.server_name
        )

    def _ours(self, user_id: str) -> bool:
        return is_ours(
            user_id,
            sender_localpart=self.config.sender_localpart,
            user_prefix=self.config.user_prefix,
            server_name=self.config.server_name,
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coroutine)


async def _left(events: Subscription, watched: set[str]) -> str:
    """The id of the first of WATCHED to leave the room."""
    while True:
        event = await events.queue.get()
        if isinstance(event, ParticipantLeft) and event.participant.id in watched:
            return event.participant.id


def _ghost_name(target: LegacyTarget) -> str:
    return target.value if target.kind == "tel" else f"Room {target.value}"
