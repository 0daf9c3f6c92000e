"""ORS dial-in (spec 4.5): how a phone reaches a room, and its PIN, told to participants inside the
room only; driven from outside against real gateways, one with SIP dispatch rules, one without SIP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from gateway.ors import schemas
from spec.conformance.orsclient import OrsClient, OrsError
from tests.gateway_process import RunningGateway, running_gateway

pytestmark = pytest.mark.interop

DOMAIN = "sip.test.gouv.fr"
RULES = [
    ("+33140506070", "dial-cabinet"),
    ("accueil", "dial-cabinet"),  # a SIP user
    ("+33140500000", ""),  # the PIN prompt
    ("+33999999999", "dial-other"),
    ("*", ""),  # the catch-all: no number to show
]
SIP_CONFIG = f'domain = "{DOMAIN}"\n' + "".join(
    f'[[sip.dispatch]]\nnumber = "{number}"\nroom = "{room}"\n' for number, room in RULES
)


def valid_dial_in(body: dict[str, Any]) -> None:
    files = schemas.schema_files()
    files.pop("index.json")
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in files.values()
    )
    Draft202012Validator(files["dial-in.json"], registry=registry).validate(body)


@pytest.fixture(scope="module")
def sip_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(Path(tmp_path_factory.mktemp("dial-in")), extra_config=SIP_CONFIG) as gw:
        yield gw


@pytest.fixture(scope="module")
def plain_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    extra = "enabled = false\n[limits]\nanonymous_requests_per_minute = 8\n"
    with running_gateway(Path(tmp_path_factory.mktemp("no-sip")), extra_config=extra) as gw:
        yield gw


async def dial_in(
    gateway: RunningGateway, room: str, token: str | None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """GET dial-in with TOKEN as the bearer (none: no Authorization): status, body, headers."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    url = f"{gateway.base_url}/ors/v1/rooms/{room}/dial-in"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


async def joined(
    gateway: RunningGateway, room: str, identity: str, role: str = "member"
) -> tuple[OrsClient, str]:
    token = gateway.token(room, identity, identity.capitalize(), role)
    ors = await OrsClient.connect(gateway.base_url, room)
    await ors.join(token)
    return ors, token


def create_rooms(gateway: RunningGateway, **pins: str) -> None:
    """Rooms named after the keywords (dial_cabinet: dial-cabinet), each with its PIN if any."""
    for room, pin in pins.items():
        gateway.create_room(room.replace("_", "-"), **({"pin": pin} if pin else {}))


async def close(*clients: OrsClient) -> None:
    for ors in clients:
        await ors.close()


async def test_a_participant_inside_sees_the_numbers_the_uris_and_the_pin(
    sip_gateway: RunningGateway,
) -> None:
    create_rooms(sip_gateway, dial_cabinet="4829", dial_other="")
    alice, token = await joined(sip_gateway, "dial-cabinet", "alice")
    status, body, headers = await dial_in(sip_gateway, "dial-cabinet", token)
    assert status == 200, body
    valid_dial_in(body)
    assert body == {
        "room": "dial-cabinet",
        # its own number, and the PIN prompt's (its PIN opens this room alone)
        "numbers": ["+33140500000", "+33140506070"],
        "sip_uris": [f"sip:accueil@{DOMAIN}", f"sip:dial-cabinet@{DOMAIN}"],
        "pin": "4829",
    }
    assert headers["Cache-Control"] == "no-store"
    # another room: its own number only, no PIN; nothing of dial-cabinet
    bob, other = await joined(sip_gateway, "dial-other", "bob")
    status, body, _ = await dial_in(sip_gateway, "dial-other", other)
    assert (status, body["numbers"], body["pin"]) == (200, ["+33999999999"], None)
    assert body["sip_uris"] == [f"sip:dial-other@{DOMAIN}"]
    await close(alice, bob)


async def test_a_pin_shared_by_two_rooms_lists_no_pin_prompt_number(
    sip_gateway: RunningGateway,
) -> None:
    create_rooms(sip_gateway, dial_twin_a="5555", dial_twin_b="5555")
    ors, token = await joined(sip_gateway, "dial-twin-a", "carol")
    status, body, _ = await dial_in(sip_gateway, "dial-twin-a", token)
    assert (status, body["numbers"], body["pin"]) == (200, [], "5555")
    await close(ors)


