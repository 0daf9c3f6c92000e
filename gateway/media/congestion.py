"""Congestion control of one subscribe transport: transport-wide sequence numbers on what it sends,
transport-cc feedback in, the bandwidth estimate (bwe.py), the layer allocation (allocator.py)
applied to the room's router, and probes (draft-holmer-rmcat-transport-wide-cc-extensions-01,
draft-ietf-rmcat-gcc-02).

The transport calls `stamp` for every RTP packet its Python path sends, `on_feedback` with each
RTPFB FMT 15 packet the subscriber sends, and the relay's fast timer calls `tick`. The send records
and the reading of feedback against them are the native Egress's when the transport has one (it
stamps the fast path's packets itself), else a `SendRecords` (feedback.py), its Python twin.
Sans-I/O: every entry point takes `now` (time.monotonic() seconds, the clock the native Egress
stamps with).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .allocator import Allocator
from .bwe import MAX_BITRATE, START_BITRATE, BandwidthEstimator, PacketResult
from .feedback import SendRecords
from .router import DowntrackInfo

logger = logging.getLogger(__name__)

ALLOCATION_INTERVAL = 0.3  # LiveKit's stream allocator re-allocates a few times a second
PROBE_DURATION = 0.1  # padding sent for this long per probe cluster
# Padding for a little more than the target: the cluster's measured rate leaves out its last
# packet and its bursts (one per timer tick), and must reach the target to count.
PROBE_OVERSHOOT = 1.25
# Feedback for the cluster's packets is awaited until it covers them all, or this long after it
# (a loaded receiver's feedback can lag by hundreds of milliseconds).
PROBE_SETTLE = 2.0
PROBE_INTERVAL = 2.0  # between two probes; doubled after each probe that fell short, up to
PROBE_MAX_INTERVAL = 4.0  # this: a capped link that opens again is found within seconds
PROBE_AFTER_SUCCESS = 0.5
# A probe asks at most this many times the estimate (libwebrtc's probe_controller.cc probes
# further at 2x): a capped link sees a short burst, a freed one doubles the estimate per probe.
PROBE_MAX_SCALE = 2.0
MIN_RTT = 0.01
# The retransmission rate left out of the layers' budget decays by this factor per allocation
# (0.3 s): a burst of NACKs holds the layers down for about a second after it, not longer.
RESEND_DECAY = 0.7
MIN_MEDIA_SHARE = 0.5  # retransmissions never take more than half of the layers' budget


class CongestionRouter(Protocol):
    """What SubscriberCongestion uses of the room's Router."""

    def subscriber_downtracks(
        self, subscriber_id: str, now: float | None = None
    ) -> list[DowntrackInfo]: ...

    def set_allocation(
        self, track_id: str, subscriber_id: str, max_layer: int | None, now: float | None = None
    ) -> None: ...


def stamp_transport_sequence(packet: bytes, ext_id: int, sequence: int) -> bytes | None:
    """PACKET with SEQUENCE in its RFC 8285 element EXT_ID, the element inserted when absent (and
    a one-byte extension header when the packet has none); None when it cannot be (an unknown
    extension profile, a malformed extension). Mirrors stamp_twcc in _fastpath.c."""
    # The common case first (this runs for every packet a subscriber gets on the Python path):
    # no CSRC, a one-byte extension block that already has the element (the router keeps it).
    size = len(packet)
    if size > 16 and packet[0] & 0x1F == 0x10 and packet[12] == 0xBE and packet[13] == 0xDE:
        end = 16 + 4 * (packet[14] << 8 | packet[15])
        wanted = ext_id << 4 | 1
        i = 16 if end <= size else end  # a truncated block: the full check below refuses it
        while i < end:
            b = packet[i]
            if b == wanted:
                if i + 3 <= end:
                    return packet[: i + 1] + sequence.to_bytes(2, "big") + packet[i + 3 :]
                break
            if b == 0:
                i += 1
            elif b >= 0xF0:
                break
            else:
                i += (b & 0x0F) + 2
    return _stamp_anywhere(packet, ext_id, sequence)


