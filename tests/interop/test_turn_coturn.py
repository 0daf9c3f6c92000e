"""Our TURN credentials against a real coturn (use-auth-secret): aioice's TURN client allocates
with them over UDP, TCP and TLS; forged and expired ones get 401; and the credentials a gateway
hands a participant in ORS `joined` allocate too, while a visitor with a forged token gets none;
the gateway's LiveKit legs allocate with them and still reach livekit-server."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from aioice import stun as aioice_stun
from aioice.turn import create_turn_endpoint

from gateway.ors import schemas
from gateway.turn import TurnCredentials, rest_credential, rest_username
from protocols.livekit.rtc import LiveKitParticipant, rtc_ice_servers
from spec.conformance.orsclient import OrsClient, OrsError
from tests import coturn
from tests.gateway_process import running_gateway
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_peers import token

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not coturn.available(), reason="coturn: run tests/setup-system.sh"),
]


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[coturn.RunningTurn]:
    with coturn.running_turn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


class _Sink:
    def connection_made(self, transport: object) -> None:
        pass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


def _tls(server: coturn.RunningTurn) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.certificate))
    context.check_hostname = False  # the certificate names the IP address; aioice passes none
    return context


async def allocate(
    server: coturn.RunningTurn, username: str, password: str, transport: str = "udp"
) -> tuple[str, int]:
    """The relayed address coturn allocates with these credentials (raises on a refusal)."""
    port = server.tls_port if transport == "tls" else server.port
    turn_transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            _Sink,
            (server.host, port),
            username,
            password,
            ssl=_tls(server) if transport == "tls" else None,
            transport="udp" if transport == "udp" else "tcp",
        ),
        10,
    )
    try:
        relayed = turn_transport.get_extra_info("sockname")
        return (str(relayed[0]), int(relayed[1]))
    finally:
        turn_transport.close()


def error_code(error: aioice_stun.TransactionFailed) -> int:
    return int(error.response.attributes["ERROR-CODE"][0])


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_our_credentials_allocate_a_relay(turn: coturn.RunningTurn, transport: str) -> None:
    (server,) = TurnCredentials(tuple(turn.urls()), turn.secret, ttl=600).ice_servers(
        "p_alice", time.time()
    )
    host, port = await allocate(turn, server["username"], server["credential"], transport)
    assert host == turn.host and port > 0


async def test_credentials_signed_with_another_secret_get_401(turn: coturn.RunningTurn) -> None:
    username = rest_username(int(time.time()) + 600, "p_mallory")
    forged = rest_credential("guessed-secret-guessed-0123", username)
    with pytest.raises(aioice_stun.TransactionFailed) as error:
        await allocate(turn, username, forged)
    assert error_code(error.value) == 401


async def test_expired_credentials_get_401(turn: coturn.RunningTurn) -> None:
    (server,) = TurnCredentials(("turn:x",), turn.secret, ttl=60).ice_servers(
        "p_late", time.time() - 120
    )
    with pytest.raises(aioice_stun.TransactionFailed) as error:
        await allocate(turn, server["username"], server["credential"])
    assert error_code(error.value) == 401


async def test_a_username_changed_after_signing_gets_401(turn: coturn.RunningTurn) -> None:
    (server,) = TurnCredentials(("turn:x",), turn.secret, ttl=600).ice_servers(
        "p_alice", time.time()
    )
    later = str(int(server["username"].split(":")[0]) + 86400) + ":p_alice"
    with pytest.raises(aioice_stun.TransactionFailed) as error:
        await allocate(turn, later, server["credential"])
    assert error_code(error.value) == 401


async def test_a_joined_participant_gets_credentials_that_allocate_and_a_forger_gets_none(
    turn: coturn.RunningTurn, tmp_path: Path
) -> None:
    servers = ", ".join(f'"{url}"' for url in turn.urls())
    extra = f'[turn]\nservers = [{servers}]\nsecret = "{turn.secret}"\nttl = 600\n'
    with running_gateway(tmp_path, extra_config=extra) as gateway:
        gateway.create_room("turn-room")
        client = await OrsClient.connect(gateway.base_url, "turn-room")
        joined = await client.join(gateway.token("turn-room", "alice"))
        schemas.validate("server", joined)
        (server,) = joined["ice_servers"]
        assert server["urls"] == turn.urls()
        expiry, participant = server["username"].split(":")
        assert participant == joined["participant"]["id"]
        assert 0 < int(expiry) - time.time() <= 600
        assert await allocate(turn, server["username"], server["credential"], "tls")
        await client.close()

        real = gateway.token("turn-room", "mallory")
        claims = jwt.decode(real, options={"verify_signature": False})
        forged = jwt.encode(claims, "guessed-secret-guessed-secret-0123", algorithm="HS256")
        visitor = await OrsClient.connect(gateway.base_url, "turn-room")
        with pytest.raises(OrsError) as error:
            await visitor.join(forged)
        assert error.value.code == "token_invalid"
        assert all("ice_servers" not in message for message in visitor.received)
        await visitor.close()
        log = gateway.log_text()
        assert turn.secret not in log and server["credential"] not in log


# livekit-server's --dev secret is "secret", shorter than PyJWT recommends for HS256.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_the_livekit_legs_gather_a_relay_candidate_with_our_credentials(
    turn: coturn.RunningTurn, livekit_server: RunningLiveKit, loopback_only: None
) -> None:
    """The gateway's LiveKit legs get Gateway.ice_servers (here the same credentials): aiortc
    allocates on coturn with them, and the leg still connects to livekit-server."""
    udp = f"turn:{turn.host}:{turn.port}?transport=udp"
    servers = TurnCredentials((udp,), turn.secret, ttl=600).ice_servers("lk-bridge", time.time())
    ours = await LiveKitParticipant.connect(
        livekit_server.url,
        token(livekit_server, str(uuid.uuid4()), "gateway-turn", "Rondpoint"),
        encoded=True,
        ice_servers=rtc_ice_servers(servers),
    )
    try:
        for _ in range(200):
            if ours.subscriber.connected:
                break
            await asyncio.sleep(0.05)
        assert ours.subscriber.connected
        description = ours.subscriber.pc.localDescription
        assert description is not None
        relays = [line for line in description.sdp.splitlines() if " typ relay " in line]
        assert relays and all(f" {turn.host} " in line for line in relays), description.sdp
    finally:
        await ours.close()
