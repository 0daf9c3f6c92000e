"""The admin API (/api/v1), bearer admin token on every request; the CLI's only way in.

Rooms, tokens, links and dialling are the hub's; each plugin's own routes are an aiohttp
sub-application mounted at ``/api/v1/{name}/`` (``ProtocolPlugin.admin``), whose handlers call
``authorize`` first.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.http.keys import ADMIN_FAILURES, GATEWAY
from gateway.links import LinkError, LinkManager, LinkStatus
from gateway.ors.problems import Problem, json_object
from gateway.plugins import DialError
from gateway.ratelimit import RateLimiter
from gateway.rooms import Role, Room, RoomError, check_room_id
from gateway.rooms.names import display_name

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

MAX_TOKEN_TTL = 30 * 24 * 3600


def authorize(request: web.Request) -> Gateway:
    """The gateway, when the request carries a valid admin token; else a 401 problem (429 after
    too many failures from its address). Every admin handler, a plugin's too, calls it first."""
    gateway: Gateway = request.config_dict[GATEWAY]
    limiter: RateLimiter = request.config_dict[ADMIN_FAILURES]
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
    detail["hosts"] = list(room.hosts)
    return detail


def room_calls(gateway: Gateway, room_id: str) -> list[dict[str, Any]]:
    return gateway.diallers.calls_of(room_id)


async def list_rooms(request: web.Request) -> web.Response:
    gateway = authorize(request)
    return web.json_response(
        {
            "rooms": [
                {**room.to_wire(), "participants": len(room.participants)}
                for room in gateway.rooms.list()
            ]
        }
    )


async def create_room(request: web.Request) -> web.Response:
    gateway = authorize(request)
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
        raise Problem(
            e.code, e.detail, e.status, "/pin" if e.code == "invalid_field" else "/id"
        ) from None
    log.info("room created", extra={"room": room_id, "lobby": lobby, "pin": bool(pin)})
    return web.json_response(room_detail(room, with_pin=True), status=201)


