"""Prometheus metrics, collected at scrape time from the room model, the relay's plain counters and
the running plugins' own metrics (``Running.metrics``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.server import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# bits/s: a voice call, the lowest simulcast layer, 360p, 720p, more
_ESTIMATE_BUCKETS = (100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        live = self.gateway.rooms.live_rooms()
        yield GaugeMetricFamily(
            "rondpoint_rooms",
            "Rooms with at least one participant",
            value=sum(1 for room in live if room.participants),
        )
        by_origin: Counter[tuple[str, str]] = Counter()
        tracks: Counter[str] = Counter()
        for room in live:
            for participant in room.participants.values():
                origin = participant.origin.split(":", 1)[0]
                by_origin[(origin, participant.state.value)] += 1
                for track in participant.tracks.values():
                    tracks[track.kind.value] += 1
        participants = GaugeMetricFamily(
            "rondpoint_participants", "Participants by origin and state", labels=["origin", "state"]
        )
        # every origin is listed, at 0 when absent: the gateway's own, and each plugin's
        plugins = (plugin.name for plugin in self.gateway.plugins)
        for origin in {"ors", "matrix", "federation", *plugins}:
            for state in ("joined", "lobby"):
                by_origin[(origin, state)] += 0
        for (origin, state), count in sorted(by_origin.items()):
            participants.add_metric([origin, state], count)
        yield participants
        yield GaugeMetricFamily(
            "rondpoint_participants_reconnecting",
            "Participants kept while their clients reconnect (ORS 6.6), in all rooms",
            value=self.gateway.rooms.reconnecting_count(),
        )
        track_family = GaugeMetricFamily(
            "rondpoint_tracks", "Published tracks by kind", labels=["kind"]
        )
        for kind in ("audio", "video"):
            track_family.add_metric([kind], tracks[kind])
        yield track_family
        stats = self.gateway.relay.stats()
        for name, value, help_text in (
            ("packets_forwarded", stats.packets_forwarded, "RTP packets forwarded to subscribers"),
            ("bytes_forwarded", stats.bytes_forwarded, "RTP bytes forwarded to subscribers"),
            (
                "packets_lost",
                stats.packets_lost,
                "RTP packets lost, from sequence gaps and reports",
            ),
            ("nacks", stats.nacks, "Generic NACKs received from subscribers"),
            ("keyframe_requests", stats.keyframe_requests, "PLI/FIR keyframe requests forwarded"),
            (
                "congestion_pauses",
                stats.congestion_pauses,
                "Videos paused for a subscriber whose bandwidth estimate fit no layer",
            ),
            (
                "layer_downgrades",
                stats.layer_downgrades,
                "Simulcast layer ceilings lowered by subscribers' bandwidth estimates",
            ),
        ):
            yield CounterMetricFamily(f"rondpoint_relay_{name}", help_text, value=value)
        estimates = HistogramMetricFamily(
            "rondpoint_relay_subscriber_bandwidth_bits",
            "Subscribers' send-side bandwidth estimates (bits/s), one observation per subscriber",
        )
        buckets = [
            (f"{bound:.0f}", sum(1 for e in stats.subscriber_estimates if e <= bound))
            for bound in _ESTIMATE_BUCKETS
        ]
        buckets.append(("+Inf", len(stats.subscriber_estimates)))
        estimates.add_metric([], buckets, sum_value=sum(stats.subscriber_estimates))
        yield estimates
        yield GaugeMetricFamily(
            "rondpoint_relay_endpoints", "WebRTC endpoints", value=stats.endpoints
        )
        tcp = self.gateway.relay.tcp
        if tcp is not None:  # ICE-TCP ([media] tcp_port)
            yield GaugeMetricFamily(
                "rondpoint_relay_tcp_connections", "Open ICE-TCP connections", value=tcp.connections
            )
            yield CounterMetricFamily(
                "rondpoint_relay_tcp_refused",
                "ICE-TCP connections refused: limits, deadline, no authenticated first check",
                value=tcp.refused,
            )
            yield CounterMetricFamily(
                "rondpoint_relay_tcp_frames_dropped",
                "Frames not sent to ICE-TCP peers that could not keep up",
                value=tcp.frames_dropped,
            )
        phones = self.gateway.relay.conference_stats()
        for name, value, help_text in (
            ("rtp_packets_received", phones.packets_received, "RTP packets received from phones"),
            ("rtp_packets_sent", phones.packets_sent, "RTP packets sent to phones"),
            (
                "rtp_frames_concealed",
                phones.frames_concealed,
                "Playout ticks concealed for want of a phone's packet",
            ),
            (
                "rtp_frames_late",
                phones.frames_late,
                "Phones' packets dropped for arriving too late",
            ),
            ("conference_ticks", phones.ticks, "20 ms audio conference ticks"),
            (
                "conference_tick_overruns",
                phones.overruns,
                "Audio conference ticks more than 200 ms behind (clock resynchronised)",
            ),
        ):
            yield CounterMetricFamily(f"rondpoint_sip_{name}", help_text, value=value)
        links = GaugeMetricFamily(
            "rondpoint_links", "Live room links by scheme and state", labels=["scheme", "state"]
        )
        packets_in = CounterMetricFamily(
            "rondpoint_link_rtp_packets_received",
            "RTP packets received from linked foreign rooms",
            labels=["scheme"],
        )
        packets_out = CounterMetricFamily(
            "rondpoint_link_rtp_packets_sent",
            "RTP packets sent to linked foreign rooms",
            labels=["scheme"],
        )
        states: Counter[tuple[str, str]] = Counter()
        received: Counter[str] = Counter()
        sent: Counter[str] = Counter()
        for scheme, status in self.gateway.links.statuses():
            states[(scheme, status.state)] += 1
            received[scheme] += status.packets_in
            sent[scheme] += status.packets_out
        for (scheme, state), count in sorted(states.items()):
            links.add_metric([scheme, state], count)
        for scheme in sorted(received):
            packets_in.add_metric([scheme], received[scheme])
            packets_out.add_metric([scheme], sent[scheme])
        yield links
        yield packets_in
        yield packets_out
        for running in self.gateway.running.values():
            if running is not None and running.metrics is not None:
                yield from running.metrics()


def render(gateway: Gateway) -> bytes:
    registry = CollectorRegistry()
    registry.register(GatewayCollector(gateway))
    return generate_latest(registry)
