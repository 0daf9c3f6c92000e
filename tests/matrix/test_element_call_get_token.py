"""A Matrix call member whose LiveKit token comes from the focus's ``/get_token`` (MSC4195, as
Element Call asks lk-jwt-service) joins LiveKit with a hashed identity, not ``{user}:{device}``:
the bridge knows them by their call membership, so they appear here with their Matrix name and
user id, their chat arrives from them, and they leave with their membership. Real peers:
Synapse, livekit-server, matrix-js-sdk 43 holding the membership and asking ``/get_token``, a
Chromium livekit-client page with the JWT, an ORS WebRTC client here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from protocols.matrix.rooms import hashed_identity_of_membership
from spec.conformance.orsclient import OrsClient
from tests.matrix.conftest import MatrixStack
from tests.matrix.jsclient import JsClient
from tests.matrix.meeting import listed
from tests.matrix.page import LiveKitBrowser
from tests.matrix.synapse import wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


async def test_a_member_with_a_get_token_identity_is_here_by_their_matrix_name_and_chats(
    matrix_stack: MatrixStack,
    matrix_js: Callable[..., Awaitable[JsClient]],
    livekit_pages: LiveKitBrowser,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    olga, anna, room, matrix_room = await stack.olga_and_anna()

    js = await matrix_js("annatoken")
    await js.command(
        "login",
        homeserver_url=anna.homeserver_url,
        user_id=anna.user_id,
        password=anna.password,
        device_id="ANNATOKEN",
    )
    await js.command("join", room=matrix_room)
    joined = await js.command("rtc_join", room=matrix_room)
    answer = await js.command("get_token", room=matrix_room)
    assert answer["status"] == 200, answer
    identity = answer["rtc_backend_identity"]
    assert ":" not in identity  # hashed, not {user}:{device}
    assert hashed_identity_of_membership(anna.user_id, joined["membership"]["content"]) == identity
    page = await livekit_pages.open("annatoken")
    await page.connect(answer["body"]["url"], answer["body"]["jwt"])
    await page.publish(frequency=660.0)

    async def anna_here() -> dict[str, Any] | None:
        found = listed(gateway, room, "Anna Schmidt")
        return found[0] if found and found[0]["tracks"] else None

    anna_listed = await wait_for(anna_here, "Anna listed here by her Matrix name", 30)
    assert (anna_listed["origin"], anna_listed["origin_address"]) == ("matrix", anna.user_id)

    host = await OrsClient.connect(gateway.base_url, room)
    try:
        await host.join(gateway.token(room, "bruno", "Bruno Petit", role="host"))
        await js.command("send_text", room=matrix_room, text="Hallo mit gehashter Identität")
        chat = (await host.next_event("chat", timeout=15))["message"]
        assert (chat["text"], chat["from_name"]) == (
            "Hallo mit gehashter Identität",
            "Anna Schmidt",
        )
        assert chat["from"] == anna_listed["id"]
    finally:
        await host.close()

    # Her membership ends: she leaves here, with her page still in LiveKit a moment.
    await js.command("rtc_leave", room=matrix_room)

    async def anna_gone() -> bool:
        return not listed(gateway, room, "Anna Schmidt")

    await wait_for(anna_gone, "Anna to leave here with her membership", 20)
    await page.leave()
