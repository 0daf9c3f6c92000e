"""Join tokens: JWTs with an ``ors`` claim, or LiveKit's ``video`` grant as Visio backends mint it.

The one token verifier of the project. The verification key is looked up by the ``iss`` claim (the
key id), so an existing LiveKit/Visio backend's API key and secret can be registered unchanged
(``[[tokens.issuers]]``). Each issuer has one algorithm, fixed by its key: HS256 for a shared
secret, EdDSA (Ed25519), RS256 (RSA) or ES256 (P-256) for a public key. A token is checked with
its issuer's algorithm only (never ``none``, never HS256 with a public key as the secret), and
only for the rooms its issuer may grant.
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.rooms import Role
from gateway.rooms.names import display_name

ALGORITHM = "HS256"
LEEWAY_SECONDS = 10
GATEWAY_KEY_ID = "rondpoint"
"""The gateway's own key id, used for the tokens it mints; no registered issuer may take it."""
MIN_SECRET_CHARS = 32
"""HMAC secrets shorter than this are refused (spec 13.2: at least 256 bits)."""
MIN_RSA_BITS = 2048
ALL_ROOMS = "*"

LIVEKIT_SOURCES = {
    "camera": "camera",
    "microphone": "microphone",
    "screen_share": "screen",
    "screen_share_audio": "screen_audio",
}
"""LiveKit's ``canPublishSources`` names -> this gateway's track sources."""


