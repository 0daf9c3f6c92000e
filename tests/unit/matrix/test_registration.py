"""`rondpoint matrix registration`: the application-service registration YAML from the config
file, with no gateway running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from protocols.matrix.config import MatrixConfig
from protocols.matrix.registration import registration_yaml, user_namespace

AS_TOKEN = "as-token-0123456789abcdef"
HS_TOKEN = "hs-token-0123456789abcdef"


def config() -> MatrixConfig:
    return MatrixConfig(
        homeserver_url="http://127.0.0.1:8008",
        server_name="hs.test",
        as_token=AS_TOKEN,
        hs_token=HS_TOKEN,
    )


def test_the_registration_names_our_url_tokens_and_exclusive_namespace() -> None:
    text = registration_yaml(config(), "http://127.0.0.1:8080/")
    assert text.splitlines() == [
        "id: 'rondpoint'",
        "url: 'http://127.0.0.1:8080/matrix'",
        f"as_token: '{AS_TOKEN}'",
        f"hs_token: '{HS_TOKEN}'",
        "sender_localpart: 'rondpoint'",
        "rate_limited: false",
        "receive_ephemeral: true",
        "de.sorunome.msc2409.push_ephemeral: true",
        "org.matrix.msc3202: true",
        "namespaces:",
        "  users:",
        "    - exclusive: true",
        r"      regex: '@rondpoint_.*:hs\.test'",
        "  aliases: []",
        "  rooms: []",
    ]


def test_the_namespace_escapes_prefix_and_server() -> None:
    matrix = config()
    matrix.user_prefix = "rp.+_"
    assert user_namespace(matrix) == r"@rp\.\+_.*:hs\.test"


def test_a_quote_in_a_value_stays_inside_its_scalar() -> None:
    matrix = config()
    matrix.appservice_url = "https://gw.example/it's"
    assert "url: 'https://gw.example/it''s'" in registration_yaml(matrix, "")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60
    )


def test_the_command_prints_it_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "rondpoint.toml"
    path.write_text(
        '[server]\npublic_url = "https://gw.example"\n[matrix]\n'
        'homeserver_url = "https://matrix.example"\nserver_name = "example.org"\n'
        f'as_token = "{AS_TOKEN}"\nhs_token = "{HS_TOKEN}"\n'
    )
    result = run("matrix", "registration", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "url: 'https://gw.example/matrix'" in result.stdout
    assert f"hs_token: '{HS_TOKEN}'" in result.stdout


def test_the_command_says_what_to_configure_when_matrix_is_off(tmp_path: Path) -> None:
    result = run("matrix", "registration")
    assert result.returncode == 1
    assert "[matrix] homeserver_url" in result.stderr
