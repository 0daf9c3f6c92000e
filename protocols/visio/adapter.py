"""`visio:` room links (gateway/links.py): a Visio room is named by its UUID, the LiveKit room name."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from protocols.visio.bridge import VisioLink

if TYPE_CHECKING:
    from gateway.server import Gateway

SCHEME = "visio"


def visio_room(target: str) -> str:
    """The canonical UUID of a `visio:UUID` target; ValueError with a sentence otherwise."""
    scheme, _, rest = target.strip().partition(":")
    if scheme.lower() != SCHEME:
        raise ValueError(f"a Visio link looks like visio:ROOM-UUID, not {target[:80]!r}")
    try:
        return str(uuid.UUID(rest.strip()))
    except ValueError:
        raise ValueError(
            "a Visio room is named by its UUID (as in its address), e.g. "
            "visio:0b4c8f2e-5a1d-4c3e-9f00-3f6c2a1b9d77"
        ) from None


class VisioAdapter:
    """Opens `VisioLink`s with the gateway's [visio] configuration."""

    scheme = SCHEME

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.config = gateway.config.visio

    def normalize(self, target: str) -> str:
        return f"{SCHEME}:{visio_room(target)}"

    def open(self, room_id: str, target: str) -> VisioLink:
        return VisioLink(self.gateway, self.config, room_id, visio_room(target))
