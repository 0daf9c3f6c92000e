"""One shared UDP socket for every WebRTC session: demultiplexing by ICE ufrag then source address
(RFC 7983, RFC 8445); the ICE-lite session, and its controlling variant for relay links (RFC 7675).
ICE-TCP connections (tcp.py, RFC 6544) feed the same demultiplexer under pseudo addresses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from . import stun
from .dtls import DtlsCertificate, DtlsSession, DtlsState
from .ice import IceControllingAgent, IceLiteAgent, local_ufrag_of
from .rtcp import RtcpError
from .rtp import RtpError
from .srtp import SrtpContext, SrtpError
from .twcc import EXT_ID_NONE, ArrivalRecorder, read_transport_seq

if TYPE_CHECKING:
    from .congestion import SubscriberCongestion

logger = logging.getLogger(__name__)

Address = tuple[str, int]

_MAX_DATAGRAM = 4096  # WebRTC datagrams stay under the path MTU; asyncio's default reads 256 KiB
_SOCKET_BUFFER = 4 * 1024 * 1024
_MAX_ADDRESSES = 8  # validated source addresses kept per session
_RTCP_HEADER_SIZE = 8  # RFC 3550 section 6.4.1: the shortest RTP or RTCP packet there can be
# Transport-cc feedback goes out once this many packets wait for it, else once the oldest has
# waited this long (libwebrtc's receivers default to 100 ms): an audio-only sender gets one per
# 100 ms, a video sender one per fast tick.
_FEEDBACK_PACKETS = 5
_FEEDBACK_WAIT = 0.1

STREAM_HOST = "tcp"
"""The host part of an ICE-TCP connection's address, ("tcp", connection id): datagrams sent to
it go over that connection (tcp.py), not over the UDP socket; a native Egress cannot send there."""


class StreamConnections(Protocol):
    """The ICE-TCP listener as the mux sees it (tcp.TcpListener)."""

    def send(self, connection_id: int, data: bytes) -> None: ...

    def close_connection(self, connection_id: int) -> None: ...

    def peer_address(self, connection_id: int) -> Address: ...


class WebRtcTransport:
    """One ICE-lite + DTLS + SRTP session (a browser peer connection) living on the shared socket."""

    def __init__(
        self,
        mux: UdpMux,
        certificate: DtlsCertificate,
        *,
        ice: IceLiteAgent | None = None,
        native_egress: bool = True,
    ) -> None:
        self._mux = mux
        self._certificate = certificate
        self.ice = ice or IceLiteAgent()
        self._native_egress = native_egress
        """False: everything sent goes through send_rtp (counted in bytes_sent), none natively."""
        self.dtls = DtlsSession(certificate, is_server=True)
        self.srtp: SrtpContext | None = None
        # Native fast path (gateway/media/native.py), set when SRTP starts: the router installs
        # steady-state routes in `ingress`, and sends through other transports' `egress`.
        self.ingress: Any = None
        self.egress: Any = None
        self.congestion: SubscriberCongestion | None = None
        """A subscribe session's congestion control (set_congestion): stamps what it sends."""
        self._transport_cc_id = EXT_ID_NONE
        self.arrivals: ArrivalRecorder | None = None
        """Transport-cc arrivals of the RTP received (set_transport_cc), for feedback to the peer."""
        self._feedback_time = float("-inf")
        self._remote_address: Address | None = None
        self._nominated = False
        self._addresses: list[Address] = []
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Set by the owner (endpoint); called synchronously from datagram_received.
        self.on_rtp: Callable[[bytes], None] = _ignore
        self.on_rtcp: Callable[[bytes], None] = _ignore
        self.on_connected: Callable[[], None] = _nothing
        self.packets_received = 0
        self.packets_sent = 0
        self.bytes_received = 0
        """SRTP and SRTCP bytes received (the native ingress's included)."""
        self.bytes_sent = 0
        """SRTP and SRTCP bytes sent by the Python path."""
        self.rtcp_sent = 0
        self.srtp_errors = 0
        self.packets_malformed = 0
        self.consent_checks = 0
        """Authenticated STUN binding requests answered: the peer's ICE consent (RFC 7675)."""
        mux.register(self)

    @property
    def local_ufrag(self) -> str:
        return self.ice.local_ufrag

    @property
    def local_pwd(self) -> str:
        return self.ice.local_pwd

    @property
    def remote_address(self) -> Address | None:
        return self._remote_address

    @remote_address.setter
    def remote_address(self, addr: Address | None) -> None:
        self._remote_address = addr
        if self.egress is not None:
            self._mux.point_egress(self.egress, addr)

    @property
    def connected(self) -> bool:
        return self.srtp is not None

    def set_remote(self, ufrag: str, pwd: str, fingerprint: tuple[str, str], setup: str) -> None:
        """Apply the peer's ICE credentials, DTLS fingerprint and a=setup (its role)."""
        if self.ice.remote_ufrag is not None and self.ice.remote_ufrag != ufrag:
            # ICE restart: the peer will check again from possibly new addresses.
            self._nominated = False
        self.ice.set_remote(ufrag, pwd)
        want_server = setup != "passive"
        if self.dtls.is_server != want_server and self.dtls.state is DtlsState.NEW:
            self.dtls = DtlsSession(self._certificate, is_server=want_server)
        self.dtls.set_remote_fingerprint(*fingerprint)
        self._after_dtls([])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.remote_address is not None:
            for datagram in self.dtls.close():
                self._mux.sendto(datagram, self.remote_address)
        self.srtp = None
        if self.ingress is not None:
            self.ingress.clear()
        if self.egress is not None:
            self._mux.point_egress(self.egress, None)
        self.ingress = self.egress = None
        self._mux.unregister(self, self._addresses)
        self.on_rtp = self.on_rtcp = _ignore
        self.on_connected = _nothing

    # Incoming, called by the mux.

    def address_taken(self, addr: Address) -> None:
        """Another session latched ADDR (the peer moved to a new session): forget it here."""
        self._addresses = [a for a in self._addresses if a != addr]

    def handle_stun(self, data: bytes, message: stun.StunMessage, addr: Address) -> None:
        result = self.ice.handle_request(data, message, self._mux.mapped_address(addr))
        if result is None:
            return
        self.consent_checks += 1
        self._mux.sendto(result.response, addr)
        if addr not in self._addresses:
            if len(self._addresses) >= _MAX_ADDRESSES:
                self._mux.forget(self._addresses.pop(0), self)
            self._addresses.append(addr)
            self._mux.latch(addr, self)
        if result.nominated or not self._nominated:
            self.remote_address = addr
            self._nominated = self._nominated or result.nominated
        if not self.dtls.is_server and self.dtls.state is DtlsState.NEW:
            self._after_dtls(self.dtls.start())

    def handle_dtls(self, data: bytes, addr: Address) -> None:
        if self.remote_address is None:
            self.remote_address = addr
        self._after_dtls(self.dtls.receive(data))

    def handle_srtp(self, data: bytes) -> None:
        srtp = self.srtp
        if srtp is None:
            return
        self.packets_received += 1
        self.bytes_received += len(data)
        if len(data) < _RTCP_HEADER_SIZE:  # shorter than any RTP (12) or RTCP (8) header: noise
            self.srtp_errors += 1
            return
        try:
            if 191 < data[1] < 224:  # RTCP packet types 192-223 (RFC 5761 section 4)
                self.on_rtcp(srtp.unprotect_rtcp(data))
            elif self.ingress is not None:
                # Native: forwarded there along an installed route (None), or handed back plain;
                # the Ingress records transport-cc arrivals of both (take_arrivals).
                packet = self.ingress.handle(data)
                if packet is not None:
                    self.on_rtp(packet)
            else:
                plain = srtp.unprotect_rtp(data)
                arrivals = self.arrivals
                if arrivals is not None:
                    sequence = read_transport_seq(plain, self._transport_cc_id)
                    if sequence is not None:
                        arrivals.on_arrival(sequence, time.monotonic())
                self.on_rtp(plain)
        except SrtpError:
            self.srtp_errors += 1
        except (RtpError, RtcpError):  # authentic, but malformed inside: dropped like noise
            self.packets_malformed += 1

    def set_transport_cc(self, ext_id: int) -> None:
        """Record the transport-wide sequence numbers (RFC 8285 element EXT_ID) of the RTP this
        session receives, for send_transport_feedback; EXT_ID_NONE stops it."""
        if ext_id == self._transport_cc_id:
            return
        self._transport_cc_id = ext_id
        self.arrivals = ArrivalRecorder(secrets.randbits(32) | 1) if ext_id else None
        if self.ingress is not None:
            self.ingress.set_twcc(ext_id)

    def send_transport_feedback(self, media_ssrc: int, now: float) -> int:
        """Send transport-cc feedback (SRTCP) for the packets that arrived since the last one, when
        enough wait or the last one is old enough (NOW: time.monotonic()); nothing when none
        arrived. Returns the number of RTCP packets sent."""
        arrivals = self.arrivals
        if arrivals is None or self.srtp is None:
            return 0
        if self.ingress is not None:
            for sequence, at in self.ingress.take_arrivals():
                arrivals.on_arrival(sequence, at)
        pending = arrivals.pending
        if not pending or (
            pending < _FEEDBACK_PACKETS and now - self._feedback_time < _FEEDBACK_WAIT
        ):
            return 0
        self._feedback_time = now
        packets = arrivals.feedback(media_ssrc)
        for packet in packets:
            self.send_rtcp(packet)
        return len(packets)

    # Outgoing.

    def set_congestion(self, congestion: SubscriberCongestion | None) -> None:
        """Stamp transport-wide sequence numbers on what this session sends, for CONGESTION."""
        self.congestion = congestion
        if congestion is not None and self.egress is not None:
            congestion.bind_egress(self.egress)

    def send_rtp(self, packet: bytes) -> None:
        srtp = self.srtp
        addr = self._remote_address
        if srtp is None or addr is None:
            return
        congestion = self.congestion
        if congestion is not None:
            packet = congestion.stamp(packet, time.monotonic())
        try:
            data = srtp.protect_rtp(packet)
        except SrtpError:
            self.srtp_errors += 1
            return
        self.packets_sent += 1
        self.bytes_sent += len(data)
        self._mux.sendto(data, addr)

    @property
    def packets_sent_total(self) -> int:
        """RTP packets sent, by the Python path and by the native fast path."""
        native = self.egress.sent if self.egress is not None else 0
        return self.packets_sent + int(native)

    def send_rtcp(self, packet: bytes) -> None:
        srtp = self.srtp
        addr = self._remote_address
        if srtp is None or addr is None:
            return
        try:
            data = srtp.protect_rtcp(packet)
        except SrtpError:
            self.srtp_errors += 1
            return
        self.rtcp_sent += 1
        self.bytes_sent += len(data)
        self._mux.sendto(data, addr)

    # DTLS plumbing.

    def _after_dtls(self, datagrams: list[bytes]) -> None:
        addr = self.remote_address
        if addr is not None:
            for datagram in datagrams:
                self._mux.sendto(datagram, addr)
        if self.srtp is None and self.dtls.state is DtlsState.CONNECTED and self.dtls.keys:
            self.srtp = SrtpContext(self.dtls.keys)
            self.ingress = self.srtp.ingress()
            if self.ingress is not None and self._transport_cc_id:
                self.ingress.set_twcc(self._transport_cc_id)
            self.egress = self.srtp.egress() if self._native_egress else None
            if self.egress is not None:
                self._mux.point_egress(self.egress, self._remote_address)
                if self.congestion is not None:
                    self.congestion.bind_egress(self.egress)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.on_connected()
            return
        if self.dtls.state is DtlsState.FAILED:
            logger.info("session %s: %s", self.local_ufrag, self.dtls.failure)
        self._schedule_timer()

    def _schedule_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self.dtls.get_timeout()
        if timeout is not None and not self._closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(timeout, 0.001), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            self._after_dtls(self.dtls.handle_timeout())


