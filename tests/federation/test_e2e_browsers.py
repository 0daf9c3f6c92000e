"""Two partner gateways, fr and de, linked in one room, with the people a real meeting has:
headless Chromium on fr (Félix, host there), headless Chromium on de (Dora), and a phone
(baresip) calling de's room. Each hears the others at their own tone, the browsers decode each
other's camera, chat crosses both ways, a mute shows on both sides, and a host's remove on fr takes
Dora out of fr's room while she stays in de's.

Each Chromium's fake microphone plays its own tone (``--use-file-for-fake-audio-capture``); a page
tells what it hears from someone with WebAudio's analyser on that person's <audio> element.
"""

from __future__ import annotations

import contextlib
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.media.audio.tone import tone_amplitude
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, load_room_page
from tests.federation.conftest import ARTIFACTS
from tests.federation.harness import PartnerGateway, Partners, wait_until
from tests.interop.baresip import BaresipInThread, write_tone

pytestmark = [pytest.mark.interop, pytest.mark.browser, pytest.mark.timeout(150)]

GATEWAYS = ("fr", "de")
FELIX_HZ = 440.0
DORA_HZ = 660.0
PHONE_HZ = 1000.0
PHONE_NAME = "Phone ••• 42"

HEARD_JS = """async (pid) => {
  const a = document.querySelector(`audio[data-pid="${pid}"]`);
  if (!a || !a.srcObject || !a.srcObject.getAudioTracks().length) return 0;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 16384;
  ctx.createMediaStreamSource(a.srcObject).connect(analyser);
  await new Promise((r) => setTimeout(r, 800));
  const db = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(db);
  let best = 3;
  for (let i = 3; i < db.length; i++) if (db[i] > db[best]) best = i;
  const hz = db[best] > -80 ? (best * ctx.sampleRate) / analyser.fftSize : 0;
  await ctx.close();
  return hz;
}"""


class Page:
    """One person's room page in a fresh browser context."""

    def __init__(self, name: str, context: Any, page: Any) -> None:
        self.name = name
        self.context = context
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def others(self) -> dict[str, dict[str, Any]]:
        people = self.page.evaluate("window.rondpoint.participants()")
        return {p["name"]: p for p in people if not p["self"]}

    def id_of(self, name: str) -> str:
        found = wait_until(lambda: self.others().get(name), 20, f"{self.name} to list {name}")
        return str(found["id"])

    def heard_from(self, pid: str) -> float:
        return float(self.page.evaluate(HEARD_JS, pid))

    def wait_hearing(self, name: str, frequency: float, timeout: float = 25) -> None:
        pid = self.id_of(name)
        wait_until(
            lambda: abs(self.heard_from(pid) - frequency) <= 10,
            timeout,
            f"{self.name} to hear {name} at {frequency:.0f} Hz",
            interval=0,
            last=lambda: self.heard_from(pid),
        )

    def wait_video(self, name: str, timeout: float = 25) -> None:
        pid = self.id_of(name)

        def decoded() -> int:
            stats = self.page.evaluate("window.rondpoint.stats()")
            return int(stats.get(pid, {}).get("video", {}).get("framesDecoded", 0))

        first = wait_until(decoded, timeout, f"{self.name} to decode {name}'s video")
        wait_until(lambda: decoded() > first + 10, 10, f"{self.name} to keep decoding {name}")

    def wait_muted(self, name: str, muted: bool, timeout: float = 10) -> None:
        tile = self.page.get_by_test_id(f"tile-{self.id_of(name)}")
        wanted = "true" if muted else "false"
        wait_until(
            lambda: tile.get_attribute("data-muted") == wanted,
            timeout,
            f"{self.name} to show {name} {'muted' if muted else 'unmuted'}",
        )

    def wait_speaking(self, name: str, timeout: float = 15) -> None:
        """``name``'s tile is marked speaking (the room's active speakers, from the RFC 6464
        levels that crossed the relay link)."""
        tile = self.page.get_by_test_id(f"tile-{self.id_of(name)}")
        wait_until(
            lambda: "speaking" in (tile.get_attribute("class") or "").split(),
            timeout,
            f"{self.name} to show {name} speaking",
        )

    def send_chat(self, text: str) -> None:
        if not self.page.get_by_test_id("chat-input").is_visible():
            self.page.get_by_test_id("chat-toggle").click()
        self.page.get_by_test_id("chat-input").fill(text)
        self.page.get_by_test_id("chat-send").click()

    def wait_chat(self, text: str, timeout: float = 10) -> None:
        if not self.page.get_by_test_id("chat-input").is_visible():
            self.page.get_by_test_id("chat-toggle").click()
        messages = self.page.get_by_test_id("chat-message")
        wait_until(
            lambda: any(text in m for m in messages.all_inner_texts()),
            timeout,
            f"{self.name} to read {text!r}",
            last=messages.all_inner_texts,
        )


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run 'make system-deps'")
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        yield pw


