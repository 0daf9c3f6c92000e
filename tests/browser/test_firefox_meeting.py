"""Issue 14's page features in a real Firefox (Debian's firefox-esr through WebDriver BiDi), each
read on a Chromium page in the same room: a raised hand and a reaction, a screen share, and a
dropped signalling connection the page comes back from by itself.

Firefox clicks as a user does (real pointer events: `Firefox.click`). Its page is opened through
the reconnect tests' cuttable proxy (tests/browser/test_page_reconnect.py), so the test can cut
its signalling; its media goes straight to the gateway, as in those tests.

Screen share: headless firefox-esr (153 ESR here) has no screen to capture and no fake display
capture. getDisplayMedia, given the user activation of a real click, answers NotFoundError whatever
the prefs (`media.getdisplaymedia.enabled`, `media.navigator.streams.fake`,
`media.navigator.permission.disabled`, `media.getusermedia.fake`,
`media.navigator.permission.fake`, `media.getusermedia.camera.fake.force` were all tried), and
there is no X server to run it headed. So this test does not check a share's frames at Chromium:
it checks what a Firefox user gets instead, the page's error and nothing published. Chromium's
own share is tested in test_page_stage.py.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.firefox import Firefox
from tests.browser.test_firefox import firefox  # noqa: F401 (a fixture: pytest finds it by name)
from tests.browser.test_page_reconnect import (  # noqa: F401 (proxy: a fixture)
    CuttableProxy,
    about,
    hears_more,
    named,
    proxy,
    received_frames,
    sees_more,
)
from tests.browser.test_page_social import open_people, seen
from tests.browser.test_web_client import Opener, new_room, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(120)]

FF_NAME = "Félix"


@pytest.fixture
def firefox_origins(proxy: CuttableProxy) -> list[str]:  # noqa: F811 (proxy: the fixture)
    """Firefox opens the page through the proxy: camera and microphone are allowed there."""
    return [proxy.url]


def visible(ff: Firefox, selector: str) -> bool:
    """Whether SELECTOR finds an element Firefox's page shows (laid out, not hidden)."""
    return bool(
        ff.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0; })()"
        )
    )


def test_firefox_raises_a_hand_reacts_shares_and_comes_back_after_a_cut_seen_by_chromium(
    firefox: Firefox,  # noqa: F811 (the fixture)
    open_participant: Opener,
    proxy: CuttableProxy,  # noqa: F811 (the fixture)
) -> None:
    room = new_room("firefox-reunion")
    firefox.navigate(f"{proxy.url}/r/{room}?autojoin=1&name=F%C3%A9lix&res=360")
    firefox.wait_for("window.rondpoint && window.rondpoint.state === 'room'", 15)
    ff_id = str(firefox.evaluate("window.rondpoint.selfId"))
    chromium = open_participant(room, "Chloé")
    chromium.wait_state("room")
    seen_by_chloe = received_frames(chromium)  # Playwright sees the sockets opened from now on:
    chromium.page.reload()  # Chloé joins again, her page's socket watched
    chromium.wait_state("room")
    assert seen(chromium, ff_id)["name"] == FF_NAME
    hears_more(chromium, ff_id, "Chromium to hear Félix")

    # 1. Félix raises his hand: Chromium shows it on his tile and lists it in the people panel.
    firefox.click('[data-testid="hand-toggle"]')
    firefox.wait_for(
        "document.querySelector('[data-testid=\"hand-toggle\"]').ariaPressed === 'true'", 5
    )
    ff_tile = chromium.page.get_by_test_id(f"tile-{ff_id}")
    wait_until(ff_tile.get_by_test_id("tile-hand").is_visible, 5, "Chloé to see Félix's hand")
    open_people(chromium)
    wait_until(
        chromium.page.get_by_test_id(f"hand-{ff_id}").is_visible, 5, "Félix's hand in the list"
    )
    assert seen(chromium, ff_id)["hand_raised_at"] is not None
    assert "Hand raised" in str(ff_tile.get_attribute("aria-label"))

    # ... and applauds from the reactions menu: the emoji floats over his tile at Chromium.
    firefox.click('[data-testid="reactions-toggle"]')
    firefox.wait_for("!document.querySelector('[data-testid=\"reactions-menu\"]').hidden", 5)
    firefox.click('[data-testid="reactions-menu"] [aria-label="Applause"]')
    floating = ff_tile.get_by_test_id("reaction-float")
    wait_until(lambda: floating.count() == 1, 5, "Chloé to see Félix's applause on his tile")
    assert floating.inner_text() == "👏"
    live = chromium.page.get_by_test_id("reactions-live").inner_text()
    assert FF_NAME in live and "Applause" in live

    # 2. Félix tries to share his screen: headless Firefox has none (see the docstring). His page
    # says so, his button stays up, and Chromium gets no share from him.
    firefox.click('[data-testid="share-toggle"]')
    firefox.wait_for(
        "document.getElementById('toasts').innerText.includes('Screen sharing could not start.')",
        10,
    )
    assert (
        firefox.evaluate("document.querySelector('[data-testid=\"share-toggle\"]').ariaPressed")
        == "false"
    )
    assert chromium.page.get_by_test_id(f"screen-{ff_id}").count() == 0
    assert {s["source"] for s in chromium.page.evaluate("window.rondpoint.videoStreams()")} == {
        "camera"
    }

    # 3. Félix's network drops (signalling only: every connection through the proxy reset, new
    # ones refused): his page says it is reconnecting, and Chromium shows him away.
    seen_by_chloe.clear()
    proxy.drop()
    firefox.wait_for("window.rondpoint.reconnecting !== null", 10)
    assert visible(firefox, '[data-testid="reconnecting"]')
    assert "Reconnecting…" in firefox.evaluate(
        "document.querySelector('[data-testid=\"reconnecting\"]').innerText"
    )
    assert firefox.evaluate("window.rondpoint.state") == "room"  # the page is kept
    wait_until(lambda: named(chromium, FF_NAME)[0]["reconnecting"], 10, "Chloé to see Félix away")
    assert ff_tile.get_by_test_id("tile-reconnecting").is_visible()

    proxy.restore()  # no click: the page comes back by itself, as the same participant
    firefox.wait_for("window.rondpoint.reconnecting === null", 20)
    assert not visible(firefox, '[data-testid="reconnecting"]')
    assert firefox.evaluate("[window.rondpoint.state, window.rondpoint.selfId]") == ["room", ff_id]
    wait_until(lambda: not named(chromium, FF_NAME)[0]["reconnecting"], 10, "Félix back for Chloé")
    assert [o["id"] for o in named(chromium, FF_NAME)] == [ff_id]  # listed once
    assert chromium.page.locator(".tile").count() == 2
    said = about(seen_by_chloe, ff_id)  # only that he was away, then back: no leave, no new Félix
    assert "participant_left" not in said and "participant_joined" not in said, said
    assert said[0] == "participant_updated:reconnecting" and "participant_updated:back" in said, (
        said
    )
    # his media comes again, on new peer connections
    hears_more(chromium, ff_id, "Chloé to hear Félix after his reconnection")
    sees_more(chromium, ff_id, "Chloé to see Félix after his reconnection")
    firefox.wait_for(
        f"window.rondpoint.participants().filter(p => p.id === {chromium.id!r}).length === 1", 5
    )
