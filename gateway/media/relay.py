"""The media relay: one shared ICE-lite UDP port, one router per room, WebRTC endpoints (DESIGN.md, RFC 8445 section 2.5)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from .audio.conference import ConferenceStats, RoomConference
from .dtls import DtlsCertificate
from .endpoint import EndpointContext, TrackRecord, WebRtcEndpoint
from .router import CodecInfo, ExtensionIds, Router, RtpSink
from .sdp import Codec
from .tcp import TcpListener
from .transport import UdpMux

logger = logging.getLogger(__name__)

OPUS_PAYLOAD_TYPE = 111

_TICK_INTERVAL = 1.0
_FAST_TICK_INTERVAL = 0.05  # transport-wide feedback to publishers (WebRtcEndpoint.fast_tick)

ActiveSpeakersCallback = Callable[[str, list[tuple[str, float]]], None]


@dataclass
class RelayStats:
    """Plain counters, read at scrape time."""

    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    packets_lost: int = 0
    nacks: int = 0
    keyframe_requests: int = 0
    endpoints: int = 0
    routers: int = 0
    congestion_pauses: int = 0
    layer_downgrades: int = 0
    subscriber_estimates: list[int] = field(default_factory=list)
    """Each subscribe session's bandwidth estimate (bits/s), where transport-cc runs."""


@dataclass
class _Room:
    room_id: str
    router: Router
    tracks: dict[str, TrackRecord] = field(default_factory=dict)
    endpoints: dict[str, WebRtcEndpoint] = field(default_factory=dict)
    conference: RoomConference | None = None


