"""Protocol plugins: the one seam through which a foreign system joins the hub.

SIP, Visio, and tomorrow Matrix, partner gateways or another country's platform are plugins. A
plugin is an installed distribution that names a ``ProtocolPlugin`` object in the entry point
group ``rondpoint.protocols`` (pyproject.toml)::

    [project.entry-points."rondpoint.protocols"]
    sip = "protocols.sip.plugin:plugin"

The hub imports nothing from ``protocols/``: ``installed()`` finds what is installed, and the
process asks each plugin, through this module's types only, for

- its configuration section ``[name]`` (a dataclass with defaults, read by gateway/config.py like
  the hub's own sections, with an optional ``validate(where)`` and ``apply_env()``);
- its store migrations (its own tables, versioned apart from the hub's: gateway/store);
- an aiohttp sub-application for its admin routes, mounted at ``/api/v1/{name}/`` behind the admin
  token (``gateway.http.admin.authorize``);
- an aiohttp sub-application for its public routes, which foreign servers call (a partner
  gateway's signed requests, a homeserver's transactions), mounted at ``public_path``;
- CLI subcommands (``rondpoint {command}``), which talk to the admin API as the hub's do;
- once the gateway runs and its section turns it on: link adapters for the schemes it can link
  (``visio:``), diallers for the schemes it can call (``sip:``, ``tel:``), how a phone dials into
  a room (``DialIn``: ORS ``GET /ors/v1/rooms/{room}/dial-in``), a banner line, metrics.

Spokes never import each other: a phone dialling a Visio room goes through gateway/links.py.
docs/architecture.md ("Writing a protocol plugin") walks through the test plugin in
tests/plugin_example.
"""

from __future__ import annotations

import argparse
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric

    from gateway.links import LinkAdapter
    from gateway.server import Gateway

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rondpoint.protocols"

PLUGIN_NAME = re.compile(r"[a-z][a-z0-9_]{1,31}")
"""A plugin's name: its config section, its admin path and its store key."""

HUB_SECTIONS = frozenset({"server", "http", "media", "rooms", "limits", "tokens", "log"})
"""Names a plugin may not take: the hub's own configuration sections."""

_PUBLIC_PATH = re.compile(r"/(?:[a-z0-9][a-z0-9_.-]{0,31}/){1,4}")
RESERVED_PUBLIC_PATHS = ("/api/", "/metrics/", "/ors/v1/rooms/", "/.well-known/", "/static/")
"""Public paths a plugin may not take: the hub's own."""

Migration = str | Callable[[sqlite3.Connection], None]
"""One step of a plugin's schema: an SQL script, or a function given the connection (for a step
that must look before it changes, such as adopting tables an older release made)."""


class PluginError(Exception):
    """An installed plugin cannot be used (it fails to load, or clashes with another); the message
    names the entry point and the problem, on one line, for the operator."""


class DialError(ValueError):
    """The target cannot be dialled (a bad address, no route for a number, no free port); the
    message is safe to show to whoever asked."""


class DialledCall(Protocol):
    """A call a dialler placed, as the admin API and ORS ``dial`` report it."""

    call_ref: str

    def status(self) -> dict[str, object]: ...


class Dialler(Protocol):
    """Calls a target of one of ``schemes`` into a room (a phone rung through a trunk, say).

    A target without a scheme (``0612345678``, ``+33612345678``) is a ``tel:`` number."""

    schemes: Sequence[str]

    def dial(self, room_id: str, target: str, route: str | None) -> DialledCall:
        """Start calling; DialError when ``target`` (or ``route``, e.g. a trunk name) cannot be
        used. Returns at once: the call rings in the background."""
        ...

    def calls_of(self, room_id: str) -> list[dict[str, object]]:
        """The room's calls in progress this dialler placed or answered (for ``room show``)."""
        ...

    def owns(self, participant_id: str) -> bool:
        """Whether the participant is one of this dialler's calls (it can be transferred)."""
        ...

    def transfer(self, participant_id: str, target: str) -> None:
        """Send an owned participant's call elsewhere (SIP REFER); DialError when refused."""
        ...


@dataclass(frozen=True)
class DialIn:
    """How a phone reaches one room through a plugin (spec 4.5): the numbers to dial and the SIP
    URIs to call, each leading to this room or to a PIN prompt that the room's PIN opens."""

    numbers: Sequence[str] = ()
    """Phone numbers as a trunk delivers them ("+33140506070")."""
    sip_uris: Sequence[str] = ()
    """``sip:`` or ``sips:`` URIs ("sip:cabinet@sip.example.gouv.fr")."""


