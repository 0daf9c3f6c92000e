"""The federation plugin's admin routes, mounted at /api/v1/federation/: peers (the allow-list,
with their pinned keys) and this server's signing keys (rotation)."""

from __future__ import annotations

import inspect
import ipaddress
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.federation.config import FederationConfig
from gateway.federation.directory import MAX_KEYS, PeerDirectory, PeerUnreachable
from gateway.federation.keys import SigningKey, fingerprint, public_key_of
from gateway.federation.store import FederationStore, Peer
from gateway.federation.targets import is_server_name
from gateway.http.admin import authorize, string_field
from gateway.ors.problems import Problem, json_object
from gateway.rooms import RoomError, check_room_id

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)

PLUGIN = "federation"
MAX_PEER_ROOMS = 1000


def check_peer_name(name: str) -> None:
    """ValueError with a sentence unless ``name`` is a server name: a lowercase DNS host name."""
    if not is_server_name(name):
        raise ValueError(
            f"{name!r} is not a server name: a DNS name such as partner.example (lowercase "
            "letters, digits, '-' and '.')"
        )


def check_peer_url(url: str) -> str:
    """The URL without a trailing '/'; ValueError with a sentence unless it is https://host[:port]
    with no path, query, fragment or user."""
    sentence = f"{url!r} is not a server's address: https://HOST or https://HOST:PORT, nothing more"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(sentence) from None
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "?" in url
        or "#" in url
        or port == 0
    ):
        raise ValueError(sentence)
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            check_peer_name(host)
        except ValueError:
            raise ValueError(sentence) from None
    return url.rstrip("/")


def _service(gateway: Gateway) -> Any:
    running = gateway.running.get(PLUGIN)
    return None if running is None else running.service


def _config(gateway: Gateway) -> FederationConfig:
    config = getattr(gateway.config, PLUGIN, None)
    return config if isinstance(config, FederationConfig) else FederationConfig()


def peer_view(peer: Peer) -> dict[str, Any]:
    """A peer as the admin API shows it, each key with its fingerprint."""
    return {
        "name": peer.name,
        "url": peer.url,
        "rooms": list(peer.rooms),
        "strict": peer.strict,
        "added_at": peer.added_at,
        "keys": [
            {"kid": kid, "x": x, "fingerprint": fingerprint(x)}
            for kid, x in sorted(peer.keys.items())
        ],
    }


def _rooms(body: dict[str, Any]) -> list[str]:
    rooms = body.get("rooms", [])
    if not isinstance(rooms, list) or len(rooms) > MAX_PEER_ROOMS:
        raise Problem(
            "invalid_message",
            f"'rooms' is a list of at most {MAX_PEER_ROOMS} rooms",
            field="/rooms",
        )
    for index, room in enumerate(rooms):
        try:
            if not isinstance(room, str):
                raise RoomError("invalid_room_name", "a room name is a string")
            check_room_id(room)
        except RoomError as error:
            raise Problem("invalid_message", error.detail, field=f"/rooms/{index}") from None
    return sorted(set(rooms))


def _keys(body: dict[str, Any]) -> dict[str, str]:
    keys = body.get("keys", {})
    if not isinstance(keys, dict) or len(keys) > MAX_KEYS:
        raise Problem(
            "invalid_message",
            f"'keys' is an object of at most {MAX_KEYS} keys: key id -> Ed25519 public key",
            field="/keys",
        )
    for kid, x in keys.items():
        if not 0 < len(kid) <= 128 or not kid.isprintable():
            raise Problem("invalid_message", "a key id is 1 to 128 characters", field="/keys")
        try:
            if not isinstance(x, str):
                raise ValueError
            public_key_of(x)
        except ValueError:
            raise Problem(
                "invalid_message",
                f"key {kid!r} is not an Ed25519 public key (32 bytes in unpadded base64url)",
                field=f"/keys/{kid.replace('~', '~0').replace('/', '~1')}",
            ) from None
    return dict(keys)


async def list_peers(request: web.Request) -> web.Response:
    gateway = authorize(request)
    peers = FederationStore(gateway.store).peers()
    return web.json_response({"peers": [peer_view(peer) for peer in peers]})