class TokenError(Exception):
    """The token cannot be used; ``code`` is the ORS error code (token_invalid, token_expired...)."""

    def __init__(self, code: str, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class JoinGrant:
    identity: str
    name: str
    room: str
    role: Role
    can_publish: bool = True
    can_subscribe: bool = True
    expires_at: int = 0
    anonymous: bool = False
    """Minted for an anonymous visitor (ORS token request), not by an operator or a backend."""
    publish_sources: frozenset[str] | None = None
    """Track sources this participant may publish (LiveKit's ``canPublishSources``); None: any."""

    def may_publish(self, source: str) -> bool:
        """Whether a track of ``source`` (microphone, camera, screen, screen_audio) may be published."""
        return self.can_publish and (self.publish_sources is None or source in self.publish_sources)


@dataclass(frozen=True)
class TokenIssuer:
    """Who may sign join tokens: a key id (the JWT ``iss``), its key and algorithm, its rooms."""

    key_id: str
    key: Any = field(repr=False)
    """The HMAC secret (str) or a cryptography public key object; never logged."""
    algorithm: str = ALGORITHM
    rooms: tuple[str, ...] = (ALL_ROOMS,)
    """Room names or glob patterns (``visio-*``) this issuer may grant; ``*`` for every room."""

    def allows(self, room: str) -> bool:
        return any(fnmatch.fnmatchcase(room, pattern) for pattern in self.rooms)

    @classmethod
    def shared_secret(
        cls, key_id: str, secret: str, rooms: Iterable[str] = (ALL_ROOMS,)
    ) -> TokenIssuer:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the secret must be at least {MIN_SECRET_CHARS} characters")
        return cls(key_id, secret, ALGORITHM, tuple(rooms))

    @classmethod
    def public_key(
        cls, key_id: str, pem: bytes, rooms: Iterable[str] = (ALL_ROOMS,)
    ) -> TokenIssuer:
        """An issuer signing with the private half of the PEM public key ``pem``; the key's type
        fixes the algorithm: Ed25519 -> EdDSA, RSA (2048 bits or more) -> RS256, P-256 -> ES256."""
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise ValueError(
                "is not a PEM public key (-----BEGIN PUBLIC KEY-----); give the public half only"
            ) from None
        if isinstance(key, ed25519.Ed25519PublicKey):
            algorithm = "EdDSA"
        elif isinstance(key, rsa.RSAPublicKey):
            if key.key_size < MIN_RSA_BITS:
                raise ValueError(f"is an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
            algorithm = "RS256"
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            algorithm = "ES256"
        else:
            raise ValueError("is not an Ed25519, RSA or ECDSA P-256 public key")
        return cls(key_id, key, algorithm, tuple(rooms))


class IssuerSettings(Protocol):
    """What ``issuer_from_settings`` reads: a ``[[tokens.issuers]]`` table (gateway.config)."""

    key_id: str
    secret: str
    secret_env: str
    public_key: str
    rooms: list[str]


def issuer_from_settings(settings: IssuerSettings) -> TokenIssuer:
    """The issuer a ``[[tokens.issuers]]`` table describes; ValueError (naming the key, never the
    secret) when its secret or public key cannot be used."""
    rooms = tuple(settings.rooms)
    if settings.public_key:
        try:
            pem = Path(settings.public_key).read_bytes()
        except OSError as error:
            raise ValueError(
                f"'public_key': cannot read {settings.public_key} ({error.strerror})"
            ) from None
        try:
            return TokenIssuer.public_key(settings.key_id, pem, rooms)
        except ValueError as error:
            raise ValueError(f"'public_key': {settings.public_key} {error}") from None
    if settings.secret_env:
        secret = os.environ.get(settings.secret_env, "")
        if not secret:
            raise ValueError(
                f"'secret_env': the environment variable {settings.secret_env} is not set or empty"
            )
        where = "the secret in $" + settings.secret_env
    else:
        secret, where = settings.secret, "'secret'"
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(
            f"{where} must be at least {MIN_SECRET_CHARS} characters (a random secret)"
        )
    return TokenIssuer.shared_secret(settings.key_id, secret, rooms)


class TokenAuthority:
    """Mints join tokens with the gateway's own key and verifies them against every issuer: the
    gateway's (key id -> secret) pairs, and the issuers the operator registered."""

    def __init__(
        self,
        keys: dict[str, str],
        default_key_id: str,
        issuers: Iterable[TokenIssuer] = (),
    ) -> None:
        if default_key_id not in keys:
            raise ValueError("the default key id must be one of the keys")
        self._keys = dict(keys)
        self.default_key_id = default_key_id
        self._issuers: dict[str, TokenIssuer] = {}
        for issuer in issuers:
            if issuer.key_id in self._keys or issuer.key_id in self._issuers:
                raise ValueError(f"the token issuer key id {issuer.key_id!r} is already taken")
            self._issuers[issuer.key_id] = issuer

    def add_key(self, key_id: str, secret: str) -> None:
        if key_id in self._issuers:
            raise ValueError(f"the key id {key_id!r} is a registered token issuer's")
        self._keys[key_id] = secret

    @property
    def issuer_ids(self) -> list[str]:
        """Key ids of the registered issuers (not the gateway's own keys)."""
        return sorted(self._issuers)

    def mint(
        self,
        room: str,
        identity: str,
        name: str = "",
        role: Role = Role.MEMBER,
        ttl: int = 3600,
        can_publish: bool = True,
        can_subscribe: bool = True,
        anonymous: bool = False,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.default_key_id,
            "sub": identity,
            "name": name or identity,
            "iat": now,
            "nbf": now - 1,
            "exp": now + ttl,
            "ors": {
                "room": room,
                "role": role.value,
                "can_publish": can_publish,
                "can_subscribe": can_subscribe,
            },
        }
        if anonymous:
            claims["ors"]["anonymous"] = True  # type: ignore[index]
        return jwt.encode(claims, self._keys[self.default_key_id], algorithm=ALGORITHM)

    def _issuer(self, key_id: str) -> TokenIssuer | None:
        secret = self._keys.get(key_id)
        if secret is not None:
            return TokenIssuer(key_id, secret)
        return self._issuers.get(key_id)

    def verify(self, token: str, room: str) -> JoinGrant:
        """The grant of a valid token for ``room``; TokenError otherwise (never echoes the token)."""
        if not isinstance(token, str) or not token:
            raise TokenError("token_invalid", "a join token is required")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenError("token_invalid", "the token is not a well-formed JWT") from None
        key_id = unverified.get("iss", "")
        if not isinstance(key_id, str):
            raise TokenError("token_invalid", "the token's claim 'iss' is not a string")
        issuer = self._issuer(key_id)
        if issuer is None:
            raise TokenError("token_invalid", "the token's issuer is not known here")
        try:
            # the times are checked below, after their types: PyJWT reads "exp": "1e10" as a number
            claims = jwt.decode(
                token,
                issuer.key,
                algorithms=[issuer.algorithm],
                options={
                    "require": ["exp", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                },
            )
        except jwt.PyJWTError:
            raise TokenError(
                "token_invalid", "the token's signature or claims are invalid"
            ) from None
        _check_claim_types(claims)
        now = time.time()
        if "nbf" in claims and claims["nbf"] > now + LEEWAY_SECONDS:
            raise TokenError("token_invalid", "the token is not valid yet")
        if "iat" in claims and claims["iat"] > now + LEEWAY_SECONDS:
            raise TokenError("token_invalid", "the token is not valid yet")
        if claims["exp"] <= now - LEEWAY_SECONDS:
            raise TokenError("token_expired", "the token has expired")
        grant = _grant_from_claims(claims, room)
        if not issuer.allows(room):
            raise TokenError("forbidden", "the token's issuer may not grant this room", 403)
        return grant


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_string(value: object) -> bool:
    return isinstance(value, str)


def _is_string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_role(value: object) -> bool:
    return isinstance(value, str) and value in {role.value for role in Role}


_CLAIM_TYPES: tuple[tuple[str, Any, str], ...] = (
    ("exp", _is_number, "a number"),
    ("nbf", _is_number, "a number"),
    ("iat", _is_number, "a number"),
    ("sub", _is_string, "a string"),
    ("iss", _is_string, "a string"),
    ("name", _is_string, "a string"),
)
_ORS_TYPES: tuple[tuple[str, Any, str], ...] = (
    ("room", _is_string, "a string"),
    ("role", _is_role, "host, member or guest"),
    ("can_publish", _is_bool, "a boolean"),
    ("can_subscribe", _is_bool, "a boolean"),
    ("anonymous", _is_bool, "a boolean"),
)
_VIDEO_TYPES: tuple[tuple[str, Any, str], ...] = (
    ("room", _is_string, "a string"),
    ("roomJoin", _is_bool, "a boolean"),
    ("roomAdmin", _is_bool, "a boolean"),
    ("canPublish", _is_bool, "a boolean"),
    ("canSubscribe", _is_bool, "a boolean"),
    ("canPublishSources", _is_string_list, "a list of strings"),
)


def _check_claim_types(claims: dict) -> None:
    """Every claim this gateway reads has its type, when present (spec 5.4): a string "false" is
    not false, "9999999999" is not a time. The error names the claim, never its value."""

    def check(values: dict, rules: tuple[tuple[str, Any, str], ...], prefix: str) -> None:
        for claim, is_valid, expected in rules:
            if claim in values and not is_valid(values[claim]):
                raise TokenError(
                    "token_invalid", f"the token's claim '{prefix}{claim}' is not {expected}"
                )

    check(claims, _CLAIM_TYPES, "")
    for grant, rules in (("ors", _ORS_TYPES), ("video", _VIDEO_TYPES)):
        if grant in claims:  # ors first: a token with both is read as an ors token (5.3)
            if not isinstance(claims[grant], dict):
                raise TokenError("token_invalid", f"the token's claim '{grant}' is not an object")
            check(claims[grant], rules, grant + ".")
            return


def _grant_from_claims(claims: dict, room: str) -> JoinGrant:
    identity = str(claims["sub"])
    # a backend's names are strangers' names too (spec 7.1)
    name = display_name(claims.get("name") or "") or display_name(identity) or "Participant"
    ors, video = claims.get("ors"), claims.get("video")
    publish_sources: frozenset[str] | None = None
    if isinstance(ors, dict):
        granted_room = ors.get("room")
        role = Role(ors.get("role", "member"))  # types checked by _check_claim_types
        can_publish = ors.get("can_publish", True) is True
        can_subscribe = ors.get("can_subscribe", True) is True
    elif isinstance(video, dict):
        if video.get("roomJoin") is not True:
            raise TokenError("forbidden", "the token does not grant roomJoin", 403)
        granted_room = video.get("room")
        role = Role.HOST if video.get("roomAdmin") is True else Role.MEMBER
        can_publish = video.get("canPublish", True) is True
        can_subscribe = video.get("canSubscribe", True) is True
        publish_sources = _livekit_sources(video.get("canPublishSources"))
    else:
        raise TokenError("token_invalid", "the token carries neither an 'ors' nor a 'video' grant")
    if granted_room != room:
        raise TokenError("token_wrong_room", "the token is for another room", 403)
    return JoinGrant(
        identity=identity,
        name=name,
        room=room,
        role=role,
        can_publish=can_publish,
        can_subscribe=can_subscribe,
        expires_at=int(claims["exp"]),
        anonymous=isinstance(ors, dict) and ors.get("anonymous") is True,
        publish_sources=publish_sources,
    )


def _livekit_sources(value: object) -> frozenset[str] | None:
    """``canPublishSources`` as LiveKit reads it: absent or empty, any source; otherwise only those
    listed (camera, microphone, screen_share, screen_share_audio; any case; others match nothing)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenError("token_invalid", "the token's canPublishSources is not a list of sources")
    if not value:
        return None
    return frozenset(LIVEKIT_SOURCES[v.lower()] for v in value if v.lower() in LIVEKIT_SOURCES)
