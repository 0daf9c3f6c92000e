"""An Element Call stand-in for the Matrix tests: headless Chromium with livekit-client (LiveKit's
JavaScript SDK, the one Element Call is built on) in a LiveKit room.

The page connects with a given {url, jwt} (what a focus's /sfu/get answers), publishes a tone at a
given frequency (WebAudio OscillatorNode -> MediaStreamDestination, as microphone) and a moving
canvas (as camera), plays every remote audio track and analyses it with an AnalyserNode, so a test
can ask which frequency it hears from whom. livekit-client's bundle, Chromium's flags and the
binary are those of the browser tests (tests/livekit_client_npm.sh,
tests/browser/test_visio_livekit_client.py, tests/browser/conftest.py).

    async with livekit_browser(request) as browser:
        page = await browser.open("anna")
        await page.connect(url, jwt)
        await page.publish(frequency=440)
        await page.wait_participant("@bert:hs.test:BERTDEV")
        assert abs(await page.dominant_frequency("@bert:hs.test:BERTDEV") - 523) < 10

A page opened with ``encrypted=True`` encrypts its media as Element Call does (livekit-client's
E2EE worker, Element Call's key provider settings: per-participant raw keys as HKDF material,
ratchet window 10, key ring 256); `set_key` gives it a participant's key (its own included).

On a failed test, each page's screenshot, console and state go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_visio_livekit_client import livekit_client_bundle
from tests.gateway_process import free_port

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>livekit-client (Element Call stand-in)</title>
<script src="/livekit-client.umd.js"></script></head>
<body><div id="media"></div><canvas id="canvas" width="320" height="240"></canvas>
<script>
"use strict";
(() => {
  const LK = window.LivekitClient;
  const state = { status: "new", error: "", events: [], chat: [], keys: 0, errors: [] };
  // Element Call's MatrixKeyProvider: per-participant keys, raw bytes as HKDF material.
  class MatrixKeyProvider extends LK.BaseKeyProvider {
    constructor() { super({ ratchetWindowSize: 10, keyringSize: 256 }); }
    async setRawKey(bytes, identity, index) {
      const material = await LK.createKeyMaterialFromBuffer(bytes);
      this.onSetEncryptionKey(material, identity, index);
    }
  }
  const keyProvider = location.search.includes("e2ee") ? new MatrixKeyProvider() : null;
  const room = new LK.Room(keyProvider ? {
    e2ee: { keyProvider, worker: new Worker("/e2ee.worker.mjs", { type: "module" }) },
  } : {});
  room.on(LK.RoomEvent.EncryptionError, (e) => state.errors.push(String(e)));
  const audio = new AudioContext({ sampleRate: 48000 });
  const analysers = new Map(); // identity -> AnalyserNode of its (last) remote audio track
  let pattern = null;

  room.on(LK.RoomEvent.TrackSubscribed, (track, publication, participant) => {
    state.events.push(`subscribed ${participant.identity} ${track.kind}`);
    if (track.kind !== "audio") return;
    // Chromium decodes remote WebRTC audio for WebAudio only while it is also played.
    document.getElementById("media").appendChild(track.attach());
    const source = audio.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
    const analyser = audio.createAnalyser();
    analyser.fftSize = 16384;
    analyser.smoothingTimeConstant = 0;
    source.connect(analyser);
    analysers.set(participant.identity, analyser);
  });
  room.on(LK.RoomEvent.TrackUnsubscribed, (track, publication, participant) => {
    state.events.push(`unsubscribed ${participant.identity} ${track.kind}`);
  });
  room.on(LK.RoomEvent.ParticipantConnected, (p) => state.events.push(`joined ${p.identity}`));
  room.on(LK.RoomEvent.ParticipantDisconnected, (p) => state.events.push(`left ${p.identity}`));
  room.on(LK.RoomEvent.Disconnected, (reason) => {
    state.status = "disconnected";
    state.events.push(`disconnected ${reason}`);
  });
  room.on(LK.RoomEvent.Reconnecting, () => { state.status = "reconnecting"; });
  room.on(LK.RoomEvent.Reconnected, () => { state.status = "connected"; });
  room.on(LK.RoomEvent.DataReceived, (payload, participant, kind, topic) => {
    state.chat.push({ identity: participant && participant.identity, topic,
                      text: new TextDecoder().decode(payload) });
  });

  const tracks = (p) => [...p.trackPublications.values()].map((t) => ({
    sid: t.trackSid, kind: t.kind, source: t.source, name: t.trackName,
    subscribed: t.isSubscribed, muted: t.isMuted,
  }));

  function drawPattern() {
    const canvas = document.getElementById("canvas");
    const g = canvas.getContext("2d");
    let frame = 0;
    return setInterval(() => {
      frame += 1;
      g.fillStyle = `hsl(${(frame * 7) % 360} 80% 50%)`;
      g.fillRect(0, 0, canvas.width, canvas.height);
      g.fillStyle = "white";
      g.fillRect((frame * 5) % canvas.width, 100, 40, 40);
    }, 66);
  }

  window.lk = {
    state,
    async connect(url, jwt) {
      state.status = "connecting";
      try {
        await audio.resume();
        if (keyProvider) await room.setE2EEEnabled(true);
        await room.connect(url, jwt);
        state.status = "connected";
      } catch (e) {
        state.status = "failed";
        state.error = String(e && e.stack || e);
      }
      return state.status;
    },
    localIdentity() { return room.localParticipant.identity; },
    localTracks() { return tracks(room.localParticipant); },
    async setKey(identity, keyBase64, index) {
      const bytes = Uint8Array.from(atob(keyBase64), (c) => c.charCodeAt(0));
      await keyProvider.setRawKey(bytes, identity, index);
      state.keys += 1;
    },
    async publish(frequency, video) {
      if (frequency) {
        const oscillator = audio.createOscillator();
        oscillator.frequency.value = frequency;
        const gain = audio.createGain();
        gain.gain.value = 0.3;
        const destination = audio.createMediaStreamDestination();
        oscillator.connect(gain).connect(destination);
        oscillator.start();
        await room.localParticipant.publishTrack(destination.stream.getAudioTracks()[0], {
          source: LK.Track.Source.Microphone, name: "tone", dtx: false,
        });
      }
      if (video) {
        pattern = pattern || drawPattern();
        const stream = document.getElementById("canvas").captureStream(15);
        await room.localParticipant.publishTrack(stream.getVideoTracks()[0], {
          source: LK.Track.Source.Camera, name: "pattern",
        });
      }
      return tracks(room.localParticipant);
    },
    /* A screen share as Element Call sends one: a video track of source ScreenShare (the moving
       pattern again: headless, there is no screen to capture). */
    async shareScreen() {
      pattern = pattern || drawPattern();
      const stream = document.getElementById("canvas").captureStream(15);
      await room.localParticipant.publishTrack(stream.getVideoTracks()[0], {
        source: LK.Track.Source.ScreenShare, name: "screen",
      });
      return tracks(room.localParticipant);
    },
    participants() {
      return [...room.remoteParticipants.values()].map((p) => ({
        identity: p.identity, name: p.name, metadata: p.metadata,
        attributes: { ...p.attributes }, tracks: tracks(p),
      }));
    },
    published() { return tracks(room.localParticipant); },
    /* The strongest frequency (Hz) and the RMS level (0..1) of IDENTITY's audio, its power
       spectrum summed over SECONDS; null when no audio track of IDENTITY is analysed yet. */
    async listen(identity, seconds) {
      const analyser = analysers.get(identity);
      if (!analyser) return null;
      const bins = new Float32Array(analyser.frequencyBinCount);
      const power = new Float64Array(analyser.frequencyBinCount);
      const wave = new Float32Array(analyser.fftSize);
      let energy = 0, samples = 0;
      const end = performance.now() + seconds * 1000;
      while (performance.now() < end) {
        analyser.getFloatFrequencyData(bins);
        for (let i = 0; i < bins.length; i++) power[i] += Math.pow(10, bins[i] / 10);
        analyser.getFloatTimeDomainData(wave);
        for (const v of wave) energy += v * v;
        samples += wave.length;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      let peak = 1;
      for (let i = 2; i < power.length - 1; i++) if (power[i] > power[peak]) peak = i;
      // Parabolic interpolation between the peak bin and its neighbours (log power).
      const [a, b, c] = [power[peak - 1], power[peak], power[peak + 1]].map((x) => Math.log(x + 1e-30));
      const offset = (a - 2 * b + c) === 0 ? 0 : 0.5 * (a - c) / (a - 2 * b + c);
      const binHz = audio.sampleRate / analyser.fftSize;
      return { frequency: (peak + offset) * binHz, level: Math.sqrt(energy / Math.max(samples, 1)) };
    },
    async leave() {
      if (pattern) clearInterval(pattern);
      await room.disconnect();
    },
  };
})();
</script></body></html>
"""


