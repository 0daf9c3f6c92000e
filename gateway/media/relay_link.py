"""A relay link: one room's media between two gateways' relays over one ICE + DTLS-SRTP transport
(RFC 8445, RFC 5764, BUNDLE RFC 8843, consent RFC 7675).

Every crossing track rides the one transport both ways, forwarded encoded. Inbound packets are
told apart by the SSRC map the partner announced in signalling (`add_remote_track`); each
announced track is a foreign track of the room's router, whose NACKs, PLIs and receiver reports
go back over the link. Outbound, each layer the partner demands (`set_demand`) is a downtrack of
the room's router (subscriber `fed:<name>:<rid>`) sending on the SSRC `local_streams` gave; the
partner's NACKs are answered from that downtrack's history, its PLI/FIR reach the publisher.

The initiator is the controlling full ICE agent on a socket of its own (each link then has its
own 5-tuple, so two rooms linked between the same two gateways never share one); the responder
is ICE-lite on the relay's shared port. Relay links forward on the Python path outbound (the
link's byte counters stay exact); inbound, the native fast path fans out to local subscribers.
"""

from __future__ import annotations

import ipaddress
import secrets
import string
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from . import sdp
from .endpoint import TrackRecord
from .relay import MediaRelay
from .router import CodecInfo, ExtensionIds, StreamPosition
from .rtcp import (
    RtcpError,
    RtcpFir,
    RtcpGenericNack,
    RtcpPli,
    RtcpReceiverReport,
    RtcpSenderReport,
    parse_rtcp,
)
from .sdp import Codec, Extmap, MediaDescription, SdpError, SessionDescription
from .transport import ControllingTransport, UdpMux, WebRtcTransport

Address = tuple[str, int]

PROTO = "UDP/TLS/RTP/SAVPF"
AUDIO_MID = "a"
VIDEO_MID = "v"
AUDIO_LEVEL_ID = 1
MID_ID = 3
MAX_REMOTE_TRACKS = 256
MAX_LAYERS = 4
MAX_CANDIDATES = 8
MAX_RID_LENGTH = 16
CONSENT_TIMEOUT = 30.0  # RFC 7675: the responder's view of consent (checks it answered)
SUBSCRIBER_PREFIX = "fed:"

_VIDEO_FEEDBACK = ["nack", "nack pli", "ccm fir"]
_H264_FMTP = "packetization-mode=1;profile-level-id=42e01f"


@dataclass(frozen=True)
class LinkCodec:
    """A codec the link carries, with its fixed payload type, fmtp and feedback."""

    kind: str
    payload_type: int
    name: str
    clock_rate: int
    channels: int | None
    fmtp: str
    feedback: tuple[str, ...]


LINK_CODECS = {
    "opus": LinkCodec("audio", 111, "opus", 48000, 2, "minptime=10;useinbandfec=1", ()),
    "VP8": LinkCodec("video", 96, "VP8", 90000, None, "", tuple(_VIDEO_FEEDBACK)),
    "H264": LinkCodec("video", 102, "H264", 90000, None, _H264_FMTP, tuple(_VIDEO_FEEDBACK)),
}
"""The link's codecs by name; their payload types are fixed by the federation spec."""

_SSRC = struct.Struct("!I")
_ICE_CHARS = set(string.ascii_letters + string.digits + "+/")


@dataclass(frozen=True)
class RemoteLayer:
    """One layer of a crossing track: its rid ("" without simulcast), SSRC on the link, height."""

    rid: str
    ssrc: int
    height: int | None = None


@dataclass(frozen=True)
class _RemoteTrack:
    record: TrackRecord
    layers: tuple[RemoteLayer, ...]


@dataclass(frozen=True)
class _RemoteTransport:
    ufrag: str
    pwd: str
    fingerprint: tuple[str, str]
    candidates: list[Address]


def link_codec(codec: Codec) -> LinkCodec | None:
    """The link codec carrying a track of this codec, or None when the link cannot carry it."""
    return link_codec_named(codec.name)


