"""WHIP (RFC 9725) publishing and WHEP viewing, with aiortc peers against a real gateway."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from spec.conformance.webrtc import ReceivedTrack, ToneTrack
from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop


async def test_whip_publisher_is_heard_by_a_whep_viewer(gateway: RunningGateway) -> None:
    gateway.create_room("broadcast")
    publisher = RTCPeerConnection()
    publisher.addTransceiver(ToneTrack(880.0), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    url = gateway.base_url + "/ors/v1/rooms/broadcast"
    async with aiohttp.ClientSession() as http:
        headers = {
            "Authorization": f"Bearer {gateway.token('broadcast', 'obs', 'OBS Studio')}",
            "Content-Type": "application/sdp",
        }
        async with http.post(
            url + "/whip", data=publisher.localDescription.sdp, headers=headers
        ) as response:
            assert response.status == 201
            assert response.content_type == "application/sdp"
            whip_location = response.headers["Location"]
            await publisher.setRemoteDescription(
                RTCSessionDescription(await response.text(), "answer")
            )
        shown = gateway.admin("GET", "/api/v1/rooms/broadcast")[1]
        assert [p["name"] for p in shown["participants"]] == ["OBS Studio"]

        viewer = RTCPeerConnection()
        viewer.addTransceiver("audio", direction="recvonly")
        received = ReceivedTrack("tone", "audio")
        consumers: list[asyncio.Task[None]] = []

        @viewer.on("track")
        def on_track(track) -> None:  # type: ignore[no-untyped-def]
            async def consume() -> None:
                while True:
                    frame = await track.recv()
                    received.frames += 1
                    data = frame.to_ndarray().reshape(-1)
                    received.samples.append(data[:: len(frame.layout.channels)].copy())

            consumers.append(asyncio.create_task(consume()))

        await viewer.setLocalDescription(await viewer.createOffer())
        headers["Authorization"] = f"Bearer {gateway.token('broadcast', 'viewer', 'Viewer')}"
        async with http.post(
            url + "/whep", data=viewer.localDescription.sdp, headers=headers
        ) as response:
            assert response.status == 201
            await viewer.setRemoteDescription(
                RTCSessionDescription(await response.text(), "answer")
            )
        async with asyncio.timeout(15):
            while received.frames < 60:
                await asyncio.sleep(0.1)
        assert abs(received.frequency() - 880.0) < 15

        async with http.patch(gateway.base_url + whip_location, headers=headers) as response:
            assert response.status == 405
        async with http.delete(gateway.base_url + whip_location, headers=headers) as response:
            assert response.status == 200
        shown = gateway.admin("GET", "/api/v1/rooms/broadcast")[1]
        assert "OBS Studio" not in [p["name"] for p in shown["participants"]]
    for task in consumers:
        task.cancel()
    await publisher.close()
    await viewer.close()


async def test_whip_without_a_token_is_refused(gateway: RunningGateway) -> None:
    gateway.create_room("broadcast-2")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.base_url + "/ors/v1/rooms/broadcast-2/whip",
            data="v=0\r\n",
            headers={"Content-Type": "application/sdp"},
        ) as response,
    ):
        assert response.status == 401
        assert (await response.json(content_type=None))["code"] == "token_invalid"
    assert gateway.admin("GET", "/api/v1/rooms/broadcast-2")[1]["participants"] == []
