"""A room's audio for legs that take one stream (phones): decode each talker once, mix-minus, encode once.

Browsers keep receiving every track forwarded encoded by the router; a phone cannot, so it gets
a mix. The conference subscribes to the room's audio tracks as one more downtrack of the router
(Opus, decoded with a jitter buffer), takes each phone's RTP, and every 20 ms:
- mixes the loudest talkers for each phone (mix-minus: a phone never hears itself);
- encodes each phone's own voice once to Opus and feeds it to the router as that phone's
  track, with its RFC 6464 audio level, so browsers hear it and see who speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..router import CodecInfo, ExtensionIds, Router
from ..rtp import ONE_BYTE_PROFILE, RtpError, RtpPacket
from .codecs import OPUS, AudioCodec, AudioDecoder, AudioEncoder, OpusEncoder, Samples
from .jitter import JitterBuffer, Lost
from .mixer import MixMinusMixer

log = logging.getLogger(__name__)

MIXER_RATE = 48000
NARROWBAND_RATE = 8000
"""The mixing rate while every phone is narrowband (G.711)."""
FRAME_SECONDS = 0.02
FRAME_SAMPLES = MIXER_RATE // 50
MIXER_SUBSCRIBER = "audio-conference"
AUDIO_LEVEL_ID = 1


class _NullSink:
    """Where the router sends RTCP feedback for a phone's track: nowhere (we are the encoder)."""

    def send_rtp(self, packet: bytes) -> None:
        pass

    def send_rtcp(self, packet: bytes) -> None:
        pass


def audio_level(samples: Samples) -> int:
    """RFC 6464 level: -dBov of the frame, 0 (loud) to 127 (silence)."""
    count = len(samples)
    if not count:
        return 127
    wide = samples.astype(np.int64)
    mean_square = int(np.dot(wide, wide)) / count  # one integer dot product: no float temporaries
    if mean_square < 1.0:
        return 127
    return max(0, min(127, round(-10 * math.log10(mean_square / (32768 * 32768)))))


class RtpWriter:
    """Numbers the RTP packets of one outgoing stream (RFC 3550): SSRC, sequence, timestamp; with
    `with_level`, each packet carries its RFC 6464 audio level (one-byte extension id 1)."""

    def __init__(self, payload_type: int, timestamp_step: int, with_level: bool = False) -> None:
        self.payload_type = payload_type
        self.timestamp_step = timestamp_step
        self.with_level = with_level
        self.ssrc = secrets.randbits(32)
        self._next = RtpPacket(
            payload_type,
            sequence_number=secrets.randbits(16),
            timestamp=secrets.randbits(32),
            marker=True,
            extension_profile=ONE_BYTE_PROFILE if with_level else 0,
        )

    def packet(self, payload: bytes, level: int = 127, advance: int = 1) -> bytes:
        packet = self._next
        packet.payload_type = self.payload_type
        packet.ssrc = self.ssrc
        packet.payload = payload
        if self.with_level:
            voice_activity = 0x80 if level < 60 else 0
            packet.extensions[AUDIO_LEVEL_ID] = bytes((voice_activity | level,))
        data = packet.serialize()
        packet.marker = False
        packet.sequence_number = (packet.sequence_number + 1) & 0xFFFF
        packet.timestamp = (packet.timestamp + self.timestamp_step * advance) & 0xFFFFFFFF
        return data

    def skip(self) -> None:
        """A frame not sent (silence): time moves on, the next packet starts a talkspurt."""
        packet = self._next
        packet.timestamp = (packet.timestamp + self.timestamp_step) & 0xFFFFFFFF
        packet.marker = True


@dataclass
class _Source:
    """One talker's decoded input: jitter buffer, decoder and the frame for this tick."""

    decoder: AudioDecoder
    buffer: JitterBuffer
    frame_samples: int = FRAME_SAMPLES

    def frame(self, now: float) -> Samples | None:
        item = self.buffer.pop(now)
        if item is None:
            return None
        samples = (
            self.decoder.conceal() if isinstance(item, Lost) else self.decoder.decode(item.payload)
        )
        if len(samples) != self.frame_samples:
            samples = np.resize(samples, self.frame_samples).astype(np.int16)
        return samples


