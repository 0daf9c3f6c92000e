"""The page before and around the room (issue 14): camera and microphone pickers (pre-join and
the room's settings, switching the sent track without renegotiation), the microphone's level
meter, the name from the join token, the language switch, problem texts in French, the invite
dialog with the gateway's dial-in numbers and PIN (ORS 4.5), and the keyboard."""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Participant, launched_chromium, load_room_page
from tests.browser.test_web_client import helene_hosts, new_room, wait_until
from tests.gateway_process import RunningGateway, running_gateway

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(120)]

Opener = Callable[..., Participant]
SCREENSHOTS = ARTIFACTS / "screenshots"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Three fake cameras and three fake microphones, so that there is something to choose.
    Chromium's second fake camera sends 16-bit depth frames, which no encoder takes: the tests
    switch to the third (MJPEG, decoded to I420 like a real webcam)."""
    with launched_chromium("--use-fake-device-for-media-stream=device-count=3") as browser:
        yield browser


def screenshot(p: Participant, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    p.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def options(p: Participant, test_id: str) -> list[dict[str, str]]:
    return list(
        p.page.get_by_test_id(test_id).evaluate(
            "s => [...s.options].map(o => ({value: o.value, label: o.textContent}))"
        )
    )


def senders(p: Participant) -> dict[str, Any]:
    return dict(p.page.evaluate("window.rondpoint.senders()"))


def frames_from(viewer: Participant, sender: Participant) -> int:
    return int(viewer.stats().get(sender.id, {}).get("video", {}).get("framesDecoded", 0))


def audio_from(viewer: Participant, sender: Participant) -> int:
    return int(viewer.stats().get(sender.id, {}).get("audio", {}).get("packets", 0))


def at_prejoin(
    open_participant: Opener,
    gateway: RunningGateway,
    prefix: str,
    token_name: str = "",
    **policy: object,
) -> tuple[str, Participant]:
    """A new room the operator made (with POLICY), and a page on its pre-join screen: with a join
    token naming TOKEN_NAME when there is one, else as an anonymous visitor."""
    room = new_room(prefix)
    gateway.create_room(room, **policy)
    token = gateway.token(room, "visitor", token_name) if token_name else None
    p = open_participant(room, "unused", token=token, autojoin=False)
    p.wait_state("prejoin")
    return room, p


def in_a_room(open_participant: Opener, prefix: str, *names: str) -> list[Participant]:
    """NAMES in a new room, one after the other (the first makes it, through the token endpoint)."""
    room = new_room(prefix)
    people = []
    for name in names:
        people.append(open_participant(room, name))
        people[-1].wait_state("room")
    return people


def test_prejoin_lists_devices_keeps_the_choice_and_the_name_of_the_token(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    _, claire = at_prejoin(open_participant, web_gateway, "prejoin", "Claire Dubois")
    page = claire.page
    assert page.get_by_test_id("prejoin-name").input_value() == "Claire Dubois"
    wait_until(lambda: len(options(claire, "pre-cam-select")) == 3, 10, "the fake cameras")
    cameras = options(claire, "pre-cam-select")
    assert [c["label"] for c in cameras] == ["fake_device_0", "fake_device_1", "fake_device_2"]
    assert len(options(claire, "pre-mic-select")) >= 2
    # the level meter moves with the fake microphone's beeps, and says so to assistive technology
    meter = page.get_by_role("meter", name="Microphone level")
    wait_until(lambda: int(meter.get_attribute("aria-valuenow") or 0) > 0, 10, "the meter to move")
    screenshot(claire, "prejoin")
    # another camera: the preview shows it, and the choice is kept
    page.get_by_test_id("pre-cam-select").select_option(cameras[2]["value"])
    preview = "document.getElementById('preview-video').srcObject?.getVideoTracks()[0]?.label"
    wait_until(lambda: page.evaluate(preview) == "fake_device_2", 10, "the preview to switch")
    page.reload()
    claire.wait_state("prejoin")
    wait_until(
        lambda: page.get_by_test_id("pre-cam-select").input_value() == cameras[2]["value"],
        10,
        "the camera chosen before the reload",
    )
    assert page.evaluate(preview) == "fake_device_2"
    assert page.get_by_test_id("prejoin-name").input_value() == "Claire Dubois"
    page.get_by_test_id("prejoin-join").click()
    claire.wait_state("room")
    assert senders(claire)["video"]["label"] == "fake_device_2"


def test_switching_devices_in_the_room_replaces_the_sent_tracks_without_renegotiation(
    open_participant: Opener,
) -> None:
    alice, bob = in_a_room(open_participant, "devices", "Alice", "Bob")
    wait_until(lambda: frames_from(bob, alice) > 10, 20, "Bob to see Alice")
    before = senders(alice)
    answer = alice.page.evaluate("window.rondpoint._debug().pubAnswer")
    assert before["video"]["label"] == "fake_device_0"

    alice.page.get_by_test_id("settings-open").click()
    dialog = alice.page.get_by_test_id("settings-dialog")
    assert dialog.is_visible()
    cameras = options(alice, "set-cam-select")
    alice.page.get_by_test_id("set-cam-select").select_option(cameras[2]["value"])
    wait_until(lambda: senders(alice)["video"]["label"] == "fake_device_2", 10, "the new camera")
    mics = options(alice, "set-mic-select")
    other_mic = next(m for m in mics if m["label"] != before["audio"]["label"])
    alice.page.get_by_test_id("set-mic-select").select_option(other_mic["value"])
    wait_until(lambda: senders(alice)["audio"]["label"] == other_mic["label"], 10, "the new mic")
    after = senders(alice)
    assert after["video"]["id"] != before["video"]["id"]
    assert after["audio"]["id"] != before["audio"]["id"]
    # the same negotiated session, and Bob keeps receiving both
    assert alice.page.evaluate("window.rondpoint._debug().pubAnswer") == answer
    frames, packets = frames_from(bob, alice), audio_from(bob, alice)
    wait_until(lambda: frames_from(bob, alice) > frames + 20, 15, "frames of the new camera")
    wait_until(lambda: audio_from(bob, alice) > packets + 20, 15, "audio of the new microphone")
    alice.page.keyboard.press("Escape")
    assert not dialog.is_visible()


def test_the_language_switch_changes_every_text_and_is_kept(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, p = at_prejoin(open_participant, web_gateway, "langue", pin="2580")
    page = p.page
    assert page.locator("#prejoin-title").inner_text() == "Ready to join?"
    page.get_by_test_id("lang-select").select_option("fr")
    assert page.locator("#prejoin-title").inner_text() == "Prêt à rejoindre ?"
    assert page.evaluate("document.documentElement.lang") == "fr"
    assert page.get_by_test_id("pre-mic-toggle").get_attribute("aria-label") == "Couper le micro"
    assert page.locator("#prejoin-facts li").first.inner_text() == "Personne n’est encore là"
    assert page.title().startswith(f"{room} · Prêt à rejoindre ?")
    page.reload()
    p.wait_state("prejoin")
    assert page.locator("#prejoin-title").inner_text() == "Prêt à rejoindre ?"
    assert page.get_by_test_id("lang-select").input_value() == "fr"
    # a server error, in French, never its English detail
    page.get_by_test_id("prejoin-name").fill("Zoé")
    page.get_by_test_id("prejoin-pin").fill("0000")
    page.get_by_test_id("prejoin-join").click()
    error = page.locator("#prejoin-error")
    wait_until(lambda: error.inner_text(), 10, "the wrong PIN's text")
    assert error.inner_text() == "Code incorrect. Vérifiez-le auprès de l’organisateur."
    # ?lang= still wins
    load_room_page(page, f"{web_gateway.base_url}/r/{room}?lang=en")
    p.wait_state("prejoin")
    assert page.locator("#prejoin-title").inner_text() == "Ready to join?"
    assert page.evaluate("document.documentElement.lang") == "en"


def test_the_invite_dialog_shows_the_link_the_numbers_and_the_pin_inside_only(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    number = f"+3314050{secrets.randbelow(10**4):04d}"
    room, host = helene_hosts(open_participant, web_gateway, "invite", pin="4829", lobby=True)
    status, body = web_gateway.admin(
        "POST", "/api/v1/sip/dispatch", {"number": number, "room": room}
    )
    assert status == 201, body
    page = host.page
    page.get_by_test_id("invite-open").click()
    dialog = page.get_by_test_id("invite-dialog")
    assert dialog.is_visible()
    assert page.get_by_test_id("invite-url").input_value() == f"{web_gateway.base_url}/r/{room}"
    numbers = page.get_by_test_id("invite-numbers")
    wait_until(lambda: numbers.is_visible(), 10, "the dial-in numbers")
    assert numbers.locator("a").all_inner_texts() == [number]
    assert numbers.locator("a").first.get_attribute("href") == f"tel:{number}"
    sip = page.get_by_test_id("invite-sip").locator("a").all_inner_texts()
    assert sip == [f"sip:{room}@127.0.0.1:{web_gateway.sip_port}"]
    assert page.get_by_test_id("invite-pin").inner_text() == "4829"
    screenshot(host, "invite")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    # a visitor in the lobby has the link to share, never the numbers nor the PIN
    token = web_gateway.token(room, "visitor", "Visitor", role="guest")
    visitor = open_participant(room, "Visitor", token=token)
    visitor.wait_state("lobby")
    visitor.page.get_by_test_id("invite-open").click()
    assert visitor.page.get_by_test_id("invite-url").input_value().endswith(f"/r/{room}")
    assert not visitor.page.get_by_test_id("invite-phone").is_visible()
    assert not visitor.page.get_by_test_id("invite-pin").is_visible()
    assert "4829" not in visitor.page.content()


@pytest.fixture(scope="module")
def gateway_without_sip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    extra = "enabled = false\n[limits]\nanonymous_requests_per_minute = 10000\n"
    with running_gateway(Path(tmp_path_factory.mktemp("no-sip-web")), extra_config=extra) as gw:
        yield gw


def test_without_sip_the_invite_dialog_has_no_phone_section(
    chromium: Any, gateway_without_sip: RunningGateway
) -> None:
    gateway = gateway_without_sip
    room = new_room("nosip")
    gateway.create_room(room, pin="1357")
    token = gateway.token(room, "host", "Hôte", role="host")
    context = chromium.new_context(locale="en-US")
    context.grant_permissions(["camera", "microphone"], origin=gateway.base_url)
    try:
        page = context.new_page()
        load_room_page(
            page,
            f"{gateway.base_url}/r/{room}?autojoin=1&name={urllib.request.quote('Hôte')}#token={token}",
        )
        Participant("Hôte", context, page, []).wait_state("room")
        page.get_by_test_id("invite-open").click()
        pin = page.get_by_test_id("invite-pin")
        wait_until(lambda: pin.is_visible(), 10, "the PIN")
        assert pin.inner_text() == "1357"
        assert not page.get_by_test_id("invite-phone").is_visible()
    finally:
        context.close()


def muted_at_the_gateway(gateway: RunningGateway, p: Participant, source: str) -> bool | None:
    """Whether the gateway has P's track of SOURCE muted (what the others are told), or None."""
    status, room = gateway.admin("GET", f"/api/v1/rooms/{p.page.evaluate('window.rondpoint.room')}")
    assert status == 200, room
    tracks = [t for t in room["tracks"] if t["participant_id"] == p.id and t["source"] == source]
    return bool(tracks[0]["muted"]) if tracks else None


