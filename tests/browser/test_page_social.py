"""The room's social side in the web page, from the users' side (issue 14): raised hands, reactions,
a host's tools on a person (mute, ask to unmute, co-host, admit all), chat links, the chat history
of a late joiner, the unread count, and the people panel grouped by origin with a phone in it.

Every check reads another real page than the one that acted (or the gateway's own list); the
abuse checks send the forbidden request on the page's own ORS session, as anyone could from the
browser's console, and look at the documented refusal and at the others' pages, unchanged.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Participant
from tests.browser.test_web_client import (
    Opener,
    audio_packets,
    helene_hosts,
    new_room,
    receiving,
    wait_until,
)
from tests.gateway_process import RunningGateway
from tests.interop.sipp_tools import answering_phone

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(120)]

SCREENSHOTS = ARTIFACTS / "screenshots"


def send_raw(p: Participant, type_: str, body: dict[str, Any]) -> str | None:
    """Sends an ORS request on P's own session (the page's module state, as its console could);
    returns the refusal's problem code, or None when the server said `ok`."""
    return p.page.evaluate(
        """async ([type, body]) => {
            const { app } = await import("/static/state.js");
            try { await app.client.request(type, body); return null; } catch (e) { return e.code; }
        }""",
        [type_, body],
    )


def joined(open_participant: Opener, room: str, *names: str) -> list[Participant]:
    """NAMES join ROOM with anonymous tokens (members of a room the operator made)."""
    pages = [open_participant(room, name) for name in names]
    for p in pages:
        p.wait_state("room")
    return pages


def knocks(open_participant: Opener, room: str, name: str) -> Participant:
    """NAME asks to join ROOM, whose policy has a lobby, and waits there."""
    guest = open_participant(room, name)
    guest.wait_state("lobby")
    return guest


def seen(p: Participant, pid: str) -> dict[str, Any]:
    """The participant PID as P's page has it, once it has it."""
    return dict(
        wait_until(
            lambda: next((o for o in p.others() if o["id"] == pid), None),
            10,
            f"{p.name} to list {pid}",
        )
    )


def open_people(p: Participant) -> None:
    if p.page.locator("#panel-people").is_hidden():
        p.page.get_by_test_id("participants-toggle").click()
    p.page.locator("#people-list").wait_for(state="visible", timeout=5_000)


def people_order(p: Participant, group: str) -> list[str]:
    rows = p.page.get_by_test_id(f"people-group-{group}").locator("li.person")
    return [str(r.get_attribute("data-testid")).removeprefix("person-") for r in rows.all()]


def test_a_raised_hand_is_seen_by_the_others_in_order_and_a_host_lowers_it(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "main")
    bruno, chloe = joined(open_participant, room, "Bruno", "Chloé")
    bid, cid, hid = bruno.id, chloe.id, host.id
    seen(host, cid)

    chloe.page.get_by_test_id("hand-toggle").click()
    wait_until(
        lambda: chloe.page.get_by_test_id("hand-toggle").get_attribute("aria-pressed") == "true",
        5,
        "Chloé's hand button pressed",
    )
    time.sleep(0.05)
    bruno.page.get_by_test_id("hand-toggle").click()

    toasts = host.page.locator("#toasts")  # names isolated (U+2068 ... U+2069)
    wait_until(lambda: "Bruno\u2069 raised a hand" in toasts.inner_text(), 5, "the host's toast")
    # Hélène (a host) and Bruno see both hands: on the tiles, and in the people panel, Chloé's
    # first (hers went up first), before the hands that are down.
    for p in (host, bruno):
        for pid in (bid, cid):
            if pid == p.id:
                continue
            hand = p.page.get_by_test_id(f"tile-{pid}").get_by_test_id("tile-hand")
            wait_until(hand.is_visible, 5, f"{p.name} to see the hand on {pid}'s tile")
    open_people(host)
    wait_until(
        lambda: people_order(host, "ors") == [cid, bid, hid], 5, "raised hands first, in order"
    )
    assert host.page.get_by_test_id(f"hand-{cid}").is_visible()
    assert "Hand raised" in str(host.page.get_by_test_id(f"tile-{bid}").get_attribute("aria-label"))
    assert (
        "raised a hand" not in chloe.page.locator("#toasts").inner_text()
    )  # a toast for hosts only

    # Chloé may not lower Bruno's hand, nor raise it for him: refused, and his hand stays up.
    assert send_raw(chloe, "hand", {"raised": False, "participant_id": bid}) == "forbidden"
    assert send_raw(host, "hand", {"raised": True, "participant_id": cid}) == "forbidden"
    open_people(chloe)
    assert chloe.page.get_by_test_id(f"lower-hand-{bid}").count() == 0
    # The host lowers it: Bruno's button is no longer pressed, and Chloé no longer sees it.
    host.page.get_by_test_id(f"lower-hand-{bid}").click()
    wait_until(
        lambda: bruno.page.get_by_test_id("hand-toggle").get_attribute("aria-pressed") == "false",
        5,
        "Bruno's hand button up again",
    )
    wait_until(
        lambda: chloe.page.get_by_test_id(f"tile-{bid}").get_by_test_id("tile-hand").is_hidden(),
        5,
        "Chloé to see Bruno's hand down",
    )
    assert [o["hand_raised_at"] for o in chloe.others() if o["id"] == bid] == [None]
    # Chloé lowers her own.
    chloe.page.get_by_test_id("hand-toggle").click()
    wait_until(
        lambda: host.page.get_by_test_id(f"hand-{cid}").count() == 0,
        5,
        "Chloé's hand down at the host",
    )


