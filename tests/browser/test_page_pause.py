"""Videos nobody sees, from the user's side: on a phone with a large tile above a strip that
scrolls sideways, the tile out of view stops receiving its video (spec 8.7 `subscription`
`subscribed: false`) while the visible ones keep theirs, and scrolled into view it plays again; a
tab in the background receives no video but keeps its sound, and back in front every video flows
again, also after a connection lost and taken back meanwhile.

What arrives is read from the page's getStats (window.rondpoint.inbound(): inbound-rtp
packetsReceived and framesReceived per track received).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import Participant
from tests.browser.test_web_client import join_trio, new_room, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.interop,
    pytest.mark.timeout(180),  # four pages at once, on a busy machine too
]

Opener = Callable[..., Participant]
FROZEN_FOR = 2.0  # seconds without a packet that make a video paused


def inbound(p: Participant) -> dict[str, dict[str, Any]]:
    """What p has received so far, per track: {track_id: {pid, kind, packets, frames}}."""
    return {s["track"]: s for s in p.page.evaluate("window.rondpoint.inbound()")}


def tile_views(p: Participant) -> list[dict[str, Any]]:
    """p's remote camera tiles, with whether any of the tile is inside the scrolling stage."""
    return list(
        p.page.evaluate(
            """() => {
        const grid = document.getElementById("grid").getBoundingClientRect();
        return [...document.querySelectorAll("#grid .tile")].filter((t) => t.dataset.trackId).map((t) => {
          const r = t.getBoundingClientRect();
          const inside = r.bottom > grid.top && r.top < grid.bottom && r.right > grid.left && r.left < grid.right;
          return { pid: t.dataset.pid, track: t.dataset.trackId, inside,
                   large: t.classList.contains("large"), playing: t.querySelector("video").videoWidth > 0 };
        });
      }"""
        )
    )


def growth(p: Participant, seconds: float = FROZEN_FOR) -> dict[str, dict[str, int]]:
    """How many packets and frames each track p receives got over SECONDS."""
    before = inbound(p)
    time.sleep(seconds)
    after = inbound(p)
    return {
        track: {
            "kind": s["kind"],
            "packets": s["packets"] - before.get(track, {}).get("packets", 0),
            "frames": s["frames"] - before.get(track, {}).get("frames", 0),
        }
        for track, s in after.items()
    }


def video_growth(p: Participant) -> dict[str, int]:
    return {track: g["packets"] for track, g in growth(p).items() if g["kind"] == "video"}


def subscribed_sent(p: Participant) -> dict[str, bool]:
    """The `subscribed` p last sent per track (none: subscribed, the server's default)."""
    return dict(p.page.evaluate("window.rondpoint._debug().subscribed"))


def scroll_stage(p: Participant, to_end: bool) -> None:
    p.page.evaluate(
        "end => { const g = document.getElementById('grid'); g.scrollLeft = end ? g.scrollWidth : 0; }",
        to_end,
    )


def out_of_view(p: Participant) -> list[dict[str, Any]]:
    """p's remote tiles out of its stage: the strip scrolled to its start, else to its end."""
    for to_end in (False, True):
        scroll_stage(p, to_end)
        hidden = [t for t in tile_views(p) if not t["inside"]]
        if hidden:
            return hidden
    return []