class LiveKitPage:
    """One Chromium page with livekit-client; every wait is bounded and says what it waited for."""

    def __init__(self, name: str, page: Any, console: list[str]) -> None:
        self.name = name
        self.page = page
        self.console = console

    async def connect(self, url: str, jwt: str) -> None:
        status = await self.page.evaluate("([u, t]) => window.lk.connect(u, t)", [url, jwt])
        if status != "connected":
            state = await self.state()
            raise AssertionError(f"{self.name} could not connect to {url}: {state['error']}")

    async def state(self) -> dict[str, Any]:
        """{status, error, events, chat} of the page."""
        return dict(await self.page.evaluate("window.lk.state"))

    async def identity(self) -> str:
        return str(await self.page.evaluate("window.lk.localIdentity()"))

    async def set_key(self, identity: str, key_base64: str, index: int) -> None:
        """IDENTITY's media key at INDEX (an encrypted page)."""
        await self.page.evaluate(
            "([i, k, n]) => window.lk.setKey(i, k, n)", [identity, key_base64, index]
        )

    async def publish(self, frequency: float | None = None, video: bool = False) -> None:
        """Publishes a tone at FREQUENCY Hz (microphone) and/or a moving pattern (camera)."""
        await self.page.evaluate("([f, v]) => window.lk.publish(f, v)", [frequency or 0, video])

    async def share_screen(self) -> None:
        """Publishes a screen share (source ScreenShare) beside the camera."""
        await self.page.evaluate("() => window.lk.shareScreen()")

    async def local_tracks(self) -> list[dict[str, Any]]:
        """What this page publishes: [{sid, kind, source, name, subscribed, muted}]."""
        return list(await self.page.evaluate("window.lk.localTracks()"))

    async def participants(self) -> list[dict[str, Any]]:
        """The remote participants: {identity, name, metadata, attributes, tracks}."""
        return list(await self.page.evaluate("window.lk.participants()"))

    async def wait_participant(
        self, match: str | Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first remote participant whose identity is MATCH (or for whom MATCH is true)."""
        test = match if callable(match) else (lambda p: p["identity"] == match)
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in await self.participants() if test(p)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no participant {match!r} within {timeout:g} s; "
                    f"there: {await self.participants()}"
                )
            await asyncio.sleep(0.25)

    async def wait_gone(self, identity: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while any(p["identity"] == identity for p in await self.participants()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {identity} still there after {timeout:g} s")
            await asyncio.sleep(0.25)

    async def listen(
        self, identity: str, seconds: float = 1.0, timeout: float = 15.0
    ) -> dict[str, float]:
        """{frequency (Hz), level (RMS, 0..1)} of IDENTITY's audio over SECONDS, waiting up to
        TIMEOUT for a non-silent track from it."""
        deadline = time.monotonic() + timeout
        last: dict[str, float] | None = None
        while True:
            heard = await self.page.evaluate(
                "([i, s]) => window.lk.listen(i, s)", [identity, seconds]
            )
            if heard and heard["level"] > 0.01:
                return {"frequency": float(heard["frequency"]), "level": float(heard["level"])}
            last = heard
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no audio from {identity} within {timeout:g} s (last: {last}); "
                    f"participants: {await self.participants()}"
                )
            await asyncio.sleep(0.25)

    async def dominant_frequency(self, identity: str, seconds: float = 1.0) -> float:
        """The strongest frequency (Hz) this page hears from IDENTITY."""
        return (await self.listen(identity, seconds))["frequency"]

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.page.evaluate("window.lk.leave()"), 5)


class LiveKitBrowser:
    """One Chromium serving any number of pages, each in its own browser context."""

    def __init__(self, browser: Any, url: str) -> None:
        self.browser = browser
        self.url = url
        self.pages: list[LiveKitPage] = []

    async def open(self, name: str, *, encrypted: bool = False) -> LiveKitPage:
        context = await self.browser.new_context()
        await context.grant_permissions(["camera", "microphone"], origin=self.url.rstrip("/"))
        opened = await context.new_page()
        console: list[str] = []
        opened.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        opened.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        await opened.goto(self.url + ("?e2ee" if encrypted else ""))
        await opened.wait_for_function("() => window.lk !== undefined", timeout=10_000)
        page = LiveKitPage(name, opened, console)
        self.pages.append(page)
        return page

    async def keep_artifacts(self, slug: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        for page in self.pages:
            prefix = f"{slug}-{page.name}".replace("/", "_").replace(" ", "_")
            with contextlib.suppress(Exception):
                await page.page.screenshot(path=str(ARTIFACTS / f"{prefix}.png"))
            lines = list(page.console)
            with contextlib.suppress(Exception):
                lines.append("window.lk.state: " + json.dumps(await page.state()))
            (ARTIFACTS / f"{prefix}.console.txt").write_text("\n".join(lines))


def _chromium_and_bundle() -> Path:
    """livekit-client's bundle (installed when missing); fails when Chromium is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run 'make system-deps'")
    return livekit_client_bundle()


async def _serve_page(bundle: Path) -> tuple[web.AppRunner, str]:
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(bundle, headers={"Content-Type": "text/javascript"})

    async def worker(_: web.Request) -> web.FileResponse:
        return web.FileResponse(
            bundle.parent / "livekit-client.e2ee.worker.mjs",
            headers={"Content-Type": "text/javascript"},
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/livekit-client.umd.js", script)
    app.router.add_get("/e2ee.worker.mjs", worker)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"  # 127.0.0.1: a secure context for WebRTC


@contextlib.asynccontextmanager
async def livekit_browser(request: pytest.FixtureRequest) -> AsyncIterator[LiveKitBrowser]:
    """Chromium (Debian's, through Playwright) with the page served on loopback; on a failure of
    REQUEST's test, its pages' screenshots and consoles go to test-artifacts/."""
    from playwright.async_api import async_playwright

    bundle = await asyncio.to_thread(_chromium_and_bundle)
    failed_before = request.session.testsfailed
    runner, url = await _serve_page(bundle)
    try:
        async with async_playwright() as pw:
            chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            browser = LiveKitBrowser(chromium, url)
            slug = f"matrix-{request.node.name}"
            try:
                yield browser
            except BaseException:  # used inside a test's body: the test is failing
                await browser.keep_artifacts(slug)
                raise
            else:  # used by a fixture: the test's report is in by its teardown
                if request.session.testsfailed > failed_before:
                    await browser.keep_artifacts(slug)
            finally:
                for page in browser.pages:
                    await page.leave()
                await chromium.close()
    finally:
        await runner.cleanup()
