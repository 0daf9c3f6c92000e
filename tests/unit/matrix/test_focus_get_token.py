"""The focus token service's MSC4195 endpoint (POST /matrix/get_token), as current Element Call
asks it: a LiveKit token for lk-jwt-service's room and hashed identity of a member whose OpenID
token our homeserver vouches for; refusals for everything else, and no token ever logged or
echoed. Also the room and identity hashes against MSC4195's test vectors."""

from __future__ import annotations

import functools
from typing import Any

import jwt
import pytest

from gateway.config import ConfigError
from protocols.matrix.config import MatrixConfig
from protocols.matrix.focus import BURST
from protocols.matrix.rooms import (
    go_json_strings,
    hashed_identity,
    hashed_identity_of_membership,
    hashed_room_name,
    livekit_room_name,
)
from tests.unit.matrix.conftest import ANNA, FORGED, OPENID
from tests.unit.matrix.focus_requests import (
    GET_TOKEN,
    MEMBER,
    ROOM,
    SFU_GET,
    get_token_body,
    post_json,
)
from tests.unit.matrix.served_gateway import LIVEKIT_SECRET, SERVER_NAME, Served

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")

body = get_token_body
post = functools.partial(post_json, path=GET_TOKEN)


def with_member(**changes: Any) -> dict[str, Any]:
    request = body()
    request["member"].update(changes)
    return request


def test_the_hashes_are_msc4195s_test_vectors() -> None:
    assert hashed_room_name("!roomid:example.com", "slot1234") == (
        "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"
    )
    assert hashed_identity("@alice:example.com", "DEVICE123", "memberABC") == (
        "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
    )


def test_the_hashed_json_is_gos() -> None:
    assert go_json_strings(["!a:b", "x<y>&z\u2028", 'q"\\\n']) == (
        b'["!a:b","x\\u003cy\\u003e\\u0026z\\u2028","q\\"\\\\\\n"]'
    )
    assert go_json_strings(["é"]) == '["é"]'.encode()


