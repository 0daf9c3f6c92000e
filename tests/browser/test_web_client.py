"""The web client against the real gateway: three headless Chromiums in one room, through the page.

Media checks read `window.rondpoint.stats()`, which sums getStats() of the subscribe
RTCPeerConnection per remote participant: {pid: {audio: {packets, level, energy}, video: {packets,
framesDecoded}}}.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Participant
from tests.gateway_process import RunningGateway
from tests.interop.sipp_tools import answering_phone

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(90)]

Opener = Callable[..., Participant]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Polls `check` until it returns something truthy; fails naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


def keeps_flowing(
    sample: Callable[[], dict[str, Any]], timeout: float = 20
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Samples one sender's entry of ``window.rondpoint.stats()`` until its decoded video frames
    and audio packets grew past the first sample and its audio was heard (a level above 0), or
    TIMEOUT passed (a loaded machine stalls browsers): (first, last, loudest level), for the
    caller to assert on."""
    before = after = sample()
    level = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        after = sample()
        level = max(level, float(after["audio"]["level"]))
        if (
            level > 0
            and after["video"]["framesDecoded"] > before["video"]["framesDecoded"]
            and after["audio"]["packets"] > before["audio"]["packets"]
        ):
            break
    return before, after, level


def new_room(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def helene_hosts(
    open_participant: Opener, gateway: RunningGateway, prefix: str, **policy: object
) -> tuple[str, Participant]:
    """A new room the operator made (with POLICY), and Hélène in it with a host token."""
    room = new_room(prefix)
    gateway.create_room(room, **policy)
    token = gateway.token(room, "host-helene", "Hélène", role="host")
    host = open_participant(room, "Hélène", token=token)
    host.wait_state("room")
    return room, host


def join_trio(open_participant: Opener, room: str) -> list[Participant]:
    """Alice creates the room (first anonymous token: host), Bruno and Chloé join it."""
    alice = open_participant(room, "Alice")
    alice.wait_state("room")
    bruno = open_participant(room, "Bruno")
    chloe = open_participant(room, "Chloé")
    for p in (bruno, chloe):
        p.wait_state("room")
    trio = [alice, bruno, chloe]
    for p in trio:
        expected = {q.name for q in trio if q is not p}
        wait_until(
            lambda p=p, expected=expected: {o["name"] for o in p.others()} == expected,
            10,
            f"{p.name} to list {sorted(expected)}",
        )
    return trio


def receiving(p: Participant, sender_ids: list[str], video: bool = True) -> bool:
    stats = p.stats()
    for sid in sender_ids:
        s = stats.get(sid)
        if not s or s["audio"]["packets"] <= 0:
            return False
        if video and (s["video"]["packets"] <= 0 or s["video"]["framesDecoded"] <= 0):
            return False
    return True


def audio_packets(p: Participant, sender_id: str) -> int:
    return int(p.stats().get(sender_id, {}).get("audio", {}).get("packets", 0))


def test_three_browsers_exchange_audio_and_video(open_participant: Opener) -> None:
    trio = join_trio(open_participant, new_room("trio"))
    ids = {p.name: p.id for p in trio}

    for p in trio:
        others = p.others()
        assert {o["name"]: o["id"] for o in others} == {
            n: i for n, i in ids.items() if n != p.name
        }, others
        assert all(o["origin"] == "ors" and o["state"] == "joined" for o in others), others
        for o in others:
            tile = p.page.get_by_test_id(f"tile-{o['id']}")
            assert tile.is_visible()
            assert o["name"] in tile.inner_text()
            assert "Browser" not in tile.inner_text()  # the origin badge: only for other systems

    # Every page receives both others' audio and video, and the counters keep rising.
    for p in trio:
        senders = [ids[n] for n in ids if n != p.name]
        wait_until(lambda p=p, s=senders: receiving(p, s), 25, f"{p.name} to receive media")
    before = {p.name: p.stats() for p in trio}
    max_level = {(p.name, sid): 0.0 for p in trio for sid in ids.values() if sid != ids[p.name]}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for p in trio:
            for sid, s in p.stats().items():
                key = (p.name, sid)
                max_level[key] = max(max_level.get(key, 0.0), s["audio"]["level"])
        time.sleep(0.2)
    after = {p.name: p.stats() for p in trio}
    for p in trio:
        for name, sid in ids.items():
            if name == p.name:
                continue
            b, a = before[p.name][sid], after[p.name][sid]
            assert a["audio"]["packets"] > b["audio"]["packets"], (p.name, name, b, a)
            assert a["video"]["packets"] > b["video"]["packets"], (p.name, name, b, a)
            assert a["video"]["framesDecoded"] > b["video"]["framesDecoded"], (p.name, name, b, a)
            assert max_level[(p.name, sid)] > 0 or a["audio"]["energy"] > 0, (p.name, name, a)

    ARTIFACTS.mkdir(exist_ok=True)
    page = trio[0].page
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "room.png"))