@contextlib.contextmanager
def chromium_with_tone(pw: Any, workdir: Path, frequency: float) -> Iterator[Any]:
    """A Chromium whose fake microphone plays ``frequency``."""
    tone = write_tone(workdir / f"tone-{frequency:.0f}.wav", frequency, 30)
    browser = pw.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={tone}"],
    )
    try:
        yield browser
    finally:
        browser.close()


def open_page(
    browser: Any, gateway: PartnerGateway, room: str, name: str, role: str = "member"
) -> Page:
    """``name`` joins ``room`` on ``gateway`` from the web page. The context accepts the test CA's
    certificate (the browser's own setting; nothing changes in a system store)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-US", ignore_https_errors=True
    )
    context.grant_permissions(["camera", "microphone"], origin=gateway.base_url)
    token = gateway.token(room, name.lower(), name, role=role)
    query = urllib.parse.urlencode({"autojoin": "1", "name": name, "res": "360"})
    page = context.new_page()
    person = Page(name, context, page)
    load_room_page(page, f"{gateway.base_url}/r/{room}?{query}#token={token}")
    page.wait_for_function("() => window.rondpoint && window.rondpoint.state === 'room'")
    return person


def test_browsers_and_a_phone_on_two_gateways_meet(
    partners: Partners, playwright: Any, tmp_path: Path
) -> None:
    fr, de = partners["fr"], partners["de"]
    room = f"visite-{secrets.token_hex(3)}"
    fr.create_room(room)
    de.create_room(room)
    partners.peer_add(fr, de)
    partners.peer_add(de, fr)
    partners.link_connected(fr, room, de, room)

    pages: list[Page] = []
    with (
        chromium_with_tone(playwright, tmp_path, FELIX_HZ) as fr_browser,
        chromium_with_tone(playwright, tmp_path, DORA_HZ) as de_browser,
        BaresipInThread(tmp_path / "phone", tone_hz=PHONE_HZ, user="0140506042") as phone,
    ):
        try:
            felix = open_page(fr_browser, fr, room, "Félix", role="host")
            pages.append(felix)
            dora = open_page(de_browser, de, room, "Dora")
            pages.append(dora)
            phone.run(phone.baresip.dial(f"sip:{room}@{de.host}:{de.sip_port}"))
            phone.run(phone.baresip.wait_event("CALL_ESTABLISHED", timeout=10))

            everyone = sorted(["Félix", "Dora", PHONE_NAME])
            for gateway in (fr, de):
                wait_until(
                    lambda g=gateway: g.names(room) == everyone,
                    20,
                    f"{gateway.name} to list {everyone} once each",
                    last=lambda g=gateway: g.names(room),
                )
            assert {p["name"]: p["origin"] for p in fr.participants(room)} == {
                "Félix": "ors",
                "Dora": f"federation:{de.name}",
                PHONE_NAME: f"federation:{de.name}",
            }
            phone_on_fr = next(p for p in fr.participants(room) if p["name"] == PHONE_NAME)
            assert phone_on_fr["origin_address"] == "sip", phone_on_fr

            # Everyone hears the others at their own tones; the browsers see each other.
            felix.wait_hearing("Dora", DORA_HZ)
            felix.wait_hearing(PHONE_NAME, PHONE_HZ)
            dora.wait_hearing("Félix", FELIX_HZ)
            dora.wait_hearing(PHONE_NAME, PHONE_HZ)
            felix.wait_video("Dora")
            dora.wait_video("Félix")
            # Speaking state crosses too: each side computes it from the levels of the tracks.
            felix.wait_speaking("Dora")
            felix.wait_speaking(PHONE_NAME)
            dora.wait_speaking("Félix")

            # Chat both ways.
            felix.send_chat("Bonjour de Paris")
            dora.wait_chat("Bonjour de Paris")
            dora.send_chat("Hallo aus Berlin")
            felix.wait_chat("Hallo aus Berlin")

            # A mute shows on the other side, both ways.
            dora.page.get_by_test_id("mic-toggle").click()
            felix.wait_muted("Dora", True)
            dora.page.get_by_test_id("mic-toggle").click()
            felix.wait_muted("Dora", False)
            felix.page.get_by_test_id("mic-toggle").click()
            dora.wait_muted("Félix", True)
            felix.page.get_by_test_id("mic-toggle").click()
            dora.wait_muted("Félix", False)

            # The phone heard both browsers through de's audio conference.
            phone.run(phone.baresip.hangup())
            phone.run(phone.baresip.wait_event("CALL_CLOSED", timeout=10))
            samples, rate = phone.baresip.recording("dec")
            last = samples[-4 * rate :]
            for frequency, who in ((FELIX_HZ, "Félix (fr)"), (DORA_HZ, "Dora (de)")):
                level = tone_amplitude(last, frequency, rate)
                assert level > 500, f"the phone does not hear {who}: {level:.0f}"
            wait_until(
                lambda: fr.names(room) == ["Dora", "Félix"], 15, "the phone to leave fr's room"
            )

            # Dora raises her hand on de; Félix, host on fr, lowers it from his people panel: it
            # goes down at her home, so her own button is up again.
            dora_on_fr = felix.id_of("Dora")
            dora_hand = dora.page.get_by_test_id("hand-toggle")
            dora_hand.click()
            felix.page.get_by_test_id("participants-toggle").click()
            lower = felix.page.get_by_test_id(f"lower-hand-{dora_on_fr}")
            wait_until(lower.is_visible, 15, "Dora's hand in Félix's people panel")
            lower.click()
            wait_until(
                lambda: dora_hand.get_attribute("aria-pressed") == "false",
                15,
                "Dora's hand lowered at her home",
            )
            assert [p["hand_raised_at"] for p in de.participants(room) if p["name"] == "Dora"] == [
                None
            ]

            # Félix, host on fr, removes Dora from fr's room: she stays in de's.
            felix.page.get_by_test_id(f"remove-{dora_on_fr}").click()
            felix.page.get_by_test_id("confirm-ok").click()  # "Remove Dora from the meeting?"
            wait_until(lambda: fr.names(room) == ["Félix"], 10, "Dora to leave fr's room")
            wait_until(lambda: "Dora" not in felix.others(), 10, "Dora's tile to go on fr")
            assert de.names(room) == ["Dora", "Félix"], de.participants(room)
            assert dora.page.evaluate("window.rondpoint.state") == "room"
            dora.wait_hearing("Félix", FELIX_HZ)
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for page in pages:
                slug = f"browsers-{page.name}".encode("ascii", "replace").decode()
                (ARTIFACTS / f"{slug}.console.txt").write_text("\n".join(page.console))
                with contextlib.suppress(Exception):
                    page.page.screenshot(path=str(ARTIFACTS / f"{slug}.png"))
                page.context.close()


def test_a_host_links_a_partner_room_from_the_page_and_sees_each_state(
    partners: Partners, playwright: Any, tmp_path: Path
) -> None:
    """The host's page links `ors:ROOM@de.test`: refused while de has not added fr (with de's
    reason); unlinked and linked again once de has, connected, with the partner's people
    counted."""
    fr, de = partners["fr"], partners["de"]
    room = f"page-{secrets.token_hex(3)}"
    fr.create_room(room)
    de.create_room(room)
    partners.peer_add(fr, de)
    de.admin("DELETE", f"/api/v1/federation/peers/{fr.name}")  # an earlier test may have added it
    target = f"ors:{room}@{de.name}"
    with chromium_with_tone(playwright, tmp_path, FELIX_HZ) as browser:
        host = open_page(browser, fr, room, "Félix", role="host")
        try:
            host.page.click("#toggle-people")
            host.page.get_by_test_id("links-section").wait_for(state="visible", timeout=10000)
            host.page.get_by_test_id("link-input").fill(target)
            host.page.get_by_test_id("link-send").click()
            row = host.page.locator(f'[data-testid="link-row"][data-target="{target}"]')
            state = row.get_by_test_id("link-state")
            state.filter(has_text="Refused by the partner").wait_for(timeout=20000)
            assert state.get_attribute("data-state") == "refused"
            assert "not a peer of this server" in row.inner_text()
            host.page.screenshot(path=str(ARTIFACTS / "federation-link-refused.png"))

            # de consents; the host links again rather than wait for fr's next try (60 s)
            partners.peer_add(de, fr)
            row.get_by_test_id("unlink").click()
            row.wait_for(state="detached", timeout=10000)
            host.page.get_by_test_id("link-input").fill(target)
            host.page.get_by_test_id("link-send").click()
            dora = open_page(browser, de, room, "Dora")
            try:
                state.filter(has_text="Connected").wait_for(timeout=90000)
                state.filter(has_text="1 on the other side").wait_for(timeout=20000)
            finally:
                dora.context.close()
        finally:
            host.context.close()
