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
import functools
import logging
import secrets
import time
import wave
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gateway.links import AdmissionRefused
from gateway.media.audio.codecs import Samples
from gateway.media.audio.conference import PhoneLeg, RoomConference
from gateway.media.audio.resample import Resampler
from gateway.media.audio.telephone_event import DtmfDetector
from gateway.media.audio.tone import generate_tone
from gateway.media.rtp import RtpPacket
from gateway.media.rtp_endpoint import RtpEndpoint
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
from protocols.sip.dialog import Dialog, SuccessRetransmission
from protocols.sip.dispatch import Route
from protocols.sip.message import NameAddress, Request, Response, make_response
from protocols.sip.offer_answer import AudioOffer, SdpError, make_answer, read_offer
from protocols.sip.sdes import Crypto
from protocols.sip.session_timer import Expire, IntervalTooSmall, Refresh, SessionTimer
from protocols.sip.transaction import Action, Send, TransactionKey, new_tag

if TYPE_CHECKING:
    from protocols.sip.service import SipService
    from protocols.sip.transport import SipTransport

log = logging.getLogger(__name__)

Address = tuple[str, int]
PROMPTS = Path(__file__).resolve().parent / "prompts"
PIN_TIMEOUT = 20.0
LOBBY_REPEAT = 20.0
"""Seconds of silence in the lobby before the waiting prompt plays again."""
MUTE_TOGGLE = "*6"
CALLS_PER_UNTRUSTED_ADDRESS = 20
"""Calls at once from one address that is no trunk's: an INVITE flood from one source cannot take
every RTP port (each call holds one until its BYE, or 64*T1 when the flood never ACKs)."""
DTMF_SILENCE = 1.0
"""Seconds without telephone-events after which a new detector starts: an RFC 4733 event's
timestamp then names a new key press even if it repeats an old one (a replayed capture, a phone
that restarts its RTP clock), while the end-packet retransmissions of one press, tens of ms
apart, are still reported once."""


class CallState(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@functools.cache
def load_prompt(language: str, name: str, rate: int) -> tuple[Samples, ...]:
    """A prompt as 20 ms frames at ``rate`` (the WAVs are 8 kHz mono 16-bit)."""
    with wave.open(str(PROMPTS / language / f"{name}.wav"), "rb") as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.int16)
    if rate != 8000:
        samples = Resampler(8000, rate).process(samples)
    return _frames(samples, rate)


@functools.cache
def tone_frames(
    frequencies: tuple[float, ...], rate: int, each_ms: int = 120
) -> tuple[Samples, ...]:
    samples = np.concatenate([generate_tone(f, each_ms, rate, amplitude=6000) for f in frequencies])
    return _frames(samples, rate)


def _frames(samples: Samples, rate: int) -> tuple[Samples, ...]:
    """20 ms frames, read-only: cached prompts and tones are shared by every call."""
    size = rate // 50
    padded = np.concatenate([samples, np.zeros(-len(samples) % size, np.int16)])
    padded.flags.writeable = False
    return tuple(padded[i : i + size] for i in range(0, len(padded), size))


_RELEASES: set[asyncio.Task[None]] = set()
"""Linked rooms being released after their caller left (strong references until done)."""

JOIN_TONE = (660.0, 880.0)
LEAVE_TONE = (880.0, 660.0)


def masked_name(number: str, mask: bool) -> str:
    digits = "".join(c for c in number if c.isdigit())
    if not digits:
        return "Phone"
    # the number is the caller's From user part: whatever the caller's phone or PBX put there
    return f"Phone ••• {digits[-2:]}" if mask else display_name(f"Phone {number}")


