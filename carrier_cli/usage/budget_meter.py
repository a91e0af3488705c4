"""The budget meter: a `CallObserver` that adds every model call to the usage counters.

Appended to `model.observers` by the runtime when a budget applies. An observer runs on
the event loop right after the call and must not block, so the meter only queues the
call's tokens and cost (and hands them to the gate, which counts them at once); a
background task writes the queue to `usage_counters` every `flush_interval` seconds, in
one transaction of atomic upserts (memory.counters). Every attempt counts, a failed or
retried one too: a timed-out attempt may still have been billed, and its tokens (when the
provider reported any) were spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from carrier_cli.usage.caps import GLOBAL_SCOPE, UsageIncrement, character_scope, period_keys

if TYPE_CHECKING:
    from carrier_cli.usage.budget import BudgetGate, CounterStore
    from carrier_cli.usage.records import CallRecord

log = logging.getLogger("carrier.usage.budget")


def increments_for(record: CallRecord, character: str) -> list[UsageIncrement]:
    """The four counters one call adds to: the character's and the global scope, for
    the UTC day and month the call was made in."""
    tokens = record.usage.total
    cost = record.cost_usd or 0.0  # an unpriced model: tokens count, its cost is unknown
    return [
        UsageIncrement(scope, period, tokens, cost, 1)
        for scope in (character_scope(character), GLOBAL_SCOPE)
        for period in period_keys(record.created_at)
    ]


class BudgetMeter:
    """Counts the calls of one character's runtime (`character`)."""

    flush_interval = 0.25  # seconds; another process sees a call within this plus the gate's ttl

    def __init__(self, store: CounterStore, gate: BudgetGate, character: str) -> None:
        self.store = store
        self.gate = gate
        self.character = character
        self._queue: list[UsageIncrement] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __call__(self, record: CallRecord) -> None:
        owner = record.context.character
        if owner is not None and owner != self.character:
            return  # a model shared with another character's runtime: its meter counts it
        self._add(increments_for(record, self.character))
        if record.cost_usd is None:
            # Not priced yet: the usage meter, when it observes after us, prices the record
            # in place. Look again once every observer has had it.
            asyncio.get_running_loop().call_soon(self._priced_later, record)

    def _priced_later(self, record: CallRecord) -> None:
        if record.cost_usd:
            self._add(
                [replace(inc, tokens=0, calls=0) for inc in increments_for(record, self.character)]
            )

    def _add(self, increments: list[UsageIncrement]) -> None:
        self.gate.pending(increments)
        self._queue.extend(increments)
        if self._closed:
            return  # aclose() flushes what is queued
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._closed:
                await asyncio.sleep(self.flush_interval)  # a burst: one transaction
            await self.flush()
            if self._closed:
                return

    async def flush(self) -> None:
        """Write what is queued (also called on close). A failed write (one transaction:
        nothing of it landed) is logged and kept for the next flush."""
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            await self.store.add_usage(batch)
        except BaseException as exc:  # cancelled too: put the batch back, write it later
            self._queue[:0] = batch
            if not isinstance(exc, Exception):
                raise
            log.warning("could not update the usage counters (will retry): %s", exc)
            return
        self.gate.flushed(batch)

    async def aclose(self) -> None:
        """Write what is queued; the flush task ends (it is not cancelled mid-write)."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            self._wake.set()
            with contextlib.suppress(Exception):
                await task
        await self.flush()
