"""The [visio] configuration section: defaults, validation naming the key, the secret kept hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from protocols.visio.config import VISIO_SECRET_ENV

SECRET = "s3cr3t-visio-api-secret-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rondpoint.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def no_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VISIO_SECRET_ENV, raising=False)


def test_the_bridge_is_off_by_default() -> None:
    visio = load_config(None).visio
    assert (visio.url, visio.identity_prefix, visio.reconnect_max_seconds) == ("", "rondpoint-", 30)


def test_a_full_section_is_read_and_the_secret_never_shown(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[visio]\nurl = "https://livekit.visio.example"\napi_key = "APIkey"\n'
            f'api_secret = "{SECRET}"\nbackend_url = "https://visio.example/api/v1.0/"\n'
            "reconnect_max_seconds = 60\n",
        )
    )
    assert config.visio.api_secret == SECRET
    assert config.visio.livekit_url == "wss://livekit.visio.example"
    assert config.visio.reconnect_max_seconds == 60
    assert SECRET not in repr(config) and SECRET not in repr(config.visio)


def test_the_secret_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VISIO_SECRET_ENV, SECRET)
    config = load_config(write(tmp_path, '[visio]\nurl = "ws://127.0.0.1:7880"\napi_key = "k"\n'))
    assert config.visio.api_secret == SECRET and config.visio.livekit_url == "ws://127.0.0.1:7880"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[visio]\nurl = "ftp://x"\napi_key = "k"\napi_secret = "s"\n', "'visio.url' must be"),
        ('[visio]\nurl = "wss://"\napi_key = "k"\napi_secret = "s"\n', "'visio.url' must be"),
        ('[visio]\nurl = "wss://lk.example"\napi_secret = "s"\n', "'visio.api_key' is required"),
        ('[visio]\nurl = "wss://lk.example"\napi_key = "k"\n', "'visio.api_secret' is required"),
        ('[visio]\nbackend_url = "visio.example"\n', "'visio.backend_url' must be"),
        ('[visio]\nidentity_prefix = ""\n', "'visio.identity_prefix' must be"),
        ('[visio]\nidentity_prefix = "a b"\n', "'visio.identity_prefix' must be"),
        ("[visio]\nreconnect_max_seconds = 0\n", "'visio.reconnect_max_seconds' must be"),
        ("[visio]\nreconnect_max_seconds = 7200\n", "'visio.reconnect_max_seconds' must be"),
        ("[visio]\nsecret = 1\n", "unknown key 'visio.secret'"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert expected in str(refused.value)


def test_a_mistyped_secret_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, "[visio]\napi_secret = 987654321987\n"))
    assert "'visio.api_secret' must be a string" in str(refused.value)
    assert "987654321987" not in str(refused.value)
