"""The relay link's pieces: its SDP shape and refusals, the controlling ICE agent (alone, and
against the ICE-lite transport), SSRC demux, demand and wanted layers, bounds and close."""

from __future__ import annotations

import asyncio
import struct

import pytest

from gateway.media import ice, stun
from gateway.media.dtls import DtlsCertificate
from gateway.media.endpoint import TrackRecord
from gateway.media.relay import MediaRelay
from gateway.media.relay_link import (
    MAX_REMOTE_TRACKS,
    RelayLink,
    RemoteLayer,
    read_link_sdp,
)
from gateway.media.router import CodecInfo, ExtensionIds
from gateway.media.sdp import Codec, SdpError
from gateway.media.transport import ControllingTransport, UdpMux, WebRtcTransport
from tests.unit.media.sinks import RecordingSink

OPUS = Codec(111, "opus", 48000, 2)
VP8 = Codec(96, "VP8", 90000)


def rtp(seq: int, ssrc: int, pt: int = 111, payload: bytes = b"\xfcopus") -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 960, ssrc) + payload


@pytest.fixture
async def relay() -> MediaRelay:
    relay = MediaRelay("127.0.0.1", 0, (1, 0))
    await relay.start()
    yield relay
    await relay.stop()


@pytest.fixture
async def offer_answer(relay: MediaRelay) -> tuple[str, str]:
    offerer = RelayLink(relay, "room", "de.test", controlling=True)
    answerer = RelayLink(relay, "room2", "fr.test", controlling=False)
    offer = offerer.create_offer()
    answer = answerer.accept_offer(offer)
    offerer.close()
    answerer.close()
    return offer, answer


# --- SDP ---------------------------------------------------------------------------------


async def test_offer_and_answer_have_the_link_shape(offer_answer: tuple[str, str]) -> None:
    offer, answer = offer_answer
    for text in offer_answer:
        assert "a=group:BUNDLE a v\r\n" in text
        assert "a=mid:a\r\n" in text and "a=mid:v\r\n" in text
        assert "a=rtpmap:111 opus/48000/2" in text
        assert "a=rtpmap:96 VP8/90000" in text
        assert "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f" in text
        assert "a=rtcp-fb:96 nack pli" in text and "a=rtcp-fb:102 ccm fir" in text
        assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level" in text
        assert "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid" in text
        assert "a=rtcp-mux" in text and "a=end-of-candidates" in text
        assert "typ host" in text and "a=fingerprint:sha-256 " in text
    assert "a=setup:actpass" in offer and "a=ice-lite" not in offer
    assert "a=setup:passive" in answer and "a=ice-lite" in answer
    remote = read_link_sdp(offer, offer=True)
    assert remote.candidates and remote.candidates[0][0] == "127.0.0.1"
    assert read_link_sdp(answer, offer=False).fingerprint[0] == "sha-256"


REFUSALS = [
    ("a=group:BUNDLE a v", "a=group:BUNDLE a", "bundles"),
    ("a=mid:v", "a=mid:video", "two m-sections"),
    ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000", "opus/48000"),
    ("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP9/90000", "VP8/90000"),
    ("packetization-mode=1;", "packetization-mode=0;", "H264"),
    ("a=setup:actpass", "a=setup:active", "a=setup:actpass"),
    ("a=rtcp-mux\r\n", "", "rtcp-mux"),
    ("a=sendrecv", "a=recvonly", "sendrecv"),
    ("a=end-of-candidates\r\n", "", "end-of-candidates"),
    ("typ host", "typ relay", "host candidate"),
    ("a=fingerprint:sha-256", "a=fingerprint:sha-1", "sha-256"),
    ("a=extmap:3 ", "a=extmap:4 ", "extension ids"),
    ("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n", "full ICE agent"),
    ("UDP/TLS/RTP/SAVPF", "RTP/AVP", "UDP/TLS/RTP/SAVPF"),
]


