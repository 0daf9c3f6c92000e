"""Federation: a partner's media crosses the border once, whatever the number of listeners there.

Two partner gateways as real processes on loopback (tests/federation/harness.py: fr.test on
127.0.0.11, de.test on 127.0.0.12, TLS, linked in one room). On fr one publisher (an aiortc
client, spec/conformance/webrtc.py) sends a tone (Opus, 50 packets/s); on de N listeners (aiortc,
publishing nothing) subscribe to it. Over a window of W seconds:

- **border bytes**: UDP bytes from 127.0.0.11 to 127.0.0.12 (the relay link between the two
  gateways' media addresses), counted by an iptables rule in a chain of this bench's own; the
  link's ``packets_out`` from the admin API beside it;
- **one leg per listener**: the same N listeners joined to fr directly, the bytes fr's media port
  sends them (what a federation without a relay link, each remote listener on its own leg across
  the border, would carry);
- **CPU** (utime+stime of each gateway from /proc/PID/stat) in both set-ups: per forwarded track
  on the link = (fr + de with N listeners on de) − (fr with the same N listeners on fr) per
  second, i.e. what the second hop costs for the one track that crosses, beside forwarding it
  to the same listeners inside one gateway.

Order: the direct windows first (nobody on de: the link idle), then the link windows with
listeners added on de up to each count and kept, so the publisher's track is demanded across the
border once. R windows back to back per count.

**Added latency per hop**: the publisher on fr then sends 200 ms tone bursts once a second; one
listener on fr and one on de note when each burst starts (the first loud frame after silence, at
``time.monotonic()`` when aiortc hands it over, both after the same jitter buffer code). Added by
the hop = de's onset − fr's onset, median over the bursts; fr's onset − the publisher's (when its
first loud frame went to the encoder) is the one-gateway path beside it.

Needs root (iptables). Medians of R repetitions.

    .venv/bin/python -m bench.federation_border [--listeners 1,5,20 --seconds 5 --repetitions 3
        --bursts 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aioice.ice
import numpy as np
from aiortc import MediaStreamTrack, RTCSessionDescription
from av import AudioFrame

from bench.measure import cpu_seconds, loadavg, machine
from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import SAMPLE_RATE, ReceivedTrack, ToneTrack, WebRtcPeer
from tests.federation.harness import PartnerGateway, Partners, Person, partner_gateways, target

CHAIN = "RONDPOINT-FED-BENCH"
TONE_HZ = 440.0
BURST_PERIOD = 1.0
BURST_SECONDS = 0.2
LOUD = 2000
"""A frame whose peak passes this (int16) is part of a burst; silence decodes near zero."""


@dataclass
class Window:
    """What one measuring window read."""

    listeners: int
    where: str
    """"link": listeners on de; "direct": listeners on fr."""
    bytes_per_second: float
    link_packets_per_second: float
    cpu_fr: float
    """CPU-seconds per second."""
    cpu_de: float


def iptables(*args: str) -> str:
    done = subprocess.run(["iptables", "-w", *args], check=True, capture_output=True, text=True)
    return done.stdout


@contextlib.contextmanager
def counters(fr: PartnerGateway, de: PartnerGateway) -> Iterator[None]:
    """Rule 1 counts fr -> de UDP (the relay link), rule 2 what fr's media port sends to the
    bench's own clients on 127.0.0.1 (the direct legs)."""
    iptables("-N", CHAIN)
    try:
        iptables("-I", "OUTPUT", "-j", CHAIN)
        iptables("-A", CHAIN, "-p", "udp", "-s", fr.host, "-d", de.host)
        iptables("-A", CHAIN, "-p", "udp", "-s", fr.host, "--sport", str(fr.media_port),
                 "-d", "127.0.0.1")  # fmt: skip
        yield
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            iptables("-D", "OUTPUT", "-j", CHAIN)
        iptables("-F", CHAIN)
        iptables("-X", CHAIN)


def counted_bytes() -> tuple[int, int]:
    """(relay link bytes, direct legs bytes) so far."""
    lines = iptables("-L", CHAIN, "-v", "-x", "-n").splitlines()[2:]
    values = [int(line.split()[1]) for line in lines if line.strip()]
    return values[0], values[1]


def link_packets(fr: PartnerGateway, de: PartnerGateway, room: str) -> int:
    return int(fr.link_status(room, target(de, room)).get("packets_out", 0))


