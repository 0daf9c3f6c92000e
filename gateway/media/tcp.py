"""ICE-TCP passive candidates (RFC 6544) with RFC 4571 framing: a TCP listener whose connections
carry the same STUN, DTLS, SRTP and SRTCP datagrams as the shared UDP socket, each connection being
one more address of the session whose ufrag its first (authenticated) Binding request names."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

from . import stun
from .transport import STREAM_HOST, UdpMux

logger = logging.getLogger(__name__)

MAX_FRAME = 2048
"""Largest frame accepted (a 1500-byte MTU's datagram and headroom); a larger one closes the
connection. WebRTC keeps DTLS records and RTP packets below the path MTU on TCP too."""
MAX_WRITE_BUFFER = 256 * 1024
"""Bytes queued towards a peer that cannot keep up, beyond which frames are dropped (about a
second of video): media late by more is worthless, and the queue must not grow without bound."""
MAX_CONNECTIONS = 1024
"""Open connections in all, authenticated or not."""
MAX_PER_ADDRESS = 64
"""Open connections from one source address (about 30 participants behind one NAT address; each
has a publish and a subscribe connection)."""
AUTH_DEADLINE = 5.0
"""Seconds a new connection has to send an authenticated Binding request for a known ufrag."""
IDLE_TIMEOUT = 30.0
"""Seconds without a frame after which a connection is closed (RFC 7675: browsers check consent
every 5 s or so, so a live peer is never idle this long)."""
SWEEP_INTERVAL = 1.0

_HEADER = 2  # RFC 4571 section 2: a 16-bit big-endian length before each datagram
_BACKLOG = 128

Clock = Callable[[], float]


class FramingError(Exception):
    """The peer sent a frame larger than MAX_FRAME: the connection is closed."""


class FrameReader:
    """RFC 4571 deframing, sans-I/O: bytes in, whole datagrams out."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by DATA (none while a frame is partial); FramingError when a
        length prefix exceeds the maximum (nothing beyond it is buffered)."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= _HEADER:
            length = (buffer[start] << 8) | buffer[start + 1]
            if length > self._max_frame:
                raise FramingError(f"frame of {length} bytes (at most {self._max_frame})")
            if end - start - _HEADER < length:
                break
            frames.append(bytes(buffer[start + _HEADER : start + _HEADER + length]))
            start += _HEADER + length
        if start:
            del buffer[:start]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a partial frame held."""
        return len(self._buffer)


def frame(data: bytes) -> bytes:
    """One datagram with its RFC 4571 length prefix."""
    return len(data).to_bytes(_HEADER, "big") + data


class _Connection(asyncio.Protocol):
    """One accepted TCP connection; every decision is the listener's."""

    def __init__(self, listener: TcpListener) -> None:
        self._listener = listener
        self.id = 0
        self.address: tuple[str, int] = (STREAM_HOST, 0)
        self.peer: tuple[str, int] = ("0.0.0.0", 0)
        self.peer_host = ""
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader()
        self.authenticated = False
        self.opened = 0.0
        self.last_frame = 0.0
        self.frames_dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._listener.accept(self)

    def data_received(self, data: bytes) -> None:
        self._listener.received(self, data)

    def eof_received(self) -> bool:
        return False  # close the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.lost(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # nothing queued is worth flushing to a refused peer


class TcpListener:
    """The ICE-TCP passive listener beside the shared UDP socket; frames go to the mux's sessions
    under the pseudo address ("tcp", connection id), and the mux sends back through `send`."""

    def __init__(
        self,
        mux: UdpMux,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_per_address: int = MAX_PER_ADDRESS,
        auth_deadline: float = AUTH_DEADLINE,
        idle_timeout: float = IDLE_TIMEOUT,
        max_write_buffer: int = MAX_WRITE_BUFFER,
        clock: Clock = time.monotonic,
    ) -> None:
        self._mux = mux
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.auth_deadline = auth_deadline
        self.idle_timeout = idle_timeout
        self.max_write_buffer = max_write_buffer
        self._clock = clock
        self._connections: dict[int, _Connection] = {}
        self._per_host: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        self.port = 0
        self.refused = 0
        """Connections closed before or at authentication (limits, deadline, bad first frame)."""
        self.frames_dropped = 0
        """Frames not sent because the peer's write buffer was full."""

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def bind(self, host: str, port: int, port_range: tuple[int, int]) -> int:
        """Listen on `port`, or when it is busy the first free port of `port_range`; the mux then
        sends to ("tcp", id) addresses through this listener. Returns the port."""
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for candidate in [port, *range(port_range[0], port_range[1] + 1)]:
            try:
                self._server = await loop.create_server(
                    lambda: _Connection(self),
                    host,
                    candidate,
                    backlog=_BACKLOG,
                    reuse_address=True,
                )
            except OSError as exc:
                last_error = exc
                continue
            self.port = self._server.sockets[0].getsockname()[1]
            self._mux.streams = self
            self._mux.tcp_port = self.port
            self._sweep_handle = loop.call_later(SWEEP_INTERVAL, self._sweep_and_reschedule)
            return self.port
        raise OSError(f"no free TCP port in {port} or {port_range[0]}-{port_range[1]}") from (
            last_error
        )

    async def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        if self._mux.streams is self:
            self._mux.streams = None
            self._mux.tcp_port = 0
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self._connections.values()):
            connection.close()
            self.lost(connection)
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # The mux's side (StreamConnections).

    def send(self, connection_id: int, data: bytes) -> None:
        connection = self._connections.get(connection_id)
        if connection is None or connection.transport is None:
            return
        transport = connection.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.max_write_buffer:
            connection.frames_dropped += 1
            self.frames_dropped += 1
            return
        transport.write(frame(data))

    def peer_address(self, connection_id: int) -> tuple[str, int]:
        connection = self._connections.get(connection_id)
        return connection.peer if connection is not None else ("0.0.0.0", 0)

    def close_connection(self, connection_id: int) -> None:
        connection = self._connections.get(connection_id)
        if connection is not None:
            connection.close()
            self.lost(connection)

    # The connections' side.

    def accept(self, connection: _Connection) -> None:
        transport = connection.transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        if (
            len(self._connections) >= self.max_connections
            or self._per_host.get(host, 0) >= self.max_per_address
        ):
            self.refused += 1
            connection.transport = None
            transport.abort()
            return
        connection.id = next(self._ids)
        connection.address = (STREAM_HOST, connection.id)
        connection.peer = (host, int(peer[1]))
        connection.peer_host = host
        connection.opened = connection.last_frame = self._clock()
        self._connections[connection.id] = connection
        self._per_host[host] = self._per_host.get(host, 0) + 1

    def received(self, connection: _Connection, data: bytes) -> None:
        if self._connections.get(connection.id) is not connection:
            return
        try:
            frames = connection.reader.feed(data)
        except FramingError as error:
            logger.debug("ICE-TCP connection from %s closed: %s", connection.peer_host, error)
            self._refuse(connection)
            return
        if not frames:
            return
        connection.last_frame = self._clock()
        mux = self._mux
        address = connection.address
        for datagram in frames:
            if not connection.authenticated:
                if not self._authenticate(connection, datagram):
                    self._refuse(connection)
                    return
                continue
            mux.datagram_received(datagram, address)
            if self._connections.get(connection.id) is not connection:
                return  # the session let the connection go while handling it

    def _authenticate(self, connection: _Connection, datagram: bytes) -> bool:
        """The first frame must be a Binding request that a session's ICE agent accepts (its
        ufrag known, MESSAGE-INTEGRITY with that session's password): then the connection is one
        of that session's addresses."""
        if not datagram or datagram[0] >= 4:
            return False
        try:
            message = stun.parse(datagram)
        except stun.StunError:
            return False
        if message.message_type != stun.BINDING_REQUEST:
            return False
        self._mux.datagram_received(datagram, connection.address)
        if self._mux.session_at(connection.address) is None:
            return False
        connection.authenticated = True
        return True

    def _refuse(self, connection: _Connection) -> None:
        if not connection.authenticated:
            self.refused += 1
        connection.close()
        self.lost(connection)

    def lost(self, connection: _Connection) -> None:
        """Forget the connection (idempotent): its session forgets the address."""
        if self._connections.get(connection.id) is not connection:
            return
        del self._connections[connection.id]
        remaining = self._per_host.get(connection.peer_host, 1) - 1
        if remaining > 0:
            self._per_host[connection.peer_host] = remaining
        else:
            self._per_host.pop(connection.peer_host, None)
        self._mux.address_closed(connection.address)

    def sweep(self, now: float) -> None:
        """Close connections past the authentication deadline or idle too long."""
        for connection in list(self._connections.values()):
            if not connection.authenticated and now - connection.opened >= self.auth_deadline:
                self._refuse(connection)
            elif now - connection.last_frame >= self.idle_timeout:
                connection.close()
                self.lost(connection)

    def _sweep_and_reschedule(self) -> None:
        self._sweep_handle = None
        self.sweep(self._clock())
        if self._server is not None:
            loop = asyncio.get_running_loop()
            self._sweep_handle = loop.call_later(SWEEP_INTERVAL, self._sweep_and_reschedule)
