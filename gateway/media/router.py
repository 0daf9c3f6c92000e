"""The router of one room: published tracks in (receivers), subscriptions out (downtracks); RTP forwarding
with simulcast, RTCP feedback (RFC 3550, RFC 4585, RFC 5104) and active speakers (RFC 6464). Sans-I/O.

The transport side owns sockets, SRTP and clocks. It calls:

- `on_rtp(track_id, packet)` for every decrypted RTP packet of a published track (any layer, any
  SSRC, RTX included), `on_publisher_rtcp` / `on_subscriber_rtcp` for decrypted RTCP;
- `tick(now)` about once a second: RTCP receiver reports (+ NACK retries) to publishers, sender
  reports to subscribers, layer fallback, pending keyframe requests, speaker updates.
- `sync_routes()` before reading `stats` (it folds in what the native fast path forwarded), and
  `close()` when the room closes.

The router answers through `RtpSink`s: `send_rtp` on a subscriber's sink, `send_rtcp` on a
publisher's sink (PLI, NACK, RR) or a subscriber's (SR). Every entry point takes an optional
`now` (seconds, monotonic); without it the router reads `time.monotonic()`.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.media import native
from gateway.media.forwarder import REORDER_WINDOW, Forwarder
from gateway.media.nack import (
    MAX_PADDING,
    MAX_RESEND_INTERVAL,
    RESEND_INTERVAL,
    ReceiveStream,
    SendHistory,
    padding_packet,
    rtx_packet,
)
from gateway.media.payload import (
    KeyframeDetector,
    Vp8Fields,
    keyframe_detector,
    needs_keyframe,
    vp8_fields,
    vp8_write_fields,
)
from gateway.media.rtcp import (
    RtcpError,
    RtcpFir,
    RtcpGenericNack,
    RtcpPacket,
    RtcpPli,
    RtcpReceiverReport,
    RtcpReceptionReport,
    RtcpRemb,
    RtcpSdes,
    RtcpSdesChunk,
    RtcpSenderReport,
    ntp_timestamp,
    parse_rtcp,
    serialize_rtcp,
)
from gateway.media.rtp import (
    RTP_HEADER_SIZE,
    find_extension,
    payload_end,
    payload_offset,
    rewrite_extension_ids,
)
from gateway.media.speaker import ActiveSpeakerDetector

KEYFRAME_WAIT = 1.0  # after a keyframe request, no other for the layer until its keyframe or this
KEYFRAME_REQUESTS_PER_SECOND = 6  # per publisher, across its tracks and layers
FIR_AFTER_UNANSWERED = 2  # requests the publisher ignored before FIR replaces PLI (if negotiated)
KEYFRAME_RETRY = 1.0  # ask again when a downtrack still waits for its keyframe
LAYER_TIMEOUT = 1.0  # a layer without packets for this long is not available
LAYER_CHECK_INTERVAL = 0.25
BITRATE_INTERVAL = 0.5  # layer bitrates roll at the tick (about 1 s), never over less than this
HISTORY_SIZE = 1024
# Padding-only packets one send_padding call sends at most: a probe's share of one 50 ms timer
# tick, 256 x ~290 bytes = about 12 Mbit/s (at 64 no probe could show more than ~3.9 Mbit/s, and
# a subscriber of several 720p videos never got past that).
MAX_PADDING_PACKETS = 256
RTCP_CNAME = b"rondpoint"

_HEADER = struct.Struct("!BBHII")
_NTP_FRACTION = float(1 << 32)

ActiveSpeakersCallback = Callable[[str, list[tuple[str, float]]], None]

logger = logging.getLogger(__name__)


class RtpSink(Protocol):
    """Implemented by a transport: plain RTP/RTCP in, protected (SRTP/SRTCP) and sent by it."""

    def send_rtp(self, packet: bytes) -> None: ...

    def send_rtcp(self, packet: bytes) -> None: ...


@dataclass(slots=True)
class ExtensionIds:
    """Negotiated RFC 8285 extension ids of one side (a=extmap); 0 = not negotiated."""

    audio_level: int = 0  # urn:ietf:params:rtp-hdrext:ssrc-audio-level (RFC 6464)
    mid: int = 0  # urn:ietf:params:rtp-hdrext:sdes:mid (RFC 8843)
    rid: int = 0  # urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id (RFC 8852)
    repaired_rid: int = 0  # urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
    abs_send_time: int = 0  # http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
    transport_cc: int = 0  # transport-wide-cc-extensions-01


@dataclass(slots=True)
class CodecInfo:
    name: str  # as in a=rtpmap: "opus", "VP8", "H264"
    payload_type: int
    clock_rate: int
    rtx_payload_type: int | None = None  # RFC 4588 retransmission payload type, if negotiated
    fir: bool = False  # the publisher negotiated a=rtcp-fb ccm fir (RFC 5104)


@dataclass(slots=True)
class RouterStats:
    """Plain counters, read at scrape time."""

    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    packets_lost: int = 0  # publisher-side packets never recovered + losses subscribers report
    nacks: int = 0  # sequence numbers subscribers asked us to retransmit
    keyframe_requests: int = 0  # PLIs sent to publishers
    retransmissions: int = 0  # packets resent from a send history
    nacks_sent: int = 0  # sequence numbers we asked publishers to retransmit
    congestion_pauses: int = 0  # videos paused by set_allocation (the estimate fit no layer)
    layer_downgrades: int = 0  # congestion ceilings lowered by set_allocation (pauses included)


class _Layer:
    __slots__ = (
        "index",
        "rid",
        "height",
        "ssrc",
        "rtx_ssrc",
        "stream",
        "last_time",
        "last_keyframe_request",
        "keyframe_request_pending",
        "keyframe_expected_until",
        "unanswered_requests",
        "fir_sequence",
        "lost_counted",
        "route",
        "route_downtracks",
        "octets",
        "bitrate",
    )

    def __init__(self, index: int, rid: str, height: int | None) -> None:
        self.index = index
        self.rid = rid
        self.height = height
        self.ssrc = -1
        self.rtx_ssrc = -1
        self.stream: ReceiveStream | None = None
        self.last_time = -1.0
        self.last_keyframe_request = -1e9
        self.keyframe_request_pending = False
        self.keyframe_expected_until = 0.0  # a request is out until then (0: none)
        self.unanswered_requests = 0  # requests in a row whose wait ended without a keyframe
        self.fir_sequence = 0  # RFC 5104 §4.3.1.1 command sequence number
        self.lost_counted = 0
        # Native fast path (gateway/media/_fastpath.c): this layer's route in the publisher
        # transport's Ingress, and the downtracks that are its outputs.
        self.route: Any = None
        self.route_downtracks: list[_DownTrack] = []
        self.octets = 0  # received since the last roll (layer_bitrates)
        self.bitrate = 0  # bits/s over the last rolled interval


class _DownTrack:
    __slots__ = (
        "track_id",
        "subscriber_id",
        "sink",
        "ssrc",
        "payload_type",
        "extensions",
        "extension_map",
        "forwarder",
        "history",
        "resend_interval",
        "resent_octets",
        "max_height",
        "lost_reported",
        "fraction_lost",
        "route",
        "max_layer",
        "subscriber_paused",
        "congestion_paused",
        "rtx_ssrc",
        "rtx_payload_type",
        "rtx_seq",
    )

    def __init__(
        self,
        track_id: str,
        subscriber_id: str,
        sink: RtpSink,
        ssrc: int,
        payload_type: int,
        extensions: ExtensionIds,
        extension_map: bytes,
        forwarder: Forwarder,
    ) -> None:
        self.track_id = track_id
        self.subscriber_id = subscriber_id
        self.sink = sink
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.extensions = extensions
        self.extension_map = extension_map
        self.forwarder = forwarder
        self.history = SendHistory(HISTORY_SIZE)
        self.resend_interval = RESEND_INTERVAL  # the subscriber's round trip (set_resend_interval)
        self.resent_octets = 0  # retransmitted since the last take_resent_octets
        self.max_height: int | None = None
        self.lost_reported = 0
        self.fraction_lost = 0
        self.route: Any = None  # the native route this downtrack is an output of
        # The congestion controller's ceiling (set_allocation): a layer index; None = no ceiling.
        self.max_layer: int | None = None
        self.subscriber_paused = False  # set_paused
        self.congestion_paused = False  # set_allocation(..., None)
        # RFC 4588 retransmission stream (0 = not negotiated: resend the packet as it was)
        self.rtx_ssrc = 0
        self.rtx_payload_type = 0
        self.rtx_seq = random.getrandbits(15)


class _Receiver:
    __slots__ = (
        "track_id",
        "participant_id",
        "kind",
        "codec",
        "extensions",
        "publisher",
        "layers",
        "by_ssrc",
        "by_rid",
        "downtracks",
        "muted",
        "is_audio",
        "is_vp8",
        "wait_for_keyframe",
        "detect_keyframe",
        "first_time",
        "next_layer_check",
        "routes",
        "keyframe_budget",
        "source",
    )

    def __init__(
        self,
        track_id: str,
        participant_id: str,
        kind: str,
        codec: CodecInfo,
        extensions: ExtensionIds,
        publisher: RtpSink,
        layers: list[tuple[str, int | None]],
    ) -> None:
        self.track_id = track_id
        self.participant_id = participant_id
        self.kind = kind
        self.codec = codec
        self.extensions = extensions
        self.publisher = publisher
        if layers and all(height is not None for _, height in layers):
            layers = sorted(layers, key=lambda layer: layer[1] or 0)
        self.layers = [_Layer(i, rid, height) for i, (rid, height) in enumerate(layers)]
        self.by_ssrc: dict[int, _Layer] = {}
        self.by_rid = {layer.rid: layer for layer in self.layers}
        self.downtracks: dict[str, _DownTrack] = {}
        self.muted = False
        self.is_audio = kind == "audio"
        self.is_vp8 = not self.is_audio and codec.name.upper() == "VP8"
        self.wait_for_keyframe = not self.is_audio and needs_keyframe(codec.name)
        self.detect_keyframe: KeyframeDetector = keyframe_detector(codec.name)
        self.first_time = -1.0
        self.next_layer_check = 0.0
        self.routes = 0  # layers with a native route installed (_Layer.route)
        # [window start, requests in it]: shared by the tracks of one publisher
        self.keyframe_budget: list[float] = [0.0, 0.0]
        self.source = ""  # "screen" for a screen share (allocated first under congestion)


@dataclass(frozen=True, slots=True)
class ReceiverInfo:
    """What the router knows of a published track (for building subscribe offers)."""

    track_id: str
    participant_id: str
    kind: str
    codec: CodecInfo
    rids: list[str]
    heights: tuple[int | None, ...] = ()
    """The layers' heights, in the order of `rids` (None where unknown)."""


