"""SIP digest authentication, server and client (RFC 7616, RFC 8760, RFC 3261 section 22).

The server side is stateless: a nonce carries its own issue time and an HMAC over it, so any node
holding the secret can check it, and an expired but genuine nonce is reported as stale (RFC 7616
section 3.3) so the client retries without asking its user again.

Enumeration resistance (sipvicious svwar / svcrack): an unknown user is checked against a dummy
password with exactly the same hashing and comparison as a known user, and both get the same
answer, a fresh challenge; nothing in the answer or in the work done depends on whether the user
exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .message import Request, Response, make_response

MD5 = "MD5"
SHA_256 = "SHA-256"
MD5_SESS = "MD5-sess"
SHA_256_SESS = "SHA-256-sess"

_HASHES: dict[str, Callable[[bytes], Any]] = {
    MD5: hashlib.md5,
    SHA_256: hashlib.sha256,
    MD5_SESS: hashlib.md5,
    SHA_256_SESS: hashlib.sha256,
}

# RFC 7616 section 3.7: the server lists its challenges in order of preference.
DEFAULT_ALGORITHMS = (SHA_256, MD5)
DEFAULT_NONCE_LIFETIME = 300.0
# A nonce dated this far in the future (another node's clock) is still accepted.
_CLOCK_SKEW = 5.0

_NONCE_STAMP = struct.Struct("!d8s")
_NONCE_MAC_LENGTH = 16


class DigestError(ValueError):
    """A challenge or credentials header that cannot be read."""


def _hex_digest(algorithm: str, data: str) -> str:
    return _HASHES[algorithm](data.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_digest(value: str) -> dict[str, str]:
    """Parse `Digest k=v, k="v"` (a WWW-Authenticate or Authorization value); keys lower-cased."""
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest header: {scheme!r}")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise DigestError(f"parameter without value in {value!r}")
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            if i >= n:
                raise DigestError(f"unterminated quoted string in {value!r}")
            i += 1
            params[name] = "".join(chars)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
        if not name:
            raise DigestError(f"empty parameter name in {value!r}")
    return params


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    cnonce: str | None,
    nc: str | None,
    qop: str | None,
    body: bytes = b"",
) -> str:
    """The `response` value of RFC 7616 section 3.4.1 (qop auth or auth-int, or RFC 2069 without qop)."""
    if algorithm not in _HASHES:
        raise DigestError(f"unsupported algorithm {algorithm!r}")
    ha1 = _hex_digest(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = _hex_digest(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    if qop == "auth-int":
        body_hash = _HASHES[algorithm](body).hexdigest()
        ha2 = _hex_digest(algorithm, f"{method}:{uri}:{body_hash}")
    else:
        ha2 = _hex_digest(algorithm, f"{method}:{uri}")
    if qop:
        return _hex_digest(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hex_digest(algorithm, f"{ha1}:{nonce}:{ha2}")


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking credentials: the user when they are right, else a reason to re-challenge."""

    user: str | None
    # The digest was right but the nonce had expired: re-challenge with stale=true.
    stale: bool = False


