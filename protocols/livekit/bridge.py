"""A LiveKit bridge: one room here and one LiveKit room become one meeting.

What a deployment of LiveKit calls a meeting (a Visio room, an Element Call session) differs in
names and identities only; a `BridgePolicy` says those (protocols/visio, protocols/matrix), and a
`LiveKitBridge` (a gateway.links Link) joins the LiveKit room as:

- one hidden participant, the *bridge*, that subscribes to every participant's tracks there and
  brings each one here as a participant of the policy's origin (name and origin address as the
  policy says, audio, video, screen share, mute state, raised hand as the policy reads it; active
  speakers come from the levels LiveKit names in ``speakers_changed``), reads the reactions the
  policy finds in data packets and, when ``BridgeSettings.chat`` is on, the room's chat (`lk.chat`
  text streams, protocols/livekit/data.py);
- one LiveKit participant per person on this side that the policy wants there (a *mirror*: the
  identity, name, LiveKit kind and attributes the policy's `MirrorGrant` says, attributes kept in
  line as they change, a raised hand among them), publishing that person's tracks, sending their
  reactions as the policy writes them (at most the room's reaction rate per mirror) and, with chat
  on, their chat messages.

Media stays encoded (protocols/livekit/media.py): LiveKit's RTP goes to the room's router as a
foreign track, and the router's downtracks send our tracks to the mirrors' publisher connections;
RTCP feedback goes both ways (NACK, PLI, receiver reports). Phones hear LiveKit people through the
room's audio conference like any other track. Video nobody here watches is paused at LiveKit.

When the LiveKit room's media is end-to-end encrypted (LiveKit's frame encryption),
``BridgeSettings.media`` gives per-track packet transforms: each remote track's media packets
(its SSRC only: RTX repeats them in clear form) go through its incoming transform before the
router, and each mirror's packets through its outgoing transform on the way out (a Python sink,
so the native fast path never bypasses it; a retransmission resends what was sent, never
transforms again). A track without a transform is not bridged.

A host here acts on the people brought from LiveKit as a LiveKit room admin does (RoomService,
with the bridge's API key): muting a track of theirs mutes it there (``MutePublishedTrack``; only
the person unmutes), and lowering a hand lowers it where the policy says it is. Removing someone
removes them from the room here only (the LiveKit room is its system's to moderate): they are not
brought here again while the link lives.

Loops are cut by origin: participants this bridge brought here are never mirrored, and identities
the policy calls ours are never brought here.

Both directions are reconciled, not replayed: each change (a LiveKit update, a room event,
``resync()``) runs a sync of the affected participants against the current state. That makes
reconnection simple: a lost signalling connection is resumed by each LiveKit participant
(protocols/livekit/rtc.py); when that fails (livekit-server restarted, network down too long), the
bridge closes its LiveKit side and joins again with the same identities, with exponential backoff,
and the sync brings both sides back in line: people still present keep their participant here,
others leave, nobody is duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from livekit.protocol import models
from livekit.protocol import rtc as lkrtc

from gateway.links import LinkState, LinkStatus
from gateway.media.endpoint import TrackRecord
from gateway.media.router import RtpSink
from gateway.media.sdp import Codec
from gateway.ratelimit import RateLimiter
from gateway.rooms import (
    ChatMessage,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    ParticipantUpdated,
    Reaction,
    Role,
    RoomError,
    Track,
    TrackKind,
    TrackMuted,
    TrackPublished,
    TrackSource,
    TrackUnpublished,
)
from gateway.rooms.events import RoomEvent, Subscription
from gateway.rooms.manager import MAX_REMOVED, REACTION_BURST, REACTIONS_PER_SECOND
from gateway.rooms.model import Participant, Room
from gateway.tasks import TaskSet
from protocols.livekit.data import TextStreamAssembler, chat_packets, is_chat
from protocols.livekit.rtc import (
    LiveKitParticipant,
    LiveKitRtcError,
    LocalTrack,
    RemoteTrack,
    rtc_ice_servers,
)
from protocols.livekit.signal import Participant as LkParticipant
from protocols.livekit.signal import SignalError, room_service_url
from protocols.livekit.tokens import MintError, VideoGrant, mint_token

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = [
    "BridgePolicy",
    "BridgeSettings",
    "LiveKitBridge",
    "MediaTransforms",
    "MirrorGrant",
    "PacketTransform",
]

log = logging.getLogger(__name__)

BRIDGE_NAME = "Rondpoint"
JOIN_TIMEOUT = 10.0
FIRST_RETRY = 0.5
DEMAND_INTERVAL = 0.5
"""How often unwatched LiveKit video is paused, and watched video resumed."""
TOKEN_TTL = 600.0
"""Join tokens live 10 minutes: LiveKit sends a refresh token for resuming later."""
STABLE_SECONDS = 30.0
"""A session that lasted this long resets the backoff; shorter ones keep it growing."""
MAX_MIRRORED_REACTIONS = 1024
"""People whose reaction rate a bridge remembers (the oldest forgotten first)."""

_SOURCES_IN = {
    "microphone": TrackSource.MICROPHONE,
    "camera": TrackSource.CAMERA,
    "screen_share": TrackSource.SCREEN,
    "screen_share_audio": TrackSource.SCREEN_AUDIO,
}
_SOURCES_OUT = {
    TrackSource.MICROPHONE: models.TrackSource.MICROPHONE,
    TrackSource.CAMERA: models.TrackSource.CAMERA,
    TrackSource.SCREEN: models.TrackSource.SCREEN_SHARE,
    TrackSource.SCREEN_AUDIO: models.TrackSource.SCREEN_SHARE_AUDIO,
}
_FAILURES = (SignalError, MintError, aiohttp.ClientError, OSError, TimeoutError, RoomError)
RESEND_HISTORY = 1024
"""Packets a transformed sink keeps for retransmissions (a power of two)."""

PacketTransform = Callable[[bytes], list[bytes]]
"""One RTP packet in, the packets to pass on out (none: dropped); keeps state per track."""


@dataclass(frozen=True)
class MirrorGrant:
    """What a mirror's LiveKit token says of the person it carries."""

    name: str
    kind: str = "standard"
    """LiveKit participant kind ("sip" for phones)."""
    attributes: Mapping[str, str] = field(default_factory=dict)


