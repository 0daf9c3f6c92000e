"""WebRTC server endpoint: one participant's publish and subscribe sessions on the relay (JSEP RFC 8829, RFC 8843)."""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import sdp
from .congestion import SubscriberCongestion
from .dtls import DtlsCertificate
from .router import CodecInfo, ExtensionIds, Router
from .rtcp import RTCP_RTPFB, RTPFB_TRANSPORT_CC, RtcpRemb
from .rtp import find_extension
from .sdp import (
    Codec,
    Extmap,
    MediaDescription,
    Rid,
    SdpError,
    SessionDescription,
    Simulcast,
    SsrcGroup,
)
from .transport import UdpMux, WebRtcTransport
from .twcc import EXT_ID_NONE

_SSRC = struct.Struct("!I")
_PROTO = "UDP/TLS/RTP/SAVPF"
# RFC 8445 section 5.1.2.1 priority of the passive TCP host candidate (RFC 6544 section 4.2):
# type preference 90, below UDP host's 126 so that UDP wins wherever it passes (Chromium ranks its
# own TCP host candidates so), local preference 0x7F1E, component 1.
_TCP_PASSIVE_PRIORITY = (90 << 24) + (0x7F1E << 8) + (256 - 1)
_FEEDBACK = ("nack", "nack pli", "ccm fir", "goog-remb")
# Publishers also get transport-wide feedback (transport-cc, sent every 50 ms by fast_tick) for
# their own congestion controller; REMB with the receiver reports stays as the ceiling
# (Router.publisher_remb_bitrate).
_PUBLISH_FEEDBACK = (*_FEEDBACK, "transport-cc")
_PUBLISH_EXTENSIONS = {
    "audio": (sdp.EXT_AUDIO_LEVEL, sdp.EXT_MID, sdp.EXT_ABS_SEND_TIME, sdp.EXT_TRANSPORT_CC),
    "video": (
        sdp.EXT_MID,
        sdp.EXT_RID,
        sdp.EXT_REPAIRED_RID,
        sdp.EXT_ABS_SEND_TIME,
        sdp.EXT_TRANSPORT_CC,
    ),
}
# Ids the relay offers to subscribers; they match what Chromium offers, so the forwarder rarely rewrites.
# transport-cc (id 3) on every m-line: the relay stamps transport-wide sequence numbers on what it
# sends and estimates each subscriber's bandwidth from the feedback (congestion.py).
_SUBSCRIBE_EXTENSIONS = {
    "audio": [
        Extmap(1, sdp.EXT_AUDIO_LEVEL),
        Extmap(2, sdp.EXT_ABS_SEND_TIME),
        Extmap(3, sdp.EXT_TRANSPORT_CC),
    ],
    "video": [Extmap(2, sdp.EXT_ABS_SEND_TIME), Extmap(3, sdp.EXT_TRANSPORT_CC)],
}
_SUBSCRIBE_FEEDBACK = {
    "audio": ["transport-cc"],
    "video": ["nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"],
}
_PREFERRED_PT = {"opus": 111, "VP8": 96, "H264": 102}
_H264_PREFERRED_PROFILE = "42e01f"


@dataclass
class SimulcastLayerInfo:
    rid: str
    width: int | None = None
    height: int | None = None


@dataclass
class PublishRequest:
    """What the client said about one m-line of its publish offer."""

    mid: str
    track_id: str
    source: str
    simulcast: list[SimulcastLayerInfo] = field(default_factory=list)


@dataclass
class PublishedTrackInfo:
    """What the relay accepted for one published m-line."""

    mid: str
    track_id: str
    kind: str
    codec: str
    simulcast: list[SimulcastLayerInfo] = field(default_factory=list)


@dataclass
class PublishAnswer:
    sdp: str
    tracks: list[PublishedTrackInfo]


@dataclass
class SubscribeOffer:
    sdp: str
    tracks: list[tuple[str, str]]  # (mid, track_id) of the active m-lines


@dataclass
class TrackRecord:
    """A published track as the room knows it (kept by the relay, read by subscribers)."""

    track_id: str
    participant_id: str
    kind: str
    codec: Codec  # the publisher's negotiated codec (name, clock rate, channels, fmtp)


@dataclass(frozen=True)
class EndpointContext:
    """What an endpoint uses of the relay and of its room, given by the relay when it makes one."""

    room_id: str
    mux: UdpMux
    """The relay's shared UDP socket, which the endpoint's transports send and receive on."""
    certificate: DtlsCertificate
    candidate_ip: str
    """The address written in the endpoint's host candidates and SDP origin."""
    router: Router
    tracks: Mapping[str, TrackRecord]
    """The room's published tracks by id, as the relay keeps them."""
    on_track_published: Callable[[TrackRecord], None]
    on_track_removed: Callable[[str], None]
    """One of the endpoint's tracks left the room: the relay tells every subscriber."""
    on_closed: Callable[[WebRtcEndpoint], None]


@dataclass
class _Published:
    mid: str
    track_id: str
    kind: str
    payload_type: int


@dataclass
class _Slot:
    """One sendonly m-line of the subscribe session."""

    mid: str
    kind: str
    track_id: str | None
    ssrc: int
    publisher_id: str = ""
    codec: Codec | None = None
    attached: bool = False  # add_downtrack done
    payload_type: int = 0
    extensions: ExtensionIds = field(default_factory=ExtensionIds)
    rtx_ssrc: int = 0  # RFC 4588 retransmission SSRC offered for a video slot
    rtx_payload_type: int = 0  # the RTX payload type, once the answer kept it

    def state(self) -> tuple[str, str, str | None, int]:
        return (self.mid, self.kind, self.track_id, self.ssrc)


