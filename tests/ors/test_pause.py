"""A subscriber pausing and resuming a video (spec 8.7 `subscription` `subscribed`), against a real
gateway: paused, nothing of it arrives while its sound does; resumed, the gateway asks the
publisher for a keyframe and the picture is back at once; a subscriber toggling a thousand times a
second gets no keyframe storm sent to the publisher. Nobody else can pause what a subscriber
receives, and bad requests get their documented errors.

Keyframe requests are read from the gateway's metrics (rondpoint_relay_keyframe_requests).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.request

import pytest

from gateway.media.router import KEYFRAME_REQUESTS_PER_SECOND
from spec.conformance.orsclient import OrsClient, OrsError
from spec.conformance.webrtc import ReceivedTrack, WebRtcPeer
from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop

TOGGLES = 2_000


def keyframe_requests(gateway: RunningGateway) -> int:
    with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^rondpoint_relay_keyframe_requests_total ([0-9.e+]+)$", text, re.M)
    assert found, text
    return int(float(found.group(1)))


async def frames_over(received: ReceivedTrack, seconds: float) -> int:
    before = received.frames
    await asyncio.sleep(seconds)
    return received.frames - before


async def wait_for(received: ReceivedTrack, frames: int, seconds: float, what: str) -> None:
    """Until RECEIVED has decoded FRAMES more frames, within SECONDS."""
    target = received.frames + frames
    try:
        async with asyncio.timeout(seconds):
            while received.frames < target:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: {received.frames} frames, not {target}") from None


async def alice_seen_by_bob(
    gateway: RunningGateway, room: str
) -> tuple[OrsClient, WebRtcPeer, OrsClient, WebRtcPeer, dict[str, str]]:
    """Alice publishes a tone and a camera in ROOM (a new room); Bob receives both. The track ids
    by kind come last."""
    gateway.create_room(room)
    alice = await OrsClient.connect(gateway.base_url, room)
    await alice.join(gateway.token(room, "alice", "Alice"))
    alice_peer = WebRtcPeer(alice)
    answer = await alice_peer.publish(video=True)
    tracks = {t["kind"]: t["id"] for t in answer["tracks"]}
    bob = await OrsClient.connect(gateway.base_url, room)
    await bob.join(gateway.token(room, "bob", "Bob"))
    bob_peer = WebRtcPeer(bob)
    await bob_peer.accept_offer(await bob.next_event("offer"))
    async with asyncio.timeout(20):
        while len(bob_peer.received) < 2 or any(r.frames < 10 for r in bob_peer.received.values()):
            await asyncio.sleep(0.1)
    return alice, alice_peer, bob, bob_peer, tracks


async def test_a_paused_video_stops_and_resumes_on_a_keyframe(gateway: RunningGateway) -> None:
    alice, alice_peer, bob, bob_peer, tracks = await alice_seen_by_bob(gateway, "pause-room")
    video, audio = bob_peer.received[tracks["video"]], bob_peer.received[tracks["audio"]]

    # Paused: no more video (what was on its way arrives, then nothing), the sound goes on.
    reply = await bob.request(
        {"type": "subscription", "track_id": tracks["video"], "subscribed": False}
    )
    assert reply["type"] == "ok"
    await asyncio.sleep(0.5)
    assert await frames_over(video, 2.0) == 0
    assert await frames_over(audio, 1.0) > 0

    # Resumed: the gateway asks Alice for a keyframe, and Bob's picture is back within seconds.
    before = keyframe_requests(gateway)
    await bob.request({"type": "subscription", "track_id": tracks["video"], "subscribed": True})
    await wait_for(video, 10, 5.0, "the video after resuming")
    assert keyframe_requests(gateway) > before

    # Toggled for seconds, a thousand times a second: the publisher gets no more than the
    # per-publisher budget of keyframe requests, and the video ends up flowing.
    before = keyframe_requests(gateway)
    started = time.monotonic()
    for n in range(TOGGLES):
        await bob.send(
            {"type": "subscription", "track_id": tracks["video"], "subscribed": n % 2 == 1}
        )
        await asyncio.sleep(0.001)
    await bob.request({"type": "ping"})  # every toggle handled
    elapsed = time.monotonic() - started
    requested = keyframe_requests(gateway) - before
    assert elapsed > 2.0
    # (the budget's one-second windows need not start with the toggles: one more window)
    assert requested <= KEYFRAME_REQUESTS_PER_SECOND * (math.ceil(elapsed) + 1), (
        requested,
        elapsed,
    )
    await wait_for(video, 10, 5.0, "the video after the toggles")
    errors = [m for m in bob.received if m["type"] == "error"]
    assert errors == []

    await alice_peer.close()
    await bob_peer.close()
    await alice.close()
    await bob.close()


async def test_only_the_subscriber_pauses_what_it_receives(gateway: RunningGateway) -> None:
    """An unknown track, a malformed `subscription`, the publisher pausing its own track, a guest
    in the lobby: each gets its documented answer and nobody's video stops."""
    alice, alice_peer, bob, bob_peer, tracks = await alice_seen_by_bob(gateway, "pause-abuse")
    video = bob_peer.received[tracks["video"]]

    with pytest.raises(OrsError) as unknown:
        await bob.request(
            {"type": "subscription", "track_id": "TR_nosuchtrack", "subscribed": False}
        )
    assert (unknown.value.code, unknown.value.problem["status"]) == ("track_not_found", 404)
    for bad in ({"subscribed": "no"}, {"max_height": -1}, {"max_height": 1.5}):
        with pytest.raises(OrsError) as malformed:
            await bob.request({"type": "subscription", "track_id": tracks["video"], **bad})
        assert malformed.value.code == "invalid_message", bad
    # Alice pausing her own camera pauses nothing she does not receive: Bob still gets it
    reply = await alice.request(
        {"type": "subscription", "track_id": tracks["video"], "subscribed": False}
    )
    assert reply["type"] == "ok"

    # a guest waiting in a lobby receives nothing, and may not ask (6.4)
    gateway.create_room("pause-lobby", lobby=True)
    guest = await OrsClient.connect(gateway.base_url, "pause-lobby")
    assert (await guest.join(gateway.token("pause-lobby", "guest", role="guest")))[
        "type"
    ] == "lobby"
    with pytest.raises(OrsError) as waiting:
        await guest.request(
            {"type": "subscription", "track_id": tracks["video"], "subscribed": False}
        )
    assert waiting.value.code == "invalid_state"

    await wait_for(video, 30, 5.0, "Bob's video after all that")
    await guest.close()
    await alice_peer.close()
    await bob_peer.close()
    await alice.close()
    await bob.close()
