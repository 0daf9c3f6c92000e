"""Media encrypted by livekit-client in Chromium, as Element Call encrypts it, decrypted from RTP by
our packet cryptors (protocols/matrix/frame_crypto.py) after a real livekit-server.

The page (livekit-client 2.23 from npm, its E2EE worker) sets its own key the way Element Call's
MatrixKeyProvider does (raw bytes imported as HKDF material, ratchet window 10, key ring 256,
the key of its own LiveKit identity `{user}:{device}`), enables E2EE and publishes Chromium's fake
microphone (Opus) and camera (VP8, simulcast as by default). Our encoded LiveKit participant
(protocols/livekit/rtc.py) subscribes; its RTP goes through the packet cryptors
(`packet_cryptor`) with a key ring fed by the same key as a call key event would feed it
(call_keys.CallKeyRings).

Asserted: audio and video frames open (AES-GCM authenticates every one, so an opened frame is
exactly the frame Chromium encrypted, reassembled right from its packets); the VP8 frames our
cryptor puts back into packets depacketize and decode with libvpx (aiortc's Vp8Decoder); a ring
holding another key opens nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from livekit.protocol import models

from gateway.media.rtp import RtpPacket, payload_end, payload_offset
from protocols.livekit.rtc import LiveKitParticipant, LocalTrack, RemoteTrack
from protocols.livekit.tokens import VideoGrant, mint_token
from protocols.matrix.call_keys import CallKey, CallKeyRings
from protocols.matrix.frame_crypto import (
    FrameCryptor,
    KeyRing,
    PacketCryptor,
    Vp8Cryptor,
    packet_cryptor,
)
from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.gateway_process import free_port
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_peers import loopback_only
from tests.matrix.test_e2ee_frames import INSTALL_SCRIPT
from tests.processes import installed

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
  const keyProvider = new MatrixKeyProvider();
  const raw = (keyBase64) => Uint8Array.from(atob(keyBase64), (c) => c.charCodeAt(0));
  let room = null;
  window.lk = {
    state,
    async setKey(identity, keyBase64, index) {
      await keyProvider.setRawKey(raw(keyBase64), identity, index);
    },
    /* kind -> inbound-rtp counters of IDENTITY's tracks (audio is played: Chromium decodes
       remote audio only then) */
    async inbound(identity) {
      const p = room && [...room.remoteParticipants.values()].find((p) => p.identity === identity);
      if (!p) return null;
      const out = { encrypted: p.isEncrypted };
      for (const pub of p.trackPublications.values()) {
        if (!pub.track) continue;
        if (pub.kind === "audio" && pub.track.attachedElements.length === 0) {
          document.body.appendChild(pub.track.attach());
        }
        const report = await pub.track.getRTCStatsReport();
        if (!report) continue;
        report.forEach((s) => {
          if (s.type !== "inbound-rtp") return;
          out[s.kind] = {
            packetsReceived: s.packetsReceived || 0,
            framesDecoded: s.framesDecoded || 0,
            keyFramesDecoded: s.keyFramesDecoded || 0,
            totalAudioEnergy: s.totalAudioEnergy || 0,
          };
        });
      }
      return out;
    },
    async connect(url, token, identity, keyBase64, index) {
      try {
        const worker = new Worker("/e2ee.worker.mjs", { type: "module" });
        room = new LK.Room({ e2ee: { keyProvider, worker } });
        room.on(LK.RoomEvent.EncryptionError, (e) => state.errors.push(String(e)));
        await keyProvider.setRawKey(raw(keyBase64), identity, index);
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
    return installed(INSTALL_SCRIPT, timeout=600).parent


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
        self.tracks: dict[str, tuple[RemoteTrack, PacketCryptor]] = {}
        self.vp8_packets: list[bytes] = []

    def on_remote_track(self, remote: RemoteTrack) -> None:
        cryptor = self.rings.cryptor(remote.participant_identity)
        if cryptor is None:
            return
        opener = packet_cryptor(remote.codec.name, cryptor, encrypt=False)
        if opener is not None:
            self.tracks[remote.sid] = (remote, opener)

    def on_rtp(self, sid: str, packet: bytes) -> None:
        found = self.tracks.get(sid)
        if found is None:
            return
        remote, cryptor = found
        if int.from_bytes(packet[8:12], "big") != remote.ssrc:
            return  # RFC 4588 retransmissions: the media SSRC only
        opened = cryptor.process(packet)
        if isinstance(cryptor, Vp8Cryptor):
            self.vp8_packets.extend(opened)

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


def _token(livekit: RunningLiveKit, room: str, identity: str, *, publish: bool) -> str:
    grant = VideoGrant.join(room, can_publish=publish)
    return mint_token(livekit.api_key, livekit.api_secret, identity=identity, grant=grant)


@contextlib.asynccontextmanager
async def anna_in_chromium(
    livekit: RunningLiveKit,
    room: str,
    key: bytes,
    artifact: str,
    others: tuple[tuple[str, bytes], ...] = (),
) -> AsyncIterator[Any]:
    """Anna's Element Call-like page in Chromium, in ROOM with E2EE and her KEY (and the keys of
    OTHERS, (identity, key) at index 0, as call key events would have brought them before),
    publishing her microphone and camera; on a failure, its console goes to
    test-artifacts/ARTIFACT."""
    from playwright.async_api import async_playwright

    console: list[str] = []
    async with served_page() as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            await context.grant_permissions(["camera", "microphone"], origin=url.rstrip("/"))
            page = await context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            await page.goto(url)
            await page.wait_for_function("() => window.lk !== undefined", timeout=10_000)
            for identity, other_key in others:
                await page.evaluate(
                    "(a) => window.lk.setKey(...a)",
                    [identity, base64.b64encode(other_key).decode(), 0],
                )
            token = _token(livekit, room, ANNA, publish=True)
            status = await asyncio.wait_for(
                page.evaluate(
                    "(a) => window.lk.connect(...a)",
                    [livekit.url, token, ANNA, base64.b64encode(key).decode(), 0],
                ),
                30,
            )
            assert status == "connected", await page.evaluate("window.lk.state")
            yield page
            await page.evaluate("window.lk.leave()")
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / artifact).write_text("\n".join(console))
            raise
        finally:
            await browser.close()


async def wait_until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not await check():
        await asyncio.sleep(0.25)


async def test_element_call_media_from_chromium_decrypts_from_rtp(
    livekit: RunningLiveKit, loopback_only: None
) -> None:
    room = str(uuid.uuid4())
    key = secrets.token_bytes(16)
    rings = CallKeyRings()
    rings.add(CallKey(ANNA_USER, ANNA_DEVICE, ANNA, "!room:hs.test", 0, key))
    decrypting = Decrypting(rings)
    stranger = Decrypting(CallKeyRings())
    stranger.rings.add(CallKey(ANNA_USER, ANNA_DEVICE, ANNA, "!room:hs.test", 0, bytes(16)))

    ours = await LiveKitParticipant.connect(
        livekit.url, _token(livekit, room, "gateway", publish=False), encoded=True
    )
    ours.on_remote_track = decrypting.on_remote_track
    ours.on_rtp = decrypting.on_rtp
    joined = ours.signal.session.joined
    assert joined is not None and joined.sif_trailer  # the room's, for frames it injects
    rings.set_sif_trailer(joined.sif_trailer)
    theirs = await LiveKitParticipant.connect(
        livekit.url, _token(livekit, room, "other", publish=False), encoded=True
    )
    theirs.on_remote_track = stranger.on_remote_track
    theirs.on_rtp = stranger.on_rtp
    try:
        async with anna_in_chromium(livekit, room, key, "matrix-e2ee-media-in.console.txt"):

            async def enough() -> bool:
                stats = decrypting.stats()
                return stats.get("OpusCryptor", (0, 0))[0] >= 100 and (
                    stats.get("Vp8Cryptor", (0, 0))[0] >= 30
                )

            await wait_until(enough)
            stats = decrypting.stats()
            assert stats["OpusCryptor"][0] >= 100, stats
            assert stats["Vp8Cryptor"][0] >= 30, stats
            # nothing fails once under way (the first frames may start mid-frame)
            assert stats["OpusCryptor"][1] <= 2 and stats["Vp8Cryptor"][1] <= 3, stats
            assert decode_vp8(decrypting.vp8_packets) >= 20
            other = stranger.stats()
            assert other["OpusCryptor"][0] == 0 and other["OpusCryptor"][1] >= 50, other
            assert other["Vp8Cryptor"][0] == 0, other
    finally:
        await ours.close()
        await theirs.close()


GHOST = "@rondpoint_p__abc:hs.test:RONDPOINT"


def _pli(media_ssrc: int) -> bytes:
    """An RTCP picture loss indication (RFC 4585 §6.3.1) for MEDIA_SSRC."""
    return bytes([0x81, 206, 0, 2]) + (1).to_bytes(4, "big") + media_ssrc.to_bytes(4, "big")


def _asks_keyframe(compound: bytes) -> bool:
    """True when an RTCP compound packet holds a PLI or a FIR (RFC 4585, RFC 5104)."""
    i = 0
    while i + 4 <= len(compound):
        fmt, kind = compound[i] & 0x1F, compound[i + 1]
        if kind == 206 and fmt in (1, 4):
            return True
        i += 4 * (int.from_bytes(compound[i + 2 : i + 4], "big") + 1)
    return False


async def test_relayed_media_encrypted_with_a_ghost_key_plays_in_chromium(
    livekit: RunningLiveKit, loopback_only: None
) -> None:
    """The bridge's media path both ways: Anna's frames decrypted from RTP with her key,
    encrypted again with the ghost's key, published as the ghost (tracks announced as GCM);
    Anna's page, given the ghost's key as a call key event would give it, decodes them."""
    room = str(uuid.uuid4())
    anna_key, ghost_key = secrets.token_bytes(16), secrets.token_bytes(16)
    rings = CallKeyRings()
    rings.add(CallKey(ANNA_USER, ANNA_DEVICE, ANNA, "!room:hs.test", 0, anna_key))
    ghost_cryptor = FrameCryptor(KeyRing())
    ghost_cryptor.keys.set_key(ghost_key, 0)

    observer = await LiveKitParticipant.connect(
        livekit.url, _token(livekit, room, "gateway", publish=False), encoded=True
    )
    ghost = await LiveKitParticipant.connect(
        livekit.url, _token(livekit, room, GHOST, publish=True), encoded=True
    )
    decrypting = Decrypting(rings)
    relays: dict[str, tuple[LocalTrack, PacketCryptor]] = {}
    sources: dict[str, RemoteTrack] = {}
    published: dict[str, int] = {"opus": 0, "vp8": 0}

    async def publish(remote: RemoteTrack) -> None:
        decrypting.on_remote_track(remote)
        codec = remote.codec.name.lower()
        local = await ghost.publish_encoded(
            remote.kind,
            remote.codec.name,
            name=codec,
            source=(
                models.TrackSource.MICROPHONE if codec == "opus" else models.TrackSource.CAMERA
            ),
            width=640 if codec == "vp8" else 0,
            height=480 if codec == "vp8" else 0,
            encryption=models.Encryption.GCM,
        )
        sealer = packet_cryptor(remote.codec.name, ghost_cryptor, encrypt=True)
        assert sealer is not None
        relays[remote.sid] = (local, sealer)
        sources[codec] = remote

    def relay(sid: str, packet: bytes) -> None:
        found = decrypting.tracks.get(sid)
        target = relays.get(sid)
        if found is None or target is None:
            return
        remote, opener = found
        if int.from_bytes(packet[8:12], "big") != remote.ssrc:
            return
        local, sealer = target
        for one in opener.process(packet):
            parsed = RtpPacket.parse(one)
            ours = RtpPacket(
                payload_type=local.payload_type,
                sequence_number=parsed.sequence_number,
                timestamp=parsed.timestamp,
                ssrc=local.ssrc,
                marker=parsed.marker,
                payload=parsed.payload,
            ).serialize()
            for out in sealer.process(ours):
                local.sink.send_rtp(out)
                published[remote.codec.name.lower()] += 1

    def keyframe_wanted(compound: bytes) -> None:
        video = sources.get("vp8")
        if video is not None and video.ssrc is not None and _asks_keyframe(compound):
            observer.subscriber_tap.send_rtcp(_pli(video.ssrc))

    tasks: list[asyncio.Task[None]] = []
    observer.on_remote_track = lambda remote: tasks.append(asyncio.create_task(publish(remote)))
    observer.on_rtp = relay
    ghost.on_publisher_rtcp = keyframe_wanted
    try:
        async with anna_in_chromium(
            livekit, room, anna_key, "matrix-e2ee-media-out.console.txt", ((GHOST, ghost_key),)
        ) as page:

            async def played() -> bool:
                seen = await page.evaluate("(g) => window.lk.inbound(g)", GHOST)
                return bool(
                    seen
                    and seen.get("video", {}).get("framesDecoded", 0) >= 20
                    and seen.get("audio", {}).get("totalAudioEnergy", 0) > 0
                )

            await wait_until(played, 40)
            seen = await page.evaluate("(g) => window.lk.inbound(g)", GHOST)
            state = await page.evaluate("window.lk.state")
            assert seen and seen["encrypted"] is True, (seen, published)
            assert seen["video"]["framesDecoded"] >= 20, (seen, published, decrypting.stats())
            assert seen["video"]["keyFramesDecoded"] >= 1, seen
            assert seen["audio"]["totalAudioEnergy"] > 0, (seen, published)
            assert not [e for e in state["errors"] if GHOST in e], state["errors"]
    finally:
        for task in tasks:
            task.cancel()
        await observer.close()
        await ghost.close()