def _choose_codec(media: MediaDescription) -> Codec | None:
    if media.kind == "audio":
        for codec in media.codecs:
            if codec.name.lower() == "opus" and codec.clock_rate == 48000:
                return codec
        return None
    if media.kind != "video":
        return None
    for codec in media.codecs:
        if codec.name.upper() == "VP8":
            return codec
    h264 = [
        c
        for c in media.codecs
        if c.name.upper() == "H264" and c.parameters.get("packetization-mode") == "1"
    ]
    for codec in h264:
        if codec.parameters.get("profile-level-id", "").lower() == _H264_PREFERRED_PROFILE:
            return codec
    for codec in h264:
        if codec.parameters.get("profile-level-id", "").lower().startswith("42e0"):
            return codec
    return h264[0] if h264 else None


_NOT_MEDIA_CODECS = {"rtx", "red", "ulpfec", "flexfec-03", "cn", "telephone-event"}


def _first_codec(media: MediaDescription) -> Codec | None:
    """The offer's first media codec of an m-section (not rtx, red, FEC, CN or DTMF), in full:
    rtpmap, fmtp and the feedback the relay negotiates."""
    for codec in media.codecs:
        if codec.name and codec.clock_rate and codec.name.lower() not in _NOT_MEDIA_CODECS:
            feedback = [fb for fb in codec.rtcp_fb if fb in _FEEDBACK]
            return Codec(
                codec.payload_type,
                codec.name,
                codec.clock_rate,
                codec.channels,
                codec.fmtp,
                feedback,
            )
    return None


def _rtx_codec(payload_type: int, rtx_payload_type: int = 0) -> Codec:
    """The RFC 4588 retransmission codec for a video payload type (a=rtpmap rtx/90000,
    a=fmtp apt=); `rtx_payload_type` 0 when only its key for `_payload_type_for` is wanted."""
    return Codec(rtx_payload_type, "rtx", 90000, None, f"apt={payload_type}")


def _ssrc_lines(slot: _Slot, cname: str, msid: str) -> list[tuple[int, str, str]]:
    """a=ssrc cname and msid lines of a sending slot: its media SSRC, and its RTX SSRC when the
    slot has one (RFC 4588 section 8.3 with a=ssrc-group:FID)."""
    ssrcs = [slot.ssrc, slot.rtx_ssrc] if slot.rtx_ssrc else [slot.ssrc]
    return [line for ssrc in ssrcs for line in ((ssrc, "cname", cname), (ssrc, "msid", msid))]


def _codec_name(codec: Codec) -> str:
    lower = codec.name.lower()
    return "opus" if lower == "opus" else codec.name.upper()


def _extension_ids(extmaps: list[Extmap]) -> ExtensionIds:
    ids = {ext.uri: ext.id for ext in extmaps}
    return ExtensionIds(
        audio_level=ids.get(sdp.EXT_AUDIO_LEVEL, 0),
        mid=ids.get(sdp.EXT_MID, 0),
        rid=ids.get(sdp.EXT_RID, 0),
        repaired_rid=ids.get(sdp.EXT_REPAIRED_RID, 0),
        abs_send_time=ids.get(sdp.EXT_ABS_SEND_TIME, 0),
        transport_cc=ids.get(sdp.EXT_TRANSPORT_CC, 0),
    )


def _transport_cc_id(media: list[MediaDescription]) -> int:
    """The transport-cc extension id of an answer's accepted m-lines (one transport under
    BUNDLE, so one id), or EXT_ID_NONE."""
    for section in media:
        if section.port == 0:
            continue
        for extmap in section.extmaps:
            if extmap.uri == sdp.EXT_TRANSPORT_CC:
                return extmap.id
    return EXT_ID_NONE


def _mid_of(media: MediaDescription, index: int) -> str:
    return media.mid if media.mid is not None else str(index)


def _remote_transport(
    description: SessionDescription, setups: tuple[str, ...] = ("actpass", "active", "passive")
) -> tuple[str, str, tuple[str, str], str]:
    """ICE credentials, DTLS fingerprint and a=setup of an offer or answer (its first active
    m-section); ``setups`` the a=setup values allowed (an answer's are active or passive)."""
    usable = [m for m in description.media if m.port != 0]
    if not usable:
        raise SdpError("the SDP rejects every m-line")
    first = usable[0]
    ufrag, pwd = description.ice_credentials(first)
    fingerprint = description.dtls_fingerprint(first)
    if fingerprint[0] not in ("sha-256", "sha-384", "sha-512", "sha-1"):
        raise SdpError(f"unsupported fingerprint hash {fingerprint[0][:16]!r}")
    setup = description.dtls_setup(first)
    if setup not in setups:
        raise SdpError(f"a=setup must be {' or '.join(setups)}")
    return ufrag, pwd, fingerprint, setup


_SOURCES_BY_KIND = {"audio": ("microphone", "screen_audio"), "video": ("camera", "screen")}


