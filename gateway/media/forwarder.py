"""Per-subscriber RTP munger: SSRC, sequence number and timestamp rewriting (RFC 3550 §5.1, RFC 7667 §3.7)
so a subscriber sees one continuous stream across simulcast layer switches, pauses and mutes.

A switch to another source (a new layer, a new publisher SSRC, a resume) happens only on a packet of
the target layer that may start a stream: a keyframe for video, any packet for audio. At that packet
the sequence number continues at last + 1 and the timestamp advances by the wall-clock time elapsed
since the last packet sent, so the receiver's jitter buffer sees neither a gap nor a jump back.

For VP8 the same holds for the payload descriptor (RFC 7741 §4.2): at a switch the PictureID,
TL0PICIDX and KEYIDX continue at last sent + 1 (each in its own width), as LiveKit's VP8 munger
does, so a decoder never sees a picture id go back or repeat across sources. The last values
sent are read back from the downtrack's send history (which the native fast path fills too), so
steady forwarding does no per-packet descriptor work.
"""

from __future__ import annotations

import random

from gateway.media.payload import Vp8Fields

# How far behind the newest forwarded packet a late (reordered) packet is still mapped.
REORDER_WINDOW = 0x1000


class Forwarder:
    """The munger of one downtrack. Layers are indexes, 0 = lowest quality."""

    __slots__ = (
        "ssrc",
        "payload_type",
        "clock_rate",
        "wait_for_keyframe",
        "current_layer",
        "target_layer",
        "source_ssrc",
        "resync",
        "paused",
        "seq_offset",
        "ts_offset",
        "switch_seq",
        "last_seq",
        "last_ts",
        "last_time",
        "out_ts",
        "packets_sent",
        "octets_sent",
        "vp8",
        "vp8_rebase",
        "vp8_rewrite",
        "vp8_picture_offset",
        "vp8_tl0_offset",
        "vp8_key_offset",
    )

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        clock_rate: int,
        wait_for_keyframe: bool,
        *,
        target_layer: int = 0,
        sequence_number: int | None = None,
        timestamp: int | None = None,
        vp8: bool = False,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.wait_for_keyframe = wait_for_keyframe
        self.current_layer = -1  # nothing forwarded yet
        self.target_layer = target_layer
        self.source_ssrc = -1
        self.resync = True  # the next forwarded packet starts a new source
        self.paused = False
        self.seq_offset = 0
        self.ts_offset = 0
        self.switch_seq = 0
        # RFC 3550 §5.1: initial sequence number and timestamp SHOULD be random
        first_seq = random.getrandbits(15) if sequence_number is None else sequence_number
        self.last_seq = (first_seq - 1) & 0xFFFF
        self.last_ts = random.getrandbits(31) if timestamp is None else timestamp
        self.last_time = -1.0  # when the packet holding last_ts was forwarded
        self.out_ts = 0  # timestamp of the packet `forward` just mapped
        self.packets_sent = 0
        self.octets_sent = 0
        # VP8 continuity: offsets added to the source's descriptor values since the last
        # switch, set at the first packet after it (vp8_rebase) by `rebase_vp8`.
        self.vp8 = vp8
        self.vp8_rebase = False
        self.vp8_rewrite = False  # some offset is not zero: packets must be rewritten
        self.vp8_picture_offset = self.vp8_tl0_offset = self.vp8_key_offset = 0

    @property
    def waiting(self) -> bool:
        """True while the target source has not started (a switch or resync is pending)."""
        return not self.paused and (self.resync or self.target_layer != self.current_layer)

    def forward(self, layer: int, ssrc: int, seq: int, ts: int, keyframe: bool, now: float) -> int:
        """The outgoing sequence number for this incoming packet, or -1 to drop it.
        The outgoing timestamp is left in `out_ts`."""
        if self.paused:
            return -1
        if self.resync or layer != self.current_layer or ssrc != self.source_ssrc:
            if layer != self.target_layer or (self.wait_for_keyframe and not keyframe):
                return -1
            self._switch(layer, ssrc, seq, ts, now)
        else:
            behind = (self.switch_seq - seq) & 0xFFFF
            if 0 < behind < 0x8000:  # older than the switch point: belongs to the old source
                return -1
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        if (out_seq - self.last_seq) & 0xFFFF < 0x8000:  # the newest packet so far
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_time = now
            if (seq - self.switch_seq) & 0xFFFF > 2 * REORDER_WINDOW:
                self.switch_seq = (seq - REORDER_WINDOW) & 0xFFFF
        self.out_ts = out_ts
        return out_seq

    def _switch(self, layer: int, ssrc: int, seq: int, ts: int, now: float) -> None:
        out_seq = (self.last_seq + 1) & 0xFFFF
        if self.last_time < 0:
            out_ts = self.last_ts
        else:
            elapsed = max(1, int((now - self.last_time) * self.clock_rate))
            out_ts = (self.last_ts + elapsed) & 0xFFFFFFFF
        self.seq_offset = (out_seq - seq) & 0xFFFF
        self.ts_offset = (out_ts - ts) & 0xFFFFFFFF
        self.switch_seq = seq
        self.current_layer = layer
        self.source_ssrc = ssrc
        self.resync = False
        self.vp8_rebase = self.vp8

    def rebase_vp8(self, last: Vp8Fields | None, first: Vp8Fields | None) -> None:
        """At the first packet after a switch: offsets that make `first` (its descriptor
        values) continue `last` (the values of the last packet sent, as sent) by one; zero
        where either lacks the field. Afterwards `vp8_rewrite` says whether packets change."""
        self.vp8_rebase = False
        picture = tl0 = key = 0
        if last is not None and first is not None:
            if last[1] and first[1]:
                mask = 0x7F if first[1] == 7 else 0x7FFF
                picture = (last[0] + 1 - first[0]) & mask
            if last[3] >= 0 and first[3] >= 0:
                tl0 = (last[3] + 1 - first[3]) & 0xFF
            if last[5] >= 0 and first[5] >= 0:
                key = (last[5] + 1 - first[5]) & 0x1F
        self.vp8_picture_offset = picture
        self.vp8_tl0_offset = tl0
        self.vp8_key_offset = key
        self.vp8_rewrite = bool(picture or tl0 or key)

    def vp8_outgoing(self, fields: Vp8Fields) -> tuple[int, int, int]:
        """The outgoing (PictureID, TL0PICIDX, KEYIDX) for a packet's descriptor values."""
        mask = 0x7F if fields[1] == 7 else 0x7FFF
        return (
            (fields[0] + self.vp8_picture_offset) & mask,
            (fields[3] + self.vp8_tl0_offset) & 0xFF,
            (fields[5] + self.vp8_key_offset) & 0x1F,
        )

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """Continue after a pause or mute: the next keyframe of the target layer restarts."""
        self.paused = False
        self.resync = True

    def rtp_timestamp_at(self, now: float) -> int:
        """The outgoing RTP timestamp that corresponds to `now` (for sender reports)."""
        if self.last_time < 0:
            return self.last_ts
        return (self.last_ts + int((now - self.last_time) * self.clock_rate)) & 0xFFFFFFFF