@pytest.mark.parametrize(("old", "new", "message"), REFUSALS)
async def test_an_offer_of_another_shape_is_refused_with_a_sentence(
    offer_answer: tuple[str, str], old: str, new: str, message: str
) -> None:
    offer = offer_answer[0]
    assert old in offer
    with pytest.raises(SdpError, match=message):
        read_link_sdp(offer.replace(old, new), offer=True)


async def test_an_answer_must_be_ice_lite_and_passive(offer_answer: tuple[str, str]) -> None:
    answer = offer_answer[1]
    with pytest.raises(SdpError, match="ICE-lite"):
        read_link_sdp(answer.replace("a=ice-lite\r\n", ""), offer=False)
    with pytest.raises(SdpError, match="passive"):
        read_link_sdp(answer.replace("a=setup:passive", "a=setup:actpass"), offer=False)
    with pytest.raises(SdpError, match="16 KiB"):
        read_link_sdp(answer + "a=x:" + "y" * 20000 + "\r\n", offer=False)
    with pytest.raises(SdpError):
        read_link_sdp("hello", offer=False)


async def test_candidates_outside_unicast_ipv4_are_not_used(offer_answer: tuple[str, str]) -> None:
    offer = offer_answer[0]
    line = next(x for x in offer.split("\r\n") if x.startswith("a=candidate:"))
    for address in ("0.0.0.0", "224.0.0.1", "::1", "example.org"):
        bad = line.replace("127.0.0.1", address)
        with pytest.raises(SdpError, match="host candidate"):
            read_link_sdp(offer.replace(line, bad), offer=True)


async def test_roles_are_kept(relay: MediaRelay, offer_answer: tuple[str, str]) -> None:
    controlled = RelayLink(relay, "room", "de.test", controlling=False)
    controlling = RelayLink(relay, "room", "be.test", controlling=True)
    with pytest.raises(ValueError, match="controlling"):
        controlled.create_offer()
    with pytest.raises(ValueError, match="controlling"):
        controlling.accept_offer(offer_answer[0])
    with pytest.raises(SdpError, match="no relay link offer"):
        controlling.accept_answer(offer_answer[1])
    controlled.close()
    controlling.close()
    with pytest.raises(ValueError, match="closed"):
        controlling.create_offer()


# --- the controlling agent ----------------------------------------------------------------


def _lite_response(agent: ice.IceControllingAgent, request: bytes, addr: tuple[str, int]) -> bytes:
    lite = ice.IceLiteAgent(agent.remote_ufrag, agent.remote_pwd)
    lite.set_remote(agent.local_ufrag, agent.local_pwd)
    result = lite.handle_request(request, stun.parse(request), addr)
    assert result is not None and result.nominated
    return result.response


def test_agent_nominates_aggressively_then_checks_consent_until_it_is_lost() -> None:
    agent = ice.IceControllingAgent()
    agent.set_remote("liteUfrag", "litepassword0123456789abcd")
    peer = ("127.0.0.2", 4000)
    agent.start([("127.0.0.3", 5000), peer], now=0.0)
    checks = agent.due(0.0)
    assert [address for _, _, address in checks] == [("127.0.0.3", 5000), peer]
    assert agent.due(0.01) == []  # 50 ms between rounds
    message = stun.parse(checks[1][1])
    assert message.has(stun.ATTR_USE_CANDIDATE)
    assert message.get(stun.ATTR_ICE_CONTROLLING) == agent.tie_breaker.to_bytes(8, "big")
    assert message.username == f"liteUfrag:{agent.local_ufrag}"
    response = _lite_response(agent, checks[1][1], ("127.0.0.1", 9))
    # from another address than the check went to, or with a wrong key: not a valid response
    assert not agent.handle_response(response, stun.parse(response), ("127.0.0.9", 1), 0.02)
    forged = stun.binding_success(checks[1][0], ("127.0.0.1", 9), "wrongpassword0123456789xx")
    assert not agent.handle_response(forged, stun.parse(forged), peer, 0.02)
    assert agent.handle_response(response, stun.parse(response), peer, 0.02)
    assert agent.selected == peer
    assert agent.due(1.0) == []
    consent = agent.due(5.1)
    assert [address for _, _, address in consent] == [peer]
    assert agent.due(31.0) == [] and agent.consent_lost