def test_a_reaction_floats_over_the_sender_tile_at_the_others(open_participant: Opener) -> None:
    room = new_room("react")
    alice = open_participant(room, "Alice")
    alice.wait_state("room")  # she made the room
    bruno = open_participant(room, "Bruno", viewport=(390, 844))  # a phone's screen
    bruno.wait_state("room")
    bid = bruno.id
    seen(alice, bid)

    toggle = bruno.page.get_by_test_id("reactions-toggle")
    menu = bruno.page.get_by_test_id("reactions-menu")
    toggle.click()
    menu.wait_for(state="visible", timeout=5_000)
    assert toggle.get_attribute("aria-expanded") == "true"
    box = menu.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box  # on the small screen
    bruno.page.keyboard.press("Escape")  # closes the menu, back on its button
    menu.wait_for(state="hidden", timeout=5_000)
    assert toggle.get_attribute("aria-expanded") == "false"
    assert bruno.page.evaluate("document.activeElement.id") == "reactions-toggle"
    toggle.click()
    assert menu.get_by_role("menuitem").count() == 8
    for control in (
        "hand-toggle",
        "reactions-toggle",
        "leave",
        "participants-toggle",
        "chat-toggle",
    ):
        box = bruno.page.get_by_test_id(control).bounding_box()
        assert box and box["x"] + box["width"] <= 390, (control, box)  # the bar fits the screen
    menu.get_by_role("menuitem", name="Applause").click()
    assert menu.is_hidden()

    floating = alice.page.get_by_test_id(f"tile-{bid}").get_by_test_id("reaction-float")
    wait_until(lambda: floating.count() == 1, 5, "Alice to see Bruno's reaction on his tile")
    assert floating.inner_text() == "👏"
    live = alice.page.get_by_test_id("reactions-live")
    assert "Bruno" in live.inner_text() and "Applause" in live.inner_text()
    assert live.get_attribute("aria-live") == "polite"
    # ... for a few seconds only, and Bruno sees his own.
    wait_until(lambda: floating.count() == 0, 8, "the reaction to go")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    toggle.click()
    bruno.page.screenshot(path=str(SCREENSHOTS / "reactions-small-screen.png"))
    bruno.page.mouse.click(10, 200)  # elsewhere: the menu closes
    menu.wait_for(state="hidden", timeout=5_000)

    # Anything else than the eight reactions: refused, and nobody sees it.
    for bad in ("<img src=x onerror=alert(1)>", "💩", "👏👏"):
        assert send_raw(bruno, "reaction", {"emoji": bad}) == "invalid_message"
    time.sleep(0.5)
    assert floating.count() == 0

    # More than the server allows (10 at once): the page says so in words, in the page's language.
    bruno.page.evaluate(
        """() => {
            for (let i = 0; i < 20; i++) {
                document.getElementById("reactions-toggle").click();
                document.querySelector("[data-testid=reaction-0]").click();
            }
        }"""
    )
    wait_until(
        lambda: "Too many reactions" in bruno.page.locator("#toasts").inner_text(),
        5,
        "the rate limit said to Bruno",
    )
    assert alice.page.get_by_test_id(f"tile-{bid}").get_by_test_id("reaction-float").count() <= 5


