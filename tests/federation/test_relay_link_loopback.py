"""Two relays in one process (127.0.0.11 "fr", 127.0.0.12 "de") joined by a relay link: what
crosses, when, with which SSRC, and how NACK and PLI are answered hop by hop."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from gateway.media import ice, native
from gateway.media.dtls import DtlsCertificate
from gateway.media.endpoint import TrackRecord
from gateway.media.relay import MediaRelay
from gateway.media.relay_link import RelayLink
from gateway.media.router import CodecInfo, ExtensionIds, Router
from gateway.media.rtcp import RtcpGenericNack, RtcpPli
from gateway.media.sdp import Codec
from gateway.media.transport import ControllingTransport, UdpMux, WebRtcTransport
from tests.unit.media.sinks import RecordingSink

OPUS = Codec(111, "opus", 48000, 2)
VP8 = Codec(96, "VP8", 90000)
VP8_KEY = bytes.fromhex("90e0923405a010") + b"\x02\x00\x9d\x01\x2a"
PREFIX = "fr-"  # de names the tracks fr announces fr-<fr's id>


def rtp(seq: int, ssrc: int, payload: bytes, pt: int = 111, step: int = 960) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * step, ssrc) + payload


@dataclass
class Pair:
    fr: MediaRelay
    de: MediaRelay
    fr_link: RelayLink  # the initiator's side
    de_link: RelayLink

    @property
    def fr_router(self) -> Router:
        return self.fr.router("room")

    @property
    def de_router(self) -> Router:
        return self.de.router("room")

    def announce(self, track_id: str, kind: str, codec: Codec) -> None:
        """fr tells de about one of its tracks (the participant event's streams)."""
        record = TrackRecord(PREFIX + track_id, "fr-alice", kind, codec)
        self.de_link.add_remote_track(record, self.fr_link.local_streams(track_id))

    def send_demand(self) -> None:
        """de tells fr which layers it wants (the demand event)."""
        wanted = self.de_link.wanted()
        self.fr_link.set_demand({key.removeprefix(PREFIX): rids for key, rids in wanted.items()})


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    assert condition()


async def unconnected_pair() -> tuple[MediaRelay, MediaRelay, RelayLink, RelayLink]:
    """fr's and de's relays started on their addresses, and the room's link on each (no offer
    made yet)."""
    fr = MediaRelay("127.0.0.11", 0, (1, 0))
    de = MediaRelay("127.0.0.12", 0, (1, 0))
    await fr.start()
    await de.start()
    fr_link = RelayLink(fr, "room", "de.test", controlling=True)
    de_link = RelayLink(de, "room", "fr.test", controlling=False)
    return fr, de, fr_link, de_link


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    fr, de, fr_link, de_link = await unconnected_pair()
    fr_link.accept_answer(de_link.accept_offer(fr_link.create_offer()))
    pair = Pair(fr, de, fr_link, de_link)
    try:
        await wait_for(lambda: fr_link.connected and de_link.connected)
        yield pair
    finally:
        fr_link.close()
        de_link.close()
        await fr.stop()
        await de.stop()


def publish(
    pair: Pair, track_id: str, kind: str, codec: Codec, layers: dict[str, int]
) -> RecordingSink:
    """A track published on fr (its publisher a double) with these rid -> SSRC layers."""
    publisher = RecordingSink()
    heights = {"q": 180, "h": 360, "f": 720}
    pair.fr.add_foreign_track(
        "room",
        TrackRecord(track_id, "alice", kind, codec),
        CodecInfo(codec.name, codec.payload_type, codec.clock_rate),
        ExtensionIds(),
        publisher,
        layers=[(rid, heights.get(rid)) for rid in layers],
    )
    for rid, ssrc in layers.items():
        pair.fr_router.set_layer_ssrc(track_id, rid, ssrc)
    return publisher


async def send_audio(pair: Pair, first: int, count: int) -> None:
    for seq in range(first, first + count):
        pair.fr_router.on_rtp("mic", rtp(seq, 1234, b"\xfcvoice-%d" % seq))
        await asyncio.sleep(0.002)


async def test_audio_crosses_only_when_demanded_with_des_ssrc_and_the_same_payload(
    pair: Pair,
) -> None:
    publish(pair, "mic", "audio", OPUS, {"": 1234})
    pair.announce("mic", "audio", OPUS)
    pair.de_link.on_wanted_change = pair.send_demand  # as the federation link does
    await send_audio(pair, 1, 10)
    await asyncio.sleep(0.1)
    assert pair.fr_link.stats()["bytes_out"] == 0  # nobody on de listens: nothing crosses
    assert pair.de_link.stats()["bytes_in"] == 0

    bob = RecordingSink()
    pair.de_router.add_downtrack(PREFIX + "mic", "bob", bob, 4242, 111, ExtensionIds())
    await wait_for(lambda: pair.fr_router.downtrack_count("mic") == 1)  # de's relay tick
    await send_audio(pair, 11, 10)
    await wait_for(lambda: len(bob.rtp) == 10)
    assert bob.payloads() == [b"\xfcvoice-%d" % seq for seq in range(11, 21)]
    assert {struct.unpack_from("!I", p, 8)[0] for p in bob.rtp} == {4242}
    assert pair.de_link.stats()["packets_unknown_ssrc"] == 0

    pair.de_router.remove_downtrack(PREFIX + "mic", "bob")
    await wait_for(lambda: pair.fr_router.downtrack_count("mic") == 0)


async def test_the_bytes_crossing_do_not_grow_with_des_subscribers(pair: Pair) -> None:
    publish(pair, "mic", "audio", OPUS, {"": 1234})
    pair.announce("mic", "audio", OPUS)
    listeners = [RecordingSink() for _ in range(5)]
    pair.de_router.add_downtrack(PREFIX + "mic", "l0", listeners[0], 100, 111, ExtensionIds())
    pair.send_demand()

    before = pair.de_link.stats()["bytes_in"]
    await send_audio(pair, 1, 50)
    await wait_for(lambda: len(listeners[0].rtp) == 50)
    with_one = pair.de_link.stats()["bytes_in"] - before

    for index in range(1, 5):
        pair.de_router.add_downtrack(
            PREFIX + "mic", f"l{index}", listeners[index], 100 + index, 111, ExtensionIds()
        )
    pair.send_demand()
    assert pair.fr_router.downtrack_count("mic") == 1
    before = pair.de_link.stats()["bytes_in"]
    await send_audio(pair, 51, 50)
    await wait_for(lambda: all(len(listener.rtp) >= 50 for listener in listeners))
    with_five = pair.de_link.stats()["bytes_in"] - before
    assert abs(with_five - with_one) <= 200  # a sender report may fall in one window
    assert with_one >= 50 * 20


async def test_only_the_demanded_simulcast_layer_crosses(pair: Pair) -> None:
    publish(pair, "cam", "video", VP8, {"q": 10, "h": 20, "f": 30})
    pair.announce("cam", "video", VP8)
    bob = RecordingSink()
    pair.de_router.add_downtrack(PREFIX + "cam", "bob", bob, 555, 96, ExtensionIds())
    pair.de_router.set_max_height(PREFIX + "cam", "bob", 400)
    assert pair.de_link.wanted() == {PREFIX + "cam": ["h"]}
    pair.send_demand()
    before = pair.de_link.stats()["packets_in"]
    for seq in range(1, 31):
        for rid, ssrc in (("q", 10), ("h", 20), ("f", 30)):
            payload = VP8_KEY + rid.encode() * 8
            pair.fr_router.on_rtp("cam", rtp(seq, ssrc, payload, pt=96, step=3000))
        await asyncio.sleep(0.003)
    await wait_for(lambda: len(bob.rtp) >= 25)
    await asyncio.sleep(0.1)
    assert {payload[-8:] for payload in bob.payloads()} == {b"h" * 8}
    crossed = pair.de_link.stats()["packets_in"] - before
    assert 30 <= crossed <= 33  # the h layer's 30 packets (and at most an SR or three)


async def test_nacks_are_answered_at_each_hop_from_its_own_history(pair: Pair) -> None:
    publisher = publish(pair, "mic", "audio", OPUS, {"": 1234})
    pair.announce("mic", "audio", OPUS)
    bob = RecordingSink()
    pair.de_router.add_downtrack(PREFIX + "mic", "bob", bob, 4242, 111, ExtensionIds())
    pair.send_demand()
    await send_audio(pair, 1, 10)
    await wait_for(lambda: len(bob.rtp) == 10)

    # bob lost one: de has it in its history, nothing crosses for it
    lost_seq = struct.unpack_from("!H", bob.rtp[4], 2)[0]
    nack = RtcpGenericNack(1, 4242, [lost_seq]).serialize()
    pair.de_router.on_subscriber_rtcp("bob", nack)
    assert bob.rtp[-1] == bob.rtp[4]
    await asyncio.sleep(0.1)
    assert pair.fr_router.stats.retransmissions == 0
    assert pair.de_router.stats.retransmissions == 1

    # a packet lost on the link: de NACKs it to fr, fr repairs it from its history
    own_mux = pair.fr_link._own_mux
    assert own_mux is not None
    send = own_mux.sendto
    dropped: list[bytes] = []

    def lossy(data: bytes, addr: tuple[str, int]) -> None:
        if not dropped and 127 < data[0] < 192 and not 191 < data[1] < 224:
            dropped.append(data)  # the first RTP datagram from now on
            return
        send(data, addr)

    own_mux.sendto = lossy  # type: ignore[method-assign]
    await send_audio(pair, 11, 10)
    expected = {b"\xfcvoice-%d" % seq for seq in range(11, 21)}
    await wait_for(lambda: expected <= set(bob.payloads()))
    assert dropped
    assert pair.de_router.stats.nacks_sent >= 1
    assert pair.fr_router.stats.retransmissions >= 1
    assert publisher.nacks() == []  # fr had it: the publisher was not asked


async def test_a_pli_from_des_subscriber_reaches_frs_publisher(pair: Pair) -> None:
    publisher = publish(pair, "cam", "video", VP8, {"": 77})
    pair.announce("cam", "video", VP8)
    bob = RecordingSink()
    pair.de_router.add_downtrack(PREFIX + "cam", "bob", bob, 888, 96, ExtensionIds())
    pair.send_demand()
    for seq in range(1, 6):
        pair.fr_router.on_rtp("cam", rtp(seq, 77, VP8_KEY + b"frame", pt=96, step=3000))
        await asyncio.sleep(0.01)
    await wait_for(lambda: len(bob.rtp) == 5)
    await asyncio.sleep(0.6)  # past both routers' keyframe request interval
    publisher.rtcp.clear()
    pair.de_router.on_subscriber_rtcp("bob", RtcpPli(1, 888).serialize())
    await wait_for(lambda: any(pli.media_ssrc == 77 for pli in publisher.plis()))


async def test_a_new_offer_replaces_the_transport_and_media_flows_again(pair: Pair) -> None:
    publish(pair, "mic", "audio", OPUS, {"": 1234})
    pair.announce("mic", "audio", OPUS)
    bob = RecordingSink()
    pair.de_router.add_downtrack(PREFIX + "mic", "bob", bob, 4242, 111, ExtensionIds())
    pair.send_demand()
    await send_audio(pair, 1, 5)
    await wait_for(lambda: len(bob.rtp) == 5)
    before = pair.fr_link.stats()["bytes_out"]

    offer = pair.fr_link.create_offer()
    assert not pair.fr_link.connected
    pair.fr_link.accept_answer(pair.de_link.accept_offer(offer))
    await wait_for(lambda: pair.fr_link.connected and pair.de_link.connected)
    await send_audio(pair, 6, 5)
    await wait_for(lambda: len(bob.rtp) == 10)
    assert bob.payloads()[-1] == b"\xfcvoice-10"
    assert pair.fr_link.stats()["bytes_out"] > before  # the counters span both transports
    assert len(pair.de.mux._by_ufrag) == 1  # the old session is gone


@pytest.mark.skipif(not native.enabled, reason="the native fast path is not built")
async def test_de_fans_out_on_the_native_fast_path_to_real_subscribers(pair: Pair) -> None:
    """de's subscribers are real DTLS-SRTP sessions (a controlling transport as the client):
    the router installs its fast route in the relay link's ingress."""
    publish(pair, "mic", "audio", OPUS, {"": 1234})
    pair.announce("mic", "audio", OPUS)
    sessions: list[tuple[WebRtcTransport, ControllingTransport, UdpMux, list[bytes]]] = []
    for _ in range(2):
        server = WebRtcTransport(pair.de.mux, pair.de.certificate)
        client_mux = UdpMux()
        client_mux.open("127.0.0.12")
        certificate = DtlsCertificate()
        client = ControllingTransport(client_mux, certificate)
        server.set_remote(client.local_ufrag, client.local_pwd, certificate.fingerprint, "actpass")
        client.set_remote(
            server.local_ufrag, server.local_pwd, pair.de.certificate.fingerprint, "passive"
        )
        client.start_checks([("127.0.0.12", pair.de.port)])
        received: list[bytes] = []
        client.on_rtp = received.append
        sessions.append((server, client, client_mux, received))
    try:
        await wait_for(lambda: all(s.connected and c.connected for s, c, _, _ in sessions))
        for index, (server, _, _, _) in enumerate(sessions):
            pair.de_router.add_downtrack(
                PREFIX + "mic", f"sub{index}", server, 500 + index, 111, ExtensionIds()
            )
        pair.send_demand()
        await send_audio(pair, 1, 60)
        await wait_for(lambda: all(len(r) == 60 for _, _, _, r in sessions))
        for index, (server, _, _, received) in enumerate(sessions):
            assert [p[12:] for p in received] == [b"\xfcvoice-%d" % s for s in range(1, 61)]
            assert {struct.unpack_from("!I", p, 8)[0] for p in received} == {500 + index}
            assert server.egress is not None and server.egress.sent > 0  # natively sent
    finally:
        for server, client, client_mux, _ in sessions:
            client.close()
            server.close()
            client_mux.close()


async def test_consent_lost_when_the_partner_stops_answering(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ice, "CONSENT_INTERVAL", 0.05)
    monkeypatch.setattr(ice, "CONSENT_TIMEOUT", 0.4)
    pair.fr_link.accept_answer(pair.de_link.accept_offer(pair.fr_link.create_offer()))
    await wait_for(lambda: pair.fr_link.connected and pair.de_link.connected)
    await asyncio.sleep(0.5)
    assert pair.fr_link.connected  # consent checks answered: still connected
    pair.de_link.close()  # the partner's session is gone: checks go unanswered
    await wait_for(lambda: not pair.fr_link.connected)
    sent = pair.fr_link.stats()["packets_out"]
    pair.fr_link.send_rtp(rtp(1, 5, b"x"))
    assert pair.fr_link.stats()["packets_out"] == sent  # nothing sent without consent


async def test_a_partner_whose_certificate_is_not_its_fingerprint_gets_no_media() -> None:
    fr, de, fr_link, de_link = await unconnected_pair()
    try:
        answer = de_link.accept_offer(fr_link.create_offer())
        digest = de.certificate.fingerprint[1]
        forged = ":".join(["00"] * 32)
        fr_link.accept_answer(answer.replace(digest, forged))
        await asyncio.sleep(0.5)
        assert not fr_link.connected  # the DTLS client refuses de's certificate: no SRTP keys
        fr_link.send_rtp(rtp(1, 5, b"x"))
        assert fr_link.stats()["bytes_out"] == 0
    finally:
        fr_link.close()
        de_link.close()
        await fr.stop()
        await de.stop()


async def test_two_rooms_linked_between_the_same_relays_keep_their_media_apart(pair: Pair) -> None:
    """Each initiator's relay link has a socket of its own: the responder's shared port tells
    the two links apart by their source address."""
    second_fr = RelayLink(pair.fr, "hall", "de.test", controlling=True)
    second_de = RelayLink(pair.de, "hall", "fr.test", controlling=False)
    try:
        second_fr.accept_answer(second_de.accept_offer(second_fr.create_offer()))
        await wait_for(lambda: second_fr.connected and second_de.connected)
        assert pair.fr_link.connected and pair.de_link.connected
        listeners = []
        for room, fr_link, de_link in (
            ("room", pair.fr_link, pair.de_link),
            ("hall", second_fr, second_de),
        ):
            pair.fr.add_foreign_track(
                room, TrackRecord("mic", "alice", "audio", OPUS), CodecInfo("opus", 111, 48000),
                ExtensionIds(), RecordingSink(), ssrc=1234,
            )  # fmt: skip
            record = TrackRecord("fr-mic", "fr-alice", "audio", OPUS)
            de_link.add_remote_track(record, fr_link.local_streams("mic"))
            listener = RecordingSink()
            pair.de.router(room).add_downtrack("fr-mic", "bob", listener, 9, 111, ExtensionIds())
            fr_link.set_demand({"mic": [""]})
            listeners.append(listener)
        for seq in range(1, 6):
            pair.fr.router("room").on_rtp("mic", rtp(seq, 1234, b"\xfcroom"))
            pair.fr.router("hall").on_rtp("mic", rtp(seq, 1234, b"\xfchall"))
            await asyncio.sleep(0.005)
        await wait_for(lambda: all(len(listener.rtp) == 5 for listener in listeners))
        assert set(listeners[0].payloads()) == {b"\xfcroom"}
        assert set(listeners[1].payloads()) == {b"\xfchall"}
    finally:
        second_fr.close()
        second_de.close()
