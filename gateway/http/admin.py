"""The admin API (/api/v1), bearer admin token on every request; the CLI's only way in."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import web

from gateway.ors.problems import Problem, json_object
from gateway.ratelimit import RateLimiter
from gateway.rooms import Role, Room, RoomError, check_room_id
from gateway.server import Gateway

log = logging.getLogger(__name__)

MAX_TOKEN_TTL = 30 * 24 * 3600


def _authorize(request: web.Request) -> Gateway:
    gateway: Gateway = request.app["gateway"]
    limiter: RateLimiter = request.app["admin_failures"]
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    if token and gateway.store.check_admin_token(token):
        return gateway
    source = request.remote or "?"
    if not limiter.allow(source):
        raise Problem("rate_limited", "too many failed admin attempts; wait a minute", 429)
    log.warning("admin API refused a request", extra={"source": source, "path": request.path})
    raise Problem(
        "unauthorized",
        "a valid admin token is required (Authorization: Bearer ...)",
        401,
    )


def room_detail(room: Room, with_pin: bool) -> dict[str, Any]:
    detail = room.to_wire()
    if with_pin:
        detail["pin"] = room.policy.pin
    detail["participants"] = [p.to_wire() for p in room.participants.values()]
    detail["tracks"] = [t.to_wire() for t in room.tracks()]
    return detail


async def list_rooms(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    return web.json_response(
        {
            "rooms": [
                {**room.to_wire(), "participants": len(room.participants)}
                for room in gateway.rooms.list()
            ]
        }
    )


async def create_room(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    body = await json_object(request)
    room_id = body.get("id")
    if not isinstance(room_id, str):
        raise Problem("invalid_message", "'id' (the room name) is required", field="/id")
    pin = body.get("pin", "")
    if pin is True:
        pin = f"{secrets.randbelow(10**6):06d}"
    elif pin is False or pin is None:
        pin = ""
    if not isinstance(pin, str):
        raise Problem(
            "invalid_message", "'pin' is a string of 4 to 12 digits, or true", field="/pin"
        )
    lobby = body.get("lobby", False)
    if not isinstance(lobby, bool):
        raise Problem("invalid_message", "'lobby' is true or false", field="/lobby")
    try:
        check_room_id(room_id)
        room = gateway.rooms.create(room_id, pin=pin, lobby=lobby)
    except RoomError as e:
        raise Problem(e.code, e.detail, e.status, "/id" if "room" in e.code else "/pin") from None
    log.info("room created", extra={"room": room_id, "lobby": lobby, "pin": bool(pin)})
    return web.json_response(room_detail(room, with_pin=True), status=201)


async def show_room(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    return web.json_response(room_detail(room, with_pin=True))


async def delete_room(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room_id = request.match_info["room"]
    gateway.rooms.get(room_id)
    gateway.rooms.delete(room_id)
    gateway.relay.close_room(room_id)
    log.info("room deleted", extra={"room": room_id})
    return web.Response(status=204)


async def create_token(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    body = await json_object(request)
    identity = body.get("identity")
    if not isinstance(identity, str) or not 1 <= len(identity) <= 128:
        raise Problem("invalid_message", "'identity' is 1 to 128 characters", field="/identity")
    name = body.get("name") or identity
    if not isinstance(name, str) or len(name) > 64:
        raise Problem("invalid_message", "'name' is at most 64 characters", field="/name")
    ttl = body.get("ttl", 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TOKEN_TTL:
        raise Problem("invalid_message", f"'ttl' is 1 to {MAX_TOKEN_TTL} seconds", field="/ttl")
    try:
        role = Role(body.get("role", "host"))
    except ValueError:
        raise Problem("invalid_message", "'role' is host, member or guest", field="/role") from None
    token = gateway.tokens.mint(room.id, identity, name, role, ttl)
    url = f"{gateway.config.base_url}/r/{room.id}#token={token}"
    return web.json_response({"token": token, "url": url, "room": room.id, "ttl": ttl}, status=201)


def add_routes(app: web.Application) -> None:
    app["admin_failures"] = RateLimiter(rate_per_minute=20, burst=10)
    app.router.add_get("/api/v1/rooms", list_rooms)
    app.router.add_post("/api/v1/rooms", create_room)
    app.router.add_get("/api/v1/rooms/{room}", show_room)
    app.router.add_delete("/api/v1/rooms/{room}", delete_room)
    app.router.add_post("/api/v1/rooms/{room}/tokens", create_token)