class InboundCall:
    """A call from a phone, from INVITE to BYE."""

    def __init__(
        self,
        service: SipService,
        transport: SipTransport,
        invite: Request,
        key: TransactionKey,
        source: Address,
    ) -> None:
        self.service = service
        self.transport = transport
        self.invite = invite
        self.key = key
        self.source = source
        self.failure_key = source[0]
        """Whom wrong PINs count against: the address, or a trunk's caller (set by the service)."""
        self.call_id = invite.headers.get("Call-ID") or ""
        self.local_tag = new_tag()
        self.state = CallState.RINGING
        self.dialog: Dialog | None = None
        self.offer: AudioOffer | None = None
        self.endpoint: RtpEndpoint | None = None
        self.conference: RoomConference | None = None
        self.leg: PhoneLeg | None = None
        self.room: Room | None = None
        self.participant: Participant | None = None
        self.language = service.config.language
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.detector = DtmfDetector()
        self._last_dtmf_packet = 0.0
        self.timer = SessionTimer()
        self.retransmission: SuccessRetransmission | None = None
        self.session_id = secrets.randbelow(10**9)
        self.sdp_version = 1
        self.on_hold = False
        self._task: asyncio.Task[None] | None = None
        self._events: Subscription | None = None
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._recent_digits = ""
        self.srtp = "optional"
        self.local_crypto: Crypto | None = None
        self.transfer_target: str | None = None
        self.transfer_status = ""
        self._timer_headers: list[tuple[str, str]] = []
        self.linked: Route | None = None
        """The route to a link target's local room this call took, until the call ends."""
        self.ivr_room = f"ivr-{secrets.token_hex(6)}"
        """A room of its own on the relay for the prompts, until the call joins a real room."""
        caller = NameAddress.parse(invite.headers.get("From") or "<sip:anonymous@invalid>")
        self.caller_number = caller.uri.user or ""

    # answering -----------------------------------------------------------------------------
    def _read_offer(self, body: bytes) -> AudioOffer:
        """The phone's offer; SdpError also when its address family is not the one we send from."""
        offer = read_offer(body.decode("utf-8", "replace"), self.srtp)
        if offer.address is not None and (":" in offer.address[0]) != (
            ":" in self.service.ports.host
        ):
            raise SdpError("the offer's address family is not the gateway's (IP4/IP6)")
        return offer

    def start(self, user: str, trusted: bool, srtp: str = "optional") -> None:
        self.srtp = srtp
        if not trusted and self._calls_from_source() > CALLS_PER_UNTRUSTED_ADDRESS:
            response = self._response(503, "Service Unavailable")
            response.headers.add("Retry-After", "30")
            self._finish_with(response)
            return
        try:
            self.offer = self._read_offer(self.invite.body)
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
            self.endpoint = RtpEndpoint(self.service.ports, self._on_rtp)
        except OSError:
            response = self._response(503, "Service Unavailable")
            response.headers.add("Retry-After", "30")
            self._finish_with(response)
            return
        self.endpoint.set_remote(self.offer.address)
        self._key_srtp()
        self._timer_headers = timer_answer
        route = self.service.dispatcher.route(user, trusted, self.service.config.allow_anonymous)
        self.language = route.language
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
        assert self.endpoint is not None and self.offer is not None
        await self.endpoint.start()
        response = self._response(200, "OK")
        response.headers.add("Contact", self.service.contact(self.transport))
        response.headers.add("Allow", self.service.ALLOW)
        for name, value in self._timer_headers:
            response.headers.add(name, value)
        response.headers.add("Content-Type", "application/sdp")
        response.body = self._answer_sdp().encode()
        self.dialog = Dialog.as_uas(self.invite, response)
        self.state = CallState.ANSWERED
        self.service.register_dialog(self)
        self.transport.send_response(self.key, response)
        self.retransmission = SuccessRetransmission(
            response, self.source, self.dialog.id, reliable=self.transport.kind != "udp"
        )
        # the transaction already sent the 2xx once: keep only the retransmission timers
        self.transport.execute([a for a in self.retransmission.start() if not isinstance(a, Send)])
        self.timer.response_sent(time.monotonic())
        self._schedule_session_timer()
        self._attach_conference(self.service.relay.conference(self.ivr_room))

    def _answer_sdp(self) -> str:
        assert self.offer is not None and self.endpoint is not None
        return make_answer(
            self.offer,
            self.service.media_ip,
            self.endpoint.port,
            self.session_id,
            self.sdp_version,
            local_crypto=self.local_crypto,
        )

    def _key_srtp(self) -> None:
        """SRTP keys from the offer's a=crypto and our answer's (RFC 4568); plain RTP otherwise."""
        assert self.offer is not None and self.endpoint is not None
        remote = self.offer.crypto
        if remote is None:
            self.local_crypto = None
            self.endpoint.clear_srtp()
            return
        if self.local_crypto is None or self.local_crypto.suite != remote.suite:
            self.local_crypto = remote.answer()
        self.local_crypto = Crypto(remote.tag, self.local_crypto.suite, self.local_crypto.key)
        self.endpoint.set_srtp(remote.profile, remote.key, self.local_crypto.key)

    # media -------------------------------------------------------------------------------
    def _attach_conference(self, conference: RoomConference) -> None:
        assert self.offer is not None and self.endpoint is not None
        if self.conference is not None and self.leg is not None:
            self.conference.remove_leg(self.leg.leg_id)
        self.conference = conference
        leg_id = self.participant.id if self.participant is not None else self.ivr_room
        self.leg = conference.add_leg(
            leg_id, self.offer.codec, self.endpoint.send, self.offer.telephone_event_pt
        )
        self.leg.on_dtmf_packet = self._on_dtmf_packet
        self.leg.hearing = not self.on_hold

    def _on_rtp(self, data: bytes) -> None:
        if self.leg is not None:
            self.leg.receive(data)

    def _on_dtmf_packet(self, packet: RtpPacket) -> None:
        now = time.monotonic()
        if now - self._last_dtmf_packet > DTMF_SILENCE:
            self.detector = DtmfDetector()
        self._last_dtmf_packet = now
        for digit in self.detector.feed(packet):
            self._digit(digit.digit)

    def _digit(self, digit: str) -> None:
        self.digits.put_nowait(digit)
        self._recent_digits = (self._recent_digits + digit)[-2:]
        if self._recent_digits == MUTE_TOGGLE and self.participant is not None:
            self._recent_digits = ""
            self._toggle_mute()

    async def _play(self, name: str) -> None:
        """Play a prompt and return when it has been sent."""
        if self.leg is None or self.offer is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        seconds = self._start_prompt(name, finished)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done, seconds + 2)

    def _start_prompt(self, name: str, on_done: Callable[[], None] | None = None) -> float:
        """Start a prompt without waiting for it; its length in seconds."""
        if self.leg is None or self.offer is None:
            return 0.0
        frames = load_prompt(self.language, name, self.offer.codec.sample_rate)
        log.info("phone prompt", extra={"call_id": self.call_id, "prompt": name})
        self.leg.play(frames, on_done)
        return len(frames) * 0.02

    # the call's life ---------------------------------------------------------------------------
    async def _run(self, route: Route) -> None:
        try:
            await asyncio.sleep(self.service.answer_delay)
            if self.state is not CallState.RINGING:
                return
            await self._answer()
            found = await self._find_route(route)
            if found is None or found.room_id is None:
                await self._play("goodbye")
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
            await self._play("enter-pin")
            pin = await self._read_pin()
            if self.service.guard.banned(self.failure_key):
                return None  # a banned address (or trunk caller) guesses no more, on any call
            if route.room_id is not None:
                if pin and any(secrets.compare_digest(pin, p) for p in pins):
                    return route
            elif (
                pin
                and (found := self.service.dispatcher.route_for_pin(pin, self.language)) is not None
            ):
                return found
            self.service.guard.failure(self.failure_key, "room PIN")
            if self.service.guard.banned(self.failure_key):
                return None
            await self._play("wrong-pin")
        return None

    async def _read_pin(self) -> str:
        pin = ""
        while True:
            try:
                digit = await asyncio.wait_for(self.digits.get(), PIN_TIMEOUT)
            except TimeoutError:
                return pin
            if digit == "#":
                return pin
            if digit.isdigit() and len(pin) < 16:
                pin += digit

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
                route.link, name, lambda: self._start_prompt("lobby")
            )
        except AdmissionRefused as refused:
            outcome = refused.admission.outcome.value
            log.info(
                "phone not admitted by the linked room's lobby",
                extra={"call_id": self.call_id, "outcome": outcome},
            )
            await self._play("goodbye")
            self.hang_up(f"{scheme} lobby: {outcome}")
            return False
        except RoomError as error:  # LinkError: the scheme is not linked here, the link failed
            log.warning(
                "phone cannot enter a linked room: %s", error, extra={"call_id": self.call_id}
            )
            await self._play("goodbye")
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
            await self._play("goodbye")
            self.hang_up(refused.code)
            return
        self.room, self.participant = room, participant
        if participant.state is ParticipantState.LOBBY:
            await self._wait_in_lobby(participant)
            if self.state is not CallState.ANSWERED:
                return
        conference = self.service.relay.conference(room_id)
        self._attach_conference(conference)
        self.service.relay.close_room(self.ivr_room)
        for track in room.tracks():
            if track.kind is TrackKind.AUDIO:
                conference.add_track(track.id)
        assert self.leg is not None
        track_id = conference.enter_room(self.leg, participant.id)
        rooms.publish_track(
            room,
            Track(track_id, participant.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus"),
        )
        log.info("phone joined a room", extra={"room": room_id, "participant": participant.id})
        self.leg.play(
            load_prompt(
                self.language, "joined", self.offer.codec.sample_rate if self.offer else 8000
            )
        )
        while self.state is CallState.ANSWERED:
            await self._next_event(timeout=None)

    async def _wait_in_lobby(self, participant: Participant) -> None:
        """The waiting prompt, again after each LOBBY_REPEAT seconds of silence, until a host
        admits the phone: the admission cuts the prompt short (the phone leaves the prompt's
        conference at once), other room events do not restart it."""
        loop = asyncio.get_running_loop()
        while participant.state is ParticipantState.LOBBY and self.state is CallState.ANSWERED:
            deadline = loop.time() + self._start_prompt("lobby") + LOBBY_REPEAT
            while (
                participant.state is ParticipantState.LOBBY
                and self.state is CallState.ANSWERED
                and (left := deadline - loop.time()) > 0
            ):
                await self._next_event(timeout=left)

    async def _next_event(self, timeout: float | None) -> None:
        assert self._events is not None
        if timeout is None:
            event = await self._events.queue.get()  # no wait_for: this runs for every room event
        else:
            try:
                event = await asyncio.wait_for(self._events.queue.get(), timeout)
            except TimeoutError:
                return
        me = self.participant
        if me is None:
            return
        if isinstance(event, ParticipantLeft):
            if event.participant.id == me.id:
                if self.state is CallState.ANSWERED:
                    self.hang_up(event.reason, already_left=True)
            elif me.state is ParticipantState.JOINED:
                self._tone_to_all(LEAVE_TONE)
        elif isinstance(event, TrackMuted) and event.track.owner == me.id and self.leg is not None:
            self.leg.muted = event.track.muted
        elif (
            isinstance(event, ParticipantJoined)
            and event.participant.id != me.id
            and event.participant.state is ParticipantState.JOINED
            and me.state is ParticipantState.JOINED
        ):
            self._tone_to_all(JOIN_TONE)

    def _tone_to_all(self, frequencies: tuple[float, ...]) -> None:
        if self.leg is not None and self.offer is not None and not self.leg.prompt:
            self.leg.play(tone_frames(frequencies, self.offer.codec.sample_rate))

    def _toggle_mute(self) -> None:
        if self.room is None or self.participant is None or self.leg is None:
            return
        track = next(iter(self.participant.tracks.values()), None)
        if track is None:
            return
        muted = not track.muted
        with contextlib.suppress(RoomError):
            self.service.rooms.set_muted(self.room, self.participant.id, track.id, muted)
        self.leg.muted = muted
        if self.offer is not None:
            self.leg.play(
                load_prompt(
                    self.language, "muted" if muted else "unmuted", self.offer.codec.sample_rate
                )
            )

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
        elif method == "NOTIFY" and self.transfer_target is not None:
            self.transport.send_response(key, make_response(request, 200))
            self._transfer_progress(request)
        elif method == "REFER":
            self.transport.send_response(key, make_response(request, 603, "Decline"))
        else:
            self.transport.send_response(key, make_response(request, 405, "Method Not Allowed"))

    def _reoffer(self, request: Request, key: TransactionKey) -> None:
        """re-INVITE or UPDATE: hold, resume, a new address or codec; no body: a session refresh."""
        assert self.endpoint is not None
        if request.body:
            try:
                offer = self._read_offer(request.body)
            except SdpError as error:
                response = make_response(request, 488, "Not Acceptable Here")
                response.headers.add("Warning", f'304 rondpoint "{error}"')
                self.transport.send_response(key, response)
                return
            codec_changed = self.offer is not None and offer.codec != self.offer.codec
            rekey = self.offer is None or offer.crypto != self.offer.crypto
            self.offer = offer
            self.endpoint.set_remote(offer.address)
            if rekey:
                self._key_srtp()
            self.on_hold = offer.direction in ("sendonly", "inactive") or offer.address is None
            if codec_changed and self.conference is not None:
                self._attach_conference(self.conference)
                if self.participant is not None and self.leg is not None:
                    self.conference.enter_room(self.leg, self.participant.id)
            if self.leg is not None:
                self.leg.hearing = not self.on_hold
            self.sdp_version += 1
        response = make_response(request, 200)
        response.headers.add("Contact", self.service.contact(self.transport))
        timer_answer = self.timer.answer_request(request)
        if not isinstance(timer_answer, IntervalTooSmall):
            for name, value in timer_answer:
                response.headers.add(name, value)
        if request.body and self.offer is not None:
            response.headers.add("Content-Type", "application/sdp")
            response.body = self._answer_sdp().encode()
        self.transport.send_response(key, response)
        if not isinstance(timer_answer, IntervalTooSmall):
            self.timer.response_sent(time.monotonic())
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
            self._digit(digit)

    # session timers ----------------------------------------------------------------------------
    def _schedule_session_timer(self) -> None:
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
        deadline = self.timer.next_deadline()
        if deadline is None:
            return
        delay = max(0.0, deadline - time.monotonic())
        self._refresh_handle = asyncio.get_running_loop().call_later(delay, self._session_timer)

    def _session_timer(self) -> None:
        due = self.timer.due(time.monotonic())
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
        self.transfer_target = target
        self.transfer_status = "requested"
        refer = self.dialog.create_request(
            "REFER",
            via=self.service.via(self.transport),
            extra_headers=[
                ("Refer-To", f"<{target}>"),
                ("Referred-By", self.service.contact(self.transport)),
            ],
        )
        self.service.send_in_dialog(self, refer)

    def _transfer_progress(self, notify: Request) -> None:
        """A NOTIFY carrying the transferee's progress as a message/sipfrag (RFC 3515 2.4.5)."""
        line = notify.body.decode("utf-8", "replace").strip().split("\r\n")[0].split("\n")[0]
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return
        status = int(parts[1])
        if 200 <= status < 300:
            self.transfer_status = "transferred"
            log.info("phone transferred out of the room", extra={"call_id": self.call_id})
            self.hang_up("transferred")
        elif status >= 300:
            self.transfer_status = f"failed ({status})"
            self.transfer_target = None

    def response_received(self, response: Response) -> None:
        """A response to a request we sent in the dialog (BYE, UPDATE refresh, REFER)."""
        if (response.headers.get("CSeq") or "").upper().endswith(
            "REFER"
        ) and response.status >= 300:
            self.transfer_status = f"refused ({response.status})"
            self.transfer_target = None
        if self.dialog is not None:
            self.dialog.receive_response(response)
        if 200 <= response.status < 300 and response.headers.get("Session-Expires"):
            self.timer.on_2xx(response, time.monotonic())
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
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._events is not None:
            self._events.close()
        if self.conference is not None and self.leg is not None:
            self.conference.remove_leg(self.leg.leg_id)
        self.service.relay.close_room(self.ivr_room)
        if self.endpoint is not None:
            self.endpoint.close()
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
