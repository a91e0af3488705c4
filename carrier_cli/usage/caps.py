"""The `budget:` block: spending caps for a character (its file) or for every character
sharing a database (config.yaml), and what happens once one is reached.

Shared by `character.model.Character.budget` and `config.Settings.budget`, so both read
and validate the same way. Counting and enforcement are `usage.budget` (the gate) and
`usage.budget_meter` (the counter); this module is only the shape, plus the counters'
vocabulary (scopes, periods in UTC days and months, `Spent`, `UsageIncrement`), which
those and `memory.counters` share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BudgetAction = Literal["refuse", "small", "warn"]

DEFAULT_MESSAGE = (
    "I have reached my usage limit for now, so I can't answer. Please try again later."
)
CAP_FIELDS = ("daily_tokens", "daily_cost_usd", "monthly_tokens", "monthly_cost_usd")
GLOBAL_SCOPE = "global"


class Budget(BaseModel):
    """Caps (any of them; unset: no cap of that kind) and the action once one is reached.

    A cap is reached when what was spent in the current UTC day or month is at least the
    cap: the call made after that is the first one refused (a call's own cost is known
    only once it returns, so the call that crosses a cap is still made).
    refuse: no model call; a reply is `message`, should-respond and background calls
    (facts) are skipped. small: the call uses the small model. warn: the call is made; a
    warning is logged and a `budget.reached` event emitted once per cap and period.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    daily_tokens: int | None = Field(None, ge=0)
    daily_cost_usd: float | None = Field(None, ge=0)
    monthly_tokens: int | None = Field(None, ge=0)
    monthly_cost_usd: float | None = Field(None, ge=0)
    action: BudgetAction = "refuse"
    message: str = Field(DEFAULT_MESSAGE, min_length=1, max_length=2_000)

    @model_validator(mode="after")
    def _some_cap(self) -> Budget:
        if all(getattr(self, name) is None for name in CAP_FIELDS):
            raise ValueError(
                "expected at least one cap (daily_tokens, daily_cost_usd, monthly_tokens "
                "or monthly_cost_usd)"
            )
        return self

    def caps(
        self,
    ) -> list[tuple[str, Literal["day", "month"], Literal["tokens", "cost_usd"], float]]:
        """(field, period kind, measure, cap) for every cap that is set."""
        found: list[tuple[str, Literal["day", "month"], Literal["tokens", "cost_usd"], float]] = []
        for name in CAP_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            period: Literal["day", "month"] = "day" if name.startswith("daily") else "month"
            measure: Literal["tokens", "cost_usd"] = (
                "tokens" if name.endswith("tokens") else "cost_usd"
            )
            found.append((name, period, measure, float(value)))
        return found


def character_scope(name: str) -> str:
    return f"character:{name}"


def period_key(kind: Literal["day", "month"], at: datetime) -> str:
    """ "day:2026-12-03" or "month:2026-12", in UTC (a naive time is taken as UTC)."""
    utc = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return f"day:{utc:%Y-%m-%d}" if kind == "day" else f"month:{utc:%Y-%m}"


def period_keys(at: datetime) -> tuple[str, str]:
    """The day and the month `at` falls in."""
    return period_key("day", at), period_key("month", at)


@dataclass(frozen=True)
class Spent:
    """One counter: what a scope spent in a period (a `usage_counters` row)."""

    tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.tokens + other.tokens, self.cost_usd + other.cost_usd, self.calls + other.calls
        )


@dataclass(frozen=True)
class UsageIncrement:
    """What to add to one counter (`MemoryStore.add_usage`)."""

    scope: str
    period: str
    tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 1
