"""baresip, a real softphone, against the gateway: two-way audio with a WebRTC participant, PIN by DTMF.

baresip plays a 1000 Hz tone as its microphone and records what it hears; an aiortc WebRTC
participant (spec/conformance/webrtc.py) publishes 660 Hz. The participant must hear 1000 Hz from
the phone, and the phone must hear 660 Hz and not its own 1000 Hz (the room's mix-minus).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.media.audio.tone import tone_amplitude
from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import SAMPLE_RATE, WebRtcPeer, dominant_frequency
from tests.browser import conftest as browser_fixtures
from tests.gateway_process import RunningGateway
from tests.interop.baresip import Baresip, BaresipInThread

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

PHONE_HZ = 1000.0
BROWSER_HZ = 660.0
PHONE_NUMBER = "0140506042"
CHROMIUM_BEEP_HZ = 400.0
"""Chromium's --use-fake-device-for-media-stream microphone: short square-wave beeps."""

# Chromium through Playwright's sync API, for the browser variant (tests/browser/conftest.py).
web_gateway = browser_fixtures.web_gateway
chromium = browser_fixtures.chromium
open_participant = browser_fixtures.open_participant

# What the page's <audio> element for a participant plays, sampled by Web Audio (float, 48 kHz).
CAPTURE_JS = """async (pid) => {
  const a = document.querySelector(`#audio-sink audio[data-pid="${pid}"]`);
  if (!a || !a.srcObject) return null;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 16384;
  ctx.createMediaStreamSource(a.srcObject).connect(analyser);
  await new Promise((r) => setTimeout(r, 600));
  const samples = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(samples);
  const rate = ctx.sampleRate;
  await ctx.close();
  return { rate, samples: Array.from(samples) };
}"""


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Baresip]:
    async with Baresip(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER) as running:
        yield running


@pytest.fixture(params=["rtp", "srtp"])
async def any_phone(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Baresip]:
    """The softphone, on plain RTP or on SDES-SRTP only (RFC 4568, baresip mediaenc=srtp-mand)."""
    mediaenc = "srtp-mand" if request.param == "srtp" else ""
    async with Baresip(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER, mediaenc=mediaenc) as running:
        yield running


def sip_participants(gateway: RunningGateway, room: str) -> list[dict]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return [p for p in body["participants"] if p["origin"] == "sip"]


async def wait_for_sip_participant(
    gateway: RunningGateway, room: str, timeout: float = 15.0
) -> dict:
    deadline = time.monotonic() + timeout
    while not (found := sip_participants(gateway, room)):
        assert time.monotonic() < deadline, f"no phone in {room} after {timeout} s"
        await asyncio.sleep(0.2)
    return found[0]


async def test_a_softphone_and_a_webrtc_participant_hear_each_other(
    gateway: RunningGateway, any_phone: Baresip
) -> None:
    phone = any_phone
    room = f"salle-baresip-{phone.mediaenc or 'rtp'}"
    gateway.create_room(room)
    alice = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(alice)
    try:
        await alice.join(gateway.token(room, "alice", "Alice"))
        await peer.publish(frequency=BROWSER_HZ)

        await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        joined = (await alice.next_event("participant_joined", timeout=15))["participant"]
        assert (joined["name"], joined["origin"]) == ("Phone ••• 42", "sip")
        track = (await alice.next_event("track_published", timeout=10))["track"]
        assert (track["participant_id"], track["kind"]) == (joined["id"], "audio")
        await peer.accept_offer(await alice.next_event("offer", timeout=10))

        # The WebRTC participant hears the phone's tone, and only it (not its own 660 Hz).
        async with asyncio.timeout(15):
            while (received := peer.received.get(track["id"])) is None or received.frames < 100:
                await asyncio.sleep(0.1)
        heard = np.concatenate(received.samples[-50:])
        phone_level = tone_amplitude(heard, PHONE_HZ, SAMPLE_RATE)
        assert received.frequency() == pytest.approx(PHONE_HZ, abs=15)
        assert phone_level > 2000, f"the phone's tone is too faint in WebRTC: {phone_level:.0f}"
        assert tone_amplitude(heard, BROWSER_HZ, SAMPLE_RATE) < phone_level / 20

        await asyncio.sleep(3)  # some room audio for the phone's recording, after the prompt
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)
        left = await alice.next_event("participant_left", timeout=10)
        assert left["participant_id"] == joined["id"]
    finally:
        await peer.close()
        await alice.close()

    # The phone heard the WebRTC participant's tone and not its own voice (mix-minus).
    samples, rate = phone.recording("dec")
    assert len(samples) > 4 * rate, f"baresip recorded only {len(samples) / rate:.1f} s"
    tail = samples[-2 * rate :]
    room_level = tone_amplitude(tail, BROWSER_HZ, rate)
    echo_level = tone_amplitude(tail, PHONE_HZ, rate)
    assert room_level > 2000, f"the phone hears the room too faintly: {room_level:.0f}"
    assert echo_level < room_level / 20, f"the phone hears itself: {echo_level:.0f}"
    # and what it sent was its tone (sndfile's encode side), so the check above means something
    sent, _ = phone.recording("enc")
    assert tone_amplitude(sent[-2 * rate :], PHONE_HZ, rate) > 4000


