"""Tiny network probes for the NetLab self-test, usable on the host or inside a namespace.

``python -m tests.netlab.probe udp-echo HOST PORT SECONDS``: echoes UDP datagrams back to their sender.
``python -m tests.netlab.probe udp-count HOST PORT COUNT``: sends COUNT numbered datagrams to HOST:PORT
and prints how many distinct ones came back.
``python -m tests.netlab.probe tcp-sink HOST PORT SECONDS``: accepts one TCP connection and prints
the bytes/s it received (from the first byte to the end of the window).
``python -m tests.netlab.probe tcp-source HOST PORT SECONDS``: sends as fast as TCP lets it.
``python -m tests.netlab.probe tcp-connect HOST PORT``: prints ``ok`` or ``fail`` (1 s deadline).
Every probe has a deadline, so none outlives its test.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time

CHUNK = 16 * 1024


def udp_echo(host: str, port: int, seconds: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, port))
        s.settimeout(0.2)
        print("ready", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, peer = s.recvfrom(2048)
            except TimeoutError:
                continue
            with contextlib.suppress(OSError):  # EPERM when a block drops our reply
                s.sendto(data, peer)


def udp_count(host: str, port: int, count: int, interval: float = 0.0005) -> int:
    """Sends ``count`` datagrams and returns how many distinct ones were echoed back."""
    seen: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for i in range(count):
            with contextlib.suppress(OSError):
                s.sendto(i.to_bytes(4, "big") + bytes(96), (host, port))
            time.sleep(interval)
            _drain(s, seen)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            _drain(s, seen)
            time.sleep(0.01)
    return len(seen)


def _drain(s: socket.socket, seen: set[int]) -> None:
    while True:
        try:
            data = s.recv(2048)
        except BlockingIOError:
            return
        seen.add(int.from_bytes(data[:4], "big"))


def tcp_sink(host: str, port: int, seconds: float) -> float:
    """Accepts one connection; bytes/s received between its first byte and the window's end."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(1)
        server.settimeout(10)
        print("ready", flush=True)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(0.2)
            received, first = 0, 0.0
            end = time.monotonic() + seconds + 10
            while time.monotonic() < end:
                try:
                    data = conn.recv(CHUNK)
                except TimeoutError:
                    continue
                if not data:
                    break
                if not first:
                    first = time.monotonic()
                    end = first + seconds
                received += len(data)
            elapsed = max(time.monotonic() - first, 1e-3) if first else 1.0
            return received / elapsed


def tcp_source(host: str, port: int, seconds: float) -> None:
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(1)
        payload = bytes(CHUNK)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                s.send(payload)
            except (TimeoutError, OSError):
                break


def tcp_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> None:
    command, host, port = argv[0], argv[1], int(argv[2])
    if command == "udp-echo":
        udp_echo(host, port, float(argv[3]))
    elif command == "udp-count":
        print(udp_count(host, port, int(argv[3])), flush=True)
    elif command == "tcp-sink":
        print(f"{tcp_sink(host, port, float(argv[3])):.0f}", flush=True)
    elif command == "tcp-source":
        tcp_source(host, port, float(argv[3]))
    elif command == "tcp-connect":
        print("ok" if tcp_connect(host, port) else "fail", flush=True)
    else:
        raise SystemExit(f"unknown probe {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
