"""LiveKit access tokens: HS256 JWTs in LiveKit's claim shape, minted with PyJWT.

Follows the claim set of LiveKit's `protocol/auth` package (`ClaimGrants`, `VideoGrant`), which
livekit-server checks and which livekit-api's `AccessToken` produces: `iss` is the API key, `sub`
the participant identity, `nbf` / `exp` in seconds, `name`, `kind` (`standard`, `sip`, `agent`,
...), `metadata`, `attributes` (string to string) and a `video` grant whose keys are lower camel
case (`room`, `roomJoin`, `canPublish`, ...). Empty values are left out, as LiveKit does, so a
token stays small. Visio (suitenumerique/meet, `core/utils.py::generate_token`) mints the same
shape. The one verifier of such tokens is the gateway's (gateway/tokens.py reads the `video` grant).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from livekit.protocol import models

ALGORITHM = "HS256"
DEFAULT_TTL = 6 * 3600.0
"""livekit-api's default lifetime (six hours)."""

KINDS = frozenset(name.lower() for name, _ in models.ParticipantInfo.Kind.items())
"""Participant kinds as LiveKit writes them in the `kind` claim: ParticipantInfo.Kind, lower
case."""

_GRANT_KEYS = {
    "room": "room",
    "room_join": "roomJoin",
    "room_admin": "roomAdmin",
    "room_create": "roomCreate",
    "room_list": "roomList",
    "room_record": "roomRecord",
    "can_publish": "canPublish",
    "can_subscribe": "canSubscribe",
    "can_publish_data": "canPublishData",
    "can_publish_sources": "canPublishSources",
    "can_update_own_metadata": "canUpdateOwnMetadata",
    "hidden": "hidden",
    "agent": "agent",
}


class MintError(ValueError):
    """The arguments cannot make a token (no key or secret, no room to join, an unknown kind...)."""


@dataclass(frozen=True)
class VideoGrant:
    """LiveKit's `video` grant; None means "not in the token" (the server's default applies)."""

    room: str = ""
    room_join: bool | None = None
    room_admin: bool | None = None
    room_create: bool | None = None
    room_list: bool | None = None
    room_record: bool | None = None
    can_publish: bool | None = None
    can_subscribe: bool | None = None
    can_publish_data: bool | None = None
    can_publish_sources: tuple[str, ...] | None = None
    """Track sources allowed: camera, microphone, screen_share, screen_share_audio."""
    can_update_own_metadata: bool | None = None
    hidden: bool | None = None
    agent: bool | None = None

    @classmethod
    def join(
        cls,
        room: str,
        *,
        can_publish: bool = True,
        can_subscribe: bool = True,
        can_publish_data: bool = True,
    ) -> VideoGrant:
        """The grant a participant needs to join ROOM, publish and subscribe."""
        return cls(
            room=room,
            room_join=True,
            can_publish=can_publish,
            can_subscribe=can_subscribe,
            can_publish_data=can_publish_data,
        )

    def to_claim(self) -> dict[str, Any]:
        claim: dict[str, Any] = {}
        for attr, key in _GRANT_KEYS.items():
            value = getattr(self, attr)
            if value is None or value == "":
                continue
            claim[key] = list(value) if isinstance(value, tuple) else value
        return claim

    @classmethod
    def from_claim(cls, claim: Mapping[str, Any]) -> VideoGrant:
        values: dict[str, Any] = {}
        for attr, key in _GRANT_KEYS.items():
            if key in claim:
                value = claim[key]
                values[attr] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


def mint_token(
    api_key: str,
    api_secret: str,
    *,
    identity: str,
    grant: VideoGrant,
    name: str = "",
    kind: str = "standard",
    metadata: str = "",
    attributes: Mapping[str, str] | None = None,
    ttl: float = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """An HS256 access token for IDENTITY, valid from NOW for TTL seconds."""
    if not api_key or not api_secret:
        raise MintError("api key and secret must be set")
    if grant.room_join and (not identity or not grant.room):
        raise MintError("identity and room must be set when joining a room")
    if kind and kind not in KINDS:
        raise MintError(f"unknown participant kind {kind!r}")
    if ttl <= 0:
        raise MintError("ttl must be positive")
    if attributes is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise MintError("attributes must map strings to strings")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": issued,
        "exp": issued + int(ttl),
        "video": grant.to_claim(),
    }
    if name:
        claims["name"] = name
    if kind:
        claims["kind"] = kind
    if metadata:
        claims["metadata"] = metadata
    if attributes:
        claims["attributes"] = dict(attributes)
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM)
