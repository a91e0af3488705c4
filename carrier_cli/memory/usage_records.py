"""The store's model-call records and usage counters (issue 12), kept apart from memories.

`MemoryStore` inherits these: the usage meter writes through `record_calls`, `carrier
logs` / `carrier usage` read through the others, and budgets count with `add_usage`. They
only hand the work to the backend (`memory.calls` holds the SQL of the records,
`memory.counters` the atomic counter upserts), so nothing here knows which database it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from carrier_cli.memory.backend import MemoryBackend
    from carrier_cli.memory.calls import GroupBy
    from carrier_cli.usage.caps import Spent, UsageIncrement
    from carrier_cli.usage.records import CallRecord, UsageTotals


class UsageRecords:
    """Model call records and usage counters over `self._backend`."""

    _backend: MemoryBackend

    # ------------------------------------------------------------------ model call records
    async def record_calls(self, records: Sequence[CallRecord]) -> None:
        """Store model call records (one per attempt) in one transaction; idempotent on
        the record id. The usage meter writes its batches with this."""
        await self._backend.record_calls(records)

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
        """Recorded calls, newest first (what `carrier logs` lists)."""
        return await self._backend.list_calls(
            character=character,
            room_id=room_id,
            client=client,
            purpose=purpose,
            since=since,
            limit=limit,
        )

    async def get_call(self, id_or_prefix: str) -> CallRecord | None:
        """One call by id or unique id prefix (like git); an ambiguous prefix is an
        InputError naming it, an unknown one None."""
        return await self._backend.get_call(id_or_prefix)

    async def usage_totals(
        self,
        *,
        by: GroupBy = "character",
        since: datetime | None = None,
        character: str | None = None,
        model: str | None = None,
    ) -> list[tuple[str, UsageTotals]]:
        """Calls, tokens and cost per character, model, client, purpose or UTC day;
        `character` / `model` ("provider:model" or the model's name) keep only their calls."""
        return await self._backend.usage_totals(
            by=by, since=since, character=character, model=model
        )

    async def prune_calls(self, *, prompts_older_than: datetime) -> int:
        """Retention: clear the stored prompt and output of older calls (their tokens and
        cost stay). Returns how many calls lost their text."""
        return await self._backend.prune_calls(prompts_older_than=prompts_older_than)

    # ------------------------------------------------------------------ usage counters
    async def add_usage(self, increments: Sequence[UsageIncrement]) -> None:
        """Add tokens, cost and calls to (scope, period) counters, atomically across
        processes (memory.counters); what budgets count against."""
        from carrier_cli.memory import counters

        await counters.add_usage(self._backend, increments)

    async def usage_spent(self, scope: str, period: str) -> tuple[int, float, int]:
        """(tokens, cost_usd, calls) counted for a scope in a period; zeros if none."""
        spent = (await self.usage_spent_many([(scope, period)]))[(scope, period)]
        return spent.tokens, spent.cost_usd, spent.calls

    async def usage_spent_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Spent]:
        """Several counters in one query (the budget gate reads a day and a month for
        the character and the global scope at once)."""
        from carrier_cli.memory import counters

        return await counters.usage_spent(self._backend, keys)
