"""Keys a phone types during a call (protocols/sip/call.py): they go to the PIN entry, and ``*6``
in a room mutes the phone's track, then unmutes it, with the spoken notice each time."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

from gateway.media.audio.telephone_event import dtmf_packets
from gateway.rooms import EventBus, Role, RoomManager, Track, TrackKind, TrackSource
from gateway.store import Store
from protocols.sip.call import InboundCall
from protocols.sip.message import Request, parse_message
from protocols.sip.prompt_player import load_prompt
from tests.unit.sip.fake_clock import FakeClock
from tests.unit.sip.fake_media import OFFER, FakeConference, FakeEndpoint

INVITE = (
    "INVITE sip:salle@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKkeys1;rport\r\n"
    "From: <sip:0612345642@127.0.0.1:5070>;tag=phonetag\r\n"
    "To: <sip:salle@127.0.0.1:5060>\r\n"
    "Call-ID: keys-1@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Length: 0\r\n\r\n"
)


def call_in_a_room() -> tuple[InboundCall, RoomManager]:
    rooms = RoomManager(Store(":memory:"), EventBus(), "gw.test")
    service = SimpleNamespace(
        rooms=rooms,
        config=SimpleNamespace(language="fr"),
        ports=SimpleNamespace(host="127.0.0.1"),
    )
    invite = parse_message(INVITE.encode())
    assert isinstance(invite, Request)
    call = InboundCall(service, None, invite, None, ("127.0.0.1", 5070), FakeClock())  # type: ignore[arg-type]
    call.media.offer = call.media.read_offer(OFFER)
    call.media.adopt(FakeEndpoint())  # type: ignore[arg-type]
    call.media.attach(FakeConference(), "ivr-1")  # type: ignore[arg-type]
    room = rooms.create("salle")
    participant = rooms.add_participant(room, "Phone ••• 42", Role.GUEST, origin="sip")
    rooms.publish_track(
        room, Track("TR_1", participant.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus")
    )
    call.room, call.participant = room, participant
    return call, rooms


PRESSES = itertools.count(1)


def type_keys(call: InboundCall, keys: str) -> None:
    """Each key as the RFC 4733 packets of a new press (its own timestamp)."""
    for key in keys:
        press = next(PRESSES)
        for packet in dtmf_packets(
            key, ssrc=1, sequence_number=press * 10, timestamp=8000 * press, payload_type=101
        ):
            call.media.receive(packet.serialize())


def test_star_six_mutes_then_unmutes_the_phone_with_a_notice() -> None:
    call, _ = call_in_a_room()
    assert call.room is not None and call.participant is not None and call.media.leg is not None
    track = call.room.participants[call.participant.id].tracks["TR_1"]

    type_keys(call, "*6")
    assert track.muted and call.media.leg.muted
    assert len(call.media.leg.prompt) == len(load_prompt("fr", "muted", 8000))

    type_keys(call, "*6")
    assert not track.muted and not call.media.leg.muted
    assert len(call.media.leg.prompt) == len(load_prompt("fr", "unmuted", 8000))


def test_star_then_another_key_toggles_nothing() -> None:
    call, _ = call_in_a_room()
    assert call.room is not None and call.participant is not None and call.media.leg is not None
    type_keys(call, "*16")
    assert not call.room.participants[call.participant.id].tracks["TR_1"].muted
    assert call.media.leg.prompt == []


async def test_keys_go_to_the_pin_entry() -> None:
    call, _ = call_in_a_room()
    call.participant = None  # still at the PIN prompt
    type_keys(call, "1234#")
    assert await call.pin_entry.read() == "1234"
