"""Encoded media on aiortc PeerConnections: RTP and RTCP in and out, past aiortc's media pipeline.

DESIGN.md: a LiveKit leg is a WebRTC *client* endpoint. aiortc and aioice do its handshakes
(ICE, DTLS, SCTP for the data channels); the media must reach the relay's router encoded. This
module makes an aiortc PeerConnection a packet pipe:

- `passive(transceiver, on_parameters)` replaces the transceiver's RTCRtpSender.send and
  RTCRtpReceiver.receive with recorders: aiortc negotiates as usual (codecs, payload types, header
  extension ids, SSRCs from the remote a=ssrc lines, RFC 8843 MIDs) and hands us the result
  instead of starting its encoder, decoder, jitter buffer and RTCP loops.
- `RtpTap` takes the DTLS transport's decrypted RTP and RTCP (RFC 3711 SRTP unprotected by
  pylibsrtp) as bytes, and sends bytes: SRTP-protected, then written straight to the nominated
  ICE pair's UDP socket, synchronously, with no task per packet.

The helpers `codec_info` and `extension_ids` turn aiortc's negotiated parameters into the
router's `CodecInfo` and `ExtensionIds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpParameters

from gateway.media.router import CodecInfo, ExtensionIds

log = logging.getLogger(__name__)

PacketCallback = Callable[[bytes], None]
ParametersCallback = Callable[[RTCRtpTransceiver, RTCRtpParameters], None]

_EXTENSION_NAMES = {
    "urn:ietf:params:rtp-hdrext:ssrc-audio-level": "audio_level",
    "urn:ietf:params:rtp-hdrext:sdes:mid": "mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id": "rid",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id": "repaired_rid",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": "abs_send_time",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01": "transport_cc",
}


def codec_info(parameters: RTCRtpParameters) -> CodecInfo | None:
    """The first media codec negotiated (and its RFC 4588 RTX payload type, if any)."""
    media = [c for c in parameters.codecs if not _is_rtx_codec(c)]
    if not media:
        return None
    first = media[0]
    rtx = next(
        (
            c.payloadType
            for c in parameters.codecs
            if _is_rtx_codec(c) and c.parameters.get("apt") == first.payloadType
        ),
        None,
    )
    name = first.mimeType.split("/", 1)[1]
    assert first.payloadType is not None
    return CodecInfo(name, first.payloadType, first.clockRate, rtx)


def _is_rtx_codec(codec: RTCRtpCodecParameters) -> bool:
    return codec.mimeType.lower().endswith("/rtx")


def extension_ids(parameters: RTCRtpParameters) -> ExtensionIds:
    ids = ExtensionIds()
    for extension in parameters.headerExtensions:
        name = _EXTENSION_NAMES.get(extension.uri)
        if name is not None:
            setattr(ids, name, extension.id)
    return ids


def strip_empty_extension(packet: bytes) -> bytes:
    """PACKET without its RFC 8285 header extension block when that block is only padding.

    The router strips the extensions a receiver did not negotiate by zeroing them (padding, RFC
    8285 section 4.1), which keeps packets their size; livekit-server 1.13 then drops video
    packets (its subscribers never decode a frame), so the empty block goes before LiveKit."""
    start = 12 + 4 * (packet[0] & 0x0F)
    if len(packet) < start + 4:
        return packet
    end = start + 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
    if end > len(packet) or any(packet[start + 4 : end]):
        return packet
    return bytes([packet[0] & ~0x10 & 0xFF]) + packet[1:start] + packet[end:]


def passive(transceiver: RTCRtpTransceiver, on_parameters: ParametersCallback) -> None:
    """Negotiate this transceiver but never start aiortc's media on it: report its parameters.

    Called again on every renegotiation (aiortc calls send/receive after each one)."""

    async def send(parameters: RTCRtpParameters) -> None:
        on_parameters(transceiver, parameters)

    async def receive(parameters: RTCRtpParameters) -> None:
        on_parameters(transceiver, parameters)

    transceiver.sender.send = send  # type: ignore[method-assign]
    transceiver.receiver.receive = receive  # type: ignore[method-assign]


class RtpTap:
    """Decrypted RTP/RTCP of one PeerConnection as bytes, and a synchronous way to send some.

    Implements the router's `RtpSink` (`send_rtp`, `send_rtcp`)."""

    def __init__(
        self, on_rtp: PacketCallback | None = None, on_rtcp: PacketCallback | None = None
    ) -> None:
        self.on_rtp = on_rtp
        self.on_rtcp = on_rtcp
        self.dtls: RTCDtlsTransport | None = None
        self.packets_in = 0
        self.packets_out = 0
        self.send_errors = 0

    def attach(self, pc: RTCPeerConnection) -> bool:
        """Take over the DTLS transport of PC (BUNDLE: one for every m-line); True once done."""
        if self.dtls is not None:
            return True
        transceivers = pc.getTransceivers()
        if not transceivers:
            sctp = pc.sctp
            if sctp is None:
                return False
            dtls = sctp.transport
        else:
            dtls = transceivers[0].receiver.transport
        self.dtls = dtls

        async def rtp_in(data: bytes, arrival_time_ms: int) -> None:
            self.packets_in += 1
            callback = self.on_rtp
            if callback is not None:
                try:
                    callback(data)
                except Exception:  # one bad packet must not end the receive loop
                    log.exception("LiveKit RTP handler failed")

        async def rtcp_in(data: bytes) -> None:
            callback = self.on_rtcp
            if callback is not None:
                try:
                    callback(data)
                except Exception:
                    log.exception("LiveKit RTCP handler failed")

        dtls._handle_rtp_data = rtp_in  # type: ignore[method-assign]
        dtls._handle_rtcp_data = rtcp_in  # type: ignore[method-assign]
        return True

    @property
    def connected(self) -> bool:
        return self.dtls is not None and self.dtls.state == "connected"

    def send_rtp(self, packet: bytes) -> None:
        if packet[0] & 0x10:
            packet = strip_empty_extension(packet)
        self._send(packet, rtcp=False)

    def send_rtcp(self, packet: bytes) -> None:
        self._send(packet, rtcp=True)

    def _send(self, packet: bytes, *, rtcp: bool) -> None:
        dtls = self.dtls
        if dtls is None or dtls.state != "connected" or dtls._tx_srtp is None:
            return
        try:
            data = dtls._tx_srtp.protect_rtcp(packet) if rtcp else dtls._tx_srtp.protect(packet)
        except pylibsrtp.Error as exc:
            self.send_errors += 1
            log.debug("SRTP protect failed: %s", exc)
            return
        self.packets_out += 1
        connection: Any = dtls.transport._connection
        pair = connection._nominated.get(1)
        transport = getattr(getattr(pair, "protocol", None), "transport", None)
        if pair is not None and transport is not None and hasattr(transport, "sendto"):
            try:
                transport.sendto(data, pair.remote_addr)
            except OSError:
                self.send_errors += 1
            return
        # Not a plain UDP pair (ICE-TCP): let aioice frame it.
        asyncio.ensure_future(_send_async(connection, data))


async def _send_async(connection: Any, data: bytes) -> None:
    try:
        await connection.send(data)
    except (ConnectionError, OSError) as exc:
        log.debug("LiveKit send failed: %s", exc)
