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
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, Float, String, Table, select, tuple_

from carrier_cli.memory.rows import utcnow
from carrier_cli.memory.schema import METADATA, UTCDateTime
from carrier_cli.usage.caps import Spent, UsageIncrement

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.memory.backend import MemoryBackend


COUNTERS = Table(
    "usage_counters",
    METADATA,
    Column("scope", String(200), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("tokens", BigInteger, default=0, nullable=False),
    Column("cost_usd", Float, default=0.0, nullable=False),
    Column("calls", BigInteger, default=0, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


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
    now = utcnow()
    stmt = backend.insert(COUNTERS).values(
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
            "tokens": COUNTERS.c.tokens + stmt.excluded.tokens,
            "cost_usd": COUNTERS.c.cost_usd + stmt.excluded.cost_usd,
            "calls": COUNTERS.c.calls + stmt.excluded.calls,
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
    query = select(
        COUNTERS.c.scope,
        COUNTERS.c.period,
        COUNTERS.c.tokens,
        COUNTERS.c.cost_usd,
        COUNTERS.c.calls,
    ).where(tuple_(COUNTERS.c.scope, COUNTERS.c.period).in_(list(found)))
    async with backend.read() as conn:
        rows = (await conn.execute(query)).all()
    for row in rows:
        found[(row.scope, row.period)] = Spent(
            int(row.tokens or 0), float(row.cost_usd or 0.0), int(row.calls or 0)
        )
    return found
