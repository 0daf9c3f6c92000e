"""Claims of the wrong type (spec 5.4), over an ORS WebSocket on a real gateway process: a LiveKit
token whose ``roomAdmin`` is the string "false" is refused, and its bearer is never a host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spec.conformance.orsclient import OrsClient, OrsError
from tests.gateway_process import RunningGateway, running_gateway
from tests.unit.test_tokens import hs256_with

ISSUER = "visio-backend"
SECRET = "visio-backend-secret-" + "4c1e8a2f6b0d9e3c7a5f1b8d2e6c0a94"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    issuer = f'[[tokens.issuers]]\nkey_id = "{ISSUER}"\nsecret = "{SECRET}"\nrooms = ["*"]\n'
    with running_gateway(Path(tmp_path_factory.mktemp("claim-types")), issuer) as running:
        yield running


def livekit_token(room: str, exp: object = None, **video: object) -> str:
    claims = {
        "iss": ISSUER,
        "sub": "oidc-7",
        "name": "Camille",
        "exp": int(time.time()) + 60 if exp is None else exp,
        "video": {"room": room, "roomJoin": True, **video},
    }
    return hs256_with(claims, SECRET.encode())


async def test_a_string_false_room_admin_is_refused_and_never_host(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("typee")
    client = await OrsClient.connect(gateway.base_url, "typee")
    try:
        with pytest.raises(OrsError) as error:
            await client.join(livekit_token("typee", roomAdmin="false"))
    finally:
        await client.close()
    assert (error.value.code, error.value.problem["status"]) == ("token_invalid", 401)
    assert "roomAdmin" in error.value.problem["detail"]
    status, body = gateway.admin("GET", "/api/v1/rooms/typee")
    assert status == 200 and body["participants"] == []
    # the same token with a boolean false joins, as a member
    member = await OrsClient.connect(gateway.base_url, "typee")
    joined = await member.join(livekit_token("typee", roomAdmin=False))
    assert joined["participant"]["role"] == "member"
    await member.close()


async def test_an_expiry_given_as_a_string_is_refused(gateway: RunningGateway) -> None:
    gateway.create_room("chaine")
    client = await OrsClient.connect(gateway.base_url, "chaine")
    try:
        with pytest.raises(OrsError) as error:
            await client.join(livekit_token("chaine", exp=str(int(time.time()) + 3600)))
    finally:
        await client.close()
    assert (error.value.code, error.value.problem["status"]) == ("token_invalid", 401)
    assert "'exp'" in error.value.problem["detail"]
