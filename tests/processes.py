"""Server processes the interop tests run (Synapse, livekit-server): each writes one log file,
is waited for until it answers HTTP, can be killed and started again on the same command, and
is stopped gracefully. Also the install scripts (tests/*.sh) that fetch what the tests run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest

from tests.gateway_process import ROOT

LOG_TAIL = 4000
"""How much of the log's end a failure shows."""


def spawn_logged(
    command: list[str], log_path: Path, *, name: str, append: bool = False, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start COMMAND with its output in LOG_PATH (APPEND: after a line saying NAME restarted)."""
    with log_path.open("ab" if append else "wb") as log:
        if append:
            log.write(f"\n----- {name} restarted -----\n".encode())
            log.flush()
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )


def wait_http_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, *, name: str, timeout: float
) -> None:
    """Return once GET URL answers 200; RuntimeError with the log's end when PROCESS exits or
    TIMEOUT seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n" + _log_tail(log_path))
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer within {timeout:g} s:\n" + _log_tail(log_path))


def respawn_until_ready(
    command: list[str],
    log_path: Path,
    ready_url: str,
    *,
    name: str,
    timeout: float,
    pause: float,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """COMMAND started again (log appended) until it answers READY_URL: the ports a killed
    process held may still be taken for a moment, so an early exit is retried every PAUSE
    seconds until TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        process = spawn_logged(command, log_path, name=name, append=True, cwd=cwd)
        try:
            wait_http_ready(ready_url, process, log_path, name=name, timeout=timeout)
            return process
        except RuntimeError:
            if process.poll() is None or time.monotonic() > deadline:
                stop_process(process)
                raise
            time.sleep(pause)


class LoggedServer:
    """What a running server's record (a dataclass with `process`, `log_path`, `command` and
    `restarts`) can do: read its log, kill it, start it again, stop it."""

    name: ClassVar[str]
    """How the log and errors call it."""
    restart_pause: ClassVar[float]
    """How long to wait before starting it again when it exits at once (its ports still held)."""
    restart_timeout: ClassVar[float]
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str]
    restarts: int

    def ready_url(self) -> str:
        """What answers 200 once the server serves."""
        raise NotImplementedError

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (nothing graceful: no one is told) and reap it."""
        kill_process(self.process)

    def restart(self, timeout: float | None = None) -> None:
        """Start the server again on the same command (killing it first if it still runs) and
        return once it answers. Blocking: from async code use `arestart()`."""
        if not self.command:
            raise RuntimeError(f"this {self.name} has no command to restart with")
        self.kill()
        self.process = respawn_until_ready(
            self.command,
            self.log_path,
            self.ready_url(),
            name=self.name,
            timeout=timeout or self.restart_timeout,
            pause=self.restart_pause,
            cwd=self.log_path.parent,
        )
        self.restarts += 1

    async def arestart(self, timeout: float | None = None) -> None:
        """restart() in a worker thread, so the event loop (and the clients on it) keep running."""
        await asyncio.to_thread(self.restart, timeout)

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM, then SIGKILL after 10 s)."""
        stop_process(self.process)


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL PROCESS (nothing graceful) and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate PROCESS gracefully (SIGTERM, then SIGKILL after 10 s)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def installed(script: Path, *, timeout: float, env: dict[str, str] | None = None) -> Path:
    """Run the install script SCRIPT (it installs what is missing, then prints where it is, last)
    and return that path; fails the test loudly, never skips, when the script fails."""
    result = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )
    if result.returncode != 0:
        pytest.fail(f"{script.relative_to(ROOT)} failed:\n{result.stderr[-LOG_TAIL:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _log_tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-LOG_TAIL:]
