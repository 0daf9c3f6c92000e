"""A Matrix member's raised hand that the bridge did not see raised: raised before the room was
linked here, or before the gateway restarted. The link reads it back from the relations API when
it enters the room, so a host here knows that member waits to speak, as Element Call's users do;
someone else's "🖐️" on the member's membership raises nothing; in an encrypted room, Element
Call's hand (matrix-js-sdk sends reactions in clear) is read back too. Real peers: Synapse,
livekit-server as the focus, matrix-js-sdk holding Anna's membership and a Chromium
livekit-client page for her media; here an ORS client."""

from __future__ import annotations

import asyncio
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from spec.conformance.orsclient import OrsClient
from tests.gateway_process import RunningGateway
from tests.interop.sipp_tools import wait_until
from tests.matrix.conftest import ElementCallUser, MatrixStack, element_call_user
from tests.matrix.jsclient import JsClient
from tests.matrix.meeting import CALL_MEMBER, listed
from tests.matrix.page import LiveKitBrowser
from tests.matrix.synapse import MatrixUser, wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

HAND = "🖐️"
ANNA = "Anna Schmidt"


async def membership_of(anna: MatrixUser, matrix_room: str, device_id: str) -> str:
    """The event id of Anna's call membership from device DEVICE_ID."""
    key = f"_{anna.user_id}_{device_id}_m.call"
    state = await anna.state(matrix_room)
    return next(e["event_id"] for e in state if e["type"] == CALL_MEMBER and e["state_key"] == key)


async def raise_hand(user: MatrixUser, matrix_room: str, membership: str) -> tuple[str, int]:
    """USER sends Element Call's raised hand on MEMBERSHIP: (its event id, its origin_server_ts)."""
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": membership, "key": HAND}}
    event_id = await user.send(matrix_room, "m.reaction", content)
    sent = next(e for e in await user.messages(matrix_room, 50) if e["event_id"] == event_id)
    return event_id, int(sent["origin_server_ts"])


async def anna_seen_by_an_ors_client(gateway: RunningGateway, room: str) -> dict[str, Any]:
    """Anna as a member joining ROOM here now sees her (`joined`, 9.1)."""
    client = await OrsClient.connect(gateway.base_url, room)
    try:
        joined = await client.join(gateway.token(room, "bruno", "Bruno Petit", role="host"))
    finally:
        await client.close()
    assert joined["type"] == "joined", joined
    return next(p for p in joined["participants"] if p["name"] == ANNA)


def anna_hand(gateway: RunningGateway, room: str) -> int | None:
    found = listed(gateway, room, ANNA)
    return found[0]["hand_raised_at"] if found else None


async def call_not_linked_yet(
    stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
    device_id: str,
    *,
    encrypted: bool = False,
) -> tuple[MatrixUser, MatrixUser, str, ElementCallUser, str]:
    """Olga's Matrix room (the bot invited, linked nowhere yet), Anna in its call from DEVICE_ID:
    (olga, anna, matrix room id, Anna's call, her membership's event id)."""
    olga = await stack.synapse.register_user("olga", "olga-password")
    anna = await stack.synapse.register_user("anna", "anna-password")
    await anna.set_display_name(ANNA)
    matrix_room = await olga.create_room(
        f"rathaus-{device_id.lower()}", encrypted=encrypted, invite=[stack.bot_user_id]
    )
    await olga.invite(matrix_room, anna.user_id)
    call = await element_call_user(
        anna,
        matrix_room,
        matrix_js=matrix_js,
        livekit_pages=livekit_pages,
        device_id=device_id,
        encrypted=encrypted,
    )
    membership = await membership_of(anna, matrix_room, device_id)
    return olga, anna, matrix_room, call, membership


async def hand_once_linked(stack: MatrixStack, matrix_room: str) -> tuple[str, int]:
    """A new room here linked to MATRIX_ROOM: (its id, Anna's hand_raised_at there once shown)."""
    room = f"mx-{secrets.token_hex(4)}"
    stack.link(room, matrix_room)

    async def raised_here() -> int | None:
        return anna_hand(stack.gateway, room)

    return room, await wait_for(raised_here, "Anna's hand raised before the link, here", 30)


