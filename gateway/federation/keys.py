"""The server's Ed25519 signing keys (RFC 8032), published as a JWKS (RFC 7517, RFC 8037 OKP keys)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.store import Store

_SETTING = "federation.signing_key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKeys:
    """Loads the signing key from the store, making one on first start."""

    def __init__(self, store: Store) -> None:
        pem = store.get_setting(_SETTING)
        if pem is None:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            store.set_setting(_SETTING, pem)
        loaded = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(loaded, Ed25519PrivateKey)
        self.private_key = loaded
        raw = loaded.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_raw = raw
        self.key_id = _b64url(hashlib.sha256(raw).digest()[:12])

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(self.public_raw),
                    "kid": self.key_id,
                    "use": "sig",
                    "alg": "EdDSA",
                }
            ]
        }
