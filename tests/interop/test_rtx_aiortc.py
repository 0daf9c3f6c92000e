"""RTX towards a real subscriber: an aiortc viewer that loses video packets NACKs them and gets
them back as RFC 4588 retransmissions on the RTX SSRC the relay offered, and keeps decoding."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket

from gateway.media import sdp
from gateway.media.endpoint import PublishRequest
from gateway.media.relay import MediaRelay
from spec.conformance.webrtc import PatternTrack

pytestmark = pytest.mark.interop

DROP_EVERY = 25  # of the viewer's incoming video packets, one in this many is lost...
MAX_DROPS = 12  # ...up to this many


class LossyReceive:
    """Wraps an aiortc ICE transport's receive: drops some SRTP packets of one SSRC (the RTP
    header stays in clear under SRTP) and counts the packets that arrive on another."""

    def __init__(self, recv: Callable[[], Awaitable[bytes]], media_ssrc: int, rtx_ssrc: int):
        self._recv = recv
        self.media_ssrc = media_ssrc
        self.rtx_ssrc = rtx_ssrc
        self.seen = 0
        self.dropped: list[int] = []  # sequence numbers
        self.rtx_received = 0

    async def __call__(self) -> bytes:
        while True:
            data = await self._recv()
            if len(data) < 12 or not 128 <= data[0] < 192 or 64 <= data[1] & 0x7F < 96:
                return data  # DTLS, STUN or RTCP
            ssrc = int.from_bytes(data[8:12], "big")
            if ssrc == self.rtx_ssrc:
                self.rtx_received += 1
            elif ssrc == self.media_ssrc:
                self.seen += 1
                # not the first packets: the stream must start (keyframe) before losses count
                if self.seen > 30 and self.seen % DROP_EVERY == 0 and len(self.dropped) < MAX_DROPS:
                    self.dropped.append(int.from_bytes(data[2:4], "big"))
                    continue
            return data


async def test_lost_video_packets_come_back_as_rtx_and_decoding_goes_on(
    loopback_only: None,
) -> None:
    relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0))
    await relay.start()
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        video = publisher.addTransceiver(PatternTrack(), direction="sendonly")
        video.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType in ("video/VP8", "video/rtx")
            ]
        )
        await publisher.setLocalDescription(await publisher.createOffer())
        alice = relay.create_endpoint("room-rtx", "alice")
        answer = alice.accept_publish_offer(
            publisher.localDescription.sdp,
            [PublishRequest(str(video.mid), "alice-cam", "camera")],
        )
        await publisher.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

        bob = relay.create_endpoint("room-rtx", "bob")
        assert bob.subscribe("alice-cam")
        offer = bob.create_subscribe_offer()
        assert offer is not None
        (media,) = sdp.parse(offer.sdp).media
        [group] = media.ssrc_groups
        assert group.semantics == "FID"
        media_ssrc, rtx_ssrc = group.ssrcs
        received: list[MediaStreamTrack] = []
        viewer.on("track", received.append)
        await viewer.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await viewer.setLocalDescription(await viewer.createAnswer())
        assert "rtx/90000" in viewer.localDescription.sdp  # aiortc kept RTX in its answer
        receiver = viewer.getTransceivers()[0].receiver
        ice = receiver.transport.transport
        lossy = LossyReceive(ice._recv, media_ssrc, rtx_ssrc)
        ice._recv = lossy  # type: ignore[method-assign]
        # what aiortc's receiver gets on the RTX SSRC, decrypted: the OSN of each retransmission
        repaired: set[int] = set()
        handle = receiver._handle_rtp_packet

        async def observe(packet: RtpPacket, arrival_time_ms: int) -> None:
            if packet.ssrc == rtx_ssrc and len(packet.payload) >= 2:
                repaired.add(int.from_bytes(packet.payload[:2], "big"))
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = observe  # type: ignore[method-assign]
        bob.accept_subscribe_answer(viewer.localDescription.sdp)
        assert len(received) == 1

        frames = 0
        async with asyncio.timeout(30):
            while frames < 150 or len(lossy.dropped) < MAX_DROPS:
                await received[0].recv()
                frames += 1
            while not repaired >= set(lossy.dropped):
                await received[0].recv()
                frames += 1
        stats = bob._router.stats
        assert stats.nacks >= len(lossy.dropped)
        assert stats.retransmissions >= len(lossy.dropped)
        assert lossy.rtx_received >= len(lossy.dropped) == MAX_DROPS
        assert repaired >= set(lossy.dropped)  # every lost packet came back, as RTX
        # aiortc unwrapped them (RFC 4588): none is still missing in its NACK generator
        assert not set(lossy.dropped) & receiver._RTCRtpReceiver__nack_generator.missing
        assert frames >= 150
    finally:
        await publisher.close()
        await viewer.close()
        await relay.stop()
