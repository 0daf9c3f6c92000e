"""The WebRTC legs of a LiveKit participant: LiveKit's v0 flow with two PeerConnections, on aiortc.

On top of `protocols.livekit.signal.SignalClient` (the /rtc WebSocket), a `LiveKitParticipant`
runs LiveKit's two-PeerConnection flow (livekit/protocol v16):

- subscriber PeerConnection: the server sends `offer` (with `mid_to_track_id`), we set it, answer
  and send `answer` carrying the offer's `id`; the server renegotiates with a new `offer` whenever
  tracks come and go. It is the primary connection when the server says `subscriber_primary`: the
  server opens its own data channels on it, so the answer carries an SCTP section.
- publisher PeerConnection: for each track, `add_track` (AddTrackRequest with cid = the track id
  in our SDP's msid, name, type and source), wait for `track_published` with that cid, create the
  offer, send `offer`, apply the server's `answer`. The data channels `_reliable` (ordered) and
  `_lossy` (unordered, no retransmission) are opened on it before its first offer, as LiveKit's
  SDKs do; `send_data` negotiates the publisher for them alone when nothing is published.
- ICE: the server trickles its candidates (`trickle`, TrickleRequest with a JSON candidateInit
  and target PUBLISHER or SUBSCRIBER); they are added to the matching PeerConnection, and kept
  until its remote description is set when they come early. aiortc does not trickle: our
  candidates ride in our SDP, gathered before it is sent.

Media comes in two forms:

- encoded (`encoded=True`, what the gateway uses): aiortc negotiates but never decodes or encodes
  (protocols/livekit/media.py). Each subscribed remote track is announced as a `RemoteTrack`
  (codec, payload type, header extension ids, SSRCs) and its RTP comes to `on_rtp(track_sid,
  packet)`; `publish_encoded` returns a `LocalTrack` whose `sink` sends RTP as negotiated, and
  LiveKit's RTCP feedback for our tracks (PLI, NACK, receiver reports) comes to
  `on_publisher_rtcp`.
- decoded (the default, for tests and simple client legs): `on_track(identity, aiortc track)`
  yields decoded frames and `publish_audio` takes an aiortc track.

Data packets (`DataPacket`, e.g. chat text streams) from any data channel come to `on_data`;
`send_data` sends one on `_reliable` or `_lossy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpParameters, RTCRtpReceiveParameters
from aiortc.sdp import candidate_from_sdp
from google.protobuf.message import DecodeError
from livekit.protocol import models
from livekit.protocol import rtc as proto

from gateway.media import sdp
from gateway.media.router import CodecInfo, ExtensionIds
from protocols.livekit.media import RtpTap, codec_info, extension_ids, passive
from protocols.livekit.signal import (
    Left,
    ParticipantsChanged,
    SignalClient,
    SignalError,
    Unhandled,
)

log = logging.getLogger(__name__)

TrackCallback = Callable[[str, MediaStreamTrack], None]
"""Called with (participant identity, aiortc track) for each subscribed remote track."""

DATA_CHANNEL_TIMEOUT = 10.0


class LiveKitRtcError(SignalError):
    """A WebRTC handshake with LiveKit that failed or timed out."""


@dataclass(frozen=True)
class PublishedTrack:
    """A local track the server accepted (TrackPublishedResponse)."""

    cid: str
    sid: str
    name: str


@dataclass(frozen=True)
class RemoteTrack:
    """A subscribed remote track, as negotiated on the subscriber PeerConnection."""

    sid: str
    participant_sid: str
    participant_identity: str
    kind: str
    mid: str
    codec: CodecInfo
    extensions: ExtensionIds
    ssrc: int | None
    rtx_ssrc: int | None
    fmtp: str = ""
    """The negotiated codec's a=fmtp parameters."""


@dataclass(frozen=True)
class LocalTrack:
    """One of our tracks published encoded: send RTP with this SSRC and payload type on `sink`."""

    sid: str
    cid: str
    kind: str
    ssrc: int
    payload_type: int
    clock_rate: int
    extensions: ExtensionIds
    sink: RtpTap


