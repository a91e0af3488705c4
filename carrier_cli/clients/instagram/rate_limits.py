"""Graph API rate limits: read how much of the budget is used, slow down before it runs out.

Every Graph answer may carry usage headers, each a JSON object of percentages of the
rolling one-hour budget:

* `X-App-Usage: {"call_count": 28, "total_time": 25, "total_cputime": 25}` (the app);
* `X-Business-Use-Case-Usage: {"<ig-user-id>": [{"type": "instagram", "call_count": 95,
  "total_cputime": 20, "total_time": 20, "estimated_time_to_regain_access": 0}]}` (the
  account; `estimated_time_to_regain_access` is in minutes, > 0 only once throttled).

Meta throttles at 100 % (error codes 4 and 17 for the app, 32 for a page, 613 and the
business use case code 80002), and a throttled app waits out the window, so the cheap move
is to spread calls out before that: `RateGovernor.pace()` sleeps nothing below
`threshold` (80 %), then a delay growing linearly from `min_delay` (1 s) at 80 % to
`max_delay` (60 s) at 100 %, and the announced time to regain access when Meta gave one
(bounded by `MAX_BLOCK`, 15 min, so a wrong header cannot park the client for hours).

One governor per account and API base, shared by every Graph client of the process
(`governor_for`): the comment poller, the autoposter and a `carrier serve` upload all
draw from the same budget, so they must all see the same headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Error codes Meta uses for call-rate throttling: 4 app, 17 user, 32 page, 613 "calls
# within one hour exceeded", 80002 the Instagram business use case.
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80002})
USAGE_HEADERS = ("x-app-usage", "x-business-use-case-usage")
_PERCENT_KEYS = ("call_count", "total_cputime", "total_time")
MAX_BLOCK = 900.0  # seconds: the longest wait a header may ask for
MAX_GOVERNORS = 256  # accounts tracked per process

Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class Usage:
    """The highest percentage any usage header reported, and the announced wait."""

    percent: float = 0.0
    regain_seconds: float = 0.0

    @property
    def throttled(self) -> bool:
        return self.regain_seconds > 0 or self.percent >= 100


def _entry_usage(entry: Mapping[str, Any]) -> Usage:
    percents = []
    for key in _PERCENT_KEYS:
        value = entry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            percents.append(float(value))
    regain = entry.get("estimated_time_to_regain_access")
    minutes = float(regain) if isinstance(regain, int | float) and regain > 0 else 0.0
    return Usage(max(percents, default=0.0), minutes * 60.0)


def parse_usage(headers: Mapping[str, str]) -> Usage | None:
    """The usage the headers report, or None when they carry none (or only garbage)."""
    found: list[Usage] = []
    lowered = {k.lower(): v for k, v in headers.items() if k.lower() in USAGE_HEADERS}
    for name in USAGE_HEADERS:
        raw = lowered.get(name)
        if not raw:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            log.debug("unreadable %s header: %.200s", name, raw)
            continue
        if not isinstance(value, dict):
            continue
        if name == "x-app-usage":
            found.append(_entry_usage(value))
            continue
        for entries in value.values():  # business id -> [entry per use case type]
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict):
                    found.append(_entry_usage(entry))
    if not found:
        return None
    return Usage(max(u.percent for u in found), max(u.regain_seconds for u in found))


class RateGovernor:
    """What the last answers said about the budget, and how long to wait before a call."""

    def __init__(
        self,
        *,
        threshold: float = 80.0,
        min_delay: float = 1.0,
        max_delay: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._clock = clock
        self.usage = Usage()
        self._blocked_until = 0.0
        self.waited = 0.0  # seconds slept by pace(), for logs and tests

    def observe(self, headers: Mapping[str, str]) -> Usage | None:
        """Take the usage headers of an answer (any answer, errors included)."""
        usage = parse_usage(headers)
        if usage is None:
            return None
        if usage.percent >= self.threshold and usage.percent > self.usage.percent:
            log.warning(
                "Graph API usage at %.0f%% of the hourly budget: slowing down", usage.percent
            )
        self.usage = usage
        if usage.regain_seconds > 0:
            self.block(usage.regain_seconds)
        return usage

    def block(self, seconds: float) -> None:
        """No call before `seconds` from now (bounded by MAX_BLOCK)."""
        until = self._clock() + min(max(0.0, seconds), MAX_BLOCK)
        self._blocked_until = max(self._blocked_until, until)

    def delay(self) -> float:
        """Seconds to wait before the next call."""
        blocked = self._blocked_until - self._clock()
        if blocked > 0:
            return blocked
        percent = self.usage.percent
        if percent < self.threshold:
            return 0.0
        span = max(1e-9, 100.0 - self.threshold)
        share = min(1.0, (percent - self.threshold) / span)
        return self.min_delay + share * (self.max_delay - self.min_delay)

    def throttle_wait(self, attempt: int, base: float) -> float:
        """The back-off after a throttling error (codes 4/17/32/613/80002): the time Meta
        announced, else `base` doubling per attempt; every client of the account waits
        it out (`block`), not only the one that was refused."""
        announced = self._blocked_until - self._clock()
        wait = min(MAX_BLOCK, max(announced, base * (2 ** (attempt - 1))))
        self.block(wait)
        return wait

    async def pace(self) -> None:
        wait = self.delay()
        if wait > 0:
            log.info(
                "Graph API usage %.0f%%: waiting %.1f s before the next call",
                self.usage.percent,
                wait,
            )
            self.waited += wait
            await self._sleep(wait)


_GOVERNORS: dict[tuple[str, str], RateGovernor] = {}


def governor_for(base: str, account_id: str | None) -> RateGovernor:
    """The process's governor for this API base and account (created on first use)."""
    key = (base, account_id or "")
    governor = _GOVERNORS.get(key)
    if governor is None:
        if len(_GOVERNORS) >= MAX_GOVERNORS:
            _GOVERNORS.pop(next(iter(_GOVERNORS)))
        governor = _GOVERNORS[key] = RateGovernor()
    return governor


def install_governor(base: str, account_id: str | None, governor: RateGovernor) -> None:
    """Use `governor` for this base and account (tests, an embedding program's own clock)."""
    _GOVERNORS[(base, account_id or "")] = governor


def forget_governors() -> None:
    _GOVERNORS.clear()
