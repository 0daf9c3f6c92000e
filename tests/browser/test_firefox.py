"""The web client in a real Firefox (Debian's firefox-esr through WebDriver BiDi) next to Chromium.

Firefox differs from Chromium where a conferencing page is fragile: its SDP (simulcast with
`a=simulcast:send` and rids, extmap ids, payload types, mids), its getStats() and its media
elements. One Firefox and one Chromium participant share a room through the page, hear and see
each other, then Firefox leaves.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Participant
from tests.browser.firefox import FIREFOX, Firefox, launch_firefox
from tests.browser.test_web_client import new_room, wait_until
from tests.gateway_process import RunningGateway

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(60)]

Opener = Callable[..., Participant]


@pytest.fixture
def firefox_origins(web_gateway: RunningGateway) -> list[str]:
    """The origins Firefox opens the page from (camera and microphone allowed there); a module
    that serves the page elsewhere (through a proxy) overrides this fixture."""
    return [web_gateway.base_url]


@pytest.fixture
def firefox(
    tmp_path: Path, firefox_origins: list[str], request: pytest.FixtureRequest
) -> Iterator[Firefox]:
    """A fresh headless Firefox with fake camera and microphone; its console and log kept on failure."""
    if not Path(FIREFOX).exists():
        pytest.fail(f"{FIREFOX} is not installed: run 'make system-deps'")
    with launch_firefox(tmp_path / "firefox", media_origins=firefox_origins) as browser:
        try:
            yield browser
        finally:
            failed = (
                getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
            )
            if failed:
                ARTIFACTS.mkdir(exist_ok=True)
                slug = request.node.name
                with contextlib.suppress(Exception):
                    browser.screenshot(ARTIFACTS / f"{slug}-firefox.png")
                (ARTIFACTS / f"{slug}-firefox.console.txt").write_text("\n".join(browser.console))
                (ARTIFACTS / f"{slug}-firefox.log").write_text(browser.log_tail(200_000))


def media_from(stats: dict[str, Any], sender: str) -> dict[str, int]:
    s = stats.get(sender) or {"audio": {}, "video": {}}
    return {
        "audio_packets": int(s["audio"].get("packets", 0)),
        "video_packets": int(s["video"].get("packets", 0)),
        "frames_decoded": int(s["video"].get("framesDecoded", 0)),
    }


def receiving(stats: dict[str, Any], sender: str) -> dict[str, int] | None:
    m = media_from(stats, sender)
    return m if all(v > 0 for v in m.values()) else None


def test_firefox_and_chromium_share_a_room(
    firefox: Firefox, open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room = new_room("firefox")
    ff_name = "Félix"
    query = urllib.parse.urlencode({"autojoin": "1", "name": ff_name, "res": "360"})
    firefox.navigate(f"{web_gateway.base_url}/r/{room}?{query}")
    firefox.wait_for("window.rondpoint && window.rondpoint.state === 'room'", 15)
    ff_id = str(firefox.evaluate("window.rondpoint.selfId"))

    chromium = open_participant(room, "Chloé")
    chromium.wait_state("room")
    ch_id = chromium.id

    def ff_others() -> list[dict[str, Any]]:
        return [p for p in firefox.evaluate("window.rondpoint.participants()") if not p["self"]]

    wait_until(
        lambda: [(o["id"], o["name"]) for o in ff_others()] == [(ch_id, "Chloé")],
        10,
        "Firefox to list Chloé",
    )
    wait_until(
        lambda: [(o["id"], o["name"]) for o in chromium.others()] == [(ff_id, ff_name)],
        10,
        "Chromium to list Félix",
    )
    assert all(o["state"] == "joined" for o in ff_others() + chromium.others())
    assert chromium.page.get_by_test_id(f"tile-{ff_id}").is_visible()
    assert ff_name in chromium.page.get_by_test_id(f"tile-{ff_id}").inner_text()
    assert (
        firefox.evaluate(
            f"document.querySelector('[data-testid=\"tile-{ch_id}\"]').innerText"
        ).count("Chloé")
        == 1
    )

    # Both ways: audio packets and decoded video frames arrive, and keep arriving.
    def ff_stats() -> dict[str, Any]:
        return dict(firefox.evaluate("window.rondpoint.stats()"))

    wait_until(
        lambda: receiving(ff_stats(), ch_id), 25, "Firefox to receive Chloé's audio and video"
    )
    wait_until(
        lambda: receiving(chromium.stats(), ff_id),
        25,
        "Chromium to receive Félix's audio and video",
    )

    def now() -> dict[str, dict[str, int]]:
        return {
            "firefox": media_from(ff_stats(), ch_id),
            "chromium": media_from(chromium.stats(), ff_id),
        }

    # every count grows past where it was (however long a loaded machine stalls a browser)
    before = now()

    def grown() -> bool:
        after = now()
        return all(after[who][key] > before[who][key] for who in before for key in before[who])

    wait_until(grown, 20, f"every count to grow past {before}")

    # The remote tile shows video (not the initials) in Firefox too.
    wait_until(
        lambda: firefox.evaluate(
            f"(() => {{ const v = document.querySelector('[data-testid=\"tile-{ch_id}\"] video');"
            " return !!v && v.videoWidth > 0 && !v.paused; })()"
        ),
        10,
        "Firefox to play Chloé's video",
    )
    time.sleep(0.3)
    firefox.screenshot(ARTIFACTS / "firefox-room.png")

    # Félix leaves through the button: his tile disappears at Chloé's.
    firefox.evaluate("document.querySelector('[data-testid=\"leave\"]').click()")
    firefox.wait_for("window.rondpoint.state === 'left'", 5)
    wait_until(
        lambda: chromium.page.get_by_test_id(f"tile-{ff_id}").count() == 0, 10, "Félix's tile to go"
    )
    assert ff_id not in {o["id"] for o in chromium.others()}
    assert chromium.page.locator(".tile").count() == 1
