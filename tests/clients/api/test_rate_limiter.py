"""The token bucket on its own, with a clock the test moves: limits, refill, headers, the
bounded number of tracked keys, and the per-address gate on failed key checks."""

from __future__ import annotations

import pytest

from carrier_cli.clients.api.errors import ApiError
from carrier_cli.clients.api.limits import AuthFailures, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_limit_per_minute_then_429_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    remaining = [limiter.check("ci").remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    with pytest.raises(ApiError) as refused:
        limiter.check("ci")
    error = refused.value
    assert error.status == 429 and error.code == "rate_limited"
    assert error.headers["Retry-After"] == "20"  # one token per 20 s at 3/minute
    assert error.headers["RateLimit-Limit"] == "3"
    assert error.headers["RateLimit-Remaining"] == "0"
    assert error.headers["RateLimit-Reset"] == "60"
    assert "'ci'" in error.message and "api_rate_limit" in (error.hint or "")


def test_tokens_come_back_with_time_and_never_exceed_the_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one per second
    for _ in range(60):
        limiter.check("k")
    assert not limiter.peek("k").allowed
    clock.now += 1.0
    assert limiter.check("k").remaining == 0
    clock.now += 3600
    decision = limiter.check("k")
    assert decision.remaining == 59 and decision.reset == 1


def test_keys_are_limited_apart() -> None:
    limiter = RateLimiter(1, clock=Clock())
    limiter.check("a")
    with pytest.raises(ApiError):
        limiter.check("a")
    assert limiter.check("b").allowed


def test_the_number_of_tracked_keys_is_bounded() -> None:
    limiter = RateLimiter(5, max_keys=100, clock=Clock())
    for n in range(10_000):
        limiter.take(f"key-{n}")
    assert len(limiter) == 100


def test_zero_is_off() -> None:
    limiter = RateLimiter(0, clock=Clock())
    for _ in range(1000):
        assert limiter.check("k").allowed
    assert len(limiter) == 0


def test_peek_does_not_take_a_token() -> None:
    limiter = RateLimiter(1, clock=Clock())
    for _ in range(5):
        assert limiter.peek("k").allowed
    assert limiter.check("k").allowed


def test_an_address_that_keeps_failing_is_refused_without_a_key_check() -> None:
    clock = Clock()
    failures = AuthFailures(2, clock=clock)
    failures.refuse_if_blocked("10.0.0.1")
    failures.failed("10.0.0.1")
    failures.failed("10.0.0.1")
    with pytest.raises(ApiError) as refused:
        failures.refuse_if_blocked("10.0.0.1")
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) >= 1
    failures.refuse_if_blocked("10.0.0.2")  # another address is not affected
    clock.now += 30
    failures.refuse_if_blocked("10.0.0.1")  # a failure's worth came back
