"""Abuse of the federation endpoints (/ors/v1/federation/) of an in-process gateway, fr.test,
by signed requests from its peer de.test (keys pinned): every refusal answers its problem and
changes nothing; a flood is limited and the room keeps working."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import Config
from gateway.federation.keys import SigningKeys
from gateway.federation.signing import sign_request
from gateway.federation.store import FederationStore, Peer
from gateway.http.app import create_app
from gateway.plugins import installed
from gateway.rooms import Role
from gateway.server import Gateway
from gateway.store import Store
from tests.gateway_process import free_port

BASE = "/ors/v1/federation"
LINK_ID = "l_abcdefghijklmnop0123"
CLOSED = "https://127.0.0.1:9"
"""Where fr looks for its peers: nothing listens, so fr's own requests to them fail at once."""


@dataclass
class Fr:
    gateway: Gateway
    client: TestClient
    de: SigningKeys
    be: SigningKeys

    def peers(self) -> FederationStore:
        return FederationStore(self.gateway.store)

    async def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        keys: SigningKeys | None = None,
        iss: str = "de.test",
        aud: str = "fr.test",
        now: float | None = None,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, Any], str]:
        data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        signed_for = BASE + path
        token = token or sign_request(keys or self.de, iss, aud, method, signed_for, data, now=now)
        response = await self.client.request(
            method,
            BASE + path,
            data=data or None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        text = await response.text()
        answer = json.loads(text) if text else {}
        return response.status, answer, token


def other_keys() -> SigningKeys:
    return SigningKeys(Store(":memory:"))


@pytest.fixture
async def fr(tmp_path: Path) -> AsyncIterator[Fr]:
    config = Config(
        sections={p.name: p.config() for p in installed() if p.name == "federation" and p.config}
    )
    config.server.name = "fr.test"
    config.server.data_dir = str(tmp_path / "data")
    config.rooms.demo_room = ""
    config.federation.request_burst = 30
    config.federation.requests_per_second = 1
    media_port = free_port(socket.SOCK_DGRAM)
    config.media.port = config.media.port_range_start = config.media.port_range_end = media_port
    gateway = Gateway(config, [p for p in installed() if p.name == "federation"])
    await gateway.start()
    de, be = other_keys(), other_keys()
    store = FederationStore(gateway.store)
    for name, keys in (("de.test", de), ("be.test", be)):
        pinned = {key["kid"]: key["x"] for key in keys.jwks()["keys"]}
        store.put_peer(Peer(name, CLOSED, keys=pinned, strict=True))
    gateway.rooms.create("salon")
    client = TestClient(TestServer(create_app(gateway), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Fr(gateway, client, de, be)
    finally:
        await client.close()
        await gateway.stop()


async def linked(fr: Fr) -> None:
    status, answer, _ = await fr.send(
        "POST", "/links", {"link_id": LINK_ID, "room": "salon", "peer_room": "kabinett"}
    )
    assert status == 200, answer
    assert answer == {
        "link_id": LINK_ID,
        "room": "salon",
        "peer_room": "kabinett",
        "state": "connected",
    }


def hans(pid: str = "PA_h") -> dict[str, Any]:
    return {
        "id": pid,
        "name": "Hans",
        "origin": "ors",
        "origin_address": "",
        "role": "host",
        "state": "joined",
        "joined_at": 1767226700000,
        "tracks": [],
    }


def names(fr: Fr) -> list[str]:
    return sorted(p.name for p in fr.gateway.rooms.get("salon").participants.values())


async def test_a_signed_link_request_links_the_room_and_transactions_apply(fr: Fr) -> None:
    await linked(fr)
    await linked(fr)  # idempotent
    assert fr.gateway.rooms.get("salon").links == ["ors:kabinett@de.test"]
    assert [r.link_id for r in fr.peers().links()] == [LINK_ID]
    body = {"link_id": LINK_ID, "events": [{"type": "participant", "participant": hans()}]}
    for _ in range(2):  # the same txn id twice: applied once
        status, answer, _ = await fr.send("PUT", "/transactions/t_000000001", body)
        assert (status, answer) == (200, {})
    assert names(fr) == ["Hans"]
    (hans_here,) = fr.gateway.rooms.get("salon").participants.values()
    assert hans_here.origin == "federation:de.test" and hans_here.id != "PA_h"

    status, _, _ = await fr.send("DELETE", f"/links/{LINK_ID}")
    assert status == 204
    assert fr.gateway.rooms.get("salon").links == [] and fr.peers().links() == []
    assert names(fr) == []


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("forged", 401, "signature_invalid"),
        ("wrong_aud", 401, "wrong_audience"),
        ("expired", 401, "signature_expired"),
        ("unknown_key", 401, "key_unknown"),
        ("unknown_peer", 403, "peer_not_allowed"),
        ("no_token", 401, "signature_invalid"),
    ],
)
async def test_a_bad_signature_is_refused_and_links_nothing(
    fr: Fr, case: str, status: int, code: str
) -> None:
    body = {"link_id": LINK_ID, "room": "salon", "peer_room": "kabinett"}
    kwargs: dict[str, Any] = {}
    if case == "forged":
        kwargs["token"] = forged(fr.de, "POST", BASE + "/links", json.dumps(body).encode())
    elif case == "wrong_aud":
        kwargs["aud"] = "be.test"
    elif case == "expired":
        kwargs["now"] = time.time() - 300
    elif case == "unknown_key":
        kwargs["keys"] = other_keys()
    elif case == "unknown_peer":
        kwargs["iss"], kwargs["keys"] = "xx.test", other_keys()
    elif case == "no_token":
        kwargs["token"] = "not-a-jwt"
    got, answer, token = await fr.send("POST", "/links", body, **kwargs)
    assert (got, answer["code"]) == (status, code), answer
    assert token not in json.dumps(answer)
    assert fr.peers().links() == [] and fr.gateway.rooms.get("salon").links == []


def forged(keys: SigningKeys, method: str, path: str, body: bytes) -> str:
    """A token with ``keys``' kid and right claims, signed by another key."""
    genuine = sign_request(keys, "de.test", "fr.test", method, path, body)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    header = jwt.get_unverified_header(genuine)
    return jwt.encode(claims, other_keys().current.private_key, algorithm="EdDSA", headers=header)


async def test_a_replayed_request_is_refused(fr: Fr) -> None:
    await linked(fr)
    body = {"link_id": LINK_ID, "events": []}
    status, _, token = await fr.send("PUT", "/transactions/t_000000002", body)
    assert status == 200
    status, answer, _ = await fr.send("PUT", "/transactions/t_000000002", body, token=token)
    assert (status, answer["code"]) == (401, "replayed_request")


async def test_a_peer_not_allowed_for_the_room_is_refused(fr: Fr) -> None:
    peer = fr.peers().peer("de.test")
    assert peer is not None
    peer.rooms = ["autre"]
    fr.peers().put_peer(peer)
    body = {"link_id": LINK_ID, "room": "salon", "peer_room": "kabinett"}
    status, answer, _ = await fr.send("POST", "/links", body)
    assert (status, answer["code"]) == (403, "peer_not_allowed")
    assert "not allowed" in answer["detail"]
    assert fr.peers().links() == []
    missing = {"link_id": LINK_ID, "room": "nowhere", "peer_room": "kabinett"}
    status, answer, _ = await fr.send("POST", "/links", missing)
    assert (status, answer["code"]) == (403, "peer_not_allowed")  # no hint that it is missing
    # the room's own policy may allow it
    fr.gateway.rooms.get("salon").policy.federation_peers.append("de.test")
    status, answer, _ = await fr.send("POST", "/links", body)
    assert status == 200, answer


async def test_a_missing_room_or_link_is_not_found(fr: Fr) -> None:
    body = {"link_id": LINK_ID, "room": "nowhere", "peer_room": "kabinett"}
    status, answer, _ = await fr.send("POST", "/links", body)
    assert (status, answer["code"]) == (404, "room_not_found")
    txn = {"link_id": "l_unknownunknownunknown", "events": []}
    status, answer, _ = await fr.send("PUT", "/transactions/t_000000003", txn)
    assert (status, answer["code"]) == (404, "link_not_found")
    status, answer, _ = await fr.send("DELETE", "/links/l_unknownunknownunknown")
    assert (status, answer["code"]) == (404, "link_not_found")


async def test_another_peer_cannot_use_de_s_link(fr: Fr) -> None:
    await linked(fr)
    txn = {"link_id": LINK_ID, "events": [{"type": "participant", "participant": hans()}]}
    status, answer, _ = await fr.send(
        "PUT", "/transactions/t_000000004", txn, keys=fr.be, iss="be.test"
    )
    assert (status, answer["code"]) == (404, "link_not_found")
    assert names(fr) == []


async def test_a_bad_body_is_refused_whole(fr: Fr) -> None:
    await linked(fr)
    good = {"type": "participant", "participant": hans()}
    bad = {"type": "participant", "participant": {**hans("PA_x"), "tracks": "none"}}
    txn = {"link_id": LINK_ID, "events": [good, good, good, bad]}
    status, answer, _ = await fr.send("PUT", "/transactions/t_000000005", txn)
    assert (status, answer["code"], answer["field"]) == (
        400,
        "invalid_message",
        "/events/3/participant/tracks",
    )
    assert names(fr) == []
    status, answer, _ = await fr.send("PUT", "/transactions/t_000000006", raw=b"{not json")
    assert status == 400
    status, answer, _ = await fr.send("PUT", "/transactions/x", {"link_id": LINK_ID, "events": []})
    assert (status, answer["code"], answer["field"]) == (400, "invalid_message", "")


async def test_a_body_too_large_is_refused(fr: Fr) -> None:
    await linked(fr)
    big = {"link_id": LINK_ID, "events": [], "padding": "x" * (300 * 1024)}
    status, answer, _ = await fr.send("PUT", "/transactions/t_000000007", big)
    assert (status, answer.get("code")) == (413, "message_too_large")


async def test_a_flood_is_limited_and_the_room_keeps_working(fr: Fr) -> None:
    await linked(fr)
    statuses = []
    for n in range(40):
        status, answer, _ = await fr.send(
            "PUT", f"/transactions/t_flood{n:04d}", {"link_id": LINK_ID, "events": []}
        )
        statuses.append(status)
        if status == 429:
            assert answer["code"] == "rate_limited"
    assert 429 in statuses and statuses[0] == 200
    # be.test is not slowed down by de's flood, and the room works
    status, answer, _ = await fr.send(
        "POST",
        "/links",
        {"link_id": "l_bebebebebebebebebebe", "room": "salon", "peer_room": "salle"},
        keys=fr.be,
        iss="be.test",
    )
    assert status == 200, answer
    fr.gateway.rooms.add_participant(fr.gateway.rooms.get("salon"), "Marie", Role.HOST)
    assert names(fr) == ["Marie"]


async def test_an_address_sending_unverifiable_requests_is_slowed_down(fr: Fr) -> None:
    statuses = []
    for n in range(40):
        response = await fr.client.put(
            f"/ors/v1/federation/transactions/t_junk{n:04d}",
            json={"link_id": LINK_ID, "events": []},
            headers={"Authorization": "Bearer not.a.token"},
        )
        statuses.append((response.status, (await response.json())["code"]))
    assert statuses[0] == (401, "signature_invalid")
    assert statuses[-1] == (429, "rate_limited")
    # a request naming a peer is still judged: a partner rotating its keys gets the verdict
    for n in range(3):
        status, answer, _ = await fr.send(
            "PUT", f"/transactions/t_rotating{n:04d}", {"link_id": LINK_ID}, keys=other_keys()
        )
        assert (status, answer["code"]) == (401, "key_unknown")
    # the partners it may be pretending to be are not slowed down by it
    await linked(fr)
    status, answer, _ = await fr.send(
        "PUT", "/transactions/t_after0001", {"link_id": LINK_ID, "events": []}
    )
    assert status == 200, answer


async def test_a_room_takes_at_most_max_links_per_room(fr: Fr) -> None:
    fr.gateway.config.federation.max_links_per_room = 2
    for n in range(2):
        body = {"link_id": f"l_abcdefghijklmno{n:04d}", "room": "salon", "peer_room": f"salle-{n}"}
        status, answer, _ = await fr.send("POST", "/links", body)
        assert status == 200, answer
    body = {"link_id": "l_abcdefghijklmnop9999", "room": "salon", "peer_room": "salle-9"}
    status, answer, _ = await fr.send("POST", "/links", body)
    assert (status, answer["code"]) == (409, "too_many_links")
    assert len(fr.peers().links()) == 2


async def test_metrics_count_links_transactions_and_refusals(fr: Fr) -> None:
    await linked(fr)
    await fr.send("PUT", "/transactions/t_000000010", {"link_id": LINK_ID, "events": []})
    await fr.send("POST", "/links", {"link_id": LINK_ID, "room": "nowhere", "peer_room": "x-y"})
    text = await (await fr.client.get("/metrics")).text()
    assert 'rondpoint_federation_transactions_total{direction="in"} 1.0' in text
    assert 'rondpoint_federation_refused_total{code="room_not_found"} 1.0' in text
    lines = [line for line in text.splitlines() if line.startswith("rondpoint_federation_links{")]
    assert len(lines) == 6 and sum(float(line.split()[-1]) for line in lines) == 1
    running = fr.gateway.running["federation"]
    assert running is not None and running.banner() == "federation: 2 peers, 1 links"
