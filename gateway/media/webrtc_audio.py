"""One audio stream over WebRTC for a room's conference: a peer's sendrecv audio offer answered on
the shared socket (JSEP RFC 8829: ICE-lite, DTLS-SRTP, rtcp-mux), its voice and what it hears going
through a `RoomConference` leg like a phone's.

For peers that hold one call with one audio stream each way (a Matrix 1:1 call) rather than a
publish session and a subscribe session per participant (`WebRtcEndpoint`): they hear the room's
mix and are heard as one Opus track. Video m-sections are declined; remote candidates are not
needed (ICE-lite: the peer checks our host candidate).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

from . import sdp
from .audio.codecs import CODECS, AudioCodec
from .dtls import DtlsCertificate
from .sdp import Codec, MediaDescription, SdpError, SessionDescription
from .transport import UdpMux, WebRtcTransport

_PREFERENCE = ("opus", "g722", "pcma", "pcmu")
"""Audio codecs a conference leg can take, best first."""
_ANSWERED_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class WebRtcAudioLeg:
    """One peer's audio call on the relay's socket: ``accept_offer``, then ``answer`` once the
    conference leg (and so our SSRC) exists; ``send`` takes that leg's RTP, ``on_rtp`` gets the
    peer's."""

    def __init__(self, mux: UdpMux, certificate: DtlsCertificate, candidate_ip: str) -> None:
        self._mux = mux
        self._certificate = certificate
        self._candidate_ip = candidate_ip
        self._transport = WebRtcTransport(mux, certificate)
        self._offer: SessionDescription | None = None
        self._audio_index = -1
        self._codec: Codec | None = None
        self._session_id = secrets.randbelow(2**62)
        self.telephone_event_pt: int | None = None
        """The offer's RFC 4733 telephone-event payload type at the codec's clock rate, if any."""

    @property
    def on_rtp(self) -> Callable[[bytes], None]:
        return self._transport.on_rtp

    @on_rtp.setter
    def on_rtp(self, handler: Callable[[bytes], None]) -> None:
        self._transport.on_rtp = handler

    @property
    def connected(self) -> bool:
        return self._transport.connected

    @property
    def consent_checks(self) -> int:
        """The peer's ICE consent checks: unchanged for long means it is gone (RFC 7675)."""
        return self._transport.consent_checks

    @property
    def audio_mid(self) -> str:
        """The mid of the answered audio m-section (``0`` when the offer names none)."""
        assert self._offer is not None
        media = self._offer.media[self._audio_index]
        return media.mid if media.mid is not None else str(self._audio_index)

    @property
    def audio_index(self) -> int:
        return self._audio_index

    def accept_offer(self, offer_sdp: str) -> AudioCodec:
        """The codec the conference leg must use for the offer's first audio m-section; SdpError
        when it has none we can take, or no ICE, DTLS or rtcp-mux."""
        offer = sdp.parse(offer_sdp)
        found = next(
            (
                (index, media, codec)
                for index, media in enumerate(offer.media)
                if media.kind == "audio"
                and media.active
                and (codec := _best_codec(media)) is not None
            ),
            None,
        )
        if found is None:
            raise SdpError("the offer has no audio m-section with opus, G722, PCMA or PCMU")
        index, media, codec = found
        if not media.rtcp_mux:
            raise SdpError("the audio m-section must use rtcp-mux")
        ufrag, pwd = offer.ice_credentials(media)
        fingerprint = offer.dtls_fingerprint(media)
        setup = offer.dtls_setup(media)
        if setup not in ("actpass", "active", "passive"):
            raise SdpError("a=setup must be actpass, active or passive")
        self._transport.set_remote(ufrag, pwd, fingerprint, setup)
        self._offer, self._audio_index, self._codec = offer, index, codec
        self.telephone_event_pt = next(
            (
                c.payload_type
                for c in media.codecs
                if c.name.lower() == "telephone-event" and c.clock_rate == codec.clock_rate
            ),
            None,
        )
        known = CODECS[codec.name.lower()]
        return dataclasses.replace(known, payload_type=codec.payload_type)

    def answer(self, ssrc: int, cname: str) -> str:
        """The answer to the accepted offer, sending as SSRC (the conference leg's)."""
        offer, codec = self._offer, self._codec
        assert offer is not None and codec is not None
        theirs = offer.dtls_setup(offer.media[self._audio_index])
        setup = "active" if theirs == "passive" else "passive"
        answer = SessionDescription(
            origin=f"rondpoint {self._session_id} 1 IN IP4 {self._candidate_ip}",
            ice_lite=True,
            msid_semantic="WMS *",
        )
        for index, media in enumerate(offer.media):
            mid = media.mid if media.mid is not None else str(index)
            out = self._media(media.kind, mid, setup)
            out.proto = media.proto
            if index != self._audio_index:
                out.port = 0
                out.direction = "inactive"
                out.fmt = media.fmt[:1] or ["0"]
                answer.media.append(out)
                continue
            out.codecs = [Codec(codec.payload_type, codec.name, codec.clock_rate, codec.channels)]
            if self.telephone_event_pt is not None:
                out.codecs.append(
                    Codec(
                        self.telephone_event_pt, "telephone-event", codec.clock_rate, None, "0-16"
                    )
                )
            out.fmt = [str(c.payload_type) for c in out.codecs]
            out.direction = _ANSWERED_DIRECTION.get(media.direction or "sendrecv", "sendrecv")
            out.msid = f"{cname} {cname}-audio"
            out.ssrcs = [(ssrc, "cname", cname), (ssrc, "msid", out.msid)]
            answer.media.append(out)
            if media.mid is not None and media.mid in offer.bundle_mids:
                answer.groups = [("BUNDLE", [media.mid])]
        return answer.serialize()

    def send(self, packet: bytes) -> None:
        """One RTP packet to the peer (dropped until DTLS is up)."""
        self._transport.send_rtp(packet)

    def close(self) -> None:
        self._transport.close()

    def _media(self, kind: str, mid: str, setup: str) -> MediaDescription:
        ip, port = self._candidate_ip, self._mux.port
        return MediaDescription(
            kind=kind,
            port=port,
            proto="UDP/TLS/RTP/SAVPF",
            fmt=[],
            connection=f"IN IP4 {ip}",
            mid=mid,
            ice_ufrag=self._transport.local_ufrag,
            ice_pwd=self._transport.local_pwd,
            fingerprint=self._certificate.fingerprint,
            setup=setup,
            rtcp_mux=True,
            candidates=[f"1 1 udp 2130706431 {ip} {port} typ host"],
            end_of_candidates=True,
        )


def _best_codec(media: MediaDescription) -> Codec | None:
    for name in _PREFERENCE:
        for codec in media.codecs:
            if codec.name.lower() == name and codec.clock_rate == CODECS[name].clock_rate:
                return codec
    return None