def _stamp_anywhere(packet: bytes, ext_id: int, sequence: int) -> bytes | None:
    size = len(packet)
    if size < 12 or not 0 < ext_id < 256:
        return None
    offset = 12 + 4 * (packet[0] & 0x0F)
    if offset > size:
        return None
    hi, lo = sequence >> 8 & 0xFF, sequence & 0xFF
    if not packet[0] & 0x10:
        if ext_id > 14:
            return None
        header = bytes((packet[0] | 0x10,)) + packet[1:offset]
        return header + bytes((0xBE, 0xDE, 0, 1, ext_id << 4 | 1, hi, lo, 0)) + packet[offset:]
    if offset + 4 > size:
        return None
    profile = packet[offset] << 8 | packet[offset + 1]
    words = packet[offset + 2] << 8 | packet[offset + 3]
    start = offset + 4
    end = start + 4 * words
    one_byte = profile == 0xBEDE
    if end > size or not (one_byte or profile & 0xFFF0 == 0x1000) or (one_byte and ext_id > 14):
        return None
    i = last = start
    while i < end:
        if packet[i] == 0:
            i += 1
            continue
        if one_byte:
            element = packet[i] >> 4
            if element == 15:
                break
            length = (packet[i] & 0x0F) + 1
            data = i + 1
        else:
            if i + 1 >= end:
                break
            element = packet[i]
            length = packet[i + 1]
            data = i + 2
        if data + length > end:
            return None
        if element == ext_id:
            if length != 2:
                return None
            out = bytearray(packet)
            out[data] = hi
            out[data + 1] = lo
            return bytes(out)
        i = last = data + length
    element_bytes = bytes((ext_id << 4 | 1, hi, lo)) if one_byte else bytes((ext_id, 2, hi, lo))
    room = end - last
    if room >= len(element_bytes):
        body = element_bytes + bytes(room - len(element_bytes))
        return packet[:last] + body + packet[end:]
    if words == 0xFFFF:
        return None
    body = element_bytes + bytes(room + 4 - len(element_bytes))
    words += 1
    out = bytearray(packet[:last])
    out[offset + 2] = words >> 8
    out[offset + 3] = words & 0xFF
    return bytes(out) + body + packet[end:]


