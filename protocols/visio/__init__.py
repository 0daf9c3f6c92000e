"""The Visio bridge: links a room here to a Visio (LiveKit) room, with protocols/livekit."""
