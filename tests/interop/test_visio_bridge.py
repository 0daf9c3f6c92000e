"""The Visio bridge (protocols/visio) against a real livekit-server, LiveKit's official SDK playing
the Visio users, a baresip phone and an ORS WebRTC client in the linked room.

What a Visio user sees: each person from here as their own participant with the right name and
`rondpoint.origin`, phones with `sip.phoneNumber` masked as here, each with their own audio;
what people here get: the Visio user with name, audio and video, mute state and chat; raised
hands and reactions both ways, as Visio carries them (an attribute, a data packet).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from livekit import api, rtc
from livekit.protocol import models as lkmodels
from livekit.protocol import rtc as lkrtc

from gateway.media.audio.tone import tone_amplitude
from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import SAMPLE_RATE, WebRtcPeer
from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.baresip import Baresip
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_sdk import VisioUser, visio_user
from tests.interop.sipp_tools import wait_until

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

VISIO_HZ = 440.0
BROWSER_HZ = 523.0
PHONE_HZ = 1000.0
PHONE_NUMBER = "0140506042"
PREFIX = "rondpoint-"


def visio_config(lk: RunningLiveKit, secret: str | None = None) -> str:
    return (
        f'[visio]\nurl = "{lk.url}"\napi_key = "{lk.api_key}"\n'
        f'api_secret = "{secret or lk.api_secret}"\nreconnect_max_seconds = 2\n'
    )


@pytest.fixture
def gateway(tmp_path: Path, livekit_server: RunningLiveKit) -> Iterator[RunningGateway]:
    with running_gateway(tmp_path, visio_config(livekit_server)) as running:
        yield running


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Baresip]:
    async with Baresip(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER) as running:
        yield running


def link(gateway: RunningGateway, room: str, visio_room: str) -> None:
    status, body = gateway.admin(
        "POST", f"/api/v1/rooms/{room}/links", {"target": f"visio:{visio_room}"}
    )
    assert status == 201, body


def link_state(gateway: RunningGateway, room: str) -> dict:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}/links")
    assert status == 200, body
    items = body["links"] if isinstance(body, dict) else body
    return dict(items[0]["status"])


async def wait_linked(gateway: RunningGateway, room: str, timeout: float = 15) -> None:
    await wait_until(
        lambda: link_state(gateway, room)["state"] == "connected",
        timeout,
        f"the link never connected: {link_state(gateway, room)}",
    )


async def accept_offers_until(
    host: OrsClient, peer: WebRtcPeer, done: Callable[[], bool], message: str, timeout: float = 15
) -> None:
    """Answer the server's subscribe offers (each supersedes the last) until DONE."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, message
        with contextlib.suppress(TimeoutError):
            await peer.accept_offer(await host.next_event("offer", timeout=0.5))


@contextlib.asynccontextmanager
async def bruno_here(
    gateway: RunningGateway, room: str, *, video: bool = False, screen: bool = False
) -> AsyncIterator[tuple[OrsClient, WebRtcPeer]]:
    """Bruno Petit, a host here on an ORS WebRTC client, publishing a tone (and a camera, a screen
    share)."""
    host = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(host)
    try:
        joined = await host.join(gateway.token(room, "bruno", "Bruno Petit", role="host"))
        assert joined["type"] == "joined"
        await peer.publish(frequency=BROWSER_HZ, video=video, screen=screen)
        yield host, peer
    finally:
        await peer.close()
        await host.close()


async def linked_room(gateway: RunningGateway, room: str) -> str:
    """ROOM made here and linked to a new Visio room, whose UUID it returns once connected."""
    visio_room = str(uuid.uuid4())
    gateway.create_room(room)
    link(gateway, room, visio_room)
    await wait_linked(gateway, room)
    return visio_room


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def packets_per_second(gateway: RunningGateway, room: str, seconds: float = 2.0) -> float:
    """RTP packets a second that the room's link receives from LiveKit (its status counter)."""
    before = link_state(gateway, room)["packets_in"]
    await asyncio.sleep(seconds)
    return (link_state(gateway, room)["packets_in"] - before) / seconds


def participants(gateway: RunningGateway, room: str) -> list[dict]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return list(body["participants"])


