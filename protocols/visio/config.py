"""The Visio plugin's configuration section ``[visio]`` (docs/configuration.md, docs/visio.md)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from gateway.config import ConfigError, is_url

VISIO_SECRET_ENV = "RONDPOINT_VISIO_API_SECRET"
_IDENTITY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,32}")


@dataclass
class VisioConfig:
    """The Visio (LiveKit) instance that ``visio:`` room links join (protocols/visio)."""

    url: str = ""
    """LiveKit URL of the Visio instance, ws:// or wss:// (http(s) accepted). Empty: bridge off."""
    api_key: str = ""
    """LiveKit API key (what Visio's own SIP service is given)."""
    api_secret: str = field(default="", repr=False)
    """LiveKit API secret; $RONDPOINT_VISIO_API_SECRET wins over the file. Never logged."""
    backend_url: str = ""
    """Optional: the Visio backend API (https://visio.example/api/v1.0/), for the lobby."""
    identity_prefix: str = "rondpoint-"
    """LiveKit identities of the participants mirrored from here start with it."""
    reconnect_max_seconds: int = 30
    """Ceiling of the reconnection backoff."""

    @property
    def livekit_url(self) -> str:
        """``url`` with http(s) mapped to ws(s), as LiveKit's signalling wants it."""
        if self.url.startswith("https://"):
            return "wss://" + self.url[len("https://") :]
        if self.url.startswith("http://"):
            return "ws://" + self.url[len("http://") :]
        return self.url

    def apply_env(self) -> None:
        """The API secret may come from the environment rather than the file."""
        secret = os.environ.get(VISIO_SECRET_ENV, "")
        if secret:
            self.api_secret = secret

    def validate(self, where: str) -> None:
        """ConfigError naming the key; never shows the secret."""
        if self.url and not is_url(self.url, ("ws", "wss", "http", "https")):
            raise ConfigError(
                f"{where}: 'visio.url' must be the Visio LiveKit URL, ws://, wss://, http:// or "
                "https:// with a host (or empty to turn the Visio bridge off)"
            )
        if self.url and not self.api_key:
            raise ConfigError(f"{where}: 'visio.api_key' is required when 'visio.url' is set")
        if self.url and not self.api_secret:
            raise ConfigError(
                f"{where}: 'visio.api_secret' is required when 'visio.url' is set "
                f"(in the file, or in ${VISIO_SECRET_ENV})"
            )
        if self.backend_url and not is_url(self.backend_url, ("http", "https")):
            raise ConfigError(
                f"{where}: 'visio.backend_url' must be an http:// or https:// URL with a host, "
                "or empty"
            )
        if not _IDENTITY_PREFIX.fullmatch(self.identity_prefix):
            raise ConfigError(
                f"{where}: 'visio.identity_prefix' must be 1 to 32 letters, digits or '_.:-'"
            )
        if self.reconnect_max_seconds <= 0:
            raise ConfigError(f"{where}: 'visio.reconnect_max_seconds' must be a positive integer")
        if self.reconnect_max_seconds > 3600:
            raise ConfigError(f"{where}: 'visio.reconnect_max_seconds' must be at most 3600")
