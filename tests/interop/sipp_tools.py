"""Running SIPp scenarios against a gateway process, and reading the room state they leave."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.gateway_process import RunningGateway, free_port, sipp_media_port

SCENARIOS = Path(__file__).parent / "sipp"
PCAPS = Path("/usr/share/sip-tester")


@dataclass
class SippRun:
    """A finished SIPp run: its exit code, its screen output and the SIP messages it traced."""

    returncode: int
    output: str
    messages: str
    stats: str

    def explain(self) -> str:
        return f"exit {self.returncode}\n{self.output[-2500:]}\n--- messages ---\n{self.messages[-6000:]}"

    def assert_passed(self) -> None:
        assert self.returncode == 0, self.explain()

    def count(self, column: str) -> int:
        """A cumulative counter of the last -trace_stat line, e.g. "SuccessfulCall(C)"."""
        lines = [line for line in self.stats.splitlines() if line.strip()]
        if len(lines) < 2:
            return 0
        names = lines[0].split(";")
        values = lines[-1].split(";")
        return int(values[names.index(column)])


async def run_sipp(
    target: str | int,
    scenario: str,
    service: str,
    *extra: str,
    transport: str = "u1",
    local_ip: str = "127.0.0.1",
    calls: int = 1,
    timeout: float = 40,
) -> SippRun:
    """Run one SIPp scenario from tests/interop/sipp to ``target`` (a port on 127.0.0.1, or
    host:port) and wait for it; SIPp's own -timeout bounds the run, and so does asyncio."""
    assert shutil.which("sipp"), "SIPp is not installed: run 'make system-deps'"
    destination = f"127.0.0.1:{target}" if isinstance(target, int) else target
    with tempfile.TemporaryDirectory(prefix="sipp-") as tmp:
        messages = Path(tmp) / "messages.log"
        stats = Path(tmp) / "stats.csv"
        process = await asyncio.create_subprocess_exec(
            "sipp",
            "-sf",
            str(SCENARIOS / scenario),
            "-s",
            service,
            "-m",
            str(calls),
            "-t",
            transport,
            "-i",
            local_ip,
            "-p",
            str(free_port(socket.SOCK_DGRAM if transport.startswith("u") else socket.SOCK_STREAM)),
            "-mp",
            str(sipp_media_port()),
            "-nostdin",
            "-timeout",
            f"{int(timeout)}s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            str(messages),
            "-trace_stat",
            "-stf",
            str(stats),
            *extra,
            destination,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp,
        )
        try:
            async with asyncio.timeout(timeout + 15):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            output, _ = await process.communicate()
        assert process.returncode is not None
        return SippRun(
            process.returncode,
            output.decode(errors="replace"),
            messages.read_text(errors="replace") if messages.exists() else "",
            stats.read_text(errors="replace") if stats.exists() else "",
        )


@contextlib.contextmanager
def answering_phone() -> Iterator[int]:
    """A phone on loopback to dial: SIPp's built-in `uas` scenario, answering one call within 60 s.
    Yields its SIP port; the phone is gone after the block."""
    port = free_port()
    callee = subprocess.Popen(
        ["sipp", "-sn", "uas", "-m", "1", "-i", "127.0.0.1", "-p", str(port)]
        + ["-mp", str(sipp_media_port()), "-nostdin", "-timeout", "60s", "-timeout_error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # listening
        yield port
    finally:
        callee.kill()
        callee.wait()


def participants(gateway: RunningGateway, room: str) -> list[dict]:
    """The room's participants as the admin API lists them."""
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return list(body["participants"])


def phones(gateway: RunningGateway, room: str) -> list[dict]:
    return [p for p in participants(gateway, room) if p["origin"] == "sip"]


async def wait_until(what: Callable[[], object], timeout: float, message: str = "") -> object:
    """Poll ``what`` (run in a thread: it may do blocking HTTP) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(what)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"timed out after {timeout} s")
        await asyncio.sleep(0.2)
