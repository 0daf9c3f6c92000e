"""udp_delay.py: datagrams cross both ways, each direction delayed, and the queue bound holds."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from tests.netlab.udp_delay import UdpDelay


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, time.monotonic()))


async def test_round_trip_is_delayed_both_ways() -> None:
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    try:
        target = echo.get_extra_info("sockname")[:2]
        async with UdpDelay(("127.0.0.1", 0), target, 0.05) as proxy:
            client, protocol = await loop.create_datagram_endpoint(
                _Client, remote_addr=proxy.address
            )
            try:
                for i in range(3):
                    sent = time.monotonic()
                    client.sendto(b"ping%d" % i)
                    data, at = await asyncio.wait_for(protocol.received.get(), 5)
                    assert data == b"ping%d" % i
                    assert at - sent >= 0.09  # 50 ms each way (timer granularity aside)
            finally:
                client.close()
    finally:
        echo.close()


async def test_queue_and_client_bounds_drop_the_excess() -> None:
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    try:
        target = echo.get_extra_info("sockname")[:2]
        async with UdpDelay(
            ("127.0.0.1", 0), target, 0.1, max_in_flight=10, max_clients=1
        ) as proxy:
            client, protocol = await loop.create_datagram_endpoint(
                _Client, remote_addr=proxy.address
            )
            other, _ = await loop.create_datagram_endpoint(_Client, remote_addr=proxy.address)
            try:
                client.sendto(b"first")
                await asyncio.sleep(0.05)
                for _ in range(50):
                    client.sendto(b"x")
                other.sendto(b"refused: one client only")
                await asyncio.sleep(0.4)
                assert proxy.in_flight == 0
                assert proxy.dropped >= 40
                assert len(proxy.clients) == 1
                assert protocol.received.qsize() <= 10
            finally:
                client.close()
                other.close()
    finally:
        echo.close()


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        UdpDelay(("127.0.0.1", 0), ("127.0.0.1", 9), -1)
