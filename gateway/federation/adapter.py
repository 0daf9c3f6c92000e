"""``ors:`` room links (gateway/links.py ``LinkAdapter``): a room here linked to a room on a
partner gateway that the operator added as a peer (``rondpoint peer add``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.federation.targets import SCHEME, normalize_target, split_target

if TYPE_CHECKING:
    from gateway.federation.link import FederationLink
    from gateway.federation.service import FederationService


class FederationAdapter:
    """Checks ``ors:`` targets against the peers and opens their links through the service."""

    scheme = SCHEME

    def __init__(self, service: FederationService) -> None:
        self.service = service

    def normalize(self, target: str) -> str:
        canonical = normalize_target(target)
        _, server = split_target(canonical)
        if server == self.service.server_name:
            raise ValueError(f"{server} is this gateway: a room cannot be linked to itself")
        if self.service.store.peer(server) is None:
            raise ValueError(
                f"{server} is not a federation peer of this gateway; "
                f"add it first with 'rondpoint peer add {server}'"
            )
        return canonical

    def open(self, room_id: str, target: str) -> FederationLink:
        return self.service.open_link(room_id, target)
