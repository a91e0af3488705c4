"""`CallLog`: the `model_calls` rows (one per model call attempt), the same on SQLite and
PostgreSQL, over `sqlbase.SqlBase`'s connections. `sql.SqlBackend` inherits it, so every
backend has it; MemoryStore's record_calls/list_calls/get_call/usage_totals/prune_calls
delegate here. The statements are dialect-neutral except two bits of SQL each backend
names: its id as 32 hex digits (`id_text`, for id prefixes) and a row's UTC day
(`day_sql`, for `carrier usage --by day`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import (
    Connection,
    case,
    func,
    literal_column,
    select,
    text,
    update,
)

from carrier_cli.errors import InputError
from carrier_cli.memory.rows import CHUNK
from carrier_cli.memory.schema import MODEL_CALLS
from carrier_cli.memory.sqlbase import SqlBase
from carrier_cli.usage.records import CallContext, CallRecord, TokenUsage, UsageTotals

CALLS = MODEL_CALLS
GroupBy = Literal["character", "model", "client", "purpose", "day"]
GROUPS: tuple[str, ...] = ("character", "model", "client", "purpose", "day")
NO_KEY = "(none)"  # a usage row for calls made outside any character, client...
MIN_PREFIX = 4  # hex digits of an id prefix, as git asks


def call_row(record: CallRecord) -> dict[str, Any]:
    """The `model_calls` row of a record."""
    context, usage = record.context, record.usage
    return {
        "id": record.id,
        "created_at": record.created_at,
        "agent_id": context.agent_id,
        "character": context.character,
        "room_id": context.room_id,
        "client": context.client,
        "purpose": context.purpose,
        "provider": record.provider,
        "model": record.model,
        "attempt": record.attempt,
        "outcome": record.outcome,
        "error_code": record.error_code,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "tokens_estimated": bool(usage.estimated),
        "first_token_ms": record.first_token_ms,
        "total_ms": float(record.total_ms or 0.0),
        "cost_usd": record.cost_usd,
        "prompt": record.prompt,
        "output": record.output,
        "turn_id": context.turn_id,
    }


def to_call(row: Any) -> CallRecord:
    return CallRecord(
        id=row.id,
        created_at=row.created_at,
        provider=row.provider,
        model=row.model,
        context=CallContext(
            purpose=row.purpose,
            character=row.character,
            agent_id=row.agent_id,
            room_id=row.room_id,
            client=row.client,
            turn_id=row.turn_id,
        ),
        attempt=int(row.attempt),
        outcome=row.outcome,
        error_code=row.error_code,
        usage=TokenUsage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cached_tokens=row.cached_tokens,
            estimated=bool(row.tokens_estimated),
        ),
        first_token_ms=row.first_token_ms,
        total_ms=float(row.total_ms or 0.0),
        cost_usd=row.cost_usd,
        prompt=row.prompt,
        output=row.output,
    )


def _prefix_digits(value: str) -> str:
    """The hex digits of an id or id prefix, or an InputError saying what an id is."""
    digits = value.strip().replace("-", "").lower()
    if len(digits) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in digits):
        raise InputError(
            f"{value!r} is not a model call id.",
            hint=f"Give the full id or at least its first {MIN_PREFIX} characters, as "
            "`carrier logs` shows them.",
        )
    return digits


class CallLog(SqlBase):
    """The model call records. Subclasses (the backends) set `id_text` and `day_sql`."""

    id_text: ClassVar[str]  # SQL for an id as 32 hex digits
    day_sql: ClassVar[str]  # SQL for `created_at`'s UTC day as YYYY-MM-DD

    async def record_calls(self, records: Sequence[CallRecord]) -> None:
        """Insert the records in one transaction; an id already stored is skipped, so a
        batch written again (a retried flush) leaves one row per attempt."""
        if not records:
            return
        rows = [call_row(r) for r in records]
        insert = self.insert(CALLS).on_conflict_do_nothing(index_elements=["id"])

        def write(conn: Connection) -> None:
            for start in range(0, len(rows), CHUNK):
                conn.execute(insert, rows[start : start + CHUNK])

        await self.run_write(write)

    async def list_calls(
        self,
        *,
        character: str | None = None,
        room_id: uuid.UUID | None = None,
        client: str | None = None,
        purpose: str | None = None,
        since: datetime | None = None,
        limit: int | None = 20,
    ) -> list[CallRecord]:
        stmt = select(CALLS)
        if character is not None:
            stmt = stmt.where(CALLS.c.character == character)
        if room_id is not None:
            stmt = stmt.where(CALLS.c.room_id == room_id)
        if client is not None:
            stmt = stmt.where(CALLS.c.client == client)
        if purpose is not None:
            stmt = stmt.where(CALLS.c.purpose == purpose)
        if since is not None:
            stmt = stmt.where(CALLS.c.created_at >= since)
        stmt = stmt.order_by(CALLS.c.created_at.desc(), CALLS.c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [to_call(r) for r in rows]

    async def get_call(self, id_or_prefix: str) -> CallRecord | None:
        """The call with this id, or the one whose id starts with these hex digits (at
        least MIN_PREFIX); None when there is none. A prefix two calls share is an
        InputError that names it."""
        try:
            wanted: uuid.UUID | None = uuid.UUID(id_or_prefix.strip())
        except ValueError:
            wanted = None
        async with self.read() as conn:
            if wanted is None:
                digits = _prefix_digits(id_or_prefix)
                found = (
                    await conn.execute(
                        text(f"SELECT id FROM model_calls WHERE {self.id_text} LIKE :p LIMIT 2"),
                        {"p": digits + "%"},
                    )
                ).all()
                if len(found) > 1:
                    raise InputError(
                        f"Several model calls have an id starting with {id_or_prefix!r}.",
                        hint="Give more characters or the full id.",
                    )
                if not found:
                    return None
                raw = found[0][0]
                wanted = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))
            row = (await conn.execute(select(CALLS).where(CALLS.c.id == wanted))).first()
        return to_call(row) if row is not None else None

    async def usage_totals(
        self,
        *,
        by: GroupBy = "character",
        since: datetime | None = None,
        character: str | None = None,
        model: str | None = None,
    ) -> list[tuple[str, UsageTotals]]:
        """Sums per character, provider:model, client, purpose or UTC day (YYYY-MM-DD).
        Days come oldest first; the other groups by cost, then tokens, largest first.
        `character` and `model` (`provider:model` as the model rows name it, or the bare
        model name) keep only those calls: the console's per-day chart of one of them."""
        if by not in GROUPS:
            raise InputError(f"Cannot group usage by {by!r}.", hint=f"Use {', '.join(GROUPS)}.")
        keys: list[Any]
        if by == "model":
            keys = [CALLS.c.provider, CALLS.c.model]
        elif by == "day":
            keys = [literal_column(self.day_sql).label("day")]
        else:
            keys = [CALLS.c[by]]
        stmt = select(
            *keys,
            func.count(),
            func.sum(func.coalesce(CALLS.c.input_tokens, 0)),
            func.sum(func.coalesce(CALLS.c.output_tokens, 0)),
            func.sum(func.coalesce(CALLS.c.cached_tokens, 0)),
            func.sum(CALLS.c.cost_usd),
            func.count(CALLS.c.cost_usd),
            func.sum(case((CALLS.c.tokens_estimated.is_(True), 1), else_=0)),
        )
        if since is not None:
            stmt = stmt.where(CALLS.c.created_at >= since)
        if character is not None:
            stmt = stmt.where(CALLS.c.character == character)
        if model is not None:
            provider, _, name = model.rpartition(":")
            stmt = stmt.where(CALLS.c.model == name)
            if provider:
                stmt = stmt.where(CALLS.c.provider == provider)
        stmt = stmt.group_by(*keys)
        async with self.read() as conn:
            rows = (await conn.execute(stmt)).all()
        width = len(keys)
        result: list[tuple[str, UsageTotals]] = []
        for row in rows:
            parts = [p for p in row[:width] if p is not None]
            key = ":".join(str(p) for p in parts) if parts else NO_KEY
            calls, tin, tout, cached, cost, priced, estimated = row[width:]
            result.append(
                (
                    key,
                    UsageTotals(
                        calls=int(calls),
                        input_tokens=int(tin or 0),
                        output_tokens=int(tout or 0),
                        cached_tokens=int(cached or 0),
                        cost_usd=float(cost or 0.0),
                        unpriced_calls=int(calls) - int(priced or 0),
                        estimated_calls=int(estimated or 0),
                    ),
                )
            )
        if by == "day":
            result.sort(key=lambda item: item[0])
        else:
            result.sort(
                key=lambda item: (
                    -item[1].cost_usd,
                    -(item[1].input_tokens + item[1].output_tokens),
                    item[0],
                )
            )
        return result

    async def prune_calls(self, *, prompts_older_than: datetime) -> int:
        """Retention: forget the prompt and output of calls made before the moment (the
        rows, their tokens and cost stay). Returns how many rows lost text."""
        stmt = (
            update(CALLS)
            .where(CALLS.c.created_at < prompts_older_than)
            .where(CALLS.c.prompt.is_not(None) | CALLS.c.output.is_not(None))
            .values(prompt=None, output=None)
        )

        def write(conn: Connection) -> int:
            return int(conn.execute(stmt).rowcount or 0)

        return await self.run_write(write)
