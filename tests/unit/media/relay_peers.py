"""Lean WebRTC peers (bench/srtp_client.py) on a MediaRelay, for the media tests."""

from __future__ import annotations

from bench.srtp_client import LeanPeer
from gateway.media.endpoint import PublishRequest, WebRtcEndpoint
from gateway.media.relay import MediaRelay


async def audio_publisher(relay: MediaRelay, room: str, name: str) -> tuple[LeanPeer, str]:
    """NAME publishing one audio track (mid 0) in ROOM over a connected peer: (peer, track id)."""
    _, peer, track_id = await publishing_endpoint(relay, room, name)
    return peer, track_id


async def publishing_endpoint(
    relay: MediaRelay, room: str, name: str
) -> tuple[WebRtcEndpoint, LeanPeer, str]:
    """As audio_publisher, with NAME's endpoint: (endpoint, peer, track id)."""
    endpoint = relay.create_endpoint(room, name)
    peer = LeanPeer()
    await peer.open()
    answer = endpoint.accept_publish_offer(
        peer.publish_offer(["0"]), [PublishRequest("0", "", "microphone")]
    )
    peer.apply_remote(answer.sdp)
    await peer.connect()
    return endpoint, peer, answer.tracks[0].track_id


async def subscribed_peer(endpoint: WebRtcEndpoint, track_id: str) -> LeanPeer:
    """A new peer connected to ENDPOINT's subscribe session, which carries TRACK_ID."""
    assert endpoint.subscribe(track_id)
    offer = endpoint.create_subscribe_offer()
    assert offer is not None and [t for _, t in offer.tracks] == [track_id]
    peer = LeanPeer()
    await peer.open()
    peer.apply_remote(offer.sdp)
    endpoint.accept_subscribe_answer(peer.subscribe_answer(offer.sdp))
    await peer.connect()
    return peer
