"""The ``[federation]`` section: the partner gateways' TLS trust and the bounds of server-to-server
traffic (spec section 14)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError, check_positive


@dataclass
class FederationConfig:
    enabled: bool = True
    ca_file: str = ""
    """PEM certificates of CAs trusted for partners' HTTPS, beside the system's."""
    max_links_per_room: int = 8
    requests_per_second: float = 20.0
    """Each partner's sustained rate of signed requests; ``request_burst`` above it at once."""
    request_burst: int = 60
    heartbeat_seconds: float = 15.0
    """An empty transaction this often on every link; three missed and the link is retrying."""
    grace_seconds: float = 30.0
    """How long a silent partner's participants stay before they are removed."""

    def validate(self, where: str) -> None:
        check_positive(self, "federation", where, ["max_links_per_room", "request_burst"])
        for key in ("requests_per_second", "heartbeat_seconds", "grace_seconds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}: 'federation.{key}' must be a number, not {value!r}")
        for key in ("requests_per_second", "heartbeat_seconds"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{where}: 'federation.{key}' must be a positive number")
        if not self.grace_seconds >= 0:
            raise ConfigError(f"{where}: 'federation.grace_seconds' must be 0 or more")
        if self.ca_file:
            path = Path(self.ca_file)
            if not path.is_file():
                raise ConfigError(f"{where}: 'federation.ca_file' {self.ca_file!r} is not a file")
            try:
                self.ssl_context()
            except (ssl.SSLError, OSError, ValueError) as error:
                raise ConfigError(
                    f"{where}: 'federation.ca_file' {self.ca_file!r} holds no usable PEM "
                    f"certificate ({error})"
                ) from None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context verifying partners' certificates and names against the system's CAs
        and ``ca_file``."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        return context
