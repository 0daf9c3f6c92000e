"""The Visio bridge with livekit-client, LiveKit's JavaScript SDK from npm, in headless Chromium: a
second LiveKit client independent of the Python SDK of tests/interop/test_visio_bridge.py, and the
one Visio's own web app is built on.

livekit-client's UMD bundle (global `LivekitClient`, pinned and installed from the npm registry
into .cache/ by tests/livekit_client_npm.sh) is served on loopback with a small page that joins a
real livekit-server with a Visio-shaped token as Inès Garnier, publishes Chromium's fake microphone
and camera, and exposes to the test, through `window.lk`, the remote participants, the lk.chat
text streams it received, a way to send one, and the inbound-rtp stats of each remote audio track.

The room here is linked to the Visio room; Bruno Petit is in it with the ORS client
(spec/conformance/webrtc.py, a tone). Asserted: livekit-client lists Bruno with `rondpoint.origin`
= ors and receives his audio with a level; our room lists Inès from Visio with her audio and
video, which Bruno's peer receives; chat goes both ways.

Everything runs on the test's event loop: Playwright's async API, the ORS client, the page server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from aiohttp import web

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import WebRtcPeer
from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.gateway_process import ROOT, RunningGateway, free_port, running_gateway
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_sdk import visio_token
from tests.processes import installed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.interop,
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

T = TypeVar("T")

INSTALL_SCRIPT = ROOT / "tests" / "livekit_client_npm.sh"
PREFIX = "rondpoint-"
BRUNO = "Bruno Petit"
INES = "Inès Garnier"
INES_IDENTITY = "ines-oidc-sub"
BRUNO_HZ = 523.0

PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>livekit-client</title>
<script src="/livekit-client.umd.js"></script></head>
<body><div id="media"></div>
<script>
"use strict";
(() => {
  const LK = window.LivekitClient;
  const state = { status: "new", error: "", version: LK.version, chat: [], events: [] };
  const room = new LK.Room();
  room.registerTextStreamHandler("lk.chat", async (reader, from) => {
    const text = await reader.readAll();
    state.chat.push({ identity: from.identity, text, topic: reader.info.topic });
  });
  room.on(LK.RoomEvent.TrackSubscribed, (track, publication, participant) => {
    state.events.push(`subscribed ${participant.identity} ${track.kind}`);
    // Chromium decodes (and measures) remote audio only for a track that is played.
    if (track.kind === "audio") document.getElementById("media").appendChild(track.attach());
  });
  room.on(LK.RoomEvent.ParticipantConnected, (p) => state.events.push(`joined ${p.identity}`));
  room.on(LK.RoomEvent.ParticipantDisconnected, (p) => state.events.push(`left ${p.identity}`));
  room.on(LK.RoomEvent.Disconnected, (reason) => {
    state.status = "disconnected";
    state.events.push(`disconnected ${reason}`);
  });

  const tracks = (p) => [...p.trackPublications.values()].map((t) => ({
    sid: t.trackSid, kind: t.kind, source: t.source,
    subscribed: t.isSubscribed, muted: t.isMuted,
  }));

  window.lk = {
    state,
    async connect(url, token) {
      state.status = "connecting";
      try {
        await room.connect(url, token);
        await room.localParticipant.setMicrophoneEnabled(true);
        await room.localParticipant.setCameraEnabled(true);
        state.status = "connected";
      } catch (e) {
        state.status = "failed";
        state.error = String(e && e.stack || e);
      }
      return state.status;
    },
    participants() {
      return [...room.remoteParticipants.values()].map((p) => ({
        identity: p.identity, name: p.name, attributes: { ...p.attributes }, tracks: tracks(p),
      }));
    },
    published() {
      return tracks(room.localParticipant);
    },
    async sendChat(text) {
      const info = await room.localParticipant.sendText(text, { topic: "lk.chat" });
      return info.id;
    },
    /* identity -> [{sid, bytesReceived, packetsReceived, audioLevel, totalAudioEnergy, ...}] */
    async audioStats() {
      const out = {};
      for (const p of room.remoteParticipants.values()) {
        out[p.identity] = [];
        for (const pub of p.audioTrackPublications.values()) {
          if (!pub.track) continue;
          const report = await pub.track.getRTCStatsReport();
          if (!report) continue;
          report.forEach((s) => {
            if (s.type === "inbound-rtp" && s.kind === "audio") {
              out[p.identity].push({
                sid: pub.trackSid,
                bytesReceived: s.bytesReceived || 0,
                packetsReceived: s.packetsReceived || 0,
                audioLevel: s.audioLevel || 0,
                totalAudioEnergy: s.totalAudioEnergy || 0,
                totalSamplesReceived: s.totalSamplesReceived || 0,
              });
            }
          });
        }
      }
      return out;
    },
    async leave() {
      await room.disconnect();
    },
  };
})();
</script></body></html>
"""


