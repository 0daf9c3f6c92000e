"""A clock that moves only when a test says so (protocols/sip/clock.py's ``Clock``)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class FakeTimer:
    when: float
    order: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._timers: list[FakeTimer] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + max(0.0, delay), next(self._order), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def pending(self) -> list[float]:
        """Delays from now of the timers not fired nor cancelled, soonest first."""
        return sorted(t.when - self.now for t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, firing each timer due meanwhile at its own time."""
        until = self.now + seconds
        while self._timers and self._timers[0].when <= until:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self.now = timer.when
                timer.callback()
        self.now = until


async def settle() -> None:
    """Let every task that can run do so (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)