class BridgePolicy(Protocol):
    """What differs between the LiveKit deployments a room here is bridged to."""

    @property
    def origin(self) -> str:
        """Origin here of the people brought from LiveKit (``visio``, ``matrix``)."""
        ...

    def is_ours(self, identity: str) -> bool:
        """A LiveKit identity we publish (the bridge, mirrors): never brought here."""
        ...

    def mirror_identity(self, participant: Participant) -> str:
        """The LiveKit identity of the mirror of a person here."""
        ...

    def mirror_grant(self, participant: Participant) -> MirrorGrant:
        """What the mirror's token says of the person (name, kind, attributes)."""
        ...

    def remote_name(self, info: LkParticipant) -> str:
        """The display name here of a LiveKit participant, already sanitised."""
        ...

    def remote_address(self, info: LkParticipant) -> str:
        """The origin_address here of a LiveKit participant."""
        ...

    def wants_mirror(self, participant: Participant) -> bool:
        """Whether a person here (joined, not brought from LiveKit) is mirrored there."""
        ...

    def remote_hand(self, info: LkParticipant) -> float | None:
        """When a LiveKit participant raised its hand (seconds since the epoch), None when it
        is down (a hand raised here in the mirror's attributes: ``mirror_grant``)."""
        ...

    def lower_hand(self, info: LkParticipant) -> dict[str, str] | None:
        """A host here lowered a LiveKit participant's hand: lower it there too. Returns the
        attributes that lower it (set through LiveKit's RoomService), None when the hand is not
        an attribute there (the policy lowers it where it is, or cannot)."""
        ...

    def reaction_from(self, packet: models.DataPacket) -> str | None:
        """The reaction here (spec 8.18) a LiveKit data packet carries, None if it carries none."""
        ...

    def reaction_packet(self, emoji: str, identity: str) -> models.DataPacket | None:
        """The data packet by which the mirror IDENTITY shows a reaction from here, None when the
        system has no such reaction (or carries reactions another way)."""
        ...


class MediaTransforms(Protocol):
    """Per-track packet transforms of a LiveKit room whose media is end-to-end encrypted."""

    @property
    def encryption(self) -> models.Encryption.Type:
        """What the mirrors' published tracks announce (``models.Encryption.GCM``)."""
        ...

    def incoming(self, identity: str, codec: str) -> PacketTransform | None:
        """The transform of a remote track's media packets (CODEC: its a=rtpmap name); None:
        the track cannot be bridged and is not brought here."""
        ...

    def outgoing(self, identity: str, codec: str) -> PacketTransform | None:
        """The transform of a mirror's packets of one track; None: not published (yet)."""
        ...

    def set_sif_trailer(self, trailer: bytes) -> None:
        """The trailer LiveKit ends the frames its server injects with (from its join
        response), each time the bridge joins."""
        ...


class TransformedSink:
    """A mirror's RtpSink whose packets go out through a transform: only SSRC ``ssrc``'s (no
    other stream may leave untransformed), each sequence number transformed once (a
    retransmission resends the packet sent for it). No ``egress``: the router's native fast
    path never takes it over."""

    def __init__(self, sink: RtpSink, ssrc: int, transform: PacketTransform) -> None:
        self.sink = sink
        self.ssrc = ssrc
        self.transform = transform
        self._highest = -1
        self._sent: list[tuple[int, bytes] | None] = [None] * RESEND_HISTORY

    def send_rtp(self, packet: bytes) -> None:
        if len(packet) < 12 or int.from_bytes(packet[8:12], "big") != self.ssrc:
            return
        sequence = packet[2] << 8 | packet[3]
        ahead = (sequence - self._highest) & 0xFFFF
        if self._highest >= 0 and not 0 < ahead < 0x8000:
            stored = self._sent[sequence % RESEND_HISTORY]
            if stored is not None and stored[0] == sequence:
                self.sink.send_rtp(stored[1])
            return  # not newer than what went out: a retransmission
        self._highest = sequence
        for out in self.transform(packet):
            out_sequence = out[2] << 8 | out[3]
            self._sent[out_sequence % RESEND_HISTORY] = (out_sequence, out)
            self.sink.send_rtp(out)

    def send_rtcp(self, packet: bytes) -> None:
        self.sink.send_rtcp(packet)


