"""TURN credentials (TURN REST shared-secret scheme, as coturn's use-auth-secret checks them) and
the [turn] and [media] tcp_port configuration: accepted forms, refusals that name the key and never
show the secret, and the ice_servers a participant gets."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, load_config
from gateway.ors import schemas
from gateway.server import Gateway
from gateway.turn import TurnCredentials, is_turn_uri, rest_credential, rest_username

SECRET = "north-wind-blows-0123"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rondpoint.toml"
    path.write_text(text)
    return path


def test_credential_is_base64_hmac_sha1_of_the_username() -> None:
    # Computed independently: printf %s "$username" | openssl dgst -sha1 -hmac "$secret" -binary | base64
    assert rest_credential(SECRET, "1767230000:p_R2d9xKq7LmWc") == "owA1pQZkaIEk8/1UkD3pGcX+ykE="
    assert len(base64.b64decode(rest_credential(SECRET, "x"))) == 20  # a SHA-1 digest


def test_username_is_the_expiry_then_the_participant_as_coturn_reads_it() -> None:
    assert rest_username(1767230000, "p_R2d9xKq7LmWc") == "1767230000:p_R2d9xKq7LmWc"


def test_ice_servers_expire_ttl_seconds_after_the_join() -> None:
    turn = TurnCredentials(("turns:turn.example.org:5349?transport=tcp",), SECRET, ttl=3600)
    (server,) = turn.ice_servers("p_abc", now=1767226400.7)
    assert server["urls"] == ["turns:turn.example.org:5349?transport=tcp"]
    assert server["username"] == "1767230000:p_abc"
    assert server["credential"] == rest_credential(SECRET, "1767230000:p_abc")
    later = turn.ice_servers("p_abc", now=1767226500)[0]
    assert later["username"] == "1767230100:p_abc" and later["credential"] != server["credential"]
    other = turn.ice_servers("p_other", now=1767226400)[0]
    assert other["credential"] != server["credential"]


def test_ice_servers_are_valid_in_an_ors_joined_message() -> None:
    turn = TurnCredentials(("turn:198.18.0.1:3478", "turns:turn.example.org:5349"), SECRET)
    message = {
        "type": "joined",
        "participant": {
            "id": "p_R2d9xKq7LmWc",
            "name": "Alice",
            "origin": "ors",
            "origin_address": "",
            "role": "member",
            "state": "joined",
            "joined_at": 1767226800000,
            "tracks": [],
        },
        "room": {
            "id": "cabinet",
            "server": "gw.example.org",
            "policy": {"pin": False, "lobby": False, "federation_peers": []},
            "links": [],
            "created_at": 1767225600000,
        },
        "participants": [],
        "ice_servers": turn.ice_servers("p_R2d9xKq7LmWc", now=1767226800),
    }
    schemas.validate("server", message)


def test_no_servers_or_no_secret_give_no_ice_servers() -> None:
    assert TurnCredentials().ice_servers("p", now=0) == []
    assert TurnCredentials(("turn:a.example:3478",), "").ice_servers("p", now=0) == []


def test_the_secret_is_not_in_the_repr() -> None:
    assert SECRET not in repr(TurnCredentials(("turn:a.example",), SECRET))
    config = Config()
    config.turn.secret = SECRET
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    "uri",
    [
        "turn:turn.example.org",
        "turn:turn.example.org:3478",
        "turn:198.51.100.7:3478?transport=udp",
        "turns:turn.example.org:5349?transport=tcp",
        "turn:[2001:db8::1]:3478",
    ],
)
def test_turn_uris_of_rfc_7065_are_accepted(uri: str) -> None:
    assert is_turn_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "stun:stun.example.org",
        "https://turn.example.org",
        "turn://turn.example.org:3478",
        "turn:user@turn.example.org",
        "turn:turn.example.org:70000",
        "turn:turn.example.org?transport=sctp",
        "turn:turn.example.org:3478?transport=tcp&x=1",
        "turn:",
        " turn:turn.example.org",
    ],
)
def test_other_uris_are_refused(uri: str) -> None:
    assert not is_turn_uri(uri)


def test_turn_section_is_read_and_the_environment_gives_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RONDPOINT_TURN_SECRET", SECRET)
    config = load_config(
        write(tmp_path, '[turn]\nservers = ["turns:turn.example.org:5349"]\nttl = 600\n')
    )
    assert config.turn.servers == ["turns:turn.example.org:5349"]
    assert config.turn.secret == SECRET
    assert config.turn.ttl == 600


def test_the_file_secret_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RONDPOINT_TURN_SECRET", "from-the-environment-0123")
    config = load_config(
        write(tmp_path, f'[turn]\nservers = ["turn:a.example"]\nsecret = "{SECRET}"\n')
    )
    assert config.turn.secret == SECRET


def test_servers_without_a_secret_stop_the_start_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RONDPOINT_TURN_SECRET", raising=False)
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, '[turn]\nservers = ["turn:a.example"]\n'))
    assert "'turn.servers'" in str(error.value) and "RONDPOINT_TURN_SECRET" in str(error.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('servers = ["http://turn.example.org"]', "'turn.servers'"),
        ('servers = "turn:turn.example.org"', "'turn.servers'"),
        ("servers = [3478]", "'turn.servers'"),
        ('servers = ["turn:a.example"]\nsecret = "short-secret"', "'turn.secret'"),
        ("ttl = 10", "'turn.ttl'"),
        ("ttl = 8000000", "'turn.ttl'"),
        ("ttl = true", "'turn.ttl'"),
        ("secret = 42", "'turn.secret'"),
        ("realm = 'x'", "'turn.realm'"),
    ],
)
def test_bad_turn_settings_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, named: str
) -> None:
    monkeypatch.delenv("RONDPOINT_TURN_SECRET", raising=False)
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, f"[turn]\n{text}\n"))
    assert named in str(error.value)


def test_a_wrong_secret_is_never_shown_back(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(
            write(tmp_path, '[turn]\nservers = ["turn:a.example"]\nsecret = "tiny-secret"\n')
        )
    assert "tiny-secret" not in str(error.value)


@pytest.mark.parametrize(("port", "ok"), [(0, True), (40000, True), (443, True), (70000, False)])
def test_media_tcp_port_is_a_port_or_zero(tmp_path: Path, port: int, ok: bool) -> None:
    path = write(tmp_path, f"[media]\ntcp_port = {port}\n")
    if ok:
        assert load_config(path).media.tcp_port == port
    else:
        with pytest.raises(ConfigError, match="'media.tcp_port'"):
            load_config(path)


def test_the_gateway_hands_out_credentials_from_its_configuration(tmp_path: Path) -> None:
    config = Config()
    config.server.data_dir = str(tmp_path / "data")
    config.rooms.demo_room = ""
    config.turn.servers = ["turns:turn.example.org:5349?transport=tcp"]
    config.turn.secret = SECRET
    gateway = Gateway(config)
    try:
        (server,) = gateway.ice_servers("p_abc")
        expiry, user = server["username"].split(":")
        assert user == "p_abc" and int(expiry) > 0
        assert server["credential"] == rest_credential(SECRET, server["username"])
    finally:
        gateway.store.close()
    config.turn.servers = []
    gateway = Gateway(config)
    try:
        assert gateway.ice_servers("p_abc") == []
    finally:
        gateway.store.close()
