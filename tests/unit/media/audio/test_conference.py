"""A room's audio conference: a phone hears the browsers and not itself; browsers hear the phone."""

from __future__ import annotations

import asyncio

import numpy as np

from gateway.media.audio.codecs import OPUS, PCMA
from gateway.media.audio.conference import RoomConference, RtpWriter, audio_level
from gateway.media.audio.g711 import alaw_decode
from gateway.media.audio.tone import generate_tone, tone_amplitude
from gateway.media.router import CodecInfo, ExtensionIds, Router
from gateway.media.rtp import RtpPacket


class Recorder:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []

    def send_rtp(self, packet: bytes) -> None:
        self.rtp.append(packet)

    def send_rtcp(self, packet: bytes) -> None:
        pass


def frames(frequency: float, rate: int, count: int) -> list[np.ndarray]:
    tone = generate_tone(frequency, 20 * count, rate, amplitude=8000)
    size = rate // 50
    return [tone[i * size : (i + 1) * size] for i in range(count)]


async def test_a_phone_hears_the_browser_not_itself_and_the_browser_hears_the_phone() -> None:
    router = Router("salle")
    router.add_receiver(
        "browser-mic", "alice", "audio", CodecInfo("opus", 111, 48000), ExtensionIds(), Recorder()
    )
    conference = RoomConference("salle", router)
    to_phone: list[bytes] = []
    leg = conference.add_leg("PA_phone", PCMA, to_phone.append, telephone_event_pt=101)
    phone_track = conference.enter_room(leg, "PA_phone")
    conference.add_track("browser-mic")
    browser = Recorder()
    router.add_downtrack(phone_track, "bob", browser, 1234, 111, ExtensionIds())

    opus_out = OPUS.encoder()
    browser_writer = RtpWriter(111, OPUS.timestamp_step)
    phone_writer = RtpWriter(8, PCMA.timestamp_step)
    browser_frames = frames(660.0, 48000, 75)
    phone_frames = frames(440.0, 8000, 75)
    for browser_frame, phone_frame in zip(browser_frames, phone_frames, strict=True):
        router.on_rtp("browser-mic", browser_writer.packet(opus_out.encode(browser_frame)))
        leg.receive(phone_writer.packet(PCMA.encoder().encode(phone_frame)))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    conference.remove_leg("PA_phone")

    heard = np.concatenate([alaw_decode(RtpPacket.parse(p).payload) for p in to_phone[-40:]])
    assert tone_amplitude(heard, 660.0, 8000) > 1500, "the phone does not hear the browser"
    assert tone_amplitude(heard, 440.0, 8000) < 200, "the phone hears itself"

    decoder = OPUS.decoder(48000)
    packets = [RtpPacket.parse(p) for p in browser.rtp[-30:]]
    browser_heard = np.concatenate([decoder.decode(p.payload) for p in packets])
    assert tone_amplitude(browser_heard, 440.0, 48000) > 1500, "the browser does not hear the phone"
    assert packets[-1].ssrc == 1234  # forwarded by the router like any track


def test_audio_level_is_minus_dbov() -> None:
    assert audio_level(np.zeros(960, np.int16)) == 127
    loud = generate_tone(1000.0, 20, 48000, amplitude=32000)
    assert audio_level(loud) <= 4
    quiet = generate_tone(1000.0, 20, 48000, amplitude=100)
    assert 50 <= audio_level(quiet) <= 55
