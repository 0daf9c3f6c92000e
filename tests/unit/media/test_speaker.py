"""Active speaker detection from RFC 6464 levels: ordering, smoothing, change-only updates."""

from gateway.media.speaker import ActiveSpeakerDetector, audio_level_from_extension


def feed(detector: ActiveSpeakerDetector, levels: dict[str, int], packets: int = 15) -> None:
    for _ in range(packets):
        for participant, level in levels.items():
            detector.on_audio_level(participant, level)


def test_extension_byte() -> None:
    assert audio_level_from_extension(b"\x9e") == (30, True)
    assert audio_level_from_extension(b"\x7f") == (127, False)


def test_speakers_ordered_loudest_first() -> None:
    detector = ActiveSpeakerDetector()
    feed(detector, {"quiet": 38, "loud": 10, "medium": 25})
    speakers = detector.update(0.3)
    assert speakers is not None
    assert [p for p, _ in speakers] == ["loud", "medium", "quiet"]
    assert 0 < speakers[2][1] < speakers[1][1] < speakers[0][1] <= 1


def test_silence_and_noise_are_not_speech() -> None:
    detector = ActiveSpeakerDetector()
    feed(detector, {"silent": 127, "noise": 60})
    assert detector.update(0.3) is None
    assert detector.speakers == []


def test_update_fires_on_change_only() -> None:
    detector = ActiveSpeakerDetector()
    feed(detector, {"alice": 20})
    assert detector.update(0.3) is not None
    feed(detector, {"alice": 21})
    assert detector.update(0.6) is None  # same speaker list
    feed(detector, {"alice": 21, "bob": 5})
    speakers = detector.update(0.9)
    assert speakers is not None
    assert [p for p, _ in speakers] == ["bob", "alice"]
    feed(detector, {"alice": 21, "bob": 5})
    assert detector.update(1.2) is None


def test_update_not_before_the_interval() -> None:
    detector = ActiveSpeakerDetector(interval=0.3)
    feed(detector, {"alice": 20})
    assert detector.update(0.0) is not None
    feed(detector, {"bob": 5})
    assert detector.update(0.1) is None


def test_speaker_who_stops_fades_out() -> None:
    detector = ActiveSpeakerDetector()
    feed(detector, {"alice": 20})
    detector.update(0.3)
    now = 0.3
    for _ in range(20):
        now += 0.3
        detector.update(now)
    assert detector.speakers == []
