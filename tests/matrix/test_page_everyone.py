"""Everyone from every system in one room, seen on our web page (issue 14).

One gateway process is the Matrix application service of a real Synapse and has a `[visio]`
section; one real livekit-server plays both Visio's LiveKit and the Matrix call's focus (two rooms
on it: the Visio room's and the one our focus names for the Matrix room). Our room here is linked
to a Visio room and to a Matrix room at once, and in it meet:

- Bruno Petit, host, on our web page (headless Chromium, Playwright's sync API);
- a SIPp phone dialling the room (G.711 A-law, shown as "Phone ••• 78");
- Claire Dubois on Visio (LiveKit's Python SDK), publishing a 440 Hz tone and a video;
- Anna Schmidt on Matrix: matrix-js-sdk holding her call membership and a livekit-client page
  publishing a 660 Hz tone and a moving pattern, as Element Call does.

From the page's side: `window.rondpoint.participants()` lists all four with their names and origins
(ors, sip, visio, matrix), the people panel lists each in the section of its origin,
and the page decodes Claire's and Anna's video (framesDecoded rising) and receives their audio with
a level above zero, and the phone's audio. The two foreign systems see each other through us:
Claire has Anna in her Visio room, Anna's call has Claire. Anna's screen share in the call is a tile
of its own on the page, beside her camera, both playing. The run saves
test-artifacts/screenshots/room-everyone.png (the room view) and people-everyone.png (the people
panel open).

Playwright's sync API cannot share a thread with a running asyncio loop: Claire (whose SDK binds
her room to its loop), Anna and the Synapse client calls run on `claire_loop`, a `LoopThread`
(tests/browser/test_visio_room.py).
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.browser.conftest import ARTIFACTS, Participant, chromium  # noqa: F401  (fixture)
from tests.browser.test_page_stage import both_flowing
from tests.browser.test_visio_room import (
    CLAIRE,
    PHONE_NAME,
    VISIO_HZ,
    LoopThread,
    browser_in,
    claire_loop,  # noqa: F401  (fixture)
    listed,
    phone_in,
    visio_user,
)
from tests.browser.test_web_client import keeps_flowing, wait_until
from tests.gateway_process import RunningGateway
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.test_visio_bridge import visio_config
from tests.matrix.conftest import (
    ElementCallUser,
    MatrixStack,
    element_call_user,
    js_clients,
    running_stack,
)
from tests.matrix.meeting import ANNA_HZ
from tests.matrix.page import livekit_browser
from tests.matrix.synapse import MatrixUser

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(360),  # Synapse, two Chromiums, livekit-server: slow on 2 loaded cores
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

T = TypeVar("T")

ANNA = "Anna Schmidt"
HOST = "Bruno Petit"
SCREENSHOTS = ARTIFACTS / "screenshots"
GROUP_TITLES = {  # i18n.js, STRINGS.en group_*
    "ors": "In the browser",
    "sip": "By phone",
    "visio": "From Visio",
    "matrix": "From Matrix",
}


@pytest.fixture(scope="module")
def everyone_stack(
    synapse_python: Path,
    livekit: RunningLiveKit,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[MatrixStack]:
    """The Matrix stack (tests/matrix/conftest.py) whose gateway also has a `[visio]` section on
    the same livekit-server."""
    tmp = Path(tmp_path_factory.mktemp("everyone-stack"))
    with running_stack(tmp, synapse_python, livekit, request, visio_config(livekit)) as stack:
        yield stack


@contextlib.contextmanager
def entered(
    thread: LoopThread, manager: AbstractAsyncContextManager[T], timeout: float = 60
) -> Iterator[T]:
    """MANAGER (an async context manager) entered and exited on THREAD's loop, around a block of
    this thread; a failure of the block is what its exit sees."""
    value = thread.run(manager.__aenter__(), timeout)
    try:
        yield value
    except BaseException as error:
        thread.run(manager.__aexit__(type(error), error, error.__traceback__), timeout)
        raise
    thread.run(manager.__aexit__(None, None, None), timeout)


@contextlib.asynccontextmanager
async def anna_in_call(
    anna: MatrixUser, matrix_room: str, tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ElementCallUser]:
    """ANNA in MATRIX_ROOM's call as Element Call would be, with her tone and a moving pattern;
    hung up on exit."""
    async with livekit_browser(request) as pages, js_clients(tmp, request) as matrix_js:
        call = await element_call_user(
            anna,
            matrix_room,
            matrix_js=matrix_js,
            livekit_pages=pages,
            device_id="ANNAJS",
            frequency=ANNA_HZ,
            video=True,
        )
        try:
            yield call
        finally:
            with contextlib.suppress(Exception):
                await call.leave()


def links_connected(gateway: RunningGateway, room: str, count: int) -> bool:
    """Whether ROOM has COUNT links, all connected."""
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}/links")
    assert status == 200, body
    items = body["links"] if isinstance(body, dict) else body
    return len(items) == count and all(i["status"]["state"] == "connected" for i in items)


def media_of(me: Participant, pid: str) -> dict[str, Any]:
    """What the page receives from participant PID (window.rondpoint.stats()), {} before any."""
    return dict(me.stats().get(pid) or {})


def assert_seen_and_heard(me: Participant, pid: str, name: str) -> None:
    """The page decodes PID's video and receives its audio with a level above zero, both still
    flowing three seconds later."""
    wait_until(
        lambda: (
            (s := media_of(me, pid))
            and s["audio"]["packets"] > 0
            and s["video"]["framesDecoded"] > 0
        ),
        45,
        f"the page to receive {name}'s audio and decode {name}'s video",
    )
    before, after, level = keeps_flowing(lambda: media_of(me, pid))
    assert after["video"]["framesDecoded"] > before["video"]["framesDecoded"], (name, before, after)
    assert after["audio"]["packets"] > before["audio"]["packets"], (name, before, after)
    assert level > 0, (name, after)


def playing(me: Participant, pid: str) -> Callable[[], bool]:
    """Whether PID's tile plays its video."""
    video = me.page.get_by_test_id(f"tile-{pid}").locator("video")
    return lambda: bool(video.evaluate("v => v.videoWidth > 0 && v.currentTime > 0"))


