"""RTP endpoints for SIP legs: one UDP port pair per leg, symmetric RTP with latching (RFC 4961),
plain or SRTP with keys from SDES (RFC 3711, RFC 4568).

The phone's SDP says where to send; behind NAT that address is often wrong, so the endpoint
sends to the address the phone's own packets come from ("latching"), with a strict source: media
from the SDP's address always wins, another address is latched only for a stream in sequence
while the SDP's address is silent, and only the latched stream may move (a NAT rebound), so
packets sprayed at the port range never change where a call's audio goes nor reach the mix.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable

import pylibsrtp

from .rtcp import RtcpSdes, RtcpSdesChunk, RtcpSenderReport, ntp_timestamp, serialize_rtcp

log = logging.getLogger(__name__)

Address = tuple[str, int]
REPORT_INTERVAL = 5.0
RTP_CLOCK = 8000  # the SIP codecs' RTP clock (G.711, G.722)
_SSRC_TS = struct.Struct("!II")
_SEQ_TS_SSRC = struct.Struct("!HII")
_DROPS_LOGGED_AT = 10  # one line per call once strays are many: not a NAT'd phone's first packet


class PortAllocator:
    """Hands out even RTP ports (RTCP on the next odd one) from a configured range."""

    def __init__(self, host: str, start: int, end: int) -> None:
        self.host = host
        self.start = start + (start % 2)
        self.end = end
        self._next = self.start
        self._used: set[int] = set()

    def bind(self) -> tuple[socket.socket, socket.socket]:
        """Two bound non-blocking UDP sockets (RTP, RTCP); OSError when the range is exhausted."""
        span = max(1, (self.end - self.start) // 2)
        for _ in range(span):
            port = self._next
            self._next = self.start if self._next + 2 > self.end - 1 else self._next + 2
            if port in self._used:
                continue
            try:
                rtp = _udp_socket(self.host, port)
            except OSError:
                continue
            try:
                rtcp = _udp_socket(self.host, port + 1)
            except OSError:
                rtp.close()
                continue
            self._used.add(port)
            return rtp, rtcp
        raise OSError(f"no free RTP port pair in {self.start}-{self.end}")

    def release(self, port: int) -> None:
        self._used.discard(port)


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


PROBATION = 2
"""Packets in sequence, from one address and one SSRC, before media from an address the SDP did
not give is latched (RFC 3550 A.1's MIN_SEQUENTIAL)."""
MAX_SEQUENCE_JUMP = 100
"""How far ahead a latched stream's sequence number may jump (lost packets) and still count as
the same stream when it arrives from a new address (a NAT rebinding)."""
MAX_CANDIDATES = 16
"""Sources on probation at once per call; the one heard from longest ago makes room."""


class Latch:
    """Where to send, and which packets to take: symmetric RTP (RFC 4961) with a strict source,
    as rtpengine's strict-source mode.

    Media from the address the SDP gave is always taken, and the latch follows it. Media from
    another address (a phone behind NAT) is latched only while nothing has come from the SDP
    address, and only once its sender has sent ``PROBATION`` packets of one SSRC in sequence; a
    sender spraying packets (sequence jumping, SSRC changing) never gets there. Once latched, another
    address is taken only if it continues the latched SSRC and sequence (the NAT rebound), never
    for a new SSRC. Everything else is dropped and counted in ``dropped``."""

    def __init__(self, signalled: Address | None) -> None:
        self.signalled = signalled
        self.learned: Address | None = None
        self.dropped = 0
        self._ssrc: int | None = None
        self._sequence = 0
        self._heard_signalled = False
        self._candidates: dict[Address, tuple[int, int, int]] = {}  # SSRC, sequence, count

    @property
    def target(self) -> Address | None:
        return self.learned or self.signalled

    def observe(self, data: bytes, source: Address) -> bool:
        """Record an RTP packet's source; False for a packet to drop (not RTP, or a stray one)."""
        if len(data) < 12 or data[0] >> 6 != 2:
            self.dropped += 1
            return False
        sequence, _, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        if source == self.signalled:
            self._heard_signalled = True
            self._latch(source, ssrc, sequence)
            return True
        if source == self.learned:
            # the latched sender itself may start a new stream (a re-INVITE, a transfer)
            self._ssrc, self._sequence = ssrc, sequence
            return True
        if self.learned is not None and ssrc == self._ssrc and self._continues(sequence):
            self.learned, self._sequence = source, sequence  # same stream, new address: NAT rebound
            return True
        if (
            self.learned is None
            and not self._heard_signalled
            and self._on_probation(source, ssrc, sequence)
        ):
            self._latch(source, ssrc, sequence)
            return True
        self.dropped += 1
        return False

    def _continues(self, sequence: int) -> bool:
        return 0 < (sequence - self._sequence) % 65536 <= MAX_SEQUENCE_JUMP

    def _on_probation(self, source: Address, ssrc: int, sequence: int) -> bool:
        """True once ``source`` has sent PROBATION packets of one SSRC in sequence; each source
        is on probation on its own, so a sprayer's packets never interrupt a phone's."""
        candidate = self._candidates.pop(source, None)
        if (
            candidate is not None
            and candidate[0] == ssrc
            and sequence == (candidate[1] + 1) % 65536
        ):
            count = candidate[2] + 1
        else:
            count = 1
        if len(self._candidates) >= MAX_CANDIDATES:
            del self._candidates[next(iter(self._candidates))]  # the one heard from longest ago
        self._candidates[source] = (ssrc, sequence, count)
        return count >= PROBATION

    def _latch(self, source: Address, ssrc: int, sequence: int) -> None:
        self.learned, self._ssrc, self._sequence = source, ssrc, sequence
        self._candidates.clear()

    def accepts_rtcp_from(self, source: Address) -> bool:
        """RTCP is taken from the host media is latched to (or signalled, before any media)."""
        target = self.target
        return target is not None and source[0] == target[0]

    def resignal(self, signalled: Address | None) -> None:
        """A re-INVITE gave a new address: honour it and learn again."""
        if signalled != self.signalled:
            self.signalled = signalled
            self.learned = None
            self._ssrc = None
            self._heard_signalled = False
            self._candidates.clear()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.on_datagram(data, (addr[0], addr[1]))


class RtpEndpoint:
    """One SIP leg's RTP and RTCP sockets; ``on_rtp`` gets each accepted packet."""

    def __init__(self, allocator: PortAllocator, on_rtp: Callable[[bytes], None]) -> None:
        self._allocator = allocator
        self.on_rtp = on_rtp
        self.latch = Latch(None)
        self._rtp_sock, self._rtcp_sock = allocator.bind()
        self.port = self._rtp_sock.getsockname()[1]
        self.host = allocator.host
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self.packets_in = 0
        self.packets_out = 0
        self._srtp_in: pylibsrtp.Session | None = None
        self._srtp_out: pylibsrtp.Session | None = None
        self._rtcp_source: Address | None = None
        self._sent_ssrc = 0
        self._sent_timestamp = 0
        self._sent_at = 0.0
        self.octets_out = 0
        self.rtcp_in = 0
        self._report_handle: asyncio.TimerHandle | None = None
        self.cname = f"rondpoint-{self.port}"

    def set_srtp(self, profile: int, inbound_key: bytes, outbound_key: bytes) -> None:
        """Protect this leg with SRTP (keys from SDES, RFC 4568); a re-key replaces both."""
        inbound = pylibsrtp.Policy(
            key=inbound_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
        )
        outbound = pylibsrtp.Policy(
            key=outbound_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
        )
        self._srtp_in = pylibsrtp.Session(inbound)
        self._srtp_out = pylibsrtp.Session(outbound)

    def clear_srtp(self) -> None:
        self._srtp_in = self._srtp_out = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_rtp_datagram), sock=self._rtp_sock
        )
        self._rtcp, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_rtcp_datagram), sock=self._rtcp_sock
        )
        self._report_handle = loop.call_later(REPORT_INTERVAL, self._send_report)

    def _on_rtcp_datagram(self, data: bytes, source: Address) -> None:
        """The phone's RTCP (RFC 3550 6): noted, and where our reports go (symmetric RTCP)."""
        if len(data) < 8 or data[0] >> 6 != 2 or not 200 <= data[1] <= 206:
            return
        if not self.latch.accepts_rtcp_from(source):
            return  # not the phone's host: never where our reports go
        if self._srtp_in is not None:
            try:
                self._srtp_in.unprotect_rtcp(data)
            except pylibsrtp.Error:
                return
        self._rtcp_source = source
        self.rtcp_in += 1

    def _rtcp_target(self) -> Address | None:
        if self._rtcp_source is not None:
            return self._rtcp_source
        target = self.latch.target
        return (target[0], target[1] + 1) if target is not None else None

    def _send_report(self) -> None:
        """A sender report and our CNAME every few seconds while we send (RFC 3550 6.4.1)."""
        loop = asyncio.get_running_loop()
        self._report_handle = loop.call_later(REPORT_INTERVAL, self._send_report)
        target = self._rtcp_target()
        if target is None or self._rtcp is None or not self.packets_out:
            return
        elapsed = time.monotonic() - self._sent_at
        report = serialize_rtcp(
            [
                RtcpSenderReport(
                    self._sent_ssrc,
                    ntp_timestamp(time.time()),
                    self._sent_timestamp + int(elapsed * RTP_CLOCK),
                    self.packets_out,
                    self.octets_out,
                ),
                RtcpSdes([RtcpSdesChunk(self._sent_ssrc, [(1, self.cname.encode())])]),
            ]
        )
        if self._srtp_out is not None:
            report = self._srtp_out.protect_rtcp(report)
        self._rtcp.sendto(report, target)

    def set_remote(self, address: Address | None) -> None:
        self.latch.resignal(address)

    def _on_rtp_datagram(self, data: bytes, source: Address) -> None:
        if self._srtp_in is not None:
            try:
                data = self._srtp_in.unprotect(data)
            except pylibsrtp.Error:
                return  # not authenticated: never latched, never heard
        if self.latch.observe(data, source):
            self.packets_in += 1
            self.on_rtp(data)
        elif self.latch.dropped == _DROPS_LOGGED_AT:
            log.info("RTP from unexpected sources dropped", extra={"rtp_port": self.port})

    def send(self, packet: bytes) -> None:
        target = self.latch.target
        if target is not None and self._rtp is not None:
            self._sent_ssrc, self._sent_timestamp = _SSRC_TS.unpack_from(packet, 4)[::-1]
            self._sent_at = time.monotonic()
            self.octets_out += len(packet) - 12
            if self._srtp_out is not None:
                packet = self._srtp_out.protect(packet)
            self._rtp.sendto(packet, target)
            self.packets_out += 1

    def close(self) -> None:
        if self._report_handle is not None:
            self._report_handle.cancel()
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        if self._rtp is None:
            self._rtp_sock.close()
            self._rtcp_sock.close()
        self._allocator.release(self.port)
