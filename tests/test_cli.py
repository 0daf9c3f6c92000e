"""The rondpoint command: admin commands against a running gateway, clear failures otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_process import RunningGateway, free_port

pytestmark = pytest.mark.interop


def rondpoint(
    *args: str, gateway: RunningGateway | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["--config", str(gateway.config_path)] if gateway else []
    return subprocess.run(
        [sys.executable, "-m", "gateway", *prefix, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_admin_commands_fail_clearly_when_the_gateway_is_not_running(tmp_path: Path) -> None:
    result = rondpoint(
        "--url", f"http://127.0.0.1:{free_port()}", "--admin-token", "x", "room", "list"
    )
    assert result.returncode == 1
    assert "not running" in result.stderr and "rondpoint serve" in result.stderr


def test_an_invalid_config_stops_the_start_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[http]\nport = 0\n")
    result = rondpoint("--config", str(config), "serve")
    assert result.returncode == 2
    assert str(config) in result.stderr and "http.port" in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_work_on_either_side_of_the_command(
    gateway: RunningGateway, where: str
) -> None:
    global_options = ["--config", str(gateway.config_path), "--url", gateway.base_url]
    command = ["room", "create", f"either-side-{where}"]
    args = global_options + command if where == "before" else command + global_options
    created = subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=30
    )
    assert created.returncode == 0, created.stderr
    assert f"either-side-{where}" in rondpoint("room", "list", gateway=gateway).stdout


def test_an_option_after_the_command_wins_over_the_same_option_before_it(tmp_path: Path) -> None:
    before, dead = f"http://127.0.0.2:{free_port()}", f"http://127.0.0.1:{free_port()}"
    result = rondpoint("--url", before, "--admin-token", "x", "room", "list", "--url", dead)
    assert result.returncode == 1
    assert f"not running at {dead}" in result.stderr


def test_serve_takes_config_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[http]\nport = 0\n")
    result = rondpoint("serve", "--config", str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr and "http.port" in result.stderr


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = rondpoint("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"rondpoint {version('rondpoint')}"


def test_room_lifecycle_through_the_cli(gateway: RunningGateway) -> None:
    created = rondpoint(
        "room", "create", "conseil-des-ministres", "--pin", "--lobby", gateway=gateway
    )
    assert created.returncode == 0, created.stderr
    assert "PIN" in created.stdout and "lobby  on" in created.stdout
    listed = rondpoint("room", "list", gateway=gateway)
    assert "conseil-des-ministres" in listed.stdout
    shown = rondpoint("room", "show", "conseil-des-ministres", gateway=gateway)
    assert "participants (0)" in shown.stdout
    token = rondpoint(
        "token", "conseil-des-ministres", "--identity", "marie", "--name", "Marie", gateway=gateway
    )
    assert token.returncode == 0
    assert token.stdout.startswith(f"{gateway.base_url}/r/conseil-des-ministres#token=")
    assert rondpoint("room", "delete", "conseil-des-ministres", gateway=gateway).returncode == 0
    missing = rondpoint("room", "show", "conseil-des-ministres", gateway=gateway)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_a_wrong_admin_token_is_refused(gateway: RunningGateway) -> None:
    result = rondpoint("--admin-token", "rpa_wrong", "room", "list", gateway=gateway)
    assert result.returncode == 1 and "HTTP 401" in result.stderr


def test_token_grants_publish_and_subscribe_unless_told_not_to(gateway: RunningGateway) -> None:
    import jwt

    assert rondpoint("room", "create", "auditorium", gateway=gateway).returncode == 0

    def grant(*flags: str) -> dict:
        minted = rondpoint("token", "auditorium", "--identity", "ines", *flags, gateway=gateway)
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip().split("#token=", 1)[1]
        return dict(jwt.decode(token, options={"verify_signature": False})["ors"])

    assert (grant()["can_publish"], grant()["can_subscribe"]) == (True, True)
    listener = grant("--no-publish", "--role", "guest")
    assert (listener["can_publish"], listener["can_subscribe"], listener["role"]) == (
        False,
        True,
        "guest",
    )
    assert grant("--no-subscribe")["can_subscribe"] is False
    helped = rondpoint("token", "--help")
    assert "--no-publish" in helped.stdout and "--no-subscribe" in helped.stdout
