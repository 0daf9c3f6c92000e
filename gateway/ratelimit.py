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