async def test_visio_and_room_become_one_meeting(
    gateway: RunningGateway, livekit_server: RunningLiveKit, phone: Baresip
) -> None:
    room, visio_room = "mairie-lyon", str(uuid.uuid4())
    gateway.create_room(room)
    async with visio_user(livekit_server, visio_room, "alice-oidc-sub", "Alice Martin") as alice:
        await alice.publish_tone(VISIO_HZ)
        await alice.publish_video()
        link(gateway, room, visio_room)
        await wait_linked(gateway, room)

        async with bruno_here(gateway, room) as (host, peer):
            await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
            await phone.wait_event("CALL_ESTABLISHED", timeout=10)

            # Visio's side: two participants from here, each with a name, origin and own audio.
            bruno = await alice.wait_participant(lambda p: p.name == "Bruno Petit", timeout=15)
            assert bruno.identity.startswith(PREFIX)
            assert bruno.attributes.get("rondpoint.origin") == "ors"
            caller = await alice.wait_participant(lambda p: p.name == "Phone ••• 42", timeout=15)
            assert caller.attributes.get("rondpoint.origin") == "sip"
            assert caller.attributes.get("sip.phoneNumber") == "••• 42"
            assert abs(await alice.dominant_frequency(bruno.identity, 1.0) - BROWSER_HZ) <= 10
            assert abs(await alice.dominant_frequency(caller.identity, 1.0) - PHONE_HZ) <= 10

            # Our side: Alice with her name, origin visio, audio and video.
            listed = {p["name"]: p for p in participants(gateway, room)}
            assert listed["Alice Martin"]["origin"] == "visio"
            assert listed["Alice Martin"]["origin_address"] == "alice-oidc-sub"
            assert sorted(t["kind"] for t in listed["Alice Martin"]["tracks"]) == [
                "audio",
                "video",
            ]
            assert len(listed) == 3, listed  # Bruno, the phone, Alice: no bridge, no mirror
            offer = await host.next_event("offer", timeout=10)
            await peer.accept_offer(offer)
            alice_tracks = {t["kind"]: t["id"] for t in listed["Alice Martin"]["tracks"]}
            await wait_until(
                lambda: (
                    alice_tracks["audio"] in peer.received
                    and peer.received[alice_tracks["audio"]].frames > 100
                    and alice_tracks["video"] in peer.received
                    and peer.received[alice_tracks["video"]].frames > 10
                ),
                15,
                "the browser did not get Alice's audio and video",
            )
            heard = np.concatenate(peer.received[alice_tracks["audio"]].samples[-25:])
            assert tone_amplitude(heard, VISIO_HZ, SAMPLE_RATE) > 2000

            await asyncio.sleep(1.5)  # the phone hears Alice meanwhile: checked once it hangs up

            # Mute mirrored both ways.
            await alice.set_muted("audio", True)
            muted = await host.next_event("track_muted", timeout=10)
            assert (muted["track_id"], muted["muted"]) == (alice_tracks["audio"], True)
            mine = next(p for p in participants(gateway, room) if p["name"] == "Bruno Petit")
            await host.request({"type": "mute", "track_id": mine["tracks"][0]["id"], "muted": True})
            await alice.wait_remote_muted(bruno.identity, "audio", True)

            # Chat both ways.
            await alice.send_chat("Bonjour depuis Visio 👋")
            chat = (await host.next_event("chat", timeout=10))["message"]
            assert chat["text"] == "Bonjour depuis Visio 👋"
            assert chat["from_name"] == "Alice Martin"
            await host.request({"type": "chat", "text": "Salut depuis Rondpoint é"})
            sender, text = await alice.wait_chat("Salut depuis Rondpoint é")
            assert sender == bruno.identity

            # Leaving here removes the mirror there.
            await phone.hangup()
            await phone.wait_event("CALL_CLOSED", timeout=10)
            await alice.wait_gone(caller.identity, timeout=15)
            samples, rate = phone.recording("dec")
            windows = [
                samples[i : i + rate // 2] for i in range(0, len(samples) - rate // 2, rate // 4)
            ]
            assert max(tone_amplitude(w, VISIO_HZ, rate) for w in windows) > 1000, (
                "the phone never heard Visio's tone"
            )
        await alice.wait_gone(bruno.identity, timeout=15)


async def test_the_link_comes_back_after_livekit_restarts_with_nobody_twice(
    tmp_path: Path, livekit_server_restartable: RunningLiveKit
) -> None:
    lk = livekit_server_restartable
    room, visio_room = "prefecture", str(uuid.uuid4())
    with running_gateway(tmp_path, visio_config(lk)) as gateway:
        gateway.create_room(room)
        link(gateway, room, visio_room)
        async with bruno_here(gateway, room) as (host, peer):
            await wait_linked(gateway, room)
            alice = await VisioUser.join(lk, visio_room, "alice-oidc-sub", "Alice Martin")
            try:
                await alice.publish_tone(VISIO_HZ)
                await alice.wait_participant(lambda p: p.name == "Bruno Petit", timeout=15)
                await wait_until(
                    lambda: "Alice Martin" in [p["name"] for p in participants(gateway, room)],
                    10,
                    "Alice never listed here",
                )
                lk.kill()
                await wait_until(
                    lambda: link_state(gateway, room)["state"] == "retrying",
                    15,
                    f"the link did not notice: {link_state(gateway, room)}",
                )
                detail = link_state(gateway, room)["detail"]
                assert lk.api_secret not in detail
            finally:
                await alice.leave()
            await lk.arestart()
            await wait_linked(gateway, room, timeout=30)

            # Alice comes back (her Visio tab reconnects): one of each, on both sides.
            alice = await VisioUser.join(lk, visio_room, "alice-oidc-sub", "Alice Martin")
            try:
                await alice.publish_tone(VISIO_HZ)
                bruno = await alice.wait_participant(lambda p: p.name == "Bruno Petit", timeout=20)
                assert abs(await alice.dominant_frequency(bruno.identity, 1.0) - BROWSER_HZ) <= 10
                await wait_until(
                    lambda: (
                        [p["name"] for p in participants(gateway, room)].count("Alice Martin") == 1
                    ),
                    15,
                    "Alice is not listed once here",
                )
                await asyncio.sleep(3.5)  # livekit-server batches non-publishers' updates (3 s)
                names = [p.name for p in alice.participants().values()]
                assert names.count("Bruno Petit") == 1, names
                listed = [p["name"] for p in participants(gateway, room)]
                assert sorted(listed) == ["Alice Martin", "Bruno Petit"], listed
            finally:
                await alice.leave()


# --- bad input from the LiveKit side -------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_rejected_token_is_reported_retried_and_the_room_keeps_working(
    tmp_path: Path, livekit_server: RunningLiveKit
) -> None:
    wrong = "not-the-secret-of-this-livekit-0123456789"
    room = "mairie-secret"
    with running_gateway(tmp_path, visio_config(livekit_server, secret=wrong)) as gateway:
        gateway.create_room(room)
        link(gateway, room, str(uuid.uuid4()))
        await wait_until(
            lambda: link_state(gateway, room)["attempts"] >= 2,
            20,
            f"no retries: {link_state(gateway, room)}",
        )
        state = link_state(gateway, room)
        assert state["state"] == "retrying", state
        assert "401" in state["detail"] and "refused" in state["detail"], state
        assert wrong not in state["detail"] and wrong not in gateway.log_text()
        await assert_room_works(gateway, room)


