"""The Visio-user kit (tests/interop/livekit_sdk.py) against a real livekit-server: two SDK users
in one room hear each other's tones, decode each other's video, see mute state, names,
attributes and active speakers, chat on lk.chat, and join again after the server was killed and
restarted (tests/interop/livekit_fixtures.py)."""

from __future__ import annotations

import dataclasses
import time
import uuid

import numpy as np
import pytest
from livekit import rtc

from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_sdk import RATE, VisioUser, peak_frequency, visio_user

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(30),
    # livekit-server's --dev secret is "secret", shorter than PyJWT recommends for HS256.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


def room_name() -> str:
    return str(uuid.uuid4())  # Visio's LiveKit rooms are named by the Visio room's UUID


def test_peak_frequency_tells_close_tones_apart() -> None:
    t = np.arange(RATE) / RATE
    rng = np.random.default_rng(1)
    for freq in (440.0, 523.25, 659.25):
        samples = np.sin(2 * np.pi * freq * t) * 8000 + rng.normal(0, 500, RATE)
        assert abs(peak_frequency(samples) - freq) < 1


async def test_each_hears_the_others_tone_and_sees_it_speak(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    async with (
        visio_user(livekit_server, room, "visio-alice", "Alice") as alice,
        visio_user(livekit_server, room, "visio-bob", "Bob") as bob,
    ):
        await alice.publish_tone(440)
        await bob.publish_tone(523)
        assert abs(await bob.dominant_frequency("visio-alice") - 440) <= 5
        assert abs(await alice.dominant_frequency("visio-bob") - 523) <= 5
        assert await bob.audio_level("visio-alice") > 1000
        await bob.wait_until(
            lambda: any("visio-alice" in speakers for speakers in bob.active_speakers),
            5,
            lambda: f"alice never an active speaker: {bob.active_speakers}",
        )


async def test_video_is_decoded(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    async with (
        visio_user(livekit_server, room, "visio-carol", "Carol") as carol,
        visio_user(livekit_server, room, "visio-dan", "Dan") as dan,
    ):
        publication = await carol.publish_video(320, 240, fps=15, color=(200, 30, 30))
        assert publication.sid.startswith("TR_")
        frames = await dan.video_frames("visio-carol", seconds=2.0)
        assert frames > 5, f"dan decoded {frames} frames of carol's video in 2 s"
        assert dan.last_video_size["visio-carol"] == (320, 240)


async def test_mute_is_seen_and_silences(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    async with (
        visio_user(livekit_server, room, "visio-erin", "Erin") as erin,
        visio_user(livekit_server, room, "visio-frank", "Frank") as frank,
    ):
        await erin.publish_tone(659)
        await erin.publish_video()
        assert abs(await frank.dominant_frequency("visio-erin") - 659) <= 5
        assert not frank.remote_muted("visio-erin", "audio")

        await erin.set_muted("audio", True)
        await frank.wait_remote_muted("visio-erin", "audio", True, timeout=5)
        assert not frank.remote_muted("visio-erin", "video")
        assert await frank.audio_level("visio-erin", 0.5) < 100

        await erin.set_muted("audio", False)
        await frank.wait_remote_muted("visio-erin", "audio", False, timeout=5)
        assert abs(await frank.dominant_frequency("visio-erin", 0.5) - 659) <= 5

        await erin.set_muted("video", True)
        await frank.wait_remote_muted("visio-erin", "video", True, timeout=5)


async def test_chat_both_ways(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    async with (
        visio_user(livekit_server, room, "visio-grace", "Grace") as grace,
        visio_user(livekit_server, room, "visio-heidi", "Heidi") as heidi,
    ):
        await grace.wait_participant("visio-heidi")
        await grace.send_chat("bonjour depuis Visio")
        assert await heidi.wait_chat("bonjour depuis Visio", 5) == (
            "visio-grace",
            "bonjour depuis Visio",
        )
        await heidi.send_chat("é" * 3000)  # longer than one chunk is not needed, but unicode is
        sender, text = await grace.wait_chat(lambda _s, t: t.startswith("é"), 5)
        assert (sender, len(text)) == ("visio-heidi", 3000)
        assert grace.received_chat == [("visio-heidi", "é" * 3000)]  # not our own message


async def test_names_and_attributes_are_visible(livekit_server: RunningLiveKit) -> None:
    room = room_name()
    attributes = {"color": "#e05a2b", "room_role": "owner", "is_authenticated": "true"}
    async with visio_user(
        livekit_server, room, "visio-ivan", "Ivan Owner", attributes=attributes, room_admin=True
    ) as ivan:
        async with visio_user(livekit_server, room, "visio-judy", "Judy") as judy:
            seen = await judy.wait_participant(lambda p: p.attributes.get("room_role") == "owner")
            assert (seen.identity, seen.name, dict(seen.attributes)) == (
                "visio-ivan",
                "Ivan Owner",
                attributes,
            )
            back = await ivan.wait_participant("visio-judy")
            assert (back.name, dict(back.attributes)) == ("Judy", {})
            assert set(ivan.participants()) == {"visio-judy"}
        await ivan.wait_gone("visio-judy", 5)
        assert ivan.participant_events == [
            ("connected", "visio-judy"),
            ("disconnected", "visio-judy"),
        ]


async def test_users_hear_each_other_after_a_server_restart(
    livekit_server_restartable: RunningLiveKit,
) -> None:
    server = livekit_server_restartable
    room = room_name()
    async with (
        visio_user(server, room, "visio-kim", "Kim") as kim,
        visio_user(server, room, "visio-leo", "Leo") as leo,
    ):
        await kim.publish_tone(440)
        assert abs(await leo.dominant_frequency("visio-kim", 0.5) - 440) <= 5

        pid = server.process.pid
        server.kill()
        assert not server.alive()
        started = time.monotonic()
        await server.arestart()
        assert server.alive() and server.process.pid != pid and server.restarts == 1
        assert time.monotonic() - started < 10

        async with (
            visio_user(server, room, "visio-mia", "Mia") as mia,
            visio_user(server, room, "visio-ned", "Ned") as ned,
        ):
            await mia.publish_tone(523)
            await ned.publish_tone(659)
            assert abs(await ned.dominant_frequency("visio-mia", 0.5) - 523) <= 5
            assert abs(await mia.dominant_frequency("visio-ned", 0.5) - 659) <= 5

            # The SDK's own users rejoin by themselves (resume fails, then a full reconnect),
            # with their tracks: a bridge test sees Visio users come back without doing anything.
            await kim.wait_reconnected(10)
            await leo.wait_reconnected(10)
            assert abs(await leo.dominant_frequency("visio-kim", 0.5) - 440) <= 5
            await mia.wait_participant("visio-kim")


async def test_a_rejected_token_fails_fast(livekit_server: RunningLiveKit) -> None:
    wrong = dataclasses.replace(livekit_server, api_secret="not-the-secret")
    started = time.monotonic()
    with pytest.raises(rtc.ConnectError, match="401 Unauthorized"):
        await VisioUser.join(wrong, room_name(), "visio-oscar", "Oscar", timeout=10)
    assert time.monotonic() - started < 5
