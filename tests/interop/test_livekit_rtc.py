"""Our LiveKit participant's WebRTC legs (protocols/livekit/rtc.py) against a real livekit-server.

LiveKit's official Python SDK (`livekit`, Rust core) is the other participant: it hears the tone
our participant publishes through the SFU, and publishes a tone our participant receives and
decodes. Everything stays on 127.0.0.1: the server runs with use_external_ip false on a loopback
ICE/UDP range (tests/interop/livekit_fixtures.py), and aioice gathers 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import numpy as np
import pytest
from aiortc import MediaStreamTrack
from livekit import rtc
from livekit.protocol import models

from gateway.media.audio.codecs import OPUS
from gateway.media.audio.conference import RtpWriter
from protocols.livekit.rtc import LiveKitParticipant, RemoteTrack, parse_trickle
from spec.conformance.webrtc import ToneTrack, dominant_frequency
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_peers import our_participant, sdk_room, token

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(30),
    # livekit-server's --dev secret is "secret", shorter than PyJWT recommends for HS256.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

RATE = 48000


async def sdk_hears(stream: rtc.AudioStream, seconds: float) -> np.ndarray:
    chunks: list[np.ndarray] = []
    total = 0
    skipped = 0
    async for event in stream:
        data = np.frombuffer(event.frame.data, dtype=np.int16)
        if skipped < 25 or not data.any():  # let the jitter buffer settle; skip silence
            skipped += 1
            continue
        chunks.append(data.astype(np.float64))
        total += len(data)
        if total >= seconds * RATE:
            break
    return np.concatenate(chunks)


async def aiortc_hears(track: MediaStreamTrack, seconds: float) -> tuple[np.ndarray, int]:
    chunks: list[np.ndarray] = []
    total = 0
    rate = RATE
    skipped = 0
    while total < seconds * rate:
        frame = await track.recv()
        rate = frame.sample_rate
        channels = len(frame.layout.channels)
        mono = frame.to_ndarray().reshape(-1)[::channels].astype(np.float64)
        if skipped < 25 or not mono.any():
            skipped += 1
            continue
        chunks.append(mono)
        total += len(mono)
    return np.concatenate(chunks), rate


async def test_sdk_participant_hears_our_tone(
    livekit_server: RunningLiveKit, loopback_only: None
) -> None:
    room = str(uuid.uuid4())
    async with sdk_room(livekit_server, room, "visio-bob") as sdk:
        subscribed: asyncio.Queue[tuple[rtc.Track, rtc.RemoteParticipant]] = asyncio.Queue()
        sdk.on(
            "track_subscribed",
            lambda track, _pub, participant: subscribed.put_nowait((track, participant)),
        )
        async with our_participant(livekit_server, room, "gateway-1") as ours:
            published = await ours.publish_audio(ToneTrack(523.0), name="phone")
            assert published.sid.startswith("TR_")

            track, participant = await asyncio.wait_for(subscribed.get(), 10)
            assert participant.identity == "gateway-1"
            assert track.kind == rtc.TrackKind.KIND_AUDIO
            assert track.sid == published.sid
            stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
            try:
                # two seconds, the last one measured: on a loaded machine the stream's first
                # second may still carry the jitter buffer's concealment while it fills
                samples = (await asyncio.wait_for(sdk_hears(stream, 2.0), 15))[-RATE:]
            finally:
                await stream.aclose()
            assert abs(dominant_frequency(samples, RATE) - 523.0) <= 15
            assert np.sqrt(np.mean(samples**2)) > 1000  # a tone, not comfort noise


async def test_we_receive_the_sdk_participants_tone(
    livekit_server: RunningLiveKit, loopback_only: None
) -> None:
    room = str(uuid.uuid4())
    received: asyncio.Queue[tuple[str, MediaStreamTrack]] = asyncio.Queue()
    async with (
        our_participant(livekit_server, room, "gateway-2") as ours,
        sdk_room(livekit_server, room, "visio-alice") as sdk,
    ):
        ours.on_track = lambda identity, track: received.put_nowait((identity, track))
        source = rtc.AudioSource(RATE, 1)
        local = rtc.LocalAudioTrack.create_audio_track("tone", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await sdk.local_participant.publish_track(local, options)

        async def play() -> None:
            sent = 0
            frame_samples = RATE // 100
            while True:
                t = (np.arange(frame_samples) + sent) / RATE
                tone = (np.sin(2 * np.pi * 440.0 * t) * 12000).astype(np.int16)
                await source.capture_frame(
                    rtc.AudioFrame(tone.tobytes(), RATE, 1, frame_samples)
                )  # paced by the source's queue
                sent += frame_samples

        player = asyncio.create_task(play())
        try:
            identity, track = await asyncio.wait_for(received.get(), 10)
            assert identity == "visio-alice"
            assert track.kind == "audio"
            samples, rate = await asyncio.wait_for(aiortc_hears(track, 1.0), 10)
            assert abs(dominant_frequency(samples, rate) - 440.0) <= 15
            assert np.sqrt(np.mean(samples**2)) > 1000
        finally:
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player
            await source.aclose()


def test_trickle_candidate_init_is_parsed() -> None:
    init = (
        '{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",'
        '"sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc"}'
    )
    candidate = parse_trickle(init)
    assert candidate is not None
    assert (candidate.ip, candidate.port, candidate.type) == ("127.0.0.1", 50000, "host")
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("0", 0)
    assert parse_trickle('{"candidate":""}') is None
    assert parse_trickle("not json") is None


# --- encoded mode: the gateway's path (no aiortc decoding or encoding) ---------------------------


def payload_of(packet: bytes) -> bytes:
    """The RTP payload: after the CSRCs and the RFC 8285 extension block."""
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        length = int.from_bytes(packet[offset + 2 : offset + 4], "big")
        offset += 4 + 4 * length
    return packet[offset:]


async def test_encoded_mode_receives_the_sdk_tone_as_opus_rtp(
    livekit_server: RunningLiveKit, loopback_only: None
) -> None:
    room = str(uuid.uuid4())
    announced: asyncio.Queue[RemoteTrack] = asyncio.Queue()
    packets: list[bytes] = []
    ours = await LiveKitParticipant.connect(
        livekit_server.url, token(livekit_server, room, "gateway-3", "Rondpoint"), encoded=True
    )
    ours.on_remote_track = announced.put_nowait
    ours.on_rtp = lambda sid, packet: packets.append(packet)
    try:
        async with sdk_room(livekit_server, room, "visio-carol") as sdk:
            source = rtc.AudioSource(RATE, 1)
            local = rtc.LocalAudioTrack.create_audio_track("tone", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            publication = await sdk.local_participant.publish_track(local, options)

            async def play() -> None:
                sent = 0
                while True:
                    t = (np.arange(480) + sent) / RATE
                    tone = (np.sin(2 * np.pi * 440.0 * t) * 12000).astype(np.int16)
                    await source.capture_frame(rtc.AudioFrame(tone.tobytes(), RATE, 1, 480))
                    sent += 480

            player = asyncio.create_task(play())
            try:
                remote = await asyncio.wait_for(announced.get(), 10)
                assert remote.sid == publication.sid
                assert remote.participant_identity == "visio-carol"
                assert remote.kind == "audio" and remote.codec.name.lower() == "opus"
                for _ in range(100):
                    if len(packets) >= 100:
                        break
                    await asyncio.sleep(0.05)
                assert len(packets) >= 100, f"only {len(packets)} RTP packets in 5 s"
                assert {p[1] & 0x7F for p in packets} == {remote.codec.payload_type}
                decoder = OPUS.decoder()
                pcm = np.concatenate([decoder.decode(payload_of(p)) for p in packets[50:100]])
                assert abs(dominant_frequency(pcm.astype(np.float64), 48000) - 440.0) <= 15
                assert ours.subscriber_tap.packets_in >= 100
            finally:
                player.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await player
                await source.aclose()
    finally:
        await ours.close()


async def test_encoded_mode_publishes_our_opus_rtp(
    livekit_server: RunningLiveKit, loopback_only: None
) -> None:
    room = str(uuid.uuid4())
    async with sdk_room(livekit_server, room, "visio-dan") as sdk:
        subscribed: asyncio.Queue[tuple[rtc.Track, rtc.RemoteParticipant]] = asyncio.Queue()
        sdk.on(
            "track_subscribed",
            lambda track, _pub, participant: subscribed.put_nowait((track, participant)),
        )
        ours = await LiveKitParticipant.connect(
            livekit_server.url, token(livekit_server, room, "gateway-4", "Phone"), encoded=True
        )
        try:
            local = await ours.publish_encoded(
                "audio", "opus", name="phone", source=models.TrackSource.MICROPHONE
            )
            assert local.sid.startswith("TR_")
            encoder = OPUS.encoder()
            writer = RtpWriter(local.payload_type, OPUS.timestamp_step)
            writer.ssrc = local.ssrc

            async def speak() -> None:
                sent = 0
                while True:
                    t = (np.arange(960) + sent) / RATE
                    tone = (np.sin(2 * np.pi * 659.0 * t) * 12000).astype(np.int16)
                    local.sink.send_rtp(writer.packet(encoder.encode(tone)))
                    sent += 960
                    await asyncio.sleep(0.02)

            speaker = asyncio.create_task(speak())
            try:
                track, participant = await asyncio.wait_for(subscribed.get(), 10)
                assert participant.identity == "gateway-4"
                stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
                samples = await asyncio.wait_for(sdk_hears(stream, 1.0), 10)
                await stream.aclose()
                assert abs(dominant_frequency(samples, RATE) - 659.0) <= 15
            finally:
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaker
        finally:
            await ours.close()
