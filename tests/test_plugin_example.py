"""The protocol plugin seam, proved by the example plugin in tests/plugin_example (``echo:``),
installed in the test environment like a partner's package: it links and dials through the
gateway's own admin API, CLI and metrics, and nothing in gateway/ names it."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rondpoint_echo.config import EchoConfig
from rondpoint_echo.links import normalize_target

from gateway.config import ConfigError
from gateway.plugins import installed
from tests.gateway_process import ROOT, RunningGateway, running_gateway

GREETING_CONFIG = '[echo]\ngreeting = "Hello"\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(tmp_path_factory.mktemp("echo"), extra_config=GREETING_CONFIG) as running:
        yield running


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def participant_names(gateway: RunningGateway, room_id: str) -> list[str]:
    status, room = gateway.admin("GET", f"/api/v1/rooms/{room_id}")
    assert status == 200, room
    return [participant["name"] for participant in room["participants"]]


def rondpoint(gateway: RunningGateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(gateway.config_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_installed_plugins_include_echo() -> None:
    assert "echo" in [plugin.name for plugin in installed()]


def test_nothing_in_gateway_names_the_plugin() -> None:
    importing, naming = [], []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            if any(module.split(".")[0] == "rondpoint_echo" for module in modules):
                importing.append(str(path.relative_to(ROOT)))
        if "rondpoint_echo" in source or '"echo"' in source:
            naming.append(str(path.relative_to(ROOT)))
    assert importing == [] and naming == []


@pytest.mark.parametrize(
    "target", ["echo:", "echo:BAD NAME!", "echo:a_b", "sip:bob", "echo:" + "a" * 33]
)
def test_an_echo_target_is_a_short_lowercase_name(target: str) -> None:
    with pytest.raises(ValueError, match="echo:NAME"):
        normalize_target(target)
    assert normalize_target(" Echo:Alice-2 ") == "echo:alice-2"


def test_the_echo_section_refuses_an_empty_greeting() -> None:
    EchoConfig(greeting="Hi").validate("rondpoint.toml")
    with pytest.raises(ConfigError, match="rondpoint.toml: 'echo.greeting' must not be empty"):
        EchoConfig(greeting=" ").validate("rondpoint.toml")


def test_linking_a_room_to_echo_adds_its_greeted_participant(gateway: RunningGateway) -> None:
    gateway.create_room("room-link")
    status, link = gateway.admin("POST", "/api/v1/rooms/room-link/links", {"target": "echo:Alice"})
    assert status == 201, link
    assert link["target"] == "echo:alice"
    assert link["status"]["state"] == "connected"
    assert link["status"]["remote_participants"] == 1
    assert "Hello alice" in participant_names(gateway, "room-link")


def test_unlinking_removes_the_participant(gateway: RunningGateway) -> None:
    gateway.create_room("room-unlink")
    status, _ = gateway.admin("POST", "/api/v1/rooms/room-unlink/links", {"target": "echo:carol"})
    assert status == 201
    status, _ = gateway.admin("DELETE", "/api/v1/rooms/room-unlink/links/echo:carol")
    assert status == 204
    assert participant_names(gateway, "room-unlink") == []


def test_a_malformed_echo_target_is_an_invalid_link(gateway: RunningGateway) -> None:
    gateway.create_room("room-bad-link")
    status, problem = gateway.admin(
        "POST", "/api/v1/rooms/room-bad-link/links", {"target": "echo:BAD NAME!"}
    )
    assert status == 400 and problem["code"] == "invalid_link", problem


def test_dialling_echo_adds_the_callee_when_it_answers(gateway: RunningGateway) -> None:
    gateway.create_room("room-dial")
    status, call = gateway.admin("POST", "/api/v1/rooms/room-dial/dial", {"to": "echo:bob"})
    assert status == 202, call
    assert call["to"] == "echo:bob"
    assert eventually(lambda: "bob" in participant_names(gateway, "room-dial"))
    status, room = gateway.admin("GET", "/api/v1/rooms/room-dial")
    assert [(c["to"], c["status"]) for c in room["calls"]] == [("echo:bob", "answered")]


def test_dialling_a_malformed_echo_target_is_refused(gateway: RunningGateway) -> None:
    gateway.create_room("room-bad-dial")
    status, problem = gateway.admin(
        "POST", "/api/v1/rooms/room-bad-dial/dial", {"to": "echo:BAD NAME!"}
    )
    assert status == 400 and "echo:NAME" in problem["detail"], problem


def test_an_echo_call_cannot_be_transferred(gateway: RunningGateway) -> None:
    gateway.create_room("room-transfer")
    status, call = gateway.admin("POST", "/api/v1/rooms/room-transfer/dial", {"to": "echo:dave"})
    assert status == 202, call
    assert eventually(lambda: "dave" in participant_names(gateway, "room-transfer"))
    _, room = gateway.admin("GET", "/api/v1/rooms/room-transfer")
    [dave] = [p["id"] for p in room["participants"] if p["name"] == "dave"]
    status, problem = gateway.admin(
        "POST", f"/api/v1/rooms/room-transfer/participants/{dave}/transfer", {"to": "echo:eve"}
    )
    assert status == 400 and "cannot be transferred" in problem["detail"], problem


def test_the_plugin_admin_routes_need_the_admin_token(gateway: RunningGateway) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(gateway.base_url + "/api/v1/echo/calls", timeout=10)
    assert refused.value.code == 401


def test_the_plugin_admin_api_and_cli_list_the_calls(gateway: RunningGateway) -> None:
    gateway.create_room("room-log")
    status, _ = gateway.admin("POST", "/api/v1/rooms/room-log/dial", {"to": "echo:frank"})
    assert status == 202
    status, listed = gateway.admin("GET", "/api/v1/echo/calls")
    assert status == 200, listed
    assert ("room-log", "echo:frank") in [(c["room"], c["to"]) for c in listed["calls"]]
    printed = rondpoint(gateway, "echo-calls")
    assert printed.returncode == 0, printed.stderr
    assert "room-log" in printed.stdout and "echo:frank" in printed.stdout


def test_the_metrics_count_echo_calls(gateway: RunningGateway) -> None:
    gateway.create_room("room-metric")
    status, _ = gateway.admin("POST", "/api/v1/rooms/room-metric/dial", {"to": "echo:grace"})
    assert status == 202
    with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    [line] = [
        line for line in metrics.splitlines() if line.startswith("rondpoint_echo_calls_total")
    ]
    assert float(line.split()[-1]) >= 1


def test_the_banner_has_the_echo_line(gateway: RunningGateway) -> None:
    lines = gateway.log_text().splitlines()
    assert "  echo       echo:NAME links and calls, greeting 'Hello'" in lines


def test_an_empty_greeting_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "rondpoint.toml"
    config.write_text('[echo]\ngreeting = ""\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert str(config) in result.stderr and "echo.greeting" in result.stderr


def test_echo_turned_off_says_how_to_turn_it_on(tmp_path: Path) -> None:
    with running_gateway(tmp_path, extra_config="[echo]\nenabled = false\n") as gateway:
        gateway.create_room("room-off")
        status, problem = gateway.admin(
            "POST", "/api/v1/rooms/room-off/links", {"target": "echo:alice"}
        )
        assert status == 400 and problem["code"] == "link_scheme_unavailable", problem
        assert "[echo] enabled = true" in problem["detail"]
        assert "  echo       off" in gateway.log_text().splitlines()
