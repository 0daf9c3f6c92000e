"""Media encrypted by livekit-client in Chromium, as Element Call encrypts it, decrypted from RTP by
our packet cryptors (protocols/matrix/frame_crypto.py) after a real livekit-server.

The page (livekit-client 2.23 from npm, its E2EE worker) sets its own key the way Element Call's
MatrixKeyProvider does (raw bytes imported as HKDF material, ratchet window 10, key ring 256,
the key of its own LiveKit identity `{user}:{device}`), enables E2EE and publishes Chromium's fake
microphone (Opus) and camera (VP8, simulcast as by default). Our encoded LiveKit participant
(protocols/livekit/rtc.py) subscribes; its RTP goes through `OpusCryptor` / `Vp8Cryptor` with a
key ring fed by the same key as a call key event would feed it (call_keys.CallKeyRings).

Asserted: audio and video frames open (AES-GCM authenticates every one, so an opened frame is
exactly the frame Chromium encrypted, reassembled right from its packets); the VP8 frames our
cryptor puts back into packets depacketize and decode with libvpx (aiortc's Vp8Decoder); a ring
holding another key opens nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.media.rtp import payload_end, payload_offset
from protocols.livekit.rtc import LiveKitParticipant, RemoteTrack
from protocols.livekit.tokens import VideoGrant, mint_token
from protocols.matrix.call_keys import CallKey, CallKeyRings
from protocols.matrix.frame_crypto import OpusCryptor, Vp8Cryptor
from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.gateway_process import free_port
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_peers import loopback_only
from tests.matrix.test_e2ee_frames import INSTALL_SCRIPT

__all__ = ["loopback_only"]

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

ANNA_USER, ANNA_DEVICE = "@anna:hs.test", "ANNADEVICE"
ANNA = f"{ANNA_USER}:{ANNA_DEVICE}"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Element Call-like E2EE</title>
<script src="/livekit-client.umd.js"></script></head><body>
<script>
"use strict";
(() => {
  const LK = window.LivekitClient;
  // Element Call's MatrixKeyProvider: per-participant keys, raw bytes as HKDF material.
  class MatrixKeyProvider extends LK.BaseKeyProvider {
    constructor() { super({ ratchetWindowSize: 10, keyringSize: 256 }); }
    async setRawKey(bytes, identity, index) {
      const material = await LK.createKeyMaterialFromBuffer(bytes);
      this.onSetEncryptionKey(material, identity, index);
    }
  }
  const state = { status: "new", error: "", errors: [] };
  let room = null;
  window.lk = {
    state,
    async connect(url, token, identity, keyBase64, index) {
      try {
        const keyProvider = new MatrixKeyProvider();
        const worker = new Worker("/e2ee.worker.mjs", { type: "module" });
        room = new LK.Room({ e2ee: { keyProvider, worker } });
        room.on(LK.RoomEvent.EncryptionError, (e) => state.errors.push(String(e)));
        const raw = Uint8Array.from(atob(keyBase64), (c) => c.charCodeAt(0));
        await keyProvider.setRawKey(raw, identity, index);
        await room.setE2EEEnabled(true);
        await room.connect(url, token);
        await room.localParticipant.setMicrophoneEnabled(true);
        await room.localParticipant.setCameraEnabled(true);
        state.status = room.isE2EEEnabled ? "connected" : "not encrypted";
      } catch (e) {
        state.status = "failed";
        state.error = String((e && e.stack) || e);
      }
      return state.status;
    },
    async leave() { if (room) await room.disconnect(); },
  };
})();
</script></body></html>
"""


def livekit_client_dist() -> Path:
    """livekit-client's dist/ folder (installed from npm first when missing)."""
    bundle = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], check=True, capture_output=True, text=True, timeout=600
    ).stdout.strip()
    return Path(bundle.splitlines()[-1]).parent


