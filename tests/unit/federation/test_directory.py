"""Discovery, pinned keys and their refetch (rotation), and signed requests, against partner
servers served over real HTTPS in this process (certificates from a test CA); only the clock is
a fake."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.federation.directory import (
    KEYS_MAX_AGE,
    MAX_KEYS,
    REFETCH_SECONDS,
    FederationClient,
    PeerDirectory,
    PeerUnreachable,
    keys_of_jwks,
)
from gateway.federation.keys import SigningKeys
from gateway.federation.signing import RequestVerifier
from gateway.federation.store import MIGRATIONS, FederationStore, Peer
from gateway.ors.problems import Problem
from gateway.store import Store
from tests.federation.certs import CaKey, issue_cert, make_ca
from tests.gateway_process import free_port

HOST = "127.0.0.1"


def new_store() -> Store:
    store = Store(":memory:")
    store.migrate_plugin("federation", MIGRATIONS)
    return store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Partner:
    """A partner server: discovery, JWKS and a federation endpoint that verifies signatures and
    echoes who sent what. ``document`` may be changed to serve a bad discovery document."""

    def __init__(self, name: str, ca: CaKey, directory: Path) -> None:
        self.name = name
        self.keys = SigningKeys(new_store())
        self.port = free_port()
        self.url = f"https://{HOST}:{self.port}"
        self.hits: Counter[str] = Counter()
        self.peers = FederationStore(new_store())
        self.verifier: RequestVerifier | None = None
        self.document: dict[str, Any] = {
            "server": name,
            "versions": ["1"],
            "api_base": f"{self.url}/ors/v1",
            "keys_url": f"{self.url}/ors/v1/keys",
            "capabilities": ["websocket", "federation"],
        }
        cert, key = issue_cert(ca, directory, name, HOST)
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(cert, key)
        self.runner: web.AppRunner | None = None

    async def _discovery(self, request: web.Request) -> web.Response:
        self.hits["discovery"] += 1
        return web.json_response(self.document)

    async def _keys(self, request: web.Request) -> web.Response:
        self.hits["keys"] += 1
        return web.json_response(self.keys.jwks())

    async def _federation(self, request: web.Request) -> web.Response:
        assert self.verifier is not None
        try:
            peer = await self.verifier.verify(request)
        except Problem as problem:
            return problem.response()
        body = await request.read()
        return web.json_response(
            {"peer": peer.name, "path": request.raw_path, "body": body.decode()}, status=202
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/ors", self._discovery)
        app.router.add_get("/ors/v1/keys", self._keys)
        app.router.add_route("*", "/ors/v1/federation/{tail:.*}", self._federation)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, HOST, self.port, ssl_context=self.ssl).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CaKey]:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def trusting(ca: tuple[Path, CaKey]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca[0]))


@pytest.fixture
async def start_partner(
    ca: tuple[Path, CaKey], tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Partner] = []

    async def start(name: str = "de.test") -> Partner:
        partner = Partner(name, ca[1], tmp_path / name)
        await partner.start()
        started.append(partner)
        return partner

    yield start
    for partner in started:
        await partner.stop()


@pytest.fixture
async def directories() -> AsyncIterator[list[PeerDirectory]]:
    """Directories a test made, closed after it."""
    made: list[PeerDirectory] = []
    yield made
    for directory in made:
        await directory.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def directory(
    trusting: ssl.SSLContext, clock: Clock, directories: list[PeerDirectory]
) -> PeerDirectory:
    directory = PeerDirectory(FederationStore(new_store()), trusting, clock=clock)
    directories.append(directory)
    return directory


# discovery ---------------------------------------------------------------------------------------


async def test_discovery_finds_the_federation_api_and_the_keys(start_partner, directory) -> None:
    partner = await start_partner()
    info = await directory.discover("de.test", partner.url)
    assert info.name == "de.test"
    assert info.federation_url == f"{partner.url}/ors/v1/federation"
    assert info.keys == {partner.keys.current.kid: partner.keys.current.x}


async def test_discovery_refuses_a_server_of_another_name(start_partner, directory) -> None:
    partner = await start_partner("be.test")
    with pytest.raises(PeerUnreachable, match="'be.test', not 'de.test'"):
        await directory.discover("de.test", partner.url)


async def test_discovery_refuses_a_server_without_federation(start_partner, directory) -> None:
    partner = await start_partner()
    partner.document["capabilities"] = ["websocket"]
    with pytest.raises(PeerUnreachable, match="does not offer federation"):
        await directory.discover("de.test", partner.url)


async def test_discovery_refuses_plain_http_api_urls(start_partner, directory) -> None:
    partner = await start_partner()
    partner.document["api_base"] = f"http://{HOST}:{partner.port}/ors/v1"
    with pytest.raises(PeerUnreachable, match="api_base is not an https:// URL"):
        await directory.discover("de.test", partner.url)


async def test_discovery_refuses_keys_that_are_not_ed25519(start_partner, directory) -> None:
    partner = await start_partner()
    partner.keys.jwks = lambda: {"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]}  # type: ignore[method-assign]
    with pytest.raises(PeerUnreachable, match="no Ed25519 signing key"):
        await directory.discover("de.test", partner.url)


async def test_discovery_refuses_a_certificate_it_does_not_trust(
    start_partner, clock, directories
) -> None:
    partner = await start_partner()
    directory = PeerDirectory(FederationStore(new_store()), ssl.create_default_context())
    directories.append(directory)
    with pytest.raises(PeerUnreachable, match="TLS certificate is not trusted"):
        await directory.discover("de.test", partner.url)


async def test_discovery_refuses_a_certificate_for_another_name(start_partner, directory) -> None:
    partner = await start_partner()
    # the certificate names de.test and 127.0.0.1, not localhost
    with pytest.raises(PeerUnreachable, match="TLS certificate is not trusted"):
        await directory.discover("de.test", f"https://localhost:{partner.port}")


async def test_discovery_of_a_server_not_listening_says_so(directory) -> None:
    with pytest.raises(PeerUnreachable, match="cannot connect"):
        await directory.discover("de.test", f"https://{HOST}:{free_port()}")


async def test_an_unreachable_message_is_one_line(directory) -> None:
    with pytest.raises(PeerUnreachable) as error:
        await directory.discover("de.test", f"https://{HOST}:{free_port()}")
    assert "\n" not in str(error.value)


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Any]]:
    """Starts a TCP server on 127.0.0.1 answering each connection with ``answer`` (bytes, sent
    as soon as a request arrives; None: never answer); returns its https:// URL."""
    servers: list[asyncio.Server] = []

    async def start(answer: bytes | None) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            if answer is None:
                await asyncio.sleep(30)
            else:
                writer.write(answer)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, HOST, 0)
        servers.append(server)
        return f"https://{HOST}:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def test_discovery_gives_up_on_a_server_that_never_answers(
    raw_server, trusting, directories
) -> None:
    url = await raw_server(None)
    directory = PeerDirectory(FederationStore(new_store()), trusting, timeout=0.3)
    directories.append(directory)
    with pytest.raises(PeerUnreachable, match="no answer in 0.3 s"):
        await directory.discover("de.test", url)


