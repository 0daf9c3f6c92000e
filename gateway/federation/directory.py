"""Finding partner servers and their keys (spec sections 14.1, 14.2): discovery documents and JWKS
fetched over verified HTTPS, keys pinned in the store and refetched by the rotation rule; and the
client that sends signed requests to a partner's federation API."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from yarl import URL

from gateway.federation.keys import SigningKeys, public_key_of
from gateway.federation.signing import sign_request
from gateway.federation.store import FederationStore, Peer

log = logging.getLogger(__name__)

REFETCH_SECONDS = 30.0
"""A peer's keys are refetched for an unknown kid at most this often."""
KEYS_MAX_AGE = 3600.0
"""A peer's keys (not strict) are refetched when a request comes this long after the last fetch,
so a key the peer retired stops verifying within this time even if it never rotates again."""
DISCOVERY_SECONDS = 300.0
"""How long a peer's discovery document is reused to find its federation API (it is read again
sooner after a request to the peer fails at the transport level)."""
DISCOVERY_TIMEOUT = 4.0
"""Seconds for each of discovery's two reads, so that ``peer add`` answers within the CLI's 10 s."""
MAX_DOCUMENT = 64 * 1024
"""Largest discovery document or JWKS read."""
MAX_ANSWER = 1024 * 1024
"""Largest answer to a federation request read."""
MAX_KEYS = 16
CAPABILITY = "federation"


@dataclass
class PeerInfo:
    """What a partner's discovery document and JWKS say."""

    name: str
    federation_url: str
    """Its federation API base, ``api_base`` + ``/federation`` (no trailing slash)."""
    keys_url: str
    keys: dict[str, str]
    """kid -> x of its published Ed25519 keys."""


class PeerUnreachable(Exception):
    """The partner cannot be reached or does not answer as a federation server should (network,
    TLS, a bad discovery document or JWKS); the message is one line, safe to show an operator."""


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body, stopping once it is longer than ``limit`` (then ``limit`` + 1 bytes)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _https_url(value: object, what: str, where: str) -> str:
    if isinstance(value, str) and len(value) <= 2048:
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname and not parts.username:
            return value
    raise PeerUnreachable(f"{where}: its {what} is not an https:// URL")


def keys_of_jwks(jwks: object, where: str) -> dict[str, str]:
    """kid -> x of the Ed25519 signing keys of a JWKS (RFC 7517, RFC 8037); other keys are skipped;
    PeerUnreachable when it has none or is not a JWKS."""
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise PeerUnreachable(f"{where}: the keys document is not a JWKS")
    found: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        if entry.get("alg", "EdDSA") != "EdDSA" or entry.get("use", "sig") != "sig":
            continue
        kid, x = entry.get("kid"), entry.get("x")
        if not isinstance(kid, str) or not 0 < len(kid) <= 128 or not isinstance(x, str):
            continue
        try:
            public_key_of(x)
        except ValueError:
            continue
        found[kid] = x
    if not found:
        raise PeerUnreachable(f"{where}: the keys document has no Ed25519 signing key")
    if len(found) > MAX_KEYS:
        raise PeerUnreachable(f"{where}: the keys document has more than {MAX_KEYS} keys")
    return found


