"""The client's address behind trusted reverse proxies (gateway/http/client_address.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import ConfigError, load_config
from gateway.http.client_address import (
    client_address,
    client_address_middleware,
    parse_trusted_proxies,
)

PROXIES = parse_trusted_proxies(["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # a trusted proxy names the client
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("10.1.2.3", ["203.0.113.7"], "203.0.113.7"),
        # no header, or an empty one: the peer itself
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["  "], "127.0.0.1"),
        # chains: the right-most address that is not a trusted proxy
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7, 10.0.0.9"], "203.0.113.7"),
        ("127.0.0.1", ["198.51.100.1", "203.0.113.7, 10.0.0.9"], "203.0.113.7"),
        ("127.0.0.1", ["198.51.100.1,203.0.113.7,,10.0.0.9"], "203.0.113.7"),
        # every address a trusted proxy: the left-most one
        ("127.0.0.1", ["10.0.0.5, 10.0.0.9"], "10.0.0.5"),
        # IPv6: peers, entries, networks; written in canonical form
        ("::1", ["2001:db8:0:0::7"], "2001:db8::7"),
        ("fd00::1", ["2001:db8::7, fd12::1"], "2001:db8::7"),
        ("127.0.0.1", ["[2001:db8::7]"], "2001:db8::7"),
        ("::ffff:127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["::ffff:203.0.113.7"], "203.0.113.7"),
        # garbage met before the client: the header is not believed
        ("127.0.0.1", ["unknown"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7, evil"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7:4711"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7, 10.0.0.9, 999.1.1.1"], "127.0.0.1"),
        ("127.0.0.1", ["<script>, 10.0.0.9"], "127.0.0.1"),
        # garbage to the left of the client is never read
        ("127.0.0.1", ["evil, 203.0.113.7"], "203.0.113.7"),
        # an untrusted peer's header is ignored entirely
        ("192.0.2.10", ["203.0.113.7"], "192.0.2.10"),
        ("2001:db8::99", ["203.0.113.7"], "2001:db8::99"),
        ("11.0.0.1", ["10.0.0.5"], "11.0.0.1"),
        # a peer that is no IP address (a Unix socket) is left alone
        (None, ["203.0.113.7"], None),
        ("", ["203.0.113.7"], ""),
    ],
)
def test_client_address(peer: str | None, headers: list[str], expected: str | None) -> None:
    assert client_address(peer, headers, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address("127.0.0.1", ["203.0.113.7"], ()) == "127.0.0.1"


def test_an_ipv4_network_does_not_trust_ipv6_peers() -> None:
    everything_v4 = parse_trusted_proxies(["0.0.0.0/0"])
    assert client_address("::1", ["203.0.113.7"], everything_v4) == "::1"
    assert client_address("192.0.2.1", ["203.0.113.7"], everything_v4) == "203.0.113.7"


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.1/8", "10.0.0.0/33", "", "::1/200"])
def test_parse_refuses_what_is_no_address_or_network(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        parse_trusted_proxies([bad])


# configuration ---------------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rondpoint.toml"
    path.write_text(text)
    return path


def test_config_default_trusts_nobody() -> None:
    assert load_config(None).http.trusted_proxies == []


def test_config_accepts_addresses_and_networks(tmp_path: Path) -> None:
    text = '[http]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]\n'
    config = load_config(write(tmp_path, text))
    assert config.http.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"127.0.0.1"', "'http.trusted_proxies' must be a list of IP addresses or networks"),
        ("[1, 2]", "'http.trusted_proxies' must be a list of IP addresses or networks"),
        ('["proxy.example"]', "'http.trusted_proxies' has 'proxy.example', which is not"),
        ('["10.0.0.1/8"]', "'http.trusted_proxies' has '10.0.0.1/8', which is not"),
    ],
)
def test_config_refuses_bad_trusted_proxies(tmp_path: Path, value: str, expected: str) -> None:
    path = write(tmp_path, f"[http]\ntrusted_proxies = {value}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(str(path))
    assert expected in str(error.value)


# the middleware in an aiohttp application (the test client connects from 127.0.0.1) -----------
async def _remote(request: web.Request) -> web.Response:
    return web.Response(text=request.remote or "")


async def _ws_remote(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(request.remote or "")
    await ws.close()
    return ws


def _app(trusted: list[str]) -> web.Application:
    app = web.Application(middlewares=[client_address_middleware(trusted)])
    app.router.add_get("/remote", _remote)
    app.router.add_get("/ws", _ws_remote)
    return app


async def test_middleware_sets_request_remote_for_a_trusted_peer() -> None:
    async with TestClient(TestServer(_app(["127.0.0.0/8"]), host="127.0.0.1")) as client:
        response = await client.get("/remote", headers={"X-Forwarded-For": "203.0.113.7"})
        assert await response.text() == "203.0.113.7"
        response = await client.get("/remote")
        assert await response.text() == "127.0.0.1"
        # the WebSocket session (ORS) reads the same address
        ws = await client.ws_connect("/ws", headers={"X-Forwarded-For": "2001:db8::7"})
        assert await ws.receive_str(timeout=5) == "2001:db8::7"
        await ws.close()


async def test_middleware_ignores_the_header_from_an_untrusted_peer() -> None:
    async with TestClient(TestServer(_app(["10.0.0.0/8"]), host="127.0.0.1")) as client:
        response = await client.get("/remote", headers={"X-Forwarded-For": "203.0.113.7"})
        assert await response.text() == "127.0.0.1"
        ws = await client.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.7"})
        assert await ws.receive_str(timeout=5) == "127.0.0.1"
        await ws.close()
