"""A phone dials a Matrix room: a SIP dispatch rule sends a number to `matrix:!id`, with real peers
on both sides (Synapse, livekit-server as the focus, matrix-js-sdk 43 and a Chromium livekit-client
page as Element Call, a baresip phone). The caller's ghost rings the Matrix room, an Element Call
member who joins and the phone hear each other, and the on-demand link stops after the caller; a
rule may name the room by its alias too."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest

from gateway.links import link_room_id
from gateway.media.audio.tone import tone_amplitude
from gateway.rooms import ROOM_ID_PATTERN
from tests.gateway_process import RunningGateway
from tests.interop.baresip import Baresip
from tests.interop.sipp_tools import wait_until
from tests.matrix.conftest import MatrixStack, element_call_user
from tests.matrix.jsclient import JsClient
from tests.matrix.meeting import (
    ANNA_HZ,
    CALL_MEMBER,
    PHONE_HZ,
    PHONE_NAME,
    ghost_memberships,
    participants,
)
from tests.matrix.page import LiveKitBrowser
from tests.matrix.synapse import wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

NUMBER = "0388001122"
RING = "org.matrix.msc4075.rtc.notification"


def not_linked(gateway: RunningGateway, room: str) -> bool:
    """Whether ROOM here has no link (the on-demand one was released)."""
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}/links")
    links = body["links"] if isinstance(body, dict) else body
    return status == 200 and links == []


async def test_a_dispatch_rule_rings_a_matrix_room_whose_call_the_phone_then_joins(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
    phone: Baresip,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    lena = await stack.synapse.register_user("lena", "lena-password")
    anna = await stack.synapse.register_user("anna", "anna-password")
    matrix_room = await lena.create_room("Standesamt", invite=[stack.bot_user_id, anna.user_id])
    target = f"matrix:{matrix_room}"
    local = link_room_id(target)
    assert ROOM_ID_PATTERN.fullmatch(local) and local.startswith("matrix-")
    status, body = gateway.admin("POST", "/api/v1/sip/dispatch", {"number": NUMBER, "room": target})
    assert status == 201, body

    # A user cannot take the target's local room before the gateway makes it.
    status, body = gateway.admin("POST", "/api/v1/rooms", {"id": local})
    assert status == 403, body

    await phone.dial(f"sip:{NUMBER}@127.0.0.1:{gateway.sip_port}")
    await phone.wait_event("CALL_ESTABLISHED", timeout=10)
    await wait_until(
        lambda: (
            gateway.admin("GET", f"/api/v1/rooms/{local}")[0] == 200
            and any(p["origin"] == "sip" for p in participants(gateway, local))
        ),
        20,
        "the caller never entered the Matrix room's room here",
    )

    # The caller's ghost starts the call and rings the room.
    async def ring() -> list[dict[str, Any]]:
        return [e for e in await lena.messages(matrix_room) if e["type"] == RING]

    (event,) = await wait_for(ring, "a ring in the Matrix room", 30)
    ghost = event["sender"]
    assert ghost.startswith(stack.ghost_prefix())
    assert event["content"]["notification_type"] == "ring"
    assert (await lena.members(matrix_room))[ghost] == PHONE_NAME
    state = {e["event_id"]: e for e in await lena.state(matrix_room)}
    membership = state[event["content"]["m.relates_to"]["event_id"]]
    assert (membership["type"], membership["sender"]) == (CALL_MEMBER, ghost)
    assert membership["state_key"] == f"_{ghost}_RONDPOINT_m.call"

    # Anna answers the ring in Element Call: she and the phone hear each other.
    anna_call = await element_call_user(
        anna,
        matrix_room,
        matrix_js=matrix_js,
        livekit_pages=livekit_pages,
        device_id="ANNADIAL",
        frequency=ANNA_HZ,
    )
    js, page = anna_call.js, anna_call.page

    async def phone_ghost() -> dict[str, Any] | None:
        return (await ghost_memberships(js, matrix_room, stack.ghost_prefix())).get(ghost)

    listed = await wait_for(phone_ghost, "the phone's ghost in matrix-js-sdk's call", 30)
    caller = await page.wait_participant(lambda p: p["name"] == PHONE_NAME, timeout=30)
    assert caller["identity"] == f"{ghost}:RONDPOINT" == listed["rtc_backend_identity"]
    assert abs(await page.dominant_frequency(caller["identity"], 1.0) - PHONE_HZ) <= 10
    await wait_until(
        lambda: any(p["origin"] == "matrix" for p in participants(gateway, local)),
        20,
        "Anna never appeared in the room here",
    )
    await asyncio.sleep(1.5)

    # The phone hangs up: its ghost's membership ends and the on-demand link stops.
    await phone.hangup()
    await phone.wait_event("CALL_CLOSED", timeout=10)
    samples, rate = phone.recording("dec")
    windows = [samples[i : i + rate // 2] for i in range(0, len(samples) - rate // 2, rate // 4)]
    assert max(tone_amplitude(w, ANNA_HZ, rate) for w in windows) > 1000, "no Anna heard"
    await page.wait_gone(caller["identity"], timeout=20)

    async def membership_ended() -> bool:
        return await lena.state_event(matrix_room, CALL_MEMBER, membership["state_key"]) == {}

    await wait_for(membership_ended, "the phone's ghost membership to be {}", 20)

    await wait_until(
        lambda: not_linked(gateway, local), 20, "the on-demand link outlived its last caller"
    )
    await anna_call.leave()


async def test_a_dispatch_rule_to_a_matrix_alias_rings_the_room_it_names(
    matrix_stack: MatrixStack, phone: Baresip
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    mila = await stack.synapse.register_user("mila", "mila-password")
    matrix_room = await mila.create_room("Mairie", invite=[stack.bot_user_id])
    alias = f"#mairie:{stack.server_name}"
    await mila.request(
        "PUT",
        f"/_matrix/client/v3/directory/room/{quote(alias, safe='')}",
        {"room_id": matrix_room},
    )
    target = f"matrix:{alias}"
    local = link_room_id(target)
    status, body = gateway.admin("POST", "/api/v1/sip/dispatch", {"number": "1", "room": target})
    assert status == 201, body

    await phone.dial(f"sip:1@127.0.0.1:{gateway.sip_port}")
    await phone.wait_event("CALL_ESTABLISHED", timeout=10)

    async def ring() -> list[dict[str, Any]]:
        return [e for e in await mila.messages(matrix_room) if e["type"] == RING]

    (event,) = await wait_for(ring, "a ring in the room the alias names", 30)
    assert (await mila.members(matrix_room))[event["sender"]] == PHONE_NAME
    assert any(p["origin"] == "sip" for p in participants(gateway, local))

    await phone.hangup()
    await phone.wait_event("CALL_CLOSED", timeout=10)

    await wait_until(
        lambda: not_linked(gateway, local), 20, "the on-demand link outlived its last caller"
    )


async def test_a_phone_dialling_a_matrix_room_that_has_not_invited_us_is_told_goodbye(
    matrix_stack: MatrixStack, phone: Baresip
) -> None:
    """The link is refused (no invite): the caller hears the goodbye prompt and is hung up,
    instead of waiting alone in a local room; nothing joins the Matrix room, no link is left."""
    stack, gateway = matrix_stack, matrix_stack.gateway
    nora = await stack.synapse.register_user("nora", "nora-password")
    matrix_room = await nora.create_room("Privé")  # the bot is not invited
    target = f"matrix:{matrix_room}"
    local = link_room_id(target)
    status, body = gateway.admin("POST", "/api/v1/sip/dispatch", {"number": "2", "room": target})
    assert status == 201, body

    await phone.dial(f"sip:2@127.0.0.1:{gateway.sip_port}")
    await phone.wait_event("CALL_CLOSED", timeout=30)

    assert gateway.admin("GET", f"/api/v1/rooms/{local}")[0] == 404 or not participants(
        gateway, local
    )
    await wait_until(lambda: not_linked(gateway, local), 20, "the refused link was left running")
    assert list(await nora.members(matrix_room)) == [nora.user_id]
    assert "cannot enter a linked room" in gateway.log_text()