def test_agent_fails_when_no_check_succeeds_in_ten_seconds() -> None:
    agent = ice.IceControllingAgent()
    agent.set_remote("liteUfrag", "litepassword0123456789abcd")
    agent.start([("127.0.0.2", 4000)], now=0.0)
    sent = 0
    now = 0.0
    while now < 11 and not agent.failed:
        sent += len(agent.due(now))
        now += 0.05
    assert agent.failed and 150 < sent <= 201
    assert agent.next_delay(now) is None
    assert len(agent.take_expired()) >= sent - ice.MAX_PENDING  # the mux forgets old ones


async def test_controlling_transport_connects_to_the_ice_lite_transport() -> None:
    certificate = DtlsCertificate()
    lite_mux, own_mux = UdpMux(), UdpMux()
    lite_port = await lite_mux.bind("127.0.0.1", 0, (1, 0))
    own_mux.open("127.0.0.1")
    own_certificate = DtlsCertificate()
    lite = WebRtcTransport(lite_mux, certificate)
    controlling = ControllingTransport(own_mux, own_certificate)
    try:
        lite.set_remote(
            controlling.local_ufrag, controlling.local_pwd, own_certificate.fingerprint, "actpass"
        )
        controlling.set_remote(lite.local_ufrag, lite.local_pwd, certificate.fingerprint, "passive")
        controlling.start_checks([("127.0.0.1", lite_port)])
        for _ in range(100):
            await asyncio.sleep(0.02)
            if controlling.connected and lite.connected:
                break
        assert controlling.connected and lite.connected
        assert lite.consent_checks >= 1
        got: list[bytes] = []
        lite.on_rtp = got.append
        controlling.send_rtp(rtp(1, 42))
        await asyncio.sleep(0.05)
        assert got == [rtp(1, 42)]
    finally:
        controlling.close()
        lite.close()
        own_mux.close()
        lite_mux.close()


async def test_controlling_transport_with_a_wrong_password_never_connects() -> None:
    lite_mux, own_mux = UdpMux(), UdpMux()
    lite_port = await lite_mux.bind("127.0.0.1", 0, (1, 0))
    own_mux.open("127.0.0.1")
    lite = WebRtcTransport(lite_mux, DtlsCertificate())
    controlling = ControllingTransport(own_mux, DtlsCertificate())
    try:
        lite.set_remote(
            controlling.local_ufrag, controlling.local_pwd, ("sha-256", "AA"), "actpass"
        )
        controlling.set_remote(lite.local_ufrag, "x" * 24, ("sha-256", "AA"), "passive")
        controlling.start_checks([("127.0.0.1", lite_port)])
        await asyncio.sleep(0.3)
        assert not controlling.connected and controlling.agent.selected is None
        assert lite.consent_checks == 0
    finally:
        controlling.close()
        lite.close()
        own_mux.close()
        lite_mux.close()
    assert own_mux._by_transaction == {}


# --- tracks, demand, wanted ---------------------------------------------------------------


async def test_inbound_packets_are_demuxed_by_the_announced_ssrcs(relay: MediaRelay) -> None:
    link = RelayLink(relay, "room", "de.test", controlling=False)
    link.add_remote_track(TrackRecord("de-a", "de-p", "audio", OPUS), [RemoteLayer("", 1111)])
    link.add_remote_track(TrackRecord("de-b", "de-q", "audio", OPUS), [RemoteLayer("", 2222)])
    router = relay.router("room")
    first, second = RecordingSink(), RecordingSink()
    router.add_downtrack("de-a", "bob", first, 7, 111, ExtensionIds())
    router.add_downtrack("de-b", "bob", second, 8, 111, ExtensionIds())
    link._on_rtp(rtp(1, 1111, payload=b"\xfcA"))
    link._on_rtp(rtp(1, 2222, payload=b"\xfcB"))
    link._on_rtp(rtp(1, 3333))
    assert [p[12:] for p in first.rtp] == [b"\xfcA"]
    assert [p[12:] for p in second.rtp] == [b"\xfcB"]
    assert link.stats()["packets_unknown_ssrc"] == 1
    assert link.wanted() == {"de-a": [""], "de-b": [""]}
    link.close()
    assert not router.has_receiver("de-a") and not router.has_receiver("de-b")


