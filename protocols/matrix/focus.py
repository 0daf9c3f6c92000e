"""The focus token service Element Call asks for a LiveKit token, as element-hq/lk-jwt-service
answers it: ``POST /matrix/get_token`` (MSC4195, what current Element Call tries first) and the
legacy ``POST /matrix/sfu/get``.

- ``/get_token`` takes ``{"room_id", "slot_id", "openid_token", "member": {"id",
  "claimed_user_id", "claimed_device_id"}}``; the identity is the member's hashed
  rtcBackendIdentity (protocols/matrix/rooms.py) and ``claimed_user_id`` must be the token's user.
- ``/sfu/get`` takes ``{"room", "openid_token", "device_id"}``; the identity is
  ``{user_id}:{device_id}`` and the slot is ``m.call#ROOM``.

Both check the OpenID token (from the user's homeserver's ``/openid/request_token``) with our
homeserver's ``/_matrix/federation/v1/openid/userinfo`` and answer ``{"url", "jwt"}``: a one-hour
LiveKit token for the call's LiveKit room, named by ``[matrix] livekit_room_names`` as the bridge
names it. Only users of our homeserver are served. ``delay_id`` / ``delay_timeout`` (the service
restarting a client's delayed leave) are accepted and not acted on: clients restart it themselves.
Anyone can reach it: the body is bounded, each address is rate limited, and no token is ever
logged or echoed.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.http.keys import BODY_LIMIT
from gateway.ratelimit import RateLimiter
from protocols.livekit.tokens import VideoGrant, mint_token
from protocols.matrix.appservice import Refusal, read_json_object, running_service
from protocols.matrix.config import MatrixConfig
from protocols.matrix.ids import livekit_identity, split_user_id
from protocols.matrix.rooms import CALL_SLOT, hashed_identity, livekit_room_name
from protocols.matrix.targets import is_room_id

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
TOKEN_TTL = 3600.0
REQUESTS_PER_MINUTE = 60
BURST = 20
_DEVICE_ID = re.compile(r"[\x21-\x7e]{1,255}")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_LIMITER = web.AppKey("focus_limiter", RateLimiter)
_NOT_AUTHORISED = "The request could not be authorised."
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}


@dataclasses.dataclass(frozen=True)
class _Caller:
    """Whose token is asked for, and the service answering."""

    user_id: str
    config: MatrixConfig


def _string(body: dict[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Refusal(400, "M_BAD_JSON", f"'{key}' must be {what}")
    return value


def _room_id(body: dict[str, Any], key: str) -> str:
    room = body.get(key)
    if not isinstance(room, str) or not is_room_id(room):
        raise Refusal(400, "M_BAD_JSON", f"'{key}' must be a Matrix room id (!id)")
    return room


def _check_delay(body: dict[str, Any]) -> None:
    """lk-jwt-service's rule: ``delay_id`` and ``delay_timeout`` come together or not at all."""
    delay_id = body.get("delay_id", "")
    timeout = body.get("delay_timeout", 0)
    if not isinstance(delay_id, str) or isinstance(timeout, bool) or not isinstance(timeout, int):
        raise Refusal(400, "M_BAD_JSON", "'delay_id' must be a string, 'delay_timeout' a number")
    if bool(delay_id) != (timeout > 0):
        raise Refusal(
            400, "M_BAD_JSON", "The request body is missing `delay_id` or `delay_timeout`"
        )


async def _verified_caller(request: web.Request, body: dict[str, Any]) -> _Caller:
    """The user our homeserver says the body's OpenID token belongs to; Refusal otherwise."""
    service = running_service(request)
    config = service.config
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
        raise Refusal(401, "M_UNAUTHORIZED", _NOT_AUTHORISED) from None
    parts = split_user_id(user_id)
    if parts is None or parts[1] != config.server_name:
        raise Refusal(403, "M_FORBIDDEN", f"this focus serves only users of {config.server_name}")
    return _Caller(user_id, config)


def _answer(
    caller: _Caller, matrix_room: str, slot_id: str, identity: str, name: str
) -> web.Response:
    config = caller.config
    room = livekit_room_name(config, matrix_room, slot_id)
    grant = dataclasses.replace(VideoGrant.join(room), can_update_own_metadata=True)
    jwt = mint_token(
        config.livekit_api_key,
        config.livekit_api_secret,
        identity=identity,
        name=name,
        grant=grant,
        ttl=TOKEN_TTL,
    )
    log.info("focus token for a device of %s in %s (%s)", caller.user_id, matrix_room, slot_id)
    return web.json_response({"url": config.livekit_ws_url, "jwt": jwt}, headers=CORS)


async def _sfu_get(request: web.Request, body: dict[str, Any]) -> web.Response:
    room = _room_id(body, "room")
    device_id = _string(body, "device_id", _DEVICE_ID, "the device id of the caller")
    _check_delay(body)
    caller = await _verified_caller(request, body)
    identity = livekit_identity(caller.user_id, device_id)
    return _answer(caller, room, CALL_SLOT, identity, caller.user_id)


async def _get_token(request: web.Request, body: dict[str, Any]) -> web.Response:
    room = _room_id(body, "room_id")
    slot_id = _string(body, "slot_id", _TEXT, "the MatrixRTC slot id (m.call#ROOM)")
    member = body.get("member")
    if not isinstance(member, dict):
        raise Refusal(400, "M_BAD_JSON", "'member' must be an object")
    member_id = _string(member, "id", _TEXT, "the member's id")
    claimed_user = _string(member, "claimed_user_id", _TEXT, "the member's user id")
    device_id = _string(member, "claimed_device_id", _DEVICE_ID, "the member's device id")
    _check_delay(body)
    caller = await _verified_caller(request, body)
    if claimed_user != caller.user_id:
        raise Refusal(401, "M_UNAUTHORIZED", _NOT_AUTHORISED)
    identity = hashed_identity(caller.user_id, device_id, member_id)
    return _answer(caller, room, slot_id, identity, "")


def _endpoint(
    serve: Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """SERVE behind the checks both endpoints share; every refusal carries the CORS headers."""

    async def handler(request: web.Request) -> web.Response:
        try:
            config = running_service(request).config
            if not config.focus_service or not config.livekit_url:
                raise Refusal(404, "M_NOT_FOUND", "this server serves no LiveKit focus")
            if not request.app[_LIMITER].allow(request.remote or "?"):
                raise Refusal(429, "M_LIMIT_EXCEEDED", "too many token requests from this address")
            return await serve(request, await read_json_object(request, MAX_BODY))
        except Refusal as refusal:
            response = refusal.response()
            response.headers.update(CORS)
            return response

    return handler


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS)


def _app(
    path: str, handler: Callable[[web.Request], Awaitable[web.Response]], limiter: RateLimiter
) -> web.Application:
    app = web.Application()
    app[BODY_LIMIT] = MAX_BODY
    app[_LIMITER] = limiter
    app.router.add_post(path, handler)
    app.router.add_route("OPTIONS", path, preflight)
    return app


def mount_focus(app: web.Application) -> None:
    """``/sfu/get`` and ``/get_token`` (and their CORS preflights) on APP (mounted at
    ``/matrix/``), one rate limit for both; their bodies are bounded before they are read
    (BODY_LIMIT)."""
    limiter = RateLimiter(REQUESTS_PER_MINUTE, burst=BURST)
    app.add_subapp("/sfu/", _app("/get", _endpoint(_sfu_get), limiter))
    app.add_subapp("/get_token", _app("", _endpoint(_get_token), limiter))
