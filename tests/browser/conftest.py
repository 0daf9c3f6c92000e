"""Browser-test fixtures: the real gateway as a subprocess, and headless Chromium through Playwright.

One gateway and one Chromium process serve the whole browser suite; every participant gets its
own fresh browser context (its own cookies, storage and fake camera/microphone).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_udp_range(size: int) -> int:
    """First port of `size` consecutive free UDP ports (best effort, loopback)."""
    for _ in range(50):
        start = _free_port(socket.SOCK_DGRAM)
        if start + size > 65535:
            continue
        socks = []
        try:
            for port in range(start, start + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range on 127.0.0.1")


@dataclass
class WebGateway:
    base_url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _admin_token: str = field(default="", repr=False)

    @property
    def admin_token(self) -> str:
        if not self._admin_token:
            self._admin_token = (self.data_dir / "admin-token").read_text().strip()
        return self._admin_token

    def request(
        self, method: str, path: str, body: Any = None, admin: bool = False
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if admin:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else {}

    def create_room(self, room_id: str, **policy: Any) -> dict[str, Any]:
        status, body = self.request("POST", "/api/v1/rooms", {"id": room_id, **policy}, admin=True)
        assert status == 201, body
        return body

    def host_token(self, room_id: str, name: str) -> str:
        status, body = self.request(
            "POST",
            f"/api/v1/rooms/{room_id}/tokens",
            {"identity": f"host-{name.lower()}", "name": name, "role": "host", "ttl": 600},
            admin=True,
        )
        assert status == 201, body
        return str(body["token"])

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def web_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebGateway]:
    exe = ROOT / ".venv" / "bin" / "rondpoint"
    if not exe.exists():
        pytest.skip(f"{exe} is not installed")
    tmp = Path(tmp_path_factory.mktemp("web-gateway"))
    data_dir = tmp / "data"
    http_port = _free_port()
    media_start = _free_udp_range(9)
    config = tmp / "rondpoint.toml"
    config.write_text(
        "[server]\n"
        'name = "browser.test"\n'
        f'data_dir = "{data_dir}"\n'
        "[http]\n"
        'host = "127.0.0.1"\n'
        f"port = {http_port}\n"
        "[media]\n"
        'host = "127.0.0.1"\n'
        f"port = {media_start}\n"
        f"port_range_start = {media_start + 1}\n"
        f"port_range_end = {media_start + 8}\n"
        "[rooms]\n"
        'demo_room = ""\n'
        "[limits]\n"
        "anonymous_requests_per_minute = 10000\n"
    )
    log_path = tmp / "gateway.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(exe), "--config", str(config), "serve", "--log-level", "info"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    gw = WebGateway(f"http://127.0.0.1:{http_port}", data_dir, log_path, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{gw.log_tail()}")
            try:
                with urllib.request.urlopen(gw.base_url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway is not ready after 30 s:\n{gw.log_tail()}")
            time.sleep(0.1)
        yield gw
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Keep the gateway log next to the screenshots: it is the first thing to read on a failure.
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(log_path, ARTIFACTS / "browser-gateway.log")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (make system-deps)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Participant:
    name: str
    context: Any
    page: Any
    console: list[str]

    @property
    def id(self) -> str:
        return str(self.page.evaluate("window.rondpoint.selfId"))

    def state(self) -> str:
        return str(self.page.evaluate("window.rondpoint.state"))

    def participants(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("window.rondpoint.participants()"))

    def others(self) -> list[dict[str, Any]]:
        return [p for p in self.participants() if not p["self"]]

    def stats(self) -> dict[str, Any]:
        return dict(self.page.evaluate("window.rondpoint.stats()"))

    def wait_state(self, state: str, timeout: float = 15) -> None:
        self.page.wait_for_function(
            "s => window.rondpoint && window.rondpoint.state === s",
            arg=state,
            timeout=timeout * 1000,
        )


@pytest.fixture
def open_participant(
    chromium: Any, web_gateway: WebGateway, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Participant]]:
    """open_participant(room, name, token=None, autojoin=True) -> Participant, in a fresh context."""
    opened: list[Participant] = []

    def open_(
        room: str, name: str, token: str | None = None, autojoin: bool = True, query: str = ""
    ) -> Participant:
        context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
        context.grant_permissions(["camera", "microphone"], origin=web_gateway.base_url)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        q = f"?autojoin=1&name={urllib.request.quote(name)}&res=360" if autojoin else "?res=360"
        if query:
            q += "&" + query
        url = f"{web_gateway.base_url}/r/{room}{q}"
        if token:
            url += f"#token={token}"
        page.goto(url)
        participant = Participant(name, context, page, console)
        opened.append(participant)
        return participant

    yield open_
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for p in opened:
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            slug = f"{request.node.name}-{p.name}".replace("/", "_").replace(" ", "_")
            with contextlib.suppress(Exception):
                p.page.screenshot(path=str(ARTIFACTS / f"{slug}.png"))
            (ARTIFACTS / f"{slug}.console.txt").write_text("\n".join(p.console))
        p.context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
