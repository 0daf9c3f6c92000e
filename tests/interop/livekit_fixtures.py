"""A real livekit-server on loopback for the LiveKit interop tests.

The binary comes from tests/livekit_server.sh (built from the Go module proxy into .cache/, and
run by `make system-deps` before `make test`; here it is only looked up, or built if missing).
The server runs in development mode (`--dev`: API key `devkey`, secret `secret`) bound to
127.0.0.1 with its node IP 127.0.0.1, on free ports given in a throwaway config file: the HTTP /
signalling port, the ICE/TCP port and a small ICE/UDP range, no external IP discovery.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gateway_process import ROOT, free_port

API_KEY = "devkey"
API_SECRET = "secret"
BUILD_SCRIPT = ROOT / "tests" / "livekit_server.sh"
UDP_RANGE = 20


@dataclass
class RunningLiveKit:
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

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def livekit_server_binary() -> Path:
    """The cached livekit-server, built first when missing; fails loudly when it cannot be had."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        pytest.fail(
            f"livekit-server could not be built (tests/livekit_server.sh):\n{result.stderr[-4000:]}"
        )
    path = Path(result.stdout.strip().splitlines()[-1])
    if not os.access(path, os.X_OK):
        pytest.fail(f"tests/livekit_server.sh printed {path}, which is not an executable")
    return path


def _free_udp_range(count: int) -> tuple[int, int]:
    """COUNT consecutive UDP ports free on 127.0.0.1 right now."""
    for _ in range(200):
        start = random.randrange(40000, 60000 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(start, start + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return start, start + count - 1
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free UDP port range on 127.0.0.1")


def _wait_ready(http_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"livekit-server exited with {process.returncode}:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(http_url + "/", timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(
        "livekit-server did not answer within 20 s:\n"
        + log_path.read_text(errors="replace")[-4000:]
    )


@contextlib.contextmanager
def running_livekit(tmp: Path, binary: Path | None = None) -> Iterator[RunningLiveKit]:
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
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "--dev",
                "--bind",
                "127.0.0.1",
                "--node-ip",
                "127.0.0.1",
                "--config",
                str(config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    http_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(http_url, process, log_path)
        yield RunningLiveKit(
            url=f"ws://127.0.0.1:{port}",
            http_url=http_url,
            port=port,
            tcp_port=tcp_port,
            udp_ports=(udp_start, udp_end),
            api_key=API_KEY,
            api_secret=API_SECRET,
            process=process,
            log_path=log_path,
        )
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture(scope="module")
def livekit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLiveKit]:
    with running_livekit(Path(tmp_path_factory.mktemp("livekit"))) as running:
        yield running
