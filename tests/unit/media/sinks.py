"""A router sink double for media tests: keeps what the router sends a publisher or a subscriber."""

from __future__ import annotations

from gateway.media.rtcp import RtcpGenericNack, RtcpPli, parse_rtcp
from gateway.media.rtp import RtpPacket


class RecordingSink:
    """A publisher or subscriber double (gateway.media.router.RtpSink): what the router sends it."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def parsed(self) -> list[RtpPacket]:
        return [RtpPacket.parse(p) for p in self.rtp]

    def payloads(self) -> list[bytes]:
        """The RTP payloads, for packets without CSRCs or header extensions."""
        return [packet[12:] for packet in self.rtp]

    def plis(self) -> list[RtcpPli]:
        return [p for data in self.rtcp for p in parse_rtcp(data) if isinstance(p, RtcpPli)]

    def nacks(self) -> list[RtcpGenericNack]:
        return [p for data in self.rtcp for p in parse_rtcp(data) if isinstance(p, RtcpGenericNack)]
