"""The federation plugin: rooms linked to rooms on partner gateways (``ors:ROOM@SERVER``).

Entry point ``federation``. Light to import: the service (HTTPS client, links, media) is imported
when the gateway starts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.federation.admin import admin_app
from gateway.federation.cli import add_commands
from gateway.federation.config import FederationConfig
from gateway.federation.routes import public_app
from gateway.federation.store import MIGRATIONS
from gateway.federation.targets import SCHEME, normalize_target
from gateway.plugins import ProtocolPlugin, Running

if TYPE_CHECKING:
    from gateway.server import Gateway

UNAVAILABLE = "ors: links need federation: [federation] enabled must be true"


async def _start(gateway: Gateway) -> Running | None:
    config: FederationConfig = gateway.config.federation
    if not config.enabled:
        return None
    from gateway.federation.service import FederationService

    service = FederationService(gateway, config)
    return Running(
        stop=service.close,
        banner=service.banner,
        link_adapters=[service.adapter],
        metrics=service.metrics,
        capabilities=["federation"],
        service=service,
    )


plugin = ProtocolPlugin(
    name="federation",
    summary="Partner gateways: rooms linked to rooms on other ORS servers, ors:ROOM@SERVER",
    config=FederationConfig,
    migrations=MIGRATIONS,
    link_schemes={SCHEME: UNAVAILABLE},
    normalize_target=normalize_target,
    admin=admin_app,
    public=public_app,
    public_path="/ors/v1/federation/",
    cli=add_commands,
    start=_start,
)