class ControllingTransport(WebRtcTransport):
    """A session whose ICE agent is the controlling full agent (a relay link's initiator):
    it sends the checks (aggressive nomination), then starts DTLS as client on the selected
    address, and keeps checking consent (RFC 8445 section 8.1.1, RFC 7675). Binding responses
    reach it through the mux by transaction id."""

    def __init__(self, mux: UdpMux, certificate: DtlsCertificate) -> None:
        self.agent = IceControllingAgent()
        super().__init__(mux, certificate, ice=self.agent, native_egress=False)
        self._check_timer: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self.srtp is not None and not self.agent.consent_lost

    @property
    def failed(self) -> bool:
        """No check succeeded in time, or the consent was lost: the link must be offered again."""
        return self.agent.failed or self.agent.consent_lost

    def start_checks(self, candidates: list[Address]) -> None:
        """Check these remote candidates (after set_remote) until one answers."""
        self.agent.start(candidates, time.monotonic())
        self._run_checks()

    def handle_stun_response(self, data: bytes, message: stun.StunMessage, addr: Address) -> None:
        if self._closed:
            return
        if self.agent.handle_response(data, message, addr, time.monotonic()):
            self._addresses.append(addr)
            self._mux.latch(addr, self)
            self.remote_address = addr
            if self.dtls.state is DtlsState.NEW:
                self._after_dtls(self.dtls.start())
        self._forget_expired()

    def send_rtp(self, packet: bytes) -> None:
        if not self.agent.consent_lost:  # RFC 7675 section 5.1: stop sending without consent
            super().send_rtp(packet)

    def send_rtcp(self, packet: bytes) -> None:
        if not self.agent.consent_lost:
            super().send_rtcp(packet)

    def close(self) -> None:
        if self._check_timer is not None:
            self._check_timer.cancel()
            self._check_timer = None
        self.agent.stop()
        self._forget_expired()
        super().close()

    def _run_checks(self) -> None:
        self._check_timer = None
        if self._closed:
            return
        now = time.monotonic()
        for transaction_id, request, address in self.agent.due(now):
            self._mux.expect_response(transaction_id, self)
            self._mux.sendto(request, address)
        self._forget_expired()
        if self.agent.consent_lost:
            logger.info("session %s: ICE consent lost", self.local_ufrag)
        elif self.agent.failed:
            logger.info("session %s: no ICE connectivity check succeeded", self.local_ufrag)
        delay = self.agent.next_delay(now)
        if delay is not None:
            loop = asyncio.get_running_loop()
            self._check_timer = loop.call_later(max(delay, 0.001), self._run_checks)

    def _forget_expired(self) -> None:
        for transaction_id in self.agent.take_expired():
            self._mux.forget_response(transaction_id)


