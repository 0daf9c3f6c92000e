"""ICE-TCP passive candidates: RFC 4571 framing, authentication of the first frame by the session's
ICE agent, the bounds (frame size, connections, deadline, idle, write buffer), and the candidate."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import bench.srtp_client
from bench.srtp_client import LeanPeer, parse_frame_payload, rtp_frames
from gateway.media import native, sdp, stun
from gateway.media.dtls import DtlsCertificate, DtlsSession, DtlsState
from gateway.media.endpoint import PublishRequest
from gateway.media.relay import MediaRelay
from gateway.media.tcp import MAX_FRAME, FrameReader, FramingError, TcpListener, frame
from gateway.media.transport import STREAM_HOST, UdpMux, WebRtcTransport
from tests.gateway_process import free_port

CHROMIUM_OFFER = (Path(__file__).parent / "chromium_offer.sdp").read_text()
REMOTE_UFRAG = "cliU"
REMOTE_PWD = "clientpassword0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Lab:
    mux: UdpMux
    listener: TcpListener
    session: WebRtcTransport
    clock: FakeClock
    clients: list[asyncio.StreamWriter] = field(default_factory=list)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.listener.port)
        self.clients.append(writer)
        return reader, writer

    def check(self, password: str | None = None, use_candidate: bool = True) -> bytes:
        return stun.binding_request(
            f"{self.session.local_ufrag}:{REMOTE_UFRAG}",
            password or self.session.local_pwd,
            use_candidate=use_candidate,
        )


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    mux = UdpMux()
    await mux.bind("127.0.0.1", 0, (1, 0))
    clock = FakeClock()
    listener = TcpListener(mux, max_connections=4, max_per_address=3, clock=clock)
    await listener.bind("127.0.0.1", 0, (1, 0))
    session = WebRtcTransport(mux, DtlsCertificate())
    session.ice.set_remote(REMOTE_UFRAG, REMOTE_PWD)
    lab = Lab(mux, listener, session, clock)
    yield lab
    for writer in lab.clients:
        writer.close()
    session.close()
    await listener.close()
    mux.close()


async def read_frame(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    header = await asyncio.wait_for(reader.readexactly(2), timeout)
    return await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), timeout)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True when the server closed the connection (EOF or reset) within the timeout."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return data == b""


async def until(predicate: object, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# Framing (RFC 4571), sans I/O.


def test_frames_split_anywhere_are_reassembled() -> None:
    stream = frame(b"first") + frame(b"") + frame(bytes(range(200)))
    reader = FrameReader()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += reader.feed(stream[i : i + 1])
    assert out == [b"first", b"", bytes(range(200))]
    assert reader.pending == 0


def test_several_frames_in_one_read_come_out_in_order_and_a_partial_one_waits() -> None:
    reader = FrameReader()
    stream = frame(b"a") + frame(b"bb") + frame(b"ccc")
    assert reader.feed(stream[:-1]) == [b"a", b"bb"]
    assert reader.pending == len(frame(b"ccc")) - 1
    assert reader.feed(stream[-1:]) == [b"ccc"]


def test_a_frame_of_the_maximum_size_passes_and_a_larger_one_is_refused() -> None:
    reader = FrameReader()
    assert reader.feed(frame(bytes(MAX_FRAME))) == [bytes(MAX_FRAME)]
    with pytest.raises(FramingError):
        reader.feed((MAX_FRAME + 1).to_bytes(2, "big"))  # refused on the length alone


# The listener, on loopback.


async def test_authenticated_check_is_answered_on_the_connection_which_joins_the_session(
    lab: Lab,
) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(lab.check()))
    response = stun.parse(await read_frame(reader))
    assert response.message_type == stun.BINDING_SUCCESS
    assert response.xor_mapped_address == writer.get_extra_info("sockname")
    address = lab.session.remote_address
    assert address is not None and address[0] == STREAM_HOST
    assert lab.mux.session_at(address) is lab.session
    # A DTLS ClientHello on the same connection reaches the session, which answers on it.
    client = DtlsCertificate()
    dtls_client = DtlsSession(client, is_server=False)
    lab.session.set_remote(REMOTE_UFRAG, REMOTE_PWD, client.fingerprint, "active")
    for record in dtls_client.start():
        writer.write(frame(record))
    reply = await read_frame(reader)
    assert 19 < reply[0] < 64  # a DTLS record (RFC 7983): the server's handshake flight
    assert lab.session.dtls.state is not DtlsState.NEW


async def test_a_check_with_a_wrong_password_closes_the_connection(lab: Lab) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(lab.check(password="wrong-password-0123456789")))
    assert await closed_by_server(reader)
    assert lab.session.remote_address is None
    await until(lambda: lab.listener.connections == 0)
    assert lab.listener.refused == 1


async def test_a_check_for_an_unknown_ufrag_closes_the_connection(lab: Lab) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(stun.binding_request(f"nobody:{REMOTE_UFRAG}", lab.session.local_pwd)))
    assert await closed_by_server(reader)


async def test_media_before_any_check_closes_the_connection(lab: Lab) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(b"\x80\x60" + bytes(30)))  # RTP from an unauthenticated peer
    assert await closed_by_server(reader)
    assert lab.session.packets_received == 0


async def test_an_oversized_frame_closes_even_an_authenticated_connection(lab: Lab) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(lab.check()))
    await read_frame(reader)
    writer.write((MAX_FRAME + 1).to_bytes(2, "big") + bytes(100))
    assert await closed_by_server(reader)
    await until(lambda: lab.listener.connections == 0)
    # and the session forgot the address the connection was
    assert lab.mux.session_at((STREAM_HOST, 1)) is None


async def test_a_connection_silent_past_the_deadline_is_closed(lab: Lab) -> None:
    reader, _ = await lab.connect()
    await until(lambda: lab.listener.connections == 1)
    lab.listener.sweep(lab.clock.now + lab.listener.auth_deadline - 0.1)
    assert lab.listener.connections == 1
    lab.listener.sweep(lab.clock.now + lab.listener.auth_deadline)
    assert lab.listener.connections == 0
    assert await closed_by_server(reader)


async def test_an_authenticated_connection_idle_too_long_is_closed(lab: Lab) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(lab.check()))
    await read_frame(reader)
    lab.listener.sweep(lab.clock.now + lab.listener.auth_deadline + 1)  # past the deadline: kept
    assert lab.listener.connections == 1
    lab.listener.sweep(lab.clock.now + lab.listener.idle_timeout)
    assert await closed_by_server(reader)
    assert lab.mux.session_at((STREAM_HOST, 1)) is None


async def test_connections_beyond_the_per_address_limit_are_refused(lab: Lab) -> None:
    kept = [await lab.connect() for _ in range(3)]
    await until(lambda: lab.listener.connections == 3)
    reader, _ = await lab.connect()
    assert await closed_by_server(reader)
    assert lab.listener.connections == 3
    assert lab.listener.refused == 1
    assert not await closed_by_server(kept[0][0], timeout=0.1)


async def test_connections_beyond_the_total_limit_are_refused(lab: Lab) -> None:
    lab.listener.max_per_address = 100
    for _ in range(4):
        await lab.connect()
    await until(lambda: lab.listener.connections == 4)
    reader, _ = await lab.connect()
    assert await closed_by_server(reader)
    assert lab.listener.connections == 4


async def test_a_peer_that_does_not_read_costs_a_bounded_buffer_and_loses_frames(
    lab: Lab,
) -> None:
    lab.listener.max_write_buffer = 64 * 1024
    reader, writer = await lab.connect()
    writer.write(frame(lab.check()))
    await read_frame(reader)
    address = lab.session.remote_address
    assert address is not None
    packet = bytes(1200)
    for _ in range(20_000):  # 24 MB, far more than the kernel's socket buffers hold
        lab.mux.sendto(packet, address)
    transport = lab.listener._connections[address[1]].transport
    assert transport is not None
    assert transport.get_write_buffer_size() <= lab.listener.max_write_buffer + len(frame(packet))
    assert lab.listener.frames_dropped > 0


async def test_closing_the_session_closes_its_connection(lab: Lab) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(lab.check()))
    await read_frame(reader)
    lab.session.close()
    assert lab.listener.connections == 0
    assert await closed_by_server(reader)


async def test_a_closed_connection_is_forgotten_by_its_session(lab: Lab) -> None:
    reader, writer = await lab.connect()
    writer.write(frame(lab.check()))
    await read_frame(reader)
    address = lab.session.remote_address
    writer.close()
    await until(lambda: lab.listener.connections == 0)
    assert address is not None and lab.mux.session_at(address) is None
    lab.mux.sendto(b"\x80" + bytes(20), address)  # to a connection that is gone: dropped


async def test_a_busy_port_falls_back_to_the_first_free_port_of_the_range() -> None:
    mux = UdpMux()
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy, spare = taken.getsockname()[1], free_port()
    listener = TcpListener(mux)
    try:
        assert await listener.bind("127.0.0.1", busy, (spare, spare)) == spare
        assert mux.tcp_port == spare
    finally:
        await listener.close()
        taken.close()
    assert mux.tcp_port == 0 and mux.streams is None


def test_a_native_egress_is_never_aimed_at_a_tcp_connection() -> None:
    class Egress:
        peer: tuple[int, str, int] | None = None

        def set_peer(self, fd: int, host: str, port: int) -> None:
            self.peer = (fd, host, port)

    egress = Egress()
    UdpMux().point_egress(egress, (STREAM_HOST, 3))
    assert egress.peer == (-1, "", 0)  # not ready: the router sends to it on the Python path


async def test_answers_carry_a_passive_tcp_host_candidate_when_the_listener_runs() -> None:
    requests = [PublishRequest("0", "t-mic", "microphone")]
    relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0))  # tcp_port 0: off
    await relay.start()
    try:
        answer = relay.create_endpoint("room", "alice").accept_publish_offer(
            CHROMIUM_OFFER, requests
        )
        assert all(len(m.candidates) == 1 for m in sdp.parse(answer.sdp).media)
    finally:
        await relay.stop()
    relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0), tcp_port=free_port())
    await relay.start()
    try:
        assert relay.tcp_port > 0
        answer = relay.create_endpoint("room", "alice").accept_publish_offer(
            CHROMIUM_OFFER, requests
        )
        for media in sdp.parse(answer.sdp).media:
            assert media.candidates == [
                f"1 1 udp 2130706431 127.0.0.1 {relay.port} typ host",
                f"2 1 tcp 1518280447 127.0.0.1 {relay.tcp_port} typ host tcptype passive",
            ]
    finally:
        await relay.stop()
    assert relay.tcp_port == 0


# End to end on loopback, on both packet paths: a peer on ICE-TCP publishes and subscribes like
# one on UDP; the native fast path never sends to it (no route for a track it subscribes to, so
# that track goes out on the Python path to every subscriber), and still forwards its own track.

PATHS = ["native", "python"]


@pytest.fixture(params=PATHS)
def packet_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native" and not native.available():
        pytest.skip("the native extension is not built (pip install -e . with libsrtp2-dev)")
    monkeypatch.setattr(native, "enabled", request.param == "native")
    monkeypatch.setattr(bench.srtp_client, "_SAMPLES_KEPT", 1000)
    return str(request.param)


class TcpPeer(LeanPeer):
    """bench's lean peer, its datagrams framed (RFC 4571) on one TCP connection to the relay."""

    def __init__(self) -> None:
        super().__init__()
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None

    async def open_tcp(self, port: int) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        self._reading = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        frames = FrameReader()
        while data := await reader.read(65536):
            for datagram in frames.feed(data):
                self.datagram_received(datagram, ("127.0.0.1", 0))

    def send(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(frame(data))

    def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        if self._writer is not None:
            self._writer.close()
        super().close()


async def _peer(relay: MediaRelay, tcp: bool) -> LeanPeer:
    if tcp:
        peer = TcpPeer()
        await peer.open_tcp(relay.tcp_port)
        return peer
    peer = LeanPeer()
    await peer.open()
    return peer


async def _publish(relay: MediaRelay, name: str, tcp: bool) -> tuple[LeanPeer, str]:
    endpoint = relay.create_endpoint("room", name)
    peer = await _peer(relay, tcp)
    answer = endpoint.accept_publish_offer(
        peer.publish_offer(["0"]), [PublishRequest("0", "", "microphone")]
    )
    peer.apply_remote(answer.sdp)
    await peer.connect()
    return peer, answer.tracks[0].track_id


async def _subscribe(relay: MediaRelay, name: str, track_id: str, tcp: bool) -> LeanPeer:
    endpoint = relay.create_endpoint("room", name)
    assert endpoint.subscribe(track_id)
    offer = endpoint.create_subscribe_offer()
    assert offer is not None
    peer = await _peer(relay, tcp)
    peer.apply_remote(offer.sdp)
    endpoint.accept_subscribe_answer(peer.subscribe_answer(offer.sdp))
    await peer.connect()
    return peer


@pytest.mark.parametrize("publisher_on_tcp", [False, True], ids=["udp-publisher", "tcp-publisher"])
async def test_a_peer_on_tcp_publishes_and_receives_on_either_packet_path(
    packet_path: str, publisher_on_tcp: bool
) -> None:
    relay = MediaRelay("127.0.0.1", 0, (0, -1), tcp_port=free_port())
    await relay.start()
    peers: list[LeanPeer] = []
    try:
        publisher, track_id = await _publish(relay, "alice", tcp=publisher_on_tcp)
        peers.append(publisher)
        on_udp = await _subscribe(relay, "bob", track_id, tcp=False)
        peers.append(on_udp)
        subscribers = [on_udp]
        if not publisher_on_tcp:
            on_tcp = await _subscribe(relay, "carol", track_id, tcp=True)
            peers.append(on_tcp)
            subscribers.append(on_tcp)
        count = 60
        ssrc = int.from_bytes(os.urandom(4), "big") | 1
        for packet in publisher.protect(rtp_frames(0, count, ssrc, mid="0")):
            publisher.send(packet)
            await asyncio.sleep(0.005)
        await until(lambda: all(len(s.samples) >= count for s in subscribers), timeout=5)
        for subscriber in subscribers:
            frames = [parse_frame_payload(p.payload) for p in subscriber.decrypt_samples()]
            assert sorted(f[1] for f in frames if f is not None) == list(range(count))
        room = relay._rooms["room"]
        sent_natively = room.endpoints["bob"]._subscribe.packets_sent_total - (  # type: ignore[union-attr]
            room.endpoints["bob"]._subscribe.packets_sent  # type: ignore[union-attr]
        )
        if packet_path == "python":
            assert sent_natively == 0
        else:
            # the publisher's ingress forwards natively to the subscriber on UDP; a subscriber on
            # TCP is not a route output: the route tees its packets to Python, which sends them
            assert sent_natively > count // 2
        if not publisher_on_tcp:
            carol = room.endpoints["carol"]._subscribe  # type: ignore[union-attr]
            assert carol is not None and carol.remote_address is not None
            assert carol.remote_address[0] == STREAM_HOST
            assert carol.egress is None or not carol.egress.ready
    finally:
        for peer in peers:
            peer.close()
        await relay.stop()
