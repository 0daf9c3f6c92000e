"""Black-box conformance of an ORS v1 server (spec/ors-v1.md), through HTTP and the WebSocket only.

Every message the server sends is validated against spec/schemas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from spec.conformance.orsclient import OrsClient, OrsError, anonymous_token

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"

pytestmark = pytest.mark.interop


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        if "$id" in schema:
            resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = _registry()
INDEX = json.loads((SCHEMAS / "index.json").read_text())


def check(schema_file: str, instance: Any) -> None:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    Draft202012Validator(schema, registry=REGISTRY).validate(instance)


def check_server_messages(client: OrsClient) -> None:
    for message in client.received:
        check(INDEX["server"][message["type"]], message)


async def joined(ors_url: str, room: str, name: str) -> OrsClient:
    grant = await anonymous_token(ors_url, room, name)
    assert grant["status"] == 201, grant
    check("token-response.json", {k: v for k, v in grant.items() if k != "status"})
    client = await OrsClient.connect(ors_url, room)
    reply = await client.join(grant["token"])
    assert reply["type"] in ("joined", "lobby")
    return client


async def test_discovery_document(ors_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(ors_url + "/.well-known/ors") as response:
        assert response.status == 200
        document = await response.json()
    check("discovery.json", document)
    assert "1" in document["versions"]


async def test_keys_are_a_jwks(ors_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(ors_url + "/ors/v1/keys") as response:
        assert response.status == 200
        check("jwks.json", await response.json())


async def test_bad_room_name_is_a_problem(ors_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(ors_url + "/ors/v1/rooms/NO_SUCH") as response,
    ):
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    check("server.error.json", {"type": "error", "problem": problem})
    assert problem["code"] == "invalid_room_name"


async def test_join_ping_chat_leave(ors_url: str, ors_room: str) -> None:
    alice = await joined(ors_url, ors_room, "Alice")
    bob = await joined(ors_url, ors_room, "Bob")
    assert (await alice.request({"type": "ping"}))["type"] == "pong"
    await bob.request({"type": "chat", "text": "Guten Tag"})
    message = await alice.next_event("chat")
    assert message["message"]["text"] == "Guten Tag"
    await bob.send({"type": "leave"})
    left = await alice.next_event("participant_left")
    assert left["reason"] == "left"
    check_server_messages(alice)
    check_server_messages(bob)
    await alice.close()
    await bob.close()


async def test_unknown_fields_are_ignored(ors_url: str, ors_room: str) -> None:
    grant = await anonymous_token(ors_url, ors_room, "Future Client")
    client = await OrsClient.connect(ors_url, ors_room)
    reply = await client.request({"type": "join", "token": grant["token"], "x-future": {"a": 1}})
    assert reply["type"] in ("joined", "lobby")
    assert (await client.request({"type": "ping", "x-future": True}))["type"] == "pong"
    check_server_messages(client)
    await client.close()


@pytest.mark.parametrize(
    ("message", "code", "field"),
    [
        ({"type": "teleport"}, "unknown_type", "/type"),
        ({"type": "join"}, "invalid_message", "/token"),
        ({"type": "join", "token": 42}, "invalid_message", "/token"),
        ({"type": "join", "token": "not-a-jwt"}, "token_invalid", None),
        ({"type": "chat", "text": "hello"}, "not_joined", None),
    ],
)
async def test_bad_messages_get_the_documented_error(
    ors_url: str, ors_room: str, message: dict, code: str, field: str | None
) -> None:
    await anonymous_token(ors_url, ors_room, "Room Maker")
    client = await OrsClient.connect(ors_url, ors_room)
    with pytest.raises(OrsError) as error:
        await client.request(message)
    assert error.value.code == code
    if field is not None:
        assert error.value.problem.get("field") == field
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    check_server_messages(client)
    await client.close()


async def test_invalid_json_keeps_the_socket(ors_url: str, ors_room: str) -> None:
    await anonymous_token(ors_url, ors_room, "Room Maker")
    client = await OrsClient.connect(ors_url, ors_room)
    await client.send_raw("][")
    error = await client.next_event("error")
    assert error["problem"]["code"] == "invalid_json"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()
