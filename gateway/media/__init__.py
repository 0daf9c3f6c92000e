"""The media relay: ICE-lite + DTLS-SRTP endpoints on one UDP port, RTP forwarding, RTCP, simulcast (DESIGN.md)."""

from .endpoint import (
    PublishAnswer,
    PublishedTrackInfo,
    PublishRequest,
    SimulcastLayerInfo,
    SubscribeOffer,
    WebRtcEndpoint,
)
from .relay import MediaRelay, RelayStats
from .sdp import SdpError

__all__ = [
    "MediaRelay",
    "PublishAnswer",
    "PublishRequest",
    "PublishedTrackInfo",
    "RelayStats",
    "SdpError",
    "SimulcastLayerInfo",
    "SubscribeOffer",
    "WebRtcEndpoint",
]
