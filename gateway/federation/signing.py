"""Signed server-to-server requests (spec section 14.3): a short-lived EdDSA JWT (RFC 7519,
RFC 8037) per request binding sender, receiver, method, path, body hash and a unique jti; the
receiver's checks in the spec's order, each refusal an RFC 9457 problem."""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from gateway.federation.keys import SigningKeys, b64url
from gateway.federation.store import Peer
from gateway.ors.problems import Problem

if TYPE_CHECKING:
    from gateway.federation.directory import PeerDirectory

ALGORITHM = "EdDSA"
TOKEN_TYPE = "ors-federation+jwt"
LIFETIME = 60
"""Seconds a signed request is valid for (the longest ``exp - iat`` a receiver accepts)."""
FUTURE_SKEW = 30
"""Seconds an ``iat`` may be ahead of the receiver's clock."""
REPLAY_MARGIN = 30
"""Seconds a seen jti is kept after its token expired."""
MAX_SEEN = 100_000
"""Bound of the seen-jti cache; when it is full of live entries, requests wait (429)."""
JTI = re.compile(r"[A-Za-z0-9_-]{16,64}")

FederationProblem = Problem
"""Refusals of federation requests are the API's problems (code, detail, status, field)."""


def rate_limited(detail: str, retry_after: float) -> Problem:
    """429 ``rate_limited`` with ``Retry-After`` (whole seconds, at least 1)."""
    return Problem("rate_limited", detail, 429, retry_after=max(1, round(retry_after + 0.5)))


def body_hash(body: bytes) -> str:
    """``body_sha256``: base64url, unpadded, of SHA-256 of the exact body bytes."""
    return b64url(hashlib.sha256(body).digest())


def sign_request(
    keys: SigningKeys,
    iss: str,
    aud: str,
    method: str,
    path: str,
    body: bytes,
    *,
    now: float | None = None,
) -> str:
    """The JWT for ``Authorization: Bearer``: ``path`` is the request target as sent (path plus
    ``?query``), ``body`` the exact bytes sent (b"" for none)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": iss,
        "aud": aud,
        "method": method.upper(),
        "path": path,
        "body_sha256": body_hash(body),
        "iat": issued,
        "exp": issued + LIFETIME,
        "jti": secrets.token_urlsafe(18),
    }
    key = keys.current
    return jwt.encode(
        claims, key.private_key, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE, "kid": key.kid}
    )


def _invalid(detail: str) -> Problem:
    return Problem("signature_invalid", detail, 401)


_STRING_CLAIMS = ("aud", "method", "path", "body_sha256")


def _parse(header_value: str) -> tuple[str, str, dict[str, Any]]:
    """(token, kid, unverified claims) of a JWS whose header is a federation token's and whose
    payload names its issuer; else step 1's refusal."""
    if not header_value.startswith("Bearer "):
        raise _invalid("a signed request carries Authorization: Bearer <JWT>")
    token = header_value[7:].strip()
    try:
        parts = jwt.PyJWS().decode_complete(token, options={"verify_signature": False})
        claims = json.loads(parts["payload"])
    except (jwt.InvalidTokenError, ValueError, RecursionError):
        raise _invalid("the Authorization token is not a JWT") from None
    header = parts["header"]
    if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
        raise _invalid(f"the token must have alg {ALGORITHM} and typ {TOKEN_TYPE}")
    if not isinstance(header.get("kid"), str):
        raise _invalid("the token's header has no kid")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise _invalid("the token's claims are not a JSON object with an iss")
    return token, header["kid"], claims


def _check_claims(claims: dict[str, Any]) -> None:
    """Step 4's second half: every claim present with its type."""
    for name in _STRING_CLAIMS:
        if not isinstance(claims.get(name), str):
            raise _invalid(f"the token's {name!r} claim is missing or not a string")
    for name in ("iat", "exp"):
        if not isinstance(claims.get(name), int) or isinstance(claims[name], bool):
            raise _invalid(f"the token's {name!r} claim is missing or not an integer")
    if not isinstance(claims.get("jti"), str) or not JTI.fullmatch(claims["jti"]):
        raise _invalid("the token's 'jti' claim must be 16 to 64 characters [A-Za-z0-9_-]")


