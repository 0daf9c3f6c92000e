"""Rate limits for anonymous callers: bursts allowed, then refused, then allowed again over time."""

from gateway.ratelimit import RateLimiter


def test_burst_then_refusal_then_refill() -> None:
    limiter = RateLimiter(rate_per_minute=60, burst=3)
    assert [limiter.allow("203.0.113.9", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("198.51.100.1", now=0.0)
    assert limiter.allow("203.0.113.9", now=1.1)


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(rate_per_minute=60, max_keys=100)
    for i in range(1000):
        limiter.allow(f"k{i}", now=0.0)
    assert len(limiter._buckets) == 100