async def test_a_member_gets_a_token_for_lk_jwt_services_room_and_identity(
    gateway: Served,
) -> None:
    status, answer, cors = await post(gateway, body())
    assert (status, cors) == (200, "*")
    assert set(answer) == {"url", "jwt"}
    assert answer["url"] == "ws://127.0.0.1:7880"
    claims = jwt.decode(answer["jwt"], LIVEKIT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == hashed_identity(ANNA, "ABCDEF", MEMBER)
    assert "name" not in claims  # pseudonymous, as lk-jwt-service
    assert claims["exp"] - claims["nbf"] == 3600
    assert claims["video"] == {
        "room": hashed_room_name(ROOM, "m.call#ROOM"),
        "roomJoin": True,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "canUpdateOwnMetadata": True,
    }
    checked = [r for r in gateway.homeserver.requests if r.path.endswith("/openid/userinfo")]
    assert [r.query["access_token"] for r in checked] == [OPENID]
    assert "Authorization" not in checked[0].headers


async def test_both_endpoints_name_the_same_livekit_room_the_bridge_joins(gateway: Served) -> None:
    _, new, _ = await post(gateway, body())
    legacy = {"room": ROOM, "openid_token": body()["openid_token"], "device_id": "ABCDEF"}
    _, old, _ = await post(gateway, legacy, path=SFU_GET)
    rooms = {
        jwt.decode(answer["jwt"], LIVEKIT_SECRET, algorithms=["HS256"])["video"]["room"]
        for answer in (new, old)
    }
    assert rooms == {livekit_room_name(gateway.service.config, ROOM)}
    gateway.service.config.livekit_room_names = "room_id"
    _, new, _ = await post(gateway, body())
    claims = jwt.decode(new["jwt"], LIVEKIT_SECRET, algorithms=["HS256"])
    assert claims["video"]["room"] == ROOM == livekit_room_name(gateway.service.config, ROOM)


async def test_another_slot_gets_its_own_room(gateway: Served) -> None:
    status, answer, _ = await post(gateway, body(slot_id="m.call#other"))
    assert status == 200
    claims = jwt.decode(answer["jwt"], LIVEKIT_SECRET, algorithms=["HS256"])
    assert claims["video"]["room"] == hashed_room_name(ROOM, "m.call#other")


async def test_delay_delegation_fields_are_accepted_together(gateway: Served) -> None:
    delayed = body(delay_id="syd_abc", delay_timeout=10000, delay_cs_api_url="http://hs")
    assert (await post(gateway, delayed))[0] == 200


async def test_a_claimed_user_who_is_not_the_tokens_is_401(gateway: Served) -> None:
    status, answer, cors = await post(gateway, with_member(claimed_user_id="@bert:hs.test"))
    assert (status, answer["errcode"], cors) == (401, "M_UNAUTHORIZED", "*")


async def test_a_forged_token_is_401(gateway: Served) -> None:
    status, answer, cors = await post(gateway, body(FORGED))
    assert (status, answer["errcode"], cors) == (401, "M_UNAUTHORIZED", "*")


async def test_another_servers_user_is_403_without_asking_our_homeserver(gateway: Served) -> None:
    request = body()
    request["openid_token"]["matrix_server_name"] = "elsewhere.test"
    status, answer, _ = await post(gateway, request)
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
    assert gateway.homeserver.requests == []


async def test_a_token_vouched_for_another_servers_user_is_403(gateway: Served) -> None:
    gateway.homeserver.openid_users[OPENID] = "@eve:elsewhere.test"
    request = with_member(claimed_user_id="@eve:elsewhere.test")
    status, answer, _ = await post(gateway, request)
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[]",
        body(room_id="#alias:hs.test"),
        body(room_id=None),
        body(slot_id=""),
        body(slot_id=7),
        body(member="anna"),
        body(member=None),
        with_member(id=""),
        with_member(claimed_user_id=None),
        with_member(claimed_device_id=""),
        with_member(claimed_device_id="has space"),
        body(openid_token="text"),
        body(openid_token={"matrix_server_name": SERVER_NAME}),
        body(openid_token={"access_token": OPENID}),
        body(delay_id="syd_abc"),
        body(delay_timeout=10000),
        body(delay_id=5, delay_timeout=10000),
    ],
)
async def test_a_malformed_request_is_400_without_asking_our_homeserver(
    gateway: Served, payload: Any
) -> None:
    status, answer, cors = await post(gateway, payload)
    assert status == 400 and answer["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
    assert cors == "*"
    assert gateway.homeserver.requests == []


async def test_one_rate_limit_covers_both_endpoints(gateway: Served) -> None:
    legacy = {"room": ROOM, "openid_token": body(FORGED)["openid_token"], "device_id": "ABCDEF"}
    statuses = [(await post(gateway, legacy, path=SFU_GET))[0] for _ in range(BURST)]
    assert statuses == [401] * BURST
    status, answer, cors = await post(gateway, body(FORGED))
    assert (status, answer["errcode"], cors) == (429, "M_LIMIT_EXCEEDED", "*")


def test_an_unknown_room_naming_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="'matrix.livekit_room_names'"):
        MatrixConfig(livekit_room_names="room").validate("rondpoint.toml")


def test_a_call_memberships_get_token_identity_uses_matrix_js_sdks_member_id() -> None:
    content = {"device_id": "ABCDEF", "membershipID": MEMBER, "application": "m.call"}
    assert hashed_identity_of_membership(ANNA, content) == hashed_identity(ANNA, "ABCDEF", MEMBER)
    del content["membershipID"]
    assert hashed_identity_of_membership(ANNA, content) == (
        hashed_identity(ANNA, "ABCDEF", f"{ANNA}:ABCDEF")
    )
    assert hashed_identity_of_membership(ANNA, {}) is None
