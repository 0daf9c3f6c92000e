"""Token issuers registered with [[tokens.issuers]], on a real gateway process over ORS WebSockets.

A Visio backend's LiveKit key pair (its secret in an environment variable) and an Ed25519 portal
are registered; tokens minted by LiveKit's own SDK exactly as Visio's backend mints them
(suitenumerique/meet, core/utils.py generate_token) join, and what the issuer may not grant is
refused with the documented error, no secret ever appearing in an error or a log line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from livekit.api import AccessToken, VideoGrants

from spec.conformance.orsclient import OrsClient, OrsError
from spec.conformance.webrtc import WebRtcPeer
from tests.gateway_process import RunningGateway, running_gateway
from tests.unit.test_tokens import hs256_with

pytestmark = pytest.mark.interop

VISIO_KEY = "APIvisio7Kq2"
VISIO_SECRET = "visio-livekit-secret-" + "7f3a9c1e5b2d8f4a6c0e9b1d3f5a7c9e"
VISIO_SECRET_ENV = "RONDPOINT_TEST_VISIO_ISSUER_SECRET"
WRONG_SECRET = "guessed-visio-secret-" + "0000000000000000000000000000000000"
VISIO_SOURCES = ["camera", "microphone", "screen_share", "screen_share_audio"]
PORTAL_KEY = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = Path(tmp_path_factory.mktemp("issuers"))
    pem = tmp / "portal.pub.pem"
    pem.write_bytes(
        PORTAL_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    issuers = (
        f'[[tokens.issuers]]\nkey_id = "{VISIO_KEY}"\nsecret_env = "{VISIO_SECRET_ENV}"\n'
        'rooms = ["visio-*"]\n'
        f'[[tokens.issuers]]\nkey_id = "portal"\npublic_key = "{pem}"\nrooms = ["*"]\n'
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv(VISIO_SECRET_ENV, VISIO_SECRET)
        with running_gateway(tmp, issuers) as running:
            env.delenv(VISIO_SECRET_ENV)
            yield running
            log = running.log_text()
    # whatever happened in this module, no secret was ever written to the log
    assert VISIO_SECRET not in log and WRONG_SECRET not in log


def visio_token(
    room: str,
    identity: str,
    name: str,
    is_admin: bool = False,
    sources: list[str] | None = None,
    secret: str = VISIO_SECRET,
) -> str:
    """As Visio's backend mints it (generate_token), with LiveKit's official Python SDK."""
    sources = VISIO_SOURCES if sources is None or is_admin else sources
    grants = VideoGrants(
        room=room,
        room_join=True,
        room_admin=is_admin,
        can_update_own_metadata=False,
        can_publish=bool(sources),
        can_publish_sources=sources,
        can_subscribe=True,
    )
    return (
        AccessToken(api_key=VISIO_KEY, api_secret=secret)
        .with_grants(grants)
        .with_identity(identity)
        .with_name(name)
        .with_attributes({"color": "hsl(200, 60%, 40%)", "room_admin": str(is_admin).lower()})
        .to_jwt()
    )


def participants(gateway: RunningGateway, room: str) -> list[dict]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return body["participants"]


async def refused(gateway: RunningGateway, room: str, token: str) -> dict:
    """The problem a join with ``token`` gets; nobody has entered the room."""
    before = participants(gateway, room)
    client = await OrsClient.connect(gateway.base_url, room)
    try:
        with pytest.raises(OrsError) as error:
            await client.join(token)
    finally:
        await client.close()
    assert participants(gateway, room) == before
    problem = error.value.problem
    text = json.dumps(problem)
    assert token not in text and VISIO_SECRET not in text and WRONG_SECRET not in text
    return problem


async def test_a_token_minted_like_visios_backend_joins_with_its_name_and_role(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("visio-cabinet")
    host = await OrsClient.connect(gateway.base_url, "visio-cabinet")
    joined = await host.join(
        visio_token("visio-cabinet", "oidc-4f2a", "Camille Durand", is_admin=True)
    )
    assert joined["participant"]["name"] == "Camille Durand"
    assert joined["participant"]["role"] == "host"
    member = await OrsClient.connect(gateway.base_url, "visio-cabinet")
    await member.join(visio_token("visio-cabinet", "3d5e-anon", "Anonymous"))
    listed = {p["name"]: (p["role"], p["origin"]) for p in participants(gateway, "visio-cabinet")}
    assert listed == {"Camille Durand": ("host", "ors"), "Anonymous": ("member", "ors")}

    # Visio's default sources include the microphone and the camera: publishing both works
    peer = WebRtcPeer(member)
    answer = await peer.publish(video=True)
    assert sorted(t["source"] for t in answer["tracks"]) == ["camera", "microphone"]
    await peer.close()
    await host.close()
    await member.close()


async def test_a_room_the_issuer_may_not_grant_is_forbidden(gateway: RunningGateway) -> None:
    gateway.create_room("conseil")
    problem = await refused(gateway, "conseil", visio_token("conseil", "oidc-1", "Intrus"))
    assert (problem["code"], problem["status"]) == ("forbidden", 403)


async def test_a_wrong_secret_gets_token_invalid_and_no_secret_is_shown(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("visio-forge")
    token = visio_token("visio-forge", "oidc-2", "Faussaire", secret=WRONG_SECRET)
    problem = await refused(gateway, "visio-forge", token)
    assert (problem["code"], problem["status"]) == ("token_invalid", 401)
    log = gateway.log_text()
    assert token not in log and VISIO_SECRET not in log and WRONG_SECRET not in log


async def test_can_publish_sources_forbid_other_sources(gateway: RunningGateway) -> None:
    gateway.create_room("visio-audio")
    client = await OrsClient.connect(gateway.base_url, "visio-audio")
    await client.join(visio_token("visio-audio", "oidc-3", "Voix", sources=["microphone"]))
    with pytest.raises(OrsError) as error:
        await WebRtcPeer(client).publish(video=True)  # microphone and camera
    assert (error.value.code, error.value.problem["status"]) == ("forbidden", 403)
    assert [p["tracks"] for p in participants(gateway, "visio-audio")] == [[]]
    answer = await WebRtcPeer(client).publish()
    assert [t["source"] for t in answer["tracks"]] == ["microphone"]
    await client.close()


def ed25519_claims(room: str) -> dict:
    return {
        "iss": "portal",
        "sub": "agent-0042",
        "name": "Agent Morel",
        "exp": int(time.time()) + 300,
        "ors": {"room": room, "role": "member"},
    }


async def test_an_ed25519_issuer_joins_and_hs256_with_its_public_key_is_refused(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("portail")
    client = await OrsClient.connect(gateway.base_url, "portail")
    token = jwt.encode(ed25519_claims("portail"), PORTAL_KEY, algorithm="EdDSA")
    joined = await client.join(token)
    assert joined["participant"]["name"] == "Agent Morel"
    assert [p["name"] for p in participants(gateway, "portail")] == ["Agent Morel"]
    await client.close()

    # algorithm confusion: an HS256 token whose HMAC secret is the issuer's public PEM
    pem = PORTAL_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    problem = await refused(gateway, "portail", hs256_with(ed25519_claims("portail"), pem))
    assert (problem["code"], problem["status"]) == ("token_invalid", 401)


def cli_token(gateway: RunningGateway, room: str, identity: str, *flags: str) -> str:
    """``rondpoint token`` as an operator runs it against the gateway's URL and admin token (the
    gateway's own file names an environment variable that this shell does not have)."""
    global_options = ["--url", gateway.base_url, "--admin-token", gateway.admin_token]
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *global_options]
        + ["token", room, "--identity", identity, "--role", "member", *flags],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split("#token=", 1)[1]