def test_the_keyboard_reaches_every_control_and_the_shortcuts_work(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    (p,) = in_a_room(open_participant, "keys", "Karim")
    page = p.page
    page.get_by_test_id("mic-toggle").focus()
    reached = [page.evaluate("document.activeElement.id")]
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    bar = [
        "mic-toggle",
        "camera-toggle",
        "hand-toggle",
        "reactions-toggle",
        "settings-open",
        "leave",
        "toggle-people",
        "toggle-chat",
        "shortcuts-open",
    ]
    in_order = [r for r in reached if r in bar]
    assert in_order[: len(bar)] == bar, reached
    # a visible focus ring on what the keyboard reached
    page.get_by_test_id("mic-toggle").focus()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
    page.locator("body").click(position={"x": 5, "y": 200})  # the focus leaves the controls

    mic = page.get_by_test_id("mic-toggle")
    wait_until(lambda: muted_at_the_gateway(web_gateway, p, "camera") is False, 10, "the tracks")
    # each key's change reaches the gateway (and so the others) before the next key
    for key, source, muted in [
        ("m", "microphone", True),
        ("Control+d", "microphone", False),
        ("v", "camera", True),
        ("Control+e", "camera", False),
    ]:
        page.keyboard.press(key)
        wait_until(
            lambda s=source, m=muted: muted_at_the_gateway(web_gateway, p, s) is m,
            10,
            f"{key}: {source}",
        )
    assert mic.get_attribute("aria-pressed") == "false"
    assert page.get_by_test_id("camera-toggle").get_attribute("aria-pressed") == "false"
    assert mic.get_attribute("aria-keyshortcuts") == "M Control+D"
    hand = page.get_by_test_id("hand-toggle")
    page.keyboard.press("h")
    wait_until(lambda: hand.get_attribute("aria-pressed") == "true", 10, "H to raise the hand")
    page.keyboard.press("h")
    wait_until(lambda: hand.get_attribute("aria-pressed") == "false", 10, "H to lower it")
    page.keyboard.press("c")
    assert page.get_by_test_id("chat-toggle").get_attribute("aria-expanded") == "true"
    # typing a message fires nothing
    page.get_by_test_id("chat-input").fill("")
    page.get_by_test_id("chat-input").type("mvp")
    assert mic.get_attribute("aria-pressed") == "false"
    assert page.get_by_test_id("chat-input").input_value() == "mvp"
    page.locator("body").click(position={"x": 5, "y": 200})
    page.keyboard.press("p")
    assert page.get_by_test_id("participants-toggle").get_attribute("aria-expanded") == "true"
    page.keyboard.press("?")
    shortcuts = page.get_by_test_id("shortcuts-dialog")
    assert shortcuts.is_visible()
    assert "Turn the microphone on or off" in shortcuts.inner_text()
    page.keyboard.press("m")  # not while a dialog is open
    assert mic.get_attribute("aria-pressed") == "false"
    page.keyboard.press("Escape")
    assert not shortcuts.is_visible()
    page.keyboard.press("i")
    assert page.get_by_test_id("invite-dialog").is_visible()
    page.keyboard.press("Escape")
    assert not page.get_by_test_id("invite-dialog").is_visible()
    assert p.state() == "room"
