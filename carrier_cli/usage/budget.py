"""The budget gate: asked before every model call, it says allow, refuse, small or warn.

The runtime asks `await gate.check(purpose)` before a reply, a should-respond question, a
CONTINUE follow-up, a post and every small-model call (facts). The gate compares what was
spent (the `usage_counters` of the character's and the global scope, for the current UTC
day and month) with the caps of the character's `budget:` and the config's `budget:`.

At the edge: a cap is reached when spent >= cap, and the first call refused is the one
asked for after that. The call that crosses a cap is still made, since its cost is known
only once it has returned; so a budget can be overshot by the calls in flight when it is
reached, each up to its max_tokens.

Freshness: the counters are read at most once per `ttl` (1 s) per gate, so a burst of
turns costs one query, not one per call. This process's own calls are seen at once (the
meter hands them to the gate before they are flushed, and a flush makes the next check
read again); another process's calls are seen within its meter's flush interval plus
`ttl`, so with several processes sharing a budget the overshoot can also include what
they spent in that last second or two.

When a cap is first seen reached in a period, the gate logs a warning and calls the
`on_budget_reached` hooks with a `BudgetEvent` (issue 13 connects webhooks there), once
per scope, cap and period in this process, whatever the action.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from carrier_cli.errors import RuntimeFailure
from carrier_cli.usage.caps import (
    GLOBAL_SCOPE,
    Budget,
    BudgetAction,
    Spent,
    UsageIncrement,
    character_scope,
    period_key,
)

log = logging.getLogger("carrier.usage.budget")

VerdictAction = Literal["allow", "refuse", "small", "warn"]
_SEVERITY: dict[str, int] = {"allow": 0, "warn": 1, "small": 2, "refuse": 3}


class CounterStore(Protocol):
    """What the gate and the meter need of the store (MemoryStore is one)."""

    async def usage_spent_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Spent]: ...

    async def add_usage(self, increments: Sequence[UsageIncrement]) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one call. `message`: the reply to give instead (refuse)."""

    action: VerdictAction = "allow"
    message: str | None = None
    reason: str | None = None  # "character:Ada daily_tokens: 1,200 of 1,000", for logs

    @property
    def refused(self) -> bool:
        return self.action == "refuse"

    @property
    def small(self) -> bool:
        return self.action == "small"


ALLOW = Verdict()


