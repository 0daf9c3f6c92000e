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

from spec.conformance.orsclient import OrsClient, OrsError, anonymous_token, http_request

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


# hands, reactions, requests to unmute, chat history (8.17-8.19, 9.1, 9.19, 9.20) -------------


async def _people(ors_url: str, room: str, *names: str) -> list[OrsClient]:
    """The first joins an unknown room anonymously and so hosts it (4.3); the others are guests."""
    return [await joined(ors_url, room, name) for name in names]


def _own_id(client: OrsClient) -> str:
    return str(client.received[0]["participant"]["id"])


async def _updated(client: OrsClient, participant_id: str) -> dict[str, Any]:
    while True:
        message = await client.next_event("participant_updated")
        if message["participant"]["id"] == participant_id:
            return dict(message["participant"])


async def _finish(*clients: OrsClient) -> None:
    """Every message the clients received matches its schema; then they close."""
    for client in clients:
        check_server_messages(client)
        await client.close()


async def _refused(client: OrsClient, message: dict[str, Any]) -> OrsError:
    with pytest.raises(OrsError) as error:
        await client.request(message)
    return error.value


async def test_a_raised_hand_is_seen_and_only_a_host_lowers_someone_elses(
    ors_url: str, ors_room: str
) -> None:
    host, alice, bob = await _people(ors_url, ors_room, "Host", "Alice", "Bob")
    alice_id = _own_id(alice)
    assert alice.received[0]["participant"]["hand_raised_at"] is None
    await alice.request({"type": "hand", "raised": True})
    raised = await _updated(bob, alice_id)
    assert isinstance(raised["hand_raised_at"], int) and raised["hand_raised_at"] > 0
    assert (await _updated(alice, alice_id))["hand_raised_at"] == raised["hand_raised_at"]

    # a guest can neither lower nor raise someone else's hand, nor raise the host's
    for message in (
        {"type": "hand", "raised": False, "participant_id": alice_id},
        {"type": "hand", "raised": True, "participant_id": _own_id(host)},
    ):
        assert (await _refused(bob, message)).code == "forbidden"
    assert (
        await _refused(host, {"type": "hand", "raised": True, "participant_id": alice_id})
    ).code == "forbidden"
    error = await _refused(host, {"type": "hand", "raised": False, "participant_id": "p_nobody"})
    assert error.code == "participant_not_found"

    await host.request({"type": "hand", "raised": False, "participant_id": alice_id})
    assert (await _updated(bob, alice_id))["hand_raised_at"] is None
    # the refusals changed nothing: the only updates bob saw were alice's two
    updates = [m for m in bob.received if m["type"] == "participant_updated"]
    assert [m["participant"]["hand_raised_at"] is None for m in updates] == [False, True]
    await _finish(host, alice, bob)


async def test_a_hand_goes_with_the_participant_who_leaves(ors_url: str, ors_room: str) -> None:
    grant = await anonymous_token(ors_url, ors_room, "Host")
    host = await OrsClient.connect(ors_url, ors_room)
    await host.join(grant["token"])
    alice_grant = await anonymous_token(ors_url, ors_room, "Alice")
    alice = await OrsClient.connect(ors_url, ors_room)
    await alice.join(alice_grant["token"])
    await alice.request({"type": "hand", "raised": True})
    await _updated(host, _own_id(alice))
    await alice.request({"type": "leave"})
    await host.next_event("participant_left")
    again = await OrsClient.connect(ors_url, ors_room)
    back = await again.join(alice_grant["token"])
    assert back["participant"]["hand_raised_at"] is None
    await _finish(host, alice, again)


async def test_reactions_reach_everyone_and_nothing_else_passes(
    ors_url: str, ors_room: str
) -> None:
    alice, bob = await _people(ors_url, ors_room, "Alice", "Bob")
    await alice.request({"type": "reaction", "emoji": "👏"})
    for client in (alice, bob):
        reaction = await client.next_event("reaction")
        assert reaction["participant_id"] == _own_id(alice) and reaction["emoji"] == "👏"
        assert isinstance(reaction["at"], int)
    for emoji in ("💩", "<img src=x>", "👍👍", "", "❤"):  # the heart needs U+FE0F
        error = await _refused(alice, {"type": "reaction", "emoji": emoji})
        assert error.code == "invalid_message" and error.problem["field"] == "/emoji"
    assert sum(m["type"] == "reaction" for m in bob.received) == 1
    await _finish(alice, bob)


