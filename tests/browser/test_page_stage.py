"""The page's stage, from the user's side: a screen share from the browser (its own tile at the
others', its frames arriving beside the camera's), grid and speaker view, pinned tiles, the active
speaker's ring, and a phone's layout (390 x 844). Saves test-artifacts/screenshots/grid.png,
speaker.png and mobile.png.

Headless Chromium with the suite's flags (--use-fake-ui-for-media-stream and fake devices) answers
getDisplayMedia with a fake screen and a fake audio track: no picker, no extra flag.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Participant
from tests.browser.test_visio_room import (  # noqa: F401 (fixtures: pytest finds them by name)
    LoopThread,
    browser_in,
    claire_loop,
    link_state,
    listed,
    visio_gateway,
    visio_user,
)
from tests.browser.test_web_client import join_trio, new_room, wait_until
from tests.gateway_process import RunningGateway
from tests.interop.livekit_fixtures import RunningLiveKit

pytestmark = [
    pytest.mark.browser,
    pytest.mark.interop,
    pytest.mark.timeout(180),  # four pages at once, on a busy machine too
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

Opener = Callable[..., Participant]
SCREENSHOTS = ARTIFACTS / "screenshots"


def stage(p: Participant) -> dict[str, Any]:
    """What p's stage shows (layout.js stageState): layout, pinned key, tiles with their sizes."""
    return dict(p.page.evaluate("window.rondpoint.stage()"))


def tiles(p: Participant) -> list[dict[str, Any]]:
    return list(stage(p)["tiles"])


def large(p: Participant) -> dict[str, Any] | None:
    return next((t for t in tiles(p) if t["large"]), None)


def frames(p: Participant, pid: str) -> dict[str, int]:
    """Frames decoded so far per video track p receives from pid: {source: frames}."""
    streams = p.page.evaluate("window.rondpoint.videoStreams()")
    return {s["source"]: int(s["framesDecoded"]) for s in streams if s["pid"] == pid}


def sent_heights(p: Participant) -> dict[str, int]:
    """The max_height p last asked for, per track (spec 8.7 `subscription`)."""
    return dict(p.page.evaluate("window.rondpoint._debug().sent"))


