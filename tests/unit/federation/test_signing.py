"""Signed federation requests: a round trip, and every refusal of the receiver in the spec's order
(section 14.3), through a real aiohttp server in this process; the peer directory is a fake."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.federation.keys import SigningKeys, public_key_of
from gateway.federation.signing import RequestVerifier, body_hash, sign_request
from gateway.federation.store import MIGRATIONS, FederationStore, Peer
from gateway.ors.problems import Problem
from gateway.store import Store

SENDER = "fr.test"
RECEIVER = "de.test"
PATH = "/ors/v1/federation/links"
BODY = b'{"link_id":"l_0123456789abcdef","room":"cabinet","peer_room":"salon"}'
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeDirectory:
    """The peers of a store, with their pinned keys only (no network)."""

    def __init__(self, store: FederationStore) -> None:
        self.store = store

    async def public_key(self, peer: Peer, kid: str) -> Ed25519PublicKey | None:
        x = peer.keys.get(kid)
        return public_key_of(x) if x else None


def new_store() -> Store:
    store = Store(":memory:")
    store.migrate_plugin("federation", MIGRATIONS)
    return store


@pytest.fixture
def sender_keys() -> SigningKeys:
    return SigningKeys(new_store())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def peers(sender_keys: SigningKeys) -> FederationStore:
    peers = FederationStore(new_store())
    key = sender_keys.current
    peers.put_peer(Peer(SENDER, keys={key.kid: key.x}))
    return peers


@pytest.fixture
def verifier(peers: FederationStore, clock: Clock) -> RequestVerifier:
    return RequestVerifier(RECEIVER, FakeDirectory(peers), clock=clock, max_seen=5)  # type: ignore[arg-type]


@pytest.fixture
async def client(verifier: RequestVerifier) -> AsyncIterator[TestClient]:
    async def handler(request: web.Request) -> web.Response:
        try:
            peer = await verifier.verify(request)
        except Problem as problem:
            return problem.response()
        return web.json_response({"peer": peer.name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestClient(TestServer(app)) as client:
        yield client


def sign(keys: SigningKeys, clock: Clock, **overrides: Any) -> str:
    """A token for POST PATH with BODY from SENDER to RECEIVER, with ``overrides`` of the
    arguments of sign_request."""
    arguments: dict[str, Any] = {
        "iss": SENDER,
        "aud": RECEIVER,
        "method": "POST",
        "path": PATH,
        "body": BODY,
        "now": clock.now,
    }
    arguments.update(overrides)
    return sign_request(keys, **arguments)


def forge(
    keys: SigningKeys, clock: Clock, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """A token with claims and header changed as given (a claim set to None is left out), signed
    with the sender's current key."""
    body = {
        "iss": SENDER,
        "aud": RECEIVER,
        "method": "POST",
        "path": PATH,
        "body_sha256": body_hash(BODY),
        "iat": int(clock.now),
        "exp": int(clock.now) + 60,
        "jti": "j" * 24,
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    headers = {"typ": "ors-federation+jwt", "kid": keys.current.kid, **(header or {})}
    return jwt.encode(body, keys.current.private_key, algorithm="EdDSA", headers=headers)


async def send(
    client: TestClient,
    token: str | None,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    authorization: str | None = None,
) -> tuple[int, dict[str, Any], str]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    async with client.request(method, path, data=body, headers=headers) as response:
        text = await response.text()
        if token is not None:
            assert token not in text
        return response.status, json.loads(text), response.headers.get("Retry-After", "")


def refused(answer: tuple[int, dict[str, Any], str]) -> tuple[int, str]:
    status, body, _ = answer
    return status, body.get("code", "")


async def test_a_signed_request_names_its_peer(client, sender_keys, clock) -> None:
    status, body, _ = await send(client, sign(sender_keys, clock))
    assert (status, body) == (200, {"peer": SENDER})


async def test_a_get_without_body_and_with_a_query_verifies(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, method="GET", path="/ors/v1/federation/x?a=1&b=%20", body=b"")
    status, body, _ = await send(client, token, "GET", "/ors/v1/federation/x?a=1&b=%20", b"")
    assert (status, body) == (200, {"peer": SENDER})


async def test_a_request_without_authorization_is_refused(client) -> None:
    assert refused(await send(client, None)) == (401, "signature_invalid")


async def test_another_authorization_scheme_is_refused(client, sender_keys, clock) -> None:
    answer = await send(client, None, authorization="Basic " + sign(sender_keys, clock))
    assert refused(answer) == (401, "signature_invalid")


@pytest.mark.parametrize("garbage", ["abc", "a.b.c", "e30.e30.", "", "x" * 3000])
async def test_a_token_that_is_not_a_jwt_is_refused(client, garbage) -> None:
    answer = await send(client, None, authorization=f"Bearer {garbage}")
    assert refused(answer) == (401, "signature_invalid")


async def test_a_token_with_another_algorithm_is_refused(client, sender_keys, clock) -> None:
    claims = jwt.decode(sign(sender_keys, clock), options={"verify_signature": False})
    headers = {"typ": "ors-federation+jwt", "kid": sender_keys.current.kid}
    hmac_token = jwt.encode(claims, "s" * 32, algorithm="HS256", headers=headers)
    none_token = jwt.encode(claims, None, algorithm="none", headers=headers)  # type: ignore[arg-type]
    assert refused(await send(client, hmac_token)) == (401, "signature_invalid")
    assert refused(await send(client, none_token)) == (401, "signature_invalid")


async def test_a_token_of_another_type_is_refused(client, sender_keys, clock) -> None:
    token = forge(sender_keys, clock, header={"typ": "JWT"})
    assert refused(await send(client, token)) == (401, "signature_invalid")


@pytest.mark.parametrize("claim", ["iss", "aud", "method", "path", "body_sha256", "iat", "jti"])
async def test_a_token_missing_a_claim_is_refused(client, sender_keys, clock, claim) -> None:
    token = forge(sender_keys, clock, **{claim: None})
    assert refused(await send(client, token)) == (401, "signature_invalid")


@pytest.mark.parametrize("jti", ["short", "j" * 65, "has space in it ok", "é" * 20])
async def test_a_token_with_a_bad_jti_is_refused(client, sender_keys, clock, jti) -> None:
    token = forge(sender_keys, clock, jti=jti)
    assert refused(await send(client, token)) == (401, "signature_invalid")


async def test_a_server_that_is_not_a_peer_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, iss="xx.test")
    assert refused(await send(client, token)) == (403, "peer_not_allowed")


