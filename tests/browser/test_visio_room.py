"""Our web page in a room linked to a Visio room, in headless Chromium.

A real livekit-server plays the Visio instance; LiveKit's official SDK plays Claire Dubois, a Visio
user who publishes a 440 Hz tone and a video; a SIPp phone (G.711 A-law, a pcap) dials the room; the
gateway runs as a process with a [visio] section. In the browser: the participant list shows
Claire with the Visio badge and the phone with its phone badge, Claire's video is decoded
(getStats framesDecoded rising) and her audio arrives with a level above zero; on Visio's side,
Claire receives the browser's audio as a participant of its own named as the browser user. The run
saves test-artifacts/visio-room.png with Claire's tile and the phone's.

Playwright's sync API cannot share a thread with a running asyncio loop, and the SDK binds its
rooms to the loop they are created on: Claire lives on an event loop of her own, in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from tests.browser.conftest import ARTIFACTS, Participant, load_room_page
from tests.browser.test_web_client import keeps_flowing, wait_until
from tests.gateway_process import RunningGateway, free_port, running_gateway, sipp_media_port
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_sdk import VisioUser
from tests.interop.sipp_tools import SCENARIOS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

T = TypeVar("T")

VISIO_HZ = 440.0
CLAIRE = "Claire Dubois"
BROWSER_USER = "Bruno Petit"
PHONE_NAME = "Phone ••• 78"  # dial_in_g711_hold.xml calls from 0140506078; numbers are masked
PREFIX = "rondpoint-"
SCREENSHOT = ARTIFACTS / "visio-room.png"


class LoopThread:
    """An asyncio event loop running in a daemon thread; `run()` waits for a coroutine on it.
    As a context manager, it is closed on exit."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop, after a moment for the SDK's last events. The loop is not closed: the
        SDK's native threads may still hand it an event, which a closed loop would refuse."""
        with contextlib.suppress(Exception):
            self.run(asyncio.sleep(0.5), 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def visio_gateway(
    tmp_path_factory: pytest.TempPathFactory, livekit: RunningLiveKit
) -> Iterator[RunningGateway]:
    tmp = Path(tmp_path_factory.mktemp("visio-web-gateway"))
    extra = (
        '[rooms]\ndemo_room = ""\n[limits]\nanonymous_requests_per_minute = 10000\n'
        f'[visio]\nurl = "{livekit.url}"\napi_key = "{livekit.api_key}"\n'
        f'api_secret = "{livekit.api_secret}"\nidentity_prefix = "{PREFIX}"\n'
        "reconnect_max_seconds = 2\n"
    )
    with running_gateway(tmp, extra_config=extra, log_format="text") as gateway:
        try:
            yield gateway
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(gateway.log_path, ARTIFACTS / "visio-browser-gateway.log")


@pytest.fixture
def claire_loop() -> Iterator[LoopThread]:
    with LoopThread() as thread:
        yield thread


@contextlib.contextmanager
def visio_user(
    thread: LoopThread, server: RunningLiveKit, room: str, identity: str, name: str
) -> Iterator[VisioUser]:
    user = thread.run(VisioUser.join(server, room, identity, name), 20)
    try:
        yield user
    finally:
        with contextlib.suppress(Exception):
            thread.run(user.leave(), 15)


@contextlib.contextmanager
def phone_in(gateway: RunningGateway, room: str, seconds: int = 90) -> Iterator[None]:
    """A SIPp phone in ROOM (G.711 A-law, g711a.pcap) for up to SECONDS, hung up on exit."""
    assert shutil.which("sipp"), "SIPp is not installed: run 'make system-deps'"
    process = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(SCENARIOS / "dial_in_g711_hold.xml"),
            "-s",
            room,
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-mp",
            str(sipp_media_port()),
            "-d",
            str(seconds * 1000),
            "-nostdin",
            "-timeout",
            f"{seconds + 20}s",
            "-timeout_error",
            f"127.0.0.1:{gateway.sip_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def browser_in(
    chromium: Any,
    gateway: RunningGateway,
    room: str,
    name: str,
    request: pytest.FixtureRequest,
    role: str = "member",
) -> Iterator[Participant]:
    """Our page joined to ROOM as NAME (a token of ROLE), in a fresh context with the fake
    camera and microphone; when the block fails, its screenshot and console go to
    test-artifacts/."""
    token = gateway.token(room, "bruno-" + secrets.token_hex(2), name, role=role)
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.grant_permissions(["camera", "microphone"], origin=gateway.base_url)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    query = urllib.parse.urlencode({"autojoin": "1", "name": name, "res": "360", "lang": "en"})
    load_room_page(page, f"{gateway.base_url}/r/{room}?{query}#token={token}")
    participant = Participant(name, context, page, console)
    try:
        yield participant
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        slug = f"{request.node.name}-browser"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"{slug}.png"))
        (ARTIFACTS / f"{slug}.console.txt").write_text("\n".join(console))
        raise
    finally:
        context.close()


