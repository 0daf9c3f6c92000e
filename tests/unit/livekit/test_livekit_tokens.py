"""LiveKit access tokens (protocols/livekit/tokens.py) against LiveKit's claim shape.

livekit-api (LiveKit's own Python server SDK, a test dependency) is the reference: a token we mint
must verify with its TokenVerifier and carry the same claims as one its AccessToken mints. The
gateway's one verifier (gateway/tokens.py) checks LiveKit-shaped tokens, with the API key and
secret registered as an issuer; PyJWT reads the claims it does not use (attributes, data grant).
"""

from __future__ import annotations

import time

import jwt
import pytest
from livekit import api

from gateway.rooms import Role
from gateway.tokens import GATEWAY_KEY_ID, TokenAuthority, TokenError, TokenIssuer
from protocols.livekit.tokens import MintError, VideoGrant, mint_token

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

KEY = "APIkey123"
SECRET = "a-secret-of-at-least-thirty-two-bytes-for-hs256"


def gateway_verifier(key: str = KEY, secret: str = SECRET) -> TokenAuthority:
    """The gateway's verifier with a LiveKit API key and secret registered as a token issuer."""
    own = {GATEWAY_KEY_ID: "the-gateway-own-secret-of-32-chars-or-more"}
    return TokenAuthority(own, GATEWAY_KEY_ID, [TokenIssuer.shared_secret(key, secret)])


def test_claims_shape() -> None:
    token = mint_token(
        KEY,
        SECRET,
        identity="sip-42",
        name="Alice (phone)",
        grant=VideoGrant.join("f1c5e0d2-3a1b-4c6d-9e8f-0a1b2c3d4e5f"),
        attributes={"rondpoint.origin": "sip"},
        kind="sip",
        now=1_800_000_000,
        ttl=600,
    )
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "iss": KEY,
        "sub": "sip-42",
        "name": "Alice (phone)",
        "nbf": 1_800_000_000,
        "exp": 1_800_000_600,
        "kind": "sip",
        "attributes": {"rondpoint.origin": "sip"},
        "video": {
            "room": "f1c5e0d2-3a1b-4c6d-9e8f-0a1b2c3d4e5f",
            "roomJoin": True,
            "canPublish": True,
            "canSubscribe": True,
            "canPublishData": True,
        },
    }


def test_same_claims_as_livekit_api_access_token() -> None:
    grant = VideoGrant(
        room="room-1",
        room_join=True,
        room_admin=True,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=False,
        can_publish_sources=("camera", "microphone"),
        can_update_own_metadata=False,
    )
    ours = mint_token(
        KEY,
        SECRET,
        identity="bob",
        name="Bob",
        grant=grant,
        metadata='{"a": 1}',
        attributes={"color": "#ff0000"},
    )
    theirs = (
        api.AccessToken(KEY, SECRET)
        .with_identity("bob")
        .with_name("Bob")
        .with_kind("standard")
        .with_metadata('{"a": 1}')
        .with_attributes({"color": "#ff0000"})
        .with_grants(
            api.VideoGrants(
                room="room-1",
                room_join=True,
                room_admin=True,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=False,
                can_publish_sources=["camera", "microphone"],
                can_update_own_metadata=False,
            )
        )
        .to_jwt()
    )
    decode = {"verify_signature": False}
    a = jwt.decode(ours, options=decode)
    b = jwt.decode(theirs, options=decode)
    for claims in (a, b):
        assert claims.pop("exp") - claims.pop("nbf") == 6 * 3600
    assert a == b


def test_livekit_api_verifies_ours_and_we_verify_theirs() -> None:
    ours = mint_token(KEY, SECRET, identity="carol", name="Carol", grant=VideoGrant.join("r"))
    claims = api.TokenVerifier(KEY, SECRET).verify(ours)
    assert (claims.identity, claims.name, claims.kind) == ("carol", "Carol", "standard")
    assert claims.video is not None and claims.video.room == "r" and claims.video.room_join

    theirs = (
        api.AccessToken(KEY, SECRET)
        .with_identity("dave")
        .with_name("Dave")
        .with_attributes({"x": "y"})
        .with_grants(api.VideoGrants(room="r", room_join=True))
        .to_jwt()
    )
    mine = gateway_verifier().verify(theirs, "r")
    assert (mine.identity, mine.name, mine.room, mine.role) == ("dave", "Dave", "r", Role.MEMBER)
    assert mine.can_publish and mine.can_subscribe
    claims = jwt.decode(theirs, SECRET, algorithms=["HS256"], issuer=KEY)
    assert claims["attributes"] == {"x": "y"}
    assert VideoGrant.from_claim(claims["video"]) == VideoGrant(
        room="r", room_join=True, can_publish=True, can_subscribe=True, can_publish_data=True
    )


def test_expiry() -> None:
    now = time.time()
    verifier = gateway_verifier()
    token = mint_token(KEY, SECRET, identity="e", grant=VideoGrant.join("r"), now=now, ttl=300)
    assert verifier.verify(token, "r").expires_at == int(now) + 300
    just_expired = mint_token(
        KEY, SECRET, identity="e", grant=VideoGrant.join("r"), now=now - 305, ttl=300
    )
    assert verifier.verify(just_expired, "r").identity == "e"  # within the verifier's leeway
    future = mint_token(KEY, SECRET, identity="e", grant=VideoGrant.join("r"), now=now + 120)
    with pytest.raises(TokenError, match="not valid yet"):
        verifier.verify(future, "r")
    old = mint_token(KEY, SECRET, identity="e", grant=VideoGrant.join("r"), now=now - 900, ttl=60)
    with pytest.raises(TokenError, match="expired") as error:
        verifier.verify(old, "r")
    assert error.value.code == "token_expired"


def test_wrong_secret_or_issuer_is_refused() -> None:
    token = mint_token(KEY, SECRET, identity="f", grant=VideoGrant.join("r"))
    with pytest.raises(TokenError, match="signature") as error:
        gateway_verifier(KEY, SECRET + "x").verify(token, "r")
    assert error.value.code == "token_invalid"
    with pytest.raises(TokenError, match="issuer is not known") as error:
        gateway_verifier("otherkey", SECRET).verify(token, "r")
    assert error.value.code == "token_invalid"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"identity": "", "grant": VideoGrant.join("r")},
        {"identity": "g", "grant": VideoGrant(room="", room_join=True)},
        {"identity": "g", "grant": VideoGrant.join("r"), "kind": "robot"},
        {"identity": "g", "grant": VideoGrant.join("r"), "ttl": 0},
        {"identity": "g", "grant": VideoGrant.join("r"), "attributes": {"n": 1}},
    ],
)
def test_bad_mint_arguments(kwargs: dict) -> None:
    with pytest.raises(MintError):
        mint_token(KEY, SECRET, **kwargs)