def check_publish_offer(offer: SessionDescription, requests: list[PublishRequest]) -> None:
    """ORS 8.2, 10.4 and 10.6: does the client's `tracks` (REQUESTS, in order) agree with its
    offer? SdpError whose ``field`` names the offending member; nothing is changed anywhere.

    In order: the offer as a whole (ICE, DTLS; field None), then each `tracks` entry (its mid
    names a sending m-section once, its source fits the kind, its simulcast rids are the
    m-section's a=rid send lines), then each sending m-section (it has an entry: ``/tracks``;
    it has a usable codec: ``/tracks/N``).
    """
    _remote_transport(offer)
    sections = {_mid_of(media, index): media for index, media in enumerate(offer.media)}
    entries: dict[str, int] = {}
    for n, request in enumerate(requests):
        media = sections.get(request.mid)
        if request.mid in entries:
            raise SdpError(f"mid {request.mid[:64]!r} appears twice in tracks", f"/tracks/{n}/mid")
        entries[request.mid] = n
        if media is None:
            raise SdpError(
                f"mid {request.mid[:64]!r} in tracks has no m-section in the offer",
                f"/tracks/{n}/mid",
            )
        if not media.sends:
            raise SdpError(
                f"the m-section of mid {request.mid[:64]!r} sends no audio or video "
                "(rejected, recvonly, inactive or another kind)",
                f"/tracks/{n}/mid",
            )
        if request.source not in _SOURCES_BY_KIND[media.kind]:
            raise SdpError(
                f"source {request.source[:32]!r} does not fit the {media.kind} m-section "
                f"{request.mid[:64]!r}: {' or '.join(_SOURCES_BY_KIND[media.kind])}",
                f"/tracks/{n}/source",
            )
        offered = sorted(r.id for r in media.rids if r.direction == "send")
        listed = [layer.rid for layer in request.simulcast]
        if sorted(listed) != offered or len(set(listed)) != len(listed):
            raise SdpError(
                f"the simulcast rids of mid {request.mid[:64]!r} ({', '.join(listed) or 'none'}) "
                f"are not the m-section's a=rid send lines ({', '.join(offered) or 'none'})",
                f"/tracks/{n}/simulcast",
            )
    for index, media in enumerate(offer.media):
        if not media.sends:
            continue
        mid = _mid_of(media, index)
        if mid not in entries:
            raise SdpError(
                f"the {media.kind} m-section of mid {mid[:64]!r} sends media but has no entry "
                "in tracks",
                "/tracks",
            )
        if _choose_codec(media) is None:
            raise SdpError(
                f"no usable codec in the {media.kind} m-section of mid {mid[:64]!r}: audio needs "
                "opus/48000/2, video needs VP8 or H264 packetization-mode=1",
                f"/tracks/{entries[mid]}",
            )