def _ignore(_packet: bytes) -> None:
    return None


def _nothing() -> None:
    return None


class UdpMux(asyncio.DatagramProtocol):
    """The shared socket: classify each datagram by its first byte and hand it to its session."""

    def __init__(self) -> None:
        self._by_ufrag: dict[str, WebRtcTransport] = {}
        self._by_address: dict[Address, WebRtcTransport] = {}
        self._by_transaction: dict[bytes, ControllingTransport] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Task[Any] | None = None
        self.port = 0
        self.streams: StreamConnections | None = None
        """The ICE-TCP listener (tcp.py) when it runs: sends to ("tcp", id) addresses go there."""
        self.tcp_port = 0
        """The ICE-TCP listener's port, written in passive TCP candidates; 0 when it is off."""
        self.datagrams_received = 0
        self.bytes_received = 0
        self.datagrams_dropped = 0

    async def bind(self, host: str, port: int, port_range: tuple[int, int]) -> int:
        """Bind `port`, or when it is busy the first free port of `port_range`; returns the port."""
        loop = asyncio.get_running_loop()
        candidates = [port, *range(port_range[0], port_range[1] + 1)]
        last_error: OSError | None = None
        for candidate in candidates:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: self, local_addr=(host, candidate)
                )
            except OSError as exc:
                last_error = exc
                continue
            self._transport = transport
            if hasattr(transport, "max_size"):
                transport.max_size = _MAX_DATAGRAM  # type: ignore[attr-defined]
            sock = transport.get_extra_info("socket")
            if sock is not None:
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            self.port = transport.get_extra_info("sockname")[1]
            return self.port
        raise OSError(f"no free UDP port in {port} or {port_range[0]}-{port_range[1]}") from (
            last_error
        )

    def open(self, host: str) -> int:
        """Bind an ephemeral port of `host` now (the socket starts reading on the next loop
        iteration); for a socket of one session rather than the relay's shared one."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self._opening = loop.create_task(
            loop.create_datagram_endpoint(lambda: self, sock=sock), name="udp-open"
        )
        self._opening.add_done_callback(partial(self._opened, sock))
        return self.port

    def _opened(self, sock: socket.socket, task: asyncio.Task[Any]) -> None:
        self._opening = None
        if task.cancelled() or task.exception() is not None:
            sock.close()
            return
        transport, _ = task.result()
        if hasattr(transport, "max_size"):
            transport.max_size = _MAX_DATAGRAM

    def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        self._by_transaction.clear()
        for session in self._by_ufrag.values():
            if session.egress is not None:
                session.egress.set_peer(-1, "", 0)  # the socket's fd is about to go
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._by_ufrag.clear()
        self._by_address.clear()

    def register(self, session: WebRtcTransport) -> None:
        self._by_ufrag[session.local_ufrag] = session

    def unregister(self, session: WebRtcTransport, addresses: list[Address]) -> None:
        if self._by_ufrag.get(session.local_ufrag) is session:
            del self._by_ufrag[session.local_ufrag]
        for addr in addresses:
            self.forget(addr, session)

    def latch(self, addr: Address, session: WebRtcTransport) -> None:
        previous = self._by_address.get(addr)
        if previous is not None and previous is not session:
            previous.address_taken(addr)
        self._by_address[addr] = session

    def forget(self, addr: Address, session: WebRtcTransport) -> None:
        if self._by_address.get(addr) is session:
            del self._by_address[addr]
            if addr[0] == STREAM_HOST and self.streams is not None:
                self.streams.close_connection(addr[1])  # nothing else may use it

    def session_at(self, addr: Address) -> WebRtcTransport | None:
        """The session that validated a connectivity check from ADDR, if any."""
        return self._by_address.get(addr)

    def mapped_address(self, addr: Address) -> Address:
        """The peer's transport address as seen here (a STUN response's XOR-MAPPED-ADDRESS): for
        an ICE-TCP connection its TCP peer address."""
        if addr[0] == STREAM_HOST:
            return self.streams.peer_address(addr[1]) if self.streams else ("0.0.0.0", 0)
        return addr

    def address_closed(self, addr: Address) -> None:
        """ADDR (an ICE-TCP connection) is gone: its session forgets it."""
        session = self._by_address.pop(addr, None)
        if session is not None:
            session.address_taken(addr)

    def expect_response(self, transaction_id: bytes, session: ControllingTransport) -> None:
        """A check SESSION sent: the Binding response with this transaction id goes to it."""
        self._by_transaction[transaction_id] = session

    def forget_response(self, transaction_id: bytes) -> None:
        self._by_transaction.pop(transaction_id, None)

    def sendto(self, data: bytes, addr: Address) -> None:
        if addr[0] == STREAM_HOST:
            if self.streams is not None:
                self.streams.send(addr[1], data)
        elif self._transport is not None:
            self._transport.sendto(data, addr)

    def point_egress(self, egress: Any, addr: Address | None) -> None:
        """Aim a native Egress at `addr` on the shared socket (None, or an ICE-TCP connection: it
        stops sending and the router sends to this session on the Python path)."""
        fd = -1
        if addr is not None and addr[0] != STREAM_HOST and self._transport is not None:
            sock = self._transport.get_extra_info("socket")
            if sock is not None and sock.family == socket.AF_INET:  # the extension sends IPv4
                fd = sock.fileno()
        if fd < 0 or addr is None:
            egress.set_peer(-1, "", 0)
        else:
            egress.set_peer(fd, addr[0], addr[1])

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.datagrams_received += 1
        self.bytes_received += len(data)
        if not data:
            return
        first = data[0]
        if 127 < first < 192:
            session = self._by_address.get(addr)
            if session is not None:
                session.handle_srtp(data)
                return
        elif 19 < first < 64:
            session = self._by_address.get(addr)
            if session is not None:
                session.handle_dtls(data, addr)
                return
        elif first < 4:
            self._handle_stun(data, addr)
            return
        self.datagrams_dropped += 1

    def _handle_stun(self, data: bytes, addr: Address) -> None:
        try:
            message = stun.parse(data)
        except stun.StunError:
            self.datagrams_dropped += 1
            return
        if message.message_type in (stun.BINDING_SUCCESS, stun.BINDING_ERROR):
            checker = self._by_transaction.get(message.transaction_id)
            if checker is None:
                self.datagrams_dropped += 1
            else:
                checker.handle_stun_response(data, message, addr)
            return
        if message.message_type != stun.BINDING_REQUEST:
            return  # indications need no answer
        ufrag = local_ufrag_of(message)
        session = self._by_ufrag.get(ufrag) if ufrag else None
        if session is None:
            self.datagrams_dropped += 1
            return
        session.handle_stun(data, message, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP error: %s", exc)