def link_codec_named(name: str) -> LinkCodec | None:
    """The link codec for a codec name as SDP or a Track writes it (any case)."""
    return LINK_CODECS.get("opus" if name.lower() == "opus" else name.upper())


class RelayLink:
    """One room's media to one partner gateway: one ICE/DTLS-SRTP transport (RFC 8445, 5764, 8843)."""

    def __init__(
        self,
        relay: MediaRelay,
        room_id: str,
        name: str,
        *,
        controlling: bool,
        on_wanted_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.room_id = room_id
        self.name = name
        self.controlling = controlling
        self.on_wanted_change = on_wanted_change
        self._relay = relay
        self._router = relay.router(room_id)
        self._transport: WebRtcTransport | None = None
        self._own_mux: UdpMux | None = None
        self._remote: dict[str, _RemoteTrack] = {}
        self._inbound: dict[int, str] = {}  # SSRC on the link -> remote track id
        self._local: dict[tuple[str, str], int] = {}  # (our track id, rid) -> SSRC on the link
        # where an undemanded layer's stream stopped, to continue it on the same SSRC
        self._stopped: dict[tuple[str, str], StreamPosition] = {}
        self._outbound: dict[int, str] = {}  # SSRC on the link -> downtrack subscriber id
        self._demand: dict[str, list[str]] = {}
        self._wanted: dict[str, list[str]] = {}
        self._consent_checks = 0
        self._consent_time = 0.0
        self._totals = dict.fromkeys(("packets_in", "packets_out", "bytes_in", "bytes_out"), 0)
        self.packets_unknown_ssrc = 0
        """Inbound RTP packets whose SSRC the partner never announced: dropped."""
        self._closed = False
        relay.add_ticker(self._tick)

    # --- the transport ---------------------------------------------------------------

    def create_offer(self) -> str:
        """The initiator's offer (ICE controlling, DTLS actpass); a new offer replaces the transport."""
        self._check_open()
        if not self.controlling:
            raise ValueError("only the controlling side of a relay link makes offers")
        mux = UdpMux()
        port = mux.open(self._relay.host)
        transport = ControllingTransport(mux, self._relay.certificate)
        self._replace_transport(transport, mux)
        return _link_sdp(
            transport, self._relay.certificate.fingerprint, "actpass", self._ip(), port, False
        )

    def accept_answer(self, sdp_text: str) -> None:
        """Apply the responder's answer: connectivity checks start, then DTLS as client."""
        self._check_open()
        transport = self._transport
        if not isinstance(transport, ControllingTransport) or transport.ice.remote_ufrag:
            raise SdpError("no relay link offer is waiting for an answer")
        remote = read_link_sdp(sdp_text, offer=False)
        transport.set_remote(remote.ufrag, remote.pwd, remote.fingerprint, "passive")
        transport.start_checks(remote.candidates)

    def accept_offer(self, sdp_text: str) -> str:
        """Answer the initiator's offer (ICE-lite on the shared port, DTLS passive)."""
        self._check_open()
        if self.controlling:
            raise ValueError("the controlling side of a relay link does not take offers")
        remote = read_link_sdp(sdp_text, offer=True)
        relay = self._relay
        transport = WebRtcTransport(relay.mux, relay.certificate, native_egress=False)
        transport.set_remote(remote.ufrag, remote.pwd, remote.fingerprint, "actpass")
        self._replace_transport(transport, None)
        return _link_sdp(
            transport, relay.certificate.fingerprint, "passive", self._ip(), relay.port, True
        )

    @property
    def connected(self) -> bool:
        transport = self._transport
        if transport is None or not transport.connected:
            return False
        if isinstance(transport, ControllingTransport):
            return True  # its agent tracks consent itself
        return time.monotonic() - self._consent_time < CONSENT_TIMEOUT

    @property
    def ingress(self) -> object:
        """The transport's native Ingress (the router installs fast routes for inbound tracks)."""
        transport = self._transport
        return None if transport is None else transport.ingress

    def stats(self) -> dict[str, int]:
        """Packets and bytes (SRTP/SRTCP, RTP and RTCP) in and out, over every transport so far."""
        totals = dict(self._totals)
        if self._transport is not None:
            for key, value in _transport_counters(self._transport).items():
                totals[key] += value
        totals["packets_unknown_ssrc"] = self.packets_unknown_ssrc
        return totals

    # --- partner -> us ---------------------------------------------------------------

    def add_remote_track(self, record: TrackRecord, layers: Sequence[RemoteLayer]) -> None:
        """A partner's track becomes a foreign track of the room's router with these layers and
        SSRCs; the same track announced again unchanged changes nothing. ValueError if unusable."""
        self._check_open()
        layers = tuple(layers)
        codec = link_codec(record.codec)
        if codec is None or codec.kind != record.kind:
            raise ValueError(f"a relay link cannot carry a {record.kind} track of this codec")
        _check_layers(layers)
        existing = self._remote.get(record.track_id)
        if existing is not None:
            if existing == _RemoteTrack(record, layers):
                return
            if existing.record == record and _shape(existing.layers) == _shape(layers):
                self._rebind(existing, layers)  # new SSRCs only: local subscribers stay
                return
            self.remove_remote_track(record.track_id)
        elif len(self._remote) >= MAX_REMOTE_TRACKS:
            raise ValueError(f"a relay link carries at most {MAX_REMOTE_TRACKS} remote tracks")
        elif self._router.has_receiver(record.track_id):
            raise ValueError("the room already has a track with this id")
        for layer in layers:
            if layer.ssrc in self._inbound:
                raise ValueError("an SSRC of this track is already another track's")
        self._relay.add_foreign_track(
            self.room_id,
            record,
            CodecInfo(codec.name, codec.payload_type, codec.clock_rate),
            ExtensionIds(audio_level=AUDIO_LEVEL_ID if codec.kind == "audio" else 0, mid=MID_ID),
            self,
            layers=[(layer.rid, layer.height) for layer in layers],
        )
        for layer in layers:
            self._router.set_layer_ssrc(record.track_id, layer.rid, layer.ssrc)
            self._inbound[layer.ssrc] = record.track_id
        self._remote[record.track_id] = _RemoteTrack(record, layers)

    def _rebind(self, existing: _RemoteTrack, layers: tuple[RemoteLayer, ...]) -> None:
        track_id = existing.record.track_id
        others = {ssrc for ssrc, owner in self._inbound.items() if owner != track_id}
        if any(layer.ssrc in others for layer in layers):
            raise ValueError("an SSRC of this track is already another track's")
        for layer in existing.layers:
            self._inbound.pop(layer.ssrc, None)
        for layer in layers:
            self._router.set_layer_ssrc(track_id, layer.rid, layer.ssrc)
            self._inbound[layer.ssrc] = track_id
        self._remote[track_id] = _RemoteTrack(existing.record, layers)

    def remove_remote_track(self, track_id: str) -> None:
        remote = self._remote.pop(track_id, None)
        if remote is None:
            return
        for layer in remote.layers:
            self._inbound.pop(layer.ssrc, None)
        self._relay.remove_foreign_track(self.room_id, track_id)

    def wanted(self) -> dict[str, list[str]]:
        """Remote track id -> the rids our subscribers need (lowest first); tracks nobody takes
        are left out. A subscriber takes the layer the router would pick for its max_height."""
        wanted: dict[str, list[str]] = {}
        for track_id, remote in self._remote.items():
            heights = self._router.subscriber_heights(track_id)
            if not heights:
                continue
            layers = remote.layers
            if remote.record.kind == "audio" or len(layers) == 1:
                wanted[track_id] = [layers[0].rid]
                continue
            if all(layer.height is not None for layer in layers):
                layers = tuple(sorted(layers, key=lambda layer: layer.height or 0))
            chosen = {_layer_for(layers, height).rid for height in heights.values()}
            wanted[track_id] = [layer.rid for layer in layers if layer.rid in chosen]
        return wanted

    # --- us -> partner ---------------------------------------------------------------

    def local_streams(self, track_id: str) -> list[RemoteLayer]:
        """The SSRC per layer this link uses for one of the room's own tracks (stable for the
        link's life), to announce to the partner; [] for a track not in the room or the
        partner's own."""
        info = self._router.receiver_info(track_id)
        if info is None or track_id in self._remote or link_codec(_codec(info.codec)) is None:
            return []
        heights = info.heights or tuple(None for _ in info.rids)
        return [
            RemoteLayer(rid, self._local_ssrc(track_id, rid), height)
            for rid, height in zip(info.rids, heights, strict=False)
        ]

    def set_demand(self, demand: Mapping[str, Sequence[str]]) -> None:
        """The partner wants exactly these layers of the room's tracks: downtracks are added and
        removed so. Tracks or rids the room does not have are kept until they appear."""
        self._check_open()
        wanted: dict[str, list[str]] = {}
        for track_id, rids in demand.items():
            if len(wanted) >= MAX_REMOTE_TRACKS:
                break
            if track_id in self._remote or not isinstance(track_id, str):
                continue
            kept: list[str] = []
            for rid in rids:
                if isinstance(rid, str) and len(rid) <= MAX_RID_LENGTH and rid not in kept:
                    kept.append(rid)
            wanted[track_id] = kept[:MAX_LAYERS]
        for track_id, rids in self._demand.items():
            for rid in rids:
                if rid not in wanted.get(track_id, ()):
                    self._drop_downtrack(track_id, rid)
        self._demand = wanted
        self._apply_demand()

    # --- the router's sink for the partner's tracks --------------------------------------

    def send_rtp(self, packet: bytes) -> None:
        transport = self._transport
        if transport is not None:
            transport.send_rtp(packet)

    def send_rtcp(self, packet: bytes) -> None:
        transport = self._transport
        if transport is not None:
            transport.send_rtcp(packet)

    def close(self) -> None:
        """Give back everything: downtracks, foreign tracks, the transport and its socket."""
        if self._closed:
            return
        self._closed = True
        self._relay.remove_ticker(self._tick)
        for track_id, rids in self._demand.items():
            for rid in rids:
                self._drop_downtrack(track_id, rid)
        self._demand = {}
        self._stopped.clear()
        for track_id in list(self._remote):
            self.remove_remote_track(track_id)
        self._replace_transport(None, None)
        self._local.clear()
        self.on_wanted_change = _nothing

    # --- internals -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the relay link is closed")

    def _ip(self) -> str:
        return self._relay.candidate_ip

    def _subscriber(self, rid: str) -> str:
        return f"{SUBSCRIBER_PREFIX}{self.name}:{rid}"

    def _replace_transport(self, transport: WebRtcTransport | None, mux: UdpMux | None) -> None:
        old = self._transport
        if old is not None:
            for key, value in _transport_counters(old).items():
                self._totals[key] += value
            old.close()
        if self._own_mux is not None:
            self._own_mux.close()
        self._transport = transport
        self._own_mux = mux
        self._consent_checks = 0
        self._consent_time = time.monotonic()
        if transport is not None:
            transport.on_rtp = self._on_rtp
            transport.on_rtcp = self._on_rtcp

    def _on_rtp(self, packet: bytes) -> None:
        track_id = self._inbound.get(_SSRC.unpack_from(packet, 8)[0])
        if track_id is None:
            self.packets_unknown_ssrc += 1
            return
        self._router.on_rtp(track_id, packet)

    def _on_rtcp(self, packet: bytes) -> None:
        """Each part of a compound packet to whom it is about: SRs of the partner's streams to
        their foreign tracks; reports and feedback about our streams to their downtracks."""
        try:
            parts = parse_rtcp(packet)
        except RtcpError:
            return
        tracks: set[str] = set()
        ssrcs: set[int] = set()
        for part in parts:
            if isinstance(part, RtcpSenderReport) and part.ssrc in self._inbound:
                tracks.add(self._inbound[part.ssrc])
            if isinstance(part, RtcpReceiverReport | RtcpSenderReport):
                ssrcs.update(report.ssrc for report in part.reports)
            elif isinstance(part, RtcpGenericNack | RtcpPli):
                ssrcs.add(part.media_ssrc)
            elif isinstance(part, RtcpFir):
                ssrcs.update(ssrc for ssrc, _ in part.entries)
        for track_id in tracks:
            self._router.on_publisher_rtcp(track_id, packet)
        subscribers = {self._outbound[ssrc] for ssrc in ssrcs if ssrc in self._outbound}
        for subscriber_id in subscribers:
            self._router.on_subscriber_rtcp(subscriber_id, packet)

    def _local_ssrc(self, track_id: str, rid: str) -> int:
        key = (track_id, rid)
        ssrc = self._local.get(key)
        if ssrc is None:
            if len(self._local) >= MAX_REMOTE_TRACKS * MAX_LAYERS:
                self._forget_gone_tracks()
            used = set(self._local.values())
            ssrc = 0
            while not ssrc or ssrc in used:
                ssrc = secrets.randbits(32)
            self._local[key] = ssrc
        return ssrc

    def _forget_gone_tracks(self) -> None:
        for key in [k for k in self._local if not self._router.has_receiver(k[0])]:
            if key[0] not in self._demand:
                del self._local[key]

    def _apply_demand(self) -> None:
        """Add the demanded downtracks that are missing (the track appeared or came back)."""
        for track_id, rids in self._demand.items():
            info = self._router.receiver_info(track_id)
            if info is None:
                continue
            codec = link_codec(_codec(info.codec))
            if codec is None:
                continue
            present = self._router.subscriber_heights(track_id)
            heights = info.heights or tuple(None for _ in info.rids)
            for rid in rids:
                subscriber_id = self._subscriber(rid)
                if rid not in info.rids or subscriber_id in present:
                    continue
                ssrc = self._local_ssrc(track_id, rid)
                audio = codec.kind == "audio"
                self._router.add_downtrack(
                    track_id,
                    subscriber_id,
                    self,
                    ssrc,
                    codec.payload_type,
                    ExtensionIds(audio_level=AUDIO_LEVEL_ID if audio else 0),
                    resume=self._stopped.pop((track_id, rid), None),
                )
                self._outbound[ssrc] = subscriber_id
                if len(info.rids) > 1:
                    height = heights[info.rids.index(rid)]
                    self._router.set_max_height(track_id, subscriber_id, height)

    def _drop_downtrack(self, track_id: str, rid: str) -> None:
        position = self._router.remove_downtrack(track_id, self._subscriber(rid))
        if position is not None:
            # the same SSRC continues where it stopped if the partner demands it again
            self._stopped[(track_id, rid)] = position
        ssrc = self._local.get((track_id, rid))
        if ssrc is not None:
            self._outbound.pop(ssrc, None)

    def _tick(self) -> None:
        if self._closed:
            return
        transport = self._transport
        if transport is not None and transport.consent_checks != self._consent_checks:
            self._consent_checks = transport.consent_checks
            self._consent_time = time.monotonic()
        self._apply_demand()
        for key in [key for key in self._stopped if not self._router.has_receiver(key[0])]:
            del self._stopped[key]
        wanted = self.wanted()
        if wanted != self._wanted:
            self._wanted = wanted
            self.on_wanted_change()


def _nothing() -> None:
    return None


def _codec(info: CodecInfo) -> Codec:
    return Codec(info.payload_type, info.name, info.clock_rate)


def _transport_counters(transport: WebRtcTransport) -> dict[str, int]:
    return {
        "packets_in": transport.packets_received,
        "bytes_in": transport.bytes_received,
        "packets_out": transport.packets_sent + transport.rtcp_sent,
        "bytes_out": transport.bytes_sent,
    }


def _layer_for(layers: Sequence[RemoteLayer], max_height: int | None) -> RemoteLayer:
    """The layer Router._select_layer picks when every layer is available (lowest first)."""
    if max_height is None or any(layer.height is None for layer in layers):
        return layers[-1]
    fitting = [layer for layer in layers if layer.height is not None and layer.height <= max_height]
    return fitting[-1] if fitting else layers[0]


def _shape(layers: Sequence[RemoteLayer]) -> list[tuple[str, int | None]]:
    return [(layer.rid, layer.height) for layer in layers]


def _check_layers(layers: Sequence[RemoteLayer]) -> None:
    if not 1 <= len(layers) <= MAX_LAYERS:
        raise ValueError(f"a track has 1 to {MAX_LAYERS} layers")
    rids = [layer.rid for layer in layers]
    ssrcs = [layer.ssrc for layer in layers]
    if len(set(rids)) != len(rids) or len(set(ssrcs)) != len(ssrcs):
        raise ValueError("a track's layers have distinct rids and SSRCs")
    if len(layers) > 1 and "" in rids:
        raise ValueError(
            'the layers of a simulcast track all have a rid (only a single layer is "")'
        )
    for layer in layers:
        if len(layer.rid) > MAX_RID_LENGTH or not (layer.rid.isalnum() or layer.rid == ""):
            raise ValueError("a layer's rid is up to 16 letters and digits")
        if not isinstance(layer.ssrc, int) or not 0 < layer.ssrc <= 0xFFFFFFFF:
            raise ValueError("a layer's SSRC is an integer from 1 to 4294967295")
        if layer.height is not None and not 0 < layer.height <= 8192:
            raise ValueError("a layer's height is from 1 to 8192")


# --- SDP (the shape fixed by the federation spec) ------------------------------------------


def _link_sdp(
    transport: WebRtcTransport,
    fingerprint: tuple[str, str],
    setup: str,
    ip: str,
    port: int,
    ice_lite: bool,
) -> str:
    session = SessionDescription(
        origin=f"- {secrets.randbelow(2**62)} 1 IN IP4 {ip}",
        ice_lite=ice_lite,
        groups=[("BUNDLE", [AUDIO_MID, VIDEO_MID])],
    )
    candidate = f"1 1 udp 2130706431 {ip} {port} typ host"
    for kind, mid in (("audio", AUDIO_MID), ("video", VIDEO_MID)):
        media = MediaDescription(kind, port, PROTO, [], connection=f"IN IP4 {ip}", mid=mid)
        media.candidates = [candidate]
        media.end_of_candidates = True
        media.ice_ufrag = transport.local_ufrag
        media.ice_pwd = transport.local_pwd
        media.fingerprint = fingerprint
        media.setup = setup
        media.direction = "sendrecv"
        media.rtcp_mux = True
        if kind == "audio":
            media.extmaps = [
                Extmap(AUDIO_LEVEL_ID, sdp.EXT_AUDIO_LEVEL),
                Extmap(MID_ID, sdp.EXT_MID),
            ]
        else:
            media.extmaps = [Extmap(MID_ID, sdp.EXT_MID)]
        for codec in LINK_CODECS.values():
            if codec.kind == kind:
                media.codecs.append(
                    Codec(
                        codec.payload_type,
                        codec.name,
                        codec.clock_rate,
                        codec.channels,
                        codec.fmtp,
                        list(codec.feedback),
                    )
                )
        media.fmt = [str(codec.payload_type) for codec in media.codecs]
        session.media.append(media)
    return session.serialize()


def read_link_sdp(text: str, *, offer: bool) -> _RemoteTransport:
    """Check that an offer (or answer) has the relay link's shape; SdpError says what is not."""
    if not isinstance(text, str) or len(text) > 16384:
        raise SdpError("a relay link SDP is a text of at most 16 KiB")
    description = sdp.parse(text)
    what = "offer" if offer else "answer"
    if [(m.kind, m.mid) for m in description.media] != [("audio", AUDIO_MID), ("video", VIDEO_MID)]:
        raise SdpError(f"a relay link {what} has two m-sections: audio mid a, then video mid v")
    if description.bundle_mids != [AUDIO_MID, VIDEO_MID]:
        raise SdpError(f"a relay link {what} bundles a and v (a=group:BUNDLE a v)")
    if description.ice_lite == offer:
        side = "the offer is a full ICE agent" if offer else "the answer is ICE-lite"
        raise SdpError(f"in a relay link {side}")
    expected_setup = "actpass" if offer else "passive"
    credentials: set[tuple[str, str]] = set()
    fingerprints: set[tuple[str, str]] = set()
    for media in description.media:
        if media.proto != PROTO or media.port == 0:
            raise SdpError(f"a relay link {what}'s m-sections are active {PROTO}")
        if media.direction != "sendrecv" or not media.rtcp_mux:
            raise SdpError(f"a relay link {what}'s m-sections are sendrecv with a=rtcp-mux")
        if description.dtls_setup(media) != expected_setup:
            raise SdpError(f"a relay link {what} has a=setup:{expected_setup}")
        credentials.add(description.ice_credentials(media))
        fingerprints.add(description.dtls_fingerprint(media))
        _check_codecs(media, what)
    if len(credentials) != 1 or len(fingerprints) != 1:
        raise SdpError(f"a relay link {what} has one ICE ufrag/pwd and one fingerprint")
    ufrag, pwd = credentials.pop()
    fingerprint = fingerprints.pop()
    if not (4 <= len(ufrag) <= 256 and 22 <= len(pwd) <= 256) or not set(ufrag + pwd) <= _ICE_CHARS:
        raise SdpError(f"a relay link {what}'s ICE ufrag and pwd are ice-chars (RFC 8839)")
    if fingerprint[0] != "sha-256":
        raise SdpError(f"a relay link {what}'s fingerprint is sha-256")
    first = description.media[0]
    if not first.end_of_candidates:
        raise SdpError(f"a relay link {what} gives its candidates inline, then a=end-of-candidates")
    candidates = _host_candidates(first.candidates)
    if not candidates:
        raise SdpError(f"a relay link {what} has a UDP host candidate with an IPv4 address")
    return _RemoteTransport(ufrag, pwd, fingerprint, candidates)


def _check_codecs(media: MediaDescription, what: str) -> None:
    for codec in LINK_CODECS.values():
        if codec.kind != media.kind:
            continue
        found = media.codec(codec.payload_type)
        if (
            found is None
            or found.name.lower() != codec.name.lower()
            or found.clock_rate != codec.clock_rate
            or (codec.name == "H264" and found.parameters.get("packetization-mode") != "1")
        ):
            raise SdpError(
                f"a relay link {what} has {codec.name}/{codec.clock_rate} as payload type"
                f" {codec.payload_type}"
            )
    expected = {MID_ID: sdp.EXT_MID}
    if media.kind == "audio":
        expected[AUDIO_LEVEL_ID] = sdp.EXT_AUDIO_LEVEL
    extmaps = {ext.id: ext.uri for ext in media.extmaps}
    if any(extmaps.get(ext_id) != uri for ext_id, uri in expected.items()):
        raise SdpError(f"a relay link {what}'s {media.kind} extension ids are the spec's")


def _host_candidates(lines: list[str]) -> list[Address]:
    """The usable candidates: component 1, UDP, typ host, a unicast IPv4 address."""
    found: list[Address] = []
    for line in lines[: MAX_CANDIDATES * 2]:
        tokens = line.split()
        if len(tokens) < 8 or tokens[1] != "1" or tokens[2].lower() != "udp":
            continue
        if tokens[6] != "typ" or tokens[7] != "host":
            continue
        try:
            address = ipaddress.ip_address(tokens[4])
            port = int(tokens[5])
        except ValueError:
            continue
        if address.version != 4 or address.is_unspecified or address.is_multicast:
            continue
        if not 0 < port < 65536 or address.compressed == "255.255.255.255":
            continue
        if (address.compressed, port) not in found:
            found.append((address.compressed, port))
        if len(found) >= MAX_CANDIDATES:
            break
    return found