def shot(p: Participant, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    p.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def both_flowing(p: Participant, pid: str, before: dict[str, int]) -> dict[str, int] | None:
    now = frames(p, pid)
    moving = all(now.get(s, 0) > before.get(s, 0) for s in ("camera", "screen"))
    return now if moving else None


def test_a_screen_share_is_a_tile_of_its_own_beside_the_camera(open_participant: Opener) -> None:
    alice, bruno, chloe = join_trio(open_participant, new_room("share"))
    aid = alice.id
    wait_until(lambda: frames(bruno, aid).get("camera", 0) > 0, 25, "Alice's camera at Bruno's")
    shot(bruno, "grid")

    share = alice.page.get_by_test_id("share-toggle")
    assert share.is_visible() and share.get_attribute("aria-pressed") == "false"
    share.click()
    wait_until(lambda: share.get_attribute("aria-pressed") == "true", 10, "the button pressed")
    alice.page.get_by_test_id(f"screen-{aid}").wait_for(state="visible", timeout=10_000)

    # Bruno: a second tile for Alice, named as her screen, and two video streams of hers whose
    # frames keep arriving; her camera stays on its own tile.
    tile = bruno.page.get_by_test_id(f"screen-{aid}")
    tile.wait_for(state="visible", timeout=15_000)
    assert tile.locator(".tile-name").inner_text() == "Alice (screen)"
    first = wait_until(
        lambda: both_flowing(bruno, aid, {}), 25, "both of Alice's videos at Bruno's"
    )
    wait_until(lambda: both_flowing(bruno, aid, first), 10, "frames of both to keep arriving")
    shown = {t["source"]: t for t in tiles(bruno) if t["pid"] == aid}
    assert set(shown) == {"camera", "screen"}, shown
    wait_until(
        lambda: all(t["playing"] for t in tiles(bruno) if t["pid"] == aid), 10, "both tiles playing"
    )
    assert "no-video" not in (bruno.page.get_by_test_id(f"tile-{aid}").get_attribute("class") or "")

    # Speaker view: the share is the large tile, the cameras in the strip.
    chloe.page.get_by_test_id("layout-toggle").click()
    wait_until(
        lambda: (large(chloe) or {}).get("source") == "screen", 10, "the share large at Chloé's"
    )
    big = large(chloe)
    assert big is not None and big["pid"] == aid
    assert all(t["w"] < big["w"] for t in tiles(chloe) if not t["large"])
    wait_until(
        lambda: tiles(chloe) and all(t["playing"] for t in tiles(chloe)), 15, "videos playing"
    )
    shot(chloe, "speaker")

    # Stopping the share removes its tile everywhere; the camera keeps flowing.
    share.click()
    wait_until(lambda: share.get_attribute("aria-pressed") == "false", 10, "the button released")
    for p in (alice, bruno, chloe):
        wait_until(
            lambda p=p: p.page.get_by_test_id(f"screen-{aid}").count() == 0,
            10,
            f"{p.name}: no share",
        )
    wait_until(lambda: "screen" not in frames(bruno, aid), 10, "the screen stream gone at Bruno's")
    before = frames(bruno, aid)
    wait_until(
        lambda: frames(bruno, aid).get("camera", 0) > before.get("camera", 0), 10, "camera frames"
    )
    assert (large(chloe) or {}).get("source") == "camera"

    # Sharing again works on the same connection (a new transceiver, a new offer); the browser's
    # own "Stop sharing" (the captured track ends) stops it as the button does.
    alice.page.evaluate(
        """() => { const real = navigator.mediaDevices.getDisplayMedia.bind(navigator.mediaDevices);
             navigator.mediaDevices.getDisplayMedia = async (c) => (window.shared = await real(c)); }"""
    )
    share.click()
    bruno.page.get_by_test_id(f"screen-{aid}").wait_for(state="visible", timeout=15_000)
    wait_until(lambda: both_flowing(bruno, aid, {}), 25, "the second share's frames at Bruno's")
    alice.page.evaluate("window.shared.getVideoTracks()[0].dispatchEvent(new Event('ended'))")
    wait_until(lambda: share.get_attribute("aria-pressed") == "false", 10, "the button released")
    wait_until(
        lambda: bruno.page.get_by_test_id(f"screen-{aid}").count() == 0, 10, "no share at Bruno's"
    )
    assert not [line for line in alice.console if "pageerror" in line], alice.console


def test_a_refused_screen_share_is_said_in_the_page_language(open_participant: Opener) -> None:
    room = new_room("refus")
    solene = open_participant(room, "Solène", query="lang=fr")
    solene.wait_state("room")
    other = open_participant(room, "Olivier")
    other.wait_state("room")
    # the person (or the browser's settings) refuses the capture
    solene.page.evaluate(
        """() => { navigator.mediaDevices.getDisplayMedia = () =>
             Promise.reject(new DOMException("Permission denied", "NotAllowedError")); }"""
    )
    button = solene.page.get_by_test_id("share-toggle")
    assert button.get_attribute("aria-label") == "Partager l’écran"
    button.click()
    alert = solene.page.locator(".toast.error")
    alert.wait_for(timeout=5_000)
    assert "Le partage d’écran n’a pas été autorisé" in alert.inner_text()
    assert button.get_attribute("aria-pressed") == "false"
    assert solene.page.locator(".tile-screen").count() == 0
    sid = solene.id
    assert not [t for t in tiles(other) if t["pid"] == sid and t["source"] == "screen"]


def test_speaker_view_follows_pins_and_is_remembered(open_participant: Opener) -> None:
    alice, bruno, chloe = join_trio(open_participant, new_room("orateur"))
    ids = {p.name: p.id for p in (alice, bruno, chloe)}
    toggle = bruno.page.get_by_test_id("layout-toggle")
    assert toggle.get_attribute("aria-label") == "Speaker view"
    assert stage(bruno)["layout"] == "grid" and large(bruno) is None
    sizes = {round(t["w"]) for t in tiles(bruno)}
    assert len(sizes) == 1, f"a grid of equal tiles: {sizes}"

    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    wait_until(lambda: large(bruno), 5, "a large tile in speaker view")
    big = large(bruno)
    assert big is not None and big["pid"] != ids["Bruno"], "never one's own camera, unpinned"

    # The active speaker (spec 9.11) wears a ring: the fake microphones beep, so someone speaks.
    wait_until(lambda: any(t["speaking"] for t in tiles(bruno)), 20, "a speaking ring")

    # Pin Chloé: her tile is the large one; pin again to unpin.
    chloe_tile = bruno.page.get_by_test_id(f"tile-{ids['Chloé']}")
    chloe_tile.hover()
    pin = chloe_tile.get_by_test_id("tile-pin")
    assert pin.get_attribute("aria-label") == "Pin \u2068Chloé\u2069"
    pin.click()
    wait_until(lambda: (large(bruno) or {}).get("pid") == ids["Chloé"], 5, "Chloé large")
    assert pin.get_attribute("aria-pressed") == "true"
    # ... and her large tile asks for the high layer (360 p at res=360), the strip the low one.
    tracks = {t["pid"]: t["track"] for t in tiles(bruno) if t["track"]}
    wait_until(
        lambda: (
            sent_heights(bruno).get(tracks[ids["Chloé"]]) == 360
            and sent_heights(bruno).get(tracks[ids["Alice"]]) == 180
        ),
        10,
        "Chloé on the high layer, Alice on the low one",
    )

    # A pin in the grid makes the pinned tile large too; unpinning gives the grid back.
    toggle.click()
    assert stage(bruno)["layout"] == "grid"
    assert (large(bruno) or {}).get("pid") == ids["Chloé"]
    pin.click()
    wait_until(lambda: large(bruno) is None, 5, "the grid back")

    # The choice is remembered: speaker view survives a reload.
    toggle.click()
    bruno.page.reload()
    bruno.wait_state("room")
    assert stage(bruno)["layout"] == "speaker"
    wait_until(lambda: large(bruno), 10, "speaker view after the reload")
    assert bruno.page.get_by_test_id("layout-toggle").get_attribute("aria-pressed") == "true"


def boxes_fit(p: Participant) -> list[str]:
    """What does not fit a phone's screen: tiles under 150 px, an avatar larger than its tile, a
    name cut short, a control outside the viewport, a page wider than the screen."""
    return list(
        p.page.evaluate(
            """() => {
        const bad = [];
        const vw = document.documentElement.clientWidth;
        if (document.documentElement.scrollWidth > vw) bad.push("page " + document.documentElement.scrollWidth);
        for (const tile of document.querySelectorAll("#grid .tile")) {
          const t = tile.getBoundingClientRect();
          if (t.width < 150) bad.push("tile " + t.width);
          const a = tile.querySelector(".avatar span").getBoundingClientRect();
          if (a.width && (a.width > t.width || a.height > t.height)) bad.push("avatar " + a.height);
          const name = tile.querySelector(".tile-name");
          // a long name may wrap or end in an ellipsis, never be cut to a few letters
          if (name.clientWidth < Math.min(name.scrollWidth, 90)) bad.push("name cut " + name.textContent);
        }
        for (const b of document.querySelectorAll(".controls button")) {
          if (b.hidden || !b.offsetParent) continue;
          const r = b.getBoundingClientRect();
          if (r.left < 0 || r.right > vw) bad.push("control " + b.id + " " + r.right);
        }
        return bad;
      }"""
        )
    )


def test_a_phone_shows_readable_tiles_and_controls_that_fit(open_participant: Opener) -> None:
    room = new_room("mobile")
    alice = open_participant(room, "Alice")
    alice.wait_state("room")
    bruno = open_participant(room, "Bruno")
    phone = open_participant(room, "Maëlle Dupont-Lefèvre", viewport=(390, 844))
    for p in (bruno, phone):
        p.wait_state("room")
    wait_until(lambda: len(tiles(phone)) == 3, 10, "three tiles on the phone")
    wait_until(lambda: all(t["playing"] for t in tiles(phone)), 25, "every camera playing")
    assert boxes_fit(phone) == []
    shot(phone, "mobile")

    # A screen share and speaker view on the phone: one large tile, a strip of tiles of 150 px or more.
    alice.page.get_by_test_id("share-toggle").click()
    phone.page.get_by_test_id(f"screen-{alice.id}").wait_for(state="visible", timeout=15_000)
    phone.page.get_by_test_id("layout-toggle").click()
    wait_until(lambda: (large(phone) or {}).get("source") == "screen", 10, "the share large")
    assert boxes_fit(phone) == []
    # A camera turned off: initials, in a circle no larger than the strip's tile.
    bruno.page.get_by_test_id("camera-toggle").click()
    wait_until(
        lambda: (
            "no-video"
            in (phone.page.get_by_test_id(f"tile-{bruno.id}").get_attribute("class") or "")
        ),
        10,
        "Bruno's initials",
    )
    assert boxes_fit(phone) == []
    shot(phone, "mobile-speaker")


def test_a_visio_screen_share_is_a_tile_of_its_own(
    chromium: Any,
    visio_gateway: RunningGateway,  # noqa: F811
    livekit: RunningLiveKit,
    claire_loop: LoopThread,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    """Claire, in Visio (LiveKit's SDK), shares her screen with her camera on: the page shows both,
    each on its own tile, the share named as hers and large in speaker view."""
    gateway = visio_gateway
    room, visio_room = f"ecran-{secrets.token_hex(3)}", str(uuid.uuid4())
    gateway.create_room(room)
    with visio_user(claire_loop, livekit, visio_room, "claire-oidc-sub", "Claire Dubois") as claire:
        claire_loop.run(claire.publish_video(640, 360))
        claire_loop.run(claire.publish_video(1280, 720, fps=5, source="screen_share"))
        status, body = gateway.admin(
            "POST", f"/api/v1/rooms/{room}/links", {"target": f"visio:{visio_room}"}
        )
        assert status == 201, body
        wait_until(lambda: link_state(gateway, room) == "connected", 15, "the Visio link")
        with browser_in(chromium, gateway, room, "Bruno Petit", request) as me:
            me.wait_state("room", timeout=25)
            cid = wait_until(listed(me, "Claire Dubois", "visio"), 15, "Claire listed")["id"]
            share = me.page.get_by_test_id(f"screen-{cid}")
            share.wait_for(
                state="visible", timeout=30_000
            )  # the mirror's tracks, on a busy machine too
            assert share.locator(".tile-name").inner_text() == "Claire Dubois (screen)"
            assert share.locator(".origin-visio").inner_text() == "Visio"
            first = wait_until(lambda: both_flowing(me, cid, {}), 25, "Claire's two videos")
            wait_until(lambda: both_flowing(me, cid, first), 10, "frames of both to keep arriving")
            me.page.get_by_test_id("layout-toggle").click()
            wait_until(
                lambda: (large(me) or {}).get("key", "").startswith(f"{cid}:"),
                10,
                "her share large",
            )
            # She stops sharing: the tile goes, her camera stays.
            claire_loop.run(claire.unpublish("screen_share"))
            wait_until(lambda: share.count() == 0, 15, "the share's tile to go")
            assert me.page.get_by_test_id(f"tile-{cid}").is_visible()
