"""The focus token service Element Call asks for a LiveKit token (``POST /matrix/sfu/get``), as
element-hq/lk-jwt-service answers it.

A Matrix client posts ``{"room", "openid_token", "device_id"}``; the OpenID token (from its
homeserver's ``/openid/request_token``) is checked with our homeserver's
``/_matrix/federation/v1/openid/userinfo``, and the answer is ``{"url", "jwt"}``: a LiveKit token
for the focus's room named by the Matrix room id, identity ``{user_id}:{device_id}``. Only users
of our homeserver are served. Anyone can reach it: the body is bounded, each address is rate
limited, and no token is ever logged or echoed.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from gateway.http.keys import BODY_LIMIT
from gateway.ratelimit import RateLimiter
from protocols.livekit.tokens import VideoGrant, mint_token
from protocols.matrix.appservice import Refusal, read_json_object, running_service
from protocols.matrix.ids import livekit_identity, split_user_id
from protocols.matrix.targets import is_room_id

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
TOKEN_TTL = 3600.0
REQUESTS_PER_MINUTE = 60
BURST = 20
_DEVICE_ID = re.compile(r"[\x21-\x7e]{1,255}")
_LIMITER = web.AppKey("focus_limiter", RateLimiter)
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}


def _string(body: dict[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Refusal(400, "M_BAD_JSON", f"'{key}' must be {what}")
    return value


async def sfu_get(request: web.Request) -> web.Response:
    try:
        return await _sfu_get(request)
    except Refusal as refusal:
        response = refusal.response()
        response.headers.update(CORS)
        return response


async def _sfu_get(request: web.Request) -> web.Response:
    service = running_service(request)
    config = service.config
    if not config.focus_service or not config.livekit_url:
        raise Refusal(404, "M_NOT_FOUND", "this server serves no LiveKit focus")
    if not request.app[_LIMITER].allow(request.remote or "?"):
        raise Refusal(429, "M_LIMIT_EXCEEDED", "too many token requests from this address")
    body = await read_json_object(request, MAX_BODY)
    room = body.get("room")
    if not isinstance(room, str) or not is_room_id(room):
        raise Refusal(400, "M_BAD_JSON", "'room' must be a Matrix room id (!id)")
    device_id = _string(body, "device_id", _DEVICE_ID, "the device id of the caller")
    openid = body.get("openid_token")
    if not isinstance(openid, dict):
        raise Refusal(400, "M_BAD_JSON", "'openid_token' must be an object")
    access_token = openid.get("access_token")
    server_name = openid.get("matrix_server_name")
    if not isinstance(access_token, str) or not access_token or len(access_token) > 1024:
        raise Refusal(400, "M_BAD_JSON", "'openid_token.access_token' must be a string")
    if not isinstance(server_name, str):
        raise Refusal(400, "M_BAD_JSON", "'openid_token.matrix_server_name' must be a string")
    if server_name != config.server_name:
        raise Refusal(403, "M_FORBIDDEN", f"this focus serves only users of {config.server_name}")
    from protocols.matrix.client import MatrixError, MatrixUnavailable  # nio: once it runs

    try:
        user_id = await service.client.openid_userinfo(access_token)
    except MatrixUnavailable as error:
        log.warning("the focus cannot check an OpenID token: %s", error)
        raise Refusal(502, "M_UNKNOWN", "the homeserver cannot check the token now") from None
    except MatrixError:
        raise Refusal(401, "M_UNAUTHORIZED", "the OpenID token is not valid") from None
    parts = split_user_id(user_id)
    if parts is None or parts[1] != config.server_name:
        raise Refusal(403, "M_FORBIDDEN", f"this focus serves only users of {config.server_name}")
    jwt = mint_token(
        config.livekit_api_key,
        config.livekit_api_secret,
        identity=livekit_identity(user_id, device_id),
        name=user_id,
        grant=VideoGrant.join(room),
        ttl=TOKEN_TTL,
    )
    log.info("focus token for a device of %s in %s", user_id, room)
    return web.json_response({"url": config.livekit_ws_url, "jwt": jwt}, headers=CORS)


async def sfu_preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS)


def focus_app() -> web.Application:
    """``/get`` (and its CORS preflight), mounted at ``/matrix/sfu/``; its bodies are bounded
    before they are read (BODY_LIMIT)."""
    app = web.Application()
    app[BODY_LIMIT] = MAX_BODY
    app[_LIMITER] = RateLimiter(REQUESTS_PER_MINUTE, burst=BURST)
    app.router.add_post("/get", sfu_get)
    app.router.add_route("OPTIONS", "/get", sfu_preflight)
    return app
