"""A PIN typed on a phone's keypad (RFC 4733 telephone-events or SIP INFO): ``#`` ends it, and so
does ``PIN_TIMEOUT`` seconds without a key; digits beyond ``MAX_PIN_DIGITS`` and other keys are
ignored."""

from __future__ import annotations

import asyncio
from collections import deque

from protocols.sip.clock import Clock, resolve

PIN_TIMEOUT = 20.0
"""Seconds without a key after which the PIN typed so far is read as it is."""
MAX_PIN_DIGITS = 16


class PinEntry:
    """The keys a phone typed, kept in order until a PIN is read from them (keys typed during a
    prompt count towards the next PIN)."""

    def __init__(
        self, clock: Clock, timeout: float = PIN_TIMEOUT, max_digits: int = MAX_PIN_DIGITS
    ) -> None:
        self.clock = clock
        self.timeout = timeout
        self.max_digits = max_digits
        self._keys: deque[str] = deque()
        self._waiting: asyncio.Future[str | None] | None = None

    def press(self, key: str) -> None:
        """One key from the phone: ``0``-``9``, ``*``, ``#``, ``A``-``D``."""
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(key)
        else:
            self._keys.append(key)

    async def read(self) -> str:
        """The next PIN: the digits typed until ``#`` or until no key came for ``timeout``."""
        pin = ""
        while (key := await self._next_key()) is not None and key != "#":
            if key.isdigit() and len(pin) < self.max_digits:
                pin += key
        return pin

    async def _next_key(self) -> str | None:
        """The next key, or None when none came within ``timeout`` seconds."""
        if self._keys:
            return self._keys.popleft()
        waiting: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting = waiting
        timer = self.clock.call_later(self.timeout, lambda: resolve(waiting, None))
        try:
            return await waiting
        finally:
            timer.cancel()
            self._waiting = None
