"""A real coturn (Debian's `turnserver`) for the TURN tests: its own process on one address, TURN
REST shared-secret authentication (use-auth-secret), a throwaway TLS certificate made with openssl,
a bounded relay port range, no CLI and nothing else listening. Installed by tests/setup-system.sh."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.gateway_process import free_port, stop_process

TURNSERVER = "turnserver"
REALM = "rondpoint.test"
SECRET = "coturn-test-secret-0123456789"
RELAY_PORTS = 16
"""Relay ports each test server may allocate (min-port..max-port)."""


def available() -> bool:
    return shutil.which(TURNSERVER) is not None and shutil.which("openssl") is not None


@dataclass(frozen=True)
class RunningTurn:
    host: str
    port: int
    """TURN over UDP and TCP."""
    tls_port: int
    """TURN over TLS (turns:)."""
    secret: str
    certificate: Path
    """The server's self-signed certificate (PEM), to trust in a client."""
    log_path: Path

    def urls(self) -> list[str]:
        return [
            f"turn:{self.host}:{self.port}?transport=udp",
            f"turn:{self.host}:{self.port}?transport=tcp",
            f"turns:{self.host}:{self.tls_port}?transport=tcp",
        ]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for HOST (an IP address), valid one day."""
    cert, key = directory / "turn-cert.pem", directory / "turn-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=rondpoint test TURN",
            "-addext",
            f"subjectAltName=IP:{host}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


@contextlib.contextmanager
def running_turn(
    directory: Path, host: str = "127.0.0.1", allowed_peer: str | None = None
) -> Iterator[RunningTurn]:
    """coturn on HOST; ALLOWED_PEER: the one private address it may relay to (the gateway's),
    every other private, loopback and link-local range denied, as docs/deploy.md configures it."""
    cert, key = make_certificate(directory, host)
    port, tls_port = free_port(host=host), free_port(host=host)
    # relay ports above the kernel's ephemeral start, away from the other tests' zones
    first = 33000 + (os.getpid() % 200) * RELAY_PORTS
    log_path = directory / "turnserver.log"
    argv = [
        TURNSERVER,
        "-n",  # no configuration file: Debian's /etc/turnserver.conf is not read
        "--no-cli",
        "--listening-ip",
        host,
        "--relay-ip",
        host,
        "--listening-port",
        str(port),
        "--tls-listening-port",
        str(tls_port),
        "--min-port",
        str(first),
        "--max-port",
        str(first + RELAY_PORTS - 1),
        "--use-auth-secret",
        "--static-auth-secret",
        SECRET,
        "--realm",
        REALM,
        "--cert",
        str(cert),
        "--pkey",
        str(key),
        "--fingerprint",
        "--no-multicast-peers",
        "--no-dtls",
        "--no-tlsv1",
        "--no-tlsv1_1",
        # a file rather than stdout, which coturn buffers when it is not a terminal (lost at exit)
        "--log-file",
        str(log_path),
        "--simple-log",
        "--pidfile",
        str(directory / "turnserver.pid"),
        "--userdb",
        str(directory / "turndb.sqlite"),
    ]
    if allowed_peer is not None:
        argv += ["--allowed-peer-ip", allowed_peer]
        for denied in (
            "0.0.0.0-0.255.255.255",
            "10.0.0.0-10.255.255.255",
            "100.64.0.0-100.127.255.255",
            "127.0.0.0-127.255.255.255",
            "169.254.0.0-169.254.255.255",
            "172.16.0.0-172.31.255.255",
            "192.168.0.0-192.168.255.255",
            "198.18.0.0-198.19.255.255",
        ):
            argv += ["--denied-peer-ip", denied]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory
    )
    try:
        deadline = time.monotonic() + 10
        while not (_listening(host, port) and _listening(host, tls_port)):
            if process.poll() is not None:
                raise RuntimeError(f"turnserver exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnserver not listening: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield RunningTurn(host, port, tls_port, SECRET, cert, log_path)
    finally:
        stop_process(process)
