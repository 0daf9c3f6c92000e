"""A gateway in this process with the Matrix plugin's public routes served over HTTP (the real
application, middlewares included) and its service talking to a RecordingHomeserver: for unit
tests of the application-service and focus routes."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from gateway.config import load_config
from gateway.http.app import create_app
from gateway.plugins import Running
from gateway.server import Gateway
from protocols.matrix.plugin import plugin
from protocols.matrix.service import MatrixService
from tests.gateway_process import free_port
from tests.unit.matrix.recording_homeserver import RecordingHomeserver

AS_TOKEN = "as-token-for-unit-tests-0123456789"
HS_TOKEN = "hs-token-for-unit-tests-0123456789"
LIVEKIT_SECRET = "livekit-secret-for-unit-tests-0123456789"
SERVER_NAME = "hs.test"


@dataclass
class Served:
    client: TestClient
    gateway: Gateway
    service: MatrixService
    homeserver: RecordingHomeserver

    def auth(self, token: str = HS_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path, homeserver: RecordingHomeserver, *, max_queued: int = 1000
) -> AsyncIterator[Served]:
    """The gateway, its Matrix service (a queue of ``max_queued`` transactions) and a client."""

    async def start(gateway: Gateway) -> Running | None:
        service = MatrixService(
            gateway.config.matrix,
            gateway.store,
            base_url=gateway.config.base_url,
            max_queued=max_queued,
        )
        return Running(stop=service.close, service=service)

    matrix = dataclasses.replace(plugin, start=start)
    config = load_config(None, plugins=[matrix])
    config.server.data_dir = str(tmp_path / "data")
    config.rooms.demo_room = ""
    config.media.port = free_port(socket.SOCK_DGRAM)
    section = config.matrix
    section.homeserver_url = homeserver.url
    section.server_name = SERVER_NAME
    section.as_token = AS_TOKEN
    section.hs_token = HS_TOKEN
    section.livekit_url = "http://127.0.0.1:7880"
    section.livekit_api_key = "APIunit"
    section.livekit_api_secret = LIVEKIT_SECRET
    gateway = Gateway(config, [matrix])
    await gateway.start()
    client = TestClient(TestServer(create_app(gateway), host="127.0.0.1"))
    await client.start_server()
    try:
        running = gateway.running["matrix"]
        assert running is not None
        yield Served(client, gateway, running.service, homeserver)
    finally:
        await client.close()
        await gateway.stop()