@dataclass(frozen=True, slots=True)
class DowntrackInfo:
    """One subscription as the congestion controller sees it (Router.subscriber_downtracks)."""

    track_id: str
    kind: str
    source: str
    current_layer: int
    """The layer being forwarded (-1: nothing yet)."""
    target_layer: int
    height_layer: int
    """The layer the subscriber's max_height alone would choose (the highest it wants)."""
    max_height: int | None
    max_layer: int | None
    """The congestion ceiling now set (None: none)."""
    paused: bool
    """Paused by the subscriber, or the track is muted: nothing to allocate."""
    congestion_paused: bool
    layer_bitrates: tuple[int, ...]


def _munge_vp8(downtrack: _DownTrack, out: bytes, out_seq: int, fields: Vp8Fields | None) -> bytes:
    """`out` (a VP8 packet of the downtrack, `fields` its descriptor) with the PictureID,
    TL0PICIDX and KEYIDX continuing what the downtrack sent before its last switch. At the
    first packet after a switch the offsets are set from the packet sent just before it, read
    back from the send history."""
    forwarder = downtrack.forwarder
    if forwarder.vp8_rebase:
        previous = downtrack.history.get((out_seq - 1) & 0xFFFF)
        last = None
        if previous is not None:
            last = vp8_fields(previous, payload_offset(previous), payload_end(previous))
        forwarder.rebase_vp8(last, fields)
    if fields is None or not forwarder.vp8_rewrite:
        return out
    munged = bytearray(out)
    picture_id, tl0, key_idx = forwarder.vp8_outgoing(fields)
    vp8_write_fields(munged, fields, picture_id, tl0, key_idx)
    return bytes(munged)


def _extension_map(publisher: ExtensionIds, subscriber: ExtensionIds) -> bytes:
    """Publisher id -> subscriber id for the extensions we keep; every other id -> 0 (strip).

    MID/RID describe the publisher's m-line: meaningless to a subscriber, so stripped. The
    transport-cc element is kept in the subscriber's id so its slot exists: the subscriber's
    transport overwrites the publisher's number with its own at send time (congestion.py).
    """
    mapping = bytearray(256)
    for name in ("audio_level", "abs_send_time", "transport_cc"):
        source = getattr(publisher, name)
        if source:
            mapping[source] = getattr(subscriber, name)
    return bytes(mapping)


@dataclass(frozen=True)
class StreamPosition:
    """Where a downtrack's outgoing stream stood when it was removed."""

    sequence_number: int
    """The next sequence number to send."""
    timestamp: int
    """The RTP timestamp at ``time``."""
    time: float
    """time.monotonic() of the removal."""


