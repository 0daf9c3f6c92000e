"""One package per foreign conferencing system (SIP, LiveKit/Visio, Matrix); each translates to the room model."""
