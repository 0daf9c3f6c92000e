"""ORS participants with lean media for the benchmarks: a publisher and a subscriber over the real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

from bench.srtp_client import LeanPeer, rtp_frames
from spec.conformance.orsclient import Message, OrsClient


@dataclass
class Publisher:
    index: int
    client: OrsClient
    peer: LeanPeer
    ssrc: int
    track_id: str
    packets: list[bytes] = field(default_factory=list)  # SRTP, protected in advance
    sent: int = 0

    def send_next(self) -> None:
        if self.sent < len(self.packets):
            self.peer.send(self.packets[self.sent])
            self.sent += 1

    async def close(self) -> None:
        await leave(self.client)
        self.peer.close()


@dataclass
class Subscriber:
    name: str
    client: OrsClient
    peer: LeanPeer
    tracks: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    _answerer: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._answerer is not None:
            self._answerer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._answerer
        await leave(self.client)
        self.peer.close()


async def leave(client: OrsClient) -> None:
    with contextlib.suppress(Exception):
        await client.send({"type": "leave"})
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 5)


async def join_publisher(
    base_url: str, room: str, token: str, index: int, frames: int, audio_level: int = 30
) -> Publisher:
    """Join, publish one Opus track, connect ICE/DTLS and protect `frames` packets in advance."""
    client = await OrsClient.connect(base_url, room)
    peer = LeanPeer()
    try:
        await client.join(token, name=f"pub{index}")
        await peer.open()
        reply = await client.request(
            {
                "type": "offer",
                "pc": "publish",
                "sdp": peer.publish_offer(["0"]),
                "tracks": [{"mid": "0", "source": "microphone"}],
            }
        )
        peer.apply_remote(reply["sdp"])
        await peer.connect()
        ssrc = int.from_bytes(os.urandom(4), "big") | 1
        plain = rtp_frames(index, frames, ssrc, mid="0", audio_level=audio_level)
        track_id = str(reply["tracks"][0]["id"])
        return Publisher(index, client, peer, ssrc, track_id, peer.protect(plain))
    except BaseException:
        peer.close()
        await leave(client)
        raise


async def join_subscriber(
    base_url: str, room: str, token: str, name: str, expected_tracks: int, timeout: float = 15
) -> Subscriber:
    """Join, answer subscribe offers until `expected_tracks` are active, connect ICE/DTLS.

    `timings` gets perf_counter() marks: connect, joined, offer, answered, ice, dtls.
    """
    timings = {"start": time.perf_counter()}
    client = await OrsClient.connect(base_url, room)
    timings["connected"] = time.perf_counter()
    peer = LeanPeer()
    try:
        await peer.open()
        await client.join(token, name=name)
        timings["joined"] = time.perf_counter()
        tracks: list[str] = []
        async with asyncio.timeout(timeout):
            while len(tracks) < expected_tracks:
                offer = await client.next_event("offer", timeout=timeout)
                timings.setdefault("offer", time.perf_counter())
                tracks = [t["track_id"] for t in offer["tracks"]]
                peer.apply_remote(offer["sdp"])
                answer = peer.subscribe_answer(offer["sdp"])
                await client.request({"type": "answer", "pc": "subscribe", "sdp": answer})
                timings.setdefault("answered", time.perf_counter())
        await peer.connect()
        assert peer.ice_done_at is not None and peer.dtls_done_at is not None
        timings["ice"] = peer.ice_done_at
        timings["dtls"] = peer.dtls_done_at
        subscriber = Subscriber(name, client, peer, tracks, timings)
        subscriber._answerer = asyncio.create_task(_answer_later_offers(client, peer))
        return subscriber
    except BaseException:
        peer.close()
        await leave(client)
        raise


async def _answer_later_offers(client: OrsClient, peer: LeanPeer) -> None:
    """Renegotiations after the first (a publisher that joins later): answer with the same session."""
    for _ in range(1000):
        offer: Message = await client.next_event("offer", timeout=3600)
        answer = peer.subscribe_answer(offer["sdp"])
        await client.request({"type": "answer", "pc": "subscribe", "sdp": answer})