async def test_discovery_refuses_a_server_without_tls(raw_server, directory) -> None:
    url = await raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    with pytest.raises(PeerUnreachable, match="TLS failed"):
        await directory.discover("de.test", url)


async def test_discovery_does_not_follow_redirects(start_partner, directory) -> None:
    partner = await start_partner()

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://127.0.0.1:1/.well-known/ors")

    partner._discovery = elsewhere  # type: ignore[method-assign]
    await partner.stop()
    await partner.start()
    with pytest.raises(PeerUnreachable, match="answered HTTP 302"):
        await directory.discover("de.test", partner.url)


async def test_discovery_refuses_an_oversized_document(start_partner, directory) -> None:
    partner = await start_partner()
    partner.document["padding"] = "x" * 70_000
    with pytest.raises(PeerUnreachable, match="larger than 65536 bytes"):
        await directory.discover("de.test", partner.url)


# pinned keys, refetch and rotation -------------------------------------------------------------


async def pinned(directory: PeerDirectory, partner: Partner, strict: bool = False) -> Peer:
    info = await directory.discover(partner.name, partner.url)
    peer = Peer(partner.name, url=partner.url, keys=info.keys, strict=strict)
    directory.store.put_peer(peer)
    partner.hits.clear()
    return peer


async def test_a_pinned_key_is_used_without_fetching(start_partner, directory) -> None:
    partner = await start_partner()
    peer = await pinned(directory, partner)
    assert await directory.public_key(peer, partner.keys.current.kid) is not None
    assert partner.hits["keys"] == 0


