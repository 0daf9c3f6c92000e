"""The focus token service with a real Synapse: a user's OpenID token (as Element Call asks its
homeserver for it) gets a LiveKit token for the room's call, which livekit-server accepts; a
forged token, another server's user, bad bodies and floods are refused, and no token is logged."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import jwt
import pytest

from protocols.matrix.rooms import hashed_room_name
from tests.interop.livekit_sdk import visio_user
from tests.matrix.conftest import MatrixStack

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


async def ask(stack: MatrixStack, body: Any) -> tuple[int, dict[str, Any], str]:
    url = f"{stack.gateway.base_url}/matrix/sfu/get"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=data, headers={"Content-Type": "application/json"}) as response,
    ):
        text = await response.text()
        cors = response.headers.get("Access-Control-Allow-Origin", "")
        return response.status, json.loads(text) if text else {}, cors + text


def request(room: str, openid: dict[str, Any], device_id: str = "ELEMENTX") -> dict[str, Any]:
    return {"room": room, "openid_token": openid, "device_id": device_id}


def assert_not_logged(stack: MatrixStack, *secrets: str) -> None:
    log = stack.gateway.log_path.read_text(errors="replace")
    for secret in (*secrets, stack.as_token, stack.hs_token, stack.livekit.api_secret):
        assert secret not in log


async def test_a_synapse_user_gets_a_token_livekit_accepts(matrix_stack: MatrixStack) -> None:
    anna = await matrix_stack.synapse.register_user("anna", "anna-password")
    room = await anna.create_room("Focus")
    openid = await anna.openid_token()
    status, answer, raw = await ask(matrix_stack, request(room, openid))
    assert status == 200, raw
    assert raw.startswith("*")
    assert answer["url"] == matrix_stack.livekit.url
    claims = jwt.decode(answer["jwt"], matrix_stack.livekit.api_secret, algorithms=["HS256"])
    assert claims["sub"] == f"{anna.user_id}:ELEMENTX"
    assert claims["video"]["room"] == hashed_room_name(room)  # as lk-jwt-service names it
    assert claims["video"]["roomJoin"] is True
    # livekit-server lets the holder in: a participant there sees it arrive under that identity
    from livekit import rtc

    async with visio_user(
        matrix_stack.livekit, hashed_room_name(room), "observer", "Observer"
    ) as observer:
        holder = rtc.Room()
        await holder.connect(answer["url"], answer["jwt"])
        try:
            await observer.wait_participant(f"{anna.user_id}:ELEMENTX")
        finally:
            await holder.disconnect()
    assert_not_logged(matrix_stack, openid["access_token"], answer["jwt"])


async def test_a_forged_openid_token_is_401(matrix_stack: MatrixStack) -> None:
    openid = {
        "access_token": "forged-openid-token-abcdefghijkl",
        "token_type": "Bearer",
        "matrix_server_name": matrix_stack.server_name,
        "expires_in": 3600,
    }
    status, answer, raw = await ask(matrix_stack, request("!room:hs.test", openid))
    assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED")
    assert "forged-openid-token" not in raw
    assert_not_logged(matrix_stack, "forged-openid-token-abcdefghijkl")


async def test_another_servers_user_is_403(matrix_stack: MatrixStack) -> None:
    bert = await matrix_stack.synapse.register_user("bert", "bert-password")
    openid = await bert.openid_token()
    openid["matrix_server_name"] = "elsewhere.example"
    status, answer, _ = await ask(matrix_stack, request("!room:hs.test", openid))
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
    assert_not_logged(matrix_stack, openid["access_token"])


async def test_bad_bodies_are_400_and_413(matrix_stack: MatrixStack) -> None:
    status, answer, _ = await ask(matrix_stack, b"{no json")
    assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
    status, answer, _ = await ask(matrix_stack, {"room": "!r:hs.test"})
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    status, _, _ = await ask(matrix_stack, {"padding": "x" * 40_000})
    assert status == 413


async def test_the_preflight_allows_element_call_pages(matrix_stack: MatrixStack) -> None:
    headers = {
        "Origin": "https://call.element.io",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.options(f"{matrix_stack.gateway.base_url}/matrix/sfu/get", headers=headers) as answer,
    ):
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_flood_of_requests_gets_429(matrix_stack: MatrixStack) -> None:
    openid = {"access_token": "x", "matrix_server_name": "elsewhere.example"}
    statuses = [(await ask(matrix_stack, request("!r:hs.test", openid)))[0] for _ in range(70)]
    assert statuses[0] == 403
    assert statuses[-1] == 429