async def hearing(gateway: PartnerGateway, room: str, listeners: list[Person]) -> None:
    """Waits until every listener receives the publisher's tone."""
    publisher_id = await asyncio.to_thread(wait_publisher, gateway, room)
    deadline = time.monotonic() + 30
    while any(p.frames_from(publisher_id) < 50 for p in listeners):
        assert time.monotonic() < deadline, f"listeners on {gateway.name} hear nothing"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)


async def measure(partners: Partners, room: str, n: int, where: str, seconds: float) -> Window:
    """One window with ``n`` listeners already hearing the publisher, on de ("link") or on fr
    ("direct")."""
    fr, de = partners["fr"], partners["de"]
    assert fr.process is not None and de.process is not None

    def read() -> tuple[tuple[int, int], int, float, float, float]:
        assert fr.process is not None and de.process is not None
        return (counted_bytes(), link_packets(fr, de, room), cpu_seconds(fr.process.pid),
                cpu_seconds(de.process.pid), time.monotonic())  # fmt: skip

    start = read()
    await asyncio.sleep(seconds)
    end = read()
    elapsed = end[4] - start[4]
    crossed = end[0][0] - start[0][0] if where == "link" else end[0][1] - start[0][1]
    return Window(
        listeners=n,
        where=where,
        bytes_per_second=crossed / elapsed,
        link_packets_per_second=(end[1] - start[1]) / elapsed,
        cpu_fr=(end[2] - start[2]) / elapsed,
        cpu_de=(end[3] - start[3]) / elapsed,
    )


class BurstTrack(ToneTrack):
    """The tone in 200 ms bursts once a second, silence between; ``onsets`` keeps when each
    burst's first frame was handed to the encoder (time.monotonic())."""

    def __init__(self, frequency: float) -> None:
        super().__init__(frequency)
        self.onsets: list[float] = []

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        assert frame.pts is not None
        position = (frame.pts / SAMPLE_RATE) % BURST_PERIOD
        if position < BURST_SECONDS:
            if position < 0.01:
                self.onsets.append(time.monotonic())
            return frame
        silent = AudioFrame.from_ndarray(
            np.zeros((1, frame.samples), np.int16), format="s16", layout="mono"
        )
        silent.sample_rate, silent.pts, silent.time_base = SAMPLE_RATE, frame.pts, frame.time_base
        return silent


class OnsetPeer(WebRtcPeer):
    """A subscriber that notes when each burst starts in what it receives."""

    def __init__(self, client: OrsClient) -> None:
        super().__init__(client)
        self.onsets: list[float] = []

    async def _consume(self, track: MediaStreamTrack, received: ReceivedTrack) -> None:
        loud = False
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                received.frames += 1
                if received.kind != "audio":
                    continue
                now = time.monotonic()
                peak = int(np.abs(frame.to_ndarray()).max())  # type: ignore[union-attr]
                if peak > LOUD and not loud:
                    self.onsets.append(now)
                loud = peak > LOUD


async def publish_bursts(person: Person) -> BurstTrack:
    """``person`` publishes a BurstTrack (what WebRtcPeer.publish does with a steady tone)."""
    track = BurstTrack(TONE_HZ)
    pc = person.peer.publish_pc
    transceiver = pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await person.client.request(
        {
            "type": "offer",
            "pc": "publish",
            "sdp": pc.localDescription.sdp,
            "tracks": [{"mid": transceiver.mid, "source": "microphone"}],
        }
    )
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return track


def after(onsets: list[float], reference: list[float]) -> list[float]:
    """For each reference onset, how long after it the next onset in ``onsets`` came (within
    half a period)."""
    delays = []
    for start in reference:
        later = [t - start for t in onsets if 0 <= t - start < BURST_PERIOD / 2]
        if later:
            delays.append(min(later))
    return delays


async def hop_latency(partners: Partners, room: str, bursts: int) -> tuple[float, float, int]:
    """(one gateway: fr listener's onset − sent, hop: de listener's − fr listener's, bursts
    matched), medians in milliseconds."""
    fr, de = partners["fr"], partners["de"]
    sender = await Person.join(fr, room, "Bursts", None)
    near = await Person.join(fr, room, "Near", None, peer=OnsetPeer)
    far = await Person.join(de, room, "Far", None, peer=OnsetPeer)
    try:
        track = await publish_bursts(sender)
        await asyncio.sleep(3)  # negotiation, then a few bursts to settle
        sent_from = len(track.onsets)
        await asyncio.sleep(bursts * BURST_PERIOD)
        sent = track.onsets[sent_from:]
        assert isinstance(near.peer, OnsetPeer) and isinstance(far.peer, OnsetPeer)
        one_gateway = after(near.peer.onsets, sent)
        hop = after(far.peer.onsets, [t for t in near.peer.onsets if t >= sent[0]])
    finally:
        for person in (sender, near, far):
            await person.leave()
    if not one_gateway or not hop:
        raise RuntimeError(f"bursts not heard: fr {len(one_gateway)}, de {len(hop)} of {len(sent)}")
    return statistics.median(one_gateway) * 1000, statistics.median(hop) * 1000, len(hop)