async def test_a_rotated_key_is_pinned_after_a_refetch(start_partner, directory) -> None:
    partner = await start_partner()
    peer = await pinned(directory, partner)
    old = partner.keys.current.kid
    new = partner.keys.rotate().kid
    assert await directory.public_key(peer, new) is not None
    assert partner.hits["keys"] == 1
    assert set(directory.store.peer("de.test").keys) == {old, new}  # type: ignore[union-attr]
    assert await directory.public_key(peer, old) is not None


async def test_a_retired_key_is_refused_once_refetched(start_partner, directory, clock) -> None:
    partner = await start_partner()
    peer = await pinned(directory, partner)
    old = partner.keys.current.kid
    new = partner.keys.rotate().kid
    assert await directory.public_key(peer, new) is not None
    partner.keys.retire(old)
    newest = partner.keys.rotate().kid
    clock.now += REFETCH_SECONDS
    assert await directory.public_key(peer, newest) is not None
    assert await directory.public_key(peer, old) is None
    assert set(directory.store.peer("de.test").keys) == {new, newest}  # type: ignore[union-attr]


async def test_a_retired_key_is_refused_within_the_keys_max_age(
    start_partner, directory, clock
) -> None:
    partner = await start_partner()
    peer = await pinned(directory, partner)
    old = partner.keys.current.kid
    new = partner.keys.rotate().kid
    assert await directory.public_key(peer, new) is not None
    partner.keys.retire(old)
    clock.now += KEYS_MAX_AGE - 1
    assert await directory.public_key(peer, old) is not None
    clock.now += 1
    assert await directory.public_key(peer, old) is None
    assert await directory.public_key(peer, new) is not None


async def test_unknown_keys_are_refetched_at_most_every_30_seconds(
    start_partner, directory, clock
) -> None:
    partner = await start_partner()
    peer = await pinned(directory, partner)
    assert await directory.public_key(peer, "unknown-1") is None
    assert await directory.public_key(peer, "unknown-2") is None
    assert partner.hits["keys"] == 1
    clock.now += REFETCH_SECONDS - 1
    assert await directory.public_key(peer, "unknown-3") is None
    assert partner.hits["keys"] == 1
    clock.now += 1
    assert await directory.public_key(peer, "unknown-4") is None
    assert partner.hits["keys"] == 2


async def test_a_strict_peer_is_never_refetched(start_partner, directory, clock) -> None:
    partner = await start_partner()
    peer = await pinned(directory, partner, strict=True)
    new = partner.keys.rotate().kid
    assert await directory.public_key(peer, new) is None
    clock.now += KEYS_MAX_AGE * 2
    assert await directory.public_key(peer, new) is None
    assert partner.hits == Counter()


async def test_a_failed_refetch_keeps_the_pinned_keys(start_partner, directory, clock) -> None:
    partner = await start_partner()
    peer = await pinned(directory, partner)
    kid = partner.keys.current.kid
    await partner.stop()
    clock.now += KEYS_MAX_AGE
    assert await directory.public_key(peer, kid) is not None
    assert directory.store.peer("de.test").keys == {kid: partner.keys.current.x}  # type: ignore[union-attr]


# signed requests ---------------------------------------------------------------------------------


async def test_a_signed_request_reaches_the_partner_verified(
    start_partner, directory, trusting, directories
) -> None:
    partner = await start_partner()
    await pinned(directory, partner)
    our_keys = SigningKeys(new_store())
    partner.peers.put_peer(Peer("fr.test", keys={our_keys.current.kid: our_keys.current.x}))
    partner_directory = PeerDirectory(partner.peers, trusting)
    directories.append(partner_directory)
    partner.verifier = RequestVerifier("de.test", partner_directory)
    client = FederationClient("fr.test", our_keys, directory)
    body = {"link_id": "l_0123456789abcdef", "room": "cabinet", "peer_room": "salon"}
    status, answer = await client.request("de.test", "POST", "/links?x=1", body)
    assert status == 202
    assert answer == {
        "peer": "fr.test",
        "path": "/ors/v1/federation/links?x=1",
        "body": json.dumps(body, separators=(",", ":")),
    }
    status, answer = await client.request("de.test", "DELETE", "/links/l_0123456789abcdef")
    assert (status, answer["peer"], answer["body"]) == (202, "fr.test", "")
    assert partner.hits["discovery"] == 0  # read once when pinned, then reused


