"""Visio users for the bridge's interop tests, played by LiveKit's official Python SDK (`livekit`).

A `VisioUser` is one `rtc.Room` joined with a token in Visio's claim shape (suitenumerique/meet,
`core/utils.py::generate_token`): it publishes a tone and a moving video pattern, mutes them,
chats on `lk.chat` text streams, and measures what it receives from each remote participant
(dominant audio frequency, audio level, decoded video frames, mute state, names, attributes,
active speakers). Every wait is bounded and fails with an AssertionError that says what was
expected and what was there instead.

    async with visio_user(server, room, "visio-alice", "Alice") as alice:
        await alice.publish_tone(440)
        bob = await alice.wait_participant("rondpoint-bob")
        assert abs(await alice.dominant_frequency(bob.identity) - 523) < 5

Event loop rules: create and use a VisioUser inside the running loop of the test (the SDK binds
rooms, sources and streams to the loop they are created on); always `leave()` (the context
manager does), which stops the media pumps, disconnects and closes the sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Literal, Protocol

import numpy as np
from livekit import rtc

from protocols.livekit.tokens import VideoGrant, mint_token

log = logging.getLogger(__name__)

RATE = 48000
"""Sample rate of everything a VisioUser publishes and records (mono)."""
FRAME_SAMPLES = RATE // 100
"""10 ms audio frames."""
CHAT_TOPIC = "lk.chat"
VISIO_SOURCES = ("camera", "microphone", "screen_share", "screen_share_audio")
"""canPublishSources in Visio's tokens."""
SILENCE_PEAK = 64
"""A received 10 ms frame whose peak stays below this (int16) counts as silence."""

Kind = Literal["audio", "video", "screen_share"]


class LiveKitServer(Protocol):
    """What joining needs from a server (tests.interop.livekit_fixtures.RunningLiveKit has it)."""

    url: str
    api_key: str
    api_secret: str


def visio_token(
    server: LiveKitServer,
    room_name: str,
    identity: str,
    name: str,
    *,
    attributes: Mapping[str, str] | None = None,
    room_admin: bool = False,
    metadata: str = "",
) -> str:
    """A token as Visio's backend mints it: join, publish its four sources, subscribe, data,
    no metadata updates of one's own; roomAdmin for owners and admins."""
    grant = VideoGrant(
        room=room_name,
        room_join=True,
        room_admin=True if room_admin else None,
        can_publish=True,
        can_publish_sources=VISIO_SOURCES,
        can_subscribe=True,
        can_publish_data=True,
        can_update_own_metadata=False,
    )
    return mint_token(
        server.api_key,
        server.api_secret,
        identity=identity,
        name=name,
        grant=grant,
        metadata=metadata,
        attributes=attributes,
    )


def peak_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    """The strongest frequency in SAMPLES (Hann window, FFT, parabolic interpolation between
    bins: well under 1 Hz of error for a clean tone over a second)."""
    if len(samples) < 256:
        raise AssertionError(f"too few samples ({len(samples)}) to measure a frequency")
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[:3] = 0  # DC and the lowest bins
    k = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denominator = a - 2 * b + c
        if denominator != 0:
            offset = 0.5 * (a - c) / denominator
    return float((k + offset) * rate / len(samples))


def _kind_matches(publication: rtc.TrackPublication, kind: Kind) -> bool:
    source = publication.source
    if kind == "screen_share":
        return bool(source == rtc.TrackSource.SOURCE_SCREENSHARE)
    if kind == "audio":
        return bool(
            publication.kind == rtc.TrackKind.KIND_AUDIO
            and source != rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO
        )
    return bool(
        publication.kind == rtc.TrackKind.KIND_VIDEO
        and source != rtc.TrackSource.SOURCE_SCREENSHARE
    )


_PREFERRED_SOURCE = {
    "audio": rtc.TrackSource.SOURCE_MICROPHONE,
    "video": rtc.TrackSource.SOURCE_CAMERA,
    "screen_share": rtc.TrackSource.SOURCE_SCREENSHARE,
}


