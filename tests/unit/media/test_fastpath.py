"""The relay end to end on loopback, on both packet paths: the native fast path
(gateway/media/_fastpath.c) and the pure-Python one. Each must forward, account and remember
packets the same way (sequence continuity, NACK to the publisher on loss, retransmission history,
reception statistics, speaker detection, metrics)."""

from __future__ import annotations

import asyncio
import os

from bench.srtp_client import LeanPeer, parse_frame_payload, rtp_frames
from gateway.media.relay import MediaRelay
from gateway.media.rtcp import RtcpGenericNack
from gateway.media.rtp import RtpPacket
from tests.unit.media.relay_peers import audio_publisher, subscribed_peer


async def _subscriber(relay: MediaRelay, room: str, name: str, track_id: str) -> LeanPeer:
    return await subscribed_peer(relay.create_endpoint(room, name), track_id)


async def _wait_for(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


async def test_both_paths_forward_account_and_remember_alike(packet_path: str) -> None:
    relay = MediaRelay("127.0.0.1", 0, (0, -1))
    speakers: list[list[tuple[str, float]]] = []
    relay.on_active_speakers = lambda _room, levels: speakers.append(levels)
    await relay.start()
    peers: list[LeanPeer] = []
    try:
        publisher, track_id = await audio_publisher(relay, "room", "alice")
        peers.append(publisher)
        subscribers = [await _subscriber(relay, "room", f"sub{i}", track_id) for i in range(2)]
        peers += subscribers
        room = relay._rooms["room"]
        publish_transport = room.endpoints["alice"]._publish
        assert publish_transport is not None
        if packet_path == "native":
            assert publish_transport.ingress is not None
        else:
            assert publish_transport.ingress is None

        ssrc = int.from_bytes(os.urandom(4), "big") | 1
        count, lost = 100, 40
        protected = publisher.protect(rtp_frames(0, count + 3, ssrc, mid="0", audio_level=20))
        order = [i for i in range(count) if i != lost]
        order.insert(order.index(lost + 5) + 1, lost)  # late: arrives 5 packets after its turn
        for i in order:
            publisher.send(protected[i])
            await asyncio.sleep(0.005)
        await _wait_for(lambda: all(len(s.samples) >= count for s in subscribers))

        router = room.router
        receiver = router._receivers[track_id]
        for subscriber in subscribers:
            packets = subscriber.decrypt_samples()
            assert len(packets) == count
            frames = [parse_frame_payload(p.payload) for p in packets]
            assert sorted(f[1] for f in frames if f is not None) == list(range(count))
            assert len({p.ssrc for p in packets}) == 1
            # outgoing sequence numbers: one continuous run, in the publisher's order
            by_frame = {f[1]: p for p, f in zip(packets, frames, strict=True) if f is not None}
            seqs = [by_frame[i].sequence_number for i in range(count)]
            assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
            # audio level kept (id 1 on both sides), MID stripped
            assert all(p.extensions.get(1) == bytes((0x80 | 20,)) for p in packets)
            assert all(4 not in p.extensions for p in packets)
            # the retransmission history holds exactly what was sent
            downtrack = next(d for d in receiver.downtracks.values() if d.ssrc == packets[0].ssrc)
            for packet in packets[-10:]:
                stored = downtrack.history.get(packet.sequence_number)
                assert stored is not None
                assert RtpPacket.parse(stored).payload == packet.payload

        stats = relay.stats()
        assert stats.packets_forwarded == 2 * count
        assert router.stats.nacks_sent >= 1  # the late packet was asked for
        layer = receiver.layers[0]
        assert layer.stream is not None
        assert layer.stream.received == count
        assert not layer.stream.missing
        for downtrack in receiver.downtracks.values():
            assert downtrack.forwarder.packets_sent == count
            size = len(rtp_frames(0, 1, 1, mid="0")[0])
            assert downtrack.forwarder.octets_sent == count * (size - 12)
        assert speakers and speakers[-1][0][0] == "alice"
        for name in ("sub0", "sub1"):
            egress = room.endpoints[name]._subscribe.egress  # type: ignore[union-attr]
            if packet_path == "native":  # most packets took the fast path
                assert egress is not None and egress.sent > count // 2
            else:
                assert egress is None

        # A NACK from a subscriber is answered from the history, on either path.
        downtrack = next(iter(receiver.downtracks.values()))
        before = router.stats.retransmissions
        nack = RtcpGenericNack(1, downtrack.ssrc, [downtrack.forwarder.last_seq])
        router.on_subscriber_rtcp(downtrack.subscriber_id, nack.serialize())
        assert router.stats.retransmissions == before + 1
        await _wait_for(lambda: sum(len(s.samples) for s in subscribers) > 2 * count)

        # Mute stops forwarding at once, on either path.
        relay.set_track_muted("room", track_id, True)
        extra = protected[count:]
        received = [len(s.samples) for s in subscribers]
        for datagram in extra:
            publisher.send(datagram)
        await asyncio.sleep(0.1)
        assert [len(s.samples) for s in subscribers] == received
        assert all(layer.route is None for layer in receiver.layers)
    finally:
        for peer in peers:
            peer.close()
        await relay.stop()
