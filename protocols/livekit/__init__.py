"""LiveKit participant client (livekit/protocol v16): access tokens, signalling, the WebRTC legs
with encoded media for the relay, and data packets (chat text streams).

Used by the Visio bridge (protocols/visio) and later by the Matrix bridge (Element Call runs on
LiveKit).
"""

from protocols.livekit.data import ReceivedText, TextStreamAssembler, chat_packets, is_chat
from protocols.livekit.rtc import LiveKitParticipant, LiveKitRtcError, LocalTrack, RemoteTrack
from protocols.livekit.signal import (
    Joined,
    Left,
    Participant,
    ParticipantsChanged,
    PongReceived,
    Resumed,
    SignalClient,
    SignalConnectError,
    SignalError,
    SignalProtocolError,
    SignalSession,
    TrackInfo,
    Unhandled,
)
from protocols.livekit.tokens import TokenClaims, TokenError, VideoGrant, mint_token, verify_token

__all__ = [
    "Joined",
    "Left",
    "LiveKitParticipant",
    "LiveKitRtcError",
    "LocalTrack",
    "Participant",
    "ParticipantsChanged",
    "PongReceived",
    "ReceivedText",
    "RemoteTrack",
    "Resumed",
    "SignalClient",
    "SignalConnectError",
    "SignalError",
    "SignalProtocolError",
    "SignalSession",
    "TextStreamAssembler",
    "TokenClaims",
    "TokenError",
    "TrackInfo",
    "Unhandled",
    "VideoGrant",
    "chat_packets",
    "is_chat",
    "mint_token",
    "verify_token",
]
