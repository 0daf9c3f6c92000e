"""Browser-test fixtures: the real gateway as a subprocess, and headless Chromium through Playwright.

One gateway and one Chromium process serve the whole browser suite; every participant gets its
own fresh browser context (its own cookies, storage and fake camera/microphone).
"""

from __future__ import annotations

import contextlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.livekit_fixtures import RunningLiveKit, running_livekit

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


@contextlib.contextmanager
def browser_gateway(tmp: Path, log_name: str) -> Iterator[RunningGateway]:
    """A gateway for browser tests (every test browser shares 127.0.0.1, hence the limit), its log
    kept as test-artifacts/LOG_NAME: the first thing to read on a failure, next to the screenshots."""
    extra = '[rooms]\ndemo_room = ""\n[limits]\nanonymous_requests_per_minute = 10000\n'
    with running_gateway(tmp, extra_config=extra, log_format="text") as gateway:
        try:
            yield gateway
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(gateway.log_path, ARTIFACTS / log_name)


@pytest.fixture(scope="session")
def web_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """One gateway for the whole browser suite."""
    with browser_gateway(
        Path(tmp_path_factory.mktemp("web-gateway")), "browser-gateway.log"
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLiveKit]:
    """A real livekit-server on loopback playing a Visio instance (tests/interop/livekit_fixtures.py)."""
    with running_livekit(Path(tmp_path_factory.mktemp("livekit"))) as running:
        yield running


@contextlib.contextmanager
def launched_chromium(*extra_args: str) -> Iterator[Any]:
    """A headless Chromium (playwright Browser) with CHROMIUM_ARGS and EXTRA_ARGS."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run 'make system-deps'")
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running, which async tests cannot share."""
    with launched_chromium() as browser:
        yield browser


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


NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
"""Chromium drops the loads in flight when it sees the machine's network change (an address of
any interface came or went, as these machines' IPv6 does at any time)."""


def load_room_page(page: Any, url: str, timeout: float = 10) -> None:
    """Opens the room page at URL, and opens it again once if Chromium dropped its loads on a
    network change (a blank page, as a person would reload it)."""
    from playwright.sync_api import TimeoutError as PageTimeout

    said: list[str] = []

    def listen(message: Any) -> None:
        said.append(message.text)

    page.on("console", listen)
    try:
        page.goto(url)
        page.wait_for_function("() => window.rondpoint !== undefined", timeout=timeout * 1000)
    except PageTimeout:
        if not any(NETWORK_CHANGED in text for text in said):
            raise
        page.goto(url)
    finally:
        page.remove_listener("console", listen)


@pytest.fixture
def open_participant(
    chromium: Any, web_gateway: RunningGateway, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Participant]]:
    """open_participant(room, name, token=None, autojoin=True) -> Participant, in a fresh context
    (`base_url`: where the page is opened, the gateway's own address unless a test puts a proxy
    in between)."""
    opened: list[Participant] = []

    def open_(
        room: str,
        name: str,
        token: str | None = None,
        autojoin: bool = True,
        query: str = "",
        res: int = 360,
        viewport: tuple[int, int] = (1280, 800),
        base_url: str | None = None,
    ) -> Participant:
        width, height = viewport
        base = base_url or web_gateway.base_url
        context = chromium.new_context(viewport={"width": width, "height": height}, locale="en-US")
        context.grant_permissions(["camera", "microphone"], origin=base)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        q = (
            f"?autojoin=1&name={urllib.request.quote(name)}&res={res}"
            if autojoin
            else f"?res={res}"
        )
        if query:
            q += "&" + query
        url = f"{base}/r/{room}{q}"
        if token:
            url += f"#token={token}"
        load_room_page(page, url)
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