def wait_publisher(gateway: PartnerGateway, room: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for p in gateway.participants(room):
            if p["name"] == "Publisher" and p["tracks"]:
                return str(p["id"])
        time.sleep(0.2)
    raise RuntimeError(f"{gateway.name} never listed the publisher")


async def run(
    listener_counts: list[int], seconds: float, repetitions: int, bursts: int
) -> tuple[list[Window], tuple[float, float, int] | None]:
    aioice.ice.get_host_addresses = lambda *_, **__: ["127.0.0.1"]  # loopback only
    windows: list[Window] = []
    with (
        tempfile.TemporaryDirectory(prefix="fed-bench-") as workdir,
        partner_gateways(Path(workdir), ("fr", "de")) as partners,
    ):
        fr, de = partners["fr"], partners["de"]
        room = "border"
        fr.create_room(room)
        de.create_room(room)
        partners.peer_add(fr, de)
        partners.peer_add(de, fr)
        partners.link_connected(fr, room, de, room)
        publisher = await Person.join(fr, room, "Publisher", TONE_HZ)
        listeners: list[Person] = []
        try:
            with counters(fr, de):
                # One leg per listener: each count's listeners join fr directly, then leave.
                for n in listener_counts:
                    direct = [await Person.join(fr, room, f"Direct {i}", None) for i in range(n)]
                    try:
                        await hearing(fr, room, direct)
                        for _ in range(repetitions):
                            windows.append(await measure(partners, room, n, "direct", seconds))
                            print(windows[-1], file=sys.stderr)
                    finally:
                        for person in direct:
                            await person.leave()
                # The relay link: listeners on de are added up to each count and stay (the
                # publisher's track is demanded once for the whole phase).
                for n in listener_counts:
                    while len(listeners) < n:
                        listeners.append(
                            await Person.join(de, room, f"Listener {len(listeners)}", None)
                        )
                    await hearing(de, room, listeners)
                    for _ in range(repetitions):
                        windows.append(await measure(partners, room, n, "link", seconds))
                        print(windows[-1], file=sys.stderr)
        finally:
            await publisher.leave()
            for person in listeners:
                await person.leave()
        latency = await hop_latency(partners, room, bursts) if bursts else None
    return windows, latency


def report(
    windows: list[Window], listener_counts: list[int], latency: tuple[float, float, int] | None
) -> None:
    def median(n: int, where: str, field: str) -> float:
        return statistics.median(
            getattr(w, field) for w in windows if w.listeners == n and w.where == where
        )

    print(f"machine: {machine()}; load {loadavg()}")
    print(
        "| listeners on de | border bytes/s (link) | link packets/s | one leg each: bytes/s "
        "| ratio | CPU fr+de, link (ms/s) | CPU fr, direct (ms/s) | extra CPU of the hop "
        "for its one track (ms/s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in listener_counts:
        link = median(n, "link", "bytes_per_second")
        direct = median(n, "direct", "bytes_per_second")
        cpu_link = (median(n, "link", "cpu_fr") + median(n, "link", "cpu_de")) * 1000
        cpu_direct = median(n, "direct", "cpu_fr") * 1000
        print(
            f"| {n} | {link:,.0f} | {median(n, 'link', 'link_packets_per_second'):.0f} "
            f"| {direct:,.0f} | {direct / link:.1f}× | {cpu_link:.0f} | {cpu_direct:.0f} "
            f"| {cpu_link - cpu_direct:.1f} |"
        )
    if latency is not None:
        one, hop, matched = latency
        print(
            f"burst onsets ({matched} bursts, medians): publisher -> fr listener {one:.1f} ms; "
            f"added by the fr -> de hop {hop:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listeners", default="1,5,20")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=12)
    args = parser.parse_args()
    counts = [int(n) for n in args.listeners.split(",") if n]
    windows, latency = asyncio.run(run(counts, args.seconds, args.repetitions, args.bursts))
    report(windows, counts, latency)


if __name__ == "__main__":
    main()