class Commands(Protocol):
    """Where a plugin adds its ``rondpoint`` subcommands (argparse's subparsers)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


@dataclass
class Running:
    """What a started plugin contributes while the gateway runs."""

    stop: Callable[[], Awaitable[None]]
    """Called once at shutdown, before the relay and the store close."""
    banner: Callable[[], str] = lambda: "on"
    """The plugin's line in the start banner, e.g. "udp/tcp 127.0.0.1:5060"."""
    link_adapters: Sequence[LinkAdapter] = ()
    diallers: Sequence[Dialler] = ()
    metrics: Callable[[], Iterable[Metric]] | None = None
    """Prometheus metric families collected on each scrape of /metrics."""
    dial_in: Callable[[str], DialIn] | None = None
    """How a phone reaches the room of this id through the plugin (numbers, SIP URIs), for ORS
    ``GET /ors/v1/rooms/{room}/dial-in``; empty when it does not. Called on the event loop: quick."""
    capabilities: Sequence[str] = ()
    """Added to the ``capabilities`` of the discovery document (spec 3.1), e.g. "federation"."""
    service: Any = None
    """The plugin's own running object, for its admin routes: ``gateway.running[name].service``."""


@dataclass(frozen=True)
class ProtocolPlugin:
    """The registration object a protocol package exposes (``protocols/sip/plugin.py``)."""

    name: str
    """Config section ``[name]``, admin path ``/api/v1/{name}/``, store key; see PLUGIN_NAME."""
    summary: str
    """One line for ``rondpoint --help`` and the docs."""
    config: type[Any] | None = None
    """A dataclass whose fields all have defaults: the ``[name]`` section. It may define
    ``validate(self, where: str) -> None`` (raising gateway.config.ConfigError) and
    ``apply_env(self) -> None`` (secrets taken from the environment)."""
    migrations: Sequence[Migration] = ()
    """Its tables, in order; released steps are never edited (gateway/store/migrations.py)."""
    link_schemes: Mapping[str, str] = field(default_factory=dict)
    """Schemes this plugin can link or dial when it runs, each with the sentence that tells an
    operator what to configure when it does not (``visio``: "[visio] url ... must be set")."""
    normalize_target: Callable[[str], str] | None = None
    """The canonical form of a target of its ``link_schemes`` ("visio:UUID"), or ValueError with a
    sentence: checks targets written in configuration files before the plugin runs, and its link
    adapter's ``normalize`` uses it too."""
    admin: Callable[[Gateway], web.Application] | None = None
    """Its admin routes, mounted at ``/api/v1/{name}/`` whether or not it runs; handlers call
    ``gateway.http.admin.authorize(request)`` first."""
    public: Callable[[Gateway], web.Application] | None = None
    """Its public routes, called by foreign servers rather than operators, mounted at
    ``public_path`` whether or not it runs; each handler authenticates its caller itself (a
    signature, a shared token) and answers RFC 9457 problems."""
    public_path: str = ""
    """Where ``public`` is mounted: ``/{name}/`` when empty; otherwise a path such as
    ``/ors/v1/federation/`` (starting and ending with "/")."""
    cli: Callable[[Commands], None] | None = None
    """Adds its ``rondpoint`` subcommands; each sets ``run=function(args, config)``."""
    start: Callable[[Gateway], Awaitable[Running | None]] | None = None
    """Starts it on a gateway whose store and relay are open; None when its section turns it off.
    An exception stops the gateway's start (a taken port, an unreadable certificate): a plugin
    that can run degraded catches its own errors and says so in its banner line."""


@cache
def installed() -> tuple[ProtocolPlugin, ...]:
    """Every plugin installed in this Python environment, sorted by name; PluginError when one
    cannot be loaded or two claim the same name (the gateway must not start half-configured)."""
    found: dict[str, ProtocolPlugin] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {point.name!r} ({point.value}) in group {ENTRY_POINT_GROUP}"
        try:
            plugin = point.load()
        except Exception as error:
            raise PluginError(
                f"{where}: cannot be loaded ({type(error).__name__}: {error})"
            ) from error
        check(plugin, where)
        if plugin.name in found:
            raise PluginError(f"{where}: another installed plugin is named {plugin.name!r}")
        found[plugin.name] = plugin
    return tuple(found[name] for name in sorted(found))


def check(plugin: object, where: str) -> None:
    """PluginError unless ``plugin`` is a ProtocolPlugin with a usable name and public path."""
    if not isinstance(plugin, ProtocolPlugin):
        raise PluginError(f"{where}: is {type(plugin).__name__}, not a ProtocolPlugin")
    if not PLUGIN_NAME.fullmatch(plugin.name) or plugin.name in HUB_SECTIONS:
        raise PluginError(
            f"{where}: name {plugin.name!r} must be 2 to 32 lowercase letters, digits or '_', "
            f"and not one of the hub's sections ({', '.join(sorted(HUB_SECTIONS))})"
        )
    path = plugin.public_path
    if path and not (_PUBLIC_PATH.fullmatch(path) and not path.startswith(RESERVED_PUBLIC_PATHS)):
        raise PluginError(
            f"{where}: public_path {path!r} must be a path such as /name/ (lowercase segments, "
            f"starting and ending with '/') outside {', '.join(RESERVED_PUBLIC_PATHS)}"
        )


def public_path(plugin: ProtocolPlugin) -> str:
    """Where the plugin's public routes are mounted."""
    return plugin.public_path or f"/{plugin.name}/"
