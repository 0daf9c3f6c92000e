"""[http] trusted_proxies against a real gateway process: rate-limit buckets and log lines follow
X-Forwarded-For from a trusted proxy, and only from one.

The requests come from chosen loopback addresses (every 127.0.0.0/8 address is local on Linux):
127.0.0.2 and 127.0.1.2 play reverse proxies, the others visitors talking to the gateway directly.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_process import RunningGateway, running_gateway

pytestmark = pytest.mark.interop

PROXY = "127.0.0.2"
OTHER_PROXY = "127.0.1.2"  # trusted as part of a network
PER_MINUTE = 3


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(
        Path(tmp_path_factory.mktemp("trusted-proxies")),
        http_config=f'trusted_proxies = ["{PROXY}", "127.0.1.0/24", "10.0.0.0/8", "::1"]',
        extra_config=f"[limits]\nanonymous_requests_per_minute = {PER_MINUTE}\n",
    ) as running:
        yield running


def request(
    gateway: RunningGateway,
    method: str,
    path: str,
    source: str,
    forwarded_for: str | None = None,
    body: dict | None = None,
) -> tuple[int, dict]:
    """One HTTP request to the gateway from the loopback address `source`."""
    url = urllib.parse.urlsplit(gateway.base_url)
    connection = http.client.HTTPConnection(
        url.hostname or "127.0.0.1", url.port, timeout=10, source_address=(source, 0)
    )
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    try:
        connection.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}
    finally:
        connection.close()


def ask_token(gateway: RunningGateway, room: str, source: str, forwarded_for: str | None) -> int:
    status, body = request(
        gateway, "POST", f"/ors/v1/rooms/{room}/tokens", source, forwarded_for, {"name": "Zoé"}
    )
    assert status in (201, 429), (status, body)
    return status


def new_room(gateway: RunningGateway, **policy: object) -> str:
    room = f"proxied-{secrets.token_hex(3)}"
    gateway.create_room(room, **policy)
    return room


def exhaust(gateway: RunningGateway, room: str, source: str, forwarded_for: str | None) -> None:
    """Asks tokens until refused; the bucket holds PER_MINUTE, so the refusal comes right after."""
    statuses = [ask_token(gateway, room, source, forwarded_for) for _ in range(PER_MINUTE + 1)]
    assert statuses[:PER_MINUTE] == [201] * PER_MINUTE and statuses[-1] == 429, statuses


def log_entries(gateway: RunningGateway, msg: str) -> list[dict]:
    entries = []
    for line in gateway.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == msg:
                entries.append(entry)
    return entries


def wait_for_log(gateway: RunningGateway, msg: str, count: int, timeout: float = 5) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        entries = log_entries(gateway, msg)
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def test_two_visitors_behind_a_trusted_proxy_have_separate_buckets(
    gateway: RunningGateway,
) -> None:
    room = new_room(gateway)
    exhaust(gateway, room, PROXY, "203.0.113.1")
    # the visitor named by the proxy is refused again, whatever the proxies before it add...
    assert ask_token(gateway, room, PROXY, "203.0.113.1") == 429
    assert ask_token(gateway, room, PROXY, "198.51.100.200, 203.0.113.1, 10.9.9.9") == 429
    # ...while another visitor behind the same proxy, and the proxy itself, are not charged
    assert ask_token(gateway, room, PROXY, "203.0.113.2") == 201
    assert ask_token(gateway, room, PROXY, "2001:db8::2") == 201
    assert ask_token(gateway, room, PROXY, None) == 201


def test_a_malformed_header_from_the_proxy_counts_against_the_proxy(
    gateway: RunningGateway,
) -> None:
    room = new_room(gateway)
    exhaust(gateway, room, OTHER_PROXY, "not-an-address")
    assert ask_token(gateway, room, OTHER_PROXY, None) == 429
    assert ask_token(gateway, room, OTHER_PROXY, "203.0.113.3, unknown") == 429
    assert ask_token(gateway, room, OTHER_PROXY, "203.0.113.3") == 201


def test_an_untrusted_peer_cannot_escape_its_limit_with_the_header(
    gateway: RunningGateway,
) -> None:
    room = new_room(gateway)
    visitor = "127.0.0.3"
    statuses = [
        ask_token(gateway, room, visitor, f"203.0.113.{10 + i}") for i in range(PER_MINUTE + 2)
    ]
    assert statuses == [201] * PER_MINUTE + [429, 429], statuses
    assert ask_token(gateway, room, visitor, None) == 429
    # the addresses it named were never charged: a proxied visitor with one of them still passes
    assert ask_token(gateway, room, PROXY, "203.0.113.10") == 201


def test_log_lines_name_the_client_not_the_proxy(gateway: RunningGateway) -> None:
    room = new_room(gateway, pin="482916")
    before = len(log_entries(gateway, "wrong room PIN"))
    wrong = {"name": "Zoé", "pin": "000000"}
    path = f"/ors/v1/rooms/{room}/tokens"
    assert request(gateway, "POST", path, PROXY, "198.51.100.23", wrong)[0] == 403
    assert request(gateway, "POST", path, "127.0.0.4", "198.51.100.24", wrong)[0] == 403
    entries = wait_for_log(gateway, "wrong room PIN", before + 2)[before:]
    assert [e["source"] for e in entries] == ["198.51.100.23", "127.0.0.4"], entries
    assert all("000000" not in json.dumps(e) for e in entries)

    before = len(log_entries(gateway, "admin API refused a request"))
    assert request(gateway, "GET", "/api/v1/rooms", PROXY, "198.51.100.25")[0] == 401
    entries = wait_for_log(gateway, "admin API refused a request", before + 1)[before:]
    assert [e["source"] for e in entries] == ["198.51.100.25"], entries
