"""The legacy focus token service (POST /matrix/sfu/get): a LiveKit token for a user of our homeserver
whose OpenID token the homeserver vouches for; refusals for everything else, and no token ever
in a log line or an answer. The refusals it shares with /matrix/get_token are tested here for
both endpoints."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from protocols.matrix.focus import BURST
from protocols.matrix.rooms import hashed_room_name
from tests.unit.matrix.conftest import FORGED, OPENID
from tests.unit.matrix.focus_requests import GET_TOKEN, SFU_GET, get_token_body, post_json, sfu_body
from tests.unit.matrix.served_gateway import LIVEKIT_SECRET, SERVER_NAME, Served

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")

body = sfu_body
post = functools.partial(post_json, path=SFU_GET)


async def test_a_user_of_our_homeserver_gets_a_token_for_the_rooms_call(gateway: Served) -> None:
    status, answer, cors = await post(gateway, body())
    assert (status, cors) == (200, "*")
    assert answer["url"] == "ws://127.0.0.1:7880"
    claims = jwt.decode(answer["jwt"], LIVEKIT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "@anna:hs.test:ABCDEF"
    assert claims["name"] == "@anna:hs.test"
    assert claims["iss"] == "APIunit"
    assert claims["exp"] - claims["nbf"] == 3600
    assert claims["video"] == {
        "room": hashed_room_name("!call:hs.test"),  # as lk-jwt-service names it
        "roomJoin": True,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "canUpdateOwnMetadata": True,
    }
    checked = [r for r in gateway.homeserver.requests if r.path.endswith("/openid/userinfo")]
    assert [r.query["access_token"] for r in checked] == [OPENID]
    assert "Authorization" not in checked[0].headers  # our AS token is not given away


async def test_a_forged_token_is_401(gateway: Served) -> None:
    status, answer, cors = await post(gateway, body(FORGED))
    assert (status, answer["errcode"], cors) == (401, "M_UNAUTHORIZED", "*")


async def test_another_servers_user_is_403_without_asking_our_homeserver(gateway: Served) -> None:
    request = body()
    request["openid_token"]["matrix_server_name"] = "elsewhere.test"
    status, answer, _ = await post(gateway, request)
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
    assert "hs.test" in answer["error"]
    assert gateway.homeserver.requests == []


async def test_a_token_vouched_for_another_servers_user_is_403(gateway: Served) -> None:
    gateway.homeserver.openid_users[OPENID] = "@eve:elsewhere.test"
    status, answer, _ = await post(gateway, body())
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[]",
        body(room="#alias:hs.test"),
        body(room=None),
        body(device_id=""),
        body(device_id="has space"),
        body(openid_token="text"),
        body(openid_token={"matrix_server_name": SERVER_NAME}),
        body(openid_token={"access_token": OPENID}),
    ],
)
async def test_a_malformed_request_is_400(gateway: Served, payload: Any) -> None:
    status, answer, _ = await post(gateway, payload)
    assert status == 400 and answer["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
    assert gateway.homeserver.requests == []


async def test_an_address_asking_too_often_gets_429(gateway: Served) -> None:
    statuses = [(await post(gateway, body(FORGED)))[0] for _ in range(BURST + 1)]
    assert statuses[:-1] == [401] * BURST
    assert statuses[-1] == 429


ENDPOINTS = pytest.mark.parametrize(
    ("path", "make_body"),
    [(SFU_GET, sfu_body), (GET_TOKEN, get_token_body)],
    ids=["sfu_get", "get_token"],
)
"""The refusals both endpoints share."""


@ENDPOINTS
async def test_an_oversized_request_is_413(
    gateway: Served, path: str, make_body: Callable[..., dict[str, Any]]
) -> None:
    status, _, _ = await post_json(gateway, make_body(padding="x" * 20_000), path)
    assert status == 413
    assert gateway.homeserver.requests == []


@ENDPOINTS
async def test_the_cors_preflight_is_answered(
    gateway: Served, path: str, make_body: Callable[..., dict[str, Any]]
) -> None:
    response = await gateway.client.options(
        path,
        headers={
            "Origin": "https://call.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]


@ENDPOINTS
async def test_a_homeserver_that_cannot_answer_is_502(
    gateway: Served, path: str, make_body: Callable[..., dict[str, Any]]
) -> None:
    await gateway.homeserver.close()
    status, answer, _ = await post_json(gateway, make_body(), path)
    assert (status, answer["errcode"]) == (502, "M_UNKNOWN")


@ENDPOINTS
async def test_without_the_focus_service_it_is_404(
    gateway: Served, path: str, make_body: Callable[..., dict[str, Any]]
) -> None:
    gateway.service.config.focus_service = False
    status, answer, cors = await post_json(gateway, make_body(), path)
    assert (status, answer["errcode"], cors) == (404, "M_NOT_FOUND", "*")


async def test_a_room_version_12_id_names_the_call_too(gateway: Served) -> None:
    room = "!" + "A1b2_C3d4-" * 4 + "xyz"  # 43 characters of unpadded base64url
    status, answer, _ = await post(gateway, body(room=room))
    assert status == 200
    claims = jwt.decode(answer["jwt"], LIVEKIT_SECRET, algorithms=["HS256"])
    assert claims["video"]["room"] == hashed_room_name(room)


async def test_room_id_naming_names_the_livekit_room_by_the_matrix_room_id(gateway: Served) -> None:
    gateway.service.config.livekit_room_names = "room_id"
    status, answer, _ = await post(gateway, body())
    assert status == 200
    claims = jwt.decode(answer["jwt"], LIVEKIT_SECRET, algorithms=["HS256"])
    assert claims["video"]["room"] == "!call:hs.test"
