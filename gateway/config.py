"""Configuration: embedded defaults, overridden by an optional TOML file, validated at start.

The hub's sections are here; each installed protocol plugin (gateway/plugins.py) brings its own
section ``[name]``, read by the same loader and validated by the plugin. Every key is documented in
docs/configuration.md. An invalid file stops the start with a message naming the file, the key and
what is allowed (``ConfigError``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from gateway.plugins import ProtocolPlugin


TURN_SECRET_ENV = "RONDPOINT_TURN_SECRET"
"""The environment variable that gives ``[turn] secret`` when the file does not."""


class ConfigError(Exception):
    """The configuration file cannot be used; the message says where and why."""


@dataclass
class ServerConfig:
    name: str = "localhost"
    """Server name announced in discovery and used as the token issuer."""
    data_dir: str = "rondpoint-data"
    public_url: str = ""
    """Base URL users reach; empty means http://{http.host}:{http.port}."""


@dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: list[str] = field(default_factory=list)
    """Reverse proxies (addresses or CIDRs) whose X-Forwarded-For names the client's address."""


@dataclass
class MediaConfig:
    host: str = "127.0.0.1"
    """Address the media UDP socket binds to."""
    port: int = 40000
    """The shared UDP port for every WebRTC endpoint (ICE-lite, demultiplexed)."""
    port_range_start: int = 40001
    port_range_end: int = 40100
    """Fallback ports, tried in order when the shared port cannot be bound."""
    public_ip: str = ""
    """Address announced in ICE candidates; empty means media.host."""
    tcp_port: int = 40000
    """ICE-TCP passive candidates (RFC 6544) on this TCP port, for networks that block UDP (a busy
    port falls back to the port range); 0 turns them off."""
    max_publish_bitrate: int = 2_500_000
    """Ceiling in bits per second on what each publisher sends, told by REMB with the receiver
    reports; below it the browser's own congestion controller follows the relay's transport-cc
    feedback."""


@dataclass
class TurnConfig:
    """TURN servers handed to participants with short-lived credentials (gateway/turn.py)."""

    servers: list[str] = field(default_factory=list)
    """turn: / turns: URIs (RFC 7065), e.g. "turns:turn.example.org:5349?transport=tcp"."""
    secret: str = field(default="", repr=False)
    """The TURN server's static-auth-secret (coturn use-auth-secret); also $RONDPOINT_TURN_SECRET."""
    ttl: int = 86400
    """Seconds a participant's credentials stay valid."""


@dataclass
class RoomsConfig:
    demo_room: str = "demo"
    """Room created at start and linked in the start banner; empty for none."""
    anonymous_create: bool = True
    """Whether the web page may create a room for an anonymous visitor."""
    guest_token_ttl: int = 6 * 3600
    max_participants: int = 100
    """Joined participants per room, hosts included; the lobby does not count."""
    max_lobby: int = 50
    """Participants waiting in one room's lobby."""
    reconnect_grace: int = 20
    """Seconds a joined participant whose connection dropped is kept for its client to resume
    (ORS 6.6); 0: it leaves at once, and nobody resumes."""
    max_reconnecting: int = 50
    """Participants one room keeps while they reconnect; beyond, one more leaves at once."""


@dataclass
class LimitsConfig:
    max_message_bytes: int = 64 * 1024
    """Largest ORS WebSocket message accepted."""
    anonymous_requests_per_minute: int = 30
    """Per source address, for token and PIN requests that need no credentials."""
    media_consent_seconds: int = 30
    """A WHIP/WHEP session whose client sent no ICE consent check for this long is ended (RFC 7675)."""
    chat_messages_per_second: int = 5
    """Chat messages each participant may send per second, after a burst of ``chat_burst``."""
    chat_burst: int = 20
    reconnecting_participants: int = 1000
    """Participants the server keeps while they reconnect, in all rooms together."""


@dataclass
class TokenIssuerConfig:
    """A ``[[tokens.issuers]]`` table: a backend that may sign join tokens (spec 5.1), such as a
    Visio backend with its LiveKit API key and secret. Exactly one of ``secret``, ``secret_env``
    and ``public_key``."""

    key_id: str = ""
    """The tokens' ``iss`` claim: for a LiveKit/Visio backend, its API key."""
    secret: str = field(default="", repr=False)
    """HS256 shared secret (at least 32 characters). Never logged, never shown in errors."""
    secret_env: str = ""
    """Name of an environment variable holding the HS256 secret, to keep it out of the file."""
    public_key: str = ""
    """Path of a PEM public key (Ed25519 -> EdDSA, RSA -> RS256, P-256 -> ES256)."""
    rooms: list[str] = field(default_factory=list)
    """Rooms this issuer may grant: names or glob patterns ("visio-*"); ["*"] for every room.
    Required: an issuer with no rooms is refused rather than silently granted all."""


