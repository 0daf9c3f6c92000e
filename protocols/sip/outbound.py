"""Dialling out of a room (RFC 3261 UAC): a host calls a phone, directly or through a trunk.

The callee shows in the room while it rings ("Phone ••• 42 · ringing"), early media (183) is
heard in the room, an answer makes the callee a participant like any phone caller, and busy,
declined or unanswered calls end with that status in the room and in the admin API.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from gateway.media.audio.codecs import G722, PCMA, PCMU
from gateway.media.rtp_endpoint import RtpEndpoint
from gateway.media.sdp import Codec, MediaDescription, SessionDescription, serialize
from gateway.plugins import DialError
from gateway.rooms import ParticipantLeft, Role, Track, TrackKind, TrackSource
from protocols.sip.call import CallState, InboundCall, masked_name
from protocols.sip.clock import SYSTEM_CLOCK, Clock, Timer
from protocols.sip.dialog import Dialog
from protocols.sip.digest import DigestError, answer_challenge, choose_challenge
from protocols.sip.message import CSeq, Headers, NameAddress, Request, Response, SipUri
from protocols.sip.offer_answer import SdpError, read_offer
from protocols.sip.resolver import Hop, locate_with_deadline, transports_for
from protocols.sip.store import Trunk
from protocols.sip.transaction import TransactionKey, make_cancel, new_tag
from protocols.sip.uri import SipParseError, parse_dial_target, split_hostport

if TYPE_CHECKING:
    from protocols.sip.service import SipService
    from protocols.sip.transport import SipTransport

log = logging.getLogger(__name__)

RING_TIMEOUT = 60.0
ENDED_STATUS_SECONDS = 5.0
FINAL_STATUS = {
    486: "busy",
    600: "busy",
    603: "declined",
    408: "no answer",
    480: "no answer",
    487: "cancelled",
}


def dial_target(target: str) -> SipUri:
    """The checked target (``tel`` for a number); DialError, before any port is taken, if unusable."""
    try:
        return parse_dial_target(target)
    except SipParseError as error:
        raise DialError(str(error)) from None


def resolve(uri: SipUri, trunk: Trunk | None) -> tuple[str, SipUri, str]:
    """(request URI, the URI whose server the call goes to, number shown) for a checked target
    (``dial_target``): the trunk's address when there is a trunk, the target's own otherwise."""
    if trunk is not None and trunk.address:
        try:
            host, port = split_hostport(trunk.address)
        except SipParseError:
            raise DialError(f"the trunk '{trunk.name}' has no usable address") from None
        next_hop = SipUri("sip", None, None, host, port, {"transport": trunk.transport})
        if uri.scheme == "tel":
            return str(SipUri("sip", uri.host, None, host, port)), next_hop, uri.host
        return str(uri), next_hop, uri.user or ""
    if uri.scheme == "tel":
        raise DialError("a telephone number needs a trunk with an address")
    return str(uri), uri, uri.user or ""


class OutboundCall(InboundCall):
    """A call the room places; once answered it behaves like any phone in the room."""

    def __init__(
        self,
        service: SipService,
        transport: SipTransport,
        room_id: str,
        target: str,
        trunk: Trunk | None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """Checks the target, then takes an RTP port pair: DialError (no port: OSError) with no
        port left taken."""
        request_uri, self.next_hop, number = resolve(dial_target(target), trunk)
        self.trunk = trunk
        self.target = target
        self.room_id = room_id
        self.status_text = "calling"
        self.call_ref = "CA_" + secrets.token_urlsafe(8)
        self._authenticated = False
        self._invited = False
        self._hops: list[Hop] = []
        """The servers to try next (RFC 3263 4.3), best first."""
        self._ring_timer: Timer | None = None
        self._endpoint_for_offer = RtpEndpoint(service.ports, lambda data: None)
        try:
            invite = self._build_invite(service, transport, request_uri, trunk)
        except ValueError:
            self._endpoint_for_offer.close()
            raise DialError("the call cannot be written as a SIP request") from None
        destination = (self.next_hop.host.strip("[]"), self.next_hop.port or 5060)
        super().__init__(
            service, transport, invite, TransactionKey("", "", "INVITE"), destination, clock
        )
        self.media.adopt(self._endpoint_for_offer)
        self.local_tag = NameAddress.parse(invite.headers.get("From") or "").tag or new_tag()
        self.caller_number = number

    def _build_invite(
        self, service: SipService, transport: SipTransport, request_uri: str, trunk: Trunk | None
    ) -> Request:
        user = (trunk.caller_id if trunk and trunk.caller_id else "rondpoint").replace("@", "")
        headers = Headers()
        headers.add("Via", service.via(transport))
        headers.add("Max-Forwards", "70")
        headers.add("From", f'"Rondpoint" <sip:{user}@{transport.sent_by}>;tag={new_tag()}')
        headers.add("To", f"<{request_uri}>")
        headers.add("Call-ID", f"{secrets.token_hex(12)}@rondpoint")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", service.contact(transport))
        headers.add("Allow", service.ALLOW)
        headers.add("Supported", "timer")
        headers.add("Content-Type", "application/sdp")
        body = self._offer_sdp(service, self._endpoint_for_offer.port).encode()
        return Request("INVITE", request_uri, headers, body)

    @staticmethod
    def _offer_sdp(service: SipService, port: int) -> str:
        family = "IP6" if ":" in service.media_ip else "IP4"
        codecs = [Codec(c.payload_type, c.name, c.clock_rate) for c in (PCMA, PCMU, G722)]
        codecs.append(Codec(101, "telephone-event", 8000, fmtp="0-16"))
        media = MediaDescription(
            kind="audio",
            port=port,
            proto="RTP/AVP",
            fmt=[str(c.payload_type) for c in codecs],
            direction="sendrecv",
            codecs=codecs,
            extra=[("ptime", "20")],
        )
        session_id = secrets.randbelow(10**9)
        return serialize(
            SessionDescription(
                origin=f"rondpoint {session_id} 1 IN {family} {service.media_ip}",
                name="Rondpoint",
                connection=f"IN {family} {service.media_ip}",
                media=[media],
            )
        )

    # placing the call --------------------------------------------------------------------
    def add_to_room(self) -> None:
        """The callee shows in the room at once, ringing."""
        rooms = self.service.rooms
        room = rooms.get(self.room_id)
        name = masked_name(self.caller_number, self.service.config.mask_numbers)
        self.participant = rooms.add_participant(
            room, f"{name} · ringing", Role.GUEST, origin="sip", origin_address=name
        )
        self.room = room
        self._events = self.service.bus.subscribe(self.room_id)

    def abandon(self) -> None:
        """The call was refused before it was placed (the room is full, ...): give its ports back."""
        self.state = CallState.ENDED
        self.status_text = "refused"
        if self._events is not None:
            self._events.close()
        self.media.close()

    def begin(self) -> None:
        """Place the call in a task of its own, which follows the room while the phone rings."""
        self._task = asyncio.get_running_loop().create_task(self._place())

    async def _place(self) -> None:
        try:
            await self.place()
            while self.state is CallState.RINGING:
                await self._ringing_event()
        except asyncio.CancelledError:
            pass
        except Exception as error:  # a call that cannot go out ends, and gives its ports back
            reason = str(error) if isinstance(error, DialError) else type(error).__name__
            log.warning("dial-out failed", extra={"room": self.room_id, "reason": reason})
            self._finish("failed")

    async def place(self) -> None:
        assert self.media.endpoint is not None
        service = self.service
        kinds = [t.kind for t in service.transports]
        if not transports_for(self.next_hop, kinds):
            raise DialError("the target needs a transport the gateway does not offer (TLS?)")
        try:
            hops = await locate_with_deadline(self.next_hop, kinds, service.dns)
        except LookupError as error:
            raise DialError(str(error)) from None
        if not hops:
            raise DialError("no SIP server found for the target (RFC 3263)")
        self._hops = hops[1:]
        self._go_to(hops[0])
        self._rewrite_invite({})
        await self.media.endpoint.start()
        self._send_invite()
        self._ring_timer = self.clock.call_later(RING_TIMEOUT, self._no_answer)

    async def _ringing_event(self) -> None:
        """A host hanging up the ringing phone (removing it), or the room closing, cancels it."""
        assert self._events is not None
        event = await self._events.queue.get()
        me = self.participant
        if (
            isinstance(event, ParticipantLeft)
            and me is not None
            and event.participant.id == me.id
            and self.state is CallState.RINGING
        ):
            self.participant = None  # already gone from the room
            self.cancelled()

    def _go_to(self, hop: Hop) -> None:
        self.transport = next(t for t in self.service.transports if t.kind == hop.transport)
        self.source = (hop.address, hop.port)
        log.info(
            "dialling out",
            extra={"room": self.room_id, "hop": f"{hop.transport}:{hop.address}:{hop.port}"},
        )

    def _rewrite_invite(
        self, headers: dict[str, str], next_cseq: bool = False, without: tuple[str, ...] = ()
    ) -> None:
        """The INVITE again for the transport in use: a new Via branch, our Contact, ``headers``."""
        copy = self.invite.headers.copy()
        for name in without:
            copy.remove(name)
        copy.set("Via", self.service.via(self.transport))
        copy.set("Contact", self.service.contact(self.transport))
        if next_cseq:
            number = CSeq.parse(copy.get("CSeq") or "1 INVITE").number
            copy.set("CSeq", str(CSeq(number + 1, "INVITE")))
        for name, value in headers.items():
            copy.set(name, value)
        self.invite = Request("INVITE", self.invite.uri, copy, self.invite.body)

    def _fail_over(self) -> bool:
        """RFC 3263 4.3: a server that timed out or answered 503 before ringing: the next one."""
        if not self._hops or self.status_text != "calling" or self.state is not CallState.RINGING:
            return False
        self._go_to(self._hops.pop(0))
        self._authenticated = False  # credentials answered the other server's challenge
        self._rewrite_invite({}, next_cseq=True, without=("Authorization", "Proxy-Authorization"))
        self._send_invite()
        return True

    def _send_invite(self) -> None:
        key = self.transport.send_request(self.invite, self.source)
        self._invited = True
        if key is not None:
            self.key = key

    def _no_answer(self) -> None:
        if self.state is CallState.RINGING:
            self._send_cancel()
            self._finish("no answer")

    def _send_cancel(self) -> None:
        if self._invited:
            self.transport.send_request(make_cancel(self.invite), self.source)

    def timed_out(self) -> None:
        """Our INVITE got no answer at all (RFC 3261 Timer B: a 408 of our own)."""
        if self.state is CallState.RINGING and not self._fail_over():
            self._finish("no answer")

    def status(self) -> dict[str, object]:
        return {
            "id": self.call_ref,
            "room": self.room_id,
            "to": self.target,
            "status": self.status_text,
            "participant_id": self.participant.id if self.participant else None,
        }

    # responses to our INVITE ------------------------------------------------------------------
    def invite_response(self, response: Response) -> None:
        status = response.status
        if self.state is CallState.ENDED:
            return
        if 100 < status < 200:
            self._set_status("ringing")
            if status == 183 and response.body:
                self._early_media(response)
        elif 200 <= status < 300:
            self._answered(response)
        elif (
            status in (401, 407)
            and not self._authenticated
            and self._retry_with_credentials(response)
        ):
            return
        elif status >= 300 and not (status == 503 and self._fail_over()):
            self._finish(FINAL_STATUS.get(status, f"failed ({status})"))

    def _retry_with_credentials(self, response: Response) -> bool:
        trunk = self.trunk
        if trunk is None or not trunk.username:
            return False
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        try:
            challenge = choose_challenge(response.headers.get_all(header))
            credentials = answer_challenge(
                challenge, "INVITE", self.invite.uri, trunk.username, trunk.password
            )
        except DigestError:
            return False
        self._authenticated = True
        header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        self._rewrite_invite({header: credentials}, next_cseq=True)
        self._send_invite()
        return True

    def _early_media(self, response: Response) -> None:
        media = self.media
        try:
            media.offer = read_offer(response.body.decode("utf-8", "replace"))
        except SdpError:
            return
        assert media.endpoint is not None
        media.endpoint.set_remote(media.offer.address)
        if media.leg is None:
            self._attach_conference(self.service.relay.conference(self.room_id))
            self._enter()
        assert media.leg is not None
        # early media flows one way: the room is not sent before the answer
        media.leg.hearing = False

    def _answered(self, response: Response) -> None:
        if self.dialog is not None:  # a retransmitted 2xx: acknowledge it again
            self.transport.send_request(
                self.dialog.create_ack(via=self.service.via(self.transport)), self.source
            )
            return
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        media = self.media
        try:
            media.offer = read_offer(response.body.decode("utf-8", "replace"))
        except SdpError:
            self.dialog = Dialog.as_uac(self.invite, response)
            self.transport.send_request(
                self.dialog.create_ack(via=self.service.via(self.transport)), self.source
            )
            self.state = CallState.ANSWERED
            self.hang_up("no usable audio in the answer")
            return
        self.dialog = Dialog.as_uac(self.invite, response)
        self.transport.send_request(
            self.dialog.create_ack(via=self.service.via(self.transport)), self.source
        )
        self.state = CallState.ANSWERED
        self.service.register_dialog(self)
        assert media.endpoint is not None
        media.endpoint.set_remote(media.offer.address)
        if media.leg is None or media.leg.codec != media.offer.codec:
            self._attach_conference(self.service.relay.conference(self.room_id))
            self._enter()
        if media.leg is not None:
            media.leg.hearing = not media.on_hold
        self._set_status("answered")
        if self.room is not None and self.participant is not None:
            name = self.participant.name.removesuffix(" · ringing")
            self.service.rooms.update_name(self.room, self.participant.id, name)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()  # the ringing watch: from now on _stay follows the room
        self._task = asyncio.get_running_loop().create_task(self._stay())

    def _enter(self) -> None:
        conference, leg = self.media.conference, self.media.leg
        assert leg is not None and conference is not None and self.participant is not None
        assert self.room is not None
        track_id = conference.enter_room(leg, self.participant.id)
        if track_id not in self.participant.tracks:
            self.service.rooms.publish_track(
                self.room,
                Track(
                    track_id, self.participant.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus"
                ),
            )
        for track in self.room.tracks():
            if track.kind is TrackKind.AUDIO:
                conference.add_track(track.id)

    async def _stay(self) -> None:
        try:
            while self.state is CallState.ANSWERED:
                await self._next_event()
        except asyncio.CancelledError:
            pass

    def _set_status(self, text: str) -> None:
        self.status_text = text

    def _finish(self, status: str) -> None:
        """The call ended before it was answered: show why for a moment, then leave the room."""
        if self.state is CallState.ENDED:
            return
        self.status_text = status
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        if (
            self.room is not None
            and self.participant is not None
            and self.participant.id in self.room.participants
        ):
            base = self.participant.name.removesuffix(" · ringing")
            self.service.rooms.update_name(self.room, self.participant.id, f"{base} · {status}")
            room, participant = self.room, self.participant
            self.clock.call_later(
                ENDED_STATUS_SECONDS,
                lambda: self.service.rooms.remove_participant(room, participant.id, "left"),
            )
            self.participant = None
        log.info("dial-out ended", extra={"room": self.room_id, "status": status})
        self._end(status, already_left=True)

    def cancelled(self) -> None:
        """The room hung up before the answer."""
        if self.state is CallState.RINGING:
            self._send_cancel()
            self._finish("cancelled")

    def hang_up(self, reason: str, already_left: bool = False) -> None:
        if self.state is CallState.RINGING:
            self.cancelled()
            return
        super().hang_up(reason, already_left)

    def _end(self, reason: str = "left", already_left: bool = False) -> None:
        if self.state is not CallState.ENDED and self.status_text in (
            "calling",
            "ringing",
            "answered",
        ):
            self.status_text = "ended"
        super()._end(reason, already_left)