class _Published:
    """One local track of ours with what feeds it."""

    def __init__(
        self,
        publication: rtc.LocalTrackPublication,
        track: rtc.LocalAudioTrack | rtc.LocalVideoTrack,
        source: rtc.AudioSource | rtc.VideoSource,
        pump: asyncio.Task[None],
    ) -> None:
        self.publication = publication
        self.track = track
        self.source = source
        self.pump = pump

    async def close(self) -> None:
        self.pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.pump
        with contextlib.suppress(Exception):
            await self.source.aclose()


class VisioUser:
    """One Visio user: an SDK room joined with a Visio-shaped token. Build it with `join()`."""

    def __init__(self, room: rtc.Room, identity: str, name: str, room_name: str) -> None:
        self.room = room
        self.identity = identity
        self.name = name
        self.room_name = room_name
        self.received_chat: list[tuple[str, str]] = []
        """(sender identity, text) of every lk.chat text stream received, in arrival order."""
        self.received_reactions: list[tuple[str, str]] = []
        """(sender identity, Visio emoji name) of every Visio reaction packet received."""
        self.active_speakers: list[list[str]] = []
        """Identities of each active_speakers_changed event, oldest first."""
        self.participant_events: list[tuple[str, str]] = []
        """("connected" | "disconnected", identity) as the room reported them."""
        self.connection_events: list[str] = []
        """"reconnecting", "reconnected", "disconnected:REASON" of our own connection."""
        self.last_video_size: dict[str, tuple[int, int]] = {}
        """identity -> (width, height) of the last frame video_frames() decoded from it."""
        self._published: dict[Kind, _Published] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._left = False
        room.on("active_speakers_changed", self._on_active_speakers)
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("reconnecting", lambda: self.connection_events.append("reconnecting"))
        room.on("reconnected", lambda: self.connection_events.append("reconnected"))
        room.on("disconnected", self._on_disconnected)
        room.register_text_stream_handler(CHAT_TOPIC, self._on_chat_stream)
        room.on("data_received", self._on_data)

    # -- joining and leaving ------------------------------------------------------------------

    @classmethod
    async def join(
        cls,
        server: LiveKitServer,
        room_name: str,
        identity: str,
        name: str,
        *,
        attributes: Mapping[str, str] | None = None,
        room_admin: bool = False,
        token: str | None = None,
        auto_subscribe: bool = True,
        timeout: float = 10.0,
    ) -> VisioUser:
        """Join ROOM_NAME on SERVER as IDENTITY with display NAME (and ATTRIBUTES in the token).
        TOKEN replaces the Visio-shaped one (for tests of rejected tokens)."""
        room = rtc.Room(loop=asyncio.get_running_loop())
        user = cls(room, identity, name, room_name)
        if token is None:
            token = visio_token(
                server, room_name, identity, name, attributes=attributes, room_admin=room_admin
            )
        try:
            await asyncio.wait_for(
                room.connect(server.url, token, rtc.RoomOptions(auto_subscribe=auto_subscribe)),
                timeout,
            )
        except TimeoutError:
            await user.leave()
            raise AssertionError(
                f"{identity} could not join {room_name} on {server.url} within {timeout:g} s"
            ) from None
        except BaseException:
            await user.leave()
            raise
        return user

    async def leave(self, timeout: float = 5.0) -> None:
        """Stop publishing, disconnect (bounded: a dead server must not hang a test's cleanup),
        close the sources. Idempotent."""
        if self._left:
            return
        self._left = True
        for task in list(self._readers):
            task.cancel()
        published = list(self._published.values())
        self._published.clear()
        for item in published:
            item.pump.cancel()
        try:
            await asyncio.wait_for(self.room.disconnect(), timeout)
        except TimeoutError:
            log.warning("%s: disconnect did not finish within %g s", self.identity, timeout)
        except Exception:
            log.exception("%s: disconnect failed", self.identity)
        for item in published:
            await item.close()
        if self._readers:
            await asyncio.wait(list(self._readers), timeout=1)

    @property
    def connected(self) -> bool:
        return self.room.isconnected()

    async def wait_reconnected(self, timeout: float = 15.0) -> None:
        """Until the SDK reports it reconnected (after a server restart or a network cut). The
        SDK retries for about 25 s after losing the server, then gives up ("disconnected")."""
        await self.wait_until(
            lambda: "reconnected" in self.connection_events,
            timeout,
            lambda: f"{self.identity} did not reconnect: {self.connection_events}",
        )

    # -- publishing ---------------------------------------------------------------------------

    async def publish_tone(
        self, freq_hz: float, *, amplitude: int = 12000, name: str = "microphone"
    ) -> rtc.LocalTrackPublication:
        """Publish a sine of FREQ_HZ as the microphone: 48 kHz mono, 10 ms frames, paced by the
        source. Publishing again replaces the previous audio track."""
        await self.unpublish("audio")
        source = rtc.AudioSource(RATE, 1, queue_size_ms=200, loop=asyncio.get_running_loop())
        track = rtc.LocalAudioTrack.create_audio_track(name, source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)

        async def pump() -> None:
            sent = 0
            while True:
                t = (np.arange(FRAME_SAMPLES) + sent) / RATE
                tone = (np.sin(2 * np.pi * freq_hz * t) * amplitude).astype(np.int16)
                await source.capture_frame(
                    rtc.AudioFrame(tone.tobytes(), RATE, 1, FRAME_SAMPLES)
                )  # waits while the source's queue is full: real time
                sent += FRAME_SAMPLES

        return await self._publish("audio", track, source, options, pump)

    async def publish_video(
        self,
        width: int = 320,
        height: int = 240,
        fps: float = 15,
        color: tuple[int, int, int] = (40, 90, 200),
        *,
        source: Literal["camera", "screen_share"] = "camera",
        simulcast: bool = False,
        name: str = "",
    ) -> rtc.LocalTrackPublication:
        """Publish WIDTHxHEIGHT video at FPS: a COLOR background with a bar and a band that move
        every frame (so the encoder keeps producing real frames). Publishing again replaces the
        previous track of that source."""
        kind: Kind = "screen_share" if source == "screen_share" else "video"
        await self.unpublish(kind)
        video_source = rtc.VideoSource(width, height, is_screencast=source == "screen_share")
        track = rtc.LocalVideoTrack.create_video_track(name or source, video_source)
        options = rtc.TrackPublishOptions(
            source=_PREFERRED_SOURCE[kind],
            simulcast=simulcast,
        )
        background = np.empty((height, width, 4), dtype=np.uint8)
        background[:, :] = (*color, 255)
        inverse = np.array([255 - c for c in color] + [255], dtype=np.uint8)
        bar = max(4, width // 16)
        band = max(4, height // 12)

        async def pump() -> None:
            period = 1.0 / fps
            start = time.monotonic()
            n = 0
            while True:
                frame = background.copy()
                x = (n * 7) % (width - bar)
                y = (n * 5) % (height - band)
                frame[:, x : x + bar] = inverse
                frame[y : y + band, :] = (255, 255, 255, 255)
                video_source.capture_frame(
                    rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, frame.tobytes()),
                    timestamp_us=int(n * period * 1e6),
                )
                n += 1
                await asyncio.sleep(max(0.0, start + n * period - time.monotonic()))

        return await self._publish(kind, track, video_source, options, pump)

    async def _publish(
        self,
        kind: Kind,
        track: rtc.LocalAudioTrack | rtc.LocalVideoTrack,
        source: rtc.AudioSource | rtc.VideoSource,
        options: rtc.TrackPublishOptions,
        pump: Callable[[], Coroutine[Any, Any, None]],
        timeout: float = 10.0,
    ) -> rtc.LocalTrackPublication:
        task = asyncio.create_task(pump(), name=f"{self.identity}-{kind}")
        task.add_done_callback(self._pump_done)
        try:
            publication = await asyncio.wait_for(
                self.room.local_participant.publish_track(track, options), timeout
            )
        except BaseException as exc:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            with contextlib.suppress(Exception):
                await source.aclose()
            if isinstance(exc, TimeoutError):
                raise AssertionError(
                    f"{self.identity}: publishing its {kind} track took over {timeout:g} s"
                ) from None
            raise
        self._published[kind] = _Published(publication, track, source, task)
        return publication

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: media pump %s failed",
                self.identity,
                task.get_name(),
                exc_info=task.exception(),
            )

    async def unpublish(self, kind: Kind) -> None:
        """Stop and unpublish our track of KIND, if any."""
        item = self._published.pop(kind, None)
        if item is None:
            return
        item.pump.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.room.local_participant.unpublish_track(item.publication.sid), 5
            )
        await item.close()

    def publication(self, kind: Kind) -> rtc.LocalTrackPublication:
        item = self._published.get(kind)
        assert item is not None, f"{self.identity} publishes no {kind} track"
        return item.publication

    async def set_muted(self, kind: Kind, muted: bool) -> None:
        """Mute or unmute our published KIND track (LiveKit mute: the publication stays, the
        server tells everyone it is muted)."""
        item = self._published.get(kind)
        assert item is not None, f"{self.identity} cannot mute its {kind}: not published"
        if muted:
            item.track.mute()
        else:
            item.track.unmute()
        await asyncio.sleep(0)

    # -- chat ---------------------------------------------------------------------------------

    async def send_chat(self, text: str, timeout: float = 5.0) -> None:
        """Send TEXT as Visio's chat does: a text stream on topic lk.chat."""
        await asyncio.wait_for(
            self.room.local_participant.send_text(text, topic=CHAT_TOPIC), timeout
        )

    async def wait_chat(
        self, match: str | Callable[[str, str], bool], timeout: float = 10.0
    ) -> tuple[str, str]:
        """The first received chat message equal to MATCH (or for which MATCH(sender, text))."""

        def find() -> tuple[str, str] | None:
            for sender, text in self.received_chat:
                if (text == match) if isinstance(match, str) else match(sender, text):
                    return sender, text
            return None

        await self.wait_until(
            lambda: find() is not None,
            timeout,
            lambda: (
                f"{self.identity} got no chat message matching {match!r}; "
                f"received {self.received_chat!r}"
            ),
        )
        found = find()
        assert found is not None
        return found

    async def send_reaction(self, name: str) -> None:
        """Send a reaction as Visio's page does: a reliable data packet, JSON
        ``{"type": "reactionReceived", "data": {"emoji": NAME}}`` (a Visio emoji name)."""
        payload = json.dumps({"type": "reactionReceived", "data": {"emoji": name}})
        await self.room.local_participant.publish_data(payload.encode(), reliable=True)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(packet.data)
            if packet.participant is not None and message.get("type") == "reactionReceived":
                self.received_reactions.append(
                    (packet.participant.identity, str(message["data"]["emoji"]))
                )

    def _on_chat_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            try:
                text = await asyncio.wait_for(reader.read_all(), 10)
            except Exception:
                log.exception("%s: chat stream from %s failed", self.identity, sender)
                return
            self.received_chat.append((sender, text))

        task = asyncio.create_task(read())
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    # -- room events --------------------------------------------------------------------------

    def _on_active_speakers(self, speakers: list[rtc.Participant]) -> None:
        self.active_speakers.append([p.identity for p in speakers])

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        self.participant_events.append(("connected", participant.identity))

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self.participant_events.append(("disconnected", participant.identity))

    def _on_disconnected(self, reason: object) -> None:
        self.connection_events.append(f"disconnected:{reason}")

    # -- remote participants ------------------------------------------------------------------

    def participants(self) -> dict[str, rtc.RemoteParticipant]:
        """The remote participants now, by identity (each has .name, .attributes,
        .track_publications)."""
        return dict(self.room.remote_participants)

    def describe(self) -> str:
        """The room as we see it, for assertion messages."""
        parts = []
        for identity, p in self.participants().items():
            tracks = ", ".join(
                f"{_source_name(pub.source)}{' muted' if pub.muted else ''}"
                f"{'' if pub.track else ' unsubscribed'}"
                for pub in p.track_publications.values()
            )
            parts.append(f"{identity} ({p.name!r}, {dict(p.attributes)}, [{tracks}])")
        return f"{self.identity} sees: " + ("; ".join(parts) or "nobody")

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 10.0,
        message: str | Callable[[], str] = "",
    ) -> None:
        """Poll CONDITION every 50 ms until it is true; an AssertionError it raises counts as
        "not yet" (and is reported if time runs out)."""
        deadline = time.monotonic() + timeout
        last_error: AssertionError | None = None
        while True:
            try:
                if condition():
                    return
                last_error = None
            except AssertionError as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                text = message() if callable(message) else message
                text = text or "condition not met"
                if last_error is not None:
                    text += f" (last: {last_error})"
                raise AssertionError(f"{text} within {timeout:g} s; {self.describe()}")
            await asyncio.sleep(0.05)

    async def wait_participant(
        self,
        predicate: str | Callable[[rtc.RemoteParticipant], bool],
        timeout: float = 10.0,
    ) -> rtc.RemoteParticipant:
        """The first remote participant with identity PREDICATE, or for which PREDICATE(p).

        livekit-server batches the updates of participants that publish nothing and sends them
        every 3 s: such a participant shows up (and goes away) up to 3 s late. Publishers are
        announced at once."""

        def find() -> rtc.RemoteParticipant | None:
            for p in self.participants().values():
                if (p.identity == predicate) if isinstance(predicate, str) else predicate(p):
                    return p
            return None

        what = predicate if isinstance(predicate, str) else getattr(predicate, "__name__", "?")
        await self.wait_until(
            lambda: find() is not None, timeout, f"{self.identity}: no participant {what}"
        )
        found = find()
        assert found is not None
        return found

    async def wait_gone(self, identity: str, timeout: float = 10.0) -> None:
        """Until IDENTITY is no longer in the room."""
        await self.wait_until(
            lambda: identity not in self.room.remote_participants,
            timeout,
            f"{self.identity}: {identity} did not leave",
        )

    def remote_publication(self, identity: str, kind: Kind) -> rtc.RemoteTrackPublication:
        """IDENTITY's KIND publication (microphone / camera / screen share preferred);
        AssertionError if the participant or such a publication is not there."""
        participant = self.room.remote_participants.get(identity)
        assert participant is not None, f"{self.identity} sees no participant {identity}"
        candidates = [
            pub for pub in participant.track_publications.values() if _kind_matches(pub, kind)
        ]
        assert candidates, f"{identity} publishes no {kind} track"
        preferred = [pub for pub in candidates if pub.source == _PREFERRED_SOURCE[kind]]
        return (preferred or candidates)[0]

    def remote_muted(self, identity: str, kind: Kind) -> bool:
        """Whether IDENTITY's KIND publication is muted (AssertionError if there is none)."""
        return bool(self.remote_publication(identity, kind).muted)

    async def wait_remote_muted(
        self, identity: str, kind: Kind, muted: bool = True, timeout: float = 10.0
    ) -> None:
        await self.wait_until(
            lambda: self.remote_muted(identity, kind) == muted,
            timeout,
            f"{self.identity}: {identity}'s {kind} not {'muted' if muted else 'unmuted'}",
        )

    async def remote_track(
        self, identity: str, kind: Kind, timeout: float = 10.0
    ) -> rtc.RemoteTrack:
        """IDENTITY's KIND track once we are subscribed to it."""

        def subscribed() -> bool:
            return self.remote_publication(identity, kind).track is not None

        await self.wait_until(
            subscribed, timeout, f"{self.identity}: not subscribed to {identity}'s {kind}"
        )
        track = self.remote_publication(identity, kind).track
        assert track is not None
        return track

    # -- measuring what we receive ------------------------------------------------------------

    async def record_audio(
        self,
        identity: str,
        seconds: float = 1.0,
        *,
        skip_silence: bool = True,
        settle: float = 0.2,
        timeout: float = 10.0,
    ) -> np.ndarray:
        """SECONDS of IDENTITY's audio as float64 samples at 48 kHz mono, after SETTLE seconds
        (jitter buffer); silent frames are skipped unless SKIP_SILENCE is false. TIMEOUT bounds
        the whole wait, subscription included."""
        deadline = time.monotonic() + timeout
        track = await self.remote_track(identity, "audio", timeout)
        stream = rtc.AudioStream(
            track, loop=asyncio.get_running_loop(), sample_rate=RATE, num_channels=1
        )
        chunks: list[np.ndarray] = []
        wanted = int(seconds * RATE)
        total = frames = silent = 0
        to_skip = int(settle * 100)
        try:
            while total < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                event = await asyncio.wait_for(anext(stream), remaining)
                frames += 1
                data = np.frombuffer(event.frame.data, dtype=np.int16)
                if frames <= to_skip:
                    continue
                if skip_silence and (len(data) == 0 or int(np.abs(data).max()) < SILENCE_PEAK):
                    silent += 1
                    continue
                chunks.append(data.astype(np.float64))
                total += len(data)
        except (TimeoutError, StopAsyncIteration):
            raise AssertionError(
                f"{self.identity}: only {total / RATE:.2f} s of "
                f"{'non-silent ' if skip_silence else ''}audio from {identity} within "
                f"{timeout:g} s ({frames} frames, {silent} silent); {self.describe()}"
            ) from None
        finally:
            await stream.aclose()
        return np.concatenate(chunks)[:wanted]

    async def dominant_frequency(
        self, identity: str, seconds: float = 1.0, *, timeout: float = 10.0
    ) -> float:
        """The strongest frequency in SECONDS of IDENTITY's non-silent audio, in Hz."""
        samples = await self.record_audio(identity, seconds, timeout=timeout)
        return peak_frequency(samples, RATE)

    async def audio_level(
        self, identity: str, seconds: float = 0.5, *, timeout: float = 10.0
    ) -> float:
        """RMS (int16 scale) of SECONDS of IDENTITY's audio, silence included: about 0 when
        muted, thousands for a tone."""
        samples = await self.record_audio(identity, seconds, skip_silence=False, timeout=timeout)
        return float(np.sqrt(np.mean(samples**2)))

    async def video_frames(
        self,
        identity: str,
        seconds: float = 2.0,
        *,
        kind: Literal["video", "screen_share"] = "video",
        timeout: float = 10.0,
    ) -> int:
        """How many frames of IDENTITY's video we decode during SECONDS (counting starts once we
        are subscribed, which may itself take up to TIMEOUT)."""
        track = await self.remote_track(identity, kind, timeout)
        stream = rtc.VideoStream(track, loop=asyncio.get_running_loop())
        frames = 0
        end = time.monotonic() + seconds
        try:
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(anext(stream), remaining)
                except (TimeoutError, StopAsyncIteration):
                    break
                frames += 1
                self.last_video_size[identity] = (event.frame.width, event.frame.height)
        finally:
            await stream.aclose()
        return frames


def _source_name(source: int) -> str:
    try:
        return str(rtc.TrackSource.Name(source)).removeprefix("SOURCE_").lower()  # type: ignore[arg-type]
    except ValueError:
        return str(source)


@contextlib.asynccontextmanager
async def visio_user(
    server: LiveKitServer,
    room_name: str,
    identity: str,
    name: str,
    *,
    attributes: Mapping[str, str] | None = None,
    room_admin: bool = False,
    timeout: float = 10.0,
) -> AsyncIterator[VisioUser]:
    """VisioUser.join(...) that leaves when the block ends, whatever happens in it."""
    user = await VisioUser.join(
        server,
        room_name,
        identity,
        name,
        attributes=attributes,
        room_admin=room_admin,
        timeout=timeout,
    )
    try:
        yield user
    finally:
        await user.leave()
