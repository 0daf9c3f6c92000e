"""A phone call's audio: its RTP endpoint (RFC 3264 offer/answer, RFC 4568 SDES-SRTP keys), its
leg in a room's conference, the keys it types as RFC 4733 telephone-events, hold and muting."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable

from gateway.media.audio.conference import PhoneLeg, RoomConference
from gateway.media.audio.telephone_event import DtmfDetector
from gateway.media.rtp import RtpPacket
from gateway.media.rtp_endpoint import PortAllocator, RtpEndpoint
from gateway.rooms import Participant, Room, RoomError, RoomManager
from protocols.sip.clock import Clock
from protocols.sip.offer_answer import AudioOffer, SdpError, make_answer, read_offer
from protocols.sip.sdes import Crypto

DTMF_SILENCE = 1.0
"""Seconds without telephone-events after which a new detector starts: an RFC 4733 event's
timestamp then names a new key press even if it repeats an old one (a replayed capture, a phone
that restarts its RTP clock), while the end-packet retransmissions of one press, tens of ms
apart, are still reported once."""


class MediaLeg:
    """The audio of one call, from the phone's offer to the endpoint's close."""

    def __init__(self, clock: Clock, ports: PortAllocator, on_key: Callable[[str], None]) -> None:
        self.clock = clock
        self.ports = ports
        self.on_key = on_key
        """Called with each key the phone types in telephone-events."""
        self.srtp = "optional"
        """SRTP policy for the phone's offers: optional, required (a trunk's choice)."""
        self.offer: AudioOffer | None = None
        self.endpoint: RtpEndpoint | None = None
        self.local_crypto: Crypto | None = None
        self.conference: RoomConference | None = None
        self.leg: PhoneLeg | None = None
        self.on_hold = False
        self.session_id = secrets.randbelow(10**9)
        self.sdp_version = 1
        self._detector = DtmfDetector()
        self._last_dtmf_packet = 0.0

    # the endpoint and its keys ---------------------------------------------------------------
    def open(self) -> None:
        """Take an RTP port pair for the call (OSError when none is free), towards the address
        of the offer, keyed by it."""
        assert self.offer is not None
        self.endpoint = RtpEndpoint(self.ports, self.receive)
        self.endpoint.set_remote(self.offer.address)
        self.key_srtp()

    def adopt(self, endpoint: RtpEndpoint) -> None:
        """Use an endpoint taken already (dial-out offers its port before the call exists)."""
        endpoint.on_rtp = self.receive
        self.endpoint = endpoint

    def read_offer(self, body: bytes) -> AudioOffer:
        """The phone's offer; SdpError also when its address family is not the one we send from."""
        offer = read_offer(body.decode("utf-8", "replace"), self.srtp)
        if offer.address is not None and (":" in offer.address[0]) != (":" in self.ports.host):
            raise SdpError("the offer's address family is not the gateway's (IP4/IP6)")
        return offer

    def key_srtp(self) -> None:
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

    def answer_sdp(self, media_ip: str) -> str:
        """Our answer to the phone's current offer."""
        assert self.offer is not None and self.endpoint is not None
        return make_answer(
            self.offer,
            media_ip,
            self.endpoint.port,
            self.session_id,
            self.sdp_version,
            local_crypto=self.local_crypto,
        )

    def reoffer(self, offer: AudioOffer, leg_id: str, participant_id: str | None) -> None:
        """A new offer in the dialog (re-INVITE, UPDATE): hold, resume, a new address or codec."""
        assert self.endpoint is not None
        codec_changed = self.offer is not None and offer.codec != self.offer.codec
        rekey = self.offer is None or offer.crypto != self.offer.crypto
        self.offer = offer
        self.endpoint.set_remote(offer.address)
        if rekey:
            self.key_srtp()
        self.on_hold = offer.direction in ("sendonly", "inactive") or offer.address is None
        if codec_changed and self.conference is not None:
            self.attach(self.conference, leg_id)
            if participant_id is not None and self.leg is not None:
                self.conference.enter_room(self.leg, participant_id)
        if self.leg is not None:
            self.leg.hearing = not self.on_hold
        self.sdp_version += 1

    # the conference --------------------------------------------------------------------------
    def attach(self, conference: RoomConference, leg_id: str) -> None:
        """Hear ``conference`` and be heard in it (leaving the one it was in)."""
        assert self.offer is not None and self.endpoint is not None
        self.detach()
        self.conference = conference
        self.leg = conference.add_leg(
            leg_id, self.offer.codec, self.endpoint.send, self.offer.telephone_event_pt
        )
        self.leg.on_dtmf_packet = self._on_dtmf_packet
        self.leg.hearing = not self.on_hold

    def detach(self) -> None:
        """Leave the conference, if any."""
        if self.conference is not None and self.leg is not None:
            self.conference.remove_leg(self.leg.leg_id)

    def receive(self, data: bytes) -> None:
        """An RTP packet from the phone."""
        if self.leg is not None:
            self.leg.receive(data)

    def _on_dtmf_packet(self, packet: RtpPacket) -> None:
        now = self.clock.monotonic()
        if now - self._last_dtmf_packet > DTMF_SILENCE:
            self._detector = DtmfDetector()
        self._last_dtmf_packet = now
        for digit in self._detector.feed(packet):
            self.on_key(digit.digit)

    def toggle_mute(self, rooms: RoomManager, room: Room, participant: Participant) -> bool | None:
        """Mute the phone's track in the room, or unmute it; whether it is muted now (None when it
        has no track to mute yet)."""
        if self.leg is None:
            return None
        track = next(iter(participant.tracks.values()), None)
        if track is None:
            return None
        muted = not track.muted
        with contextlib.suppress(RoomError):
            rooms.set_muted(room, participant.id, track.id, muted)
        self.leg.muted = muted
        return muted

    def close(self) -> None:
        """Give the RTP ports back."""
        if self.endpoint is not None:
            self.endpoint.close()
