"""Plain RTP endpoints: symmetric RTP latching (RFC 4961) and port pairs for SIP legs."""

from __future__ import annotations

import asyncio
import socket
import struct

from gateway.media.rtp_endpoint import Latch, PortAllocator, RtpEndpoint
from tests.gateway_process import UNIT_RTP_PORTS, free_udp_block


def rtp(ssrc: int, seq: int = 1) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq, seq * 160, ssrc) + b"\xd5" * 160


SDP = ("192.0.2.10", 4000)
NAT = ("198.51.100.5", 33000)
ATTACKER = ("203.0.113.66", 1234)


def test_latch_sends_to_the_signalled_address_until_the_phone_speaks() -> None:
    latch = Latch(SDP)
    assert latch.target == SDP
    assert not latch.observe(rtp(7, 1), NAT)  # behind NAT: its public address, on probation
    assert latch.target == SDP
    assert latch.observe(rtp(7, 2), NAT)  # the same stream in sequence: latched
    assert latch.target == NAT


def test_media_from_the_signalled_address_is_taken_at_once() -> None:
    latch = Latch(SDP)
    assert latch.observe(rtp(7, 1), SDP)
    assert latch.target == SDP


def test_a_sprayer_never_latches_while_the_signalled_address_is_silent() -> None:
    latch = Latch(SDP)
    for seq in range(1, 500, 50):  # one SSRC, but its sequence jumps: a spray, not a stream
        assert not latch.observe(rtp(99, seq), ATTACKER)
    for ssrc in range(50):  # a new SSRC every packet
        assert not latch.observe(rtp(ssrc, 1), ATTACKER)
    assert latch.target == SDP
    assert latch.dropped == 60


def test_a_natted_phone_latches_through_a_spray() -> None:
    latch = Latch(SDP)
    for seq in range(1, 4):
        for burst in range(10):  # the attacker's packets between each two of the phone's
            assert not latch.observe(rtp(99, seq * 100 + burst * 7), ATTACKER)
        accepted = latch.observe(rtp(7, seq), NAT)
    assert accepted
    assert latch.target == NAT


def test_a_stream_from_another_address_never_latches_once_the_signalled_one_spoke() -> None:
    latch = Latch(SDP)
    assert latch.observe(rtp(7, 1), SDP)
    for seq in range(1, 10):  # a perfectly continuous stream, but not the call's
        assert not latch.observe(rtp(99, seq), ATTACKER)
    assert latch.target == SDP


def test_the_signalled_address_takes_the_latch_back() -> None:
    latch = Latch(SDP)
    latch.observe(rtp(99, 1), ATTACKER)
    latch.observe(rtp(99, 2), ATTACKER)  # won the race while the phone was silent
    assert latch.observe(rtp(7, 1), SDP)
    assert latch.target == SDP
    assert not latch.observe(rtp(99, 3), ATTACKER)
    assert latch.target == SDP


def test_a_sprayer_interleaved_with_a_natted_phone_never_takes_its_place() -> None:
    latch = Latch(SDP)
    latch.observe(rtp(7, 1), NAT)
    latch.observe(rtp(7, 2), NAT)
    for seq in range(3, 20):
        assert not latch.observe(rtp(99, seq), ATTACKER)  # even in sequence: a new SSRC
        assert latch.observe(rtp(7, seq), NAT)
    assert latch.target == NAT


def test_latch_refuses_a_stray_stream_and_follows_a_rebound_one() -> None:
    latch = Latch(SDP)
    latch.observe(rtp(7, 1), NAT)
    latch.observe(rtp(7, 2), NAT)
    assert not latch.observe(rtp(99), ATTACKER)  # someone else's packets
    assert latch.target == NAT
    assert latch.observe(rtp(7, 4), ("198.51.100.5", 33002))  # same stream, NAT rebound
    assert latch.target == ("198.51.100.5", 33002)


