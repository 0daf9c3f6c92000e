"""The rondpoint command: admin commands against a running gateway, clear failures otherwise."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_process import RunningGateway, free_port, running_gateway

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


# the admin token: written to its file only, rotated locally ---------------------------------------
def test_the_first_start_writes_the_admin_token_to_its_file_only(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gateway:
        token_file = gateway.data_dir / "admin-token"
        token = token_file.read_text().strip()
        assert token.startswith("rpa_")
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        output = gateway.log_text()
        assert f"admin token  created in {token_file}" in output
        assert token not in output
        assert gateway.admin("GET", "/api/v1/rooms")[0] == 200


def test_rotating_the_admin_token_takes_effect_in_the_running_gateway(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gateway:
        old = gateway.admin_token
        (gateway.data_dir / "admin-token").unlink()  # the operator lost it
        rotated = rondpoint("admin-token", "rotate", gateway=gateway)
        assert rotated.returncode == 0, rotated.stderr
        new = rotated.stdout.strip().splitlines()[-1]
        assert new.startswith("rpa_") and new != old
        token_file = gateway.data_dir / "admin-token"
        assert token_file.read_text().strip() == new
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert dataclasses.replace(gateway, admin_token=old).admin("GET", "/api/v1/rooms")[0] == 401
        assert dataclasses.replace(gateway, admin_token=new).admin("GET", "/api/v1/rooms")[0] == 200
        assert rondpoint("room", "list", gateway=gateway).returncode == 0  # reads the new file
        assert new not in gateway.log_text() and old not in gateway.log_text()


def test_rotating_needs_the_gateways_data_directory(tmp_path: Path) -> None:
    config = tmp_path / "rondpoint.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "nowhere"}"\n')
    result = rondpoint("admin-token", "rotate", "--config", str(config))
    assert result.returncode == 1
    assert str(tmp_path / "nowhere" / "rondpoint.sqlite3") in result.stderr
    assert not (tmp_path / "nowhere").exists()


# broken inputs stop the start with one line naming the file, never a traceback ----------------------
def start_config(tmp_path: Path, data_dir: Path, http: str = "") -> Path:
    config = tmp_path / "rondpoint.toml"
    config.write_text(
        f'[server]\ndata_dir = "{data_dir}"\n'
        f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n{http}\n'
        f'[media]\nhost = "127.0.0.1"\nport = {free_port(socket.SOCK_DGRAM)}\n'
        "[sip]\nenabled = false\n"
    )
    return config


def refused_start(config: Path) -> subprocess.CompletedProcess[str]:
    result = rondpoint("serve", "--config", str(config))
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


def test_a_corrupt_database_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rondpoint.sqlite3").write_bytes(os.urandom(8192))
    result = refused_start(start_config(tmp_path, data))
    assert str(data / "rondpoint.sqlite3") in result.stderr
    assert "not a usable Rondpoint database" in result.stderr
    rotate = rondpoint("admin-token", "rotate", "--config", str(tmp_path / "rondpoint.toml"))
    assert rotate.returncode == 1 and "Traceback" not in rotate.stderr
    assert str(data / "rondpoint.sqlite3") in rotate.stderr


def test_a_binary_config_file_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "rondpoint.toml"
    config.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    result = refused_start(config)
    assert str(config) in result.stderr and "not a text file" in result.stderr


def test_a_missing_tls_file_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cert.pem"
    config = start_config(
        tmp_path,
        tmp_path / "data",
        http=f'tls_cert = "{missing}"\ntls_key = "{tmp_path / "no-such-key.pem"}"',
    )
    result = refused_start(config)
    assert f"http.tls_cert {missing}" in result.stderr and "No such file" in result.stderr


def test_a_data_directory_that_cannot_be_used_stops_the_start_naming_it(tmp_path: Path) -> None:
    # a file where the directory should be (permission bits do not stop root, who runs CI)
    data = tmp_path / "data"
    data.write_text("not a directory\n")
    result = refused_start(start_config(tmp_path, data))
    assert f"server.data_dir {data}: not a directory" in result.stderr


def test_a_sip_port_already_taken_stops_the_start_naming_the_plugin(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = start_config(tmp_path, tmp_path / "data")
        text = config.read_text().replace(
            "[sip]\nenabled = false\n", f'[sip]\nhost = "127.0.0.1"\nport = {port}\n'
        )
        config.write_text(text)
        result = refused_start(config)
    assert result.stderr.startswith("rondpoint: cannot start: sip: "), result.stderr
    assert str(port) in result.stderr


def test_help_lists_the_installed_protocols() -> None:
    result = rondpoint("--help")
    assert result.returncode == 0
    assert "installed protocols:" in result.stdout
    assert "sip (SIP phones and trunks" in " ".join(result.stdout.split())
    assert "visio (Visio (LiveKit) rooms" in " ".join(result.stdout.split())
