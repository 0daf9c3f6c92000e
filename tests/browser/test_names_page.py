"""Names on the web page (spec 7.1, 13.6): each shown isolated from the text around it (<bdi>,
dir="auto"), as text, and already without the controls the gateway removes where names enter."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from tests.browser.conftest import Participant
from tests.browser.test_web_client import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(90)]

Opener = Callable[..., Participant]
SARAH = "שרה כהן"


def test_names_are_isolated_on_the_page_and_arrive_clean(open_participant: Opener) -> None:
    room = f"names-{secrets.token_hex(3)}"
    alice = open_participant(room, "Alice")
    alice.wait_state("room")
    sarah = open_participant(room, SARAH)
    sarah.wait_state("room")
    eve = open_participant(room, "\u202eEve\x1b[0m")  # through the anonymous token endpoint
    eve.wait_state("room")

    tile = alice.page.get_by_test_id(f"tile-{sarah.id}")
    tile.wait_for(state="visible", timeout=10_000)
    name = tile.locator(".tile-name bdi")
    assert name.inner_text() == SARAH
    assert name.evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate"
    own = sarah.page.get_by_test_id(f"tile-{sarah.id}").locator(".tile-name")
    wait_until(lambda: own.locator("bdi").count() == 1, 5, "Sarah's own tile name")
    assert own.locator("bdi").inner_text() == SARAH and own.inner_text().endswith("(you)")

    eve_tile = alice.page.get_by_test_id(f"tile-{eve.id}").locator(".tile-name bdi")
    eve_tile.wait_for(timeout=10_000)
    assert eve_tile.inner_text() == "Eve[0m"
    assert {o["name"] for o in alice.others()} == {SARAH, "Eve[0m"}

    sarah.page.get_by_test_id("chat-toggle").click()
    sarah.page.get_by_test_id("chat-input").fill("שלום")
    sarah.page.get_by_test_id("chat-send").click()
    message = alice.page.get_by_test_id("chat-message")
    wait_until(lambda: message.count() == 1, 5, "Alice to get Sarah's message")
    author = message.locator(".msg-head strong")
    assert author.inner_text() == SARAH and author.get_attribute("dir") == "auto"
