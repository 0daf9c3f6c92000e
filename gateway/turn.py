"""Short-lived TURN credentials for the participants' peer connections: the TURN REST API's
shared-secret scheme (draft-uberti-behave-turn-rest-00 section 2.2), which coturn checks with
``use-auth-secret`` and ``static-auth-secret``; TURN URIs as RFC 7065 writes them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any

TURN_URI = re.compile(
    r"(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)
"""RFC 7065 section 3.1 (``turn:host[:port][?transport=udp|tcp]``), hosts limited to names and
addresses: no user part, no other query."""


def is_turn_uri(value: str) -> bool:
    match = TURN_URI.fullmatch(value)
    if match is None:
        return False
    port = match["port"]
    return port is None or 1 <= int(port) <= 65535


def rest_username(expiry: int, user_id: str) -> str:
    """The TURN REST username: the expiry (Unix seconds), a colon, the user it is for."""
    return f"{expiry}:{user_id}"


def rest_credential(secret: str, username: str) -> str:
    """The TURN REST password: base64 of HMAC-SHA1 of the username keyed by the shared secret."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnCredentials:
    """The operator's TURN servers and shared secret; hands each participant credentials that
    expire TTL seconds later (the server refuses them after that with 401)."""

    servers: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    ttl: int = 86400

    def ice_servers(self, user_id: str, now: float) -> list[dict[str, Any]]:
        """RTCIceServer dictionaries (ORS ``joined.ice_servers``); empty without servers."""
        if not self.servers or not self.secret:
            return []
        username = rest_username(int(now) + self.ttl, user_id)
        return [
            {
                "urls": list(self.servers),
                "username": username,
                "credential": rest_credential(self.secret, username),
            }
        ]
