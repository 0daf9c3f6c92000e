"""A media endpoint renewed for a resumed session (ORS 6.6): its retired publish session keeps
forwarding until the client's next publish offer replaces it (a refused offer changes nothing),
and its subscribe session starts over on a new transport that a new peer connects to."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bench.srtp_client import LeanPeer, rtp_frames
from gateway.media.endpoint import PublishRequest, WebRtcEndpoint
from gateway.media.relay import MediaRelay
from gateway.media.sdp import SdpError
from tests.unit.media.relay_peers import publishing_endpoint, subscribed_peer


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


@dataclass
class Call:
    """Alice publishes a tone in "room"; Bob receives it."""

    relay: MediaRelay
    alice: WebRtcEndpoint
    talker: Talker
    track_id: str
    bob: WebRtcEndpoint
    listener: LeanPeer
    peers: list[LeanPeer]
    """Every peer of the test, closed at its end."""


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    relay = MediaRelay("127.0.0.1", 0, (0, -1))
    await relay.start()
    peers: list[LeanPeer] = []
    try:
        alice, peer, track_id = await publishing_endpoint(relay, "room", "alice")
        peers.append(peer)
        bob = relay.create_endpoint("room", "bob")
        listener = await subscribed_peer(bob, track_id)
        peers.append(listener)
        call = Call(relay, alice, Talker(peer), track_id, bob, listener, peers)
        assert await call.talker.heard_by(listener) > 0
        yield call
    finally:
        for peer in peers:
            peer.close()
        await relay.stop()


async def test_a_renewed_publish_session_forwards_until_a_new_offer_replaces_it(
    call: Call,
) -> None:
    call.alice.renew()
    assert await call.talker.heard_by(call.listener) > 0  # retired, and still forwarded

    new_peer = LeanPeer()
    await new_peer.open()
    call.peers.append(new_peer)
    with pytest.raises(SdpError):  # a refused offer changes nothing
        call.alice.accept_publish_offer(
            new_peer.publish_offer(["0"]).replace("opus/48000/2", "speex/8000"),
            [PublishRequest("0", "", "microphone")],
        )
    assert await call.talker.heard_by(call.listener) > 0

    answer = call.alice.accept_publish_offer(
        new_peer.publish_offer(["0"]), [PublishRequest("0", "TR_new", "microphone")]
    )
    assert [t.track_id for t in answer.tracks] == ["TR_new"]
    assert not call.relay.router("room").has_receiver(call.track_id)
    new_peer.apply_remote(answer.sdp)
    await new_peer.connect()
    assert await call.talker.heard_by(call.listener) == 0  # the old track is gone from the room
    assert call.bob.subscribe("TR_new") and not call.bob.subscribe(call.track_id)
    offer = call.bob.create_subscribe_offer()
    assert offer is not None
    call.listener.apply_remote(offer.sdp)
    call.bob.accept_subscribe_answer(call.listener.subscribe_answer(offer.sdp))
    assert await Talker(new_peer).heard_by(call.listener) > 0


async def test_a_renewed_subscribe_session_starts_over_on_a_new_transport(call: Call) -> None:
    call.bob.renew()
    assert call.bob.create_subscribe_offer() is None  # nothing wanted until asked again
    assert await call.talker.heard_by(call.listener) == 0  # the old connection gets nothing
    second = await subscribed_peer(call.bob, call.track_id)
    call.peers.append(second)
    assert await call.talker.heard_by(second) > 0
