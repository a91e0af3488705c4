"""The budget gate's decisions at the edge of a cap (below, at, above), day and month
rollover with an injected clock, the 1 s read cache, the hooks, and the meter that feeds
the counters (called with hand-built CallRecords, as the providers will call it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from carrier_cli.memory.store import MemoryStore
from carrier_cli.usage.budget import ALLOW, BudgetEvent, BudgetGate
from carrier_cli.usage.budget_meter import BudgetMeter, increments_for
from carrier_cli.usage.caps import Budget, Spent, UsageIncrement
from carrier_cli.usage.records import CallContext, CallRecord, TokenUsage

NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Counters:
    """An in-memory CounterStore that counts its reads."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Spent] = {}
        self.reads = 0

    async def usage_spent_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Spent]:
        self.reads += 1
        return {key: self.rows.get(key, Spent()) for key in keys}

    async def add_usage(self, increments: Sequence[UsageIncrement]) -> None:
        for inc in increments:
            key = (inc.scope, inc.period)
            self.rows[key] = self.rows.get(key, Spent()) + Spent(
                inc.tokens, inc.cost_usd, inc.calls
            )

    def set(self, scope: str, period: str, tokens: int = 0, cost: float = 0.0) -> None:
        self.rows[(scope, period)] = Spent(tokens, cost, 1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.mono = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono


def gate_for(
    counters: Counters, clock: Clock, character: Budget | None, global_: Budget | None = None
) -> BudgetGate:
    gate = BudgetGate.for_character(
        counters, "Ada", character, global_, clock=clock, monotonic=clock.monotonic
    )
    gate.ttl = 0.0  # read every time unless a test looks at the cache
    return gate


@pytest.mark.parametrize(
    ("spent", "action"), [(999, "allow"), (1000, "refuse"), (1001, "refuse"), (0, "allow")]
)
async def test_the_call_after_the_cap_is_reached_is_refused(spent: int, action: str) -> None:
    counters, clock = Counters(), Clock(NOON)
    counters.set("character:Ada", "day:2026-12-03", tokens=spent)
    gate = gate_for(counters, clock, Budget(daily_tokens=1000, message="Out of budget."))
    verdict = await gate.check("reply")
    assert verdict.action == action
    if action == "refuse":
        assert verdict.refused and verdict.message == "Out of budget."
        assert verdict.reason == f"character:Ada daily_tokens: {spent:,} tokens of 1,000 tokens"
    else:
        assert verdict is ALLOW


async def test_cost_caps_and_the_global_scope() -> None:
    counters, clock = Counters(), Clock(NOON)
    gate = gate_for(counters, clock, None, Budget(monthly_cost_usd=5.0, action="small"))
    counters.set("global", "month:2026-12", cost=4.99)
    assert (await gate.check("reply")).action == "allow"
    counters.set("global", "month:2026-12", cost=5.0)
    assert (await gate.check("reply")).small
    # another character's spending in the global scope counts; its own scope does not
    counters.set("character:Bob", "month:2026-12", cost=100.0)
    counters.set("global", "month:2026-12", cost=1.0)
    assert (await gate.check("reply")).action == "allow"


async def test_the_most_severe_reached_budget_wins() -> None:
    counters, clock = Counters(), Clock(NOON)
    gate = gate_for(
        counters,
        clock,
        Budget(daily_tokens=10, action="warn"),
        Budget(daily_tokens=10, action="refuse", message="Everyone is out."),
    )
    counters.set("character:Ada", "day:2026-12-03", tokens=10)
    assert (await gate.check("reply")).action == "warn"
    counters.set("global", "day:2026-12-03", tokens=10)
    verdict = await gate.check("reply")
    assert verdict.refused and verdict.message == "Everyone is out."


async def test_day_and_month_roll_over_in_utc() -> None:
    counters, clock = Counters(), Clock(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    gate = gate_for(counters, clock, Budget(daily_tokens=100, monthly_tokens=1000))
    counters.set("character:Ada", "day:2026-12-31", tokens=100)
    counters.set("character:Ada", "month:2026-12", tokens=500)
    assert (await gate.check("reply")).refused
    clock.now += timedelta(seconds=1)  # 2027-01-01 00:00:00 UTC: a new day and month
    assert (await gate.check("reply")).action == "allow"
    # a time zone other than UTC is converted: 2027-01-01 01:00+02:00 is still Dec 31 UTC
    clock.now = datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert (await gate.check("reply")).refused
    # a month cap reached on another day of the month still applies
    counters.set("character:Ada", "month:2027-01", tokens=1000)
    clock.now = datetime(2027, 1, 20, 9, 0, tzinfo=UTC)
    assert (await gate.check("reply")).refused
    clock.now = datetime(2027, 2, 1, 0, 0, tzinfo=UTC)
    assert (await gate.check("reply")).action == "allow"


async def test_counters_are_read_at_most_once_per_ttl() -> None:
    counters, clock = Counters(), Clock(NOON)
    gate = gate_for(counters, clock, Budget(daily_tokens=100))
    gate.ttl = 1.0
    for _ in range(20):
        await gate.check("reply")
    assert counters.reads == 1
    counters.set("character:Ada", "day:2026-12-03", tokens=100)  # another process spent it
    assert (await gate.check("reply")).action == "allow"  # not seen yet: the overshoot
    clock.mono += 1.0
    assert (await gate.check("reply")).refused
    assert counters.reads == 2


async def test_no_budget_means_no_reads() -> None:
    counters, clock = Counters(), Clock(NOON)
    gate = gate_for(counters, clock, None)
    assert not gate.active
    assert await gate.check("reply") is ALLOW
    assert counters.reads == 0


async def test_warn_logs_and_calls_hooks_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    counters, clock = Counters(), Clock(NOON)
    gate = gate_for(counters, clock, Budget(daily_tokens=10, action="warn"))
    events: list[BudgetEvent] = []
    gate.on_budget_reached.append(events.append)
    gate.on_budget_reached.append(lambda event: 1 / 0)  # a broken hook changes nothing
    counters.set("character:Ada", "day:2026-12-03", tokens=12)
    with caplog.at_level(logging.WARNING, logger="carrier.usage.budget"):
        for _ in range(3):
            assert (await gate.check("reply")).action == "warn"
    reached = [r for r in caplog.records if r.getMessage().startswith("budget reached")]
    assert len(reached) == 1
    assert "character:Ada daily_tokens is 12 tokens of 10 tokens for 2026-12-03" in (
        reached[0].getMessage()
    )
    assert [(e.kind, e.scope, e.period, e.cap, e.spent, e.action) for e in events] == [
        ("budget.reached", "character:Ada", "day:2026-12-03", "daily_tokens", 12.0, "warn")
    ]
    clock.now += timedelta(days=1)
    counters.set("character:Ada", "day:2026-12-04", tokens=10)
    await gate.check("reply")
    assert [e.period for e in events] == ["day:2026-12-03", "day:2026-12-04"]


def record(tokens_in: int, tokens_out: int, cost: float | None, **context: object) -> CallRecord:
    return CallRecord(
        provider="openai",
        model="gpt-4o-mini",
        context=CallContext(purpose="reply", **context),  # type: ignore[arg-type]
        usage=TokenUsage(tokens_in, tokens_out),
        cost_usd=cost,
        created_at=NOON,
    )


def test_a_record_adds_to_four_counters() -> None:
    incs = increments_for(record(30, 12, 0.002), "Ada")
    assert {(i.scope, i.period, i.tokens, i.cost_usd, i.calls) for i in incs} == {
        ("character:Ada", "day:2026-12-03", 42, 0.002, 1),
        ("character:Ada", "month:2026-12", 42, 0.002, 1),
        ("global", "day:2026-12-03", 42, 0.002, 1),
        ("global", "month:2026-12", 42, 0.002, 1),
    }
    unpriced = increments_for(record(5, 5, None), "Ada")[0]
    assert (unpriced.tokens, unpriced.cost_usd) == (10, 0.0)


async def test_meter_counts_at_once_then_flushes_to_the_store(store: MemoryStore) -> None:
    clock = Clock(NOON)
    gate = BudgetGate.for_character(
        store, "Ada", Budget(daily_tokens=40), None, clock=clock, monotonic=clock.monotonic
    )
    meter = BudgetMeter(store, gate, "Ada")
    meter.flush_interval = 0.0
    assert (await gate.check("reply")).action == "allow"  # reads (and caches) zero
    meter(record(30, 12, 0.001, character="Ada"))
    # counted before any flush (the cached read is still fresh: clock.mono did not move)
    assert (await gate.check("reply")).refused
    meter(record(1000, 0, None, character="Bob"))  # another character's runtime: not ours
    await meter.aclose()
    assert await store.usage_spent("character:Ada", "day:2026-12-03") == (42, 0.001, 1)
    assert await store.usage_spent("global", "month:2026-12") == (42, 0.001, 1)
    assert (await gate.check("reply")).refused  # now from the database


async def test_meter_flushes_in_the_background(store: MemoryStore) -> None:
    gate = BudgetGate.for_character(store, "Ada", Budget(daily_tokens=10**9), None)
    meter = BudgetMeter(store, gate, "Ada")
    meter.flush_interval = 0.01
    today = datetime.now(UTC)
    for _ in range(5):
        rec = record(2, 2, None)
        rec.created_at = today
        meter(rec)
    for _ in range(200):
        await asyncio.sleep(0.02)
        if (await store.usage_spent("global", f"day:{today:%Y-%m-%d}"))[2] == 5:
            break
    assert await store.usage_spent("global", f"day:{today:%Y-%m-%d}") == (20, 0.0, 5)
    await meter.aclose()


async def test_a_record_priced_by_a_later_observer_still_counts_its_cost(
    store: MemoryStore,
) -> None:
    """The usage meter prices records in place (record.cost_usd); whichever order the
    observers are in, the budget meter counts the cost."""
    clock = Clock(NOON)
    gate = BudgetGate.for_character(
        store, "Ada", Budget(daily_cost_usd=0.5), None, clock=clock, monotonic=clock.monotonic
    )
    meter = BudgetMeter(store, gate, "Ada")
    rec = record(10, 10, None)
    meter(rec)
    rec.cost_usd = 0.5  # what the usage meter does when it observes after us
    await asyncio.sleep(0)
    assert (await gate.check("reply")).refused
    await meter.aclose()
    assert await store.usage_spent("global", "day:2026-12-03") == (20, 0.5, 1)