async def test_remote_tracks_that_cannot_be_carried_are_refused(relay: MediaRelay) -> None:
    link = RelayLink(relay, "room", "de.test", controlling=False)
    relay.add_foreign_track(
        "room", TrackRecord("mine", "p", "audio", OPUS), CodecInfo("opus", 111, 48000),
        ExtensionIds(), RecordingSink(),
    )  # fmt: skip
    cases = [
        (TrackRecord("t", "p", "audio", Codec(0, "PCMU", 8000)), [RemoteLayer("", 1)], "codec"),
        (TrackRecord("t", "p", "video", OPUS), [RemoteLayer("", 1)], "codec"),
        (TrackRecord("t", "p", "video", VP8), [], "layers"),
        (TrackRecord("t", "p", "video", VP8), [RemoteLayer("q", 1), RemoteLayer("h", 1)], "SSRC"),
        (TrackRecord("t", "p", "video", VP8), [RemoteLayer("", 1), RemoteLayer("h", 2)], "rid"),
        (TrackRecord("t", "p", "video", VP8), [RemoteLayer("a b", 1)], "rid"),
        (TrackRecord("t", "p", "audio", OPUS), [RemoteLayer("", 0)], "SSRC"),
        (TrackRecord("t", "p", "audio", OPUS), [RemoteLayer("", 2**32)], "SSRC"),
        (TrackRecord("mine", "p", "audio", OPUS), [RemoteLayer("", 5)], "already"),
    ]
    for record, layers, message in cases:
        with pytest.raises(ValueError, match=message):
            link.add_remote_track(record, layers)
    link.add_remote_track(TrackRecord("t1", "p", "audio", OPUS), [RemoteLayer("", 9)])
    with pytest.raises(ValueError, match="another track"):
        link.add_remote_track(TrackRecord("t2", "p", "audio", OPUS), [RemoteLayer("", 9)])
    link.close()


async def test_at_most_256_remote_tracks(relay: MediaRelay) -> None:
    link = RelayLink(relay, "room", "de.test", controlling=False)
    for index in range(MAX_REMOTE_TRACKS):
        link.add_remote_track(
            TrackRecord(f"t{index}", "p", "audio", OPUS), [RemoteLayer("", index + 1)]
        )
    with pytest.raises(ValueError, match="256"):
        link.add_remote_track(TrackRecord("one-more", "p", "audio", OPUS), [RemoteLayer("", 999)])
    # the same track announced again is no new track
    link.add_remote_track(TrackRecord("t0", "p", "audio", OPUS), [RemoteLayer("", 1)])
    link.close()
    assert not relay.router("room").has_receiver("t0")


def _simulcast_track(relay: MediaRelay, publisher: RecordingSink) -> None:
    relay.add_foreign_track(
        "room", TrackRecord("cam", "alice", "video", VP8), CodecInfo("VP8", 96, 90000),
        ExtensionIds(), publisher, layers=[("q", 180), ("h", 360), ("f", 720)],
    )  # fmt: skip
    for rid, ssrc in (("q", 10), ("h", 20), ("f", 30)):
        relay.router("room").set_layer_ssrc("cam", rid, ssrc)


