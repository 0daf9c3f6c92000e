"""The aiohttp application: routes, security headers, and errors turned into RFC 9457 problems."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.http import admin, hostlinks, ops, webclient
from gateway.http.client_address import client_address_middleware
from gateway.http.keys import BODY_LIMIT, GATEWAY
from gateway.ors import routes as ors_routes
from gateway.ors.problems import Problem
from gateway.plugins import public_path
from gateway.rooms import RoomError
from gateway.tokens import TokenError

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "message_too_large",
    415: "unsupported_media_type",
}


REQUEST_BODY_SECONDS = 15.0
"""A request body (256 KiB at most) must arrive within this long of the request head; a client
that trickles it is disconnected without an answer. Heads: HTTP_REQUEST_HEAD_SECONDS
(gateway/process.py)."""


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body under a deadline before the handler runs (aiohttp keeps it for them),
    within the bound of the sub-application that serves it (BODY_LIMIT) when it sets one."""
    limits = [app[BODY_LIMIT] for app in request.match_info.apps if BODY_LIMIT in app]
    if limits:  # the innermost application's (apps go from the main one inwards)
        request = request.clone(client_max_size=limits[-1])
    if request.body_exists:
        try:
            async with asyncio.timeout(REQUEST_BODY_SECONDS):
                await request.read()
        except TimeoutError:
            log.info(
                "request body too slow: connection closed",
                extra={"path": request.path, "source": request.remote},
            )
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=408)
        except (ConnectionError, web.RequestPayloadError):  # the client went away mid-body
            return web.Response(status=400)
    return await handler(request)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Problem as problem:
        return problem.response()
    except (RoomError, TokenError) as error:
        return Problem.of(error).response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "invalid_message")
        return Problem(code, e.reason or "request refused", e.status).response()
    except Exception:
        log.exception("request failed", extra={"path": request.path})
        return Problem("internal", "the server failed on this request", 500).response()
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def create_app(gateway: Gateway) -> web.Application:
    """The application serving ``gateway``: its state under gateway/http/keys.py, every route."""
    # first, so every handler and log line reads the client's address as request.remote
    # (X-Forwarded-For when the peer is one of [http] trusted_proxies)
    client_address = client_address_middleware(gateway.config.http.trusted_proxies)
    app = web.Application(
        middlewares=[client_address, problems_middleware, body_deadline_middleware],
        client_max_size=256 * 1024,
    )
    app[GATEWAY] = gateway
    ors_routes.add_routes(app)
    admin.add_routes(app)
    hostlinks.add_routes(app)
    ops.add_routes(app)
    webclient.add_routes(app)
    for plugin in gateway.plugins:
        if plugin.public is not None:
            app.add_subapp(public_path(plugin), plugin.public(gateway))
    return app