async def test_the_lobby_and_the_removed_never_learn_the_pin(sip_gateway: RunningGateway) -> None:
    sip_gateway.create_room("dial-lobby", pin="7412", lobby=True)
    host, _ = await joined(sip_gateway, "dial-lobby", "host", "host")
    guest_token = sip_gateway.token("dial-lobby", "guest", "Guest", "guest")
    guest = await OrsClient.connect(sip_gateway.base_url, "dial-lobby")
    waiting = await guest.join(guest_token)
    assert waiting["type"] == "lobby"
    status, body, _ = await dial_in(sip_gateway, "dial-lobby", guest_token)
    assert (status, body["code"]) == (409, "not_joined")
    assert "7412" not in str(body)
    # admitted: inside, it may know
    await host.request({"type": "admit", "participant_id": waiting["participant"]["id"]})
    await guest.next_event("joined")
    status, body, _ = await dial_in(sip_gateway, "dial-lobby", guest_token)
    assert (status, body["pin"]) == (200, "7412")
    # removed: its token no longer opens it
    await host.request({"type": "remove", "participant_id": waiting["participant"]["id"]})
    await guest.next_event("left")
    status, body, _ = await dial_in(sip_gateway, "dial-lobby", guest_token)
    assert (status, body["code"]) == (409, "not_joined")
    # a valid token whose identity never joined: the same
    status, body, _ = await dial_in(
        sip_gateway, "dial-lobby", sip_gateway.token("dial-lobby", "never", "Never")
    )
    assert (status, body["code"]) == (409, "not_joined")
    await close(host, guest)


async def test_wrong_forged_expired_or_missing_tokens_are_refused(
    sip_gateway: RunningGateway,
) -> None:
    create_rooms(sip_gateway, dial_guarded="9031", dial_elsewhere="")
    ors, token = await joined(sip_gateway, "dial-guarded", "dan")
    other, elsewhere = await joined(sip_gateway, "dial-elsewhere", "dan2")
    cases = [
        (None, 401, "token_invalid"),
        ("not-a-jwt", 401, "token_invalid"),
        (elsewhere, 403, "token_wrong_room"),
    ]
    claims = jwt.decode(token, options={"verify_signature": False})
    cases.append(
        (
            jwt.encode(claims, "guessed-secret-guessed-secret-0123", algorithm="HS256"),
            401,
            "token_invalid",
        )
    )
    expired = {**claims, "exp": int(time.time()) - 60}
    cases.append(
        (
            jwt.encode(expired, "guessed-secret-guessed-secret-0123", algorithm="HS256"),
            401,
            "token_invalid",
        )
    )
    for bad, code_status, code in cases:
        status, body, _ = await dial_in(sip_gateway, "dial-guarded", bad)
        assert (status, body["code"]) == (code_status, code), bad
        assert "9031" not in str(body)
    # a bad room name, a room that does not exist (a token for it: the room is checked after it)
    status, body, _ = await dial_in(sip_gateway, "Bad_Name", token)
    assert (status, body["code"]) == (400, "invalid_room_name")
    sip_gateway.create_room("dial-gone")
    gone = sip_gateway.token("dial-gone", "x", "X")
    assert sip_gateway.admin("DELETE", "/api/v1/rooms/dial-gone")[0] in (200, 204)
    status, body, _ = await dial_in(sip_gateway, "dial-gone", gone)
    assert (status, body["code"]) == (404, "room_not_found")
    assert "9031" not in sip_gateway.log_text()
    await close(ors, other)


async def test_without_sip_the_lists_are_empty_and_requests_are_rate_limited(
    plain_gateway: RunningGateway,
) -> None:
    plain_gateway.create_room("plain-room", pin="2468")
    ors, token = await joined(plain_gateway, "plain-room", "erin")
    status, body, _ = await dial_in(plain_gateway, "plain-room", token)
    assert status == 200, body
    assert body == {"room": "plain-room", "numbers": [], "sip_uris": [], "pin": "2468"}
    statuses = [(await dial_in(plain_gateway, "plain-room", token))[:2] for _ in range(12)]
    limited = [body for status, body in statuses if status == 429]
    assert limited and all(body["code"] == "rate_limited" for body in limited)
    await close(ors)


async def test_a_participant_cannot_see_it_before_joining_through_the_websocket(
    sip_gateway: RunningGateway,
) -> None:
    """The WebSocket knows no such message: nothing to ask the session for."""
    sip_gateway.create_room("dial-ws")
    ors, _ = await joined(sip_gateway, "dial-ws", "fay")
    with pytest.raises(OrsError) as error:
        await ors.request({"type": "dial_in"})
    assert error.value.code == "unknown_type"
    await close(ors)
