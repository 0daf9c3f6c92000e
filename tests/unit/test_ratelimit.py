"""Rate limits for anonymous callers: bursts allowed, then refused, then allowed again over time."""

from gateway.ratelimit import FailureBackoff, RateLimiter


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


def test_failures_beyond_the_free_ones_wait_longer_each_time_up_to_the_cap() -> None:
    backoff = FailureBackoff(free=3, first_delay=1.0, max_delay=8.0, forget_after=600)
    assert [backoff.failed("room", now=0.0) for _ in range(2)] == [1, 2]
    assert backoff.wait("room", now=0.0) == 0.0
    waits = []
    now = 0.0
    for _ in range(6):
        backoff.failed("room", now=now)
        waits.append(backoff.wait("room", now=now))
        now += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.wait("other", now=now) == 0.0


def test_a_key_without_failures_for_a_while_starts_afresh() -> None:
    backoff = FailureBackoff(free=1, first_delay=5.0, max_delay=60.0, forget_after=100)
    backoff.failed("room", now=0.0)
    backoff.failed("room", now=5.0)
    assert backoff.wait("room", now=5.0) == 10.0
    assert backoff.wait("room", now=105.0) == 0.0
    assert backoff.failed("room", now=105.0) == 1
