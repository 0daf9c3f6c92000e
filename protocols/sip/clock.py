"""The clock a call reads: monotonic time and timers, handed to calls so that tests drive time.

Calls never ask ``time`` or the event loop for the time themselves; they are given a ``Clock``
(``SYSTEM_CLOCK`` in the gateway, a manual one in tests) and wait through ``sleep``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Timer(Protocol):
    """A callback scheduled by ``Clock.call_later``."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds, and callbacks after a delay on that same time line."""

    def monotonic(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The real clock: ``time.monotonic`` and the running event loop's timers (the loop's time
    is ``time.monotonic`` too)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


SYSTEM_CLOCK: Clock = LoopClock()


async def sleep(clock: Clock, seconds: float) -> None:
    """Return after ``seconds`` of ``clock``'s time."""
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    timer = clock.call_later(seconds, lambda: resolve(woken, None))
    try:
        await woken
    finally:
        timer.cancel()


def resolve(future: asyncio.Future[T], result: T) -> None:
    """Give ``future`` its result unless it already has one (a timer racing an event)."""
    if not future.done():
        future.set_result(result)