async def show_room(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    return web.json_response(
        {
            **room_detail(room, with_pin=True),
            "links": link_list(gateway.links, room.id),
            "calls": room_calls(gateway, room.id),
        }
    )


async def delete_room(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room_id = request.match_info["room"]
    gateway.rooms.get(room_id)
    await gateway.links.close_room(room_id)
    gateway.rooms.delete(room_id)
    gateway.relay.close_room(room_id)
    log.info("room deleted", extra={"room": room_id})
    return web.Response(status=204)


async def create_token(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    body = await json_object(request)
    identity = body.get("identity")
    if not isinstance(identity, str) or not 1 <= len(identity) <= 128:
        raise Problem("invalid_message", "'identity' is 1 to 128 characters", field="/identity")
    raw_name = body.get("name") or identity
    if not isinstance(raw_name, str) or len(raw_name) > 64:
        raise Problem("invalid_message", "'name' is at most 64 characters", field="/name")
    name = display_name(raw_name)
    if not name:
        raise Problem(
            "invalid_message", "'name' has no character that can be displayed", field="/name"
        )
    ttl = body.get("ttl", 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TOKEN_TTL:
        raise Problem("invalid_message", f"'ttl' is 1 to {MAX_TOKEN_TTL} seconds", field="/ttl")
    try:
        role = Role(body.get("role", "host"))
    except ValueError:
        raise Problem("invalid_message", "'role' is host, member or guest", field="/role") from None
    grants: dict[str, bool] = {}
    for key in ("can_publish", "can_subscribe"):
        allowed = body.get(key, True)
        if not isinstance(allowed, bool):
            raise Problem("invalid_message", f"'{key}' is true or false", field=f"/{key}")
        grants[key] = allowed
    token = gateway.tokens.mint(room.id, identity, name, role, ttl, **grants)
    url = f"{gateway.config.base_url}/r/{room.id}#token={token}"
    return web.json_response(
        {"token": token, "url": url, "room": room.id, "ttl": ttl, **grants}, status=201
    )


# links to foreign rooms (gateway/links.py) --------------------------------------------------
def link_list(links: LinkManager, room_id: str) -> list[dict[str, Any]]:
    """A room's links as the admin API and the hosts' page show them: target and status."""
    return [
        {"target": target, "status": status.to_wire()} for target, status in links.links(room_id)
    ]


def link_target(body: dict[str, Any]) -> object:
    target = body.get("target")
    if not isinstance(target, str):
        raise Problem(
            "invalid_link", "'target' is required, e.g. visio:VISIO_ROOM_UUID", field="/target"
        )
    return target


async def create_link(links: LinkManager, room_id: str, target: object) -> tuple[str, LinkStatus]:
    """Link a room; a refusal becomes a problem pointing at /target."""
    try:
        canonical = links.normalize(target)
        return canonical, await links.link(room_id, canonical)
    except LinkError as error:
        raise Problem(error.code, error.detail, error.status, "/target") from None


async def list_links(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    return web.json_response(
        {"links": link_list(gateway.links, room.id), "schemes": gateway.links.schemes()}
    )


async def add_link(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    body = await json_object(request)
    target, status = await create_link(gateway.links, room.id, link_target(body))
    log.info("room linked through the admin API", extra={"room": room.id, "target": target})
    return web.json_response({"target": target, "status": status.to_wire()}, status=201)


async def delete_link(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    await gateway.links.unlink(room.id, request.match_info["target"])
    return web.Response(status=204)


# dialling out, through the running plugins' diallers (gateway/dialling.py) --------------------
NO_DIALLER = "nothing on this gateway dials out (telephony, such as [sip], is turned off)"
"""Said when no running plugin can dial out (SIP being the one that can, when it runs)."""


def string_field(body: dict[str, Any], key: str, default: str = "", limit: int = 256) -> str:
    """``body[key]`` (or ``default``): a string of at most ``limit`` characters, or a problem
    pointing at the field (plugins' admin routes use it too)."""
    value = body.get(key, default)
    if not isinstance(value, str) or len(value) > limit:
        raise Problem(
            "invalid_message", f"'{key}' is a string of at most {limit} characters", field=f"/{key}"
        )
    return value


async def dial(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    body = await json_object(request)
    target = string_field(body, "to", limit=256)
    trunk = body.get("trunk")
    if trunk is not None and not isinstance(trunk, str):
        raise Problem("invalid_message", "'trunk' is a trunk name", field="/trunk")
    if not gateway.diallers.schemes():
        raise Problem("invalid_state", NO_DIALLER, 409)
    try:
        call = gateway.diallers.dial(room.id, target, trunk)
    except DialError as error:
        raise Problem("invalid_message", str(error), field="/to") from None
    log.info("dialling out", extra={"room": room.id, "call": call.call_ref})
    return web.json_response(call.status(), status=202)


async def transfer(request: web.Request) -> web.Response:
    gateway = authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    participant_id = request.match_info["participant"]
    if participant_id not in room.participants:
        raise Problem("participant_not_found", "no such participant in this room", 404)
    body = await json_object(request)
    target = string_field(body, "to", limit=256)
    if not gateway.diallers.schemes():
        raise Problem("invalid_state", NO_DIALLER, 409)
    try:
        gateway.diallers.transfer(participant_id, target)
    except DialError as error:
        raise Problem("invalid_message", str(error), field="/to") from None
    return web.json_response(
        {"participant_id": participant_id, "to": target, "status": "requested"}, status=202
    )


def add_routes(app: web.Application) -> None:
    app[ADMIN_FAILURES] = RateLimiter(rate_per_minute=20, burst=10)
    app.router.add_get("/api/v1/rooms", list_rooms)
    app.router.add_post("/api/v1/rooms", create_room)
    app.router.add_get("/api/v1/rooms/{room}", show_room)
    app.router.add_delete("/api/v1/rooms/{room}", delete_room)
    app.router.add_post("/api/v1/rooms/{room}/tokens", create_token)
    app.router.add_get("/api/v1/rooms/{room}/links", list_links)
    app.router.add_post("/api/v1/rooms/{room}/links", add_link)
    app.router.add_delete("/api/v1/rooms/{room}/links/{target}", delete_link)
    app.router.add_post("/api/v1/rooms/{room}/dial", dial)
    app.router.add_post("/api/v1/rooms/{room}/participants/{participant}/transfer", transfer)
    gateway = app[GATEWAY]
    for plugin in gateway.plugins:
        if plugin.admin is not None:
            app.add_subapp(f"/api/v1/{plugin.name}/", plugin.admin(gateway))
