"""A matrix-js-sdk user for the Matrix tests: the asyncio side of a Node driver (tests/matrix/js/).

The driver is a Node process speaking JSON lines (requests with an id on stdin, replies and events
on stdout; see tests/matrix/js/rtc_member.mjs); matrix-js-sdk comes from tests/matrix_js.sh
(.cache/npm-matrix/VERSION). The driver's stderr (the SDK's log) goes to a file, kept in
test-artifacts/ by the fixtures on a failure.

    async with js_client(tmp_path / "anna-js.log") as anna:
        await anna.command("login", homeserver_url=synapse.url, user_id="anna", password="...")
        await anna.command("join", room=room_id)
        await anna.command("rtc_join", room=room_id, focus_url=focus_url)
        event = await anna.wait_event("memberships", lambda e: len(e["memberships"]) == 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_process import ROOT
from tests.processes import installed

INSTALL_SCRIPT = ROOT / "tests" / "matrix_js.sh"
DRIVERS = ROOT / "tests" / "matrix" / "js"


def matrix_js_sdk() -> Path:
    """The folder holding node_modules/matrix-js-sdk, installed first when missing (fails loudly)."""
    path = installed(INSTALL_SCRIPT, timeout=600)
    if not (path / "node_modules" / "matrix-js-sdk" / "package.json").is_file():
        pytest.fail(f"tests/matrix_js.sh printed {path}, which holds no matrix-js-sdk")
    return path


class JsCommandError(AssertionError):
    """The driver answered a command with an error."""


class JsClient:
    """One running driver. `command()` sends a request and awaits its reply; `events` keeps every
    event the driver reported, in order; `wait_event()` awaits one that matches."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "event" in message:
                self.events.append(message)
                self._changed.set()
                continue
            future = self._pending.pop(message.get("id"), None)
            if future is None or future.done():
                continue
            if message.get("ok"):
                future.set_result(message.get("result"))
            else:
                future.set_exception(JsCommandError(str(message.get("error"))))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    JsCommandError(f"the driver exited; its log:\n{self.log_tail()}")
                )
        self._pending.clear()
        self._changed.set()

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    async def command(self, name: str, timeout: float = 30.0, **args: Any) -> Any:
        """Runs command NAME with ARGS in the driver; returns its result, raises JsCommandError."""
        if self._reader.done():
            raise JsCommandError(f"the driver has exited; its log:\n{self.log_tail()}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        assert self.process.stdin is not None
        self.process.stdin.write(
            (json.dumps({"id": request_id, "cmd": name, **args}) + "\n").encode()
        )
        await self.process.stdin.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(request_id, None)
            raise JsCommandError(
                f"{name} got no reply within {timeout:g} s; driver log:\n{self.log_tail()}"
            ) from None

    async def wait_event(
        self,
        name: str,
        match: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """The first event NAME (already received or to come) for which MATCH is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["event"] == name and match(event):
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0 or self._reader.done():
                last = [e for e in self.events if e["event"] == name][-3:]
                raise AssertionError(
                    f"no matching {name!r} event within {timeout:g} s; last: {last}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def close(self) -> None:
        """Asks the driver to leave its calls and exit; kills it if it does not within 10 s."""
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.command("close", timeout=10)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def start_js_client(log_path: Path, driver: str = "rtc_member.mjs") -> JsClient:
    """Starts DRIVER (a file of tests/matrix/js/) with matrix-js-sdk; stderr goes to LOG_PATH."""
    sdk_dir = await asyncio.to_thread(matrix_js_sdk)
    env = {**os.environ, "MATRIX_JS_SDK": str(sdk_dir / "node_modules" / "matrix-js-sdk")}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVERS / driver),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=sdk_dir,
            env=env,
            limit=16 * 1024 * 1024,
        )
    return JsClient(process, log_path)


@contextlib.asynccontextmanager
async def js_client(log_path: Path, driver: str = "rtc_member.mjs") -> AsyncIterator[JsClient]:
    """A driver for the test's duration, closed at the end."""
    client = await start_js_client(log_path, driver)
    try:
        yield client
    finally:
        await client.close()