class Router:
    """One per room. See the module docstring for the calling convention."""

    def __init__(
        self,
        room_id: str,
        on_active_speakers: ActiveSpeakersCallback | None = None,
        *,
        rtcp_ssrc: int | None = None,
        speaker_interval: float = 0.3,
    ) -> None:
        self.room_id = room_id
        self.on_active_speakers = on_active_speakers
        self.rtcp_ssrc = random.getrandbits(32) if rtcp_ssrc is None else rtcp_ssrc
        self.stats = RouterStats()
        # REMB sent to publishers with each RR when set (bits/s); None = none sent.
        self.publisher_remb_bitrate: int | None = None
        self.speakers = ActiveSpeakerDetector(interval=speaker_interval)
        self._receivers: dict[str, _Receiver] = {}
        self._downtracks_by_ssrc: dict[tuple[str, int], _DownTrack] = {}
        self._bitrate_time = -1.0  # when layer bitrates were last rolled

    # --- publishers ----------------------------------------------------------------------

    def add_receiver(
        self,
        track_id: str,
        participant_id: str,
        kind: str,
        codec: CodecInfo,
        extensions: ExtensionIds,
        publisher: RtpSink,
        rids: list[str] | None = None,
        layers: list[tuple[str, int | None]] | None = None,
        source: str = "",
    ) -> None:
        """A published track. `layers` = [(rid, height or None)] for simulcast; without heights
        the rids are taken as ordered from lowest to highest quality; `source` as ORS names it
        ("camera", "screen", ...). Re-adding replaces."""
        if track_id in self._receivers:
            self.remove_receiver(track_id)
        if layers is None:
            layers = [(rid, None) for rid in rids] if rids else [("", None)]
        receiver = _Receiver(
            track_id, participant_id, kind, codec, extensions, publisher, list(layers)
        )
        for other in self._receivers.values():
            if other.participant_id == participant_id:
                receiver.keyframe_budget = other.keyframe_budget
                break
        receiver.source = source
        self._receivers[track_id] = receiver

    def remove_receiver(self, track_id: str) -> None:
        receiver = self._receivers.pop(track_id, None)
        if receiver is None:
            return
        self._drop_routes(receiver)
        for downtrack in receiver.downtracks.values():
            self._downtracks_by_ssrc.pop((downtrack.subscriber_id, downtrack.ssrc), None)

    def has_receiver(self, track_id: str) -> bool:
        return track_id in self._receivers

    def downtrack_count(self, track_id: str) -> int:
        """How many subscribers take the track (0 when it is not published here)."""
        receiver = self._receivers.get(track_id)
        return len(receiver.downtracks) if receiver is not None else 0

    def receiver_info(self, track_id: str) -> ReceiverInfo | None:
        receiver = self._receivers.get(track_id)
        if receiver is None:
            return None
        return ReceiverInfo(
            track_id,
            receiver.participant_id,
            receiver.kind,
            receiver.codec,
            [layer.rid for layer in receiver.layers],
            tuple(layer.height for layer in receiver.layers),
        )

    def subscriber_heights(self, track_id: str) -> dict[str, int | None]:
        """The max_height each subscriber of a track asked for (None: no limit), by subscriber."""
        receiver = self._receivers.get(track_id)
        if receiver is None:
            return {}
        return {sid: downtrack.max_height for sid, downtrack in receiver.downtracks.items()}

    def set_layer_ssrc(
        self, track_id: str, rid: str, ssrc: int, rtx_ssrc: int | None = None
    ) -> None:
        """Optional: tell the SSRC (and RTX SSRC) of a layer when SDP a=ssrc lines give it;
        otherwise the router learns it from the RID / repaired-RID header extensions."""
        receiver = self._receivers.get(track_id)
        if receiver is None:
            return
        layer = receiver.by_rid.get(rid)
        if layer is None:
            if len(receiver.layers) != 1:
                return
            layer = receiver.layers[0]
        self._bind_ssrc(receiver, layer, ssrc)
        if rtx_ssrc is not None:
            layer.rtx_ssrc = rtx_ssrc
            receiver.by_ssrc[rtx_ssrc] = layer

    def set_muted(self, track_id: str, muted: bool, now: float | None = None) -> None:
        """A muted track is not forwarded; on unmute every downtrack restarts on a keyframe."""
        receiver = self._receivers.get(track_id)
        if receiver is None or receiver.muted == muted:
            return
        self._drop_routes(receiver)
        receiver.muted = muted
        if not muted:
            now = time.monotonic() if now is None else now
            for downtrack in receiver.downtracks.values():
                downtrack.forwarder.resync = True
            self._request_waiting_keyframes(receiver, now)

    def on_rtp(self, track_id: str, packet: bytes, now: float | None = None) -> None:
        """One decrypted RTP packet of a published track; forwards it to every downtrack."""
        receiver = self._receivers.get(track_id)
        if receiver is None or len(packet) < RTP_HEADER_SIZE:
            return
        if now is None:
            now = time.monotonic()
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(packet, 0)
        rtx = False
        layer = receiver.by_ssrc.get(ssrc)
        if layer is None:
            layer = self._learn_ssrc(receiver, packet, ssrc, b1 & 0x7F)
            if layer is None:
                return
        stream = layer.stream
        if stream is None:
            return  # RTX seen before its layer's own SSRC
        served: set[_DownTrack] | None = None  # the outputs a native route already sent it to
        teed = None
        if receiver.routes:
            route = layer.route
            if route is not None and route.teed and ssrc == layer.ssrc:
                teed = route
                served = set(layer.route_downtracks)
            self._sync_routes(receiver)  # the streams and forwarders below are current
            newer = 0 < (seq - stream.max_seq) & 0xFFFF < 0x8000
            if teed is None and route is not None and ssrc == layer.ssrc and newer:
                self._drop_layer_route(receiver, layer)  # a newer packet left the fast path
        if ssrc != layer.ssrc:  # RTX (RFC 4588 §4): unwrap to the original packet
            start = payload_offset(packet)
            if payload_end(packet) - start < 2:
                return  # padding-only probe
            seq = packet[start] << 8 | packet[start + 1]
            ssrc = layer.ssrc
            rtx = True
            b1 = (b1 & 0x80) | receiver.codec.payload_type
            unwrapped = bytearray(packet[:start])
            unwrapped += packet[start + 2 :]
            _HEADER.pack_into(unwrapped, 0, b0, b1, seq, ts, ssrc)
            packet = bytes(unwrapped)
        accepted, missing = stream.on_packet(seq, ts, now)
        layer.last_time = now
        if not rtx:
            # what the layer costs: its own packets, not RTX (libwebrtc pads its probes with
            # RTX resends of recent packets, which inflated a 180p layer's figure past 360p's)
            layer.octets += len(packet)
        if layer.route is not None:  # back to the route: the next packets are accounted there
            layer.route.transit = stream.transit
            layer.route.jitter = stream.jitter
        if receiver.first_time < 0:
            receiver.first_time = now
        if missing:
            self._send_nack(receiver, layer, missing)
        if not accepted or receiver.muted:
            return

        if receiver.is_audio:
            level_id = receiver.extensions.audio_level
            if level_id and b0 & 0x10:
                level = find_extension(packet, level_id)
                if level:
                    self.speakers.on_audio_level(receiver.participant_id, level[0] & 0x7F)
            if now >= self.speakers.next_update:
                self._update_speakers(now)
            keyframe = True
        else:
            keyframe = not receiver.wait_for_keyframe or receiver.detect_keyframe(
                packet, payload_offset(packet), payload_end(packet)
            )
            if keyframe and layer.keyframe_expected_until:  # the request was answered
                layer.keyframe_expected_until = 0.0
                layer.unanswered_requests = 0
                if layer.route is not None:
                    self._drop_layer_route(receiver, layer)  # re-installed without its tee
        if now >= receiver.next_layer_check:
            self._check_layers(receiver, now)

        index = layer.index
        rests: dict[bytes, bytes] = {}
        plain_rest = b"" if b0 & 0x10 else packet[RTP_HEADER_SIZE:]
        marker = b1 & 0x80
        is_vp8 = receiver.is_vp8
        vp8: Vp8Fields | None = None  # the descriptor's numbering, read when a downtrack needs it
        forwarded = octets = 0
        downtracks: Iterable[_DownTrack] = receiver.downtracks.values()
        if served is not None:
            downtracks = [d for d in downtracks if d not in served]
            size = len(packet) - RTP_HEADER_SIZE
            for downtrack in served:  # sent by the native route: keep the forwarder in step
                forwarder = downtrack.forwarder
                if forwarder.forward(index, ssrc, seq, ts, keyframe, now) >= 0:
                    forwarder.packets_sent += 1
                    forwarder.octets_sent += size
                    forwarded += 1
                    octets += size
        pack = _HEADER.pack
        for downtrack in downtracks:
            forwarder = downtrack.forwarder
            out_seq = forwarder.forward(index, ssrc, seq, ts, keyframe, now)
            if out_seq < 0:
                continue
            if plain_rest:
                rest = plain_rest
            else:
                extension_map = downtrack.extension_map
                cached = rests.get(extension_map)
                if cached is None:
                    rewritten = bytearray(packet)
                    rewrite_extension_ids(rewritten, extension_map)
                    cached = rests[extension_map] = bytes(memoryview(rewritten)[RTP_HEADER_SIZE:])
                rest = cached
            out = (
                pack(b0, marker | downtrack.payload_type, out_seq, forwarder.out_ts, downtrack.ssrc)
                + rest
            )
            if is_vp8 and (forwarder.vp8_rebase or forwarder.vp8_rewrite):
                if vp8 is None:
                    vp8 = vp8_fields(packet, payload_offset(packet), payload_end(packet))
                out = _munge_vp8(downtrack, out, out_seq, vp8)
            history = downtrack.history  # SendHistory.put, inlined: this loop is the hot path
            slot = out_seq & history.mask
            history.packets[slot] = out
            history.sequence_numbers[slot] = out_seq
            downtrack.sink.send_rtp(out)
            forwarder.packets_sent += 1
            forwarder.octets_sent += len(rest)
            forwarded += 1
            octets += len(rest)
        if forwarded:
            stats = self.stats
            stats.packets_forwarded += forwarded
            stats.bytes_forwarded += octets + forwarded * RTP_HEADER_SIZE
        if receiver.routes and self._switched_here(receiver, layer, ssrc, seq):
            self._drop_routes(receiver)  # a downtrack changed source: its outputs move
        if teed is not None and layer.route is teed:
            teed.deadline = self._route_deadline(receiver)  # the timers it waited for ran
        if layer.route is None and native.enabled and not rtx and seq == stream.max_seq:
            self._install_route(receiver, layer)

    def on_publisher_rtcp(self, track_id: str, packet: bytes, now: float | None = None) -> None:
        """RTCP from a publisher: sender reports feed our RRs (LSR/DLSR) and our SRs' lip sync."""
        receiver = self._receivers.get(track_id)
        if receiver is None:
            return
        try:
            packets = parse_rtcp(packet)
        except RtcpError:
            return
        now = time.monotonic() if now is None else now
        for rtcp in packets:
            if isinstance(rtcp, RtcpSenderReport):
                layer = receiver.by_ssrc.get(rtcp.ssrc)
                if layer is not None and layer.stream is not None and layer.ssrc == rtcp.ssrc:
                    layer.stream.on_sender_report(rtcp.ntp_timestamp, rtcp.rtp_timestamp, now)

    # --- subscribers ---------------------------------------------------------------------

    def add_downtrack(
        self,
        track_id: str,
        subscriber_id: str,
        sink: RtpSink,
        ssrc: int,
        payload_type: int,
        extensions: ExtensionIds,
        now: float | None = None,
        resume: StreamPosition | None = None,
        rtx_ssrc: int = 0,
        rtx_payload_type: int = 0,
        max_layer: int | None = None,
    ) -> None:
        """Subscribe `subscriber_id` to a track; its packets go out on `sink` as SSRC `ssrc`.
        `resume` continues the stream a removed downtrack sent on the same SSRC (what
        `remove_downtrack` returned): a receiver's SRTP replay check would drop a stream whose
        sequence numbers jumped back. With `rtx_ssrc` and `rtx_payload_type` (RFC 4588,
        negotiated with the subscriber), NACKed packets are resent as RTX packets. `max_layer`
        is the first congestion ceiling (set_allocation): a subscriber whose bandwidth is not
        measured yet starts on the lowest layer and climbs, as libwebrtc's and LiveKit's do,
        rather than push the top layer into a link that may not carry it."""
        receiver = self._receivers.get(track_id)
        if receiver is None:
            raise KeyError(f"no track {track_id!r} in room {self.room_id!r}")
        now = time.monotonic() if now is None else now
        self.remove_downtrack(track_id, subscriber_id)
        self._drop_routes(receiver)
        sequence_number = timestamp = None
        if resume is not None:
            sequence_number = resume.sequence_number
            elapsed = max(0.0, now - resume.time) * receiver.codec.clock_rate
            timestamp = (resume.timestamp + int(elapsed)) & 0xFFFFFFFF
        forwarder = Forwarder(
            ssrc,
            payload_type,
            receiver.codec.clock_rate,
            receiver.wait_for_keyframe,
            target_layer=self._select_layer(receiver, None, now, max_layer),
            sequence_number=sequence_number,
            timestamp=timestamp,
            vp8=receiver.is_vp8,
        )
        downtrack = _DownTrack(
            track_id,
            subscriber_id,
            sink,
            ssrc,
            payload_type,
            extensions,
            _extension_map(receiver.extensions, extensions),
            forwarder,
        )
        if rtx_ssrc and rtx_payload_type:
            downtrack.rtx_ssrc = rtx_ssrc
            downtrack.rtx_payload_type = rtx_payload_type
        downtrack.max_layer = max_layer
        receiver.downtracks[subscriber_id] = downtrack
        self._downtracks_by_ssrc[(subscriber_id, ssrc)] = downtrack
        self._request_waiting_keyframes(receiver, now)

    def remove_downtrack(
        self, track_id: str, subscriber_id: str, now: float | None = None
    ) -> StreamPosition | None:
        """Unsubscribe; where its outgoing stream stood, for a later ``add_downtrack(resume=)``
        on the same SSRC (None if there was no such downtrack)."""
        receiver = self._receivers.get(track_id)
        if receiver is None:
            return None
        self._drop_routes(receiver)
        downtrack = receiver.downtracks.pop(subscriber_id, None)
        if downtrack is None:
            return None
        self._downtracks_by_ssrc.pop((subscriber_id, downtrack.ssrc), None)
        now = time.monotonic() if now is None else now
        forwarder = downtrack.forwarder
        return StreamPosition(
            (forwarder.last_seq + 1) & 0xFFFF, forwarder.rtp_timestamp_at(now), now
        )

    def set_max_height(
        self, track_id: str, subscriber_id: str, max_height: int | None, now: float | None = None
    ) -> None:
        """Simulcast layer choice: the highest available layer not taller than `max_height`
        (None = no limit; if none fits, the lowest available). Switches on its next keyframe."""
        downtrack = self._downtrack(track_id, subscriber_id)
        if downtrack is None:
            return
        downtrack.max_height = max_height
        now = time.monotonic() if now is None else now
        receiver = self._receivers[track_id]
        self._drop_routes(receiver)
        self._retarget(receiver, downtrack, now)

    def set_paused(
        self, track_id: str, subscriber_id: str, paused: bool, now: float | None = None
    ) -> None:
        """A paused downtrack gets nothing; on resume it restarts on a keyframe, seamlessly."""
        downtrack = self._downtrack(track_id, subscriber_id)
        if downtrack is None:
            return
        downtrack.subscriber_paused = paused
        self._apply_pause(self._receivers[track_id], downtrack, now)

    def _apply_pause(
        self, receiver: _Receiver, downtrack: _DownTrack, now: float | None = None
    ) -> None:
        """Paused by the subscriber or by congestion; resumes (on a keyframe) when neither."""
        paused = downtrack.subscriber_paused or downtrack.congestion_paused
        if downtrack.forwarder.paused == paused:
            return
        self._drop_routes(receiver)
        if paused:
            downtrack.forwarder.pause()
            return
        downtrack.forwarder.resume()
        now = time.monotonic() if now is None else now
        self._request_waiting_keyframes(receiver, now)

    # --- congestion control (gateway/media/congestion.py reads and sets these) ---------------

    def layer_bitrates(self, track_id: str) -> list[int]:
        """Measured bits/s of each layer of a published track (index 0 = lowest), over the last
        rolled second (0 for a layer without packets then); [] for an unknown track."""
        receiver = self._receivers.get(track_id)
        return [] if receiver is None else [layer.bitrate for layer in receiver.layers]

    def set_resend_interval(self, subscriber_id: str, rtt: float) -> None:
        """The subscriber's round trip (seconds, as its congestion controller measures it, queues
        included): a packet is resent to it at most once per round trip, between RESEND_INTERVAL
        and MAX_RESEND_INTERVAL. On a saturated link NACKs repeat faster than resends arrive, and
        answering each one filled the queue with the same packets (a retransmission storm)."""
        interval = min(max(rtt, RESEND_INTERVAL), MAX_RESEND_INTERVAL)
        for receiver in self._receivers.values():
            downtrack = receiver.downtracks.get(subscriber_id)
            if downtrack is not None:
                downtrack.resend_interval = interval

    def take_resent_octets(self, subscriber_id: str) -> int:
        """Bytes retransmitted to the subscriber (NACK answers, probes apart) since the last call:
        its congestion controller leaves them out of what the layers may take."""
        octets = 0
        for receiver in self._receivers.values():
            downtrack = receiver.downtracks.get(subscriber_id)
            if downtrack is not None:
                octets += downtrack.resent_octets
                downtrack.resent_octets = 0
        return octets

    def set_allocation(
        self,
        track_id: str,
        subscriber_id: str,
        max_layer: int | None,
        now: float | None = None,
    ) -> None:
        """The congestion controller's ceiling for one downtrack: a layer index, or None to pause
        it (distinct from the subscriber's own set_paused, which this never overrides). The
        forwarder targets the lower of the height-based choice and this ceiling."""
        downtrack = self._downtrack(track_id, subscriber_id)
        if downtrack is None:
            return
        receiver = self._receivers[track_id]
        now = time.monotonic() if now is None else now
        paused = max_layer is None
        if paused != downtrack.congestion_paused:
            downtrack.congestion_paused = paused
            if paused:
                self.stats.congestion_pauses += 1
                self.stats.layer_downgrades += 1
            self._apply_pause(receiver, downtrack, now)
        if max_layer is None or max_layer == downtrack.max_layer:
            return
        if downtrack.max_layer is not None and max_layer < downtrack.max_layer:
            self.stats.layer_downgrades += 1
        downtrack.max_layer = max_layer
        if len(receiver.layers) > 1:
            self._drop_routes(receiver)
            self._retarget(receiver, downtrack, now)

    def subscriber_downtracks(
        self, subscriber_id: str, now: float | None = None
    ) -> list[DowntrackInfo]:
        """What the congestion controller allocates among: the subscriber's downtracks."""
        now = time.monotonic() if now is None else now
        infos = []
        for receiver in self._receivers.values():
            downtrack = receiver.downtracks.get(subscriber_id)
            if downtrack is None:
                continue
            forwarder = downtrack.forwarder
            infos.append(
                DowntrackInfo(
                    track_id=receiver.track_id,
                    kind=receiver.kind,
                    source=receiver.source,
                    current_layer=forwarder.current_layer,
                    target_layer=forwarder.target_layer,
                    height_layer=self._select_layer(receiver, downtrack.max_height, now),
                    max_height=downtrack.max_height,
                    max_layer=downtrack.max_layer,
                    paused=downtrack.subscriber_paused or receiver.muted,
                    congestion_paused=downtrack.congestion_paused,
                    layer_bitrates=tuple(layer.bitrate for layer in receiver.layers),
                )
            )
        return infos

    def on_subscriber_rtcp(
        self, subscriber_id: str, packet: bytes, now: float | None = None
    ) -> None:
        """RTCP from a subscriber: NACK -> retransmit from history, PLI/FIR -> keyframe request
        to the publisher (rate-limited), RR -> loss statistics."""
        try:
            packets = parse_rtcp(packet)
        except RtcpError:
            return
        now = time.monotonic() if now is None else now
        lookup = self._downtracks_by_ssrc.get
        for rtcp in packets:
            if isinstance(rtcp, RtcpGenericNack):
                downtrack = lookup((subscriber_id, rtcp.media_ssrc))
                if downtrack is None:
                    continue
                self.stats.nacks += len(rtcp.lost)
                self._retransmit(downtrack, rtcp.lost, now)
            elif isinstance(rtcp, RtcpPli):
                self._on_keyframe_request(lookup((subscriber_id, rtcp.media_ssrc)), now)
            elif isinstance(rtcp, RtcpFir):
                for ssrc, _ in rtcp.entries:
                    self._on_keyframe_request(lookup((subscriber_id, ssrc)), now)
            elif isinstance(rtcp, RtcpReceiverReport | RtcpSenderReport):
                for report in rtcp.reports:
                    downtrack = lookup((subscriber_id, report.ssrc))
                    if downtrack is None:
                        continue
                    delta = report.packets_lost - downtrack.lost_reported
                    if delta > 0:
                        self.stats.packets_lost += delta
                    downtrack.lost_reported = report.packets_lost
                    downtrack.fraction_lost = report.fraction_lost

    def send_padding(self, subscriber_id: str, octets: int) -> int:
        """Padding-only RTX packets (RFC 4588, RFC 3550 §5.1) of up to 255 padding bytes each,
        about `octets` in all (at most MAX_PADDING_PACKETS), on the RTX stream of one of the
        subscriber's video downtracks: bandwidth probes. Returns the bytes sent (whole RTP
        packets), 0 when the subscriber has no downtrack with RTX."""
        chosen: _DownTrack | None = None
        for receiver in self._receivers.values():
            downtrack = receiver.downtracks.get(subscriber_id)
            if downtrack is None or not downtrack.rtx_ssrc or receiver.is_audio:
                continue
            if chosen is None or (
                downtrack.forwarder.packets_sent and not chosen.forwarder.packets_sent
            ):
                chosen = downtrack
        if chosen is None or octets <= 0:
            return 0
        timestamp = chosen.forwarder.last_ts
        transport_cc_id = chosen.extensions.transport_cc
        sent = 0
        for _ in range(MAX_PADDING_PACKETS):
            if sent >= octets:
                break
            packet = padding_packet(
                chosen.rtx_ssrc,
                chosen.rtx_payload_type,
                chosen.rtx_seq,
                timestamp,
                MAX_PADDING,
                transport_cc_id,
            )
            chosen.rtx_seq = (chosen.rtx_seq + 1) & 0xFFFF
            chosen.sink.send_rtp(packet)
            sent += len(packet)
        return sent

    # --- timers --------------------------------------------------------------------------

    def retry_nacks(self, now: float | None = None) -> None:
        """Call every few tens of milliseconds: NACKs again for packets still missing from the
        publishers (every NACK_RETRY_INTERVAL, NACK_RETRIES times, within MISSING_TIMEOUT), as
        libwebrtc's NACK module retries each round trip. A retransmission lost on a lossy uplink
        is asked for again before the subscribers' decoders give up and ask for a keyframe."""
        now = time.monotonic() if now is None else now
        for receiver in self._receivers.values():
            for layer in receiver.layers:
                stream = layer.stream
                if stream is not None and stream.missing:
                    due = stream.nack_due(now)
                    if due:
                        self._send_nack(receiver, layer, due)

    def tick(self, now: float | None = None, wall_time: float | None = None) -> None:
        """Call about once a second. Sends RR (+ REMB if set) to publishers, SR to subscribers,
        falls back from layers that stopped, retries keyframe requests, and updates active
        speakers; NACK retries run here too, and on their own faster timer (retry_nacks). `wall_time` (Unix seconds) stamps SRs with no publisher SR."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall_time is None else wall_time
        elapsed = now - self._bitrate_time
        roll = elapsed >= BITRATE_INTERVAL
        if roll or self._bitrate_time < 0:
            self._bitrate_time = now
        self.retry_nacks(now)  # and expires what is missing too long: the loss counts below
        for receiver in list(self._receivers.values()):
            if receiver.routes:
                self._sync_routes(receiver)  # the reports below count the fast path's packets too
            if roll:
                for layer in receiver.layers:
                    layer.bitrate = int(layer.octets * 8 / elapsed)
                    layer.octets = 0
            reports: list[RtcpReceptionReport] = []
            for layer in receiver.layers:
                stream = layer.stream
                if stream is None or not stream.started:
                    continue
                if stream.lost > layer.lost_counted:
                    self.stats.packets_lost += stream.lost - layer.lost_counted
                    layer.lost_counted = stream.lost
                reports.append(stream.report(now))
            if reports:
                compound: list[RtcpPacket] = [RtcpReceiverReport(self.rtcp_ssrc, reports)]
                compound.append(self._sdes())
                if self.publisher_remb_bitrate:
                    compound.append(
                        RtcpRemb(
                            self.rtcp_ssrc,
                            self.publisher_remb_bitrate,
                            [r.ssrc for r in reports],
                        )
                    )
                receiver.publisher.send_rtcp(serialize_rtcp(compound))
            self._check_layers(receiver, now)
            for downtrack in receiver.downtracks.values():
                sr = self._sender_report(receiver, downtrack, now, wall)
                if sr is not None:
                    downtrack.sink.send_rtcp(serialize_rtcp([sr, self._sdes()]))
        self._update_speakers(now)

    def close(self) -> None:
        """Forget every receiver and downtrack (the room closed)."""
        for receiver in self._receivers.values():
            self._drop_routes(receiver)
        self._receivers.clear()
        self._downtracks_by_ssrc.clear()

    def sync_routes(self) -> None:
        """Fold what the native fast path forwarded into the counters (e.g. before a scrape)."""
        for receiver in self._receivers.values():
            if receiver.routes:
                self._sync_routes(receiver)

    # --- internals -----------------------------------------------------------------------

    # The native fast path (gateway/media/_fastpath.c): each layer SSRC of a published track can
    # have a route in the publisher transport's Ingress. Its outputs are the downtracks steadily
    # forwarding that layer (same source, not paused, not resyncing); C forwards the layer's newer
    # packets to them until the route's deadline (the next layer check or speaker update) and
    # accounts them. The route tees (hands the packet to on_rtp as well) after a gap, so NACKs go
    # out here, and for every packet while a downtrack is served here: one waiting for this
    # layer's keyframe (a switch or resync), or one whose transport has no native Egress. The
    # switch itself happens here, in the Forwarder; then every route of the track is dropped
    # (counters folded back by _sync_route) and re-installed on the layers' next packets.

    def _install_route(self, receiver: _Receiver, layer: _Layer) -> None:
        ingress = getattr(receiver.publisher, "ingress", None)
        stream = layer.stream
        fast = native.MODULE
        if ingress is None or fast is None or stream is None or receiver.muted:
            return
        index = layer.index
        outputs = []
        downtracks = []
        tee = layer.keyframe_expected_until > 0.0  # a requested keyframe ends the wait here
        for downtrack in receiver.downtracks.values():
            forwarder = downtrack.forwarder
            if forwarder.paused:
                continue
            elsewhere = (
                forwarder.resync
                or forwarder.current_layer != index
                or forwarder.source_ssrc != layer.ssrc
            )
            if elsewhere:
                if forwarder.target_layer == index:
                    tee = True  # waits for this layer's keyframe: the switch is decided here
                continue
            egress = getattr(downtrack.sink, "egress", None)
            if egress is None or not egress.ready or forwarder.vp8_rebase:
                tee = True  # forwarded here
                continue
            history = downtrack.history
            rewrite = forwarder.vp8_rewrite
            outputs.append(
                (
                    egress,
                    downtrack.ssrc,
                    downtrack.payload_type,
                    forwarder.seq_offset,
                    forwarder.ts_offset,
                    downtrack.extension_map[:16],
                    history.packets,
                    history.sequence_numbers,
                    forwarder.vp8_picture_offset if rewrite else 0,
                    forwarder.vp8_tl0_offset if rewrite else 0,
                    forwarder.vp8_key_offset if rewrite else 0,
                )
            )
            downtracks.append(downtrack)
        if len(outputs) > fast.MAX_OUTPUTS:
            return
        level_id = receiver.extensions.audio_level if receiver.is_audio else 0
        route = fast.Route(
            layer.ssrc,
            receiver.codec.payload_type,
            stream.max_seq,
            0,
            self._route_deadline(receiver),
            float(receiver.codec.clock_rate),
            level_id,
            self.speakers.active_level,
            stream.transit,
            stream.jitter,
            outputs,
            tee,
        )
        if not ingress.install(route):
            return  # the Ingress's table is full: this layer stays on the Python path
        layer.route = route
        layer.route_downtracks = downtracks
        for downtrack in downtracks:
            downtrack.route = route
        receiver.routes += 1

    def _route_deadline(self, receiver: _Receiver) -> float:
        """When the router's timers need a packet of the track again: the next layer check
        (keyframe retries, layer availability) and, for audio, the next speaker update."""
        checks = receiver.wait_for_keyframe or len(receiver.layers) > 1
        deadline = receiver.next_layer_check if checks else float("inf")
        if receiver.is_audio:
            deadline = min(deadline, self.speakers.next_update)
        return deadline

    @staticmethod
    def _switched_here(receiver: _Receiver, layer: _Layer, ssrc: int, seq: int) -> bool:
        """Whether a downtrack switched to this layer at this packet (Forwarder._switch): it is
        still an output of its previous layer's route, or not an output of this one yet."""
        index = layer.index
        route = layer.route
        for downtrack in receiver.downtracks.values():
            forwarder = downtrack.forwarder
            if (
                forwarder.switch_seq == seq
                and forwarder.current_layer == index
                and forwarder.source_ssrc == ssrc
                and (route is None or downtrack.route is not route)
            ):
                return True
        return False

    def _drop_routes(self, receiver: _Receiver) -> None:
        if receiver.routes:
            for layer in receiver.layers:
                if layer.route is not None:
                    self._drop_layer_route(receiver, layer)

    def _drop_layer_route(self, receiver: _Receiver, layer: _Layer) -> None:
        route = layer.route
        self._sync_route(receiver, layer)
        ingress = getattr(receiver.publisher, "ingress", None)
        if ingress is not None:
            ingress.remove(route)
        for downtrack in layer.route_downtracks:
            if downtrack.route is route:
                downtrack.route = None
        layer.route = None
        layer.route_downtracks = []
        receiver.routes -= 1

    def _sync_routes(self, receiver: _Receiver) -> None:
        for layer in receiver.layers:
            if layer.route is not None:
                self._sync_route(receiver, layer)

    def _sync_route(self, receiver: _Receiver, layer: _Layer) -> None:
        (
            packets,
            octets,
            wraps,
            last_seq,
            last_ts,
            last_time,
            transit,
            jitter,
            samples,
            active_samples,
            active_sum,
        ) = layer.route.take()
        if samples:
            self.speakers.on_audio_levels(
                receiver.participant_id, samples, active_samples, active_sum
            )
        stream = layer.stream
        if not packets or stream is None:
            return
        # ReceiveStream.on_packet, for `packets` in-order packets
        stream.received += packets
        stream.cycles += wraps * 0x10000
        stream.max_seq = last_seq
        stream.transit = transit
        stream.jitter = jitter
        layer.last_time = last_time
        layer.octets += octets + packets * RTP_HEADER_SIZE
        downtracks = layer.route_downtracks
        for downtrack in downtracks:  # Forwarder.forward, for the same packets
            forwarder = downtrack.forwarder
            forwarder.last_seq = (last_seq + forwarder.seq_offset) & 0xFFFF
            forwarder.last_ts = forwarder.out_ts = (last_ts + forwarder.ts_offset) & 0xFFFFFFFF
            forwarder.last_time = last_time
            forwarder.packets_sent += packets
            forwarder.octets_sent += octets
            if (last_seq - forwarder.switch_seq) & 0xFFFF > 2 * REORDER_WINDOW:
                forwarder.switch_seq = (last_seq - REORDER_WINDOW) & 0xFFFF
        stats = self.stats
        stats.packets_forwarded += packets * len(downtracks)
        stats.bytes_forwarded += (octets + packets * RTP_HEADER_SIZE) * len(downtracks)

    def _retransmit(self, downtrack: _DownTrack, lost: list[int], now: float) -> None:
        """Answer a subscriber's NACK from the downtrack's send history: as RTX packets when
        negotiated, else the packets again; each packet at most once per round trip."""
        history = downtrack.history
        sink = downtrack.sink
        for seq in lost:
            stored = history.resend(seq, now, downtrack.resend_interval)
            if stored is None:
                continue
            if downtrack.rtx_ssrc:
                stored = rtx_packet(
                    stored, downtrack.rtx_ssrc, downtrack.rtx_payload_type, downtrack.rtx_seq
                )
                downtrack.rtx_seq = (downtrack.rtx_seq + 1) & 0xFFFF
            sink.send_rtp(stored)
            downtrack.resent_octets += len(stored)
            self.stats.retransmissions += 1

    def _downtrack(self, track_id: str, subscriber_id: str) -> _DownTrack | None:
        receiver = self._receivers.get(track_id)
        return None if receiver is None else receiver.downtracks.get(subscriber_id)

    def _sdes(self) -> RtcpSdes:
        return RtcpSdes([RtcpSdesChunk(self.rtcp_ssrc, [(1, RTCP_CNAME)])])

    def _sender_report(
        self, receiver: _Receiver, downtrack: _DownTrack, now: float, wall: float
    ) -> RtcpSenderReport | None:
        forwarder = downtrack.forwarder
        if not forwarder.packets_sent:
            return None
        stream = None
        if 0 <= forwarder.current_layer < len(receiver.layers):
            stream = receiver.layers[forwarder.current_layer].stream
        if stream is not None and stream.sr_ntp:
            # keep the publisher's NTP <-> RTP mapping, so audio and video stay in lip sync
            elapsed = now - stream.last_sr_time
            ntp = stream.sr_ntp + int(elapsed * _NTP_FRACTION)
            rtp_ts = stream.sr_rtp + forwarder.ts_offset + int(elapsed * receiver.codec.clock_rate)
        else:
            ntp = ntp_timestamp(wall)
            rtp_ts = forwarder.rtp_timestamp_at(now)
        return RtcpSenderReport(
            downtrack.ssrc,
            ntp & 0xFFFFFFFFFFFFFFFF,
            rtp_ts & 0xFFFFFFFF,
            forwarder.packets_sent,
            forwarder.octets_sent,
        )

    def _learn_ssrc(
        self, receiver: _Receiver, packet: bytes, ssrc: int, payload_type: int
    ) -> _Layer | None:
        extensions = receiver.extensions
        if extensions.rid:
            rid = find_extension(packet, extensions.rid)
            if rid is not None:
                layer = receiver.by_rid.get(rid.decode("ascii", "replace"))
                if layer is not None:
                    self._bind_ssrc(receiver, layer, ssrc)
                    return layer
        if extensions.repaired_rid:
            rid = find_extension(packet, extensions.repaired_rid)
            if rid is not None:
                layer = receiver.by_rid.get(rid.decode("ascii", "replace"))
                if layer is not None:
                    layer.rtx_ssrc = ssrc
                    receiver.by_ssrc[ssrc] = layer
                    return layer
        if len(receiver.layers) != 1:
            return None  # a simulcast SSRC we cannot place yet
        layer = receiver.layers[0]
        if payload_type == receiver.codec.rtx_payload_type:
            if layer.ssrc < 0:
                return None
            layer.rtx_ssrc = ssrc
            receiver.by_ssrc[ssrc] = layer
        else:
            self._bind_ssrc(receiver, layer, ssrc)
        return layer

    def _bind_ssrc(self, receiver: _Receiver, layer: _Layer, ssrc: int) -> None:
        if layer.ssrc == ssrc:
            return
        self._drop_routes(receiver)
        if layer.ssrc >= 0:
            receiver.by_ssrc.pop(layer.ssrc, None)  # the publisher restarted this encoding
        layer.ssrc = ssrc
        layer.stream = ReceiveStream(ssrc, receiver.codec.clock_rate)
        layer.lost_counted = 0
        receiver.by_ssrc[ssrc] = layer

    def _send_nack(self, receiver: _Receiver, layer: _Layer, lost: list[int]) -> None:
        self.stats.nacks_sent += len(lost)
        nack = RtcpGenericNack(self.rtcp_ssrc, layer.ssrc, lost)
        receiver.publisher.send_rtcp(nack.serialize())

    def _layer_available(self, receiver: _Receiver, layer: _Layer, now: float) -> bool:
        if layer.last_time >= 0:
            return now - layer.last_time < LAYER_TIMEOUT
        # not seen yet: give every layer the first second of the track to show up
        return receiver.first_time < 0 or now - receiver.first_time < LAYER_TIMEOUT

    def _select_layer(
        self,
        receiver: _Receiver,
        max_height: int | None,
        now: float,
        max_layer: int | None = None,
    ) -> int:
        """The highest available layer within the height limit and the congestion ceiling
        (`max_layer`); the lowest available one when none is."""
        layers = receiver.layers
        if len(layers) == 1:
            return 0
        available = [layer for layer in layers if self._layer_available(receiver, layer, now)]
        if not available:
            available = layers
        fitting = [
            layer
            for layer in available
            if (max_height is None or layer.height is None or layer.height <= max_height)
            and (max_layer is None or layer.index <= max_layer)
        ]
        if fitting:
            return fitting[-1].index
        return available[0].index

    def _retarget(self, receiver: _Receiver, downtrack: _DownTrack, now: float) -> None:
        forwarder = downtrack.forwarder
        target = self._select_layer(receiver, downtrack.max_height, now, downtrack.max_layer)
        if target != forwarder.target_layer:
            if logger.isEnabledFor(logging.DEBUG):
                self._log_retarget(receiver, downtrack, target, now)
            forwarder.target_layer = target
            self._drop_routes(receiver)  # the layers' outputs and tees change
            if forwarder.waiting:
                self._request_keyframe(receiver, receiver.layers[target], now)

    def _log_retarget(
        self, receiver: _Receiver, downtrack: _DownTrack, target: int, now: float
    ) -> None:
        logger.debug(
            "track %s to %s: layer %d -> %d (available %s, max height %s, ceiling %s)",
            receiver.track_id,
            downtrack.subscriber_id,
            downtrack.forwarder.target_layer,
            target,
            [self._layer_available(receiver, layer, now) for layer in receiver.layers],
            downtrack.max_height,
            downtrack.max_layer,
        )

    def _check_layers(self, receiver: _Receiver, now: float) -> None:
        receiver.next_layer_check = now + LAYER_CHECK_INTERVAL
        if len(receiver.layers) > 1:
            for downtrack in receiver.downtracks.values():
                self._retarget(receiver, downtrack, now)
        self._request_waiting_keyframes(receiver, now, KEYFRAME_RETRY)

    def _request_waiting_keyframes(
        self, receiver: _Receiver, now: float, min_age: float = 0.0
    ) -> None:
        """Keyframe requests for layers some downtrack waits for, and for deferred requests."""
        if not receiver.wait_for_keyframe or receiver.muted:
            return
        wanted = {
            downtrack.forwarder.target_layer
            for downtrack in receiver.downtracks.values()
            if downtrack.forwarder.waiting
        }
        for layer in receiver.layers:
            retry = layer.index in wanted and now - layer.last_keyframe_request >= min_age
            if retry or layer.keyframe_request_pending:
                self._request_keyframe(receiver, layer, now)

    def _on_keyframe_request(self, downtrack: _DownTrack | None, now: float) -> None:
        if downtrack is None:
            return
        receiver = self._receivers.get(downtrack.track_id)
        if receiver is None or not receiver.wait_for_keyframe:
            return
        forwarder = downtrack.forwarder
        index = forwarder.target_layer if forwarder.waiting else forwarder.current_layer
        if 0 <= index < len(receiver.layers):
            self._request_keyframe(receiver, receiver.layers[index], now)

    def _request_keyframe(self, receiver: _Receiver, layer: _Layer, now: float) -> None:
        """Ask the publisher for a keyframe of one layer (RFC 4585 PLI, or RFC 5104 FIR once
        FIR_AFTER_UNANSWERED requests went unanswered and FIR was negotiated). None while one
        is expected (since the last request, until a keyframe came or KEYFRAME_WAIT passed);
        beyond KEYFRAME_REQUESTS_PER_SECOND per publisher, or before the layer's SSRC is known,
        the request is deferred to the next layer check."""
        if now < layer.keyframe_expected_until:
            return  # the keyframe on its way answers this request too
        budget = receiver.keyframe_budget
        if now - budget[0] >= 1.0:
            budget[0] = now
            budget[1] = 0
        if layer.ssrc < 0 or budget[1] >= KEYFRAME_REQUESTS_PER_SECOND:
            layer.keyframe_request_pending = True
            return
        budget[1] += 1
        if layer.keyframe_expected_until:  # the previous request's wait ended unanswered
            layer.unanswered_requests += 1
        layer.keyframe_request_pending = False
        layer.last_keyframe_request = now
        layer.keyframe_expected_until = now + KEYFRAME_WAIT
        if layer.route is not None and not layer.route.tee:
            self._drop_layer_route(receiver, layer)  # its keyframe must be seen here
        self.stats.keyframe_requests += 1
        if receiver.codec.fir and layer.unanswered_requests >= FIR_AFTER_UNANSWERED:
            layer.fir_sequence = (layer.fir_sequence + 1) & 0xFF
            request = RtcpFir(self.rtcp_ssrc, 0, [(layer.ssrc, layer.fir_sequence)]).serialize()
            kind = "FIR"
        else:
            request = RtcpPli(self.rtcp_ssrc, layer.ssrc).serialize()
            kind = "PLI"
        logger.debug(
            "track %s: %s for layer %d (%d unanswered before)",
            receiver.track_id,
            kind,
            layer.index,
            layer.unanswered_requests,
        )
        receiver.publisher.send_rtcp(request)

    def _update_speakers(self, now: float) -> None:
        if now < self.speakers.next_update:
            return
        self.sync_routes()  # the audio levels the fast path collected belong to this interval
        speakers = self.speakers.update(now)
        next_update = self.speakers.next_update
        for receiver in self._receivers.values():
            if receiver.routes and receiver.is_audio:
                for layer in receiver.layers:
                    if layer.route is not None:
                        layer.route.deadline = next_update
        if speakers is not None and self.on_active_speakers is not None:
            self.on_active_speakers(self.room_id, speakers)