@dataclass
class TokensConfig:
    """Join-token issuers registered by the operator, besides the gateway itself."""

    issuers: list[TokenIssuerConfig] = field(default_factory=list)


@dataclass
class LogConfig:
    level: str = "info"
    format: str = "text"


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    rooms: RoomsConfig = field(default_factory=RoomsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    log: LogConfig = field(default_factory=LogConfig)
    sections: dict[str, Any] = field(default_factory=lambda: plugin_sections(None))
    """The installed plugins' sections by name, reached as ``config.sip``, ``config.visio``."""

    def __getattr__(self, name: str) -> Any:
        """A plugin's section (only called when ``name`` is none of the hub's attributes)."""
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"no configuration section {name!r} (is its plugin installed?)")

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def base_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return self.listener_url

    @property
    def listener_url(self) -> str:
        """The HTTP listener as reached from this machine (the admin commands' default): behind a
        reverse proxy the public URL keeps /api/v1 closed, so admins talk to the listener itself."""
        scheme = "https" if self.http.tls_cert else "http"
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.http.host, self.http.host)
        host = host if ":" not in host else f"[{host}]"
        return f"{scheme}://{host}:{self.http.port}"


def plugin_sections(plugins: Sequence[ProtocolPlugin] | None) -> dict[str, Any]:
    """Each plugin's section with its defaults, by name (``None``: the installed plugins)."""
    if plugins is None:
        from gateway.plugins import installed

        plugins = installed()
    return {plugin.name: plugin.config() for plugin in plugins if plugin.config is not None}


def load_config(
    path: str | Path | None = None, plugins: Sequence[ProtocolPlugin] | None = None
) -> Config:
    """Return the embedded defaults, overridden by the TOML file at ``path`` if given; ``plugins``
    (default: the installed ones) bring their sections, checked even for a plugin turned off."""
    config = Config(sections=plugin_sections(plugins))
    if path is None:
        _apply_env(config)
        return config
    where = str(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{where}: not a text file (not UTF-8 at byte {e.start}); expected TOML"
        ) from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    _apply_sections(config, raw, where)
    _apply_env(config)
    _validate(config, where)
    for section in config.sections.values():
        validate = getattr(section, "validate", None)
        if validate is not None:
            validate(where)
    return config


def _apply_env(config: Config) -> None:
    """Secrets that may come from the environment rather than the file (plugins' ``apply_env``)."""
    if not config.turn.secret:
        config.turn.secret = os.environ.get(TURN_SECRET_ENV, "")
    for section in config.sections.values():
        apply_env = getattr(section, "apply_env", None)
        if apply_env is not None:
            apply_env()


def _apply_sections(config: Config, raw: dict[str, Any], where: str) -> None:
    """The file's top-level tables: the hub's sections and the plugins'."""
    hub = {f.name for f in fields(config)} - {"sections"}
    known = hub | set(config.sections)
    for key, value in raw.items():
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"{where}: unknown key '{key}' (allowed here: {allowed})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a table ([{key}])")
        _apply(getattr(config, key), value, where, prefix=f"{key}.")


def _apply(target: Any, raw: dict[str, Any], where: str, prefix: str) -> None:
    hints = get_type_hints(type(target))
    known = {f.name for f in fields(target)}
    secret = {f.name for f in fields(target) if not f.repr}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"{where}: unknown key '{name}' (allowed here: {allowed})")
        current = getattr(target, key)
        item_type = _list_item_dataclass(hints[key])
        if item_type is not None:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ConfigError(f"{where}: '{name}' must be a list of tables ([[{name}]])")
            items = []
            for index, table in enumerate(value):
                item = item_type()
                _apply(item, table, where, prefix=f"{name}[{index}].")
                items.append(item)
            setattr(target, key, items)
            continue
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{name}' must be a table ([{name}])")
            _apply(current, value, where, prefix=f"{name}.")
            continue
        expected = hints[key]
        # a secret (a field kept out of repr) is never shown back, even when mistyped
        shown = "the value given" if key in secret else repr(value)
        if expected is bool and not isinstance(value, bool):
            raise ConfigError(f"{where}: '{name}' must be true or false, not {shown}")
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}: '{name}' must be an integer, not {shown}")
        if expected is str and not isinstance(value, str):
            raise ConfigError(f"{where}: '{name}' must be a string, not {shown}")
        setattr(target, key, value)


