"""The SIP plugin: how the hub finds SIP (entry point ``sip`` in pyproject.toml, gateway/plugins.py).

Light to import: the SIP stack and the media it needs are imported when the gateway starts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.plugins import Commands, ProtocolPlugin, Running
from protocols.sip.config import SipConfig
from protocols.sip.store import MIGRATIONS

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.server import Gateway


async def _start(gateway: Gateway) -> Running | None:
    config: SipConfig = gateway.config.sip
    if not config.enabled:
        return None
    from protocols.sip.service import SipService

    service = SipService(gateway)
    await service.start()
    return Running(
        stop=service.stop,
        banner=lambda: f"udp/tcp {config.host}:{service.port}",
        diallers=[service],
        dial_in=service.dial_in,
        service=service,
    )


def _admin(gateway: Gateway) -> web.Application:
    from protocols.sip.admin import admin_app

    return admin_app(gateway)


def _cli(commands: Commands) -> None:
    from protocols.sip.cli import add_commands

    add_commands(commands)


plugin = ProtocolPlugin(
    name="sip",
    summary="SIP phones and trunks: calls into rooms, dial-out, transfer (RFC 3261)",
    config=SipConfig,
    migrations=MIGRATIONS,
    admin=_admin,
    cli=_cli,
    start=_start,
)
