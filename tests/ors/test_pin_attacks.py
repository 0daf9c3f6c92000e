"""A room's PIN under attack from many addresses: few guesses are checked, the log says so."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from spec.conformance.orsclient import OrsClient
from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop

ADDRESSES = [f"127.0.0.{n}" for n in range(2, 52)]  # 50 loopback sources
PIN = "4829"


async def _guess(gateway: RunningGateway, room: str, source: str, pin: str) -> tuple[int, dict]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(
            f"{gateway.base_url}/ors/v1/rooms/{room}/tokens", json={"name": "Guess", "pin": pin}
        ) as response,
    ):
        body = await response.json(content_type=None)
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
        return response.status, body


async def test_wrong_pins_from_many_addresses_are_checked_a_few_times_then_delayed(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("pin-storm", pin=PIN)
    gateway.create_room("pin-calm", pin=PIN)
    guesses = [
        _guess(gateway, "pin-storm", ADDRESSES[n % len(ADDRESSES)], f"{1000 + n:04d}")
        for n in range(200)
    ]
    outcomes = Counter(body["code"] for _, body in await asyncio.gather(*guesses))
    checked = outcomes["pin_incorrect"]
    assert checked + outcomes["rate_limited"] == 200
    assert checked <= 10  # 5 free failures, then one check per growing delay
    # the storm delays this room's visitors, a correct PIN included (spec 4.3): it is not checked
    status, body = await _guess(gateway, "pin-storm", ADDRESSES[0], PIN)
    assert (status, body["code"]) == (429, "rate_limited")
    # other rooms are not affected
    status, body = await _guess(gateway, "pin-calm", ADDRESSES[0], PIN)
    assert (status, body["role"]) == (201, "guest")
    # a token the operator issued joins regardless
    host = await OrsClient.connect(gateway.base_url, "pin-storm")
    try:
        joined = await host.join(gateway.token("pin-storm", "chair", "Chair", role="host"))
        assert joined["type"] == "joined"
    finally:
        await host.close()
    log = gateway.log_text()
    assert "PIN attacks on room pin-storm" in log
    assert PIN not in log
    assert "Traceback" not in log
