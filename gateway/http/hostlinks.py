"""Room links for hosts on the web page: list, link and unlink with the host's own join token.

The web page speaks ORS, whose messages have no link verbs (and the ORS schemas stay as published),
so a host's page uses these three HTTP routes with ``Authorization: Bearer <join token>``, the way
WHIP and WHEP clients authenticate: the token must be valid for the room and carry the host role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.http.admin import create_link, link_list, link_target
from gateway.http.keys import GATEWAY
from gateway.ors.problems import Problem, json_object
from gateway.rooms import Role, check_room_id

if TYPE_CHECKING:
    from gateway.server import Gateway


def _host(request: web.Request, *, linking: bool = False) -> tuple[Gateway, str]:
    """The gateway and room of a request carrying a valid host token for that room."""
    gateway = request.config_dict[GATEWAY]
    room_id = request.match_info["room"]
    check_room_id(room_id)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise Problem("token_invalid", "send your join token as 'Authorization: Bearer'", 401)
    grant = gateway.tokens.verify(header[7:].strip(), room_id)
    if grant.role is not Role.HOST:
        raise Problem("forbidden", "only a host of this room may change its links", 403)
    if linking and grant.anonymous:
        # A link lets the room hear a foreign room with the gateway's own credentials: whoever
        # made a room anonymously must not be able to reach into any Visio room they can name.
        raise Problem(
            "forbidden",
            "a host who joined anonymously cannot link this room; an operator can "
            "(rondpoint link), or a host token issued by the operator",
            403,
        )
    gateway.rooms.get(room_id)
    return gateway, room_id


async def list_links(request: web.Request) -> web.Response:
    gateway, room_id = _host(request)
    return web.json_response(
        {"links": link_list(gateway.links, room_id), "schemes": gateway.links.schemes()}
    )


async def add_link(request: web.Request) -> web.Response:
    gateway, room_id = _host(request, linking=True)
    body = await json_object(request)
    target, status = await create_link(gateway.links, room_id, link_target(body))
    return web.json_response({"target": target, "status": status.to_wire()}, status=201)


async def delete_link(request: web.Request) -> web.Response:
    gateway, room_id = _host(request)
    await gateway.links.unlink(room_id, request.match_info["target"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/rooms/{room}/links", list_links)
    app.router.add_post("/rooms/{room}/links", add_link)
    app.router.add_delete("/rooms/{room}/links/{target}", delete_link)
