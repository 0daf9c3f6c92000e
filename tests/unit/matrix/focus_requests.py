"""The two focus endpoints' requests as the unit tests post them: the legacy /sfu/get body, the
MSC4195 /get_token body (as Element Call sends them, for Anna's OpenID token), and a post that
checks no token comes back in the answer."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.matrix.conftest import ANNA, FORGED, OPENID
from tests.unit.matrix.served_gateway import LIVEKIT_SECRET, SERVER_NAME, Served

SFU_GET = "/matrix/sfu/get"
GET_TOKEN = "/matrix/get_token"
ROOM = "!call:hs.test"
MEMBER = "2b7a1c4e-5d3f-4e6a-9b8c-0d1e2f3a4b5c"


def sfu_body(token: str = OPENID, **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "room": ROOM,
        "openid_token": {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": SERVER_NAME,
            "expires_in": 3600,
        },
        "device_id": "ABCDEF",
    }
    request.update(changes)
    return request


def get_token_body(token: str = OPENID, **changes: Any) -> dict[str, Any]:
    """What Element Call posts (src/livekit/openIDSFU.ts getLiveKitJWTWithDelayDelegation)."""
    request: dict[str, Any] = {
        "room_id": ROOM,
        "slot_id": "m.call#ROOM",
        "openid_token": {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": SERVER_NAME,
            "expires_in": 3600,
        },
        "member": {"id": MEMBER, "claimed_user_id": ANNA, "claimed_device_id": "ABCDEF"},
    }
    request.update(changes)
    return request


async def post_json(gateway: Served, payload: Any, path: str) -> tuple[int, dict[str, Any], str]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = await gateway.client.post(
        path, data=data, headers={"Content-Type": "application/json"}
    )
    text = await response.text()
    assert FORGED not in text and OPENID not in text and LIVEKIT_SECRET not in text
    return (
        response.status,
        json.loads(text) if text else {},
        response.headers.get("Access-Control-Allow-Origin", ""),
    )