def test_a_host_mutes_a_person_who_alone_unmutes_when_asked(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "sourdine")
    bruno, chloe = joined(open_participant, room, "Bruno", "Chloé")
    bid = bruno.id
    wait_until(lambda: receiving(chloe, [bid], video=False), 25, "Chloé to hear Bruno")

    # Chloé is no host: no tools, and her forged requests are refused and change nothing.
    open_people(chloe)
    assert chloe.page.get_by_test_id(f"mute-{bid}").count() == 0
    track = next(
        t for t in host.page.evaluate("window.rondpoint._debug().participants") if t["id"] == bid
    )
    mic = next(t["id"] for t in track["tracks"] if t["kind"] == "audio")
    assert send_raw(chloe, "mute", {"track_id": mic, "muted": True}) == "forbidden"
    assert send_raw(chloe, "unmute_request", {"participant_id": bid}) == "forbidden"
    time.sleep(0.5)
    assert bruno.page.get_by_test_id("unmute-dialog").is_hidden()
    assert bruno.page.get_by_test_id("mic-toggle").get_attribute("aria-pressed") == "false"

    open_people(host)
    host.page.get_by_test_id(f"mute-{bid}").click()
    # Bruno learns it, and his button says off; Chloé sees him muted and his audio stops.
    wait_until(
        lambda: "A host turned off your microphone" in bruno.page.locator("#toasts").inner_text(),
        5,
        "Bruno's toast",
    )
    assert bruno.page.get_by_test_id("mic-toggle").get_attribute("aria-pressed") == "true"
    tile = chloe.page.get_by_test_id(f"tile-{bid}")
    wait_until(lambda: tile.get_attribute("data-muted") == "true", 5, "Chloé to see Bruno muted")
    time.sleep(1.0)  # packets in flight
    frozen = audio_packets(chloe, bid)
    time.sleep(2.0)
    assert audio_packets(chloe, bid) == frozen, "Chloé still receives Bruno's audio"

    # The host asks him to unmute: a question on Bruno's page, and nothing unmuted until he clicks.
    ask = host.page.get_by_test_id(f"ask-unmute-{bid}")
    ask.wait_for(state="visible", timeout=5_000)
    assert host.page.get_by_test_id(f"mute-{bid}").count() == 0
    ask.click()
    dialog = bruno.page.get_by_test_id("unmute-dialog")
    dialog.wait_for(state="visible", timeout=5_000)
    assert "The host asks you to unmute" in dialog.inner_text()
    time.sleep(2.0)
    assert tile.get_attribute("data-muted") == "true"
    assert audio_packets(chloe, bid) == frozen
    # Asked again at once: the server refuses (5 s per host and person), the page says why.
    ask.click()
    wait_until(lambda: host.page.locator(".toast.error").count() > 0, 5, "the refusal shown")
    # "Not now" closes the question and leaves him muted; asked later, he accepts.
    bruno.page.get_by_test_id("unmute-dismiss").click()
    dialog.wait_for(state="hidden", timeout=5_000)
    assert tile.get_attribute("data-muted") == "true"
    time.sleep(3.5)
    ask.click()
    dialog.wait_for(state="visible", timeout=5_000)
    bruno.page.get_by_test_id("unmute-accept").click()
    wait_until(lambda: tile.get_attribute("data-muted") == "false", 5, "Chloé to see Bruno unmuted")
    wait_until(lambda: audio_packets(chloe, bid) > frozen + 20, 10, "Chloé to hear Bruno again")