async def assert_room_works(gateway: RunningGateway, room: str) -> None:
    """Two people join, one publishes, the other gets the track: the room is unharmed."""
    first = await OrsClient.connect(gateway.base_url, room)
    second = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(first)
    try:
        assert (await first.join(gateway.token(room, "a", "Anne")))["type"] == "joined"
        assert (await second.join(gateway.token(room, "b", "Benoit")))["type"] == "joined"
        await peer.publish(frequency=BROWSER_HZ)
        published = await second.next_event("track_published", timeout=10)
        assert published["track"]["kind"] == "audio"
    finally:
        await peer.close()
        await first.close()
        await second.close()


@contextlib.asynccontextmanager
async def misbehaving_livekit(behaviour: str) -> AsyncIterator[str]:
    """A WebSocket server on loopback at /rtc that misbehaves the way BEHAVIOUR says."""

    async def rtc_socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if behaviour == "close_mid_join":
            await ws.close()
            return ws
        join = lkrtc.SignalResponse(
            join=lkrtc.JoinResponse(
                room=lkmodels.Room(name="x", sid="RM_fake"),
                participant=lkmodels.ParticipantInfo(sid="PA_self", identity="me"),
                ping_interval=5,
                ping_timeout=15,
            )
        )
        await ws.send_bytes(join.SerializeToString())
        await ws.send_bytes(b"\xff\x00garbage, not a SignalResponse")
        await ws.send_str("a text frame")
        unexpected = lkrtc.SignalResponse(
            answer=lkrtc.SessionDescription(type="answer", sdp="v=0 nonsense")
        )
        await ws.send_bytes(unexpected.SerializeToString())
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass
        return ws

    app = web.Application()
    app.router.add_get("/rtc", rtc_socket)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("behaviour", ["close_mid_join", "unexpected_messages"])