def screenshot(me: Participant, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    me.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_a_phone_a_visio_user_and_a_matrix_user_on_our_page(
    chromium: Any,  # noqa: F811
    everyone_stack: MatrixStack,
    livekit: RunningLiveKit,
    claire_loop: LoopThread,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    stack, gateway, loop = everyone_stack, everyone_stack.gateway, claire_loop
    suffix = secrets.token_hex(3)
    room, visio_room = f"everyone-{suffix}", str(uuid.uuid4())

    # The room here, linked to a Matrix room (Olga's, Anna invited) and to a Visio room.
    olga = loop.run(stack.synapse.register_user(f"olga{suffix}", "olga-password"))
    anna = loop.run(stack.synapse.register_user(f"anna{suffix}", "anna-password"))
    loop.run(anna.set_display_name(ANNA))
    room, matrix_room = loop.run(stack.linked_room(olga, room), 40)
    loop.run(olga.invite(matrix_room, anna.user_id))
    status, body = gateway.admin(
        "POST", f"/api/v1/rooms/{room}/links", {"target": f"visio:{visio_room}"}
    )
    assert status == 201, body
    wait_until(lambda: links_connected(gateway, room, 2), 20, "the Visio and Matrix links")

    with (
        visio_user(loop, livekit, visio_room, "claire-oidc-sub", CLAIRE) as claire,
        entered(loop, anna_in_call(anna, matrix_room, tmp_path, request), 90) as anna_call,
        phone_in(gateway, room, seconds=300),
        browser_in(chromium, gateway, room, HOST, request, role="host") as me,
    ):
        loop.run(claire.publish_tone(VISIO_HZ))
        loop.run(claire.publish_video(640, 360))
        me.wait_state("room", timeout=30)

        # window.rondpoint.participants(): the four, each with its name and origin.
        everyone = {CLAIRE: "visio", ANNA: "matrix", PHONE_NAME: "sip"}
        found = {
            name: wait_until(listed(me, name, origin), 60, f"{name} listed from {origin}")
            for name, origin in everyone.items()
        }
        assert {(o["name"], o["origin"]) for o in me.others()} == set(everyone.items()), me.others()
        (self_,) = [p for p in me.participants() if p["self"]]
        assert (self_["name"], self_["origin"], self_["role"]) == (HOST, "ors", "host"), self_

        # The page decodes Claire's and Anna's video and receives their audio; the phone's too.
        assert_seen_and_heard(me, found[CLAIRE]["id"], CLAIRE)
        assert_seen_and_heard(me, found[ANNA]["id"], ANNA)
        wait_until(
            lambda: media_of(me, found[PHONE_NAME]["id"]).get("audio", {}).get("packets", 0) > 0,
            20,
            "the page to receive the phone's audio",
        )

        # Visio and Matrix see each other through us.
        loop.run(claire.wait_participant(lambda p: p.name == ANNA, timeout=30), 40)
        loop.run(anna_call.page.wait_participant(lambda p: p["name"] == CLAIRE, timeout=30), 40)

        # The room view, with Claire's and Anna's tiles playing.
        for who in (CLAIRE, ANNA):
            wait_until(playing(me, found[who]["id"]), 15, f"{who}'s tile to play the video")
        me.page.wait_for_timeout(500)
        screenshot(me, "room-everyone")

        # The people panel: a section per origin, each person's row in its origin's section.
        me.page.get_by_test_id("participants-toggle").click()
        for name, origin in [*everyone.items(), (HOST, "ors")]:
            person = found[name]["id"] if name != HOST else self_["id"]
            group = me.page.get_by_test_id(f"people-group-{origin}")
            row = group.get_by_test_id(f"person-{person}")
            row.wait_for(state="visible", timeout=10_000)
            assert name in row.inner_text(), (name, row.inner_text())
            title = group.locator("h3").text_content() or ""
            assert title.startswith(GROUP_TITLES[origin]), (origin, title)
        me.page.wait_for_timeout(300)
        screenshot(me, "people-everyone")

        # Anna shares her screen in the Matrix call: a tile of its own here, beside her camera,
        # and the frames of both keep arriving.
        loop.run(anna_call.page.share_screen(), 30)
        aid = found[ANNA]["id"]
        me.page.get_by_test_id(f"screen-{aid}").wait_for(state="visible", timeout=20_000)
        first = wait_until(lambda: both_flowing(me, aid, {}), 25, "Anna's camera and screen")
        wait_until(lambda: both_flowing(me, aid, first), 10, "frames of both to keep arriving")

        # The host mutes Claire and Anna from the people panel: each is muted in her own system
        # (her own client's microphone muted), as that system's hosts would mute her.
        for who in (CLAIRE, ANNA):
            me.page.get_by_test_id(f"mute-{found[who]['id']}").click()
        loop.run(
            claire.wait_until(lambda: claire.publication("audio").muted, 15, "Claire muted"), 20
        )

        async def anna_muted() -> bool:
            mics = [t for t in await anna_call.page.local_tracks() if t["kind"] == "audio"]
            return bool(mics) and all(t["muted"] for t in mics)

        wait_until(lambda: loop.run(anna_muted()), 15, "Anna's microphone muted in her call")
        for who in (CLAIRE, ANNA):
            wait_until(
                lambda who=who: (
                    me.page.get_by_test_id(f"tile-{found[who]['id']}").get_attribute("data-muted")
                    == "true"
                ),
                10,
                f"{who} shown muted here",
            )

        # The host removes Anna: she leaves the room here only (the Matrix room is its
        # moderators'), and is not brought back while it is linked; she is still in her call.
        me.page.get_by_test_id(f"remove-{aid}").click()
        me.page.get_by_test_id("confirm-ok").click()
        wait_until(lambda: ANNA not in {o["name"] for o in me.others()}, 10, "Anna to leave here")
        me.page.wait_for_timeout(1500)
        status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
        assert ANNA not in [p["name"] for p in body["participants"]], body
        assert loop.run(anna_call.page.state())["status"] == "connected"
