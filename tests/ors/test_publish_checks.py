"""Publish offers that disagree with their `tracks` (spec/ors-v1.md 8.2, 10.4, 10.6): each fails as a
whole with `negotiation_failed` and the documented `field`, publishes nothing (no track in the room,
no `track_published` for anyone else) and leaves the publish connection as it was: the tracks
already published keep flowing and the corrected offer is then answered.

The offers are a real aiortc peer's (max-bundle); a bad case changes its `tracks` or, for what a
browser would offer differently (other codecs, simulcast rids), its SDP text before it is sent.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aioice
import jwt
import pytest
from aiortc import RTCSessionDescription

from gateway.ors import schemas
from gateway.store import Store
from spec.conformance.orsclient import Message, OrsClient, OrsError
from spec.conformance.webrtc import PatternTrack, WebRtcPeer
from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop

Tracks = list[dict]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice skips 127.0.0.1 when it gathers; the tests stay on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *_, **__: ["127.0.0.1"])


def _video_section(sdp: str) -> tuple[int, int]:
    start = sdp.index("m=video")
    end = sdp.find("\r\nm=", start)
    return start, len(sdp) if end < 0 else end + 2


def only_unusable_video_codecs(sdp: str) -> str:
    """The video m-section offers codecs the server does not take (VP9, H.265 instead)."""
    start, end = _video_section(sdp)
    video = sdp[start:end].replace("VP8/90000", "VP9/90000").replace("H264/90000", "H265/90000")
    return sdp[:start] + video + sdp[end:]


def with_rids(*rids: str) -> Callable[[str], str]:
    """The video m-section sends simulcast with RIDS (a=rid send lines and a=simulcast)."""

    def munge(sdp: str) -> str:
        start, end = _video_section(sdp)
        lines = "".join(f"a=rid:{rid} send\r\n" for rid in rids)
        lines += f"a=simulcast:send {';'.join(rids)}\r\n"
        return sdp[:end] + lines + sdp[end:]

    return munge


@dataclass
class BadOffer:
    tracks: Tracks
    field: str
    sdp: Callable[[str], str] = lambda sdp: sdp


MIC = {"mid": "0", "source": "microphone"}
CAM = {"mid": "1", "source": "camera"}
LAYERS = [{"rid": "q", "height": 180}, {"rid": "h", "height": 360}, {"rid": "f", "height": 720}]

BAD_OFFERS = {
    # 8.2 / 9.16: a mid of `tracks` with no m-section
    "unknown_mid": BadOffer([MIC, {**CAM, "mid": "7"}], "/tracks/1/mid"),
    # the same mid twice
    "mid_twice": BadOffer([MIC, CAM, {**CAM, "source": "screen"}], "/tracks/2/mid"),
    # 10.4: the source fits the kind
    "camera_on_audio": BadOffer([{**MIC, "source": "camera"}, CAM], "/tracks/0/source"),
    "microphone_on_video": BadOffer([MIC, {**CAM, "source": "microphone"}], "/tracks/1/source"),
    "screen_audio_on_video": BadOffer([MIC, {**CAM, "source": "screen_audio"}], "/tracks/1/source"),
    # 10.4 step 2: an m-section without a usable codec fails the whole offer
    "no_usable_codec": BadOffer([MIC, CAM], "/tracks/1", only_unusable_video_codecs),
    # 10.6: the rids of `simulcast` are the m-section's a=rid lines
    "simulcast_without_rid_lines": BadOffer(
        [MIC, {**CAM, "simulcast": LAYERS}], "/tracks/1/simulcast"
    ),
    "simulcast_other_rids": BadOffer(
        [MIC, {**CAM, "simulcast": LAYERS[:2]}], "/tracks/1/simulcast", with_rids("q", "h", "x")
    ),
    "rid_lines_without_simulcast": BadOffer([MIC, CAM], "/tracks/1/simulcast", with_rids("q", "h")),
    # 10.4 step 3: `tracks` lists every m-section that sends media
    "sending_section_not_listed": BadOffer([MIC], "/tracks"),
    # the SDP as a whole
    "not_sdp": BadOffer([MIC, CAM], "/sdp", lambda sdp: "hello"),
    "no_fingerprint": BadOffer(
        [MIC, CAM], "/sdp", lambda sdp: re.sub(r"a=fingerprint:[^\r]*\r\n", "", sdp)
    ),
}


@dataclass
class Scene:
    """Alice publishes a tone; Bob watches and hears it; Alice then offers a camera too."""

    room: str
    alice: OrsClient
    alice_peer: WebRtcPeer
    bob: OrsClient
    bob_peer: WebRtcPeer
    mic_track: dict
    camera_offer: str


async def joined_client(gateway: RunningGateway, room: str, identity: str) -> OrsClient:
    client = await OrsClient.connect(gateway.base_url, room)
    await client.join(gateway.token(room, identity, identity.capitalize()))
    return client


def room_tracks(gateway: RunningGateway, room: str) -> list[dict]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200
    return sorted(
        (t for p in body["participants"] for t in p.get("tracks", [])), key=lambda t: t["id"]
    )


async def frames_grow(peer: WebRtcPeer, track_id: str, more: int = 25) -> None:
    """Bounded wait for MORE audio frames of TRACK_ID than the peer has now."""
    async with asyncio.timeout(20):
        while peer.received.get(track_id) is None:
            await asyncio.sleep(0.05)
        target = peer.received[track_id].frames + more
        while peer.received[track_id].frames < target:
            await asyncio.sleep(0.05)


async def barrier(sender: OrsClient, *watchers: OrsClient) -> list[Message]:
    """Events are sent in the order they happen (6.3): once the watchers have Alice's chat, they
    have every event a failed offer before it could have caused. Returns what they got meanwhile."""
    marker = f"barrier-{id(sender)}-{len(sender.received)}"
    await sender.request({"type": "chat", "text": marker})
    seen: list[Message] = []
    for watcher in watchers:
        while True:
            event = await watcher.next_event(timeout=10)
            if event["type"] == "chat" and event["message"]["text"] == marker:
                break
            seen.append(event)
    return seen


@pytest.fixture
async def scene(gateway: RunningGateway, request: pytest.FixtureRequest) -> AsyncIterator[Scene]:
    room = "publish-checks-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-40:].strip(
        "-"
    )
    gateway.create_room(room)
    alice = await joined_client(gateway, room, "alice")
    alice_peer = WebRtcPeer(alice)
    bob = bob_peer = None
    try:
        [mic_track] = (await alice_peer.publish(frequency=523.0))["tracks"]
        bob = await joined_client(gateway, room, "bob")
        bob_peer = WebRtcPeer(bob)
        await bob_peer.accept_offer(await bob.next_event("offer"))
        await frames_grow(bob_peer, mic_track["id"])
        alice_peer.publish_pc.addTransceiver(PatternTrack(), direction="sendonly")
        await alice_peer.publish_pc.setLocalDescription(await alice_peer.publish_pc.createOffer())
        camera_offer = alice_peer.publish_pc.localDescription.sdp
        assert [t.mid for t in alice_peer.publish_pc.getTransceivers()] == ["0", "1"]
        yield Scene(room, alice, alice_peer, bob, bob_peer, mic_track, camera_offer)
        for client in (alice, bob):
            for message in client.received:
                schemas.validate("server", message)
    finally:
        await alice_peer.close()
        await alice.close()
        if bob_peer is not None and bob is not None:
            await bob_peer.close()
            await bob.close()


@pytest.mark.parametrize("case", list(BAD_OFFERS))
async def test_an_offer_disagreeing_with_its_tracks_fails_whole_and_publishes_nothing(
    gateway: RunningGateway, scene: Scene, case: str
) -> None:
    bad = BAD_OFFERS[case]
    room = scene.room
    before = room_tracks(gateway, room)
    assert [t["id"] for t in before] == [scene.mic_track["id"]]
    offer = {"type": "offer", "pc": "publish", "tracks": bad.tracks}

    with pytest.raises(OrsError) as error:
        await scene.alice.request({**offer, "sdp": bad.sdp(scene.camera_offer)})
    problem = error.value.problem
    assert (problem["code"], problem["status"], problem.get("field")) == (
        "negotiation_failed",
        400,
        bad.field,
    ), problem

    # nothing was published: not in the room, not announced to Bob, no new subscribe offer
    assert room_tracks(gateway, room) == before
    during = await barrier(scene.alice, scene.bob)
    assert [e["type"] for e in during if e["type"] in ("track_published", "offer")] == []
    # the publish connection is as it was: Alice's tone still reaches Bob
    await frames_grow(scene.bob_peer, scene.mic_track["id"])

    # and the corrected offer is answered: the microphone keeps its track, the camera is new
    answer = await scene.alice.request({**offer, "sdp": scene.camera_offer, "tracks": [MIC, CAM]})
    mic, camera = answer["tracks"]
    assert mic["id"] == scene.mic_track["id"] and (camera["kind"], camera["source"]) == (
        "video",
        "camera",
    )
    published = await scene.bob.next_event("track_published")
    assert published["track"]["id"] == camera["id"]
    await scene.alice_peer.publish_pc.setRemoteDescription(
        RTCSessionDescription(answer["sdp"], "answer")
    )
    assert [t["id"] for t in room_tracks(gateway, room)] == sorted([mic["id"], camera["id"]])


async def test_a_first_offer_that_fails_publishes_nothing_and_a_good_one_follows(
    gateway: RunningGateway,
) -> None:
    """No publish connection yet: the failed offer creates nothing, and the good offer works."""
    gateway.create_room("publish-checks-first")
    alice = await joined_client(gateway, "publish-checks-first", "alice")
    bob = await joined_client(gateway, "publish-checks-first", "bob")
    peer = WebRtcPeer(alice)
    try:
        peer.publish_pc.addTransceiver("audio", direction="sendonly")
        await peer.publish_pc.setLocalDescription(await peer.publish_pc.createOffer())
        sdp = peer.publish_pc.localDescription.sdp
        offer = {"type": "offer", "pc": "publish", "sdp": sdp}
        with pytest.raises(OrsError) as error:
            await alice.request({**offer, "tracks": [{"mid": "0", "source": "screen"}]})
        assert error.value.problem.get("field") == "/tracks/0/source"
        assert room_tracks(gateway, "publish-checks-first") == []
        assert [e["type"] for e in await barrier(alice, bob)] == []
        answer = await alice.request({**offer, "tracks": [{"mid": "0", "source": "screen_audio"}]})
        assert [(t["kind"], t["source"]) for t in answer["tracks"]] == [("audio", "screen_audio")]
        assert (await bob.next_event("track_published"))["track"]["source"] == "screen_audio"
    finally:
        await peer.close()
        await alice.close()
        await bob.close()


def livekit_token(gateway: RunningGateway, room: str, identity: str, sources: list[str]) -> str:
    """A LiveKit-shaped `video` grant (spec 5.3) limited to SOURCES by canPublishSources."""
    secret = Store(gateway.data_dir / "rondpoint.sqlite3").token_keys()["rondpoint"]
    claims = {
        "iss": "rondpoint",
        "sub": identity,
        "name": identity.capitalize(),
        "exp": int(time.time()) + 600,
        "video": {"roomJoin": True, "room": room, "canPublishSources": sources},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_a_source_the_token_may_not_publish_is_forbidden_and_publishes_nothing(
    gateway: RunningGateway,
) -> None:
    """Spec 5.3 canPublishSources: a microphone-only token offering a camera too gets forbidden
    on that entry's source; nothing is published; the microphone alone is then answered."""
    room = "publish-checks-sources"
    gateway.create_room(room)
    alice = await OrsClient.connect(gateway.base_url, room)
    await alice.join(livekit_token(gateway, room, "alice", ["microphone"]))
    bob = await joined_client(gateway, room, "bob")
    peer = WebRtcPeer(alice)
    try:
        peer.publish_pc.addTransceiver("audio", direction="sendonly")
        peer.publish_pc.addTransceiver(PatternTrack(), direction="sendonly")
        await peer.publish_pc.setLocalDescription(await peer.publish_pc.createOffer())
        offer = {"type": "offer", "pc": "publish", "sdp": peer.publish_pc.localDescription.sdp}
        with pytest.raises(OrsError) as error:
            await alice.request({**offer, "tracks": [MIC, CAM]})
        problem = error.value.problem
        assert (problem["code"], problem["status"], problem.get("field")) == (
            "forbidden",
            403,
            "/tracks/1/source",
        )
        assert room_tracks(gateway, room) == []
        assert [e["type"] for e in await barrier(alice, bob)] == []

        # the same offer with the camera turned receive-only publishes the microphone alone
        start, end = _video_section(offer["sdp"])
        video = offer["sdp"][start:end].replace("a=sendonly", "a=recvonly")
        only_mic = offer["sdp"][:start] + video + offer["sdp"][end:]
        answer = await alice.request({**offer, "sdp": only_mic, "tracks": [MIC]})
        assert [t["source"] for t in answer["tracks"]] == ["microphone"]
        assert (await bob.next_event("track_published"))["track"]["source"] == "microphone"
    finally:
        await peer.close()
        await alice.close()
        await bob.close()