async def add_peer(request: web.Request) -> web.Response:
    """Add or replace a peer: its keys fetched over verified TLS (discovery, then JWKS) and pinned,
    or the keys given (``strict``: pinned as given, never refetched)."""
    gateway = authorize(request)
    body = await json_object(request)
    name = string_field(body, "name", limit=253)
    try:
        check_peer_name(name)
    except ValueError as error:
        raise Problem("invalid_message", str(error), field="/name") from None
    if name == gateway.config.server.name:
        raise Problem("invalid_message", f"{name} is this server's own name", field="/name")
    url = string_field(body, "url", limit=2048)
    if url:
        try:
            url = check_peer_url(url)
        except ValueError as error:
            raise Problem("invalid_message", str(error), field="/url") from None
    rooms = _rooms(body)
    given = _keys(body)
    keys = given
    if not given:
        directory = PeerDirectory(FederationStore(gateway.store), _config(gateway).ssl_context())
        try:
            keys = (await directory.discover(name, url)).keys
        except PeerUnreachable as error:
            log.info("peer not added", extra={"peer": name, "reason": str(error)})
            raise Problem("peer_unreachable", f"cannot add {name}: {error}", 502) from None
        finally:
            await directory.close()
    peer = Peer(name=name, url=url, rooms=rooms, keys=keys, strict=bool(given))
    FederationStore(gateway.store).put_peer(peer)
    log.info(
        "peer added",
        extra={
            "peer": name,
            "keys": ", ".join(f"{kid} {fingerprint(x)}" for kid, x in sorted(keys.items())),
            "strict": peer.strict,
            "rooms": ", ".join(rooms) or "every room",
        },
    )
    return web.json_response(peer_view(peer), status=201)


async def remove_peer(request: web.Request) -> web.Response:
    gateway = authorize(request)
    name = request.match_info["name"]
    if not FederationStore(gateway.store).remove_peer(name):
        raise Problem("not_found", f"{name} is not a peer of this server", 404)
    log.info("peer removed", extra={"peer": name})
    service = _service(gateway)
    hook = getattr(service, "on_peer_removed", None)
    if hook is not None:
        result = hook(name)
        if inspect.isawaitable(result):
            await result
    return web.Response(status=204)


def _key_view(key: SigningKey, current: SigningKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "x": key.x,
        "fingerprint": fingerprint(key.x),
        "current": key.kid == current.kid,
    }


def _keys_answer(gateway: Gateway) -> dict[str, Any]:
    keys = gateway.signing_keys
    return {"keys": [_key_view(key, keys.current) for key in keys.all()]}


async def list_keys(request: web.Request) -> web.Response:
    gateway = authorize(request)
    return web.json_response(_keys_answer(gateway))


async def rotate_key(request: web.Request) -> web.Response:
    """A new current signing key; the previous ones stay published until retired."""
    gateway = authorize(request)
    key = gateway.signing_keys.rotate()
    log.info("signing key rotated", extra={"kid": key.kid, "fingerprint": fingerprint(key.x)})
    return web.json_response(_keys_answer(gateway), status=201)


async def retire_key(request: web.Request) -> web.Response:
    gateway = authorize(request)
    kid = request.match_info["kid"]
    try:
        gateway.signing_keys.retire(kid)
    except KeyError:
        raise Problem("not_found", f"no published signing key is {kid}", 404) from None
    except ValueError as error:
        raise Problem("invalid_state", str(error), 409) from None
    log.info("signing key retired", extra={"kid": kid})
    return web.Response(status=204)


def admin_app(gateway: Gateway) -> web.Application:
    """The routes under /api/v1/federation/ (every handler checks the admin token first)."""
    app = web.Application()
    app.router.add_get("/peers", list_peers)
    app.router.add_post("/peers", add_peer)
    app.router.add_delete("/peers/{name}", remove_peer)
    app.router.add_get("/keys", list_keys)
    app.router.add_post("/keys/rotate", rotate_key)
    app.router.add_delete("/keys/{kid}", retire_key)
    return app