async def test_a_partner_refusing_answers_its_problem(start_partner, directory, trusting) -> None:
    partner = await start_partner()
    await pinned(directory, partner)
    # fr.test is not a peer of the partner: its directory never fetches
    partner.verifier = RequestVerifier("de.test", PeerDirectory(partner.peers, trusting))
    client = FederationClient("fr.test", SigningKeys(new_store()), directory)
    status, answer = await client.request("de.test", "POST", "/links", {})
    assert (status, answer["code"]) == (403, "peer_not_allowed")


async def test_a_request_to_a_server_not_a_peer_is_refused(directory) -> None:
    client = FederationClient("fr.test", SigningKeys(new_store()), directory)
    with pytest.raises(PeerUnreachable, match="not a peer"):
        await client.request("xx.test", "POST", "/links", {})


async def test_a_request_to_a_stopped_partner_is_unreachable(start_partner, directory) -> None:
    partner = await start_partner()
    await pinned(directory, partner)
    await partner.stop()
    client = FederationClient("fr.test", SigningKeys(new_store()), directory)
    with pytest.raises(PeerUnreachable):
        await client.request("de.test", "POST", "/links", {})


async def test_discovery_is_read_again_after_a_request_fails(
    start_partner, directory, trusting, directories
) -> None:
    partner = await start_partner()
    good_api = partner.document["api_base"]
    partner.document["api_base"] = f"https://{HOST}:{free_port()}/ors/v1"
    await pinned(directory, partner)  # the discovery read now names a closed port
    our_keys = SigningKeys(new_store())
    partner.peers.put_peer(Peer("fr.test", keys={our_keys.current.kid: our_keys.current.x}))
    partner_directory = PeerDirectory(partner.peers, trusting)
    directories.append(partner_directory)
    partner.verifier = RequestVerifier("de.test", partner_directory)
    client = FederationClient("fr.test", our_keys, directory)
    with pytest.raises(PeerUnreachable, match="de.test: "):
        await client.request("de.test", "POST", "/links", {})
    partner.document["api_base"] = good_api
    status, answer = await client.request("de.test", "POST", "/links", {})
    assert (status, answer["peer"]) == (202, "fr.test")


# JWKS reading ------------------------------------------------------------------------------------

GOOD_X = SigningKeys(new_store()).current.x


@pytest.mark.parametrize(
    "entry",
    [
        {"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "X25519", "kid": "k", "x": GOOD_X},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": GOOD_X, "alg": "ES256"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": GOOD_X, "use": "enc"},
        {"kty": "OKP", "crv": "Ed25519", "x": GOOD_X},
        {"kty": "OKP", "crv": "Ed25519", "kid": "", "x": GOOD_X},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": GOOD_X[:-2]},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": GOOD_X + "="},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": 12},
        "not a key",
    ],
)
def test_a_jwks_entry_that_is_not_an_ed25519_signing_key_is_skipped(entry: object) -> None:
    good = {"kty": "OKP", "crv": "Ed25519", "kid": "good", "x": GOOD_X}
    assert keys_of_jwks({"keys": [entry, good]}, "here") == {"good": GOOD_X}


@pytest.mark.parametrize("jwks", [[], {}, {"keys": {}}, {"keys": []}, "keys"])
def test_a_document_without_usable_keys_is_refused(jwks: object) -> None:
    with pytest.raises(PeerUnreachable, match="^here: "):
        keys_of_jwks(jwks, "here")


def test_a_jwks_with_too_many_keys_is_refused() -> None:
    entries = [
        {"kty": "OKP", "crv": "Ed25519", "kid": f"k{n}", "x": GOOD_X} for n in range(MAX_KEYS + 1)
    ]
    with pytest.raises(PeerUnreachable, match="more than 16 keys"):
        keys_of_jwks({"keys": entries}, "here")