class DigestServer:
    """Issues challenges and checks Authorization / Proxy-Authorization values for one realm."""

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        nonce_lifetime: float = DEFAULT_NONCE_LIFETIME,
    ) -> None:
        for algorithm in algorithms:
            if algorithm not in _HASHES:
                raise ValueError(f"unsupported algorithm {algorithm!r}")
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self.realm = realm
        self.algorithms = tuple(algorithms)
        self.nonce_lifetime = nonce_lifetime
        self._secret = secret
        self.opaque = hmac.new(secret, b"opaque:" + realm.encode(), "sha256").hexdigest()[:32]
        # Checked in place of the real password for unknown users, so both cost the same.
        self._dummy_password = hmac.new(secret, b"dummy-password", "sha256").hexdigest()

    # -- nonces ---------------------------------------------------------------------------------

    def _nonce_mac(self, stamp: bytes) -> bytes:
        message = stamp + self.realm.encode()
        return hmac.new(self._secret, message, "sha256").digest()[:_NONCE_MAC_LENGTH]

    def make_nonce(self, now: float) -> str:
        """A nonce dated `now`: issue time, 8 random bytes and an HMAC over both, base64url."""
        stamp = _NONCE_STAMP.pack(now, os.urandom(8))
        return base64.urlsafe_b64encode(stamp + self._nonce_mac(stamp)).decode().rstrip("=")

    def nonce_issued_at(self, nonce: str) -> float | None:
        """The issue time of a nonce this server signed, or None for a forged or mangled one."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != _NONCE_STAMP.size + _NONCE_MAC_LENGTH:
            return None
        stamp, mac = raw[: _NONCE_STAMP.size], raw[_NONCE_STAMP.size :]
        if not hmac.compare_digest(mac, self._nonce_mac(stamp)):
            return None
        issued_at: float = _NONCE_STAMP.unpack(stamp)[0]
        return issued_at

    # -- challenges -----------------------------------------------------------------------------

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, most preferred first."""
        nonce = self.make_nonce(now)
        values = []
        for algorithm in self.algorithms:
            parts = [
                f"realm={_quote(self.realm)}",
                f"nonce={_quote(nonce)}",
                f"opaque={_quote(self.opaque)}",
                f"algorithm={algorithm}",
                'qop="auth"',
            ]
            if stale:
                parts.append("stale=true")
            values.append("Digest " + ", ".join(parts))
        return values

    def unauthorized(
        self,
        request: Request,
        now: float,
        *,
        stale: bool = False,
        proxy: bool = False,
        to_tag: str | None = None,
    ) -> Response:
        """The 401 (or 407 when acting as a proxy) answering `request`, carrying fresh challenges."""
        status = 407 if proxy else 401
        response = make_response(request, status, to_tag=to_tag)
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.challenge(now, stale=stale):
            response.headers.add(header, value)
        return response

    # -- verification ---------------------------------------------------------------------------

    def check(
        self,
        request_method: str,
        authorization_header: str | None,
        lookup_password: Callable[[str], str | None],
        *,
        now: float,
        body: bytes = b"",
    ) -> Verdict:
        """Check credentials; `lookup_password(username)` returns the password or None if unknown.

        Unknown users go through the same hashing and comparison as known ones, and the verdict
        is the same as for a known user with a wrong password.
        """
        if not authorization_header:
            return Verdict(None)
        try:
            params = parse_digest(authorization_header)
        except DigestError:
            return Verdict(None)
        username = params.get("username", "")
        nonce = params.get("nonce", "")
        uri = params.get("uri", "")
        given = params.get("response", "").lower()
        algorithm = params.get("algorithm", MD5)
        qop = params.get("qop")
        cnonce = params.get("cnonce")
        nc = params.get("nc")
        well_formed = (
            bool(username)
            and params.get("realm") == self.realm
            and algorithm in self.algorithms
            and qop in ("auth", "auth-int")
            and bool(cnonce)
            and bool(nc)
            and params.get("opaque", self.opaque) == self.opaque
        )
        if algorithm not in _HASHES:
            algorithm = self.algorithms[0]

        password = lookup_password(username) if username else None
        known = password is not None
        expected = compute_response(
            algorithm=algorithm,
            username=username,
            realm=self.realm,
            password=password if password is not None else self._dummy_password,
            method=request_method,
            uri=uri,
            nonce=nonce,
            cnonce=cnonce,
            nc=nc,
            qop=qop,
            body=body,
        )
        digest_matches = hmac.compare_digest(expected.encode(), given.encode())

        issued_at = self.nonce_issued_at(nonce)
        nonce_genuine = issued_at is not None
        nonce_fresh = issued_at is not None and (
            now - self.nonce_lifetime <= issued_at <= now + _CLOCK_SKEW
        )
        if not (well_formed and known and digest_matches and nonce_genuine):
            return Verdict(None)
        if not nonce_fresh:
            return Verdict(None, stale=True)
        return Verdict(username)

    def verify(
        self,
        request_method: str,
        authorization_header: str | None,
        lookup_password: Callable[[str], str | None],
        *,
        now: float,
        body: bytes = b"",
    ) -> str | None:
        """The authenticated user, or None (see `check` for the stale case)."""
        return self.check(
            request_method, authorization_header, lookup_password, now=now, body=body
        ).user


# -- client -------------------------------------------------------------------------------------


def choose_challenge(values: Sequence[str]) -> str:
    """Pick the strongest Digest challenge we support among several (RFC 7616 section 3.7)."""
    preference = (SHA_256, SHA_256_SESS, MD5, MD5_SESS)
    best: tuple[int, str] | None = None
    for value in values:
        try:
            algorithm = parse_digest(value).get("algorithm", MD5)
        except DigestError:
            continue
        rank = next((i for i, a in enumerate(preference) if a.lower() == algorithm.lower()), None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, value)
    if best is None:
        raise DigestError("no supported Digest challenge")
    return best[1]


def answer_challenge(
    www_authenticate_value: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization (or Proxy-Authorization) value answering one Digest challenge."""
    challenge = parse_digest(www_authenticate_value)
    realm = challenge.get("realm", "")
    nonce = challenge.get("nonce", "")
    algorithm = challenge.get("algorithm", MD5)
    canonical = {name.lower(): name for name in _HASHES}
    if algorithm.lower() not in canonical:
        raise DigestError(f"unsupported algorithm {algorithm!r}")
    algorithm = canonical[algorithm.lower()]
    offered_qop = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop: str | None = None
    if "auth" in offered_qop:
        qop = "auth"
    elif "auth-int" in offered_qop:
        qop = "auth-int"
    elif offered_qop:
        raise DigestError(f"unsupported qop {challenge['qop']!r}")
    nc_value = f"{nc:08x}"
    if cnonce is None:
        cnonce = base64.urlsafe_b64encode(os.urandom(18)).decode()
    response = compute_response(
        algorithm=algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        cnonce=cnonce if qop else None,
        nc=nc_value if qop else None,
        qop=qop,
        body=body,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc_value}"]
    if "opaque" in challenge:
        parts.append(f"opaque={_quote(challenge['opaque'])}")
    return "Digest " + ", ".join(parts)