class MediaRelay:
    """Owns the shared socket, the DTLS certificate and the rooms' routers."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 40000,
        port_range: tuple[int, int] = (40001, 40100),
        public_ip: str = "",
        publish_bitrate: int = 2_500_000,
        tcp_port: int = 0,
    ) -> None:
        self.host = host
        self.publish_bitrate = publish_bitrate
        """Bits per second granted to each publisher by REMB, until bandwidth estimation exists."""
        self.public_ip = public_ip
        self._requested_port = port
        self._port_range = port_range
        self._mux = UdpMux()
        self._requested_tcp_port = tcp_port
        self._tcp: TcpListener | None = None
        """ICE-TCP passive listener (RFC 6544) when tcp_port is not 0."""
        self._certificate = DtlsCertificate()
        self._rooms: dict[str, _Room] = {}
        self._closed_conferences = ConferenceStats()
        self._started = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._fast_tick_handle: asyncio.TimerHandle | None = None
        self._tickers: list[Callable[[], None]] = []
        self.on_active_speakers: ActiveSpeakersCallback | None = None

    async def start(self) -> None:
        """Bind the one shared UDP socket (port, or the first free port of port_range), and the
        ICE-TCP listener (tcp_port, or likewise) unless tcp_port is 0."""
        if self._started:
            return
        await self._mux.bind(self.host, self._requested_port, self._port_range)
        if self._requested_tcp_port:
            listener = TcpListener(self._mux)
            try:
                await listener.bind(self.host, self._requested_tcp_port, self._port_range)
            except OSError:
                self._mux.close()
                raise
            self._tcp = listener
        self._started = True
        self._schedule_tick()
        self._schedule_fast_tick()

    async def stop(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._fast_tick_handle is not None:
            self._fast_tick_handle.cancel()
            self._fast_tick_handle = None
        for room_id in list(self._rooms):
            self.close_room(room_id)
        if self._tcp is not None:
            await self._tcp.close()
            self._tcp = None
        self._mux.close()
        self._started = False

    @property
    def port(self) -> int:
        return self._mux.port

    @property
    def tcp_port(self) -> int:
        """The ICE-TCP listener's port; 0 when it is off."""
        return self._mux.tcp_port

    @property
    def tcp(self) -> TcpListener | None:
        return self._tcp

    @property
    def mux(self) -> UdpMux:
        """The shared UDP socket (relay links' ICE-lite sessions live on it too)."""
        return self._mux

    @property
    def certificate(self) -> DtlsCertificate:
        return self._certificate

    def add_ticker(self, callback: Callable[[], None]) -> None:
        """Call CALLBACK on every relay tick (about once a second), after the routers'."""
        self._tickers.append(callback)

    def remove_ticker(self, callback: Callable[[], None]) -> None:
        if callback in self._tickers:
            self._tickers.remove(callback)

    @property
    def candidate_ip(self) -> str:
        """The address written in host candidates: public_ip, else the bound host."""
        if self.public_ip:
            return self.public_ip
        if self.host in ("0.0.0.0", "", "::"):
            return _default_ip()
        return self.host

    def create_endpoint(self, room_id: str, participant_id: str) -> WebRtcEndpoint:
        room = self._room(room_id)
        previous = room.endpoints.get(participant_id)
        if previous is not None:
            previous.close()
        context = EndpointContext(
            room_id=room.room_id,
            mux=self._mux,
            certificate=self._certificate,
            candidate_ip=self.candidate_ip,
            router=room.router,
            tracks=room.tracks,
            on_track_published=partial(self._track_published, room),
            on_track_removed=partial(self._track_removed, room),
            on_closed=self._endpoint_closed,
        )
        endpoint = WebRtcEndpoint(context, participant_id)
        room.endpoints[participant_id] = endpoint
        return endpoint

    def set_track_muted(self, room_id: str, track_id: str, muted: bool) -> None:
        room = self._rooms.get(room_id)
        if room is not None and room.router.has_receiver(track_id):
            room.router.set_muted(track_id, muted)

    def conference(self, room_id: str) -> RoomConference:
        """The room's audio conference for phones, made on first use."""
        room = self._room(room_id)
        if room.conference is None:
            room.conference = RoomConference(
                room_id,
                room.router,
                on_track_added=lambda track_id, participant_id: self._local_track(
                    room, track_id, participant_id
                ),
                on_track_removed=lambda track_id: self._track_removed(room, track_id),
            )
        return room.conference

    def router(self, room_id: str) -> Router:
        """The room's router, made on first use."""
        return self._room(room_id).router

    def add_foreign_track(
        self,
        room_id: str,
        record: TrackRecord,
        codec: CodecInfo,
        extensions: ExtensionIds,
        publisher: RtpSink,
        ssrc: int | None = None,
        rtx_ssrc: int | None = None,
        layers: list[tuple[str, int | None]] | None = None,
    ) -> None:
        """A track published in a foreign system (a LiveKit room, a partner gateway) whose RTP
        an adapter feeds to the router with `router(room_id).on_rtp`; RTCP for it goes back on
        PUBLISHER. LAYERS: [(rid, height)] of a simulcast track, as Router.add_receiver takes."""
        room = self._room(room_id)
        room.router.add_receiver(
            record.track_id,
            record.participant_id,
            record.kind,
            codec,
            extensions,
            publisher,
            layers=layers,
        )
        if ssrc is not None:
            room.router.set_layer_ssrc(record.track_id, "", ssrc, rtx_ssrc)
        self._track_published(room, record)

    def remove_foreign_track(self, room_id: str, track_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is not None:
            self._track_removed(room, track_id)

    def _local_track(self, room: _Room, track_id: str, participant_id: str) -> None:
        """A track the relay itself encodes (a phone's voice): subscribers may ask for it."""
        opus = Codec(OPUS_PAYLOAD_TYPE, "opus", 48000, 2, "minptime=10;useinbandfec=1")
        self._track_published(room, TrackRecord(track_id, participant_id, "audio", opus))

    def room_conference(self, room_id: str) -> RoomConference | None:
        """The room's conference if it has one (no phone ever joined: None)."""
        room = self._rooms.get(room_id)
        return room.conference if room is not None else None

    def conference_stats(self) -> ConferenceStats:
        """Phone legs' RTP counters summed over every conference, closed ones included."""
        total = ConferenceStats()
        total += self._closed_conferences
        for room in self._rooms.values():
            if room.conference is not None:
                total += room.conference.stats()
        return total

    def close_room(self, room_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        for endpoint in list(room.endpoints.values()):
            endpoint.close()
        if room.conference is not None:
            room.conference.stop()
            self._closed_conferences += room.conference.stats()
        self._rooms.pop(room_id, None)
        room.router.close()

    def stats(self) -> RelayStats:
        total = RelayStats(routers=len(self._rooms))
        for room in self._rooms.values():
            total.endpoints += len(room.endpoints)
            room.router.sync_routes()  # count what the native fast path forwarded
            counters = room.router.stats
            total.packets_forwarded += counters.packets_forwarded
            total.bytes_forwarded += counters.bytes_forwarded
            total.packets_lost += counters.packets_lost
            total.nacks += counters.nacks
            total.keyframe_requests += counters.keyframe_requests
            total.congestion_pauses += counters.congestion_pauses
            total.layer_downgrades += counters.layer_downgrades
            for endpoint in room.endpoints.values():
                estimate = endpoint.bandwidth_estimate
                if estimate is not None:
                    total.subscriber_estimates.append(estimate)
        return total

    def _schedule_tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(_TICK_INTERVAL, self._tick)

    def _tick(self) -> None:
        # One timer for all rooms: RTCP reports, layer fallback, keyframe retries (Router.tick).
        for room in list(self._rooms.values()):
            try:
                room.router.tick()
            except Exception:  # one broken room must not stop the others' RTCP
                logger.exception("router tick failed in room %s", room.room_id)
        for ticker in list(self._tickers):
            try:
                ticker()
            except Exception:
                logger.exception("relay ticker failed")
        if self._started:
            self._schedule_tick()

    def _schedule_fast_tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._fast_tick_handle = loop.call_later(_FAST_TICK_INTERVAL, self._fast_tick)

    def _fast_tick(self) -> None:
        # One timer for all rooms: NACK retries to publishers (Router.retry_nacks) and each
        # endpoint's transport-wide feedback and congestion control (fast_tick).
        now = time.monotonic()
        for room in list(self._rooms.values()):
            try:
                room.router.retry_nacks(now)
                for endpoint in list(room.endpoints.values()):
                    endpoint.fast_tick(now)
            except Exception:  # one broken room must not stop the others' feedback
                logger.exception("fast tick failed in room %s", room.room_id)
        if self._started:
            self._schedule_fast_tick()

    def _room(self, room_id: str) -> _Room:
        room = self._rooms.get(room_id)
        if room is None:
            router = Router(room_id, self._emit_active_speakers)
            router.publisher_remb_bitrate = self.publish_bitrate
            room = _Room(room_id, router)
            self._rooms[room_id] = room
        return room

    def _emit_active_speakers(self, room_id: str, speakers: list[tuple[str, float]]) -> None:
        callback = self.on_active_speakers
        if callback is not None:
            callback(room_id, speakers)

    def _track_published(self, room: _Room, record: TrackRecord) -> None:
        room.tracks[record.track_id] = record

    def _track_removed(self, room: _Room, track_id: str) -> None:
        for endpoint in room.endpoints.values():
            endpoint.unsubscribe(track_id)
        if room.tracks.pop(track_id, None) is not None:
            room.router.remove_receiver(track_id)

    def _endpoint_closed(self, endpoint: WebRtcEndpoint) -> None:
        room = self._rooms.get(endpoint.room_id)
        if room is not None and room.endpoints.get(endpoint.participant_id) is endpoint:
            del room.endpoints[endpoint.participant_id]


def _default_ip() -> str:
    """The address of the interface holding the default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