@dataclass(frozen=True)
class Claimed:
    """A request's token, parsed, and the peer it claims to come from (not verified yet)."""

    token: str
    kid: str
    claims: dict[str, Any]
    peer: Peer


class RequestVerifier:
    """Checks a partner's signed request in the order of spec 14.3 and returns the peer that sent
    it. Whether that peer may use the room it asks about is the endpoint's check
    (``Peer.allows`` or the room's ``policy.federation_peers``)."""

    def __init__(
        self,
        server_name: str,
        directory: PeerDirectory,
        *,
        clock: Callable[[], float] = time.time,
        max_seen: int = MAX_SEEN,
    ) -> None:
        self.server_name = server_name
        self._directory = directory
        self._clock = clock
        self._max_seen = max_seen
        self._seen: dict[tuple[str, str], float] = {}
        self._expiries: list[tuple[float, tuple[str, str]]] = []

    async def verify(self, request: web.Request) -> Peer:
        """The peer that signed ``request``; a problem naming the first check that fails (its
        detail never repeats the token or a part of it)."""
        return await self.check(request, self.identify(request))

    def identify(self, request: web.Request) -> Claimed:
        """Steps 1 and 2: a well-formed token naming a peer of this server (no key used yet)."""
        token, kid, claims = _parse(request.headers.get("Authorization", ""))
        peer = self._directory.store.peer(claims["iss"])
        if peer is None:
            raise Problem(
                "peer_not_allowed",
                "the sender is not a peer of this server (its operator has not added it)",
                403,
            )
        return Claimed(token, kid, claims, peer)

    async def check(self, request: web.Request, claimed: Claimed) -> Peer:
        """Steps 3 to 8, for a request ``identify`` accepted."""
        token, kid, claims, peer = claimed.token, claimed.kid, claimed.claims, claimed.peer
        iss: str = claims["iss"]
        key = await self._directory.public_key(peer, kid)
        if key is None:
            raise Problem("key_unknown", "the signing key is not one the issuer publishes", 401)
        try:
            jwt.PyJWS().decode_complete(token, key=key, algorithms=[ALGORITHM])
        except jwt.InvalidTokenError:
            raise _invalid("the signature does not verify") from None
        _check_claims(claims)
        if claims["aud"] != self.server_name:
            raise Problem("wrong_audience", f"the token is not for {self.server_name}", 401)
        now = self._clock()
        iat, exp = claims["iat"], claims["exp"]
        if exp <= now or iat > now + FUTURE_SKEW or exp - iat > LIFETIME:
            raise Problem(
                "signature_expired",
                f"the token is expired or not yet valid (it may live {LIFETIME} s; "
                "check both servers' clocks)",
                401,
            )
        body = await request.read()
        if (
            claims["method"] != request.method
            or claims["path"] != request.raw_path
            or claims["body_sha256"] != body_hash(body)
        ):
            raise _invalid("the token was signed for another method, path or body")
        self._remember(iss, claims["jti"], exp + REPLAY_MARGIN, now)
        return peer

    def _remember(self, iss: str, jti: str, until: float, now: float) -> None:
        """Refuse a jti seen before; keep it until ``until``."""
        while self._expiries and self._expiries[0][0] <= now:
            _, old = heapq.heappop(self._expiries)
            self._seen.pop(old, None)
        seen = (iss, jti)
        if seen in self._seen:
            raise Problem("replayed_request", "this request was already received", 401)
        if len(self._seen) >= self._max_seen:
            raise rate_limited(
                "too many signed requests in flight; retry later", self._expiries[0][0] - now
            )
        self._seen[seen] = until
        heapq.heappush(self._expiries, (until, seen))
