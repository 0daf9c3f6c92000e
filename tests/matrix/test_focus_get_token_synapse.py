"""The focus token service's MSC4195 endpoint with a real Synapse and matrix-js-sdk 43: a member
of a call asks POST /matrix/get_token as Element Call does (its OpenID token from Synapse) and gets
a JWT livekit-server accepts, for the LiveKit room lk-jwt-service names (the one /sfu/get and the
bridge use too) and the hashed identity matrix-js-sdk computes for that member; a claimed user who
is not the token's is refused, and no token is logged."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest

from protocols.matrix.rooms import (
    hashed_identity,
    hashed_identity_of_membership,
    hashed_room_name,
)
from tests.interop.livekit_sdk import visio_user
from tests.matrix.conftest import MatrixStack
from tests.matrix.jsclient import JsClient

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


def claims_of(stack: MatrixStack, token: str) -> dict[str, Any]:
    return jwt.decode(token, stack.livekit.api_secret, algorithms=["HS256"])


async def test_a_call_member_gets_a_get_token_jwt_livekit_accepts(
    matrix_stack: MatrixStack, matrix_js: Callable[..., Awaitable[JsClient]]
) -> None:
    synapse = matrix_stack.synapse
    hanna = await synapse.register_user("hanna", "hanna-password")
    room = await hanna.create_room("Get token")
    js = await matrix_js("hanna")
    await js.command(
        "login",
        homeserver_url=synapse.url,
        user_id=hanna.user_id,
        password="hanna-password",
        device_id="HANNAJS",
    )
    joined = await js.command("rtc_join", room=room)  # focus: the one Synapse advertises, ours
    answer = await js.command("get_token", room=room)
    assert answer["status"] == 200, answer
    assert set(answer["body"]) == {"url", "jwt"}
    assert answer["body"]["url"] == matrix_stack.livekit.url
    claims = claims_of(matrix_stack, answer["body"]["jwt"])
    identity = hashed_identity(hanna.user_id, "HANNAJS", answer["member_id"])
    assert claims["sub"] == identity == answer["rtc_backend_identity"]  # matrix-js-sdk's hash
    # what the bridge can compute from the call.member state event alone
    content = joined["membership"]["content"]
    assert hashed_identity_of_membership(hanna.user_id, content) == identity
    livekit_room = hashed_room_name(room)
    assert claims["video"]["room"] == livekit_room
    # /sfu/get (Element Call's legacy path, which the bridge's room follows) names the same room
    legacy = await js.command("sfu_get", room=room)
    assert claims_of(matrix_stack, legacy["body"]["jwt"])["video"]["room"] == livekit_room

    from livekit import rtc

    async with visio_user(matrix_stack.livekit, livekit_room, "observer", "Observer") as observer:
        holder = rtc.Room()
        await holder.connect(answer["body"]["url"], answer["body"]["jwt"])
        try:
            await observer.wait_participant(identity)
        finally:
            await holder.disconnect()
    await js.command("rtc_leave", room=room)
    log = matrix_stack.gateway.log_path.read_text(errors="replace")
    for secret in (answer["body"]["jwt"], matrix_stack.livekit.api_secret, matrix_stack.as_token):
        assert secret not in log


async def test_a_claimed_user_who_is_not_the_tokens_is_401(matrix_stack: MatrixStack) -> None:
    ines = await matrix_stack.synapse.register_user("ines", "ines-password")
    room = await ines.create_room("Claims")
    openid = await ines.openid_token()
    body = {
        "room_id": room,
        "slot_id": "m.call#ROOM",
        "openid_token": openid,
        "member": {
            "id": "member-1",
            "claimed_user_id": f"@someone:{matrix_stack.server_name}",
            "claimed_device_id": "INESJS",
        },
    }
    url = f"{matrix_stack.gateway.base_url}/matrix/get_token"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as r,
    ):
        text = await r.text()
        assert (r.status, json.loads(text)["errcode"]) == (401, "M_UNAUTHORIZED")
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert openid["access_token"] not in text
    log = matrix_stack.gateway.log_path.read_text(errors="replace")
    assert openid["access_token"] not in log
