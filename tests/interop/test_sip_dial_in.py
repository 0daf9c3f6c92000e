"""Phones dial into rooms: SIPp plays G.711 audio into a room where an ORS (WebRTC) client listens."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import WebRtcPeer
from tests.gateway_process import RunningGateway, free_port, sipp_media_port

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).parent / "sipp"


async def sipp(
    gateway: RunningGateway, scenario: str, room: str, *extra: str
) -> asyncio.subprocess.Process:
    assert shutil.which("sipp"), "SIPp is not installed: run 'make system-deps'"
    return await asyncio.create_subprocess_exec(
        "sipp",
        "-sf",
        str(SCENARIOS / scenario),
        "-s",
        room,
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-mp",
        str(sipp_media_port()),
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        *extra,
        f"127.0.0.1:{gateway.sip_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_a_phone_dials_an_open_room_and_a_browser_hears_it(gateway: RunningGateway) -> None:
    gateway.create_room("salle-telephone")
    alice = await OrsClient.connect(gateway.base_url, "salle-telephone")
    await alice.join(gateway.token("salle-telephone", "alice", "Alice"))
    peer = WebRtcPeer(alice)
    await peer.publish(frequency=660.0)

    phone = await sipp(gateway, "dial_in_g711.xml", "salle-telephone")
    joined = (await alice.next_event("participant_joined", timeout=15))["participant"]
    assert (joined["name"], joined["origin"]) == ("Phone ••• 78", "sip")
    assert "0140506078" not in str(joined)  # the number is masked
    track = (await alice.next_event("track_published", timeout=10))["track"]
    assert (track["participant_id"], track["kind"], track["codec"]) == (
        joined["id"],
        "audio",
        "opus",
    )
    offer = await alice.next_event("offer", timeout=10)
    await peer.accept_offer(offer)
    async with asyncio.timeout(15):
        while (received := peer.received.get(track["id"])) is None or received.frames < 100:
            await asyncio.sleep(0.1)
    audio = np.concatenate(received.samples[-100:]).astype(np.float64)
    assert np.sqrt(np.mean(audio**2)) > 100, "the phone's audio is silent in the browser"

    left = await alice.next_event("participant_left", timeout=20)
    assert (left["participant_id"], left["reason"]) == (joined["id"], "left")
    output, _ = await phone.communicate()
    assert phone.returncode == 0, output.decode(errors="replace")[-2000:]
    await peer.close()
    await alice.close()