async def test_a_misbehaving_livekit_is_reported_retried_and_the_room_keeps_working(
    tmp_path: Path, behaviour: str
) -> None:
    room = "mairie-bruit"
    async with misbehaving_livekit(behaviour) as url:
        config = (
            f'[visio]\nurl = "{url}"\napi_key = "k"\napi_secret = "s" \nreconnect_max_seconds = 1\n'
        )
        with running_gateway(tmp_path, config) as gateway:
            gateway.create_room(room)
            link(gateway, room, str(uuid.uuid4()))
            await wait_until(
                lambda: link_state(gateway, room)["attempts"] >= 2,
                25,
                f"no retries: {link_state(gateway, room)}",
            )
            await wait_until(
                lambda: link_state(gateway, room)["state"] == "retrying",
                10,
                f"not retrying: {link_state(gateway, room)}",
            )
            detail = link_state(gateway, room)["detail"]
            expected = {
                "close_mid_join": "closed before JoinResponse",
                "unexpected_messages": "text frame from LiveKit",
            }[behaviour]
            assert expected in detail and "next attempt in" in detail, detail
            await assert_room_works(gateway, room)
            assert gateway.process.poll() is None


async def test_video_screen_share_and_active_speakers_cross_the_bridge(
    gateway: RunningGateway, livekit_server: RunningLiveKit
) -> None:
    room = "conseil-video"
    visio_room = await linked_room(gateway, room)
    async with visio_user(livekit_server, visio_room, "claire-sub", "Claire Dubois") as claire:
        await claire.publish_tone(VISIO_HZ)
        await claire.publish_video()
        await claire.publish_video(source="screen_share")
        async with bruno_here(gateway, room, video=True, screen=True) as (host, peer):
            # Bruno's camera reaches Visio, decoded by the SDK, and his screen share beside it.
            bruno = await claire.wait_participant(lambda p: p.name == "Bruno Petit", timeout=15)
            assert await claire.video_frames(bruno.identity, 2.0) > 5

            def sources() -> list[str]:
                found = claire.participants().get(bruno.identity)
                publications = found.track_publications.values() if found else []
                return sorted(rtc.TrackSource.Name(p.source) for p in publications)

            await claire.wait_until(
                lambda: sources() == ["SOURCE_CAMERA", "SOURCE_MICROPHONE", "SOURCE_SCREENSHARE"],
                15,
                lambda: f"Bruno's tracks in Visio: {sources()}",
            )

            # Claire's screen share arrives here as a screen track, and plays.
            await wait_until(
                lambda: any(
                    t["source"] == "screen"
                    for p in participants(gateway, room)
                    if p["name"] == "Claire Dubois"
                    for t in p["tracks"]
                ),
                10,
                "no screen track from Claire",
            )
            claire_here = next(
                p for p in participants(gateway, room) if p["name"] == "Claire Dubois"
            )
            screen = next(t["id"] for t in claire_here["tracks"] if t["source"] == "screen")
            # Nobody here watches her camera and screen yet: LiveKit is asked not to send them.
            await asyncio.sleep(1.5)
            unwatched = await packets_per_second(gateway, room)
            await accept_offers_until(
                host,
                peer,
                lambda: screen in peer.received and peer.received[screen].frames > 10,
                "the screen share does not play here",
            )
            watched = await packets_per_second(gateway, room)
            assert unwatched < 60 < watched, (unwatched, watched)  # her voice is 50 packets/s
            metrics = await asyncio.to_thread(scrape, gateway.base_url + "/metrics")
            assert 'rondpoint_links{scheme="visio",state="connected"} 1.0' in metrics
            assert 'rondpoint_link_rtp_packets_received_total{scheme="visio"}' in metrics

            # Active speakers: Claire speaks here, Bruno speaks there.
            await wait_until(
                lambda: any(
                    m["type"] == "active_speakers"
                    and claire_here["id"] in [s["participant_id"] for s in m["speakers"]]
                    for m in host.received
                ),
                10,
                "Claire is never an active speaker here",
            )
            await claire.wait_until(
                lambda: any(bruno.identity in s for s in claire.active_speakers),
                10,
                "Visio never sees Bruno speaking",
            )

            # Bruno stops his camera for good: it is unpublished in Visio, his voice and screen
            # share stay.
            mine = next(p for p in participants(gateway, room) if p["name"] == "Bruno Petit")
            camera = next(t["id"] for t in mine["tracks"] if t["source"] == "camera")
            await host.request({"type": "unpublish", "track_id": camera})
            await claire.wait_until(
                lambda: sources() == ["SOURCE_MICROPHONE", "SOURCE_SCREENSHARE"],
                10,
                "the camera stays in Visio",
            )
            assert abs(await claire.dominant_frequency(bruno.identity, 1.0) - BROWSER_HZ) <= 10