@dataclass(frozen=True)
class BridgeSettings:
    """Where and as whom a bridge joins LiveKit."""

    url: str
    """LiveKit signalling URL, ws:// or wss://."""
    api_key: str
    api_secret: str = field(repr=False)
    livekit_room: str
    bridge_identity: str
    """LiveKit identity of the hidden bridge participant (the policy calls it ours)."""
    target: str
    """The link's target, for logs and status (``visio:UUID``)."""
    reconnect_max_seconds: int
    chat: bool = True
    """Carry `lk.chat` both ways (off when chat crosses another way, as Matrix room messages)."""
    media: MediaTransforms | None = field(default=None, repr=False, compare=False)
    """Packet transforms of end-to-end encrypted media; None: media crosses as it is."""


@dataclass
class _Mirror:
    """A person from here, present in the LiveKit room as their own participant."""

    participant_id: str
    identity: str
    subscriber_id: str
    """The mirror's name among the router's downtracks."""
    lk: LiveKitParticipant | None = None
    name: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    """The attributes LiveKit has of the mirror (as its grant said them, kept in line)."""
    tracks: dict[str, LocalTrack] = field(default_factory=dict)
    """Our track id -> the LiveKit track carrying it."""
    muted: dict[str, bool] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Remote:
    """A LiveKit participant, present here as a participant of the policy's origin."""

    identity: str
    participant_id: str
    tracks: dict[str, str] = field(default_factory=dict)
    """LiveKit track sid (also its id here) -> kind, for the tracks that have a router receiver."""
    requested: set[str] = field(default_factory=set)


