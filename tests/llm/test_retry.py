"""The retry policy itself, with a fake clock: backoff bounds, Retry-After, budget."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from carrier_cli.llm.errors import ProviderUnavailable
from carrier_cli.llm.retry import Retrier, RetryPolicy, Transient, parse_retry_after


class Boom(Exception):
    pass


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def classify_all(exc: BaseException) -> Transient | None:
    if isinstance(exc, Boom):
        return Transient("boom", retry_after=exc.args[0] if exc.args else None)
    return None


def faked(policy: RetryPolicy, describe: str = "Svc") -> tuple[Retrier, FakeTime]:
    """A Retrier over `classify_all` that sleeps on a fake clock."""
    fake = FakeTime()
    return Retrier(policy, classify_all, describe, sleep=fake.sleep, clock=fake.clock), fake


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = formatdate(1_000_010.0, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=1_000_000.0) == pytest.approx(10.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "-3"}) == 0.0


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for n, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        delays = [policy.backoff(n, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # really spread over the range


async def test_retry_after_is_used_instead_of_backoff() -> None:
    retrier, fake = faked(RetryPolicy(max_retries=3))
    await retrier.wait_or_raise(Boom(2.5))
    assert fake.sleeps == [2.5]


async def test_gives_up_after_max_retries() -> None:
    retrier, fake = faked(RetryPolicy(max_retries=2, base_delay=0.1), "Svc at X")
    await retrier.wait_or_raise(Boom())
    await retrier.wait_or_raise(Boom())
    with pytest.raises(ProviderUnavailable, match=r"Svc at X is unavailable: boom .*3 attempts"):
        await retrier.wait_or_raise(Boom())
    assert len(fake.sleeps) == 2


async def test_gives_up_when_the_next_wait_would_pass_the_budget() -> None:
    retrier, fake = faked(RetryPolicy(max_retries=10, total_budget=5.0))
    await retrier.wait_or_raise(Boom(2.0))
    await retrier.wait_or_raise(Boom(2.0))
    with pytest.raises(ProviderUnavailable):
        await retrier.wait_or_raise(Boom(2.0))  # 4 s spent + 2 s > 5 s budget
    assert fake.sleeps == [2.0, 2.0]


async def test_non_transient_errors_pass_through_untouched() -> None:
    retrier = Retrier(RetryPolicy(), classify_all, "Svc")
    error = KeyError("x")
    with pytest.raises(KeyError) as info:
        await retrier.wait_or_raise(error)
    assert info.value is error


def test_policy_from_settings() -> None:
    policy = RetryPolicy.from_settings(max_retries=-1, request_timeout=30.0)
    assert policy.max_retries == 0
    assert policy.total_budget == 60.0