def _list_item_dataclass(hint: Any) -> Any:
    """X for a ``list[X]`` field whose items are dataclasses (arrays of tables), else None."""
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        if is_dataclass(item):
            return item
    return None


def check_choices(
    section: object, name: str, where: str, choices: Mapping[str, Sequence[str]]
) -> None:
    """ConfigError unless each key of ``choices`` holds one of its values (plugins use it too)."""
    for key, allowed in choices.items():
        value = getattr(section, key)
        if value not in allowed:
            raise ConfigError(
                f"{where}: '{name}.{key}' is {value!r}; allowed: {', '.join(allowed)}"
            )


def check_ports(section: object, name: str, where: str, keys: Sequence[str]) -> None:
    """ConfigError unless each key holds a port, 1 to 65535."""
    for key in keys:
        if not 1 <= getattr(section, key) <= 65535:
            raise ConfigError(f"{where}: '{name}.{key}' must be a port between 1 and 65535")


def check_positive(section: object, name: str, where: str, keys: Sequence[str]) -> None:
    """ConfigError unless each key holds a positive integer."""
    for key in keys:
        if getattr(section, key) <= 0:
            raise ConfigError(f"{where}: '{name}.{key}' must be a positive integer")


def check_addresses(
    section: object, name: str, where: str, keys: Sequence[str], optional: bool = False
) -> None:
    """ConfigError unless each key holds an IP address (``optional``: or is empty)."""
    for key in keys:
        value = getattr(section, key)
        if optional and not value:
            continue
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ConfigError(f"{where}: '{name}.{key}' must be an IP address") from None


def is_url(value: str, schemes: Sequence[str]) -> bool:
    """Whether VALUE is a URL with one of SCHEMES and a host."""
    try:
        parsed = urllib.parse.urlsplit(value)
    except ValueError:
        return False
    return parsed.scheme in schemes and bool(parsed.hostname)


def _validate(config: Config, where: str) -> None:
    check_choices(
        config.log,
        "log",
        where,
        {"level": ("debug", "info", "warning", "error"), "format": ("text", "json")},
    )
    check_ports(config.http, "http", where, ("port",))
    check_ports(config.media, "media", where, ("port", "port_range_start", "port_range_end"))
    check_positive(config.media, "media", where, ("max_publish_bitrate",))
    if config.media.tcp_port and not 1 <= config.media.tcp_port <= 65535:
        raise ConfigError(f"{where}: 'media.tcp_port' must be a port between 1 and 65535, or 0")
    check_positive(
        config.rooms,
        "rooms",
        where,
        ("guest_token_ttl", "max_participants", "max_lobby", "max_reconnecting"),
    )
    if not 0 <= config.rooms.reconnect_grace <= _MAX_RECONNECT_GRACE:
        raise ConfigError(
            f"{where}: 'rooms.reconnect_grace' must be between 0 (off) and "
            f"{_MAX_RECONNECT_GRACE} seconds"
        )
    check_positive(
        config.limits,
        "limits",
        where,
        (
            "max_message_bytes",
            "anonymous_requests_per_minute",
            "media_consent_seconds",
            "chat_messages_per_second",
            "chat_burst",
            "reconnecting_participants",
        ),
    )
    check_addresses(config.http, "http", where, ("host",))
    check_addresses(config.media, "media", where, ("host",))
    check_addresses(config.media, "media", where, ("public_ip",), optional=True)
    if config.media.port_range_end < config.media.port_range_start:
        raise ConfigError(f"{where}: 'media.port_range_end' must be >= 'media.port_range_start'")
    if bool(config.http.tls_cert) != bool(config.http.tls_key):
        raise ConfigError(f"{where}: 'http.tls_cert' and 'http.tls_key' must be set together")
    _validate_trusted_proxies(config.http.trusted_proxies, where)
    from gateway.rooms import ROOM_ID_PATTERN

    demo = config.rooms.demo_room
    if demo and not ROOM_ID_PATTERN.fullmatch(demo):
        raise ConfigError(
            f"{where}: 'rooms.demo_room' must match {ROOM_ID_PATTERN.pattern} or be empty"
        )
    _validate_tokens(config.tokens, where)
    _validate_turn(config.turn, where)


_MAX_RECONNECT_GRACE = 300
_MIN_TURN_SECRET = 16
_MAX_TURN_TTL = 7 * 86400


