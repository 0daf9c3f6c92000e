"""Black-box conformance of an ORS v1 server's media (spec/ors-v1.md sections 8.2, 8.3, 8.5, 8.7,
10): join, publish a tone, subscribe and hear it, unpublish, leave; pause a video and resume it.
Needs aiortc (spec/conformance/webrtc.py).
"""

from __future__ import annotations

import asyncio

import pytest

from spec.conformance.orsclient import OrsClient
from spec.conformance.test_conformance import check_server_messages, joined
from spec.conformance.webrtc import WebRtcPeer

pytestmark = pytest.mark.interop

TONE_HZ = 587.0


async def close_all(*parts: WebRtcPeer | OrsClient | None) -> None:
    """Closes the peers and clients a test opened (None: never opened)."""
    for part in parts:
        if part is not None:
            await part.close()


async def test_join_publish_subscribe_unpublish_and_leave(ors_url: str, ors_room: str) -> None:
    alice = await joined(ors_url, ors_room, "Alice")
    alice_peer = WebRtcPeer(alice)
    bob = bob_peer = None
    try:
        answer = await alice_peer.publish(frequency=TONE_HZ)
        [track] = answer["tracks"]
        assert (track["kind"], track["source"]) == ("audio", "microphone")
        assert track["codec"].lower() == "opus"

        bob = await joined(ors_url, ors_room, "Bob")
        bob_peer = WebRtcPeer(bob)
        offer = await bob.next_event("offer")
        assert offer["pc"] == "subscribe"
        assert [t["track_id"] for t in offer["tracks"]] == [track["id"]]
        await bob_peer.accept_offer(offer)
        async with asyncio.timeout(20):
            while (heard := bob_peer.received.get(track["id"])) is None or heard.frames < 60:
                await asyncio.sleep(0.1)
        assert abs(heard.frequency() - TONE_HZ) < 15, "Bob must hear Alice's tone"

        await alice.request({"type": "unpublish", "track_id": track["id"]})
        gone = await bob.next_event("track_unpublished")
        assert gone["track_id"] == track["id"]

        await alice.send({"type": "leave"})
        left = await bob.next_event("participant_left")
        assert left["reason"] == "left"
        check_server_messages(alice)
        check_server_messages(bob)
    finally:
        await close_all(alice_peer, alice, bob_peer, bob)


async def frames_grow(peer: WebRtcPeer, track_id: str, by: int, within: float) -> None:
    """PEER receives BY more frames of TRACK_ID within WITHIN seconds."""
    start = peer.received[track_id].frames
    async with asyncio.timeout(within):
        while peer.received[track_id].frames < start + by:
            await asyncio.sleep(0.1)


async def test_a_paused_video_stops_and_resumes(ors_url: str, ors_room: str) -> None:
    """8.7: `subscribed: false` stops a track's forwarding while its owner's sound goes on;
    `true` brings the video back within seconds (10.5: at a key frame the server asks for)."""
    alice = await joined(ors_url, ors_room, "Alice")
    alice_peer = WebRtcPeer(alice)
    bob = bob_peer = None
    try:
        answer = await alice_peer.publish(frequency=TONE_HZ, video=True)
        ids = {t["kind"]: t["id"] for t in answer["tracks"]}
        bob = await joined(ors_url, ors_room, "Bob")
        bob_peer = WebRtcPeer(bob)
        await bob_peer.accept_offer(await bob.next_event("offer"))
        async with asyncio.timeout(20):
            while not all(t in bob_peer.received for t in ids.values()):
                await asyncio.sleep(0.1)
        await frames_grow(bob_peer, ids["video"], 10, 20)

        reply = await bob.request(
            {"type": "subscription", "track_id": ids["video"], "subscribed": False}
        )
        assert reply["type"] == "ok"
        await asyncio.sleep(1.0)  # what was on its way arrives
        paused_at = bob_peer.received[ids["video"]].frames
        await frames_grow(bob_peer, ids["audio"], 50, 10)  # 1 s of sound: it is not paused
        assert bob_peer.received[ids["video"]].frames <= paused_at + 1, "the video must stop"

        await bob.request({"type": "subscription", "track_id": ids["video"], "subscribed": True})
        await frames_grow(bob_peer, ids["video"], 10, 10)
        check_server_messages(bob)
    finally:
        await close_all(alice_peer, alice, bob_peer, bob)
