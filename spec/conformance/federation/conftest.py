"""Options and fixtures of the federation conformance suite (see spec/README.md).

Every option may also be given as an environment variable (``--fed-target`` is
``ORS_FED_TARGET``). Without a target, every test is skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spec.conformance.federation.peer import Identity, PartnerServer, Target, random_id

OPTIONS = {
    "--fed-target": "base URL of the gateway under test (its discovery is URL/.well-known/ors)",
    "--fed-target-ca": "CA file to verify the target's TLS certificate (default: system CAs)",
    "--fed-room": "a room on the target the suite is allowed to link (manual setup)",
    "--fed-denied-room": "an existing room on the target the suite is NOT allowed to link",
    "--fed-join-token": "a join token for --fed-room, to watch the room with an ORS client",
    "--fed-admin-url": "a Rondpoint-style admin API of the target (default: --fed-target)",
    "--fed-admin-token": "its admin token: the suite then makes its rooms, token and peer entry",
    "--fed-name": "the suite's own server name (default conformance.test)",
    "--fed-host": "the loopback address the suite listens on (default 127.0.0.1)",
    "--fed-port": "the port it listens on (default: any free port)",
    "--fed-home": "folder keeping the suite's keys, CA and certificate (default: a new one)",
    "--fed-cert": "the suite's TLS certificate (default: issued by its own CA in --fed-home)",
    "--fed-key": "the private key of --fed-cert",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ors-federation", "ORS federation conformance")
    for option, help_text in OPTIONS.items():
        group.addoption(option, default=None, help=f"{help_text} [{_env_name(option)}]")


def _env_name(option: str) -> str:
    return "ORS_" + option.removeprefix("--").replace("-", "_").upper()


def option(config: pytest.Config, name: str, default: str = "") -> str:
    value = config.getoption(name, default=None)
    return str(value) if value else os.environ.get(_env_name(name), default)


@dataclass
class Setup:
    """What the suite uses on the target: a room it may link, a room it may not, join tokens."""

    room: str
    denied_room: str
    target: Target
    admin_url: str = ""
    admin_token: str = ""
    join_token: str = ""

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        if data:
            headers["Content-Type"] = "application/json"
        response = self.target.request(method, self.admin_url + path, data, headers)
        return response.status, response.json if response.body else None

    def token(self, identity: str, name: str) -> str:
        """A join token for ``room``: minted through the admin API, else the one given."""
        if not self.admin_token:
            if not self.join_token:
                pytest.skip("give --fed-join-token or --fed-admin-token to watch the room")
            return self.join_token
        path = f"/api/v1/rooms/{urllib.parse.quote(self.room)}/tokens"
        status, body = self.admin("POST", path, {"identity": identity, "name": name, "ttl": 600})
        assert status == 201, (status, body)
        return str(body["token"])


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    url = option(request.config, "--fed-target")
    if not url:
        pytest.skip("no target: give --fed-target URL (or ORS_FED_TARGET)")
    context = ssl.create_default_context()
    ca_file = option(request.config, "--fed-target-ca")
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    found = Target(url.rstrip("/"), context)
    found.load_discovery()
    return found


@pytest.fixture(scope="session")
def partner(request: pytest.FixtureRequest, target: Target) -> Iterator[PartnerServer]:
    """The suite's own gateway: its HTTPS server, discovery, keys and federation endpoints."""
    config = request.config
    home = option(config, "--fed-home") or tempfile.mkdtemp(prefix="ors-fed-conformance-")
    cert, key = option(config, "--fed-cert"), option(config, "--fed-key")
    identity = Identity.load(
        Path(home),
        option(config, "--fed-name", "conformance.test"),
        option(config, "--fed-host", "127.0.0.1"),
        int(option(config, "--fed-port", "0")),
        Path(cert) if cert else None,
        Path(key) if key else None,
    )
    server = PartnerServer(identity)
    server.target = target
    server.fetch_target_keys()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def setup(
    request: pytest.FixtureRequest, target: Target, partner: PartnerServer
) -> Iterator[Setup]:
    config = request.config
    admin_token = option(config, "--fed-admin-token")
    if not admin_token:
        room = option(config, "--fed-room")
        if not room:
            pytest.skip("give --fed-room (and --fed-join-token), or --fed-admin-token")
        yield Setup(
            room,
            option(config, "--fed-denied-room"),
            target,
            join_token=option(config, "--fed-join-token"),
        )
        return
    suffix = secrets.token_hex(4)
    setup = Setup(
        f"fedconf-{suffix}",
        f"fedconf-denied-{suffix}",
        target,
        admin_url=option(config, "--fed-admin-url", target.url).rstrip("/"),
        admin_token=admin_token,
    )
    for room in (setup.room, setup.denied_room):
        status, body = setup.admin("POST", "/api/v1/rooms", {"id": room})
        assert status == 201, (status, body)
    identity = partner.identity
    peer = {"name": identity.name, "url": identity.url, "rooms": [setup.room]}
    status, body = setup.admin("POST", "/api/v1/federation/peers", peer)
    assert status == 201, (status, body)
    try:
        yield setup
    finally:
        setup.admin("DELETE", f"/api/v1/federation/peers/{urllib.parse.quote(identity.name)}")
        for room in (setup.room, setup.denied_room):
            setup.admin("DELETE", f"/api/v1/rooms/{room}")


PEER_ROOM = "conformance"
"""The suite's own room, the other end of its link."""


@pytest.fixture(scope="session")
def link(target: Target, partner: PartnerServer, setup: Setup) -> dict[str, Any]:
    """The link between the target's room and the suite's, asked for once (POST /links)."""
    body = {"link_id": random_id("l_", 22), "room": setup.room, "peer_room": PEER_ROOM}
    response = target.call(partner.identity, "POST", "/links", body)
    assert response.status == 200, (response.status, response.body[:500])
    return dict(response.json)
