"""The plugin's admin routes (``/api/v1/echo/``) and its ``rondpoint echo-calls`` command."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.cli import admin_request, print_safe
from gateway.config import Config
from gateway.http.admin import authorize
from rondpoint_echo.calls import CallLog

if TYPE_CHECKING:
    from gateway.plugins import Commands
    from gateway.server import Gateway


def admin_app(gateway: Gateway) -> web.Application:
    """Mounted at /api/v1/echo/ by the gateway: GET /api/v1/echo/calls."""
    calls = CallLog(gateway.store.connection)

    async def list_calls(request: web.Request) -> web.Response:
        authorize(request)
        return web.json_response({"calls": calls.recent()})

    app = web.Application()
    app.router.add_get("/calls", list_calls)
    return app


def add_commands(commands: Commands) -> None:
    """``rondpoint echo-calls``."""
    command = commands.add_parser("echo-calls", help="list the latest echo: calls")
    command.set_defaults(run=_echo_calls)


def _echo_calls(args: argparse.Namespace, config: Config) -> None:
    calls = admin_request(args, config, "GET", "/api/v1/echo/calls")["calls"]
    if not calls:
        print("no echo calls")
    for call in calls:
        when = datetime.fromtimestamp(call["dialled_at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print_safe(f"{when}  {call['room']}  {call['to']}  {call['id']}")
