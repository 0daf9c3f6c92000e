"""What a phone hears from the gateway (protocols/sip/prompt_player.py): prompts in the call's
language, logged; notices and tones; the waiting prompt played again after each silence."""

from __future__ import annotations

import asyncio
import logging

import pytest

from protocols.sip.prompt_player import (
    JOIN_TONE,
    PromptPlayer,
    RepeatingPrompt,
    load_prompt,
    tone_frames,
)
from tests.unit.sip.fake_clock import FakeClock, settle
from tests.unit.sip.fake_media import attached_media

RATE = 8000  # PCMA


def test_a_prompt_plays_on_the_leg_in_the_calls_language_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    media, _ = attached_media(FakeClock())
    prompts = PromptPlayer(media, "en", "call-1")
    with caplog.at_level(logging.INFO, logger="protocols.sip.call"):
        seconds = prompts.start("enter-pin")
    frames = load_prompt("en", "enter-pin", RATE)
    assert media.leg is not None and len(media.leg.prompt) == len(frames)
    assert seconds == pytest.approx(len(frames) * 0.02)
    [record] = caplog.records
    assert record.message == "phone prompt"
    assert (record.call_id, record.prompt) == ("call-1", "enter-pin")  # type: ignore[attr-defined]


def test_without_a_leg_nothing_plays() -> None:
    media, _ = attached_media(FakeClock())
    media.leg = None
    prompts = PromptPlayer(media, "fr", "call-1")
    assert prompts.start("enter-pin") == 0.0


async def test_play_returns_once_the_prompt_has_been_sent() -> None:
    media, _ = attached_media(FakeClock())
    prompts = PromptPlayer(media, "fr", "call-1")
    playing = asyncio.create_task(prompts.play("goodbye"))
    await settle()
    assert not playing.done()
    assert media.leg is not None and media.leg.on_prompt_done is not None
    media.leg.on_prompt_done()  # the conference sent its last frame
    await playing


def test_a_notice_plays_without_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    media, _ = attached_media(FakeClock())
    prompts = PromptPlayer(media, "fr", "call-1")
    with caplog.at_level(logging.INFO):
        prompts.notice("muted")
    assert media.leg is not None
    assert len(media.leg.prompt) == len(load_prompt("fr", "muted", RATE))
    assert caplog.records == []


def test_a_tone_never_cuts_a_prompt_short() -> None:
    media, _ = attached_media(FakeClock())
    prompts = PromptPlayer(media, "fr", "call-1")
    assert media.leg is not None
    prompts.tone(JOIN_TONE)
    assert len(media.leg.prompt) == len(tone_frames(JOIN_TONE, RATE))
    prompts.start("lobby")
    prompts.tone(JOIN_TONE)
    assert len(media.leg.prompt) == len(load_prompt("fr", "lobby", RATE))


def test_a_repeating_prompt_plays_again_after_its_length_and_the_pause() -> None:
    clock = FakeClock()
    played: list[float] = []

    def start() -> float:
        played.append(clock.now)
        return 3.0

    repeating = RepeatingPrompt(clock, start, 20.0, wanted=lambda: True)
    repeating.start()
    clock.advance(22.9)
    assert played == [1000.0]
    clock.advance(0.1)
    clock.advance(23)
    assert played == [1000.0, 1023.0, 1046.0]
    repeating.stop()
    clock.advance(100)
    assert len(played) == 3 and clock.pending() == []


def test_a_repeating_prompt_stops_once_it_is_no_longer_wanted() -> None:
    clock = FakeClock()
    played: list[float] = []
    wanted = [True]

    def start() -> float:
        played.append(clock.now)
        return 1.0

    RepeatingPrompt(clock, start, 20.0, wanted=lambda: wanted[0]).start()
    wanted[0] = False
    clock.advance(60)
    assert played == [1000.0] and clock.pending() == []
