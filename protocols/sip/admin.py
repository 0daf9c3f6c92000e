"""The SIP plugin's admin routes, mounted by the hub at /api/v1/sip/: trunks and dispatch rules."""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import TYPE_CHECKING, cast

from aiohttp import web

from gateway.http.admin import authorize, string_field
from gateway.ors.problems import Problem, json_object
from protocols.sip.config import DISPATCH_NUMBER
from protocols.sip.dispatch import check_rule
from protocols.sip.store import DispatchRule, SipStore, Trunk

if TYPE_CHECKING:
    from gateway.server import Gateway
    from protocols.sip.service import SipService

log = logging.getLogger(__name__)

_TRUNK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,31}")


def _service(gateway: Gateway) -> SipService | None:
    """The gateway's running SIP service; None when [sip] turns it off."""
    running = gateway.running.get("sip")
    return None if running is None else cast("SipService", running.service)


def _trunks_changed(gateway: Gateway) -> None:
    service = _service(gateway)
    if service is not None:
        service.trunks_changed()


async def list_trunks(request: web.Request) -> web.Response:
    gateway = authorize(request)
    service = _service(gateway)
    trunks = []
    for trunk in SipStore(gateway.store).trunks():
        shown = trunk.public()
        if service is not None and trunk.register:
            shown["registration"] = service.registration_status(trunk.name)
        trunks.append(shown)
    return web.json_response({"trunks": trunks})


async def save_trunk(request: web.Request) -> web.Response:
    gateway = authorize(request)
    body = await json_object(request)
    name = string_field(body, "name", limit=32)
    if not _TRUNK_NAME.fullmatch(name):
        raise Problem(
            "invalid_message", "'name' is 2 to 32 lowercase letters, digits or '-'", field="/name"
        )
    transport = string_field(body, "transport", "udp")
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
    srtp = string_field(body, "srtp", "optional")
    if srtp not in ("off", "optional", "required"):
        raise Problem("invalid_message", "'srtp' is off, optional or required", field="/srtp")
    trunk = Trunk(
        name=name,
        address=string_field(body, "address"),
        transport=transport,
        username=string_field(body, "username", limit=128),
        password=string_field(body, "password", limit=128),
        allowed=allowed,
        register=register,
        caller_id=string_field(body, "caller_id", limit=64),
        srtp=srtp,
    )
    if register and not (trunk.address and trunk.username and trunk.password):
        raise Problem(
            "invalid_message",
            "registering needs 'address', 'username' and 'password'",
            field="/register",
        )
    SipStore(gateway.store).save_trunk(trunk)
    _trunks_changed(gateway)
    log.info("SIP trunk saved", extra={"trunk": name})
    return web.json_response(trunk.public(), status=201)


async def delete_trunk(request: web.Request) -> web.Response:
    gateway = authorize(request)
    if not SipStore(gateway.store).delete_trunk(request.match_info["name"]):
        raise Problem("not_found", "no such trunk", 404)
    _trunks_changed(gateway)
    return web.Response(status=204)


async def list_dispatch(request: web.Request) -> web.Response:
    gateway = authorize(request)
    saved = SipStore(gateway.store).dispatch_rules()
    stored = {r.number for r in saved}
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
        for r in saved
    ]
    return web.json_response({"rules": rules})


async def save_dispatch(request: web.Request) -> web.Response:
    gateway = authorize(request)
    body = await json_object(request)
    number = string_field(body, "number", limit=64)
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
    if ":" in room:
        room = gateway.links.normalize(room)  # LinkError 400 when no plugin links that scheme
    elif room:
        gateway.rooms.get(room)
    language = body.get("language") or ""
    if language not in ("", "fr", "en"):
        raise Problem("invalid_message", "'language' is fr or en", field="/language")
    SipStore(gateway.store).save_dispatch_rule(DispatchRule(number, room, language, pin))
    return web.json_response(
        {"number": number, "room": room or None, "language": language or None, "pin": bool(pin)},
        status=201,
    )


async def delete_dispatch(request: web.Request) -> web.Response:
    gateway = authorize(request)
    if not SipStore(gateway.store).delete_dispatch_rule(request.match_info["number"]):
        raise Problem("not_found", "no such dispatch rule", 404)
    return web.Response(status=204)


def admin_app(gateway: Gateway) -> web.Application:
    """The routes under /api/v1/sip/ (the gateway comes from the request, ``authorize``)."""
    app = web.Application()
    app.router.add_get("/trunks", list_trunks)
    app.router.add_post("/trunks", save_trunk)
    app.router.add_delete("/trunks/{name}", delete_trunk)
    app.router.add_get("/dispatch", list_dispatch)
    app.router.add_post("/dispatch", save_dispatch)
    app.router.add_delete("/dispatch/{number}", delete_dispatch)
    return app
