"""``matrix:`` room links (gateway/links.py): a Matrix room by its id or alias.

The adapter opens a `MatrixLink` per linked room with the plugin's running Matrix service (the
application service's client, ghosts and store).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.matrix.link import MATRIX_ORIGIN, MatrixLink
from protocols.matrix.targets import SCHEME, matrix_room, normalize_target

if TYPE_CHECKING:
    from gateway.server import Gateway
    from protocols.matrix.service import MatrixService

__all__ = ["SCHEME", "MatrixAdapter"]


class MatrixAdapter:
    """Opens `MatrixLink`s on one homeserver (a gateway.links ``LinkAdapter``)."""

    scheme = SCHEME
    origin = MATRIX_ORIGIN

    def __init__(self, gateway: Gateway, service: MatrixService) -> None:
        self.gateway = gateway
        self.service = service

    def normalize(self, target: str) -> str:
        return normalize_target(target)

    def open(self, room_id: str, target: str) -> MatrixLink:
        return MatrixLink(self.gateway, self.service, room_id, matrix_room(target))
