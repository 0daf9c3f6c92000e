"""LiveKit participant client: access tokens and the signalling protocol (livekit/protocol v16).

Used by the Visio bridge (issue 4) and later by the Matrix bridge (Element Call runs on LiveKit).
"""

from protocols.livekit.signal import (
    Joined,
    Left,
    Participant,
    ParticipantsChanged,
    PongReceived,
    SignalClient,
    SignalConnectError,
    SignalError,
    SignalProtocolError,
    SignalSession,
    Unhandled,
)
from protocols.livekit.tokens import TokenClaims, TokenError, VideoGrant, mint_token, verify_token

__all__ = [
    "Joined",
    "Left",
    "Participant",
    "ParticipantsChanged",
    "PongReceived",
    "SignalClient",
    "SignalConnectError",
    "SignalError",
    "SignalProtocolError",
    "SignalSession",
    "TokenClaims",
    "TokenError",
    "Unhandled",
    "VideoGrant",
    "mint_token",
    "verify_token",
]
