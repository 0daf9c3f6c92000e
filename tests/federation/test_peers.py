"""Peers, the operator's allow-list, on real gateways over HTTPS: ``rondpoint peer add`` pins a
partner's keys fetched over verified TLS and shows their fingerprints; an unreachable server or
one with a certificate not trusted is refused and nothing is stored; the admin API needs its
token; ``rondpoint keys rotate`` and ``retire`` change what a running gateway publishes."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import secrets
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.federation.keys import b64url_decode
from tests.federation.certs import issue_cert, make_ca
from tests.federation.harness import PartnerGateway, Partners
from tests.gateway_process import free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

GATEWAYS = ("fr", "de")


def published_keys(gateway: PartnerGateway) -> list[dict[str, Any]]:
    """The gateway's JWKS as a partner reads it (its public /ors/v1/keys)."""
    status, body = gateway.admin("GET", "/ors/v1/keys")
    assert status == 200, body
    return list(body["keys"])


def fingerprint_of(x: str) -> str:
    return hashlib.sha256(b64url_decode(x)).hexdigest()[:16]


def peers_of(gateway: PartnerGateway) -> dict[str, dict[str, Any]]:
    return {
        peer["name"]: peer for peer in gateway.expect("GET", "/api/v1/federation/peers")["peers"]
    }


@pytest.fixture
def fr(partners: Partners) -> Iterator[PartnerGateway]:
    yield partners["fr"]
    for name in peers_of(partners["fr"]):
        partners["fr"].admin("DELETE", f"/api/v1/federation/peers/{name}")


