"""A call's media leg (protocols/sip/media_leg.py): keys typed as RFC 4733 telephone-events,
the mute toggle, hold, and leaving the conference; time is a clock the test moves."""

from __future__ import annotations

from gateway.media.audio.telephone_event import dtmf_packets
from gateway.rooms import EventBus, Role, RoomManager, Track, TrackKind, TrackSource
from gateway.store import Store
from protocols.sip.media_leg import DTMF_SILENCE
from tests.unit.sip.fake_clock import FakeClock
from tests.unit.sip.fake_media import OFFER, attached_media


def key_press(digit: str, timestamp: int, sequence: int) -> list[bytes]:
    return [
        p.serialize()
        for p in dtmf_packets(
            digit, ssrc=1234, sequence_number=sequence, timestamp=timestamp, payload_type=101
        )
    ]


def test_each_key_press_is_reported_once() -> None:
    keys: list[str] = []
    media, _ = attached_media(FakeClock(), keys.append)
    for packet in key_press("5", 8000, 10) + key_press("#", 16000, 20):
        media.receive(packet)
    assert keys == ["5", "#"]


def test_a_replayed_key_press_counts_again_only_after_a_silence() -> None:
    clock = FakeClock()
    keys: list[str] = []
    media, _ = attached_media(clock, keys.append)
    press = key_press("7", 8000, 10)
    for packet in press + press:  # the same event again at once: one key
        media.receive(packet)
    assert keys == ["7"]
    clock.advance(DTMF_SILENCE + 0.1)  # the phone restarted its RTP clock, say
    for packet in press:
        media.receive(packet)
    assert keys == ["7", "7"]


def test_the_mute_toggle_mutes_then_unmutes_the_phones_track() -> None:
    rooms = RoomManager(Store(":memory:"), EventBus(), "gw.test")
    room = rooms.create("salle")
    participant = rooms.add_participant(room, "Phone ••• 42", Role.GUEST, origin="sip")
    media, _ = attached_media(FakeClock())
    assert media.toggle_mute(rooms, room, participant) is None  # no track yet: nothing to mute
    track = Track("TR_1", participant.id, TrackKind.AUDIO, TrackSource.MICROPHONE, "opus")
    rooms.publish_track(room, track)
    assert media.leg is not None

    assert media.toggle_mute(rooms, room, participant) is True
    assert room.participants[participant.id].tracks["TR_1"].muted and media.leg.muted

    assert media.toggle_mute(rooms, room, participant) is False
    assert not room.participants[participant.id].tracks["TR_1"].muted and not media.leg.muted


def test_a_sendonly_reoffer_puts_the_phone_on_hold_and_sendrecv_resumes() -> None:
    media, _ = attached_media(FakeClock())
    assert media.leg is not None and media.leg.hearing
    held = media.read_offer(OFFER.replace(b"a=sendrecv", b"a=sendonly"))
    media.reoffer(held, "ivr-1", None)
    assert media.on_hold and not media.leg.hearing and media.sdp_version == 2
    media.reoffer(media.read_offer(OFFER), "ivr-1", None)
    assert not media.on_hold and media.leg.hearing and media.sdp_version == 3


def test_a_new_codec_in_a_reoffer_makes_a_new_leg_back_in_the_room() -> None:
    media, conference = attached_media(FakeClock())
    old_leg = media.leg
    pcmu = media.read_offer(
        OFFER.replace(b"RTP/AVP 8 101", b"RTP/AVP 0 101").replace(
            b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:0 PCMU/8000"
        )
    )
    media.reoffer(pcmu, "PA_1", "PA_1")
    assert media.leg is not old_leg and media.leg is not None
    assert media.leg.codec.name == "PCMU"
    assert list(conference.legs) == ["PA_1"] and conference.entered == ["PA_1"]


def test_detach_leaves_the_conference_and_close_frees_the_endpoint() -> None:
    media, conference = attached_media(FakeClock())
    media.detach()
    media.close()
    assert conference.legs == {}
    assert media.endpoint is not None and media.endpoint.closed  # type: ignore[attr-defined]
