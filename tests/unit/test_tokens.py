"""Join tokens: ORS claims and LiveKit-shaped grants accepted; forged, expired, misdirected refused."""

import time

import jwt
import pytest

from gateway.rooms import Role
from gateway.tokens import TokenAuthority, TokenError

SECRET = "s3cret-key-material-for-tests-0123456789"


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(
        {"rondpoint": SECRET, "visio-api-key": "visio-secret-0123456789abcdef-0123"}, "rondpoint"
    )


def test_minted_token_grants_its_room_and_role(authority: TokenAuthority) -> None:
    token = authority.mint("salle", "alice", "Alice Martin", Role.HOST, ttl=60)
    grant = authority.verify(token, "salle")
    assert (grant.identity, grant.name, grant.role) == ("alice", "Alice Martin", Role.HOST)


def test_livekit_video_grant_from_a_visio_backend_is_accepted(authority: TokenAuthority) -> None:
    claims = {
        "iss": "visio-api-key",
        "sub": "oidc-sub-42",
        "name": "Camille",
        "exp": int(time.time()) + 60,
        "video": {"room": "salle", "roomJoin": True, "roomAdmin": True, "canPublish": False},
    }
    token = jwt.encode(claims, "visio-secret-0123456789abcdef-0123", algorithm="HS256")
    grant = authority.verify(token, "salle")
    assert grant.role is Role.HOST and grant.name == "Camille" and not grant.can_publish


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda a: a.mint("salle", "x", ttl=-60), "token_expired"),
        (lambda a: a.mint("autre", "x"), "token_wrong_room"),
        (
            lambda a: jwt.encode(
                {
                    "iss": "rondpoint",
                    "sub": "x",
                    "exp": int(time.time()) + 60,
                    "ors": {"room": "salle"},
                },
                "wrong-secret-0123456789abcdefgh-0123",
                algorithm="HS256",
            ),
            "token_invalid",
        ),
        (
            lambda a: jwt.encode(
                {
                    "iss": "nobody",
                    "sub": "x",
                    "exp": int(time.time()) + 60,
                    "ors": {"room": "salle"},
                },
                SECRET,
                algorithm="HS256",
            ),
            "token_invalid",
        ),
        (
            lambda a: jwt.encode(
                {"iss": "rondpoint", "sub": "x", "exp": int(time.time()) + 60},
                SECRET,
                algorithm="HS256",
            ),
            "token_invalid",
        ),
        (lambda a: "not.a.jwt", "token_invalid"),
        (
            lambda a: jwt.encode(
                {
                    "iss": "rondpoint",
                    "sub": "x",
                    "exp": int(time.time()) + 60,
                    "ors": {"room": "salle"},
                },
                "",
                algorithm="none",
            ),
            "token_invalid",
        ),
    ],
    ids=["expired", "wrong-room", "forged", "unknown-issuer", "no-grant", "garbage", "alg-none"],
)
def test_unusable_tokens_are_refused(authority: TokenAuthority, make, code: str) -> None:  # type: ignore[no-untyped-def]
    token = make(authority)
    with pytest.raises(TokenError) as error:
        authority.verify(token, "salle")
    assert error.value.code == code
    assert token not in str(error.value)
