"""A call's media leg with stand-ins for its RTP endpoint and conference: what the leg sends and
plays is kept for the tests to look at, and no socket is opened."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from gateway.media.audio.conference import PhoneLeg
from protocols.sip.clock import Clock
from protocols.sip.media_leg import MediaLeg

OFFER = b"""v=0\r
o=phone 1 1 IN IP4 127.0.0.1\r
s=-\r
c=IN IP4 127.0.0.1\r
t=0 0\r
m=audio 40000 RTP/AVP 8 101\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:101 telephone-event/8000\r
a=sendrecv\r
"""


class FakeEndpoint:
    port = 41000

    def __init__(self) -> None:
        self.on_rtp: Callable[[bytes], None] = lambda data: None
        self.sent: list[bytes] = []
        self.remote: tuple[str, int] | None = None
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def set_remote(self, address: tuple[str, int] | None) -> None:
        self.remote = address

    def clear_srtp(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeConference:
    def __init__(self) -> None:
        self.legs: dict[str, PhoneLeg] = {}
        self.entered: list[str] = []

    def add_leg(
        self,
        leg_id: str,
        codec: object,
        send: Callable[[bytes], None],
        telephone_event_pt: int | None = None,
    ) -> PhoneLeg:
        leg = PhoneLeg(leg_id, codec, send, f"TR_{leg_id}", telephone_event_pt)  # type: ignore[arg-type]
        self.legs[leg_id] = leg
        return leg

    def remove_leg(self, leg_id: str) -> None:
        self.legs.pop(leg_id, None)

    def enter_room(self, leg: PhoneLeg, participant_id: str) -> str:
        self.entered.append(participant_id)
        return leg.track_id


def attached_media(
    clock: Clock, on_key: Callable[[str], None] = lambda key: None
) -> tuple[MediaLeg, FakeConference]:
    """A media leg that took the phone's offer (PCMA, telephone-events on 101) and is in a
    conference."""
    media = MediaLeg(clock, SimpleNamespace(host="127.0.0.1"), on_key)  # type: ignore[arg-type]
    media.offer = media.read_offer(OFFER)
    media.adopt(FakeEndpoint())  # type: ignore[arg-type]
    media.key_srtp()
    conference = FakeConference()
    media.attach(conference, "ivr-1")  # type: ignore[arg-type]
    return media, conference