def parse_trickle(candidate_init: str) -> RTCIceCandidate | None:
    """The aiortc candidate in a LiveKit candidateInit (JSON RTCIceCandidateInit).

    None for an end-of-candidates (empty candidate) or an unusable one.
    """
    try:
        init = json.loads(candidate_init)
    except ValueError:
        return None
    if not isinstance(init, dict):
        return None
    line = str(init.get("candidate") or "").strip()
    if not line:
        return None
    if line.startswith("a="):
        line = line[2:]
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(line)
    except (ValueError, IndexError):
        return None
    mid = init.get("sdpMid")
    index = init.get("sdpMLineIndex")
    candidate.sdpMid = str(mid) if mid is not None else None
    candidate.sdpMLineIndex = int(index) if index is not None else None
    if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
        candidate.sdpMLineIndex = 0
    return candidate


def media_stream_ids(offer: str) -> dict[str, str]:
    """mid -> msid stream id of each m-line of an SDP offer (LiveKit's is `PA_sid|TR_sid`); empty
    when the SDP cannot be read (aiortc then refuses it)."""
    try:
        description = sdp.parse(offer)
    except sdp.SdpError:
        return {}
    return {
        media.mid: media.msid.split()[0]
        for media in description.media
        if media.mid is not None and media.msid and media.msid.split()
    }


def _fmtp(parameters: RTCRtpParameters) -> str:
    codecs = [c for c in parameters.codecs if not c.mimeType.lower().endswith("/rtx")]
    if not codecs:
        return ""
    return ";".join(
        f"{key}={value}" if value is not None else key
        for key, value in codecs[0].parameters.items()
    )


class _Leg:
    """One PeerConnection and the remote candidates that came before its remote description."""

    def __init__(self, name: str, configuration: RTCConfiguration) -> None:
        self.name = name
        self.pc = RTCPeerConnection(configuration)
        self._pending: list[RTCIceCandidate] = []

    async def set_remote(self, description: RTCSessionDescription) -> None:
        await self.pc.setRemoteDescription(description)
        pending, self._pending = self._pending, []
        for candidate in pending:
            await self._add(candidate)

    async def add_candidate(self, candidate: RTCIceCandidate) -> None:
        if self.pc.remoteDescription is None:
            self._pending.append(candidate)
        else:
            await self._add(candidate)

    async def _add(self, candidate: RTCIceCandidate) -> None:
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception as exc:  # a candidate aiortc cannot use must not end the session
            log.debug("LiveKit %s: candidate %s ignored: %s", self.name, candidate, exc)

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"


