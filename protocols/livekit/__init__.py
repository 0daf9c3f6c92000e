"""LiveKit participant client (livekit/protocol v16): access tokens (``tokens``), signalling
(``signal``), the WebRTC legs with encoded media for the relay (``rtc``, ``media``), and data
packets such as chat text streams (``data``). Import what you use from those modules.

A library, not a plugin: used by the Visio bridge (protocols/visio) and later by the Matrix bridge
(Element Call runs on LiveKit).
"""