def link_state(gateway: RunningGateway, room: str) -> str:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}/links")
    assert status == 200, body
    items = body["links"] if isinstance(body, dict) else body
    return str(items[0]["status"]["state"]) if items else ""


def listed(p: Participant, name: str, origin: str) -> Callable[[], dict[str, Any] | None]:
    def find() -> dict[str, Any] | None:
        return next((o for o in p.others() if o["name"] == name and o["origin"] == origin), None)

    return find


def test_a_visio_user_and_a_phone_in_our_page(
    chromium: Any,
    visio_gateway: RunningGateway,
    livekit: RunningLiveKit,
    claire_loop: LoopThread,
    request: pytest.FixtureRequest,
) -> None:
    gateway = visio_gateway
    room, visio_room = f"mairie-{secrets.token_hex(3)}", str(uuid.uuid4())
    gateway.create_room(room)
    with visio_user(claire_loop, livekit, visio_room, "claire-oidc-sub", CLAIRE) as claire:
        claire_loop.run(claire.publish_tone(VISIO_HZ))
        claire_loop.run(claire.publish_video(640, 360))
        status, body = gateway.admin(
            "POST", f"/api/v1/rooms/{room}/links", {"target": f"visio:{visio_room}"}
        )
        assert status == 201, body
        wait_until(
            lambda: link_state(gateway, room) == "connected", 15, "the Visio link to connect"
        )

        with (
            phone_in(gateway, room),
            browser_in(chromium, gateway, room, BROWSER_USER, request) as me,
        ):
            me.wait_state("room", timeout=25)

            # The participant list: Claire from Visio, the phone, each with its origin badge.
            visio = wait_until(listed(me, CLAIRE, "visio"), 15, f"{CLAIRE} listed from Visio")
            phone = wait_until(listed(me, PHONE_NAME, "sip"), 20, "the phone listed")
            assert {o["name"] for o in me.others()} == {CLAIRE, PHONE_NAME}, me.others()
            me.page.get_by_test_id("participants-toggle").click()
            for who, css, label in (
                (visio, "origin-visio", "Visio"),
                (phone, "origin-sip", "Phone"),
            ):
                row = me.page.get_by_test_id(f"person-{who['id']}")
                row.wait_for(state="visible", timeout=10_000)
                assert who["name"] in row.inner_text()
                badge = row.locator(f".origin.{css}")
                assert badge.inner_text().strip() == label, row.inner_html()
                tile = me.page.get_by_test_id(f"tile-{who['id']}")
                tile.wait_for(state="visible", timeout=10_000)
                assert tile.locator(f".origin.{css}").inner_text().strip() == label

            # Claire's video is decoded and her audio has a level, in the browser.
            cid = visio["id"]

            def claire_stats() -> dict[str, Any]:
                return dict(me.stats().get(cid) or {})

            wait_until(
                lambda: (
                    (s := claire_stats())
                    and s["audio"]["packets"] > 0
                    and s["video"]["framesDecoded"] > 0
                ),
                20,
                f"the browser to receive {CLAIRE}'s audio and decode her video",
            )
            before, after, level = keeps_flowing(claire_stats)
            assert after["video"]["framesDecoded"] > before["video"]["framesDecoded"], (
                before,
                after,
            )
            assert after["audio"]["packets"] > before["audio"]["packets"], (before, after)
            assert level > 0, after

            # Visio's side: the browser user as a participant of their own, with their audio.
            bruno = claire_loop.run(
                claire.wait_participant(lambda p: p.name == BROWSER_USER, timeout=15), 20
            )
            assert bruno.identity.startswith(PREFIX), bruno.identity
            assert bruno.attributes.get("rondpoint.origin") == "ors", dict(bruno.attributes)
            heard = claire_loop.run(
                claire.record_audio(bruno.identity, 3.0, skip_silence=False, timeout=15), 20
            )
            assert int(np.abs(heard).max()) > 1000, "Claire hears nothing from the browser"
            caller = claire_loop.run(
                claire.wait_participant(lambda p: p.name == PHONE_NAME, timeout=15), 20
            )
            assert caller.attributes.get("rondpoint.origin") == "sip", dict(caller.attributes)
            assert caller.attributes.get("sip.phoneNumber") == "••• 78", dict(caller.attributes)

            async def names_claire_sees() -> set[str]:
                return {p.name for p in claire.participants().values()}

            # the bridge participant is hidden; nobody from Visio is mirrored back
            assert claire_loop.run(names_claire_sees()) == {BROWSER_USER, PHONE_NAME}

            # The screenshot: Claire's tile playing her video, the phone's tile, the people panel.
            video = me.page.get_by_test_id(f"tile-{cid}").locator("video")
            wait_until(
                lambda: video.evaluate("v => v.videoWidth > 0 && v.currentTime > 0"),
                10,
                f"{CLAIRE}'s tile to play her video",
            )
            me.page.wait_for_timeout(500)
            ARTIFACTS.mkdir(exist_ok=True)
            me.page.screenshot(path=str(SCREENSHOT))
