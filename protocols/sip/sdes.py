"""SDES keying of SRTP for phone calls (RFC 4568 a=crypto), on RTP/SAVP (RFC 3711).

Only what libsrtp and the phones we test with agree on: AES_CM_128_HMAC_SHA1_80 and _32, one
master key without MKI. Keys travel in the SDP, so SDES is only as safe as the signalling:
use SIP over TLS with it.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

import pylibsrtp

SUITES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
KEY_AND_SALT = 30  # 16-byte master key + 14-byte master salt (RFC 4568 6.2.1)


@dataclass(frozen=True)
class Crypto:
    tag: int
    suite: str
    key: bytes
    """Master key and salt, 30 bytes."""

    @property
    def profile(self) -> int:
        return SUITES[self.suite]

    def attribute(self) -> str:
        """The a=crypto value: ``tag suite inline:key``."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"

    def answer(self) -> Crypto:
        """Our own key for the same tag and suite (each direction has its own key)."""
        return Crypto(self.tag, self.suite, os.urandom(KEY_AND_SALT))


def parse_crypto(value: str) -> Crypto | None:
    """One a=crypto value, or None when its suite or key form is not one we use."""
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit() or parts[1] not in SUITES:
        return None
    key_params = parts[2]
    if not key_params.startswith("inline:") or "," in key_params:
        return None
    key_info = key_params[len("inline:") :].split("|")
    if len(key_info) > 2:  # an MKI: several master keys, which we do not use
        return None
    try:
        key = base64.b64decode(key_info[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(key) != KEY_AND_SALT:
        return None
    return Crypto(int(parts[0]), parts[1], key)


def new_offer(tag: int = 1) -> Crypto:
    return Crypto(tag, "AES_CM_128_HMAC_SHA1_80", os.urandom(KEY_AND_SALT))
