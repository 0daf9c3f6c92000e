"""A room here and a Matrix room's call become one meeting, with real peers on both sides: Synapse,
livekit-server as the focus, matrix-js-sdk 43 joining the call as Element Call does (its LiveKit
token from our focus's /sfu/get) with a Chromium livekit-client page publishing its tone and
video; here an ORS WebRTC client and a baresip phone, each with a tone of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from gateway.media.audio.tone import tone_amplitude
from spec.conformance.webrtc import SAMPLE_RATE
from tests.interop.baresip import Baresip
from tests.interop.sipp_tools import wait_until
from tests.matrix.conftest import MatrixStack, element_call_user
from tests.matrix.jsclient import JsClient
from tests.matrix.meeting import (
    ANNA_HZ,
    CALL_MEMBER,
    ORS_HZ,
    PHONE_HZ,
    PHONE_NAME,
    accept_offers_until,
    bruno_here,
    ghost_memberships,
    listed,
)
from tests.matrix.page import LiveKitBrowser
from tests.matrix.synapse import wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


async def test_element_call_and_a_room_here_become_one_meeting(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
    phone: Baresip,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    olga, anna, room, matrix_room = await stack.olga_and_anna("rathaus-bonn")
    anna_call = await element_call_user(
        anna,
        matrix_room,
        matrix_js=matrix_js,
        livekit_pages=livekit_pages,
        device_id="ANNAJS",
        frequency=ANNA_HZ,
        video=True,
    )
    js, page = anna_call.js, anna_call.page

    # Anna here: her Matrix name, origin matrix, audio and video.
    async def anna_here() -> dict[str, Any] | None:
        found = listed(gateway, room, "Anna Schmidt")
        if found and sorted(t["kind"] for t in found[0]["tracks"]) == ["audio", "video"]:
            return found[0]
        return None

    anna_listed = await wait_for(anna_here, "Anna listed here with audio and video", 30)
    assert anna_listed["origin"] == "matrix"
    assert anna_listed["origin_address"] == anna.user_id

    async with bruno_here(gateway, room) as (host, peer):
        await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        prefix = stack.ghost_prefix()

        # Anna's page: two LiveKit participants that are our ghosts' devices, each heard.
        bruno = await page.wait_participant(lambda p: p["name"] == "Bruno Petit", timeout=30)
        caller = await page.wait_participant(lambda p: p["name"] == PHONE_NAME, timeout=30)
        for lk in (bruno, caller):
            assert lk["identity"].startswith(prefix) and lk["identity"].endswith(":RONDPOINT")
        assert abs(await page.dominant_frequency(bruno["identity"], 1.0) - ORS_HZ) <= 10
        assert abs(await page.dominant_frequency(caller["identity"], 1.0) - PHONE_HZ) <= 10

        # matrix-js-sdk: one call membership per person from here, named as here.
        async def two_ghosts() -> dict[str, dict[str, Any]] | None:
            found = await ghost_memberships(js, matrix_room, prefix)
            return found if len(found) == 2 else None

        ghosts = await wait_for(two_ghosts, "two ghost memberships in the session", 30)
        identities = {m["rtc_backend_identity"] for m in ghosts.values()}
        assert identities == {bruno["identity"], caller["identity"]}
        names = await olga.members(matrix_room)
        assert sorted(names[user] for user in ghosts) == sorted(["Bruno Petit", PHONE_NAME])
        bruno_ghost = bruno["identity"].rsplit(":", 1)[0]

        # The ORS client hears Anna's tone.
        tracks = {t["kind"]: t["id"] for t in anna_listed["tracks"]}
        await accept_offers_until(
            host,
            peer,
            lambda: (
                tracks["audio"] in peer.received and peer.received[tracks["audio"]].frames > 100
            ),
            "the ORS client did not get Anna's audio",
        )
        heard = np.concatenate(peer.received[tracks["audio"]].samples[-25:])
        assert tone_amplitude(heard, ANNA_HZ, SAMPLE_RATE) > 2000

        # Names follow both ways: Anna renamed in Matrix, Bruno renamed here.
        await anna.set_display_name("Anna K. Schmidt")
        await wait_until(
            lambda: bool(listed(gateway, room, "Anna K. Schmidt")), 20, "Anna not renamed here"
        )
        await host.request({"type": "update", "name": "Bruno P."})

        async def bruno_renamed() -> bool:
            return (await olga.members(matrix_room)).get(bruno_ghost) == "Bruno P."

        await wait_for(bruno_renamed, "Bruno's ghost renamed in the Matrix room", 20)
        await page.wait_participant(
            lambda p: p["identity"] == bruno["identity"] and p["name"] == "Bruno P.", timeout=20
        )

        # Chat both ways, with the sender's name.
        await js.command("send_text", room=matrix_room, text="Hallo aus Matrix")
        chat = (await host.next_event("chat", timeout=15))["message"]
        assert (chat["text"], chat["from_name"]) == ("Hallo aus Matrix", "Anna K. Schmidt")
        await host.request({"type": "chat", "text": "Salut depuis Rondpoint"})
        message = await js.wait_event(
            "message", lambda e: e["content"].get("body") == "Salut depuis Rondpoint", timeout=15
        )
        assert message["sender"] == bruno_ghost

        # The phone heard Anna meanwhile; hanging up ends its ghost's membership there.
        await asyncio.sleep(1.5)
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)
        samples, rate = phone.recording("dec")
        windows = [
            samples[i : i + rate // 2] for i in range(0, len(samples) - rate // 2, rate // 4)
        ]
        assert max(tone_amplitude(w, ANNA_HZ, rate) for w in windows) > 1000, (
            "the phone never heard Anna's tone"
        )
        await page.wait_gone(caller["identity"], timeout=20)

    # Bruno left: his ghost's membership is {} and his LiveKit participant gone.
    await page.wait_gone(bruno["identity"], timeout=20)

    async def bruno_membership_ended() -> bool:
        content = await olga.state_event(
            matrix_room, CALL_MEMBER, f"_{bruno_ghost}_RONDPOINT_m.call"
        )
        return content == {}

    await wait_for(bruno_membership_ended, "Bruno's ghost membership to be {}", 20)

    # matrix-js-sdk sees the ends when its sync brings them, a moment after the homeserver has them.
    async def no_ghost_memberships() -> bool:
        return await ghost_memberships(js, matrix_room, prefix) == {}

    await wait_for(no_ghost_memberships, "no ghost membership in matrix-js-sdk's session", 20)

    # Anna leaving the call removes her here.
    await anna_call.leave()
    await wait_until(
        lambda: not listed(gateway, room, "Anna K. Schmidt"), 20, "Anna is still listed here"
    )


async def test_a_person_here_starting_the_call_rings_the_matrix_room(
    matrix_stack: MatrixStack,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    rosa = await stack.synapse.register_user("rosa", "rosa-password")
    room, matrix_room = await stack.linked_room(rosa)
    async with bruno_here(gateway, room):

        async def ring() -> list[dict[str, Any]]:
            return [
                e
                for e in await rosa.messages(matrix_room)
                if e["type"] == "org.matrix.msc4075.rtc.notification"
            ]

        (event,) = await wait_for(ring, "a ring in the Matrix room", 30)
        assert event["sender"].startswith(stack.ghost_prefix())
        assert event["content"]["notification_type"] == "ring"
        assert event["content"]["m.mentions"]["room"] is True
        membership_id = event["content"]["m.relates_to"]["event_id"]
        state = {e["event_id"]: e for e in await rosa.state(matrix_room)}
        assert state[membership_id]["type"] == CALL_MEMBER
        assert state[membership_id]["sender"] == event["sender"]
