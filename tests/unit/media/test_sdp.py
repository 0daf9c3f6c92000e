"""SDP parsing of a Chromium offer and the relay's answers and offers (RFC 8866, 8829, 8843, 8853)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.media import sdp
from gateway.media.endpoint import PublishRequest, SimulcastLayerInfo, check_publish_offer
from gateway.media.relay import MediaRelay
from gateway.media.sdp import SdpError

CHROMIUM_OFFER = (Path(__file__).parent / "chromium_offer.sdp").read_text()


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    media_relay = MediaRelay(host="127.0.0.1", port=0, port_range=(1, 0))
    await media_relay.start()
    yield media_relay
    await media_relay.stop()


def _requests() -> list[PublishRequest]:
    layers = [
        SimulcastLayerInfo("q", 320, 180),
        SimulcastLayerInfo("h", 640, 360),
        SimulcastLayerInfo("f", 1280, 720),
    ]
    return [
        PublishRequest("0", "t-mic", "microphone"),
        PublishRequest("1", "t-cam", "camera", layers),
    ]


def test_chromium_offer_parses_ice_dtls_codecs_and_simulcast() -> None:
    offer = sdp.parse(CHROMIUM_OFFER)
    assert offer.bundle_mids == ["0", "1"]
    audio, video = offer.media
    assert offer.ice_credentials(audio) == ("Xk3r", "Zt5mN0pQv8yW2cE4hJ6kL9sA")
    assert offer.dtls_fingerprint(audio)[0] == "sha-256"
    assert offer.dtls_setup(audio) == "actpass"
    opus = audio.codec(111)
    assert opus is not None and opus.channels == 2 and opus.parameters["useinbandfec"] == "1"
    assert audio.codec(0) is not None and audio.codec(0).name == "PCMU"  # type: ignore[union-attr]
    assert audio.ssrc_values() == [3735928559]
    assert audio.extmap_id(sdp.EXT_AUDIO_LEVEL) == 1
    assert video.rtx_payload_type(104) == 105
    assert video.codec(96) is not None and "nack pli" in video.codec(96).rtcp_fb  # type: ignore[union-attr]
    assert [r.id for r in video.rids] == ["f", "h", "q"]
    assert video.simulcast is not None and video.simulcast.rids("send") == ["f", "h", "q"]
    assert video.extmap_id(sdp.EXT_RID) == 10


def test_serialized_description_parses_back_to_the_same_content() -> None:
    offer = sdp.parse(CHROMIUM_OFFER)
    again = sdp.parse(offer.serialize())
    assert again == offer
    assert offer.serialize().endswith("\r\n")


def test_offer_without_sdp_body_is_refused() -> None:
    with pytest.raises(SdpError):
        sdp.parse("hello")


async def test_publish_answer_is_ice_lite_passive_bundled_and_receives_simulcast(
    relay: MediaRelay,
) -> None:
    answer = relay.create_endpoint("room-sdp", "alice").accept_publish_offer(
        CHROMIUM_OFFER, _requests()
    )
    parsed = sdp.parse(answer.sdp)
    assert parsed.ice_lite
    assert parsed.bundle_mids == ["0", "1"]
    audio, video = parsed.media
    for media in (audio, video):
        assert media.setup == "passive"
        assert media.direction == "recvonly"
        assert media.rtcp_mux
        assert media.candidates == [f"1 1 udp 2130706431 127.0.0.1 {relay.port} typ host"]
        assert media.end_of_candidates
        assert media.fingerprint is not None and media.fingerprint[0] == "sha-256"
    assert [(c.name, c.payload_type) for c in audio.codecs] == [("opus", 111)]
    assert audio.codecs[0].fmtp == "minptime=10;useinbandfec=1"
    assert [(c.name, c.payload_type) for c in video.codecs] == [("VP8", 96), ("rtx", 97)]
    assert video.codecs[1].fmtp == "apt=96"
    assert {e.uri for e in video.extmaps} >= {sdp.EXT_MID, sdp.EXT_RID, sdp.EXT_REPAIRED_RID}
    assert "urn:3gpp:video-orientation" not in {e.uri for e in video.extmaps}
    assert [(r.id, r.direction) for r in video.rids] == [
        ("f", "recv"),
        ("h", "recv"),
        ("q", "recv"),
    ]
    assert video.simulcast is not None and video.simulcast.serialize() == "recv f;h;q"
    assert [(t.mid, t.track_id, t.kind, t.codec) for t in answer.tracks] == [
        ("0", "t-mic", "audio", "opus"),
        ("1", "t-cam", "video", "VP8"),
    ]
    assert [layer.rid for layer in answer.tracks[1].simulcast] == ["q", "h", "f"]


async def test_publish_answer_accepts_transport_cc_and_keeps_remb(relay: MediaRelay) -> None:
    assert "transport-cc" in CHROMIUM_OFFER
    endpoint = relay.create_endpoint("room-sdp", "alice")
    answer = endpoint.accept_publish_offer(CHROMIUM_OFFER, _requests())
    for media in sdp.parse(answer.sdp).media:
        assert sdp.Extmap(3, sdp.EXT_TRANSPORT_CC) in media.extmaps
        assert "transport-cc" in media.codecs[0].rtcp_fb
    assert "goog-remb" in sdp.parse(answer.sdp).media[1].codecs[0].rtcp_fb
    # the publish transport records the transport-wide sequence numbers of extension 3
    assert endpoint._publish is not None and endpoint._publish.arrivals is not None


async def test_h264_is_chosen_with_the_preferred_profile_when_vp8_is_absent(
    relay: MediaRelay,
) -> None:
    without_vp8 = CHROMIUM_OFFER.replace("96 97 102", "102").replace("VP8/90000", "XX/90000")
    answer = relay.create_endpoint("room-sdp", "alice").accept_publish_offer(
        without_vp8, _requests()
    )
    video = sdp.parse(answer.sdp).media[1]
    assert [(c.name, c.payload_type) for c in video.codecs] == [("H264", 104), ("rtx", 105)]
    assert "profile-level-id=42e01f" in video.codecs[0].fmtp
    assert answer.tracks[1].codec == "H264"


async def test_offer_without_a_usable_codec_raises_a_clear_sdp_error(relay: MediaRelay) -> None:
    offer = CHROMIUM_OFFER.replace("opus/48000/2", "speex/16000")
    offer = offer.replace("VP8/90000", "VP9/90000").replace("H264/90000", "H265/90000")
    with pytest.raises(SdpError, match="no usable codec"):
        relay.create_endpoint("room-sdp", "alice").accept_publish_offer(offer, _requests())


@pytest.mark.parametrize("line", ["a=ice-ufrag:Xk3r", "a=fingerprint:sha-256"])
async def test_offer_missing_ice_or_fingerprint_is_refused(relay: MediaRelay, line: str) -> None:
    offer = "\n".join(row for row in CHROMIUM_OFFER.splitlines() if not row.startswith(line))
    with pytest.raises(SdpError):
        relay.create_endpoint("room-sdp", "alice").accept_publish_offer(offer, _requests())


async def test_subscribe_offer_is_actpass_sendonly_with_relay_ssrc_and_reuses_inactive_lines(
    relay: MediaRelay,
) -> None:
    relay.create_endpoint("room-sdp", "alice").accept_publish_offer(CHROMIUM_OFFER, _requests())
    bob = relay.create_endpoint("room-sdp", "bob")
    assert bob.subscribe("t-mic")
    offer = bob.create_subscribe_offer()
    assert offer is not None and offer.tracks == [("0", "t-mic")]
    parsed = sdp.parse(offer.sdp)
    (audio,) = parsed.media
    assert parsed.ice_lite and audio.setup == "actpass" and audio.direction == "sendonly"
    assert audio.msid == "alice t-mic"
    ssrc = audio.ssrc_values()[0]
    assert ssrc != 3735928559  # the relay's own SSRC, not the publisher's
    assert audio.codecs[0].name == "opus"

    answer = offer.sdp.replace("a=setup:actpass", "a=setup:active").replace(
        "a=sendonly", "a=recvonly"
    )
    answer = answer.replace(audio.ice_ufrag or "", "bobU").replace(
        audio.ice_pwd or "", "bobpassword0123456789012"
    )
    bob.accept_subscribe_answer(answer.replace("a=ice-lite\r\n", ""))
    assert bob.create_subscribe_offer() is None

    bob.unsubscribe("t-mic")
    inactive = bob.create_subscribe_offer()
    assert inactive is not None and inactive.tracks == []
    assert sdp.parse(inactive.sdp).media[0].direction == "inactive"
    bob.accept_subscribe_answer(answer.replace("a=ice-lite\r\n", ""))

    relay.create_endpoint("room-sdp", "carol").accept_publish_offer(
        CHROMIUM_OFFER,
        [PublishRequest("0", "c-mic", "microphone"), PublishRequest("1", "c-cam", "camera")],
    )
    assert bob.subscribe("c-mic")
    reused = bob.create_subscribe_offer()
    assert reused is not None and reused.tracks == [("0", "c-mic")]  # the inactive m-line again
    assert len(sdp.parse(reused.sdp).media) == 1


async def test_renegotiation_keeps_published_tracks_and_port_zero_unpublishes(
    relay: MediaRelay,
) -> None:
    alice = relay.create_endpoint("room-sdp", "alice")
    first = alice.accept_publish_offer(CHROMIUM_OFFER, _requests())
    again = alice.accept_publish_offer(CHROMIUM_OFFER, _requests())
    assert [t.track_id for t in again.tracks] == [t.track_id for t in first.tracks]
    bob = relay.create_endpoint("room-sdp", "bob")
    assert bob.subscribe("t-cam")
    stopped = CHROMIUM_OFFER.replace("m=video 9 ", "m=video 0 ")
    answer = alice.accept_publish_offer(stopped, _requests())
    assert [t.track_id for t in answer.tracks] == ["t-mic"]
    assert sdp.parse(answer.sdp).media[1].port == 0
    assert sdp.parse(answer.sdp).bundle_mids == ["0"]
    assert not bob.subscribe("t-cam")


async def test_a_bundle_only_line_with_port_zero_is_accepted_as_firefox_sends_it(
    relay: MediaRelay,
) -> None:
    bundle_only = CHROMIUM_OFFER.replace("m=video 9 ", "m=video 0 ").replace(
        "a=mid:1\n", "a=mid:1\na=bundle-only\n"
    )
    assert "a=bundle-only" in bundle_only
    answer = relay.create_endpoint("room-sdp", "firefox").accept_publish_offer(
        bundle_only, _requests()
    )
    assert [t.track_id for t in answer.tracks] == ["t-mic", "t-cam"]
    assert sdp.parse(answer.sdp).bundle_mids == ["0", "1"]


def _without_usable_video(offer: str) -> str:
    return offer.replace("VP8/90000", "VP9/90000").replace("H264/90000", "H265/90000")


async def test_one_m_section_without_a_usable_codec_fails_the_whole_offer_and_changes_nothing(
    relay: MediaRelay,
) -> None:
    bob = relay.create_endpoint("room-sdp", "bob")
    alice = relay.create_endpoint("room-sdp", "alice")
    with pytest.raises(SdpError, match="no usable codec.*video m-section '1'"):
        alice.accept_publish_offer(_without_usable_video(CHROMIUM_OFFER), _requests())
    assert not bob.subscribe("t-mic")  # the usable audio was not published either

    first = alice.accept_publish_offer(CHROMIUM_OFFER, _requests())
    with pytest.raises(SdpError):
        alice.accept_publish_offer(_without_usable_video(CHROMIUM_OFFER), _requests())
    assert bob.subscribe("t-mic") and bob.subscribe("t-cam")  # both stay published
    again = alice.accept_publish_offer(CHROMIUM_OFFER, _requests())
    assert [t.track_id for t in again.tracks] == [t.track_id for t in first.tracks]


@pytest.mark.parametrize(
    ("requests", "field"),
    [
        (
            [PublishRequest("0", "m", "microphone"), PublishRequest("3", "c", "camera")],
            "/tracks/1/mid",
        ),
        ([PublishRequest("0", "m", "camera"), *_requests()[1:]], "/tracks/0/source"),
        ([_requests()[0], PublishRequest("1", "c", "screen_audio")], "/tracks/1/source"),
        ([_requests()[0], PublishRequest("1", "c", "camera")], "/tracks/1/simulcast"),
        (
            [_requests()[0], PublishRequest("1", "c", "camera", _requests()[1].simulcast[:2])],
            "/tracks/1/simulcast",
        ),
        ([_requests()[0]], "/tracks"),
        ([*_requests(), PublishRequest("0", "m2", "microphone")], "/tracks/2/mid"),
        ([], "/tracks"),
    ],
)
def test_check_publish_offer_names_the_entry_that_disagrees_with_the_offer(
    requests: list[PublishRequest], field: str
) -> None:
    offer = sdp.parse(CHROMIUM_OFFER)
    check_publish_offer(offer, _requests())  # the matching entries pass
    with pytest.raises(SdpError) as error:
        check_publish_offer(offer, requests)
    assert error.value.field == field


def test_check_publish_offer_names_the_entry_of_an_m_section_without_a_usable_codec() -> None:
    with pytest.raises(SdpError, match="no usable codec") as error:
        check_publish_offer(sdp.parse(_without_usable_video(CHROMIUM_OFFER)), _requests())
    assert error.value.field == "/tracks/1"


def test_a_stopped_or_receive_only_m_section_needs_no_entry_and_cannot_have_one() -> None:
    stopped = sdp.parse(CHROMIUM_OFFER.replace("m=video 9 ", "m=video 0 "))
    check_publish_offer(stopped, _requests()[:1])
    with pytest.raises(SdpError) as error:
        check_publish_offer(stopped, _requests())
    assert error.value.field == "/tracks/1/mid"
    receive_only = sdp.parse(CHROMIUM_OFFER.replace("a=sendonly\n", "a=recvonly\n"))
    check_publish_offer(receive_only, [])


def _as_recvonly_offer(offer: str) -> str:
    return offer.replace("a=sendonly", "a=recvonly")


async def test_whep_answers_an_m_section_with_nothing_to_send_inactive_on_the_bundle(
    relay: MediaRelay,
) -> None:
    """An audio-only participant viewed by a player that offers audio and video: the video
    m-section is inactive on the bundled transport (ICE, DTLS, candidates, a codec of the offer),
    not a bare port-0 rejection that aiortc under max-bundle cannot connect with."""
    alice = relay.create_endpoint("room-sdp", "alice")
    alice.accept_publish_offer(CHROMIUM_OFFER.replace("m=video 9 ", "m=video 0 "), _requests()[:1])
    answer = sdp.parse(
        relay.create_endpoint("room-sdp", "viewer").accept_view_offer(
            _as_recvonly_offer(CHROMIUM_OFFER), ["t-mic"]
        )
    )
    audio, video = answer.media
    assert answer.bundle_mids == ["0", "1"]
    assert (audio.direction, video.direction) == ("sendonly", "inactive")
    assert video.port == audio.port == relay.port
    for attribute in ("candidates", "ice_ufrag", "ice_pwd", "fingerprint", "setup", "connection"):
        assert getattr(video, attribute) == getattr(audio, attribute), attribute
    assert video.mid == "1" and video.rtcp_mux
    [codec] = video.codecs
    assert (codec.payload_type, codec.name, codec.clock_rate) == (96, "VP8", 90000)
    assert video.fmt == ["96"] and "nack pli" in codec.rtcp_fb
    assert "transport-cc" not in codec.rtcp_fb


async def test_an_m_section_offered_with_port_zero_is_rejected_outside_the_bundle(
    relay: MediaRelay,
) -> None:
    alice = relay.create_endpoint("room-sdp", "alice")
    alice.accept_publish_offer(CHROMIUM_OFFER, _requests())
    stopped = _as_recvonly_offer(CHROMIUM_OFFER).replace("m=video 9 ", "m=video 0 ")
    answer = sdp.parse(
        relay.create_endpoint("room-sdp", "viewer").accept_view_offer(stopped, ["t-mic", "t-cam"])
    )
    audio, video = answer.media
    assert answer.bundle_mids == ["0"]
    assert (video.port, video.mid, video.direction) == (0, "1", "inactive")
    assert video.connection == audio.connection
    # aiortc under max-bundle takes the transport's candidates from the last m-section it reads
    assert video.candidates == audio.candidates and video.end_of_candidates
    # aiortc refuses any m-section without ICE credentials and a DTLS role
    assert (video.ice_ufrag, video.ice_pwd, video.setup) == (
        audio.ice_ufrag,
        audio.ice_pwd,
        audio.setup,
    )
    [codec] = video.codecs
    assert (codec.name, codec.payload_type) == ("VP8", 96) and video.fmt == ["96"]


async def test_a_publish_m_section_that_sends_nothing_and_has_no_usable_codec_is_inactive(
    relay: MediaRelay,
) -> None:
    """Only an m-section that sends needs a usable codec (10.4); a receive-only one carries
    nothing and is answered inactive on the bundle, with a codec of the offer."""
    offer = CHROMIUM_OFFER.replace("VP8/90000", "VP9/90000").replace("H264/90000", "H265/90000")
    start = offer.index("m=video")
    offer = offer[:start] + offer[start:].replace("a=sendonly", "a=recvonly")
    answer = relay.create_endpoint("room-sdp", "alice").accept_publish_offer(offer, _requests()[:1])
    parsed = sdp.parse(answer.sdp)
    assert [t.mid for t in answer.tracks] == ["0"]
    assert parsed.bundle_mids == ["0", "1"]
    video = parsed.media[1]
    assert (video.port, video.direction, video.codecs[0].name) == (relay.port, "inactive", "VP9")