async def test_a_softphone_enters_a_room_pin_by_dtmf(
    gateway: RunningGateway, phone: Baresip
) -> None:
    room = "salle-pin-baresip"
    gateway.create_room(room, pin="482913")
    await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
    await phone.wait_event("CALL_ESTABLISHED", timeout=10)
    await asyncio.sleep(1)  # the PIN prompt is playing; digits typed over it still count
    assert sip_participants(gateway, room) == []  # no PIN yet: not in the room

    await phone.send_digits("111111#")  # a wrong PIN: the prompt again, still not in the room
    await asyncio.sleep(2)
    assert sip_participants(gateway, room) == []
    assert "CALL_CLOSED" not in [e["type"] for e in phone.events]
    await phone.send_digits("482913#")
    participant = await wait_for_sip_participant(gateway, room)
    assert (participant["name"], participant["state"]) == ("Phone ••• 42", "joined")
    assert [t["kind"] for t in participant["tracks"]] == ["audio"]

    await phone.hangup()
    await phone.wait_event("CALL_CLOSED", timeout=10)
    deadline = time.monotonic() + 10
    while sip_participants(gateway, room):
        assert time.monotonic() < deadline, "the phone stayed in the room after its BYE"
        await asyncio.sleep(0.2)


async def test_a_room_dials_out_to_a_softphone_that_answers(
    gateway: RunningGateway, phone: Baresip
) -> None:
    room = "salle-appel-baresip"
    gateway.create_room(room)
    alice = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(alice)
    try:
        await alice.join(gateway.token(room, "alice", "Alice", role="host"))
        await peer.publish(frequency=BROWSER_HZ)

        status, call = gateway.admin("POST", f"/api/v1/rooms/{room}/dial", {"to": phone.uri})
        assert status == 202, call
        # answermode=auto: baresip 1.0.0 answers without a CALL_INCOMING event
        established = await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        assert established["direction"] == "incoming"

        await wait_for_sip_participant(gateway, room)
        deadline = time.monotonic() + 10
        while (calls := gateway.admin("GET", f"/api/v1/rooms/{room}")[1]["calls"])[0][
            "status"
        ] != "answered":
            assert time.monotonic() < deadline, f"the call was never answered: {calls}"
            await asyncio.sleep(0.2)
        assert (calls[0]["id"], calls[0]["to"]) == (call["id"], phone.uri)
        participant = sip_participants(gateway, room)[0]
        assert participant["id"] == calls[0]["participant_id"]
        assert (participant["name"], participant["state"]) == ("Phone ••• 42", "joined")

        # The callee is heard in the room like a caller.
        track_id = next(t["id"] for t in participant["tracks"] if t["kind"] == "audio")
        async with asyncio.timeout(15):
            while track_id not in peer.received:
                message = await alice.next_event("offer", timeout=15)
                await peer.accept_offer(message)
            while peer.received[track_id].frames < 100:
                await asyncio.sleep(0.1)
        heard = np.concatenate(peer.received[track_id].samples[-50:])
        assert tone_amplitude(heard, PHONE_HZ, SAMPLE_RATE) > 2000

        await asyncio.sleep(2)
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)
        deadline = time.monotonic() + 10
        while sip_participants(gateway, room):
            assert time.monotonic() < deadline, "the callee stayed in the room after its BYE"
            await asyncio.sleep(0.2)
    finally:
        await peer.close()
        await alice.close()

    # and the callee heard the room
    samples, rate = phone.recording("dec")
    tail = samples[-rate:]
    assert tone_amplitude(tail, BROWSER_HZ, rate) > 2000
    assert tone_amplitude(tail, PHONE_HZ, rate) < tone_amplitude(tail, BROWSER_HZ, rate) / 20


@pytest.mark.browser
def test_a_softphone_and_a_chromium_participant_hear_each_other(
    web_gateway: RunningGateway, open_participant: Callable[..., Any], tmp_path: Path
) -> None:
    room = "salle-baresip-chromium"
    web_gateway.create_room(room)
    with BaresipInThread(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER) as phone:
        browser = open_participant(room, "Bérénice")
        browser.wait_state("room")
        phone.run(phone.baresip.dial(f"sip:{room}@127.0.0.1:{web_gateway.sip_port}"))
        phone.run(phone.baresip.wait_event("CALL_ESTABLISHED", timeout=10))

        deadline = time.monotonic() + 15
        while not (phones := [o for o in browser.others() if o.get("origin") == "sip"]):
            assert time.monotonic() < deadline, "the phone never showed in the page"
            time.sleep(0.25)
        pid = phones[0]["id"]

        # Chromium plays the phone's tone (checked on the page's own <audio> element).
        deadline = time.monotonic() + 15
        while True:
            capture = browser.page.evaluate(CAPTURE_JS, pid)
            if capture is not None:
                heard = np.array(capture["samples"]) * 32768
                if tone_amplitude(heard, PHONE_HZ, capture["rate"]) > 2000:
                    break
            assert time.monotonic() < deadline, "Chromium does not play the phone's tone"
            time.sleep(0.5)
        assert dominant_frequency(heard, capture["rate"]) == pytest.approx(PHONE_HZ, abs=15)

        time.sleep(3)  # the browser's fake microphone beeps into the phone's recording
        phone.run(phone.baresip.hangup())
        phone.run(phone.baresip.wait_event("CALL_CLOSED", timeout=10))
        samples, rate = phone.baresip.recording("dec")

    # Chromium's fake microphone beeps at about 400 Hz: the phone hears that, not its own tone.
    tail = samples[-2 * rate :].astype(np.float64)
    room_rms = float(np.sqrt(np.mean(tail**2)))
    assert room_rms > 300, f"the phone hears nothing from Chromium (RMS {room_rms:.0f})"
    assert dominant_frequency(tail, rate) == pytest.approx(CHROMIUM_BEEP_HZ, abs=25)
    assert tone_amplitude(tail, PHONE_HZ, rate) < room_rms / 20, "the phone hears itself"