class SubscriberCongestion:
    """One subscribe transport's congestion controller."""

    def __init__(
        self,
        router: CongestionRouter,
        subscriber_id: str,
        ext_id: int,
        *,
        start_bitrate: int = START_BITRATE,
        max_bitrate: int = MAX_BITRATE,
    ) -> None:
        self.router = router
        self.subscriber_id = subscriber_id
        self.ext_id = ext_id
        self.estimator = BandwidthEstimator(start_bitrate, max_bitrate=max_bitrate)
        self.allocator = Allocator()
        self.records: Any = SendRecords()
        """The send records: a SendRecords, or the native Egress (bind_egress)."""
        self._cluster = 0  # the probe cluster being sent (0: none)
        self._cluster_id = 0  # the probe cluster whose results are awaited (0: none)
        self._probe_counter = 0
        self._probe_start = 0.0
        self._probe_end = -1.0
        self._probe_sent_until = 0.0
        self._probe_rate = 0
        self._probe_results: list[PacketResult] = []
        self._probe_last = -1  # the cluster's last transport-wide sequence (-1: still sending)
        self._probe_reported = False  # a feedback covered it
        self._next_probe = 0.0
        self._probe_interval = PROBE_INTERVAL
        self._next_allocation = 0.0
        self._resend_since = 0.0
        self._resend_average = 0.0  # bits/s of retransmissions (_resend_rate)
        self.feedback_packets = 0
        self.feedback_errors = 0
        self.probes = 0
        self.congestion_pauses = 0
        """Videos paused because even their lowest layer did not fit the estimate."""
        self.layer_downgrades = 0
        """Ceilings lowered by the allocation (pauses included)."""

    @property
    def estimate(self) -> int:
        """The subscriber's bandwidth estimate, bits/s."""
        return self.estimator.estimate

    # --- sending -------------------------------------------------------------------------------

    def bind_egress(self, egress: Any) -> None:
        """The transport's native Egress: it stamps the fast path's packets from the same
        sequence and keeps every send record, the Python path's too (`record`)."""
        if egress is not None:
            egress.set_twcc(self.ext_id)
            self.records = egress

    def stamp(self, packet: bytes, now: float) -> bytes:
        """The packet with the next transport-wide sequence number, recorded as sent now."""
        records = self.records
        sequence = records.next_twcc_seq()
        stamped = stamp_transport_sequence(packet, self.ext_id, sequence)
        if stamped is None:
            return packet
        records.record(sequence, now, len(stamped))
        return stamped

    # --- feedback ------------------------------------------------------------------------------

    def on_feedback(self, packet: bytes, now: float) -> None:
        """One transport-cc feedback packet (RTCP RTPFB FMT 15) from the subscriber."""
        probing = self._cluster_id != 0
        try:
            summary, rtt, probe, last = self.records.feedback(
                packet,
                now,
                self._probe_start if probing else 1.0,
                self._probe_end if probing else 0.0,
            )
        except ValueError:  # RtcpError from SendRecords, ValueError from the native Egress
            self.feedback_errors += 1
            return
        self.feedback_packets += 1
        if probing:
            self._probe_results.extend(probe)
            if self._probe_last >= 0 and last >= 0 and (last - self._probe_last) & 0xFFFF < 0x8000:
                self._probe_reported = True
        if rtt is not None:
            self.estimator.set_rtt(max(rtt, MIN_RTT))
        if summary[0]:
            self.estimator.on_feedback(summary, now)

    # --- timer ---------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """The relay's fast timer: probe padding, probe results, and the allocation."""
        if (
            self._cluster_id
            and now > self._probe_end
            and (self._probe_reported or now > self._probe_end + PROBE_SETTLE)
        ):
            self._finish_probe(now)
        if self._cluster and now < self._probe_end:
            self._send_probe_padding(now)
        elif self._cluster:
            # the cluster's sending is over; its feedback may still come
            self._cluster = 0
            self._probe_last = (self.records.twcc_seq - 1) & 0xFFFF
        # A peer that negotiated transport-cc but sends no feedback (aiortc sends REMB only)
        # leaves the estimate unknown: its subscriptions are left as they are.
        if now >= self._next_allocation and self.feedback_packets:
            self._next_allocation = now + ALLOCATION_INTERVAL
            self._allocate(now)

    def _allocate(self, now: float) -> None:
        router = self.router
        if hasattr(router, "set_resend_interval"):
            router.set_resend_interval(self.subscriber_id, self.estimator.rtt)
        estimate = self.estimator.estimate
        budget = max(estimate - self._resend_rate(now), int(estimate * MIN_MEDIA_SHARE))
        downtracks = router.subscriber_downtracks(self.subscriber_id, now)
        before = dict(self.allocator.applied)
        changes = self.allocator.update(downtracks, budget, now)
        if changes:
            logger.debug(
                "subscriber %s: allocation %s at estimate %d, %d for media (layers %s)",
                self.subscriber_id,
                changes,
                estimate,
                budget,
                {info.track_id: info.layer_bitrates for info in downtracks},
            )
        for track_id, layer in changes.items():
            previous = before.get(track_id, -2)
            if previous != -2 and (layer is None or (previous is not None and layer < previous)):
                self.layer_downgrades += 1
                if layer is None:
                    self.congestion_pauses += 1
                    # find out soon whether the link carries the lowest layer after all
                    self._probe_interval = PROBE_INTERVAL
                    self._next_probe = min(self._next_probe, now + PROBE_AFTER_SUCCESS)
                    logger.info(
                        "subscriber %s: video %s paused by congestion (estimate %d bit/s)",
                        self.subscriber_id,
                        track_id,
                        self.estimator.estimate,
                    )
            router.set_allocation(track_id, self.subscriber_id, layer, now)
        target = self.allocator.probe_target
        if target is not None and not self._cluster_id and now >= self._next_probe:
            self._start_probe(target, now)

    def _resend_rate(self, now: float) -> int:
        """Bits/s of retransmissions to the subscriber lately (the higher of the last interval's
        and a decaying average): the layers get the estimate less what repairs take, as
        libwebrtc's video sender leaves its protection bitrate out of the encoder's target."""
        take = getattr(self.router, "take_resent_octets", None)
        if take is None:
            return 0
        octets = take(self.subscriber_id)
        elapsed = now - self._resend_since
        self._resend_since = now
        if elapsed <= 0 or elapsed > 10 * ALLOCATION_INTERVAL:
            return int(self._resend_average)  # the first call, or after a long quiet spell
        rate = octets * 8 / elapsed
        self._resend_average = max(rate, RESEND_DECAY * self._resend_average)
        return int(self._resend_average)

    def _start_probe(self, target: int, now: float) -> None:
        if not hasattr(self.router, "send_padding"):
            return
        target = min(target, int(self.estimator.estimate * PROBE_MAX_SCALE))
        self._probe_counter += 1
        self._cluster = self._cluster_id = self._probe_counter
        self._probe_rate = target
        self._probe_start = now
        self._probe_end = now + PROBE_DURATION
        self._probe_sent_until = now
        self._probe_results = []
        self._probe_last = -1
        self._probe_reported = False
        self.probes += 1
        self._send_probe_padding(now)

    def _send_probe_padding(self, now: float) -> None:
        """Padding for the part of the cluster up to one timer interval ahead, on top of media."""
        until = min(now + 0.05, self._probe_end)
        duration = until - self._probe_sent_until
        if duration <= 0:
            return
        media = self.estimator.acknowledged_bitrate or 0
        target = self._probe_rate * PROBE_OVERSHOOT
        rate = max(target - media, target / 2)
        octets = int(rate * duration / 8)
        self._probe_sent_until = until
        if octets < 64:
            return  # a sliver of the cluster left: not worth a packet (nor a "no padding" answer)
        sent = self.router.send_padding(self.subscriber_id, octets)  # type: ignore[attr-defined]
        logger.debug(
            "subscriber %s: probe padding %d of %d bytes", self.subscriber_id, sent, octets
        )
        if not sent:
            # nothing to pad with (no RTX downtrack): the estimate is the only evidence there is
            self._cluster = self._cluster_id = 0
            self._probe_end = now
            self._next_probe = now + PROBE_INTERVAL
            self.allocator.on_probe(self.estimator.estimate, now)

    def _finish_probe(self, now: float) -> None:
        rate = self.estimator.on_probe_results(self._probe_results, now, PROBE_DURATION)
        logger.debug(
            "subscriber %s: probe for %d bit/s: %d results, measured %s, estimate %d",
            self.subscriber_id,
            self._probe_rate,
            len(self._probe_results),
            rate,
            self.estimator.estimate,
        )
        if rate is not None:
            self.allocator.on_probe(rate, now)
        if rate is not None and rate >= self._probe_rate * 0.9:
            # the link carried it: the next step may be probed at once (a freed link climbs
            # layer after layer within seconds, as libwebrtc's probe controller continues
            # probing while each probe succeeds)
            self._probe_interval = PROBE_INTERVAL
            self._next_probe = now + PROBE_AFTER_SUCCESS
        else:
            self._probe_interval = min(self._probe_interval * 2, PROBE_MAX_INTERVAL)
            self._next_probe = now + self._probe_interval
        self._cluster_id = self._cluster = 0
        self._probe_results = []