class PeerDirectory:
    """Discovery and keys of the peers in ``store``, over one HTTPS client verifying with
    ``ssl_context``. A peer's pinned keys change only by ``peer add`` or, for a peer that is not
    strict, by the refetch rule: a request signed with an unknown kid, or the first request
    KEYS_MAX_AGE after the last fetch, refetches the JWKS (at most once per REFETCH_SECONDS per
    peer); the keys found are pinned, the ones gone are retired. A failed refetch keeps the pinned
    keys."""

    def __init__(
        self,
        store: FederationStore,
        ssl_context: ssl.SSLContext,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = DISCOVERY_TIMEOUT,
    ) -> None:
        self.store = store
        self._ssl = ssl_context
        self._clock = clock
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._discovered: dict[tuple[str, str], tuple[float, PeerInfo]] = {}
        self._refetched: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def session(self) -> aiohttp.ClientSession:
        """The HTTPS client (made on first use, inside the event loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit_per_host=16),
                headers={"User-Agent": "rondpoint-federation"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            async with self.session().get(
                url,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                if response.status != 200:
                    raise PeerUnreachable(f"{url}: the {what} answered HTTP {response.status}")
                raw = await _read_at_most(response, MAX_DOCUMENT)
        except aiohttp.ClientConnectorCertificateError as error:
            raise PeerUnreachable(
                f"{url}: its TLS certificate is not trusted ({_one_line(error.certificate_error)})"
            ) from None
        except aiohttp.ClientSSLError as error:
            raise PeerUnreachable(f"{url}: TLS failed ({_one_line(error)})") from None
        except aiohttp.ClientConnectorError as error:
            raise PeerUnreachable(
                f"{url}: cannot connect ({_one_line(error.os_error.strerror or error)})"
            ) from None
        except TimeoutError:  # before OSError, its base class
            raise PeerUnreachable(f"{url}: no answer in {self._timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            raise PeerUnreachable(f"{url}: {_one_line(error)}") from None
        if len(raw) > MAX_DOCUMENT:
            raise PeerUnreachable(f"{url}: the {what} is larger than {MAX_DOCUMENT} bytes")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise PeerUnreachable(f"{url}: the {what} is not JSON") from None

    async def discover(self, name: str, url: str = "") -> PeerInfo:
        """Read ``name``'s discovery document (at ``url``, else ``https://{name}``) and its JWKS;
        PeerUnreachable unless it is the federation server ``name``."""
        base = (url or f"https://{name}").rstrip("/")
        where = f"{base}/.well-known/ors"
        document = await self._get_json(where, "discovery document")
        if not isinstance(document, dict):
            raise PeerUnreachable(f"{where}: the discovery document is not a JSON object")
        server = document.get("server")
        if server != name:
            shown = _one_line(server)[:80] if isinstance(server, str) else "no name"
            raise PeerUnreachable(f"{where}: the server there is {shown!r}, not {name!r}")
        capabilities = document.get("capabilities")
        if not isinstance(capabilities, list) or CAPABILITY not in capabilities:
            raise PeerUnreachable(f"{where}: {name} does not offer federation")
        api_base = _https_url(document.get("api_base"), "api_base", where)
        keys_url = _https_url(document.get("keys_url"), "keys_url", where)
        keys = keys_of_jwks(await self._get_json(keys_url, "keys document"), keys_url)
        info = PeerInfo(name, api_base.rstrip("/") + "/federation", keys_url, keys)
        self._discovered[(name, url)] = (self._clock(), info)
        return info

    async def federation_url(self, peer: Peer) -> str:
        """The peer's federation API base, from its discovery document (reused for a while)."""
        cached = self._discovered.get((peer.name, peer.url))
        if cached is not None and self._clock() - cached[0] < DISCOVERY_SECONDS:
            return cached[1].federation_url
        return (await self.discover(peer.name, peer.url)).federation_url

    def forget_discovery(self, peer: Peer) -> None:
        """Read the peer's discovery document again next time (a request to it failed)."""
        self._discovered.pop((peer.name, peer.url), None)

    async def public_key(self, peer: Peer, kid: str) -> Ed25519PublicKey | None:
        """The peer's key ``kid``, pinned or (not strict) found by a refetch; None when unknown."""
        if not peer.strict and (kid not in peer.keys or self._keys_are_old(peer)):
            await self._refetch(peer)
        x = peer.keys.get(kid)
        if x is None:
            return None
        try:
            return public_key_of(x)
        except ValueError:
            return None

    def _keys_are_old(self, peer: Peer) -> bool:
        last = self._refetched.get(peer.name)
        if last is None:  # pinned by peer add, or fetched before this process started
            self._refetched[peer.name] = self._clock()
            return False
        return self._clock() - last >= KEYS_MAX_AGE

    async def _refetch(self, peer: Peer) -> None:
        lock = self._locks.setdefault(peer.name, asyncio.Lock())
        async with lock:
            last = self._refetched.get(peer.name)
            now = self._clock()
            if last is not None and now - last < REFETCH_SECONDS:
                stored = self.store.peer(peer.name)
                if stored is not None:  # another request may have refetched meanwhile
                    peer.keys = stored.keys
                return
            self._refetched[peer.name] = now
            try:
                info = await self.discover(peer.name, peer.url)
            except PeerUnreachable as error:
                log.warning(
                    "cannot refetch a peer's keys",
                    extra={"peer": peer.name, "reason": str(error)},
                )
                return
            stored = self.store.peer(peer.name)
            if stored is None or stored.strict:  # removed or re-added meanwhile
                return
            added = sorted(info.keys.keys() - stored.keys.keys())
            retired = sorted(stored.keys.keys() - info.keys.keys())
            if added or retired or info.keys != stored.keys:
                stored.keys = dict(info.keys)
                self.store.put_peer(stored)
                log.info(
                    "peer keys refetched",
                    extra={
                        "peer": peer.name,
                        "pinned": ", ".join(added) or "-",
                        "retired": ", ".join(retired) or "-",
                    },
                )
            peer.keys = dict(info.keys)


class FederationClient:
    """Sends this server's signed requests to its peers' federation APIs."""

    def __init__(self, server_name: str, keys: SigningKeys, directory: PeerDirectory) -> None:
        self.server_name = server_name
        self._keys = keys
        self._directory = directory

    async def request(
        self,
        peer: str,
        method: str,
        path: str,
        body: object | None = None,
        *,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, Any]]:
        """Send ``method`` ``path`` (relative to the peer's federation base, e.g. "/links") with
        ``body`` as compact JSON; (status, the answer's JSON object or {}) for any HTTP answer,
        PeerUnreachable when there is none."""
        known = self._directory.store.peer(peer)
        if known is None:
            raise PeerUnreachable(f"{peer} is not a peer of this server")
        base = await self._directory.federation_url(known)
        url = URL(base + path)
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        token = sign_request(
            self._keys, self.server_name, known.name, method, url.raw_path_qs, data
        )
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._directory.session().request(
                method.upper(),
                url,
                data=data if body is not None else None,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await _read_at_most(response, MAX_ANSWER)
                status = response.status
        except aiohttp.ClientConnectorCertificateError as error:
            self._directory.forget_discovery(known)
            raise PeerUnreachable(
                f"{peer}: its TLS certificate is not trusted ({_one_line(error.certificate_error)})"
            ) from None
        except TimeoutError:  # before OSError, its base class
            self._directory.forget_discovery(known)
            raise PeerUnreachable(f"{peer}: no answer in {timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            self._directory.forget_discovery(known)
            raise PeerUnreachable(f"{peer}: {_one_line(error)}") from None
        if len(raw) > MAX_ANSWER:
            raise PeerUnreachable(f"{peer}: the answer is larger than {MAX_ANSWER} bytes")
        try:
            answer = json.loads(raw) if raw else {}
        except (ValueError, RecursionError):
            answer = {}
        return status, answer if isinstance(answer, dict) else {}
