"""The Matrix plugin: ``matrix:`` room links to Matrix rooms and their Element Call calls (entry
point ``matrix``).

Light to import: the client, the service and the bridge are imported when the gateway starts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.plugins import ProtocolPlugin, Running
from protocols.matrix.appservice import appservice_app
from protocols.matrix.cli import add_commands
from protocols.matrix.config import MatrixConfig
from protocols.matrix.store import MIGRATIONS
from protocols.matrix.targets import SCHEME, normalize_target

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.server import Gateway

UNAVAILABLE = (
    "matrix: links need the Matrix bridge: [matrix] homeserver_url, server_name, as_token and "
    "hs_token must be configured on this gateway, and the homeserver given its registration "
    "('rondpoint matrix registration')"
)


def _public_app(gateway: Gateway) -> web.Application:
    """What is mounted at /matrix/: the application service's routes and the focus token
    service."""
    from protocols.matrix.focus import mount_focus

    app = appservice_app()
    mount_focus(app)
    return app


async def _start(gateway: Gateway) -> Running | None:
    """The Matrix service when [matrix] homeserver_url is set."""
    config: MatrixConfig = gateway.config.matrix
    if not config.enabled:
        return None
    from protocols.matrix.adapter import MatrixAdapter
    from protocols.matrix.legacy_call import LegacyCalls
    from protocols.matrix.service import MatrixService

    service = MatrixService(config, gateway.store, base_url=gateway.config.base_url)
    legacy_calls = LegacyCalls(gateway, service)
    legacy_calls.start()

    async def stop() -> None:
        await legacy_calls.close()
        await service.close()

    return Running(
        stop=stop,
        banner=lambda: f"{config.homeserver_url} as {config.bot_user_id}",
        link_adapters=[MatrixAdapter(gateway, service)],
        service=service,
    )


plugin = ProtocolPlugin(
    name="matrix",
    summary="Matrix rooms and their Element Call calls linked to rooms here: matrix:!ROOM:SERVER",
    config=MatrixConfig,
    migrations=MIGRATIONS,
    link_schemes={SCHEME: UNAVAILABLE},
    normalize_target=normalize_target,
    public=_public_app,
    cli=add_commands,
    start=_start,
)
