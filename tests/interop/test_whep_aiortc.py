"""WHEP with aiortc under max-bundle, viewing a participant who publishes only audio.

The viewer offers audio and video (recvonly), as WHEP players do. The answer must leave aiortc a
usable bundled transport: a bare `m=video 0` rejection made aiortc take that m-section's (absent)
candidates for the shared transport, so ICE never connected (a partner hit it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.media import sdp
from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import ReceivedTrack, WebRtcPeer
from tests.gateway_process import RunningGateway, running_gateway

pytestmark = pytest.mark.interop

TONE_HZ = 659.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running_gateway(Path(tmp_path_factory.mktemp("whep-aiortc"))) as running:
        yield running


async def _audio_only_publisher(gateway: RunningGateway, room: str) -> tuple[OrsClient, WebRtcPeer]:
    client = await OrsClient.connect(gateway.base_url, room)
    await client.join(gateway.token(room, "speaker", "Speaker"))
    peer = WebRtcPeer(client)
    answer = await peer.publish(frequency=TONE_HZ)
    assert [t["kind"] for t in answer["tracks"]] == ["audio"]
    return client, peer


@pytest.mark.parametrize("order", [("audio", "video"), ("video", "audio")])
async def test_aiortc_max_bundle_whep_of_an_audio_only_publisher_connects_and_hears_it(
    gateway: RunningGateway, loopback_only: None, order: tuple[str, str]
) -> None:
    room = "whep-audio-only-" + "-".join(order)
    gateway.create_room(room)
    client, publisher = await _audio_only_publisher(gateway, room)
    viewer = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    heard = ReceivedTrack("tone", "audio")
    consumers: list[asyncio.Task[None]] = []
    connected = asyncio.Event()

    @viewer.on("connectionstatechange")
    def on_state() -> None:
        if viewer.connectionState == "connected":
            connected.set()

    @viewer.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        if track.kind != "audio":
            return

        async def consume() -> None:
            while True:
                frame = await track.recv()
                heard.frames += 1
                data = frame.to_ndarray().reshape(-1)
                heard.samples.append(data[:: len(frame.layout.channels)].copy())

        consumers.append(asyncio.create_task(consume()))

    try:
        for kind in order:
            viewer.addTransceiver(kind, direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{gateway.base_url}/ors/v1/rooms/{room}/whep",
                data=viewer.localDescription.sdp,
                headers={
                    "Authorization": f"Bearer {gateway.token(room, 'player', 'Player')}",
                    "Content-Type": "application/sdp",
                },
            ) as response,
        ):
            assert response.status == 201, await response.text()
            answer = await response.text()

        # the video m-section carries nothing, in a way every m-section stays usable
        parsed = sdp.parse(answer)
        by_kind = {m.kind: m for m in parsed.media}
        assert by_kind["audio"].direction == "sendonly"
        assert by_kind["video"].direction == "inactive"
        assert [m.mid for m in parsed.media] == [t.mid for t in viewer.getTransceivers()]

        await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(20):
            await connected.wait()
            while heard.frames < 60:
                await asyncio.sleep(0.1)
        assert abs(heard.frequency() - TONE_HZ) < 15
    finally:
        for task in consumers:
            task.cancel()
        await viewer.close()
        await publisher.close()
        await client.close()
