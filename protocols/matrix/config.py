"""The Matrix plugin's configuration section ``[matrix]`` (docs/configuration.md, docs/matrix.md).

The homeserver, the application-service registration this gateway holds with it, and the LiveKit
focus its Element Call uses.
"""

from __future__ import annotations

import os
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import ConfigError, is_url

AS_TOKEN_ENV = "RONDPOINT_MATRIX_AS_TOKEN"
HS_TOKEN_ENV = "RONDPOINT_MATRIX_HS_TOKEN"
LIVEKIT_SECRET_ENV = "RONDPOINT_MATRIX_LIVEKIT_SECRET"
PUBLIC_MOUNT = "/matrix"
"""Where the plugin's public routes are (the homeserver's transactions, the focus token service)."""

_SERVER_NAME = re.compile(
    r"[A-Za-z0-9.-]{1,255}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?"
)
_LOCALPART = re.compile(r"[a-z0-9._=/+-]{1,64}")
_AS_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LOOPBACK_HOSTS = ("localhost",)


@dataclass
class MatrixConfig:
    """A homeserver this gateway is an application service of (protocols/matrix)."""

    homeserver_url: str = ""
    """https://matrix.example (http:// allowed for a loopback homeserver). Empty: Matrix off."""
    server_name: str = ""
    """The homeserver's server name (the part after ':' in user ids); required when on."""
    as_id: str = "rondpoint"
    """The registration's ``id``."""
    as_token: str = field(default="", repr=False)
    """Our token with the homeserver; $RONDPOINT_MATRIX_AS_TOKEN wins. Never logged."""
    hs_token: str = field(default="", repr=False)
    """The homeserver's token with us; $RONDPOINT_MATRIX_HS_TOKEN wins. Never logged."""
    sender_localpart: str = "rondpoint"
    """The bot's localpart: ``@{sender_localpart}:{server_name}``."""
    user_prefix: str = "rondpoint_"
    """Ghost users' localparts start with it (the registration's exclusive user namespace)."""
    appservice_url: str = ""
    """How the homeserver reaches us; empty: ``{server.public_url or base URL}/matrix``."""
    ca_file: str = ""
    """PEM bundle to verify the homeserver's TLS certificate (default: the system's CAs)."""
    livekit_url: str = ""
    """The focus's LiveKit as clients use it, ws:// or wss:// (http(s) accepted)."""
    livekit_api_key: str = ""
    livekit_api_secret: str = field(default="", repr=False)
    """$RONDPOINT_MATRIX_LIVEKIT_SECRET wins. Never logged."""
    focus_url: str = ""
    """The ``livekit_service_url`` our ghosts advertise; empty: the appservice URL (our own
    token service at ``/matrix/sfu/get``)."""
    focus_service: bool = True
    """Serve the focus token service (``POST /matrix/get_token`` and ``/matrix/sfu/get``)."""
    livekit_room_names: str = "hashed"
    """How a Matrix call's LiveKit room is named (protocols/matrix/rooms.py): ``"hashed"`` as
    lk-jwt-service 0.4.3+ and our token service do, ``"room_id"`` as lk-jwt-service up to 0.3."""
    reconnect_max_seconds: int = 30
    """Ceiling of the reconnection backoff."""

    @property
    def enabled(self) -> bool:
        return bool(self.homeserver_url)

    @property
    def bot_user_id(self) -> str:
        return f"@{self.sender_localpart}:{self.server_name}"

    @property
    def livekit_ws_url(self) -> str:
        """``livekit_url`` with http(s) mapped to ws(s), as LiveKit's signalling wants it."""
        for http, ws in (("https://", "wss://"), ("http://", "ws://")):
            if self.livekit_url.startswith(http):
                return ws + self.livekit_url[len(http) :]
        return self.livekit_url

    def appservice_url_for(self, base_url: str) -> str:
        """The URL the homeserver calls: ``appservice_url``, else ``{base_url}/matrix``."""
        return (self.appservice_url or base_url.rstrip("/") + PUBLIC_MOUNT).rstrip("/")

    def focus_url_for(self, base_url: str) -> str:
        """The ``livekit_service_url`` ghosts advertise: ``focus_url``, else our appservice URL."""
        return (self.focus_url or self.appservice_url_for(base_url)).rstrip("/")

    def apply_env(self) -> None:
        """Secrets may come from the environment rather than the file."""
        for key, name in (
            ("as_token", AS_TOKEN_ENV),
            ("hs_token", HS_TOKEN_ENV),
            ("livekit_api_secret", LIVEKIT_SECRET_ENV),
        ):
            value = os.environ.get(name, "")
            if value:
                setattr(self, key, value)

    def validate(self, where: str) -> None:
        """ConfigError naming the key; never shows a token or secret."""
        if not _AS_ID.fullmatch(self.as_id):
            raise ConfigError(f"{where}: 'matrix.as_id' must be 1 to 64 letters, digits or '._-'")
        for key in ("sender_localpart", "user_prefix"):
            if not _LOCALPART.fullmatch(getattr(self, key)):
                raise ConfigError(
                    f"{where}: 'matrix.{key}' must be 1 to 64 lowercase letters, digits or "
                    "'._=/+-' (a Matrix localpart)"
                )
        if self.sender_localpart.startswith(self.user_prefix):
            raise ConfigError(
                f"{where}: 'matrix.sender_localpart' must not start with 'matrix.user_prefix' "
                "(the bot is not a ghost)"
            )
        if self.livekit_room_names not in ("hashed", "room_id"):
            raise ConfigError(f"{where}: 'matrix.livekit_room_names' must be 'hashed' or 'room_id'")
        if self.reconnect_max_seconds <= 0 or self.reconnect_max_seconds > 3600:
            raise ConfigError(f"{where}: 'matrix.reconnect_max_seconds' must be 1 to 3600")
        for key in ("appservice_url", "focus_url"):
            value = getattr(self, key)
            if value and not is_url(value, ("http", "https")):
                raise ConfigError(
                    f"{where}: 'matrix.{key}' must be an http:// or https:// URL with a host, "
                    "or empty"
                )
        if self.ca_file:
            _check_ca_file(self.ca_file, where)
        if not self.homeserver_url:
            return
        if not is_url(self.homeserver_url, ("https", "http")):
            raise ConfigError(
                f"{where}: 'matrix.homeserver_url' must be an https:// URL with a host "
                "(or empty to turn Matrix off)"
            )
        if self.homeserver_url.startswith("http://") and not _is_loopback(self.homeserver_url):
            raise ConfigError(
                f"{where}: 'matrix.homeserver_url' must be https:// (http:// only for a homeserver "
                "on this machine's loopback)"
            )
        if not _SERVER_NAME.fullmatch(self.server_name):
            raise ConfigError(
                f"{where}: 'matrix.server_name' is required when 'matrix.homeserver_url' is set: "
                "the homeserver's server name, e.g. example.org"
            )
        for key, env in (("as_token", AS_TOKEN_ENV), ("hs_token", HS_TOKEN_ENV)):
            value = getattr(self, key)
            if len(value) < 16 or any(c.isspace() for c in value):
                raise ConfigError(
                    f"{where}: 'matrix.{key}' is required when 'matrix.homeserver_url' is set: "
                    f"at least 16 characters without spaces (in the file, or in ${env})"
                )
        if self.as_token == self.hs_token:
            raise ConfigError(f"{where}: 'matrix.as_token' and 'matrix.hs_token' must differ")
        if self.livekit_url:
            if not is_url(self.livekit_url, ("ws", "wss", "http", "https")):
                raise ConfigError(
                    f"{where}: 'matrix.livekit_url' must be the focus's LiveKit URL, ws://, "
                    "wss://, http:// or https:// with a host"
                )
            if not self.livekit_api_key:
                raise ConfigError(
                    f"{where}: 'matrix.livekit_api_key' is required when 'matrix.livekit_url' "
                    "is set"
                )
            if not self.livekit_api_secret:
                raise ConfigError(
                    f"{where}: 'matrix.livekit_api_secret' is required when "
                    f"'matrix.livekit_url' is set (in the file, or in ${LIVEKIT_SECRET_ENV})"
                )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context verifying the homeserver against the system's CAs and ``ca_file``."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        return context


def _check_ca_file(ca_file: str, where: str) -> None:
    if not Path(ca_file).is_file():
        raise ConfigError(f"{where}: 'matrix.ca_file' {ca_file!r} is not a file")
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError, ValueError) as error:
        raise ConfigError(
            f"{where}: 'matrix.ca_file' {ca_file!r} holds no usable PEM certificate ({error})"
        ) from None


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in _LOOPBACK_HOSTS or host == "::1" or host.startswith("127.")
