"""The server's Ed25519 signing keys (RFC 8032), published as a JWKS (RFC 7517, RFC 8037 OKP keys),
with rotation: the current key signs, every kept key is published until it is retired."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.store import Store

_CURRENT = "federation.signing_key"
"""The current key's PEM (the only key of releases before rotation, which keep reading it)."""
_PREVIOUS = "federation.signing_keys.previous"
"""The PEMs of older keys still published (a JSON list), oldest first."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``; ValueError when it is not that."""
    if not isinstance(text, str) or not text or any(c in text for c in "=+/ \n"):
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_of(x: str) -> Ed25519PublicKey:
    """The Ed25519 public key whose raw bytes ``x`` holds in base64url; ValueError if none."""
    raw = b64url_decode(x)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(x: str) -> str:
    """What an operator compares out of band: the first 16 hex digits of the SHA-256 of the raw
    public key."""
    return hashlib.sha256(b64url_decode(x)).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    public_raw: bytes

    @property
    def x(self) -> str:
        return b64url(self.public_raw)

    @classmethod
    def from_pem(cls, pem: str) -> SigningKey:
        loaded = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("the stored federation signing key is not an Ed25519 key")
        raw = loaded.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        # "k" first: a base64url id may start with "-", which a command line takes for an option
        return cls("k" + b64url(hashlib.sha256(raw).digest()[:12]), loaded, raw)

    def pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x,
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }


def _new_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


class SigningKeys:
    """The keys kept in the store's settings, making one on first start. The gateway holds one
    instance; the admin API rotates and retires through it, so a running gateway signs with the
    new key at once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        current = store.get_setting(_CURRENT)
        if current is None:
            current = _new_pem()
            store.set_setting(_CURRENT, current)
        previous = json.loads(store.get_setting(_PREVIOUS) or "[]")
        self.current = SigningKey.from_pem(current)
        self._previous = [
            key
            for key in (SigningKey.from_pem(pem) for pem in previous)
            if key.kid != self.current.kid
        ]

    # the current key, as before rotation existed
    @property
    def key_id(self) -> str:
        return self.current.kid

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self.current.private_key

    @property
    def public_raw(self) -> bytes:
        return self.current.public_raw

    def all(self) -> list[SigningKey]:
        """Every published key, the current one first."""
        return [self.current, *reversed(self._previous)]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.all()]}

    def rotate(self) -> SigningKey:
        """Make a new current key; the old one stays published (partners holding requests signed
        with it still verify them) until ``retire``."""
        new = SigningKey.from_pem(_new_pem())
        previous = [*self._previous, self.current]
        self._save(new, previous)
        return new

    def retire(self, kid: str) -> None:
        """Stop publishing the older key ``kid``: partners refuse it once they refetch our keys.
        KeyError when no kept key has it; ValueError for the current key (rotate first)."""
        if kid == self.current.kid:
            raise ValueError(f"key {kid} is the current signing key: rotate before retiring it")
        kept = [key for key in self._previous if key.kid != kid]
        if len(kept) == len(self._previous):
            raise KeyError(kid)
        self._save(self.current, kept)

    def _save(self, current: SigningKey, previous: list[SigningKey]) -> None:
        db = self._store.connection
        db.execute("BEGIN")
        try:
            self._store.set_setting(_PREVIOUS, json.dumps([key.pem() for key in previous]))
            self._store.set_setting(_CURRENT, current.pem())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.current = current
        self._previous = previous
