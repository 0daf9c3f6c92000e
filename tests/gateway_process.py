"""Starts a real gateway process on free loopback ports with a throwaway data directory, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# Port zones, so tests that need fixed blocks of UDP ports never meet: the gateways' SIP RTP ranges
# take 20000-29999 (running_gateway), SIPp's media 30000-32759, unit tests' RTP blocks 10000-19999,
# the federation harness's partner gateways 5000-9999 (tests/federation/harness.py), the single
# ports servers listen on 1100-4999 (free_port); all below the kernel's ephemeral ports (32768+),
# so no socket bound to port 0 and no outgoing connection takes one between a pick and its bind.
LISTEN_PORTS = (1100, 4999)
UNIT_RTP_PORTS = (10000, 19999)
SIPP_MEDIA_PORTS = (30000, 32759)


_handed: set[int] = set()
"""Ports free_port gave in this process: a port picked but not yet bound is free to the next pick."""


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on HOST now, at random in this process's share of
    LISTEN_PORTS (pytest-xdist workers get disjoint shares), never one it gave before (``kind``,
    the one the caller means to bind, says what it is for: both are checked)."""
    del kind
    first, last = LISTEN_PORTS
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
        share = (last - first + 1) // workers
        first += int(worker[2:]) % workers * share
        last = first + share - 1
    if len(_handed) > (last - first) // 2:
        _handed.clear()  # a long run came round: the oldest picks are long bound or gone
    for _ in range(100):
        port = free_udp_block(1, (first, last), align=1, host=host, tcp=True)
        if port not in _handed:
            _handed.add(port)
            return port
    raise RuntimeError(f"no port left to give in {first}-{last}")


def free_udp_block(
    count: int,
    zone: tuple[int, int],
    align: int = 2,
    *,
    host: str = "127.0.0.1",
    tcp: bool = False,
) -> int:
    """The first port P of ``count`` consecutive UDP ports (and TCP ones too if ``tcp``) free on
    ``host`` now, P a multiple of ``align``, picked at random in ``zone`` (first, last)."""
    rng = random.SystemRandom()
    first, last = zone
    kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp else (socket.SOCK_DGRAM,)
    for _ in range(200):
        port = rng.randrange(first + (-first % align), last - count + 2, align)
        sockets: list[socket.socket] = []
        try:
            for offset in range(count):
                for kind in kinds:
                    s = socket.socket(socket.AF_INET, kind)
                    sockets.append(s)
                    s.bind((host, port + offset))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no free block of {count} ports on {host} in {first}-{last}")


def sipp_media_port() -> int:
    """An even port P with P..P+3 free (SIPp's audio and video RTP/RTCP)."""
    return free_udp_block(4, SIPP_MEDIA_PORTS, align=4)


CREATED_ROOMS: list[tuple[RunningGateway, str]] = []
"""Every room a test created through ``create_room``, in order (tests/conftest.py deletes those
of a failed try, so that its rerun on the same module-scoped gateway creates them again)."""


@dataclass
class RunningGateway:
    base_url: str
    ws_base: str
    admin_token: str
    data_dir: Path
    config_path: Path
    media_port: int
    sip_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str]

    def admin(self, method: str, path: str, body: object | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def create_room(self, room_id: str, **policy: object) -> dict:
        status, body = self.admin("POST", "/api/v1/rooms", {"id": room_id, **policy})
        assert status == 201, body
        CREATED_ROOMS.append((self, room_id))
        return body

    def token(
        self, room_id: str, identity: str, name: str = "", role: str = "member", ttl: int = 600
    ) -> str:
        status, body = self.admin(
            "POST",
            f"/api/v1/rooms/{room_id}/tokens",
            {"identity": identity, "name": name or identity, "role": role, "ttl": ttl},
        )
        assert status == 201, body
        return str(body["token"])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def restart(self) -> None:
        """Stop the gateway and start it again on the same configuration, ports and data: what
        it kept in memory (sessions, participants) is gone, what it stored is not."""
        stop_process(self.process)
        self.process = _start(self.command, self.log_path)
        _wait_ready(self.process, self.base_url, self.log_path)


@contextlib.contextmanager
def running_gateway(
    tmp: Path,
    extra_config: str = "",
    log_format: str = "json",
    rtp_ports: tuple[int, int] | None = None,
    server_config: str = "",
    http_config: str = "",
    media_config: str = "",
    host: str = "127.0.0.1",
) -> Iterator[RunningGateway]:
    """`rtp_ports`: the [sip] RTP port range (first, last); default 100 ports picked from sip_port.
    `media_config`: more keys of the [media] table, as `server_config` and `http_config` below.
    `server_config`, `http_config`: more keys of the [server] and [http] tables, which
    `extra_config` (appended after them) cannot reopen. `host`: the address [http] and [media]
    bind (a NetLab's host side, tests/netlab/netns.py), loopback by default."""
    http_port = free_port()
    media_port = free_port(socket.SOCK_DGRAM)
    if "tcp_port" not in media_config:  # ICE-TCP on a port of its own: gateways run side by side
        media_config = f"tcp_port = {free_port()}\n{media_config}"
    sip_port = free_port(socket.SOCK_DGRAM)
    # below the kernel's ephemeral range (32768+), so no other process is handed these ports
    rtp_start, rtp_end = rtp_ports or (20000 + (sip_port % 100) * 100, 0)
    rtp_end = rtp_end or rtp_start + 99
    data_dir = tmp / "data"
    config_path = tmp / "rondpoint.toml"
    config_path.write_text(
        f'[server]\nname = "test.rondpoint.local"\ndata_dir = "{data_dir}"\n{server_config}\n'
        f'[http]\nhost = "{host}"\nport = {http_port}\n{http_config}\n'
        f'[media]\nhost = "{host}"\nport = {media_port}\n'
        f"port_range_start = {media_port}\nport_range_end = {media_port}\n{media_config}\n"
        f'[sip]\nhost = "127.0.0.1"\nport = {sip_port}\n'
        f"rtp_port_start = {rtp_start}\nrtp_port_end = {rtp_end}\n"
        f"{extra_config}\n"
    )
    log_path = tmp / "gateway.log"
    log_path.write_bytes(b"")
    command = [
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(config_path),
        "serve",
        "--log-format",
        log_format,
    ]
    process = _start(command, log_path)
    base_url = f"http://{host}:{http_port}"
    running: RunningGateway | None = None
    try:
        _wait_ready(process, base_url, log_path)
        admin_token = (data_dir / "admin-token").read_text().strip()
        running = RunningGateway(
            base_url=base_url,
            ws_base=base_url.replace("http://", "ws://"),
            admin_token=admin_token,
            data_dir=data_dir,
            config_path=config_path,
            media_port=media_port,
            sip_port=sip_port,
            process=process,
            log_path=log_path,
            command=command,
        )
        yield running
    finally:
        stop_process(process if running is None else running.process)


def _start(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """The gateway process, its output appended to LOG_PATH."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gateway not ready: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