def test_a_tile_scrolled_out_of_view_stops_receiving_its_video(open_participant: Opener) -> None:
    room = new_room("pause-scroll")
    join_trio(open_participant, room)
    # a small phone with a pinned tile (speaker view's layout, the large tile not following who
    # speaks): the pinned one large above a strip of three that scrolls sideways
    phone = open_participant(room, "Maëlle", viewport=(320, 640))
    phone.wait_state("room")
    wait_until(lambda: len(tile_views(phone)) == 3, 15, "three remote tiles on the phone")
    first = phone.page.get_by_test_id(f"tile-{tile_views(phone)[0]['pid']}")
    first.hover()
    first.get_by_test_id("tile-pin").click()
    wait_until(lambda: tile_views(phone)[0]["large"], 10, "the pinned tile large")
    wait_until(
        lambda: all(t["playing"] for t in tile_views(phone) if t["inside"]),
        25,
        "visible tiles playing",
    )
    hidden = out_of_view(phone)
    assert hidden, tile_views(phone)
    away = hidden[0]["track"]
    shown = [t for t in tile_views(phone) if t["inside"]]
    assert shown and any(t["large"] for t in shown), shown

    # The hidden tile's video is paused at the server: nothing arrives, the others keep arriving.
    wait_until(lambda: subscribed_sent(phone).get(away) is False, 10, "the pause sent")
    wait_until(lambda: video_growth(phone).get(away) == 0, 10, "the hidden tile's video frozen")
    moved = growth(phone)
    assert moved[away]["packets"] == 0 and moved[away]["frames"] == 0, moved
    assert all(moved[t["track"]]["frames"] > 0 for t in shown), (moved, shown)
    assert [k for k, v in subscribed_sent(phone).items() if v is False] == [away]

    # Scrolled into view, it plays again within a few seconds.
    phone.page.evaluate(
        "track => document.querySelector(`#grid .tile[data-track-id='${track}']`).scrollIntoView()",
        away,
    )
    wait_until(lambda: subscribed_sent(phone).get(away) is True, 10, "the resume sent")
    wait_until(
        lambda: (video_growth(phone).get(away) or 0) > 0, 10, "the tile's video arriving again"
    )
    wait_until(lambda: growth(phone, 1.0)[away]["frames"] > 0, 10, "its frames decoded again")
    assert next(t for t in tile_views(phone) if t["track"] == away)["playing"]

    # The large tile is never paused by scrolling, even when the strip takes it out of view.
    big = next(t for t in tile_views(phone) if t["large"])["track"]
    for to_end in (True, False, True):
        scroll_stage(phone, to_end)
        time.sleep(0.5)
    assert subscribed_sent(phone).get(big, True) is True
    assert growth(phone, 1.0)[big]["frames"] > 0


def set_hidden(p: Participant, hidden: bool) -> None:
    """What the browser does when the tab goes to the background (or comes back)."""
    p.page.evaluate(
        """hidden => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
        Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
        document.dispatchEvent(new Event("visibilitychange"));
      }""",
        hidden,
    )


def sound_without_video(p: Participant) -> dict[str, dict[str, int]] | None:
    """What p received over FROZEN_FOR seconds, if both sounds arrived and no video did."""
    moved = growth(p)
    audio = [g for g in moved.values() if g["kind"] == "audio"]
    video = [g for g in moved.values() if g["kind"] == "video"]
    flowing = len(audio) == len(video) == 2 and all(g["packets"] > 0 for g in audio)
    return moved if flowing and all(g["packets"] == 0 for g in video) else None


def test_a_tab_in_the_background_receives_sound_but_no_video(open_participant: Opener) -> None:
    _, bruno, chloe = join_trio(open_participant, new_room("pause-tab"))
    wait_until(
        lambda: [t["playing"] for t in tile_views(bruno)] == [True, True], 25, "two tiles playing"
    )
    videos = {t["track"] for t in tile_views(bruno)}
    flowing = growth(bruno)
    assert all(flowing[track]["frames"] > 0 for track in videos), flowing

    set_hidden(bruno, True)
    wait_until(
        lambda: all(subscribed_sent(bruno).get(track) is False for track in videos),
        10,
        "every video paused",
    )
    wait_until(lambda: sound_without_video(bruno), 10, "sound and no video")
    # the others, whose tabs are in front, still receive Bruno's video and each other's
    assert all(g["frames"] > 0 for g in growth(chloe).values() if g["kind"] == "video")

    # The connection lost and taken back while hidden: the page forgets what it sent (the new
    # subscribe connection starts with every track subscribed) and pauses the videos again.
    bruno.context.set_offline(True)
    wait_until(
        lambda: bruno.page.evaluate("window.rondpoint.reconnecting"), 15, "a lost connection"
    )
    bruno.context.set_offline(False)
    wait_until(
        lambda: bruno.page.evaluate("window.rondpoint.reconnecting") is None, 30, "back in the room"
    )
    wait_until(lambda: len(inbound(bruno)) == 4, 20, "the four tracks received again")
    videos = {t["track"] for t in tile_views(bruno)}
    wait_until(
        lambda: all(subscribed_sent(bruno).get(track) is False for track in videos),
        10,
        "every video paused again",
    )
    wait_until(lambda: sound_without_video(bruno), 15, "sound again, and no video")

    set_hidden(bruno, False)
    wait_until(
        lambda: all(subscribed_sent(bruno).get(track) is True for track in videos),
        10,
        "every video resumed",
    )
    wait_until(
        lambda: all(growth(bruno, 1.0)[track]["frames"] > 0 for track in videos),
        10,
        "every video decoded again",
    )