async def test_demand_adds_and_removes_exactly_the_demanded_downtracks(relay: MediaRelay) -> None:
    _simulcast_track(relay, RecordingSink())
    link = RelayLink(relay, "room", "de.test", controlling=True)
    streams = link.local_streams("cam")
    assert [(s.rid, s.height) for s in streams] == [("q", 180), ("h", 360), ("f", 720)]
    assert link.local_streams("cam") == streams  # stable
    assert len({s.ssrc for s in streams}) == 3
    assert link.local_streams("nothing") == []
    router = relay.router("room")
    link.set_demand({"cam": ["h"], "later": [""]})
    assert router.subscriber_heights("cam") == {"fed:de.test:h": 360}
    link.set_demand({"cam": ["q", "f", "x"]})
    assert router.subscriber_heights("cam") == {"fed:de.test:q": 180, "fed:de.test:f": 720}
    link.set_demand({})
    assert router.downtrack_count("cam") == 0
    link.set_demand({"cam": ["f"]})
    link.close()
    assert router.downtrack_count("cam") == 0


async def test_wanted_follows_local_subscribers_heights(relay: MediaRelay) -> None:
    changes: list[dict[str, list[str]]] = []
    link = RelayLink(relay, "room", "de.test", controlling=False)
    link.on_wanted_change = lambda: changes.append(link.wanted())
    layers = [RemoteLayer("f", 3, 720), RemoteLayer("q", 1, 180), RemoteLayer("h", 2, 360)]
    link.add_remote_track(TrackRecord("cam", "alice", "video", VP8), layers)
    assert link.wanted() == {}
    router = relay.router("room")
    router.add_downtrack("cam", "bob", RecordingSink(), 5, 96, ExtensionIds())
    router.set_max_height("cam", "bob", 400)
    assert link.wanted() == {"cam": ["h"]}
    router.add_downtrack("cam", "carol", RecordingSink(), 6, 96, ExtensionIds())
    router.set_max_height("cam", "carol", 100)  # nothing fits: the lowest
    router.add_downtrack(
        "cam", "dave", RecordingSink(), 7, 96, ExtensionIds()
    )  # no limit: the highest
    assert link.wanted() == {"cam": ["q", "h", "f"]}
    link._tick()
    link._tick()
    assert changes == [{"cam": ["q", "h", "f"]}]
    link.close()


async def test_close_gives_back_the_transport_and_its_registration(relay: MediaRelay) -> None:
    link = RelayLink(relay, "room", "de.test", controlling=False)
    offerer = RelayLink(relay, "room2", "fr.test", controlling=True)
    link.accept_offer(offerer.create_offer())
    assert len(relay.mux._by_ufrag) == 1
    link.close()
    offerer.close()
    assert relay.mux._by_ufrag == {}
    assert not link.connected


async def test_the_rooms_phone_conference_wants_a_remote_audio_track(relay: MediaRelay) -> None:
    link = RelayLink(relay, "room", "de.test", controlling=False)
    link.add_remote_track(TrackRecord("de-a", "de-p", "audio", OPUS), [RemoteLayer("", 1111)])
    conference = relay.conference("room")
    conference.add_track("de-a")  # as the gateway does for every audio track once phones are in
    assert link.wanted() == {"de-a": [""]}
    conference.remove_track("de-a")
    assert link.wanted() == {}
    link.close()


async def test_a_track_announced_again_with_new_ssrcs_keeps_its_subscribers(
    relay: MediaRelay,
) -> None:
    link = RelayLink(relay, "room", "de.test", controlling=False)
    record = TrackRecord("de-a", "de-p", "audio", OPUS)
    link.add_remote_track(record, [RemoteLayer("", 1111)])
    link.add_remote_track(TrackRecord("de-b", "de-q", "audio", OPUS), [RemoteLayer("", 2222)])
    router = relay.router("room")
    bob = RecordingSink()
    router.add_downtrack("de-a", "bob", bob, 7, 111, ExtensionIds())
    with pytest.raises(ValueError, match="another track"):
        link.add_remote_track(record, [RemoteLayer("", 2222)])
    link.add_remote_track(record, [RemoteLayer("", 5555)])  # the partner restarted
    assert router.downtrack_count("de-a") == 1
    link._on_rtp(rtp(1, 1111))
    link._on_rtp(rtp(1, 5555, payload=b"\xfcnew"))
    assert [p[12:] for p in bob.rtp] == [b"\xfcnew"]
    assert link.stats()["packets_unknown_ssrc"] == 1
    link.close()