async def poll(check: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Awaits CHECK every 0.25 s until it returns something truthy; fails naming WHAT and the last
    value it returned."""
    deadline = time.monotonic() + timeout
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {last!r}"
            )
        await asyncio.sleep(0.25)


def livekit_client_bundle() -> Path:
    """livekit-client's UMD bundle, installed from npm first when missing (fails loudly)."""
    path = installed(INSTALL_SCRIPT, timeout=300)
    if not path.is_file():
        pytest.fail(f"tests/livekit_client_npm.sh printed {path}, which is not a file")
    return path


@pytest.fixture(scope="module")
def bundle() -> Path:
    return livekit_client_bundle()


@pytest.fixture(scope="module")
def chromium_binary() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run 'make system-deps'")
    return CHROMIUM


@pytest.fixture(scope="module")
def visio_gateway(
    tmp_path_factory: pytest.TempPathFactory, livekit: RunningLiveKit
) -> Iterator[RunningGateway]:
    tmp = Path(tmp_path_factory.mktemp("visio-lkjs-gateway"))
    extra = (
        f'[visio]\nurl = "{livekit.url}"\napi_key = "{livekit.api_key}"\n'
        f'api_secret = "{livekit.api_secret}"\nidentity_prefix = "{PREFIX}"\n'
        "reconnect_max_seconds = 2\n"
    )
    with running_gateway(tmp, extra_config=extra, log_format="text") as gateway:
        try:
            yield gateway
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(gateway.log_path, ARTIFACTS / "visio-livekit-client-gateway.log")
            shutil.copyfile(livekit.log_path, ARTIFACTS / "visio-livekit-client-livekit.log")


@pytest.fixture
async def page_url(bundle: Path) -> AsyncIterator[str]:
    """The page and livekit-client's bundle, served on 127.0.0.1 (a secure context for
    getUserMedia)."""

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(bundle, headers={"Content-Type": "text/javascript"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/livekit-client.umd.js", script)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.fixture
async def page(
    chromium_binary: str, page_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """A fresh Chromium (Playwright's async API, Debian's binary) on the page, fake camera and
    microphone allowed; on a failure its screenshot and console go to test-artifacts/."""
    from playwright.async_api import async_playwright

    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_binary, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(locale="fr-FR")
            await context.grant_permissions(["camera", "microphone"], origin=page_url.rstrip("/"))
            opened = await context.new_page()
            opened.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            opened.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            await opened.goto(page_url)
            await opened.wait_for_function("() => window.lk !== undefined", timeout=10_000)
            try:
                yield opened
            finally:
                report = getattr(request.node, "rep_call", None)
                if report is not None and report.failed:
                    ARTIFACTS.mkdir(exist_ok=True)
                    slug = request.node.name
                    with contextlib.suppress(Exception):
                        await opened.screenshot(path=str(ARTIFACTS / f"{slug}.png"))
                    with contextlib.suppress(Exception):
                        state = await opened.evaluate("window.lk.state")
                        console.append("window.lk.state: " + json.dumps(state, ensure_ascii=False))
                    (ARTIFACTS / f"{slug}.console.txt").write_text("\n".join(console))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(opened.evaluate("window.lk.leave()"), 5)
        finally:
            await browser.close()


def link_state(gateway: RunningGateway, room: str) -> str:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}/links")
    assert status == 200, body
    items = body["links"] if isinstance(body, dict) else body
    return str(items[0]["status"]["state"]) if items else ""


def participants(gateway: RunningGateway, room: str) -> list[dict[str, Any]]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return list(body["participants"])


async def accept_offers_until(
    host: OrsClient, peer: WebRtcPeer, done: Callable[[], bool], what: str, timeout: float
) -> None:
    """Answers the server's subscribe offers (each supersedes the last) until DONE."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        with contextlib.suppress(TimeoutError):
            await peer.accept_offer(await host.next_event("offer", timeout=0.5))


async def test_livekit_client_in_chromium_and_an_ors_participant_are_one_meeting(
    visio_gateway: RunningGateway, livekit: RunningLiveKit, page: Any
) -> None:
    gateway = visio_gateway
    room, visio_room = f"mairie-{secrets.token_hex(3)}", str(uuid.uuid4())
    gateway.create_room(room)
    status, body = gateway.admin(
        "POST", f"/api/v1/rooms/{room}/links", {"target": f"visio:{visio_room}"}
    )
    assert status == 201, body

    async def linked() -> bool:
        return await asyncio.to_thread(link_state, gateway, room) == "connected"

    await poll(linked, 15, "the Visio link to connect")

    host = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(host)
    try:
        joined = await host.join(gateway.token(room, "bruno", BRUNO, role="host"))
        assert joined["type"] == "joined", joined
        await peer.publish(frequency=BRUNO_HZ)

        # Inès joins the Visio room with livekit-client, fake microphone and camera on.
        token = visio_token(livekit, visio_room, INES_IDENTITY, INES)
        outcome = await asyncio.wait_for(
            page.evaluate("([url, token]) => window.lk.connect(url, token)", [livekit.url, token]),
            15,
        )
        assert outcome == "connected", await page.evaluate("window.lk.state")
        published = await page.evaluate("window.lk.published()")
        assert sorted(t["kind"] for t in published) == ["audio", "video"], published

        # livekit-client's side: Bruno as a participant of his own, origin ors, his audio.
        async def bruno_there() -> dict[str, Any] | None:
            found = [
                p for p in await page.evaluate("window.lk.participants()") if p["name"] == BRUNO
            ]
            subscribed = [t for t in (found[0]["tracks"] if found else []) if t["subscribed"]]
            return found[0] if found and any(t["kind"] == "audio" for t in subscribed) else None

        bruno = await poll(bruno_there, 15, f"livekit-client to subscribe to {BRUNO}'s audio")
        assert bruno["identity"].startswith(PREFIX), bruno
        assert bruno["attributes"].get("rondpoint.origin") == "ors", bruno
        audio = next(t for t in bruno["tracks"] if t["kind"] == "audio")
        assert audio["muted"] is False, bruno
        names = [p["name"] for p in await page.evaluate("window.lk.participants()")]
        assert names == [BRUNO], names  # the bridge hides itself, nobody is mirrored back

        async def bruno_audio() -> dict[str, Any] | None:
            stats = (await page.evaluate("window.lk.audioStats()")).get(bruno["identity"]) or []
            return stats[0] if stats and stats[0]["packetsReceived"] > 0 else None

        before = await poll(bruno_audio, 10, f"RTP of {BRUNO}'s audio in livekit-client")
        level = 0.0
        after = before
        deadline = time.monotonic() + 20  # until it grew and was heard, on a slow machine too
        while time.monotonic() < deadline:
            after = await bruno_audio() or after
            level = max(level, float(after["audioLevel"]))
            if level > 0 and after["bytesReceived"] > before["bytesReceived"]:
                break
            await asyncio.sleep(0.2)
        assert after["packetsReceived"] > before["packetsReceived"], (before, after)
        assert after["bytesReceived"] > before["bytesReceived"], (before, after)
        assert level > 0 and after["totalAudioEnergy"] > 0, after

        # Our side: Inès from Visio with her audio and video, received by Bruno's peer.
        async def ines_listed() -> dict[str, Any] | None:
            listed = await asyncio.to_thread(participants, gateway, room)
            ines = next((p for p in listed if p["name"] == INES), None)
            kinds = sorted(t["kind"] for t in ines["tracks"]) if ines else []
            return ines if kinds == ["audio", "video"] else None

        ines = await poll(ines_listed, 15, f"{INES} listed here with an audio and a video track")
        assert ines["origin"] == "visio", ines
        assert ines["origin_address"] == INES_IDENTITY, ines
        listed = sorted(p["name"] for p in participants(gateway, room))
        assert listed == [BRUNO, INES], listed
        tracks = {t["kind"]: t["id"] for t in ines["tracks"]}

        def frames(kind: str) -> int:
            received = peer.received.get(tracks[kind])
            return received.frames if received else 0

        await accept_offers_until(
            host,
            peer,
            lambda: frames("audio") > 50 and frames("video") > 5,
            f"Bruno's peer to receive {INES}'s audio and video frames",
            15,
        )
        seen = frames("audio"), frames("video")

        async def more_frames() -> bool:
            return frames("audio") > seen[0] and frames("video") > seen[1]

        await poll(
            more_frames,
            5,
            f"more of {INES}'s audio and video frames",
        )
        # Chromium's fake microphone beeps at full scale twice a second: the last 2 s hold beeps.
        heard = np.concatenate(peer.received[tracks["audio"]].samples)
        assert int(np.abs(heard).max()) > 10000, f"Bruno hears no beep from {INES}"

        # Chat both ways: livekit-client's lk.chat text stream, our chat message.
        await page.evaluate("text => window.lk.sendChat(text)", "Bonjour de livekit-client")
        chat = (await host.next_event("chat", timeout=10))["message"]
        assert chat["text"] == "Bonjour de livekit-client", chat
        assert chat["from_name"] == INES, chat
        await host.request({"type": "chat", "text": "Réponse"})

        async def reply() -> list[dict[str, Any]]:
            got = await page.evaluate("window.lk.state.chat")
            return [c for c in got if c["text"] == "Réponse"]

        received = await poll(reply, 10, "the ORS chat in livekit-client's lk.chat handler")
        assert received[0]["identity"] == bruno["identity"], received
        assert received[0]["topic"] == "lk.chat", received
    finally:
        await peer.close()
        await host.close()