def test_muting_the_microphone_stops_its_audio_at_the_others(open_participant: Opener) -> None:
    alice, bruno, chloe = join_trio(open_participant, new_room("mute"))
    aid = alice.id
    listeners = [bruno, chloe]
    for p in listeners:
        wait_until(lambda p=p: receiving(p, [aid], video=False), 25, f"{p.name} to hear Alice")

    alice.page.get_by_test_id("mic-toggle").click()
    toggle = alice.page.get_by_test_id("mic-toggle")
    wait_until(lambda: toggle.get_attribute("aria-pressed") == "true", 3, "the mic button pressed")
    for p in listeners:
        tile = p.page.get_by_test_id(f"tile-{aid}")
        wait_until(
            lambda tile=tile: tile.get_attribute("data-muted") == "true",
            5,
            f"{p.name} to show Alice muted",
        )
        assert tile.locator(".tile-muted").is_visible()
        assert [o["muted"] for o in p.others() if o["id"] == aid] == [True]
    time.sleep(1.0)  # packets already in flight
    frozen = {p.name: audio_packets(p, aid) for p in listeners}
    time.sleep(2.0)
    for p in listeners:
        assert audio_packets(p, aid) == frozen[p.name], f"{p.name} still receives Alice's audio"

    # The camera too: its tile turns to the initials.
    alice.page.get_by_test_id("camera-toggle").click()
    for p in listeners:
        tile = p.page.get_by_test_id(f"tile-{aid}")
        wait_until(
            lambda tile=tile: "no-video" in (tile.get_attribute("class") or ""), 5, "no video"
        )
    alice.page.get_by_test_id("camera-toggle").click()

    alice.page.get_by_test_id("mic-toggle").click()
    for p in listeners:
        wait_until(
            lambda p=p: audio_packets(p, aid) > frozen[p.name] + 20,
            10,
            f"{p.name} to hear Alice again",
        )
        tile = p.page.get_by_test_id(f"tile-{aid}")
        wait_until(lambda tile=tile: tile.get_attribute("data-muted") == "false", 5, "unmuted")
        assert not tile.locator(".tile-muted").is_visible()


def test_leaving_removes_the_tile_at_the_others(open_participant: Opener) -> None:
    alice, bruno, chloe = join_trio(open_participant, new_room("leave"))
    cid = chloe.id
    for p in (alice, bruno):
        assert p.page.get_by_test_id(f"tile-{cid}").count() == 1

    # Chat on the way: Alice writes, everyone sees the message with her name.
    alice.page.get_by_test_id("chat-toggle").click()
    alice.page.get_by_test_id("chat-input").fill("Bonjour à tous")
    alice.page.get_by_test_id("chat-send").click()
    for p in (bruno, chloe):
        msg = p.page.get_by_test_id("chat-message")
        wait_until(lambda msg=msg: msg.count() == 1, 5, f"{p.name} to get the chat message")
        assert p.page.locator("#chat-badge").inner_text() == "1"
        p.page.get_by_test_id("chat-toggle").click()
        assert "Alice" in msg.inner_text() and "Bonjour à tous" in msg.inner_text()

    chloe.page.get_by_test_id("leave").click()
    chloe.wait_state("left", timeout=5)
    assert "left" in chloe.page.get_by_test_id("left-title").inner_text().lower()
    for p in (alice, bruno):
        wait_until(
            lambda p=p: p.page.get_by_test_id(f"tile-{cid}").count() == 0,
            10,
            f"{p.name} to drop Chloé's tile",
        )
        assert cid not in {o["id"] for o in p.others()}
        assert p.page.locator(".tile").count() == 2

    # "Rejoin" on the left screen brings her back, with a new participant id.
    chloe.page.get_by_test_id("rejoin").click()
    chloe.wait_state("room")
    new_id = chloe.id
    assert new_id != cid
    alice.page.get_by_test_id(f"tile-{new_id}").wait_for(state="visible", timeout=10_000)


