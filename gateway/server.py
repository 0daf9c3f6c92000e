"""The gateway: wires the store, rooms, tokens, media relay and protocol plugins together (the
process that serves it over HTTP: gateway/process.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import Config
from gateway.dialling import Diallers
from gateway.federation import SigningKeys
from gateway.links import LinkManager
from gateway.media.relay import MediaRelay
from gateway.plugins import PluginError, ProtocolPlugin, Running, installed
from gateway.ratelimit import RateLimiter
from gateway.rooms import (
    ActiveSpeakers,
    EventBus,
    RoomError,
    RoomManager,
    TrackKind,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
)
from gateway.store import (
    DATABASE_FILE,
    admin_token_path,
    new_admin_token,
    open_store,
)
from gateway.tokens import GATEWAY_KEY_ID, TokenAuthority, issuer_from_settings
from gateway.turn import TurnCredentials

if TYPE_CHECKING:
    from gateway.ors.session import OrsSession

log = logging.getLogger(__name__)

TOKEN_KEY_ID = GATEWAY_KEY_ID


class Gateway:
    """Everything one gateway process owns; HTTP handlers read it as
    ``request.config_dict[GATEWAY]`` (gateway/http/keys.py)."""

    def __init__(self, config: Config, plugins: Sequence[ProtocolPlugin] | None = None) -> None:
        self.config = config
        self.plugins: tuple[ProtocolPlugin, ...] = tuple(
            installed() if plugins is None else plugins
        )
        """The protocol plugins (gateway/plugins.py), started by ``start`` when their section says."""
        data = config.data_path
        data.mkdir(parents=True, exist_ok=True)
        self.store = open_store(data / DATABASE_FILE, self.plugins)
        self.bus = EventBus()
        self.rooms = RoomManager(
            self.store,
            self.bus,
            config.server.name,
            config.rooms.max_participants,
            max_lobby=config.rooms.max_lobby,
            chat_per_second=config.limits.chat_messages_per_second,
            chat_burst=config.limits.chat_burst,
            max_reconnecting=config.rooms.max_reconnecting,
            max_reconnecting_total=config.limits.reconnecting_participants,
        )
        keys = self.store.token_keys()
        if TOKEN_KEY_ID not in keys:
            keys[TOKEN_KEY_ID] = self.store.add_token_key(TOKEN_KEY_ID)
        issuers = [issuer_from_settings(issuer) for issuer in config.tokens.issuers]
        self.tokens = TokenAuthority(keys, TOKEN_KEY_ID, issuers)
        for issuer in issuers:
            log.info(
                "token issuer registered",
                extra={
                    "key_id": issuer.key_id,
                    "algorithm": issuer.algorithm,
                    "rooms": ", ".join(issuer.rooms),
                },
            )
        self.signing_keys = SigningKeys(self.store)
        self.relay = MediaRelay(
            host=config.media.host,
            port=config.media.port,
            port_range=(config.media.port_range_start, config.media.port_range_end),
            public_ip=config.media.public_ip,
            publish_bitrate=config.media.max_publish_bitrate,
            tcp_port=config.media.tcp_port,
        )
        self.relay.on_active_speakers = self._on_active_speakers
        self.turn = TurnCredentials(tuple(config.turn.servers), config.turn.secret, config.turn.ttl)
        """TURN servers and their shared secret ([turn]), for ``ice_servers``."""
        per_minute = config.limits.anonymous_requests_per_minute
        self.anonymous_limit = RateLimiter(per_minute, burst=per_minute)
        self.sessions: dict[tuple[str, str], OrsSession] = {}
        self.links = LinkManager(self)
        """Rooms' links to foreign rooms, through the running plugins' link adapters."""
        self.links.set_hints(
            {
                scheme: hint
                for plugin in self.plugins
                for scheme, hint in plugin.link_schemes.items()
            }
        )
        self.diallers = Diallers()
        """The running plugins' diallers (dial-out, transfer)."""
        self.running: dict[str, Running | None] = {}
        """Each plugin's contribution once started: None when its section turns it off, absent
        when it failed to start (see the log)."""
        self.new_admin_token: str | None = None
        self.ready = False
        self._tasks: list[asyncio.Task[None]] = []

    def ice_servers(self, identity: str) -> list[dict[str, Any]]:
        """STUN/TURN servers for a peer connection of IDENTITY (RTCIceServer dictionaries), with
        TURN credentials that expire after ``[turn] ttl``: the one way to get them (ORS joined,
        the LiveKit legs). Only for a participant who joined with a valid token."""
        return self.turn.ice_servers(identity, time.time())

    def _on_active_speakers(self, room_id: str, speakers: list[tuple[str, float]]) -> None:
        self.bus.publish(ActiveSpeakers(room_id, tuple(speakers)))

    def ensure_admin_token(self) -> str | None:
        """Create the first admin token (kept hashed, and in clear in a 0600 file for the CLI)."""
        if self.store.has_admin_tokens():
            return None
        return new_admin_token(self.store, self.config.data_path, "initial")

    def ensure_demo_room(self) -> str | None:
        demo = self.config.rooms.demo_room
        if not demo:
            return None
        with contextlib.suppress(RoomError):
            self.rooms.create(demo)
        return demo

    async def start(self) -> None:
        await self.relay.start()
        try:
            for plugin in self.plugins:
                await self._start_plugin(plugin)
        except PluginError:
            await self.stop()
            raise
        await self.links.start()
        self.new_admin_token = self.ensure_admin_token()
        self.ensure_demo_room()
        self._tasks.append(asyncio.create_task(self._apply_room_events()))
        self.ready = True

    async def _start_plugin(self, plugin: ProtocolPlugin) -> None:
        """Start one plugin and take its link adapters and diallers. A plugin its section turns on
        must come up: its failure stops the start (PluginError naming it), as a taken port would;
        a plugin that can run degraded (Visio when its server is unreachable) says so itself."""
        if plugin.start is None:
            return
        try:
            running = await plugin.start(self)
        except Exception as error:
            raise PluginError(f"{plugin.name}: {error or type(error).__name__}") from error
        self.running[plugin.name] = running
        if running is not None:
            for adapter in running.link_adapters:
                self.links.register(adapter)
            for dialler in running.diallers:
                self.diallers.register(dialler)

    async def stop(self) -> None:
        self.ready = False
        await self.links.stop()
        # all at once: each may wait CLOSE_GRACE_SECONDS for a client that does not answer
        await asyncio.gather(*(s.stop_serving() for s in list(self.sessions.values())))
        for task in self._tasks:
            task.cancel()
        for name, running in self.running.items():
            if running is not None:
                await self._stop_plugin(name, running)
        await self.relay.stop()
        self.store.close()

    async def _stop_plugin(self, name: str, running: Running) -> None:
        try:
            await running.stop()
        except Exception:
            log.exception("the %s plugin failed to stop cleanly", name)

    async def _apply_room_events(self) -> None:
        """Room-model changes that the relay must follow, whoever made them (ORS, SIP, a host)."""
        async for event in self.bus.subscribe():
            if isinstance(event, TrackMuted):
                self.relay.set_track_muted(event.room_id, event.track.id, event.track.muted)
            conference = self.relay.room_conference(event.room_id)
            if conference is None:
                continue
            if isinstance(event, TrackPublished) and event.track.kind is TrackKind.AUDIO:
                conference.add_track(event.track.id)
            elif isinstance(event, TrackUnpublished):
                conference.remove_track(event.track.id)