def rtc_ice_servers(servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    """RTCIceServer dictionaries (what Gateway.ice_servers gives) as aiortc takes them."""
    return [
        RTCIceServer(server["urls"], server.get("username"), server.get("credential"))
        for server in servers
    ]


class LiveKitParticipant:
    """One participant in a LiveKit room: signalling plus the publisher and subscriber legs."""

    def __init__(
        self,
        signal: SignalClient,
        *,
        encoded: bool = False,
        ice_servers: list[RTCIceServer] | None = None,
        on_track: TrackCallback | None = None,
    ) -> None:
        self.signal = signal
        self.encoded = encoded
        self.on_track = on_track
        self.on_remote_track: Callable[[RemoteTrack], None] | None = None
        self.on_remote_track_ended: Callable[[str], None] | None = None
        self.on_rtp: Callable[[str, bytes], None] | None = None
        """(remote track sid, decrypted RTP packet), encoded mode."""
        self.on_subscriber_rtcp: Callable[[bytes], None] | None = None
        """RTCP from LiveKit about the tracks we receive (sender reports)."""
        self.on_publisher_rtcp: Callable[[bytes], None] | None = None
        """RTCP from LiveKit about the tracks we publish (PLI, FIR, NACK, receiver reports)."""
        self.on_data: Callable[[models.DataPacket], None] | None = None
        self.on_participants: Callable[[ParticipantsChanged], None] | None = None
        """Remote participants joined, changed (name, tracks, mute) or left."""
        self.on_signal: Callable[[str, proto.SignalResponse], None] | None = None
        """Signalling messages this class does not act on (mute, speakers_changed, ...)."""
        # max-bundle, as LiveKit offers: with aiortc's default (balanced), two new m-lines of one
        # kind in one offer leave the second on a transport that is then discarded (never sent)
        configuration = RTCConfiguration(
            iceServers=list(ice_servers or []), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
        self.subscriber = _Leg("subscriber", configuration)
        self.publisher = _Leg("publisher", configuration)
        self.subscriber_tap = RtpTap(on_rtp=self._on_subscriber_rtp, on_rtcp=self._subscriber_rtcp)
        self.publisher_tap = RtpTap(on_rtcp=self._publisher_rtcp)
        self.published: dict[str, PublishedTrack] = {}
        """Our tracks the server accepted, by cid."""
        self.remote_tracks: list[tuple[str, MediaStreamTrack]] = []
        """(identity, track) of every subscribed remote track so far (decoded mode)."""
        self.subscribed: dict[str, RemoteTrack] = {}
        """Encoded mode: subscribed remote tracks by mid."""
        self.data_channels: dict[str, RTCDataChannel] = {}
        self.data_dropped = 0
        self._by_ssrc: dict[int, str] = {}
        self._mid_streams: dict[str, str] = {}
        self._track_published: dict[str, asyncio.Future[PublishedTrack]] = {}
        self._local_parameters: dict[str, asyncio.Future[RTCRtpParameters]] = {}
        self._answer: asyncio.Future[proto.SessionDescription] | None = None
        self._publish_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._url = ""
        self._token = ""
        self._auto_subscribe = True
        self.ended = asyncio.Event()
        """Set when the session is over for good: left, refused, or lost and not resumable."""
        self.closed = asyncio.Event()
        """Set by `close`."""
        self.end_reason = ""
        self.left: Left | None = None
        """The server's leave, when it ended the session (reason: PARTICIPANT_REMOVED...)."""
        self.resumes = 0
        self.subscriber.pc.on("track", self._on_remote_track)
        self.subscriber.pc.on("datachannel", self._watch_channel)

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        encoded: bool = False,
        auto_subscribe: bool = True,
        on_track: TrackCallback | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        timeout: float = 10.0,
    ) -> LiveKitParticipant:
        """Join the room the token names; returns once JoinResponse is in. The peer connections
        use ICE_SERVERS, then the STUN/TURN servers of LiveKit's JoinResponse.

        The subscriber leg is negotiated in the background as soon as the server offers it.
        """
        signal = await SignalClient.connect(
            url, token, auto_subscribe=auto_subscribe, timeout=timeout
        )
        # ours (the operator's [turn]) first: aiortc uses only the first TURN server it is given
        servers = list(ice_servers or [])
        joined = signal.session.joined
        if joined is not None:
            servers += [
                RTCIceServer(list(s.urls), s.username or None, s.credential or None)
                for s in joined.ice_servers
            ]
        participant = cls(signal, encoded=encoded, ice_servers=servers, on_track=on_track)
        participant._url, participant._token = url, token
        participant._auto_subscribe = auto_subscribe
        participant.start()
        participant._tasks.append(
            asyncio.create_task(participant._watch_signal(), name="livekit-rtc-watch")
        )
        return participant

    def start(self) -> None:
        """Start handling signalling (done by `connect`; call it when built by hand)."""
        self._signal_task = asyncio.create_task(self._signal_loop(), name="livekit-rtc-signal")
        self._tasks.append(self._signal_task)

    # --- losing and resuming the signalling connection -------------------------------------------

    async def _watch_signal(self) -> None:
        """LiveKit's reconnection: a lost WebSocket is resumed (reconnect=1, same participant,
        same PeerConnections); when that fails, or the server asks for a full reconnection, the
        session ends and the owner rejoins."""
        while True:
            await self.signal.closed.wait()
            if self._closed:
                return
            left = self.signal.session.left
            if left is not None and left.action != "RESUME":
                self.left = left
                self._end(f"LiveKit ended the session ({left.reason})")
                return
            reason = self.signal.close_reason or "connection lost"
            if not await self._resume():
                self._end(f"LiveKit signalling lost ({reason}) and not resumed")
                return

    async def _resume(self, attempts: int = 3) -> bool:
        for attempt in range(attempts):
            try:
                signal = await SignalClient.connect(
                    self._url,
                    self._token,
                    auto_subscribe=self._auto_subscribe,
                    resume=self.signal.session,
                    timeout=5.0,
                )
            except SignalError as exc:
                log.info("LiveKit resume attempt %d failed: %s", attempt + 1, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if not self.media_connected:
                await signal.close()
                return False
            self._signal_task.cancel()
            self.signal = signal
            self.start()
            self.resumes += 1
            log.info("LiveKit session of %s resumed", self.identity)
            return True
        return False

    def _end(self, reason: str) -> None:
        self.end_reason = reason
        self.ended.set()

    @property
    def identity(self) -> str:
        return self.signal.joined.participant.identity

    @property
    def sid(self) -> str:
        return self.signal.joined.participant.sid

    # --- signalling events -------------------------------------------------------------------

    async def _signal_loop(self) -> None:
        while True:
            event = await self.signal.events.get()
            if isinstance(event, Left):
                log.info("LiveKit asked us to leave: %s (%s)", event.reason, event.action)
                continue
            if isinstance(event, ParticipantsChanged) and self.on_participants is not None:
                try:
                    self.on_participants(event)
                except Exception:
                    log.exception("on_participants callback failed")
                continue
            if not isinstance(event, Unhandled):
                continue
            try:
                await self._dispatch(event.kind, event.message)
            except (SignalError, ConnectionError) as exc:
                log.warning("LiveKit %s failed: %s", event.kind, exc)
            except Exception:
                log.exception("LiveKit %s could not be handled", event.kind)

    async def _dispatch(self, kind: str, message: proto.SignalResponse) -> None:
        if kind == "offer":
            await self._on_subscriber_offer(message.offer)
        elif kind == "answer":
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(message.answer)
            else:
                log.warning("LiveKit sent an answer nobody waits for")
        elif kind == "trickle":
            await self._on_trickle(message.trickle)
        elif kind == "track_published":
            published = message.track_published
            waiter = self._track_published.get(published.cid)
            if waiter is not None and not waiter.done():
                waiter.set_result(
                    PublishedTrack(published.cid, published.track.sid, published.track.name)
                )
        elif kind == "refresh_token":
            self._token = message.refresh_token  # the one to resume with, once ours expires
        elif self.on_signal is not None:
            self.on_signal(kind, message)
        else:
            log.debug("LiveKit %s ignored", kind)

    async def _on_subscriber_offer(self, offer: proto.SessionDescription) -> None:
        self._mid_streams.update(media_stream_ids(offer.sdp))
        await self.subscriber.set_remote(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        if self.encoded:
            for transceiver in self.subscriber.pc.getTransceivers():
                passive(transceiver, self._on_subscriber_parameters)
            self.subscriber_tap.attach(self.subscriber.pc)
        answer = await self.subscriber.pc.createAnswer()
        await self.subscriber.pc.setLocalDescription(answer)
        local = self.subscriber.pc.localDescription
        await self.signal.send(
            proto.SignalRequest(
                answer=proto.SessionDescription(type="answer", sdp=local.sdp, id=offer.id)
            )
        )

    async def _on_trickle(self, trickle: proto.TrickleRequest) -> None:
        candidate = parse_trickle(trickle.candidateInit)
        if candidate is None:
            return
        leg = self.subscriber if trickle.target == proto.SignalTarget.SUBSCRIBER else self.publisher
        await leg.add_candidate(candidate)

    def _on_remote_track(self, track: MediaStreamTrack) -> None:
        if self.encoded:
            return  # announced by _on_subscriber_parameters once negotiated
        mid = next(
            (
                t.mid
                for t in self.subscriber.pc.getTransceivers()
                if t.receiver.track is track and t.mid is not None
            ),
            None,
        )
        stream = self._mid_streams.get(mid or "", "")
        identity = self._identity_for(stream)
        self.remote_tracks.append((identity, track))
        if self.on_track is not None:
            try:
                self.on_track(identity, track)
            except Exception:
                log.exception("on_track callback failed")

    def _identity_for(self, stream: str) -> str:
        participant_sid = stream.split("|", 1)[0]
        participant = self.signal.session.participants.get(participant_sid)
        return participant.identity if participant is not None else participant_sid

    # --- encoded subscriber media ------------------------------------------------------------

    def _on_subscriber_parameters(
        self, transceiver: RTCRtpTransceiver, parameters: RTCRtpParameters
    ) -> None:
        mid = transceiver.mid or parameters.muxId
        stream = self._mid_streams.get(mid, "")
        participant_sid, _, track_sid = stream.partition("|")
        codec = codec_info(parameters)
        previous = self.subscribed.get(mid)
        if transceiver.currentDirection not in ("recvonly", "sendrecv") or not track_sid:
            if previous is not None:
                self._end_remote(mid)
            return
        if codec is None:
            return
        ssrc = rtx_ssrc = None
        if isinstance(parameters, RTCRtpReceiveParameters) and parameters.encodings:
            encoding = parameters.encodings[0]
            ssrc = encoding.ssrc
            rtx_ssrc = encoding.rtx.ssrc if encoding.rtx is not None else None
        if previous is not None:
            if previous.sid == track_sid and previous.ssrc == ssrc:
                return
            self._end_remote(mid)
        remote = RemoteTrack(
            sid=track_sid,
            participant_sid=participant_sid,
            participant_identity=self._identity_for(stream),
            kind=transceiver.kind,
            mid=mid,
            codec=codec,
            extensions=extension_ids(parameters),
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc,
            fmtp=_fmtp(parameters),
        )
        self.subscribed[mid] = remote
        for value in (ssrc, rtx_ssrc):
            if value is not None:
                self._by_ssrc[value] = track_sid
        if self.on_remote_track is not None:
            self.on_remote_track(remote)

    def _end_remote(self, mid: str) -> None:
        remote = self.subscribed.pop(mid, None)
        if remote is None:
            return
        for value in (remote.ssrc, remote.rtx_ssrc):
            if value is not None:
                self._by_ssrc.pop(value, None)
        if self.on_remote_track_ended is not None:
            self.on_remote_track_ended(remote.sid)

    def track_for_ssrc(self, ssrc: int) -> str | None:
        """The remote track sid an SSRC (media or RTX) belongs to."""
        return self._by_ssrc.get(ssrc)

    def _on_subscriber_rtp(self, packet: bytes) -> None:
        if len(packet) < 12:
            return
        track_sid = self._by_ssrc.get(int.from_bytes(packet[8:12], "big"))
        if track_sid is not None and self.on_rtp is not None:
            self.on_rtp(track_sid, packet)

    def _subscriber_rtcp(self, packet: bytes) -> None:
        if self.on_subscriber_rtcp is not None:
            self.on_subscriber_rtcp(packet)

    def _publisher_rtcp(self, packet: bytes) -> None:
        if self.on_publisher_rtcp is not None:
            self.on_publisher_rtcp(packet)

    async def subscribe(self, track_sids: list[str], subscribe: bool = True) -> None:
        """Ask for (or stop) these remote tracks (UpdateSubscription), for auto_subscribe=False."""
        if track_sids:
            await self.signal.send(
                proto.SignalRequest(
                    subscription=proto.UpdateSubscription(
                        track_sids=track_sids, subscribe=subscribe
                    )
                )
            )

    async def update_track_settings(
        self, track_sids: list[str], *, disabled: bool = False, width: int = 0, height: int = 0
    ) -> None:
        """Pause (disabled) or resume remote video tracks, or ask for a size (UpdateTrackSettings):
        LiveKit then stops sending them, or picks the simulcast layer that fits."""
        if track_sids:
            await self.signal.send(
                proto.SignalRequest(
                    track_setting=proto.UpdateTrackSettings(
                        track_sids=track_sids, disabled=disabled, width=width, height=height
                    )
                )
            )

    # --- publishing ----------------------------------------------------------------------------

    async def publish_audio(
        self,
        track: MediaStreamTrack,
        *,
        name: str = "microphone",
        source: models.TrackSource = models.TrackSource.MICROPHONE,
        timeout: float = 10.0,
    ) -> PublishedTrack:
        """Publish an aiortc audio track (decoded mode: aiortc encodes it to Opus)."""
        if track.kind != "audio":
            raise ValueError(f"publish_audio needs an audio track, not {track.kind}")
        async with self._publish_lock:
            transceiver = self.publisher.pc.addTransceiver(track, direction="sendonly")
            published = await self._publish_transceiver(
                transceiver, track.id, name, models.TrackType.AUDIO, source, False, timeout
            )
            return published

    async def publish_encoded(
        self,
        kind: str,
        codec_name: str,
        *,
        name: str,
        source: models.TrackSource,
        muted: bool = False,
        width: int = 0,
        height: int = 0,
        timeout: float = 10.0,
        encryption: models.Encryption.Type = models.Encryption.NONE,
    ) -> LocalTrack:
        """Publish a track whose RTP we send ourselves, already encoded in CODEC_NAME;
        ENCRYPTION `models.Encryption.GCM` announces LiveKit's frame encryption (E2EE)."""
        async with self._publish_lock:
            pc = self.publisher.pc
            transceiver = pc.addTransceiver(kind, direction="sendonly")
            capabilities = RTCRtpSender.getCapabilities(kind).codecs
            wanted = [c for c in capabilities if c.name.lower() == codec_name.lower()]
            if not wanted:
                raise LiveKitRtcError(f"no {codec_name} {kind} codec to publish with")
            with contextlib.suppress(ValueError):
                transceiver.setCodecPreferences(wanted)
            loop = asyncio.get_running_loop()
            cid = transceiver.sender._track_id
            parameters: asyncio.Future[RTCRtpParameters] = loop.create_future()
            self._local_parameters[cid] = parameters

            def record(_: RTCRtpTransceiver, params: RTCRtpParameters) -> None:
                if not parameters.done():
                    parameters.set_result(params)

            passive(transceiver, record)
            track_type = models.TrackType.VIDEO if kind == "video" else models.TrackType.AUDIO
            try:
                published = await self._publish_transceiver(
                    transceiver,
                    cid,
                    name,
                    track_type,
                    source,
                    muted,
                    timeout,
                    width,
                    height,
                    encryption,
                )
                negotiated = await asyncio.wait_for(parameters, timeout)
            except TimeoutError:
                raise LiveKitRtcError(
                    f"publishing {name!r}: the publisher connection did not come up in {timeout} s"
                ) from None
            finally:
                self._local_parameters.pop(cid, None)
            codec = codec_info(negotiated)
            if codec is None:
                raise LiveKitRtcError(f"LiveKit accepted no codec for {name!r}")
            return LocalTrack(
                sid=published.sid,
                cid=cid,
                kind=kind,
                ssrc=transceiver.sender._ssrc,
                payload_type=codec.payload_type,
                clock_rate=codec.clock_rate,
                extensions=extension_ids(negotiated),
                sink=self.publisher_tap,
            )

    async def _publish_transceiver(
        self,
        transceiver: RTCRtpTransceiver,
        cid: str,
        name: str,
        track_type: models.TrackType,
        source: models.TrackSource,
        muted: bool,
        timeout: float,
        width: int = 0,
        height: int = 0,
        encryption: models.Encryption.Type = models.Encryption.NONE,
    ) -> PublishedTrack:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[PublishedTrack] = loop.create_future()
        self._track_published[cid] = waiter
        try:
            await self.signal.send(
                proto.SignalRequest(
                    add_track=proto.AddTrackRequest(
                        cid=cid,
                        name=name,
                        type=track_type,
                        source=source,
                        muted=muted,
                        width=width,
                        height=height,
                        encryption=encryption,
                    )
                )
            )
            published = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise LiveKitRtcError(
                f"publishing {name!r} got no answer from LiveKit within {timeout} s"
            ) from None
        finally:
            self._track_published.pop(cid, None)
        await asyncio.wait_for(self._negotiate_publisher(), timeout)
        self.published[cid] = published
        return published

    async def _negotiate_publisher(self) -> None:
        pc = self.publisher.pc
        if not self.data_channels:
            self.data_channels = {
                "_reliable": pc.createDataChannel("_reliable", ordered=True),
                "_lossy": pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0),
            }
            for channel in self.data_channels.values():
                self._watch_channel(channel)
        await pc.setLocalDescription(await pc.createOffer())
        if self.encoded:
            self.publisher_tap.attach(pc)
        self._answer = asyncio.get_running_loop().create_future()
        await self.signal.send(
            proto.SignalRequest(
                offer=proto.SessionDescription(type="offer", sdp=pc.localDescription.sdp)
            )
        )
        answer = await self._answer
        await self.publisher.set_remote(RTCSessionDescription(sdp=answer.sdp, type="answer"))

    async def unpublish(self, track: LocalTrack, timeout: float = 10.0) -> None:
        """Stop publishing TRACK as LiveKit's SDKs do: its m-line goes inactive in a new publisher
        offer, and the server unpublishes it."""
        async with self._publish_lock:
            transceiver = next(
                (t for t in self.publisher.pc.getTransceivers() if t.sender._track_id == track.cid),
                None,
            )
            if transceiver is None or transceiver.direction == "inactive":
                return
            transceiver.direction = "inactive"
            try:
                await asyncio.wait_for(self._negotiate_publisher(), timeout)
            except TimeoutError:
                raise LiveKitRtcError(
                    f"unpublishing {track.sid}: no answer in {timeout} s"
                ) from None
            self.published.pop(track.cid, None)

    async def set_muted(self, track_sid: str, muted: bool) -> None:
        """Mute or unmute one of our published tracks (MuteTrackRequest)."""
        await self.signal.send(
            proto.SignalRequest(mute=proto.MuteTrackRequest(sid=track_sid, muted=muted))
        )

    async def update_metadata(
        self, *, name: str | None = None, attributes: dict[str, str] | None = None
    ) -> None:
        """A new name, or attributes (those named only; an empty value removes one)."""
        request = proto.UpdateParticipantMetadata()
        if name is not None:
            request.name = name
        if attributes:
            request.attributes.update(attributes)
        await self.signal.send(proto.SignalRequest(update_metadata=request))

    # --- data ------------------------------------------------------------------------------------

    def _watch_channel(self, channel: RTCDataChannel) -> None:
        @channel.on("message")
        def on_message(message: bytes | str) -> None:
            if isinstance(message, str):
                message = message.encode()
            packet = models.DataPacket()
            try:
                packet.ParseFromString(message)
            except DecodeError:
                self.data_dropped += 1
                return
            if self.on_data is not None:
                try:
                    self.on_data(packet)
                except Exception:
                    log.exception("LiveKit data handler failed")

    async def send_data(self, packet: models.DataPacket, *, reliable: bool = True) -> None:
        """Send a DataPacket on `_reliable` (or `_lossy`), negotiating the publisher if needed."""
        if not self.data_channels:
            async with self._publish_lock:
                if not self.data_channels:
                    await asyncio.wait_for(self._negotiate_publisher(), DATA_CHANNEL_TIMEOUT)
        channel = self.data_channels["_reliable" if reliable else "_lossy"]
        if channel.readyState != "open":
            opened = asyncio.get_running_loop().create_future()

            def on_open() -> None:
                if not opened.done():
                    opened.set_result(None)

            channel.once("open", on_open)
            if channel.readyState != "open":
                try:
                    await asyncio.wait_for(opened, DATA_CHANNEL_TIMEOUT)
                except TimeoutError:
                    raise LiveKitRtcError(
                        f"the LiveKit data channel did not open in {DATA_CHANNEL_TIMEOUT} s"
                    ) from None
        if not packet.participant_identity:
            packet.participant_identity = self.identity
        channel.send(packet.SerializeToString())

    # --- the end -------------------------------------------------------------------------------

    @property
    def media_connected(self) -> bool:
        """Whether every PeerConnection in use is connected."""
        legs = [self.subscriber] + ([self.publisher] if self.data_channels else [])
        return all(leg.connected for leg in legs if leg.pc.remoteDescription is not None)

    async def close(self, *, leave: bool = True) -> None:
        """Leave the room (or just drop the connection), close both PeerConnections."""
        if self._closed:
            return
        self._closed = True
        self.closed.set()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for waiter in self._track_published.values():
            waiter.cancel()
        if self._answer is not None:
            self._answer.cancel()
        if leave:
            await self.signal.leave()
        else:
            await self.signal.close()
        await self.publisher.pc.close()
        await self.subscriber.pc.close()
