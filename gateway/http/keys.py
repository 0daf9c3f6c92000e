"""The aiohttp application's state, each value under a typed ``web.AppKey``.

Handlers read them with ``request.config_dict[KEY]``, which also finds the main application's
values from a sub-application (a plugin's admin routes at ``/api/v1/{name}/``). This module
imports nothing of the gateway at run time, so any module may use it without an import circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.ors.routes import HttpMediaSession
    from gateway.ors.session import OrsSession
    from gateway.ratelimit import FailureBackoff, RateLimiter
    from gateway.server import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
"""The gateway the application serves: rooms, tokens, relay, links, configuration."""

BODY_LIMIT: web.AppKey[int] = web.AppKey("body_limit")
"""Set on a plugin's public sub-application whose callers send larger bodies than the gateway's
256 KiB (a homeserver's transactions): the bound of its routes' bodies."""

ADMIN_FAILURES: web.AppKey[RateLimiter] = web.AppKey("admin_failures")
"""Wrong admin tokens by client address (gateway/http/admin.py)."""

PIN_FAILURES: web.AppKey[FailureBackoff] = web.AppKey("pin_failures")
"""Wrong room PINs by room, from any address (gateway/ors/routes.py)."""

WS_BEFORE_JOIN: web.AppKey[dict[str, set[OrsSession]]] = web.AppKey("ws_before_join")
"""ORS WebSockets that have not joined yet, by client address."""

HTTP_MEDIA_SESSIONS: web.AppKey[dict[str, HttpMediaSession]] = web.AppKey("http_media_sessions")
"""WHIP and WHEP sessions by resource name."""
