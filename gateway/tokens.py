"""Join tokens: HS256 JWTs with an ``ors`` claim, or LiveKit's ``video`` grant as Visio backends mint it.

The one token verifier of the project. The signing secret is looked up by the ``iss`` claim (the key id),
so an existing LiveKit/Visio backend's API key and secret can be registered unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gateway.rooms import Role

ALGORITHM = "HS256"
LEEWAY_SECONDS = 10


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


class TokenAuthority:
    """Mints and verifies join tokens against a set of (key id -> secret) pairs."""

    def __init__(self, keys: dict[str, str], default_key_id: str) -> None:
        if default_key_id not in keys:
            raise ValueError("the default key id must be one of the keys")
        self._keys = dict(keys)
        self.default_key_id = default_key_id

    def add_key(self, key_id: str, secret: str) -> None:
        self._keys[key_id] = secret

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

    def verify(self, token: str, room: str) -> JoinGrant:
        """The grant of a valid token for ``room``; TokenError otherwise (never echoes the token)."""
        if not isinstance(token, str) or not token:
            raise TokenError("token_invalid", "a join token is required")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenError("token_invalid", "the token is not a well-formed JWT") from None
        secret = self._keys.get(str(unverified.get("iss", "")))
        if secret is None:
            raise TokenError("token_invalid", "the token's issuer is not known here")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token_invalid", "the token is not valid yet") from None
        except jwt.PyJWTError:
            raise TokenError(
                "token_invalid", "the token's signature or claims are invalid"
            ) from None
        return _grant_from_claims(claims, room)


def _grant_from_claims(claims: dict, room: str) -> JoinGrant:
    identity = str(claims["sub"])
    name = str(claims.get("name") or identity)[:64]
    ors, video = claims.get("ors"), claims.get("video")
    if isinstance(ors, dict):
        granted_room = ors.get("room")
        try:
            role = Role(ors.get("role", "member"))
        except ValueError:
            raise TokenError(
                "token_invalid", "the token's role is not host, member or guest"
            ) from None
        can_publish = bool(ors.get("can_publish", True))
        can_subscribe = bool(ors.get("can_subscribe", True))
    elif isinstance(video, dict):
        if not video.get("roomJoin"):
            raise TokenError("forbidden", "the token does not grant roomJoin", 403)
        granted_room = video.get("room")
        role = Role.HOST if video.get("roomAdmin") else Role.MEMBER
        can_publish = bool(video.get("canPublish", True))
        can_subscribe = bool(video.get("canSubscribe", True))
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
    )
