"""The [matrix] configuration section: off by default, validation naming the key, secrets from
the environment and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from protocols.matrix.config import AS_TOKEN_ENV, HS_TOKEN_ENV, LIVEKIT_SECRET_ENV

AS_TOKEN = "as-token-0123456789abcdef"
HS_TOKEN = "hs-token-0123456789abcdef"
SECRET = "livekit-secret-0123456789abcdef"
ON = (
    '[matrix]\nhomeserver_url = "https://matrix.example"\nserver_name = "example.org"\n'
    f'as_token = "{AS_TOKEN}"\nhs_token = "{HS_TOKEN}"\n'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rondpoint.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def no_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (AS_TOKEN_ENV, HS_TOKEN_ENV, LIVEKIT_SECRET_ENV):
        monkeypatch.delenv(name, raising=False)


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return str(caught.value)


def test_matrix_is_off_by_default() -> None:
    matrix = load_config(None).matrix
    assert not matrix.enabled
    assert (matrix.as_id, matrix.sender_localpart, matrix.user_prefix) == (
        "rondpoint",
        "rondpoint",
        "rondpoint_",
    )
    assert matrix.focus_service is True


def test_a_full_section_is_read_and_no_secret_is_in_its_repr(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            ON + 'livekit_url = "https://livekit.example"\nlivekit_api_key = "APIkey"\n'
            f'livekit_api_secret = "{SECRET}"\n',
        )
    )
    matrix = config.matrix
    assert matrix.bot_user_id == "@rondpoint:example.org"
    assert matrix.livekit_ws_url == "wss://livekit.example"
    shown = repr(matrix)
    assert AS_TOKEN not in shown and HS_TOKEN not in shown and SECRET not in shown


def test_the_appservice_and_focus_urls_default_to_our_public_url(tmp_path: Path) -> None:
    matrix = load_config(write(tmp_path, ON)).matrix
    assert matrix.appservice_url_for("https://gw.example/") == "https://gw.example/matrix"
    assert matrix.focus_url_for("https://gw.example") == "https://gw.example/matrix"
    matrix.focus_url = "https://focus.example/"
    assert matrix.focus_url_for("https://gw.example") == "https://focus.example"


def test_tokens_from_the_environment_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AS_TOKEN_ENV, "as-from-the-environment-1234")
    monkeypatch.setenv(HS_TOKEN_ENV, "hs-from-the-environment-1234")
    monkeypatch.setenv(LIVEKIT_SECRET_ENV, "secret-from-the-environment")
    matrix = load_config(write(tmp_path, ON)).matrix
    assert matrix.as_token == "as-from-the-environment-1234"
    assert matrix.hs_token == "hs-from-the-environment-1234"
    assert matrix.livekit_api_secret == "secret-from-the-environment"


def test_a_homeserver_without_server_name_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, ON.replace('server_name = "example.org"\n', ""))
    assert "'matrix.server_name' is required" in message


def test_a_missing_or_short_token_is_refused_without_showing_it(tmp_path: Path) -> None:
    message = refusal(tmp_path, ON.replace(HS_TOKEN, "tiny-tok"))
    assert "'matrix.hs_token'" in message and HS_TOKEN_ENV in message
    assert "tiny-tok" not in message
    assert "'matrix.as_token'" in refusal(tmp_path, ON.replace(f'as_token = "{AS_TOKEN}"\n', ""))


def test_the_same_token_both_ways_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, ON.replace(HS_TOKEN, AS_TOKEN))
    assert "must differ" in message and AS_TOKEN not in message


def test_a_mistyped_token_is_not_shown(tmp_path: Path) -> None:
    message = refusal(tmp_path, ON.replace(f'"{HS_TOKEN}"', "123456789"))
    assert "'matrix.hs_token' must be a string" in message and "123456789" not in message


def test_plain_http_is_only_for_a_loopback_homeserver(tmp_path: Path) -> None:
    message = refusal(tmp_path, ON.replace("https://matrix.example", "http://matrix.example"))
    assert "'matrix.homeserver_url' must be https://" in message
    config = load_config(
        write(tmp_path, ON.replace("https://matrix.example", "http://127.0.0.1:8008"))
    )
    assert config.matrix.enabled


def test_a_livekit_focus_needs_its_key_and_secret(tmp_path: Path) -> None:
    message = refusal(tmp_path, ON + 'livekit_url = "wss://livekit.example"\n')
    assert "'matrix.livekit_api_key' is required" in message
    message = refusal(
        tmp_path, ON + 'livekit_url = "wss://livekit.example"\nlivekit_api_key = "k"\n'
    )
    assert "'matrix.livekit_api_secret' is required" in message and LIVEKIT_SECRET_ENV in message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('user_prefix = "Rondpoint_"', "matrix.user_prefix"),
        ('sender_localpart = "bot with space"', "matrix.sender_localpart"),
        ('sender_localpart = "rondpoint_bot"', "matrix.sender_localpart"),
        ('appservice_url = "ftp://gw.example"', "matrix.appservice_url"),
        ('ca_file = "/no/such/file.pem"', "matrix.ca_file"),
        ("reconnect_max_seconds = 0", "matrix.reconnect_max_seconds"),
    ],
)
def test_each_bad_value_is_named(tmp_path: Path, line: str, key: str) -> None:
    assert f"'{key}'" in refusal(tmp_path, ON + line + "\n")
