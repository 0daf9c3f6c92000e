"""Reading a PIN from a phone's keys (protocols/sip/pin_entry.py): ``#`` ends it, a silence of
PIN_TIMEOUT ends it too, 16 digits at most, other keys ignored; time is a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from protocols.sip.pin_entry import MAX_PIN_DIGITS, PIN_TIMEOUT, PinEntry
from tests.unit.sip.fake_clock import FakeClock, settle


def press(entry: PinEntry, keys: str) -> None:
    for key in keys:
        entry.press(key)


async def test_hash_ends_the_pin() -> None:
    entry = PinEntry(FakeClock())
    press(entry, "123456#")
    assert await entry.read() == "123456"


async def test_keys_typed_before_the_read_count_and_each_hash_ends_one_pin() -> None:
    entry = PinEntry(FakeClock())
    press(entry, "12#34#")  # typed while the prompts played
    assert await entry.read() == "12"
    assert await entry.read() == "34"


async def test_keys_typed_while_reading_are_read() -> None:
    entry = PinEntry(FakeClock())
    reading = asyncio.create_task(entry.read())
    await settle()
    press(entry, "42")
    await settle()
    press(entry, "#")
    assert await reading == "42"


async def test_a_silence_of_pin_timeout_ends_the_pin_as_typed() -> None:
    clock = FakeClock()
    entry = PinEntry(clock)
    press(entry, "12")
    reading = asyncio.create_task(entry.read())
    await settle()
    assert clock.pending() == [PIN_TIMEOUT]
    clock.advance(PIN_TIMEOUT - 0.1)
    await settle()
    assert not reading.done()
    clock.advance(0.1)
    assert await reading == "12"
    assert clock.pending() == []


async def test_the_timeout_starts_again_at_each_key() -> None:
    clock = FakeClock()
    entry = PinEntry(clock)
    reading = asyncio.create_task(entry.read())
    await settle()
    for key in "123":
        clock.advance(PIN_TIMEOUT - 1)
        press(entry, key)
        await settle()
    assert not reading.done()
    clock.advance(PIN_TIMEOUT)
    assert await reading == "123"


async def test_no_key_at_all_is_an_empty_pin_after_the_timeout() -> None:
    clock = FakeClock()
    entry = PinEntry(clock)
    reading = asyncio.create_task(entry.read())
    await settle()
    clock.advance(PIN_TIMEOUT)
    assert await reading == ""


async def test_digits_beyond_sixteen_are_ignored() -> None:
    entry = PinEntry(FakeClock())
    press(entry, "1234567890" * 3 + "#")
    assert await entry.read() == ("1234567890" * 3)[:MAX_PIN_DIGITS]
    assert MAX_PIN_DIGITS == 16


async def test_keys_other_than_digits_are_ignored() -> None:
    entry = PinEntry(FakeClock())
    press(entry, "1*2A3BC4D#")
    assert await entry.read() == "1234"


async def test_a_cancelled_read_leaves_no_timer() -> None:
    clock = FakeClock()
    entry = PinEntry(clock)
    reading = asyncio.create_task(entry.read())
    await settle()
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert clock.pending() == []
    press(entry, "7#")  # the keys wait for the next read
    assert await entry.read() == "7"
