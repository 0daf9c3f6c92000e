"""ICE-lite responder: answer connectivity checks and pick the nominated address (RFC 8445 section 2.5)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from . import stun

_ICE_CHARS = string.ascii_letters + string.digits + "+/"


def random_ice_string(length: int) -> str:
    """An ice-char string (RFC 8839 section 5.4): ufrag >= 4 chars, pwd >= 22 chars."""
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


def local_ufrag_of(message: stun.StunMessage) -> str | None:
    """The receiving agent's ufrag, the part of USERNAME before the colon."""
    username = message.username
    if not username or ":" not in username:
        return None
    return username.split(":", 1)[0]


@dataclass(frozen=True)
class CheckResult:
    """A valid connectivity check: the response to send and whether the peer nominated this pair."""

    response: bytes
    nominated: bool


class IceLiteAgent:
    """The lite side of one ICE session; it never sends checks, it only answers them."""

    def __init__(self, ufrag: str | None = None, pwd: str | None = None) -> None:
        self.local_ufrag = ufrag or random_ice_string(8)
        self.local_pwd = pwd or random_ice_string(24)
        self._key = self.local_pwd.encode("ascii")
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None

    def set_remote(self, ufrag: str, pwd: str) -> None:
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd

    def handle_request(
        self, data: bytes, message: stun.StunMessage, addr: tuple[str, int]
    ) -> CheckResult | None:
        """Validate a Binding request addressed to us; None means drop it silently."""
        if message.message_type != stun.BINDING_REQUEST:
            return None
        username = message.username
        if not username or ":" not in username:
            return None
        local, remote = username.split(":", 1)
        if local != self.local_ufrag:
            return None
        if self.remote_ufrag is not None and remote != self.remote_ufrag:
            return None
        if not stun.verify_message_integrity(data, self._key):
            return None
        if not stun.verify_fingerprint(data):
            return None
        response = stun.binding_success(message.transaction_id, addr, self._key)
        return CheckResult(response, message.has(stun.ATTR_USE_CANDIDATE))
