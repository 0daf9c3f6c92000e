"""One phone call into a room (RFC 3261 UAS, RFC 3264 offer/answer, RFC 4028 session timers).

The call answers, plays the PIN prompt when the room needs one (RFC 4733 DTMF or SIP INFO,
``#`` ends the PIN), waits in the lobby when the room has one, joins the room as a participant
with origin ``sip``, and leaves it on BYE, on removal by a host, or when the room is deleted.
A call whose dispatch rule names a link target (``visio:UUID``) enters the target's local room
through the hub (gateway/links.py): the room is made and linked on demand, and the foreign room's
own lobby is respected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.links import AdmissionRefused
from gateway.media.audio.conference import RoomConference
from gateway.rooms import (
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    Role,
    Room,
    RoomError,
    Subscription,
    Track,
    TrackKind,
    TrackMuted,
    TrackSource,
)
from gateway.rooms.names import display_name
from protocols.sip.clock import SYSTEM_CLOCK, Clock, Timer, sleep
from protocols.sip.dialog import Dialog, SuccessRetransmission
from protocols.sip.dispatch import Route
from protocols.sip.lobby_wait import wait_in_lobby
from protocols.sip.media_leg import MediaLeg
from protocols.sip.message import NameAddress, Request, Response, make_response
from protocols.sip.offer_answer import SdpError
from protocols.sip.pin_entry import PinEntry
from protocols.sip.prompt_player import JOIN_TONE, LEAVE_TONE, PromptPlayer
from protocols.sip.session_timer import Expire, IntervalTooSmall, Refresh, SessionTimer
from protocols.sip.transaction import Action, Send, TransactionKey, new_tag
from protocols.sip.transfer import BlindTransfer

if TYPE_CHECKING:
    from protocols.sip.service import SipService
    from protocols.sip.transport import SipTransport

log = logging.getLogger(__name__)

Address = tuple[str, int]
MUTE_TOGGLE = "*6"
CALLS_PER_UNTRUSTED_ADDRESS = 20
"""Calls at once from one address that is no trunk's: an INVITE flood from one source cannot take
every RTP port (each call holds one until its BYE, or 64*T1 when the flood never ACKs)."""


class CallState(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


_RELEASES: set[asyncio.Task[None]] = set()
"""Linked rooms being released after their caller left (strong references until done)."""


def masked_name(number: str, mask: bool) -> str:
    digits = "".join(c for c in number if c.isdigit())
    if not digits:
        return "Phone"
    # the number is the caller's From user part: whatever the caller's phone or PBX put there
    return f"Phone ••• {digits[-2:]}" if mask else display_name(f"Phone {number}")


class InboundCall:
    """A call from a phone, from INVITE to BYE: the SIP dialog, and the call's way through the
    PIN prompt and the lobby into a room. Its audio is ``media`` (protocols/sip/media_leg.py),
    what it hears ``prompts``, the PIN ``pin_entry``; all read time from ``clock``."""

    def __init__(
        self,
        service: SipService,
        transport: SipTransport,
        invite: Request,
        key: TransactionKey,
        source: Address,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.service = service
        self.transport = transport
        self.invite = invite
        self.key = key
        self.source = source
        self.clock = clock
        self.failure_key = source[0]
        """Whom wrong PINs count against: the address, or a trunk's caller (set by the service)."""
        self.call_id = invite.headers.get("Call-ID") or ""
        self.local_tag = new_tag()
        self.state = CallState.RINGING
        self.dialog: Dialog | None = None
        self.media = MediaLeg(clock, service.ports, self._key_pressed)
        self.prompts = PromptPlayer(self.media, service.config.language, self.call_id)
        self.pin_entry = PinEntry(clock)
        self.room: Room | None = None
        self.participant: Participant | None = None
        self.timer = SessionTimer()
        self.retransmission: SuccessRetransmission | None = None
        self._task: asyncio.Task[None] | None = None
        self._events: Subscription | None = None
        self._refresh_timer: Timer | None = None
        self._recent_digits = ""
        self.transferring: BlindTransfer | None = None
        """The last transfer asked of the phone (RFC 3515 REFER)."""
        self._timer_headers: list[tuple[str, str]] = []
        self.linked: Route | None = None
        """The route to a link target's local room this call took, until the call ends."""
        self.ivr_room = f"ivr-{secrets.token_hex(6)}"
        """A room of its own on the relay for the prompts, until the call joins a real room."""
        caller = NameAddress.parse(invite.headers.get("From") or "<sip:anonymous@invalid>")
        self.caller_number = caller.uri.user or ""

    # answering -----------------------------------------------------------------------------
    def start(self, user: str, trusted: bool, srtp: str = "optional") -> None:
        self.media.srtp = srtp
        if not trusted and self._calls_from_source() > CALLS_PER_UNTRUSTED_ADDRESS:
            response = self._response(503, "Service Unavailable")
            response.headers.add("Retry-After", "30")
            self._finish_with(response)
            return
        try:
            self.media.offer = self.media.read_offer(self.invite.body)
        except SdpError as error:
            response = self._response(488, "Not Acceptable Here")
            response.headers.add("Warning", f'304 rondpoint "{error}"')
            self._finish_with(response)
            return
        timer_answer = self.timer.answer_request(self.invite)
        if isinstance(timer_answer, IntervalTooSmall):
            response = self._response(timer_answer.status, timer_answer.reason)
            for name, value in timer_answer.headers:
                response.headers.add(name, value)
            self._finish_with(response)
            return
        try:
            self.media.open()
        except OSError:
            response = self._response(503, "Service Unavailable")
            response.headers.add("Retry-After", "30")
            self._finish_with(response)
            return
        self._timer_headers = timer_answer
        route = self.service.dispatcher.route(user, trusted, self.service.config.allow_anonymous)
        self.prompts.language = route.language
        self.transport.send_response(self.key, self._response(180, "Ringing"))
        self._task = asyncio.get_running_loop().create_task(self._run(route))

    def _calls_from_source(self) -> int:
        """Inbound calls from this call's address, this one included (it is already pending)."""
        calls = [*self.service.calls.values(), *self.service._pending.values()]
        return sum(
            1
            for call in calls
            if isinstance(call, InboundCall)
            and call.source[0] == self.source[0]
            and call.state is not CallState.ENDED
        )

    def _response(self, status: int, reason: str) -> Response:
        response = make_response(self.invite, status, reason, to_tag=self.local_tag)
        response.headers.add("Server", "Rondpoint")
        return response

    def _finish_with(self, response: Response) -> None:
        self.transport.send_response(self.key, response)
        self.state = CallState.ENDED
        self.service.forget(self)

    async def _answer(self) -> None:
        assert self.media.endpoint is not None and self.media.offer is not None
        await self.media.endpoint.start()
        response = self._response(200, "OK")
        response.headers.add("Contact", self.service.contact(self.transport))
        response.headers.add("Allow", self.service.ALLOW)
        for name, value in self._timer_headers:
            response.headers.add(name, value)
        response.headers.add("Content-Type", "application/sdp")
        response.body = self.media.answer_sdp(self.service.media_ip).encode()
        self.dialog = Dialog.as_uas(self.invite, response)
        self.state = CallState.ANSWERED
        self.service.register_dialog(self)
        self.transport.send_response(self.key, response)
        self.retransmission = SuccessRetransmission(
            response, self.source, self.dialog.id, reliable=self.transport.kind != "udp"
        )
        # the transaction already sent the 2xx once: keep only the retransmission timers
        self.transport.execute([a for a in self.retransmission.start() if not isinstance(a, Send)])
        self.timer.response_sent(self.clock.monotonic())
        self._schedule_session_timer()
        self._attach_conference(self.service.relay.conference(self.ivr_room))

    # media, keys and prompts -----------------------------------------------------------------
    def _attach_conference(self, conference: RoomConference) -> None:
        self.media.attach(conference, self._leg_id())

    def _leg_id(self) -> str:
        """The call's leg in a conference: its participant's id, the IVR room's before it has one."""
        return self.participant.id if self.participant is not None else self.ivr_room

    def _key_pressed(self, key: str) -> None:
        """A key from the phone (telephone-event or INFO): towards the PIN; ``*6`` toggles mute."""
        self.pin_entry.press(key)
        self._recent_digits = (self._recent_digits + key)[-2:]
        if self._recent_digits == MUTE_TOGGLE and self.participant is not None:
            self._recent_digits = ""
            self._toggle_mute()

    # the call's life ---------------------------------------------------------------------------
    async def _run(self, route: Route) -> None:
        try:
            await sleep(self.clock, self.service.answer_delay)
            if self.state is not CallState.RINGING:
                return
            await self._answer()
            found = await self._find_route(route)
            if found is None or found.room_id is None:
                await self.prompts.play("goodbye")
                self.hang_up("no PIN")
                return
            if found.link:
                if not await self._enter_linked_room(found):
                    return
                await self._join(found.room_id, lobby=False)
                return
            await self._join(found.room_id)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("phone call failed", extra={"call_id": self.call_id})
            self.hang_up("error")

    async def _find_route(self, route: Route) -> Route | None:
        """The route once its PIN, if any, is typed; at the bare PIN prompt the PIN finds it."""
        rooms = self.service.rooms
        pins: list[str] = []
        if route.room_id is not None:
            if rooms.exists(route.room_id):
                pins.append(rooms.get(route.room_id).policy.pin)
            pins = [p for p in (route.pin, *pins) if p]
            if not pins:
                return route
        for _ in range(self.service.config.pin_attempts):
            await self.prompts.play("enter-pin")
            pin = await self.pin_entry.read()
            if self.service.guard.banned(self.failure_key):
                return None  # a banned address (or trunk caller) guesses no more, on any call
            if route.room_id is not None:
                if pin and any(secrets.compare_digest(pin, p) for p in pins):
                    return route
            elif (
                pin
                and (found := self.service.dispatcher.route_for_pin(pin, self.prompts.language))
                is not None
            ):
                return found
            self.service.guard.failure(self.failure_key, "room PIN")
            if self.service.guard.banned(self.failure_key):
                return None
            await self.prompts.play("wrong-pin")
        return None

    async def _enter_linked_room(self, route: Route) -> bool:
        """Enter a link target's local room through the hub (made and linked on demand, past the
        foreign room's lobby, the lobby prompt playing while the caller waits); False when the
        call was ended (goodbye prompt) because the caller cannot enter."""
        assert route.room_id is not None
        self.linked = route
        scheme = route.link.split(":", 1)[0]
        name = masked_name(self.caller_number, self.service.config.mask_numbers)
        try:
            await self.service.gateway.links.enter(
                route.link, name, lambda: self.prompts.start("lobby")
            )
        except AdmissionRefused as refused:
            outcome = refused.admission.outcome.value
            log.info(
                "phone not admitted by the linked room's lobby",
                extra={"call_id": self.call_id, "outcome": outcome},
            )
            await self.prompts.play("goodbye")
            self.hang_up(f"{scheme} lobby: {outcome}")
            return False
        except RoomError as error:  # LinkError: the scheme is not linked here, the link failed
            log.warning(
                "phone cannot enter a linked room: %s", error, extra={"call_id": self.call_id}
            )
            await self.prompts.play("goodbye")
            self.hang_up(f"{scheme} unavailable")
            return False
        return self.state is CallState.ANSWERED

    async def _release_linked_room(self, route: Route) -> None:
        assert route.room_id is not None
        pending = sum(
            1
            for call in [*self.service.calls.values(), *self.service._pending.values()]
            if isinstance(call, InboundCall)
            and call is not self
            and call.linked == route
            and call.state is not CallState.ENDED
        )
        try:
            await self.service.gateway.links.release(route.room_id, route.link, pending)
        except Exception:
            log.exception("a linked room could not be released", extra={"room": route.room_id})

    async def _join(self, room_id: str, lobby: bool | None = None) -> None:
        rooms = self.service.rooms
        room = rooms.get(room_id)
        self._events = self.service.bus.subscribe(room_id)
        name = masked_name(self.caller_number, self.service.config.mask_numbers)
        address = name if self.service.config.mask_numbers else self.caller_number
        try:
            participant = rooms.add_participant(
                room, name, Role.GUEST, origin="sip", origin_address=address, lobby=lobby
            )
        except RoomError as refused:  # a full room or lobby: the caller hears goodbye
            log.info(
                "phone refused by the room",
                extra={"call_id": self.call_id, "room": room_id, "reason": refused.code},
            )
            await self.prompts.play("goodbye")
            self.hang_up(refused.code)
            return
        self.room, self.participant = room, participant
        if participant.state is ParticipantState.LOBBY:
            await wait_in_lobby(
                self.clock,
                participant,
                lambda: self.state is CallState.ANSWERED,
                lambda: self.prompts.start("lobby"),
                self._next_event,
            )
            if self.state is not CallState.ANSWERED:
                return
        conference = self.service.relay.conference(room_id)
        self._attach_conference(conference)
        self.service.relay.close_room(self.ivr_room)
        for track in room.tracks():
            if track.kind is TrackKind.AUDIO:
                conference.add_track(track.id)
        assert self.media.leg is not None
        track_id = conference.enter_room(self.media.leg, participant.id)
        rooms.publish_track(
            room,
            Track(track_id, participant.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus"),
        )
        log.info("phone joined a room", extra={"room": room_id, "participant": participant.id})
        self.prompts.notice("joined")
        while self.state is CallState.ANSWERED:
            await self._next_event()

    async def _next_event(self) -> None:
        """The room's next event, as it concerns the phone: its own removal, its track muted by a
        host, tones for others joining and leaving."""
        assert self._events is not None
        event = await self._events.queue.get()
        me = self.participant
        if me is None:
            return
        if isinstance(event, ParticipantLeft):
            if event.participant.id == me.id:
                if self.state is CallState.ANSWERED:
                    self.hang_up(event.reason, already_left=True)
            elif me.state is ParticipantState.JOINED:
                self.prompts.tone(LEAVE_TONE)
        elif (
            isinstance(event, TrackMuted)
            and event.track.owner == me.id
            and self.media.leg is not None
        ):
            self.media.leg.muted = event.track.muted
        elif (
            isinstance(event, ParticipantJoined)
            and event.participant.id != me.id
            and event.participant.state is ParticipantState.JOINED
            and me.state is ParticipantState.JOINED
        ):
            self.prompts.tone(JOIN_TONE)

    def _toggle_mute(self) -> None:
        if self.room is None or self.participant is None:
            return
        muted = self.media.toggle_mute(self.service.rooms, self.room, self.participant)
        if muted is not None:
            self.prompts.notice("muted" if muted else "unmuted")

    # requests from the phone ---------------------------------------------------------------------
    def cancelled(self) -> None:
        """CANCEL before the answer: 487 to the INVITE (RFC 3261 9.2)."""
        if self.state is CallState.RINGING:
            self.transport.send_response(self.key, self._response(487, "Request Terminated"))
            self._end()

    def ack_received(self) -> None:
        if self.retransmission is not None:
            self.transport.execute(self.retransmission.ack_received())

    def in_dialog(self, request: Request, key: TransactionKey | None) -> None:
        assert self.dialog is not None
        if request.method == "ACK":
            self.ack_received()
            return
        if key is None:
            return
        refused = self.dialog.receive_request(request)
        if refused is not None:
            self.transport.send_response(key, refused)
            return
        method = request.method
        if method == "BYE":
            self.transport.send_response(key, make_response(request, 200))
            self._end("left")
        elif method in ("INVITE", "UPDATE"):
            self._reoffer(request, key)
        elif method == "INFO":
            self._info(request, key)
        elif method == "OPTIONS":
            self.transport.send_response(key, self.service.options_response(request))
        elif method == "NOTIFY" and self.transferring is not None and self.transferring.active:
            self.transport.send_response(key, make_response(request, 200))
            if self.transferring.notified(request.body):
                log.info("phone transferred out of the room", extra={"call_id": self.call_id})
                self.hang_up("transferred")
        elif method == "REFER":
            self.transport.send_response(key, make_response(request, 603, "Decline"))
        else:
            self.transport.send_response(key, make_response(request, 405, "Method Not Allowed"))

    def _reoffer(self, request: Request, key: TransactionKey) -> None:
        """re-INVITE or UPDATE: hold, resume, a new address or codec; no body: a session refresh."""
        assert self.media.endpoint is not None
        if request.body:
            try:
                offer = self.media.read_offer(request.body)
            except SdpError as error:
                response = make_response(request, 488, "Not Acceptable Here")
                response.headers.add("Warning", f'304 rondpoint "{error}"')
                self.transport.send_response(key, response)
                return
            participant_id = self.participant.id if self.participant is not None else None
            self.media.reoffer(offer, self._leg_id(), participant_id)
        response = make_response(request, 200)
        response.headers.add("Contact", self.service.contact(self.transport))
        timer_answer = self.timer.answer_request(request)
        if not isinstance(timer_answer, IntervalTooSmall):
            for name, value in timer_answer:
                response.headers.add(name, value)
        if request.body and self.media.offer is not None:
            response.headers.add("Content-Type", "application/sdp")
            response.body = self.media.answer_sdp(self.service.media_ip).encode()
        self.transport.send_response(key, response)
        if not isinstance(timer_answer, IntervalTooSmall):
            self.timer.response_sent(self.clock.monotonic())
            self._schedule_session_timer()

    def _info(self, request: Request, key: TransactionKey) -> None:
        """SIP INFO DTMF (application/dtmf-relay or application/dtmf), the RFC 4733 fallback."""
        self.transport.send_response(key, make_response(request, 200))
        content_type = (request.headers.get("Content-Type") or "").lower()
        body = request.body.decode("ascii", "replace").strip()
        digit = ""
        if "dtmf-relay" in content_type:
            for line in body.splitlines():
                name, _, value = line.partition("=")
                if name.strip().lower() == "signal":
                    digit = value.strip()
        elif "dtmf" in content_type:
            digit = body[:1]
        if digit and digit in "0123456789*#ABCD":
            self._key_pressed(digit)

    # session timers ----------------------------------------------------------------------------
    def _schedule_session_timer(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        deadline = self.timer.next_deadline()
        if deadline is None:
            return
        delay = max(0.0, deadline - self.clock.monotonic())
        self._refresh_timer = self.clock.call_later(delay, self._session_timer)

    def _session_timer(self) -> None:
        due = self.timer.due(self.clock.monotonic())
        if isinstance(due, Expire):
            self.hang_up("session expired")
            return
        if isinstance(due, Refresh) and self.dialog is not None:
            request = self.dialog.create_request(
                "UPDATE",
                via=self.service.via(self.transport),
                extra_headers=self.timer.request_headers(),
            )
            self.service.send_in_dialog(self, request)
        self._schedule_session_timer()

    # blind transfer out of the room (RFC 3515, RFC 5589) -------------------------------------
    def transfer(self, target: str) -> None:
        """Ask the phone to call ``target`` instead (REFER); the call ends once that succeeds."""
        if self.state is not CallState.ANSWERED or self.dialog is None:
            raise ValueError("the call is not answered")
        self.transferring = BlindTransfer(target)
        refer = self.dialog.create_request(
            "REFER",
            via=self.service.via(self.transport),
            extra_headers=self.transferring.refer_headers(self.service.contact(self.transport)),
        )
        self.service.send_in_dialog(self, refer)

    def response_received(self, response: Response) -> None:
        """A response to a request we sent in the dialog (BYE, UPDATE refresh, REFER)."""
        if (
            (response.headers.get("CSeq") or "").upper().endswith("REFER")
            and response.status >= 300
            and self.transferring is not None
        ):
            self.transferring.refused(response.status)
        if self.dialog is not None:
            self.dialog.receive_response(response)
        if 200 <= response.status < 300 and response.headers.get("Session-Expires"):
            self.timer.on_2xx(response, self.clock.monotonic())
            self._schedule_session_timer()

    # ending ----------------------------------------------------------------------------------
    def hang_up(self, reason: str, already_left: bool = False) -> None:
        """We end the call: BYE to the phone, and leave the room."""
        if self.state is CallState.ANSWERED and self.dialog is not None:
            bye = self.dialog.create_request("BYE", via=self.service.via(self.transport))
            self.service.send_in_dialog(self, bye)
        elif self.state is CallState.RINGING:
            self.transport.send_response(self.key, self._response(480, "Temporarily Unavailable"))
        self._end(reason, already_left)

    def timer_fired(self, name: str) -> list[Action]:
        if self.retransmission is None:
            return []
        actions = self.retransmission.timer_fired(name)
        if any(type(a).__name__ == "Terminated" for a in actions):
            self.hang_up("no ACK")  # RFC 3261 13.3.1.4: the 2xx was never acknowledged
        return actions

    def _end(self, reason: str = "left", already_left: bool = False) -> None:
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._events is not None:
            self._events.close()
        self.media.detach()
        self.service.relay.close_room(self.ivr_room)
        self.media.close()
        if self.room is not None and self.participant is not None and not already_left:
            self.service.rooms.remove_participant(self.room, self.participant.id, reason)
        self.service.forget(self)
        if self.linked is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to release
                task = asyncio.get_running_loop().create_task(
                    self._release_linked_room(self.linked)
                )
                _RELEASES.add(task)
                task.add_done_callback(_RELEASES.discard)
        log.info("phone call ended", extra={"reason": reason})