async def test_a_dropped_signalling_connection_is_resumed_without_a_rejoin(
    gateway: RunningGateway, livekit_server: RunningLiveKit
) -> None:
    room = "mairie-reprise"
    visio_room = await linked_room(gateway, room)
    async with visio_user(livekit_server, visio_room, "denis-sub", "Denis Roy") as denis:
        await denis.publish_tone(VISIO_HZ)
        async with bruno_here(gateway, room) as (host, peer):
            bruno = await denis.wait_participant(lambda p: p.name == "Bruno Petit", timeout=15)
            before = [p["id"] for p in participants(gateway, room)]
            # Cut every TCP connection to LiveKit's signalling port (the network drops; the
            # UDP media paths stay up): each LiveKit participant resumes its session.
            killed = await asyncio.to_thread(
                subprocess.run,
                ["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{livekit_server.port}"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert killed.returncode == 0, killed.stderr
            await asyncio.sleep(3)
            state = link_state(gateway, room)
            assert state["state"] == "connected" and state["attempts"] == 0, state
            assert [p["id"] for p in participants(gateway, room)] == before
            assert '"LiveKit session of' in gateway.log_text(), "nothing was resumed"
            assert abs(await denis.dominant_frequency(bruno.identity, 1.0) - BROWSER_HZ) <= 10
            names = [p.name for p in denis.participants().values()]
            assert names.count("Bruno Petit") == 1, names


async def test_a_link_survives_a_gateway_restart(
    tmp_path: Path, livekit_server: RunningLiveKit
) -> None:
    room, visio_room = "mairie-persistante", str(uuid.uuid4())
    async with visio_user(livekit_server, visio_room, "elise-sub", "Élise Faure") as elise:
        await elise.publish_tone(VISIO_HZ)
        with running_gateway(tmp_path, visio_config(livekit_server)) as gateway:
            gateway.create_room(room)
            link(gateway, room, visio_room)
            await wait_linked(gateway, room)
        # Stopped: its LiveKit participants left. Started again on the same data directory:
        with running_gateway(tmp_path, visio_config(livekit_server)) as gateway:
            await wait_linked(gateway, room)
            await wait_until(
                lambda: [p["name"] for p in participants(gateway, room)] == ["Élise Faure"],
                10,
                f"Élise is not back here: {participants(gateway, room)}",
            )
            status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
            assert [link["target"] for link in body["links"]] == [f"visio:{visio_room}"]


async def test_a_visio_host_mutes_and_removes_a_phone_caller(
    gateway: RunningGateway, livekit_server: RunningLiveKit, phone: Baresip
) -> None:
    """Visio's host tools (LiveKit's RoomService, as Visio's backend calls it) act here too."""
    room = "mairie-moderee"
    visio_room = await linked_room(gateway, room)
    async with visio_user(livekit_server, visio_room, "gaelle-sub", "Gaëlle Host") as host:
        await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        caller = await host.wait_participant(lambda p: p.name == "Phone ••• 42", timeout=15)
        audio = host.remote_publication(caller.identity, "audio")
        lkapi = api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        )
        try:
            await lkapi.room.mute_published_track(
                api.MuteRoomTrackRequest(
                    room=visio_room, identity=caller.identity, track_sid=audio.sid, muted=True
                )
            )

            def phone_muted_here() -> bool:
                [listed] = [p for p in participants(gateway, room) if p["origin"] == "sip"]
                return bool(listed["tracks"]) and listed["tracks"][0]["muted"]

            await wait_until(phone_muted_here, 10, "the phone is not muted here")
            await host.wait_remote_muted(caller.identity, "audio", True)

            await lkapi.room.remove_participant(
                api.RoomParticipantIdentity(room=visio_room, identity=caller.identity)
            )
            await phone.wait_event("CALL_CLOSED", timeout=15)
            await wait_until(
                lambda: not [p for p in participants(gateway, room) if p["origin"] == "sip"],
                10,
                "the phone stayed here",
            )
            assert link_state(gateway, room)["state"] == "connected"
            await asyncio.sleep(4)  # no rejoin brings the caller's mirror back
            assert not [p for p in host.participants().values() if p.name == "Phone ••• 42"]
        finally:
            await lkapi.aclose()


async def test_a_host_here_mutes_a_visio_user_there_and_removes_him_here(
    gateway: RunningGateway, livekit_server: RunningLiveKit
) -> None:
    """A host here mutes a Visio user's microphone as Visio's hosts do (LiveKit's RoomService
    MutePublishedTrack): the other Visio users see him muted, his own client is muted, it stays
    muted here; he unmutes himself, and everyone sees it. Removed here, he stays in Visio."""
    room = "mairie-silence"
    visio_room = await linked_room(gateway, room)
    async with (
        visio_user(livekit_server, visio_room, "hugo-sub", "Hugo Bruyant") as hugo,
        visio_user(livekit_server, visio_room, "iris-sub", "Iris Calme") as iris,
        bruno_here(gateway, room) as (host, _),
    ):
        await hugo.publish_tone(VISIO_HZ)

        def hugo_mic() -> dict | None:
            for p in participants(gateway, room):
                if p["name"] == "Hugo Bruyant" and p["tracks"]:
                    return dict(p["tracks"][0])
            return None

        mic = await wait_until(hugo_mic, 15, "Hugo's microphone is not listed here")
        assert mic["muted"] is False
        await host.request({"type": "mute", "track_id": mic["id"], "muted": True})
        await iris.wait_remote_muted(hugo.identity, "audio", True)
        await hugo.wait_until(lambda: hugo.publication("audio").muted, 10, "his own client muted")
        await asyncio.sleep(1.5)  # LiveKit's updates since then keep it muted here
        assert (hugo_mic() or {}).get("muted") is True
        # only he unmutes
        await hugo.set_muted("audio", False)
        await iris.wait_remote_muted(hugo.identity, "audio", False)
        await wait_until(lambda: (hugo_mic() or {}).get("muted") is False, 10, "still muted here")

        # The host removes him: he leaves the room here, not the Visio meeting (Visio's to
        # moderate), and changes of his there do not bring him back while the room is linked.
        hugo_here = next(p for p in participants(gateway, room) if p["name"] == "Hugo Bruyant")
        await host.request({"type": "remove", "participant_id": hugo_here["id"]})
        await wait_until(lambda: hugo_mic() is None, 10, "Hugo still here")
        await hugo.set_muted("audio", True)
        await iris.wait_remote_muted(hugo.identity, "audio", True)
        await asyncio.sleep(1.5)
        names = [p["name"] for p in participants(gateway, room)]
        assert "Hugo Bruyant" not in names and "Iris Calme" in names, names
        assert hugo.identity in iris.participants()
        assert link_state(gateway, room)["state"] == "connected"


async def set_visio_hand(server: RunningLiveKit, visio_room: str, identity: str, at: str) -> None:
    """Raise (AT: an ISO 8601 time) or lower (AT: "") a Visio user's hand as Visio's backend does
    (``toggle-hand``: LiveKit's RoomService sets the ``handRaisedAt`` attribute)."""
    lkapi = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
    try:
        await lkapi.room.update_participant(
            api.UpdateParticipantRequest(
                room=visio_room, identity=identity, attributes={"handRaisedAt": at}
            )
        )
    finally:
        await lkapi.aclose()


def hand_here(gateway: RunningGateway, room: str, name: str) -> int | None:
    return next(p for p in participants(gateway, room) if p["name"] == name)["hand_raised_at"]


def reactions_seen(client: OrsClient, participant_id: str) -> list[str]:
    return [
        m["emoji"]
        for m in client.received
        if m["type"] == "reaction" and m["participant_id"] == participant_id
    ]


async def test_hands_and_reactions_cross_the_visio_bridge_both_ways_and_bounded(
    gateway: RunningGateway, livekit_server: RunningLiveKit
) -> None:
    room = "conseil-mains"
    visio_room = await linked_room(gateway, room)
    async with (
        visio_user(livekit_server, visio_room, "denise-sub", "Denise Roy") as denise,
        bruno_here(gateway, room) as (host, _),
    ):
        bruno = await denise.wait_participant(lambda p: p.name == "Bruno Petit", timeout=15)
        await wait_until(
            lambda: any(p["name"] == "Denise Roy" for p in participants(gateway, room)),
            10,
            "Denise never came here",
        )
        denise_id = next(p["id"] for p in participants(gateway, room) if p["origin"] == "visio")

        # Visio -> here: Denise raises her hand (Visio's attribute), an ORS client sees it
        # with her time, then she lowers it.
        raised = datetime(2026, 12, 4, 9, 30, 15, 250000, tzinfo=UTC)
        await set_visio_hand(livekit_server, visio_room, "denise-sub", raised.isoformat())
        await wait_until(
            lambda: any(
                m["type"] == "participant_updated"
                and m["participant"]["id"] == denise_id
                and m["participant"]["hand_raised_at"] == int(raised.timestamp() * 1000)
                for m in host.received
            ),
            10,
            "Denise's raised hand never showed here",
        )
        await set_visio_hand(livekit_server, visio_room, "denise-sub", "")
        await wait_until(
            lambda: hand_here(gateway, room, "Denise Roy") is None, 10, "her hand stays up"
        )

        # A host here lowers her hand raised again: lowered in Visio too, as Visio's hosts do.
        await set_visio_hand(livekit_server, visio_room, "denise-sub", raised.isoformat())
        await wait_until(
            lambda: hand_here(gateway, room, "Denise Roy") is not None, 10, "no hand again"
        )
        await host.request({"type": "hand", "raised": False, "participant_id": denise_id})
        await denise.wait_until(
            lambda: not denise.room.local_participant.attributes.get("handRaisedAt"),
            10,
            "Denise's hand stays up in Visio",
        )
        await asyncio.sleep(1)
        assert hand_here(gateway, room, "Denise Roy") is None

        # Here -> Visio: Bruno's hand is his mirror's handRaisedAt, as Visio shows its own.
        await host.request({"type": "hand", "raised": True})
        at = hand_here(gateway, room, "Bruno Petit")
        assert at is not None

        def bruno_hand() -> str:
            found = denise.participants().get(bruno.identity)
            return found.attributes.get("handRaisedAt", "") if found else ""

        await denise.wait_until(lambda: bool(bruno_hand()), 10, "no hand in Visio")
        assert datetime.fromisoformat(bruno_hand()).timestamp() == pytest.approx(at / 1000)
        await host.request({"type": "hand", "raised": False})
        await denise.wait_until(lambda: not bruno_hand(), 10, "the hand stays up in Visio")

        # Reactions both ways; the ones the other side lacks are dropped.
        await denise.send_reaction("thumbs-down")  # Visio only: not shown here
        await denise.send_reaction("clapping-hands")
        await wait_until(
            lambda: reactions_seen(host, denise_id) == ["👏"], 10, "no applause from Visio"
        )
        await host.request({"type": "reaction", "emoji": "🤔"})  # ours only
        await host.request({"type": "reaction", "emoji": "🎉"})
        await denise.wait_until(
            lambda: (bruno.identity, "party-popper") in denise.received_reactions,
            10,
            "no celebration in Visio",
        )
        await asyncio.sleep(0.5)
        assert denise.received_reactions == [(bruno.identity, "party-popper")]

        # A flood from Visio reaches here at the room's rate (10 at once, then 1/s).
        for _ in range(40):
            await denise.send_reaction("red-heart")
        await asyncio.sleep(2)
        hearts = reactions_seen(host, denise_id).count("❤️")
        assert 5 <= hearts <= 13, hearts
        # ... and one from here reaches Visio at the same rate (the rest refused here).
        for _ in range(30):
            with contextlib.suppress(Exception):
                await host.request({"type": "reaction", "emoji": "👍"})
        await asyncio.sleep(2)
        thumbs = denise.received_reactions.count((bruno.identity, "thumbs-up"))
        assert 5 <= thumbs <= 13, thumbs
