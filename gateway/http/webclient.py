"""Serves the web client: plain ES modules from gateway/web/static, no build step."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-ancestors 'none'"
)


async def index(request: web.Request) -> web.FileResponse:
    response = web.FileResponse(STATIC / "index.html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/r/{room}", index)
    app.router.add_static("/static/", STATIC, show_index=False)