class LiveKitBridge:
    """The link of one room here to one LiveKit room; see the module docstring."""

    connected_detail = "in the LiveKit room"
    """The link's status detail while connected."""

    def __init__(
        self, gateway: Gateway, room_id: str, settings: BridgeSettings, policy: BridgePolicy
    ) -> None:
        self.gateway = gateway
        self.room_id = room_id
        self.settings = settings
        self.policy = policy
        self.target = settings.target
        self._status = LinkStatus(LinkState.CONNECTING, "starting", time.time())
        self._task: asyncio.Task[None] | None = None
        self._bridge: LiveKitParticipant | None = None
        self._remotes: dict[str, _Remote] = {}
        self._removed: dict[str, None] = {}
        """LiveKit identities a host here removed (oldest first): not brought here again while
        the link lives; at most MAX_REMOVED."""
        self._mirrors: dict[str, _Mirror] = {}
        self._events: Subscription | None = None
        self._session_tasks = TaskSet()
        self._broken: asyncio.Future[str] | None = None
        self._chat = TextStreamAssembler()
        self._remote_lock = asyncio.Lock()
        self._counted = (0, 0)
        """RTP packets received and sent by the LiveKit participants of closed sessions."""
        self._speaking: dict[str, tuple[str, int]] = {}
        """Audio track sid -> (participant id here, RFC 6464 level) of LiveKit people speaking."""
        self._incoming: dict[str, tuple[int, PacketTransform]] = {}
        """Remote track sid -> (media SSRC, transform) when ``settings.media`` is set."""
        self._reactions_out = RateLimiter(
            REACTIONS_PER_SECOND * 60, burst=REACTION_BURST, max_keys=MAX_MIRRORED_REACTIONS
        )
        """Reactions a mirror sends to LiveKit, at the rate a participant here may send them
        (those from LiveKit are bounded by the room's own limit, ``RoomManager.react``)."""

    # --- what others may ask ----------------------------------------------------------------------

    def identities(self) -> dict[str, str]:
        """LiveKit identity -> participant id here, of the people this bridge brought here."""
        return {identity: remote.participant_id for identity, remote in self._remotes.items()}

    def participant_for(self, identity: str) -> str | None:
        """The participant id here of the LiveKit identity brought here, if it is."""
        remote = self._remotes.get(identity)
        return remote.participant_id if remote is not None else None

    def resync(self) -> None:
        """Reconcile both sides again (a name changed on the foreign side, or what the policy
        wants mirrored); nothing when not connected."""
        bridge = self._bridge
        room = self._room()
        if bridge is None or room is None:
            return
        self._spawn(self._sync_remotes(bridge))
        for participant_id in set(room.participants) | set(self._mirrors):
            self._schedule_mirror(participant_id)

    # --- the Link protocol ------------------------------------------------------------------------

    def status(self) -> LinkStatus:
        self._status.remote_participants = len(self._remotes)
        packets_in, packets_out = self._counted
        if self._bridge is not None:
            packets_in += self._bridge.subscriber_tap.packets_in
        for mirror in self._mirrors.values():
            if mirror.lk is not None:
                packets_out += mirror.lk.publisher_tap.packets_out
        self._status.packets_in, self._status.packets_out = packets_in, packets_out
        return self._status

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"{self.policy.origin}-link-{self.room_id}"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_session(leave=True)
        room = self._room()
        if room is not None:
            for remote in list(self._remotes.values()):
                self._remove_remote(room, remote)
        self._remotes.clear()
        self._set(LinkState.STOPPED, "unlinked")

    async def forget(self) -> None:
        """Nothing to tell LiveKit: the room there lives on; ``stop()`` leaves it."""

    # --- supervision ------------------------------------------------------------------------------

    def _set(self, state: LinkState, detail: str = "") -> None:
        if state != self._status.state or detail != self._status.detail:
            log.info("link %s of room %s: %s %s", self.target, self.room_id, state, detail)
        self._status = LinkStatus(state, detail, time.time(), self._status.attempts)

    async def _run(self) -> None:
        delay = FIRST_RETRY
        while True:
            connected_at = None
            try:
                await self._open_session()
                connected_at = time.monotonic()
                self._set(LinkState.CONNECTED, self.connected_detail)
                assert self._broken is not None
                reason = await self._broken
            except asyncio.CancelledError:
                raise
            except _FAILURES as exc:
                reason = str(exc) or exc.__class__.__name__
            except Exception as exc:  # a bug must not end the link: report it and retry
                log.exception("link %s failed", self.target)
                reason = f"internal error ({exc.__class__.__name__})"
            await self._close_session(leave=False)
            if connected_at is not None and time.monotonic() - connected_at >= STABLE_SECONDS:
                # It had worked for a while: start the backoff again from the beginning.
                self._status.attempts = 0
                delay = FIRST_RETRY
            self._status.attempts += 1
            self._set(LinkState.RETRYING, f"{reason}; next attempt in {delay:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, float(self.settings.reconnect_max_seconds))

    async def _open_session(self) -> None:
        loop = asyncio.get_running_loop()
        self._broken = loop.create_future()
        self._chat = TextStreamAssembler()
        room = self._room()
        if room is None:
            raise RoomError("room_not_found", f"room '{self.room_id}' does not exist", 404)
        self._events = self.gateway.bus.subscribe(self.room_id)
        bridge = await LiveKitParticipant.connect(
            self.settings.url,
            self._token(self.settings.bridge_identity, BRIDGE_NAME, hidden=True),
            encoded=True,
            auto_subscribe=False,
            ice_servers=rtc_ice_servers(self.gateway.ice_servers(self.settings.bridge_identity)),
            timeout=JOIN_TIMEOUT,
        )
        self._bridge = bridge
        if self.settings.media is not None and bridge.signal.session.joined is not None:
            self.settings.media.set_sif_trailer(bridge.signal.session.joined.sif_trailer)
        bridge.on_remote_track = self._on_remote_track
        bridge.on_remote_track_ended = self._on_remote_track_ended
        bridge.on_rtp = self._on_remote_rtp
        bridge.on_subscriber_rtcp = self._on_remote_rtcp
        bridge.on_data = self._on_data
        bridge.on_signal = self._on_signal
        bridge.on_participants = lambda _: self._spawn(self._sync_remotes(bridge))
        self._spawn(self._watch(bridge, "the bridge participant"))
        self._spawn(self._follow_room())
        self._spawn(self._follow_demand(bridge))
        await self._sync_remotes(bridge)
        for participant in list(room.participants.values()):
            self._schedule_mirror(participant.id)

    async def _close_session(self, *, leave: bool) -> None:
        status = self.status()
        self._counted = (status.packets_in, status.packets_out)
        await self._session_tasks.cancel()
        if self._events is not None:
            self._events.close()
            self._events = None
        router = self.gateway.relay.router(self.room_id)
        for mirror in list(self._mirrors.values()):
            for track_id in mirror.tracks:
                router.remove_downtrack(track_id, mirror.subscriber_id)
            if mirror.lk is not None:
                with contextlib.suppress(Exception):
                    await mirror.lk.close(leave=leave)
        self._mirrors.clear()
        if self._bridge is not None:
            with contextlib.suppress(Exception):
                await self._bridge.close(leave=leave)
            self._bridge = None
        for remote in self._remotes.values():
            for track_id in list(remote.tracks):
                self._drop_remote_track(remote, track_id)
            remote.requested.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._session_tasks.spawn(coroutine)

    def _break(self, reason: str) -> None:
        if self._broken is not None and not self._broken.done():
            self._broken.set_result(reason)

    async def _watch(self, lk: LiveKitParticipant, who: str, mirror: _Mirror | None = None) -> None:
        """Break the session when LK's ends by itself (not when we closed it). A mirror that
        LiveKit removed takes its person out of the room here too (a phone is hung up)."""
        ended = asyncio.ensure_future(lk.ended.wait())
        closed = asyncio.ensure_future(lk.closed.wait())
        try:
            await asyncio.wait((ended, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            closed.cancel()
        if not lk.ended.is_set() or lk.closed.is_set():
            return
        if mirror is not None and lk.left is not None and lk.left.reason == "PARTICIPANT_REMOVED":
            room = self._room()
            if room is not None and mirror.participant_id in room.participants:
                log.info("%s removed %s: removing them here", self.target, mirror.participant_id)
                self.gateway.rooms.remove_participant(room, mirror.participant_id, "removed")
            return
        self._break(f"{who}: {lk.end_reason}")

    def _on_mirror_signal(self, mirror: _Mirror, kind: str, message: lkrtc.SignalResponse) -> None:
        """A host there muted (or unmuted) a track of a person from here: so it is, here too."""
        if kind != "mute":
            return
        room = self._room()
        request = message.mute
        track_id = next((t for t, local in mirror.tracks.items() if local.sid == request.sid), None)
        if room is None or track_id is None:
            return
        mirror.muted[track_id] = request.muted
        with contextlib.suppress(RoomError):
            self.gateway.rooms.set_muted(room, mirror.participant_id, track_id, request.muted)

    # --- tokens -----------------------------------------------------------------------------------

    def _token(
        self,
        identity: str,
        name: str,
        *,
        hidden: bool = False,
        kind: str = "standard",
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        grant = VideoGrant(
            room=self.settings.livekit_room,
            room_join=True,
            can_subscribe=hidden,
            can_publish=not hidden,
            can_publish_data=True,
            can_update_own_metadata=True,
            hidden=hidden or None,
        )
        return mint_token(
            self.settings.api_key,
            self.settings.api_secret,
            identity=identity,
            name=name,
            kind=kind,
            grant=grant,
            attributes=dict(attributes) if attributes is not None else None,
            ttl=TOKEN_TTL,
        )

    # --- LiveKit -> here --------------------------------------------------------------------------

    def _room(self) -> Room | None:
        try:
            return self.gateway.rooms.get(self.room_id)
        except RoomError:
            return None

    async def _sync_remotes(self, bridge: LiveKitParticipant) -> None:
        """Make the participants brought here match the LiveKit room's people."""
        async with self._remote_lock:
            try:
                await self._sync_remotes_locked(bridge)
            except _FAILURES as exc:
                self._break(f"following the LiveKit room: {exc}")

    async def _sync_remotes_locked(self, bridge: LiveKitParticipant) -> None:
        room = self._room()
        if room is None:
            return
        present = {
            p.identity: p
            for p in bridge.signal.session.participants.values()
            if not self.policy.is_ours(p.identity) and p.state != "DISCONNECTED"
        }
        for identity, remote in list(self._remotes.items()):
            if identity in present and remote.participant_id not in room.participants:
                self._removed_here(identity)
            if identity not in present or remote.participant_id not in room.participants:
                self._remove_remote(room, remote)
        wanted: list[str] = []
        for identity, info in present.items():
            if identity in self._removed:
                continue
            known = self._remotes.get(identity)
            if known is None:
                participant = self.gateway.rooms.add_participant(
                    room,
                    self.policy.remote_name(info),
                    Role.MEMBER,
                    origin=self.policy.origin,
                    origin_address=self.policy.remote_address(info),
                    lobby=False,
                )
                remote = _Remote(identity, participant.id)
                self._remotes[identity] = remote
            else:
                remote = known
                here = room.participants[remote.participant_id]
                name = self.policy.remote_name(info)
                if here.name != name:
                    self.gateway.rooms.update_name(room, remote.participant_id, name)
            with contextlib.suppress(RoomError):
                raised_at = self.policy.remote_hand(info)
                self.gateway.rooms.set_hand(
                    room, remote.participant_id, raised_at is not None, raised_at
                )
            sids = {t.sid for t in info.tracks}
            for sid in list(remote.tracks):
                if sid not in sids:
                    self._drop_remote_track(remote, sid)
            for track in info.tracks:
                if track.sid in remote.tracks:
                    with contextlib.suppress(RoomError):
                        self.gateway.rooms.set_muted(
                            room, remote.participant_id, track.sid, track.muted
                        )
                elif track.sid not in remote.requested:
                    remote.requested.add(track.sid)
                    wanted.append(track.sid)
        await bridge.subscribe(wanted)

    def _remote_for(self, participant_sid: str) -> tuple[_Remote, LkParticipant] | None:
        bridge = self._bridge
        if bridge is None:
            return None
        info = bridge.signal.session.participants.get(participant_sid)
        if info is None:
            return None
        remote = self._remotes.get(info.identity)
        return (remote, info) if remote is not None else None

    def _on_remote_track(self, track: RemoteTrack) -> None:
        found = self._remote_for(track.participant_sid)
        room = self._room()
        if found is None or room is None:
            return
        remote, info = found
        if track.sid in remote.tracks:
            return
        described = next((t for t in info.tracks if t.sid == track.sid), None)
        source = _SOURCES_IN.get(described.source if described else "")
        if source is None:
            source = TrackSource.MICROPHONE if track.kind == "audio" else TrackSource.CAMERA
        codec = track.codec
        assert self._bridge is not None
        media = self.settings.media
        if media is not None:
            transform = media.incoming(remote.identity, codec.name)
            if transform is None or track.ssrc is None:
                log.info("%s: track %s (%s) not bridged", self.target, track.sid, codec.name)
                return
            self._incoming[track.sid] = (track.ssrc, transform)
        sdp_codec = Codec(
            codec.payload_type,
            codec.name,
            codec.clock_rate,
            2 if track.kind == "audio" and codec.name.lower() == "opus" else None,
            track.fmtp,
        )
        self.gateway.relay.add_foreign_track(
            self.room_id,
            TrackRecord(track.sid, remote.participant_id, track.kind, sdp_codec),
            codec,
            track.extensions,
            self._bridge.subscriber_tap,
            track.ssrc,
            track.rtx_ssrc,
        )
        remote.tracks[track.sid] = track.kind
        self.gateway.rooms.publish_track(
            room,
            Track(
                id=track.sid,
                owner=remote.participant_id,
                kind=TrackKind(track.kind),
                source=source,
                codec=codec.name,
                muted=bool(described and described.muted),
            ),
        )

    def _on_remote_track_ended(self, sid: str) -> None:
        for remote in self._remotes.values():
            if sid in remote.tracks:
                self._drop_remote_track(remote, sid)
                remote.requested.discard(sid)

    def _drop_remote_track(self, remote: _Remote, sid: str) -> None:
        remote.tracks.pop(sid, None)
        self._speaking.pop(sid, None)
        self._incoming.pop(sid, None)
        self.gateway.relay.remove_foreign_track(self.room_id, sid)
        room = self._room()
        if room is not None:
            with contextlib.suppress(RoomError):
                self.gateway.rooms.unpublish_track(room, remote.participant_id, sid)

    def _removed_here(self, identity: str) -> None:
        """Someone brought from LiveKit left the room here while still in the LiveKit room: a host
        (or the operator) removed them. They stay in the LiveKit room, which is that system's to
        moderate, and are not brought here again while the link lives."""
        self._removed[identity] = None
        while len(self._removed) > MAX_REMOVED:
            del self._removed[next(iter(self._removed))]
        log.info(
            "%s: %s was removed here; not brought here again while linked", self.target, identity
        )

    def _remove_remote(self, room: Room, remote: _Remote) -> None:
        for sid in list(remote.tracks):
            self._drop_remote_track(remote, sid)
        self._remotes.pop(remote.identity, None)
        self.gateway.rooms.remove_participant(room, remote.participant_id)

    def _on_remote_rtp(self, track_sid: str, packet: bytes) -> None:
        router = self.gateway.relay.router(self.room_id)
        speaking = self._speaking.get(track_sid)
        if speaking is not None:
            # LiveKit sends no RFC 6464 levels to subscribers, it names the speakers instead
            # (speakers_changed): their packets count as that loud for our speaker detection.
            router.speakers.on_audio_level(*speaking)
        incoming = self._incoming.get(track_sid)
        if incoming is None:
            if self.settings.media is None:
                router.on_rtp(track_sid, packet)
            return
        ssrc, transform = incoming
        if len(packet) < 12 or int.from_bytes(packet[8:12], "big") != ssrc:
            return  # RTX and probes on other SSRCs: not frames the transform can take
        for out in transform(packet):
            router.on_rtp(track_sid, out)

    def _on_signal(self, kind: str, message: lkrtc.SignalResponse) -> None:
        if kind != "speakers_changed" or self._bridge is None:
            return
        session = self._bridge.signal.session
        for speaker in message.speakers_changed.speakers:
            info = session.participants.get(speaker.sid)
            remote = self._remotes.get(info.identity) if info is not None else None
            if info is None or remote is None:
                continue
            audio = [t.sid for t in info.tracks if t.kind == "audio"]
            for sid in audio:
                if speaker.active:
                    # LiveKit's level is linear, 10^(-dBov/20) (a -12 dBov tone reads 0.25).
                    level = 127 if speaker.level <= 0 else round(-20 * math.log10(speaker.level))
                    level = max(0, min(127, level))
                    self._speaking[sid] = (remote.participant_id, level)
                else:
                    self._speaking.pop(sid, None)

    def _on_remote_rtcp(self, packet: bytes) -> None:
        bridge = self._bridge
        if bridge is None or len(packet) < 8:
            return
        sid = bridge.track_for_ssrc(int.from_bytes(packet[4:8], "big"))
        if sid is not None:
            self.gateway.relay.router(self.room_id).on_publisher_rtcp(sid, packet)

    async def _follow_demand(self, bridge: LiveKitParticipant) -> None:
        """LiveKit video that nobody here watches is paused at LiveKit (UpdateTrackSettings), so it
        does not cross the network for nothing; it resumes as soon as someone subscribes (the
        subscriber's keyframe request brings the picture)."""
        router = self.gateway.relay.router(self.room_id)
        paused: dict[str, bool] = {}
        while True:
            await asyncio.sleep(DEMAND_INTERVAL)
            pause: list[str] = []
            resume: list[str] = []
            for remote in list(self._remotes.values()):
                for sid, kind in list(remote.tracks.items()):
                    if kind != "video":
                        continue
                    idle = router.downtrack_count(sid) == 0
                    if paused.get(sid, False) != idle:
                        paused[sid] = idle
                        (pause if idle else resume).append(sid)
            try:
                await bridge.update_track_settings(pause, disabled=True)
                await bridge.update_track_settings(resume, disabled=False)
            except SignalError as exc:
                log.debug("track settings not sent: %s", exc)

    def _on_data(self, packet: models.DataPacket) -> None:
        room = self._room()
        if room is None:
            return
        emoji = self.policy.reaction_from(packet)
        if emoji is not None:
            remote = self._remotes.get(packet.participant_identity)
            if remote is not None and not self.policy.is_ours(packet.participant_identity):
                with contextlib.suppress(RoomError):  # beyond the room's rate: dropped
                    self.gateway.rooms.react(room, remote.participant_id, emoji)
            return
        if not self.settings.chat:
            return
        for received in self._chat.feed(packet, time.monotonic()):
            if not is_chat(received) or self.policy.is_ours(received.sender_identity):
                continue
            remote = self._remotes.get(received.sender_identity)
            if remote is None or not received.text.strip():
                continue
            with contextlib.suppress(RoomError):
                self.gateway.rooms.chat(room, remote.participant_id, received.text)

    # --- here -> LiveKit --------------------------------------------------------------------------

    async def _follow_room(self) -> None:
        assert self._events is not None
        async for event in self._events:
            self._on_room_event(event)

    def _on_room_event(self, event: RoomEvent) -> None:
        if isinstance(event, ParticipantUpdated):
            self._lower_remote_hand(event.participant)
        if isinstance(event, TrackMuted) and event.track.muted:
            self._mute_remote_track(event.track.owner, event.track.id)
        if isinstance(event, ParticipantLeft) and any(
            r.participant_id == event.participant.id for r in self._remotes.values()
        ):
            self.resync()  # removed here: its tracks go now, and it is not brought back
        if isinstance(event, ParticipantJoined | ParticipantUpdated | ParticipantLeft):
            self._schedule_mirror(event.participant.id)
        elif isinstance(event, TrackPublished | TrackUnpublished | TrackMuted):
            self._schedule_mirror(event.track.owner)
        elif isinstance(event, ChatMessage) and event.to is None and self.settings.chat:
            mirror = self._mirrors.get(event.sender.id)
            if mirror is not None and mirror.lk is not None:
                self._spawn(self._send_chat(mirror.lk, event.text))
        elif isinstance(event, Reaction):
            mirror = self._mirrors.get(event.participant_id)
            if mirror is None or mirror.lk is None:
                return
            packet = self.policy.reaction_packet(event.emoji, mirror.identity)
            if packet is not None and self._reactions_out.allow(mirror.identity):
                self._spawn(self._send_data(mirror.lk, packet))

    def _mirrored(self, participant: Participant | None) -> bool:
        return (
            participant is not None
            and participant.state is ParticipantState.JOINED
            and participant.id not in {r.participant_id for r in self._remotes.values()}
            and self.policy.wants_mirror(participant)
        )

    def _schedule_mirror(self, participant_id: str) -> None:
        if self._bridge is None:
            return
        room = self._room()
        participant = room.participants.get(participant_id) if room is not None else None
        mirror = self._mirrors.get(participant_id)
        if mirror is None:
            if participant is None or not self._mirrored(participant):
                return
            mirror = _Mirror(
                participant_id,
                self.policy.mirror_identity(participant),
                f"{self.policy.origin}-mirror:{participant_id}",
            )
            self._mirrors[participant_id] = mirror
        self._spawn(self._sync_mirror(mirror))

    async def _sync_mirror(self, mirror: _Mirror) -> None:
        """Bring one mirror in line with its person here: joined, name, tracks, mute states."""
        async with mirror.lock:
            try:
                await self._sync_mirror_locked(mirror)
            except _FAILURES + (LiveKitRtcError,) as exc:
                self._break(f"mirror of {mirror.participant_id}: {exc}")

    async def _sync_mirror_locked(self, mirror: _Mirror) -> None:
        room = self._room()
        participant = room.participants.get(mirror.participant_id) if room is not None else None
        router = self.gateway.relay.router(self.room_id)
        if participant is None or not self._mirrored(participant):
            if self._mirrors.get(mirror.participant_id) is mirror:
                del self._mirrors[mirror.participant_id]
            for track_id in mirror.tracks:
                router.remove_downtrack(track_id, mirror.subscriber_id)
            if mirror.lk is not None:
                await mirror.lk.close()
                mirror.lk = None
            return
        grant = self.policy.mirror_grant(participant)
        if mirror.lk is None:
            mirror.name = grant.name
            mirror.attributes = dict(grant.attributes)
            mirror.lk = await LiveKitParticipant.connect(
                self.settings.url,
                self._token(
                    mirror.identity, grant.name, kind=grant.kind, attributes=grant.attributes
                ),
                encoded=True,
                auto_subscribe=False,
                ice_servers=rtc_ice_servers(self.gateway.ice_servers(mirror.identity)),
                timeout=JOIN_TIMEOUT,
            )
            subscriber_id = mirror.subscriber_id
            mirror.lk.on_publisher_rtcp = lambda packet: router.on_subscriber_rtcp(
                subscriber_id, packet
            )
            mirror.lk.on_signal = lambda kind, message: self._on_mirror_signal(
                mirror, kind, message
            )
            self._spawn(self._watch(mirror.lk, f"the mirror of {grant.name!r}", mirror))
        lk = mirror.lk
        if grant.name != mirror.name:
            mirror.name = grant.name
            await lk.update_metadata(name=grant.name)
        if dict(grant.attributes) != mirror.attributes:
            # LiveKit updates the attributes named; an empty value removes one.
            changed = {k: "" for k in mirror.attributes if k not in grant.attributes}
            changed.update(grant.attributes)
            mirror.attributes = dict(grant.attributes)
            await lk.update_metadata(attributes=changed)
        for track in list(participant.tracks.values()):
            local = mirror.tracks.get(track.id)
            if local is None:
                info = router.receiver_info(track.id)
                if info is None:
                    continue  # not in the router yet: its TrackPublished event comes again
                media = self.settings.media
                transform = None
                if media is not None:
                    transform = media.outgoing(mirror.identity, info.codec.name)
                    if transform is None:
                        continue  # cannot be encrypted (yet): not published
                local = await lk.publish_encoded(
                    info.kind,
                    info.codec.name,
                    name=track.source.value,
                    source=_SOURCES_OUT.get(track.source, models.TrackSource.UNKNOWN),
                    muted=track.muted,
                    encryption=media.encryption if media is not None else models.Encryption.NONE,
                )
                mirror.tracks[track.id] = local
                mirror.muted[track.id] = track.muted
                sink: RtpSink = local.sink
                if transform is not None:
                    sink = TransformedSink(local.sink, local.ssrc, transform)
                router.add_downtrack(
                    track.id,
                    mirror.subscriber_id,
                    sink,
                    local.ssrc,
                    local.payload_type,
                    local.extensions,
                )
            elif mirror.muted.get(track.id) != track.muted:
                mirror.muted[track.id] = track.muted
                await lk.set_muted(local.sid, track.muted)
        for track_id in [t for t in mirror.tracks if t not in participant.tracks]:
            local = mirror.tracks.pop(track_id)
            mirror.muted.pop(track_id, None)
            router.remove_downtrack(track_id, mirror.subscriber_id)
            await lk.unpublish(local)

    def _remote_info(self, participant_id: str) -> tuple[_Remote, LkParticipant] | None:
        """Someone brought from LiveKit, and what LiveKit says of them now."""
        bridge = self._bridge
        remote = next(
            (r for r in self._remotes.values() if r.participant_id == participant_id), None
        )
        if bridge is None or remote is None:
            return None
        for info in bridge.signal.session.participants.values():
            if info.identity == remote.identity:
                return remote, info
        return None

    def _lower_remote_hand(self, participant: Participant) -> None:
        """A host here lowered the hand of someone brought from LiveKit: lowered there too, as
        that system's own hosts lower it (LiveKit's RoomService sets the attributes)."""
        found = self._remote_info(participant.id)
        if found is None or participant.hand_raised_at is not None:
            return
        remote, info = found
        if self.policy.remote_hand(info) is None:
            return
        attributes = self.policy.lower_hand(info)
        if attributes:
            body = {"identity": remote.identity, "attributes": attributes}
            self._spawn(self._room_service("UpdateParticipant", body))

    def _mute_remote_track(self, participant_id: str, track_id: str) -> None:
        """A host here muted a track of someone brought from LiveKit (LiveKit still has it
        unmuted): muted there too, as a LiveKit room admin mutes it (RoomService
        MutePublishedTrack; the person's client mutes it, and only the person unmutes)."""
        found = self._remote_info(participant_id)
        if found is None:
            return
        remote, info = found
        if any(t.sid == track_id and not t.muted for t in info.tracks):
            body = {"identity": remote.identity, "track_sid": track_id, "muted": True}
            self._spawn(self._room_service("MutePublishedTrack", body))

    async def _room_service(self, method: str, body: dict[str, Any]) -> None:
        """One RoomService request for a participant of the LiveKit room (as an admin of that
        room only); a refusal is logged, and changes nothing here."""
        token = mint_token(
            self.settings.api_key,
            self.settings.api_secret,
            identity=self.settings.bridge_identity,
            grant=VideoGrant(room=self.settings.livekit_room, room_admin=True),
            ttl=60,
        )
        identity = body["identity"]
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=JOIN_TIMEOUT)) as http,
                http.post(
                    room_service_url(self.settings.url, method),
                    json={"room": self.settings.livekit_room, **body},
                    headers={"Authorization": f"Bearer {token}"},
                ) as response,
            ):
                if response.status != 200:
                    log.warning(
                        "%s: %s of %s refused (%s)", self.target, method, identity, response.status
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s: %s of %s failed: %s", self.target, method, identity, exc)

    async def _send_data(self, lk: LiveKitParticipant, packet: models.DataPacket) -> None:
        try:
            await lk.send_data(packet)
        except (SignalError, ConnectionError, TimeoutError) as exc:
            log.warning("data to %s not sent: %s", self.target, exc)

    async def _send_chat(self, lk: LiveKitParticipant, text: str) -> None:
        try:
            for packet in chat_packets(text, sender_identity=lk.identity):
                await lk.send_data(packet)
        except (SignalError, ConnectionError) as exc:
            log.warning("chat to %s not sent: %s", self.target, exc)