class BudgetRefused(RuntimeFailure):
    """A call the budget refused (action: refuse). Replies never raise it (their answer
    is the budget's message); a post or a small-model call does, and evaluators skip."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(
            f"Model call refused: the budget is reached ({verdict.reason}).",
            hint="It resets at the start of the next UTC day or month; raise the cap in "
            "the character's or the config's `budget:` to go on now.",
        )
        self.verdict = verdict


@dataclass(frozen=True)
class BudgetEvent:
    """A cap reached (`budget.reached`), as handed to `on_budget_reached` hooks."""

    scope: str  # "global" or "character:<name>"
    period: str  # "day:2026-12-03" or "month:2026-12"
    cap: str  # "daily_tokens", "daily_cost_usd", "monthly_tokens" or "monthly_cost_usd"
    limit: float
    spent: float
    action: BudgetAction
    at: datetime
    kind: str = "budget.reached"


BudgetHook = Callable[[BudgetEvent], object]


@dataclass
class _Snapshot:
    counters: dict[tuple[str, str], Spent] = field(default_factory=dict)
    read_at: float | None = None  # monotonic seconds; None: must be read


class BudgetGate:
    """The budgets that apply to one runtime: (scope, Budget) pairs, the character's first.
    With none, `check` answers ALLOW without any I/O."""

    ttl = 1.0  # seconds a read of the counters is reused

    def __init__(
        self,
        store: CounterStore | None,
        budgets: Sequence[tuple[str, Budget]] = (),
        *,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.budgets = list(budgets) if store is not None else []
        self.clock = clock or (lambda: datetime.now(UTC))
        self.monotonic = monotonic
        self.on_budget_reached: list[BudgetHook] = []
        self._snapshot = _Snapshot()
        self._pending: dict[tuple[str, str], Spent] = {}  # this process's, not yet flushed
        self._announced: set[tuple[str, str, str]] = set()  # (scope, period, cap)
        self._lock = asyncio.Lock()
        self._flushes = 0  # a read begun before a flush landed is not cached

    @classmethod
    def for_character(
        cls,
        store: CounterStore,
        character: str,
        character_budget: Budget | None,
        global_budget: Budget | None,
        **options: object,
    ) -> BudgetGate:
        budgets: list[tuple[str, Budget]] = []
        if character_budget is not None:
            budgets.append((character_scope(character), character_budget))
        if global_budget is not None:
            budgets.append((GLOBAL_SCOPE, global_budget))
        return cls(store, budgets, **options)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return bool(self.budgets)

    @property
    def scopes(self) -> list[str]:
        return [scope for scope, _ in self.budgets]

    # ------------------------------------------------------------------ deciding
    async def check(self, purpose: str) -> Verdict:
        """The verdict for a call made now for `purpose` (used in logs only)."""
        if not self.budgets:
            return ALLOW
        now = self.clock()
        keys = self._keys(now)
        counters = await self._counters(keys)
        verdict = ALLOW
        for scope, budget in self.budgets:
            for name, kind, measure, cap in budget.caps():
                key = (scope, period_key(kind, now))
                spent = counters.get(key, Spent()) + self._pending.get(key, Spent())
                value = float(spent.tokens) if measure == "tokens" else spent.cost_usd
                if value < cap:
                    continue
                self._announce(BudgetEvent(scope, key[1], name, cap, value, budget.action, now))
                if _SEVERITY[budget.action] > _SEVERITY[verdict.action]:
                    reason = f"{scope} {name}: {_amount(value, measure)} of {_amount(cap, measure)}"
                    message = budget.message if budget.action == "refuse" else None
                    verdict = Verdict(budget.action, message, reason)
        if verdict.action != "allow":
            log.debug("budget: %s for %s (%s)", verdict.action, purpose, verdict.reason)
        return verdict

    def _keys(self, now: datetime) -> list[tuple[str, str]]:
        keys: list[tuple[str, str]] = []
        for scope, budget in self.budgets:
            for _, kind, _, _ in budget.caps():
                key = (scope, period_key(kind, now))
                if key not in keys:
                    keys.append(key)
        return keys

    async def _counters(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Spent]:
        snap = self._snapshot
        if self._fresh(snap, keys):
            return snap.counters
        async with self._lock:  # concurrent turns share one read
            snap = self._snapshot
            if self._fresh(snap, keys):
                return snap.counters
            assert self.store is not None
            started, flushes = self.monotonic(), self._flushes
            counters = await self.store.usage_spent_many(keys)
            if flushes == self._flushes:
                self._snapshot = _Snapshot(dict(counters), started)
            return counters

    def _fresh(self, snap: _Snapshot, keys: list[tuple[str, str]]) -> bool:
        if snap.read_at is None or self.monotonic() - snap.read_at >= self.ttl:
            return False
        return all(key in snap.counters for key in keys)  # a new day or month: read

    def _announce(self, event: BudgetEvent) -> None:
        """Log and call the hooks the first time a cap is seen reached in a period."""
        mark = (event.scope, event.period, event.cap)
        if mark in self._announced:
            return
        self._announced.add(mark)
        measure = "tokens" if event.cap.endswith("tokens") else "cost_usd"
        then = {
            "refuse": "model calls are refused (replies are the budget message)",
            "small": "calls use the small model",
            "warn": "calls continue (action: warn)",
        }[event.action]
        log.warning(
            "budget reached: %s %s is %s of %s for %s; %s until the period ends (UTC).",
            event.scope,
            event.cap,
            _amount(event.spent, measure),
            _amount(event.limit, measure),
            event.period.partition(":")[2],
            then,
        )
        for hook in list(self.on_budget_reached):
            try:
                hook(event)
            except Exception:  # a hook's bug must not fail the call it is about
                log.exception("budget hook %r failed", hook)

    # ------------------------------------------------------------------ counting (the meter)
    def pending(self, increments: Sequence[UsageIncrement]) -> None:
        """Usage of this process not flushed yet: counted by `check` at once."""
        for inc in increments:
            key = (inc.scope, inc.period)
            self._pending[key] = self._pending.get(key, Spent()) + Spent(
                inc.tokens, inc.cost_usd, inc.calls
            )

    def flushed(self, increments: Sequence[UsageIncrement]) -> None:
        """Those increments are in the database now: stop adding them locally, and read
        the counters again on the next check (they include them)."""
        for inc in increments:
            key = (inc.scope, inc.period)
            left = self._pending.get(key, Spent()) + Spent(-inc.tokens, -inc.cost_usd, -inc.calls)
            if left.calls <= 0 and left.tokens <= 0 and left.cost_usd <= 1e-12:
                self._pending.pop(key, None)
            else:
                self._pending[key] = left
        self._flushes += 1
        self._snapshot = _Snapshot()


def _amount(value: float, measure: str) -> str:
    return f"{int(value):,} tokens" if measure == "tokens" else f"${value:,.4f}"