async def test_a_key_not_pinned_is_unknown(client, clock) -> None:
    other = SigningKeys(new_store())
    assert refused(await send(client, sign(other, clock))) == (401, "key_unknown")


async def test_a_signature_by_another_key_is_refused(client, sender_keys, clock) -> None:
    other = SigningKeys(new_store())
    token = jwt.encode(
        jwt.decode(sign(sender_keys, clock), options={"verify_signature": False}),
        other.current.private_key,
        algorithm="EdDSA",
        headers={"typ": "ors-federation+jwt", "kid": sender_keys.current.kid},
    )
    assert refused(await send(client, token)) == (401, "signature_invalid")


async def test_a_tampered_claim_breaks_the_signature(client, sender_keys, clock) -> None:
    header, claims, signature = sign(sender_keys, clock).split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=="))
    decoded["path"] = "/ors/v1/federation/links/other"
    tampered = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    answer = await send(client, f"{header}.{tampered}.{signature}", path=decoded["path"])
    assert refused(answer) == (401, "signature_invalid")


async def test_a_token_for_another_server_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, aud="be.test")
    assert refused(await send(client, token)) == (401, "wrong_audience")


async def test_an_expired_token_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock)
    clock.now += 60
    assert refused(await send(client, token)) == (401, "signature_expired")


async def test_a_token_from_the_near_future_is_accepted(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, now=clock.now + 29)
    assert (await send(client, token))[0] == 200


async def test_a_token_issued_too_far_in_the_future_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, now=clock.now + 31)
    assert refused(await send(client, token)) == (401, "signature_expired")


async def test_a_token_living_longer_than_a_minute_is_refused(client, sender_keys, clock) -> None:
    token = forge(sender_keys, clock, exp=int(clock.now) + 61)
    assert refused(await send(client, token)) == (401, "signature_expired")


