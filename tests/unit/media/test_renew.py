"""A media endpoint renewed for a resumed session (ORS 6.6): its retired publish session keeps
forwarding until the client's next publish offer replaces it (a refused offer changes nothing),
and its subscribe session starts over on a new transport that a new peer connects to."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from bench.srtp_client import LeanPeer, rtp_frames
from gateway.media.endpoint import PublishRequest, WebRtcEndpoint
from gateway.media.relay import MediaRelay
from gateway.media.sdp import SdpError
from tests.unit.media.relay_peers import audio_publisher, publishing_endpoint


class Talker:
    """A publisher's one audio stream (one SSRC, running sequence numbers), sent in turns."""

    def __init__(self, peer: LeanPeer) -> None:
        self.peer = peer
        ssrc = int.from_bytes(os.urandom(4), "big") | 1
        self._packets = iter(peer.protect(rtp_frames(0, 400, ssrc, mid="0", audio_level=20)))

    async def heard_by(self, subscriber: LeanPeer, count: int = 20) -> int:
        """Packets of the next COUNT that reach SUBSCRIBER."""
        before = subscriber.rtp_received
        for _ in range(count):
            self.peer.send(next(self._packets))
            await asyncio.sleep(0.003)
        await asyncio.sleep(0.3)
        return subscriber.rtp_received - before


async def _subscriber(endpoint: WebRtcEndpoint, *track_ids: str) -> LeanPeer:
    """A new peer that connects to ENDPOINT's subscribe session, which carries TRACK_IDS."""
    for track_id in track_ids:
        assert endpoint.subscribe(track_id)
    offer = endpoint.create_subscribe_offer()
    assert offer is not None and [t for _, t in offer.tracks] == list(track_ids)
    peer = LeanPeer()
    await peer.open()
    peer.apply_remote(offer.sdp)
    endpoint.accept_subscribe_answer(peer.subscribe_answer(offer.sdp))
    await peer.connect()
    return peer


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    relay = MediaRelay("127.0.0.1", 0, (0, -1))
    await relay.start()
    yield relay
    await relay.stop()


async def test_a_renewed_publish_session_forwards_until_a_new_offer_replaces_it(
    relay: MediaRelay,
) -> None:
    endpoint, old_peer, old_track = await publishing_endpoint(relay, "room", "alice")
    bob = relay.create_endpoint("room", "bob")
    listener = await _subscriber(bob, old_track)
    peers = [old_peer, listener]
    old = Talker(old_peer)
    try:
        assert await old.heard_by(listener) > 0
        endpoint.renew()
        assert await old.heard_by(listener) > 0  # retired, and still forwarded

        new_peer = LeanPeer()
        await new_peer.open()
        peers.append(new_peer)
        with pytest.raises(SdpError):  # a refused offer changes nothing
            endpoint.accept_publish_offer(
                new_peer.publish_offer(["0"]).replace("opus/48000/2", "speex/8000"),
                [PublishRequest("0", "", "microphone")],
            )
        assert await old.heard_by(listener) > 0

        answer = endpoint.accept_publish_offer(
            new_peer.publish_offer(["0"]), [PublishRequest("0", "TR_new", "microphone")]
        )
        assert [t.track_id for t in answer.tracks] == ["TR_new"]
        assert not relay.router("room").has_receiver(old_track)
        new_peer.apply_remote(answer.sdp)
        await new_peer.connect()
        assert await old.heard_by(listener) == 0  # the old track is gone from the room
        assert bob.subscribe("TR_new") and not bob.subscribe(old_track)
        offer = bob.create_subscribe_offer()
        assert offer is not None
        listener.apply_remote(offer.sdp)
        bob.accept_subscribe_answer(listener.subscribe_answer(offer.sdp))
        assert await Talker(new_peer).heard_by(listener) > 0
    finally:
        for peer in peers:
            peer.close()


async def test_a_renewed_subscribe_session_starts_over_on_a_new_transport(
    relay: MediaRelay,
) -> None:
    talker, track_id = await audio_publisher(relay, "room", "bob")
    alice = relay.create_endpoint("room", "alice")
    first = await _subscriber(alice, track_id)
    peers = [talker, first]
    stream = Talker(talker)
    try:
        assert await stream.heard_by(first) > 0
        alice.renew()
        assert alice.create_subscribe_offer() is None  # nothing wanted until asked again
        assert await stream.heard_by(first) == 0  # the old connection gets nothing more
        second = await _subscriber(alice, track_id)
        peers.append(second)
        assert await stream.heard_by(second) > 0
    finally:
        for peer in peers:
            peer.close()