async def test_cli_no_publish_and_no_subscribe_tokens(gateway: RunningGateway) -> None:
    gateway.create_room("lecture")
    listener = await OrsClient.connect(gateway.base_url, "lecture")
    await listener.join(cli_token(gateway, "lecture", "auditeur", "--no-publish"))
    with pytest.raises(OrsError) as error:
        await WebRtcPeer(listener).publish()
    assert (error.value.code, error.value.problem["status"]) == ("forbidden", 403)

    blind = await OrsClient.connect(gateway.base_url, "lecture")
    await blind.join(cli_token(gateway, "lecture", "sans-reception", "--no-subscribe"))
    speaker = await OrsClient.connect(gateway.base_url, "lecture")
    await speaker.join(cli_token(gateway, "lecture", "orateur"))
    speaker_peer = WebRtcPeer(speaker)
    await speaker_peer.publish()
    # the listener (may subscribe) is offered the speaker's track; the --no-subscribe one is not
    offer = await listener.next_event("offer", timeout=10)
    assert len(offer["tracks"]) == 1
    await asyncio.sleep(1.0)
    assert [m for m in blind.received if m["type"] == "offer"] == []
    await speaker_peer.close()
    for client in (listener, blind, speaker):
        await client.close()


def test_admin_token_endpoint_refuses_non_boolean_grants(gateway: RunningGateway) -> None:
    gateway.create_room("grants")
    status, problem = gateway.admin(
        "POST", "/api/v1/rooms/grants/tokens", {"identity": "x", "can_publish": "no"}
    )
    assert (status, problem["code"], problem["field"]) == (400, "invalid_message", "/can_publish")
    status, minted = gateway.admin(
        "POST", "/api/v1/rooms/grants/tokens", {"identity": "x", "can_subscribe": False}
    )
    assert status == 201 and (minted["can_publish"], minted["can_subscribe"]) == (True, False)
