"""Room links over HTTP: the admin API (/api/v1/rooms/{room}/links), the hosts' web routes
(/rooms/{room}/links with a join token) and the CLI, against an in-process gateway whose
``gateway.links`` has a fake ``visio:`` adapter registered by the test."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway import cli
from gateway.config import Config
from gateway.http.app import create_app
from gateway.links import LinkStatus
from gateway.plugins import installed
from gateway.rooms import Role
from gateway.server import Gateway
from tests.gateway_process import free_port

ROOM_UUID = "6f1c2a9e-3b7d-4e55-9a0c-2d8f4b1e7a63"
TARGET = f"visio:{ROOM_UUID}"


class FakeLink:
    def __init__(self, adapter: FakeAdapter, room_id: str, target: str) -> None:
        self.adapter = adapter
        self.room_id = room_id
        self.target = target
        self.state = "connecting"

    def status(self) -> LinkStatus:
        detail = "LiveKit closed the socket mid-join" if self.state == "retrying" else ""
        return LinkStatus(self.state, detail, time.time(), 2 if self.state == "retrying" else 0)

    async def start(self) -> None:
        if self.adapter.fail:
            raise RuntimeError("the LiveKit server refused the token")
        self.state = "connected"

    async def stop(self) -> None:
        self.adapter.stopped.append(self.target)
        self.state = "stopped"


class FakeAdapter:
    scheme = "visio"

    def __init__(self) -> None:
        self.stopped: list[str] = []
        self.fail = False
        self.links: list[FakeLink] = []

    def normalize(self, target: str) -> str:
        try:
            return f"visio:{uuid.UUID(target.split(':', 1)[1])}"
        except ValueError:
            raise ValueError("a Visio room is visio: followed by the room's UUID") from None

    def open(self, room_id: str, target: str) -> FakeLink:
        link = FakeLink(self, room_id, target)
        self.links.append(link)
        return link


@dataclass
class Harness:
    gateway: Gateway
    client: TestClient
    adapter: FakeAdapter
    admin_token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def bearer(self, room: str, role: Role) -> dict[str, str]:
        token = self.gateway.tokens.mint(room, f"user-{role.value}", "User", role, 600)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    config = Config()
    config.server.data_dir = str(tmp_path / "data")
    config.sip.enabled = False
    config.rooms.demo_room = ""
    media_port = free_port(socket.SOCK_DGRAM)
    config.media.port = config.media.port_range_start = config.media.port_range_end = media_port
    # the plugins this project ships (the test environment may install others, like the echo example)
    gateway = Gateway(config, [p for p in installed() if p.name in ("sip", "visio")])
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    await gateway.start()
    assert gateway.new_admin_token
    client = TestClient(TestServer(create_app(gateway), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Harness(gateway, client, adapter, gateway.new_admin_token)
    finally:
        await client.close()
        await gateway.stop()


async def create_room(h: Harness, room: str) -> None:
    response = await h.client.post("/api/v1/rooms", json={"id": room}, headers=h.admin)
    assert response.status == 201


async def test_admin_link_list_show_and_delete(harness: Harness) -> None:
    h = harness
    await create_room(h, "conseil")
    response = await h.client.post(
        "/api/v1/rooms/conseil/links", json={"target": TARGET.upper()}, headers=h.admin
    )
    assert response.status == 201
    body = await response.json()
    assert body["target"] == TARGET and body["status"]["state"] == "connected"

    response = await h.client.get("/api/v1/rooms/conseil/links", headers=h.admin)
    listed = await response.json()
    assert [link["target"] for link in listed["links"]] == [TARGET]
    assert listed["links"][0]["status"]["state"] == "connected" and listed["schemes"] == ["visio"]

    shown = await (await h.client.get("/api/v1/rooms/conseil", headers=h.admin)).json()
    assert shown["links"][0]["target"] == TARGET
    assert set(shown["links"][0]["status"]) == {
        "state",
        "detail",
        "since",
        "attempts",
        "remote_participants",
        "packets_in",
        "packets_out",
    }
    rooms = await (await h.client.get("/api/v1/rooms", headers=h.admin)).json()
    assert rooms["rooms"][0]["links"] == [TARGET]  # the ORS room wire keeps plain strings

    quoted = urllib.parse.quote(TARGET, safe="")
    response = await h.client.delete(f"/api/v1/rooms/conseil/links/{quoted}", headers=h.admin)
    assert response.status == 204
    assert h.adapter.stopped == [TARGET]
    listed = await (await h.client.get("/api/v1/rooms/conseil/links", headers=h.admin)).json()
    assert listed["links"] == []
    response = await h.client.delete(f"/api/v1/rooms/conseil/links/{quoted}", headers=h.admin)
    problem = await response.json()
    assert response.status == 404 and problem["code"] == "link_not_found"


async def test_admin_link_refusals_are_problems(harness: Harness) -> None:
    h = harness
    await create_room(h, "conseil")
    for method, path in (
        ("GET", "/api/v1/rooms/conseil/links"),
        ("POST", "/api/v1/rooms/conseil/links"),
        ("DELETE", f"/api/v1/rooms/conseil/links/{TARGET}"),
    ):
        response = await h.client.request(method, path, json={"target": TARGET})
        assert response.status == 401, (method, path)
        assert (await response.json())["code"] == "unauthorized"

    url = "/api/v1/rooms/conseil/links"
    response = await h.client.post(url, json={"target": "visio:not-a-uuid"}, headers=h.admin)
    problem = await response.json()
    assert response.status == 400 and response.content_type == "application/problem+json"
    assert problem["code"] == "invalid_link" and problem["field"] == "/target"
    assert "UUID" in problem["detail"]
    response = await h.client.post(url, json={"target": "matrix:!x:y"}, headers=h.admin)
    assert (await response.json())["detail"].endswith("known schemes: visio")
    response = await h.client.post(url, json={}, headers=h.admin)
    assert response.status == 400 and (await response.json())["code"] == "invalid_link"
    response = await h.client.post(url, data=b"{", headers=h.admin)
    assert response.status == 400 and (await response.json())["code"] == "invalid_json"

    assert (await h.client.post(url, json={"target": TARGET}, headers=h.admin)).status == 201
    response = await h.client.post(url, json={"target": TARGET}, headers=h.admin)
    assert response.status == 409 and (await response.json())["code"] == "link_exists"

    response = await h.client.post(
        "/api/v1/rooms/nowhere/links", json={"target": TARGET}, headers=h.admin
    )
    assert response.status == 404 and (await response.json())["code"] == "room_not_found"
    assert h.gateway.store.get_room("conseil").links == [TARGET]


async def test_a_failing_adapter_shows_failed_and_the_gateway_keeps_serving(
    harness: Harness,
) -> None:
    h = harness
    h.adapter.fail = True
    await create_room(h, "conseil")
    response = await h.client.post(
        "/api/v1/rooms/conseil/links", json={"target": TARGET}, headers=h.admin
    )
    body = await response.json()
    assert response.status == 201 and body["status"]["state"] == "failed"
    assert "refused the token" in body["status"]["detail"]
    assert (await h.client.get("/readyz")).status == 200


async def test_visio_without_an_adapter_is_unavailable(harness: Harness) -> None:
    h = harness
    h.gateway.links._adapters.clear()  # as when [visio] url is empty
    await create_room(h, "conseil")
    response = await h.client.post(
        "/api/v1/rooms/conseil/links", json={"target": TARGET}, headers=h.admin
    )
    problem = await response.json()
    assert response.status == 400 and problem["code"] == "link_scheme_unavailable"
    assert "[visio] url" in problem["detail"]


async def test_deleting_the_room_stops_its_links(harness: Harness) -> None:
    h = harness
    await create_room(h, "conseil")
    url = "/api/v1/rooms/conseil/links"
    assert (await h.client.post(url, json={"target": TARGET}, headers=h.admin)).status == 201
    assert (await h.client.delete("/api/v1/rooms/conseil", headers=h.admin)).status == 204
    assert h.adapter.stopped == [TARGET]
    await asyncio.sleep(0.05)  # the RoomClosed event comes after: nothing is stopped twice
    assert h.adapter.stopped == [TARGET]


async def test_hosts_link_and_unlink_from_the_web_page(harness: Harness) -> None:
    h = harness
    await create_room(h, "conseil")
    url = "/rooms/conseil/links"
    response = await h.client.post(url, json={"target": TARGET})
    assert response.status == 401 and (await response.json())["code"] == "token_invalid"
    member = h.bearer("conseil", Role.MEMBER)
    response = await h.client.post(url, json={"target": TARGET}, headers=member)
    assert response.status == 403 and (await response.json())["code"] == "forbidden"
    assert (await h.client.get(url, headers=member)).status == 403
    other_room_host = h.bearer("autre-salle", Role.HOST)
    response = await h.client.post(url, json={"target": TARGET}, headers=other_room_host)
    assert response.status == 403 and (await response.json())["code"] == "token_wrong_room"
    assert h.gateway.store.get_room("conseil").links == []

    host = h.bearer("conseil", Role.HOST)
    response = await h.client.post(url, json={"target": TARGET}, headers=host)
    body = await response.json()
    assert response.status == 201 and body == {"target": TARGET, "status": body["status"]}
    listed = await (await h.client.get(url, headers=host)).json()
    assert listed["links"][0]["status"]["state"] == "connected"
    response = await h.client.post(url, json={"target": "visio:nope"}, headers=host)
    assert response.status == 400 and (await response.json())["code"] == "invalid_link"

    quoted = urllib.parse.quote(TARGET, safe="")
    assert (await h.client.delete(f"{url}/{quoted}", headers=member)).status == 403
    assert (await h.client.delete(f"{url}/{quoted}", headers=host)).status == 204
    assert h.gateway.rooms.get("conseil").links == []


async def test_cli_link_show_and_unlink(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = harness
    await create_room(h, "conseil")
    base = ["--url", str(h.client.make_url("")).rstrip("/"), "--admin-token", h.admin_token]

    async def run(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli.main, [*base, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = await run("link", "conseil", TARGET)
    assert code == 0, err
    assert f"room conseil linked to {TARGET}  [connected]" in out

    code, out, err = await run("link", "conseil", TARGET)
    assert code == 1 and "already linked" in err and "HTTP 409" in err

    code, out, err = await run("link", "conseil", "visio:bad")
    assert code == 1 and "UUID" in err and "HTTP 400" in err

    h.adapter.links[0].state = "retrying"
    code, out, err = await run("room", "show", "conseil")
    assert code == 0, err
    assert "links  (1)" in out
    line = next(line for line in out.splitlines() if TARGET in line)
    assert "retrying" in line and "attempts 2" in line and "closed the socket" in line

    code, out, err = await run("unlink", "conseil", TARGET)
    assert code == 0 and f"room conseil unlinked from {TARGET}" in out
    code, out, err = await run("unlink", "conseil", TARGET)
    assert code == 1 and "no link" in err and "HTTP 404" in err
    code, out, _ = await run("room", "show", "conseil")
    assert "links  none" in out


async def test_a_host_who_made_the_room_anonymously_cannot_link_it(harness: Harness) -> None:
    """An anonymous visitor who creates a room is its host, but linking would let them reach
    into any Visio room they can name with the gateway's credentials: refused, nothing stored."""
    h = harness
    response = await h.client.post("/ors/v1/rooms/salle-libre/tokens", json={"name": "Quelqu'un"})
    assert response.status == 201, await response.text()
    made = await response.json()
    assert made["role"] == "host"
    anonymous_host = {"Authorization": f"Bearer {made['token']}"}
    url = "/rooms/salle-libre/links"
    response = await h.client.post(url, json={"target": TARGET}, headers=anonymous_host)
    problem = await response.json()
    assert response.status == 403 and problem["code"] == "forbidden"
    assert "rondpoint link" in problem["detail"]
    assert h.gateway.store.get_room("salle-libre").links == []
    assert (await h.client.get(url, headers=anonymous_host)).status == 200


async def test_cli_dispatches_a_number_and_its_pin_to_a_visio_room(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = harness
    base = ["--url", str(h.client.make_url("")).rstrip("/"), "--admin-token", h.admin_token]

    async def run(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli.main, [*base, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = await run("dispatch", "add", "0140506070", "--room", TARGET, "--pin", "2468")
    assert code == 0, err
    assert f"0140506070 -> {TARGET} (with its PIN)" in out
    code, out, err = await run("dispatch", "list")
    line = next(line for line in out.splitlines() if "0140506070" in line)
    assert TARGET in line and "PIN ••••" in line and "2468" not in out
    code, out, err = await run("dispatch", "add", "0140506071", "--room", TARGET, "--pin", "12a")
    assert code == 1 and "digits" in err, err
    code, out, err = await run("dispatch", "add", "0140506072", "--room", "visio:salle")
    assert code == 1 and "UUID" in err, err
