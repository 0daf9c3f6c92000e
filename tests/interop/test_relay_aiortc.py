"""End to end through the relay: aiortc peers publish Opus + VP8 or H.264 and another peer receives them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from gateway.media.endpoint import PublishRequest
from gateway.media.relay import MediaRelay
from spec.conformance.webrtc import PatternTrack, ToneTrack, dominant_frequency

pytestmark = pytest.mark.interop

TONE_HZ = 660.0


def _peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def _collect_audio(track: MediaStreamTrack, seconds: float) -> tuple[np.ndarray, int]:
    chunks: list[np.ndarray] = []
    rate = 48000
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


@pytest.mark.parametrize(("mime", "codec"), [("video/VP8", "VP8"), ("video/H264", "H264")])
async def test_subscriber_hears_the_publishers_tone_and_sees_video(
    loopback_only: None, mime: str, codec: str
) -> None:
    relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0))
    await relay.start()
    publisher, viewer = _peer(), _peer()
    try:
        # Client A publishes audio + video.
        publisher.addTransceiver(ToneTrack(TONE_HZ), direction="sendonly")
        video = publisher.addTransceiver(PatternTrack(), direction="sendonly")
        video.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType in (mime, "video/rtx")
            ]
        )
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
            ("alice-cam", "video", codec),
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
        assert abs(dominant_frequency(samples, rate) - TONE_HZ) < 15
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
        publisher.addTransceiver(ToneTrack(TONE_HZ), direction="sendonly")
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
        assert abs(dominant_frequency(samples, rate) - TONE_HZ) < 15
    finally:
        await publisher.close()
        await viewer.close()
        await relay.stop()
