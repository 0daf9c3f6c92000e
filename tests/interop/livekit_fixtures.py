"""A real livekit-server on loopback for the LiveKit interop tests.

The binary comes from tests/livekit_server.sh (built from the Go module proxy into .cache/, and
run by `make system-deps` before `make test`; here it is only looked up, or built if missing).
The server runs in development mode (`--dev`: API key `devkey`, secret `secret`) bound to
127.0.0.1 with its node IP 127.0.0.1, on free ports given in a throwaway config file: the HTTP /
signalling port, the ICE/TCP port and a small ICE/UDP range, no external IP discovery.

A test can kill the server mid-call and bring it back on the same ports and config
(`RunningLiveKit.kill()` / `restart()`); it does so on the function-scoped
`livekit_server_restartable`, never on the module-scoped `livekit_server` other tests share.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from tests.gateway_process import ROOT, free_port, free_udp_block
from tests.processes import LoggedServer, installed, spawn_logged, wait_http_ready

API_KEY = "devkey"
API_SECRET = "secret"
BUILD_SCRIPT = ROOT / "tests" / "livekit_server.sh"
UDP_RANGE = 20


@dataclass
class RunningLiveKit(LoggedServer):
    """A livekit-server a test runs; a restart serves the same ports and config again."""

    name: ClassVar[str] = "livekit-server"
    restart_pause: ClassVar[float] = 0.2
    restart_timeout: ClassVar[float] = 20.0
    url: str
    """ws://127.0.0.1:PORT, what clients connect to."""
    http_url: str
    port: int
    tcp_port: int
    udp_ports: tuple[int, int]
    api_key: str
    api_secret: str
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str] = field(default_factory=list)
    """The argv the server was started with; restart() runs it again (same ports, same config)."""
    restarts: int = 0

    def ready_url(self) -> str:
        return self.http_url + "/"


def livekit_server_binary() -> Path:
    """The cached livekit-server, built first when missing; fails loudly when it cannot be had."""
    path = installed(BUILD_SCRIPT, timeout=1800)
    if not os.access(path, os.X_OK):
        pytest.fail(f"tests/livekit_server.sh printed {path}, which is not an executable")
    return path


def _free_udp_range(count: int) -> tuple[int, int]:
    """COUNT consecutive UDP ports free on 127.0.0.1 right now (LiveKit's RTC port range)."""
    start = free_udp_block(count, (40000, 59999), align=1)
    return start, start + count - 1


@contextlib.contextmanager
def running_livekit(
    tmp: Path, binary: Path | None = None, host: str = "127.0.0.1"
) -> Iterator[RunningLiveKit]:
    """`host`: the address it binds and announces (a NetLab's host side, tests/netlab/netns.py)."""
    binary = binary or livekit_server_binary()
    port = free_port()
    tcp_port = free_port()
    udp_start, udp_end = _free_udp_range(UDP_RANGE)
    config = tmp / "livekit.yaml"
    config.write_text(
        f"port: {port}\n"
        "rtc:\n"
        f"  tcp_port: {tcp_port}\n"
        f"  port_range_start: {udp_start}\n"
        f"  port_range_end: {udp_end}\n"
        "  use_external_ip: false\n"
        "logging:\n"
        "  level: info\n"
    )
    log_path = tmp / "livekit-server.log"
    command = [
        str(binary),
        "--dev",
        "--bind",
        host,
        "--node-ip",
        host,
        "--config",
        str(config),
    ]
    http_url = f"http://{host}:{port}"
    running = RunningLiveKit(
        url=f"ws://{host}:{port}",
        http_url=http_url,
        port=port,
        tcp_port=tcp_port,
        udp_ports=(udp_start, udp_end),
        api_key=API_KEY,
        api_secret=API_SECRET,
        process=spawn_logged(command, log_path, name="livekit-server", cwd=tmp),
        log_path=log_path,
        command=command,
    )
    try:
        wait_http_ready(
            http_url + "/", running.process, log_path, name="livekit-server", timeout=20.0
        )
        yield running
    finally:
        running.stop()  # the current process: a test may have restarted it


@pytest.fixture(scope="module")
def livekit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLiveKit]:
    with running_livekit(Path(tmp_path_factory.mktemp("livekit"))) as running:
        yield running


@pytest.fixture
def livekit_server_restartable(tmp_path: Path) -> Iterator[RunningLiveKit]:
    """A livekit-server of this test's own, which the test may kill() and restart()."""
    with running_livekit(tmp_path) as running:
        yield running
