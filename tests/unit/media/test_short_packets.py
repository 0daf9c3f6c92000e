"""Short and truncated packets from a connected peer are dropped, never raised."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from gateway.media import native, stun
from gateway.media.dtls import SRTP_AES128_CM_SHA1_80, DtlsCertificate, SrtpKeys
from gateway.media.rtcp import RtcpError, RtcpReceiverReport, RtcpReceptionReport, parse_rtcp
from gateway.media.rtp import (
    ONE_BYTE_PROFILE,
    RtpError,
    RtpPacket,
    extension_bounds,
    find_extension,
    payload_offset,
)
from gateway.media.srtp import SrtpContext
from gateway.media.transport import UdpMux, WebRtcTransport

SERVER_KEY = bytes(range(30))
CLIENT_KEY = bytes(range(30, 60))


async def _connected(mux: UdpMux, client: socket.socket) -> WebRtcTransport:
    """A transport whose client passed its ICE check from `client` and whose SRTP keys are set
    (as the DTLS handshake would leave them)."""
    session = WebRtcTransport(mux, DtlsCertificate())
    session.ice.set_remote("cliU", "clientpassword0123456789")
    request = stun.binding_request(
        f"{session.local_ufrag}:cliU", session.local_pwd, use_candidate=True
    )
    client.sendto(request, ("127.0.0.1", mux.port))
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_recv(client, 4096), 2)
    assert session.remote_address == client.getsockname()
    session.srtp = SrtpContext(SrtpKeys(SRTP_AES128_CM_SHA1_80, SERVER_KEY, CLIENT_KEY))
    session.ingress = session.srtp.ingress()
    return session


@pytest.mark.parametrize("fast_path", [True, False], ids=["native", "python"])
async def test_datagrams_shorter_than_a_header_from_a_connected_peer_are_dropped(
    monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    monkeypatch.setattr(native, "enabled", fast_path and native.enabled)
    loop = asyncio.get_running_loop()
    raised: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: raised.append(context))
    mux = UdpMux()
    await mux.bind("127.0.0.1", 0, (1, 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    try:
        session = await _connected(mux, client)
        received: list[bytes] = []
        session.on_rtp = received.append
        for length in range(1, 12):  # RTP/RTCP first bytes (128-191), every length below 12
            for first in (0x80, 0x90, 0xBF):
                client.sendto(bytes([first]) + bytes(length - 1), ("127.0.0.1", mux.port))
        peer = SrtpContext(SrtpKeys(SRTP_AES128_CM_SHA1_80, CLIENT_KEY, SERVER_KEY))
        packet = RtpPacket(payload_type=111, sequence_number=1, timestamp=0, ssrc=1234)
        packet.payload = b"after the noise"
        client.sendto(peer.protect_rtp(packet.serialize()), ("127.0.0.1", mux.port))
        async with asyncio.timeout(2):
            while not received:
                await asyncio.sleep(0.01)
        assert RtpPacket.parse(received[0]).payload == b"after the noise"
        assert [context.get("exception") for context in raised] == []
        assert session.srtp_errors >= 11 * 3  # counted as packets that could not be unprotected
    finally:
        loop.set_exception_handler(None)
        client.close()
        mux.close()


def _full_rtp() -> bytes:
    packet = RtpPacket(payload_type=96, sequence_number=7, timestamp=9, ssrc=5, csrc=[1, 2])
    packet.extension_profile = ONE_BYTE_PROFILE
    packet.extensions = {1: b"\x30", 3: b"abc"}
    packet.payload = b"payload"
    data = bytearray(packet.serialize() + b"\x00\x00\x00\x04")
    data[0] |= 0x20  # four bytes of padding
    return bytes(data)


def test_every_truncation_of_an_rtp_packet_is_an_rtp_error() -> None:
    data = _full_rtp()
    assert RtpPacket.parse(data).payload == b"payload"
    for size in range(len(data)):
        with pytest.raises(RtpError):
            RtpPacket.parse(data[:size])


def test_a_header_announcing_an_extension_it_lacks_is_an_rtp_error() -> None:
    header = bytes([0x90, 96]) + struct.pack("!HII", 1, 2, 3)  # X bit, nothing after
    for call in (extension_bounds, payload_offset):
        with pytest.raises(RtpError):
            call(header)
    with pytest.raises(RtpError):
        find_extension(header, 1)


def test_every_truncation_of_an_rtcp_packet_is_an_rtcp_error() -> None:
    report = RtcpReceptionReport(ssrc=9, fraction_lost=0, packets_lost=0, highest_sequence=1)
    data = RtcpReceiverReport(ssrc=5, reports=[report]).serialize()
    assert parse_rtcp(data)
    for size in range(1, len(data)):
        with pytest.raises(RtcpError):
            parse_rtcp(data[:size])
