"""The Visio bridge: one room here and one Visio (LiveKit) room become one meeting.

A `VisioLink` is a protocols/livekit/bridge.py `LiveKitBridge` joining the Visio room's LiveKit
room (its name is the Visio room's UUID), with the Visio policy:

- every Visio participant not ours comes here with origin `visio`, their Visio name (sanitised
  as this room shows names, else their identity) and their LiveKit identity as origin address;
- every person on this side is mirrored to Visio as identity `<prefix><participant id>`, the
  person's name, attributes `rondpoint.origin` and `rondpoint.participant` and, for phones,
  `sip.phoneNumber` as masked here, LiveKit kind `sip` for phones;
- identities starting with the configured prefix (the bridge `<prefix>bridge-<room>` and the
  mirrors) are ours, never brought here;
- chat crosses as Visio's `lk.chat` text streams;
- raised hands and reactions cross as Visio carries them (protocols/visio/social.py): a Visio
  hand is the participant attribute ``handRaisedAt``, which the mirror of a person here with a
  raised hand has too (a host here lowering a Visio user's hand clears it, as Visio's own
  ``update-participant`` does); a reaction is a Visio notification data packet, both ways, for the seven
  reactions both sides have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from livekit.protocol import models

from gateway.rooms.model import Participant
from gateway.rooms.names import display_name as room_display_name
from protocols.livekit.bridge import BridgeSettings, LiveKitBridge, MirrorGrant
from protocols.livekit.signal import Participant as LkParticipant
from protocols.visio import social

if TYPE_CHECKING:
    from gateway.server import Gateway
    from protocols.visio.config import VisioConfig

VISIO_ORIGIN = "visio"
"""Origin of the participants the bridge brings here from Visio."""


def display_name(name: str, fallback: str) -> str:
    """A Visio name as this room shows names (the one sanitiser, spec 7.1), else ``fallback``
    sanitised alike, else "Visio"."""
    return room_display_name(name) or room_display_name(fallback) or "Visio"


def phone_number(participant: Participant) -> str:
    """What `sip.phoneNumber` says of a phone caller: the number as this room shows it."""
    address = participant.origin_address
    return address.removeprefix("Phone ").strip() or "•••"


@dataclass(frozen=True)
class VisioPolicy:
    """Visio's names and identities (a protocols/livekit/bridge.py ``BridgePolicy``)."""

    identity_prefix: str
    origin: str = VISIO_ORIGIN

    def is_ours(self, identity: str) -> bool:
        return identity.startswith(self.identity_prefix)

    def mirror_identity(self, participant: Participant) -> str:
        return f"{self.identity_prefix}{participant.id}"

    def mirror_grant(self, participant: Participant) -> MirrorGrant:
        attributes = {
            "rondpoint.origin": participant.origin,
            "rondpoint.participant": participant.id,
        }
        if participant.hand_raised_at is not None:
            attributes[social.HAND_ATTRIBUTE] = social.hand_attribute(participant.hand_raised_at)
        if participant.origin == "sip":
            attributes["sip.phoneNumber"] = phone_number(participant)
            return MirrorGrant(participant.name, "sip", attributes)
        return MirrorGrant(participant.name, attributes=attributes)

    def remote_name(self, info: LkParticipant) -> str:
        return display_name(info.name, info.identity)

    def remote_address(self, info: LkParticipant) -> str:
        return info.identity

    def wants_mirror(self, participant: Participant) -> bool:
        return True

    def remote_hand(self, info: LkParticipant) -> float | None:
        return social.hand_raised_at(info.attributes)

    def lower_hand(self, info: LkParticipant) -> dict[str, str] | None:
        return {social.HAND_ATTRIBUTE: ""}

    def reaction_from(self, packet: models.DataPacket) -> str | None:
        return social.reaction_from_packet(packet)

    def reaction_packet(self, emoji: str, identity: str) -> models.DataPacket | None:
        return social.reaction_packet(emoji, identity)


class VisioLink(LiveKitBridge):
    """The link of one room here to one Visio room; see the module docstring."""

    connected_detail = "in the Visio room"

    def __init__(self, gateway: Gateway, config: VisioConfig, room_id: str, visio_room: str):
        settings = BridgeSettings(
            url=config.livekit_url,
            api_key=config.api_key,
            api_secret=config.api_secret,
            livekit_room=visio_room,
            bridge_identity=f"{config.identity_prefix}bridge-{room_id}",
            target=f"visio:{visio_room}",
            reconnect_max_seconds=config.reconnect_max_seconds,
        )
        super().__init__(gateway, room_id, settings, VisioPolicy(config.identity_prefix))
        self.config = config
        self.visio_room = visio_room