def test_a_rebound_must_continue_the_sequence() -> None:
    latch = Latch(SDP)
    assert latch.observe(rtp(7, 100), SDP)
    assert not latch.observe(rtp(7, 100), ATTACKER)  # a replay, not a continuation
    assert not latch.observe(rtp(7, 5000), ATTACKER)  # a guess far ahead
    assert latch.target == SDP


def test_rtcp_is_taken_from_the_latched_host_only() -> None:
    latch = Latch(SDP)
    latch.observe(rtp(7, 1), SDP)
    assert latch.accepts_rtcp_from(("192.0.2.10", 4001))
    assert not latch.accepts_rtcp_from(("203.0.113.66", 4001))


def test_latch_drops_what_is_not_rtp() -> None:
    latch = Latch(None)
    assert not latch.observe(b"\x00\x01hello", ("192.0.2.1", 5))
    assert latch.target is None


def test_a_new_signalled_address_is_honoured() -> None:
    latch = Latch(("192.0.2.10", 4000))
    latch.observe(rtp(7), ("192.0.2.10", 4000))
    latch.resignal(("192.0.2.20", 5000))
    assert latch.target == ("192.0.2.20", 5000)


def _allocator() -> PortAllocator:
    """A pair of free ports of the unit tests' zone, never a fixed range another test may hold."""
    first = free_udp_block(2, UNIT_RTP_PORTS)
    return PortAllocator("127.0.0.1", first, first + 1)


def test_port_pairs_are_even_and_released() -> None:
    first = free_udp_block(10, UNIT_RTP_PORTS)
    allocator = PortAllocator("127.0.0.1", first, first + 9)
    pairs = [allocator.bind() for _ in range(2)]
    ports = [rtp_sock.getsockname()[1] for rtp_sock, _ in pairs]
    assert all(port % 2 == 0 for port in ports)
    assert [rtcp.getsockname()[1] for _, rtcp in pairs] == [p + 1 for p in ports]
    for a, b in pairs:
        a.close()
        b.close()


async def test_endpoint_receives_and_answers_the_latched_source() -> None:
    received: list[bytes] = []
    endpoint = RtpEndpoint(_allocator(), received.append)
    await endpoint.start()
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    try:
        endpoint.set_remote(("127.0.0.1", 9))  # a wrong address in the SDP
        phone.sendto(rtp(42, 1), ("127.0.0.1", endpoint.port))  # on probation
        phone.sendto(rtp(42, 2), ("127.0.0.1", endpoint.port))  # in sequence: latched
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.01)
        assert received == [rtp(42, 2)]
        endpoint.send(rtp(5))
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(phone, 2048), 2)
        assert data == rtp(5)
    finally:
        phone.close()
        endpoint.close()


async def test_sender_reports_follow_the_stream_to_the_phones_rtcp_port(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gateway.media import rtp_endpoint
    from gateway.media.rtcp import RtcpSdes, RtcpSenderReport, parse_rtcp

    monkeypatch.setattr(rtp_endpoint, "REPORT_INTERVAL", 0.2)
    endpoint = RtpEndpoint(_allocator(), lambda data: None)
    await endpoint.start()
    phone_rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone_port = free_udp_block(2, UNIT_RTP_PORTS)
    phone_rtp.bind(("127.0.0.1", phone_port))
    phone_rtcp.bind(("127.0.0.1", phone_port + 1))
    phone_rtcp.setblocking(False)
    try:
        endpoint.set_remote(phone_rtp.getsockname())
        for seq in range(5):
            endpoint.send(rtp(0xCAFE, seq))
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(phone_rtcp, 2048), 3)
        packets = parse_rtcp(data)
        [report] = [p for p in packets if isinstance(p, RtcpSenderReport)]
        assert (report.ssrc, report.packet_count, report.octet_count) == (0xCAFE, 5, 5 * 160)
        assert any(isinstance(p, RtcpSdes) for p in packets)
    finally:
        phone_rtp.close()
        phone_rtcp.close()
        endpoint.close()
