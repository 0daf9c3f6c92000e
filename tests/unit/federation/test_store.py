"""The federation tables (peers, links), the signing keys kept in the store's settings with their
rotation, the [federation] section's checks and the peer name and address checks."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import ConfigError
from gateway.federation.admin import check_peer_name, check_peer_url
from gateway.federation.config import FederationConfig
from gateway.federation.keys import SigningKeys, fingerprint
from gateway.federation.store import MIGRATIONS, FederationStore, LinkRecord, Peer
from gateway.store import Store
from tests.federation.certs import make_ca


def new_store(path: Path | str = ":memory:") -> Store:
    store = Store(path)
    store.migrate_plugin("federation", MIGRATIONS)
    return store


# peers and links ---------------------------------------------------------------------------------


def test_a_peer_is_kept_with_its_rooms_and_keys(tmp_path: Path) -> None:
    store = new_store(tmp_path / "db")
    FederationStore(store).put_peer(
        Peer("de.test", url="https://127.0.0.12:8443", rooms=["cabinet"], keys={"k1": "x1"})
    )
    store.close()
    (peer,) = FederationStore(new_store(tmp_path / "db")).peers()
    assert (peer.name, peer.url, peer.rooms, peer.keys, peer.strict) == (
        "de.test",
        "https://127.0.0.12:8443",
        ["cabinet"],
        {"k1": "x1"},
        False,
    )
    assert peer.added_at > 0


def test_adding_a_peer_again_replaces_it() -> None:
    peers = FederationStore(new_store())
    peers.put_peer(Peer("de.test", keys={"k1": "x1"}))
    peers.put_peer(Peer("de.test", keys={"k2": "x2"}, strict=True))
    assert [(p.name, p.keys, p.strict) for p in peers.peers()] == [("de.test", {"k2": "x2"}, True)]


def test_removing_a_peer_says_whether_it_was_there() -> None:
    peers = FederationStore(new_store())
    peers.put_peer(Peer("de.test"))
    assert peers.remove_peer("de.test") is True
    assert peers.remove_peer("de.test") is False
    assert peers.peer("de.test") is None


def test_a_peer_without_rooms_is_allowed_every_room() -> None:
    assert Peer("de.test").allows("cabinet")
    assert Peer("de.test", rooms=["salon"]).allows("salon")
    assert not Peer("de.test", rooms=["salon"]).allows("cabinet")


def test_links_are_found_by_id_and_by_their_rooms() -> None:
    peers = FederationStore(new_store())
    record = LinkRecord("l_0123456789abcdef", "cabinet", "de.test", "salon", initiator=True)
    peers.put_link(record)
    assert peers.link("l_0123456789abcdef") == record
    assert peers.find_link("cabinet", "de.test", "salon") == record
    assert peers.find_link("cabinet", "de.test", "other") is None
    peers.remove_link("l_0123456789abcdef")
    assert peers.links() == []


def test_a_new_link_id_for_the_same_rooms_replaces_the_old_one() -> None:
    peers = FederationStore(new_store())
    peers.put_link(LinkRecord("l_aaaaaaaaaaaaaaaa", "cabinet", "de.test", "salon", False))
    peers.put_link(LinkRecord("l_bbbbbbbbbbbbbbbb", "cabinet", "de.test", "salon", False))
    assert [r.link_id for r in peers.links()] == ["l_bbbbbbbbbbbbbbbb"]
    assert peers.link("l_aaaaaaaaaaaaaaaa") is None


# signing keys ------------------------------------------------------------------------------------


def test_a_data_dir_keeps_its_signing_key(tmp_path: Path) -> None:
    first = SigningKeys(new_store(tmp_path / "db"))
    again = SigningKeys(new_store(tmp_path / "db"))
    assert again.current.kid == first.current.kid
    assert again.jwks() == first.jwks()


def test_the_key_of_a_release_before_rotation_is_kept(tmp_path: Path) -> None:
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    store = new_store()
    store.set_setting("federation.signing_key", pem)
    keys = SigningKeys(store)
    assert keys.current.pem() == pem
    assert len(keys.jwks()["keys"]) == 1


def test_rotation_publishes_the_new_key_and_the_old_one(tmp_path: Path) -> None:
    keys = SigningKeys(new_store(tmp_path / "db"))
    old = keys.current.kid
    new = keys.rotate().kid
    assert keys.current.kid == new != old
    assert [key["kid"] for key in keys.jwks()["keys"]] == [new, old]
    reopened = SigningKeys(new_store(tmp_path / "db"))
    assert reopened.current.kid == new
    assert [key["kid"] for key in reopened.jwks()["keys"]] == [new, old]


def test_a_retired_key_is_no_longer_published(tmp_path: Path) -> None:
    keys = SigningKeys(new_store(tmp_path / "db"))
    old = keys.current.kid
    new = keys.rotate().kid
    keys.retire(old)
    assert [key["kid"] for key in keys.jwks()["keys"]] == [new]
    assert [key["kid"] for key in SigningKeys(new_store(tmp_path / "db")).jwks()["keys"]] == [new]
    assert old not in json.dumps(
        new_store(tmp_path / "db").get_setting("federation.signing_keys.previous")
    )


def test_the_current_key_cannot_be_retired() -> None:
    keys = SigningKeys(new_store())
    with pytest.raises(ValueError, match="rotate before retiring"):
        keys.retire(keys.current.kid)
    with pytest.raises(KeyError):
        keys.retire("no-such-key")


def test_published_keys_are_ed25519_okp_jwks() -> None:
    (jwk,) = SigningKeys(new_store()).jwks()["keys"]
    assert {jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]} == {"OKP", "Ed25519", "EdDSA", "sig"}
    assert "d" not in jwk
    assert len(fingerprint(jwk["x"])) == 16


# [federation] ------------------------------------------------------------------------------------


def test_the_default_section_is_valid() -> None:
    FederationConfig().validate("rondpoint.toml")


def test_whole_seconds_are_numbers_too() -> None:
    FederationConfig(heartbeat_seconds=2, requests_per_second=5, grace_seconds=0).validate("f")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_links_per_room", 0, "'federation.max_links_per_room' must be a positive integer"),
        ("request_burst", -1, "'federation.request_burst' must be a positive integer"),
        ("requests_per_second", 0.0, "'federation.requests_per_second' must be a positive"),
        ("heartbeat_seconds", -1.0, "'federation.heartbeat_seconds' must be a positive"),
        ("grace_seconds", -1.0, "'federation.grace_seconds' must be 0 or more"),
        ("heartbeat_seconds", "15", "'federation.heartbeat_seconds' must be a number, not '15'"),
        ("requests_per_second", True, "'federation.requests_per_second' must be a number"),
        ("ca_file", "/nonexistent/ca.pem", "'federation.ca_file' '/nonexistent/ca.pem' is not"),
    ],
)
def test_a_bad_value_is_refused_with_its_key(key: str, value: object, message: str) -> None:
    config = FederationConfig(**{key: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        config.validate("rondpoint.toml")


def test_a_ca_file_without_certificates_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="holds no usable PEM certificate"):
        FederationConfig(ca_file=str(tmp_path / "ca.pem")).validate("rondpoint.toml")


def test_the_ca_file_is_trusted_beside_the_system(tmp_path: Path) -> None:
    ca_path, _ = make_ca(tmp_path)
    context = FederationConfig(ca_file=str(ca_path)).ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    default = ssl.create_default_context()
    assert len(context.get_ca_certs()) == len(default.get_ca_certs()) + 1


# peer names and addresses ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["de.test", "partner.example", "a-b.c-d.example", "localhost"])
def test_server_names_are_dns_names(name: str) -> None:
    check_peer_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "De.test",
        "de_test",
        "-de.test",
        "de-.test",
        "de..test",
        "de.test.",
        "1.2.3.4",
        "a" * 64 + ".test",
        "de test",
        "dé.test",
        ".".join(["abc"] * 64),
    ],
)
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a server name"):
        check_peer_name(name)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://de.test", "https://de.test"),
        ("https://de.test/", "https://de.test"),
        ("https://127.0.0.12:8443", "https://127.0.0.12:8443"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_a_peer_address_is_https_host_and_port(url: str, canonical: str) -> None:
    assert check_peer_url(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "http://de.test",
        "de.test",
        "https://",
        "https://de.test/ors",
        "https://de.test?x=1",
        "https://de.test/#x",
        "https://user:pw@de.test",
        "https://de.test:0",
        "https://de.test:99999",
        "https://de_test",
        "ftp://de.test",
    ],
)
def test_other_addresses_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a server's address"):
        check_peer_url(url)


def test_our_key_ids_never_read_as_a_command_line_option() -> None:
    # base64url ids start with "-" one time in 32: `rondpoint keys retire -AbC...` would fail
    keys = SigningKeys(Store(":memory:"))
    kids = {keys.current.kid}
    for _ in range(100):
        kids.add(keys.rotate().kid)
    assert all(kid.startswith("k") for kid in kids)
    assert len(kids) == 101
