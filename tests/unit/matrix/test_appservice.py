"""The application-service routes the homeserver calls, against bad input: no or a wrong
hs_token, malformed or oversized transactions, replays, unknown events, a flood; and the user
query for ids inside and outside our namespace. Each refusal changes nothing."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import load_config
from gateway.http.app import create_app
from gateway.server import Gateway
from protocols.matrix.appservice import REFUSED_PER_MINUTE
from protocols.matrix.plugin import plugin
from tests.gateway_process import free_port
from tests.unit.matrix.recording_homeserver import RecordingHomeserver
from tests.unit.matrix.served_gateway import AS_TOKEN, HS_TOKEN, Served, served

TXN = "/matrix/_matrix/app/v1/transactions/"

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


def message(number: int, kind: str = "m.room.message") -> dict[str, Any]:
    return {
        "type": kind,
        "room_id": "!room:hs.test",
        "sender": "@anna:hs.test",
        "event_id": f"$e{number}",
        "content": {"msgtype": "m.text", "body": f"hello {number}"},
    }


def listen(running: Served) -> list[str]:
    seen: list[str] = []

    async def handler(event: dict[str, Any]) -> None:
        seen.append(event["event_id"])

    running.service.listen(handler)
    return seen


async def put(running: Served, txn_id: str, body: Any, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await running.client.put(
        TXN + txn_id,
        data=data,
        headers={"Content-Type": "application/json", **running.auth(), **headers},
    )
    return response.status, await response.json(content_type=None)


async def test_a_transaction_is_applied_in_order(gateway: Served) -> None:
    seen = listen(gateway)
    assert await put(gateway, "t1", {"events": [message(1), message(2)]}) == (200, {})
    await gateway.service.drained()
    assert seen == ["$e1", "$e2"]


async def test_without_a_token_it_is_401_and_nothing_is_applied(gateway: Served) -> None:
    seen = listen(gateway)
    response = await gateway.client.put(TXN + "t1", json={"events": [message(1)]})
    assert response.status == 401
    assert (await response.json())["errcode"] == "M_UNAUTHORIZED"
    await gateway.service.drained()
    assert seen == [] and not gateway.service.seen("t1")


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_wrong_token_is_403_and_nothing_is_applied(gateway: Served, how: str) -> None:
    seen = listen(gateway)
    if how == "header":
        response = await gateway.client.put(
            TXN + "t1", json={"events": [message(1)]}, headers=gateway.auth(AS_TOKEN)
        )
    else:
        response = await gateway.client.put(
            TXN + "t1", json={"events": [message(1)]}, params={"access_token": "nope"}
        )
    answer = await response.json()
    assert (response.status, answer["errcode"]) == (403, "M_FORBIDDEN")
    assert AS_TOKEN not in json.dumps(answer) and HS_TOKEN not in json.dumps(answer)
    await gateway.service.drained()
    assert seen == [] and not gateway.service.seen("t1")


async def test_the_legacy_query_token_and_path_are_accepted(gateway: Served) -> None:
    seen = listen(gateway)
    response = await gateway.client.put(
        "/matrix/transactions/t1", json={"events": [message(1)]}, params={"access_token": HS_TOKEN}
    )
    assert response.status == 200
    await gateway.service.drained()
    assert seen == ["$e1"]


async def test_an_address_that_keeps_guessing_gets_429(gateway: Served) -> None:
    statuses = []
    for _ in range(REFUSED_PER_MINUTE + 1):
        response = await gateway.client.post(
            "/matrix/_matrix/app/v1/ping", headers=gateway.auth("x")
        )
        statuses.append(response.status)
    assert statuses[:-1] == [403] * REFUSED_PER_MINUTE
    assert statuses[-1] == 429


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (b"{not json", "M_NOT_JSON"),
        ([message(1)], "M_BAD_JSON"),
        ({"events": {"type": "m.room.message"}}, "M_BAD_JSON"),
        ({"events": [message(1), "text"]}, "M_BAD_JSON"),
        ({"events": [message(1), {"content": {}}]}, "M_BAD_JSON"),
        ({"events": [message(1)], "ephemeral": 3}, "M_BAD_JSON"),
        ({"events": [message(1)], "de.sorunome.msc2409.to_device": [{"type": 1}]}, "M_BAD_JSON"),
    ],
)
async def test_a_malformed_transaction_is_400_and_nothing_of_it_applied(
    gateway: Served, body: Any, errcode: str
) -> None:
    seen = listen(gateway)
    status, answer = await put(gateway, "t1", body)
    assert (status, answer["errcode"]) == (400, errcode)
    await gateway.service.drained()
    assert seen == [] and not gateway.service.seen("t1")
    # the homeserver's corrected retry of the same transaction id is applied
    assert await put(gateway, "t1", {"events": [message(1)]}) == (200, {})
    await gateway.service.drained()
    assert seen == ["$e1"]


async def test_a_transaction_over_4_mib_is_413_and_nothing_applied(gateway: Served) -> None:
    seen = listen(gateway)
    big = message(1)
    big["content"]["body"] = "x" * (4 * 1024 * 1024)
    status, _ = await put(gateway, "t1", {"events": [big]})
    assert status == 413
    await gateway.service.drained()
    assert seen == [] and not gateway.service.seen("t1")


async def test_a_transaction_larger_than_the_gateways_usual_bound_is_accepted(
    gateway: Served,
) -> None:
    seen = listen(gateway)
    events = [message(n) for n in range(10)]
    for event in events:
        event["content"]["body"] = "y" * 60_000  # 600 kB in all, over the 256 KiB of other routes
    assert await put(gateway, "t1", {"events": events}) == (200, {})
    await gateway.service.drained()
    assert len(seen) == 10


async def test_a_replayed_transaction_is_200_and_applied_once(gateway: Served) -> None:
    seen = listen(gateway)
    assert await put(gateway, "t1", {"events": [message(1)]}) == (200, {})
    assert await put(gateway, "t1", {"events": [message(1)]}) == (200, {})
    await gateway.service.drained()
    assert seen == ["$e1"]


async def test_an_unknown_event_type_is_ignored(gateway: Served) -> None:
    seen = listen(gateway)
    events = [message(1, "com.example.unknown"), message(2)]
    assert await put(gateway, "t1", {"events": events}) == (200, {})
    await gateway.service.drained()
    assert seen == ["$e2"]


async def test_to_device_events_reach_their_listeners(gateway: Served) -> None:
    got: list[str] = []

    async def handler(event: dict[str, Any]) -> None:
        got.append(event["type"])

    gateway.service.listen_to_device(handler)
    to_device = [{"type": "io.element.call.encryption_keys", "sender": "@anna:hs.test"}]
    body = {"events": [], "de.sorunome.msc2409.to_device": to_device}
    assert await put(gateway, "t1", body) == (200, {})
    await gateway.service.drained()
    assert got == ["io.element.call.encryption_keys"]


async def test_a_flood_is_503_then_nothing_is_lost_or_duplicated(
    tmp_path: Path, homeserver: RecordingHomeserver
) -> None:
    async with served(tmp_path, homeserver, max_queued=3) as gateway:
        seen: list[str] = []
        release = asyncio.Event()

        async def slow(event: dict[str, Any]) -> None:
            await release.wait()
            seen.append(event["event_id"])

        gateway.service.listen(slow)
        answers = [await put(gateway, f"t{n}", {"events": [message(n)]}) for n in range(1, 8)]
        statuses = [status for status, _ in answers]
        refused = [n for n, status in enumerate(statuses, start=1) if status == 503]
        assert refused, statuses
        assert all(answers[n - 1][1]["errcode"] == "M_LIMIT_EXCEEDED" for n in refused)
        release.set()
        await gateway.service.drained()
        for n in refused:  # the homeserver sends each refused transaction again, in order
            assert await put(gateway, f"t{n}", {"events": [message(n)]}) == (200, {})
            await gateway.service.drained()
        for n in range(1, 8):  # and a late retry of any is not applied twice
            assert await put(gateway, f"t{n}", {"events": [message(n)]}) == (200, {})
        await gateway.service.drained()
        assert sorted(seen) == sorted(f"$e{n}" for n in range(1, 8))
        assert len(seen) == 7


async def test_a_failing_listener_does_not_stop_the_queue(gateway: Served) -> None:
    seen = listen(gateway)

    async def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    gateway.service.listen(broken)
    assert await put(gateway, "t1", {"events": [message(1)]}) == (200, {})
    assert await put(gateway, "t2", {"events": [message(2)]}) == (200, {})
    await gateway.service.drained()
    assert seen == ["$e1", "$e2"]


async def test_a_user_of_our_namespace_is_registered(gateway: Served) -> None:
    response = await gateway.client.get(
        "/matrix/_matrix/app/v1/users/@rondpoint_tel_+33612345678:hs.test", headers=gateway.auth()
    )
    assert (response.status, await response.json()) == (200, {})
    registered = [r for r in gateway.homeserver.requests if r.path.endswith("/register")]
    assert [r.body["username"] for r in registered] == ["rondpoint_tel_+33612345678"]
    assert registered[0].body["type"] == "m.login.application_service"
    assert registered[0].headers["Authorization"] == f"Bearer {AS_TOKEN}"


@pytest.mark.parametrize(
    "user_id",
    ["@anna:hs.test", "@rondpoint:hs.test", "@rondpoint_x:elsewhere.test", "rondpoint_x"],
)
async def test_a_user_outside_our_namespace_is_404(gateway: Served, user_id: str) -> None:
    response = await gateway.client.get(
        f"/matrix/_matrix/app/v1/users/{user_id}", headers=gateway.auth()
    )
    assert (response.status, (await response.json())["errcode"]) == (404, "M_NOT_FOUND")
    assert gateway.homeserver.requests == []


async def test_the_user_query_needs_the_token(gateway: Served) -> None:
    response = await gateway.client.get("/matrix/_matrix/app/v1/users/@rondpoint_x:hs.test")
    assert response.status == 401
    assert gateway.homeserver.requests == []


async def test_room_aliases_are_404_and_ping_is_200(gateway: Served) -> None:
    alias = await gateway.client.get(
        "/matrix/_matrix/app/v1/rooms/%23a:hs.test", headers=gateway.auth()
    )
    assert alias.status == 404
    ping = await gateway.client.post("/matrix/_matrix/app/v1/ping", headers=gateway.auth(), json={})
    assert (ping.status, await ping.json()) == (200, {})


async def test_an_unsubscribed_listener_gets_nothing_more(gateway: Served) -> None:
    seen: list[str] = []

    async def handler(event: dict[str, Any]) -> None:
        seen.append(event["event_id"])

    unsubscribe = gateway.service.listen(handler)
    assert await put(gateway, "t1", {"events": [message(1)]}) == (200, {})
    await gateway.service.drained()
    unsubscribe()
    assert await put(gateway, "t2", {"events": [message(2)]}) == (200, {})
    await gateway.service.drained()
    assert seen == ["$e1"]


async def test_an_event_without_a_room_or_sender_is_ignored(gateway: Served) -> None:
    seen = listen(gateway)
    roomless = message(1)
    del roomless["room_id"]
    assert await put(gateway, "t1", {"events": [roomless, message(2)]}) == (200, {})
    await gateway.service.drained()
    assert seen == ["$e2"]


async def test_with_matrix_off_the_routes_answer_404(tmp_path: Path) -> None:
    config = load_config(None, plugins=[plugin])
    config.server.data_dir = str(tmp_path / "data")
    config.rooms.demo_room = ""
    config.media.port = free_port(socket.SOCK_DGRAM)
    gateway = Gateway(config, [plugin])
    await gateway.start()
    client = TestClient(TestServer(create_app(gateway), host="127.0.0.1"))
    await client.start_server()
    try:
        response = await client.put(
            TXN + "t1", json={"events": []}, headers={"Authorization": "Bearer anything"}
        )
        assert (response.status, (await response.json())["errcode"]) == (404, "M_NOT_FOUND")
        focus = await client.post("/matrix/sfu/get", json={})
        assert focus.status == 404
    finally:
        await client.close()
        await gateway.stop()