async def test_a_flood_of_reactions_is_rate_limited_and_refused_ones_reach_nobody(
    ors_url: str, ors_room: str
) -> None:
    alice, bob = await _people(ors_url, ors_room, "Alice", "Bob")
    outcomes = []
    for _ in range(30):
        try:
            await alice.request({"type": "reaction", "emoji": "🎉"})
            outcomes.append("ok")
        except OrsError as error:
            assert error.code == "rate_limited" and error.problem["status"] == 429
            outcomes.append("refused")
    accepted = outcomes.count("ok")
    assert 10 <= accepted < 20 and outcomes[:10] == ["ok"] * 10
    assert (await bob.request({"type": "ping"}))["type"] == "pong"
    assert sum(m["type"] == "reaction" for m in bob.received) == accepted
    await _finish(alice, bob)


async def test_only_the_asked_participant_hears_a_hosts_request_to_unmute(
    ors_url: str, ors_room: str
) -> None:
    host, alice, bob = await _people(ors_url, ors_room, "Host", "Alice", "Bob")
    await host.request({"type": "unmute_request", "participant_id": _own_id(alice)})
    request = await alice.next_event("unmute_requested")
    assert request == {"type": "unmute_requested", "by": _own_id(host), "kind": "audio"}
    # too soon again for the same participant; another one may be asked
    error = await _refused(host, {"type": "unmute_request", "participant_id": _own_id(alice)})
    assert error.code == "rate_limited"
    await host.request({"type": "unmute_request", "participant_id": _own_id(bob), "kind": "video"})
    assert (await bob.next_event("unmute_requested"))["kind"] == "video"
    # a guest may not ask; an unknown participant is not found
    error = await _refused(bob, {"type": "unmute_request", "participant_id": _own_id(alice)})
    assert error.code == "forbidden"
    error = await _refused(host, {"type": "unmute_request", "participant_id": "p_nobody"})
    assert error.code == "participant_not_found"
    for client in (host, alice, bob):
        assert (await client.request({"type": "ping"}))["type"] == "pong"
    assert sum(m["type"] == "unmute_requested" for m in alice.received) == 1
    assert sum(m["type"] == "unmute_requested" for m in bob.received) == 1
    assert not any(m["type"] in ("unmute_requested", "track_muted") for m in host.received)
    await _finish(host, alice, bob)


async def test_a_late_joiner_reads_the_chat_but_nobody_elses_private_messages(
    ors_url: str, ors_room: str
) -> None:
    alice, bob = await _people(ors_url, ors_room, "Alice", "Bob")
    await alice.request({"type": "chat", "text": "Bonjour"})
    await alice.request({"type": "chat", "text": "Pour Bob seul", "to": _own_id(bob)})
    await bob.request({"type": "chat", "text": "Merci"})
    carol = await joined(ors_url, ors_room, "Carol")
    history = carol.received[0]["chat"]
    assert [(m["from"], m["text"]) for m in history] == [
        (_own_id(alice), "Bonjour"),
        (_own_id(bob), "Merci"),
    ]
    assert history[0]["ts"] <= history[1]["ts"] and history[0]["from_name"] == "Alice"
    await _finish(alice, bob, carol)


# hosts are identities (2.4), co-hosts (8.15) -------------------------------------------------------
async def hosted_room(ors_url: str, room: str) -> tuple[OrsClient, str, OrsClient, OrsClient]:
    """The room's creator (a host), its anonymous token, and two guests; the host has seen both."""
    grant = await anonymous_token(ors_url, room, "Alice")
    assert grant["status"] == 201 and grant["role"] == "host", grant
    alice = await OrsClient.connect(ors_url, room)
    assert (await alice.join(grant["token"]))["participant"]["role"] == "host"
    bob = await joined(ors_url, room, "Bob")
    carol = await joined(ors_url, room, "Carol")
    for _ in range(2):
        await alice.next_event("participant_joined")
    return alice, grant["token"], bob, carol


def ids_by_name(client: OrsClient) -> dict[str, str]:
    people: dict[str, str] = {}
    for message in client.received:
        if message["type"] in ("joined", "participant_joined", "participant_updated"):
            for p in message.get("participants", []) + [message["participant"]]:
                people[p["name"]] = p["id"]
    return people


async def test_a_host_rejoining_with_a_guest_token_of_its_identity_is_host(
    ors_url: str, ors_room: str
) -> None:
    alice, token, bob, carol = await hosted_room(ors_url, ors_room)
    again = await anonymous_token(ors_url, ors_room, "Alice", earlier=token)
    assert again["status"] == 201 and again["role"] == "guest"  # the token grants guest...
    reloaded = await OrsClient.connect(ors_url, ors_room)
    reply = await reloaded.join(again["token"])
    assert reply["participant"]["role"] == "host"  # ...the room's host identity is a host
    assert (await alice.next_event("left"))["reason"] == "replaced"
    seen = await bob.next_event("participant_joined")
    while seen["participant"]["name"] != "Alice":  # Carol's arrival first
        seen = await bob.next_event("participant_joined")
    assert seen["participant"]["role"] == "host"
    carol_id = ids_by_name(bob)["Carol"]
    await reloaded.request({"type": "set_role", "participant_id": carol_id, "role": "host"})
    for client in (alice, bob, carol, reloaded):
        check_server_messages(client)
        await client.close()


