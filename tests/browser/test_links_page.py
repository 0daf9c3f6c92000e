"""Hosts link and unlink a room from the room page (people panel), in English and French.

The gateway runs in this process, on its own event loop in a thread, so that the test can register
a fake ``visio:`` adapter on ``gateway.links`` (a production gateway has no hook for that).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from gateway.config import Config
from gateway.http.app import create_app
from gateway.links import LinkStatus
from gateway.rooms import Role
from gateway.server import Gateway
from tests.browser.conftest import ARTIFACTS, load_room_page
from tests.gateway_process import free_port

pytestmark = pytest.mark.browser

T = TypeVar("T")
ROOM_UUID = "6f1c2a9e-3b7d-4e55-9a0c-2d8f4b1e7a63"
TARGET = f"visio:{ROOM_UUID}"


class FakeLink:
    def __init__(self, target: str) -> None:
        self.target = target
        self.state = "connecting"
        self.detail = ""

    def status(self) -> LinkStatus:
        return LinkStatus(self.state, self.detail, time.time(), 1 if self.detail else 0)

    async def start(self) -> None:
        self.state = "connected"

    async def stop(self) -> None:
        self.state = "stopped"


class FakeAdapter:
    scheme = "visio"

    def __init__(self) -> None:
        self.links: list[FakeLink] = []

    def normalize(self, target: str) -> str:
        try:
            return f"visio:{uuid.UUID(target.split(':', 1)[1])}"
        except ValueError:
            raise ValueError("a Visio room is visio: followed by the room's UUID") from None

    def open(self, room_id: str, target: str) -> FakeLink:
        self.links.append(FakeLink(target))
        return self.links[-1]


@dataclass
class InProcessGateway:
    gateway: Gateway
    adapter: FakeAdapter
    base_url: str
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)


@pytest.fixture(scope="module")
def linked_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    config = Config()
    config.server.data_dir = str(Path(tmp_path_factory.mktemp("links-page")) / "data")
    config.sip.enabled = False
    config.rooms.demo_room = ""
    config.http.port = free_port()
    media_port = free_port(socket.SOCK_DGRAM)
    config.media.port = config.media.port_range_start = config.media.port_range_end = media_port
    adapter = FakeAdapter()

    async def up() -> tuple[Gateway, web.AppRunner]:
        gateway = Gateway(config)
        gateway.links.register(adapter)
        await gateway.start()
        runner = web.AppRunner(create_app(gateway), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", config.http.port).start()
        return gateway, runner

    gateway, runner = asyncio.run_coroutine_threadsafe(up(), loop).result(30)
    running = InProcessGateway(gateway, adapter, f"http://127.0.0.1:{config.http.port}", loop)
    try:
        yield running
    finally:

        async def down() -> None:
            await runner.cleanup()
            await gateway.stop()

        running.call(down())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def stored_links(site: InProcessGateway, room: str) -> list[str]:
    """The room's links as the store keeps them (read on the gateway's own thread)."""

    async def read() -> list[str]:
        record = site.gateway.store.get_room(room)
        assert record is not None
        return record.links

    return site.call(read())


def open_page(chromium: Any, site: InProcessGateway, room: str, role: Role, lang: str) -> Any:
    async def token() -> str:
        if not site.gateway.rooms.exists(room):
            site.gateway.rooms.create(room)
        return site.gateway.tokens.mint(room, f"{role.value}-{lang}", role.value.title(), role)

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["camera", "microphone"], origin=site.base_url)
    page = context.new_page()
    load_room_page(
        page, f"{site.base_url}/r/{room}?autojoin=1&lang={lang}#token={site.call(token())}"
    )
    page.wait_for_function(
        "s => window.rondpoint && window.rondpoint.state === s", arg="room", timeout=15000
    )
    page.click("#toggle-people")
    return page


def test_a_host_links_sees_the_state_and_unlinks(chromium: Any, linked_gateway: Any) -> None:
    site: InProcessGateway = linked_gateway
    host = open_page(chromium, site, "salle-liee", Role.HOST, "en")
    member = open_page(chromium, site, "salle-liee", Role.MEMBER, "en")
    try:
        section = host.get_by_test_id("links-section")
        section.wait_for(state="visible", timeout=10000)
        host.get_by_test_id("link-input").fill("visio:not-a-uuid")
        host.get_by_test_id("link-send").click()
        host.locator(".toast.error").filter(has_text="visio: followed by its UUID").wait_for()
        assert stored_links(site, "salle-liee") == []

        host.get_by_test_id("link-input").fill(TARGET.upper())
        host.get_by_test_id("link-send").click()
        row = host.locator(f'[data-testid="link-row"][data-target="{TARGET}"]')
        row.get_by_test_id("link-state").filter(has_text="Connected").wait_for(timeout=10000)
        assert stored_links(site, "salle-liee") == [TARGET]

        link = site.adapter.links[-1]
        link.state, link.detail = "retrying", "LiveKit closed the socket mid-join"
        row.get_by_test_id("link-state").filter(has_text="Reconnecting").wait_for(timeout=10000)
        assert "closed the socket" in row.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        host.screenshot(path=str(ARTIFACTS / "links-host-panel.png"))

        # members see no link controls
        member.wait_for_timeout(500)
        assert member.get_by_test_id("links-section").is_hidden()

        row.get_by_test_id("unlink").click()
        row.wait_for(state="detached", timeout=10000)
        assert stored_links(site, "salle-liee") == []
        assert link.state == "stopped"
    finally:
        host.context.close()
        member.context.close()


def test_the_links_section_speaks_french(chromium: Any, linked_gateway: Any) -> None:
    site: InProcessGateway = linked_gateway
    host = open_page(chromium, site, "salle-fr", Role.HOST, "fr")
    try:
        host.get_by_test_id("links-section").wait_for(state="visible", timeout=10000)
        assert host.get_by_test_id("link-send").inner_text().strip() == "Lier"
        host.get_by_test_id("link-input").fill(TARGET)
        host.get_by_test_id("link-send").click()
        row = host.locator(f'[data-testid="link-row"][data-target="{TARGET}"]')
        row.get_by_test_id("link-state").filter(has_text="Connectée").wait_for(timeout=10000)
        assert row.get_by_test_id("unlink").inner_text().strip() == "Délier"
    finally:
        host.context.close()