@contextlib.contextmanager
def rogue_server(workdir: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 answering as de.test with a certificate from a CA no gateway
    trusts; its URL."""
    _, rogue_ca = make_ca(workdir / "rogue-ca", "Rogue CA")
    cert, key = issue_cert(rogue_ca, workdir / "rogue", "de.test", "127.0.0.1")
    port = free_port()
    document = json.dumps(
        {
            "server": "de.test",
            "api_base": f"https://127.0.0.1:{port}/ors/v1",
            "keys_url": f"https://127.0.0.1:{port}/ors/v1/keys",
            "capabilities": ["federation"],
        }
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_peer_add_pins_the_partners_keys_and_shows_them(fr, partners) -> None:
    de = partners["de"]
    (key,) = published_keys(de)
    added = fr.cli("peer", "add", "de.test", "--url", de.base_url, "--room", "cabinet")
    assert added.returncode == 0, added.stderr
    assert "peer de.test added, keys fetched over HTTPS and pinned; rooms: cabinet" in added.stdout
    assert f"key {key['kid']}  fingerprint {fingerprint_of(key['x'])}" in added.stdout
    peer = peers_of(fr)["de.test"]
    assert peer["url"] == de.base_url
    assert peer["rooms"] == ["cabinet"]
    assert peer["strict"] is False
    assert [(k["kid"], k["x"]) for k in peer["keys"]] == [(key["kid"], key["x"])]
    listed = fr.cli("peer", "list")
    assert listed.returncode == 0, listed.stderr
    assert "de.test" in listed.stdout and fingerprint_of(key["x"]) in listed.stdout


def test_peer_add_with_keys_pins_them_as_given(fr, partners) -> None:
    (key,) = published_keys(partners["de"])
    # be.test does not run: keys given out of band need no fetch
    added = fr.cli("peer", "add", "be.test", "--key", f"{key['kid']}:{key['x']}")
    assert added.returncode == 0, added.stderr
    assert "keys as given (strict)" in added.stdout
    assert fingerprint_of(key["x"]) in added.stdout
    peer = peers_of(fr)["be.test"]
    assert peer["strict"] is True
    assert [(k["kid"], k["x"]) for k in peer["keys"]] == [(key["kid"], key["x"])]


def test_peer_add_of_an_unreachable_server_fails_and_stores_nothing(fr) -> None:
    added = fr.cli("peer", "add", "de.test", "--url", f"https://127.0.0.12:{free_port()}")
    assert added.returncode != 0
    assert "cannot add de.test" in added.stderr and "cannot connect" in added.stderr
    assert "HTTP 502" in added.stderr
    assert peers_of(fr) == {}


def test_peer_add_of_a_server_with_an_untrusted_certificate_fails(fr, tmp_path) -> None:
    with rogue_server(tmp_path) as url:
        added = fr.cli("peer", "add", "de.test", "--url", url)
    assert added.returncode != 0
    assert "TLS certificate is not trusted" in added.stderr
    assert peers_of(fr) == {}


def test_peer_add_of_a_server_of_another_name_fails(fr, partners) -> None:
    added = fr.cli("peer", "add", "be.test", "--url", partners["de"].base_url)
    assert added.returncode != 0
    assert "the server there is 'de.test', not 'be.test'" in added.stderr
    assert peers_of(fr) == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Not A Name"}, "/name"),
        ({"name": "fr.test"}, "/name"),
        ({"name": "de.test", "url": "http://127.0.0.12"}, "/url"),
        ({"name": "de.test", "url": "https://127.0.0.12/ors"}, "/url"),
        ({"name": "de.test", "rooms": ["Bad Room"]}, "/rooms/0"),
        ({"name": "de.test", "keys": {"k": "not-a-key"}}, "/keys/k"),
    ],
)
def test_a_bad_peer_is_refused_with_its_field(fr, body, field) -> None:
    status, problem = fr.admin("POST", "/api/v1/federation/peers", body)
    assert (status, problem["code"], problem["field"]) == (400, "invalid_message", field)
    assert peers_of(fr) == {}


def test_peer_remove_forgets_the_peer(fr, partners) -> None:
    assert fr.cli("peer", "add", "de.test", "--url", partners["de"].base_url).returncode == 0
    removed = fr.cli("peer", "remove", "de.test")
    assert removed.returncode == 0, removed.stderr
    assert "peer de.test removed" in removed.stdout
    assert peers_of(fr) == {}
    again = fr.cli("peer", "remove", "de.test")
    assert again.returncode != 0 and "not a peer" in again.stderr


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/federation/peers"),
        ("POST", "/api/v1/federation/peers"),
        ("DELETE", "/api/v1/federation/peers/de.test"),
        ("GET", "/api/v1/federation/keys"),
        ("POST", "/api/v1/federation/keys/rotate"),
        ("DELETE", "/api/v1/federation/keys/anything"),
    ],
)
def test_the_federation_admin_api_needs_the_admin_token(fr, method, path) -> None:
    token, fr.admin_token = fr.admin_token, "not-the-token"
    try:
        status, problem = fr.admin(method, path, {"name": "de.test", "keys": {}})
    finally:
        fr.admin_token = token
    assert (status, problem["code"]) == (401, "unauthorized")
    assert "not-the-token" not in json.dumps(problem)
    assert peers_of(fr) == {}
    assert len(published_keys(fr)) == len(fr.expect("GET", "/api/v1/federation/keys")["keys"])


def test_keys_rotate_and_retire_change_what_a_running_gateway_publishes(partners) -> None:
    de = partners["de"]
    (old,) = published_keys(de)
    rotated = de.cli("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    current, previous = published_keys(de)
    assert previous["kid"] == old["kid"] and current["kid"] != old["kid"]
    assert (
        f"{current['kid']}  fingerprint {fingerprint_of(current['x'])}  current" in rotated.stdout
    )
    listed = de.cli("keys", "list")
    assert f"{old['kid']}  fingerprint {fingerprint_of(old['x'])}  published" in listed.stdout
    refused = de.cli("keys", "retire", current["kid"])
    assert refused.returncode != 0 and "rotate before retiring" in refused.stderr
    retired = de.cli("keys", "retire", old["kid"])
    assert retired.returncode == 0, retired.stderr
    assert [key["kid"] for key in published_keys(de)] == [current["kid"]]
    unknown = de.cli("keys", "retire", old["kid"])
    assert unknown.returncode != 0 and "no published signing key" in unknown.stderr


def test_a_partner_signing_with_a_rotated_key_is_verified_after_a_refetch(partners) -> None:
    fr, de = partners["fr"], partners["de"]
    partners.peer_both(fr, de)
    try:
        old = published_keys(de)[0]["kid"]
        assert de.cli("keys", "rotate").returncode == 0
        new = published_keys(de)[0]["kid"]
        assert [key["kid"] for key in peers_of(fr)["de.test"]["keys"]] == [old]
        room = f"rotation-{secrets.token_hex(3)}"
        fr.create_room(room)
        de.create_room(room)
        # de asks fr to link, signing with its new key: fr refetches de's keys and pins both
        partners.link_connected(de, room, fr, room)
        assert {key["kid"] for key in peers_of(fr)["de.test"]["keys"]} == {old, new}
        partners.unlink(de, room, fr, room)
    finally:
        for a, b in ((fr, de), (de, fr)):
            a.admin("DELETE", f"/api/v1/federation/peers/{b.name}")
