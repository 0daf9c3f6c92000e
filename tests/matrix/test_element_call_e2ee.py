"""An end-to-end encrypted Matrix room's call and a room here become one meeting, with real peers:
Synapse, livekit-server as the focus, matrix-js-sdk 43 with its Rust crypto joining the call as
Element Call does (its MatrixRTC encryption manager sends Anna's media key over Olm to our
ghosts' devices and takes theirs in) and a Chromium livekit-client page encrypting Anna's tone
and camera (VP8) with livekit-client's E2EE worker under Element Call's key provider settings;
here an ORS WebRTC client and a baresip phone, each with a tone of its own.

Asserted: the ORS client and the phone hear Anna's tone and the ORS client decodes her video (we
decrypted them; AES-GCM lets no wrongly decrypted frame through), Anna's page hears both
tones from our ghosts (we encrypted them with the ghosts' keys, livekit-client decrypted them),
the chat goes both ways (Megolm: Anna's message read here with her name, Bruno's decrypted by
her Rust crypto), and the bot declared the bridge in the room."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from gateway.media.audio.tone import tone_amplitude
from spec.conformance.webrtc import SAMPLE_RATE
from tests.interop.baresip import Baresip
from tests.matrix.conftest import MatrixStack, element_call_user
from tests.matrix.jsclient import JsClient
from tests.matrix.meeting import (
    ANNA_HZ,
    ORS_HZ,
    PHONE_HZ,
    PHONE_NAME,
    accept_offers_until,
    bruno_here,
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


async def test_an_encrypted_element_call_and_a_room_here_become_one_meeting(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
    phone: Baresip,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    olga = await stack.synapse.register_user("olga-e2ee", "olga-password")
    anna = await stack.synapse.register_user("anna-e2ee", "anna-password")
    await anna.set_display_name("Anna Krypto")
    room, matrix_room = await stack.linked_room(olga, encrypted=True)
    await olga.invite(matrix_room, anna.user_id)
    anna_call = await element_call_user(
        anna,
        matrix_room,
        matrix_js=matrix_js,
        livekit_pages=livekit_pages,
        device_id="ANNAE2EE",
        frequency=ANNA_HZ,
        video=True,
        encrypted=True,
    )
    page = anna_call.page

    async def anna_here() -> dict[str, Any] | None:
        found = listed(gateway, room, "Anna Krypto")
        if found and sorted(t["kind"] for t in found[0]["tracks"]) == ["audio", "video"]:
            return found[0]
        return None

    anna_listed = await wait_for(anna_here, "Anna listed here with audio and video", 30)
    assert anna_listed["origin"] == "matrix"

    async with bruno_here(gateway, room) as (host, peer):
        await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)

        # Anna's page hears both tones, encrypted by us with the ghosts' keys.
        bruno = await page.wait_participant(lambda p: p["name"] == "Bruno Petit", timeout=30)
        caller = await page.wait_participant(lambda p: p["name"] == PHONE_NAME, timeout=30)
        for lk in (bruno, caller):
            assert lk["identity"].startswith(stack.ghost_prefix())
        heard_bruno = await page.listen(bruno["identity"], 1.0, timeout=30)
        heard_phone = await page.listen(caller["identity"], 1.0, timeout=30)
        assert abs(heard_bruno["frequency"] - ORS_HZ) <= 10, heard_bruno
        assert abs(heard_phone["frequency"] - PHONE_HZ) <= 10, heard_phone
        state = await page.state()
        assert state["keys"] >= 3, state  # her own and our two ghosts'

        # The ORS client hears Anna's tone and sees her video, decrypted by us.
        tracks = {t["kind"]: t["id"] for t in anna_listed["tracks"]}
        audio, video = tracks["audio"], tracks["video"]
        await accept_offers_until(
            host,
            peer,
            lambda: all(
                t in peer.received and peer.received[t].frames > n
                for t, n in ((audio, 100), (video, 10))
            ),
            "the ORS client did not get Anna's audio and video",
            timeout=30,
        )
        heard = np.concatenate(peer.received[audio].samples[-25:])
        assert tone_amplitude(heard, ANNA_HZ, SAMPLE_RATE) > 2000

        # So does the phone.
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)
        samples, rate = phone.recording("dec")
        windows = [
            samples[i : i + rate // 2] for i in range(0, len(samples) - rate // 2, rate // 4)
        ]
        assert max(tone_amplitude(w, ANNA_HZ, rate) for w in windows) > 1000, (
            "the phone never heard Anna's tone"
        )

        # Chat both ways in the encrypted room: Anna's Megolm message decrypted here, with her
        # name; Bruno's encrypted by his ghost, decrypted by her Rust crypto.
        js = anna_call.js
        sent = await js.command("send_text", room=matrix_room, text="Geheim aus Matrix")
        chat = (await host.next_event("chat", timeout=20))["message"]
        assert (chat["text"], chat["from_name"]) == ("Geheim aus Matrix", "Anna Krypto")
        await host.request({"type": "chat", "text": "Secret depuis Rondpoint"})
        message = await js.wait_event(
            "message",
            lambda e: (
                e["type"] == "m.room.message"
                and e["content"].get("body") == "Secret depuis Rondpoint"
            ),
            timeout=20,
        )
        assert message["sender"] == bruno["identity"].rsplit(":", 1)[0]
        on_the_wire = {
            e["event_id"]: e["type"]
            for e in await olga.messages(matrix_room)
            if e["event_id"] in (sent["event_id"], message["event_id"])
        }
        assert set(on_the_wire.values()) == {"m.room.encrypted"}, on_the_wire
        assert len(on_the_wire) == 2, on_the_wire

    # The bridge declared itself in the room, once for this call.
    notices = [
        e["content"]["body"]
        for e in await olga.messages(matrix_room)
        if e["type"] == "m.room.message"
        and e["sender"] == stack.bot_user_id
        and e["content"].get("msgtype") == "m.notice"
    ]
    declared = [n for n in notices if "decrypts media" in n]
    assert len(declared) == 1, notices
    assert room in declared[0]
    await anna_call.leave()
