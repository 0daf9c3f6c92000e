"""Join tokens: ORS claims and LiveKit-shaped grants accepted; forged, expired, misdirected refused."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from livekit.api import AccessToken, VideoGrants

from gateway.rooms import Role
from gateway.tokens import TokenAuthority, TokenError, TokenIssuer

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


# registered issuers ([[tokens.issuers]]): key by iss, one algorithm each, allowed rooms ----------
VISIO_KEY = "APIvisio7Kq2"
VISIO_SECRET = "visio-backend-secret-0123456789abcdefghij-0123456789abcdefghijkl"


def ed25519_pair() -> tuple[Ed25519PrivateKey, bytes]:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private, pem


def visio_token(room: str = "visio-salle", **grants: object) -> str:
    """A token minted with LiveKit's own SDK, with the grants Visio's backend gives
    (suitenumerique/meet, core/utils.py generate_token)."""
    video = VideoGrants(
        room=room,
        room_join=True,
        room_admin=False,
        can_update_own_metadata=False,
        can_publish=True,
        can_publish_sources=["camera", "microphone", "screen_share", "screen_share_audio"],
        can_subscribe=True,
    )
    for key, value in grants.items():
        setattr(video, key, value)
    return (
        AccessToken(VISIO_KEY, VISIO_SECRET)
        .with_grants(video)
        .with_identity("oidc-sub-42")
        .with_name("Camille Durand")
        .with_attributes({"color": "hsl(120, 60%, 40%)", "room_admin": "false"})
        .to_jwt()
    )


@pytest.fixture
def with_issuers() -> tuple[TokenAuthority, Ed25519PrivateKey]:
    private, pem = ed25519_pair()
    issuers = [
        TokenIssuer.shared_secret(VISIO_KEY, VISIO_SECRET, ["visio-*", "cabinet"]),
        TokenIssuer.public_key("portal-ed25519", pem, ["*"]),
    ]
    return TokenAuthority({"rondpoint": SECRET}, "rondpoint", issuers), private


def test_a_livekit_sdk_token_from_a_registered_issuer_is_accepted(with_issuers) -> None:  # type: ignore[no-untyped-def]
    authority, _ = with_issuers
    grant = authority.verify(visio_token(), "visio-salle")
    assert (grant.identity, grant.name, grant.role) == (
        "oidc-sub-42",
        "Camille Durand",
        Role.MEMBER,
    )
    assert grant.can_publish and grant.can_subscribe
    assert grant.publish_sources == {"camera", "microphone", "screen", "screen_audio"}


def test_can_publish_sources_limit_what_may_be_published(with_issuers) -> None:  # type: ignore[no-untyped-def]
    authority, _ = with_issuers
    grant = authority.verify(visio_token(can_publish_sources=["MICROPHONE"]), "visio-salle")
    assert grant.may_publish("microphone")
    assert not grant.may_publish("camera") and not grant.may_publish("screen")
    everything = authority.verify(visio_token(can_publish_sources=None), "visio-salle")
    assert everything.publish_sources is None and everything.may_publish("screen_audio")
    # Visio gives can_publish=bool(sources): no sources, no publishing at all
    silent = authority.verify(visio_token(can_publish=False, can_publish_sources=[]), "visio-salle")
    assert not silent.may_publish("microphone")


def test_an_issuer_grants_only_its_rooms(with_issuers) -> None:  # type: ignore[no-untyped-def]
    authority, _ = with_issuers
    assert authority.verify(visio_token("cabinet"), "cabinet").room == "cabinet"
    with pytest.raises(TokenError) as error:
        authority.verify(visio_token("conseil"), "conseil")
    assert (error.value.code, error.value.status) == ("forbidden", 403)
    with pytest.raises(TokenError) as error:
        authority.verify(visio_token("visio-autre"), "visio-salle")
    assert error.value.code == "token_wrong_room"


def test_an_ed25519_issuer_is_accepted_and_only_with_eddsa(with_issuers) -> None:  # type: ignore[no-untyped-def]
    authority, private = with_issuers
    claims = {
        "iss": "portal-ed25519",
        "sub": "alice",
        "name": "Alice",
        "exp": int(time.time()) + 60,
        "ors": {"room": "salle", "role": "host"},
    }
    grant = authority.verify(jwt.encode(claims, private, algorithm="EdDSA"), "salle")
    assert grant.role is Role.HOST
    # algorithm confusion: HS256 with the issuer's public key (PEM) as the HMAC secret
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(TokenError) as error:
        authority.verify(hs256_with(claims, pem), "salle")
    assert error.value.code == "token_invalid"
    # another Ed25519 key claiming the same issuer
    other, _ = ed25519_pair()
    with pytest.raises(TokenError) as error:
        authority.verify(jwt.encode(claims, other, algorithm="EdDSA"), "salle")
    assert error.value.code == "token_invalid"


def test_a_shared_secret_issuer_accepts_only_hs256(with_issuers) -> None:  # type: ignore[no-untyped-def]
    authority, _ = with_issuers
    claims = jwt.decode(visio_token(), options={"verify_signature": False})
    for algorithm in ("HS384", "HS512"):
        with pytest.raises(TokenError) as error:
            authority.verify(jwt.encode(claims, VISIO_SECRET, algorithm=algorithm), "visio-salle")
        assert error.value.code == "token_invalid"
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(TokenError) as error:
        authority.verify(unsigned, "visio-salle")
    assert error.value.code == "token_invalid"


def test_a_wrong_secret_is_refused_without_showing_any_secret(with_issuers) -> None:  # type: ignore[no-untyped-def]
    authority, _ = with_issuers
    claims = jwt.decode(visio_token(), options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-visio-secret-0123456789abcdef", algorithm="HS256")
    with pytest.raises(TokenError) as error:
        authority.verify(forged, "visio-salle")
    assert (error.value.code, error.value.status) == ("token_invalid", 401)
    assert VISIO_SECRET not in str(error.value) and forged not in str(error.value)


def test_issuer_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenIssuer.shared_secret("short", "too-short")
    rsa_small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(ValueError, match="1024 bits"):
        TokenIssuer.public_key(
            "rsa", rsa_small.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="P-256"):
        TokenIssuer.public_key(
            "ec", p384.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
    private = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(ValueError, match="public half only") as error:
        TokenIssuer.public_key("ed", private)
    assert private.decode() not in str(error.value)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rs = TokenIssuer.public_key(
        "rsa", rsa_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    es = TokenIssuer.public_key(
        "ec", p256.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    assert (rs.algorithm, es.algorithm) == ("RS256", "ES256")
    assert VISIO_SECRET not in repr(TokenIssuer.shared_secret("k", VISIO_SECRET))


def test_an_issuer_cannot_take_the_gateways_key_id() -> None:
    with pytest.raises(ValueError, match="already taken"):
        TokenAuthority(
            {"rondpoint": SECRET}, "rondpoint", [TokenIssuer.shared_secret("rondpoint", SECRET)]
        )


def hs256_with(claims: dict, key: bytes) -> str:
    """An HS256 JWS signed with ``key`` by hand (PyJWT rightly refuses a PEM key as HMAC secret)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + b"."
        + b64(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


# claims of the wrong type (spec 5.4): refused as token_invalid, naming the claim, never its value --
def signed(**overrides: object) -> str:
    claims: dict = {
        "iss": "rondpoint",
        "sub": "alice",
        "name": "Alice",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "ors": {"room": "salle", "role": "member"},
    }
    for key, value in overrides.items():
        if "." in key:
            grant, member = key.split(".")
            claims[grant][member] = value
        else:
            claims[key] = value
    return hs256_with(claims, SECRET.encode())


def livekit_signed(**video: object) -> str:
    claims = {
        "iss": "visio-api-key",
        "sub": "oidc-sub-42",
        "exp": int(time.time()) + 60,
        "video": {"room": "salle", "roomJoin": True, **video},
    }
    return hs256_with(claims, b"visio-secret-0123456789abcdef-0123")


@pytest.mark.parametrize(
    ("claim", "token"),
    [
        ("exp", lambda: signed(exp=str(int(time.time()) + 3600))),
        ("exp", lambda: signed(exp=True)),
        ("exp", lambda: signed(exp=float("inf"))),
        ("nbf", lambda: signed(nbf="0")),
        ("iat", lambda: signed(iat=[1])),
        ("sub", lambda: signed(sub=42)),
        ("name", lambda: signed(name={"first": "Eve"})),
        ("iss", lambda: signed(iss=["rondpoint"])),
        ("ors", lambda: signed(ors="salle")),
        ("ors.room", lambda: signed(**{"ors.room": ["salle"]})),
        ("ors.role", lambda: signed(**{"ors.role": ["host"]})),
        ("ors.role", lambda: signed(**{"ors.role": "admin"})),
        ("ors.can_publish", lambda: signed(**{"ors.can_publish": "false"})),
        ("ors.can_subscribe", lambda: signed(**{"ors.can_subscribe": 0})),
        ("video.roomAdmin", lambda: livekit_signed(roomAdmin="false")),
        ("video.roomJoin", lambda: livekit_signed(roomJoin="true")),
        ("video.canPublish", lambda: livekit_signed(canPublish="false")),
        ("video.canSubscribe", lambda: livekit_signed(canSubscribe=1)),
        ("video.canPublishSources", lambda: livekit_signed(canPublishSources="camera")),
        ("video.canPublishSources", lambda: livekit_signed(canPublishSources=[1])),
        ("video.room", lambda: livekit_signed(room={"name": "salle"})),
    ],
)
def test_a_claim_of_the_wrong_type_is_refused_by_name(
    authority: TokenAuthority, claim: str, token
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenError) as error:
        authority.verify(token(), "salle")
    assert (error.value.code, error.value.status) == ("token_invalid", 401)
    assert f"'{claim}'" in error.value.detail


def test_a_refused_claim_is_named_without_its_value(authority: TokenAuthority) -> None:
    with pytest.raises(TokenError) as error:
        authority.verify(signed(name={"secret": "hunter2-value"}), "salle")
    assert "'name'" in error.value.detail and "hunter2-value" not in error.value.detail


def test_a_livekit_string_false_room_admin_never_grants_host(authority: TokenAuthority) -> None:
    with pytest.raises(TokenError):
        authority.verify(livekit_signed(roomAdmin="false"), "salle")
    assert authority.verify(livekit_signed(roomAdmin=False), "salle").role is Role.MEMBER


def test_times_of_the_right_type_still_work(authority: TokenAuthority) -> None:
    grant = authority.verify(signed(exp=time.time() + 60.5, nbf=time.time() - 1), "salle")
    assert grant.identity == "alice"
    with pytest.raises(TokenError) as error:
        authority.verify(signed(exp=int(time.time()) - 3600), "salle")
    assert error.value.code == "token_expired"
    with pytest.raises(TokenError) as error:
        authority.verify(signed(nbf=int(time.time()) + 3600), "salle")
    assert error.value.code == "token_invalid"
    with pytest.raises(TokenError) as error:
        authority.verify(signed(iat=int(time.time()) + 3600), "salle")
    assert error.value.code == "token_invalid"


def test_a_tokens_name_claim_is_sanitised_like_any_name(authority: TokenAuthority) -> None:
    assert authority.verify(signed(name="\x1b[31mEve\u202e"), "salle").name == "[31mEve"
    assert authority.verify(signed(name="\u202e", sub="eve\x07"), "salle").name == "eve"