class WebRtcEndpoint:
    """One participant: a publish session (browser sends) and a subscribe session (relay sends)."""

    def __init__(self, context: EndpointContext, participant_id: str) -> None:
        self.participant_id = participant_id
        self.room_id = context.room_id
        self._context = context
        self._router = context.router
        self._closed = False
        self._session_id = secrets.randbelow(2**62)
        # Publish side.
        self._publish: WebRtcTransport | None = None
        self._ceiling_told = False  # the REMB ceiling sent with the first transport-cc feedback
        self._published: dict[str, _Published] = {}  # by mid
        self._ssrc_to_track: dict[int, str] = {}
        self._mid_to_track: dict[bytes, str] = {}
        self._pt_to_track: dict[int, str | None] = {}
        self._mid_ext_id = 0
        self._publish_version = 0
        self._chosen_pt: dict[str, int] = {}
        self._publish_retired = False
        """The client of a resumed session publishes on a new connection (renew): the next
        publish offer replaces this session and its tracks."""
        # Subscribe side.
        self._subscribe: WebRtcTransport | None = None
        self._slots: list[_Slot] = []
        self._wanted: list[str] = []
        # the subscriber's choices per track, kept for a downtrack attached after they came
        # (a subscription sent before the subscribe transport connected) and re-attached ones
        self._max_heights: dict[str, int | None] = {}
        self._paused: dict[str, bool] = {}
        self._negotiated: list[tuple[str, str, str | None, int]] = []
        self._offered: list[tuple[str, str, str | None, int]] | None = None
        self._subscribe_version = 0
        self._next_mid = 0
        self._codec_pt: dict[tuple[str, int, str], int] = {}

    # ------------------------------------------------------------------ publish

    def accept_publish_offer(
        self, offer_sdp: str | SessionDescription, requests: list[PublishRequest]
    ) -> PublishAnswer:
        """Answer the browser's publish offer (ICE-lite, a=setup:passive, BUNDLE); raises SdpError.

        Everything that can make the offer fail is checked before anything changes, so a refused
        offer leaves the publish session as it was (ORS 10.4: the whole offer fails).
        """
        self._check_open()
        offer = sdp.parse(offer_sdp) if isinstance(offer_sdp, str) else offer_sdp
        ufrag, pwd, fingerprint, setup = _remote_transport(offer)
        codecs: list[Codec | None] = []
        unusable: list[str] = []
        for index, media in enumerate(offer.media):
            codec = (
                _choose_codec(media) if media.active and media.kind in ("audio", "video") else None
            )
            codecs.append(codec)
            if codec is None and media.sends:
                unusable.append(f"{media.kind} m-section {_mid_of(media, index)!r}")
        if unusable or not any(codecs):
            raise SdpError(
                "no usable codec in the offer ("
                + ", ".join(unusable or ["no audio/video m-section"])
                + "): audio needs opus/48000/2, video needs VP8 or H264 packetization-mode=1"
            )

        if self._publish_retired:
            self._drop_publish()
        if self._publish is None:
            self._publish = WebRtcTransport(self._context.mux, self._context.certificate)
            self._publish.on_rtp = self._on_publish_rtp
            self._publish.on_rtcp = self._on_publish_rtcp
        transport = self._publish
        transport.set_remote(ufrag, pwd, fingerprint, setup)
        local_setup = "active" if setup == "passive" else "passive"

        requests_by_mid = {r.mid: r for r in requests}
        answer = self._session_skeleton(self._publish_version)
        self._publish_version += 1
        tracks: list[PublishedTrackInfo] = []
        bundled: list[str] = []
        for index, (media, chosen) in enumerate(zip(offer.media, codecs, strict=True)):
            mid = _mid_of(media, index)
            if chosen is None:
                # nothing to receive here: inactive on the bundle if we can name a codec of it
                unused = self._unused(media, mid, local_setup, transport)
                answer.media.append(unused or self._rejected(media, mid, local_setup, transport))
                if unused is not None:
                    bundled.append(mid)
                self._unpublish_mid(mid)
                continue
            codec = chosen
            previous_pt = self._chosen_pt.get(mid)
            if previous_pt is not None and media.codec(previous_pt) is not None:
                codec = media.codec(previous_pt) or codec
            sending = media.sends
            answer_media = self._publish_answer_media(media, mid, codec, local_setup, sending)
            answer.media.append(answer_media)
            bundled.append(mid)
            if not sending:
                self._unpublish_mid(mid)
                continue
            info = self._publish_mid(media, mid, codec, answer_media, requests_by_mid.get(mid))
            tracks.append(info)
        answer.groups = [("BUNDLE", bundled)]
        # one transport, one transport-wide sequence: BUNDLE gives the extension one id
        transport.set_transport_cc(
            next(
                (
                    e.id
                    for m in answer.media
                    if m.direction == "recvonly"
                    for e in m.extmaps
                    if e.uri == sdp.EXT_TRANSPORT_CC
                ),
                EXT_ID_NONE,
            )
        )
        return PublishAnswer(sdp=answer.serialize(), tracks=tracks)

    def renew(self) -> None:
        """The participant's client came back with new peer connections (a resumed session, ORS
        6.6). The subscribe session starts over: a new transport at the next offer, which offers
        every track the client subscribes to anew. The publish session is retired: its tracks
        stay, and flow while anything still sends them, until the next publish offer replaces
        them (``accept_publish_offer``) or they are unpublished."""
        self._check_open()
        for slot in self._slots:
            self._detach(slot)
        if self._subscribe is not None:
            self._subscribe.close()
            self._subscribe = None
        self._slots = []
        self._wanted = []
        self._max_heights.clear()
        self._paused.clear()
        self._negotiated = []
        self._offered = None
        self._next_mid = 0
        self._codec_pt = {}
        self._publish_retired = self._publish is not None

    def _drop_publish(self) -> None:
        """Unpublish the retired publish session's tracks and close its transport."""
        for published in list(self._published.values()):
            self.unpublish(published.track_id)
        if self._publish is not None:
            self._publish.close()
            self._publish = None
        for table in (self._chosen_pt, self._ssrc_to_track, self._mid_to_track, self._pt_to_track):
            table.clear()
        self._mid_ext_id = 0
        self._ceiling_told = False
        self._publish_retired = False

    def _publish_answer_media(
        self, media: MediaDescription, mid: str, codec: Codec, setup: str, sending: bool
    ) -> MediaDescription:
        transport = self._publish
        assert transport is not None
        chosen = Codec(
            codec.payload_type,
            codec.name,
            codec.clock_rate,
            codec.channels,
            codec.fmtp,
            [fb for fb in codec.rtcp_fb if fb in _PUBLISH_FEEDBACK],
        )
        codecs = [chosen]
        rtx_pt = media.rtx_payload_type(codec.payload_type)
        if rtx_pt is not None:
            rtx = media.codec(rtx_pt)
            assert rtx is not None
            codecs.append(Codec(rtx_pt, rtx.name, rtx.clock_rate, None, rtx.fmtp))
        allowed = _PUBLISH_EXTENSIONS[media.kind]
        answer_media = self._media_skeleton(media.kind, mid, setup, transport)
        answer_media.proto = media.proto if "SAVPF" in media.proto else _PROTO
        answer_media.direction = "recvonly" if sending else "inactive"
        answer_media.codecs = codecs
        answer_media.fmt = [str(c.payload_type) for c in codecs]
        answer_media.extmaps = [Extmap(e.id, e.uri) for e in media.extmaps if e.uri in allowed]
        answer_media.rtcp_rsize = media.rtcp_rsize
        if sending and media.rids:
            answer_media.rids = [
                Rid(r.id, "recv", r.params) for r in media.rids if r.direction == "send"
            ]
            if media.simulcast is not None and media.simulcast.send:
                answer_media.simulcast = Simulcast(recv=media.simulcast.send)
        return answer_media

    def _publish_mid(
        self,
        media: MediaDescription,
        mid: str,
        codec: Codec,
        answer_media: MediaDescription,
        request: PublishRequest | None,
    ) -> PublishedTrackInfo:
        existing = self._published.get(mid)
        assert self._publish is not None
        rids = (
            media.simulcast.rids("send")
            if media.simulcast is not None and media.simulcast.send
            else [r.id for r in media.rids if r.direction == "send"]
        )
        if request is not None and request.simulcast:
            layers = list(request.simulcast)
        else:
            layers = [SimulcastLayerInfo(rid) for rid in rids]
        if existing is not None:
            track_id = existing.track_id
        else:
            track_id = self._track_id_for(media, mid, request)
            rtx_pt = media.rtx_payload_type(codec.payload_type)
            extensions = _extension_ids(answer_media.extmaps)
            heights = {layer.rid: layer.height for layer in layers}
            self._router.add_receiver(
                track_id,
                self.participant_id,
                media.kind,
                CodecInfo(
                    _codec_name(codec),
                    codec.payload_type,
                    codec.clock_rate,
                    rtx_pt,
                    fir="ccm fir" in codec.rtcp_fb,
                ),
                extensions,
                self._publish,
                rids=rids,
                layers=[(rid, heights.get(rid)) for rid in rids]
                if rids and all(heights.get(rid) for rid in rids)
                else None,
                source=request.source if request is not None else "",
            )
            self._published[mid] = _Published(mid, track_id, media.kind, codec.payload_type)
            self._chosen_pt[mid] = codec.payload_type
            self._context.on_track_published(
                TrackRecord(
                    track_id,
                    self.participant_id,
                    media.kind,
                    Codec(
                        codec.payload_type, codec.name, codec.clock_rate, codec.channels, codec.fmtp
                    ),
                )
            )
            self._mid_to_track[mid.encode()] = track_id
            if extensions.mid:
                self._mid_ext_id = extensions.mid
            for pt in (codec.payload_type, rtx_pt):
                if pt is not None:
                    # A payload type shared by two m-lines cannot identify a track.
                    self._pt_to_track[pt] = None if pt in self._pt_to_track else track_id
        for ssrc in media.ssrc_values():
            self._ssrc_to_track[ssrc] = track_id
        if not rids:
            self._announce_ssrcs(media, track_id)
        return PublishedTrackInfo(mid, track_id, media.kind, _codec_name(codec), layers)

    def _announce_ssrcs(self, media: MediaDescription, track_id: str) -> None:
        """Tell the router the media SSRC and its RTX SSRC (a=ssrc-group:FID) of a single-layer track."""
        ssrcs = media.ssrc_values()
        if not ssrcs:
            return
        fid = next((g.ssrcs for g in media.ssrc_groups if g.semantics == "FID"), None)
        if fid and len(fid) >= 2:
            self._router.set_layer_ssrc(track_id, "", fid[0], fid[1])
        else:
            self._router.set_layer_ssrc(track_id, "", ssrcs[0])

    def _track_id_for(
        self, media: MediaDescription, mid: str, request: PublishRequest | None
    ) -> str:
        if request is not None and request.track_id:
            return request.track_id
        if media.msid and len(media.msid.split()) > 1:
            candidate = media.msid.split()[1]
            if candidate not in self._context.tracks:
                return candidate
        return f"{self.participant_id}-{mid}"

    def _unpublish_mid(self, mid: str) -> None:
        published = self._published.get(mid)
        if published is not None:
            self.unpublish(published.track_id)

    def unpublish(self, track_id: str) -> None:
        """Stop routing one of this participant's tracks; subscribers' m-lines go inactive."""
        mid = next((m for m, p in self._published.items() if p.track_id == track_id), None)
        if mid is None:
            return
        del self._published[mid]
        self._chosen_pt.pop(mid, None)
        self._mid_to_track.pop(mid.encode(), None)
        for table in (self._ssrc_to_track, self._pt_to_track):
            for key in [k for k, v in table.items() if v == track_id]:
                del table[key]
        self._context.on_track_removed(track_id)

    def _on_publish_rtp(self, packet: bytes) -> None:
        track_id = self._ssrc_to_track.get(_SSRC.unpack_from(packet, 8)[0])
        if track_id is None:
            track_id = self._learn_ssrc(packet)
            if track_id is None:
                return
        self._router.on_rtp(track_id, packet)

    def _learn_ssrc(self, packet: bytes) -> str | None:
        track_id: str | None = None
        if self._mid_ext_id:
            mid = find_extension(packet, self._mid_ext_id)
            if mid is not None:
                track_id = self._mid_to_track.get(bytes(mid))
        if track_id is None:
            track_id = self._pt_to_track.get(packet[1] & 0x7F)
        if track_id is not None:
            self._ssrc_to_track[_SSRC.unpack_from(packet, 8)[0]] = track_id
        return track_id

    def _on_publish_rtcp(self, packet: bytes) -> None:
        # Hand each sender report of the compound packet to its track (RFC 3550 section 6.4.1).
        offset = 0
        end = len(packet)
        while offset + 8 <= end:
            length = ((packet[offset + 2] << 8 | packet[offset + 3]) + 1) * 4
            if packet[offset + 1] == 200:
                track_id = self._ssrc_to_track.get(_SSRC.unpack_from(packet, offset + 4)[0])
                if track_id is not None:
                    self._router.on_publisher_rtcp(track_id, packet[offset : offset + length])
            offset += length

    def fast_tick(self, now: float) -> None:
        """The relay's fast timer (every 50 ms, time.monotonic() NOW): transport-wide feedback to
        the publisher for what arrived since the last one (none when nothing did)."""
        publish = self._publish
        if publish is not None and publish.arrivals is not None:
            media_ssrc = next(iter(self._ssrc_to_track), 0)
            if publish.send_transport_feedback(media_ssrc, now) and not self._ceiling_told:
                # The ceiling at once: the router's REMB comes with its receiver reports, up to a
                # second later, and the feedback alone would let the sender climb past it.
                self._ceiling_told = True
                bitrate = self._router.publisher_remb_bitrate
                if bitrate:
                    remb = RtcpRemb(self._router.rtcp_ssrc, bitrate, [media_ssrc])
                    publish.send_rtcp(remb.serialize())
        subscribe = self._subscribe
        if subscribe is not None and subscribe.congestion is not None:
            subscribe.congestion.tick(now)

    # ---------------------------------------------------------------- subscribe

    def subscribe(self, track_id: str) -> bool:
        """Ask for a track of the room; False when the room has no such track."""
        self._check_open()
        record = self._context.tracks.get(track_id)
        if record is None or record.participant_id == self.participant_id:
            return False
        if track_id not in self._wanted:
            self._wanted.append(track_id)
        return True

    def unsubscribe(self, track_id: str) -> None:
        """Stop taking a track (the relay calls it too when the track leaves the room): its
        m-line here turns inactive at the next offer."""
        if track_id in self._wanted:
            self._wanted.remove(track_id)
        self._max_heights.pop(track_id, None)
        self._paused.pop(track_id, None)
        for slot in self._slots:
            if slot.track_id == track_id:
                self._detach(slot)
                slot.track_id = None

    def set_max_height(self, track_id: str, max_height: int | None) -> None:
        """The tallest simulcast layer wanted of a track (None: no limit), now or from when its
        downtrack is attached."""
        self._max_heights[track_id] = max_height
        self._router.set_max_height(track_id, self.participant_id, max_height)

    def set_paused(self, track_id: str, paused: bool) -> None:
        """The subscriber's own pause of a track, now or from when its downtrack is attached."""
        self._paused[track_id] = paused
        self._router.set_paused(track_id, self.participant_id, paused)

    def create_subscribe_offer(self) -> SubscribeOffer | None:
        """The relay's offer for the receive side; None when nothing changed since the last answer."""
        self._check_open()
        placed = {slot.track_id for slot in self._slots if slot.track_id is not None}
        for track_id in self._wanted:
            if track_id in placed:
                continue
            record = self._context.tracks.get(track_id)
            if record is None:
                continue
            self._place(record)
        state = [slot.state() for slot in self._slots]
        if state == self._negotiated:
            return None
        if self._subscribe is None:
            self._subscribe = WebRtcTransport(self._context.mux, self._context.certificate)
            self._subscribe.on_rtcp = self._on_subscribe_rtcp
            self._subscribe.on_connected = self._attach_pending
        transport = self._subscribe
        offer = self._session_skeleton(self._subscribe_version)
        self._subscribe_version += 1
        offer.groups = [("BUNDLE", [slot.mid for slot in self._slots])]
        offer.msid_semantic = "WMS *"
        active: list[tuple[str, str]] = []
        for slot in self._slots:
            media = self._media_skeleton(slot.kind, slot.mid, "actpass", transport)
            assert slot.codec is not None
            pt = self._payload_type_for(slot.codec)
            media.codecs = [
                Codec(
                    pt,
                    slot.codec.name,
                    slot.codec.clock_rate,
                    slot.codec.channels,
                    slot.codec.fmtp,
                    list(_SUBSCRIBE_FEEDBACK[slot.kind]),
                )
            ]
            media.fmt = [str(pt)]
            if slot.rtx_ssrc:
                rtx_pt = self._payload_type_for(_rtx_codec(pt))
                media.codecs.append(_rtx_codec(pt, rtx_pt))
                media.fmt.append(str(rtx_pt))
            media.extmaps = [Extmap(e.id, e.uri) for e in _SUBSCRIBE_EXTENSIONS[slot.kind]]
            media.rtcp_rsize = True
            if slot.track_id is None:
                media.direction = "inactive"
            else:
                media.direction = "sendonly"
                msid = f"{slot.publisher_id} {slot.track_id}"
                media.msid = msid
                media.ssrcs = _ssrc_lines(slot, slot.publisher_id, msid)
                if slot.rtx_ssrc:
                    media.ssrc_groups = [SsrcGroup("FID", [slot.ssrc, slot.rtx_ssrc])]
                active.append((slot.mid, slot.track_id))
            offer.media.append(media)
        self._offered = state
        return SubscribeOffer(sdp=offer.serialize(), tracks=active)

    def _place(self, record: TrackRecord) -> None:
        negotiated_free = {mid for mid, _, track, _ in self._negotiated if track is None}
        slot = next(
            (
                s
                for s in self._slots
                if s.track_id is None and s.kind == record.kind and s.mid in negotiated_free
            ),
            None,
        )
        if slot is None:
            slot = _Slot(str(self._next_mid), record.kind, None, 0)
            self._next_mid += 1
            self._slots.append(slot)
        slot.track_id = record.track_id
        slot.ssrc = self._new_ssrc()
        slot.rtx_ssrc = self._new_ssrc() if record.kind == "video" else 0
        slot.publisher_id = record.participant_id
        slot.codec = record.codec
        slot.attached = False

    def _new_ssrc(self) -> int:
        used = {slot.ssrc for slot in self._slots} | {slot.rtx_ssrc for slot in self._slots}
        while True:
            ssrc = secrets.randbits(32)
            if ssrc and ssrc not in used:
                return ssrc

    def _payload_type_for(self, codec: Codec) -> int:
        name = _codec_name(codec)
        key = (name, codec.clock_rate, codec.fmtp if name in ("H264", "RTX") else "")
        pt = self._codec_pt.get(key)
        if pt is None:
            used = set(self._codec_pt.values())
            preferred = _PREFERRED_PT.get(name, 96)
            pt = (
                preferred
                if preferred not in used
                else next(p for p in range(96, 128) if p not in used)
            )
            self._codec_pt[key] = pt
        return pt

    def accept_subscribe_answer(self, sdp_text: str) -> None:
        """Apply the browser's answer to the last subscribe offer; raises SdpError."""
        self._check_open()
        if self._offered is None or self._subscribe is None:
            raise SdpError("no subscribe offer is waiting for an answer")
        answer = sdp.parse(sdp_text)
        by_mid = {m.mid: m for m in answer.media if m.mid is not None}
        ufrag, pwd, fingerprint, setup = _remote_transport(answer, setups=("active", "passive"))
        self._subscribe.set_remote(ufrag, pwd, fingerprint, setup)
        offered = {mid: track for mid, _, track, _ in self._offered}
        for slot in self._slots:
            if slot.track_id is None or offered.get(slot.mid) != slot.track_id or slot.attached:
                continue
            media = by_mid.get(slot.mid)
            receiving = media is not None and media.port != 0
            if media is None or not receiving or media.direction in ("sendonly", "inactive"):
                continue
            assert slot.codec is not None
            pt = self._payload_type_for(slot.codec)
            codec = media.codec(pt)
            if codec is None:
                continue
            slot.payload_type = pt
            slot.rtx_payload_type = 0
            if slot.rtx_ssrc:
                rtx_pt = self._payload_type_for(_rtx_codec(pt))
                if media.rtx_payload_type(pt) == rtx_pt:
                    slot.rtx_payload_type = rtx_pt
            allowed = {e.uri for e in _SUBSCRIBE_EXTENSIONS[slot.kind]}
            slot.extensions = (
                _extension_ids([e for e in media.extmaps if e.uri in allowed])
                if media.extmaps
                else ExtensionIds()
            )
        self._negotiated = self._offered
        self._offered = None
        self._use_transport_cc(_transport_cc_id(answer.media))
        if self._subscribe.connected:
            self._attach_pending()

    def _use_transport_cc(self, ext_id: int) -> None:
        """Congestion control of the subscribe session when the peer took transport-cc."""
        transport = self._subscribe
        if transport is None:
            return
        current = transport.congestion
        if ext_id == EXT_ID_NONE:
            transport.set_congestion(None)
        elif current is None or current.ext_id != ext_id:
            transport.set_congestion(
                SubscriberCongestion(self._router, self.participant_id, ext_id)
            )

    def _on_subscribe_rtcp(self, packet: bytes) -> None:
        """Subscriber RTCP: transport-cc feedback to the congestion controller, the rest (NACK,
        PLI, reports) to the router."""
        transport = self._subscribe
        congestion = transport.congestion if transport is not None else None
        if congestion is not None:
            offset = 0
            end = len(packet)
            others = False
            now = time.monotonic()
            while offset + 4 <= end:  # RFC 3550 section 6.1: a compound packet
                length = ((packet[offset + 2] << 8 | packet[offset + 3]) + 1) * 4
                if packet[offset + 1] == RTCP_RTPFB and packet[offset] & 0x1F == RTPFB_TRANSPORT_CC:
                    congestion.on_feedback(packet[offset : offset + length], now)
                else:
                    others = True
                offset += length
            if not others:
                return
        self._router.on_subscriber_rtcp(self.participant_id, packet)

    @property
    def bandwidth_estimate(self) -> int | None:
        """The subscribe session's bandwidth estimate (bits/s); None without transport-cc."""
        transport = self._subscribe
        congestion = transport.congestion if transport is not None else None
        return congestion.estimate if congestion is not None else None

    def _attach_pending(self) -> None:
        sink = self._subscribe
        if sink is None:
            return
        for slot in self._slots:
            if slot.track_id is None or slot.attached or not slot.payload_type:
                continue
            if slot.track_id not in self._context.tracks:
                continue
            if not self._router.has_receiver(slot.track_id):
                continue
            self._router.add_downtrack(
                slot.track_id,
                self.participant_id,
                sink,
                slot.ssrc,
                slot.payload_type,
                slot.extensions,
                rtx_ssrc=slot.rtx_ssrc if slot.rtx_payload_type else 0,
                rtx_payload_type=slot.rtx_payload_type,
                # under congestion control: the lowest layer until the first allocation
                max_layer=0 if sink.congestion is not None else None,
            )
            slot.attached = True
            if slot.track_id in self._max_heights:
                max_height = self._max_heights[slot.track_id]
                self._router.set_max_height(slot.track_id, self.participant_id, max_height)
            if self._paused.get(slot.track_id):
                self._router.set_paused(slot.track_id, self.participant_id, True)

    def _detach(self, slot: _Slot) -> None:
        if slot.attached and slot.track_id is not None:
            slot.attached = False
            self._router.remove_downtrack(slot.track_id, self.participant_id)
        slot.payload_type = 0
        slot.rtx_payload_type = 0

    # --------------------------------------------------------------------- WHEP

    def accept_view_offer(self, offer_sdp: str | SessionDescription, track_ids: list[str]) -> str:
        """WHEP: answer a recvonly offer by sending the given tracks; returns the answer SDP."""
        self._check_open()
        offer = sdp.parse(offer_sdp) if isinstance(offer_sdp, str) else offer_sdp
        ufrag, pwd, fingerprint, setup = _remote_transport(offer)
        if self._subscribe is None:
            self._subscribe = WebRtcTransport(self._context.mux, self._context.certificate)
            self._subscribe.on_rtcp = self._on_subscribe_rtcp
            self._subscribe.on_connected = self._attach_pending
        transport = self._subscribe
        transport.set_remote(ufrag, pwd, fingerprint, setup)
        local_setup = "active" if setup == "passive" else "passive"
        remaining = [self._context.tracks[t] for t in track_ids if t in self._context.tracks]
        answer = self._session_skeleton(self._subscribe_version)
        self._subscribe_version += 1
        answer.msid_semantic = "WMS *"
        bundled: list[str] = []
        sending: list[str] = []
        for index, media in enumerate(offer.media):
            mid = _mid_of(media, index)
            record = next((r for r in remaining if r.kind == media.kind), None)
            codec = self._matching_codec(media, record.codec) if record is not None else None
            if not media.active or record is None or codec is None:
                # nothing to send here (an audio-only participant and a video m-section):
                # inactive on the bundle, which aiortc under max-bundle needs (RFC 8843 7.3.3
                # rejection is kept for what cannot be answered so: port 0 offered, no codec)
                unused = self._unused(media, mid, local_setup, transport)
                answer.media.append(unused or self._rejected(media, mid, local_setup, transport))
                if unused is not None:
                    bundled.append(mid)
                continue
            remaining.remove(record)
            slot = _Slot(mid, media.kind, record.track_id, self._new_ssrc(), record.participant_id)
            slot.codec = record.codec
            slot.payload_type = codec.payload_type
            offered_rtx = media.rtx_payload_type(codec.payload_type)
            if media.kind == "video" and offered_rtx is not None:
                slot.rtx_ssrc = self._new_ssrc()
                slot.rtx_payload_type = offered_rtx
            allowed = {e.uri for e in _SUBSCRIBE_EXTENSIONS[media.kind]}
            extmaps = [Extmap(e.id, e.uri) for e in media.extmaps if e.uri in allowed]
            slot.extensions = _extension_ids(extmaps)
            self._slots.append(slot)
            out = self._media_skeleton(media.kind, mid, local_setup, transport)
            out.proto = media.proto
            out.codecs = [
                Codec(
                    codec.payload_type,
                    codec.name,
                    codec.clock_rate,
                    codec.channels,
                    codec.fmtp,
                    [fb for fb in codec.rtcp_fb if fb in _FEEDBACK or fb == "transport-cc"],
                )
            ]
            out.fmt = [str(codec.payload_type)]
            if slot.rtx_payload_type:
                out.codecs.append(_rtx_codec(codec.payload_type, slot.rtx_payload_type))
                out.fmt.append(str(slot.rtx_payload_type))
                out.ssrc_groups = [SsrcGroup("FID", [slot.ssrc, slot.rtx_ssrc])]
            out.extmaps = extmaps
            out.rtcp_rsize = media.rtcp_rsize
            out.direction = "sendonly"
            msid = f"{record.participant_id} {record.track_id}"
            out.msid = msid
            out.ssrcs = _ssrc_lines(slot, record.participant_id, msid)
            answer.media.append(out)
            bundled.append(mid)
            sending.append(mid)
        if not sending:
            raise SdpError("none of the requested tracks matches an offered m-line and codec")
        answer.groups = [("BUNDLE", bundled)]
        self._use_transport_cc(_transport_cc_id(answer.media))
        self._negotiated = [slot.state() for slot in self._slots]
        if transport.connected:
            self._attach_pending()
        return answer.serialize()

    @staticmethod
    def _matching_codec(media: MediaDescription, wanted: Codec) -> Codec | None:
        name = _codec_name(wanted)
        for codec in media.codecs:
            if _codec_name(codec) != name or codec.clock_rate != wanted.clock_rate:
                continue
            if name == "H264":
                params = codec.parameters
                if params.get("packetization-mode") != wanted.parameters.get("packetization-mode"):
                    continue
                theirs = params.get("profile-level-id", "")[:4].lower()
                if theirs != wanted.parameters.get("profile-level-id", "")[:4].lower():
                    continue
            return codec
        return None

    # ------------------------------------------------------------------ helpers

    def _session_skeleton(self, version: int) -> SessionDescription:
        return SessionDescription(
            origin=f"rondpoint {self._session_id} {version} IN IP4 {self._context.candidate_ip}",
            name="-",
            timing="0 0",
            ice_lite=True,
        )

    def _media_skeleton(
        self, kind: str, mid: str, setup: str, transport: WebRtcTransport
    ) -> MediaDescription:
        ip = self._context.candidate_ip
        port = self._context.mux.port
        candidates = [f"1 1 udp 2130706431 {ip} {port} typ host"]
        tcp_port = self._context.mux.tcp_port
        if tcp_port:
            candidates.append(
                f"2 1 tcp {_TCP_PASSIVE_PRIORITY} {ip} {tcp_port} typ host tcptype passive"
            )
        return MediaDescription(
            kind=kind,
            port=port,
            proto=_PROTO,
            fmt=[],
            connection=f"IN IP4 {ip}",
            mid=mid,
            ice_ufrag=transport.local_ufrag,
            ice_pwd=transport.local_pwd,
            fingerprint=self._context.certificate.fingerprint,
            setup=setup,
            rtcp_mux=True,
            candidates=candidates,
            end_of_candidates=True,
        )

    def _unused(
        self, media: MediaDescription, mid: str, setup: str, transport: WebRtcTransport
    ) -> MediaDescription | None:
        """An offered m-section that carries nothing, answered `a=inactive` on the bundled
        transport like the others (ICE, DTLS, candidates) with the offer's first codec; None
        when it cannot be (port 0 offered, not audio or video, no codec to name).

        aiortc under max-bundle takes the shared transport's remote candidates from the last
        m-section it reads and refuses one without ICE credentials: a bare `m=video 0` left its
        ICE without candidates (WHEP of an audio-only participant never connected)."""
        codec = _first_codec(media)
        if not media.active or media.kind not in ("audio", "video") or codec is None:
            return None
        out = self._media_skeleton(media.kind, mid, setup, transport)
        out.proto = media.proto if "SAVPF" in media.proto else _PROTO
        out.codecs = [codec]
        out.fmt = [str(codec.payload_type)]
        out.rtcp_rsize = media.rtcp_rsize
        out.direction = "inactive"
        return out

    def _rejected(
        self, media: MediaDescription, mid: str, setup: str, transport: WebRtcTransport
    ) -> MediaDescription:
        """A rejected m-section (RFC 8829 5.3.1, RFC 8843 7.3.3): port 0, outside the BUNDLE
        group, `a=mid`, `a=inactive`, the offer's first codec in full, the answer's `c=` line,
        and the transport's ICE and DTLS attributes and candidate (aiortc refuses an m-section
        without ICE credentials and, under max-bundle, takes the shared transport's candidates
        from the last m-section it reads, rejected or not: a rejected data channel read last left
        its ICE with nothing to check). Browsers ignore a port-0 section's candidates."""
        rejected = self._media_skeleton(media.kind, mid, setup, transport)
        rejected.port = 0
        rejected.proto = media.proto
        rejected.direction = "inactive"
        codec = _first_codec(media) if media.kind in ("audio", "video") else None
        if codec is not None:
            rejected.codecs = [codec]
            rejected.fmt = [str(codec.payload_type)]
        else:
            rejected.fmt = media.fmt[:1] or ["0"]
            rejected.rtcp_mux = media.kind in ("audio", "video")
        return rejected

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("endpoint is closed")

    def close(self) -> None:
        """Unpublish everything, drop subscriptions and release both sessions."""
        if self._closed:
            return
        for published in list(self._published.values()):
            self.unpublish(published.track_id)
        for slot in self._slots:
            self._detach(slot)
        self._closed = True
        for transport in (self._publish, self._subscribe):
            if transport is not None:
                transport.close()
        self._context.on_closed(self)

    @property
    def consent_checks(self) -> int:
        """The peer's ICE consent checks over both sessions: unchanged for long means it is gone."""
        return sum(t.consent_checks for t in (self._publish, self._subscribe) if t is not None)
