"""The shared UDP socket: ICE-lite answers, demultiplexing by ufrag then address, port fallback (RFC 7983)."""

from __future__ import annotations

import asyncio
import socket

from gateway.media import stun
from gateway.media.dtls import DtlsCertificate, DtlsState
from gateway.media.transport import UdpMux, WebRtcTransport


def _client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _recv(sock: socket.socket, timeout: float = 0.3) -> bytes | None:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)
    except TimeoutError:
        return None


async def test_valid_check_is_answered_and_latches_the_source_address() -> None:
    mux = UdpMux()
    port = await mux.bind("127.0.0.1", 0, (1, 0))
    session = WebRtcTransport(mux, DtlsCertificate())
    session.ice.set_remote("cliU", "clientpassword0123456789")
    client = _client()
    try:
        request = stun.binding_request(
            f"{session.local_ufrag}:cliU", session.local_pwd, use_candidate=True
        )
        client.sendto(request, ("127.0.0.1", port))
        response = await _recv(client)
        assert response is not None
        message = stun.parse(response)
        assert message.message_type == stun.BINDING_SUCCESS
        assert message.xor_mapped_address == client.getsockname()
        assert session.remote_address == client.getsockname()
        # A DTLS record from the latched address now reaches the session.
        client.sendto(bytes([22, 0xFE, 0xFD]) + bytes(10), ("127.0.0.1", port))
        await asyncio.sleep(0.05)
        assert session.dtls.state is not DtlsState.NEW
    finally:
        client.close()
        session.close()
        mux.close()


async def test_unknown_address_and_wrong_ufrag_are_dropped_silently() -> None:
    mux = UdpMux()
    port = await mux.bind("127.0.0.1", 0, (1, 0))
    session = WebRtcTransport(mux, DtlsCertificate())
    client = _client()
    try:
        client.sendto(b"\x80\x60" + bytes(30), ("127.0.0.1", port))  # RTP from nowhere
        client.sendto(bytes([22, 0xFE, 0xFD]) + bytes(10), ("127.0.0.1", port))  # DTLS from nowhere
        wrong = stun.binding_request("nobody:cliU", session.local_pwd)
        client.sendto(wrong, ("127.0.0.1", port))
        bad_pwd = stun.binding_request(f"{session.local_ufrag}:cliU", "wrong-password-0123456789")
        client.sendto(bad_pwd, ("127.0.0.1", port))
        assert await _recv(client) is None
        assert session.remote_address is None
        assert session.dtls.state is DtlsState.NEW
        assert mux.datagrams_dropped >= 3
    finally:
        client.close()
        session.close()
        mux.close()


async def test_nominated_address_wins_over_a_later_plain_check() -> None:
    mux = UdpMux()
    port = await mux.bind("127.0.0.1", 0, (1, 0))
    session = WebRtcTransport(mux, DtlsCertificate())
    first, second = _client(), _client()
    try:
        plain = stun.binding_request(f"{session.local_ufrag}:cliU", session.local_pwd)
        first.sendto(plain, ("127.0.0.1", port))
        assert await _recv(first) is not None
        assert session.remote_address == first.getsockname()
        nominate = stun.binding_request(
            f"{session.local_ufrag}:cliU", session.local_pwd, use_candidate=True
        )
        second.sendto(nominate, ("127.0.0.1", port))
        assert await _recv(second) is not None
        assert session.remote_address == second.getsockname()
        first.sendto(plain, ("127.0.0.1", port))
        assert await _recv(first) is not None
        assert session.remote_address == second.getsockname()
    finally:
        first.close()
        second.close()
        session.close()
        mux.close()


async def test_busy_port_falls_back_to_the_first_free_port_of_the_range() -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    busy_port = busy.getsockname()[1]
    mux = UdpMux()
    try:
        port = await mux.bind("127.0.0.1", busy_port, (busy_port, busy_port + 20))
        assert port != busy_port
        assert busy_port < port <= busy_port + 20
    finally:
        mux.close()
        busy.close()