async def test_a_hand_raised_before_the_room_was_linked_shows_here(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
) -> None:
    olga, anna, matrix_room, _, membership = await call_not_linked_yet(
        matrix_stack, matrix_js, livekit_pages, "ANNAPRE"
    )
    # Olga (in the room, not in the call) puts a hand on Anna's membership first: not Anna's.
    _, olga_at = await raise_hand(olga, matrix_room, membership)
    await asyncio.sleep(1.5)
    _, anna_at = await raise_hand(anna, matrix_room, membership)
    # then 60 reactions of Olga's on it: Anna's hand is on Synapse's second page of 50
    for n in range(60):
        thanks = {"rel_type": "m.annotation", "event_id": membership, "key": f"merci {n}"}
        await olga.send(matrix_room, "m.reaction", {"m.relates_to": thanks})
    room, raised = await hand_once_linked(matrix_stack, matrix_room)
    assert abs(raised - anna_at) < 1000, (raised, anna_at, olga_at)
    seen = await anna_seen_by_an_ors_client(matrix_stack.gateway, room)
    assert seen["hand_raised_at"] == raised


async def test_a_raised_hand_survives_a_gateway_restart_and_is_lowered_after_it(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    olga, anna, room, matrix_room = await stack.olga_and_anna("rathaus-restart")
    await element_call_user(
        anna, matrix_room, matrix_js=matrix_js, livekit_pages=livekit_pages, device_id="ANNARST"
    )
    membership = await membership_of(anna, matrix_room, "ANNARST")

    async def anna_here() -> dict[str, Any] | None:
        found = listed(gateway, room, ANNA)
        return found[0] if found else None

    await wait_for(anna_here, "Anna listed here", 30)
    await raise_hand(olga, matrix_room, membership)  # not hers: nothing, live
    await asyncio.sleep(1.5)
    assert anna_hand(gateway, room) is None
    hand, anna_at = await raise_hand(anna, matrix_room, membership)
    await wait_until(lambda: anna_hand(gateway, room) is not None, 15, "Anna's hand never showed")

    async def back_with_her_hand() -> int | None:
        return anna_hand(gateway, room)

    await asyncio.to_thread(gateway.restart)  # what the gateway saw live is gone with it
    raised = await wait_for(back_with_her_hand, "Anna's hand after the restart", 45)
    assert abs(raised - anna_at) < 1000, (raised, anna_at)
    assert (await anna_seen_by_an_ors_client(gateway, room))["hand_raised_at"] == raised

    # Anna lowers it (a redaction): down here.
    quoted = urllib.parse.quote(matrix_room, safe="")
    await anna.request("PUT", f"/_matrix/client/v3/rooms/{quoted}/redact/{hand}/lower1", {})
    await wait_until(lambda: anna_hand(gateway, room) is None, 15, "Anna's hand stays up here")

    # Restarted again: Olga's "🖐️" is still on Anna's membership, and raises nothing.
    await asyncio.to_thread(gateway.restart)
    await wait_for(anna_here, "Anna listed after the second restart", 45)
    await asyncio.sleep(2)
    assert anna_hand(gateway, room) is None
    assert (await anna_seen_by_an_ors_client(gateway, room))["hand_raised_at"] is None


async def test_a_hand_raised_in_an_encrypted_room_before_the_link_is_read_back(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
) -> None:
    _, anna, matrix_room, call, membership = await call_not_linked_yet(
        matrix_stack, matrix_js, livekit_pages, "ANNACRYPT", encrypted=True
    )
    # As Element Call raises it: matrix-js-sdk's sendEvent, with its crypto on.
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": membership, "key": HAND}}
    sent = await call.js.command("send", room=matrix_room, type="m.reaction", content=content)
    hand = next(
        e for e in await anna.messages(matrix_room, 50) if e["event_id"] == sent["event_id"]
    )
    assert hand["type"] == "m.reaction", hand  # in clear, in an encrypted room
    _, raised = await hand_once_linked(matrix_stack, matrix_room)
    assert abs(raised - int(hand["origin_server_ts"])) < 1000
