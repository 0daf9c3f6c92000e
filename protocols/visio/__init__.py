"""The Visio bridge: links a room here to a Visio (LiveKit) room, with protocols/livekit."""

from protocols.visio.adapter import VisioAdapter, visio_room
from protocols.visio.bridge import VisioLink

__all__ = ["VisioAdapter", "VisioLink", "visio_room"]