class _TrackSink:
    """The conference's downtrack of one browser audio track: RTP in, jitter buffer."""

    def __init__(self, source: _Source) -> None:
        self.source = source

    def send_rtp(self, packet: bytes) -> None:
        with contextlib.suppress(RtpError):
            self.source.buffer.push(RtpPacket.parse(packet), time.monotonic())

    def send_rtcp(self, packet: bytes) -> None:
        pass


@dataclass(slots=True)
class ConferenceStats:
    """Plain RTP counters of a conference's phone legs (those gone included), read at scrape time."""

    packets_received: int = 0
    """RTP packets from the phones (audio and telephone-events)."""
    packets_sent: int = 0
    """RTP packets sent to the phones (mix or prompt)."""
    frames_concealed: int = 0
    """Playout ticks with no packet from a talking phone (lost or not yet arrived)."""
    frames_late: int = 0
    """Packets from phones that came after their playout tick (dropped)."""
    ticks: int = 0
    overruns: int = 0

    def __iadd__(self, other: ConferenceStats) -> ConferenceStats:
        self.packets_received += other.packets_received
        self.packets_sent += other.packets_sent
        self.frames_concealed += other.frames_concealed
        self.frames_late += other.frames_late
        self.ticks += other.ticks
        self.overruns += other.overruns
        return self


@dataclass
class PhoneLeg:
    """One phone in the conference: what it sends, what it hears, its track in the router."""

    leg_id: str
    codec: AudioCodec
    send: Callable[[bytes], None]
    """Sends one RTP packet to the phone."""
    track_id: str
    telephone_event_pt: int | None = None
    on_dtmf_packet: Callable[[RtpPacket], None] | None = None
    muted: bool = False
    hearing: bool = True
    """False while on hold or while a prompt is the only thing it should hear."""
    prompt: list[Samples] = field(default_factory=list)
    """Frames at the codec's sample rate played instead of the mix, first one next tick."""
    source: _Source | None = None
    writer: RtpWriter | None = None
    encoder: AudioEncoder | None = None
    opus_writer: RtpWriter | None = None
    opus_encoder: OpusEncoder | None = None
    """Encodes the phone's voice for the room, from the mixing rate (8 kHz while all are G.711)."""
    """Mix rate -> 48 kHz for the Opus encoder while the conference mixes narrowband."""
    in_room: bool = False
    on_prompt_done: Callable[[], None] | None = None
    packets_received: int = 0
    packets_sent: int = 0

    def receive(self, data: bytes) -> None:
        """An RTP packet from the phone (already latched by its endpoint)."""
        self.packets_received += 1
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        if packet.payload_type == self.telephone_event_pt:
            if self.on_dtmf_packet is not None:
                self.on_dtmf_packet(packet)
            return
        if packet.payload_type != self.codec.payload_type or self.source is None:
            return
        self.source.buffer.push(packet, time.monotonic())

    def play(self, frames: Sequence[Samples], on_done: Callable[[], None] | None = None) -> None:
        """Play frames (at the codec's sample rate) to this phone instead of the room."""
        self.prompt = list(frames)
        self.on_prompt_done = on_done


class AudioClock:
    """One 20 ms clock for every conference of the process: one wake-up per tick, not one per room."""

    _clocks: dict[asyncio.AbstractEventLoop, AudioClock] = {}

    def __init__(self) -> None:
        self.conferences: list[RoomConference] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of_running_loop(cls) -> AudioClock:
        loop = asyncio.get_running_loop()
        for other in [other for other in cls._clocks if other.is_closed()]:
            del cls._clocks[other]
        clock = cls._clocks.get(loop)
        if clock is None:
            clock = cls._clocks[loop] = AudioClock()
        return clock

    def add(self, conference: RoomConference) -> None:
        if conference not in self.conferences:
            self.conferences.append(conference)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, conference: RoomConference) -> None:
        if conference in self.conferences:
            self.conferences.remove(conference)
        if not self.conferences and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        try:
            while self.conferences:
                next_tick += FRAME_SECONDS
                now = time.monotonic()
                for conference in list(self.conferences):
                    try:
                        conference.tick(now)
                    except Exception:
                        log.exception(
                            "audio conference tick failed", extra={"room": conference.room_id}
                        )
                delay = next_tick - loop.time()
                if delay < -0.2:  # far behind (a stalled loop): resynchronise, do not burst
                    for conference in self.conferences:
                        conference.overruns += 1
                    next_tick = loop.time()
                    delay = 0
                await asyncio.sleep(max(0.0, delay))
        except asyncio.CancelledError:
            pass


