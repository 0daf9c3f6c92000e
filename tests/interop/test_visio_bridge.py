"""The Visio bridge (protocols/visio) against a real livekit-server, LiveKit's official SDK playing
the Visio users, a baresip phone and an ORS WebRTC client in the linked room.

What a Visio user sees: each person from here as their own participant with the right name and
`rondpoint.origin`, phones with `sip.phoneNumber` masked as here, each with their own audio;
what people here get: the Visio user with name, audio and video, mute state and chat.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.media.audio.tone import tone_amplitude
from spec.conformance.orsclient import OrsClient
from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.baresip import Baresip
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_sdk import visio_user
from tests.interop.sipp_tools import wait_until
from tests.webrtc_client import SAMPLE_RATE, WebRtcPeer

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

        host = await OrsClient.connect(gateway.base_url, room)
        peer = WebRtcPeer(host)
        try:
            joined = await host.join(gateway.token(room, "bruno", "Bruno Petit", role="host"))
            assert joined["type"] == "joined"
            await peer.publish(frequency=BROWSER_HZ)
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
        finally:
            await peer.close()
            await host.close()
        await alice.wait_gone(bruno.identity, timeout=15)
