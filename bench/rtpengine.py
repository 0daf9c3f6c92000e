"""rtpengine (userspace, Debian package) as the benchmark's reference forwarder, driven over its ng protocol."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from gateway.media.sdp import Codec, MediaDescription, SessionDescription
from gateway.media.sdp import parse as parse_sdp

Bencoded = bytes | str | int | list[Any] | dict[str, Any]


def bencode(value: Bencoded) -> bytes:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode(), v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value; byte strings come back as str (ng replies are text)."""

    def parse(pos: int) -> tuple[Any, int]:
        kind = data[pos : pos + 1]
        if kind == b"i":
            end = data.index(b"e", pos)
            return int(data[pos + 1 : end]), end + 1
        if kind in (b"l", b"d"):
            pos += 1
            items: list[Any] = []
            while data[pos : pos + 1] != b"e":
                item, pos = parse(pos)
                items.append(item)
            if kind == b"l":
                return items, pos + 1
            return dict(zip(items[::2], items[1::2], strict=True)), pos + 1
        colon = data.index(b":", pos)
        length = int(data[pos:colon])
        start = colon + 1
        return data[start : start + length].decode("utf-8", "replace"), start + length

    value, _ = parse(0)
    return value


def free_udp_range(count: int, start: int = 20000, stop: int = 32000) -> tuple[int, int]:
    """A block of `count` consecutive UDP ports on 127.0.0.1 that are free right now (below the ephemeral range)."""
    for base in range(start, stop - count, count):
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base, base + count - 1
    raise OSError("no free UDP port block for rtpengine")


class RtpEngine:
    """One rtpengine process in the foreground, userspace forwarding only (--table=-1)."""

    def __init__(self, log_path: Path, ports: int = 1024) -> None:
        binary = shutil.which("rtpengine")
        if binary is None:
            raise FileNotFoundError("rtpengine is not installed (make system-deps)")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.ng_port = int(s.getsockname()[1])
        self.port_min, self.port_max = free_udp_range(ports)
        self.command = [
            binary,
            "--config-file=none",
            "--interface=127.0.0.1",
            f"--listen-ng=127.0.0.1:{self.ng_port}",
            "--foreground",
            "--log-stderr",
            "--table=-1",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
            "--log-level=3",
            "--timeout=600",
            "--silent-timeout=600",
        ]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.connect(("127.0.0.1", self.ng_port))
        self._sock.settimeout(0.5)
        self._cookie = 0
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rtpengine exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(TimeoutError, OSError):
                if self.ng({"command": "ping"}).get("result") == "pong":
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("rtpengine does not answer ng ping")

    @property
    def pid(self) -> int:
        return self.process.pid

    def ng(self, message: dict[str, Any], attempts: int = 4) -> dict[str, Any]:
        """Send one ng command (cookie, space, bencoded dict) and return the decoded reply."""
        for _ in range(attempts):
            self._cookie += 1
            cookie = b"%d_%s" % (self._cookie, os.urandom(4).hex().encode())
            self._sock.send(cookie + b" " + bencode(message))
            try:
                while True:
                    data = self._sock.recv(65535)
                    head, _, body = data.partition(b" ")
                    if head == cookie:
                        reply: dict[str, Any] = bdecode(body)
                        return reply
            except TimeoutError:
                continue
        raise TimeoutError(f"rtpengine did not answer {message.get('command')!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._sock.close()
        self._log.close()


def plain_audio_sdp(port: int, direction: str, session_id: int) -> str:
    """A SIP-style plain RTP/AVP Opus offer or answer on 127.0.0.1 (rtcp on port+1)."""
    media = MediaDescription(
        kind="audio",
        port=port,
        proto="RTP/AVP",
        fmt=["111"],
        direction=direction,
        codecs=[Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1")],
    )
    session = SessionDescription(
        origin=f"- {session_id} 1 IN IP4 127.0.0.1",
        connection="IN IP4 127.0.0.1",
        media=[media],
    )
    return session.serialize()


def media_address(sdp_text: str) -> tuple[str, int]:
    """Where the SDP says to send RTP (first audio m-line; media-level c= wins)."""
    description = parse_sdp(sdp_text)
    media = next(m for m in description.media if m.kind == "audio" and m.port != 0)
    connection = media.connection or description.connection or "IN IP4 127.0.0.1"
    return connection.split()[2], media.port


class Call:
    """One one-way call leg through rtpengine: A (sender) offers sendonly, B (receiver) answers recvonly."""

    def __init__(self, engine: RtpEngine, call_id: str, a_port: int, b_port: int) -> None:
        self.engine = engine
        self.call_id = call_id
        offer = engine.ng(
            {
                "command": "offer",
                "call-id": call_id,
                "from-tag": "a",
                "sdp": plain_audio_sdp(a_port, "sendonly", 1),
                "replace": ["origin", "session-connection"],
            }
        )
        if offer.get("result") != "ok":
            raise RuntimeError(f"rtpengine offer failed: {offer}")
        self.b_source = media_address(offer["sdp"])  # rtpengine's side facing B
        answer = engine.ng(
            {
                "command": "answer",
                "call-id": call_id,
                "from-tag": "a",
                "to-tag": "b",
                "sdp": plain_audio_sdp(b_port, "recvonly", 2),
                "replace": ["origin", "session-connection"],
            }
        )
        if answer.get("result") != "ok":
            raise RuntimeError(f"rtpengine answer failed: {answer}")
        self.a_target = media_address(answer["sdp"])  # where A sends

    def delete(self) -> None:
        with contextlib.suppress(TimeoutError, OSError):
            self.engine.ng({"command": "delete", "call-id": self.call_id, "from-tag": "a"})
