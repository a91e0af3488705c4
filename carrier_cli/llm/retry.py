"""Retries for model calls: exponential backoff with full jitter, honouring Retry-After.

The SDKs' own retries are switched off (max_retries=0) so there is one policy for every
provider, bounded both in attempts and in total time: a chat turn on Discord must end,
not wait forever behind a rate limit ("bot typing forever" is the classic ElizaOS report).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from carrier_cli.llm.errors import ProviderUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """max_retries: retries after the first attempt. total_budget: seconds from the first
    attempt after which no new attempt starts. max_retry_after: a longer Retry-After than this
    is not waited for (the call fails at once, naming the wait)."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    total_budget: float = 120.0
    max_retry_after: float = 60.0

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**n)] (AWS architecture blog)."""
        ceiling = min(self.max_delay, self.base_delay * (2**retry_number))
        return (rng or random).uniform(0.0, ceiling)

    @classmethod
    def from_settings(cls, max_retries: int, request_timeout: float) -> RetryPolicy:
        """Budget = two request timeouts (at least 10 s): room for a slow answer plus retries."""
        return cls(max_retries=max(0, max_retries), total_budget=max(10.0, 2 * request_timeout))


@dataclass(frozen=True)
class Transient:
    """A failure worth retrying. `reason` is shown if the retries run out."""

    reason: str
    retry_after: float | None = None


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class Retrier:
    """Tracks one logical call across attempts. Use:

        retrier = Retrier(policy, classify, "OpenAI at https://...")
        return await retrier.call(attempt)

    which is, spelled out (as streaming does):

        while True:
            try:
                return await attempt()
            except Exception as exc:
                await retrier.wait_or_raise(exc)   # re-raises when not retryable/exhausted

    Written as an object rather than a decorator because streaming needs to decide per
    failure whether tokens were already yielded (then it must not retry).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        classify: Callable[[BaseException], Transient | None],
        describe: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        hint: str | None = None,
        on_failure: Callable[[BaseException, bool], None] | None = None,
    ) -> None:
        self.hint = hint
        # Told of every failed attempt and whether another follows (llm/recording.py).
        self.on_failure = on_failure
        self.policy = policy
        self.classify = classify
        self.describe = describe
        self.sleep = sleep
        self.clock = clock
        self.started = clock()
        self.retries = 0
        self.waits: list[float] = []

    async def wait_or_raise(self, exc: BaseException) -> None:
        try:
            delay = self._delay(exc)
        except BaseException:
            self._failed(exc, retried=False)
            raise
        self._failed(exc, retried=True)
        await self.sleep(delay)

    def _failed(self, exc: BaseException, *, retried: bool) -> None:
        if self.on_failure is not None:
            self.on_failure(exc, retried)

    def _delay(self, exc: BaseException) -> float:
        """The wait before the next attempt, counted as a retry; raises (the error itself,
        or why Carrier gives up) when there is to be none."""
        transient = self.classify(exc)
        if transient is None:
            raise exc
        attempts = self.retries + 1
        elapsed = self.clock() - self.started
        if self.retries >= self.policy.max_retries:
            raise self._give_up(transient, attempts, elapsed) from exc
        if transient.retry_after is not None:
            if transient.retry_after > self.policy.max_retry_after:
                raise ProviderUnavailable(
                    f"{self.describe} asked Carrier to wait {transient.retry_after:.0f} s "
                    f"before retrying ({transient.reason}); that is longer than Carrier waits "
                    f"({self.policy.max_retry_after:.0f} s)."
                ) from exc
            delay = transient.retry_after
        else:
            delay = self.policy.backoff(self.retries)
        if elapsed + delay > self.policy.total_budget:
            raise self._give_up(transient, attempts, elapsed) from exc
        log.info(
            "%s: %s; retry %d/%d in %.2f s",
            self.describe,
            transient.reason,
            self.retries + 1,
            self.policy.max_retries,
            delay,
        )
        self.retries += 1
        self.waits.append(delay)
        return delay

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` until it succeeds; `wait_or_raise` decides, failure by failure,
        whether to wait and try again or to re-raise (not retryable, or retries spent)."""
        while True:
            try:
                return await attempt()
            except Exception as exc:
                await self.wait_or_raise(exc)

    def _give_up(self, transient: Transient, attempts: int, elapsed: float) -> ProviderUnavailable:
        plural = "attempt" if attempts == 1 else "attempts"
        return ProviderUnavailable(
            f"{self.describe} is unavailable: {transient.reason} "
            f"(gave up after {attempts} {plural} in {elapsed:.1f} s).",
            hint=self.hint,
        )


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    classify: Callable[[BaseException], Transient | None],
    describe: str,
) -> T:
    """Run `attempt` until it succeeds, a non-transient error escapes, or retries run out."""
    return await Retrier(policy, classify, describe).call(attempt)
