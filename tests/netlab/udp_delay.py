"""A userspace UDP forwarder adding a fixed one-way delay, for tests that need latency (this kernel
has no netem). Each client address gets its own upstream socket towards the target, so replies find
their way back; both directions are delayed by ``delay`` seconds. Bounded: at most ``max_clients``
clients and ``max_in_flight`` datagrams waiting (beyond it new ones are dropped, as a full router
queue would), and idle clients are forgotten after ``idle_timeout``.

``python -m tests.netlab.udp_delay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS``
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import cast

Address = tuple[str, int]
MAX_PENDING = 32


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the target: what comes back goes to the client, delayed."""

    def __init__(self, proxy: UdpDelay, client: Address) -> None:
        self.proxy = proxy
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.last_seen = time.monotonic()
        self.pending: list[bytes] = []  # what the client sent while this socket was being opened

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        for data in self.pending:
            self.proxy.later(self.transport, data, None)
        self.pending.clear()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.last_seen = time.monotonic()
        if self.proxy.listener is not None:
            self.proxy.later(self.proxy.listener, data, self.client)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpDelay) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.proxy.from_client(data, addr)


class UdpDelay:
    """``async with UdpDelay(listen, target, delay) as proxy:`` then send to ``proxy.address``."""

    def __init__(
        self,
        listen: Address,
        target: Address,
        delay: float,
        *,
        max_clients: int = 16,
        max_in_flight: int = 2000,
        idle_timeout: float = 30.0,
    ) -> None:
        if delay < 0 or max_clients < 1 or max_in_flight < 1:
            raise ValueError("delay must be >= 0, the bounds >= 1")
        self.listen, self.target, self.delay = listen, target, delay
        self.max_clients, self.max_in_flight, self.idle_timeout = (
            max_clients,
            max_in_flight,
            idle_timeout,
        )
        self.listener: asyncio.DatagramTransport | None = None
        self.address: Address = listen
        self.clients: dict[Address, _Upstream] = {}
        self.in_flight = 0
        self.dropped = 0
        self.forwarded = 0

    async def __aenter__(self) -> UdpDelay:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=self.listen
        )
        self.listener = transport
        self.address = transport.get_extra_info("sockname")[:2]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for upstream in self.clients.values():
            if upstream.transport is not None:
                upstream.transport.close()
        self.clients.clear()
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def later(self, transport: asyncio.DatagramTransport, data: bytes, to: Address | None) -> None:
        """Sends ``data`` after the delay, or drops it when the queue is full."""
        if self.in_flight >= self.max_in_flight:
            self.dropped += 1
            return
        self.in_flight += 1
        asyncio.get_running_loop().call_later(self.delay, self._send, transport, data, to)

    def _send(self, transport: asyncio.DatagramTransport, data: bytes, to: Address | None) -> None:
        self.in_flight -= 1
        if transport.is_closing():
            return
        self.forwarded += 1
        transport.sendto(data, to)

    def from_client(self, data: bytes, client: Address) -> None:
        upstream = self.clients.get(client)
        if upstream is None:
            self._forget_idle()
            if len(self.clients) >= self.max_clients:
                self.dropped += 1
                return
            upstream = _Upstream(self, client)
            self.clients[client] = upstream
            asyncio.get_running_loop().create_task(self._connect(upstream))
        upstream.last_seen = time.monotonic()
        if upstream.transport is not None:
            self.later(upstream.transport, data, None)
        elif len(upstream.pending) < MAX_PENDING:
            upstream.pending.append(data)
        else:
            self.dropped += 1

    async def _connect(self, upstream: _Upstream) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: upstream, remote_addr=self.target)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for client, upstream in list(self.clients.items()):
            if now - upstream.last_seen > self.idle_timeout:
                if upstream.transport is not None:
                    upstream.transport.close()
                del self.clients[client]


async def _main(argv: list[str]) -> None:
    listen = (argv[0], int(argv[1]))
    target = (argv[2], int(argv[3]))
    async with UdpDelay(listen, target, float(argv[4]) / 1000) as proxy:
        print(f"ready {proxy.address[0]} {proxy.address[1]}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(sys.argv[1:]))