async def test_a_token_request_with_a_foreign_token_changes_nothing(
    ors_url: str, ors_room: str
) -> None:
    grant = await anonymous_token(ors_url, ors_room, "Alice")
    other = await anonymous_token(ors_url, ors_room + "-x", "Mallory")
    refused = await anonymous_token(ors_url, ors_room, "Mallory", earlier=other["token"])
    assert (refused["status"], refused["code"]) == (403, "token_wrong_room")
    forged = await anonymous_token(ors_url, ors_room, "Mallory", earlier=grant["token"] + "x")
    assert (forged["status"], forged["code"]) == (401, "token_invalid")


async def test_a_co_host_named_by_a_host_is_seen_by_a_third_client(
    ors_url: str, ors_room: str
) -> None:
    alice, _, bob, carol = await hosted_room(ors_url, ors_room)
    bob_id = ids_by_name(carol)["Bob"]
    await alice.request({"type": "set_role", "participant_id": bob_id, "role": "host"})
    seen = await carol.next_event("participant_updated")
    assert (seen["participant"]["id"], seen["participant"]["role"]) == (bob_id, "host")
    told = await bob.next_event("participant_updated")
    assert told["participant"]["role"] == "host"
    # the new host moderates: Alice may give up her own role, Bob (the last) may not
    alice_id = ids_by_name(bob)["Alice"]
    await alice.request({"type": "set_role", "participant_id": alice_id, "role": "member"})
    assert (await carol.next_event("participant_updated"))["participant"]["role"] == "member"
    with pytest.raises(OrsError) as error:
        await bob.request({"type": "set_role", "participant_id": bob_id, "role": "member"})
    assert error.value.code == "invalid_state"
    with pytest.raises(OrsError) as error:
        await alice.request({"type": "set_role", "participant_id": bob_id, "role": "member"})
    assert error.value.code == "forbidden"
    for client in (alice, bob, carol):
        check_server_messages(client)
        await client.close()


async def test_a_guest_cannot_set_a_role_and_a_forged_id_is_not_found(
    ors_url: str, ors_room: str
) -> None:
    alice, _, bob, carol = await hosted_room(ors_url, ors_room)
    people = ids_by_name(carol)
    carol_id = next(m["participant"]["id"] for m in carol.received if m["type"] == "joined")
    for participant_id, role in (
        (carol_id, "host"),  # a guest promoting itself
        (people["Alice"], "member"),  # a guest demoting the host
        ("p_forged0000", "host"),  # or naming nobody: a guest is refused first
    ):
        with pytest.raises(OrsError) as error:
            await carol.request(
                {"type": "set_role", "participant_id": participant_id, "role": role}
            )
        assert (error.value.code, error.value.problem["status"]) == ("forbidden", 403)
    with pytest.raises(OrsError) as error:
        await alice.request({"type": "set_role", "participant_id": "p_forged0000", "role": "host"})
    assert (error.value.code, error.value.problem.get("field")) == (
        "participant_not_found",
        "/participant_id",
    )
    await alice.request({"type": "ping"})
    await bob.request({"type": "ping"})
    updates = [m for c in (alice, bob) for m in c.received if m["type"] == "participant_updated"]
    assert updates == []  # nothing changed, nobody was told anything
    for client in (alice, bob, carol):
        check_server_messages(client)
        await client.close()


async def test_dial_in_answers_participants_inside_only(ors_url: str, ors_room: str) -> None:
    """4.5, a MAY: a server without the resource answers 404 and passes."""
    grant = await anonymous_token(ors_url, ors_room, "Inviter")
    url = f"{ors_url}/ors/v1/rooms/{ors_room}/dial-in"
    auth = {"Authorization": f"Bearer {grant['token']}"}
    async with aiohttp.ClientSession() as http:
        answer = await http_request(http, "GET", url, headers=auth)
        problem = answer.headers.get("Content-Type", "").startswith("application/problem+json")
        if answer.status == 404 and not problem:
            pytest.skip("the server does not offer dial-in (4.5)")
        # its identity has not joined yet
        assert (answer.status, answer.body.get("code")) == (409, "not_joined"), answer
        client = await OrsClient.connect(ors_url, ors_room)
        assert (await client.join(grant["token"]))["type"] == "joined"
        answer = await http_request(http, "GET", url, headers=auth)
        assert answer.status == 200, answer
        assert answer.headers["Cache-Control"] == "no-store"
        check("dial-in.json", answer.body)
        answer = await http_request(http, "GET", url)
        assert (answer.status, answer.body.get("code")) == (401, "token_invalid"), answer
        await client.close()