def banner(gateway: Gateway, media_port: int) -> str:
    config = gateway.config
    lines = [
        "",
        "  Rondpoint gateway is running",
        f"  web        {config.base_url}/",
        f"  media      udp {config.media.public_ip or config.media.host}:{media_port}"
        + (f", tcp {gateway.relay.tcp_port}" if gateway.relay.tcp_port else ""),
        *(f"  {plugin.name:<10} {plugin_line(gateway, plugin.name)}" for plugin in gateway.plugins),
        f"  data       {Path(config.server.data_dir).resolve()}",
    ]
    demo = config.rooms.demo_room
    if demo:
        lines.append(f"  demo room  {config.base_url}/r/{demo}")
    # the token itself is never printed here: stdout often ends up in a journal or a CI log
    token_file = admin_token_path(config.data_path)
    if gateway.new_admin_token:
        lines.append(f"  admin token  created in {token_file} (readable by this user only)")
    elif token_file.exists():
        lines.append(f"  admin token  in {token_file}")
    else:
        lines.append(f"  admin token  {token_file} is missing: 'rondpoint admin-token rotate'")
    return "\n".join(lines) + "\n"


def plugin_line(gateway: Gateway, name: str) -> str:
    """A plugin's line in the banner: its own words while it runs, "off" when its section turns
    it off (or it has nothing to start)."""
    running = gateway.running.get(name)
    return "off" if running is None else running.banner()
