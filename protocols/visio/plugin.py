"""The Visio plugin: ``visio:`` room links to Visio (LiveKit) rooms (entry point ``visio``).

Light to import: the bridge and LiveKit's client (aiortc) are imported when the gateway starts it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.plugins import ProtocolPlugin, Running
from protocols.visio.config import VisioConfig
from protocols.visio.targets import SCHEME, normalize_target

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

UNAVAILABLE = (
    "visio: links need the Visio bridge: [visio] url (with api_key and api_secret) "
    "must be configured on this gateway"
)


async def _nothing_to_stop() -> None:
    return None


async def _start(gateway: Gateway) -> Running | None:
    """The Visio bridge when [visio] url is set; the gateway runs without it if it cannot start."""
    config: VisioConfig = gateway.config.visio
    if not config.url:
        return None
    try:
        from protocols.visio.adapter import VisioAdapter

        adapter = VisioAdapter(gateway)
    except Exception as error:
        log.error(
            "the Visio bridge cannot start (%s: %s); visio: links are unavailable",
            type(error).__name__,
            error,
        )
        return Running(
            stop=_nothing_to_stop, banner=lambda: f"{config.url} (unavailable: see the log)"
        )
    return Running(stop=_nothing_to_stop, banner=lambda: config.url, link_adapters=[adapter])


plugin = ProtocolPlugin(
    name="visio",
    summary="Visio (LiveKit) rooms linked to rooms here: visio:VISIO_ROOM_UUID",
    config=VisioConfig,
    link_schemes={SCHEME: UNAVAILABLE},
    normalize_target=normalize_target,
    start=_start,
)