def test_lobby_guest_waits_until_the_host_admits(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "lobby", lobby=True)
    guest = open_participant(room, "Gaspard")
    guest.wait_state("lobby")
    assert guest.page.get_by_role("heading", name="Waiting for a host to let you in").is_visible()
    gid = guest.id
    assert host.page.get_by_test_id(f"tile-{gid}").count() == 0

    admit = host.page.get_by_test_id(f"admit-{gid}")
    admit.wait_for(state="visible", timeout=10_000)
    assert [p["state"] for p in host.others() if p["id"] == gid] == ["lobby"]
    admit.click()

    guest.wait_state("room")
    host.page.get_by_test_id(f"tile-{gid}").wait_for(state="visible", timeout=10_000)
    assert {o["name"] for o in guest.others()} == {"Hélène"}
    wait_until(
        lambda: [p["state"] for p in host.others() if p["id"] == gid] == ["joined"],
        5,
        "the host to see the guest joined",
    )

    # The host removes the guest: the guest lands on "You were removed", with no rejoin button.
    host.page.get_by_test_id(f"remove-{gid}").click()
    host.page.get_by_test_id("confirm-ok").click()
    guest.wait_state("left")
    assert "removed" in guest.page.get_by_test_id("left-title").inner_text()
    assert not guest.page.get_by_test_id("rejoin").is_visible()
    wait_until(lambda: host.page.get_by_test_id(f"tile-{gid}").count() == 0, 5, "the tile to go")