@contextlib.asynccontextmanager
async def served_page() -> AsyncIterator[str]:
    dist = livekit_client_dist()

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    def file(name: str) -> Any:
        async def handler(_: web.Request) -> web.FileResponse:
            return web.FileResponse(dist / name, headers={"Content-Type": "text/javascript"})

        return handler

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/livekit-client.umd.js", file("livekit-client.umd.js"))
    app.router.add_get("/e2ee.worker.mjs", file("livekit-client.e2ee.worker.mjs"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


class Decrypting:
    """Our subscriber's RTP through one packet cryptor per track of Anna's."""

    def __init__(self, rings: CallKeyRings) -> None:
        self.rings = rings
        self.tracks: dict[str, tuple[RemoteTrack, OpusCryptor | Vp8Cryptor]] = {}
        self.vp8_packets: list[bytes] = []

    def on_remote_track(self, remote: RemoteTrack) -> None:
        cryptor = self.rings.cryptor(remote.participant_identity)
        if cryptor is None:
            return
        codec = remote.codec.name.lower()
        if codec == "opus":
            self.tracks[remote.sid] = (remote, OpusCryptor(cryptor, encrypt=False))
        elif codec == "vp8":
            self.tracks[remote.sid] = (remote, Vp8Cryptor(cryptor, encrypt=False))

    def on_rtp(self, sid: str, packet: bytes) -> None:
        found = self.tracks.get(sid)
        if found is None:
            return
        remote, cryptor = found
        if int.from_bytes(packet[8:12], "big") != remote.ssrc:
            return  # RFC 4588 retransmissions: the media SSRC only
        if isinstance(cryptor, OpusCryptor):
            cryptor.process(packet)
        else:
            self.vp8_packets.extend(cryptor.process(packet))

    def stats(self) -> dict[str, tuple[int, int]]:
        return {
            type(c).__name__: (c.stats.frames, c.stats.dropped) for _, c in self.tracks.values()
        }


def decode_vp8(packets: list[bytes]) -> int:
    """How many pictures libvpx decodes from the packets' frames (up to the marker bits)."""
    from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
    from aiortc.jitterbuffer import JitterFrame

    decoder = Vp8Decoder()
    pictures = 0
    frame = b""
    for packet in packets:
        frame += vp8_depayload(packet[payload_offset(packet) : payload_end(packet)])
        if packet[1] & 0x80:
            timestamp = int.from_bytes(packet[4:8], "big")
            pictures += len(decoder.decode(JitterFrame(data=frame, timestamp=timestamp)))
            frame = b""
    return pictures


async def test_element_call_media_from_chromium_decrypts_from_rtp(
    livekit: RunningLiveKit, loopback_only: None
) -> None:
    from playwright.async_api import async_playwright

    room = str(uuid.uuid4())
    key = secrets.token_bytes(16)
    rings = CallKeyRings()
    rings.add(CallKey(ANNA_USER, ANNA_DEVICE, ANNA, "!room:hs.test", 0, key))
    decrypting = Decrypting(rings)
    stranger = Decrypting(CallKeyRings())
    stranger.rings.add(CallKey(ANNA_USER, ANNA_DEVICE, ANNA, "!room:hs.test", 0, bytes(16)))

    def observer_token(identity: str) -> str:
        return mint_token(
            livekit.api_key,
            livekit.api_secret,
            identity=identity,
            grant=VideoGrant.join(room, can_publish=False),
        )

    ours = await LiveKitParticipant.connect(livekit.url, observer_token("gateway"), encoded=True)
    ours.on_remote_track = decrypting.on_remote_track
    ours.on_rtp = decrypting.on_rtp
    theirs = await LiveKitParticipant.connect(livekit.url, observer_token("other"), encoded=True)
    theirs.on_remote_track = stranger.on_remote_track
    theirs.on_rtp = stranger.on_rtp
    console: list[str] = []
    try:
        async with served_page() as url, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context()
                await context.grant_permissions(["camera", "microphone"], origin=url.rstrip("/"))
                page = await context.new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                await page.goto(url)
                token = mint_token(
                    livekit.api_key,
                    livekit.api_secret,
                    identity=ANNA,
                    name="Anna",
                    grant=VideoGrant.join(room),
                )
                status = await asyncio.wait_for(
                    page.evaluate(
                        "(a) => window.lk.connect(...a)",
                        [livekit.url, token, ANNA, base64.b64encode(key).decode(), 0],
                    ),
                    30,
                )
                assert status == "connected", await page.evaluate("window.lk.state")

                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    stats = decrypting.stats()
                    if stats.get("OpusCryptor", (0, 0))[0] >= 100 and (
                        stats.get("Vp8Cryptor", (0, 0))[0] >= 30
                    ):
                        break
                    await asyncio.sleep(0.25)
                stats = decrypting.stats()
                assert stats["OpusCryptor"][0] >= 100, stats
                assert stats["Vp8Cryptor"][0] >= 30, stats
                # nothing fails once under way (the first frames may start mid-frame)
                assert stats["OpusCryptor"][1] <= 2 and stats["Vp8Cryptor"][1] <= 3, stats
                assert decode_vp8(decrypting.vp8_packets) >= 20
                other = stranger.stats()
                assert other["OpusCryptor"][0] == 0 and other["OpusCryptor"][1] >= 50, other
                assert other["Vp8Cryptor"][0] == 0, other
                await page.evaluate("window.lk.leave()")
            except BaseException:
                ARTIFACTS.mkdir(exist_ok=True)
                (ARTIFACTS / "matrix-e2ee-media.console.txt").write_text(
                    "\n".join(console) + "\n" + json.dumps(decrypting.stats())
                )
                raise
            finally:
                await browser.close()
    finally:
        await ours.close()
        await theirs.close()