class RoomConference:
    """The audio conference of one room; ticks every 20 ms while it has at least one phone."""

    def __init__(
        self,
        room_id: str,
        router: Router,
        on_track_added: Callable[[str, str], None] | None = None,
        on_track_removed: Callable[[str], None] | None = None,
    ) -> None:
        self.room_id = room_id
        self.router = router
        self.on_track_added = on_track_added
        """(track id, participant id) of a phone's voice now in the router."""
        self.on_track_removed = on_track_removed
        self.rate = MIXER_RATE
        """The mixing rate: 8 kHz while every phone is narrowband."""
        self.mixer = MixMinusMixer(rate=self.rate)
        self.legs: dict[str, PhoneLeg] = {}
        self._tracks: dict[str, _Source] = {}
        self.ticks = 0
        self.overruns = 0
        self._gone = ConferenceStats()  # counters of the legs already removed

    # phones ----------------------------------------------------------------------------
    def add_leg(
        self,
        leg_id: str,
        codec: AudioCodec,
        send: Callable[[bytes], None],
        telephone_event_pt: int | None = None,
    ) -> PhoneLeg:
        track_id = f"TR_{leg_id}"
        leg = PhoneLeg(leg_id, codec, send, track_id, telephone_event_pt)
        leg.source = _Source(
            codec.decoder(self.rate), JitterBuffer(clock_rate=codec.clock_rate), self.rate // 50
        )
        leg.writer = RtpWriter(codec.payload_type, codec.timestamp_step)
        leg.encoder = codec.encoder()
        self.legs[leg_id] = leg
        self._update_rate()
        self._ensure_running()
        return leg

    def enter_room(self, leg: PhoneLeg, participant_id: str) -> str:
        """The phone is in the room now: publish its voice as an Opus track; its track id."""
        if not leg.in_room:
            leg.in_room = True
            leg.opus_writer = RtpWriter(OPUS.payload_type, OPUS.timestamp_step, with_level=True)
            leg.opus_encoder = OpusEncoder(self.rate)
            self.router.add_receiver(
                leg.track_id,
                participant_id,
                "audio",
                CodecInfo("opus", OPUS.payload_type, OPUS.clock_rate),
                ExtensionIds(audio_level=AUDIO_LEVEL_ID),
                _NullSink(),
            )
            if self.on_track_added is not None:
                self.on_track_added(leg.track_id, participant_id)
        return leg.track_id

    def remove_leg(self, leg_id: str) -> None:
        leg = self.legs.pop(leg_id, None)
        if leg is not None:
            self._gone += _leg_stats(leg)
        if leg is not None and leg.in_room:
            if self.on_track_removed is not None:
                self.on_track_removed(leg.track_id)
            with contextlib.suppress(KeyError):
                self.router.remove_receiver(leg.track_id)
        if not self.legs:
            self.stop()
        else:
            self._update_rate()

    def stats(self) -> ConferenceStats:
        """RTP counters of every phone leg this conference has had, and its clock's."""
        total = ConferenceStats(ticks=self.ticks, overruns=self.overruns)
        total += self._gone
        for leg in self.legs.values():
            total += _leg_stats(leg)
        return total

    # browser tracks ----------------------------------------------------------------------
    def add_track(self, track_id: str) -> None:
        """Hear a browser's (Opus) audio track; phones' own tracks are never taken back in."""
        if track_id in self._tracks or (track_id.startswith("TR_") and track_id[3:] in self.legs):
            return  # (a phone's track id is TR_ + its leg id: O(1), not a scan of every leg)
        if not self.router.has_receiver(track_id):
            return
        source = _Source(
            OPUS.decoder(self.rate), JitterBuffer(clock_rate=OPUS.clock_rate), self.rate // 50
        )
        self._tracks[track_id] = source
        self.router.add_downtrack(
            track_id,
            MIXER_SUBSCRIBER,
            _TrackSink(source),
            secrets.randbits(32),
            OPUS.payload_type,
            ExtensionIds(),
        )
        self._update_rate()

    def remove_track(self, track_id: str) -> None:
        if self._tracks.pop(track_id, None) is not None:
            with contextlib.suppress(KeyError):
                self.router.remove_downtrack(track_id, MIXER_SUBSCRIBER)
            self._update_rate()

    # the mixing rate ------------------------------------------------------------------------
    def _update_rate(self) -> None:
        """Mix at 8 kHz while every listener is a narrowband (G.711) phone: browsers' Opus is then
        decoded straight to 8 kHz (DESIGN.md), and only phones' voices are resampled, for Opus."""
        narrowband = bool(self.legs) and all(
            leg.codec.sample_rate == NARROWBAND_RATE for leg in self.legs.values()
        )
        rate = NARROWBAND_RATE if narrowband else MIXER_RATE
        if rate == self.rate:
            return
        self.rate = rate
        self.mixer = MixMinusMixer(rate=rate)
        for leg in self.legs.values():
            if leg.source is not None:
                leg.source.decoder = leg.codec.decoder(rate)
                leg.source.frame_samples = rate // 50
        for source in self._tracks.values():
            source.decoder = OPUS.decoder(rate)
            source.frame_samples = rate // 50

    # the clock ------------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        AudioClock.of_running_loop().add(self)

    def stop(self) -> None:
        AudioClock.of_running_loop().remove(self)
        for track_id in list(self._tracks):
            self.remove_track(track_id)

    def tick(self, now: float) -> None:
        """One 20 ms frame: gather, mix, send to phones, publish phones' voices."""
        self.ticks += 1
        frames: dict[Hashable, Samples] = {}
        for track_id, source in self._tracks.items():
            frame = source.frame(now)
            if frame is not None:
                frames[track_id] = frame
        for leg in self.legs.values():
            if leg.source is None:
                continue
            frame = leg.source.frame(now)
            if frame is None or not leg.in_room:
                if leg.opus_writer is not None:
                    leg.opus_writer.skip()
                continue
            if not leg.muted:
                frames[leg.leg_id] = frame
                self._publish(leg, frame)
            elif leg.opus_writer is not None:
                leg.opus_writer.skip()
        listeners = [leg.leg_id for leg in self.legs.values() if leg.in_room and leg.hearing]
        result = self.mixer.tick(frames, listeners)
        for leg in self.legs.values():
            assert leg.writer is not None and leg.encoder is not None
            if leg.prompt:
                payload = leg.encoder.encode(leg.prompt.pop(0))
                if not leg.prompt and leg.on_prompt_done is not None:
                    done, leg.on_prompt_done = leg.on_prompt_done, None
                    asyncio.get_running_loop().call_soon(done)
            elif leg.leg_id in result.mixes:
                payload = self.mixer.encode_once(leg.codec, result.mixes[leg.leg_id])
            else:
                leg.writer.skip()
                continue
            if payload:
                leg.send(leg.writer.packet(payload))
                leg.packets_sent += 1

    def _publish(self, leg: PhoneLeg, frame: Samples) -> None:
        assert leg.opus_writer is not None and leg.opus_encoder is not None
        level = audio_level(frame)
        if not self.router.downtrack_count(leg.track_id):
            # nobody listens to this phone's track: no Opus encode, but the router still gets
            # the audio level (an empty payload), for active-speaker detection
            self.router.on_rtp(leg.track_id, leg.opus_writer.packet(b"", level))
            return
        if leg.opus_encoder.input_rate != self.rate:  # the mixing rate changed
            leg.opus_encoder = OpusEncoder(self.rate)
        payload = leg.opus_encoder.encode(frame)
        if payload:
            self.router.on_rtp(leg.track_id, leg.opus_writer.packet(payload, level))


def _leg_stats(leg: PhoneLeg) -> ConferenceStats:
    stats = ConferenceStats(packets_received=leg.packets_received, packets_sent=leg.packets_sent)
    if leg.source is not None:
        stats.frames_concealed = leg.source.buffer.stats.lost
        stats.frames_late = leg.source.buffer.stats.late
    return stats
