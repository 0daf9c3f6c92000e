"""The application-service routes the homeserver calls (Matrix Application Service API), under
``/matrix/``.

The homeserver calls ``{appservice_url}/_matrix/app/v1/...`` (and, from older homeservers, the
unprefixed legacy paths). Every request carries the ``hs_token`` (``Authorization: Bearer``, or
the legacy ``?access_token=``), compared in constant time. Answers are Matrix errors
(``{"errcode", "error"}``). A transaction is checked whole before anything of it is applied;
one already accepted is answered 200 and not applied again; a full queue answers 503 and the
homeserver sends the transaction again later.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.http.keys import BODY_LIMIT, GATEWAY
from gateway.ratelimit import RateLimiter
from protocols.matrix.ids import is_ours, split_user_id

if TYPE_CHECKING:
    from protocols.matrix.service import MatrixService

log = logging.getLogger(__name__)

PLUGIN = "matrix"
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_TXN_ID = 255
TO_DEVICE_KEYS = ("de.sorunome.msc2409.to_device", "to_device")
REFUSED_PER_MINUTE = 60
"""Requests with a missing or wrong hs_token each address may send before it gets 429."""
_REFUSED = web.AppKey("refused", RateLimiter)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def matrix_error(status: int, errcode: str, message: str) -> web.Response:
    """A Matrix error answer (Client-Server API, "Standard error response")."""
    return web.json_response({"errcode": errcode, "error": message}, status=status)


class Refusal(Exception):
    """A request refused with a Matrix error."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode

    def response(self) -> web.Response:
        return matrix_error(self.status, self.errcode, str(self))


@web.middleware
async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refusal as refusal:
        return refusal.response()


def running_service(request: web.Request) -> MatrixService:
    """The running Matrix service; Refusal 404 when Matrix is off on this gateway."""
    running = request.config_dict[GATEWAY].running.get(PLUGIN)
    if running is None or running.service is None:
        raise Refusal(404, "M_NOT_FOUND", "Matrix is not enabled on this server")
    service: MatrixService = running.service
    return service


def _presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    return request.query.get("access_token")


def authorize(request: web.Request) -> MatrixService:
    """The service, once the request proves it comes from our homeserver (the hs_token)."""
    service = running_service(request)
    token = _presented_token(request)
    refused: RateLimiter = request.app[_REFUSED]
    if not token or not hmac.compare_digest(token.encode(), service.config.hs_token.encode()):
        if not refused.allow(request.remote or "?"):
            raise Refusal(429, "M_LIMIT_EXCEEDED", "too many refused requests from this address")
        if token is None:
            raise Refusal(401, "M_UNAUTHORIZED", "the homeserver's hs_token is required")
        raise Refusal(403, "M_FORBIDDEN", "this is not the homeserver's hs_token")
    return service


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object of at most ``limit`` bytes; Refusal 413 or 400 otherwise."""
    if request.content_length is not None and request.content_length > limit:
        raise Refusal(413, "M_TOO_LARGE", f"the body is larger than {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refusal(413, "M_TOO_LARGE", f"the body is larger than {limit} bytes") from None
    if len(raw) > limit:
        raise Refusal(413, "M_TOO_LARGE", f"the body is larger than {limit} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refusal(400, "M_NOT_JSON", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Refusal(400, "M_BAD_JSON", "the body must be a JSON object")
    return body


def _event_list(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(event, dict) and isinstance(event.get("type"), str) for event in value
    ):
        raise Refusal(400, "M_BAD_JSON", f"'{key}' must be a list of events with a 'type'")
    return value


async def put_transaction(request: web.Request) -> web.Response:
    from protocols.matrix.service import Transaction

    service = authorize(request)
    txn_id = request.match_info["txn_id"]
    if not txn_id or len(txn_id) > MAX_TXN_ID:
        raise Refusal(400, "M_INVALID_PARAM", f"a transaction id is 1 to {MAX_TXN_ID} characters")
    body = await read_json_object(request, MAX_TRANSACTION_BYTES)
    events = _event_list(body, "events")
    _event_list(body, "ephemeral")  # typing and receipts: checked, not bridged
    to_device: list[dict[str, Any]] = []
    for key in TO_DEVICE_KEYS:
        to_device.extend(_event_list(body, key))
    if service.seen(txn_id):
        log.debug("matrix transaction already applied, answered again")
        return web.json_response({})
    if not service.submit(Transaction(txn_id, events, to_device)):
        log.warning("matrix transactions arrive faster than they are applied: one refused (503)")
        raise Refusal(503, "M_LIMIT_EXCEEDED", "too many transactions queued; send it again later")
    return web.json_response({})


async def get_user(request: web.Request) -> web.Response:
    """The homeserver asks whether a user of our namespace exists: we register it."""
    service = authorize(request)
    user_id = request.match_info["user_id"]
    config = service.config
    parts = split_user_id(user_id)
    ghost = (
        parts is not None
        and is_ours(
            user_id,
            sender_localpart=config.sender_localpart,
            user_prefix=config.user_prefix,
            server_name=config.server_name,
        )
        and parts[0] != config.sender_localpart
    )
    if not ghost:
        raise Refusal(404, "M_NOT_FOUND", "no such user in this application service's namespace")
    from protocols.matrix.client import MatrixError  # nio: imported once the service runs

    try:
        await service.ghosts.register(user_id)
    except MatrixError as error:
        log.warning("cannot register the ghost the homeserver asked about: %s", error)
        raise Refusal(500, "M_UNKNOWN", "the user could not be registered; ask again") from None
    return web.json_response({})


async def get_room_alias(request: web.Request) -> web.Response:
    authorize(request)
    raise Refusal(404, "M_NOT_FOUND", "this application service makes no room aliases")


async def post_ping(request: web.Request) -> web.Response:
    authorize(request)
    return web.json_response({})


def appservice_app() -> web.Application:
    """The application service's routes, on the application the plugin mounts at /matrix/."""
    app = web.Application(middlewares=[refusals])
    app[BODY_LIMIT] = MAX_TRANSACTION_BYTES
    app[_REFUSED] = RateLimiter(REFUSED_PER_MINUTE, burst=REFUSED_PER_MINUTE)
    for prefix in ("/_matrix/app/v1", ""):
        app.router.add_put(prefix + "/transactions/{txn_id}", put_transaction)
        app.router.add_get(prefix + "/users/{user_id}", get_user)
        app.router.add_get(prefix + "/rooms/{alias}", get_room_alias)
    app.router.add_post("/_matrix/app/v1/ping", post_ping)
    return app