def test_a_quick_mute_and_unmute_is_not_taken_for_a_host_mute(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    """The room echoes a participant's own `mute` in `track_muted`; toggled off and on again before
    the echo of "off" came back, the page must not take that echo for a host muting it."""
    room, chloe = helene_hosts(open_participant, web_gateway, "aller-retour")
    (bruno,) = joined(open_participant, room, "Bruno")
    bid = bruno.id
    wait_until(lambda: receiving(chloe, [bid], video=False), 25, "Chloé to hear Bruno")
    # off and on three times in one go: each "on" is clicked before the "off" is answered
    bruno.page.evaluate(
        """() => { const b = document.querySelector('[data-testid="mic-toggle"]');
                   for (let i = 0; i < 3; i++) { b.click(); b.click(); } }"""
    )
    time.sleep(2.0)  # every echo is back
    assert bruno.page.get_by_test_id("mic-toggle").get_attribute("aria-pressed") == "false"
    assert "A host turned off" not in bruno.page.locator("#toasts").inner_text()
    tile = chloe.page.get_by_test_id(f"tile-{bid}")
    assert tile.get_attribute("data-muted") == "false"
    before = audio_packets(chloe, bid)
    wait_until(lambda: audio_packets(chloe, bid) > before + 20, 10, "Chloé to hear Bruno still")


def test_a_host_names_a_co_host_who_then_has_the_host_tools(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "cohote")
    (bruno,) = joined(open_participant, room, "Bruno")
    bid = bruno.id
    open_people(host)
    open_people(bruno)
    assert bruno.page.get_by_test_id(f"remove-{host.id}").count() == 0
    host.page.get_by_test_id(f"make-cohost-{bid}").click()
    bruno.page.get_by_test_id(f"remove-{host.id}").wait_for(state="visible", timeout=5_000)
    assert seen(host, bid)["role"] == "host"
    host.page.get_by_test_id(f"remove-cohost-{bid}").click()
    wait_until(lambda: seen(host, bid)["role"] == "member", 5, "Bruno a member again")
    bruno.page.get_by_test_id(f"remove-{host.id}").wait_for(state="detached", timeout=5_000)


def test_admit_all_lets_both_guests_in(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "tous", lobby=True)
    first = knocks(open_participant, room, "Invité Un")
    admit_all = host.page.get_by_test_id("admit-all")
    host.page.get_by_test_id(f"person-{first.id}").wait_for(state="visible", timeout=10_000)
    assert admit_all.is_hidden()  # one guest: its own Admit button is enough
    second = knocks(open_participant, room, "Invitée Deux")
    admit_all.wait_for(state="visible", timeout=10_000)
    assert admit_all.get_attribute("aria-label") == "Admit all 2 people waiting"
    # a guest cannot admit itself nor the other
    assert send_raw(first, "admit_all", {}) in ("forbidden", "invalid_state")
    admit_all.click()
    for guest in (first, second):
        guest.wait_state("room")
    wait_until(lambda: admit_all.is_hidden(), 5, "the button gone with the lobby")
    assert {o["name"] for o in first.others()} == {"Hélène", "Invitée Deux"}


def test_chat_links_unread_count_and_the_history_of_a_late_joiner(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "bavard")
    (bruno,) = joined(open_participant, room, "Bruno")
    seen(host, bruno.id)
    host.page.get_by_test_id("chat-toggle").click()
    texts = [
        "The agenda: https://example.org/agenda?v=2, read it.",
        'javascript:alert(document.cookie) and <a href="javascript:alert(1)">here</a>',
    ]
    badge = bruno.page.locator("#chat-badge")
    chat_button = bruno.page.get_by_test_id("chat-toggle")
    for n, text in enumerate(texts, start=1):
        host.page.get_by_test_id("chat-input").fill(text)
        host.page.get_by_test_id("chat-send").click()
        wait_until(
            lambda n=n: badge.is_visible() and badge.inner_text() == str(n), 5, f"unread {n}"
        )
    assert chat_button.get_attribute("aria-label") == "Chat, 2 unread messages"

    messages = bruno.page.get_by_test_id("chat-message")
    link = messages.nth(0).locator("a")
    assert link.count() == 1
    assert link.get_attribute("href") == "https://example.org/agenda?v=2"
    assert link.get_attribute("target") == "_blank"
    assert link.get_attribute("rel") == "noopener noreferrer"
    assert link.inner_text() == "https://example.org/agenda?v=2"
    # the markup and the javascript: URL are text, not a link
    assert messages.nth(1).locator("a").count() == 0
    assert messages.nth(1).locator(".msg-text").inner_text() == texts[1]

    chat_button.click()
    assert badge.is_hidden()
    assert chat_button.get_attribute("aria-label") == "Chat"

    # Chloé comes later: she reads both, under "Earlier messages", and none counts as unread.
    (chloe,) = joined(open_participant, room, "Chloé")
    earlier = chloe.page.get_by_test_id("chat-message")
    wait_until(lambda: earlier.count() == 2, 5, "Chloé to get the history")
    assert chloe.page.get_by_test_id("chat-earlier").inner_text() == "Earlier messages"
    assert all("earlier" in str(earlier.nth(i).get_attribute("class")) for i in range(2))
    assert earlier.nth(0).locator("a").get_attribute("href") == "https://example.org/agenda?v=2"
    assert chloe.page.locator("#chat-badge").is_hidden()
    # a live message after the history counts
    host.page.get_by_test_id("chat-input").fill("Welcome Chloé")
    host.page.get_by_test_id("chat-send").click()
    wait_until(lambda: chloe.page.locator("#chat-badge").inner_text() == "1", 5, "Chloé's unread 1")
    assert "earlier" not in str(earlier.nth(2).get_attribute("class"))


def test_the_people_panel_groups_a_phone_apart_from_the_browsers(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "groupes")
    (bruno,) = joined(open_participant, room, "Bruno")
    with answering_phone() as port:
        open_people(host)
        host.page.get_by_test_id("dial-input").fill(f"sip:0612345642@127.0.0.1:{port}")
        host.page.get_by_test_id("dial-send").click()
        phone = wait_until(
            lambda: next(
                (o for o in host.others() if o["origin"] == "sip" and "••" in o["name"]), None
            ),
            20,
            "the answered phone",
        )
        pid = phone["id"]
        for p in (host, bruno):
            open_people(p)
            groups = p.page.locator("[data-testid^=people-group-]")
            wait_until(
                lambda groups=groups: (
                    [g.get_attribute("data-group") for g in groups.all()] == ["ors", "sip"]
                ),
                10,
                f"{p.name}'s groups",
            )
            browsers = p.page.get_by_test_id("people-group-ors")
            phones = p.page.get_by_test_id("people-group-sip")
            assert re.fullmatch(
                r"In the browser\s+\(2\)", str(browsers.get_by_role("heading").text_content())
            )
            assert re.fullmatch(
                r"By phone\s+\(1\)", str(phones.get_by_role("heading").text_content())
            )
            assert phones.get_by_test_id(f"person-{pid}").is_visible()
            # the origin badge: on the phone's tile, not on a browser's
            assert p.page.get_by_test_id(f"tile-{pid}").locator(".origin").inner_text() == "Phone"
            assert p.page.get_by_test_id(f"tile-{bruno.id}").locator(".origin").is_hidden()
        # A phone has no co-host role nor a request to unmute (ORS 8.15, 8.19): not offered, and refused.
        assert host.page.get_by_test_id(f"make-cohost-{pid}").count() == 0
        assert host.page.get_by_test_id(f"ask-unmute-{pid}").count() == 0
        assert send_raw(host, "set_role", {"participant_id": pid, "role": "host"}) == "forbidden"
        assert send_raw(host, "unmute_request", {"participant_id": pid}) == "invalid_state"
        bruno.page.get_by_test_id("hand-toggle").click()  # for the picture
        host.page.get_by_test_id(f"hand-{bruno.id}").wait_for(state="visible", timeout=5_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        host.page.wait_for_timeout(300)
        host.page.screenshot(path=str(SCREENSHOTS / "people-panel.png"))