def _validate_turn(turn: TurnConfig, where: str) -> None:
    """[turn]: URIs a browser accepts, and a secret whenever there are servers (never shown)."""
    from gateway.turn import is_turn_uri

    servers = turn.servers
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        raise ConfigError(
            f"{where}: 'turn.servers' must be a list of TURN URIs, "
            'like ["turns:turn.example.org:5349?transport=tcp"]'
        )
    for server in servers:
        if not is_turn_uri(server):
            raise ConfigError(
                f"{where}: 'turn.servers' has {server!r}, which is not a TURN URI "
                "(turn:HOST[:PORT][?transport=udp|tcp] or turns:..., RFC 7065)"
            )
    if servers and not turn.secret:
        raise ConfigError(
            f"{where}: 'turn.servers' needs the TURN server's shared secret (its "
            f"static-auth-secret): 'turn.secret' or the environment variable {TURN_SECRET_ENV}"
        )
    if turn.secret and len(turn.secret) < _MIN_TURN_SECRET:
        raise ConfigError(
            f"{where}: 'turn.secret' must be at least {_MIN_TURN_SECRET} characters long"
        )
    if not 60 <= turn.ttl <= _MAX_TURN_TTL:
        raise ConfigError(
            f"{where}: 'turn.ttl' must be between 60 and {_MAX_TURN_TTL} seconds (7 days)"
        )


def _validate_trusted_proxies(value: object, where: str) -> None:
    """[http] trusted_proxies: a list of IP addresses or networks (CIDR), IPv4 or IPv6."""
    key = "http.trusted_proxies"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{where}: '{key}' must be a list of IP addresses or networks, "
            'like ["127.0.0.1", "10.0.0.0/8", "::1"]'
        )
    for item in value:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError:
            raise ConfigError(
                f"{where}: '{key}' has {item!r}, which is not an IP address or a network "
                "(CIDR) with its host bits zero, like 10.0.0.0/8 or fd00::/8"
            ) from None


_KEY_ID = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")
_ROOM_PATTERN = re.compile(r"[a-z0-9*?-]{1,64}")


def _validate_tokens(tokens: TokensConfig, where: str) -> None:
    """[[tokens.issuers]]; messages name the key and never show a secret."""
    from gateway.tokens import GATEWAY_KEY_ID, issuer_from_settings

    seen: set[str] = set()
    for index, issuer in enumerate(tokens.issuers):
        key = f"tokens.issuers[{index}]"
        if not issuer.key_id:
            raise ConfigError(
                f"{where}: '{key}.key_id' is required: the tokens' iss claim (a LiveKit API key)"
            )
        if not _KEY_ID.fullmatch(issuer.key_id):
            raise ConfigError(
                f"{where}: '{key}.key_id' must be 1 to 128 letters, digits or '_.:@/+=-'"
            )
        if issuer.key_id == GATEWAY_KEY_ID:
            raise ConfigError(
                f"{where}: '{key}.key_id' {GATEWAY_KEY_ID!r} is the gateway's own key id; "
                "choose another"
            )
        if issuer.key_id in seen:
            raise ConfigError(f"{where}: '{key}.key_id' {issuer.key_id!r} is registered twice")
        seen.add(issuer.key_id)
        given = [k for k in ("secret", "secret_env", "public_key") if getattr(issuer, k)]
        if len(given) != 1:
            raise ConfigError(
                f"{where}: '{key}' needs exactly one of 'secret', 'secret_env' (the name of an "
                "environment variable holding the secret) or 'public_key' (a PEM file)"
                + (f"; it has {' and '.join(repr(k) for k in given)}" if given else "")
            )
        if issuer.secret_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", issuer.secret_env):
            raise ConfigError(
                f"{where}: '{key}.secret_env' must be the name of an environment variable"
            )
        rooms = issuer.rooms
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise ConfigError(f"{where}: '{key}.rooms' must be a list of room names or patterns")
        if not rooms:
            raise ConfigError(
                f"{where}: '{key}.rooms' is required: the rooms this issuer may grant, as names "
                'or patterns like "visio-*"; ["*"] for every room'
            )
        for room in rooms:
            if not _ROOM_PATTERN.fullmatch(room):
                raise ConfigError(
                    f"{where}: '{key}.rooms' has {room!r}: a room name or a pattern of "
                    "lowercase letters, digits, '-', '*' and '?'"
                )
        try:
            issuer_from_settings(issuer)
        except ValueError as error:
            raise ConfigError(f"{where}: '{key}': {error}") from None
