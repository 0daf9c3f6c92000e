"""The admin API (/api/v1), bearer admin token on every request; the CLI's only way in."""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.config import DISPATCH_NUMBER
from gateway.http.keys import ADMIN_FAILURES, GATEWAY
from gateway.links import LinkError, LinkManager, LinkStatus
from gateway.ors.problems import Problem, json_object
from gateway.ratelimit import RateLimiter
from gateway.rooms import Role, Room, RoomError, check_room_id
from gateway.rooms.names import display_name
from gateway.store import DispatchRule, Trunk
from gateway.telephony import DialError
from protocols.sip.dispatch import VISIO_SCHEME, check_rule

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

MAX_TOKEN_TTL = 30 * 24 * 3600


def _authorize(request: web.Request) -> Gateway:
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
    return detail


def room_calls(gateway: Gateway, room_id: str) -> list[dict[str, Any]]:
    return gateway.sip.calls_of(room_id) if gateway.sip is not None else []


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
        raise Problem(
            e.code, e.detail, e.status, "/pin" if e.code == "invalid_field" else "/id"
        ) from None
    log.info("room created", extra={"room": room_id, "lobby": lobby, "pin": bool(pin)})
    return web.json_response(room_detail(room, with_pin=True), status=201)


async def show_room(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    return web.json_response(
        {
            **room_detail(room, with_pin=True),
            "links": link_list(gateway.links, room.id),
            "calls": room_calls(gateway, room.id),
        }
    )


async def delete_room(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room_id = request.match_info["room"]
    gateway.rooms.get(room_id)
    await gateway.links.close_room(room_id)
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
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    return web.json_response(
        {"links": link_list(gateway.links, room.id), "schemes": gateway.links.schemes()}
    )


async def add_link(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    body = await json_object(request)
    target, status = await create_link(gateway.links, room.id, link_target(body))
    log.info("room linked through the admin API", extra={"room": room.id, "target": target})
    return web.json_response({"target": target, "status": status.to_wire()}, status=201)


async def delete_link(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    await gateway.links.unlink(room.id, request.match_info["target"])
    return web.Response(status=204)


# SIP: trunks, dispatch rules, dialling out ------------------------------------------------
_TRUNK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,31}")


def _string(body: dict[str, Any], key: str, default: str = "", limit: int = 256) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or len(value) > limit:
        raise Problem(
            "invalid_message", f"'{key}' is a string of at most {limit} characters", field=f"/{key}"
        )
    return value


async def list_trunks(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    trunks = []
    for trunk in gateway.store.trunks():
        shown = trunk.public()
        if gateway.sip is not None and trunk.register:
            shown["registration"] = gateway.sip.registration_status(trunk.name)
        trunks.append(shown)
    return web.json_response({"trunks": trunks})


async def save_trunk(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    body = await json_object(request)
    name = _string(body, "name", limit=32)
    if not _TRUNK_NAME.fullmatch(name):
        raise Problem(
            "invalid_message", "'name' is 2 to 32 lowercase letters, digits or '-'", field="/name"
        )
    transport = _string(body, "transport", "udp")
    if transport not in ("udp", "tcp", "tls"):
        raise Problem("invalid_message", "'transport' is udp, tcp or tls", field="/transport")
    allowed = body.get("allowed", [])
    if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
        raise Problem(
            "invalid_message", "'allowed' is a list of addresses or networks", field="/allowed"
        )
    for index, network in enumerate(allowed):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise Problem(
                "invalid_message", "not an address or network (CIDR)", field=f"/allowed/{index}"
            ) from None
    register = body.get("register", False)
    if not isinstance(register, bool):
        raise Problem("invalid_message", "'register' is true or false", field="/register")
    srtp = _string(body, "srtp", "optional")
    if srtp not in ("off", "optional", "required"):
        raise Problem("invalid_message", "'srtp' is off, optional or required", field="/srtp")
    trunk = Trunk(
        name=name,
        address=_string(body, "address"),
        transport=transport,
        username=_string(body, "username", limit=128),
        password=_string(body, "password", limit=128),
        allowed=allowed,
        register=register,
        caller_id=_string(body, "caller_id", limit=64),
        srtp=srtp,
    )
    if register and not (trunk.address and trunk.username and trunk.password):
        raise Problem(
            "invalid_message",
            "registering needs 'address', 'username' and 'password'",
            field="/register",
        )
    gateway.store.save_trunk(trunk)
    if gateway.sip is not None:
        gateway.sip.trunks_changed()
    log.info("SIP trunk saved", extra={"trunk": name})
    return web.json_response(trunk.public(), status=201)


async def delete_trunk(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    if not gateway.store.delete_trunk(request.match_info["name"]):
        raise Problem("not_found", "no such trunk", 404)
    if gateway.sip is not None:
        gateway.sip.trunks_changed()
    return web.Response(status=204)


async def list_dispatch(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    stored = {r.number for r in gateway.store.dispatch_rules()}
    rules = [
        {
            "number": r.number,
            "room": r.room or None,
            "language": r.language or None,
            "pin": bool(r.pin),
            "source": "config",
        }
        for r in gateway.config.sip.dispatch
        if r.number not in stored
    ] + [
        {
            "number": r.number,
            "room": r.room_id or None,
            "language": r.language or None,
            "pin": bool(r.pin),
            "source": "api",
        }
        for r in gateway.store.dispatch_rules()
    ]
    return web.json_response({"rules": rules})


async def save_dispatch(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    body = await json_object(request)
    number = _string(body, "number", limit=64)
    if not DISPATCH_NUMBER.fullmatch(number):
        raise Problem(
            "invalid_message", "'number' is a dialled number, a SIP user, or '*'", field="/number"
        )
    room = body.get("room") or ""
    if not isinstance(room, str) or len(room) > 128:
        raise Problem(
            "invalid_message",
            "'room' is a room name, visio:VISIO_ROOM_UUID, or null for the PIN prompt",
            field="/room",
        )
    pin = body.get("pin") or ""
    if not isinstance(pin, str):
        raise Problem("invalid_message", "'pin' is a string of digits", field="/pin")
    try:
        room = check_rule(room)
    except ValueError as error:
        raise Problem("invalid_message", str(error), field="/room") from None
    try:
        check_rule(room, pin)
    except ValueError as error:
        raise Problem("invalid_message", str(error), field="/pin") from None
    if room.startswith(VISIO_SCHEME):
        gateway.links.normalize(room)  # LinkError 400 when this gateway has no Visio bridge
    elif room:
        gateway.rooms.get(room)
    language = body.get("language") or ""
    if language not in ("", "fr", "en"):
        raise Problem("invalid_message", "'language' is fr or en", field="/language")
    gateway.store.save_dispatch_rule(DispatchRule(number, room, language, pin))
    return web.json_response(
        {"number": number, "room": room or None, "language": language or None, "pin": bool(pin)},
        status=201,
    )


async def delete_dispatch(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    if not gateway.store.delete_dispatch_rule(request.match_info["number"]):
        raise Problem("not_found", "no such dispatch rule", 404)
    return web.Response(status=204)


async def dial(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    body = await json_object(request)
    target = _string(body, "to", limit=256)
    trunk = body.get("trunk")
    if trunk is not None and not isinstance(trunk, str):
        raise Problem("invalid_message", "'trunk' is a trunk name", field="/trunk")
    if gateway.sip is None:
        raise Problem("invalid_state", "SIP is turned off on this gateway", 409)
    try:
        call = gateway.sip.dial(room.id, target, trunk)
    except DialError as error:
        raise Problem("invalid_message", str(error), field="/to") from None
    log.info("dialling out", extra={"room": room.id, "call": call.call_ref})
    return web.json_response(call.status(), status=202)


async def transfer(request: web.Request) -> web.Response:
    gateway = _authorize(request)
    room = gateway.rooms.get(request.match_info["room"])
    participant_id = request.match_info["participant"]
    if participant_id not in room.participants:
        raise Problem("participant_not_found", "no such participant in this room", 404)
    body = await json_object(request)
    target = _string(body, "to", limit=256)
    if gateway.sip is None:
        raise Problem("invalid_state", "SIP is turned off on this gateway", 409)
    try:
        gateway.sip.transfer(participant_id, target)
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
    app.router.add_get("/api/v1/sip/trunks", list_trunks)
    app.router.add_post("/api/v1/sip/trunks", save_trunk)
    app.router.add_delete("/api/v1/sip/trunks/{name}", delete_trunk)
    app.router.add_get("/api/v1/sip/dispatch", list_dispatch)
    app.router.add_post("/api/v1/sip/dispatch", save_dispatch)
    app.router.add_delete("/api/v1/sip/dispatch/{number}", delete_dispatch)
