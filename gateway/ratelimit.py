"""Token-bucket rate limits per key (a source address), for everything an anonymous caller can reach."""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    """Allows ``rate_per_minute`` events per key with bursts up to ``burst``; bounded memory."""

    def __init__(self, rate_per_minute: float, burst: int | None = None, max_keys: int = 10_000):
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(rate_per_minute) // 3))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds before ``key`` has an event allowed again (0: now)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 or self.rate <= 0 else (1.0 - tokens) / self.rate


class FailureBackoff:
    """Failures per key (a room's PIN) with growing waits: after ``free`` failures, each one makes
    the key wait ``first_delay`` seconds, doubling up to ``max_delay``; a key with no failure for
    ``forget_after`` seconds starts afresh. Bounded memory."""

    def __init__(
        self,
        free: int,
        first_delay: float,
        max_delay: float,
        forget_after: float,
        max_keys: int = 10_000,
    ):
        self.free = free
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._failures: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        """key -> (failures, time of the last, time before which no attempt is checked)"""

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds before an attempt for ``key`` may be checked; 0 for now."""
        now = time.monotonic() if now is None else now
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        failures, last, not_before = entry
        if now - last >= self.forget_after:
            del self._failures[key]
            return 0.0
        return max(0.0, not_before - now)

    def failed(self, key: str, now: float | None = None) -> int:
        """Count a failure for ``key``; returns how many it has had."""
        now = time.monotonic() if now is None else now
        failures, last, _ = self._failures.pop(key, (0, now, now))
        if now - last >= self.forget_after:
            failures = 0
        failures += 1
        not_before = now
        if failures >= self.free:
            not_before += min(self.max_delay, self.first_delay * 2.0 ** (failures - self.free))
        self._failures[key] = (failures, now, not_before)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        return failures
