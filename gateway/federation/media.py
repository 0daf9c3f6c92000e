"""A federation link's media: its relay link (gateway/media/relay_link.py) as the link and the
mirror use it (spec 14.5).

One ``RelayLink`` per federation link, for the link's life (its SSRCs for our tracks stay the
same; a new offer only replaces its transport). The partner's tracks are announced with their
SSRC map (``streams`` in events) and become foreign tracks of the room's router; ours are
announced with ``local_streams``. What our subscribers want of the partner's tracks (``wanted``)
is sent as ``demand`` events when it changes; the partner's ``demand`` sets the downtracks that
cross (``set_demand``). The initiator offers (controlling, full ICE), the responder answers
(ICE-lite on the relay's shared port).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.media.endpoint import TrackRecord
from gateway.media.relay import MediaRelay
from gateway.media.relay_link import RelayLink, RemoteLayer, link_codec_named
from gateway.media.sdp import Codec
from gateway.rooms import Track

log = logging.getLogger(__name__)

REOFFER_SECONDS = 10.0
"""A transport that was connected and is not any more is offered again after this long."""


def link_codec_of(name: str) -> Codec:
    """The relay link's codec for a track's codec name; ValueError if the link cannot carry it."""
    codec = link_codec_named(name)
    if codec is None:
        raise ValueError(f"a relay link does not carry {name or 'unknown'} tracks")
    return Codec(codec.payload_type, codec.name, codec.clock_rate, codec.channels, codec.fmtp)


class MediaGlue:
    """See the module docstring; the mirror's ``MediaSide``."""

    def __init__(
        self,
        relay: MediaRelay,
        room_id: str,
        name: str,
        *,
        controlling: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controlling = controlling
        self.clock = clock
        self.on_wanted_change: Callable[[], None] = lambda: None
        self.relay_link = RelayLink(
            relay, room_id, name, controlling=controlling, on_wanted_change=self._wanted_changed
        )
        self._offered_at = 0.0

    def _wanted_changed(self) -> None:
        self.on_wanted_change()

    # --- signalling (link.py, routes.py) ----------------------------------------------------

    def create_offer(self) -> str:
        self._offered_at = self.clock()
        return self.relay_link.create_offer()

    def accept_answer(self, sdp: str) -> None:
        self.relay_link.accept_answer(sdp)

    def accept_offer(self, sdp: str) -> str:
        """The responder's answer to the initiator's offer; ValueError (SdpError) if unusable."""
        return self.relay_link.accept_offer(sdp)

    def lost(self) -> bool:
        """Whether the initiator should offer again: its transport was connected and is not, or
        never connected within REOFFER_SECONDS of the offer."""
        if not self.controlling or not self._offered_at:
            return False
        if self.relay_link.connected:
            return False
        return self.clock() - self._offered_at >= REOFFER_SECONDS

    def stats(self) -> dict[str, int]:
        return self.relay_link.stats()

    def wanted(self) -> dict[str, list[str]]:
        return self.relay_link.wanted()

    def close(self) -> None:
        self.relay_link.close()

    # --- the mirror's MediaSide -------------------------------------------------------------

    def add_remote_track(self, track: Track, streams: Sequence[tuple[str, int]]) -> None:
        if not streams:
            raise ValueError("the partner announced no stream for this track")
        heights = {layer.rid: layer.height for layer in track.layers}
        record = TrackRecord(track.id, track.owner, track.kind.value, link_codec_of(track.codec))
        layers = [RemoteLayer(rid, ssrc, heights.get(rid)) for rid, ssrc in streams]
        self.relay_link.add_remote_track(record, layers)

    def remove_remote_track(self, track_id: str) -> None:
        self.relay_link.remove_remote_track(track_id)

    def local_streams(self, track_id: str) -> list[dict[str, Any]]:
        return [
            {"rid": layer.rid, "ssrc": layer.ssrc}
            for layer in self.relay_link.local_streams(track_id)
        ]

    def set_demand(self, demand: Mapping[str, Sequence[str]]) -> None:
        self.relay_link.set_demand(demand)
