"""`usage_counters`: tokens, cost and calls per (scope, period), added to atomically.

Budgets are counted across every process sharing the database (two Discord bots, a bot
and `carrier chat`), so an increment is one statement the database applies atomically,
never a read-modify-write in Python:

    INSERT INTO usage_counters (...) VALUES (...)
    ON CONFLICT (scope, period) DO UPDATE SET tokens = usage_counters.tokens + excluded.tokens, ...

Both SQLite (3.24+) and PostgreSQL run it as written; two writers adding at once both
land. A scope is "global" or "character:<name>", a period "day:YYYY-MM-DD" or
"month:YYYY-MM" in UTC (usage.caps).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Float, String, select, tuple_
from sqlalchemy.orm import Mapped, mapped_column

from carrier_cli.memory.declarative import Base
from carrier_cli.memory.rows import table, utcnow
from carrier_cli.memory.schema import UTCDateTime
from carrier_cli.usage.caps import Spent, UsageIncrement

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.memory.backend import MemoryBackend


class UsageCounterRow(Base):
    __tablename__ = "usage_counters"
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    period: Mapped[str] = mapped_column(String(20), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def merge(increments: Sequence[UsageIncrement]) -> list[UsageIncrement]:
    """One increment per counter: a statement may touch a row only once (PostgreSQL
    refuses "ON CONFLICT DO UPDATE command cannot affect row a second time")."""
    merged: dict[tuple[str, str], UsageIncrement] = {}
    for inc in increments:
        key = (inc.scope, inc.period)
        seen = merged.get(key)
        merged[key] = (
            inc
            if seen is None
            else UsageIncrement(
                inc.scope,
                inc.period,
                seen.tokens + inc.tokens,
                seen.cost_usd + inc.cost_usd,
                seen.calls + inc.calls,
            )
        )
    return list(merged.values())


async def add_usage(backend: MemoryBackend, increments: Sequence[UsageIncrement]) -> None:
    """Add to the counters in one transaction, each row by one atomic upsert."""
    rows = merge(increments)
    if not rows:
        return
    counters = table(UsageCounterRow)
    now = utcnow()
    stmt = backend.insert(counters).values(
        [
            {
                "scope": r.scope,
                "period": r.period,
                "tokens": int(r.tokens),
                "cost_usd": float(r.cost_usd),
                "calls": int(r.calls),
                "updated_at": now,
            }
            for r in rows
        ]
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=["scope", "period"],
        set_={
            "tokens": counters.c.tokens + stmt.excluded.tokens,
            "cost_usd": counters.c.cost_usd + stmt.excluded.cost_usd,
            "calls": counters.c.calls + stmt.excluded.calls,
            "updated_at": stmt.excluded.updated_at,
        },
    )

    def write(conn: Connection) -> Any:
        return conn.execute(upsert)

    await backend.run_write(write)


async def usage_spent(
    backend: MemoryBackend, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Spent]:
    """The counters for (scope, period) keys; a key never added to is `Spent()` (zero)."""
    found: dict[tuple[str, str], Spent] = {key: Spent() for key in keys}
    if not keys:
        return found
    counters = table(UsageCounterRow)
    query = select(
        counters.c.scope,
        counters.c.period,
        counters.c.tokens,
        counters.c.cost_usd,
        counters.c.calls,
    ).where(tuple_(counters.c.scope, counters.c.period).in_(list(found)))
    async with backend.read() as conn:
        rows = (await conn.execute(query)).all()
    for row in rows:
        found[(row.scope, row.period)] = Spent(
            int(row.tokens or 0), float(row.cost_usd or 0.0), int(row.calls or 0)
        )
    return found
