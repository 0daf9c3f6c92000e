"""Micro-benchmark of the packet plane for simulcast: SRTP in, Router, SRTP out, per CPU-second,
on the native fast path (gateway/media/_fastpath.c Ingress/Route/Egress) and on the pure-Python
path (pylibsrtp + Router.on_rtp + a transport-like sink), in one process.

The publisher's trace (tests/unit/media/simulcast_trace.py) is 3-layer VP8 simulcast (30 fps;
1, 2 and 3 packets per frame) plus Opus at 50 packets/s, protected in advance. Subscribers take the
audio and the video at mixed layers (a third each on the low, middle and high layer). What each
path sends goes to a loopback socket nobody reads (the kernel drops what overflows), so the figure
is the relay's own work: unprotect, route, rewrite, protect, send. The clock is the trace's (the
native path's is set per packet), so both paths make the same decisions.

Run: .venv/bin/python -m bench.simulcast_plane [--subscribers 9 --seconds 20]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import time
from typing import Any

import pylibsrtp

from gateway.media import native
from gateway.media.router import CodecInfo, ExtensionIds, Router
from tests.unit.media.simulcast_trace import (
    ABS_SEND_TIME_ID,
    AUDIO_LEVEL_ID,
    HEIGHTS,
    MID_ID,
    OPUS_PT,
    REPAIRED_RID_ID,
    RID_ID,
    RIDS,
    RTX_PT,
    VP8_PT,
    simulcast_trace,
)

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
PUBLISHER_EXT = ExtensionIds(
    audio_level=AUDIO_LEVEL_ID,
    mid=MID_ID,
    rid=RID_ID,
    repaired_rid=REPAIRED_RID_ID,
    abs_send_time=ABS_SEND_TIME_ID,
)
SUBSCRIBER_EXT = ExtensionIds(audio_level=1, abs_send_time=2)


def _session(key: bytes, inbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=(
            pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        ),
        srtp_profile=PROFILE,
    )
    policy.window_size = 1024
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


class _Publisher:
    def __init__(self, ingress: Any) -> None:
        self.ingress = ingress

    def send_rtp(self, packet: bytes) -> None:
        pass

    def send_rtcp(self, packet: bytes) -> None:
        pass


class _Sink:
    """A subscribe transport's send side: protect, then send on the shared socket."""

    def __init__(self, protect: Any, sock: socket.socket, address: tuple[str, int], egress: Any):
        self.protect = protect
        self.sock = sock
        self.address = address
        self.egress = egress
        self.sent = 0

    def send_rtp(self, packet: bytes) -> None:
        self.sock.sendto(self.protect(packet), self.address)
        self.sent += 1

    def send_rtcp(self, packet: bytes) -> None:
        pass


def run(path: str, subscribers: int, seconds: float) -> tuple[float, int, int]:
    """(CPU seconds, packets in, packets out) of one path over the whole trace."""
    fast = native.MODULE if path == "native" else None
    if path == "native" and fast is None:
        raise SystemExit("the native extension is not built (pip install -e . with libsrtp2-dev)")
    native.enabled = fast is not None
    random.seed(1)
    trace = simulcast_trace(duration=seconds, loss=0.0, reorder=0.0)
    key = os.urandom(30)
    sender = _session(key, inbound=False)
    datagrams = [(item.time, item.track, sender.protect(item.packet)) for item in trace]
    ingress = fast.Ingress(fast.Session(key, PROFILE, True)) if fast else None
    receive = None if fast else _session(key, inbound=True)
    sink_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_socket.bind(("127.0.0.1", 0))
    address = sink_socket.getsockname()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(False)
    router = Router("bench", None, rtcp_ssrc=1)
    publisher = _Publisher(ingress)
    router.add_receiver(
        "cam",
        "alice",
        "video",
        CodecInfo("VP8", VP8_PT, 90000, RTX_PT),
        PUBLISHER_EXT,
        publisher,
        layers=list(zip(RIDS, HEIGHTS, strict=True)),
    )
    router.add_receiver(
        "mic", "alice", "audio", CodecInfo("opus", OPUS_PT, 48000), PUBLISHER_EXT, publisher
    )
    sinks = []
    for i in range(subscribers):
        tx_key = os.urandom(30)
        if fast is not None:
            tx = fast.Session(tx_key, PROFILE, False, 1024, True)
            egress = fast.Egress(tx)
            egress.set_peer(out.fileno(), address[0], address[1])
            sink = _Sink(tx.protect, out, address, egress)
        else:
            sink = _Sink(_session(tx_key, inbound=False).protect, out, address, None)
        sinks.append(sink)
        name = f"sub{i}"
        router.add_downtrack("cam", name, sink, 7000 + i, VP8_PT, SUBSCRIBER_EXT, 0.0)
        router.add_downtrack("mic", name, sink, 5000 + i, OPUS_PT, SUBSCRIBER_EXT, 0.0)
        router.set_max_height("cam", name, HEIGHTS[i % len(HEIGHTS)], 0.0)
    on_rtp = router.on_rtp
    start = time.process_time()
    try:
        if fast is not None and ingress is not None:
            handle = ingress.handle
            set_clock = fast.set_clock
            for now, track, datagram in datagrams:
                set_clock(now)
                packet = handle(datagram)
                if packet is not None:
                    on_rtp(track, packet, now)
        else:
            assert receive is not None
            unprotect = receive.unprotect
            for now, track, datagram in datagrams:
                on_rtp(track, unprotect(datagram), now)
        elapsed = time.process_time() - start
    finally:
        if fast is not None:
            fast.set_clock(-1.0)
        router.close()
        out.close()
        sink_socket.close()
    router.sync_routes()
    forwarded = router.stats.packets_forwarded
    return elapsed, len(datagrams), forwarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.subscribers <= 60 or not 1 <= args.seconds <= 120:
        parser.error("--subscribers 1-60, --seconds 1-120")
    paths = ["native", "python"] if native.available() else ["python"]
    best: dict[str, float] = {}
    for _ in range(args.repetitions):  # alternate, keep each path's best (least disturbed) run
        for path in paths:
            cpu, packets_in, packets_out = run(path, args.subscribers, args.seconds)
            rate = packets_out / cpu
            best[path] = max(best.get(path, 0.0), rate)
            print(
                f"{path:7} {packets_in} in, {packets_out} out in {cpu:.2f} CPU-s:"
                f" {packets_in / cpu:,.0f} in/CPU-s, {rate:,.0f} forwarded/CPU-s"
            )
    for path, rate in best.items():
        print(f"best {path:7} {rate:,.0f} forwarded packets per CPU-second")
    if len(best) == 2:
        print(f"native / python {best['native'] / best['python']:.2f}")


if __name__ == "__main__":
    main()