async def test_a_token_for_another_method_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, method="PUT")
    assert refused(await send(client, token)) == (401, "signature_invalid")


async def test_a_token_for_another_path_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, path=PATH + "/l_0123456789abcdef")
    assert refused(await send(client, token)) == (401, "signature_invalid")


async def test_a_token_for_another_query_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, path=PATH + "?a=1")
    assert refused(await send(client, token, path=PATH + "?a=2")) == (401, "signature_invalid")


async def test_a_token_for_another_body_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock)
    answer = await send(client, token, body=BODY.replace(b"salon", b"salle"))
    assert refused(answer) == (401, "signature_invalid")


async def test_a_replayed_request_is_refused(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock)
    assert (await send(client, token))[0] == 200
    assert refused(await send(client, token)) == (401, "replayed_request")
    assert (await send(client, sign(sender_keys, clock)))[0] == 200


async def test_a_refused_request_does_not_use_up_its_jti(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock)
    assert refused(await send(client, token, body=b"{}")) == (401, "signature_invalid")
    assert (await send(client, token))[0] == 200


async def test_the_seen_jti_cache_is_bounded(client, sender_keys, clock) -> None:
    for _ in range(5):
        assert (await send(client, sign(sender_keys, clock)))[0] == 200
    status, body, retry_after = await send(client, sign(sender_keys, clock))
    assert (status, body["code"]) == (429, "rate_limited")
    assert 1 <= int(retry_after) <= 91
    clock.now += 91  # the first tokens expired 30 s ago: their jtis are forgotten
    assert (await send(client, sign(sender_keys, clock)))[0] == 200


async def test_the_issuer_is_checked_before_the_key(client, clock) -> None:
    token = sign(SigningKeys(new_store()), clock, iss="xx.test")
    assert refused(await send(client, token)) == (403, "peer_not_allowed")


async def test_the_signature_is_checked_before_the_audience_and_time(
    client, sender_keys, clock
) -> None:
    other = SigningKeys(new_store())
    token = jwt.encode(
        jwt.decode(sign(other, clock, aud="be.test"), options={"verify_signature": False}),
        other.current.private_key,
        algorithm="EdDSA",
        headers={"typ": "ors-federation+jwt", "kid": sender_keys.current.kid},
    )
    clock.now += 120
    assert refused(await send(client, token)) == (401, "signature_invalid")


async def test_the_audience_is_checked_before_the_time(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, aud="be.test")
    clock.now += 120
    assert refused(await send(client, token)) == (401, "wrong_audience")


async def test_the_time_is_checked_before_the_request(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock, path="/elsewhere")
    clock.now += 120
    assert refused(await send(client, token)) == (401, "signature_expired")


async def test_the_request_is_checked_before_the_replay(client, sender_keys, clock) -> None:
    token = sign(sender_keys, clock)
    assert (await send(client, token))[0] == 200
    assert refused(await send(client, token, method="PUT")) == (401, "signature_invalid")


async def test_a_non_integer_time_is_refused(client, sender_keys, clock) -> None:
    token = forge(sender_keys, clock, iat=clock.now + 0.5)
    assert refused(await send(client, token)) == (401, "signature_invalid")


async def test_the_issuer_is_checked_before_the_other_claims(client, sender_keys, clock) -> None:
    token = forge(sender_keys, clock, iss="xx.test", jti=None, aud=None)
    assert refused(await send(client, token)) == (403, "peer_not_allowed")


async def test_the_key_is_checked_before_the_other_claims(client, clock) -> None:
    token = forge(SigningKeys(new_store()), clock, jti="short")
    assert refused(await send(client, token)) == (401, "key_unknown")


async def test_a_refusal_repeats_no_part_of_the_token(client, sender_keys, clock) -> None:
    unknown_issuer = sign(sender_keys, clock, iss="evil-issuer.test")
    other = SigningKeys(new_store())
    unknown_key = sign(other, clock)
    wrong_audience = sign(sender_keys, clock, aud="evil-audience.test")
    for token, part in [
        (unknown_issuer, "evil-issuer"),
        (unknown_key, other.current.kid),
        (wrong_audience, "evil-audience"),
    ]:
        status, body, _ = await send(client, token)
        assert status in (401, 403)
        assert part not in json.dumps(body)
