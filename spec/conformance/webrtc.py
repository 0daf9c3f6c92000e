"""An aiortc WebRTC peer for the ORS client (orsclient.py): publishes a tone, receives and measures tracks.

The conformance suite's media tests use it against any ORS server, and Rondpoint's own tests use it as
a browser stand-in; the gateway's relay never uses aiortc's media pipeline.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import VideoStreamTrack
from av import AudioFrame, VideoFrame

from spec.conformance.orsclient import Message, OrsClient

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960


class ToneTrack(MediaStreamTrack):
    """A sine tone at ``frequency`` Hz, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (np.arange(FRAME_SAMPLES) + self._sent) / SAMPLE_RATE
        samples = (np.sin(2 * np.pi * self.frequency * t) * 12000).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME_SAMPLES
        return frame


class PatternTrack(MediaStreamTrack):
    """A moving colour pattern at 30 frames per second, 320x240."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / 30
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        image = np.zeros((240, 320, 3), dtype=np.uint8)
        image[:, :, 0] = (np.arange(320) + self._count * 4) % 256
        image[:, :, 1] = 128
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._count * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[:3] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@dataclass
class ReceivedTrack:
    track_id: str
    kind: str
    frames: int = 0
    samples: list[np.ndarray] = field(default_factory=list)

    def frequency(self) -> float:
        data = np.concatenate(self.samples[-50:])
        return dominant_frequency(data, SAMPLE_RATE)


class WebRtcPeer:
    """Publish and subscribe peer connections driven by ORS messages."""

    def __init__(self, client: OrsClient) -> None:
        self.client = client
        # max-bundle, as the relay offers: with aiortc's default (balanced), two new m-lines of
        # one kind in one offer leave the second on a transport that is then discarded
        bundled = RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.publish_pc = RTCPeerConnection(bundled)
        self.subscribe_pc = RTCPeerConnection(bundled)
        self.received: dict[str, ReceivedTrack] = {}
        self._mid_to_track: dict[str, str] = {}
        self._by_mid: dict[str, ReceivedTrack] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribe_pc.on("track", self._on_track)

    async def publish(
        self, frequency: float = 440.0, video: bool = False, screen: bool = False
    ) -> Message:
        """Publish a tone, and with VIDEO a camera, with SCREEN a screen share (a second video)."""
        sources = [
            (
                self.publish_pc.addTransceiver(ToneTrack(frequency), direction="sendonly"),
                "microphone",
            )
        ]
        for wanted, source in ((video, "camera"), (screen, "screen")):
            if wanted:
                transceiver = self.publish_pc.addTransceiver(
                    VideoStreamTrack(), direction="sendonly"
                )
                sources.append((transceiver, source))
        await self.publish_pc.setLocalDescription(await self.publish_pc.createOffer())
        requests = [{"mid": t.mid, "source": source} for t, source in sources]
        answer = await self.client.request(
            {
                "type": "offer",
                "pc": "publish",
                "sdp": self.publish_pc.localDescription.sdp,
                "tracks": requests,
            }
        )
        await self.publish_pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return answer

    async def accept_offer(self, offer: Message) -> None:
        for entry in offer["tracks"]:
            mid, track_id = entry["mid"], entry["track_id"]
            if self._mid_to_track.get(mid) == track_id:
                continue
            self._mid_to_track[mid] = track_id
            reused = self._by_mid.get(mid)
            if reused is not None:
                # the server gave a freed m-line to another track (JSEP 5.2.2): the receiver
                # and its aiortc track stay, what arrives on them is the new track's
                reused.track_id = track_id
                reused.frames = 0
                reused.samples.clear()
                self.received[track_id] = reused
        await self.subscribe_pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self.subscribe_pc.setLocalDescription(await self.subscribe_pc.createAnswer())
        await self.client.request(
            {"type": "answer", "pc": "subscribe", "sdp": self.subscribe_pc.localDescription.sdp}
        )

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(
            (t.mid for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track), None
        )
        track_id = self._mid_to_track.get(mid or "", mid or "?")
        received = ReceivedTrack(track_id, track.kind)
        self.received[track_id] = received
        if mid is not None:
            self._by_mid[mid] = received
        self._tasks.append(asyncio.create_task(self._consume(track, received)))

    async def _consume(self, track: MediaStreamTrack, received: ReceivedTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                received.frames += 1
                if received.kind == "audio":
                    data = frame.to_ndarray().reshape(-1)
                    if frame.layout.name == "stereo":
                        data = data[::2]
                    received.samples.append(data.copy())
                    del received.samples[:-100]
        except Exception:
            return

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.publish_pc.close()
        await self.subscribe_pc.close()
