"""Lean WebRTC peers (bench/srtp_client.py) on a MediaRelay, for the media tests."""

from __future__ import annotations

from bench.srtp_client import LeanPeer
from gateway.media.endpoint import PublishRequest
from gateway.media.relay import MediaRelay


async def audio_publisher(relay: MediaRelay, room: str, name: str) -> tuple[LeanPeer, str]:
    """NAME publishing one audio track (mid 0) in ROOM over a connected peer: (peer, track id)."""
    endpoint = relay.create_endpoint(room, name)
    peer = LeanPeer()
    await peer.open()
    answer = endpoint.accept_publish_offer(
        peer.publish_offer(["0"]), [PublishRequest("0", "", "microphone")]
    )
    peer.apply_remote(answer.sdp)
    await peer.connect()
    return peer, answer.tracks[0].track_id
