"""End to end through the relay: aiortc peers publish Opus + VP8 and another peer receives them."""

from __future__ import annotations

import asyncio
import fractions
import time

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from gateway.media import MediaRelay, PublishRequest

pytestmark = pytest.mark.interop

TONE_HZ = 660.0
SAMPLE_RATE = 48000
SAMPLES_PER_FRAME = 960  # 20 ms


class SineTrack(MediaStreamTrack):
    """A steady sine tone, real-time paced, as av.AudioFrame (s16 mono 48 kHz)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._samples / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (np.arange(SAMPLES_PER_FRAME) + self._samples) / SAMPLE_RATE
        pcm = (np.sin(2 * np.pi * TONE_HZ * t) * 12000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._samples += SAMPLES_PER_FRAME
        return frame


class PatternTrack(MediaStreamTrack):
    """A moving colour pattern at 30 frames per second, 320x240."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / 30
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        image = np.zeros((240, 320, 3), dtype=np.uint8)
        image[:, :, 0] = (np.arange(320) + self._count * 4) % 256
        image[:, :, 1] = 128
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._count * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice skips 127.0.0.1 when it gathers; the tests stay on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *_, **__: ["127.0.0.1"])


def _peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def _dominant_frequency(samples: np.ndarray, rate: int) -> float:
    windowed = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def _collect_audio(track: MediaStreamTrack, seconds: float) -> tuple[np.ndarray, int]:
    chunks: list[np.ndarray] = []
    rate = SAMPLE_RATE
    total = 0
    for _ in range(50):  # let the decoder and jitter buffer settle
        await track.recv()
    while total < seconds * rate:
        frame = await track.recv()
        rate = frame.sample_rate
        data = frame.to_ndarray()
        channels = len(frame.layout.channels)
        mono = data.reshape(-1)[::channels].astype(np.float64)
        chunks.append(mono)
        total += len(mono)
    return np.concatenate(chunks), rate


async def test_subscriber_hears_the_publishers_tone_and_sees_video(loopback_only: None) -> None:
    relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0))
    await relay.start()
    publisher, viewer = _peer(), _peer()
    try:
        # Client A publishes audio + video.
        publisher.addTransceiver(SineTrack(), direction="sendonly")
        publisher.addTransceiver(PatternTrack(), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        mids = [t.mid for t in publisher.getTransceivers()]
        endpoint_a = relay.create_endpoint("room-e2e", "alice")
        answer = endpoint_a.accept_publish_offer(
            publisher.localDescription.sdp,
            [
                PublishRequest(mid=str(mids[0]), track_id="alice-mic", source="microphone"),
                PublishRequest(mid=str(mids[1]), track_id="alice-cam", source="camera"),
            ],
        )
        assert [(t.track_id, t.kind, t.codec) for t in answer.tracks] == [
            ("alice-mic", "audio", "opus"),
            ("alice-cam", "video", "VP8"),
        ]
        await publisher.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

        # Client B subscribes to both tracks.
        endpoint_b = relay.create_endpoint("room-e2e", "bob")
        assert endpoint_b.subscribe("alice-mic")
        assert endpoint_b.subscribe("alice-cam")
        assert not endpoint_b.subscribe("nobody-track")
        offer = endpoint_b.create_subscribe_offer()
        assert offer is not None
        assert sorted(track for _, track in offer.tracks) == ["alice-cam", "alice-mic"]
        received: dict[str, MediaStreamTrack] = {}
        viewer.on("track", lambda track: received.__setitem__(track.kind, track))
        await viewer.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await viewer.setLocalDescription(await viewer.createAnswer())
        endpoint_b.accept_subscribe_answer(viewer.localDescription.sdp)
        assert endpoint_b.create_subscribe_offer() is None  # nothing changed since the answer
        assert set(received) == {"audio", "video"}

        samples, rate = await asyncio.wait_for(_collect_audio(received["audio"], 1.0), 12)
        assert abs(_dominant_frequency(samples, rate) - TONE_HZ) < 15
        assert float(np.sqrt(np.mean(samples**2))) > 1000  # a real tone, not silence

        frames = []
        while len(frames) < 5:
            frames.append(await asyncio.wait_for(received["video"].recv(), 8))
        assert all((f.width, f.height) == (320, 240) for f in frames)

        stats = relay.stats()
        assert stats.packets_forwarded > 50 and stats.bytes_forwarded > 5000
        assert (stats.endpoints, stats.routers) == (2, 1)
    finally:
        await publisher.close()
        await viewer.close()
        await relay.stop()


async def test_whep_viewer_receives_the_tone_through_accept_view_offer(loopback_only: None) -> None:
    relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0))
    await relay.start()
    publisher, viewer = _peer(), _peer()
    try:
        publisher.addTransceiver(SineTrack(), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        mid = str(publisher.getTransceivers()[0].mid)
        answer = relay.create_endpoint("room-whep", "alice").accept_publish_offer(
            publisher.localDescription.sdp, [PublishRequest(mid, "alice-mic", "microphone")]
        )
        await publisher.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

        received: list[MediaStreamTrack] = []
        viewer.on("track", received.append)
        viewer.addTransceiver("audio", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        whep = relay.create_endpoint("room-whep", "whep-viewer")
        answer_sdp = whep.accept_view_offer(viewer.localDescription.sdp, ["alice-mic"])
        assert "a=sendonly" in answer_sdp
        await viewer.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        assert len(received) == 1

        samples, rate = await asyncio.wait_for(_collect_audio(received[0], 1.0), 12)
        assert abs(_dominant_frequency(samples, rate) - TONE_HZ) < 15
    finally:
        await publisher.close()
        await viewer.close()
        await relay.stop()
