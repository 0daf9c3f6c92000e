"""A subscriber's choices (pause, tallest layer) hold whenever they come: also when sent before
its subscribe transport connected, as a client does right after the offer."""

from __future__ import annotations

import asyncio
import os

from bench.srtp_client import LeanPeer, rtp_frames
from gateway.media.relay import MediaRelay
from tests.unit.media.relay_peers import audio_publisher


async def _received_after(publisher: LeanPeer, subscriber: LeanPeer, packets: list[bytes]) -> int:
    """How many of PACKETS (sent now) reached the subscriber."""
    before = len(subscriber.samples)
    for packet in packets:
        publisher.send(packet)
        await asyncio.sleep(0.003)
    await asyncio.sleep(0.3)
    return len(subscriber.samples) - before


async def test_choices_sent_before_the_subscribe_transport_connected_hold() -> None:
    relay = MediaRelay("127.0.0.1", 0, (0, -1))
    await relay.start()
    subscriber, publisher = LeanPeer(), None
    try:
        publisher, track_id = await audio_publisher(relay, "room", "alice")

        bob = relay.create_endpoint("room", "bob")
        assert bob.subscribe(track_id)
        offer = bob.create_subscribe_offer()
        assert offer is not None
        # the client answers the offer and at once says what it wants, before ICE and DTLS
        bob.set_paused(track_id, True)
        bob.set_max_height(track_id, 180)
        await subscriber.open()
        subscriber.apply_remote(offer.sdp)
        bob.accept_subscribe_answer(subscriber.subscribe_answer(offer.sdp))
        await subscriber.connect()

        [info] = relay.router("room").subscriber_downtracks("bob")
        assert (info.paused, info.max_height) == (True, 180)
        ssrc = int.from_bytes(os.urandom(4), "big") | 1
        packets = publisher.protect(rtp_frames(0, 40, ssrc, mid="0", audio_level=20))
        assert await _received_after(publisher, subscriber, packets[:20]) == 0
        bob.set_paused(track_id, False)
        assert await _received_after(publisher, subscriber, packets[20:]) > 0
    finally:
        if publisher is not None:
            publisher.close()
        subscriber.close()
        await relay.stop()
