"""Operations endpoints: liveness (/healthz), readiness (/readyz) and Prometheus metrics (/metrics)."""

from __future__ import annotations

from aiohttp import web

from gateway import metrics
from gateway.http.keys import GATEWAY


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gateway = request.config_dict[GATEWAY]
    if not gateway.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready", "media_port": gateway.relay.port})


async def prometheus(request: web.Request) -> web.Response:
    body = metrics.render(request.config_dict[GATEWAY])
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
