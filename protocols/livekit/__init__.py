"""LiveKit participant client (livekit/protocol v16): access tokens (``tokens``), signalling
(``signal``), the WebRTC legs with encoded media for the relay (``rtc``, ``media``), and data
packets such as chat text streams (``data``), and the bridge of a room here to a LiveKit room
(``bridge``). Import what you use from those modules.

A library, not a plugin: used by the Visio bridge (protocols/visio) and the Matrix bridge
(protocols/matrix: Element Call runs on LiveKit).
"""
