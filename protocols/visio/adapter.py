"""`visio:` room links (gateway/links.py): a Visio room is named by its UUID, the LiveKit room name.

The adapter opens the bridge's links, and admits phones the hub sends to a Visio room past Visio's
lobby (protocols/visio/admission.py), turning the lobby's failures into the hub's LinkError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.links import ADMITTED, Admission, AdmissionOutcome, LinkError
from protocols.visio.admission import WAITING_REPEAT, admit_through_lobby
from protocols.visio.bridge import VISIO_ORIGIN, VisioLink
from protocols.visio.lobby import POLL_INTERVAL, WAIT_TIMEOUT, VisioLobby, VisioLobbyError
from protocols.visio.targets import SCHEME, normalize_target, visio_room

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["SCHEME", "VisioAdapter", "visio_room"]


class VisioAdapter:
    """Opens `VisioLink`s with the gateway's [visio] configuration (a gateway.links
    ``AdmittingAdapter``). The lobby's polling and waiting are ``admit_through_lobby``'s, here
    to be shortened by tests."""

    scheme = SCHEME
    origin = VISIO_ORIGIN

    def __init__(
        self,
        gateway: Gateway,
        *,
        poll_interval: float = POLL_INTERVAL,
        timeout: float = WAIT_TIMEOUT,
        repeat: float = WAITING_REPEAT,
        session_factory: Callable[[str], VisioLobby] | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = gateway.config.visio
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.repeat = repeat
        self.session_factory = session_factory

    def normalize(self, target: str) -> str:
        return normalize_target(target)

    def open(self, room_id: str, target: str) -> VisioLink:
        return VisioLink(self.gateway, self.config, room_id, visio_room(target))

    async def admit(
        self, target: str, display_name: str, play_waiting: Callable[[], float]
    ) -> Admission:
        """Visio's lobby decides (``ADMITTED`` when none applies); LinkError when it fails."""
        try:
            admission = await admit_through_lobby(
                self.config.backend_url,
                target,
                display_name,
                play_waiting,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                repeat=self.repeat,
                session_factory=self.session_factory,
            )
        except VisioLobbyError as error:
            raise LinkError("link_unavailable", str(error)) from None
        if admission is None:
            return ADMITTED
        return Admission(AdmissionOutcome(admission.outcome.value))
