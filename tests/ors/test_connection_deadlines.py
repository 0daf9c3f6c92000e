"""Every connection has deadlines: WebSockets that never join, slow HTTP heads and bodies."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import aiohttp
import pytest

from spec.conformance.orsclient import OrsClient
from tests.gateway_process import RunningGateway, running_gateway

pytestmark = pytest.mark.interop

CLOSE_JOIN_TIMEOUT = 4408  # spec 6.1
JOIN_DEADLINE = 10  # seconds, spec 6.1 (Rondpoint)
HTTP_DEADLINE = 15  # seconds for a request head, and for its body (gateway/process.py, http/app.py)
CLIENTS = 50


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(tmp_path_factory.mktemp("deadlines")) as running:
        yield running


def _open_descriptors(gateway: RunningGateway) -> int:
    return len(os.listdir(f"/proc/{gateway.process.pid}/fd"))


async def _settled_descriptors(gateway: RunningGateway) -> int:
    """The descriptor count once it has stayed the same for a second (earlier tests' sockets
    may still be closing); at most 10 s."""
    count = _open_descriptors(gateway)
    for _ in range(10):
        await asyncio.sleep(1)
        count, previous = _open_descriptors(gateway), count
        if count == previous:
            break
    return count


def _http_address(gateway: RunningGateway) -> tuple[str, int]:
    host, port = gateway.base_url.removeprefix("http://").split(":")
    return host, int(port)


async def _connect_ws(
    gateway: RunningGateway, room: str, source: str = "127.0.0.1"
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    try:
        ws = await http.ws_connect(f"{gateway.ws_base}/ors/v1/rooms/{room}/ws")
    except BaseException:
        await http.close()
        raise
    return http, ws


async def test_a_websocket_that_never_joins_is_closed_with_4408(gateway: RunningGateway) -> None:
    gateway.create_room("deadline")
    member = await OrsClient.connect(gateway.base_url, "deadline")
    http, silent = await _connect_ws(gateway, "deadline")
    try:
        await member.join(gateway.token("deadline", "member", "Member"))
        closing = await silent.receive(timeout=JOIN_DEADLINE * 3)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert (silent.close_code, closing.extra) == (CLOSE_JOIN_TIMEOUT, "join timeout")
        # a joined session outlives the deadline
        assert (await member.request({"type": "ping"}))["type"] == "pong"
    finally:
        await silent.close()
        await http.close()
        await member.close()


async def test_one_address_holds_at_most_20_websockets_that_have_not_joined(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("crowd")
    opened: list[tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]] = []
    try:
        for _ in range(20):
            opened.append(await _connect_ws(gateway, "crowd", "127.0.0.2"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            opened.append(await _connect_ws(gateway, "crowd", "127.0.0.2"))
        assert refused.value.status == 429
        opened.append(await _connect_ws(gateway, "crowd", "127.0.0.3"))  # another address
        # a socket that joins no longer counts
        await opened[0][1].send_json(
            {"type": "join", "id": "1", "token": gateway.token("crowd", "a", "A")}
        )
        assert (await opened[0][1].receive_json(timeout=10))["type"] == "joined"
        opened.append(await _connect_ws(gateway, "crowd", "127.0.0.2"))
    finally:
        for http, ws in opened:
            await ws.close()
            await http.close()


async def _slowloris(gateway: RunningGateway, source: str, head: bytes, trickle: bytes) -> bool:
    """Send `head`, then one byte of `trickle` a second; True once the gateway has closed the
    connection (bounded: it must have done so within three deadlines)."""
    reader, writer = await asyncio.open_connection(*_http_address(gateway), local_addr=(source, 0))
    try:
        writer.write(head)
        for _ in range(HTTP_DEADLINE * 3):
            writer.write(trickle[:1])
            trickle = trickle[1:] or b"X"
            try:
                await writer.drain()
                if await asyncio.wait_for(reader.read(1024), timeout=1.0) == b"":
                    return True
            except TimeoutError:
                continue
            except ConnectionError:
                return True
        return False
    finally:
        writer.close()


async def _never_joins(gateway: RunningGateway, source: str) -> bool:
    http, ws = await _connect_ws(gateway, "deadline-crowd", source)
    try:
        message = await ws.receive(timeout=JOIN_DEADLINE * 3)
        return message.type is aiohttp.WSMsgType.CLOSE and ws.close_code == CLOSE_JOIN_TIMEOUT
    finally:
        await ws.close()
        await http.close()


async def test_slow_clients_are_disconnected_and_their_descriptors_freed(
    gateway: RunningGateway,
) -> None:
    """50 clients trickling a request head one byte a second, 50 trickling a body, and 50
    WebSockets that never join, from 50 loopback addresses: every one is disconnected."""
    gateway.create_room("deadline-crowd")
    before = await _settled_descriptors(gateway)
    head_only = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: "
    with_body = (
        b"POST /ors/v1/rooms/deadline-crowd/tokens HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    )
    sources = [f"127.0.0.{n}" for n in range(2, 2 + CLIENTS)]
    clients = [
        *(_slowloris(gateway, source, head_only, b"a") for source in sources),
        *(_slowloris(gateway, source, with_body, b'{"name": "') for source in sources),
        *(_never_joins(gateway, source) for source in sources),
    ]
    outcome = asyncio.gather(*clients)
    await asyncio.sleep(3)
    during = _open_descriptors(gateway)
    assert during >= before + 3 * CLIENTS  # they are all connected
    assert await outcome == [True] * 3 * CLIENTS
    async with asyncio.timeout(10):
        while _open_descriptors(gateway) > before:
            await asyncio.sleep(0.2)
    log = gateway.log_text()
    assert "Traceback" not in log
    assert '"level": "error"' not in log