def test_prejoin_asks_for_the_pin_and_says_when_it_is_wrong(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room = new_room("pin")
    web_gateway.create_room(room, pin="4321")
    p = open_participant(room, "Pauline", autojoin=False)
    p.wait_state("prejoin")
    pin = p.page.get_by_test_id("prejoin-pin")
    pin.wait_for(state="visible", timeout=5000)
    p.page.get_by_test_id("prejoin-name").fill("Pauline")
    pin.fill("1111")
    p.page.get_by_test_id("prejoin-join").click()
    error = p.page.locator("#prejoin-error")
    wait_until(lambda: "Wrong PIN" in error.inner_text(), 5, "the wrong-PIN message")
    assert p.state() == "prejoin"
    pin.fill("4321")
    p.page.get_by_test_id("prejoin-join").click()
    p.wait_state("room")


def test_home_creates_a_room_with_a_random_name(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    p = open_participant("home", "Henri", autojoin=False)
    p.page.goto(web_gateway.base_url + "/")
    p.wait_state("home")
    p.page.locator("#home-name").fill("Henri")
    p.page.get_by_test_id("home-create").click()
    p.wait_state("prejoin")
    assert p.page.url.split("/r/")[1].split("?")[0].count("-") == 2
    assert p.page.get_by_test_id("prejoin-name").input_value() == "Henri"


def test_each_subscriber_gets_the_simulcast_layer_that_fits_its_tile(
    open_participant: Opener,
) -> None:
    """A 720p camera sends three layers (180, 360, 720); a small window asks for the small one."""
    room = new_room("simulcast")
    sender = open_participant(room, "Sabine", res=720)
    sender.wait_state("room")
    small = open_participant(room, "Petit", query="mic=0&cam=0", viewport=(360, 300))
    large = open_participant(room, "Grand", query="mic=0&cam=0", viewport=(1280, 800))
    for p in (small, large):
        p.wait_state("room")
    sid = sender.id

    def height(p: Participant) -> int:
        return int(p.stats().get(sid, {}).get("video", {}).get("height", 0))

    # The sender ramps up to its 360 p layer first (its own estimate climbs): then both are served,
    # each its own layer at the same time (a busy loopback may dip the large one for a moment).
    wait_until(lambda: height(large) >= 360, 60, "the large window to receive 360 p or more")
    wait_until(
        lambda: height(small) == 180 and height(large) >= 360,
        30,
        "the small window on the 180 p layer while the large one has 360 p or more",
    )


def test_a_host_who_made_the_room_anonymously_is_not_offered_dialling(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    # the gateway refuses dial-out to anonymous hosts (403), so the page does not offer it
    room = new_room("anonyme")
    host = open_participant(room, "Anonyme")  # no token: the page asks one, and makes the room
    host.wait_state("room")
    assert next(p for p in host.participants() if p["self"])["role"] == "host"
    host.page.get_by_test_id("participants-toggle").click()
    host.page.locator("#people-list").wait_for(state="visible", timeout=10000)
    assert host.page.get_by_test_id("dial-input").is_hidden()
    issued = open_participant(
        room, "Hôte", token=web_gateway.token(room, "host-issued", "Hôte", role="host")
    )
    issued.wait_state("room")
    issued.page.get_by_test_id("participants-toggle").click()
    issued.page.get_by_test_id("dial-input").wait_for(state="visible", timeout=10000)


def test_a_host_calls_a_phone_from_the_page_and_its_tile_appears(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "appel")
    with answering_phone() as port:
        host.page.get_by_test_id("participants-toggle").click()
        host.page.get_by_test_id("dial-input").fill(f"sip:0612345642@127.0.0.1:{port}")
        host.page.get_by_test_id("dial-send").click()
        phone = wait_until(
            lambda: next((o for o in host.others() if o["name"] == "Phone ••• 42"), None),
            20,
            "the answered phone in the participant list",
        )
        assert phone["origin"] == "sip"
        tile = host.page.get_by_test_id(f"tile-{phone['id']}")
        wait_until(lambda: tile.is_visible(), 10, "the phone's tile")
        assert "Phone" in tile.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        host.page.screenshot(path=str(ARTIFACTS / "room-with-phone.png"))


def room_hosts(gateway: RunningGateway, room: str) -> list[str]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return list(body["hosts"])


def alice_makes_a_room(open_participant: Opener, prefix: str) -> tuple[str, Participant]:
    """A new room that Alice's page makes through the anonymous token endpoint: she is its host."""
    room = new_room(prefix)
    alice = open_participant(room, "Alice")  # no token: the page asks one, and makes the room
    alice.wait_state("room")
    return room, alice


def token_requests(p: Participant) -> list[dict[str, Any]]:
    """The bodies of the anonymous token requests (spec 4.3) the page makes from now on."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/tokens"):
            bodies.append(request.post_data_json)

    p.page.on("request", seen)
    return bodies


def reload_in_room(p: Participant) -> list[dict[str, Any]]:
    """Reloads the page, back in the room; returns the token requests it made on the way."""
    asked = token_requests(p)
    p.page.reload()
    p.wait_state("room")
    return asked


KEPT = "rondpoint.token."  # + a room's name: the sessionStorage key of its kept token (state.js)


def kept_token(p: Participant, room: str) -> dict[str, Any]:
    """What the page keeps in sessionStorage for ROOM: {token, expiresAt, anonymous}."""
    return dict(p.page.evaluate("k => JSON.parse(sessionStorage.getItem(k))", KEPT + room))


def change_kept_token(p: Participant, room: str, **members: object) -> None:
    p.page.evaluate(
        "([k, m]) => sessionStorage.setItem(k, "
        "JSON.stringify({...JSON.parse(sessionStorage.getItem(k)), ...m}))",
        [KEPT + room, members],
    )


def role_of(p: Participant, name: str) -> str | None:
    return next((q["role"] for q in p.participants() if q["name"] == name), None)


def test_the_creator_stays_host_after_a_reload_and_a_rejoin(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, alice = alice_makes_a_room(open_participant, "garde")
    [identity] = room_hosts(web_gateway, room)
    bruno = open_participant(room, "Bruno")
    bruno.wait_state("room")
    wait_until(lambda: role_of(bruno, "Alice") == "host", 10, "Bruno to see Alice as host")

    # A reload joins again with the token the page kept: the same identity, a host again.
    first_id = alice.id
    asked = reload_in_room(alice)
    assert alice.id != first_id
    assert role_of(alice, "Alice") == "host"
    wait_until(
        lambda: [(q["id"], q["role"]) for q in bruno.others()] == [(alice.id, "host")],
        10,
        "Bruno to see the reloaded Alice, host",
    )
    alice.page.get_by_test_id("participants-toggle").click()
    alice.page.get_by_test_id(f"remove-{bruno.id}").wait_for(state="visible", timeout=5_000)

    # "Leave", then "Rejoin": the same again.
    alice.page.get_by_test_id("leave").click()
    alice.wait_state("left")
    alice.page.get_by_test_id("rejoin").click()
    alice.wait_state("room")
    assert role_of(alice, "Alice") == "host"
    wait_until(lambda: role_of(bruno, "Alice") == "host", 10, "Bruno to see Alice host again")

    assert asked == [], "the page asked a new token instead of using the one it keeps"
    assert room_hosts(web_gateway, room) == [identity]
    assert role_of(bruno, "Bruno") == "guest"


def test_a_kept_token_near_its_expiry_is_renewed_keeping_the_identity(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, alice = alice_makes_a_room(open_participant, "renouvelle")
    [identity] = room_hosts(web_gateway, room)
    kept = kept_token(alice, room)
    assert kept["anonymous"] is True and kept["expiresAt"] > time.time() + 3600

    # Thirty seconds left: too close to its end to join with; the page asks a new one, giving the
    # endpoint the kept token, and the new token is the same identity (spec 4.3 rule 7).
    change_kept_token(alice, room, expiresAt=int(time.time()) + 30)
    asked = reload_in_room(alice)
    assert [body.get("token") for body in asked] == [kept["token"]]
    assert role_of(alice, "Alice") == "host"
    assert room_hosts(web_gateway, room) == [identity]
    renewed = kept_token(alice, room)
    assert renewed["token"] != kept["token"] and renewed["expiresAt"] > time.time() + 3600


def test_a_kept_token_the_gateway_refuses_gives_way_to_a_new_one(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, alice = alice_makes_a_room(open_participant, "refuse")
    # a token of the right shape that no gateway signed: `join` says token_invalid
    header, claims, _ = kept_token(alice, room)["token"].split(".")
    change_kept_token(alice, room, token=f"{header}.{claims}.Zm9yZ2Vk")
    asked = reload_in_room(alice)
    assert len(asked) == 1 and "token" not in asked[0], asked
    assert role_of(alice, "Alice") == "guest"  # a new identity: the forged token gave nothing


def test_rejoining_a_deleted_room_makes_it_again_with_the_same_host(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, alice = alice_makes_a_room(open_participant, "refaite")
    [identity] = room_hosts(web_gateway, room)
    status, _ = web_gateway.admin("DELETE", f"/api/v1/rooms/{room}")
    assert status == 204
    alice.wait_state("left")
    assert "ended" in alice.page.get_by_test_id("left-title").inner_text()

    # The kept token is still valid but the room is gone (its socket is refused): the page asks
    # the endpoint, giving the kept token back, which makes the room again with Alice its host.
    asked = token_requests(alice)
    alice.page.get_by_test_id("rejoin").click()
    alice.wait_state("room")
    assert len(asked) == 1 and asked[0].get("token"), asked
    assert role_of(alice, "Alice") == "host"
    assert room_hosts(web_gateway, room) == [identity]


@pytest.mark.parametrize(
    ("lang", "mic", "camera"),
    [
        ("en", "Turn off microphone", "Turn off camera"),
        ("fr", "Couper le micro", "Couper la caméra"),
    ],
)
def test_the_microphone_and_camera_buttons_say_pressed_when_off_under_one_name(
    open_participant: Opener, lang: str, mic: str, camera: str
) -> None:
    """WAI-ARIA's toggle button: a name that does not change, aria-pressed for the state (a name
    saying "Turn on" on a pressed button told a screen reader the opposite of the truth)."""
    p = open_participant(new_room("boutons"), "Alice", query=f"lang={lang}")
    p.wait_state("room")
    controls = p.page.get_by_role("navigation")
    for name, test_id in ((mic, "mic-toggle"), (camera, "camera-toggle")):
        button = controls.get_by_role("button", name=name, exact=True)
        assert button.get_attribute("data-testid") == test_id
        assert button.get_attribute("aria-pressed") == "false"  # on
        assert button.get_attribute("title") == name
        button.click()
        wait_until(lambda b=button: b.get_attribute("aria-pressed") == "true", 3, f"{name} off")
        assert controls.get_by_role("button", name=name, pressed=True).count() == 1
        button.click()
        wait_until(lambda b=button: b.get_attribute("aria-pressed") == "false", 3, f"{name} on")
        assert controls.get_by_role("button", name=name, pressed=False).count() == 1
    # the pre-join screen's buttons are the same toggles
    assert p.page.locator("#pre-mic").get_attribute("aria-label") == mic
    assert p.page.locator("#pre-cam").get_attribute("aria-label") == camera


def test_the_hosts_people_panel_stays_open_as_guests_knock(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "accueil", lobby=True)
    panel = host.page.locator("#panel-people")

    def knocks(name: str) -> Participant:
        guest = open_participant(room, name)
        guest.wait_state("lobby")
        host.page.get_by_test_id(f"admit-{guest.id}").wait_for(state="visible", timeout=10_000)
        return guest

    # The host has the panel open when the first guest knocks: it stays open (it used to close,
    # as if its button had been pressed), and so for a second guest while the first waits.
    host.page.get_by_test_id("participants-toggle").click()
    panel.wait_for(state="visible", timeout=5_000)
    first = knocks("Gaspard")
    assert panel.is_visible()
    second = knocks("Gisèle")
    host.page.wait_for_timeout(300)
    assert panel.is_visible()
    assert host.page.get_by_test_id(f"admit-{first.id}").is_visible()

    # Admitted, then one more knocks: still open.
    host.page.get_by_test_id(f"admit-{first.id}").click()
    host.page.get_by_test_id(f"admit-{second.id}").click()
    for guest in (first, second):
        guest.wait_state("room")
    third = knocks("Gérard")
    host.page.wait_for_timeout(300)
    assert panel.is_visible()

    # The host closes it while the third waits; a fourth guest knocking opens it again.
    panel.get_by_role("button", name="Close").click()
    panel.wait_for(state="hidden", timeout=5_000)
    fourth = knocks("Ginette")
    panel.wait_for(state="visible", timeout=5_000)
    assert host.page.get_by_test_id(f"admit-{third.id}").is_visible()
    assert host.page.get_by_test_id("participants-toggle").get_attribute("aria-expanded") == "true"

    # Declining a knock asks nothing (as admitting): the guest is told at once.
    decline = host.page.get_by_test_id(f"remove-{fourth.id}")
    assert decline.inner_text() == "Decline"
    decline.click()
    fourth.wait_state("left")
    assert "declined" in fourth.page.get_by_test_id("left-title").inner_text()
    assert not host.page.get_by_role("dialog").is_visible()


def test_removing_someone_asks_first_with_a_button_unlike_close(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "retrait")
    bruno = open_participant(room, "Bruno")
    bruno.wait_state("room")
    bid = bruno.id
    host.page.get_by_test_id("participants-toggle").click()
    remove = host.page.get_by_test_id(f"remove-{bid}")
    remove.wait_for(state="visible", timeout=10_000)

    # A word in red, not the panel's × (an icon button with the close icon).
    assert remove.inner_text() == "Remove"
    assert remove.get_attribute("aria-label") == "Remove Bruno"
    assert "icon-btn" not in (remove.get_attribute("class") or "")
    assert remove.locator("use").count() == 0
    close = host.page.locator("#panel-people").get_by_role("button", name="Close")
    assert close.locator("use").get_attribute("href") == "#i-close"
    assert remove.evaluate("e => getComputedStyle(e).color") != close.evaluate(
        "e => getComputedStyle(e).color"
    )

    dialog = host.page.get_by_role("dialog")
    question = "Remove \u2068Bruno\u2069 from the meeting?"

    # Cancel, then Escape: Bruno stays, and so does the panel.
    remove.click()
    dialog.wait_for(state="visible", timeout=5_000)
    assert dialog.get_by_role("heading").inner_text() == question
    assert host.page.get_by_test_id("confirm-cancel").evaluate("e => e === document.activeElement")
    host.page.get_by_test_id("confirm-cancel").click()
    dialog.wait_for(state="hidden", timeout=5_000)
    remove.click()
    dialog.wait_for(state="visible", timeout=5_000)
    host.page.keyboard.press("Escape")
    dialog.wait_for(state="hidden", timeout=5_000)
    host.page.wait_for_timeout(1000)
    assert bruno.state() == "room"
    assert bid in {o["id"] for o in host.others()}
    assert host.page.locator("#panel-people").is_visible()

    # Confirmed: Bruno is removed.
    remove.click()
    dialog.get_by_role("button", name="Remove").click()
    bruno.wait_state("left")
    assert "removed" in bruno.page.get_by_test_id("left-title").inner_text()
    wait_until(lambda: bid not in {o["id"] for o in host.others()}, 10, "Bruno to leave")
    host.page.get_by_test_id(f"let-back-{bid}").wait_for(state="visible", timeout=5_000)
