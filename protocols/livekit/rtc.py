"""The WebRTC legs of a LiveKit participant: LiveKit's v0 flow with two PeerConnections, on aiortc.

On top of `protocols.livekit.signal.SignalClient` (the /rtc WebSocket), a `LiveKitParticipant`
runs LiveKit's two-PeerConnection flow (livekit/protocol v16):

- subscriber PeerConnection: the server sends `offer` (with `mid_to_track_id`), we set it, answer
  and send `answer` carrying the offer's `id`; the server renegotiates with a new `offer` whenever
  tracks come and go. It is the primary connection when the server says `subscriber_primary`: the
  server opens its own data channels on it, so the answer carries an SCTP section.
- publisher PeerConnection: for each track, `add_track` (AddTrackRequest with cid = the aiortc
  track's id, which is also the track id in our SDP's msid, name, type and source), wait for
  `track_published` with that cid, create the offer, send `offer`, apply the server's `answer`.
  The data channels `_reliable` (ordered) and `_lossy` (unordered, no retransmission) are opened
  on it before the first offer, as LiveKit's SDKs do, so that user data can be sent later;
  livekit-server 1.13.5 does not need them to count us connected (the subscriber leg, primary,
  is what makes the participant ACTIVE), the tests pass without them too.
- ICE: the server trickles its candidates (`trickle`, TrickleRequest with a JSON candidateInit
  and target PUBLISHER or SUBSCRIBER); they are added to the matching PeerConnection, and kept
  until its remote description is set when they come early. aiortc does not trickle: our
  candidates ride in our SDP, gathered before it is sent.

`on_track(identity, track)` is called for each subscribed remote track, with the identity of
the participant that publishes it (from the stream id `PA_sid|TR_sid` LiveKit puts in the msid)
and the aiortc track, which yields decoded frames.

Media: this leg uses aiortc's media pipeline (decoding, jitter buffer, encoding). That is fine
for a client leg and its tests; the relay's per-packet path must not use it (issue 4). The next
step is to hand encoded media to the relay instead: Opus and video RTP straight from the
subscriber transport, and encoded frames into the publisher, decoding audio only where a mix is
needed.

Not handled yet: the JoinResponse's ICE servers (pass `ice_servers` to `connect`), resume and
full rejoin, mute, subscription updates, data packets on the channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp
from livekit.protocol import models
from livekit.protocol import rtc as proto

from protocols.livekit.signal import Left, SignalClient, SignalError, Unhandled

log = logging.getLogger(__name__)

TrackCallback = Callable[[str, MediaStreamTrack], None]
"""Called with (participant identity, aiortc track) for each subscribed remote track."""


class LiveKitRtcError(SignalError):
    """A WebRTC handshake with LiveKit that failed or timed out."""


@dataclass(frozen=True)
class PublishedTrack:
    """A local track the server accepted (TrackPublishedResponse)."""

    cid: str
    sid: str
    name: str


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


def media_stream_ids(sdp: str) -> dict[str, str]:
    """mid -> msid stream id of each m-line of SDP (LiveKit's is `PA_sid|TR_sid`)."""
    result: dict[str, str] = {}
    mid: str | None = None
    stream: str | None = None

    def flush() -> None:
        if mid is not None and stream is not None:
            result[mid] = stream

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            flush()
            mid, stream = None, None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=msid:"):
            stream = line[len("a=msid:") :].split()[0]
    flush()
    return result


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


class LiveKitParticipant:
    """One participant in a LiveKit room: signalling plus the publisher and subscriber legs."""

    def __init__(
        self,
        signal: SignalClient,
        *,
        ice_servers: list[RTCIceServer] | None = None,
        on_track: TrackCallback | None = None,
    ) -> None:
        self.signal = signal
        self.on_track = on_track
        configuration = RTCConfiguration(iceServers=list(ice_servers or []))
        self.subscriber = _Leg("subscriber", configuration)
        self.publisher = _Leg("publisher", configuration)
        self.published: dict[str, PublishedTrack] = {}
        """Our tracks the server accepted, by cid."""
        self.remote_tracks: list[tuple[str, MediaStreamTrack]] = []
        """(identity, track) of every subscribed remote track so far."""
        self.data_channels: dict[str, RTCDataChannel] = {}
        self._mid_streams: dict[str, str] = {}
        self._track_published: dict[str, asyncio.Future[PublishedTrack]] = {}
        self._answer: asyncio.Future[proto.SessionDescription] | None = None
        self._publish_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.subscriber.pc.on("track", self._on_remote_track)

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        on_track: TrackCallback | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        timeout: float = 10.0,
    ) -> LiveKitParticipant:
        """Join the room the token names; returns once JoinResponse is in.

        The subscriber leg is negotiated in the background as soon as the server offers it.
        """
        signal = await SignalClient.connect(url, token, auto_subscribe=True, timeout=timeout)
        participant = cls(signal, ice_servers=ice_servers, on_track=on_track)
        participant._tasks.append(
            asyncio.create_task(participant._signal_loop(), name="livekit-rtc-signal")
        )
        return participant

    @property
    def identity(self) -> str:
        return self.signal.joined.participant.identity

    # --- signalling events -------------------------------------------------------------------

    async def _signal_loop(self) -> None:
        while True:
            event = await self.signal.events.get()
            if isinstance(event, Left):
                log.info("LiveKit asked us to leave: %s (%s)", event.reason, event.action)
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
        else:
            log.debug("LiveKit %s ignored", kind)

    async def _on_subscriber_offer(self, offer: proto.SessionDescription) -> None:
        self._mid_streams.update(media_stream_ids(offer.sdp))
        await self.subscriber.set_remote(RTCSessionDescription(sdp=offer.sdp, type="offer"))
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

    # --- publishing ----------------------------------------------------------------------------

    async def publish_audio(
        self,
        track: MediaStreamTrack,
        *,
        name: str = "microphone",
        source: models.TrackSource = models.TrackSource.MICROPHONE,
        timeout: float = 10.0,
    ) -> PublishedTrack:
        """Publish an aiortc audio track (sent as Opus); returns once the server answered."""
        if track.kind != "audio":
            raise ValueError(f"publish_audio needs an audio track, not {track.kind}")
        async with self._publish_lock:
            try:
                return await asyncio.wait_for(self._publish(track, name, source), timeout)
            except TimeoutError:
                raise LiveKitRtcError(
                    f"publishing {name!r} got no answer from LiveKit within {timeout} s"
                ) from None

    async def _publish(
        self, track: MediaStreamTrack, name: str, source: models.TrackSource
    ) -> PublishedTrack:
        cid = track.id
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[PublishedTrack] = loop.create_future()
        self._track_published[cid] = waiter
        try:
            await self.signal.send(
                proto.SignalRequest(
                    add_track=proto.AddTrackRequest(
                        cid=cid, name=name, type=models.TrackType.AUDIO, source=source
                    )
                )
            )
            published = await waiter
        finally:
            self._track_published.pop(cid, None)

        pc = self.publisher.pc
        if not self.data_channels:
            self.data_channels = {
                "_reliable": pc.createDataChannel("_reliable", ordered=True),
                "_lossy": pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0),
            }
        pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        self._answer = loop.create_future()
        await self.signal.send(
            proto.SignalRequest(
                offer=proto.SessionDescription(type="offer", sdp=pc.localDescription.sdp)
            )
        )
        answer = await self._answer
        await self.publisher.set_remote(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        self.published[cid] = published
        return published

    # --- the end -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Leave the room, close both PeerConnections and stop every task."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for waiter in self._track_published.values():
            waiter.cancel()
        if self._answer is not None:
            self._answer.cancel()
        await self.signal.leave()
        await self.publisher.pc.close()
        await self.subscriber.pc.close()
