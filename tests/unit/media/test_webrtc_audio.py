"""gateway/media/webrtc_audio.py: a peer's audio offer answered for a conference leg."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.media import sdp
from gateway.media.dtls import DtlsCertificate
from gateway.media.sdp import SdpError
from gateway.media.transport import UdpMux
from gateway.media.webrtc_audio import WebRtcAudioLeg

CHROMIUM_OFFER = (Path(__file__).parent / "chromium_offer.sdp").read_text()


async def leg() -> tuple[UdpMux, WebRtcAudioLeg]:
    mux = UdpMux()
    await mux.bind("127.0.0.1", 0, (1, 0))
    return mux, WebRtcAudioLeg(mux, DtlsCertificate(), "127.0.0.1")


async def test_the_audio_is_answered_with_opus_and_our_ssrc_and_the_video_declined() -> None:
    mux, audio = await leg()
    try:
        codec = audio.accept_offer(CHROMIUM_OFFER)
        assert (codec.name, codec.payload_type, codec.clock_rate) == ("opus", 111, 48000)
        answer = sdp.parse(audio.answer(1234, "rondpoint-PA1"))
        assert answer.ice_lite
        first, second = answer.media
        assert (first.kind, first.port, first.direction) == ("audio", mux.port, "recvonly")
        assert [c.name for c in first.codecs][:1] == ["opus"]
        assert first.ssrc_values() == [1234]
        assert first.setup == "passive" and first.rtcp_mux
        assert first.candidates == [f"1 1 udp 2130706431 127.0.0.1 {mux.port} typ host"]
        assert (second.kind, second.port) == ("video", 0)
        assert answer.groups == [("BUNDLE", ["0"])]
        assert (audio.audio_mid, audio.audio_index) == ("0", 0)
    finally:
        audio.close()
        mux.close()


async def test_an_offer_without_a_codec_we_take_is_refused() -> None:
    mux, audio = await leg()
    offer = (
        CHROMIUM_OFFER.replace("opus/48000/2", "speex/48000")
        .replace("G722/8000", "iLBC/8000")
        .replace("111 63 9 0 8 13", "111 63 9 13")
        .replace("a=rtpmap:0 PCMU/8000\n", "")
        .replace("a=rtpmap:8 PCMA/8000\n", "")
    )
    try:
        with pytest.raises(SdpError, match="no audio m-section"):
            audio.accept_offer(offer)
    finally:
        audio.close()
        mux.close()
